//! Stored rows judged before they are served. The database is storage, not trust: whoever can
//! write `prices` (an admin credential, or a writer's role) can write a row no quorum of members
//! made. So every row the API reads is judged by [`audit::audit_row`] — `oracle verify`'s rules,
//! with the members at the row's time from the `signers` table — once, when it is read: a row
//! that fails is counted ([`Probe::row_refused`]), logged once and never served.
//!
//! The member history is read at the first judgement, again whenever the node's member list
//! changes (the node rereads it within a heartbeat of a change to the table), and again before a
//! refusal that membership could explain when it was read before the rows were: a row stored
//! after a member was added is never refused for a list read before.

use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use chrono::Utc;
use quick_cache::sync::Cache;

use crate::audit::{self, AuditRules, Counted, Finding, FindingKind};
use crate::membership::{MemberView, Members};
use crate::store::reports::StoredPrice;
use crate::store::{Store, StoreError};

/// Refused rows whose verdict is kept: each is counted and logged once while kept, and never
/// judged again. Beyond, the oldest are judged (and counted) again when read again.
const REFUSALS_KEPT: usize = 4_096;

/// What the API reports of the rows it judges; the node's metrics implement it.
pub trait Probe: Send + Sync + std::fmt::Debug {
    /// A stored row was refused for `reason`: once per row while its verdict is kept.
    fn row_refused(&self, reason: FindingKind);
}

/// A probe for a one-off reader (`oracle prices`): its refusals are logged, not counted.
#[derive(Debug)]
pub struct Unwatched;

impl Probe for Unwatched {
    fn row_refused(&self, _: FindingKind) {}
}

/// The judge of the rows one API reads.
pub struct Checker {
    members: MemberView,
    probe: Arc<dyn Probe>,
    /// The rules of the last read of the member history; `None` before the first.
    rules: RwLock<Option<Rules>>,
    /// One read of the member history at a time: a burst of refusals reads it once.
    reading: tokio::sync::Mutex<()>,
    /// Why each refused row was refused, by id.
    refused: Cache<i64, FindingKind>,
}

/// `oracle verify`'s rules with the member history as read, and what they were read for.
#[derive(Clone)]
struct Rules {
    audit: Arc<AuditRules>,
    /// When the read of the history started: it holds every change committed before.
    read_at: Instant,
    /// The node's member list then: another one means the table changed since.
    members: Arc<Members>,
}

impl Checker {
    /// Judges by the `signers` table, in the deployment (network, chain, verifier, `f`) of the
    /// node's `members`, whose changes it follows.
    pub fn new(members: MemberView, probe: Arc<dyn Probe>) -> Self {
        Self {
            members,
            probe,
            rules: RwLock::new(None),
            reading: tokio::sync::Mutex::new(()),
            refused: Cache::new(REFUSALS_KEPT),
        }
    }

    /// Why the row `id` was refused, if it was (and its verdict is still kept).
    pub fn refused(&self, id: i64) -> Option<FindingKind> {
        self.refused.get(&id)
    }

    /// Judges `rows`, all read from the database by `read_at`: `None` for a row that passes
    /// every rule, its finding's kind for one that does not, which is counted and logged (once
    /// per row) and must never be served. Fails only when the member history cannot be read:
    /// then nothing is judged, and nothing may be served.
    pub async fn judge(
        &self,
        store: &Store,
        rows: &[&StoredPrice],
        read_at: Instant,
    ) -> Result<Vec<Option<FindingKind>>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let rules = self.current(store).await?;
        let mut findings: Vec<Option<Finding>> = rows
            .iter()
            .map(|row| audit::audit_row(row, &rules.audit, now).finding)
            .collect();
        let membership_may_explain = findings
            .iter()
            .flatten()
            .any(|finding| depends_on_members(finding.kind()));
        if membership_may_explain && rules.read_at < read_at {
            let fresh = self.read_history(store, read_at).await?;
            for (row, finding) in rows.iter().zip(&mut findings) {
                if finding.is_some() {
                    *finding = audit::audit_row(row, &fresh.audit, now).finding;
                }
            }
        }
        Ok(rows
            .iter()
            .zip(findings)
            .map(|(row, finding)| finding.map(|finding| self.refuse(row.id, &finding)))
            .collect())
    }

    /// Refuses the row `id` for `finding`: counted and logged the first time (while kept).
    pub fn refuse(&self, id: i64, finding: &Finding) -> FindingKind {
        let kind = finding.kind();
        let kept = self.refused.get_or_insert_with(&id, || {
            self.probe.row_refused(kind);
            log::warn!(
                "API: refusing stored price {id}, which does not verify ({kind}): {finding}"
            );
            Ok::<_, Infallible>(kind)
        });
        kept.unwrap_or(kind)
    }

    /// The rules as last read, unless the node's member list changed since (or none was read).
    async fn current(&self, store: &Store) -> Result<Rules, StoreError> {
        let members = Arc::clone(&self.members.borrow());
        match self.held() {
            Some(rules) if Arc::ptr_eq(&rules.members, &members) => Ok(rules),
            _ => self.read_history(store, Instant::now()).await,
        }
    }

    /// Rules from a read of the member history started at or after `needed`: this caller's, or
    /// another's that waited less.
    async fn read_history(&self, store: &Store, needed: Instant) -> Result<Rules, StoreError> {
        let _one_at_a_time = self.reading.lock().await;
        let members = Arc::clone(&self.members.borrow());
        if let Some(rules) = self.held()
            && rules.read_at >= needed
            && Arc::ptr_eq(&rules.members, &members)
        {
            return Ok(rules);
        }
        let read_at = Instant::now();
        let history = store.signers().await?;
        let rules = Rules {
            audit: Arc::new(AuditRules {
                deployment: members.deployment().clone(),
                counted: Counted::Members(history),
                network: None,
            }),
            read_at,
            members,
        };
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Some(rules.clone());
        Ok(rules)
    }

    fn held(&self) -> Option<Rules> {
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Whether a newer read of the member history could change a finding of this kind: not an id
/// or a time, which no member list explains.
fn depends_on_members(kind: FindingKind) -> bool {
    !matches!(kind, FindingKind::ForeignId | FindingKind::FromFuture)
}
