//! `prices_stored`: every insert into `prices` notifies the channel `prices_stored` (empty
//! payload), so readers learn of new rows as they commit instead of polling.
//!
//! An `AFTER INSERT … FOR EACH STATEMENT` trigger calls `pg_notify`. PostgreSQL delivers a
//! notification when the inserting transaction commits (never if it rolls back), to every
//! session listening, whichever node it belongs to — so any node with database access can serve
//! a live stream, not only the writer. Equal notifications of one transaction are folded into
//! one, so a flush of many statements wakes readers once.
//!
//! The payload is empty on purpose: a notification is only a wake-up call. Readers then read
//! `seq > their cursor`, which is what guarantees they miss no row (a notification sent while a
//! reader was not listening is gone). A statement that inserted nothing (every id already
//! stored) still notifies; readers find nothing new, which costs one query.
//!
//! `pg_notify` needs no privilege, so the nodes' least-privilege role is unaffected.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
-- OR REPLACE: `migration fresh` drops the tables, and their triggers, but not functions.
CREATE OR REPLACE FUNCTION prices_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit. Readers re-read seq > their cursor; see migration
    -- m20261130_000006_prices_notify.
    PERFORM pg_notify('prices_stored', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER prices_notify AFTER INSERT ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION prices_notify();
"#;

const DOWN: &str = r#"
DROP TRIGGER prices_notify ON prices;
DROP FUNCTION prices_notify();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }

    /// The function and its trigger appear together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
