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

use crate::pool::PoolCounts;
use crate::price::SourceStatus;

/// What `/status` shows; the node refreshes it about once a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub peer_id: String,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub listen_addrs: Vec<String>,
    pub connected_peers: usize,
    pub min_peers: usize,
    /// `not connected`, `ok` or `failing`: the outcome of the last database call.
    pub database: DatabaseState,
    pub is_writer: bool,
    /// The writer as this node's last heartbeat saw it.
    pub writer: Option<String>,
    pub pool: PoolCounts,
    /// This node's latest observation of each pair it signs, by pair.
    pub last_observations: std::collections::BTreeMap<String, Observed>,
    /// Each price source's state: ok, failing or blocked, its last quotes, error and exclusion.
    pub sources: Vec<SourceStatus>,
    /// The newest price id this node stored as the writer.
    pub last_stored_id: Option<String>,
    /// Why the node is unhealthy; empty when it is healthy (the rules: docs/operating.md#health).
    pub problems: Vec<String>,
}

/// A price this node fetched.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub price: String,
    /// Unix seconds.
    pub observed_at: u64,
    /// How many sources the price is the median of.
    pub sources: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseState {
    #[default]
    NotConnected,
    Ok,
    Failing,
}

#[derive(Clone)]
struct AppState {
    status: watch::Receiver<NodeStatus>,
    registry: Arc<Registry>,
}

/// Binds `addr` and serves until `stop` is cancelled; with `api` (the consumers' `/v1` routes,
/// [`crate::api::router`]) beside the operator's endpoints.
pub async fn serve(
    addr: SocketAddr,
    status: watch::Receiver<NodeStatus>,
    registry: Arc<Registry>,
    stop: tokio_util::sync::CancellationToken,
    api: Option<Router>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let mut app = Router::new()
        .route("/health", get(health))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
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
pub fn unhealthy_reason(status: &NodeStatus) -> Option<String> {
    (!status.problems.is_empty()).then(|| status.problems.join("; "))
}

async fn health(State(state): State<AppState>) -> Response {
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

async fn status_json(State(state): State<AppState>) -> Json<NodeStatus> {
    Json(state.status.borrow().clone())
}

async fn metrics(State(state): State<AppState>) -> Response {
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

    #[test]
    fn health_reports_every_problem_in_one_line() {
        let mut status = NodeStatus::default();
        assert_eq!(unhealthy_reason(&status), None);
        status.problems = vec![
            "connected to 1 of 3 required peers".into(),
            "the last database call failed".into(),
        ];
        assert_eq!(
            unhealthy_reason(&status).as_deref(),
            Some("connected to 1 of 3 required peers; the last database call failed")
        );
    }
}
