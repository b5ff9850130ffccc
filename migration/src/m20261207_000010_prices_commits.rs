//! Protocol v2 commits a report: `f + 1` members sign the digest of its exact set of
//! observations, its value and its time, and the row keeps those signatures, so that nobody —
//! the writer, a relayer to a contract — can store or submit another subset of the round.
//!
//! `commits` is `[{"signer":"0x…","signature":"0x…"}, …]`; rows from before it (v1 rows, which
//! commit to nothing) hold `[]`. Down drops the column only when no row has commits.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE prices ADD COLUMN commits JSONB NOT NULL DEFAULT '[]';",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DO $$
                 DECLARE committed bigint;
                 BEGIN
                     SELECT count(*) INTO committed FROM prices WHERE commits <> '[]'::jsonb;
                     IF committed > 0 THEN
                         RAISE EXCEPTION 'cannot migrate down: % stored prices carry commit signatures', committed;
                     END IF;
                 END $$;
                 ALTER TABLE prices DROP COLUMN commits;",
            )
            .await?;
        Ok(())
    }
}
