//! The fenced flush: verified prices go to `prices` exactly once, written only by the writer.
//!
//! One transaction:
//!
//! 1. `LOCK TABLE heartbeat IN SHARE MODE` freezes the lease: no heartbeat can commit until the
//!    flush ends, so the writer cannot change between the check and the insert. (Flushes do not
//!    block each other — SHARE locks are compatible — and heartbeats wait at most one flush.)
//! 2. The writer check: the heartbeat row with the greatest timestamp must be this node's,
//!    otherwise nothing is written.
//! 3. The member check: every row keeps only the observations of current members (the
//!    `signers` table, read in the same transaction) and needs `2f + 1` of them, the
//!    origin's among them — defence in depth behind the nodes' own checks. Its price is the
//!    median of the observations it keeps.
//! 4. Multi-row `INSERT … ON CONFLICT (id) DO NOTHING RETURNING id`, in chunks. The table's
//!    statement trigger takes a transaction-level advisory lock before the rows draw their
//!    `seq`, so a second flush that overlaps this one (only the writer's own can, e.g. a retry
//!    after a client-side timeout) waits at its first insert until this one has committed: its
//!    rows come after ours both in `seq` and in commit order. Readers poll `seq > last`; see
//!    the migration `m20261123_000004_prices_commit_order` for why this never skips a row.
//! 5. Ids that already existed are compared with the stored row: the same round (pair and
//!    origin) is stored already — maybe by another writer with another set of observations;
//!    another round under the id is a conflict — reported, never overwritten.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256};
use chrono::{DateTime, Utc};
use entity::prices;

use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait, Value,
};

use super::lease::{WRITER_SQL, parse_address};
use super::members::{CURRENT_MEMBERS_SQL, read_members};
use super::{Store, StoreError};
use crate::domain::{Deployment, FaultBound};
use crate::signed::{Report, VerifiedPrice};

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
    /// Not written: fewer than `2f + 1` current members signed it (the node's member
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
        deployment: &Deployment,
    ) -> Result<FlushOutcome, StoreError> {
        let txn = self.timed("flush begin", self.db().begin()).await?;
        let outcome = self.flush_in(&txn, me, batch, deployment).await;
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
        deployment: &Deployment,
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
        let (batch, below_quorum) = members_only(batch, &members, deployment);
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
            "SELECT id, pair, first_signer FROM prices WHERE id = ANY($1)",
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
                        row.try_get_by_index::<String>(2)?,
                    ),
                ))
            };
            let (id, fields) = read(&row).map_err(StoreError::db("flush compare"))?;
            stored.insert(id, fields);
        }
        let mut existing = Vec::new();
        let mut conflicting = Vec::new();
        for price in prices {
            let round = price.round();
            let same = stored.get(&round.id).is_some_and(|(pair, origin)| {
                pair == round.pair.name() && *origin == round.origin.to_checksum(None)
            });
            if same {
                existing.push(round.id);
            } else {
                conflicting.push(round.id);
            }
        }
        Ok((existing, conflicting))
    }
}

/// The reports the rules let through: signed under these members' configuration (`f` of these
/// members in `deployment`), every observation a member's now and at the round's time (the rule
/// `oracle verify` applies), `2f + 1` of them with their origin's, and `f + 1` of these members'
/// commits over the report digest. A report is committed as a whole, so one that fails is set
/// apart by id, never trimmed.
fn members_only(
    batch: &[VerifiedPrice],
    members: &HashMap<Address, u64>,
    deployment: &Deployment,
) -> (Vec<VerifiedPrice>, Vec<u64>) {
    let list: Vec<Address> = members.keys().copied().collect();
    let f = FaultBound::for_members(Some(list.len()), deployment.max_faults);
    let config = deployment.config_digest(&list, f);
    let (kept, refused): (Vec<&VerifiedPrice>, Vec<&VerifiedPrice>) = batch
        .iter()
        .partition(|price| within_rules(&price.report, members, config, f));
    (
        kept.into_iter().cloned().collect(),
        refused.into_iter().map(VerifiedPrice::id).collect(),
    )
}

fn within_rules(
    report: &Report,
    members: &HashMap<Address, u64>,
    config: B256,
    f: FaultBound,
) -> bool {
    let Some(round_time) = report.observed_at() else {
        return false;
    };
    let counts = |signer: &Address| {
        members
            .get(signer)
            .is_some_and(|since| *since <= round_time)
    };
    // Signatures were checked where they arrived (the network layer), as the observations'
    // were; `oracle verify` and the readers check them again from the row.
    let committed: HashSet<Address> = report
        .commits
        .iter()
        .map(|commit| commit.signer)
        .filter(counts)
        .collect();
    report.round.config == config
        && report.signers().all(|signer| counts(&signer))
        && report.observations.len() >= f.quorum()
        && committed.len() >= f.commit_threshold()
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
            Column::Spread,
            Column::FirstObservedAt,
            Column::LastObservedAt,
            Column::Config,
            Column::Commits,
        ])
        .on_conflict(OnConflict::column(Column::Id).do_nothing().to_owned())
        .returning_col(Column::Id);
    let writer = writer.to_checksum(None);
    for price in chunk {
        insert
            .values(row_values(price, &writer)?)
            .map_err(|err| unexpected(err.to_string()))?;
    }
    Ok(DbBackend::Postgres.build(&insert))
}

