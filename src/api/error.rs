//! How the API says no: always JSON `{"error": "…"}`, with the status that tells a client what
//! to do — 400 fix the request, 404 nothing there, 503 try again later, 500 tell the operator.
//! Axum's own rejections (a query string or path it cannot read, an unknown endpoint, a wrong
//! method) come out the same way, through [`ApiQuery`], [`ApiPath`] and the fallbacks.

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::logging::{LogLimiter, suppressed_note};
use crate::store::StoreError;

/// Seconds a client is asked to wait before trying again after a 503.
const RETRY_AFTER_SECONDS: u32 = 5;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed, out of range or names an unknown pair.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: Method },
    /// The node cannot serve it now (every stream slot taken).
    #[error("{0}")]
    Busy(String),
    /// The database did not answer, or failed.
    #[error("{0}")]
    Database(#[from] StoreError),
    /// The node has not read the database since it started: it knows nothing yet.
    #[error("the node has not read the database yet")]
    NotLoaded,
    /// A stored row this code cannot show (only a hand-written row can be one).
    #[error("stored price {id} cannot be shown: {reason}")]
    Malformed { id: i64, reason: String },
}

/// What the OpenAPI document says of a 429, on every `/v1` route.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 429,
    description = "Past this client's request rate (`--api-rate-limit`), or the node is answering as many requests as it may (`--api-max-in-flight`): retry after `Retry-After` seconds",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub struct TooManyRequests(#[allow(dead_code)] ErrorBody);

/// The body of every error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = "unknown pair \"DOGE/USD\": this node serves ETH/USD")]
    pub error: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Busy(_) | Self::Database(_) | Self::NotLoaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Malformed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told. A database failure is only named: its details describe the
    /// node's insides and help no consumer, so they go to the node's log instead.
    fn public_message(&self) -> String {
        match self {
            Self::Database(_) | Self::NotLoaded => {
                "the database is unavailable; try again later".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// One warning per 10 s for database failures, however many requests hit them: during an
/// outage every request would fail the same way.
static DATABASE_FAILURES: LazyLock<Mutex<LogLimiter>> = LazyLock::new(Mutex::default);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Database(err) => {
                let allowed = DATABASE_FAILURES
                    .lock()
                    .map(|mut limiter| limiter.allow(Instant::now()))
                    .unwrap_or(Some(0));
                if let Some(suppressed) = allowed {
                    log::warn!("API: {err}{}", suppressed_note(suppressed));
                }
            }
            Self::Malformed { .. } => log::error!("API: {self}"),
            _ => {}
        }
        let status = self.status();
        let body = Json(ErrorBody {
            error: self.public_message(),
        });
        if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// `Query<T>` whose rejection is a JSON 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `Path<T>` whose rejection is a JSON 400.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Unknown paths.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint {}; see /v1/openapi.json",
        crate::logging::truncate_for_display(uri.path())
    ))
}

/// Known paths, wrong method.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed { method }
}
