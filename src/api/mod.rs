//! The consumers' read API: stored prices as JSON under `/v1`, on every node with a database and
//! `--http`, each price with everything needed to verify it without this code.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /v1/prices/latest?pair=&include=verified` | the pair's newest price by observation time |
//! | `GET /v1/prices?pair=&from=&to=&limit=&after=` | history in commit order, keyset-paginated by `seq` |
//! | `GET /v1/prices/{id}` | one price |
//! | `GET /v1/prices/stream?pair=&after=` | Server-Sent Events of prices as they are verified and as they commit |
//! | `GET /v1/network` | the fault bound f, quorum, commit threshold, committee and configuration digest now |
//! | `GET /v1/openapi.json` | the OpenAPI 3.1 document, generated from the handlers below |
//!
//! - [`view`]: the JSON of a price (shared with `oracle prices`).
//! - [`stored`]: stored prices in memory — each pair's newest, and every new one for the
//!   streams — read once per node, woken by `LISTEN` ([`crate::store::notify`]).
//! - [`checked`]: every stored row judged by `oracle verify`'s rules before it is held or
//!   served; a row that fails is counted, logged once and never served.
//! - [`verified`]: rounds the node's pool has just verified, before they are stored.
//! - [`network`]: the rule prices are checked against — f and the configuration.
//! - [`params`]: what a request may ask for, and the limits.
//! - [`error`]: every error as JSON, with its status.
//! - `stream`: the SSE stream.
//!
//! `latest` answers from memory; history, one price by id and a stream's replay read the
//! database, through a [`Store`] of its own, so readers can never take the connections the
//! node's heartbeats and flush need; every query is one indexed statement.

pub mod checked;
pub mod error;
pub mod limits;
pub mod network;
pub mod params;
pub mod stored;
mod stream;
pub mod verified;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::membership::MemberView;
use crate::pair::{Pair, PairSet};
use crate::store::Store;
use crate::store::read::HistoryQuery;
use checked::Checker;
use error::{ApiError, ApiPath, ApiQuery, ErrorBody, TooManyRequests};
pub use params::ApiLimits;
use params::{LatestParams, ListParams};
use stored::{StoredJson, StoredPrices};
use verified::{VerifiedPrice, VerifiedPrices};
use view::{PricePage, PriceView};

/// What the API serves from.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    /// The pairs this node serves; the first is the default. Requests for others are refused.
    pub pairs: PairSet,
    pub limits: ApiLimits,
    /// Which browser origins may read it.
    pub cors: limits::Cors,
    /// Rounds the node's pool verified, before they are stored.
    pub verified: Arc<VerifiedPrices>,
    /// The member set the node applies, as it replaces it: read only, so the API never reaches
    /// into the node's loop. Its deployment, and its changes, are what stored rows are judged
    /// by ([`checked`]).
    pub members: MemberView,
    /// Where stored rows refused as not verifying are counted.
    pub probe: Arc<dyn checked::Probe>,
    /// Cancelled when the node stops: ends every stream, so that the server's graceful stop
    /// does not wait for clients that never hang up.
    pub stop: CancellationToken,
}

/// What every handler shares.
#[derive(Clone)]
struct Shared {
    api: Arc<ApiState>,
    stored: Arc<StoredPrices>,
    streams: Arc<stream::Streams>,
    /// The OpenAPI document, serialized once.
    openapi: Arc<Result<String, String>>,
    /// Held, never read: the API's background tasks end when the server drops its router.
    _background: Arc<Background>,
}

/// The API's background tasks — the table's listener and reader, the rate limiter's cleanup.
/// The router's state holds them, so they end with the server that uses them (or earlier, at
/// the node's stop), never outliving it unheld.
#[derive(Default)]
pub(crate) struct Background(std::sync::Mutex<Vec<AbortOnDropHandle<()>>>);

impl Background {
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = AbortOnDropHandle::new(tokio::spawn(task));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "price-oracle",
        description = "Prices of a price-oracle network, each with its signatures, the \
                       digest they sign and the report the verifier contract takes: stored, and \
                       (in the stream and on request) verified but not stored yet. Every 64-bit \
                       integer (id, price_e8, seq) is a decimal string. Errors are \
                       {\"error\": \"...\"} with status 400 (bad request), 404 (not found) or \
                       503 (the database is unavailable, or the node serves as many streams as \
                       it may). Every stored price is checked by the serving node before it is \
                       served, with the rules of `oracle verify`: a stored row that does not \
                       verify is never served (left out of history and streams, never the \
                       latest, 404 by id)."
    ),
    tags(
        (name = "prices", description = "Stored prices"),
        (name = "network", description = "The fault bound and configuration prices are checked against")
    )
)]
struct ApiDoc;

