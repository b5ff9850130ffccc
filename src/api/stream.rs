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
//! One reader per node reads each stored price once ([`super::stored`]) and hands it, serialized,
//! to every stream; a stream with a cursor older than the reader's first replays what it missed
//! from the database, page by page, then follows the reader. What guarantees that no price is
//! skipped is the read, `seq > cursor` in commit order (see [`crate::store::read`]): the live
//! prices were subscribed to before the replay's first read, and whatever both deliver is sent
//! once, by `seq`.
//!
//! A client that does not read falls behind; past `--api-stream-backlog` prices the node sends
//! `event: dropped` with the reason and ends the stream, without slowing anyone else. The
//! client reconnects with `Last-Event-ID` and loses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ApiError, ApiQuery, ErrorBody, TooManyRequests};
use super::params::{self, StreamParams};
use super::stored::{StoredJson, StoredPrices};
use super::verified::{VerifiedPrice, VerifiedPrices};
use super::view::PriceView;
use super::{ApiState, Shared};
use crate::pair::Pair;
use crate::store::Store;
use crate::store::read::HistoryQuery;

/// Rows read per query: a stream replaying a long history reads it page by page.
const STREAM_PAGE: u64 = 100;
/// A comment line this often keeps proxies and load balancers from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What every stream of a node shares: the slots, the stored prices read once for all, and the
/// verified ones.
pub(super) struct Streams {
    store: Store,
    stored: Arc<StoredPrices>,
    verified: Arc<VerifiedPrices>,
    stop: CancellationToken,
    slots: Arc<Semaphore>,
    max: usize,
    backlog: usize,
}

impl Streams {
    pub(super) fn new(api: &ApiState, stored: Arc<StoredPrices>) -> Self {
        Self {
            store: api.store.clone(),
            stored,
            verified: Arc::clone(&api.verified),
            stop: api.stop.clone(),
            slots: Arc::new(Semaphore::new(api.limits.max_streams)),
            max: api.limits.max_streams,
            backlog: api.limits.stream_backlog,
        }
    }
}

/// Prices of a pair as they are verified and as they are stored.
///
/// Events: `event: price`, `id: <seq>`, `data: <the price's JSON, as GET /v1/prices/{id}>`,
/// in commit order; and, as soon as the serving node's pool holds a round's quorum, `event:
/// verified`, `data: <the same JSON with status verified, no seq>` — no `id:`, not replayed,
/// and the stored row may carry more observations. A comment line every 15 s keeps the
/// connection open. Without a cursor only prices stored from now on are sent. The stream ends
/// when the node stops, or after an `event: dropped`, `data: {"error": "<why>"}` when the
/// client fell more than `--api-stream-backlog` prices behind; reconnect with `Last-Event-ID`
/// to go on where it ended.
#[utoipa::path(
    get,
    path = "/v1/prices/stream",
    tag = "prices",
    params(
        StreamParams,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "The id (seq) of the last event received: the stream resumes after it. Wins over `after`; empty, it names no cursor (as when absent).", pattern = r"^(0|[1-9][0-9]{0,17}|[1-8][0-9]{18}|9000000000000000000)?$"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: price`, `id: <seq>`, `data: <PriceView JSON>` for each stored price; `event: verified`, `data: <PriceView JSON>` (no id) for each round verified before it is stored; `event: dropped`, `data: {\"error\": \"...\"}` last, when the client fell too far behind. The schema is each event's.", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "Unknown pair or a bad cursor", body = ErrorBody),
        (status = 503, description = "The node serves as many streams as it may (`--api-max-streams`), or the database is unavailable (for a replay) or has not answered since the node started", body = ErrorBody),
        TooManyRequests,
    )
)]
pub(super) async fn stream(
    State(shared): State<Shared>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let pair = params::pick_pair(shared.api.pairs, query.pair.as_deref())?;
    let resume = match last_event_id(&headers)? {
        Some(cursor) => Some(cursor),
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
    // Following the stored prices before the replay's first read: whatever commits after it
    // reaches this stream live.
    let (live, now) = streams.stored.follow().ok_or(ApiError::NotLoaded)?;
    let verified = streams.verified.subscribe();
    let cursor = resume.unwrap_or(now);
    let mut tail = Tail {
        pair,
        cursor,
        read_to: cursor,
        replaying: resume.is_some_and(|cursor| cursor < now),
        ended: false,
        buffered: VecDeque::new(),
        live,
        verified: Some(verified),
        streams,
        _slot: slot,
    };
    // A replay's first read answers the request, so that a database that is down is a 503,
    // not a stream that stays silent.
    if tail.replaying {
        tail.replay().await?;
    }
    let events = futures::stream::unfold(tail, |mut tail| async move {
        tail.next().await.map(|event| (Ok(event), tail))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The cursor a `Last-Event-ID` header names; `None` without one, or when it is empty (an
/// EventSource sends none before its first id; an empty one names no event either).
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("Last-Event-ID must be a whole number".to_owned()))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    // As the document's pattern says: a seq as this node writes it, no leading zeros.
    if text.len() > 1 && text.starts_with('0') {
        return Err(ApiError::BadRequest(
            "Last-Event-ID must be a seq as sent: a whole number without leading zeros".to_owned(),
        ));
    }
    params::parse_cursor("Last-Event-ID", text).map(Some)
}

/// One event of the stream, for the document. In OpenAPI 3.1 the schema of a
/// `text/event-stream` response describes each event — its `event`, `id` and `data` fields —
/// and a `data` of JSON has its schema in `contentSchema`.
pub(super) struct StreamEvent;

impl ToSchema for StreamEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((PriceView::name().into(), PriceView::schema()));
        <PriceView as ToSchema>::schemas(schemas);
        schemas.push((ErrorBody::name().into(), ErrorBody::schema()));
    }
}

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let named = |name: &str| text().enum_values(Some([name]));
        let json = |schema: RefOr<Schema>| {
            text()
                .content_media_type("application/json")
                .content_schema(Some(schema))
        };
        let price = |status: &str, seq: ObjectBuilder| -> RefOr<Schema> {
            AllOfBuilder::new()
                .item(Ref::from_schema_name(PriceView::name()))
                .item(
                    ObjectBuilder::new()
                        .property("status", named(status))
                        .property("seq", seq),
                )
                .into()
        };
        let event = |name: &str, description: &str, data: RefOr<Schema>| {
            ObjectBuilder::new()
                .description(Some(description))
                .property("event", named(name))
                .required("event")
                .property("data", json(data))
                .required("data")
        };
        let seq = || text().pattern(Some("^[0-9]{1,19}$"));
        OneOfBuilder::new()
            .item(
                event(
                    "price",
                    "A stored price, in commit order; `id` is its seq",
                    price("stored", seq()),
                )
                .property("id", seq())
                .required("id"),
            )
            .item(event(
                "verified",
                "A round the node's pool verified, not stored yet: no `id`, not replayed",
                price("verified", ObjectBuilder::new().schema_type(Type::Null)),
            ))
            .item(event(
                "dropped",
                "The last event of a stream the node gave up on: reconnect with Last-Event-ID",
                Ref::from_schema_name(ErrorBody::name()).into(),
            ))
            .into()
    }
}

