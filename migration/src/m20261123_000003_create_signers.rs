//! `signers`: the members whose signatures count toward the quorum. The database credential that
//! can write `prices` is already the root of trust, so membership lives beside it. A removed
//! member keeps its row with `revoked_at` set, so `oracle verify` can still judge the rows it
//! signed while it was a member.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Signers {
    Table,
    Address,
    Name,
    AddedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Signers::Table)
                    .col(
                        ColumnDef::new(Signers::Address)
                            .text()
                            .not_null()
                            .primary_key()
                            // EIP-55 spelling, as every node writes addresses.
                            .check(Expr::cust("address ~ '^0x[0-9a-fA-F]{40}$'")),
                    )
                    .col(ColumnDef::new(Signers::Name).text().not_null().default(""))
                    .col(
                        ColumnDef::new(Signers::AddedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .col(
                        ColumnDef::new(Signers::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Signers::Table).to_owned())
            .await
    }
}
