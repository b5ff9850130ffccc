//! Reads for the consumers of stored prices — the node's `/v1` API and `oracle prices`: the newest
//! price of a pair, one price by id, a pair's history in commit order — and for a node checking a
//! stored notice against the table ([`Store::stored_rounds`]). Nothing here writes.
//!
//! History pages are keyed by `seq`, never by `id` or a time: `seq` follows the commit order (see
//! the migration `m20261123_000004_prices_commit_order`), so a reader that asks for
//! `seq > last seen` never skips a row that committed late. Ids are the origins' clocks and
//! `created_time` is taken before the commit; either as a cursor would skip such rows for good.

use chrono::{DateTime, FixedOffset, Utc};
use entity::prices;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, Value,
};

use super::reports::StoredPrice;
use super::{Store, StoreError};
use crate::pair::Pair;
use crate::signed::Round;

/// The round a stored row records, as the table spells it: what a node checks a stored notice
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRound {
    pub id: u64,
    /// The pair's name, e.g. `ETH/USD`.
    pub pair: String,
    /// The origin's address (`first_signer`), EIP-55.
    pub origin: String,
}

impl StoredRound {
    /// Whether this row records `round` (the same id, pair and origin); another round under the
    /// id is a conflict, which can never be stored.
    pub fn records(&self, round: &Round) -> bool {
        self.id == round.id
            && self.pair == round.pair.name()
            && self.origin == round.origin.to_checksum(None)
    }
}

/// One page of a pair's history: rows with `seq > after`, observed in `[from, to)`, in `seq`
/// order, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryQuery {
    pub pair: Pair,
    /// The greatest `seq` the reader has seen; 0 for the beginning.
    pub after: i64,
    /// Observed at or after this moment.
    pub from: Option<DateTime<Utc>>,
    /// Observed before this moment.
    pub to: Option<DateTime<Utc>>,
    pub limit: u64,
}

/// A pair's stored prices, newest first, a page at a time ([`Store::newest_first`]).
pub struct NewestFirst<'a> {
    store: &'a Store,
    pair: Pair,
    page: u64,
    /// Where the next page starts: below the last row read.
    below: Option<(DateTime<FixedOffset>, i64)>,
    ended: bool,
}

impl NewestFirst<'_> {
    /// The next page, newest first; `None` once past the oldest row.
    pub async fn next_page(&mut self) -> Result<Option<Vec<StoredPrice>>, StoreError> {
        if self.ended {
            return Ok(None);
        }
        let rows = self
            .store
            .newest_prices(self.pair, self.below, self.page)
            .await?;
        self.ended = (rows.len() as u64) < self.page;
        self.below = rows.last().map(|last| (last.observed_at, last.id));
        Ok((!rows.is_empty()).then_some(rows))
    }
}

