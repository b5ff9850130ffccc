//! `prices`: one row per stored price.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "prices")]
pub struct Model {
    /// Sonyflake-style id: 39 bits of 10 ms time, 8 bits sequence, 16 bits machine.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    /// The pair, e.g. "ETH/USD": one of the pairs the network signs (`--pairs`).
    #[sea_orm(column_type = "Text")]
    pub pair: String,
    /// USD: the median of the observations' prices (sorted, the one at index ⌊n/2⌋), exactly
    /// `price_e8 / 10⁸`.
    #[sea_orm(column_type = "Decimal(Some((38, 8)))")]
    pub price: Decimal,
    /// When the origin observed its price: the round's time.
    pub observed_at: DateTimeWithTimeZone,
    /// The origin's address.
    #[sea_orm(column_type = "Text")]
    pub first_signer: String,
    /// `[{"signer":"0x…","signature":"0x…","price_e8":"…","observed_at":…}, …]`: every member's
    /// observation known at write time, each with its signature over its own digest.
    #[sea_orm(column_type = "JsonBinary")]
    pub sign_data: Json,
    /// `len(sign_data)`.
    pub signer_count: i32,
    /// Time of the last signature seen.
    pub lastsigned_time: DateTimeWithTimeZone,
    /// When the row was inserted (database clock, `clock_timestamp()`). It commits a little
    /// later, so this is no cursor: use `seq`.
    pub created_time: DateTimeWithTimeZone,
    /// The writer's address.
    #[sea_orm(column_type = "Text")]
    pub written_by: String,
    /// (max − min) / median of the observations' prices, to 8 decimals.
    #[sea_orm(column_type = "Decimal(Some((20, 8)))")]
    pub spread: Decimal,
    /// The oldest observation.
    pub first_observed_at: DateTimeWithTimeZone,
    /// The newest observation.
    pub last_observed_at: DateTimeWithTimeZone,
    /// The configuration digest (`0x` + 64 hex) every observation was signed under; rows from
    /// before protocol v2 hold `keccak256("price-oracle/v1")`.
    pub config: String,
    /// `[{"signer":"0x…","signature":"0x…"}, …]`: the members' signatures over the report
    /// digest, committing to exactly `sign_data`, `price` and `observed_at` (protocol v2; `[]`
    /// on v1 rows).
    #[sea_orm(column_type = "JsonBinary")]
    pub commits: Json,
    /// Commit order, assigned by the database (`GENERATED ALWAYS AS IDENTITY`, drawn under a
    /// lock the inserting transaction holds until it ends): a reader that has seen every row up
    /// to `seq` n sees later rows only with `seq` > n. Gaps are possible.
    #[sea_orm(unique)]
    pub seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
