//! The writer: the one node that stores verified prices. Everything about it is here — the
//! heartbeats that keep (or hand over) the lease, when to flush, what a flush's outcome means,
//! the checks of other writers' stored notices, and the flush of a stopping node. The SQL is
//! [`crate::store::lease`]'s, [`crate::store::prices`]'s and [`crate::store::read`]'s.
//!
//! - [`heartbeat`]: the heartbeat loop, and the lease's settings.
//! - `duties`: the lease as the heartbeats see it; whether a flush may start.
//! - [`notices`]: which ids of a stored notice to look up in the database, when, and what the
//!   answer means (a notice alone drops nothing; a false one costs its writer).
//!
//! A flush runs in the node's background work ([`Writer::flush_due`] hands out the future, the
//! node runs it and brings the outcome back to [`Writer::flushed`]), so the node's loop never
//! waits for the database. When to flush: every verified price whose last signature is at
//! least `--flush-delay` old ([`crate::pool::Pool::due`]), by the writer only, one flush at a
//! time.

mod duties;
pub mod heartbeat;
pub mod notices;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::committee::{self, CommitteeSettings};
use crate::domain::Deployment;
use crate::labels::label_values;
use crate::membership::Members;
use crate::membership::{MemberList, MemberRefresh};
use crate::message::StoredNotice;
use crate::pair::Pair;
use crate::pool::Pool;
use crate::signed::Report;
use crate::signed::VerifiedPrice;
use crate::store::lease::Participant;
use crate::store::prices::FlushOutcome;
use crate::store::read::StoredRound;
use crate::store::{DatabaseState, Store, StoreError};
use crate::time::{Moment, unix_seconds};
use duties::WriterDuties;
pub use heartbeat::{LeaseSettings, LeaseState};
use notices::{Heard, Lookup, NoticeChecks};

label_values! {
    /// Whether a member of a stored round's committee observed it.
    pub enum RoundOutcome {
        Signed => "signed",
        Missed => "missed",
    }
}

label_values! {
    /// How a flush attempt ended.
    pub enum FlushResult {
        Stored => "stored",
        /// Another node held the lease after all.
        Refused => "refused",
        Failed => "failed",
    }
}

/// What the writer reports as it works (and, through [`store::Probe`], its statements); the
/// node's metrics implement it.
pub trait Probe: crate::store::Probe {
    /// A flush attempt ended as `result`.
    fn flush_ended(&self, result: FlushResult);
    /// This node stored a round of `pair`.
    fn stored(&self, pair: Pair);
    /// A member of a stored round's committee took part in it, or missed it.
    fn committee_member(&self, member: Address, outcome: RoundOutcome);
    /// Whether this node holds the writer lease, after each heartbeat; `changed` when that
    /// differs from before.
    fn lease(&self, held: bool, changed: bool);
    /// A stored notice signed by `writer` named an id the database does not hold, twice.
    fn false_notice(&self, writer: Address);
    /// A stored notice was not acted on: its writer's ids waiting for a lookup were at their
    /// bound.
    fn notice_queue_full(&self);
}

/// A flush that ran: its batch, and what the database said.
#[derive(Debug)]
pub struct Flush {
    batch: Vec<VerifiedPrice>,
    result: Result<FlushOutcome, StoreError>,
}

/// A lookup of a stored notice's ids that ran: what was asked, and what the database said.
#[derive(Debug)]
pub struct NoticeCheck {
    lookup: Lookup,
    result: Result<Vec<StoredRound>, StoreError>,
}

/// The writer's side of a node.
#[derive(Debug)]
pub struct Writer {
    lease_settings: LeaseSettings,
    deployment: Deployment,
    /// Whose observations a stored round expected (for `oracle_member_rounds_total`).
    signer: PrivateKeySigner,
    probe: Arc<dyn Probe>,
    store: Option<Store>,
    duties: WriterDuties,
    /// Other writers' stored notices, until the database confirms or refutes them.
    notices: NoticeChecks,
    heartbeats: Option<JoinHandle<()>>,
    last_stored_id: Option<u64>,
}

impl Writer {
    /// A writer that signs its stored notices with `signer`.
    pub fn new(
        lease_settings: LeaseSettings,
        deployment: Deployment,
        signer: PrivateKeySigner,
        probe: Arc<dyn Probe>,
    ) -> Self {
        Self {
            lease_settings,
            deployment,
            signer,
            probe,
            store: None,
            duties: WriterDuties::default(),
            notices: NoticeChecks::default(),
            heartbeats: None,
            last_stored_id: None,
        }
    }

