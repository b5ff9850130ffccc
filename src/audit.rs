//! Checking stored prices from the outside: `oracle verify` and every node's `/v1` readers judge
//! each row with [`audit_row`], which recomputes every observation's digest, recovers every
//! signature, and recomputes the median, the spread and the time range, trusting nothing the
//! writer claimed; a v2 row must also carry f + 1 members' commit signatures over its report
//! digest as stored. Every observation must be a counting member's, the id must be in its
//! origin's id space and no observation may come from the future. Pure: rows in, verdicts out.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use alloy_primitives::Address;
use chrono::{DateTime, Utc};

use crate::domain::{Deployment, FaultBound};
use crate::id::{self, IdGenerator};
use crate::signed::{ROUND_WINDOW, Report, V1_DOMAIN};
use crate::store::members::SignerRow;
use crate::store::reports::StoredPrice;

/// How far past the checker's clock an observation may be dated. Nodes refuse observations
/// more than `--max-clock-skew` (30 s by default) ahead of their own clocks; the checker's clock
/// may lag theirs by as much again. An honest row is stored at least `--flush-delay` after its
/// last observation, so it is never near this bound.
pub const FUTURE_ALLOWANCE: Duration = Duration::from_secs(60);

/// What is wrong with a row, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The row cannot be a genuine oracle price: bad data or a signature that does not verify.
    Invalid(String),
    /// The id's machine bits are not its origin's: no honest origin mints such an id, and no
    /// honest member takes part in its round (gossip refuses it as `foreign_id`).
    ForeignId { machine: u16, origin_mints: u16 },
    /// An observation dated past the checker's clock and [`FUTURE_ALLOWANCE`] (unix seconds).
    FromFuture { observed_at: u64, now: u64 },
    /// Observations of signers that do not count (not members at the round's time, or not
    /// listed): the median took them in, so the value is not the members' alone.
    NonMembers { signers: Vec<Address> },
    /// Every signature verifies, but fewer distinct signers than the quorum, 2f + 1.
    BelowQuorum { valid: usize, required: usize },
    /// A v2 row whose commit signatures all verify over its report digest, but by fewer
    /// distinct (counting) members than f + 1: no committed report.
    Uncommitted { valid: usize, required: usize },
}

crate::labels::label_values! {
    /// The kinds of [`Finding`]: how `oracle verify` groups offending rows, and the `reason` a
    /// node's readers count a row they refuse under.
    pub enum FindingKind {
        Invalid => "invalid",
        ForeignId => "foreign_id",
        FromFuture => "from_future",
        NonMember => "non_member",
        BelowQuorum => "below_quorum",
        Uncommitted => "uncommitted",
    }
}

impl Finding {
    pub fn kind(&self) -> FindingKind {
        match self {
            Self::Invalid(_) => FindingKind::Invalid,
            Self::ForeignId { .. } => FindingKind::ForeignId,
            Self::FromFuture { .. } => FindingKind::FromFuture,
            Self::NonMembers { .. } => FindingKind::NonMember,
            Self::BelowQuorum { .. } => FindingKind::BelowQuorum,
            Self::Uncommitted { .. } => FindingKind::Uncommitted,
        }
    }
}

/// The reason, as `oracle verify` lists it and a node logs it.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(reason) => f.write_str(reason),
            Self::ForeignId {
                machine,
                origin_mints,
            } => write!(
                f,
                "id has machine bits {machine:#06x}, its origin mints {origin_mints:#06x}"
            ),
            Self::FromFuture { observed_at, now } => write!(
                f,
                "an observation dated {observed_at}, {} s past this clock ({now})",
                observed_at.saturating_sub(*now)
            ),
            Self::NonMembers { signers } => {
                write!(
                    f,
                    "observations of {} signers that do not count:",
                    signers.len()
                )?;
                signers.iter().try_for_each(|signer| write!(f, " {signer}"))
            }
            Self::BelowQuorum { valid, required } => write!(f, "{valid} of {required} signers"),
            Self::Uncommitted { valid, required } => {
                write!(f, "{valid} of {required} commit signers")
            }
        }
    }
}

/// The verdict on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub id: i64,
    /// Its observations' signatures, when they all verify (0 otherwise).
    pub signatures: usize,
    pub finding: Option<Finding>,
}

/// Whose signatures count toward a row's quorum.
#[derive(Debug, Clone, Default)]
pub enum Counted {
    /// Every valid signature.
    #[default]
    Everyone,
    /// Only these signers (`--trusted-signers`).
    Listed(HashSet<Address>),
    /// Signers that were members (per the `signers` table) when the row's price was observed.
    Members(Vec<SignerRow>),
}

