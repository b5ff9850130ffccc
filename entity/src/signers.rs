//! `signers`: the members whose signatures count; a removed member keeps its row, revoked.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signers")]
pub struct Model {
    /// The member's EIP-55 address.
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub address: String,
    /// A label for people (the node name); not used for any decision.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// Since when its signatures count (database clock).
    pub added_at: DateTimeWithTimeZone,
    /// From when its signatures no longer count; `NULL` while it is a member.
    pub revoked_at: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
