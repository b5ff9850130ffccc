//! Indexes for the consumers' reads (the node's `/v1` API, `oracle prices`):
//!
//! - `prices_pair_observed_at_idx (pair, observed_at DESC, id DESC)`: the newest price of a
//!   pair is the first entry, not a scan and sort of the whole table;
//! - `prices_pair_seq_idx (pair, seq)`: a pair's history in commit order (`seq > cursor`) reads
//!   only that pair's rows, however many other pairs the table holds.
//!
//! Building them holds inserts into `prices` for as long as it takes (well under a second for
//! a year of rows); a flush meanwhile waits or fails and is retried on the writer's next tick.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Prices {
    Table,
    Pair,
    ObservedAt,
    Id,
    Seq,
}

const LATEST_INDEX: &str = "prices_pair_observed_at_idx";
const HISTORY_INDEX: &str = "prices_pair_seq_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(LATEST_INDEX)
                    .table(Prices::Table)
                    .col(Prices::Pair)
                    .col((Prices::ObservedAt, IndexOrder::Desc))
                    .col((Prices::Id, IndexOrder::Desc))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(HISTORY_INDEX)
                    .table(Prices::Table)
                    .col(Prices::Pair)
                    .col(Prices::Seq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [HISTORY_INDEX, LATEST_INDEX] {
            manager
                .drop_index(Index::drop().name(name).table(Prices::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    /// Both indexes or neither.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