    fn me(&self) -> Address {
        self.signer.address()
    }

    /// The database is connected.
    pub fn connected(&mut self, store: Store) {
        self.store = Some(store.with_probe(self.probe.clone()));
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The database as `/health` reports it.
    pub fn database_state(&self) -> DatabaseState {
        match &self.store {
            None => DatabaseState::NotConnected,
            Some(store) if store.is_healthy() => DatabaseState::Ok,
            Some(_) => DatabaseState::Failing,
        }
    }

    /// Starts heartbeating as `me` (the store is connected by now) until `shutdown`; returns
    /// what each heartbeat sees and the member lists they read.
    pub fn start_heartbeats(
        &mut self,
        me: Participant,
        shutdown: CancellationToken,
    ) -> (watch::Receiver<LeaseState>, watch::Receiver<MemberList>) {
        let (states_tx, states) = watch::channel(LeaseState::default());
        let (refresh, lists) = MemberRefresh::new();
        if let Some(store) = self.store.clone() {
            self.heartbeats = Some(tokio::spawn(heartbeat::run(
                store,
                me,
                self.lease_settings,
                states_tx,
                refresh,
                Arc::clone(&self.probe),
                shutdown.cancelled_owned(),
            )));
        }
        (states, lists)
    }

    /// What a heartbeat saw.
    pub fn on_heartbeat(&mut self, state: LeaseState) {
        self.duties.on_heartbeat(state);
    }

    pub fn lease(&self) -> &LeaseState {
        self.duties.lease()
    }

    /// A stored notice of `writer` arrived, naming `ids` this node does not know are stored:
    /// they wait for a lookup ([`Writer::notice_check_due`]). Without a database a node believes
    /// no notice.
    pub fn notice_heard(&mut self, writer: Address, ids: Vec<u64>, now: Instant) {
        if self.store.is_none() {
            log::debug!("ignoring a stored notice from {writer}: no database to check it in");
            return;
        }
        let count = ids.len();
        match self.notices.heard(writer, ids, now) {
            Heard::Queued | Heard::NothingNew => {}
            Heard::Penalised { until } => log::debug!(
                "ignoring a stored notice from {writer}: it sent a false one, and is not \
                 believed for another {:?}",
                until.saturating_duration_since(now)
            ),
            Heard::Full => {
                self.probe.notice_queue_full();
                log::debug!(
                    "ignoring a stored notice of {count} ids from {writer}: {} of its ids wait \
                     to be looked up already",
                    notices::MAX_QUEUED_IDS
                );
            }
        }
    }

    /// When a notice check may start next, if any is queued (asked while none runs).
    pub fn next_notice_check(&self) -> Option<Instant> {
        self.store.as_ref()?;
        self.notices.next_due()
    }

    /// The lookup of notices' ids to run now, if one is due. The caller runs one at a time
    /// (off its loop) and hands the outcome to [`Writer::notices_checked`].
    pub fn notice_check_due(
        &mut self,
        now: Instant,
    ) -> Option<impl Future<Output = NoticeCheck> + Send + 'static> {
        let store = self.store.clone()?;
        let lookup = self.notices.next_lookup(now)?;
        Some(async move {
            let result = store.stored_rounds(&lookup.ids).await;
            NoticeCheck { lookup, result }
        })
    }

    /// Applies a lookup's answer: returns the rows the database holds under the ids it asked
    /// for, whose rounds the node drops; a notice still naming a missing id on its second look
    /// is counted false, and its writer's notices are not acted on for a while.
    pub fn notices_checked(&mut self, check: NoticeCheck, now: Instant) -> Vec<StoredRound> {
        let NoticeCheck { lookup, result } = check;
        let writer = lookup.writer;
        let rows = match result {
            Ok(rows) => rows,
            Err(err) => {
                // Not the writer's fault: judged again later, never counted against it.
                log::warn!(
                    "could not look up the {} ids of a stored notice from {writer}; trying again \
                     in {:?}: {err}",
                    lookup.ids.len(),
                    notices::RECHECK_AFTER
                );
                self.notices.looked_up(&lookup, None, now);
                return Vec::new();
            }
        };
        let found: HashSet<u64> = rows.iter().map(|row| row.id).collect();
        let checked = self.notices.looked_up(&lookup, Some(&found), now);
        if checked.false_notices > 0 {
            for _ in 0..checked.false_notices {
                self.probe.false_notice(writer);
            }
            let shown: Vec<u64> = checked.missing.iter().take(5).copied().collect();
            log::warn!(
                "{writer} signed {} stored notices naming {} ids the database does not hold \
                 (looked up twice, {:?} apart; e.g. {shown:?}): nothing dropped for them, and its \
                 notices are not acted on for {:?}",
                checked.false_notices,
                checked.missing.len(),
                notices::RECHECK_AFTER,
                notices::PENALTY
            );
        }
        let stored: HashSet<u64> = checked.stored.into_iter().collect();
        rows.into_iter()
            .filter(|row| stored.contains(&row.id))
            .collect()
    }

