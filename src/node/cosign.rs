//! Co-signing: whether this node signs a peer's price. It signs only what it saw itself: a
//! price within `--max-deviation` of its own observation of the same pair, both taken within
//! [`COSIGN_WINDOW`] of each other. Without a fresh observation the price waits (a bounded queue) for the next
//! fetch. Prices on whose committee this node is not wait for its fallback turn in
//! [`FallbackTurns`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;

use crate::message::PriceData;
use crate::pair::Pair;
use crate::price::UsdPrice;

/// How far apart in time a peer's observation and ours may be for ours to judge it. ETH/USD
/// moves; a ten-minute-old observation says little about a price seen now.
pub const COSIGN_WINDOW: Duration = Duration::from_secs(30);

/// A price this node fetched.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub price: UsdPrice,
    /// When, on the wall clock: compared with peers' `observed_at`.
    pub at: SystemTime,
    /// When, on the monotonic clock: its age here cannot jump with the wall clock.
    pub fetched: Instant,
}

/// What to do with a peer's price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Sign,
    /// Farther from our observation than `--max-deviation`.
    Deviates {
        deviation: Decimal,
        ours: UsdPrice,
    },
    /// Observed too long before or after ours to be judged by it.
    Stale,
    /// Queued until our next observation: the caller fetches one.
    Wait,
    /// The queue is full: not judged at all.
    QueueFull,
}

#[derive(Debug)]
pub struct Cosigner {
    max_deviation: Decimal,
    max_queue: usize,
    latest: HashMap<Pair, Observation>,
    /// Peers' prices waiting for this node's next observation of their pair.
    awaiting: Vec<PriceData>,
}

impl Cosigner {
    pub fn new(max_deviation: Decimal, max_queue: usize) -> Self {
        Self {
            max_deviation,
            max_queue,
            latest: HashMap::new(),
            awaiting: Vec::new(),
        }
    }

    /// Our latest observation of `pair`.
    pub fn latest(&self, pair: Pair) -> Option<Observation> {
        self.latest.get(&pair).copied()
    }

    /// When we last fetched any pair.
    pub fn last_fetched(&self) -> Option<Instant> {
        self.latest.values().map(|ours| ours.fetched).max()
    }

    /// Judges `data` against a fresh observation of its pair, or queues it for the next one.
    pub fn consider(&mut self, data: PriceData) -> Decision {
        match self.latest(data.pair) {
            Some(ours) if ours.fetched.elapsed() <= COSIGN_WINDOW => self.judge(&data, ours),
            _ if self.awaiting.len() >= self.max_queue => Decision::QueueFull,
            _ => {
                self.awaiting.push(data);
                Decision::Wait
            }
        }
    }

    /// Records a new observation of `pair`; returns the prices of that pair that were queued,
    /// with their decisions.
    pub fn observed(&mut self, pair: Pair, ours: Observation) -> Vec<(PriceData, Decision)> {
        self.latest.insert(pair, ours);
        self.take_awaiting(pair)
            .into_iter()
            .map(|data| {
                let decision = self.judge(&data, ours);
                (data, decision)
            })
            .collect()
    }

    /// The fetch of `pair` failed: its queued prices cannot be judged, and go unsigned by us.
    pub fn fetch_failed(&mut self, pair: Pair) -> usize {
        self.take_awaiting(pair).len()
    }

    fn take_awaiting(&mut self, pair: Pair) -> Vec<PriceData> {
        let (taken, kept) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|data| data.pair == pair);
        self.awaiting = kept;
        taken
    }

    fn judge(&self, data: &PriceData, ours: Observation) -> Decision {
        let theirs = UNIX_EPOCH + Duration::from_secs(data.observed_at);
        let apart = match theirs.duration_since(ours.at) {
            Ok(after) => after,
            Err(before) => before.duration(),
        };
        if apart > COSIGN_WINDOW {
            return Decision::Stale;
        }
        let deviation = data.price.relative_deviation(ours.price);
        if deviation > self.max_deviation {
            return Decision::Deviates {
                deviation,
                ours: ours.price,
            };
        }
        Decision::Sign
    }
}

/// Peers' prices this node co-signs only if they still lack a quorum at its fallback turn
/// ([`crate::committee`]). Bounded: past `max` new turns are dropped.
#[derive(Debug)]
pub struct FallbackTurns {
    max: usize,
    /// By due time; the counter keeps turns due at the same instant apart.
    turns: BTreeMap<(Instant, u64), PriceData>,
    next: u64,
}

