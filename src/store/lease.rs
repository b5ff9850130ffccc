//! The writer lease: every node upserts a heartbeat row with `timestamp = now() + random() ×
//! jitter` (database clock); the row with the greatest timestamp (ties: greatest address) is the
//! writer. The jitter makes the writer rotate among live nodes.
//!
//! A node that stops heartbeating keeps its last timestamp, at most `jitter` ahead of the moment
//! it stopped. Any live node overtakes it with its first heartbeat after that timestamp has passed
//! on the database clock, so a dead writer is replaced within **jitter + interval** (25 s with the
//! defaults 20 s + 5 s), usually sooner. A node that shuts down cleanly deletes its row and is
//! replaced at once.
//!
//! Correctness does not rest on the lease: the flush is fenced and the primary key makes every
//! write exactly-once. The lease only keeps the other nodes from doing useless work.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::watch;

use super::members::MEMBERS_VERSION_SQL;
use super::{Store, StoreError};

/// Who is heartbeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub address: Address,
    pub name: String,
    pub peer_id: String,
    /// Where the node listens (multiaddrs with `/p2p/…`), for peers that lost their bootstrap.
    pub listen_addrs: Vec<String>,
}

impl Participant {
    /// The key of the heartbeat row: the EIP-55 address, as every node spells it.
    pub fn key(&self) -> String {
        self.address.to_checksum(None)
    }
}

/// How often and with how much randomness to heartbeat.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    pub interval: Duration,
    pub jitter: Duration,
}

impl LeaseSettings {
    /// How long a stopped writer can stay the writer (see the module docs).
    pub fn takeover_bound(&self) -> Duration {
        self.jitter + self.interval
    }
}

/// What one heartbeat returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The writer's address (this node or another).
    pub writer: String,
    /// A digest of the member list; it changes whenever a member is added or removed.
    pub members_version: String,
}

/// What the last heartbeat saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether this node held the lease at its last heartbeat.
    pub is_writer: bool,
    /// The writer's address, as seen at the last heartbeat.
    pub writer: Option<String>,
    /// Whether the last heartbeat reached the database.
    pub healthy: bool,
    /// Heartbeats so far, failed or not: each one is news, even when nothing else changed.
    pub beats: u64,
}

/// Upserts the heartbeat and reads the writer in the same statement. A data-modifying CTE's
/// result is not visible to the rest of the statement, so the new row joins the others by
/// `UNION ALL` instead of being read back from the table.
const HEARTBEAT_SQL: &str = r#"
WITH beat AS (
    INSERT INTO heartbeat (node_address, nodename, peer_id, "timestamp", started_at, listen_addrs)
    VALUES ($1, $2, $3, now() + random() * make_interval(secs => $4), now(), $5)
    ON CONFLICT (node_address) DO UPDATE
        SET nodename = EXCLUDED.nodename,
            peer_id = EXCLUDED.peer_id,
            "timestamp" = EXCLUDED."timestamp",
            listen_addrs = EXCLUDED.listen_addrs
    RETURNING node_address, "timestamp"
)
SELECT node_address, (MEMBERS_VERSION) FROM (
    SELECT node_address, "timestamp" FROM heartbeat WHERE node_address <> $1
    UNION ALL
    SELECT node_address, "timestamp" FROM beat
) AS candidates
ORDER BY "timestamp" DESC, node_address DESC
LIMIT 1
"#;

const CLAIM_SQL: &str = r#"
INSERT INTO heartbeat (node_address, nodename, peer_id, "timestamp", started_at, listen_addrs)
VALUES ($1, $2, $3, now() + make_interval(secs => $4 + 1), now(), $5)
ON CONFLICT (node_address) DO UPDATE SET "timestamp" = EXCLUDED."timestamp"
"#;

/// Where the other nodes that heartbeated in the last 10 minutes listen.
const PEER_ADDRS_SQL: &str = r#"
SELECT listen_addrs FROM heartbeat
WHERE node_address <> $1 AND "timestamp" > now() - interval '10 minutes' AND listen_addrs <> ''
"#;

/// The writer right now.
pub(super) const WRITER_SQL: &str =
    r#"SELECT node_address FROM heartbeat ORDER BY "timestamp" DESC, node_address DESC LIMIT 1"#;

