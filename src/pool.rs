//! The consensus pool: a pure state machine over rounds, their members' observations and the
//! commits to their report. No IO, no clock — every call gets `now` — so every transition is
//! unit-tested.
//!
//! ```text
//!            add (observations, a report,            f + 1 members' commits to one report
//!                 commits: not yet f + 1 on one)     of ≥ 2f + 1 members' observations
//!  (unknown) ──────────────────────────────▶ pending ──────────────────────────────▶ verified
//!                                          │    ▲ a new member set (another           │   ▲ late
//!                           older than     │    └ configuration)  ────────────────────┤   │ commits:
//!                           max_age        ▼              mark_stored                 ▼   │ kept, flush delayed
//!                                      (dropped)                     stored (tombstone until retention)
//! ```
//!
//! A round is (configuration, pair, id, origin); each member adds one observation to it — the
//! origin its own price, every other member the price it saw itself — each signed over its own
//! digest. Signatures reach the pool already verified (the network layer checks every message);
//! the pool merges observations per round, counts distinct *members*, and keeps time. A member
//! that signs two different observations for one round is equivocating: both carry its
//! signature, so it is provable; the pool keeps neither and refuses any more of its observations
//! for that round.
//!
//! Once the origin holds `2f + 1` member observations it reports that exact set
//! ([`Pool::to_commit`]); every member whose observation is in it commits to it, once per round,
//! and the round is verified when `f + 1` members have committed to one report. At least one of
//! them is honest and checked it, and what is stored, served and submitted on chain is that
//! report with its commits: nobody downstream can pick another subset of the round.
//!
//! Ids carry their origin's machine bits (validation refuses any other), so only the origin
//! starts a round under its ids; whatever anyone else publishes under them is one observation
//! of one member, which the median outvotes. Each round is charged to the signer whose message
//! created it, and a signer may have at most `max_pending_per_signer` pending rounds, so nobody
//! can fill the pool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};

use crate::committee::{self, CommitteeSettings};
use crate::membership::Members;
use crate::signed::{
    EthSignature, Observation, PriceData, Report, Round, SignatureEntry, SignedObservation,
    VerifiedPrice,
};
use crate::time::Moment;

/// How the pool decides.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// A verified round is due for storage this long after its last new observation.
    pub flush_delay: Duration,
    /// A price still pending this long after it was first seen can no longer gather signatures
    /// (peers ignore it as too old): it is dropped.
    pub max_age: Duration,
    /// How long verified-but-unstored prices and stored tombstones are kept. Past it a verified
    /// price is dropped with a warning: the database was away for longer than this.
    pub retention: Duration,
    /// Pending prices one signer's messages may have created; more are refused.
    pub max_pending_per_signer: usize,
}

/// The origin's reports of one round an honest node keeps: a second, different one proves
/// the origin equivocated; more are not worth memory.
const MAX_REPORTS_PER_ROUND: usize = 2;

#[derive(Debug, Clone)]
struct Entry {
    round: Round,
    observations: BTreeMap<Address, (Observation, EthSignature)>,
    /// When each observation came here: one from behind the committee counts only if it came
    /// in its turn.
    arrived: BTreeMap<Address, Instant>,
    /// Members caught signing two observations for this round: none of theirs counts.
    equivocators: BTreeSet<Address>,
    /// The origin's reports of this round (without commits), by digest, with when each came:
    /// one, unless the origin equivocated.
    reports: BTreeMap<B256, (Report, Instant)>,
    /// Each member's commitment in this round: the report digest it signed, and its signature.
    /// A member commits once; a second digest of the same member is refused.
    commits: BTreeMap<Address, (B256, EthSignature)>,
    /// The report `f + 1` members committed to, with their commits: the round's one report.
    committed: Option<Report>,
    /// Whose message created the entry: its pending entries are bounded.
    creator: Address,
    first_seen: Instant,
    last_signed: Moment,
    verified_at: Option<Instant>,
}

/// What adding observations did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A round the pool did not know; `new_signatures` of the observations were new.
    New {
        new_signatures: usize,
        verified: bool,
    },
    /// A known round gained observations.
    Merged {
        new_signatures: usize,
        /// It reached the quorum with this call.
        became_verified: bool,
    },
    /// Nothing new: every observation was already known.
    Unchanged,
    /// The id is already stored; ignored.
    AlreadyStored,
    /// A new round from a signer that already has `max_pending_per_signer` pending: refused.
    OverLimit,
    /// A signer's second, different observation for the round (or one more after that): it is
    /// refused, and the signer's first observation is dropped too.
    Equivocation { signer: Address },
}

/// Prices dropped by [`Pool::expire`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Pending rounds that never reached the quorum.
    pub unverified: Vec<u64>,
    /// Verified rounds that were never stored: data lost, worth a warning.
    pub verified: Vec<u64>,
}

/// How many rounds are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolCounts {
    pub pending: usize,
    pub verified: usize,
    pub stored: usize,
}

/// Rounds with their observations and state.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    committee: CommitteeSettings,
    members: Arc<Members>,
    entries: HashMap<Round, Entry>,
    /// Pending entries per creator, kept in step with `entries`.
    pending_by_creator: HashMap<Address, usize>,
    /// Stored ids and when they were stored, so late messages do not bring them back.
    stored: HashMap<u64, Instant>,
}

impl Pool {
    pub fn new(
        settings: PoolSettings,
        committee: CommitteeSettings,
        members: Arc<Members>,
    ) -> Self {
        Self {
            settings,
            committee,
            members,
            entries: HashMap::new(),
            pending_by_creator: HashMap::new(),
            stored: HashMap::new(),
        }
    }

    /// Merges already-verified `signatures`, each over `data` — each signer's observation
    /// `data.observation()` of the round `data.round()` (from a price message, an attestation
    /// or this node's own signature). The first signature's signer is charged for a new round.
    pub fn add(&mut self, data: &PriceData, signatures: &[SignatureEntry], now: Moment) -> Added {
        let Some(creator) = signatures.first().map(|entry| entry.signer) else {
            return Added::Unchanged;
        };
        self.change(data.round(), creator, now, |entry| {
            entry.merge(data.observation(), signatures, now)
        })
    }

    /// Merges the origin's report of its round (already verified: every observation's
    /// signature, and `signature`, the origin's over the report digest): its observations, the
    /// report, and the origin's commit to it. A second, different report of the origin is an
    /// equivocation.
    pub fn add_report(&mut self, report: &Report, signature: SignatureEntry, now: Moment) -> Added {
        let Some(digest) = report.digest() else {
            return Added::Unchanged;
        };
        let round = report.round;
        self.change(round, round.origin, now, |entry| {
            let mut merged = Merged::New(0);
            for observation in &report.observations {
                let signed = SignatureEntry {
                    signer: observation.signer,
                    signature: observation.signature,
                };
                match (
                    entry.merge(observation.observation, &[signed], now),
                    &merged,
                ) {
                    (Merged::New(new), Merged::New(before)) => merged = Merged::New(before + new),
                    (equivocation @ Merged::Equivocation(_), _) => merged = equivocation,
                    _ => {}
                }
            }
            if !entry.reports.contains_key(&digest) {
                if entry.reports.len() >= MAX_REPORTS_PER_ROUND {
                    return Merged::Equivocation(round.origin);
                }
                let mut report = report.clone();
                report.commits.clear();
                entry.reports.insert(digest, (report, now.at));
                if entry.reports.len() > 1 {
                    merged = Merged::Equivocation(round.origin);
                }
            }
            match (entry.commit(digest, signature, now), merged) {
                (_, Merged::Equivocation(signer)) => Merged::Equivocation(signer),
                (Merged::New(new), Merged::New(before)) => Merged::New(before + new),
                (other, _) => other,
            }
        })
    }

