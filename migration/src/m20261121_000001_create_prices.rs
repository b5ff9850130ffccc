//! `prices`: one row per stored price. Column names are the original system's, so the Adminer
//! view reads the same.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Prices {
    Table,
    Id,
    Pair,
    Price,
    ObservedAt,
    FirstSigner,
    SignData,
    SignerCount,
    LastsignedTime,
    CreatedTime,
    WrittenBy,
}

const CREATED_TIME_INDEX: &str = "prices_created_time_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Prices::Table)
                    .col(
                        ColumnDef::new(Prices::Id)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Prices::Pair).text().not_null())
                    .col(
                        ColumnDef::new(Prices::Price)
                            .decimal_len(38, 8)
                            .not_null()
                            .check(Expr::col(Prices::Price).gt(0)),
                    )
                    .col(
                        ColumnDef::new(Prices::ObservedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Prices::FirstSigner).text().not_null())
                    .col(ColumnDef::new(Prices::SignData).json_binary().not_null())
                    .col(
                        ColumnDef::new(Prices::SignerCount)
                            .integer()
                            .not_null()
                            .check(Expr::col(Prices::SignerCount).gt(0)),
                    )
                    .col(
                        ColumnDef::new(Prices::LastsignedTime)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Prices::CreatedTime)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .col(ColumnDef::new(Prices::WrittenBy).text().not_null())
                    .to_owned(),
            )
            .await?;
        // `oracle verify --since` and `oracle status` read the newest rows.
        manager
            .create_index(
                Index::create()
                    .name(CREATED_TIME_INDEX)
                    .table(Prices::Table)
                    .col(Prices::CreatedTime)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Prices::Table).to_owned())
            .await
    }
}