impl Store {
    /// The stored prices of `pair` newest first, `page` rows per read: for a reader that takes
    /// the newest row passing its own judgement.
    ///
    /// "Newest" is the market's order, not the table's: a price observed earlier can commit
    /// later (its quorum took longer), and it must not replace a fresher one.
    pub fn newest_first(&self, pair: Pair, page: u64) -> NewestFirst<'_> {
        NewestFirst {
            store: self,
            pair,
            page: page.max(1),
            below: None,
            ended: false,
        }
    }

    /// At most `limit` prices of `pair` by observation time (ties: the greater id), newest
    /// first; with `below`, only those older than that `(observed_at, id)`.
    async fn newest_prices(
        &self,
        pair: Pair,
        below: Option<(DateTime<FixedOffset>, i64)>,
        limit: u64,
    ) -> Result<Vec<StoredPrice>, StoreError> {
        let mut query = prices::Entity::find()
            .filter(prices::Column::Pair.eq(pair.name()))
            .order_by_desc(prices::Column::ObservedAt)
            .order_by_desc(prices::Column::Id)
            .limit(limit);
        if let Some((observed_at, id)) = below {
            query = query.filter(
                Condition::any()
                    .add(prices::Column::ObservedAt.lt(observed_at))
                    .add(
                        Condition::all()
                            .add(prices::Column::ObservedAt.eq(observed_at))
                            .add(prices::Column::Id.lt(id)),
                    ),
            );
        }
        self.timed("read latest price", query.all(&self.db())).await
    }

    /// The stored price with this id, if any.
    pub async fn price_by_id(&self, id: i64) -> Result<Option<StoredPrice>, StoreError> {
        self.timed("read price", prices::Entity::find_by_id(id).one(&self.db()))
            .await
    }

    /// The rows stored under `ids`, as their rounds, in no particular order: one statement
    /// however many ids (callers bound them). Ids that no BIGINT holds cannot be stored, and are
    /// not asked for.
    pub async fn stored_rounds(&self, ids: &[u64]) -> Result<Vec<StoredRound>, StoreError> {
        const WHAT: &str = "read stored ids";
        let ids: Vec<i64> = ids
            .iter()
            .filter_map(|id| i64::try_from(*id).ok())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, pair, first_signer FROM prices WHERE id = ANY($1)",
            [Value::from(ids)],
        );
        let rows = self.timed(WHAT, self.db().query_all_raw(statement)).await?;
        let read = |row: &sea_orm::QueryResult| -> Result<StoredRound, sea_orm::DbErr> {
            let id = row.try_get_by_index::<i64>(0)?;
            Ok(StoredRound {
                id: u64::try_from(id)
                    .map_err(|_| sea_orm::DbErr::Type(format!("a negative id {id} in prices")))?,
                pair: row.try_get_by_index::<String>(1)?,
                origin: row.try_get_by_index::<String>(2)?,
            })
        };
        rows.iter()
            .map(|row| read(row).map_err(StoreError::db(WHAT)))
            .collect()
    }

    /// One page of a pair's history in commit order (see [`HistoryQuery`]).
    pub async fn price_history(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<StoredPrice>, StoreError> {
        let select = history(query);
        self.timed("read price history", select.all(&self.db()))
            .await
    }

    /// The ids of one page of a pair's history, with their `seq`: [`Store::price_history`]
    /// without the rows, for a reader that holds most of them already.
    pub async fn price_history_ids(
        &self,
        query: &HistoryQuery,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let select = history(query)
            .select_only()
            .column(prices::Column::Id)
            .column(prices::Column::Seq)
            .into_tuple::<(i64, i64)>();
        self.timed("read price history ids", select.all(&self.db()))
            .await
    }

    /// The stored prices with these ids, in no particular order.
    pub async fn prices_by_ids(&self, ids: &[i64]) -> Result<Vec<StoredPrice>, StoreError> {
        let select = prices::Entity::find().filter(prices::Column::Id.is_in(ids.iter().copied()));
        self.timed("read prices by id", select.all(&self.db()))
            .await
    }

    /// Rows of every pair committed after `after` (`seq > after`), in commit order, at most
    /// `limit`: how the API's one reader follows the table. A reader that passes the greatest
    /// `seq` it has seen each time never misses a row, however the writers' transactions
    /// overlap (tests/it/store.rs holds it to that).
    pub async fn prices_committed_after(
        &self,
        after: i64,
        limit: u64,
    ) -> Result<Vec<StoredPrice>, StoreError> {
        let select = prices::Entity::find()
            .filter(prices::Column::Seq.gt(after))
            .order_by_asc(prices::Column::Seq)
            .limit(limit);
        self.timed("read prices committed after", select.all(&self.db()))
            .await
    }

    /// The greatest `seq` stored so far (0 for an empty table): where a reader that wants only
    /// rows committed from now on starts.
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        let query = prices::Entity::find()
            .select_only()
            .column_as(prices::Column::Seq.max(), "seq")
            .into_tuple::<Option<i64>>();
        let last = self.timed("read last seq", query.one(&self.db())).await?;
        Ok(last.flatten().unwrap_or(0))
    }
}

/// The select of one page of history (see [`HistoryQuery`]).
fn history(query: &HistoryQuery) -> sea_orm::Select<prices::Entity> {
    let mut select = prices::Entity::find()
        .filter(prices::Column::Pair.eq(query.pair.name()))
        .filter(prices::Column::Seq.gt(query.after))
        .order_by_asc(prices::Column::Seq)
        .limit(query.limit);
    if let Some(from) = query.from {
        select = select.filter(prices::Column::ObservedAt.gte(from));
    }
    if let Some(to) = query.to {
        select = select.filter(prices::Column::ObservedAt.lt(to));
    }
    select
}
