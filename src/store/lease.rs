//! The writer lease. Every node upserts a heartbeat row every `interval`; the row with the
//! greatest `timestamp` (ties: greatest address) is the writer. What a heartbeat writes:
//!
//! - the writer **renews**: `timestamp = now() + lease`, for as long as its term (`term`) lasts;
//! - at the end of its term it **releases**: `timestamp = now()`, so the next node to heartbeat
//!   takes over, and the writer rotates about once per term rather than at every heartbeat;
//! - a node **takes** the lease when nobody holds one (every other `timestamp` is in the past)
//!   and its pool is warm (it has run for `warm_up`, so it holds the recent prices);
//! - every other node just says it is alive: `timestamp = now()`.
//!
//! A writer that stops heartbeating keeps its lease until `timestamp` passes, at most `lease`
//! after its last heartbeat; the first heartbeat of another node after that takes over, so a dead
//! writer is replaced within **lease + interval** (25 s with the defaults 20 s + 5 s). A node that
//! shuts down cleanly sets its row to `-infinity` and is replaced at the next heartbeat of another node.
//! Two nodes taking at once both write a future `timestamp`; the smaller one sees the greater at
//! its next heartbeat and stands down.
//!
//! With a node role of its own (`oracle db-role --node`), the database enforces these rules
//! too (migration `m20261207_000011_node_roles`): the lease and the term are capped by
//! `lease_rules`, a node takes the lease only when nobody holds it, and a node whose term ended
//! leaves the next one to another live node for `retake_after`.
//!
//! Correctness does not rest on the lease: the flush is fenced and the primary key makes every
//! write exactly-once. The lease only keeps the other nodes from doing useless work.
//!
//! This module holds the statements; [`crate::writer`] runs the heartbeats and acts on them.

use std::time::Duration;

use alloy_primitives::Address;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

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

/// The lease's terms, as one heartbeat applies them (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    /// How far past its last heartbeat the writer's lease reaches.
    pub lease: Duration,
    /// How long one node stays the writer before it lets another take over.
    pub term: Duration,
}

/// What one heartbeat returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The writer (this node or another).
    pub writer: Address,
    /// A digest of the member list; it changes whenever a member is added or removed.
    pub members_version: String,
    /// Whether this node holds the lease after this heartbeat (took or renewed it). A writer
    /// that just ended its term is still the greatest row until the next node takes over, but
    /// no longer flushes: its flushes would race the taker's.
    pub holds: bool,
    /// The lease and term this heartbeat applied: the node's, capped by `lease_rules`.
    pub applied: LeaseTerms,
}

