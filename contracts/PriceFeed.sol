// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity =0.8.37;

import {PriceVerifier} from "./PriceVerifier.sol";

/// @title PriceFeed
/// @notice A push feed of one pair: anyone may `update` it with a committed report of the
/// price-oracle network; it keeps the newest verified value, and consumers read it the way they
/// read a Chainlink feed (`AggregatorV3Interface`: `latestRoundData`, `decimals` = 8,
/// `description`).
///
/// A report counts only if the network's `PriceVerifier` accepts it (the current configuration,
/// 2f+1 observations, f+1 member signatures, fresh), it is of this feed's pair, and its time
/// (the median of its observations' times) is later than the held round's: an old report
/// replayed, or the same one twice, is refused.
///
/// Each update is a round of the feed: `roundId` counts from 1; `answer` is the report's
/// median; `updatedAt` = `startedAt` = the report's time, capped at the block's, so that the
/// usual staleness check (`block.timestamp - updatedAt`) measures the age of the data and never
/// underflows. The feed holds no configuration of its own: the verifier's owner rotates the
/// members of every feed of the network at once.
contract PriceFeed {
    /// The network's verifier; its current configuration is this feed's.
    PriceVerifier public immutable verifier;

    /// `keccak256` of the pair's name, e.g. `keccak256("ETH/USD")`: the PAIR word of the report.
    bytes32 public immutable pair;

    string private feedDescription;

    /// One storage slot: an answer is a price × 10⁸ of at most 10⁸ USD, far inside int64.
    struct FeedRound {
        int64 answer;
        uint64 observedAt;
        uint64 updatedAt;
        uint64 reportId;
    }

    uint80 private latest;
    mapping(uint80 => FeedRound) private feedRounds;

    /// Chainlink's event for a new answer.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    error WrongPair(bytes32 got, bytes32 want);
    error NotNewer(uint64 observedAt, uint64 held);
    error NoData();
    error AnswerOutOfRange(int256 median);

    constructor(PriceVerifier verifier_, bytes32 pair_, string memory description_) {
        verifier = verifier_;
        pair = pair_;
        feedDescription = description_;
    }

    /// @notice Verifies `report` and makes its value the feed's newest; reverts (with the
    /// verifier's errors, `WrongPair` or `NotNewer`) otherwise. Returns the new round's id.
    function update(bytes calldata report) external returns (uint80 roundId) {
        (bytes32 reportPair, uint64 id, int256 median, uint64 observedAt) = verifier.verify(report);
        if (reportPair != pair) revert WrongPair(reportPair, pair);
        if (median <= 0 || median > type(int64).max) revert AnswerOutOfRange(median);
        uint64 held = feedRounds[latest].observedAt;
        if (observedAt <= held) revert NotNewer(observedAt, held);
        // The verifier lets a report's time lie up to maxFutureSkew ahead (clocks differ); a
        // consumer's `block.timestamp - updatedAt` must not underflow.
        uint64 updatedAt = observedAt < block.timestamp ? observedAt : uint64(block.timestamp);
        roundId = latest + 1;
        latest = roundId;
        feedRounds[roundId] =
            FeedRound({answer: int64(median), observedAt: observedAt, updatedAt: updatedAt, reportId: id});
        emit AnswerUpdated(median, roundId, updatedAt);
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
        return 2;
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

    /// @notice The report behind a round of the feed: the network's round id (the `prices`
    /// row's `id`) and the report's own time, uncapped (`updatedAt` is it, capped at the block
    /// time of the update).
    function reportOf(uint80 roundId_) external view returns (uint64 reportId, uint64 observedAt) {
        FeedRound memory round = feedRounds[roundId_];
        if (round.observedAt == 0) revert NoData();
        return (round.reportId, round.observedAt);
    }

    function roundData(uint80 roundId_)
        private
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        FeedRound memory round = feedRounds[roundId_];
        if (round.observedAt == 0) revert NoData();
        return (roundId_, round.answer, round.updatedAt, round.updatedAt, roundId_);
    }
}
