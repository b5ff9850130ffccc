//! Stored notices, checked. Any member can sign a notice, so a notice alone drops nothing: a
//! node drops a round on one only where its own read of the database shows the row. This part
//! decides what to look up and when, and what an answer means; the node runs the lookups in its
//! background work, one at a time, and the SQL is [`crate::store::read`]'s. Nothing here reads
//! the database or the clock.
//!
//! - A named id the database holds is stored: every round under it is dropped (a round under it
//!   with another origin or pair is a conflict, which can never be stored either).
//! - A named id it does not hold is not dropped. A writer publishes its notice after its commit,
//!   so that is a false claim — unless the read raced the commit: the missing ids are looked up
//!   once more [`RECHECK_AFTER`] later, and a notice that still names a missing id is **false**.
//! - A lookup that fails judges nothing: it is tried again [`RECHECK_AFTER`] later; ids still
//!   unjudged [`GIVE_UP_AFTER`] after their notice arrived are forgotten (their rounds stay).
//! - A false notice costs its writer: its queued notices are dropped and its next ones are not
//!   acted on — no lookup, nothing dropped — for [`PENALTY`].
//! - Bounds: one lookup at a time (the node runs one), of one writer's ids, at most
//!   [`MAX_IDS_PER_LOOKUP`]; a writer's ids at most once per [`LOOKUP_GAP`], writers served in
//!   turn; at most [`MAX_QUEUED_IDS`] ids queued per writer. So a flood of notices costs a node
//!   a bounded number of statements, and one writer's flood does not delay another's notices.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use alloy_primitives::Address;

/// How long after a lookup that missed some named ids they are looked up again: a read racing
/// the writer's commit sees the rows then. Also the wait after a failed lookup.
pub const RECHECK_AFTER: Duration = Duration::from_secs(2);
/// Ids a database error kept from being judged for this long are forgotten, unjudged.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// How long a writer's notices are not acted on after one was found false.
pub const PENALTY: Duration = Duration::from_secs(600);
/// The least time between two lookups of one writer's ids.
pub const LOOKUP_GAP: Duration = Duration::from_millis(500);
/// Most ids in one lookup (one statement): two full notices.
pub const MAX_IDS_PER_LOOKUP: usize = 2 * crate::message::MAX_IDS_PER_NOTICE;
/// Most ids queued for lookup per writer: an honest writer's backlog after an outage of the
/// database (20 full notices at once); a notice beyond it is not acted on.
pub const MAX_QUEUED_IDS: usize = 20 * crate::message::MAX_IDS_PER_NOTICE;

/// What became of a notice as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Its ids wait for a lookup.
    Queued,
    /// It named nothing this node does not already know is stored.
    NothingNew,
    /// Its writer sent a false notice lately: not acted on until then.
    Penalised { until: Instant },
    /// Its writer has [`MAX_QUEUED_IDS`] ids queued already: not acted on.
    Full,
}

/// One lookup to run: the ids of some of one writer's notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub writer: Address,
    /// Distinct, ascending.
    pub ids: Vec<u64>,
    /// The notices it judges.
    notices: Vec<u64>,
}

/// What one lookup's answer decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// The named ids the database holds: their rounds are dropped.
    pub stored: Vec<u64>,
    /// Notices this answer found false (their writer is penalised when there are any).
    pub false_notices: usize,
    /// The ids those false notices named that the database does not hold.
    pub missing: Vec<u64>,
}

/// One notice waiting to be judged.
#[derive(Debug)]
struct Claim {
    notice: u64,
    /// The ids not found yet.
    ids: Vec<u64>,
    /// Whether a lookup already answered without some of them.
    missed: bool,
    /// When it may be looked up (again).
    due: Instant,
    received: Instant,
}

/// One writer's notices as this node judges them.
#[derive(Debug, Default)]
struct Writer {
    claims: VecDeque<Claim>,
    /// The ids of `claims`, summed.
    queued_ids: usize,
    last_lookup: Option<Instant>,
    penalised_until: Option<Instant>,
}

impl Writer {
    /// When its next lookup may start, if anything is queued.
    fn ready_at(&self) -> Option<Instant> {
        let due = self.claims.iter().map(|claim| claim.due).min()?;
        Some(match self.last_lookup {
            Some(last) => due.max(last + LOOKUP_GAP),
            None => due,
        })
    }

