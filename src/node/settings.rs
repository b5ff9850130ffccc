//! What a node needs to run, and the rules those settings must keep.

use std::net::SocketAddr;
use std::time::Duration;

use alloy_primitives::Address;

use crate::committee::CommitteeSettings;
use crate::cosign::CosignSettings;
use crate::identity::Identity;
use crate::network::NetworkSettings;
use crate::pool::PoolSettings;
use crate::price::FeedSettings;
use crate::store::DbSettings;
use crate::trigger::TriggerSettings;
use crate::writer::LeaseSettings;

/// Everything a node needs.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub identity: Identity,
    pub network: NetworkSettings,
    pub min_peers: usize,
    pub pool: PoolSettings,
    /// When rounds start: observing, the move and the heartbeat; and how far a peer's price
    /// may be from ours for us to join its round (`--max-deviation`).
    pub trigger: TriggerSettings,
    pub lease: LeaseSettings,
    pub feed: FeedSettings,
    pub db: DbSettings,
    pub migrate: bool,
    /// Serve `/health`, `/status`, `/metrics` and the `/v1` API here.
    pub http: Option<SocketAddr>,
    /// Bounds on what the `/v1` API's readers can make the node do.
    pub api: crate::api::ApiLimits,
    /// Which browser origins may read the `/v1` API (`--api-cors-origin`).
    pub api_cors: crate::api::limits::Cors,
    /// Narrows the signers table to these members (`--trusted-signers`).
    pub trusted_signers: Option<std::collections::HashSet<Address>>,
    /// Add this node's key to the signers table at start (`--register`).
    pub register: bool,
    /// Peers' prices waiting for this node's own observation, and (separately) for its
    /// fallback turn; past it new ones are dropped.
    pub max_cosign_queue: usize,
    /// When the members after the committee step in.
    pub committee: crate::committee::CommitteeSettings,
    /// What this node's signatures are bound to besides its members, and the configured `f`.
    pub deployment: crate::domain::Deployment,
}

impl NodeSettings {
    pub(super) fn cosign(&self) -> CosignSettings {
        CosignSettings {
            max_deviation: self.trigger.max_deviation,
            max_queue: self.max_cosign_queue,
            committee: self.committee,
        }
    }

    /// Checks the rules no node can run without. [`super::start`] calls it, so that settings
    /// built by hand (the test harness, a benchmark) are held to the same rules as the command
    /// line's.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        Self::check(&self.trigger, &self.lease, &self.pool, &self.committee)
    }

    /// The rules, on the parts they concern: the command line checks them before it resolves
    /// the rest (the database URL, the key), so that a wrong flag is reported as such.
    pub fn check(
        trigger: &TriggerSettings,
        lease: &LeaseSettings,
        pool: &PoolSettings,
        committee: &CommitteeSettings,
    ) -> Result<(), InvalidSettings> {
        for (name, value) in [
            ("--heartbeat", trigger.heartbeat),
            ("--heartbeat-interval", lease.interval),
            ("--max-age", pool.max_age),
            ("--cosign-fallback", committee.fallback),
        ] {
            if value.is_zero() {
                return Err(InvalidSettings::Zero(name));
            }
        }
        if trigger.observe_interval < MIN_OBSERVE_INTERVAL {
            return Err(InvalidSettings::ObserveTooOften(trigger.observe_interval));
        }
        if trigger.heartbeat <= trigger.observe_interval {
            return Err(InvalidSettings::HeartbeatNotAfterObserving {
                heartbeat: trigger.heartbeat,
                observe_interval: trigger.observe_interval,
            });
        }
        if trigger.progress_timeout < trigger.observe_interval.saturating_mul(2) {
            return Err(InvalidSettings::ProgressBeforeObserving {
                progress_timeout: trigger.progress_timeout,
                observe_interval: trigger.observe_interval,
            });
        }
        if trigger.deviation.is_zero() {
            return Err(InvalidSettings::NoDeviation);
        }
        Ok(())
    }
}

/// The shortest --observe-interval: asking the exchanges more often only runs into their rate
/// limits.
pub const MIN_OBSERVE_INTERVAL: Duration = Duration::from_secs(1);

/// Settings a node cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSettings {
    #[error("{0} must be longer than 0")]
    Zero(&'static str),
    #[error("--observe-interval must be at least {MIN_OBSERVE_INTERVAL:?} (it is {0:?})")]
    ObserveTooOften(Duration),
    #[error(
        "--heartbeat ({heartbeat:?}) must be longer than --observe-interval ({observe_interval:?})"
    )]
    HeartbeatNotAfterObserving {
        heartbeat: Duration,
        observe_interval: Duration,
    },
    #[error(
        "--progress-timeout ({progress_timeout:?}) must be at least 2 × --observe-interval \
         ({observe_interval:?}): a round needs its members' observations, made one observe \
         interval apart at worst"
    )]
    ProgressBeforeObserving {
        progress_timeout: Duration,
        observe_interval: Duration,
    },
    #[error("--deviation must be above 0: every observation would start a round")]
    NoDeviation,
}
