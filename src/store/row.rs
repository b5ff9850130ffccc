//! A stored row read back as the report it records, and the JSON of its observations: the one
//! conversion the flush, the API, `oracle verify` and the tests use, so that they all see the
//! same fields.

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::reports::StoredPrice;
use crate::pair::Pair;
use crate::price::UsdPrice;
use crate::signed::{
    EthSignature, Observation, Report, Round, SignedObservation, checksummed_address,
};

/// One entry of `sign_data`: a member's observation and its signature over its own digest.
///
/// ```json
/// {"signer":"0x…","signature":"0x…","price_e8":"312456789000","observed_at":1763700000}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignDataEntry {
    #[serde(with = "checksummed_address")]
    pub signer: Address,
    pub signature: EthSignature,
    /// The observed price × 10⁸, decimal (64-bit integers are strings in this JSON).
    pub price_e8: String,
    /// Unix seconds.
    pub observed_at: u64,
}

impl From<&SignedObservation> for SignDataEntry {
    fn from(entry: &SignedObservation) -> Self {
        Self {
            signer: entry.signer,
            signature: entry.signature,
            price_e8: entry.observation.price.e8().to_string(),
            observed_at: entry.observation.observed_at,
        }
    }
}

/// The `sign_data` of a report.
pub fn sign_data(report: &Report) -> Vec<SignDataEntry> {
    report
        .observations
        .iter()
        .map(SignDataEntry::from)
        .collect()
}

/// Why a row is not a report this code can read. Only a hand-written row can be like that: the
/// flush writes none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("negative id {0}")]
    NegativeId(i64),
    #[error("{0}")]
    UnknownPair(String),
    #[error("price: {0}")]
    Price(String),
    #[error("observed_at {0} is before 1970")]
    ObservedAt(String),
    #[error("first_signer {0:?} is not an address")]
    FirstSigner(String),
    #[error("sign_data is not a list of observations: {0}")]
    SignData(String),
    #[error("config {0:?} is not a 32-byte digest")]
    Config(String),
    #[error("commits is not a list of signatures: {0}")]
    Commits(String),
}

impl TryFrom<&StoredPrice> for Report {
    type Error = RowError;

    fn try_from(row: &StoredPrice) -> Result<Self, RowError> {
        let id = u64::try_from(row.id).map_err(|_| RowError::NegativeId(row.id))?;
        let pair: Pair = row
            .pair
            .parse()
            .map_err(|err| RowError::UnknownPair(format!("{err}")))?;
        // The row's own fields must be readable too, though the report is their source.
        UsdPrice::from_exact(row.price).map_err(|err| RowError::Price(err.to_string()))?;
        u64::try_from(row.observed_at.timestamp())
            .map_err(|_| RowError::ObservedAt(row.observed_at.to_string()))?;
        let origin: Address = row
            .first_signer
            .parse()
            .map_err(|_| RowError::FirstSigner(row.first_signer.clone()))?;
        let config: B256 = row
            .config
            .parse()
            .map_err(|_| RowError::Config(row.config.clone()))?;
        let entries: Vec<SignDataEntry> = serde_json::from_value(row.sign_data.clone())
            .map_err(|err| RowError::SignData(err.to_string()))?;
        let observations = entries
            .into_iter()
            .map(|entry| {
                let price = entry
                    .price_e8
                    .parse::<i64>()
                    .ok()
                    .and_then(|e8| UsdPrice::from_e8(e8).ok())
                    .ok_or_else(|| {
                        RowError::SignData(format!(
                            "price_e8 {:?} of {} is not a price",
                            entry.price_e8, entry.signer
                        ))
                    })?;
                Ok(SignedObservation {
                    signer: entry.signer,
                    observation: Observation {
                        price,
                        observed_at: entry.observed_at,
                    },
                    signature: entry.signature,
                })
            })
            .collect::<Result<_, RowError>>()?;
        let commits = serde_json::from_value(row.commits.clone())
            .map_err(|err| RowError::Commits(err.to_string()))?;
        Ok(Self {
            round: Round {
                config,
                pair,
                id,
                origin,
            },
            observations,
            commits,
        })
    }
}

/// The row the flush writes for `report` (with `seq`, and `written_by` its origin), for tests
/// that need a stored row without a database.
#[cfg(any(test, feature = "test-util"))]
pub fn row_of(report: &Report, seq: i64) -> StoredPrice {
    let at = |seconds: u64| {
        chrono::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX), 0)
            .unwrap_or_default()
            .fixed_offset()
    };
    let time = report.time().unwrap_or(0);
    let (first, last) = report.observed_range().unwrap_or_default();
    let origin = report.round.origin.to_checksum(None);
    StoredPrice {
        id: i64::try_from(report.round.id).unwrap_or(i64::MAX),
        pair: report.round.pair.name().to_owned(),
        price: report.value().map(UsdPrice::to_decimal).unwrap_or_default(),
        observed_at: at(time),
        first_signer: origin.clone(),
        sign_data: serde_json::to_value(sign_data(report)).unwrap_or_default(),
        signer_count: i32::try_from(report.observations.len()).unwrap_or(i32::MAX),
        lastsigned_time: at(last),
        created_time: at(last),
        written_by: origin,
        spread: report.spread(),
        first_observed_at: at(first),
        last_observed_at: at(last),
        config: report.round.config.to_string(),
        commits: serde_json::to_value(&report.commits).unwrap_or_default(),
        seq,
    }
}
