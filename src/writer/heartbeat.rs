//! The heartbeat loop: every `interval` this node upserts its heartbeat row under the lease
//! rules ([`crate::store::lease`] holds the statement) and publishes what the heartbeat saw —
//! whether it holds the lease, who the writer is. When the heartbeat says the member list
//! changed, [`MemberRefresh`] reads it again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use tokio::sync::watch;

use crate::membership::MemberRefresh;
use crate::store::Store;
use crate::store::lease::{LeaseTerms, Participant};

/// How the lease behaves (see [`crate::store::lease`]).
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// How often a node heartbeats.
    pub interval: Duration,
    /// How far past its last heartbeat the writer's lease reaches.
    pub lease: Duration,
    /// How long one node stays the writer before it lets another take over.
    pub term: Duration,
    /// How long a node runs before it may take the lease, so that its pool holds the recent
    /// prices (`--flush-delay`).
    pub warm_up: Duration,
}

impl LeaseSettings {
    /// How long a stopped writer can stay the writer: its lease, plus the next heartbeat of
    /// another node.
    pub fn takeover_bound(&self) -> Duration {
        self.lease + self.interval
    }

    /// What each heartbeat statement applies.
    pub fn terms(&self) -> LeaseTerms {
        LeaseTerms {
            lease: self.lease,
            term: self.term,
        }
    }
}

/// What the last heartbeat saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether this node held the lease at its last heartbeat.
    pub is_writer: bool,
    /// The writer, as seen at the last heartbeat.
    pub writer: Option<Address>,
    /// Whether the last heartbeat reached the database.
    pub healthy: bool,
    /// Heartbeats so far, failed or not: each one is news, even when nothing else changed.
    pub beats: u64,
}

/// Heartbeats every `interval` until `shutdown` resolves, publishing what each heartbeat saw;
/// then deletes the heartbeat row. A failed heartbeat is logged and retried on the next tick,
/// and while the database is unreachable the node does not consider itself the writer.
pub async fn run(
    store: Store,
    me: Participant,
    settings: LeaseSettings,
    state: watch::Sender<LeaseState>,
    mut members: MemberRefresh,
    probe: Arc<dyn super::Probe>,
    shutdown: impl Future<Output = ()>,
) {
    let started = tokio::time::Instant::now();
    // The terms the database last applied, so a cap is told once, not at every heartbeat.
    let mut applied = settings.terms();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        // A stop does not wait for a heartbeat the database is slow to answer.
        let may_take = started.elapsed() >= settings.warm_up;
        let beat = tokio::select! {
            () = &mut shutdown => break,
            beat = store.heartbeat_with(&me, settings.terms(), may_take) => beat,
        };
        let next = match beat {
            Ok(beat) => {
                members.on_version(&store, &beat.members_version).await;
                if beat.applied != applied {
                    applied = beat.applied;
                    if let Some(cap) = capped(settings.terms(), applied) {
                        log::warn!("{cap}");
                    }
                }
                LeaseState {
                    is_writer: beat.holds && beat.writer == me.address,
                    writer: Some(beat.writer),
                    healthy: true,
                    beats: 0,
                }
            }
            Err(err) => {
                log::warn!(
                    "heartbeat failed, retrying in {:?}: {err}",
                    settings.interval
                );
                LeaseState::default()
            }
        };
        state.send_modify(|current| {
            let changed = current.is_writer != next.is_writer;
            probe.lease(next.is_writer, changed);
            if changed {
                log::debug!(
                    "{}",
                    if next.is_writer {
                        "this node is now the writer"
                    } else {
                        "this node is no longer the writer"
                    }
                );
            }
            *current = LeaseState {
                beats: current.beats + 1,
                ..next
            };
        });
    }
    let was_writer = state.send_replace(LeaseState::default()).is_writer;
    probe.lease(false, was_writer);
    if let Err(err) = store.leave(&me).await {
        log::warn!("could not remove the heartbeat row: {err}");
    }
}

/// What the database's `lease_rules` shortened, if anything: every node then heartbeats by the
/// database's figures, and an operator should know the flags are not what runs.
fn capped(asked: LeaseTerms, applied: LeaseTerms) -> Option<String> {
    let mut cut = Vec::new();
    if applied.lease < asked.lease {
        cut.push(format!(
            "the lease to {:?} (--lease-duration {:?})",
            applied.lease, asked.lease
        ));
    }
    if applied.term < asked.term {
        cut.push(format!(
            "the writer's term to {:?} (--writer-term {:?})",
            applied.term, asked.term
        ));
    }
    (!cut.is_empty()).then(|| {
        format!(
            "the database's lease_rules cap {}; this node heartbeats by them",
            cut.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_by_the_database_names_the_flag_it_overrides() {
        let asked = LeaseTerms {
            lease: Duration::from_secs(90),
            term: Duration::from_secs(300),
        };
        assert_eq!(capped(asked, asked), None);
        let lease_cut = LeaseTerms {
            lease: Duration::from_secs(60),
            ..asked
        };
        assert_eq!(
            capped(asked, lease_cut).as_deref(),
            Some(
                "the database's lease_rules cap the lease to 60s (--lease-duration 90s); \
                 this node heartbeats by them"
            )
        );
        let both = LeaseTerms {
            lease: Duration::from_secs(60),
            term: Duration::from_secs(120),
        };
        let told = capped(asked, both).unwrap_or_default();
        assert!(told.contains("--lease-duration 90s") && told.contains("--writer-term 300s"));
    }

    #[test]
    fn takeover_bound_is_lease_plus_interval() {
        let settings = LeaseSettings {
            interval: Duration::from_secs(5),
            lease: Duration::from_secs(20),
            term: Duration::from_secs(60),
            warm_up: Duration::from_secs(30),
        };
        assert_eq!(settings.takeover_bound(), Duration::from_secs(25));
    }
}