impl Counted {
    /// The member history, when it is the `signers` table.
    fn history(&self) -> Option<&[SignerRow]> {
        match self {
            Self::Members(rows) => Some(rows),
            Self::Everyone | Self::Listed(_) => None,
        }
    }

    /// The members at `observed_at`, or `None` when every signer counts (no list).
    fn members_at(&self, observed_at: DateTime<Utc>) -> Option<Vec<Address>> {
        match self {
            Self::Everyone => None,
            Self::Listed(signers) => Some(signers.iter().copied().collect()),
            Self::Members(rows) => Some(members_at(rows, observed_at)),
        }
    }

    fn counts(&self, signer: &Address, observed_at: DateTime<Utc>) -> bool {
        match self {
            Self::Everyone => true,
            Self::Listed(signers) => signers.contains(signer),
            Self::Members(rows) => rows
                .iter()
                .any(|row| row.address == *signer && row.member_at(observed_at)),
        }
    }
}

/// The members of `rows` (the `signers` table) at `at`.
fn members_at(rows: &[SignerRow], at: DateTime<Utc>) -> Vec<Address> {
    rows.iter()
        .filter(|row| row.member_at(at))
        .map(|row| row.address)
        .collect()
}

/// The member sets of `history` a round at `at` may be signed under: the members at `at`, then
/// after each change within [`ROUND_WINDOW`] of it. A node binds a round to its member list when
/// it signs, a little after its observation (a fetch; times are whole seconds), and that list
/// may already hold a change made since (a member added or removed at `at` + 0.4 s).
fn member_sets_from(history: &[SignerRow], at: DateTime<Utc>) -> Vec<Vec<Address>> {
    let window = chrono::Duration::from_std(ROUND_WINDOW).unwrap_or_default();
    let mut changes: Vec<DateTime<Utc>> = history
        .iter()
        .flat_map(|row| std::iter::once(row.added_at).chain(row.revoked_at))
        .filter(|change| *change > at && *change <= at + window)
        .collect();
    changes.sort_unstable();
    std::iter::once(at)
        .chain(changes)
        .map(|instant| members_at(history, instant))
        .collect()
}

/// Audit settings.
#[derive(Debug, Clone, Default)]
pub struct AuditRules {
    /// The network's deployment (`--network-name`, `--chain-id`, `--verifier`) and configured
    /// `f`: with the members at a row's time they give the configuration its signatures must be
    /// bound to, and its quorum of `2f + 1`.
    pub deployment: Deployment,
    /// Whose signatures count toward the quorum.
    pub counted: Counted,
    /// The network's member history (the `signers` table), which decides a row's configuration
    /// and `f` even when `counted` is narrowed to a list; `None`: `counted`'s members decide.
    pub network: Option<Vec<SignerRow>>,
}

impl AuditRules {
    /// The fault bound at a row's time: of its members then, or the configured one without a
    /// list.
    fn fault_bound(&self, members: Option<&[Address]>) -> FaultBound {
        FaultBound::for_members(members.map(<[Address]>::len), self.deployment.max_faults)
    }
}

/// Judges one row, at `now` (the checker's clock, for [`Finding::FromFuture`]): its pair, price,
/// signer list, `signer_count` and `first_signer`, every signature over the digest recomputed
/// from the row, its id, its time, who signed it and the quorum and commits that makes. The one
/// judgement of a stored row: `oracle verify` and the nodes' readers both apply it.
pub fn audit_row(row: &StoredPrice, rules: &AuditRules, now: DateTime<Utc>) -> RowReport {
    match check_row(row, rules, now) {
        Ok(signatures) => RowReport {
            id: row.id,
            signatures,
            finding: None,
        },
        Err((signatures, finding)) => RowReport {
            id: row.id,
            signatures,
            finding: Some(finding),
        },
    }
}

