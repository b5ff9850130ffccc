//! A stored row read back as the signed price it records: the one conversion the API,
//! `oracle verify` and the tests use, so that they all see the same fields the flush wrote.

use alloy_primitives::Address;

use super::reports::StoredPrice;
use crate::pair::Pair;
use crate::price::UsdPrice;
use crate::signed::{PriceData, SignatureEntry, SignedPrice};

/// Why a row is not a signed price this code can read. Only a hand-written row can be like
/// that: the flush writes none.
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
    #[error("sign_data is not a signature list: {0}")]
    SignData(String),
}

impl TryFrom<&StoredPrice> for SignedPrice {
    type Error = RowError;

    fn try_from(row: &StoredPrice) -> Result<Self, RowError> {
        let id = u64::try_from(row.id).map_err(|_| RowError::NegativeId(row.id))?;
        let pair: Pair = row
            .pair
            .parse()
            .map_err(|err| RowError::UnknownPair(format!("{err}")))?;
        let price =
            UsdPrice::from_exact(row.price).map_err(|err| RowError::Price(err.to_string()))?;
        let observed_at = u64::try_from(row.observed_at.timestamp())
            .map_err(|_| RowError::ObservedAt(row.observed_at.to_string()))?;
        let origin: Address = row
            .first_signer
            .parse()
            .map_err(|_| RowError::FirstSigner(row.first_signer.clone()))?;
        let signatures: Vec<SignatureEntry> = serde_json::from_value(row.sign_data.clone())
            .map_err(|err| RowError::SignData(err.to_string()))?;
        Ok(Self {
            data: PriceData {
                pair,
                id,
                price,
                observed_at,
                origin,
            },
            signatures,
        })
    }
}
