// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity =0.8.37;

/// @title PriceVerifier
/// @notice Verifies a committed report of the price-oracle network (protocol v2): one round's
/// set of at least 2f+1 members' observations, committed to by its digest, its median price and
/// its median time, signed as a whole by at least f+1 distinct members of the current
/// configuration. f+1 signers include an honest one, and an honest member signs only the set it
/// committed to, with the median and the time computed from it: so f colluders can neither make
/// up a report nor re-pick the observations of one.
///
/// ```text
/// report  = abi.encode(bytes32 config, bytes32 pair, uint64 id, int256 median, uint64 observedAt,
///                      uint64 count, bytes32 observations, bytes[] signatures)
/// digest  = keccak256(abi.encode(config, REPORT, pair, id, median, observedAt, count, observations))
/// signed  = keccak256("\x19Ethereum Signed Message:\n32" ‖ digest), each signature r ‖ s ‖ v
/// config  = keccak256(abi.encode(DOMAIN, NETWORK, block.chainid, address(this), MEMBERS, f))
/// MEMBERS = keccak256(member_1 ‖ … ‖ member_n), 20 bytes each, ascending
/// ```
///
/// `config` binds the network, this chain, this contract, the member set and f: a report signed
/// for another network, chain, verifier or configuration is refused (`ConfigMismatch`). The
/// owner rotates members and f with `setConfig`; the feeds (`PriceFeed`) of a network share one
/// verifier, so one rotation covers every pair. A consumer checks `pair`.
contract PriceVerifier {
    /// `keccak256("price-oracle/v2")`, the first word of the configuration digest.
    bytes32 public constant DOMAIN = keccak256("price-oracle/v2");

    /// `keccak256("report")`, the word that keeps a report digest apart from an observation's.
    bytes32 public constant REPORT = keccak256("report");

    /// The most members a configuration may have: one bit each in `verify`'s bitmap.
    uint256 public constant MAX_MEMBERS = 256;

    /// Half the secp256k1 group order: a signature with a larger `s` is a malleable copy (EIP-2).
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// `keccak256` of the network's name (the nodes' `--network-name`), fixed at deployment.
    bytes32 public immutable network;

    /// Seconds a report's time (its median observation time) may be old (RedStone: 3 minutes).
    uint64 public immutable maxAge;

    /// Seconds a report's time may lie ahead of the block (clocks differ; RedStone: 1 minute).
    uint64 public immutable maxFutureSkew;

    // One slot: what `verify` reads besides the digest.
    address public owner;
    uint64 public configCount;
    uint32 private faults;

    /// The current configuration's digest: the `config` word every report must carry.
    bytes32 public configDigest;

    address public pendingOwner;

    address[] private memberList;

    /// A current member's index in `memberList` plus one; 0 for anyone else.
    mapping(address => uint256) private memberSlot;

    /// A new configuration: from now on only reports carrying `configDigest` verify.
    event ConfigSet(
        bytes32 previousConfigDigest, bytes32 configDigest, uint64 configCount, address[] members, uint64 f
    );
    event OwnershipTransferRequested(address indexed from, address indexed to);
    event OwnershipTransferred(address indexed from, address indexed to);

    // Configuration and ownership.
    error NotOwner(address caller);
    error NotPendingOwner(address caller);
    error FaultBoundTooHigh(uint64 f, uint256 members);
    error TooManyMembers(uint256 members, uint256 max);
    error ZeroAddressMember(uint256 index);
    error MembersNotAscending(uint256 index);

    // Verification: `index` is the position of the signature in the report.
    error ConfigMismatch(bytes32 got, bytes32 want);
    error TooFewObservations(uint64 count, uint256 need);
    error TooFewSignatures(uint256 got, uint256 need);
    error StaleReport(uint64 observedAt, uint256 blockTime, uint256 maxAge);
    error FutureReport(uint64 observedAt, uint256 blockTime, uint256 maxFutureSkew);
    error BadSignatureLength(uint256 index);
    error HighS(uint256 index);
    error BadV(uint256 index);
    error InvalidSignature(uint256 index);
    error NotMember(address signer);
    error DuplicateSigner(address signer);

    /// @param network_ `keccak256` of the network's name, e.g. `keccak256("price-oracle")`.
    /// @param members_ The first configuration's members, strictly ascending (see `setConfig`).
    /// @param f_ The first configuration's fault bound.
    /// The deployer is the owner; the first configuration is set as `setConfig` sets it.
    constructor(bytes32 network_, address[] memory members_, uint64 f_, uint64 maxAge_, uint64 maxFutureSkew_) {
        network = network_;
        maxAge = maxAge_;
        maxFutureSkew = maxFutureSkew_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        applyConfig(members_, f_);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    /// @notice Replaces the members and the fault bound. `members` must be strictly ascending
    /// (so distinct) and non-zero, at most `MAX_MEMBERS`, and `members.length >= 3 f + 1`.
    /// Reports signed for the previous configuration stop verifying at once (`ConfigMismatch`).
    function setConfig(address[] calldata members_, uint64 f_) external onlyOwner {
        applyConfig(members_, f_);
    }

    /// @notice Starts handing the contract to `to`, who takes it with `acceptOwnership`; a
    /// second call replaces the pending owner, `address(0)` cancels.
    function transferOwnership(address to) external onlyOwner {
        pendingOwner = to;
        emit OwnershipTransferRequested(msg.sender, to);
    }

    /// @notice The pending owner takes the contract.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner(msg.sender);
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    /// @notice The current members, ascending.
    function members() external view returns (address[] memory) {
        return memberList;
    }

    /// @notice Whether `account` is a member of the current configuration.
    function isMember(address account) external view returns (bool) {
        return memberSlot[account] != 0;
    }

    /// @notice The current fault bound: a report needs 2f+1 observations and f+1 signatures.
    function f() external view returns (uint64) {
        return faults;
    }

    /// @notice Checks a committed report and returns its pair, round id, median price (USD ×
    /// 10⁸) and time (the median of its observations' times, unix seconds). Reverts unless the
    /// report is of the current configuration, commits to at least 2f+1 observations, carries at
    /// least f+1 signatures over its digest, every one of them valid and by a distinct current
    /// member, and its time is at most `maxAge` old and at most `maxFutureSkew` ahead.
    /// @dev Every signature present is checked, not only the first f+1: see docs/on-chain.md.
    function verify(bytes calldata report)
        external
        view
        returns (bytes32 pair, uint64 id, int256 median, uint64 observedAt)
    {
        return _verify(report);
    }

    function _verify(bytes calldata report)
        internal
        view
        returns (bytes32 pair, uint64 id, int256 median, uint64 observedAt)
    {
        bytes32 signed;
        uint256 need;
        {
            bytes32 config;
            uint64 count;
            bytes32 observations;
            (config, pair, id, median, observedAt, count, observations) =
                abi.decode(report[:224], (bytes32, bytes32, uint64, int256, uint64, uint64, bytes32));
            bytes32 current = configDigest;
            if (config != current) revert ConfigMismatch(config, current);
            uint256 bound = faults;
            if (count < 2 * bound + 1) revert TooFewObservations(count, 2 * bound + 1);
            need = bound + 1;
            if (block.timestamp > uint256(observedAt) + maxAge) {
                revert StaleReport(observedAt, block.timestamp, maxAge);
            }
            if (uint256(observedAt) > block.timestamp + maxFutureSkew) {
                revert FutureReport(observedAt, block.timestamp, maxFutureSkew);
            }
            bytes32 digest = keccak256(abi.encode(config, REPORT, pair, id, median, observedAt, count, observations));
            signed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));
        }
        (,,,,,,, bytes[] memory signatures) =
            abi.decode(report, (bytes32, bytes32, uint64, int256, uint64, uint64, bytes32, bytes[]));
        if (signatures.length < need) revert TooFewSignatures(signatures.length, need);
        // One bit per member index: the members seen so far in this report.
        uint256 seen;
        for (uint256 i = 0; i < signatures.length; ++i) {
            address signer = recover(signed, signatures[i], i);
            uint256 slot = memberSlot[signer];
            if (slot == 0) revert NotMember(signer);
            uint256 bit = 1 << (slot - 1);
            if (seen & bit != 0) revert DuplicateSigner(signer);
            seen |= bit;
        }
    }

    function applyConfig(address[] memory members_, uint64 f_) private {
        uint256 n = members_.length;
        if (n > MAX_MEMBERS) revert TooManyMembers(n, MAX_MEMBERS);
        if (n < 3 * uint256(f_) + 1) revert FaultBoundTooHigh(f_, n);
        for (uint256 i = 0; i < n; ++i) {
            if (members_[i] == address(0)) revert ZeroAddressMember(i);
            if (i > 0 && members_[i] <= members_[i - 1]) revert MembersNotAscending(i);
        }
        address[] storage list = memberList;
        for (uint256 i = 0; i < list.length; ++i) {
            delete memberSlot[list[i]];
        }
        for (uint256 i = 0; i < n; ++i) {
            memberSlot[members_[i]] = i + 1;
        }
        memberList = members_;
        // n <= 256, so f < 86.
        faults = uint32(f_);
        uint64 version = configCount + 1;
        configCount = version;
        bytes32 previous = configDigest;
        bytes32 digest = keccak256(
            abi.encode(DOMAIN, network, block.chainid, address(this), membersDigest(members_), f_)
        );
        configDigest = digest;
        emit ConfigSet(previous, digest, version, members_, f_);
    }

    /// `keccak256(member_1 ‖ … ‖ member_n)`, 20 bytes each (`abi.encodePacked` would pad an
    /// array's addresses to 32).
    function membersDigest(address[] memory members_) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let n := mload(members_)
            let packed := mload(0x40)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                // Each 32-byte store's last 12 bytes are overwritten by the next member (or
                // lie past the 20·n bytes hashed), in memory not yet allocated.
                mstore(add(packed, mul(i, 20)), shl(96, mload(add(members_, mul(add(i, 1), 0x20)))))
            }
            digest := keccak256(packed, mul(n, 20))
        }
    }

    /// The signer of `signed`, or a revert naming what is wrong with signature `index`.
    function recover(bytes32 signed, bytes memory signature, uint256 index) private pure returns (address signer) {
        if (signature.length != 65) revert BadSignatureLength(index);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > HALF_ORDER) revert HighS(index);
        if (v != 27 && v != 28) revert BadV(index);
        signer = ecrecover(signed, v, r, s);
        if (signer == address(0)) revert InvalidSignature(index);
    }
}
