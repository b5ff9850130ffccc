//! Verified prices, handed to consumers before they are stored. The node publishes each round
//! the moment its pool holds the quorum; every stream of the node sends it as a `verified`
//! event, and `/v1/prices/latest?include=verified` answers with the freshest of it and the
//! stored price.
//!
//! What a verified event guarantees: its report carries at least `--min-signers` member
//! signatures over their own observations, so the verifier contract accepts it exactly as it
//! would the stored row, and its price is their median. What it does not: that it will be stored
//! as sent — observations arriving within the flush delay join the stored row, which may then
//! show a slightly different median — nor an order or a cursor. Verified events carry no `id:`
//! and are not replayed on reconnect; only stored prices are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::view::PriceView;
use crate::pair::Pair;
use crate::signed::Report;

/// Verified events a slow stream may fall behind by before it skips some (they are
/// superseded by the stored `price` events anyway).
const BACKLOG: usize = 256;

/// A verified price, serialized once for every stream.
#[derive(Debug)]
pub struct VerifiedPrice {
    pub pair: Pair,
    pub view: PriceView,
    pub json: String,
}

/// The node's verified prices: the newest per pair, and a broadcast to the streams.
#[derive(Debug)]
pub struct VerifiedPrices {
    sender: broadcast::Sender<Arc<VerifiedPrice>>,
    newest: Mutex<HashMap<Pair, Arc<VerifiedPrice>>>,
}

impl Default for VerifiedPrices {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(BACKLOG),
            newest: Mutex::default(),
        }
    }
}

impl VerifiedPrices {
    /// A round reached its quorum: it goes to every stream, and is the pair's newest verified
    /// price if it is fresher than the one held.
    pub fn publish(&self, report: &Report) {
        let Some(view) = PriceView::verified(report) else {
            return;
        };
        let json = match serde_json::to_string(&view) {
            Ok(json) => json,
            Err(err) => {
                log::error!("cannot serialize verified price {}: {err}", view.id);
                return;
            }
        };
        let pair = report.round.pair;
        let price = Arc::new(VerifiedPrice { pair, view, json });
        {
            let mut newest = self.newest.lock().unwrap_or_else(PoisonError::into_inner);
            let fresher = newest
                .get(&pair)
                .is_none_or(|held| price.view.is_fresher_than(&held.view));
            if fresher {
                newest.insert(pair, Arc::clone(&price));
            }
        }
        // No stream listening is not an error.
        let _ = self.sender.send(price);
    }

    /// Verified prices from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<VerifiedPrice>> {
        self.sender.subscribe()
    }

    /// The freshest verified price of `pair` this node has seen.
    pub fn newest(&self, pair: Pair) -> Option<Arc<VerifiedPrice>> {
        self.newest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&pair)
            .cloned()
    }
}