impl Store {
    /// Renews this node's heartbeat and returns the writer and the member list's version, in
    /// one statement.
    pub async fn heartbeat(&self, me: &Participant, jitter: Duration) -> Result<Beat, StoreError> {
        let sql = HEARTBEAT_SQL.replace("MEMBERS_VERSION", MEMBERS_VERSION_SQL);
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                me.key().into(),
                me.name.clone().into(),
                me.peer_id.clone().into(),
                jitter.as_secs_f64().into(),
                me.listen_addrs.join(" ").into(),
            ],
        );
        let row = self
            .timed("heartbeat", self.db.query_one_raw(statement))
            .await?;
        let members_version = row
            .as_ref()
            .and_then(|row| row.try_get_by_index::<String>(1).ok())
            .unwrap_or_default();
        Ok(Beat {
            writer: read_address("heartbeat", row)?,
            members_version,
        })
    }

    /// The current writer, if any node heartbeats.
    pub async fn writer(&self) -> Result<Option<String>, StoreError> {
        let statement = Statement::from_string(DbBackend::Postgres, WRITER_SQL);
        let row = self
            .timed("writer", self.db.query_one_raw(statement))
            .await?;
        match row {
            None => Ok(None),
            some => read_address("writer", some).map(Some),
        }
    }

    /// Takes the lease for a stopping node's last flush: its heartbeat moves past any running
    /// node's (`jitter` + 1 s ahead of now), so its fenced flush is the writer's. The node
    /// [`leave`](Self::leave)s right after; if it dies first, the others take over within
    /// the takeover bound + 1 s.
    pub async fn claim_lease(&self, me: &Participant, jitter: Duration) -> Result<(), StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            CLAIM_SQL,
            [
                me.key().into(),
                me.name.clone().into(),
                me.peer_id.clone().into(),
                jitter.as_secs_f64().into(),
                me.listen_addrs.join(" ").into(),
            ],
        );
        self.timed("claim lease", self.db.execute_raw(statement))
            .await
            .map(|_| ())
    }

    /// Where the other recently live nodes listen, as their heartbeats say.
    pub async fn peer_addresses(&self, me: &Address) -> Result<Vec<String>, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            PEER_ADDRS_SQL,
            [me.to_checksum(None).into()],
        );
        let rows = self
            .timed("peer addresses", self.db.query_all_raw(statement))
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| row.try_get_by_index::<String>(0).ok())
            .flat_map(|addrs| {
                addrs
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Removes this node's heartbeat (graceful shutdown): the others take over at once.
    pub async fn leave(&self, me: &Participant) -> Result<(), StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM heartbeat WHERE node_address = $1",
            [me.key().into()],
        );
        self.timed("leave", self.db.execute_raw(statement))
            .await
            .map(|_| ())
    }
}

fn read_address(
    what: &'static str,
    row: Option<sea_orm::QueryResult>,
) -> Result<String, StoreError> {
    let row = row.ok_or(StoreError::Unexpected {
        what,
        detail: "no row".into(),
    })?;
    row.try_get_by_index::<String>(0)
        .map_err(StoreError::db(what))
}

/// The member list as last read from the database (members and since when, Unix seconds);
/// `None` until the first read.
pub type MemberList = Option<Arc<HashMap<Address, u64>>>;

/// Heartbeats every `interval` until `shutdown` resolves, publishing what each heartbeat saw;
/// then deletes the heartbeat row. A failed heartbeat is logged and retried on the next tick,
/// and while the database is unreachable the node does not consider itself the writer.
/// When a heartbeat shows that the member list changed, the list is read again into `members`:
/// an added or removed member counts within one heartbeat.
pub async fn run(
    store: Store,
    me: Participant,
    settings: LeaseSettings,
    state: watch::Sender<LeaseState>,
    members: watch::Sender<MemberList>,
    shutdown: impl Future<Output = ()>,
) {
    let mut members_version: Option<String> = None;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me_key = me.key();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        // A stop does not wait for a heartbeat the database is slow to answer.
        let beat = tokio::select! {
            () = &mut shutdown => break,
            beat = store.heartbeat(&me, settings.jitter) => beat,
        };
        let next = match beat {
            Ok(beat) => {
                if members_version.as_ref() != Some(&beat.members_version) {
                    match store.current_members().await {
                        Ok(list) => {
                            log::info!("member list read: {} members", list.len());
                            members.send_replace(Some(Arc::new(list)));
                            members_version = Some(beat.members_version);
                        }
                        Err(err) => log::warn!("cannot read the member list: {err}"),
                    }
                }
                LeaseState {
                    is_writer: beat.writer == me_key,
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
        let metrics = store.metrics();
        metrics.lease_writer.set(i64::from(next.is_writer));
        state.send_modify(|current| {
            if current.is_writer != next.is_writer {
                metrics.lease_writer_changes.inc();
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
    state.send_replace(LeaseState::default());
    store.metrics().lease_writer.set(0);
    if let Err(err) = store.leave(&me).await {
        log::warn!("could not remove the heartbeat row: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_bound_is_jitter_plus_interval() {
        let settings = LeaseSettings {
            interval: Duration::from_secs(5),
            jitter: Duration::from_secs(20),
        };
        assert_eq!(settings.takeover_bound(), Duration::from_secs(25));
    }
}