/// The row's signatures, all valid, with every rule met; or why not (with the signatures, once
/// they are known to verify). The cheap checks come first, so that a row that fails one costs no
/// signature recovery.
fn check_row(
    row: &StoredPrice,
    rules: &AuditRules,
    now: DateTime<Utc>,
) -> Result<usize, (usize, Finding)> {
    let unverified = |finding| (0, finding);
    let invalid = |reason: String| unverified(Finding::Invalid(reason));
    let report = Report::try_from(row).map_err(|err| invalid(err.to_string()))?;
    let signatures = report.observations.len();
    if usize::try_from(row.signer_count).ok() != Some(signatures) {
        return Err(invalid(format!(
            "signer_count {} but {signatures} signatures",
            row.signer_count
        )));
    }
    let mut signers = HashSet::new();
    if let Some(twice) = report.signers().find(|signer| !signers.insert(*signer)) {
        return Err(invalid(format!("signer {twice} listed twice")));
    }
    check_id(&report).map_err(unverified)?;
    check_time(&report, now).map_err(unverified)?;
    report
        .verify()
        .map_err(|(signer, err)| invalid(format!("signature of {signer}: {err}")))?;
    check_summary(row, &report).map_err(invalid)?;
    let verified = |finding| (signatures, finding);
    // Who counts is decided at the round's time, its origin's observation (protocol §7.3), as
    // the nodes decided it; the row's `observed_at` is the median time (v1: the origin's).
    let round_time = report
        .observed_at()
        .ok_or_else(|| invalid("no observation of its origin's".to_owned()))?;
    let observed = i64::try_from(round_time)
        .ok()
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0))
        .ok_or_else(|| {
            invalid(format!(
                "the origin's observation time {round_time} is out of range"
            ))
        })?;
    let f = fault_bound_of(&report, rules, observed).map_err(invalid)?;
    // v1 rows predate commits; a v2 row is only a committed report.
    let committed = if report.round.config == V1_DOMAIN {
        None
    } else {
        Some(check_commits(&report, rules, observed).map_err(invalid)?)
    };
    let outsiders: Vec<Address> = report
        .signers()
        .filter(|signer| !rules.counted.counts(signer, observed))
        .collect();
    if !outsiders.is_empty() {
        return Err(verified(Finding::NonMembers { signers: outsiders }));
    }
    if signatures < f.quorum() {
        return Err(verified(Finding::BelowQuorum {
            valid: signatures,
            required: f.quorum(),
        }));
    }
    if let Some(valid) = committed
        && valid < f.commit_threshold()
    {
        return Err(verified(Finding::Uncommitted {
            valid,
            required: f.commit_threshold(),
        }));
    }
    Ok(signatures)
}

/// Only the origin mints ids with its machine bits (protocol §5): the low 16 bits of its
/// address.
fn check_id(report: &Report) -> Result<(), Finding> {
    let machine = id::decompose(report.round.id).machine;
    let origin_mints = IdGenerator::machine_id_from_address(&report.round.origin);
    if machine == origin_mints {
        Ok(())
    } else {
        Err(Finding::ForeignId {
            machine,
            origin_mints,
        })
    }
}

/// No observation dated past `now` and [`FUTURE_ALLOWANCE`]: nodes refuse such observations,
/// and a row dated ahead would stand as the newest price until its time came.
fn check_time(report: &Report, now: DateTime<Utc>) -> Result<(), Finding> {
    let now = u64::try_from(now.timestamp()).unwrap_or_default();
    let newest = report.observed_range().map_or(0, |(_, last)| last);
    if newest > now.saturating_add(FUTURE_ALLOWANCE.as_secs()) {
        return Err(Finding::FromFuture {
            observed_at: newest,
            now,
        });
    }
    Ok(())
}

/// The fault bound of the configuration the row was signed under, at its round's time
/// `observed`; or why its configuration is not this network's.
fn fault_bound_of(
    report: &Report,
    rules: &AuditRules,
    observed: DateTime<Utc>,
) -> Result<FaultBound, String> {
    let history = match &rules.network {
        Some(history) => Some(history.as_slice()),
        None => rules.counted.history(),
    };
    // The member sets the row may have been signed under: at the round's time, and (from the
    // `signers` table) after each change within the round window.
    let candidates: Vec<Vec<Address>> = match history {
        Some(history) => member_sets_from(history, observed),
        None => rules.counted.members_at(observed).into_iter().collect(),
    };
    let f_of = |members: &[Address]| rules.fault_bound(Some(members));
    match candidates.first() {
        None => Ok(rules.fault_bound(None)),
        // v1 rows carry the v1 domain word and predate configurations.
        Some(first) if report.round.config == V1_DOMAIN => Ok(f_of(first)),
        // A v2 row's signatures must be bound to this network's configuration of its time: a
        // database credential cannot pass off a report signed for another network, member
        // set or a smaller f.
        Some(first) => candidates
            .iter()
            .find(|members| {
                rules.deployment.config_digest(members, f_of(members)) == report.round.config
            })
            .map(|members| f_of(members))
            .ok_or_else(|| {
                format!(
                    "signed under configuration {}, not this network's {} (its members at the \
                     row's time, f = {})",
                    report.round.config,
                    rules.deployment.config_digest(first, f_of(first)),
                    f_of(first).faults()
                )
            }),
    }
}
/// The distinct commit signers that count at the row's time, once each, after checking that
/// every commit recovers to its signer over the report digest of the row as stored. So
/// observations added, dropped or changed after the commit, or a price or time that is not the
/// committed one (already tied to the observations by [`check_summary`]), fail here.
fn check_commits(
    report: &Report,
    rules: &AuditRules,
    observed: DateTime<Utc>,
) -> Result<usize, String> {
    let digest = report
        .digest()
        .ok_or_else(|| "no observations, so no report digest".to_owned())?;
    for commit in &report.commits {
        commit.verify(digest).map_err(|err| {
            format!(
                "commit signature of {} does not verify over the report digest {digest} of the \
                 row as stored: {err}",
                commit.signer
            )
        })?;
    }
    let committers: HashSet<Address> = report.commits.iter().map(|commit| commit.signer).collect();
    Ok(committers
        .iter()
        .filter(|signer| rules.counted.counts(signer, observed))
        .count())
}

