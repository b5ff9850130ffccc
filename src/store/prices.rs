//! The fenced flush: verified prices go to `prices` exactly once, written only by the writer.
//!
//! One transaction:
//!
//! 1. `LOCK TABLE heartbeat IN SHARE MODE` freezes the lease: no heartbeat can commit until the
//!    flush ends, so the writer cannot change between the check and the insert. (Flushes do not
//!    block each other — SHARE locks are compatible — and heartbeats wait at most one flush.)
//! 2. The writer check: the heartbeat row with the greatest timestamp must be this node's,
//!    otherwise nothing is written.
//! 3. The member check: every row keeps only the signatures of current members (the `signers`
//!    table, read in the same transaction) and needs `min_signers` of them, the origin's among
//!    them — defence in depth behind the nodes' own checks.
//! 4. Multi-row `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`, in chunks. The table's
//!    statement trigger takes a transaction-level advisory lock before the rows draw their
//!    `seq`, so a second flush that overlaps this one (only the writer's own can, e.g. a retry
//!    after a client-side timeout) waits at its first insert until this one has committed: its
//!    rows come after ours both in `seq` and in commit order. Readers poll `seq > last`; see
//!    the migration `m20261123_000004_prices_commit_order` for why this never skips a row.
//! 5. Ids that already existed are compared with the stored row: a different pair, price or
//!    observation time means a different digest under the same id — reported, never overwritten.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use chrono::{DateTime, Utc};
use entity::prices;
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait, Value,
};

use super::lease::{WRITER_SQL, parse_address};
use super::members::{CURRENT_MEMBERS_SQL, read_members};
use super::{Store, StoreError};
use crate::pool::VerifiedPrice;

/// Rows per INSERT statement: 10 parameters a row stays far below Postgres' 65,535 limit.
const INSERT_CHUNK: usize = 1_000;

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Written by this flush.
    pub inserted: Vec<u64>,
    /// Already stored with the same digest (by an earlier flush, maybe another node's).
    pub existing: Vec<u64>,
    /// Already stored with a *different* digest: a conflict, left untouched.
    pub conflicting: Vec<u64>,
    /// Not written: fewer than `min_signers` current members signed it (the node's member
    /// list was out of date).
    pub below_quorum: Vec<u64>,
}

/// The outcome of a flush attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushOutcome {
    /// This node is not the writer: nothing was written.
    NotWriter {
        writer: Option<Address>,
    },
    Flushed(Flushed),
}

impl Store {
    /// Writes `batch` if — and only if — `me` is the writer, in one fenced transaction.
    ///
    /// Every id in the batch ends in exactly one of `inserted`, `existing`, `conflicting`,
    /// `below_quorum`. On error nothing was written; the caller keeps the prices and tries
    /// again later.
    pub async fn flush(
        &self,
        me: &Address,
        batch: &[VerifiedPrice],
        min_signers: usize,
    ) -> Result<FlushOutcome, StoreError> {
        let txn = self.timed("flush begin", self.db.begin()).await?;
        let outcome = self.flush_in(&txn, me, batch, min_signers).await;
        match outcome {
            Ok(FlushOutcome::Flushed(flushed)) => {
                self.timed("flush commit", txn.commit()).await?;
                Ok(FlushOutcome::Flushed(flushed))
            }
            Ok(not_writer) => {
                let _ = self.timed("flush rollback", txn.rollback()).await;
                Ok(not_writer)
            }
            Err(err) => {
                let _ = self.timed("flush rollback", txn.rollback()).await;
                Err(err)
            }
        }
    }

    async fn flush_in(
        &self,
        txn: &DatabaseTransaction,
        me: &Address,
        batch: &[VerifiedPrice],
        min_signers: usize,
    ) -> Result<FlushOutcome, StoreError> {
        self.timed(
            "flush fence",
            txn.execute_unprepared("LOCK TABLE heartbeat IN SHARE MODE"),
        )
        .await?;
        let writer = self
            .timed(
                "flush writer check",
                txn.query_one_raw(Statement::from_string(DbBackend::Postgres, WRITER_SQL)),
            )
            .await?
            .map(|row| parse_address("flush writer check", &row))
            .transpose()?;
        if writer != Some(*me) {
            return Ok(FlushOutcome::NotWriter { writer });
        }
        let members = self
            .timed(
                "flush members",
                txn.query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    CURRENT_MEMBERS_SQL,
                )),
            )
            .await?;
        let members = read_members("flush members", &members)?;
        let (batch, below_quorum) = members_only(batch, &members, min_signers);
        let batch = batch.as_slice();
        let mut inserted = HashSet::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            let statement = insert_statement(chunk, me)?;
            let rows = self
                .timed("flush insert", txn.query_all_raw(statement))
                .await?;
            for row in rows {
                let id = row
                    .try_get_by_index::<i64>(0)
                    .map_err(StoreError::db("flush insert"))?;
                inserted.insert(id as u64);
            }
        }
        let already: Vec<&VerifiedPrice> = batch
            .iter()
            .filter(|price| !inserted.contains(&price.id()))
            .collect();
        let (existing, conflicting) = self.compare_existing(txn, &already).await?;
        // In batch order, each id once.
        let inserted = batch
            .iter()
            .map(VerifiedPrice::id)
            .filter(|id| inserted.remove(id))
            .collect();
        Ok(FlushOutcome::Flushed(Flushed {
            inserted,
            existing,
            conflicting,
            below_quorum,
        }))
    }

    /// Splits prices whose id was already stored into same-digest and different-digest.
    async fn compare_existing(
        &self,
        txn: &DatabaseTransaction,
        prices: &[&VerifiedPrice],
    ) -> Result<(Vec<u64>, Vec<u64>), StoreError> {
        if prices.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids = prices
            .iter()
            .map(|price| db_id(price.id()))
            .collect::<Result<Vec<i64>, _>>()?;
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, pair, price, observed_at FROM prices WHERE id = ANY($1)",
            [Value::from(ids)],
        );
        let rows = self
            .timed("flush compare", txn.query_all_raw(statement))
            .await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in rows {
            let read = |row: &sea_orm::QueryResult| -> Result<_, sea_orm::DbErr> {
                Ok((
                    row.try_get_by_index::<i64>(0)? as u64,
                    (
                        row.try_get_by_index::<String>(1)?,
                        row.try_get_by_index::<Decimal>(2)?,
                        row.try_get_by_index::<DateTime<Utc>>(3)?,
                    ),
                ))
            };
            let (id, fields) = read(&row).map_err(StoreError::db("flush compare"))?;
            stored.insert(id, fields);
        }
        let mut existing = Vec::new();
        let mut conflicting = Vec::new();
        for price in prices {
            let data = price.data();
            let same = stored.get(&data.id).is_some_and(|(pair, value, observed)| {
                pair == data.pair.name()
                    && *value == data.price.to_decimal()
                    && Some(*observed) == unix_to_datetime(data.observed_at)
            });
            if same {
                existing.push(data.id);
            } else {
                conflicting.push(data.id);
            }
        }
        Ok((existing, conflicting))
    }
}

