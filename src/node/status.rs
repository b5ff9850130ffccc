//! What the node shows of itself: `/status` for people (refreshed about once a second) and the
//! observations `/health` judges ([`super::health`] holds the rules).

use std::time::Instant;

use serde::Serialize;

use super::{Node, health};
use crate::pool::PoolCounts;
use crate::price::SourceStatus;
use crate::store::DatabaseState;
use crate::time::unix_seconds;

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
    /// The database server (`host:port`) this node writes to: with several (a replicated
    /// database), the one that took writes when last asked.
    pub database_server: Option<String>,
    pub is_writer: bool,
    /// The writer as this node's last heartbeat saw it.
    pub writer: Option<String>,
    pub pool: PoolCounts,
    /// The fault bound this node applies and what follows from it; `None` until its member list
    /// has been read.
    pub fault_bound: Option<FaultBoundStatus>,
    /// This node's latest observation of each pair it signs, by pair.
    pub last_observations: std::collections::BTreeMap<String, Observed>,
    /// Each price source's state: ok, failing or blocked, its last quotes, error and exclusion.
    pub sources: Vec<SourceStatus>,
    /// The newest price id this node stored as the writer.
    pub last_stored_id: Option<String>,
    /// Why the node is unhealthy; empty when it is healthy (the rules: docs/operating.md#health).
    pub problems: Vec<String>,
}

/// The fault bound as a node applies it (`/status`).
#[derive(Debug, Clone, Serialize)]
pub struct FaultBoundStatus {
    /// The members that count now.
    pub members: usize,
    /// Faulty members tolerated: ⌊(members − 1)/3⌋, or `--fault-tolerance` if lower.
    pub f: usize,
    /// Observations of distinct members a round needs: 2f + 1.
    pub quorum: usize,
    /// Members that observe a round at once, its origin among them: 3f + 1.
    pub committee_size: usize,
    /// The configuration digest every signature of this network is bound to.
    pub config: String,
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

impl crate::http::Status for NodeStatus {
    fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl Node {
    fn fault_bound_status(&self) -> Option<FaultBoundStatus> {
        let members = std::sync::Arc::clone(&self.members.borrow());
        let count = members.count().filter(|count| *count > 0)?;
        let f = members.fault_bound();
        Some(FaultBoundStatus {
            members: count,
            f: f.faults(),
            quorum: f.quorum(),
            committee_size: f.committee_size().min(count),
            config: members.signing_config().to_string(),
        })
    }

    pub(super) fn refresh_status(&mut self) {
        let lease = self.writer.lease().clone();
        let pool = self.pool.counts();
        self.metrics.pool_pending.set(pool.pending as i64);
        let feed = self.origination.feed();
        let last_observations = self
            .settings
            .feed
            .pairs
            .iter()
            .filter_map(|pair| {
                let observation = self.cosigning.latest(pair)?;
                let observed = Observed {
                    price: observation.price.to_string(),
                    observed_at: unix_seconds(observation.at),
                    sources: feed.sources_used(pair).unwrap_or_default(),
                };
                Some((pair.name().to_owned(), observed))
            })
            .collect();
        let status = NodeStatus {
            name: self.settings.name.clone(),
            address: self.me.to_checksum(None),
            peer_id: self.network.peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.liveness.started.elapsed().as_secs(),
            listen_addrs: self.listen_addrs(),
            connected_peers: self.network.connected_peers(),
            min_peers: self.settings.min_peers,
            database: self.writer.database_state(),
            database_server: self.writer.store().map(|store| store.server()),
            is_writer: lease.is_writer,
            writer: lease.writer.map(|writer| writer.to_checksum(None)),
            pool,
            fault_bound: self.fault_bound_status(),
            last_observations,
            sources: feed.source_statuses(),
            last_stored_id: self.writer.last_stored_id().map(|id| id.to_string()),
            problems: Vec::new(),
        };
        let since = |at: Option<Instant>| at.map(|at| at.elapsed());
        let liveness = &self.liveness;
        let observations = health::Observations {
            connected_peers: status.connected_peers,
            responsive_peers: self.network.responsive_peers(),
            min_peers: self.settings.min_peers,
            database: status.database,
            since_heartbeat: since(liveness.last_heartbeat_ok.or(liveness.running_since)),
            heartbeat_interval: self.settings.lease.interval,
            running_for: since(liveness.running_since),
            since_fetch: since(self.cosigning.last_observed()),
            failed_fetches: self.origination.failed_rounds(),
            since_gossip: since(liveness.last_gossip),
            observe_interval: self.settings.trigger.observe_interval,
            heartbeat: self.settings.trigger.heartbeat,
        };
        let problems = health::problems(&observations);
        self.metrics.healthy.set(i64::from(problems.is_empty()));
        let status = NodeStatus { problems, ..status };
        self.status.send_replace(status);
    }
}
