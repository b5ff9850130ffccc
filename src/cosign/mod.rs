//! Co-signing: whether, and when, this node signs a peer's price. Everything that decides it is
//! here, as one state machine with no IO and no clock: the node feeds it what it hears and
//! observes (with `now`), and carries out the [`Action`]s it returns.
//!
//! - **Who**: the members ranked first for the price ([`committee`]) sign at once; the others
//!   get a fallback turn later, and use it only if the price still lacks its quorum then.
//! - **What**: its own observation of the pair, signed under the round — the round's value is
//!   the median of its members' observations, not the origin's price. It takes part only in a
//!   round whose origin saw about what it saw: the origin's price within `--max-deviation` of
//!   its own observation, the two taken within [`COSIGN_WINDOW`] of each other. So a member whose
//!   source is far off starts rounds nobody joins, and stays out of the others'.
//! - **With which observation**: one made for the round — no earlier than the origin's (the same
//!   second counts) and still fresh. A node observes every `--observe-interval`, but its last
//!   observation may predate the market move that started the round: judged by it, the round
//!   would be refused, or its median would miss the move. One of the origin's own second may
//!   predate it too (observations count whole seconds): it may sign, but not refuse; a price
//!   it disagrees with waits for the next observation.
//! - **When ours is missing** (or older than the round): the price waits (a bounded queue) for
//!   the next observation, which the node is asked to make at once ([`Action::Observe`]).
//!
//! A price already stored, or already signed by this node, is never acted on again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use rust_decimal::Decimal;

use crate::committee::{self, CommitteeSettings};
use crate::membership::Members;
use crate::pair::Pair;
use crate::pool::Pool;
use crate::price::UsdPrice;
use crate::signed::{self, PriceData};

/// How far apart in time a peer's observation and ours may be for ours to judge it — the round
/// window itself: ETH/USD moves, and a ten-minute-old observation says little about a price
/// seen now.
pub const COSIGN_WINDOW: Duration = crate::signed::ROUND_WINDOW;

/// How the node co-signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CosignSettings {
    /// A peer's price farther than this from our observation is not signed (`--max-deviation`).
    pub max_deviation: Decimal,
    /// Prices waiting for our observation, and (separately) for our fallback turn; past it new
    /// ones are dropped (`--max-cosign-queue`).
    pub max_queue: usize,
    /// Who signs at once, and when the others step in.
    pub committee: CommitteeSettings,
}

/// A price this node fetched.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub price: UsdPrice,
    /// When, on the wall clock: compared with peers' `observed_at`.
    pub at: SystemTime,
    /// When, on the monotonic clock: its age here cannot jump with the wall clock.
    pub fetched: Instant,
}

impl Observation {
    /// What this node signs of it: the price and the whole second it was fetched in.
    pub fn signed(&self) -> signed::Observation {
        signed::Observation {
            price: self.price,
            observed_at: crate::time::unix_seconds(self.at),
        }
    }
}

/// What the node is to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Sign this node's own observation under the round of this price, and publish it.
    Sign(PriceData, signed::Observation),
    /// Observe the prices' pairs now: peers' prices wait for it.
    Observe,
    /// Not signed, and why.
    Decline(PriceData, Declined),
    /// The queue of prices waiting for an observation or a turn is full: this one is dropped.
    QueueFull(PriceData),
    /// This node's fallback turn on a price came due.
    Turn(PriceData, FallbackOutcome),
}

/// Why this node does not sign a peer's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Declined {
    /// Observed too long before or after ours to be judged by it.
    Stale,
    /// Farther from our observation than `--max-deviation`.
    Deviates { deviation: Decimal, ours: UsdPrice },
}

impl Declined {
    pub fn reason(&self) -> CosignRefusal {
        match self {
            Self::Stale => CosignRefusal::Stale,
            Self::Deviates { .. } => CosignRefusal::Deviation,
        }
    }
}

crate::labels::label_values! {
    /// Why a peer's price went unsigned, as the `reason` label of `prices_refused` names it.
    pub enum CosignRefusal {
        Stale => "stale",
        Deviation => "deviation",
    }
}

crate::labels::label_values! {
    /// What a fallback turn came to, as the `kind` label of `cosign_fallbacks` names it.
    pub enum FallbackOutcome {
        /// The price still lacked its quorum: this node judged it.
        SteppedIn => "stepped_in",
        /// The committee had done it.
        NotNeeded => "not_needed",
    }
}