    fn remove_claims(&mut self, keep: impl Fn(&Claim) -> bool) {
        self.claims.retain(|claim| keep(claim));
        self.queued_ids = self.claims.iter().map(|claim| claim.ids.len()).sum();
    }
}

/// Every writer's notices waiting for a lookup, and who is penalised.
#[derive(Debug, Default)]
pub struct NoticeChecks {
    writers: BTreeMap<Address, Writer>,
    /// The writer the last lookup served: the next one serves the writers after it first.
    last_served: Option<Address>,
    next_notice: u64,
}

impl NoticeChecks {
    /// A notice of `writer` naming `ids` (those this node does not know are stored) arrived.
    pub fn heard(&mut self, writer: Address, mut ids: Vec<u64>, now: Instant) -> Heard {
        let state = self.writers.entry(writer).or_default();
        if let Some(until) = state.penalised_until {
            if now < until {
                return Heard::Penalised { until };
            }
            state.penalised_until = None;
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Heard::NothingNew;
        }
        if state.queued_ids + ids.len() > MAX_QUEUED_IDS {
            return Heard::Full;
        }
        state.queued_ids += ids.len();
        state.claims.push_back(Claim {
            notice: self.next_notice,
            ids,
            missed: false,
            due: now,
            received: now,
        });
        self.next_notice += 1;
        Heard::Queued
    }

    /// When a lookup may start next (`None`: nothing queued). The node asks only while none runs.
    pub fn next_due(&self) -> Option<Instant> {
        self.writers.values().filter_map(Writer::ready_at).min()
    }

    /// The lookup to run now, if one is due: the due notices of the next writer in turn whose
    /// last lookup is [`LOOKUP_GAP`] old. The caller runs one at a time and hands the answer to
    /// [`NoticeChecks::looked_up`].
    pub fn next_lookup(&mut self, now: Instant) -> Option<Lookup> {
        self.forget_old(now);
        // Writers after the last one served first, then the rest: each in turn.
        let order: Vec<Address> = match self.last_served {
            Some(last) => self
                .writers
                .range((Bound::Excluded(last), Bound::Unbounded))
                .chain(self.writers.range(..=last))
                .map(|(writer, _)| *writer)
                .collect(),
            None => self.writers.keys().copied().collect(),
        };
        for writer in order {
            let Some(state) = self.writers.get_mut(&writer) else {
                continue;
            };
            if state.ready_at().is_none_or(|ready| ready > now) {
                continue;
            }
            let mut ids = Vec::new();
            let mut notices = Vec::new();
            for claim in state.claims.iter().filter(|claim| claim.due <= now) {
                if !ids.is_empty() && ids.len() + claim.ids.len() > MAX_IDS_PER_LOOKUP {
                    break;
                }
                ids.extend_from_slice(&claim.ids);
                notices.push(claim.notice);
            }
            ids.sort_unstable();
            ids.dedup();
            state.last_lookup = Some(now);
            self.last_served = Some(writer);
            return Some(Lookup {
                writer,
                ids,
                notices,
            });
        }
        None
    }

    /// A lookup's answer: the named ids the database holds, or `None` when the lookup failed
    /// (then nothing is judged).
    pub fn looked_up(
        &mut self,
        lookup: &Lookup,
        found: Option<&HashSet<u64>>,
        now: Instant,
    ) -> Checked {
        let mut checked = Checked::default();
        let Some(found) = found else {
            if let Some(state) = self.writers.get_mut(&lookup.writer) {
                for claim in &mut state.claims {
                    if lookup.notices.contains(&claim.notice) {
                        claim.due = now + RECHECK_AFTER;
                    }
                }
            }
            return checked;
        };
        checked.stored = lookup
            .ids
            .iter()
            .copied()
            .filter(|id| found.contains(id))
            .collect();
        // A writer penalised meanwhile has nothing queued: what was found is still dropped.
        let Some(state) = self.writers.get_mut(&lookup.writer) else {
            return checked;
        };
        let mut false_claims = Vec::new();
        for claim in &mut state.claims {
            if !lookup.notices.contains(&claim.notice) {
                continue;
            }
            claim.ids.retain(|id| !found.contains(id));
            if claim.ids.is_empty() {
                continue;
            }
            if claim.missed {
                false_claims.push(claim.notice);
                checked.missing.extend_from_slice(&claim.ids);
            } else {
                claim.missed = true;
                claim.due = now + RECHECK_AFTER;
            }
        }
        checked.false_notices = false_claims.len();
        checked.missing.sort_unstable();
        checked.missing.dedup();
        if checked.false_notices > 0 {
            state.penalised_until = Some(now + PENALTY);
            state.remove_claims(|_| false);
        } else {
            state.remove_claims(|claim| !claim.ids.is_empty());
        }
        checked
    }