/// The `/v1` routes, with JSON errors for unknown paths and wrong methods, ready to be merged
/// into the node's HTTP server. Needs a Tokio runtime: it starts the reader of stored prices
/// and its database listener, which run until `state.stop`.
pub fn router(state: ApiState) -> Router {
    let (router, document) = routes().split_for_parts();
    let document = serde_json::to_value(&document)
        .map(|document| for_this_node(document, state.pairs, &state.limits))
        .and_then(|document| serde_json::to_string(&document))
        .map_err(|err| err.to_string());
    let api = Arc::new(state);
    let checker = Checker::new(api.members.clone(), Arc::clone(&api.probe));
    let stored = Arc::new(StoredPrices::new(api.limits.stream_backlog, checker));
    let background = Arc::new(Background::default());
    follow_stored_prices(&api, &stored, &background);
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    let router = limits::apply(router, &api.limits, &api.cors, &api.stop, &background);
    router.with_state(Shared {
        streams: Arc::new(stream::Streams::new(&api, Arc::clone(&stored))),
        stored,
        api,
        openapi: Arc::new(document),
        _background: background,
    })
}

/// The document as this node answers: `pair` is one of its own pairs, `limit` at most its
/// `--api-max-page`, so that every request the document allows is one the node accepts.
fn for_this_node(
    mut document: serde_json::Value,
    pairs: PairSet,
    limits: &ApiLimits,
) -> serde_json::Value {
    let names: Vec<&str> = pairs.iter().map(Pair::name).collect();
    // Looked up, never indexed: indexing a JSON value for writing adds what is missing.
    let parameters = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|path| path.get_mut("get")?.get_mut("parameters")?.as_array_mut())
        .flatten();
    for parameter in parameters {
        match parameter["name"].as_str() {
            Some("pair") => {
                parameter["schema"] = serde_json::json!({ "type": "string", "enum": names });
            }
            Some("limit") => parameter["schema"]["maximum"] = limits.max_page.into(),
            _ => {}
        }
    }
    document
}

/// Starts the database listener and the one reader of stored prices it wakes.
fn follow_stored_prices(api: &ApiState, stored: &Arc<StoredPrices>, background: &Background) {
    let (wake, woken) = tokio::sync::watch::channel(0);
    let (store, stop) = (api.store.clone(), api.stop.clone());
    background.spawn(async move { store.listen_for_stored_prices(wake, stop).await });
    let (store, stop, pairs) = (api.store.clone(), api.stop.clone(), api.pairs);
    let stored = Arc::clone(stored);
    background.spawn(async move { stored.follow_table(store, pairs, woken, stop).await });
}

/// Every endpoint, each documented by its `#[utoipa::path]`: the routes and the document come
/// from the same list, so they cannot disagree.
fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(latest))
        .routes(routes!(list))
        .routes(routes!(stream::stream))
        .routes(routes!(by_id))
        .routes(routes!(network::network))
        .routes(routes!(openapi_json))
}

/// What `/v1` answers, read from the database and judged as a node's API judges every row (for
/// `oracle prices`): the same JSON, and the same refusals — a row that does not verify is
/// never printed, `latest` is the newest that verifies, a page leaves such rows out.
pub struct DirectReader {
    stored: StoredPrices,
}

impl DirectReader {
    /// Judges rows by the `signers` table, in `deployment` (what signatures are bound to).
    pub fn new(deployment: crate::domain::Deployment) -> Self {
        let members = crate::membership::Members::for_node(None).in_deployment(deployment);
        // Nobody changes the members while a command reads: the view needs no sender.
        let (_, view) = tokio::sync::watch::channel(Arc::new(members));
        Self {
            stored: StoredPrices::new(1, Checker::new(view, Arc::new(checked::Unwatched))),
        }
    }

    /// `GET /v1/prices/latest?pair=` (stored prices only: a command has no pool).
    pub async fn latest(&self, store: &Store, pair: Pair) -> Result<String, ApiError> {
        let newest = self.stored.newest_served(store, pair).await?;
        let newest = newest.ok_or_else(|| ApiError::NotFound(no_stored_price_of(pair)))?;
        Ok(text(&newest.json))
    }

    /// `GET /v1/prices/{id}`.
    pub async fn price(&self, store: &Store, id: i64) -> Result<String, ApiError> {
        match self.stored.price(store, id).await? {
            Some(Ok(price)) => Ok(text(&price.json)),
            Some(Err(refused)) => Err(ApiError::NotFound(refused_price(id, refused))),
            None => Err(ApiError::NotFound(no_price_with_id(id))),
        }
    }

    /// `GET /v1/prices?…`.
    pub async fn history(&self, store: &Store, query: &HistoryQuery) -> Result<String, ApiError> {
        Ok(text(&self.stored.page(store, query).await?.to_json()))
    }
}