/// The co-signing state of one node.
#[derive(Debug)]
pub struct Cosigning {
    settings: CosignSettings,
    me: Address,
    latest: HashMap<Pair, Observation>,
    /// Peers' prices waiting for this node's next observation of their pair.
    awaiting: Vec<PriceData>,
    /// Peers' prices this node signs only if they still lack a quorum at its turn; by due
    /// time, the counter keeping turns due at one instant apart.
    turns: BTreeMap<(Instant, u64), PriceData>,
    next_turn: u64,
}

impl Cosigning {
    pub fn new(settings: CosignSettings, me: Address) -> Self {
        Self {
            settings,
            me,
            latest: HashMap::new(),
            awaiting: Vec::new(),
            turns: BTreeMap::new(),
            next_turn: 0,
        }
    }

    /// Our latest observation of `pair`.
    pub fn latest(&self, pair: Pair) -> Option<Observation> {
        self.latest.get(&pair).copied()
    }

    /// When we last observed any pair.
    pub fn last_observed(&self) -> Option<Instant> {
        self.latest.values().map(|ours| ours.fetched).max()
    }

    /// When the earliest fallback turn is due.
    pub fn next_turn_due(&self) -> Option<Instant> {
        self.turns.keys().next().map(|(due, _)| *due)
    }

    /// A peer's price was heard (and the pool took it). On its committee, this node judges it
    /// now; otherwise it gets a fallback turn; a node that is not a member, or the origin, has
    /// no part.
    pub fn heard(
        &mut self,
        data: PriceData,
        members: &Members,
        pool: &Pool,
        now: Instant,
    ) -> Vec<Action> {
        // A round of another configuration (another network, member set or f) would not
        // count here: this node signs nothing for it.
        if data.origin == self.me
            || !members.is_member(&data.origin)
            || members
                .config_digest()
                .is_some_and(|config| config != data.config)
        {
            return Vec::new();
        }
        let wait = match members.counting_at(data.observed_at) {
            // No list to draw a committee from (an open relay's view): everyone signs at once.
            None => Some(Duration::ZERO),
            Some(list) => committee::rank_of(data.id, &data.origin, &self.me, &list)
                .map(|rank| self.settings.committee.wait(rank, members.fault_bound())),
        };
        match wait {
            None => Vec::new(),
            Some(wait) if wait.is_zero() => self.judge_now(data, pool, now).into_iter().collect(),
            Some(_) if self.turns.len() >= self.settings.max_queue => {
                vec![Action::QueueFull(data)]
            }
            Some(wait) => {
                self.turns.insert((now + wait, self.next_turn), data);
                self.next_turn = self.next_turn.wrapping_add(1);
                Vec::new()
            }
        }
    }

