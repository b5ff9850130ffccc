//! `GET /v1/prices/stream`: Server-Sent Events of prices as they are verified and as they
//! commit.
//!
//! A stored price is `event: price`, `id: <seq>`, `data: <the price's JSON>`. A client that
//! comes back with `Last-Event-ID` (an EventSource does so by itself) or `?after=` first gets
//! every price of its pair with a greater `seq`, then the new ones as they commit. A round the
//! node's pool has just verified is `event: verified`, `data: <the price's JSON, status
//! verified>`, without an `id:` so that it leaves the client's cursor alone; it is sent live
//! only, never replayed ([`super::verified`] says what it guarantees).
//!
//! What guarantees that no price is skipped is the read, `seq > cursor` in commit order (see
//! [`crate::store::read`]); the database's notifications only say when to read. One listener
//! per node ([`Store::listen_for_stored_prices`], started by the first stream, running until
//! the node stops) wakes every stream; a stream then reads past its own cursor. A lost or merged
//! notification therefore loses nothing, and each stream also reads every [`POLL`] in case the
//! listener is down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Once};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ApiQuery, ErrorBody};
use super::params::{self, StreamParams};
use super::verified::{VerifiedPrice, VerifiedPrices};
use super::view::PriceView;
use super::{ApiState, Shared};
use crate::pair::Pair;
use crate::store::Store;
use crate::store::read::HistoryQuery;
use crate::store::reports::StoredPrice;

/// Rows read per query: a stream replaying a long history reads it page by page.
const STREAM_PAGE: u64 = 100;
/// How often a stream reads even without a notification: the safety net under `LISTEN`.
pub const POLL: Duration = Duration::from_secs(5);
/// A comment line this often keeps proxies and load balancers from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every stream of a node shares: the slots, and the wake-ups of the one listener.
pub(super) struct Streams {
    store: Store,
    verified: Arc<VerifiedPrices>,
    stop: CancellationToken,
    slots: Arc<Semaphore>,
    max: usize,
    wake: watch::Sender<u64>,
    listener: Once,
}

impl Streams {
    pub(super) fn new(api: &ApiState) -> Self {
        Self {
            store: api.store.clone(),
            verified: Arc::clone(&api.verified),
            stop: api.stop.clone(),
            slots: Arc::new(Semaphore::new(api.limits.max_streams)),
            max: api.limits.max_streams,
            wake: watch::Sender::new(0),
            listener: Once::new(),
        }
    }

    /// Wake-ups from now on. The first call starts the listener: a node nobody streams from
    /// keeps no connection open for it.
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.listener.call_once(|| {
            let store = self.store.clone();
            let wake = self.wake.clone();
            let stop = self.stop.clone();
            tokio::spawn(async move { store.listen_for_stored_prices(wake, stop).await });
        });
        self.wake.subscribe()
    }
}