/// JSON this crate serialized, as text.
fn text(json: &[u8]) -> String {
    String::from_utf8_lossy(json).into_owned()
}

fn no_stored_price_of(pair: Pair) -> String {
    format!("no stored price of {pair} yet")
}

fn no_price_with_id(id: i64) -> String {
    format!("no stored price with id {id}")
}

fn refused_price(id: i64, refused: crate::audit::FindingKind) -> String {
    format!("stored price {id} does not verify ({refused}): this node does not serve it")
}

/// The newest price of a pair, from the node's memory: it never waits for the database, and
/// while the database is down it answers with what it holds, its `Age` growing.
#[utoipa::path(
    get,
    path = "/v1/prices/latest",
    tag = "prices",
    params(
        LatestParams,
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 if the answer is still the same"),
    ),
    responses(
        (status = 200, description = "The pair's newest stored price that verifies, by observation time (ties: the greater id); with `include=verified`, the fresher of it and the newest round this node saw verified but not stored yet (`status` says which)", body = PriceView,
            headers(
                ("ETag" = String, description = "Names the price and its status"),
                ("Cache-Control" = String, description = "`public, max-age=1`"),
                ("Age" = Option<u64>, description = "For a stored price: seconds since the node last read the database, where it would have seen a newer one"),
            )),
        (status = 304, description = "Unchanged since the `ETag` given in `If-None-Match`"),
        (status = 400, description = "Unknown pair, or an `include` other than `verified`", body = ErrorBody),
        (status = 404, description = "Nothing stored (nor, with `include=verified`, verified) for the pair yet", body = ErrorBody),
        (status = 503, description = "The node has not read the database since it started (and, with `include=verified`, holds nothing verified)", body = ErrorBody),
        TooManyRequests,
    )
)]
async fn latest(
    State(shared): State<Shared>,
    request: HeaderMap,
    ApiQuery(params): ApiQuery<LatestParams>,
) -> Result<Response, ApiError> {
    let pair = params::pick_pair(shared.api.pairs, params.pair.as_deref())?;
    let verified = if params.include_verified()? {
        shared.api.verified.newest(pair)
    } else {
        None
    };
    let newest = shared.stored.newest(pair);
    let stored = newest.as_ref().and_then(|newest| newest.price.as_ref());
    let cached = match (stored, verified) {
        (Some(stored), Some(verified)) if verified.view.is_fresher_than(&stored.view) => {
            Cached::verified(&verified)
        }
        (Some(stored), _) => Cached::stored(stored, LATEST_CACHE_CONTROL),
        // Nothing stored, or nothing known yet: what the pool verified still stands.
        (None, Some(verified)) => Cached::verified(&verified),
        (None, None) if newest.is_some() => {
            return Err(ApiError::NotFound(no_stored_price_of(pair)));
        }
        (None, None) => return Err(ApiError::NotLoaded),
    };
    let age = newest
        .filter(|_| cached.etag.starts_with("\"stored"))
        .map(|n| n.age);
    Ok(cached.respond(&request, age))
}

/// How long a client or cache may reuse a `latest` answer: rounds are at least an observe
/// interval apart, and a second's delay is what a cache in front of a busy node can save.
const LATEST_CACHE_CONTROL: &str = "public, max-age=1";
/// A stored price never changes.
const STORED_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// A price's JSON as served from memory, with its validators.
struct Cached {
    json: axum::body::Bytes,
    etag: String,
    cache_control: &'static str,
}

impl Cached {
    fn stored(price: &StoredJson, cache_control: &'static str) -> Self {
        Self {
            json: price.json.clone(),
            etag: stored_etag(&price.view.id),
            cache_control,
        }
    }

    /// A verified price may gain observations, and becomes stored: its tag names both.
    fn verified(price: &VerifiedPrice) -> Self {
        Self {
            json: axum::body::Bytes::copy_from_slice(price.json.as_bytes()),
            etag: format!(
                "\"verified-{}-{}\"",
                price.view.id,
                price.view.observations.len()
            ),
            cache_control: LATEST_CACHE_CONTROL,
        }
    }

