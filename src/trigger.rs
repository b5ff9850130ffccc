//! When a round starts. A node observes each of its pairs every `--observe-interval`; a round of
//! a pair is due when the node's observation is `--deviation` or more from the pair's newest
//! verified value (the market moved), or when that value is about to be `--heartbeat` old.
//! Everything here is pure: the node passes what it observes, what it hears and `now`.
//!
//! **Who starts.** A move is seen by every member at about the same time, and must not start a
//! round at each. The members are ranked per pair and per verified value by
//! `keccak256(keccak256(pair) ‖ be8(newest verified id) ‖ address)` ([`score`]), lowest first.
//! The first starts as soon as its own observation says a round is due. The member ranked `r`
//! starts only after `r` observe intervals and a half more have passed since its own
//! observation first said so, and only if it has heard no round meanwhile that it would join
//! (one whose origin's price is within `--max-deviation` of its own observation): by then
//! every member ahead of it has observed at least once. So a move costs one round while the
//! first member is up, two at worst, at any network size; a member that is down costs the
//! next one a little time. The ranking changes with every verified value, so no member is
//! always first.
//!
//! **A member that sees another market** (a broken or lying source) would otherwise start a
//! round at every observation: its view stays `--deviation` from the verified value, which its
//! rounds do not move (their value is the median of every member's observation, or nobody joins
//! them). So after starting a round a node remembers the view it started from, and starts again
//! on a move only once its view has moved `--deviation` from there; the heartbeat still applies.
//! The memory is dropped once its view is back near the verified value.
//!
//! **The heartbeat** is due one observe interval early, so that with the defaults a pair gets a
//! verified value at least every `--heartbeat` while its first-ranked member is up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, keccak256};
use rust_decimal::Decimal;

use crate::membership::Members;
use crate::pair::Pair;
use crate::price::UsdPrice;
use crate::signed::ROUND_WINDOW;

/// When rounds start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// How often each pair is observed (`--observe-interval`).
    pub observe_interval: Duration,
    /// A move this large from the newest verified value starts a round (`--deviation`).
    pub deviation: Decimal,
    /// A verified value this old starts a round however flat the market (`--heartbeat`).
    pub heartbeat: Duration,
    /// A round whose origin's price is farther than this from ours is one we would not join
    /// (`--max-deviation`), so it does not stand for our move.
    pub max_deviation: Decimal,
}

crate::labels::label_values! {
    /// Why a round started, as the `trigger` label of `rounds_started` names it.
    pub enum Reason {
        /// The market moved `--deviation` from the newest verified value.
        Deviation => "deviation",
        /// The newest verified value is about to be `--heartbeat` old, or there is none.
        Heartbeat => "heartbeat",
        /// Asked for (`RunningNode::originate_now`): tests, benchmarks.
        Requested => "requested",
    }
}

/// The newest verified value of a pair: its round's id and time, and its median.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub id: u64,
    /// The round's time (its origin's observation), unix seconds.
    pub observed_at: u64,
    pub value: UsdPrice,
}

/// What an observation means for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a round now.
    Start(Reason),
    /// A round is due, and a member ranked ahead of this one has the first go until `until`.
    Wait { rank: usize, until: Instant },
    /// A round is due, and one this node would join is under way.
    Covered,
    /// No round is due (or this node is not a member, whose rounds would not count).
    Quiet,
}

/// A round heard for a pair (or started by this node) since its newest verified value.
#[derive(Debug, Clone, Copy)]
struct Heard {
    price: UsdPrice,
    at: Instant,
}

#[derive(Debug, Default)]
struct PairState {
    verified: Option<Verified>,
    heard: Option<Heard>,
    /// When this node's turn to start comes, once a round is due by its own observation.
    due: Option<Instant>,
    /// The view this node last started a round from, while it stays apart from the verified
    /// value.
    anchor: Option<UsdPrice>,
}

/// The round triggers of one node, for every pair.
#[derive(Debug)]
pub struct Triggers {
    settings: TriggerSettings,
    me: Address,
    pairs: HashMap<Pair, PairState>,
}