/// Each price with only the signatures of signers that are members now and were when it was
/// observed (the rule `oracle verify` applies); those left below the quorum, or without their
/// origin's signature, are set apart by id.
fn members_only(
    batch: &[VerifiedPrice],
    members: &HashMap<Address, u64>,
    min_signers: usize,
) -> (Vec<VerifiedPrice>, Vec<u64>) {
    let mut below_quorum = Vec::new();
    let kept = batch
        .iter()
        .filter_map(|price| {
            let mut price = price.clone();
            let observed_at = price.data().observed_at;
            price.signed.signatures.retain(|entry| {
                members
                    .get(&entry.signer)
                    .is_some_and(|since| *since <= observed_at)
            });
            if price.signed.origin_signed() && price.signed.signatures.len() >= min_signers {
                Some(price)
            } else {
                below_quorum.push(price.id());
                None
            }
        })
        .collect();
    (kept, below_quorum)
}

fn insert_statement(chunk: &[VerifiedPrice], writer: &Address) -> Result<Statement, StoreError> {
    use prices::Column;
    let mut insert = Query::insert();
    insert
        .into_table(prices::Entity)
        .columns([
            Column::Id,
            Column::Pair,
            Column::Price,
            Column::ObservedAt,
            Column::FirstSigner,
            Column::SignData,
            Column::SignerCount,
            Column::LastsignedTime,
            Column::WrittenBy,
        ])
        .on_conflict(OnConflict::column(Column::Id).do_nothing().to_owned())
        .returning_col(Column::Id);
    let writer = writer.to_checksum(None);
    for price in chunk {
        let data = price.data();
        let signatures = &price.signed.signatures;
        let observed_at = unix_to_datetime(data.observed_at).ok_or(StoreError::Unexpected {
            what: "flush insert",
            detail: format!(
                "observed_at {} of price {} is out of range",
                data.observed_at, data.id
            ),
        })?;
        let sign_data = serde_json::to_value(signatures).map_err(|err| StoreError::Unexpected {
            what: "flush insert",
            detail: err.to_string(),
        })?;
        insert
            .values([
                Expr::val(db_id(data.id)?),
                Expr::val(data.pair.name()),
                Expr::val(data.price.to_decimal()),
                Expr::val(observed_at),
                Expr::val(data.origin.to_checksum(None)),
                Expr::val(sign_data),
                Expr::val(i32::try_from(signatures.len()).unwrap_or(i32::MAX)),
                Expr::val(system_time_to_datetime(price.last_signed)),
                Expr::val(writer.as_str()),
            ])
            .map_err(|err| StoreError::Unexpected {
                what: "flush insert",
                detail: err.to_string(),
            })?;
    }
    Ok(DbBackend::Postgres.build(&insert))
}

/// Ids are positive BIGINTs; the message decoder already refuses larger ones.
fn db_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Unexpected {
        what: "flush",
        detail: format!("id {id} does not fit a BIGINT"),
    })
}

fn unix_to_datetime(seconds: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)
}

fn system_time_to_datetime(time: SystemTime) -> DateTime<Utc> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    DateTime::<Utc>::from(UNIX_EPOCH + since)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{PriceData, SignedPrice};

    #[test]
    fn only_signatures_of_members_since_the_observation_are_written() {
        let signers: Vec<Identity> = (1..=4u8)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect();
        let data = PriceData {
            pair: Pair::EthUsd,
            id: 1,
            price: UsdPrice::from_e8(300_000_000_000).unwrap(),
            observed_at: 1_000,
            origin: signers[0].address(),
        };
        let price = VerifiedPrice {
            signed: SignedPrice {
                data,
                signatures: signers.iter().map(|s| data.sign(s.signer())).collect(),
            },
            last_signed: UNIX_EPOCH,
        };
        // Signer 3 joined after the observation, signer 4 is no member at all.
        let members: HashMap<Address, u64> = [
            (signers[0].address(), 0),
            (signers[1].address(), 1_000),
            (signers[2].address(), 1_001),
        ]
        .into();
        let (kept, below) = members_only(std::slice::from_ref(&price), &members, 2);
        assert!(below.is_empty());
        let written: Vec<Address> = kept[0].signed.signers().collect();
        assert_eq!(written, vec![signers[0].address(), signers[1].address()]);
        let (kept, below) = members_only(&[price], &members, 3);
        assert!(kept.is_empty());
        assert_eq!(below, vec![1]);
    }
}