    /// Merges a member's commit (already verified: `signature` over `digest`) to the report of
    /// `round` whose digest is `digest`. A member's second commit to another digest is an
    /// equivocation, and refused.
    pub fn add_commit(
        &mut self,
        round: Round,
        digest: B256,
        signature: SignatureEntry,
        now: Moment,
    ) -> Added {
        self.change(round, signature.signer, now, |entry| {
            entry.commit(digest, signature, now)
        })
    }

    /// Applies `merge` to the round's entry (made, and charged to `creator`, if new), then
    /// whether it is committed now.
    fn change(
        &mut self,
        round: Round,
        creator: Address,
        now: Moment,
        merge: impl FnOnce(&mut Entry) -> Merged,
    ) -> Added {
        if self.stored.contains_key(&round.id) {
            return Added::AlreadyStored;
        }
        if let Some(entry) = self.entries.get_mut(&round) {
            let was_verified = entry.verified_at.is_some();
            let merged = merge(entry);
            let verified = entry.check_commit(&self.members, now.at);
            match (was_verified, verified) {
                (false, true) => release(&mut self.pending_by_creator, &entry.creator),
                (true, false) => *self.pending_by_creator.entry(entry.creator).or_default() += 1,
                _ => {}
            }
            return match merged {
                Merged::Equivocation(signer) => Added::Equivocation { signer },
                Merged::New(0) if verified == was_verified => Added::Unchanged,
                Merged::New(new_signatures) => Added::Merged {
                    new_signatures,
                    became_verified: verified && !was_verified,
                },
            };
        }
        let pending = self.pending_by_creator.get(&creator).copied().unwrap_or(0);
        if pending >= self.settings.max_pending_per_signer {
            return Added::OverLimit;
        }
        let mut entry = Entry {
            round,
            observations: BTreeMap::new(),
            arrived: BTreeMap::new(),
            equivocators: BTreeSet::new(),
            reports: BTreeMap::new(),
            commits: BTreeMap::new(),
            committed: None,
            creator,
            first_seen: now.at,
            last_signed: now,
            verified_at: None,
        };
        let merged = merge(&mut entry);
        let verified = entry.check_commit(&self.members, now.at);
        if !verified {
            *self.pending_by_creator.entry(creator).or_default() += 1;
        }
        self.entries.insert(round, entry);
        match merged {
            Merged::Equivocation(signer) => Added::Equivocation { signer },
            Merged::New(new_signatures) => Added::New {
                new_signatures,
                verified,
            },
        }
    }

    /// The report `me` should sign now for `round`, if any: as its origin, the round's member
    /// observations that count once they are `2f + 1` (its proposal); as another member, the
    /// origin's one report when it holds `me`'s own observation, is valid under the members and
    /// holds no observation from behind the committee that came before its turn. Once per
    /// round, and not once the round is committed.
    pub fn to_commit(&self, round: &Round, me: &Address) -> Option<Report> {
        let entry = self.entries.get(round)?;
        if entry.committed.is_some() || entry.commits.contains_key(me) {
            return None;
        }
        let members = &self.members;
        if *me == round.origin {
            return (entry.reports.is_empty() && entry.has_quorum(members, &self.committee))
                .then(|| entry.member_report(members, &self.committee));
        }
        let [(report, arrived)] = entry.reports.values().collect::<Vec<_>>()[..] else {
            return None;
        };
        let turns = Turns::of(entry, members, &self.committee);
        let slack = self.committee.report_slack();
        (report.signers().any(|signer| signer == *me)
            && entry.report_counts(report, members)
            && report
                .signers()
                .all(|signer| turns.in_turn(entry, &signer, *arrived, slack)))
        .then(|| report.clone())
    }

    /// Whether the round holds `2f + 1` member observations that count, the origin's among
    /// them: enough for its report, whether or not the commits have come.
    pub fn has_quorum(&self, round: &Round) -> bool {
        self.entries
            .get(round)
            .is_some_and(|entry| entry.has_quorum(&self.members, &self.committee))
    }

    /// Applies a new member set: rounds of another configuration than the new members' lose
    /// their report (the commits were made under the old one); pending ones that gained it
    /// are verified. Returns the latter.
    pub fn set_members(&mut self, members: Arc<Members>, now: Moment) -> Vec<Round> {
        self.members = members;
        let mut newly_verified = Vec::new();
        for entry in self.entries.values_mut() {
            let was_verified = entry.verified_at.is_some();
            let verified = entry.check_commit(&self.members, now.at);
            match (was_verified, verified) {
                (false, true) => {
                    release(&mut self.pending_by_creator, &entry.creator);
                    newly_verified.push(entry.round);
                }
                (true, false) => *self.pending_by_creator.entry(entry.creator).or_default() += 1,
                _ => {}
            }
        }
        newly_verified
    }

    /// Whether `signer` has an observation in this round here.
    pub fn has_observed(&self, round: &Round, signer: &Address) -> bool {
        self.entries
            .get(round)
            .is_some_and(|entry| entry.observations.contains_key(signer))
    }

    /// Whether this round has its quorum here.
    pub fn is_verified(&self, round: &Round) -> bool {
        self.entries
            .get(round)
            .is_some_and(|entry| entry.verified_at.is_some())
    }

    /// The rounds held here under any of `ids` (an id usually holds one round; two origins may
    /// mint the same id).
    pub fn rounds_with_ids(&self, ids: &HashSet<u64>) -> Vec<Round> {
        self.entries
            .keys()
            .filter(|round| ids.contains(&round.id))
            .copied()
            .collect()
    }

    /// Whether the round's origin signed two different observations for it: the round can never
    /// verify (its origin's observation is gone and refused), so nobody need sign it any more.
    pub fn origin_equivocated(&self, round: &Round) -> bool {
        self.entries
            .get(round)
            .is_some_and(|entry| entry.equivocators.contains(&round.origin))
    }

    /// Whether `id` is already stored (and forgotten).
    pub fn is_stored(&self, id: u64) -> bool {
        self.stored.contains_key(&id)
    }

    /// How many distinct signers' observations a known round has (members or not).
    pub fn signer_count(&self, round: &Round) -> usize {
        self.entries
            .get(round)
            .map_or(0, |entry| entry.observations.len())
    }

    /// The committed report of a verified round, with the commits known here.
    pub fn report(&self, round: &Round) -> Option<Report> {
        self.entries.get(round)?.committed.clone()
    }