impl FallbackTurns {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            turns: BTreeMap::new(),
            next: 0,
        }
    }

    /// Schedules `data` for `due`; `false` when the queue is full.
    pub fn schedule(&mut self, due: Instant, data: PriceData) -> bool {
        if self.turns.len() >= self.max {
            return false;
        }
        self.turns.insert((due, self.next), data);
        self.next = self.next.wrapping_add(1);
        true
    }

    /// When the earliest turn is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.turns.keys().next().map(|(due, _)| *due)
    }

    /// Takes every turn due by `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<PriceData> {
        let later = self.turns.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.turns, later)
            .into_values()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    fn data(price: &str, observed_at: SystemTime) -> PriceData {
        PriceData {
            pair: Pair::EthUsd,
            id: 1,
            price: price.parse().unwrap(),
            observed_at: observed_at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            origin: Address::ZERO,
        }
    }

    fn observation(price: &str, at: SystemTime) -> Observation {
        Observation {
            price: price.parse().unwrap(),
            at,
            fetched: Instant::now(),
        }
    }

    fn cosigner() -> Cosigner {
        Cosigner::new(Decimal::new(1, 2), 2)
    }

    #[test]
    fn a_close_price_observed_at_the_same_time_is_signed() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        cosigner.observed(Pair::EthUsd, observation("3000", now));
        assert_eq!(cosigner.consider(data("3010", now)), Decision::Sign);
        assert!(matches!(
            cosigner.consider(data("3100", now)),
            Decision::Deviates { .. }
        ));
    }

    #[test]
    fn a_price_observed_far_from_our_observation_is_not_judged_by_it() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        cosigner.observed(Pair::EthUsd, observation("3000", now));
        let old = now - COSIGN_WINDOW - Duration::from_secs(2);
        assert_eq!(cosigner.consider(data("3000", old)), Decision::Stale);
        let ahead = now + COSIGN_WINDOW + Duration::from_secs(2);
        assert_eq!(cosigner.consider(data("3000", ahead)), Decision::Stale);
    }

    #[test]
    fn without_a_fresh_observation_prices_wait_in_a_bounded_queue() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Wait);
        assert_eq!(cosigner.consider(data("3500", now)), Decision::Wait);
        assert_eq!(cosigner.consider(data("3000", now)), Decision::QueueFull);
        let decisions = cosigner.observed(Pair::EthUsd, observation("3001", now));
        assert_eq!(decisions.len(), 2);
        assert_eq!(decisions[0].1, Decision::Sign);
        assert!(matches!(decisions[1].1, Decision::Deviates { .. }));
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Sign);
        assert_eq!(cosigner.fetch_failed(Pair::EthUsd), 0);
    }

    #[test]
    fn each_pair_is_judged_by_our_observation_of_that_pair_only() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        let btc = |price| PriceData {
            pair: Pair::BtcUsd,
            ..data(price, now)
        };
        cosigner.observed(Pair::EthUsd, observation("3000", now));
        // An ETH/USD observation says nothing about BTC/USD: the BTC price waits.
        assert_eq!(cosigner.consider(btc("3000")), Decision::Wait);
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Sign);
        assert!(
            cosigner
                .observed(Pair::SolUsd, observation("150", now))
                .is_empty()
        );
        let decisions = cosigner.observed(Pair::BtcUsd, observation("90000", now));
        assert_eq!(decisions.len(), 1);
        assert!(matches!(decisions[0].1, Decision::Deviates { .. }));
        assert_eq!(cosigner.consider(btc("90100")), Decision::Sign);
    }

    #[test]
    fn fallback_turns_come_due_in_order_and_are_bounded() {
        let now = Instant::now();
        let at = SystemTime::now();
        let mut turns = FallbackTurns::new(3);
        let price = |id| PriceData {
            id,
            ..data("3000", at)
        };
        assert!(turns.schedule(now + Duration::from_secs(2), price(1)));
        assert!(turns.schedule(now + Duration::from_secs(1), price(2)));
        assert!(turns.schedule(now + Duration::from_secs(1), price(3)));
        assert!(!turns.schedule(now, price(4)), "full");
        assert_eq!(turns.next_due(), Some(now + Duration::from_secs(1)));
        assert!(turns.take_due(now).is_empty());
        let due: Vec<u64> = turns
            .take_due(now + Duration::from_secs(1))
            .iter()
            .map(|data| data.id)
            .collect();
        assert_eq!(due, vec![2, 3]);
        assert_eq!(turns.next_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(turns.take_due(now + Duration::from_secs(9)).len(), 1);
        assert_eq!(turns.next_due(), None);
    }

    #[test]
    fn an_observation_older_than_the_window_is_not_used() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        cosigner.observed(
            Pair::EthUsd,
            Observation {
                fetched: Instant::now()
                    .checked_sub(COSIGN_WINDOW + Duration::from_secs(1))
                    .unwrap(),
                ..observation("3000", now)
            },
        );
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Wait);
        assert_eq!(cosigner.fetch_failed(Pair::EthUsd), 1);
    }
}