/// Decides, upserts and reads the writer in one statement (see the module docs for the rules).
/// A data-modifying CTE's result is not visible to the rest of the statement, so the new row
/// joins the others by `UNION ALL` instead of being read back from the table.
/// `$4` lease seconds, `$5` listen addresses, `$6` term seconds, `$7` whether it may take.
///
/// The lease and the term are the node's, capped by the database's `lease_rules`, and a node
/// whose term just ended (released or lapsed) leaves the next one for `retake_after` to another
/// live node that may take it: what the `heartbeat_rules` trigger enforces on node roles, so
/// that an honest node never sends a heartbeat the database refuses. (When every live node's
/// term just ended, any may take it: nobody waits for a node that cannot come.)
const HEARTBEAT_SQL: &str = r#"
WITH rules AS (
    SELECT
        least(make_interval(secs => $4),
              coalesce((SELECT max_lease FROM lease_rules), make_interval(secs => $4))) AS lease,
        least(make_interval(secs => $6),
              coalesce((SELECT max_term FROM lease_rules), make_interval(secs => $6))) AS term,
        coalesce((SELECT retake_after FROM lease_rules), interval '0') AS retake_after
), others AS (
    SELECT coalesce(max("timestamp"), '-infinity'::timestamptz) AS until,
           -- Another live node that may take the lease itself (its own term did not just end).
           coalesce(bool_or("timestamp" > now() - (SELECT retake_after FROM rules)
               AND lease_since IS NULL
               AND coalesce(term_ended_at <= now() - (SELECT retake_after FROM rules), true)),
               false) AS could_take
    FROM heartbeat WHERE node_address <> $1
), mine AS (
    SELECT "timestamp" AS until, lease_since,
           CASE WHEN lease_since IS NOT NULL THEN now() ELSE term_ended_at END AS term_ended
    FROM heartbeat WHERE node_address = $1
), action AS (
    SELECT CASE
        WHEN mine.until > now() AND mine.until >= others.until AND mine.lease_since IS NOT NULL
            THEN CASE WHEN now() - mine.lease_since < rules.term
                      THEN 'renew' ELSE 'release' END
        WHEN others.until < now() AND $7
            AND NOT (others.could_take
                     AND coalesce(mine.term_ended > now() - rules.retake_after, false))
            THEN 'take'
        ELSE 'alive'
    END AS what, mine.lease_since AS since, rules.lease
    FROM others CROSS JOIN rules LEFT JOIN mine ON true
), beat AS (
    INSERT INTO heartbeat
        (node_address, nodename, peer_id, "timestamp", started_at, listen_addrs, lease_since)
    SELECT $1, $2, $3,
        CASE WHEN what IN ('renew', 'take') THEN now() + lease ELSE now() END,
        now(), $5,
        CASE what WHEN 'take' THEN now() WHEN 'renew' THEN since END
    FROM action
    ON CONFLICT (node_address) DO UPDATE
        SET nodename = EXCLUDED.nodename,
            peer_id = EXCLUDED.peer_id,
            "timestamp" = EXCLUDED."timestamp",
            listen_addrs = EXCLUDED.listen_addrs,
            lease_since = EXCLUDED.lease_since
    RETURNING node_address, "timestamp"
)
SELECT node_address, (MEMBERS_VERSION), (SELECT what IN ('renew', 'take') FROM action),
       (SELECT extract(epoch FROM lease)::float8 FROM rules),
       (SELECT extract(epoch FROM term)::float8 FROM rules) FROM (
    SELECT node_address, "timestamp" FROM heartbeat WHERE node_address <> $1
    UNION ALL
    SELECT node_address, "timestamp" FROM beat
) AS candidates
ORDER BY "timestamp" DESC, node_address DESC
LIMIT 1
"#;

/// A stopping node leaves: its row stays (so the database still knows when its last term
/// ended) but never counts again, and the next heartbeat of another node takes the lease.
const LEAVE_SQL: &str = r#"
UPDATE heartbeat SET "timestamp" = '-infinity', lease_since = NULL WHERE node_address = $1
"#;

/// Where the other nodes that heartbeated in the last 10 minutes listen.
const PEER_ADDRS_SQL: &str = r#"
SELECT listen_addrs FROM heartbeat
WHERE node_address <> $1 AND "timestamp" > now() - interval '10 minutes' AND listen_addrs <> ''
"#;

/// The writer right now (of the nodes that have not left).
pub(super) const WRITER_SQL: &str = r#"SELECT node_address FROM heartbeat WHERE "timestamp" > '-infinity'
    ORDER BY "timestamp" DESC, node_address DESC LIMIT 1"#;

impl Store {
    /// Heartbeats with a lease of `lease`, no end of term and no warm-up (tools and tests); see
    /// [`Store::heartbeat_with`].
    pub async fn heartbeat(&self, me: &Participant, lease: Duration) -> Result<Beat, StoreError> {
        let terms = LeaseTerms {
            lease,
            term: Duration::from_secs(u32::MAX.into()),
        };
        self.heartbeat_with(me, terms, true).await
    }