    /// Verified rounds whose last observation is at least `flush_delay` old, oldest id first,
    /// each with its member observations only. Of two verified rounds under one id (two origins
    /// sharing machine bits) the better-observed one goes first; the other waits for its turn,
    /// when the database will refuse it as a conflict.
    pub fn due(&self, now: Moment) -> Vec<VerifiedPrice> {
        self.verified_where(|entry| age(entry.last_signed.at, now.at) >= self.settings.flush_delay)
    }

    /// Every verified round, due or not, as [`Pool::due`] orders them: what a stopping node
    /// stores so that nothing with a quorum is lost.
    pub fn verified(&self) -> Vec<VerifiedPrice> {
        self.verified_where(|_| true)
    }

    fn verified_where(&self, ready: impl Fn(&Entry) -> bool) -> Vec<VerifiedPrice> {
        let mut by_id: HashMap<u64, &Entry> = HashMap::new();
        for entry in self
            .entries
            .values()
            .filter(|entry| entry.verified_at.is_some() && ready(entry))
        {
            let better = |current: &&Entry| {
                (entry.committed_count(), entry.round) > (current.committed_count(), current.round)
            };
            match by_id.get(&entry.round.id) {
                Some(current) if !better(current) => {}
                _ => {
                    by_id.insert(entry.round.id, entry);
                }
            }
        }
        let mut due: Vec<VerifiedPrice> =
            by_id.into_values().filter_map(Entry::to_verified).collect();
        due.sort_unstable_by_key(VerifiedPrice::id);
        due
    }

    /// Marks ids as stored: every round under them leaves the pool, and later messages about
    /// them are ignored. Returns how many rounds were known here.
    pub fn mark_stored(&mut self, ids: &[u64], now: Moment) -> usize {
        let ids: HashSet<u64> = ids.iter().copied().collect();
        let mut known = 0;
        let pending_by_creator = &mut self.pending_by_creator;
        self.entries.retain(|round, entry| {
            if !ids.contains(&round.id) {
                return true;
            }
            known += 1;
            if entry.verified_at.is_none() {
                release(pending_by_creator, &entry.creator);
            }
            false
        });
        for id in ids {
            self.stored.entry(id).or_insert(now.at);
        }
        known
    }

    /// Drops what can no longer be used: pending rounds older than `max_age`, verified rounds
    /// and stored tombstones older than `retention`.
    pub fn expire(&mut self, now: Moment) -> Expired {
        let PoolSettings {
            max_age, retention, ..
        } = self.settings;
        let mut expired = Expired::default();
        let pending_by_creator = &mut self.pending_by_creator;
        self.entries.retain(|round, entry| {
            let old = age(entry.first_seen, now.at);
            match entry.verified_at {
                None if old > max_age => {
                    release(pending_by_creator, &entry.creator);
                    expired.unverified.push(round.id);
                }
                Some(_) if old > retention => expired.verified.push(round.id),
                _ => return true,
            }
            false
        });
        self.stored
            .retain(|_, stored_at| age(*stored_at, now.at) <= retention);
        expired.unverified.sort_unstable();
        expired.verified.sort_unstable();
        expired
    }

    pub fn counts(&self) -> PoolCounts {
        let verified = self
            .entries
            .values()
            .filter(|entry| entry.verified_at.is_some())
            .count();
        PoolCounts {
            pending: self.entries.len() - verified,
            verified,
            stored: self.stored.len(),
        }
    }

    /// Pending rounds charged to `signer`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn pending_of(&self, signer: &Address) -> usize {
        self.pending_by_creator.get(signer).copied().unwrap_or(0)
    }
}

fn release(pending_by_creator: &mut HashMap<Address, usize>, creator: &Address) {
    if let Some(count) = pending_by_creator.get_mut(creator) {
        *count -= 1;
        if *count == 0 {
            pending_by_creator.remove(creator);
        }
    }
}

/// What merging one message's observations did.
enum Merged {
    /// This many observations were new.
    New(usize),
    /// This signer equivocated (now or before).
    Equivocation(Address),
}

impl Entry {
    /// Adds each signer's `observation`, unless it already had one: the same one changes
    /// nothing, another one is an equivocation.
    fn merge(
        &mut self,
        observation: Observation,
        signatures: &[SignatureEntry],
        now: Moment,
    ) -> Merged {
        let mut new = 0;
        for entry in signatures {
            if self.equivocators.contains(&entry.signer) {
                return Merged::Equivocation(entry.signer);
            }
            match self.observations.get(&entry.signer) {
                Some((known, _)) if *known == observation => {}
                Some(_) => {
                    self.observations.remove(&entry.signer);
                    self.arrived.remove(&entry.signer);
                    self.equivocators.insert(entry.signer);
                    return Merged::Equivocation(entry.signer);
                }
                None => {
                    self.observations
                        .insert(entry.signer, (observation, entry.signature));
                    self.arrived.insert(entry.signer, now.at);
                    new += 1;
                }
            }
        }
        if new > 0 && now.at >= self.last_signed.at {
            self.last_signed = now;
        }
        Merged::New(new)
    }

    /// Records `signature`'s signer's commit to the report `digest` of this round, unless it
    /// committed already: to the same digest that changes nothing, to another it is an
    /// equivocation. A commit to the committed report joins its commits.
    fn commit(&mut self, digest: B256, signature: SignatureEntry, now: Moment) -> Merged {
        match self.commits.get(&signature.signer) {
            Some((known, _)) if *known == digest => return Merged::New(0),
            Some(_) => return Merged::Equivocation(signature.signer),
            None => {}
        }
        self.commits
            .insert(signature.signer, (digest, signature.signature));
        if let Some(committed) = &mut self.committed
            && committed.digest() == Some(digest)
        {
            committed.commits.push(signature);
        }
        if now.at >= self.last_signed.at {
            self.last_signed = now;
        }
        Merged::New(1)
    }

    /// Whether `signer` counts in this round: a member when the round was observed.
    fn counts(&self, members: &Members, signer: &Address) -> bool {
        members.counts_at(signer, self.observed_at())
    }

    /// Whether the members' configuration is the round's (an open relay has none to check).
    fn same_config(&self, members: &Members) -> bool {
        members
            .config_digest()
            .is_none_or(|config| config == self.round.config)
    }

    /// The member observations that count here: by members when the round was observed, each
    /// inside the committee or come in its turn.
    fn counting(
        &self,
        members: &Members,
        committee: &CommitteeSettings,
    ) -> impl Iterator<Item = (&Address, &(Observation, EthSignature))> {
        let turns = Turns::of(self, members, committee);
        self.observations.iter().filter(move |(signer, _)| {
            self.counts(members, signer)
                && self
                    .arrived
                    .get(*signer)
                    .is_some_and(|arrived| turns.in_turn(self, signer, *arrived, Duration::ZERO))
        })
    }

    /// Whether the round holds `2f + 1` member observations that count, the origin's among
    /// them, under the members' configuration: enough for the origin to report.
    fn has_quorum(&self, members: &Members, committee: &CommitteeSettings) -> bool {
        self.same_config(members)
            && self.observations.contains_key(&self.round.origin)
            && self.counts(members, &self.round.origin)
            && self.counting(members, committee).count() >= members.fault_bound().quorum()
    }

