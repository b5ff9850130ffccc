//! The on-chain report: the bytes a consumer hands to the verifier contract
//! (`contracts/PriceVerifier.sol`), built from a stored price.
//!
//! ```text
//! report = abi.encode(bytes32 pair, uint64 id, int256 price_e8, uint64 observed_at, bytes[] signatures)
//! ```
//!
//! `pair` is `keccak256(pair name)`, the PAIR word of the normative digest, so the contract
//! recomputes the digest from the report alone; each signature is the 65-byte `r ‖ s ‖ v`.

use alloy_primitives::{B256, Bytes, I256};
use alloy_sol_types::SolValue;

use crate::signed::{EthSignature, SignedPrice};

/// The signed fields of a price and its signatures, as the verifier contract takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pair_hash: B256,
    pub id: u64,
    pub price_e8: i64,
    pub observed_at: u64,
    pub signatures: Vec<EthSignature>,
}

type Encoded = (B256, u64, I256, u64, Vec<Bytes>);

impl From<&SignedPrice> for Report {
    fn from(price: &SignedPrice) -> Self {
        let data = &price.data;
        Self {
            pair_hash: data.pair.hash(),
            id: data.id,
            price_e8: data.price.e8(),
            observed_at: data.observed_at,
            signatures: price
                .signatures
                .iter()
                .map(|entry| entry.signature)
                .collect(),
        }
    }
}

impl Report {
    /// `abi.encode(...)` of the report's fields, as `abi.decode(report, (bytes32, uint64,
    /// int256, uint64, bytes[]))` reads them.
    pub fn encode(&self) -> Vec<u8> {
        let encoded: Encoded = (
            self.pair_hash,
            self.id,
            // Every i64 fits an int256.
            I256::unchecked_from(self.price_e8),
            self.observed_at,
            self.signatures
                .iter()
                .map(|signature| Bytes::copy_from_slice(signature.as_bytes()))
                .collect(),
        );
        encoded.abi_encode_params()
    }

    /// The report read back from its ABI bytes (for tests and tools); `None` when the bytes are
    /// no report.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (pair_hash, id, price_e8, observed_at, signatures) =
            Encoded::abi_decode_params(bytes).ok()?;
        let signatures = signatures
            .iter()
            .map(|bytes| {
                <[u8; 65]>::try_from(bytes.as_ref())
                    .ok()
                    .map(EthSignature::from_bytes)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            pair_hash,
            id,
            price_e8: i64::try_from(price_e8).ok()?,
            observed_at,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{PAIR_HASH, PriceData};
    use alloy_signer_local::PrivateKeySigner;

    #[test]
    fn a_report_round_trips_and_starts_with_the_digest_words() {
        let signer = PrivateKeySigner::random();
        let data = PriceData {
            pair: Pair::EthUsd,
            id: 1_234_567_890_123_456,
            price: UsdPrice::from_e8(312_456_789_000).unwrap(),
            observed_at: 1_763_700_000,
            origin: signer.address(),
        };
        let report = Report::from(&SignedPrice {
            data,
            signatures: vec![data.sign(&signer); 2],
        });
        assert_eq!(report.pair_hash, PAIR_HASH);
        assert_eq!(report.price_e8, 312_456_789_000);
        let bytes = report.encode();
        // Head: pair, id, price, observed_at, offset of the array (5 words); then the array's
        // length, two offsets, and per signature a length word and 65 bytes padded to 96.
        assert_eq!(bytes.len(), 32 * 5 + 32 * 3 + 2 * (32 + 96));
        assert_eq!(&bytes[..32], PAIR_HASH.as_slice());
        assert_eq!(Report::decode(&bytes), Some(report));
        assert_eq!(Report::decode(&bytes[..100]), None);
    }
}