    /// Renews this node's heartbeat under the lease rules and returns the writer and the member
    /// list's version, in one statement. A node that may not take the lease yet (`may_take`
    /// false: its pool is not warm) keeps one it holds but does not take a free one.
    pub async fn heartbeat_with(
        &self,
        me: &Participant,
        terms: LeaseTerms,
        may_take: bool,
    ) -> Result<Beat, StoreError> {
        let sql = HEARTBEAT_SQL.replace("MEMBERS_VERSION", MEMBERS_VERSION_SQL);
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                me.key().into(),
                me.name.clone().into(),
                me.peer_id.clone().into(),
                terms.lease.as_secs_f64().into(),
                me.listen_addrs.join(" ").into(),
                terms.term.as_secs_f64().into(),
                may_take.into(),
            ],
        );
        let row = self
            .timed("heartbeat", self.db().query_one_raw(statement))
            .await?;
        let members_version = row
            .as_ref()
            .and_then(|row| row.try_get_by_index::<String>(1).ok())
            .unwrap_or_default();
        let holds = row
            .as_ref()
            .and_then(|row| row.try_get_by_index::<bool>(2).ok())
            .unwrap_or(false);
        let seconds = |index: usize, asked: Duration| {
            row.as_ref()
                .and_then(|row| row.try_get_by_index::<f64>(index).ok())
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                .unwrap_or(asked)
        };
        let applied = LeaseTerms {
            lease: seconds(3, terms.lease),
            term: seconds(4, terms.term),
        };
        Ok(Beat {
            writer: read_address("heartbeat", row)?,
            members_version,
            holds,
            applied,
        })
    }

    /// The current writer, if any node heartbeats.
    pub async fn writer(&self) -> Result<Option<Address>, StoreError> {
        let statement = Statement::from_string(DbBackend::Postgres, WRITER_SQL);
        let row = self
            .timed("writer", self.db().query_one_raw(statement))
            .await?;
        match row {
            None => Ok(None),
            some => read_address("writer", some).map(Some),
        }
    }

    /// Takes the lease for a stopping node's last flush, or keeps it, by the rules of any
    /// heartbeat: never from a node that holds it. Returns whether this node holds it now;
    /// while another does, the caller waits for it to store and leave.
    pub async fn claim_lease(&self, me: &Participant, lease: Duration) -> Result<bool, StoreError> {
        let terms = LeaseTerms {
            lease,
            term: Duration::from_secs(u32::MAX.into()),
        };
        Ok(self.heartbeat_with(me, terms, true).await?.holds)
    }

    /// Where the other recently live nodes listen, as their heartbeats say.
    pub async fn peer_addresses(&self, me: &Address) -> Result<Vec<String>, StoreError> {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            PEER_ADDRS_SQL,
            [me.to_checksum(None).into()],
        );
        let rows = self
            .timed("peer addresses", self.db().query_all_raw(statement))
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

    /// Ends this node's heartbeat (graceful shutdown): the others take over at once.
    pub async fn leave(&self, me: &Participant) -> Result<(), StoreError> {
        let statement =
            Statement::from_sql_and_values(DbBackend::Postgres, LEAVE_SQL, [me.key().into()]);
        self.timed("leave", self.db().execute_raw(statement))
            .await
            .map(|_| ())
    }
}

/// The address in the first column of a row that must exist.
fn read_address(
    what: &'static str,
    row: Option<sea_orm::QueryResult>,
) -> Result<Address, StoreError> {
    let row = row.ok_or(StoreError::Unexpected {
        what,
        detail: "no row".into(),
    })?;
    parse_address(what, &row)
}

/// The address in a row's first column: a heartbeat key, written only by nodes.
pub(super) fn parse_address(
    what: &'static str,
    row: &sea_orm::QueryResult,
) -> Result<Address, StoreError> {
    let text = row
        .try_get_by_index::<String>(0)
        .map_err(StoreError::db(what))?;
    text.parse().map_err(|err| StoreError::Unexpected {
        what,
        detail: format!("{text:?} is not an address: {err}"),
    })
}
