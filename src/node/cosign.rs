//! Co-signing: whether this node signs a peer's price. It signs only what it saw itself: a
//! price within `--max-deviation` of its own observation, both taken within [`COSIGN_WINDOW`]
//! of each other. Without a fresh observation the price waits (a bounded queue) for the next
//! fetch.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;

use crate::message::PriceData;
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
    latest: Option<Observation>,
    /// Peers' prices waiting for this node's next observation.
    awaiting: Vec<PriceData>,
}

impl Cosigner {
    pub fn new(max_deviation: Decimal, max_queue: usize) -> Self {
        Self {
            max_deviation,
            max_queue,
            latest: None,
            awaiting: Vec::new(),
        }
    }

    pub fn latest(&self) -> Option<Observation> {
        self.latest
    }

    /// Judges `data` against a fresh observation, or queues it for the next one.
    pub fn consider(&mut self, data: PriceData) -> Decision {
        match self.latest {
            Some(ours) if ours.fetched.elapsed() <= COSIGN_WINDOW => self.judge(&data, ours),
            _ if self.awaiting.len() >= self.max_queue => Decision::QueueFull,
            _ => {
                self.awaiting.push(data);
                Decision::Wait
            }
        }
    }

    /// Records a new observation; returns the queued prices with their decisions.
    pub fn observed(&mut self, ours: Observation) -> Vec<(PriceData, Decision)> {
        self.latest = Some(ours);
        std::mem::take(&mut self.awaiting)
            .into_iter()
            .map(|data| {
                let decision = self.judge(&data, ours);
                (data, decision)
            })
            .collect()
    }

    /// The fetch failed: the queued prices cannot be judged, and go unsigned by us.
    pub fn fetch_failed(&mut self) -> usize {
        std::mem::take(&mut self.awaiting).len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    fn data(price: &str, observed_at: SystemTime) -> PriceData {
        PriceData {
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
        cosigner.observed(observation("3000", now));
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
        cosigner.observed(observation("3000", now));
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
        let decisions = cosigner.observed(observation("3001", now));
        assert_eq!(decisions.len(), 2);
        assert_eq!(decisions[0].1, Decision::Sign);
        assert!(matches!(decisions[1].1, Decision::Deviates { .. }));
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Sign);
        assert_eq!(cosigner.fetch_failed(), 0);
    }

    #[test]
    fn an_observation_older_than_the_window_is_not_used() {
        let now = SystemTime::now();
        let mut cosigner = cosigner();
        cosigner.observed(Observation {
            fetched: Instant::now()
                .checked_sub(COSIGN_WINDOW + Duration::from_secs(1))
                .unwrap(),
            ..observation("3000", now)
        });
        assert_eq!(cosigner.consider(data("3000", now)), Decision::Wait);
        assert_eq!(cosigner.fetch_failed(), 1);
    }
}