    /// This node's fallback turns due by `now`, earliest first: it judges the prices still
    /// short of their quorum.
    pub fn take_turns(&mut self, pool: &Pool, now: Instant) -> Vec<Action> {
        let later = self.turns.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut self.turns, later);
        let mut actions = Vec::new();
        for data in due.into_values() {
            let round = data.round();
            if pool.is_stored(data.id)
                || pool.has_quorum(&round)
                || pool.is_verified(&round)
                || pool.origin_equivocated(&round)
            {
                actions.push(Action::Turn(data, FallbackOutcome::NotNeeded));
                continue;
            }
            actions.push(Action::Turn(data, FallbackOutcome::SteppedIn));
            actions.extend(self.judge_now(data, pool, now));
        }
        actions
    }

    /// A new observation of `pair`: the prices of that pair that waited for it are judged.
    pub fn observed(&mut self, pair: Pair, ours: Observation, pool: &Pool) -> Vec<Action> {
        self.latest.insert(pair, ours);
        self.take_awaiting(pair)
            .into_iter()
            .filter(|data| !self.settled(data, pool))
            .map(|data| self.decide(&data, ours))
            .collect()
    }

    /// The observation of `pair` failed: the prices that waited for it cannot be judged, and go
    /// unsigned by us. Returns how many.
    pub fn observation_failed(&mut self, pair: Pair) -> usize {
        self.take_awaiting(pair).len()
    }

    /// Judges `data` against our observation of its pair made for the round, or queues it for
    /// the next one.
    fn judge_now(&mut self, data: PriceData, pool: &Pool, now: Instant) -> Option<Action> {
        if self.settled(&data, pool) {
            return None;
        }
        let fresh = self.latest(data.pair).filter(|ours| {
            now.saturating_duration_since(ours.fetched) <= COSIGN_WINDOW
                && ours.signed().observed_at >= data.observed_at
        });
        Some(match fresh {
            Some(ours) => match self.decide(&data, ours) {
                // Signed observations count whole seconds: ours of the origin's own second may
                // still predate the move that started the round. Disagreeing with it is not
                // final; the price waits for the next observation, made at once (and after the
                // origin's, as we heard its price), which `observed` decides by.
                Action::Decline(_, Declined::Deviates { .. })
                    if ours.signed().observed_at == data.observed_at
                        && self.awaiting.len() < self.settings.max_queue =>
                {
                    self.awaiting.push(data);
                    Action::Observe
                }
                decided => decided,
            },
            None if self.awaiting.len() >= self.settings.max_queue => Action::QueueFull(data),
            None => {
                self.awaiting.push(data);
                Action::Observe
            }
        })
    }

    /// Whether there is nothing left for this node to do on the price: stored, signed by us, or
    /// ended by its origin's equivocation.
    fn settled(&self, data: &PriceData, pool: &Pool) -> bool {
        let round = data.round();
        pool.is_stored(data.id)
            || pool.has_observed(&round, &self.me)
            || pool.origin_equivocated(&round)
    }

    fn take_awaiting(&mut self, pair: Pair) -> Vec<PriceData> {
        let (taken, kept) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|data| data.pair == pair);
        self.awaiting = kept;
        taken
    }

    /// The decision itself: sign what agrees with our own observation of the same moment.
    fn decide(&self, data: &PriceData, ours: Observation) -> Action {
        let theirs = UNIX_EPOCH + Duration::from_secs(data.observed_at);
        let apart = match theirs.duration_since(ours.at) {
            Ok(after) => after,
            Err(before) => before.duration(),
        };
        if apart > COSIGN_WINDOW {
            return Action::Decline(*data, Declined::Stale);
        }
        let deviation = data.price.relative_deviation(ours.price);
        if deviation > self.settings.max_deviation {
            return Action::Decline(
                *data,
                Declined::Deviates {
                    deviation,
                    ours: ours.price,
                },
            );
        }
        Action::Sign(*data, ours.signed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pool::PoolSettings;
    use crate::time::Moment;
    use std::sync::Arc;

    const OBSERVED: u64 = 1_763_700_000;

    fn node(seed: u8) -> Identity {
        Identity::from_secret(&[seed; 32]).unwrap()
    }

    fn wall(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn data(price: &str, observed_at: u64) -> PriceData {
        PriceData {
            config: members(4).signing_config(),
            pair: Pair::EthUsd,
            id: 1,
            price: price.parse().unwrap(),
            observed_at,
            origin: node(1).address(),
        }
    }

    /// What a test node signs having observed `price` at `OBSERVED`.
    fn ours(price: &str) -> signed::Observation {
        signed::Observation {
            price: price.parse().unwrap(),
            observed_at: OBSERVED,
        }
    }

    fn observation(price: &str, at: u64, fetched: Instant) -> Observation {
        Observation {
            price: price.parse().unwrap(),
            at: wall(at),
            fetched,
        }
    }

    fn pool(members: &Arc<Members>) -> Pool {
        let settings = PoolSettings {
            flush_delay: Duration::from_secs(30),
            max_age: Duration::from_secs(900),
            retention: Duration::from_secs(3600),
            max_pending_per_signer: 64,
        };
        Pool::new(
            settings,
            CommitteeSettings::new(Duration::from_secs(2)),
            Arc::clone(members),
        )
    }

    /// Members 1..=n since always.
    fn members(n: u8) -> Arc<Members> {
        let list = (1..=n).map(|seed| (node(seed).address(), 0)).collect();
        Arc::new(Members::for_node(None).with_database(list))
    }

    fn settings(max_queue: usize) -> CosignSettings {
        CosignSettings {
            max_deviation: Decimal::new(1, 2),
            max_queue,
            committee: CommitteeSettings::new(Duration::from_secs(2)),
        }
    }

    /// Node 2's co-signing; with four members (f = 1) the three besides the origin are the
    /// committee.
    fn cosigning(max_queue: usize) -> Cosigning {
        Cosigning::new(settings(max_queue), node(2).address())
    }

    /// The usual start: now, four members, their pool, node 2's co-signing (a queue of 2).
    fn node2_of_four() -> (Instant, Arc<Members>, Pool, Cosigning) {
        let members = members(4);
        let pool = pool(&members);
        (Instant::now(), members, pool, cosigning(2))
    }

    #[test]
    fn a_close_price_observed_at_the_same_time_is_signed() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool);
        let close = data("3010", OBSERVED);
        assert_eq!(
            cosigning.heard(close, &members, &pool, now),
            vec![Action::Sign(close, ours("3000"))]
        );
        // A far one is declined once the next observation agrees with ours (of the same
        // second, ours may predate a move: below).
        let far = PriceData {
            id: 2,
            ..data("3100", OBSERVED)
        };
        assert_eq!(
            cosigning.heard(far, &members, &pool, now),
            vec![Action::Observe]
        );
        assert!(matches!(
            cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool)[..],
            [Action::Decline(_, Declined::Deviates { .. })]
        ));
    }

    #[test]
    fn a_price_observed_far_from_our_observation_is_not_judged_by_it() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool);
        let window = COSIGN_WINDOW.as_secs();
        let old = data("3000", OBSERVED - window - 2);
        assert_eq!(
            cosigning.heard(old, &members, &pool, now),
            vec![Action::Decline(old, Declined::Stale)]
        );
        // A round from after our observation waits for a new one, which may still be too far.
        let ahead = PriceData {
            id: 2,
            ..data("3000", OBSERVED + window + 2)
        };
        assert_eq!(
            cosigning.heard(ahead, &members, &pool, now),
            vec![Action::Observe]
        );
        assert_eq!(
            cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool),
            vec![Action::Decline(ahead, Declined::Stale)]
        );
    }

    #[test]
    fn an_observation_older_than_the_round_is_not_used_it_may_predate_the_move() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED - 1, now), &pool);
        // The market moved 2 % and the origin saw it: our last observation did not.
        let moved = data("3060", OBSERVED);
        assert_eq!(
            cosigning.heard(moved, &members, &pool, now),
            vec![Action::Observe]
        );
        let actions = cosigning.observed(Pair::EthUsd, observation("3061", OBSERVED, now), &pool);
        assert_eq!(
            actions,
            vec![Action::Sign(
                moved,
                signed::Observation {
                    price: "3061".parse().unwrap(),
                    observed_at: OBSERVED
                }
            )]
        );
        // One of the same second is made for the round.
        let same_second = PriceData { id: 2, ..moved };
        assert!(matches!(
            cosigning.heard(same_second, &members, &pool, now)[..],
            [Action::Sign(..)]
        ));
    }

    #[test]
    fn disagreeing_with_an_observation_of_the_same_second_waits_for_the_next_one() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        // Ours was taken early in the second, before the market moved 2 %; the origin's later
        // in the same second, after. Measured across hosts (docs/performance.md, "Across
        // hosts"): judged by ours, the round went unsigned and waited for the fallback.
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool);
        let moved = data("3060", OBSERVED);
        assert_eq!(
            cosigning.heard(moved, &members, &pool, now),
            vec![Action::Observe]
        );
        let after = observation("3061", OBSERVED, now);
        assert_eq!(
            cosigning.observed(Pair::EthUsd, after, &pool),
            vec![Action::Sign(moved, after.signed())]
        );
        // The next observation decides: still far from it, the price is declined.
        let far = PriceData {
            id: 2,
            ..data("3200", OBSERVED)
        };
        assert_eq!(
            cosigning.heard(far, &members, &pool, now),
            vec![Action::Observe]
        );
        assert!(matches!(
            cosigning.observed(Pair::EthUsd, after, &pool)[..],
            [Action::Decline(_, Declined::Deviates { .. })]
        ));
        // A price of a later second than ours is judged by the next observation anyway; one of
        // an earlier second, by ours at once.
        let earlier = PriceData {
            id: 3,
            ..data("3200", OBSERVED - 1)
        };
        assert!(matches!(
            cosigning.heard(earlier, &members, &pool, now)[..],
            [Action::Decline(_, Declined::Deviates { .. })]
        ));
    }

    #[test]
    fn without_a_fresh_observation_prices_wait_in_a_bounded_queue() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        let close = data("3000", OBSERVED);
        let far = PriceData {
            id: 2,
            ..data("3500", OBSERVED)
        };
        let third = PriceData { id: 3, ..close };
        assert_eq!(
            cosigning.heard(close, &members, &pool, now),
            vec![Action::Observe]
        );
        assert_eq!(
            cosigning.heard(far, &members, &pool, now),
            vec![Action::Observe]
        );
        assert_eq!(
            cosigning.heard(third, &members, &pool, now),
            vec![Action::QueueFull(third)]
        );
        let actions = cosigning.observed(Pair::EthUsd, observation("3001", OBSERVED, now), &pool);
        assert_eq!(actions.len(), 2);
        assert!(matches!(actions[0], Action::Sign(data, _) if data == close));
        assert!(matches!(
            actions[1],
            Action::Decline(_, Declined::Deviates { .. })
        ));
        assert_eq!(
            cosigning.heard(third, &members, &pool, now),
            vec![Action::Sign(third, ours("3001"))]
        );
        assert_eq!(cosigning.observation_failed(Pair::EthUsd), 0);
    }

    #[test]
    fn an_observation_older_than_the_window_is_not_used() {
        let (now, members, pool, mut cosigning) = node2_of_four();
        let old = now
            .checked_sub(COSIGN_WINDOW + Duration::from_secs(1))
            .unwrap();
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, old), &pool);
        let price = data("3000", OBSERVED);
        assert_eq!(
            cosigning.heard(price, &members, &pool, now),
            vec![Action::Observe]
        );
        assert_eq!(cosigning.observation_failed(Pair::EthUsd), 1);
    }

    #[test]
    fn each_pair_is_judged_by_our_observation_of_that_pair_only() {
        let (now, members) = (Instant::now(), members(4));
        let pool = pool(&members);
        let mut cosigning = cosigning(4);
        let btc = |price, id| PriceData {
            pair: Pair::BtcUsd,
            id,
            ..data(price, OBSERVED)
        };
        cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool);
        // An ETH/USD observation says nothing about BTC/USD: the BTC price waits.
        assert_eq!(
            cosigning.heard(btc("3000", 1), &members, &pool, now),
            vec![Action::Observe]
        );
        let eth = data("3000", OBSERVED);
        assert_eq!(
            cosigning.heard(eth, &members, &pool, now),
            vec![Action::Sign(eth, ours("3000"))]
        );
        assert!(
            cosigning
                .observed(Pair::SolUsd, observation("150", OBSERVED, now), &pool)
                .is_empty()
        );
        let actions = cosigning.observed(Pair::BtcUsd, observation("90000", OBSERVED, now), &pool);
        assert!(matches!(
            actions[..],
            [Action::Decline(_, Declined::Deviates { .. })]
        ));
        let close = btc("90100", 2);
        assert_eq!(
            cosigning.heard(close, &members, &pool, now),
            vec![Action::Sign(close, ours("90000"))]
        );
    }

    #[test]
    fn the_origin_and_non_members_take_no_part_and_signed_prices_are_settled() {
        let (now, members) = (Instant::now(), members(4));
        let mut pool = pool(&members);
        // Node 1 is the origin of its own prices.
        let mut origin = Cosigning::new(settings(4), node(1).address());
        let price = data("3000", OBSERVED);
        assert!(origin.heard(price, &members, &pool, now).is_empty());
        // An origin that is not a member.
        let mut cosigning = cosigning(4);
        let outsider = PriceData {
            origin: node(9).address(),
            ..price
        };
        assert!(cosigning.heard(outsider, &members, &pool, now).is_empty());
        // A round of another configuration (another network or member set).
        let foreign = PriceData {
            config: alloy_primitives::B256::repeat_byte(7),
            ..price
        };
        assert!(cosigning.heard(foreign, &members, &pool, now).is_empty());
        // A price this node already signed.
        pool.add(&price, &[price.sign(node(2).signer())], Moment::now());
        assert!(cosigning.heard(price, &members, &pool, now).is_empty());
    }

    #[test]
    fn members_off_the_committee_wait_for_their_turn_and_step_in_only_if_needed() {
        let (now, members) = (Instant::now(), members(6));
        let mut pool = pool(&members);
        let price = PriceData {
            config: members.signing_config(),
            ..data("3000", OBSERVED)
        };
        let ranking = committee::ranking(price.id, &price.origin, &members.counting_at(0).unwrap());
        let seed_of = |address: Address| (1..=6u8).find(|seed| node(*seed).address() == address);
        // Six members, f = 1: a committee of three besides the origin; the fourth in the
        // ranking waits one fallback, the fifth two.
        let turn = |place: usize| Cosigning::new(settings(4), ranking[place]);
        let mut first = turn(0);
        let mut second = turn(3);
        let mut third = turn(4);
        for cosigning in [&mut first, &mut second, &mut third] {
            cosigning.observed(Pair::EthUsd, observation("3000", OBSERVED, now), &pool);
        }
        assert_eq!(
            first.heard(price, &members, &pool, now),
            vec![Action::Sign(price, ours("3000"))]
        );
        assert!(second.heard(price, &members, &pool, now).is_empty());
        assert!(third.heard(price, &members, &pool, now).is_empty());
        assert_eq!(second.next_turn_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(third.next_turn_due(), Some(now + Duration::from_secs(4)));
        assert!(
            second
                .take_turns(&pool, now + Duration::from_secs(1))
                .is_empty()
        );
        // Still short of the quorum at the second's turn: it steps in (its observation is
        // still fresh).
        let later = now + Duration::from_secs(2);
        assert_eq!(
            second.take_turns(&pool, later),
            vec![
                Action::Turn(price, FallbackOutcome::SteppedIn),
                Action::Sign(price, ours("3000"))
            ]
        );
        // Once the price has its quorum, the third's turn is not needed.
        let signers = [price.origin, ranking[0], ranking[1]];
        let signatures: Vec<_> = signers
            .iter()
            .map(|address| price.sign(node(seed_of(*address).unwrap()).signer()))
            .collect();
        pool.add(&price, &signatures, Moment::now());
        assert_eq!(
            third.take_turns(&pool, now + Duration::from_secs(4)),
            vec![Action::Turn(price, FallbackOutcome::NotNeeded)]
        );
        assert_eq!(third.next_turn_due(), None);
    }

    #[test]
    fn a_round_whose_origin_equivocated_is_dropped_waiting_or_at_a_turn() {
        let (now, members) = (Instant::now(), members(6));
        let mut pool = pool(&members);
        let price = PriceData {
            config: members.signing_config(),
            ..data("3000", OBSERVED)
        };
        let other = PriceData {
            price: "3001".parse().unwrap(),
            ..price
        };
        let origin = node(1);
        // On the committee without a fresh observation (it waits), and off it (a fallback
        // turn): six members, f = 1, a committee of three besides the origin.
        let ranking = committee::ranking(price.id, &price.origin, &members.counting_at(0).unwrap());
        let mut waiting = Cosigning::new(settings(4), ranking[0]);
        let mut fallback = Cosigning::new(settings(4), ranking[3]);
        pool.add(&price, &[price.sign(origin.signer())], Moment::now());
        assert_eq!(
            waiting.heard(price, &members, &pool, now),
            vec![Action::Observe]
        );
        assert!(fallback.heard(price, &members, &pool, now).is_empty());
        // The origin signs a second observation for its own round.
        pool.add(&other, &[other.sign(origin.signer())], Moment::now());
        let fresh = observation("3000", OBSERVED, now);
        assert!(waiting.observed(Pair::EthUsd, fresh, &pool).is_empty());
        fallback.observed(Pair::EthUsd, fresh, &pool);
        assert_eq!(
            fallback.take_turns(&pool, now + Duration::from_secs(60)),
            vec![Action::Turn(price, FallbackOutcome::NotNeeded)]
        );
    }

    #[test]
    fn fallback_turns_are_bounded() {
        let (now, members) = (Instant::now(), members(6));
        let pool = pool(&members);
        // Prices whose ranking puts node 2 after the committee: each a fallback turn.
        let list = members.counting_at(0).unwrap();
        let prices: Vec<PriceData> = (1..)
            .map(|id| PriceData {
                id,
                config: members.signing_config(),
                ..data("3000", OBSERVED)
            })
            .filter(|price| {
                committee::rank_of(price.id, &price.origin, &node(2).address(), &list)
                    .is_some_and(|rank| rank >= 3)
            })
            .take(3)
            .collect();
        let mut cosigning = Cosigning::new(settings(2), node(2).address());
        assert!(cosigning.heard(prices[0], &members, &pool, now).is_empty());
        assert!(cosigning.heard(prices[1], &members, &pool, now).is_empty());
        assert_eq!(
            cosigning.heard(prices[2], &members, &pool, now),
            vec![Action::QueueFull(prices[2])]
        );
    }
}
