//! Each stored price is the median of its signers' own observations.
//!
//! - every `sign_data` entry carries the observation its signature covers: `price_e8` (decimal
//!   string) and `observed_at` (Unix seconds) beside `signer` and `signature`;
//! - `price` is the median of those prices (the element at index ⌊n/2⌋ once sorted);
//! - `spread` = (max − min) / median of them, to 8 decimals;
//! - `first_observed_at` and `last_observed_at`: the oldest and newest observation.
//!
//! Rows stored before it are reports whose observations are all equal: each entry gets the row's
//! own price and time, the spread is 0, and the range is the row's `observed_at`. Down refuses
//! when a row holds observations that differ from the row (the old format cannot say them), and
//! otherwise strips the entries back.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE prices
    ADD COLUMN spread NUMERIC(20, 8),
    ADD COLUMN first_observed_at TIMESTAMPTZ,
    ADD COLUMN last_observed_at TIMESTAMPTZ;
UPDATE prices SET
    sign_data = (
        SELECT coalesce(jsonb_agg(entry || jsonb_build_object(
                   'price_e8', (price * 100000000)::bigint::text,
                   'observed_at', extract(epoch FROM observed_at)::bigint)
               ORDER BY position), '[]'::jsonb)
        FROM jsonb_array_elements(sign_data) WITH ORDINALITY AS entries(entry, position)),
    spread = 0,
    first_observed_at = observed_at,
    last_observed_at = observed_at;
ALTER TABLE prices
    ALTER COLUMN spread SET NOT NULL,
    ALTER COLUMN first_observed_at SET NOT NULL,
    ALTER COLUMN last_observed_at SET NOT NULL;
"#;

const DOWN: &str = r#"
DO $$
DECLARE differing bigint;
BEGIN
    SELECT count(DISTINCT id) INTO differing
    FROM prices, jsonb_array_elements(sign_data) AS entry
    WHERE entry->>'price_e8' IS DISTINCT FROM (price * 100000000)::bigint::text
       OR (entry->>'observed_at')::bigint IS DISTINCT FROM extract(epoch FROM observed_at)::bigint;
    IF differing > 0 THEN
        RAISE EXCEPTION 'cannot migrate down: % stored prices are medians of differing observations, which the old format cannot hold', differing;
    END IF;
END $$;
UPDATE prices SET sign_data = (
    SELECT coalesce(jsonb_agg(entry - 'price_e8' - 'observed_at' ORDER BY position), '[]'::jsonb)
    FROM jsonb_array_elements(sign_data) WITH ORDINALITY AS entries(entry, position));
ALTER TABLE prices
    DROP COLUMN spread,
    DROP COLUMN first_observed_at,
    DROP COLUMN last_observed_at;
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
}