    /// The origin's report: of the member observations that count, its own and the first to
    /// come up to `2f + 1` — all a report needs, and a bound on its size
    /// ([`crate::domain::MAX_FAULTS`]).
    fn member_report(&self, members: &Members, committee: &CommitteeSettings) -> Report {
        let mut counting: Vec<_> = self.counting(members, committee).collect();
        counting
            .sort_by_key(|(signer, _)| (**signer != self.round.origin, self.arrived.get(*signer)));
        counting.truncate(members.fault_bound().quorum());
        Report {
            round: self.round,
            observations: counting
                .into_iter()
                .map(|(signer, (observation, signature))| SignedObservation {
                    signer: *signer,
                    observation: *observation,
                    signature: *signature,
                })
                .collect(),
            commits: Vec::new(),
        }
    }

    /// Whether `report` may be this round's: under the members' configuration, every
    /// observation a member's, `2f + 1` of them, the origin's among them.
    fn report_counts(&self, report: &Report, members: &Members) -> bool {
        self.same_config(members)
            && report.round == self.round
            && report.origin_observation().is_some()
            && report.signers().all(|signer| self.counts(members, &signer))
            && report.observations.len() >= members.fault_bound().quorum()
    }

    /// Whether the round is committed now — `f + 1` members' commits to one valid report of
    /// the origin — and marks it verified (or pending again, under another configuration)
    /// accordingly.
    fn check_commit(&mut self, members: &Members, now: Instant) -> bool {
        if !self.same_config(members) {
            self.committed = None;
        }
        if self.committed.is_none() {
            let need = members.fault_bound().commit_threshold();
            self.committed = self
                .reports
                .iter()
                .filter(|(_, (report, _))| self.report_counts(report, members))
                .find_map(|(digest, (report, _))| {
                    let commits: Vec<SignatureEntry> = self
                        .commits
                        .iter()
                        .filter(|(signer, (signed, _))| {
                            signed == digest && self.counts(members, signer)
                        })
                        .map(|(signer, (_, signature))| SignatureEntry {
                            signer: *signer,
                            signature: *signature,
                        })
                        .collect();
                    (commits.len() >= need).then(|| Report {
                        commits,
                        ..report.clone()
                    })
                });
        }
        let committed = self.committed.is_some();
        match (committed, self.verified_at) {
            (true, None) => self.verified_at = Some(now),
            (false, Some(_)) => self.verified_at = None,
            _ => {}
        }
        committed
    }

    /// Observations in the committed report (0 before it).
    fn committed_count(&self) -> usize {
        self.committed
            .as_ref()
            .map_or(0, |report| report.observations.len())
    }

    /// The round's time: its origin's observation, else (before that arrives) its id's.
    fn observed_at(&self) -> u64 {
        self.observations.get(&self.round.origin).map_or_else(
            || crate::id::decompose(self.round.id).unix_ms / 1000,
            |(observation, _)| observation.observed_at,
        )
    }

    fn to_verified(&self) -> Option<VerifiedPrice> {
        Some(VerifiedPrice {
            report: self.committed.clone()?,
            last_signed: self.last_signed.wall,
        })
    }
}

/// Who is where in a round's committee order, to tell whether an observation came in its
/// member's turn. Without a member list (an open relay) there is no committee: every
/// observation is in turn.
struct Turns<'a> {
    ranks: Option<HashMap<Address, usize>>,
    committee: &'a CommitteeSettings,
    f: crate::domain::FaultBound,
}

impl<'a> Turns<'a> {
    fn of(entry: &Entry, members: &Members, committee: &'a CommitteeSettings) -> Self {
        let ranks = members.counting_at(entry.observed_at()).map(|list| {
            committee::ranking(entry.round.id, &entry.round.origin, &list)
                .into_iter()
                .enumerate()
                .map(|(rank, member)| (member, rank))
                .collect()
        });
        Self {
            ranks,
            committee,
            f: members.fault_bound(),
        }
    }

    /// Whether `signer`'s observation, come at `at` (or `early` sooner), came in its turn.
    fn in_turn(&self, entry: &Entry, signer: &Address, at: Instant, early: Duration) -> bool {
        if *signer == entry.round.origin {
            return true;
        }
        let Some(ranks) = &self.ranks else {
            return true;
        };
        ranks.get(signer).is_some_and(|rank| {
            self.committee
                .in_turn(*rank, self.f, age(entry.first_seen, at), early)
        })
    }
}