    /// The newest id this node has stored.
    pub fn last_stored_id(&self) -> Option<u64> {
        self.last_stored_id
    }

    /// The flush to run now, if this node holds the lease and prices are due. The caller runs
    /// one at a time and hands the outcome to [`Writer::flushed`].
    pub fn flush_due(
        &self,
        pool: &Pool,
        now: Moment,
    ) -> Option<impl Future<Output = Flush> + Send + 'static> {
        let store = self.store.clone()?;
        if !self.duties.may_flush() {
            return None;
        }
        let due = pool.due(now);
        if due.is_empty() {
            return None;
        }
        let (me, deployment) = (self.me(), self.deployment.clone());
        Some(async move {
            let result = store.flush(&me, &due, &deployment).await;
            Flush { batch: due, result }
        })
    }

    /// Applies a flush's outcome: what is stored leaves the pool; each member of a stored
    /// round's committee is counted as having observed it or not. Returns the signed notices
    /// that tell the network which ids are stored.
    pub fn flushed(
        &mut self,
        flush: Flush,
        pool: &mut Pool,
        members: &Members,
    ) -> Vec<StoredNotice> {
        let Flush { batch, result } = flush;
        self.duties.flush_finished(&result);
        let outcome = match &result {
            Ok(FlushOutcome::Flushed(_)) => FlushResult::Stored,
            Ok(FlushOutcome::NotWriter { .. }) => FlushResult::Refused,
            Err(_) => FlushResult::Failed,
        };
        self.probe.flush_ended(outcome);
        let flushed = match result {
            Ok(FlushOutcome::Flushed(flushed)) => flushed,
            Ok(FlushOutcome::NotWriter { writer }) => {
                log::debug!("lost the lease before flushing (writer now {writer:?})");
                return Vec::new();
            }
            Err(err) => {
                log::warn!(
                    "storing {} verified prices failed; they stay in memory and are retried: {err}",
                    batch.len()
                );
                return Vec::new();
            }
        };
        let inserted: HashSet<u64> = flushed.inserted.iter().copied().collect();
        for price in batch.iter().filter(|price| inserted.contains(&price.id())) {
            self.probe.stored(price.round().pair);
            self.count_committee(&price.report, members);
        }
        if let Some(newest) = flushed.inserted.iter().max() {
            self.last_stored_id = self.last_stored_id.max(Some(*newest));
        }
        if !flushed.inserted.is_empty() {
            log::info!("stored {} verified prices", flushed.inserted.len());
            // Each id this node's flush was told is committed: what a fault script holds
            // the database to (none may go missing, none be inserted twice).
            let ids: Vec<String> = flushed.inserted.iter().map(u64::to_string).collect();
            log::debug!("stored prices {}", ids.join(","));
        }
        for id in &flushed.conflicting {
            log::error!("price {id} is already stored with a different price; this one is dropped");
        }
        if !flushed.below_quorum.is_empty() {
            // Our member list is behind the table's; the next heartbeat refreshes it.
            log::warn!(
                "not storing {} prices: fewer than --min-signers current members signed them",
                flushed.below_quorum.len()
            );
        }
        let done: Vec<u64> = flushed
            .inserted
            .iter()
            .chain(&flushed.existing)
            .chain(&flushed.conflicting)
            .copied()
            .collect();
        pool.mark_stored(&done, Moment::now());
        StoredNotice::sign_all(
            &done,
            unix_seconds(SystemTime::now()),
            members.signing_config(),
            &self.signer,
        )
    }

    /// The heartbeats end (the node's shutdown token stops them); waits for the last one until
    /// `by`.
    pub async fn end_heartbeats(&mut self, by: tokio::time::Instant) {
        if let Some(mut heartbeats) = self.heartbeats.take()
            && tokio::time::timeout_at(by, &mut heartbeats).await.is_err()
        {
            heartbeats.abort();
        }
    }

    /// Stores every verified price `pool` holds, due or not, so that nothing with a quorum is
    /// lost when every node stops at once. The node takes the lease for it when nobody holds
    /// it (or keeps it); while another node does, it waits for that one to store and leave,
    /// and tries again until the stop's deadline.
    /// Returns the stored notices to publish.
    pub async fn store_before_stopping(
        &mut self,
        pool: &mut Pool,
        members: &Members,
        me: &Participant,
    ) -> Vec<StoredNotice> {
        let Some(store) = self.store.clone() else {
            return Vec::new();
        };
        loop {
            let verified = pool.verified();
            if verified.is_empty() {
                return Vec::new();
            }
            let result = match store.claim_lease(me, self.lease_settings.lease).await {
                Ok(true) => store.flush(&me.address, &verified, &self.deployment).await,
                // Another node holds the lease: it stores these too, or leaves and lets us.
                Ok(false) => Ok(FlushOutcome::NotWriter { writer: None }),
                Err(err) => Err(err),
            };
            match result {
                Ok(FlushOutcome::NotWriter { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(flushed) => {
                    let flush = Flush {
                        batch: verified,
                        result: Ok(flushed),
                    };
                    return self.flushed(flush, pool, members);
                }
                Err(err) => {
                    log::warn!(
                        "could not store {} verified prices before stopping: {err}",
                        verified.len()
                    );
                    return Vec::new();
                }
            }
        }
    }

    /// Counts, for each member of the round's committee (members at its time), whether the
    /// stored report holds its observation.
    fn count_committee(&self, report: &Report, members: &Members) {
        let round = &report.round;
        let at = report
            .origin_observation()
            .map_or(0, |origin| origin.observation.observed_at);
        let Some(list) = members.counting_at(at) else {
            return;
        };
        // The committee is the origin and the co-signers ranked first.
        let ranking = committee::ranking(round.id, &round.origin, &list);
        let cosigners = ranking
            .iter()
            .take(CommitteeSettings::size(members.fault_bound()));
        for member in std::iter::once(&round.origin).chain(cosigners) {
            let outcome = if report.signers().any(|signer| signer == *member) {
                RoundOutcome::Signed
            } else {
                RoundOutcome::Missed
            };
            self.probe.committee_member(*member, outcome);
        }
    }

    /// Removes the heartbeat row (the others take over at once) and closes the database, each
    /// step abandoned at `by`: the row then expires on its own.
    pub async fn leave(&mut self, me: &Participant, by: tokio::time::Instant) {
        let Some(store) = self.store.take() else {
            return;
        };
        let left = tokio::time::timeout_at(by, store.leave(me)).await;
        if !matches!(left, Ok(Ok(()))) {
            log::warn!("the heartbeat row was not removed in time; it expires on its own");
        }
        let _ = tokio::time::timeout_at(by, store.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe that keeps nothing: what is counted is not this test's subject.
    #[derive(Debug)]
    struct Unobserved;

    impl crate::store::Probe for Unobserved {
        fn statement_issued(&self, _: &'static str) {}
        fn statement_failed(&self, _: &'static str) {}
    }

    impl Probe for Unobserved {
        fn flush_ended(&self, _: FlushResult) {}
        fn stored(&self, _: Pair) {}
        fn committee_member(&self, _: Address, _: RoundOutcome) {}
        fn lease(&self, _: bool, _: bool) {}
        fn false_notice(&self, _: Address) {}
        fn notice_queue_full(&self) {}
    }

    #[test]
    fn a_node_without_a_database_looks_up_no_notice_and_so_believes_none() {
        let mut writer = Writer::new(
            LeaseSettings {
                interval: Duration::from_millis(200),
                lease: Duration::from_millis(600),
                term: Duration::from_secs(5),
                warm_up: Duration::from_secs(1),
            },
            Deployment::default(),
            PrivateKeySigner::random(),
            Arc::new(Unobserved),
        );
        let now = Instant::now();
        writer.notice_heard(Address::repeat_byte(1), vec![1, 2], now);
        assert_eq!(writer.next_notice_check(), None);
        assert!(writer.notice_check_due(now).is_none());
    }
}
