//! Originating prices: observing every pair the node signs, and turning an observation into a
//! new signed price under a fresh id when a round starts ([`crate::trigger`] decides when). The
//! observation itself runs as background work; this keeps the bookkeeping — how many rounds
//! were asked for regardless of the triggers, how many observations failed in a row.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;

use crate::id::IdGenerator;
use crate::message::PriceMessage;
use crate::metrics::Metrics;
use crate::pair::Pair;
use crate::price::{FeedError, PriceFeed, SourcedPrice, UsdPrice};
use crate::signed::PriceData;
use crate::time::Moment;
use crate::time::unix_seconds;

/// One observation round: every pair's median (and how many sources it is the median of), or
/// why it has none.
#[derive(Debug)]
pub struct ObservationRound {
    pub results: Vec<(Pair, Result<SourcedPrice, FeedError>)>,
}

/// What a node needs to originate prices.
#[derive(Debug)]
pub struct Origination {
    feed: Arc<PriceFeed>,
    ids: IdGenerator,
    /// Rounds asked for by `originate_now`, whatever the market did, not yet started.
    wanted: usize,
    /// Observations that failed in a row.
    failed_rounds: u32,
    /// Per pair, observations that failed in a row: the first is worth a warning, the
    /// others (one every `--observe-interval`) only the recovery.
    failing: HashMap<Pair, u32>,
}

impl Origination {
    pub fn new(feed: Arc<PriceFeed>, me: &Address) -> Self {
        Self {
            feed,
            ids: IdGenerator::new(IdGenerator::machine_id_from_address(me)),
            wanted: 0,
            failed_rounds: 0,
            failing: HashMap::new(),
        }
    }

    /// An observation of `pair` failed: how many have in a row now.
    pub fn pair_failed(&mut self, pair: Pair) -> u32 {
        let count = self.failing.entry(pair).or_default();
        *count += 1;
        *count
    }

    /// An observation of `pair` worked: how many had failed in a row before it, if any.
    pub fn pair_observed(&mut self, pair: Pair) -> Option<u32> {
        self.failing.remove(&pair)
    }

    /// One more round is wanted: the next observation starts it.
    pub fn want(&mut self) {
        self.wanted += 1;
    }

    /// Observation rounds that failed in a row (for `/health`).
    pub fn failed_rounds(&self) -> u32 {
        self.failed_rounds
    }

    /// The feed, whose sources' states `/status` shows.
    pub fn feed(&self) -> &PriceFeed {
        &self.feed
    }

    /// An observation round of every pair, to run in the background. The feed logs what
    /// changes in its sources; the metrics count every observation.
    pub fn observe(&self, metrics: Metrics) -> impl Future<Output = ObservationRound> + use<> {
        let feed = Arc::clone(&self.feed);
        async move {
            let results = feed
                .observe()
                .await
                .into_iter()
                .map(|(pair, report)| {
                    metrics.observed(pair, &report);
                    (pair, report.result)
                })
                .collect();
            ObservationRound { results }
        }
    }

    /// A round came back: whether its observations are to be originated.
    pub fn round_started(&mut self) -> bool {
        let originate = self.wanted > 0;
        self.wanted = self.wanted.saturating_sub(1);
        originate
    }

    /// An observation was handled; `failed` if any pair had no price. Returns whether another
    /// is wanted at once (each wanted round gets its own observation); after a failure the
    /// wanted rounds wait for the next observation, one interval later.
    pub fn round_ended(&mut self, failed: bool) -> bool {
        if failed {
            self.failed_rounds += 1;
            return false;
        }
        self.failed_rounds = 0;
        self.wanted > 0
    }

    /// A new price of `pair` observed at `now`, under a fresh id, signed by `signer` under
    /// configuration `config`.
    pub fn mint(
        &mut self,
        config: B256,
        pair: Pair,
        price: UsdPrice,
        now: Moment,
        signer: &PrivateKeySigner,
    ) -> Option<PriceMessage> {
        let id = match self.ids.next_id_at(now.wall) {
            Ok(id) => id,
            Err(err) => {
                log::error!("cannot mint a price id: {err}");
                return None;
            }
        };
        let data = PriceData {
            config,
            pair,
            id,
            price,
            observed_at: unix_seconds(now.wall),
            origin: signer.address(),
        };
        Some(PriceMessage::originate(data, signer))
    }
}