impl Triggers {
    pub fn new(settings: TriggerSettings, me: Address) -> Self {
        Self {
            settings,
            me,
            pairs: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &TriggerSettings {
        &self.settings
    }

    /// The newest verified value of `pair` this node knows of.
    pub fn verified_value(&self, pair: Pair) -> Option<Verified> {
        self.pairs.get(&pair).and_then(|state| state.verified)
    }

    /// A round of `pair` reached its quorum (or was found stored at start). Older values than
    /// the newest known are ignored. The rounds heard before it no longer stand for a move:
    /// the next move is measured from this value.
    pub fn verified(&mut self, pair: Pair, verified: Verified) {
        let state = self.pairs.entry(pair).or_default();
        let newer = state.verified.is_none_or(|known| {
            (verified.observed_at, verified.id) > (known.observed_at, known.id)
        });
        if !newer {
            return;
        }
        state.verified = Some(verified);
        state.due = None;
        state.heard = None;
    }

    /// A peer started round `id` of `pair`, its own price `price`. A round already verified
    /// (heard again, or late) is not one under way.
    pub fn heard(&mut self, pair: Pair, id: u64, price: UsdPrice, now: Instant) {
        let state = self.pairs.entry(pair).or_default();
        if state.verified.is_some_and(|known| known.id >= id) {
            return;
        }
        state.heard = Some(Heard { price, at: now });
    }

    /// This node observed `ours` for `pair` at `now` (`wall` in unix seconds): whether it starts
    /// a round. `requested` starts one whatever the market did.
    pub fn observed(
        &mut self,
        pair: Pair,
        ours: UsdPrice,
        now: Instant,
        wall: u64,
        members: &Members,
        requested: bool,
    ) -> Decision {
        let settings = self.settings;
        let me = self.me;
        let state = self.pairs.entry(pair).or_default();
        let reason = if requested {
            Some(Reason::Requested)
        } else {
            state.due_reason(ours, wall, &settings)
        };
        let Some(reason) = reason else {
            state.due = None;
            return Decision::Quiet;
        };
        if reason != Reason::Requested {
            if state.joinable_round(ours, now, &settings) {
                state.due = None;
                return Decision::Covered;
            }
            let last_id = state.verified.map_or(0, |known| known.id);
            let Some(rank) = starter_rank(pair, last_id, &me, members, wall) else {
                return Decision::Quiet;
            };
            let until = *state
                .due
                .get_or_insert_with(|| now + start_wait(rank, settings.observe_interval));
            if now < until {
                return Decision::Wait { rank, until };
            }
        }
        state.due = None;
        state.anchor = Some(ours);
        // Our own round stands for the move (and the heartbeat) while it runs.
        state.heard = Some(Heard {
            price: ours,
            at: now,
        });
        Decision::Start(reason)
    }
}

impl PairState {
    /// Why a round is due by this observation, if it is.
    fn due_reason(
        &mut self,
        ours: UsdPrice,
        wall: u64,
        settings: &TriggerSettings,
    ) -> Option<Reason> {
        let Some(verified) = self.verified else {
            return Some(Reason::Heartbeat);
        };
        let apart = ours.relative_deviation(verified.value) >= settings.deviation;
        if !apart {
            self.anchor = None;
        }
        let moved_on = self
            .anchor
            .is_none_or(|anchor| ours.relative_deviation(anchor) >= settings.deviation);
        let heartbeat_at = verified
            .observed_at
            .saturating_add(settings.heartbeat.as_secs())
            .saturating_sub(settings.observe_interval.as_secs());
        if apart && moved_on {
            Some(Reason::Deviation)
        } else if wall >= heartbeat_at {
            Some(Reason::Heartbeat)
        } else {
            None
        }
    }

    /// Whether a round this node would join is under way: heard within the round window, its
    /// origin's price near our view.
    fn joinable_round(&self, ours: UsdPrice, now: Instant, settings: &TriggerSettings) -> bool {
        self.heard.is_some_and(|heard| {
            now.saturating_duration_since(heard.at) <= ROUND_WINDOW
                && heard.price.relative_deviation(ours) <= settings.max_deviation
        })
    }
}

/// How long the member ranked `rank` lets those ahead of it start: nothing for the first;
/// `rank` observe intervals and a half for the others, so that each member ahead has observed
/// at least once (and its round has reached us) before this one's turn.
pub fn start_wait(rank: usize, observe_interval: Duration) -> Duration {
    if rank == 0 {
        return Duration::ZERO;
    }
    let intervals = u32::try_from(rank).unwrap_or(u32::MAX);
    observe_interval
        .saturating_mul(intervals)
        .saturating_add(observe_interval / 2)
}

/// The member's score for starting the next round of `pair` after round `last_id`: lower goes
/// first. `keccak256(keccak256(pair) ‖ be8(last_id) ‖ address)`.
pub fn score(pair: Pair, last_id: u64, member: &Address) -> B256 {
    let mut input = [0u8; 60];
    input[..32].copy_from_slice(pair.hash().as_slice());
    input[32..40].copy_from_slice(&last_id.to_be_bytes());
    input[40..].copy_from_slice(member.as_slice());
    keccak256(input)
}

/// `me`'s place among the members who may start the next round of `pair` (0 = first), or
/// `None` when `me` does not count at `wall`. Without a member list (a node that checks no
/// membership) everyone is first.
pub fn starter_rank(
    pair: Pair,
    last_id: u64,
    me: &Address,
    members: &Members,
    wall: u64,
) -> Option<usize> {
    let Some(list) = members.counting_at(wall) else {
        return Some(0);
    };
    if !list.contains(me) {
        return None;
    }
    let mine = score(pair, last_id, me);
    Some(
        list.iter()
            .filter(|member| *member != me && (score(pair, last_id, member), *member) < (mine, me))
            .count(),
    )
}

/// The whole starting order of the next round of `pair` after round `last_id`.
pub fn starter_ranking(pair: Pair, last_id: u64, members: &[Address]) -> Vec<Address> {
    crate::cosign::committee::by_score(
        members
            .iter()
            .map(|member| (score(pair, last_id, member), *member)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::LazyLock;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(15);
    const WALL: u64 = 1_800_000_000;
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);

    fn usd(text: &str) -> UsdPrice {
        UsdPrice::parse_quote(text).unwrap()
    }

    /// `seconds` after the test's start, on the monotonic clock.
    fn at(seconds: u64) -> Instant {
        *START + Duration::from_secs(seconds)
    }

    fn settings() -> TriggerSettings {
        TriggerSettings {
            observe_interval: INTERVAL,
            deviation: Decimal::new(5, 3),
            heartbeat: Duration::from_secs(600),
            max_deviation: Decimal::new(1, 2),
        }
    }

    fn addresses(n: u8) -> Vec<Address> {
        (1..=n).map(Address::repeat_byte).collect()
    }

    fn listed(list: &[Address]) -> Members {
        Members::for_relay(Some(list.iter().copied().collect::<HashSet<_>>()))
    }

    /// A value verified in round `id`, observed at `seconds` into the test.
    fn value(id: u64, seconds: u64, price: &str) -> Verified {
        Verified {
            id,
            observed_at: WALL + seconds,
            value: usd(price),
        }
    }

    /// One member of a five-member network, its value of ETH/USD verified in round 7 at 0 s.
    struct Member {
        triggers: Triggers,
        members: Members,
    }

    impl Member {
        /// The member ranked `rank` to start the round after round 7.
        fn ranked(rank: usize) -> Self {
            Self::new(starter_ranking(Pair::EthUsd, 7, &addresses(5))[rank])
        }

        fn new(me: Address) -> Self {
            let mut triggers = Triggers::new(settings(), me);
            triggers.verified(Pair::EthUsd, value(7, 0, "3000"));
            Self {
                triggers,
                members: listed(&addresses(5)),
            }
        }

        /// Observes `price` at `seconds` into the test.
        fn observe(&mut self, price: &str, seconds: u64) -> Decision {
            let members = &self.members;
            self.triggers.observed(
                Pair::EthUsd,
                usd(price),
                at(seconds),
                WALL + seconds,
                members,
                false,
            )
        }
    }

    #[test]
    fn a_flat_market_starts_nothing_until_the_heartbeat() {
        let mut first = Member::ranked(0);
        assert_eq!(first.observe("3014.99", 10), Decision::Quiet);
        // Due one observe interval before the heartbeat ends.
        assert_eq!(first.observe("3000", 584), Decision::Quiet);
        assert_eq!(
            first.observe("3000", 585),
            Decision::Start(Reason::Heartbeat)
        );
    }

    #[test]
    fn a_move_starts_at_the_first_ranked_member_at_once_and_the_others_later() {
        let mut first = Member::ranked(0);
        assert_eq!(
            first.observe("3015", 20),
            Decision::Start(Reason::Deviation)
        );
        let mut third = Member::ranked(2);
        let wait = start_wait(2, INTERVAL);
        assert_eq!(wait, Duration::from_millis(37_500));
        let until = at(20) + wait;
        assert_eq!(third.observe("2985", 20), Decision::Wait { rank: 2, until });
        // Its turn counts from its first observation of the move, not from later ones.
        assert_eq!(third.observe("2985", 35), Decision::Wait { rank: 2, until });
        assert_eq!(third.observe("2985", 50), Decision::Wait { rank: 2, until });
        assert_eq!(
            third.observe("2985", 65),
            Decision::Start(Reason::Deviation)
        );
        // A move that ends before the turn comes resets it.
        let mut second = Member::ranked(1);
        assert!(matches!(second.observe("3016", 20), Decision::Wait { .. }));
        assert_eq!(second.observe("3010", 35), Decision::Quiet);
        assert_eq!(
            second.observe("3016", 50),
            Decision::Wait {
                rank: 1,
                until: at(50) + start_wait(1, INTERVAL)
            }
        );
    }

    #[test]
    fn a_round_heard_in_time_stands_for_the_move_unless_we_would_not_join_it() {
        let mut second = Member::ranked(1);
        assert!(matches!(
            second.observe("3060", 20),
            Decision::Wait { rank: 1, .. }
        ));
        // A liar's round, far from our view: not ours to trust with the move.
        second.triggers.heard(Pair::EthUsd, 8, usd("1500"), at(21));
        assert_eq!(
            second.observe("3060", 43),
            Decision::Start(Reason::Deviation)
        );
        // The first member's round, near our view: covered while it runs.
        let mut third = Member::ranked(2);
        third.triggers.heard(Pair::EthUsd, 9, usd("3058"), at(20));
        assert_eq!(third.observe("3060", 20), Decision::Covered);
        assert_eq!(third.observe("3060", 50), Decision::Covered);
        // A round that never verified ends with the round window: the move is due again.
        assert!(matches!(
            third.observe("3060", 51),
            Decision::Wait { rank: 2, .. }
        ));
        // Verified: the move is done, and the rounds heard before no longer count.
        third.triggers.verified(Pair::EthUsd, value(9, 20, "3059"));
        assert_eq!(third.observe("3060", 52), Decision::Quiet);
        // A round heard late, older than the value, is not one under way.
        third.triggers.heard(Pair::EthUsd, 8, usd("3100"), at(53));
        assert!(matches!(
            third.observe("3100", 54),
            Decision::Wait { .. } | Decision::Start(_)
        ));
    }

    #[test]
    fn a_member_apart_from_the_network_starts_once_per_move_of_its_own_view() {
        let mut liar = Member::ranked(0);
        assert_eq!(liar.observe("1500", 15), Decision::Start(Reason::Deviation));
        // Nobody joined; its view has not moved: nothing until it moves or the heartbeat.
        for seconds in [30, 46, 60, 300] {
            assert_eq!(liar.observe("1500", seconds), Decision::Quiet);
            assert_eq!(liar.observe("1506", seconds), Decision::Quiet);
        }
        assert_eq!(
            liar.observe("1510", 310),
            Decision::Start(Reason::Deviation)
        );
        assert_eq!(liar.observe("1510", 341), Decision::Quiet);
        assert_eq!(
            liar.observe("1510", 585),
            Decision::Start(Reason::Heartbeat)
        );
        // Its heartbeat round does not verify either: one more per round window, no more.
        assert_eq!(liar.observe("1510", 600), Decision::Covered);
        assert_eq!(
            liar.observe("1510", 616),
            Decision::Start(Reason::Heartbeat)
        );
        // The others' heartbeat round verifies; back near the network's value, it is an
        // ordinary member again.
        liar.triggers.verified(Pair::EthUsd, value(8, 586, "3000"));
        assert_eq!(liar.observe("1510", 620), Decision::Quiet);
        assert_eq!(liar.observe("3001", 635), Decision::Quiet);
        assert!(matches!(
            liar.observe("3016", 650),
            Decision::Start(Reason::Deviation) | Decision::Wait { .. }
        ));
    }

    #[test]
    fn an_honest_member_whose_round_verified_follows_the_next_move() {
        let mut first = Member::ranked(0);
        let me = first.triggers.me;
        assert_eq!(
            first.observe("3060", 15),
            Decision::Start(Reason::Deviation)
        );
        first.triggers.verified(Pair::EthUsd, value(8, 15, "3059"));
        // Its view agrees with the new value: no longer apart, it follows the market.
        assert_eq!(first.observe("3061", 30), Decision::Quiet);
        // 0.52 % from the value, though only 0.49 % from the view it last started from.
        let rank = starter_ranking(Pair::EthUsd, 8, &addresses(5))
            .iter()
            .position(|member| *member == me)
            .unwrap();
        let expected = if rank == 0 {
            Decision::Start(Reason::Deviation)
        } else {
            Decision::Wait {
                rank,
                until: at(45) + start_wait(rank, INTERVAL),
            }
        };
        assert_eq!(first.observe("3075", 45), expected);
    }

    #[test]
    fn requested_rounds_start_at_once_and_outsiders_never_start() {
        let mut last = Member::ranked(4);
        let members = listed(&addresses(5));
        assert_eq!(
            last.triggers
                .observed(Pair::EthUsd, usd("3000"), at(1), WALL + 1, &members, true),
            Decision::Start(Reason::Requested)
        );
        let mut outsider = Member::new(Address::repeat_byte(0xee));
        assert_eq!(outsider.observe("3100", 1), Decision::Quiet);
        // No value yet (a new network): a heartbeat round, the first-ranked member first.
        let first = starter_ranking(Pair::EthUsd, 0, &addresses(5))[0];
        let mut fresh = Triggers::new(settings(), first);
        assert_eq!(
            fresh.observed(Pair::EthUsd, usd("3000"), at(0), WALL, &members, false),
            Decision::Start(Reason::Heartbeat)
        );
        // Without a member list, everyone is first.
        let mut open = Triggers::new(settings(), Address::repeat_byte(0xee));
        assert_eq!(
            open.observed(
                Pair::EthUsd,
                usd("3000"),
                at(0),
                WALL,
                &Members::open(),
                false
            ),
            Decision::Start(Reason::Heartbeat)
        );
    }

    #[test]
    fn older_values_do_not_replace_newer_ones() {
        let mut member = Member::ranked(0);
        member.triggers.verified(Pair::EthUsd, value(6, 0, "2000"));
        member.triggers.verified(
            Pair::EthUsd,
            Verified {
                observed_at: WALL - 1,
                ..value(9, 0, "2000")
            },
        );
        assert_eq!(
            member.triggers.verified_value(Pair::EthUsd),
            Some(value(7, 0, "3000"))
        );
    }

    #[test]
    fn the_ranking_is_a_permutation_that_changes_with_the_round() {
        let list = addresses(25);
        let after_7 = starter_ranking(Pair::EthUsd, 7, &list);
        let after_8 = starter_ranking(Pair::EthUsd, 8, &list);
        assert_eq!(after_7.len(), 25);
        assert_ne!(after_7, after_8);
        assert_ne!(after_7, starter_ranking(Pair::BtcUsd, 7, &list));
        let members = listed(&list);
        for (rank, member) in after_7.iter().enumerate() {
            assert_eq!(
                starter_rank(Pair::EthUsd, 7, member, &members, WALL),
                Some(rank)
            );
        }
    }
}
