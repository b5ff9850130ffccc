//! Checking stored prices from the outside: `oracle verify` recomputes every observation's
//! digest, recovers every signature, and recomputes the median, the spread and the time range,
//! trusting nothing the writer claimed. Pure: rows in, verdicts out.

use std::collections::HashSet;

use alloy_primitives::Address;
use chrono::{DateTime, Utc};

use crate::signed::{Report, V1_DOMAIN};
use crate::store::members::SignerRow;
use crate::store::reports::StoredPrice;

/// What is wrong with a row, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The row cannot be a genuine oracle price: bad data or a signature that does not verify.
    Invalid(String),
    /// Every signature verifies, but fewer distinct (trusted) signers than required.
    BelowQuorum { valid: usize, required: usize },
}

/// The verdict on one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub id: i64,
    pub signatures: usize,
    pub finding: Option<Finding>,
    /// Signers that verify but do not count (not listed, or not a member at the time).
    pub untrusted: usize,
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

/// Audit settings.
#[derive(Debug, Clone, Default)]
pub struct AuditRules {
    pub min_signers: usize,
    pub counted: Counted,
}

/// Checks one row: pair, price, signer list, `signer_count`, `first_signer`, and that every
/// signature recovers to its signer over the digest recomputed from the row.
pub fn audit_row(row: &StoredPrice, rules: &AuditRules) -> RowReport {
    let mut report = RowReport {
        id: row.id,
        signatures: 0,
        finding: None,
        untrusted: 0,
    };
    match check_row(row, rules) {
        Ok((signatures, counted)) => {
            report.signatures = signatures;
            report.untrusted = signatures - counted;
            if counted < rules.min_signers {
                report.finding = Some(Finding::BelowQuorum {
                    valid: counted,
                    required: rules.min_signers,
                });
            }
        }
        Err(reason) => report.finding = Some(Finding::Invalid(reason)),
    }
    report
}

/// The row's valid signatures and how many of them count, or why the row is invalid.
fn check_row(row: &StoredPrice, rules: &AuditRules) -> Result<(usize, usize), String> {
    let report = Report::try_from(row).map_err(|err| err.to_string())?;
    let signatures = report.observations.len();
    if usize::try_from(row.signer_count).ok() != Some(signatures) {
        return Err(format!(
            "signer_count {} but {signatures} signatures",
            row.signer_count
        ));
    }
    let mut signers = HashSet::new();
    if let Some(twice) = report.signers().find(|signer| !signers.insert(*signer)) {
        return Err(format!("signer {twice} listed twice"));
    }
    report
        .verify()
        .map_err(|(signer, err)| format!("signature of {signer}: {err}"))?;
    check_summary(row, &report)?;
    let observed = row.observed_at.to_utc();
    let counted = signers
        .iter()
        .filter(|signer| rules.counted.counts(signer, observed))
        .count();
    Ok((signatures, counted))
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
    use crate::signed::{Observation, PriceData, Round, SignedObservation};
    use crate::store::row::row_of;

    fn signers(n: u8) -> Vec<Identity> {
        (1..=n)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    /// Round 42 of the first of `signed_by`, each observing 3124.56789 plus its place in 10⁻⁸,
    /// a second apart: a stored row as the flush writes it.
    fn row(signed_by: &[Identity]) -> StoredPrice {
        let round = Round {
            config: crate::membership::Members::open().signing_config(),
            pair: Pair::EthUsd,
            id: 42,
            origin: signed_by[0].address(),
        };
        let observations = signed_by
            .iter()
            .zip(0u64..)
            .map(|(identity, place)| {
                let observation = Observation {
                    price: UsdPrice::from_e8(312_456_789_000 + place as i64).unwrap(),
                    observed_at: 1_763_700_000 + place,
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
        row_of(
            &Report {
                round,
                observations,
            },
            1,
        )
    }

    const TWO_OF_THREE: Option<Finding> = Some(Finding::BelowQuorum {
        valid: 2,
        required: 3,
    });

    fn rules(min_signers: usize) -> AuditRules {
        AuditRules {
            min_signers,
            counted: Counted::Everyone,
        }
    }

    #[test]
    fn a_genuine_row_passes() {
        let report = audit_row(&row(&signers(3)), &rules(3));
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
        let mut id = genuine.clone();
        id.id += 1;
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
            ("first_signer", first),
            ("sign_data", garbage),
            ("an observation", observation),
            ("median", median),
            ("spread", spread),
            ("time range", range),
        ] {
            let report = audit_row(&tampered, &rules(3));
            assert!(
                matches!(report.finding, Some(Finding::Invalid(_))),
                "{name}: {report:?}"
            );
        }
    }

    #[test]
    fn quorum_counts_only_trusted_signers_when_asked() {
        let all = signers(3);
        let report = audit_row(&row(&all), &rules(4));
        assert_eq!(
            report.finding,
            Some(Finding::BelowQuorum {
                valid: 3,
                required: 4
            })
        );
        let trusted: HashSet<Address> = all[..2].iter().map(Identity::address).collect();
        let report = audit_row(
            &row(&all),
            &AuditRules {
                min_signers: 3,
                counted: Counted::Listed(trusted),
            },
        );
        assert_eq!(report.untrusted, 1);
        assert_eq!(report.finding, TWO_OF_THREE);
    }

    #[test]
    fn a_signature_counts_only_if_its_signer_was_a_member_when_the_price_was_observed() {
        let all = signers(3);
        let genuine = row(&all);
        let observed = genuine.observed_at.to_utc();
        let period = |identity: &Identity, from: i64, until: Option<i64>| SignerRow {
            address: identity.address(),
            name: String::new(),
            added_at: observed + chrono::Duration::seconds(from),
            revoked_at: until.map(|until| observed + chrono::Duration::seconds(until)),
        };
        let members = |rows| AuditRules {
            min_signers: 3,
            counted: Counted::Members(rows),
        };
        let always: Vec<SignerRow> = all.iter().map(|node| period(node, -10, None)).collect();
        assert_eq!(audit_row(&genuine, &members(always.clone())).finding, None);
        // Added after the observation, or revoked before it: that signature does not count.
        for late in [period(&all[2], 1, None), period(&all[2], -10, Some(0))] {
            let mut rows = always.clone();
            rows[2] = late;
            let report = audit_row(&genuine, &members(rows));
            assert_eq!(report.untrusted, 1);
            assert_eq!(
                report.finding,
                Some(Finding::BelowQuorum {
                    valid: 2,
                    required: 3
                })
            );
        }
        // Revoked later: signatures from its time as a member stay valid.
        let mut rows = always;
        rows[2] = period(&all[2], -10, Some(1));
        assert_eq!(audit_row(&genuine, &members(rows)).finding, None);
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
