// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity =0.8.37;

import {PriceVerifier} from "./PriceVerifier.sol";

/// @title PriceFeed
/// @notice A push feed of one pair: anyone may `update` it with a report of the price-oracle
/// network; it keeps the newest verified value, and consumers read it the way they read a
/// Chainlink feed (`AggregatorV3Interface`: `latestRoundData`, `decimals` = 8, `description`).
///
/// A report counts only if `PriceVerifier` accepts it (distinct members, the quorum, fresh), it
/// is of this feed's pair, and its newest observation is newer than the one the feed holds:
/// an old report replayed, or the same one twice, is refused.
///
/// Each update is a round of the feed: `roundId` counts from 1; `answer` is the report's
/// median; `startedAt` its oldest observation and `updatedAt` its newest (unix seconds), so the
/// usual staleness check (`block.timestamp - updatedAt`) measures the age of the data, not of
/// the transaction that pushed it.
contract PriceFeed is PriceVerifier {
    /// `keccak256` of the pair's name, e.g. `keccak256("ETH/USD")`: the PAIR word of the digest.
    bytes32 public immutable pair;

    string private feedDescription;

    /// One storage slot: an answer is a price × 10⁸ of at most 10⁸ USD, far inside int64.
    struct FeedRound {
        int64 answer;
        uint64 startedAt;
        uint64 updatedAt;
        uint64 reportId;
    }

    uint80 private latest;
    mapping(uint80 => FeedRound) private feedRounds;

    /// Chainlink's event for a new answer.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    error WrongPair(bytes32 got, bytes32 want);
    error NotNewer(uint64 newest, uint64 held);
    error NoData();
    error AnswerOutOfRange(int256 median);

    constructor(
        bytes32 domain_,
        address[] memory members_,
        uint256 quorum_,
        uint256 maxAge_,
        uint256 maxFutureSkew_,
        bytes32 pair_,
        string memory description_
    ) PriceVerifier(domain_, members_, quorum_, maxAge_, maxFutureSkew_) {
        pair = pair_;
        feedDescription = description_;
    }

    /// @notice Verifies `report` and makes its value the feed's newest; reverts (with the
    /// verifier's errors, `WrongPair` or `NotNewer`) otherwise. Returns the new round's id.
    function update(bytes calldata report) external returns (uint80 roundId) {
        (bytes32 reportPair, uint64 id, int256 median, uint64 oldest, uint64 newest) = _verify(report);
        if (reportPair != pair) revert WrongPair(reportPair, pair);
        if (median <= 0 || median > type(int64).max) revert AnswerOutOfRange(median);
        uint64 held = feedRounds[latest].updatedAt;
        if (newest <= held) revert NotNewer(newest, held);
        roundId = latest + 1;
        latest = roundId;
        feedRounds[roundId] =
            FeedRound({answer: int64(median), startedAt: oldest, updatedAt: newest, reportId: id});
        emit AnswerUpdated(median, roundId, newest);
    }

    /// @notice The price's decimals: the answer is the USD price × 10⁸.
    function decimals() external pure returns (uint8) {
        return 8;
    }

    /// @notice E.g. "ETH / USD".
    function description() external view returns (string memory) {
        return feedDescription;
    }

    /// @notice The version of this feed's interface.
    function version() external pure returns (uint256) {
        return 1;
    }

    /// @notice A past round of the feed.
    function getRoundData(uint80 roundId_)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return roundData(roundId_);
    }

    /// @notice The newest round; reverts `NoData` before the first update.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return roundData(latest);
    }

    /// @notice The report id (the network's round id) behind a round of the feed.
    function reportIdOf(uint80 roundId_) external view returns (uint64) {
        return feedRounds[roundId_].reportId;
    }

    function roundData(uint80 roundId_)
        private
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        FeedRound memory round = feedRounds[roundId_];
        if (round.updatedAt == 0) revert NoData();
        return (roundId_, round.answer, round.startedAt, round.updatedAt, roundId_);
    }
}
