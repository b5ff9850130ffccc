//! Reads for people and auditors: stored prices page by page, the heartbeat table, the newest
//! prices. Nothing here writes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::prices;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::{Store, StoreError};
use crate::pair::Pair;

/// A stored price as the table holds it.
pub type StoredPrice = prices::Model;

/// A heartbeat row, with times relative to the database clock.
#[derive(Debug, Clone)]
pub struct HeartbeatRow {
    pub node_address: String,
    pub nodename: String,
    pub peer_id: String,
    /// `timestamp − now()` in seconds: positive while a held lease keeps it in the future.
    pub lead_seconds: f64,
    pub started_at: DateTime<Utc>,
    pub is_writer: bool,
}

impl Store {
    /// Up to `limit` stored prices with ids above `after`, oldest first, optionally only those
    /// written within `since` (keyset pagination: each page is one indexed query).
    pub async fn prices_page(
        &self,
        after: Option<i64>,
        since: Option<Duration>,
        limit: u64,
    ) -> Result<Vec<StoredPrice>, StoreError> {
        let mut query = prices::Entity::find()
            .order_by_asc(prices::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(prices::Column::Id.gt(after));
        }
        if let Some(since) = since {
            let cutoff =
                Utc::now() - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::MAX);
            query = query.filter(prices::Column::CreatedTime.gte(cutoff));
        }
        self.timed("read prices", query.all(&self.db())).await
    }

    /// The most recently stored prices (of one pair, or of all), last committed first.
    pub async fn latest_prices(
        &self,
        limit: u64,
        pair: Option<Pair>,
    ) -> Result<Vec<StoredPrice>, StoreError> {
        let mut query = prices::Entity::find()
            .order_by_desc(prices::Column::Seq)
            .limit(limit);
        if let Some(pair) = pair {
            query = query.filter(prices::Column::Pair.eq(pair.name()));
        }
        self.timed("read prices", query.all(&self.db())).await
    }

    /// Every heartbeat row of a node that has not left, the writer first.
    pub async fn heartbeats(&self) -> Result<Vec<HeartbeatRow>, StoreError> {
        let statement = Statement::from_string(
            DbBackend::Postgres,
            r#"SELECT node_address, nodename, peer_id,
                      extract(epoch FROM "timestamp" - now())::float8, started_at
               FROM heartbeat WHERE "timestamp" > '-infinity' ORDER BY "timestamp" DESC, node_address DESC"#,
        );
        let rows = self
            .timed("read heartbeats", self.db().query_all_raw(statement))
            .await?;
        let read = |row: &sea_orm::QueryResult| -> Result<_, sea_orm::DbErr> {
            Ok((
                row.try_get_by_index::<String>(0)?,
                row.try_get_by_index::<String>(1)?,
                row.try_get_by_index::<String>(2)?,
                row.try_get_by_index::<f64>(3)?,
                row.try_get_by_index::<DateTime<Utc>>(4)?,
            ))
        };
        rows.iter()
            .enumerate()
            .map(|(index, row)| {
                let (node_address, nodename, peer_id, lead_seconds, started_at) =
                    read(row).map_err(StoreError::db("read heartbeats"))?;
                Ok(HeartbeatRow {
                    node_address,
                    nodename,
                    peer_id,
                    lead_seconds,
                    started_at,
                    is_writer: index == 0,
                })
            })
            .collect()
    }
}