/// Prices of a pair as they are verified and as they are stored.
///
/// Events: `event: price`, `id: <seq>`, `data: <the price's JSON, as GET /v1/prices/{id}>`,
/// in commit order; and, as soon as the serving node's pool holds a round's quorum, `event:
/// verified`, `data: <the same JSON with status verified, no seq>` — no `id:`, not replayed,
/// and the stored row may carry more observations. A comment line every 15 s keeps the
/// connection open. Without a cursor only prices stored from now on are sent. The stream ends
/// when the node stops; reconnect with `Last-Event-ID` to go on where it ended.
#[utoipa::path(
    get,
    path = "/v1/prices/stream",
    tag = "prices",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "The id (seq) of the last event received: the stream resumes after it. Wins over `after`."),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: price`, `id: <seq>`, `data: <PriceView JSON>` for each stored price; `event: verified`, `data: <PriceView JSON>` (no id) for each round verified before it is stored", content_type = "text/event-stream", body = String),
        (status = 400, description = "Unknown pair or a bad cursor", body = ErrorBody),
        (status = 503, description = "The node serves as many streams as it may (`--api-max-streams`), or the database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn stream(
    State(shared): State<Shared>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let pair = params::pick_pair(shared.api.pairs, query.pair.as_deref())?;
    let resume = match headers.get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::BadRequest("Last-Event-ID must be a whole number".to_owned())
            })?;
            Some(params::parse_cursor("Last-Event-ID", text)?)
        }
        None => query
            .after
            .as_deref()
            .map(|text| params::parse_cursor("after", text))
            .transpose()?,
    };
    let streams = Arc::clone(&shared.streams);
    let slot = Arc::clone(&streams.slots)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Busy(format!(
                "this node serves {} streams at most, all taken; try again later",
                streams.max
            ))
        })?;
    // Subscribed before the first read: whatever commits after it wakes this stream.
    let wake = streams.subscribe();
    let verified = streams.verified.subscribe();
    let cursor = match resume {
        Some(cursor) => cursor,
        None => streams.store.last_seq().await?,
    };
    let mut tail = Tail {
        streams,
        pair,
        cursor,
        buffered: VecDeque::new(),
        caught_up: false,
        wake,
        verified: Some(verified),
        poll: poll_timer(),
        _slot: slot,
    };
    // The first read answers the request, so that a database that is down is a 503, not a
    // stream that stays silent.
    tail.read().await?;
    let events = futures::stream::unfold(tail, |mut tail| async move {
        tail.next().await.map(|event| (Ok(event), tail))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One stream's position.
struct Tail {
    streams: Arc<Streams>,
    pair: Pair,
    /// The greatest `seq` sent (or passed over).
    cursor: i64,
    buffered: VecDeque<StoredPrice>,
    /// The last read came back short: nothing more until a wake-up or the poll.
    caught_up: bool,
    wake: watch::Receiver<u64>,
    /// Rounds verified by the node's pool; `None` once the node's sender is gone.
    verified: Option<broadcast::Receiver<Arc<VerifiedPrice>>>,
    poll: Interval,
    /// Frees the stream's slot when the client goes away or the node stops.
    _slot: OwnedSemaphorePermit,
}

impl Tail {
    /// The next event; `None` ends the stream (the node is stopping).
    async fn next(&mut self) -> Option<Event> {
        let stop = self.streams.stop.clone();
        loop {
            if stop.is_cancelled() {
                return None;
            }
            if let Some(row) = self.buffered.pop_front() {
                self.cursor = row.seq;
                match event(&row) {
                    Ok(event) => return Some(event),
                    // Passed over, not retried: it would stop this stream at that row for good.
                    Err(reason) => {
                        log::error!("API stream: leaving out stored price {}: {reason}", row.id);
                        continue;
                    }
                }
            }
            if self.caught_up {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    // The sender lives as long as `streams`, which this stream holds.
                    _ = self.wake.changed() => {}
                    _ = self.poll.tick() => {}
                    verified = next_verified(&mut self.verified, self.pair) => {
                        return Some(Event::default().event("verified").data(&verified.json));
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                read = self.read() => if let Err(err) = read {
                    // Tried again at the next wake-up or poll; the keep-alives go on.
                    log::debug!("API stream: {err}");
                    self.caught_up = true;
                },
            }
        }
    }

    /// Reads the next rows past the cursor.
    async fn read(&mut self) -> Result<(), ApiError> {
        let query = HistoryQuery {
            pair: self.pair,
            after: self.cursor,
            from: None,
            to: None,
            limit: STREAM_PAGE,
        };
        let rows = self.streams.store.price_history(&query).await?;
        self.caught_up = (rows.len() as u64) < STREAM_PAGE;
        self.buffered.extend(rows);
        Ok(())
    }
}

fn event(row: &StoredPrice) -> Result<Event, String> {
    let view = PriceView::from_row(row).map_err(|err| err.to_string())?;
    let data = serde_json::to_string(&view).map_err(|err| err.to_string())?;
    Ok(Event::default()
        .event("price")
        .id(row.seq.to_string())
        .data(data))
}

/// The next verified price of `pair`; never resolves once the node's sender is gone. A stream
/// that fell behind skips what it missed: the stored events follow anyway.
async fn next_verified(
    receiver: &mut Option<broadcast::Receiver<Arc<VerifiedPrice>>>,
    pair: Pair,
) -> Arc<VerifiedPrice> {
    loop {
        let Some(verified) = receiver else {
            return std::future::pending().await;
        };
        match verified.recv().await {
            Ok(price) if price.pair == pair => return price,
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                log::debug!("API stream: {missed} verified events skipped by a slow client");
            }
            Err(RecvError::Closed) => *receiver = None,
        }
    }
}

fn poll_timer() -> Interval {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + POLL, POLL);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}
