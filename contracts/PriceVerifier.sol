// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity =0.8.37;

/// @title PriceVerifier
/// @notice Verifies a report of the price-oracle network: one round's observations, each signed
/// by a distinct member over its own normative digest, at least `quorum` of them, fresh; and
/// takes their median, the value every part of the network computes the same way.
///
/// ```text
/// report      = abi.encode(bytes32 pair, uint64 id, Observation[] observations)
/// Observation = (int256 priceE8, uint64 observedAt, bytes signature)
/// digest      = keccak256(abi.encode(DOMAIN, pair, id, priceE8, observedAt))      per observation
///               DOMAIN: the network's configuration digest (protocol v2), set at deployment
/// signed      = keccak256("\x19Ethereum Signed Message:\n32" ‖ digest), signature r ‖ s ‖ v
/// value       = the prices sorted ascending, the one at index n / 2
/// ```
///
/// The member list, the quorum and the freshness bounds are fixed at deployment: a membership
/// change is a new deployment. A consumer checks `pair`.
contract PriceVerifier {
    /// The first word of every digest: the configuration digest of the network whose reports
    /// this verifier takes (protocol v2: its name, chain, verifier, member set and f), so that
    /// signatures made for another deployment never verify here; `keccak256("price-oracle/v1")`
    /// for a v1 network.
    bytes32 public immutable DOMAIN;

    /// Half the secp256k1 group order: a signature with a larger `s` is a malleable copy (EIP-2).
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// One member's observation in a report.
    struct Observation {
        int256 priceE8;
        uint64 observedAt;
        bytes signature;
    }

    /// The number of valid, distinct member observations a report needs.
    uint256 public immutable quorum;

    /// Seconds the oldest observation of a report may be old (RedStone: 3 minutes).
    uint256 public immutable maxAge;

    /// Seconds an observation may lie ahead of the block (clocks differ; RedStone: 1 minute).
    uint256 public immutable maxFutureSkew;

    /// The number of members, so that `verify` sizes its bitmap without reading storage.
    uint256 private immutable memberCount;

    address[] private memberList;

    /// A member's index in `memberList` plus one; 0 for anyone else.
    mapping(address => uint256) private memberSlot;

    // Deployment.
    error InvalidQuorum(uint256 quorum, uint256 members);
    error ZeroAddressMember(uint256 index);
    error DuplicateMember(address member);

    // Verification: `index` is the position of the observation in the report.
    error BelowQuorum(uint256 got, uint256 need);
    error StaleReport(uint64 oldest, uint256 blockTime, uint256 maxAge);
    error FutureReport(uint64 newest, uint256 blockTime, uint256 maxFutureSkew);
    error BadSignatureLength(uint256 index);
    error HighS(uint256 index);
    error BadV(uint256 index);
    error InvalidSignature(uint256 index);
    error NotMember(address signer);
    error DuplicateSigner(address signer);

    constructor(
        bytes32 domain_,
        address[] memory members_,
        uint256 quorum_,
        uint256 maxAge_,
        uint256 maxFutureSkew_
    ) {
        DOMAIN = domain_;
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
        maxAge = maxAge_;
        maxFutureSkew = maxFutureSkew_;
    }

    /// @notice The members, in deployment order.
    function members() external view returns (address[] memory) {
        return memberList;
    }

    /// @notice Whether `account` is a member.
    function isMember(address account) external view returns (bool) {
        return memberSlot[account] != 0;
    }

    /// @notice Checks a report and returns its round, its value (the median of the observed
    /// prices) and its observations' time range; reverts unless every observation in it is
    /// signed by a distinct member, there are at least `quorum` of them, the oldest is at most
    /// `maxAge` old and none is more than `maxFutureSkew` ahead of the block.
    /// @dev Any bad signature reverts, even when the others would reach the quorum: the relayer
    /// builds the report from rows whose signatures the network has already checked, so junk in
    /// it is a bug or an attack, and a consumer should learn of it rather than pay gas for it.
    function verify(bytes calldata report)
        external
        view
        returns (bytes32 pair, uint64 id, int256 median, uint64 oldest, uint64 newest)
    {
        return _verify(report);
    }

    function _verify(bytes calldata report)
        internal
        view
        returns (bytes32 pair, uint64 id, int256 median, uint64 oldest, uint64 newest)
    {
        Observation[] memory observations;
        (pair, id, observations) = abi.decode(report, (bytes32, uint64, Observation[]));

        // Every observation must count, so too few, or stale ones, are refused before any
        // signature is recovered.
        uint256 count = observations.length;
        if (count < quorum) revert BelowQuorum(count, quorum);
        (oldest, newest) = timeRange(observations);
        if (block.timestamp > uint256(oldest) + maxAge) revert StaleReport(oldest, block.timestamp, maxAge);
        if (uint256(newest) > block.timestamp + maxFutureSkew) {
            revert FutureReport(newest, block.timestamp, maxFutureSkew);
        }

        // One bit per member index: the members seen so far in this report.
        uint256[] memory seen = new uint256[]((memberCount + 255) >> 8);
        int256[] memory prices = new int256[](count);
        for (uint256 i = 0; i < count; ++i) {
            Observation memory observation = observations[i];
            bytes32 digest = keccak256(abi.encode(DOMAIN, pair, id, observation.priceE8, observation.observedAt));
            bytes32 signed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));
            address signer = recover(signed, observation.signature, i);
            uint256 slot = memberSlot[signer];
            if (slot == 0) revert NotMember(signer);
            uint256 index = slot - 1;
            uint256 bit = 1 << (index & 255);
            uint256 word = seen[index >> 8];
            if (word & bit != 0) revert DuplicateSigner(signer);
            seen[index >> 8] = word | bit;
            prices[i] = observation.priceE8;
        }
        median = medianOf(prices);
    }

    /// The oldest and the newest observation time.
    function timeRange(Observation[] memory observations) private pure returns (uint64 oldest, uint64 newest) {
        oldest = type(uint64).max;
        for (uint256 i = 0; i < observations.length; ++i) {
            uint64 observedAt = observations[i].observedAt;
            if (observedAt < oldest) oldest = observedAt;
            if (observedAt > newest) newest = observedAt;
        }
    }

    /// The median rule: sorted ascending (insertion sort: reports hold a handful of prices), the
    /// element at index n / 2.
    function medianOf(int256[] memory prices) private pure returns (int256) {
        uint256 n = prices.length;
        for (uint256 i = 1; i < n; ++i) {
            int256 price = prices[i];
            uint256 j = i;
            while (j > 0 && prices[j - 1] > price) {
                prices[j] = prices[j - 1];
                --j;
            }
            prices[j] = price;
        }
        return prices[n / 2];
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