/// What the row says of its observations, recomputed from them: the origin's among them at the
/// row's `observed_at`, the price their median, the spread and the time range theirs.
fn check_summary(row: &StoredPrice, report: &Report) -> Result<(), String> {
    let Some(origin) = report.origin_observation() else {
        return Err(format!(
            "first_signer {} has no observation",
            row.first_signer
        ));
    };
    let unix = |at: &DateTime<chrono::FixedOffset>| u64::try_from(at.timestamp()).ok();
    // v2's time is the median of the observations' times; v1 rows kept their origin's.
    let (time, rule) = if report.round.config == V1_DOMAIN {
        (
            Some(origin.observation.observed_at),
            "its origin's observation time",
        )
    } else {
        (report.time(), "the median of its observations' times")
    };
    if unix(&row.observed_at) != time {
        return Err(format!(
            "observed_at {} is not {rule} {}",
            row.observed_at,
            time.unwrap_or_default()
        ));
    }
    let median = report.value().map(|value| value.to_decimal());
    if median != Some(row.price) {
        return Err(format!(
            "price {} is not the median of its observations ({})",
            row.price,
            median.map_or_else(|| "none".into(), |median| median.to_string())
        ));
    }
    if row.spread != report.spread() {
        return Err(format!(
            "spread {} but the observations spread {}",
            row.spread,
            report.spread()
        ));
    }
    let range = report.observed_range();
    if range.map(|(first, _)| first) != unix(&row.first_observed_at)
        || range.map(|(_, last)| last) != unix(&row.last_observed_at)
    {
        return Err(format!(
            "observed from {} to {} but its observations span {range:?}",
            row.first_observed_at, row.last_observed_at
        ));
    }
    Ok(())
}

