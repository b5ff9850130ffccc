// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity =0.8.37;

/// @title PriceVerifier
/// @notice Verifies a price report of the price-oracle network: the signed fields of one price and
/// at least `quorum` EIP-191 signatures of distinct members over its normative digest.
///
/// ```text
/// report = abi.encode(bytes32 pair, uint64 id, int256 price_e8, uint64 observed_at, bytes[] signatures)
/// digest = keccak256(abi.encode(DOMAIN, pair, id, price_e8, observed_at))
/// signed = keccak256("\x19Ethereum Signed Message:\n32" ‖ digest), each signature r ‖ s ‖ v
/// ```
///
/// The member list and the quorum are fixed at deployment: a membership change is a new deployment.
/// The contract checks signatures only; a consumer checks `pair` and the freshness of `observedAt`.
contract PriceVerifier {
    /// `keccak256("price-oracle/v1")`, the first word of every digest.
    bytes32 public constant DOMAIN = keccak256("price-oracle/v1");

    /// Half the secp256k1 group order: a signature with a larger `s` is a malleable copy (EIP-2).
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// The number of valid, distinct member signatures a report needs.
    uint256 public immutable quorum;

    /// The number of members, so that `verify` sizes its bitmap without reading storage.
    uint256 private immutable memberCount;

    address[] private memberList;

    /// A member's index in `memberList` plus one; 0 for anyone else.
    mapping(address => uint256) private memberSlot;

    // Deployment.
    error InvalidQuorum(uint256 quorum, uint256 members);
    error ZeroAddressMember(uint256 index);
    error DuplicateMember(address member);

    // Verification: `index` is the position of the signature in the report.
    error BadSignatureLength(uint256 index);
    error HighS(uint256 index);
    error BadV(uint256 index);
    error InvalidSignature(uint256 index);
    error NotMember(address signer);
    error DuplicateSigner(address signer);
    error BelowQuorum(uint256 got, uint256 need);

    constructor(address[] memory members_, uint256 quorum_) {
        if (quorum_ == 0 || quorum_ > members_.length) {
            revert InvalidQuorum(quorum_, members_.length);
        }
        for (uint256 i = 0; i < members_.length; ++i) {
            address member = members_[i];
            if (member == address(0)) revert ZeroAddressMember(i);
            if (memberSlot[member] != 0) revert DuplicateMember(member);
            memberSlot[member] = i + 1;
        }
        memberList = members_;
        memberCount = members_.length;
        quorum = quorum_;
    }

    /// @notice The members, in deployment order.
    function members() external view returns (address[] memory) {
        return memberList;
    }

    /// @notice Whether `account` is a member.
    function isMember(address account) external view returns (bool) {
        return memberSlot[account] != 0;
    }

    /// @notice Checks a report and returns its signed fields; reverts unless every signature in it
    /// is a valid signature of a distinct member and there are at least `quorum` of them.
    /// @dev Any bad signature reverts, even when the others would reach the quorum: the relayer
    /// builds the report from rows whose signatures the network has already checked, so junk in
    /// it is a bug or an attack, and a consumer should learn of it rather than pay gas for it.
    function verify(bytes calldata report)
        external
        view
        returns (bytes32 pair, int256 priceE8, uint64 observedAt, uint64 id)
    {
        bytes[] memory signatures;
        (pair, id, priceE8, observedAt, signatures) = abi.decode(report, (bytes32, uint64, int256, uint64, bytes[]));

        // Every signature must count, so too few signatures can be refused before any recovery.
        uint256 count = signatures.length;
        if (count < quorum) revert BelowQuorum(count, quorum);

        bytes32 digest = keccak256(abi.encode(DOMAIN, pair, id, priceE8, observedAt));
        bytes32 signed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));

        // One bit per member index: the members seen so far in this report.
        uint256[] memory seen = new uint256[]((memberCount + 255) >> 8);
        for (uint256 i = 0; i < count; ++i) {
            address signer = recover(signed, signatures[i], i);
            uint256 slot = memberSlot[signer];
            if (slot == 0) revert NotMember(signer);
            uint256 index = slot - 1;
            uint256 bit = 1 << (index & 255);
            uint256 word = seen[index >> 8];
            if (word & bit != 0) revert DuplicateSigner(signer);
            seen[index >> 8] = word | bit;
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
