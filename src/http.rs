//! The operator's view of a node over HTTP: `/health` for load balancers and alerts, `/status`
//! for people, `/metrics` for Prometheus. The consumers' `/v1` API ([`crate::api`]) is served
//! beside them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a node shows at `/status`, and the problems `/health` reports.
pub trait Status: Serialize + Clone + Send + Sync + 'static {
    /// Why the node is unhealthy; empty when it is healthy.
    fn problems(&self) -> &[String];
}

struct AppState<S> {
    status: watch::Receiver<S>,
    registry: Arc<Registry>,
}

// Not derived: a derive would ask `S: Clone` of the receiver's contents for no reason.
impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            status: self.status.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

/// Binds `addr` and serves until `stop` is cancelled; with `api` (the consumers' `/v1` routes,
/// [`crate::api::router`]) beside the operator's endpoints.
pub async fn serve<S: Status>(
    addr: SocketAddr,
    status: watch::Receiver<S>,
    registry: Arc<Registry>,
    stop: tokio_util::sync::CancellationToken,
    api: Option<Router>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut app = Router::new()
        .route("/health", get(health::<S>))
        .route("/status", get(status_json::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(AppState { status, registry });
    if let Some(api) = api {
        app = app.merge(api);
    }
    let task = tokio::spawn(async move {
        // Each request knows its peer's address: the API's per-client limit counts by it.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(err) = served.await {
            log::error!("HTTP server stopped: {err}");
        }
    });
    Ok((bound, task))
}

/// Why a node is unhealthy, if it is: its problems, in one line.
pub fn unhealthy_reason(status: &impl Status) -> Option<String> {
    let problems = status.problems();
    (!problems.is_empty()).then(|| problems.join("; "))
}

async fn health<S: Status>(State(state): State<AppState<S>>) -> Response {
    let status = state.status.borrow().clone();
    match unhealthy_reason(&status) {
        None => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unhealthy", "reason": reason})),
        )
            .into_response(),
    }
}

async fn status_json<S: Status>(State(state): State<AppState<S>>) -> Json<S> {
    Json(state.status.borrow().clone())
}

async fn metrics<S>(State(state): State<AppState<S>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {err}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Default, Serialize)]
    struct Problems(Vec<String>);

    impl Status for Problems {
        fn problems(&self) -> &[String] {
            &self.0
        }
    }

    #[test]
    fn health_reports_every_problem_in_one_line() {
        let mut status = Problems::default();
        assert_eq!(unhealthy_reason(&status), None);
        status.0 = vec![
            "connected to 1 of 3 required peers".into(),
            "the last database call failed".into(),
        ];
        assert_eq!(
            unhealthy_reason(&status).as_deref(),
            Some("connected to 1 of 3 required peers; the last database call failed")
        );
    }
}
