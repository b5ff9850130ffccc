//! `GET /v1/network`: the rule a price of this network is checked against — its fault bound f
//! and what follows from it, and the configuration every signature is bound to — as the serving
//! node applies it now. Read from the member set the node publishes on a watch channel: the API
//! only ever reads it.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Shared;
use super::error::{ApiError, ErrorBody, TooManyRequests};
use crate::membership::Members;

/// The network's configuration and fault bound, as this node applies them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NetworkView {
    /// The protocol, whose name begins every configuration digest.
    #[schema(example = "price-oracle/v2")]
    pub protocol: &'static str,
    /// `--network-name`: part of the configuration, so a test network's signatures never count
    /// in another.
    #[schema(example = "price-oracle")]
    pub network: String,
    /// `--chain-id`: the chain whose verifier takes the reports, 0 for none.
    #[schema(example = 0)]
    pub chain_id: u64,
    /// `--verifier` (EIP-55): the contract that checks reports, the zero address for none.
    #[schema(example = "0x0000000000000000000000000000000000000000")]
    pub verifier: String,
    /// The members that count now.
    #[schema(example = 4)]
    pub members: usize,
    /// Faulty members tolerated: ⌊(members − 1)/3⌋, or `--fault-tolerance` if lower.
    #[schema(example = 1)]
    pub f: usize,
    /// Observations of distinct members a price needs: 2f + 1.
    #[schema(example = 3)]
    pub quorum: usize,
    /// Distinct members whose commit signatures (over the price's `report_digest`) make it a
    /// report: f + 1.
    #[schema(example = 2)]
    pub commit_threshold: usize,
    /// Members that observe a round at once, its origin among them: 3f + 1 (at most the
    /// members).
    #[schema(example = 4)]
    pub committee_size: usize,
    /// The configuration digest (network, chain, verifier, member set and f) every signature
    /// of the network is bound to now: a price whose `config` is this one is checked with the
    /// `f` above.
    #[schema(example = "0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d")]
    pub config: String,
}

impl NetworkView {
    /// `None` until the member list has been read (nobody counts before), and for an open
    /// relay, which has no list (a node serving the API always has one).
    pub fn of(members: &Members) -> Option<Self> {
        let count = members.count().filter(|count| *count > 0)?;
        let f = members.fault_bound();
        let deployment = members.deployment();
        Some(Self {
            protocol: crate::domain::PROTOCOL,
            network: deployment.network.clone(),
            chain_id: deployment.chain_id,
            verifier: deployment.verifier.to_checksum(None),
            members: count,
            f: f.faults(),
            quorum: f.quorum(),
            commit_threshold: f.commit_threshold(),
            committee_size: f.committee_size().min(count),
            config: members.config_digest()?.to_string(),
        })
    }
}

/// How long a client may reuse the answer: the member set changes rarely, and a change is seen
/// at the next heartbeat anyway.
const CACHE_CONTROL: &str = "public, max-age=1";

/// The network's fault bound and configuration, as this node applies them now.
#[utoipa::path(
    get,
    path = "/v1/network",
    tag = "network",
    responses(
        (status = 200, description = "The members, f and what follows from it, and the configuration digest; a price whose `config` equals this `config` needs observations of `quorum` distinct members and commits of `commit_threshold`", body = NetworkView,
            headers(("Cache-Control" = String, description = "`public, max-age=1`"))),
        (status = 503, description = "The node has not read its member list yet", body = ErrorBody),
        TooManyRequests,
    )
)]
pub(super) async fn network(State(shared): State<Shared>) -> Result<Response, ApiError> {
    let members = std::sync::Arc::clone(&shared.api.members.borrow());
    let view = NetworkView::of(&members).ok_or(ApiError::NotLoaded)?;
    Ok(([(header::CACHE_CONTROL, CACHE_CONTROL)], Json(view)).into_response())
}
