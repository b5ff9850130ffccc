//! `prices.seq`: a cursor in commit order; `created_time` from the insert's clock.
//!
//! `created_time` used to default to `now()`, the start of the writing transaction: a row
//! committed at 00:05:53 said 00:05:11, so a reader polling `created_time > last_seen` skipped
//! rows that committed after it had moved past their time. No time taken inside a transaction
//! can be a cursor, because the transaction commits later than any moment it can read. Now
//! `created_time` defaults to `clock_timestamp()`, the moment of the row's insert: closer, still
//! no cursor.
//!
//! `seq` is one. It is an identity column (`GENERATED ALWAYS`, numbers from a sequence with
//! `CACHE 1`), and a `BEFORE INSERT … FOR EACH STATEMENT` trigger takes a transaction-level
//! advisory lock, [`SEQ_LOCK`], before any row of the statement is built — so before any of its
//! `seq` (or `created_time`) defaults is evaluated. Why the numbers follow the commit order:
//!
//! - A transaction that inserts into `prices` holds the lock from its first insert until it
//!   ends. Another one waits at its first insert until then, and draws its numbers after: they
//!   are all greater (one sequence, no per-session cache), and it commits later.
//! - PostgreSQL makes a commit visible to new snapshots before it releases the transaction's
//!   locks. So any snapshot that sees a row with `seq` s also sees every row with a smaller
//!   `seq` that ever commits: `WHERE seq > $last ORDER BY seq` never skips a row. Numbers can have gaps
//!   (rolled-back inserts, rows `ON CONFLICT DO NOTHING` skipped); that is harmless to a cursor.
//!
//! Alternatives considered:
//!
//! - A sequence or identity alone: numbers are drawn at insert, not at commit. Two
//!   transactions that overlap commit in either order, and a reader that saw 12 before 11
//!   committed never sees 11. The fence (`LOCK TABLE heartbeat IN SHARE MODE`) lets the same
//!   writer's flushes overlap: a retry after a client-side timeout while the first `COMMIT` is
//!   still on its way.
//! - `seq = max(seq) + 1` under the same lock in a row trigger: dense numbers, but plpgsql
//!   caches the plan of `max(seq)`; planned while the table was small it is a sequential scan,
//!   and a 10,000-row flush took 6 s instead of 50 ms.
//! - `pg_current_xact_id()` per row, readers stopping at `pg_snapshot_xmin(
//!   pg_current_snapshot())`: no lock at all, but a two-part cursor, and readers wait for every
//!   older transaction in the database, related or not.
//! - Commit timestamps (`track_commit_timestamp`): a server setting that needs a restart, and
//!   a timestamp is still not a strict order.
//! - `LOCK TABLE prices IN SHARE ROW EXCLUSIVE MODE` in the flush: the same serialization, but
//!   it needs UPDATE, DELETE or TRUNCATE on `prices`, which the nodes' least-privilege role does
//!   not have; the advisory lock needs no privilege, nor does an identity column's sequence.
//!
//! The trigger, not the flush's own SQL, takes the lock, so every insert is numbered the same
//! way: an older node's during a rolling upgrade, an admin's in `psql`. The cost is one lock per
//! statement; writes were already one writer at a time (the lease), so the lock only ever makes
//! overlapping flushes of that writer wait, each for at most `lock_timeout`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Key of the transaction-level advisory lock the trigger takes: "prices" in ASCII. (The
/// migration lock, a session-level one, has another key.)
const SEQ_LOCK: i64 = 0x70_72_69_63_65_73;

const UP: &str = r#"
-- The backfill must see every row: nothing may insert until the identity and trigger exist.
LOCK TABLE prices IN ACCESS EXCLUSIVE MODE;

ALTER TABLE prices ADD COLUMN seq bigint;

-- Existing rows in the best order there is: the start of their transaction, then the id.
UPDATE prices SET seq = ordered.seq
FROM (SELECT id, row_number() OVER (ORDER BY created_time, id) AS seq FROM prices) AS ordered
WHERE prices.id = ordered.id;

ALTER TABLE prices ALTER COLUMN seq SET NOT NULL;

-- CACHE 1: a session must not hold numbers of its own, or they would not follow the lock.
ALTER TABLE prices
    ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (CACHE 1),
    ADD CONSTRAINT prices_seq_key UNIQUE (seq),
    ALTER COLUMN created_time SET DEFAULT clock_timestamp();

SELECT setval(pg_get_serial_sequence('prices', 'seq'), coalesce(max(seq), 0) + 1, false)
FROM prices;

COMMENT ON COLUMN prices.seq IS
    'Commit order: a reader that has seen every row up to seq n sees later rows only with seq > n. See the trigger prices_commit_order.';
COMMENT ON COLUMN prices.created_time IS
    'Database clock at the insert of the row (clock_timestamp()), before its commit: not a cursor, use seq.';

-- OR REPLACE: `migration fresh` drops the tables, and their triggers, but not functions.
CREATE OR REPLACE FUNCTION prices_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Held until this transaction ends. An inserting transaction waits here, before any of
    -- its rows draws a seq, until the one before it has committed: seq follows the commit
    -- order. See migration m20261123_000004_prices_commit_order.
    PERFORM pg_advisory_xact_lock(SEQ_LOCK);
    RETURN NULL;
END
$$;

CREATE TRIGGER prices_commit_order BEFORE INSERT ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION prices_commit_order();
"#;

const DOWN: &str = r#"
DROP TRIGGER prices_commit_order ON prices;
DROP FUNCTION prices_commit_order();
COMMENT ON COLUMN prices.created_time IS NULL;
ALTER TABLE prices
    DROP COLUMN seq,
    ALTER COLUMN created_time SET DEFAULT now();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = UP.replace("SEQ_LOCK", &SEQ_LOCK.to_string());
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }

    /// The backfill, the identity and the trigger appear together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