    /// Forgets notices a failing database kept unjudged for [`GIVE_UP_AFTER`], and writers with
    /// nothing queued and no penalty.
    fn forget_old(&mut self, now: Instant) {
        self.writers.retain(|_, state| {
            state.remove_claims(|claim| now.duration_since(claim.received) < GIVE_UP_AFTER);
            !state.claims.is_empty()
                || state.penalised_until.is_some_and(|until| now < until)
                || state
                    .last_lookup
                    .is_some_and(|last| now.duration_since(last) < LOOKUP_GAP)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liar() -> Address {
        Address::repeat_byte(0x11)
    }

    fn honest() -> Address {
        Address::repeat_byte(0x22)
    }

    /// A database holding `ids`, answering a lookup.
    fn answer(checks: &mut NoticeChecks, lookup: &Lookup, holds: &[u64], now: Instant) -> Checked {
        let holds: HashSet<u64> = holds.iter().copied().collect();
        let found: HashSet<u64> = lookup
            .ids
            .iter()
            .copied()
            .filter(|id| holds.contains(id))
            .collect();
        checks.looked_up(lookup, Some(&found), now)
    }

    #[test]
    fn only_ids_the_database_holds_are_dropped_and_a_notice_still_missing_one_later_is_false() {
        let mut checks = NoticeChecks::default();
        let t0 = Instant::now();
        assert_eq!(checks.heard(liar(), vec![3, 1, 2, 1], t0), Heard::Queued);
        assert_eq!(checks.next_due(), Some(t0));
        let first = checks.next_lookup(t0).expect("due at once");
        assert_eq!((first.writer, first.ids.clone()), (liar(), vec![1, 2, 3]));
        // A notice alone drops nothing; the answer drops exactly what the database holds.
        let checked = answer(&mut checks, &first, &[1, 3], t0);
        assert_eq!(checked.stored, vec![1, 3]);
        assert_eq!(
            checked.false_notices, 0,
            "one miss may be a read racing the commit"
        );
        // Looked up once more, a little later, and only the missing id.
        assert_eq!(checks.next_due(), Some(t0 + RECHECK_AFTER));
        assert_eq!(checks.next_lookup(t0 + RECHECK_AFTER / 2), None);
        let t1 = t0 + RECHECK_AFTER;
        let second = checks.next_lookup(t1).expect("the re-check");
        assert_eq!(second.ids, vec![2]);
        let checked = answer(&mut checks, &second, &[1, 3], t1);
        assert_eq!(
            checked,
            Checked {
                stored: vec![],
                false_notices: 1,
                missing: vec![2],
            }
        );
        // Its writer's next notices cost nothing: no lookup, nothing dropped.
        assert_eq!(
            checks.heard(liar(), vec![4], t1),
            Heard::Penalised {
                until: t1 + PENALTY
            }
        );
        assert_eq!(checks.next_due(), None);
        assert_eq!(checks.next_lookup(t1 + Duration::from_secs(60)), None);
        // Until the penalty ends.
        assert_eq!(checks.heard(liar(), vec![4], t1 + PENALTY), Heard::Queued);
    }

    #[test]
    fn a_read_racing_the_writers_commit_is_no_false_notice() {
        let mut checks = NoticeChecks::default();
        let t0 = Instant::now();
        checks.heard(honest(), vec![7, 8], t0);
        let lookup = checks.next_lookup(t0).unwrap();
        // The rows commit just after the first read.
        assert_eq!(answer(&mut checks, &lookup, &[7], t0).stored, vec![7]);
        let t1 = t0 + RECHECK_AFTER;
        let lookup = checks.next_lookup(t1).unwrap();
        let checked = answer(&mut checks, &lookup, &[7, 8], t1);
        assert_eq!((checked.stored, checked.false_notices), (vec![8], 0));
        assert_eq!(checks.next_due(), None, "nothing left to judge");
        assert_eq!(checks.heard(honest(), vec![9], t1), Heard::Queued);
    }

    #[test]
    fn a_failing_database_judges_nothing_and_the_ids_are_forgotten_unjudged() {
        let mut checks = NoticeChecks::default();
        let t0 = Instant::now();
        checks.heard(honest(), vec![5], t0);
        let mut now = t0;
        let mut lookups = 0;
        while let Some(lookup) = checks
            .next_due()
            .and_then(|due| checks.next_lookup(due.max(now)))
        {
            now = now.max(checks.writers[&honest()].last_lookup.unwrap());
            lookups += 1;
            assert_eq!(checks.looked_up(&lookup, None, now), Checked::default());
            assert!(lookups < 100, "retried for ever");
        }
        assert!(lookups >= 2, "retried: {lookups}");
        assert!(now < t0 + GIVE_UP_AFTER + RECHECK_AFTER);
        // Never counted against the writer.
        assert_eq!(checks.heard(honest(), vec![6], now), Heard::Queued);
    }

    #[test]
    fn a_flood_of_false_notices_costs_a_few_bounded_lookups_and_delays_no_other_writer() {
        let mut checks = NoticeChecks::default();
        let t0 = Instant::now();
        let mut refused = 0;
        // The liar names 100,000 ids at once, in full notices.
        for notice in 0..200u64 {
            let ids = (notice * 500..(notice + 1) * 500).collect();
            if checks.heard(liar(), ids, t0) == Heard::Full {
                refused += 1;
            }
        }
        assert_eq!(refused, 200 - MAX_QUEUED_IDS as u64 / 500);
        checks.heard(honest(), vec![1_000_000], t0);
        // A database holding only the honest writer's row; every 10 ms, whatever is due runs.
        let mut lookups: BTreeMap<Address, usize> = BTreeMap::new();
        let mut honest_done = None;
        let mut false_notices = 0;
        for tick in 0..3_000u32 {
            let now = t0 + Duration::from_millis(10) * tick;
            if checks.next_due().is_none_or(|due| due > now) {
                continue;
            }
            let Some(lookup) = checks.next_lookup(now) else {
                continue;
            };
            assert!(lookup.ids.len() <= MAX_IDS_PER_LOOKUP);
            *lookups.entry(lookup.writer).or_default() += 1;
            let checked = answer(&mut checks, &lookup, &[1_000_000], now);
            false_notices += checked.false_notices;
            if checked.stored == [1_000_000] {
                honest_done = Some(now - t0);
            }
            if lookup.writer == liar() {
                assert!(checked.stored.is_empty());
            }
        }
        // Served in turn: the lookup right after the liar's first.
        assert_eq!(honest_done, Some(Duration::from_millis(10)));
        // The liar's lookups stop at its first false notice: the ones before the first
        // re-check, and that one.
        let most = (RECHECK_AFTER.as_millis() / LOOKUP_GAP.as_millis()) as usize + 1;
        assert!(lookups[&liar()] <= most, "{lookups:?}");
        assert!(false_notices >= 1);
        assert_eq!(checks.next_due(), None);
    }

    #[test]
    fn repeated_notices_of_one_writer_are_looked_up_together_at_most_once_per_gap() {
        let mut checks = NoticeChecks::default();
        let t0 = Instant::now();
        checks.heard(honest(), vec![1], t0);
        let first = checks.next_lookup(t0).unwrap();
        answer(&mut checks, &first, &[1, 2, 3], t0);
        checks.heard(honest(), vec![2], t0);
        checks.heard(honest(), vec![3, 2], t0 + Duration::from_millis(1));
        assert_eq!(checks.next_due(), Some(t0 + LOOKUP_GAP));
        let second = checks.next_lookup(t0 + LOOKUP_GAP).unwrap();
        assert_eq!(second.ids, vec![2, 3]);
        let checked = answer(&mut checks, &second, &[1, 2, 3], t0 + LOOKUP_GAP);
        assert_eq!((checked.stored, checked.false_notices), (vec![2, 3], 0));
    }
}