pub use crate::membership::read_trusted_signers;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{Observation, PriceData, Round, SignatureEntry, SignedObservation};
    use crate::store::row::row_of;

    fn signers(n: u8) -> Vec<Identity> {
        (1..=n)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    /// The first observation's time: 2025-11-21.
    const OBSERVED: u64 = 1_763_700_000;

    /// The id `origin` mints when it observes at [`OBSERVED`].
    fn id_by(origin: &Identity) -> u64 {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(OBSERVED);
        IdGenerator::new(IdGenerator::machine_id_from_address(&origin.address()))
            .next_id_at(at)
            .unwrap()
    }

    /// [`audit_row`] now.
    fn audit(row: &StoredPrice, rules: &AuditRules) -> RowReport {
        audit_row(row, rules, Utc::now())
    }

    /// A round of the first of `signed_by`, each observing 3124.56789 plus its place in 10⁻⁸,
    /// a second apart: a stored row as the flush writes it, signed under v1's domain word.
    fn row(signed_by: &[Identity]) -> StoredPrice {
        row_in(V1_DOMAIN, signed_by)
    }

    /// [`row`] signed under configuration `config`, committed by every signer when v2.
    fn row_in(config: alloy_primitives::B256, signed_by: &[Identity]) -> StoredPrice {
        let mut report = report_in(config, signed_by);
        if config != V1_DOMAIN {
            report.commits = commits_by(&report, signed_by);
        }
        row_of(&report, 1)
    }

    /// `committers`' signatures over `report`'s digest.
    fn commits_by(report: &Report, committers: &[Identity]) -> Vec<SignatureEntry> {
        let digest = report.digest().unwrap();
        committers
            .iter()
            .map(|identity| SignatureEntry::sign(identity.signer(), digest))
            .collect()
    }

    /// The report of [`row_in`], uncommitted.
    fn report_in(config: alloy_primitives::B256, signed_by: &[Identity]) -> Report {
        let round = Round {
            config,
            pair: Pair::EthUsd,
            id: id_by(&signed_by[0]),
            origin: signed_by[0].address(),
        };
        let observations = signed_by
            .iter()
            .zip(0u64..)
            .map(|(identity, place)| {
                let observation = Observation {
                    price: UsdPrice::from_e8(312_456_789_000 + place as i64).unwrap(),
                    observed_at: OBSERVED + place,
                };
                SignedObservation {
                    signer: identity.address(),
                    observation,
                    signature: PriceData::new(round, observation)
                        .sign(identity.signer())
                        .signature,
                }
            })
            .collect();
        Report {
            round,
            observations,
            commits: Vec::new(),
        }
    }

    /// The finding of observations by `outsiders`.
    fn non_members(outsiders: &[&Identity]) -> Option<Finding> {
        Some(Finding::NonMembers {
            signers: outsiders
                .iter()
                .map(|identity| identity.address())
                .collect(),
        })
    }

    /// Every signer counts; `f` as configured (a quorum of `2f + 1`).
    fn rules(f: usize) -> AuditRules {
        AuditRules {
            deployment: with_f(f),
            counted: Counted::Everyone,
            network: None,
        }
    }

    fn with_f(f: usize) -> Deployment {
        Deployment {
            max_faults: Some(f),
            ..Deployment::default()
        }
    }

    #[test]
    fn a_genuine_row_passes() {
        let report = audit(&row(&signers(3)), &rules(1));
        assert_eq!(report.finding, None);
        assert_eq!(report.signatures, 3);
    }

    #[test]
    fn tampering_with_any_signed_field_is_caught() {
        let genuine = row(&signers(3));
        let mut price = genuine.clone();
        price.price += rust_decimal::Decimal::new(1, 8);
        let mut observed = genuine.clone();
        observed.observed_at += chrono::Duration::seconds(1);
        // Another sequence number: still in the origin's id space.
        let mut id = genuine.clone();
        id.id += 1 << 16;
        let mut observation = genuine.clone();
        observation.sign_data[2]["price_e8"] = "1".into();
        let mut median = genuine.clone();
        median.price = rust_decimal::Decimal::new(312_456_789_002, 8);
        let mut spread = genuine.clone();
        spread.spread = rust_decimal::Decimal::ONE;
        let mut range = genuine.clone();
        range.last_observed_at += chrono::Duration::seconds(60);
        let mut signature = genuine.clone();
        let text = signature.sign_data[1]["signature"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = format!(
            "{}{}",
            &text[..10],
            if &text[10..11] == "0" { "1" } else { "0" }
        ) + &text[11..];
        signature.sign_data[1]["signature"] = flipped.into();
        let mut count = genuine.clone();
        count.signer_count = 5;
        let mut pair = genuine.clone();
        pair.pair = "BTC/USD".into();
        let mut unknown_pair = genuine.clone();
        unknown_pair.pair = "ETH/EUR".into();
        let mut first = genuine.clone();
        first.first_signer = signers(4)[3].address().to_checksum(None);
        let mut garbage = genuine.clone();
        garbage.sign_data = serde_json::json!({"not": "a list"});
        for (name, tampered) in [
            ("price", price),
            ("observed_at", observed),
            ("id", id),
            ("signature", signature),
            ("signer_count", count),
            ("pair", pair),
            ("unknown pair", unknown_pair),
            ("sign_data", garbage),
            ("an observation", observation),
            ("median", median),
            ("spread", spread),
            ("time range", range),
        ] {
            let report = audit(&tampered, &rules(1));
            assert!(
                matches!(report.finding, Some(Finding::Invalid(_))),
                "{name}: {report:?}"
            );
        }
        // Another origin does not mint this id: caught before any signature is recovered.
        let report = audit(&first, &rules(1));
        assert!(
            matches!(report.finding, Some(Finding::ForeignId { .. })),
            "first_signer: {report:?}"
        );
    }

    #[test]
    fn quorum_and_membership_count_only_trusted_signers_when_asked() {
        let all = signers(6);
        let report = audit(&row(&all[..3]), &rules(2));
        assert_eq!(
            report.finding,
            Some(Finding::BelowQuorum {
                valid: 3,
                required: 5
            })
        );
        // Four trusted signers (f = 1), two of the row's three among them.
        let trusted: Vec<Address> = [&all[0], &all[1], &all[4], &all[5]]
            .iter()
            .map(|identity| identity.address())
            .collect();
        let deployment = Deployment::default();
        let config = deployment.config_digest(&trusted, FaultBound::new(1));
        let rules = AuditRules {
            deployment,
            counted: Counted::Listed(trusted.into_iter().collect()),
            network: None,
        };
        let report = audit(&row_in(config, &all[..3]), &rules);
        assert_eq!(report.finding, non_members(&[&all[2]]));
    }

    /// A quorum of members does not make a row whose other observations are outsiders': the
    /// median takes every observation in, so any of them could move it.
    #[test]
    fn an_observation_of_a_non_member_fails_a_row_that_has_its_quorum_of_members() {
        let all = signers(5);
        let history: Vec<SignerRow> = all[..4]
            .iter()
            .map(|identity| SignerRow {
                address: identity.address(),
                name: String::new(),
                added_at: DateTime::<Utc>::from_timestamp(OBSERVED as i64 - 60, 0).unwrap(),
                revoked_at: None,
            })
            .collect();
        let members: Vec<Address> = all[..4].iter().map(Identity::address).collect();
        let config = Deployment::default().config_digest(&members, FaultBound::new(1));
        let rules = AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Members(history),
            network: None,
        };
        // Three members of four (f = 1): a report.
        let three = [all[0].clone(), all[1].clone(), all[2].clone()];
        assert_eq!(audit(&row_in(config, &three), &rules).finding, None);
        // The same three and an outsider's observation.
        let with_outsider = [
            three[0].clone(),
            three[1].clone(),
            three[2].clone(),
            all[4].clone(),
        ];
        let report = audit(&row_in(config, &with_outsider), &rules);
        assert_eq!(report.finding, non_members(&[&all[4]]));
        assert_eq!(report.finding.unwrap().kind(), FindingKind::NonMember);
    }

    /// Only the origin mints ids with its machine bits, the low 16 bits of its address: a row
    /// under another id fails however well every member signed it.
    #[test]
    fn an_id_outside_its_origins_id_space_is_a_finding() {
        let all = signers(3);
        let mut report = report_in(V1_DOMAIN, &all);
        let genuine = report.round.id;
        report.round.id = genuine ^ 1;
        report.observations = report
            .observations
            .iter()
            .zip(&all)
            .map(|(entry, identity)| SignedObservation {
                signature: PriceData::new(report.round, entry.observation)
                    .sign(identity.signer())
                    .signature,
                ..*entry
            })
            .collect();
        assert!(report.verify().is_ok());
        let machine = (genuine & 0xffff) as u16;
        assert_eq!(
            audit(&row_of(&report, 1), &rules(1)).finding,
            Some(Finding::ForeignId {
                machine: machine ^ 1,
                origin_mints: machine
            })
        );
    }

    /// No observation from the future: the newest may be dated [`FUTURE_ALLOWANCE`] past the
    /// checker's clock, not a second more.
    #[test]
    fn an_observation_from_the_future_is_a_finding() {
        let genuine = row(&signers(3));
        let newest = OBSERVED + 2;
        let at = |unix: u64| DateTime::<Utc>::from_timestamp(unix as i64, 0).unwrap();
        let allowance = FUTURE_ALLOWANCE.as_secs();
        let judged = |now| audit_row(&genuine, &rules(1), at(now)).finding;
        assert_eq!(judged(newest - allowance), None);
        assert_eq!(
            judged(newest - allowance - 1),
            Some(Finding::FromFuture {
                observed_at: newest,
                now: newest - allowance - 1
            })
        );
    }

    /// A v2 row's signatures must be bound to the configuration of the members at its time:
    /// rows signed for another network, or with a smaller f, are refused however well signed.
    #[test]
    fn a_v2_row_signed_for_another_configuration_is_invalid() {
        let all = signers(4);
        let listed: Vec<Address> = all.iter().map(Identity::address).collect();
        let rules = AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Listed(listed.iter().copied().collect()),
            network: None,
        };
        let ours = Deployment::default().config_digest(&listed, FaultBound::new(1));
        assert_eq!(audit(&row_in(ours, &all[..3]), &rules).finding, None);
        let elsewhere = Deployment {
            network: "staging".into(),
            ..Deployment::default()
        };
        for config in [
            elsewhere.config_digest(&listed, FaultBound::new(1)),
            Deployment::default().config_digest(&listed, FaultBound::new(0)),
        ] {
            let report = audit(&row_in(config, &all[..3]), &rules);
            assert!(
                matches!(report.finding, Some(Finding::Invalid(ref why)) if why.contains("configuration")),
                "{report:?}"
            );
        }
    }

    /// A node binds a round to its member list when it signs, which may already hold a change
    /// made a moment after the observation: that configuration is the network's too. One from
    /// a change long after is not.
    #[test]
    fn a_row_may_be_signed_under_a_member_change_made_within_the_round_window_after_it() {
        let all = signers(5);
        let listed: Vec<Address> = all.iter().map(Identity::address).collect();
        let five = Deployment::default().config_digest(&listed, FaultBound::new(1));
        let row = row_in(five, &all[..3]);
        let round_time = row.first_observed_at.to_utc();
        let rules = |fifth_added_after: i64| AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Members(
                all.iter()
                    .zip([0, 0, 0, 0, fifth_added_after])
                    .map(|(identity, after)| SignerRow {
                        address: identity.address(),
                        name: String::new(),
                        added_at: round_time + chrono::Duration::milliseconds(after * 1000 + 400)
                            - chrono::Duration::seconds(if after == 0 { 10 } else { 0 }),
                        revoked_at: None,
                    })
                    .collect(),
            ),
            network: None,
        };
        assert_eq!(audit(&row, &rules(1)).finding, None);
        let report = audit(&row, &rules(60));
        assert!(
            matches!(report.finding, Some(Finding::Invalid(ref why)) if why.contains("configuration")),
            "{report:?}"
        );
    }

    #[test]
    fn a_signature_counts_only_if_its_signer_was_a_member_when_the_price_was_observed() {
        // Five members (f = 1), three of them signing: removing one leaves four, still f = 1.
        let all = signers(5);
        let genuine = row(&all[..3]);
        let observed = genuine.observed_at.to_utc();
        let period = |identity: &Identity, from: i64, until: Option<i64>| SignerRow {
            address: identity.address(),
            name: String::new(),
            added_at: observed + chrono::Duration::seconds(from),
            revoked_at: until.map(|until| observed + chrono::Duration::seconds(until)),
        };
        let members = |rows| AuditRules {
            deployment: with_f(1),
            counted: Counted::Members(rows),
            network: None,
        };
        let always: Vec<SignerRow> = all.iter().map(|node| period(node, -10, None)).collect();
        assert_eq!(audit(&genuine, &members(always.clone())).finding, None);
        // Added after the observation, or revoked before it: that signature does not count.
        for late in [period(&all[2], 1, None), period(&all[2], -10, Some(0))] {
            let mut rows = always.clone();
            rows[2] = late;
            let report = audit(&genuine, &members(rows));
            assert_eq!(report.finding, non_members(&[&all[2]]));
        }
        // Revoked later: signatures from its time as a member stay valid.
        let mut rows = always;
        rows[2] = period(&all[2], -10, Some(1));
        assert_eq!(audit(&genuine, &members(rows)).finding, None);
    }

    /// Four members (f = 1, 2 commits needed), every one a member since before the row.
    fn four_members() -> (Vec<Identity>, AuditRules) {
        let all = signers(4);
        let listed: Vec<Address> = all.iter().map(Identity::address).collect();
        let rules = AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Listed(listed.iter().copied().collect()),
            network: None,
        };
        (all, rules)
    }

    fn config_of(members: &[Identity]) -> alloy_primitives::B256 {
        let addresses: Vec<Address> = members.iter().map(Identity::address).collect();
        Deployment::default().config_digest(&addresses, FaultBound::new(1))
    }

    #[test]
    fn a_v2_row_needs_f_plus_one_distinct_member_commits() {
        let (all, rules) = four_members();
        let config = config_of(&all);
        let report = report_in(config, &all[..3]);
        let committed = |commits: Vec<SignatureEntry>| {
            let report = Report {
                commits,
                ..report.clone()
            };
            audit(&row_of(&report, 1), &rules).finding
        };
        assert_eq!(committed(commits_by(&report, &all[..2])), None);
        // A member outside the observations may commit too.
        assert_eq!(committed(commits_by(&report, &all[2..])), None);
        let short = |valid| Some(Finding::Uncommitted { valid, required: 2 });
        assert_eq!(committed(Vec::new()), short(0));
        // Only f commits.
        assert_eq!(committed(commits_by(&report, &all[..1])), short(1));
        // The same member twice counts once.
        let twice = commits_by(&report, &[all[0].clone(), all[0].clone()]);
        assert_eq!(committed(twice), short(1));
        // A non-member's commit verifies but does not count.
        let outsider = Identity::from_secret(&[9; 32]).unwrap();
        let with_outsider = commits_by(&report, &[all[0].clone(), outsider]);
        assert_eq!(committed(with_outsider), short(1));
        // A commit claimed for one member but signed by another is invalid.
        let mut forged = commits_by(&report, &all[..2]);
        forged[1].signer = all[3].address();
        assert!(
            matches!(committed(forged), Some(Finding::Invalid(ref why)) if why.contains("commit")),
        );
    }

    /// The commits bind the exact set: a row whose observations changed after its commit, with
    /// every summary column recomputed to match, fails on the commits alone.
    #[test]
    fn observations_removed_or_changed_after_the_commit_leave_the_commits_unverified() {
        let (all, rules) = four_members();
        let config = config_of(&all);
        let mut report = report_in(config, &all);
        report.commits = commits_by(&report, &all[..2]);
        assert_eq!(audit(&row_of(&report, 1), &rules).finding, None);
        let mut dropped = report.clone();
        dropped.observations.pop();
        let mut changed = report.clone();
        changed.observations[3] = report_in(config, &all[..1]).observations[0];
        changed.observations[3].signer = all[3].address();
        changed.observations[3].signature =
            PriceData::new(changed.round, changed.observations[3].observation)
                .sign(all[3].signer())
                .signature;
        for (name, altered) in [("dropped", dropped), ("changed", changed)] {
            // The observations themselves are genuine: only the commits are stale.
            assert!(altered.verify().is_ok(), "{name}");
            let finding = audit(&row_of(&altered, 1), &rules).finding;
            assert!(
                matches!(finding, Some(Finding::Invalid(ref why)) if why.contains("commit signature")),
                "{name}: {finding:?}"
            );
        }
    }

    /// Commits count by the same membership rule as observations: a member at the row's time.
    #[test]
    fn a_commit_counts_only_if_its_signer_was_a_member_at_the_rows_time() {
        let all = signers(4);
        let config = config_of(&all);
        let row = row_of(
            &Report {
                commits: commits_by(
                    &report_in(config, &all[..3]),
                    &[all[0].clone(), all[3].clone()],
                ),
                ..report_in(config, &all[..3])
            },
            1,
        );
        let observed = row.observed_at.to_utc();
        let since = |identity: &Identity, from: i64| SignerRow {
            address: identity.address(),
            name: String::new(),
            added_at: observed + chrono::Duration::seconds(from),
            revoked_at: None,
        };
        let history = |late: i64| {
            vec![
                since(&all[0], -10),
                since(&all[1], -10),
                since(&all[2], -10),
                since(&all[3], late),
            ]
        };
        let members = |late: i64| AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Members(history(late)),
            network: None,
        };
        assert_eq!(audit(&row, &members(-10)).finding, None);
        // The fourth member joined a minute after the row: the members at the row's time are
        // three (f = 0), whose configuration this is not.
        assert!(matches!(
            audit(&row, &members(60)).finding,
            Some(Finding::Invalid(ref why)) if why.contains("configuration")
        ));
        // Ten seconds after: the configuration may be the one it signed under, but its commit
        // does not count at the row's time, and one commit is short of f + 1.
        assert!(matches!(
            audit(&row, &members(10)).finding,
            Some(Finding::Uncommitted { valid: 1, .. })
        ));
        // Listed, but not among the counted: one commit of two.
        let narrowed = AuditRules {
            deployment: Deployment::default(),
            counted: Counted::Listed([all[0].address(), all[1].address(), all[2].address()].into()),
            network: Some(history(-10)),
        };
        assert_eq!(
            audit(&row, &narrowed).finding,
            Some(Finding::Uncommitted {
                valid: 1,
                required: 2
            })
        );
    }

    #[test]
    fn trusted_signer_files_allow_comments_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.txt");
        std::fs::write(
            &path,
            "# oracle operators\n0x2c7536E3605D9C16a7a3D7b1898e529396a65c23  # node0\n\n0x0000000000000000000000000000000000000001\n",
        )
        .unwrap();
        assert_eq!(read_trusted_signers(&path).unwrap().len(), 2);
        std::fs::write(&path, "0x2c75\n").unwrap();
        let err = read_trusted_signers(&path).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
