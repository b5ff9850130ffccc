//! `heartbeat.listen_addrs`: where each live node listens (multiaddrs with `/p2p/<peer id>`,
//! space-separated). A node whose bootstrap nodes are gone finds its peers here: the database is
//! already the root of trust.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Heartbeat {
    Table,
    ListenAddrs,
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
                    .to_owned(),
            )
            .await
    }
}
