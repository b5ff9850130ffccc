//! `heartbeat`: one row per live node; the greatest `timestamp` is the writer.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "heartbeat")]
pub struct Model {
    /// The node's address (names can collide; addresses cannot).
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub node_address: String,
    #[sea_orm(column_type = "Text")]
    pub nodename: String,
    #[sea_orm(column_type = "Text")]
    pub peer_id: String,
    /// For the writer, until when its lease holds (`now()` + `--lease-duration` at each of its
    /// heartbeats); for the others, their last heartbeat (`now()`).
    pub timestamp: DateTimeWithTimeZone,
    /// When the node first heartbeated (database clock).
    pub started_at: DateTimeWithTimeZone,
    /// Where the node listens: multiaddrs with `/p2p/<peer id>`, space-separated.
    #[sea_orm(column_type = "Text")]
    pub listen_addrs: String,
    /// When this node's current term as the writer began; `None` while it is not the writer.
    pub lease_since: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