/// One stream's position.
struct Tail {
    streams: Arc<Streams>,
    pair: Pair,
    /// The greatest `seq` sent (or passed over).
    cursor: i64,
    /// The greatest `seq` the replay has read: where its next page starts. Ahead of `cursor`
    /// while what it read waits in `buffered`.
    read_to: i64,
    /// Reading the client's missed prices from the database, page by page; then live.
    replaying: bool,
    /// The node gave up on this stream and said why: the next event ends it.
    ended: bool,
    buffered: VecDeque<Arc<StoredJson>>,
    /// Every price the node's reader reads, from before the replay started.
    live: broadcast::Receiver<Arc<StoredJson>>,
    /// Rounds verified by the node's pool; `None` once the node's sender is gone.
    verified: Option<broadcast::Receiver<Arc<VerifiedPrice>>>,
    /// Frees the stream's slot when the client goes away or the node stops.
    _slot: OwnedSemaphorePermit,
}

impl Tail {
    /// The next event; `None` ends the stream (the node is stopping, or the client fell too
    /// far behind and was told so).
    async fn next(&mut self) -> Option<Event> {
        let stop = self.streams.stop.clone();
        loop {
            if stop.is_cancelled() || self.ended {
                return None;
            }
            if let Some(price) = self.buffered.pop_front() {
                if let Some(event) = self.passed(&price) {
                    return Some(event);
                }
                continue;
            }
            if self.replaying {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    read = self.replay() => if let Err(err) = read {
                        // The database is down mid-replay: nothing more can be sent in order.
                        log::debug!("API stream: {err}");
                        return Some(self.drop_with(
                            "the database is unavailable; reconnect with Last-Event-ID to resume",
                        ));
                    },
                }
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                live = self.live.recv() => match live {
                    Ok(price) => if let Some(event) = self.passed(&price) {
                        return Some(event);
                    },
                    Err(RecvError::Lagged(_)) => {
                        return Some(self.drop_with(&format!(
                            "this stream fell more than {} prices behind; reconnect with Last-Event-ID to resume",
                            self.streams.backlog
                        )));
                    }
                    Err(RecvError::Closed) => return None,
                },
                verified = next_verified(&mut self.verified, self.pair) => {
                    return Some(Event::default().event("verified").data(&verified.json));
                }
            }
        }
    }

    /// The event for a price of this stream's pair past its cursor, moving the cursor.
    fn passed(&mut self, price: &StoredJson) -> Option<Event> {
        if price.pair != self.pair || price.seq <= self.cursor {
            return None;
        }
        self.cursor = price.seq;
        let data = std::str::from_utf8(&price.json).ok()?;
        Some(
            Event::default()
                .event("price")
                .id(price.seq.to_string())
                .data(data),
        )
    }

    /// Reads the next page of missed prices, each judged as the node's reader judges it; a
    /// short page ends the replay.
    async fn replay(&mut self) -> Result<(), ApiError> {
        let query = HistoryQuery {
            pair: self.pair,
            after: self.read_to,
            from: None,
            to: None,
            limit: STREAM_PAGE,
        };
        let store = &self.streams.store;
        let rows = store.price_history(&query).await?;
        let read_at = std::time::Instant::now();
        let judged = self.streams.stored.judged(store, &rows, read_at).await?;
        self.replaying = (rows.len() as u64) == STREAM_PAGE;
        for (row, judged) in rows.iter().zip(judged) {
            self.read_to = row.seq;
            // A refused row is passed over, not retried: it would stop this stream there for
            // good (it was counted and logged).
            if let Ok(price) = judged {
                self.buffered.push_back(price);
            }
        }
        Ok(())
    }
}

impl Tail {
    /// The last event of a stream the node gives up on, saying why; the client resumes with
    /// `Last-Event-ID` and loses nothing.
    fn drop_with(&mut self, reason: &str) -> Event {
        self.ended = true;
        let body = serde_json::json!({ "error": reason });
        Event::default().event("dropped").data(body.to_string())
    }
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