/// The columns of one row, in [`insert_statement`]'s order.
fn row_values(price: &VerifiedPrice, writer: &str) -> Result<[Expr; 14], StoreError> {
    let report = &price.report;
    let round = &report.round;
    let time = |seconds: u64| {
        unix_to_datetime(seconds).ok_or_else(|| {
            unexpected(format!(
                "observation time {seconds} of price {} is out of range",
                round.id
            ))
        })
    };
    let (Some(_), Some(value), Some(observed_at), Some((first, last))) = (
        report.origin_observation(),
        report.value(),
        report.time(),
        report.observed_range(),
    ) else {
        return Err(unexpected(format!(
            "price {} has no observation of its origin's",
            round.id
        )));
    };
    let sign_data = serde_json::to_value(super::row::sign_data(report))
        .map_err(|err| unexpected(err.to_string()))?;
    let commits =
        serde_json::to_value(&report.commits).map_err(|err| unexpected(err.to_string()))?;
    Ok([
        Expr::val(db_id(round.id)?),
        Expr::val(round.pair.name()),
        Expr::val(value.to_decimal()),
        Expr::val(time(observed_at)?),
        Expr::val(round.origin.to_checksum(None)),
        Expr::val(sign_data),
        Expr::val(i32::try_from(report.observations.len()).unwrap_or(i32::MAX)),
        Expr::val(system_time_to_datetime(price.last_signed)),
        Expr::val(writer),
        Expr::val(report.spread()),
        Expr::val(time(first)?),
        Expr::val(time(last)?),
        Expr::val(round.config.to_string()),
        Expr::val(commits),
    ])
}

fn unexpected(detail: String) -> StoreError {
    StoreError::Unexpected {
        what: "flush insert",
        detail,
    }
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
    use crate::signed::{Observation, PriceData, Round, SignatureEntry, SignedObservation};

    /// Round 1 of `signers[0]` under `config`, observed by every one of `signers` (3000, 3001,
    /// … each signed by its own signer) and committed by `committers`.
    fn committed(config: B256, signers: &[Identity], committers: &[&Identity]) -> VerifiedPrice {
        let round = Round {
            config,
            pair: Pair::EthUsd,
            id: 1,
            origin: signers[0].address(),
        };
        let observations = signers
            .iter()
            .zip(0i64..)
            .map(|(signer, offset)| {
                let observation = Observation {
                    price: UsdPrice::from_e8(300_000_000_000 + offset * 100_000_000).unwrap(),
                    observed_at: 1_000,
                };
                SignedObservation {
                    signer: signer.address(),
                    observation,
                    signature: PriceData::new(round, observation)
                        .sign(signer.signer())
                        .signature,
                }
            })
            .collect();
        let mut report = Report {
            round,
            observations,
            commits: Vec::new(),
        };
        let digest = report.digest().unwrap();
        report.commits = committers
            .iter()
            .map(|member| SignatureEntry::sign(member.signer(), digest))
            .collect();
        VerifiedPrice {
            report,
            last_signed: UNIX_EPOCH,
        }
    }

    fn identities(n: u8) -> Vec<Identity> {
        (1..=n)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    /// The flush writes a committed report as it is or not at all: trimming it would store a
    /// set nobody committed to.
    #[test]
    fn a_report_with_an_observation_of_no_member_at_the_rounds_time_is_not_written() {
        let signers = identities(4);
        // Four members, so f = 1: 3 observations and 2 commits.
        let listed: Vec<Address> = signers.iter().map(Identity::address).collect();
        let deployment = Deployment::default();
        let config = deployment.config_digest(&listed, FaultBound::new(1));
        let price = committed(config, &signers, &[&signers[0], &signers[1]]);
        let since = |joined: [u64; 4]| -> HashMap<Address, u64> {
            listed.iter().copied().zip(joined).collect()
        };
        let (kept, refused) =
            members_only(std::slice::from_ref(&price), &since([0; 4]), &deployment);
        assert!(refused.is_empty());
        assert_eq!(kept, vec![price.clone()]);
        // Signer 4 joined after the round: the report is refused whole, not trimmed.
        let (kept, refused) = members_only(
            std::slice::from_ref(&price),
            &since([0, 0, 0, 1_001]),
            &deployment,
        );
        assert!(kept.is_empty());
        assert_eq!(refused, vec![1]);
        // Signed for another network: not these members' configuration, not written.
        let elsewhere = Deployment {
            network: "elsewhere".into(),
            ..Deployment::default()
        };
        let (kept, refused) = members_only(&[price], &since([0; 4]), &elsewhere);
        assert!(kept.is_empty());
        assert_eq!(refused, vec![1]);
    }

    #[test]
    fn a_report_without_f_plus_one_member_commits_is_not_written() {
        let signers = identities(5);
        let members: HashMap<Address, u64> = signers[..4]
            .iter()
            .map(|signer| (signer.address(), 0))
            .collect();
        let listed: Vec<Address> = members.keys().copied().collect();
        let deployment = Deployment::default();
        let config = deployment.config_digest(&listed, FaultBound::new(1));
        let refused = |price: &VerifiedPrice| {
            members_only(std::slice::from_ref(price), &members, &deployment).1 == vec![1]
        };
        let good = committed(config, &signers[..4], &[&signers[0], &signers[1]]);
        assert!(!refused(&good));
        // One commit (f), a commit repeated, a non-member's commit: short of f + 1.
        assert!(refused(&committed(config, &signers[..4], &[&signers[0]])));
        assert!(refused(&committed(
            config,
            &signers[..4],
            &[&signers[0], &signers[0]]
        )));
        assert!(refused(&committed(
            config,
            &signers[..4],
            &[&signers[0], &signers[4]]
        )));
    }
}
