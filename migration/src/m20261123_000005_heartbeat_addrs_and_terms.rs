//! `heartbeat.listen_addrs`: where each live node listens (multiaddrs with `/p2p/<peer id>`,
//! space-separated). A node whose bootstrap nodes are gone finds its peers here: the database is
//! already the root of trust.
//!
//! `heartbeat.lease_since`: when the writer's current term began (NULL for the other nodes), so
//! the writer keeps the lease for a term instead of changing at every heartbeat.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Heartbeat {
    Table,
    ListenAddrs,
    LeaseSince,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Heartbeat::Table)
                    .add_column(
                        ColumnDef::new(Heartbeat::ListenAddrs)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .add_column(
                        ColumnDef::new(Heartbeat::LeaseSince)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Heartbeat::Table)
                    .drop_column(Heartbeat::ListenAddrs)
                    .drop_column(Heartbeat::LeaseSince)
                    .to_owned(),
            )
            .await
    }
}
