//! The consumers' read API: stored prices as JSON under `/v1`, on every node with a database and
//! `--http`, each price with everything needed to verify it without this code.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /v1/prices/latest?pair=&include=verified` | the pair's newest price by observation time |
//! | `GET /v1/prices?pair=&from=&to=&limit=&after=` | history in commit order, keyset-paginated by `seq` |
//! | `GET /v1/prices/{id}` | one price |
//! | `GET /v1/prices/stream?pair=&after=` | Server-Sent Events of prices as they are verified and as they commit |
//! | `GET /v1/openapi.json` | the OpenAPI 3.1 document, generated from the handlers below |
//!
//! - [`view`]: the JSON of a price (shared with `oracle prices`).
//! - [`verified`]: rounds the node's pool has just verified, before they are stored.
//! - [`params`]: what a request may ask for, and the limits.
//! - [`error`]: every error as JSON, with its status.
//! - `stream`: the SSE stream, woken by `LISTEN` ([`crate::store::notify`]).
//!
//! The API reads through a [`Store`] of its own, so readers can never take the connections the
//! node's heartbeats and flush need; every query is one indexed statement.

pub mod error;
pub mod params;
mod stream;
pub mod verified;
pub mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::pair::{Pair, PairSet};
use crate::store::Store;
use crate::store::read::HistoryQuery;
use error::{ApiError, ApiPath, ApiQuery, ErrorBody};
pub use params::ApiLimits;
use params::{LatestParams, ListParams};
use verified::VerifiedPrices;
use view::{PricePage, PriceView};

/// What the API serves from.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    /// The pairs this node serves; the first is the default. Requests for others are refused.
    pub pairs: PairSet,
    pub limits: ApiLimits,
    /// Rounds the node's pool verified, before they are stored.
    pub verified: Arc<VerifiedPrices>,
    /// Cancelled when the node stops: ends every stream, so that the server's graceful stop
    /// does not wait for clients that never hang up.
    pub stop: CancellationToken,
}

/// What every handler shares.
#[derive(Clone)]
struct Shared {
    api: Arc<ApiState>,
    streams: Arc<stream::Streams>,
    /// The OpenAPI document, serialized once.
    openapi: Arc<Result<String, String>>,
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
                       it may)."
    ),
    tags((name = "prices", description = "Stored prices"))
)]
struct ApiDoc;

/// The `/v1` routes, with JSON errors for unknown paths and wrong methods, ready to be merged
/// into the node's HTTP server. Needs a Tokio runtime: the first stream starts the database
/// listener.
pub fn router(state: ApiState) -> Router {
    let (router, document) = routes().split_for_parts();
    let api = Arc::new(state);
    let shared = Shared {
        streams: Arc::new(stream::Streams::new(&api)),
        api,
        openapi: Arc::new(document.to_json().map_err(|err| err.to_string())),
    };
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(shared)
}

/// Every endpoint, each documented by its `#[utoipa::path]`: the routes and the document come
/// from the same list, so they cannot disagree.
fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(latest))
        .routes(routes!(list))
        .routes(routes!(stream::stream))
        .routes(routes!(by_id))
        .routes(routes!(openapi_json))
}

/// The newest stored price of `pair` by observation time (ties: the greater id).
pub async fn latest_price(store: &Store, pair: Pair) -> Result<PriceView, ApiError> {
    let row = store
        .latest_price(pair)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no stored price of {pair} yet")))?;
    shown(&row)
}

/// The stored price with this id.
pub async fn price(store: &Store, id: i64) -> Result<PriceView, ApiError> {
    let row = store
        .price_by_id(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no stored price with id {id}")))?;
    shown(&row)
}

/// One page of history in commit order. A row that cannot be shown is left out (and logged):
/// refusing the page would stop every reader at that row for good. `next` still moves past it.
pub async fn history(store: &Store, query: &HistoryQuery) -> Result<PricePage, ApiError> {
    let rows = store.price_history(query).await?;
    let full = rows.len() as u64 == query.limit;
    let next = rows.last().filter(|_| full).map(|row| row.seq.to_string());
    let prices = rows
        .iter()
        .filter_map(|row| match PriceView::from_row(row) {
            Ok(view) => Some(view),
            Err(reason) => {
                log::error!("API: leaving out stored price {}: {reason}", row.id);
                None
            }
        })
        .collect();
    Ok(PricePage { prices, next })
}

fn shown(row: &crate::store::reports::StoredPrice) -> Result<PriceView, ApiError> {
    PriceView::from_row(row).map_err(|reason| ApiError::Malformed {
        id: row.id,
        reason: reason.to_string(),
    })
}

/// The newest price of a pair.
#[utoipa::path(
    get,
    path = "/v1/prices/latest",
    tag = "prices",
    params(LatestParams),
    responses(
        (status = 200, description = "The pair's newest stored price by observation time (ties: the greater id); with `include=verified`, the fresher of it and the newest round this node saw verified but not stored yet (`status` says which)", body = PriceView),
        (status = 400, description = "Unknown pair, or an `include` other than `verified`", body = ErrorBody),
        (status = 404, description = "Nothing stored (nor, with `include=verified`, verified) for the pair yet", body = ErrorBody),
        (status = 503, description = "The database is unavailable (and, with `include=verified`, nothing verified is held)", body = ErrorBody),
    )
)]
async fn latest(
    State(shared): State<Shared>,
    ApiQuery(params): ApiQuery<LatestParams>,
) -> Result<Json<PriceView>, ApiError> {
    let pair = params::pick_pair(shared.api.pairs, params.pair.as_deref())?;
    let include_verified = params.include_verified()?;
    let stored = latest_price(&shared.api.store, pair).await;
    if !include_verified {
        return stored.map(Json);
    }
    let fresher = match (stored, shared.api.verified.newest(pair)) {
        (Ok(stored), Some(verified)) if verified.is_fresher_than(&stored) => verified,
        (Ok(stored), _) => stored,
        // Nothing stored, or the database is down: what the pool verified still stands.
        (Err(_), Some(verified)) => verified,
        (Err(err), None) => return Err(err),
    };
    Ok(Json(fresher))
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
        (status = 200, description = "One page, in seq order", body = PricePage),
        (status = 400, description = "Unknown pair, a parameter that is not a whole number, limit out of range, from after to, or a bad cursor", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn list(
    State(shared): State<Shared>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<PricePage>, ApiError> {
    let query = params.read()?.check(shared.api.pairs, &shared.api.limits)?;
    Ok(Json(history(&shared.api.store, &query).await?))
}

/// One stored price by id.
#[utoipa::path(
    get,
    path = "/v1/prices/{id}",
    tag = "prices",
    params(("id" = String, Path, description = "The price's id, decimal", example = "99994137125717029")),
    responses(
        (status = 200, description = "The price", body = PriceView),
        (status = 400, description = "Not a decimal id", body = ErrorBody),
        (status = 404, description = "No price with this id", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn by_id(
    State(shared): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PriceView>, ApiError> {
    let id = params::price_id(&id)?;
    Ok(Json(price(&shared.api.store, id).await?))
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "prices",
    responses((status = 200, description = "The OpenAPI 3.1 document of /v1", content_type = "application/json", body = Object))
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
