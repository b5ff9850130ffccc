//! Originating prices: observing every pair the node signs, and turning an observation into a
//! new signed price under a fresh id. The observation itself runs as background work; this
//! keeps the bookkeeping — how many prices were asked for, how many rounds failed in a row.

use std::future::Future;
use std::sync::Arc;

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;

use crate::id::IdGenerator;
use crate::message::PriceMessage;
use crate::metrics::Metrics;
use crate::pair::Pair;
use crate::pool::Moment;
use crate::price::{FeedError, PriceFeed, SourcedPrice, UsdPrice};
use crate::signed::PriceData;
use crate::writer::unix_seconds;

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
    /// Prices asked for (by the timer or `originate_now`) and not yet originated.
    wanted: usize,
    /// Observation rounds that failed in a row.
    failed_rounds: u32,
}

impl Origination {
    pub fn new(feed: Arc<PriceFeed>, me: &Address) -> Self {
        Self {
            feed,
            ids: IdGenerator::new(IdGenerator::machine_id_from_address(me)),
            wanted: 0,
            failed_rounds: 0,
        }
    }

    /// One more price is wanted: the next observation round originates it.
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

    /// A round was handled; `failed` if any pair had no price. Returns whether another round is
    /// wanted at once (each price gets its own observation). After a failure the wanted prices
    /// wait for the next tick.
    pub fn round_ended(&mut self, failed: bool) -> bool {
        if failed {
            self.failed_rounds += 1;
            self.wanted = 0;
        } else {
            self.failed_rounds = 0;
        }
        self.wanted > 0
    }

    /// A new price of `pair` observed at `now`, under a fresh id, signed by `signer`.
    pub fn mint(
        &mut self,
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
            pair,
            id,
            price,
            observed_at: unix_seconds(now.wall),
            origin: signer.address(),
        };
        Some(PriceMessage::originate(data, signer))
    }
}
