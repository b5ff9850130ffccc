//! Originating prices: observing every pair the node signs, and turning an observation into a
//! new signed price under a fresh id when a round starts ([`crate::trigger`] decides when). The
//! observation itself runs as background work; this keeps the bookkeeping — how many rounds
//! were asked for regardless of the triggers, how many observations failed in a row.

use std::future::Future;
use std::sync::Arc;

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;

use crate::id::IdGenerator;
use crate::message::PriceMessage;
use crate::metrics::{Metrics, SourceFailureLabels, SourceLabel};
use crate::pair::Pair;
use crate::pool::Moment;
use crate::price::{FeedError, FeedReport, PriceFeed, UsdPrice};
use crate::signed::PriceData;
use crate::writer::unix_seconds;

/// One observation round: every pair's median, or why it has none.
#[derive(Debug)]
pub struct ObservationRound {
    pub results: Vec<(Pair, Result<UsdPrice, FeedError>)>,
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

    /// One more round is wanted: the next observation starts it.
    pub fn want(&mut self) {
        self.wanted += 1;
    }

    /// Observation rounds that failed in a row (for `/health`).
    pub fn failed_rounds(&self) -> u32 {
        self.failed_rounds
    }

    /// An observation round of every pair, to run in the background.
    pub fn observe(&self, metrics: Metrics) -> impl Future<Output = ObservationRound> + use<> {
        let feed = Arc::clone(&self.feed);
        async move {
            let rounds = feed.settings().pairs.iter().map(|pair| {
                let (feed, metrics) = (&feed, &metrics);
                async move {
                    let report = feed.fetch_all(pair).await;
                    record(metrics, &report);
                    let result = report.median(feed.settings().min_sources);
                    if result.is_ok() {
                        for (source, error) in report.failures() {
                            log::warn!("price source {source} ({pair}): {error}");
                        }
                    }
                    (pair, result)
                }
            });
            ObservationRound {
                results: futures::future::join_all(rounds).await,
            }
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

/// Each source's latency and failures.
fn record(metrics: &Metrics, report: &FeedReport) {
    for ((source, result), elapsed) in report.results.iter().zip(&report.elapsed) {
        metrics
            .source_fetch_seconds
            .get_or_create(&SourceLabel { source: *source })
            .observe(elapsed.as_secs_f64());
        if let Err(err) = result {
            metrics
                .source_failures
                .get_or_create(&SourceFailureLabels {
                    source: *source,
                    kind: err.failure.kind(),
                })
                .inc();
        }
    }
}
