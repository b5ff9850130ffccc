//! `heartbeat`: one row per live node, keyed by its address. The row with the greatest
//! `timestamp` is the writer (the lease rules are in the node's `store::lease`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Heartbeat {
    Table,
    NodeAddress,
    Nodename,
    PeerId,
    Timestamp,
    StartedAt,
}

const WRITER_INDEX: &str = "heartbeat_writer_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Heartbeat::Table)
                    .col(
                        ColumnDef::new(Heartbeat::NodeAddress)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Heartbeat::Nodename).text().not_null())
                    .col(ColumnDef::new(Heartbeat::PeerId).text().not_null())
                    .col(
                        ColumnDef::new(Heartbeat::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Heartbeat::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        // The writer query: ORDER BY timestamp DESC, node_address DESC LIMIT 1.
        manager
            .create_index(
                Index::create()
                    .name(WRITER_INDEX)
                    .table(Heartbeat::Table)
                    .col((Heartbeat::Timestamp, IndexOrder::Desc))
                    .col((Heartbeat::NodeAddress, IndexOrder::Desc))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Heartbeat::Table).to_owned())
            .await
    }
}