    /// 304 if the client holds it already, else the JSON.
    fn respond(self, request: &HeaderMap, age: Option<std::time::Duration>) -> Response {
        let mut headers = vec![
            (header::ETAG, self.etag.clone()),
            (header::CACHE_CONTROL, self.cache_control.to_owned()),
        ];
        if let Some(age) = age {
            headers.push((header::AGE, age.as_secs().to_string()));
        }
        let mut response = if holds(request, &self.etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, "application/json")], self.json).into_response()
        };
        for (name, value) in headers {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

fn stored_etag(id: &str) -> String {
    format!("\"stored-{id}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn holds(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// A pair's history in commit order, one page at a time.
///
/// Pages follow `seq`, the order in which rows committed: pass each page's `next` as `after`
/// until it is `null`. A row that commits later always comes after the cursor, so following
/// `next` (or the greatest `seq` seen) never skips a row.
#[utoipa::path(
    get,
    path = "/v1/prices",
    tag = "prices",
    params(ListParams),
    responses(
        (status = 200, description = "One page, in seq order. A stored row that does not verify is left out, and `next` still moves past it: a page may hold fewer than `limit` prices while `next` is set", body = PricePage,
            headers(
                ("Cache-Control" = String, description = "A full page (`next` set) never changes: `public, max-age=31536000, immutable`; the last page grows: `public, max-age=1`"),
                ("Content-Encoding" = Option<String>, description = "`gzip` for a full page the node has served before, when `Accept-Encoding` takes gzip (several times fewer bytes); otherwise absent: JSON as is"),
                ("Vary" = String, description = "`Accept-Encoding`"),
            )),
        (status = 400, description = "Unknown pair, a parameter that is not a whole number, limit out of range, from after to, or a bad cursor", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
        TooManyRequests,
    )
)]
async fn list(
    State(shared): State<Shared>,
    request: HeaderMap,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let query = params.read()?.check(shared.api.pairs, &shared.api.limits)?;
    let page = shared
        .stored
        .page_json(&shared.api.store, &query, accepts_gzip(&request))
        .await?;
    // A full page never changes (rows that commit later come after it); the last one grows.
    let cache_control = if page.full {
        STORED_CACHE_CONTROL
    } else {
        LATEST_CACHE_CONTROL
    };
    let headers = [
        (header::CONTENT_TYPE, "application/json"),
        (header::CACHE_CONTROL, cache_control),
        (header::VARY, "accept-encoding"),
    ];
    Ok(match page.gzip {
        Some(gzip) => (headers, [(header::CONTENT_ENCODING, "gzip")], gzip).into_response(),
        None => (headers, page.json).into_response(),
    })
}

/// Whether the client takes gzip: `Accept-Encoding` names it, and not with `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let named = parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("gzip"));
            let refused = parts.any(|part| {
                part.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            named && !refused
        })
}

/// One stored price by id. A stored price never changes: its answer may be cached for good, and
/// a client that names its `ETag` gets a 304, without the node reading anything when it holds
/// the price. A stored row that does not verify is a 404 that says so.
#[utoipa::path(
    get,
    path = "/v1/prices/{id}",
    tag = "prices",
    params(
        ("id" = String, Path, description = "The price's id: a decimal whole number, at most 19 digits", pattern = "^[0-9]{1,19}$", example = "99994137125717029"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of an earlier answer: 304"),
    ),
    responses(
        (status = 200, description = "The price", body = PriceView,
            headers(
                ("ETag" = String, description = "Names the price"),
                ("Cache-Control" = String, description = "`public, max-age=31536000, immutable`"),
            )),
        (status = 304, description = "The `ETag` given in `If-None-Match` is this price's"),
        (status = 400, description = "Not a decimal id", body = ErrorBody),
        (status = 404, description = "No price with this id; or a row stored under it that does not verify (a signature, a non-member's observation, below the quorum or uncommitted, an id outside its origin's space, a time in the future), which this node never serves: the error says so and why", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
        TooManyRequests,
    )
)]
async fn by_id(
    State(shared): State<Shared>,
    request: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = params::price_id(&id)?;
    // Judged once, from memory after: a 304 needs no read while the price is held, and an
    // `ETag` of a row this node refuses gets no 304.
    match shared.stored.price(&shared.api.store, id).await? {
        Some(Ok(price)) => Ok(Cached::stored(&price, STORED_CACHE_CONTROL).respond(&request, None)),
        Some(Err(refused)) => Err(ApiError::NotFound(refused_price(id, refused))),
        None => Err(ApiError::NotFound(no_price_with_id(id))),
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "prices",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of /v1", content_type = "application/json", body = Object),
        TooManyRequests,
    )
)]
async fn openapi_json(State(shared): State<Shared>) -> Response {
    match shared.openapi.as_ref() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(ErrorBody {
                error: format!("cannot serialize the OpenAPI document: {err}"),
            }),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_when_named_and_not_refused() {
        let taking = |value: &str| {
            let mut request = HeaderMap::new();
            request.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&request)
        };
        for taken in [
            "gzip",
            "GZIP",
            "br, gzip;q=0.5",
            "gzip, deflate",
            " gzip ; q=1",
        ] {
            assert!(taking(taken), "{taken}");
        }
        for refused in ["identity", "br", "gzip;q=0", "gzip; q=0.0", "x-gzip2"] {
            assert!(!taking(refused), "{refused}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
