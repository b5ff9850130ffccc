//! What one client, and all clients together, may ask of a node's `/v1` API, so that readers
//! can never starve the node's consensus work: a request rate per client (by its IP address,
//! `tower_governor`) and a bound on requests being answered at once (tower's concurrency limit,
//! shedding the excess), both answered 429 with `Retry-After`; and CORS for browser consumers,
//! when the operator names the origins.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiLimits;
use super::error::ErrorBody;

/// Seconds a client is asked to wait when every request slot of the node is taken.
const BUSY_RETRY_AFTER_SECONDS: u64 = 1;
/// How often the per-client rate limiter forgets clients that have gone quiet.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Which browser origins may read the API (`--api-cors-origin`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: browsers on other origins cannot read the answers.
    #[default]
    Off,
    /// `*`: any origin.
    Any,
    /// Only these origins, e.g. `https://app.example.org`.
    Origins(Vec<HeaderValue>),
}

impl Cors {
    /// From the flag's values: none is off, `*` is any, otherwise each is an origin.
    pub fn from_origins(origins: &[String]) -> Result<Self, String> {
        if origins.is_empty() {
            return Ok(Self::Off);
        }
        if origins.iter().any(|origin| origin == "*") {
            return Ok(Self::Any);
        }
        origins
            .iter()
            .map(|origin| {
                let host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                let valid = host.is_some_and(|host| !host.is_empty() && !host.contains('/'));
                valid
                    .then(|| HeaderValue::from_str(origin).ok())
                    .flatten()
                    .ok_or_else(|| {
                        format!(
                            "{origin:?} is not an origin: scheme://host[:port], no path, or * for any"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self::Origins)
    }
}

/// `router` with the limits and CORS applied. The rate limiter forgets quiet clients every
/// minute until `stop`. Needs the server to provide each connection's peer address
/// (`into_make_service_with_connect_info`), as [`crate::http::serve`] does.
pub(crate) fn apply<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limits: &ApiLimits,
    cors: &Cors,
    stop: &CancellationToken,
    background: &super::Background,
) -> Router<S> {
    // Innermost: requests being answered at once, one count for every route (axum layers each
    // route with its own clone). A stream counts until its response starts, not while it stays
    // open (`--api-max-streams` bounds those).
    let mut router = router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                too_many(
                    "this node is answering as many requests as it may; try again shortly",
                    BUSY_RETRY_AFTER_SECONDS,
                )
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight)),
    );
    if limits.rate_per_second > 0 {
        // The quota: `rate_per_second` on average, `rate_burst` at once, per peer IP address.
        let config = GovernorConfigBuilder::default()
            .period(Duration::from_secs(1) / limits.rate_per_second)
            .burst_size(limits.rate_burst.max(1))
            .finish();
        if let Some(config) = config {
            let limiter = Arc::clone(config.limiter());
            let stop = stop.clone();
            // The limiter keeps a cell per address: forget those gone quiet.
            background.spawn(async move {
                let forgetting = async {
                    let mut every = tokio::time::interval(FORGET_EVERY);
                    loop {
                        every.tick().await;
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                };
                stop.run_until_cancelled(forgetting).await;
            });
            router = router
                .layer(tower_governor::GovernorLayer::new(config).error_handler(rate_limited));
        }
    }
    // Outermost, so that a 429 carries the CORS headers too and a browser can read it.
    match cors_layer(cors) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// A client past its quota: 429 with the wait.
fn rate_limited(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => too_many(
            "too many requests from this address; slow down",
            wait_time.max(1),
        ),
        other => {
            log::error!("API: cannot rate-limit a request: {other}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(ErrorBody {
                    error: "cannot tell where the request came from".to_owned(),
                }),
            )
                .into_response()
        }
    }
}

fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
    let origins = match cors {
        Cors::Off => return None,
        Cors::Any => AllowOrigin::any(),
        Cors::Origins(origins) => AllowOrigin::list(origins.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET])
            .allow_headers([
                header::IF_NONE_MATCH,
                header::HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::ETAG, header::AGE, header::RETRY_AFTER]),
    )
}

/// 429 with `Retry-After`, as JSON like every other error.
fn too_many(reason: &str, retry_after_seconds: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after_seconds.to_string())],
        Json(ErrorBody {
            error: reason.to_owned(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_origins() {
        assert_eq!(Cors::from_origins(&[]), Ok(Cors::Off));
        assert_eq!(
            Cors::from_origins(&["https://a.example".into(), "*".into()]),
            Ok(Cors::Any)
        );
        assert_eq!(
            Cors::from_origins(&["http://127.0.0.1:3000".into()]),
            Ok(Cors::Origins(vec![HeaderValue::from_static(
                "http://127.0.0.1:3000"
            )]))
        );
        for bad in [
            "example.org",
            "https://a.example/",
            "https://a.example/app",
            "ftp://x",
        ] {
            assert!(Cors::from_origins(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