/// `now − then` on the monotonic clock, zero if `then` is later.
fn age(then: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(then)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::price::UsdPrice;
    use std::time::UNIX_EPOCH;

    const FLUSH_DELAY: Duration = Duration::from_secs(30);
    const MAX_AGE: Duration = Duration::from_secs(900);
    const RETENTION: Duration = Duration::from_secs(3600);

    /// No fallback wait: every member's observation is in turn (turns have a test of their own).
    const EVERYONE_AT_ONCE: CommitteeSettings = CommitteeSettings {
        fallback: Duration::ZERO,
    };

    const SETTINGS: PoolSettings = PoolSettings {
        flush_delay: FLUSH_DELAY,
        max_age: MAX_AGE,
        retention: RETENTION,
        max_pending_per_signer: 4,
    };

    /// A pool whose members are [`nodes`]: five, so f = 1 and a round needs three.
    fn pool() -> Pool {
        Pool::new(SETTINGS, EVERYONE_AT_ONCE, members_of(&nodes()))
    }

    /// Only `members` count.
    fn members_of(members: &[Identity]) -> Arc<Members> {
        let since_always = members.iter().map(|member| (member.address(), 0)).collect();
        Arc::new(Members::for_node(None).with_database(since_always))
    }

    fn nodes() -> Vec<Identity> {
        (1..=5u8)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    /// `seconds` after a fixed start, on both clocks.
    fn t(seconds: u64) -> Moment {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        Moment {
            at: *START.get_or_init(Instant::now) + Duration::from_secs(seconds),
            wall: UNIX_EPOCH + Duration::from_secs(1_763_700_000 + seconds),
        }
    }

    /// Round `id` of `origin` under the configuration of [`pool`]'s members.
    fn data(id: u64, origin: &Identity) -> PriceData {
        data_in(members_of(&nodes()).signing_config(), id, origin)
    }

    fn data_in(config: alloy_primitives::B256, id: u64, origin: &Identity) -> PriceData {
        PriceData {
            config,
            pair: crate::pair::Pair::EthUsd,
            id,
            price: UsdPrice::from_e8(300_000_000_000).unwrap(),
            observed_at: 1_763_700_000,
            origin: origin.address(),
        }
    }

    fn sig(data: &PriceData, signer: &Identity) -> SignatureEntry {
        SignatureEntry::sign(signer.signer(), data.digest())
    }

    /// `origin` reports its round as [`Pool::to_commit`] gives it (it must be due), and the
    /// first `others` other members of the report commit to it: what the last of these did.
    fn commit(
        pool: &mut Pool,
        round: &Round,
        origin: &Identity,
        others: usize,
        now: Moment,
    ) -> Added {
        let report = pool
            .to_commit(round, &origin.address())
            .expect("the origin's report is due");
        let digest = report.digest().unwrap();
        let mut added =
            pool.add_report(&report, SignatureEntry::sign(origin.signer(), digest), now);
        let members = nodes();
        let committers = report
            .signers()
            .filter(|signer| *signer != origin.address())
            .take(others)
            .map(|signer| members.iter().find(|m| m.address() == signer).unwrap());
        for member in committers {
            let theirs = pool
                .to_commit(round, &member.address())
                .expect("a commit is due");
            assert_eq!(theirs.digest(), Some(digest));
            added = pool.add_commit(
                *round,
                digest,
                SignatureEntry::sign(member.signer(), digest),
                now,
            );
        }
        added
    }

    /// Round `d` observed by `observers` (its origin first) at `now` and committed by the
    /// origin and one other: verified, with f = 1.
    fn verified(pool: &mut Pool, d: &PriceData, observers: &[Identity], now: Moment) {
        let all: Vec<_> = observers.iter().map(|node| sig(d, node)).collect();
        pool.add(d, &all, now);
        let added = commit(pool, &d.round(), &observers[0], 1, now);
        assert!(
            matches!(
                added,
                Added::Merged {
                    became_verified: true,
                    ..
                }
            ),
            "{added:?}"
        );
    }

    #[test]
    fn a_round_is_verified_when_f_plus_one_members_commit_to_its_origins_report_of_a_quorum() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let round = d.round();
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0])], t(0)),
            Added::New {
                new_signatures: 1,
                verified: false
            }
        );
        pool.add(&d, &[sig(&d, &n[1])], t(1));
        assert_eq!(
            pool.to_commit(&round, &n[0].address()),
            None,
            "below 2f + 1"
        );
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[2])], t(2)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert!(pool.has_quorum(&round));
        // Nobody but the origin reports, and nobody commits before it does.
        assert_eq!(pool.to_commit(&round, &n[1].address()), None);
        let report = pool.to_commit(&round, &n[0].address()).unwrap();
        assert_eq!(report.observations.len(), 3);
        let digest = report.digest().unwrap();
        assert_eq!(
            pool.add_report(&report, SignatureEntry::sign(n[0].signer(), digest), t(3)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            },
            "the origin's commit alone is f"
        );
        assert_eq!(
            pool.to_commit(&round, &n[0].address()),
            None,
            "it reports once"
        );
        // Only members whose observation the report holds commit to it.
        assert_eq!(pool.to_commit(&round, &n[3].address()), None);
        assert_eq!(
            pool.to_commit(&round, &n[1].address()),
            Some(report.clone())
        );
        assert_eq!(
            pool.add_commit(
                round,
                digest,
                SignatureEntry::sign(n[1].signer(), digest),
                t(4)
            ),
            Added::Merged {
                new_signatures: 1,
                became_verified: true
            }
        );
        assert_eq!(
            pool.counts(),
            PoolCounts {
                pending: 0,
                verified: 1,
                stored: 0
            }
        );
        let committed = pool.report(&round).unwrap();
        assert_eq!(committed.observations, report.observations);
        let committers: Vec<Address> = committed.commits.iter().map(|c| c.signer).collect();
        assert_eq!(committers.len(), 2);
        assert!(committers.contains(&n[0].address()) && committers.contains(&n[1].address()));
        assert!(committed.commits.iter().all(|c| c.verify(digest).is_ok()));
        // A later commit joins the report's commits; nothing else changes.
        pool.add_commit(
            round,
            digest,
            SignatureEntry::sign(n[2].signer(), digest),
            t(5),
        );
        assert_eq!(pool.report(&round).unwrap().commits.len(), 3);
        assert_eq!(
            pool.to_commit(&round, &n[2].address()),
            None,
            "committed already"
        );
    }

    #[test]
    fn a_full_message_brings_the_quorum_and_the_commits_the_verification() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&d, node)).collect();
        assert_eq!(
            pool.add(&d, &all, t(0)),
            Added::New {
                new_signatures: 3,
                verified: false
            }
        );
        assert!(pool.has_quorum(&d.round()));
        assert!(pool.due(t(100)).is_empty());
    }

    /// Only the origin's report can be committed to: f colluders signing another subset (or
    /// anything) are f commits, one short.
    #[test]
    fn commits_to_a_report_other_than_the_origins_never_verify() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..4].iter().map(|node| sig(&d, node)).collect();
        pool.add(&d, &all, t(0));
        let report = pool.to_commit(&d.round(), &n[0].address()).unwrap();
        let mut subset = report.clone();
        subset
            .observations
            .retain(|entry| entry.signer != n[1].address());
        let picked = subset.digest().unwrap();
        // Two members (more than f = 1) sign the subset, but it is not the origin's report.
        for member in &n[2..4] {
            pool.add_commit(
                d.round(),
                picked,
                SignatureEntry::sign(member.signer(), picked),
                t(1),
            );
        }
        assert_eq!(pool.counts().verified, 0);
        // Having committed, they cannot commit to the origin's report as well.
        let digest = report.digest().unwrap();
        pool.add_report(&report, SignatureEntry::sign(n[0].signer(), digest), t(2));
        assert_eq!(
            pool.add_commit(
                d.round(),
                digest,
                SignatureEntry::sign(n[2].signer(), digest),
                t(3)
            ),
            Added::Equivocation {
                signer: n[2].address()
            }
        );
        assert_eq!(pool.counts().verified, 0);
        // An honest member whose observation it holds commits, and that makes f + 1.
        assert!(matches!(
            commit_of(&mut pool, &d, &n[1], digest),
            Added::Merged {
                became_verified: true,
                ..
            }
        ));
        assert_eq!(pool.report(&d.round()).unwrap().observations.len(), 3);
    }

    fn commit_of(
        pool: &mut Pool,
        d: &PriceData,
        member: &Identity,
        digest: alloy_primitives::B256,
    ) -> Added {
        pool.add_commit(
            d.round(),
            digest,
            SignatureEntry::sign(member.signer(), digest),
            t(4),
        )
    }

    /// A report below 2f + 1 member observations, or without its origin's, verifies with no
    /// number of commits.
    #[test]
    fn a_report_below_the_quorum_never_verifies_however_many_commit() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..2].iter().map(|node| sig(&d, node)).collect();
        pool.add(&d, &all, t(0));
        let short = Report {
            round: d.round(),
            observations: all
                .iter()
                .map(|entry| SignedObservation {
                    signer: entry.signer,
                    observation: d.observation(),
                    signature: entry.signature,
                })
                .collect(),
            commits: Vec::new(),
        };
        let digest = short.digest().unwrap();
        pool.add_report(&short, SignatureEntry::sign(n[0].signer(), digest), t(1));
        assert_eq!(pool.to_commit(&d.round(), &n[1].address()), None);
        for member in &n[1..] {
            commit_of(&mut pool, &d, member, digest);
        }
        assert_eq!(pool.counts().verified, 0);
    }

    /// An origin that reports two different sets has equivocated: nobody commits to either
    /// any more (a member that committed to the first keeps that one commit).
    #[test]
    fn an_origin_reporting_two_sets_gets_no_more_commits() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..4].iter().map(|node| sig(&d, node)).collect();
        pool.add(&d, &all, t(0));
        let report = pool.to_commit(&d.round(), &n[0].address()).unwrap();
        // Another set of 2f + 1: the last observation swapped for one the report left out.
        let mut other = report.clone();
        let left_out = n[1..4]
            .iter()
            .find(|node| !report.signers().any(|signer| signer == node.address()))
            .unwrap();
        other.observations.pop();
        other.observations.push(SignedObservation {
            signer: left_out.address(),
            observation: d.observation(),
            signature: sig(&d, left_out).signature,
        });
        for (set, at) in [(&report, 1), (&other, 2)] {
            let digest = set.digest().unwrap();
            let added = pool.add_report(set, SignatureEntry::sign(n[0].signer(), digest), t(at));
            assert_eq!(
                added
                    == (Added::Equivocation {
                        signer: n[0].address()
                    }),
                at == 2
            );
        }
        for member in &n[1..4] {
            assert_eq!(pool.to_commit(&d.round(), &member.address()), None);
        }
        assert_eq!(pool.counts().verified, 0);
    }

    #[test]
    fn repeated_signatures_count_once() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        pool.add(&d, &[sig(&d, &n[0])], t(0));
        assert_eq!(pool.add(&d, &[sig(&d, &n[0])], t(5)), Added::Unchanged);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0]), sig(&d, &n[1])], t(6)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert_eq!(pool.signer_count(&d.round()), 2);
    }

    #[test]
    fn without_the_origin_there_is_no_quorum() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        // Attestations arrive before the origin's price message (out of order).
        for node in &n[1..4] {
            pool.add(&d, &[sig(&d, node)], t(0));
        }
        assert_eq!(pool.counts().verified, 0);
        assert_eq!(pool.signer_count(&d.round()), 3);
        assert!(!pool.has_quorum(&d.round()));
        assert_eq!(pool.to_commit(&d.round(), &n[0].address()), None);
        pool.add(&d, &[sig(&d, &n[0])], t(1));
        assert!(pool.has_quorum(&d.round()));
        assert!(pool.to_commit(&d.round(), &n[0].address()).is_some());
    }

    #[test]
    fn late_signatures_after_verification_are_kept_and_delay_the_flush() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        for (i, node) in n[..3].iter().enumerate() {
            pool.add(&d, &[sig(&d, node)], t(i as u64));
        }
        commit(&mut pool, &d.round(), &n[0], 1, t(2));
        assert!(
            pool.due(t(2) + FLUSH_DELAY - Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(pool.due(t(2) + FLUSH_DELAY).len(), 1);
        // A fourth observation arrives late: kept out of the committed report, but the 30 s
        // restart from it.
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[3])], t(20)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert!(
            pool.due(t(20) + FLUSH_DELAY - Duration::from_secs(1))
                .is_empty()
        );
        let due = pool.due(t(20) + FLUSH_DELAY);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].report.observations.len(), 3);
        assert_eq!(due[0].last_signed, t(20).wall);
        assert_eq!(due[0].round().origin, n[0].address());
    }

    #[test]
    fn pending_prices_are_never_due() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        pool.add(&d, &[sig(&d, &n[0]), sig(&d, &n[1])], t(0));
        assert!(pool.due(t(10_000)).is_empty());
    }

    #[test]
    fn due_lists_only_ripe_prices_in_id_order() {
        let n = nodes();
        let mut pool = pool();
        for (id, at) in [(3, 0), (1, 0), (2, 100)] {
            verified(&mut pool, &data(id, &n[0]), &n[..3], t(at));
        }
        let ids: Vec<u64> = pool.due(t(31)).iter().map(VerifiedPrice::id).collect();
        assert_eq!(ids, vec![1, 3]);
        let ids: Vec<u64> = pool.due(t(130)).iter().map(VerifiedPrice::id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn a_wall_clock_step_neither_expires_nor_ripens_prices() {
        let n = nodes();
        let mut pool = pool();
        verified(&mut pool, &data(1, &n[0]), &n[..3], t(0));
        // Ten seconds later by the monotonic clock, two days later by the wall clock.
        let stepped = Moment {
            at: t(10).at,
            wall: t(10).wall + Duration::from_secs(2 * 86_400),
        };
        assert!(pool.due(stepped).is_empty(), "not due after 10 s");
        let expired = pool.expire(stepped);
        assert!(expired.verified.is_empty(), "{expired:?}");
        assert_eq!(pool.counts().verified, 1);
        // The stored row still carries the wall-clock time of the last signature.
        assert_eq!(pool.verified()[0].last_signed, t(0).wall);
    }

    #[test]
    fn a_stopping_node_gets_every_verified_price_due_or_not() {
        let n = nodes();
        let mut pool = pool();
        for id in [2, 1] {
            verified(&mut pool, &data(id, &n[0]), &n[..3], t(0));
        }
        let pending = data(3, &n[0]);
        pool.add(&pending, &[sig(&pending, &n[0])], t(0));
        assert!(pool.due(t(1)).is_empty());
        let ids: Vec<u64> = pool.verified().iter().map(VerifiedPrice::id).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn stored_prices_are_forgotten_and_late_messages_ignored() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        verified(&mut pool, &d, &n[..3], t(0));
        assert_eq!(pool.mark_stored(&[1, 99], t(40)), 1);
        assert_eq!(
            pool.counts(),
            PoolCounts {
                pending: 0,
                verified: 0,
                stored: 2
            }
        );
        assert!(pool.due(t(100)).is_empty());
        assert!(pool.is_stored(1));
        assert_eq!(pool.add(&d, &[sig(&d, &n[4])], t(41)), Added::AlreadyStored);
        // A notice can come before the price itself: the price is then never collected.
        let d99 = data(99, &n[1]);
        assert_eq!(
            pool.add(&d99, &[sig(&d99, &n[1])], t(42)),
            Added::AlreadyStored
        );
    }

    /// `signer`'s observation of `e8` at `observed_at` under `round`'s data.
    fn observe(
        round: &PriceData,
        signer: &Identity,
        e8: i64,
        observed_at: u64,
    ) -> (PriceData, SignatureEntry) {
        let data = PriceData {
            price: UsdPrice::from_e8(e8).unwrap(),
            observed_at,
            ..*round
        };
        let signature = sig(&data, signer);
        (data, signature)
    }

    #[test]
    fn another_price_under_a_known_id_is_one_observation_and_cannot_block_it() {
        // A member signs junk under an honest round's id before the origin's price arrives.
        let n = nodes();
        let mut pool = pool();
        let honest = data(1, &n[0]);
        let (junk, junk_signature) = observe(&honest, &n[4], 1, honest.observed_at);
        assert!(matches!(
            pool.add(&junk, &[junk_signature], t(0)),
            Added::New {
                verified: false,
                ..
            }
        ));
        // The same id under another origin is another round.
        let mut other_origin = honest;
        other_origin.origin = n[4].address();
        pool.add(&other_origin, &[sig(&other_origin, &n[4])], t(0));
        let all: Vec<_> = n[..3].iter().map(|node| sig(&honest, node)).collect();
        assert_eq!(
            pool.add(&honest, &all, t(1)),
            Added::Merged {
                new_signatures: 3,
                became_verified: false
            }
        );
        assert_eq!(pool.signer_count(&honest.round()), 4);
        commit(&mut pool, &honest.round(), &n[0], 1, t(1));
        let due = pool.due(t(100));
        assert_eq!(due.len(), 1);
        // The origin's report: its own and the first two to come, the junk among them.
        assert_eq!(due[0].report.observations.len(), 3);
        assert_eq!(
            due[0].report.value(),
            Some(honest.price),
            "the junk is outvoted"
        );
        // Once stored, everything under the id goes.
        assert_eq!(pool.mark_stored(&[1], t(101)), 2);
        assert_eq!(pool.counts().pending, 0);
        assert_eq!(pool.pending_of(&n[4].address()), 0);
    }

    #[test]
    fn each_member_adds_its_own_observation_and_the_value_is_their_median() {
        let n = nodes();
        let mut pool = pool();
        let round = data(1, &n[0]);
        pool.add(&round, &[sig(&round, &n[0])], t(0));
        for (node, e8, at) in [
            (1, 300_100_000_000, 2),
            (2, 299_900_000_000, 4),
            (3, 450_000_000_000, 1),
        ] {
            let (own, signature) = observe(&round, &n[node], e8, round.observed_at + at);
            pool.add(&own, &[signature], t(at));
        }
        commit(&mut pool, &round.round(), &n[0], 1, t(5));
        let due = pool.due(t(100));
        let report = &due[0].report;
        // The origin's and the first two to come (2f + 1): 3000, 4500 (at 1 s), 3001 (at 2 s).
        assert_eq!(report.observations.len(), 3);
        // Sorted 3000, 3001, 4500: the element at index 1.
        assert_eq!(report.value().unwrap().e8(), 300_100_000_000);
        assert_eq!(
            report.observed_range(),
            Some((round.observed_at, round.observed_at + 2))
        );
        assert_eq!(report.verify(), Ok(()));
        assert!(pool.report(&round.round()).is_some());
    }

    #[test]
    fn a_member_signing_two_observations_for_one_round_keeps_neither() {
        let n = nodes();
        let mut pool = pool();
        let round = data(1, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&round, node)).collect();
        pool.add(&round, &all, t(0));
        assert!(pool.has_quorum(&round.round()));
        // Node 2 signs a second, different observation: both go, and the quorum with them.
        let (second, signature) = observe(&round, &n[2], 310_000_000_000, round.observed_at);
        assert_eq!(
            pool.add(&second, &[signature], t(1)),
            Added::Equivocation {
                signer: n[2].address()
            }
        );
        assert!(!pool.has_observed(&round.round(), &n[2].address()));
        assert!(!pool.origin_equivocated(&round.round()));
        assert!(!pool.has_quorum(&round.round()));
        assert_eq!(pool.to_commit(&round.round(), &n[0].address()), None);
        // Its first observation again, or a third one: refused too.
        assert!(matches!(
            pool.add(&round, &[sig(&round, &n[2])], t(2)),
            Added::Equivocation { .. }
        ));
        // The same observation twice is no equivocation.
        assert_eq!(
            pool.add(&round, &[sig(&round, &n[1])], t(3)),
            Added::Unchanged
        );
        // The others still make the quorum, and the report is theirs.
        pool.add(&round, &[sig(&round, &n[3])], t(4));
        commit(&mut pool, &round.round(), &n[0], 1, t(4));
        let due = pool.due(t(100));
        let signers: Vec<Address> = due[0].report.signers().collect();
        assert!(!signers.contains(&n[2].address()));
        assert_eq!(signers.len(), 3);
    }

    /// A committed report is final: a member of it equivocating afterwards (its observation
    /// is one signed observation of at most f faulty ones) cannot un-commit it.
    #[test]
    fn an_equivocation_after_the_commit_leaves_the_report() {
        let n = nodes();
        let mut pool = pool();
        let round = data(1, &n[0]);
        verified(&mut pool, &round, &n[..3], t(0));
        let (second, signature) = observe(&round, &n[2], 310_000_000_000, round.observed_at);
        assert!(matches!(
            pool.add(&second, &[signature], t(1)),
            Added::Equivocation { .. }
        ));
        assert_eq!(pool.counts().verified, 1);
        assert_eq!(pool.due(t(100))[0].report.observations.len(), 3);
    }

    #[test]
    fn an_origin_that_equivocates_leaves_its_round_without_a_quorum() {
        let n = nodes();
        let mut pool = pool();
        let round = data(1, &n[0]);
        let (other, signature) = observe(&round, &n[0], 1, round.observed_at);
        pool.add(&round, &[sig(&round, &n[0])], t(0));
        pool.add(&other, &[signature], t(0));
        assert!(pool.origin_equivocated(&round.round()));
        for node in &n[1..] {
            pool.add(&round, &[sig(&round, node)], t(1));
        }
        assert_eq!(pool.counts().verified, 0);
        assert!(pool.due(t(1000)).is_empty());
    }

    #[test]
    fn of_two_verified_prices_under_one_id_one_is_due_at_a_time() {
        let n = nodes();
        let mut pool = pool();
        let first = data(1, &n[0]);
        let mut second = data(1, &n[1]);
        second.price = UsdPrice::from_e8(2).unwrap();
        verified(&mut pool, &first, &n[..3], t(0));
        verified(&mut pool, &second, &n[1..5], t(0));
        let due = pool.due(t(100));
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].round().origin,
            n[1].address(),
            "the better-observed one first"
        );
    }

    #[test]
    fn only_member_signatures_count_and_only_they_are_stored() {
        let n = nodes();
        let members = members_of(&n[..4]);
        let mut pool = Pool::new(SETTINGS, EVERYONE_AT_ONCE, Arc::clone(&members));
        let d = data_in(members.signing_config(), 1, &n[0]);
        // Origin plus an outsider: two valid signatures, one member.
        pool.add(&d, &[sig(&d, &n[0]), sig(&d, &n[4])], t(0));
        assert_eq!(pool.counts().verified, 0);
        assert!(pool.due(t(1000)).is_empty());
        pool.add(&d, &[sig(&d, &n[1])], t(1));
        assert_eq!(pool.counts().verified, 0);
        pool.add(&d, &[sig(&d, &n[2])], t(2));
        assert!(matches!(
            commit(&mut pool, &d.round(), &n[0], 1, t(2)),
            Added::Merged {
                became_verified: true,
                ..
            }
        ));
        let due = pool.due(t(100));
        let signers: Vec<Address> = due[0].report.signers().collect();
        assert_eq!(signers.len(), 3);
        assert!(
            signers
                .iter()
                .all(|signer| n[..4].iter().any(|m| m.address() == *signer))
        );
        // An outsider's own price never verifies, whoever signs it.
        let outsider = data_in(members.signing_config(), 2, &n[4]);
        let all: Vec<_> = n.iter().map(|node| sig(&outsider, node)).collect();
        pool.add(&outsider, &all, t(3));
        assert_eq!(pool.to_commit(&outsider.round(), &n[4].address()), None);
        assert!(!pool.has_quorum(&outsider.round()));
    }

    /// A change of the member set is a change of configuration: its rounds in flight, signed
    /// under the old one, no longer count (their signatures would not verify on chain either).
    #[test]
    fn a_new_member_set_ends_the_rounds_of_the_old_configuration() {
        let n = nodes();
        let four = members_of(&n[..4]);
        let mut pool = Pool::new(SETTINGS, EVERYONE_AT_ONCE, Arc::clone(&four));
        let d = data_in(four.signing_config(), 1, &n[0]);
        verified(&mut pool, &d, &n[..3], t(0));
        assert_eq!(pool.counts().verified, 1);
        assert!(pool.set_members(members_of(&n), t(1)).is_empty());
        assert_eq!(pool.counts().verified, 0);
        assert!(pool.due(t(1000)).is_empty());
        // Back to the same set: the same configuration, and the round counts again.
        assert_eq!(pool.set_members(four, t(2)), vec![d.round()]);
        assert_eq!(pool.counts().verified, 1);
    }

    #[test]
    fn a_signer_cannot_fill_the_pool() {
        let n = nodes();
        let mut pool = pool();
        for id in 0..4 {
            let d = data(id, &n[0]);
            assert!(matches!(
                pool.add(&d, &[sig(&d, &n[4])], t(0)),
                Added::New { .. }
            ));
        }
        let d = data(4, &n[0]);
        assert_eq!(pool.add(&d, &[sig(&d, &n[4])], t(0)), Added::OverLimit);
        assert_eq!(pool.counts().pending, 4);
        // Others are unaffected, including the origin the flood pretended to be about.
        assert!(matches!(
            pool.add(&d, &[sig(&d, &n[0])], t(0)),
            Added::New { .. }
        ));
        // Expiry frees the quota.
        pool.expire(t(901));
        assert_eq!(pool.pending_of(&n[4].address()), 0);
        let d = data(5, &n[0]);
        assert!(matches!(
            pool.add(&d, &[sig(&d, &n[4])], t(902)),
            Added::New { .. }
        ));
    }

    #[test]
    fn expiry_drops_stale_pending_then_unstored_verified_then_tombstones() {
        let n = nodes();
        let mut pool = pool();
        let pending = data(1, &n[0]);
        pool.add(&pending, &[sig(&pending, &n[0])], t(0));
        verified(&mut pool, &data(2, &n[0]), &n[..3], t(0));
        pool.mark_stored(&[3], t(0));

        assert_eq!(pool.expire(t(900)), Expired::default());
        assert_eq!(
            pool.expire(t(901)),
            Expired {
                unverified: vec![1],
                verified: vec![]
            }
        );
        assert_eq!(pool.counts().stored, 1);
        assert_eq!(
            pool.expire(t(3601)),
            Expired {
                unverified: vec![],
                verified: vec![2]
            }
        );
        assert_eq!(pool.counts(), PoolCounts::default());
        // Once the tombstone is gone the id is new again (peers reject it as too old by then).
        let stored = data(3, &n[0]);
        assert!(matches!(
            pool.add(&stored, &[sig(&stored, &n[0])], t(3602)),
            Added::New { .. }
        ));
    }

    #[test]
    fn a_clock_going_backwards_does_not_panic_or_expire() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        verified(&mut pool, &d, &n[..3], t(100));
        assert!(pool.due(t(0)).is_empty());
        assert_eq!(pool.expire(t(0)), Expired::default());
        pool.add(&d, &[sig(&d, &n[3])], t(50));
        assert_eq!(pool.due(t(130)).len(), 1, "last_signed never moves back");
    }

    #[test]
    fn with_three_members_f_is_zero_and_the_origin_alone_verifies() {
        let n = nodes();
        let three = members_of(&n[..3]);
        let mut pool = Pool::new(
            PoolSettings {
                flush_delay: Duration::ZERO,
                ..SETTINGS
            },
            EVERYONE_AT_ONCE,
            Arc::clone(&three),
        );
        let d = data_in(three.signing_config(), 1, &n[0]);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[1])], t(0)),
            Added::New {
                new_signatures: 1,
                verified: false
            }
        );
        pool.add(&d, &[sig(&d, &n[0])], t(0));
        // The origin's own commit is the f + 1 = 1 its report needs.
        assert!(matches!(
            commit(&mut pool, &d.round(), &n[0], 0, t(0)),
            Added::Merged {
                became_verified: true,
                ..
            }
        ));
        assert_eq!(pool.due(t(0)).len(), 1);
    }

    /// Item 7 of the fault-bound issue: with f = 1 and five members the committee is the
    /// origin and three others; the fourth is behind it and counts only from its fallback turn
    /// (5 s here), so a colluder there cannot race the committee to fill the quorum, neither
    /// in the origin's report nor in a report a colluding origin makes.
    #[test]
    fn an_observation_from_behind_the_committee_counts_only_in_its_turn() {
        let n = nodes();
        let committee = CommitteeSettings::new(Duration::from_secs(5));
        let mut pool = Pool::new(SETTINGS, committee, members_of(&n));
        let d = data(1, &n[0]);
        let round = d.round();
        let list: Vec<Address> = n.iter().map(Identity::address).collect();
        let ranked = committee::ranking(1, &n[0].address(), &list);
        let by = |address: Address| n.iter().find(|node| node.address() == address).unwrap();
        let (first, second, behind) = (by(ranked[0]), by(ranked[1]), by(ranked[3]));
        pool.add(&d, &[sig(&d, &n[0]), sig(&d, first), sig(&d, behind)], t(0));
        assert!(
            !pool.has_quorum(&round),
            "the one behind came before its turn"
        );
        assert_eq!(pool.to_commit(&round, &n[0].address()), None);
        pool.add(&d, &[sig(&d, second)], t(1));
        let report = pool.to_commit(&round, &n[0].address()).unwrap();
        let signers: Vec<Address> = report.signers().collect();
        assert_eq!(signers.len(), 3);
        assert!(!signers.contains(&behind.address()));
        // A colluding origin reporting the early one: members of the committee do not commit.
        let mut raced = report.clone();
        raced.observations.push(SignedObservation {
            signer: behind.address(),
            observation: d.observation(),
            signature: sig(&d, behind).signature,
        });
        let digest = raced.digest().unwrap();
        pool.add_report(&raced, SignatureEntry::sign(n[0].signer(), digest), t(1));
        assert_eq!(pool.to_commit(&round, &first.address()), None);
        // In its turn, the same member counts.
        let later = data(2, &n[0]);
        let ranked = committee::ranking(2, &n[0].address(), &list);
        let (first, behind) = (by(ranked[0]), by(ranked[3]));
        pool.add(&later, &[sig(&later, &n[0]), sig(&later, first)], t(10));
        pool.add(&later, &[sig(&later, behind)], t(15));
        assert!(pool.has_quorum(&later.round()));
        let report = pool.to_commit(&later.round(), &n[0].address()).unwrap();
        assert!(report.signers().any(|signer| signer == behind.address()));
    }
}
