//! Protocol v2 binds every signature to a configuration digest (network, chain, verifier,
//! member set, `f`): each row keeps the digest its observations were signed under, so a reader
//! can recompute every digest from the row alone.
//!
//! Rows stored before it were signed under v1, whose digest began with
//! `keccak256("price-oracle/v1")` where v2's begins with the configuration: they get that word,
//! and verify unchanged. It stays the column's default, so a row written without a config (a
//! v1 writer during the upgrade) is read, and audited, as the v1 row it is. Down refuses when a
//! row was signed under a v2 configuration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `keccak256("price-oracle/v1")`, the first word of every v1 digest.
const V1_DOMAIN: &str = "0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let up =
            format!("ALTER TABLE prices ADD COLUMN config TEXT NOT NULL DEFAULT '{V1_DOMAIN}';");
        manager.get_connection().execute_unprepared(&up).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let down = format!(
            "DO $$
             DECLARE v2 bigint;
             BEGIN
                 SELECT count(*) INTO v2 FROM prices WHERE config <> '{V1_DOMAIN}';
                 IF v2 > 0 THEN
                     RAISE EXCEPTION 'cannot migrate down: % stored prices were signed under a v2 configuration', v2;
                 END IF;
             END $$;
             ALTER TABLE prices DROP COLUMN config;"
        );
        manager.get_connection().execute_unprepared(&down).await?;
        Ok(())
    }
}
