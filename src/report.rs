//! The on-chain report: the bytes a consumer hands to the verifier contract
//! (`contracts/PriceVerifier.sol`) or the push feed (`contracts/PriceFeed.sol`), built from a
//! round's report.
//!
//! ```text
//! report = abi.encode(bytes32 pair, uint64 id, Observation[] observations)
//! Observation = (int256 priceE8, uint64 observedAt, bytes signature)
//! ```
//!
//! `pair` is `keccak256(pair name)`, the PAIR word of the normative digest, so the contract
//! recomputes each observation's digest from the report alone; each signature is the 65-byte
//! `r ‖ s ‖ v` over its own observation's digest. The contract recovers every signer, checks
//! that they are distinct members and at least a quorum, and takes the median of the prices by
//! the same rule as everyone else ([`crate::signed::median`]).

use alloy_primitives::{B256, Bytes, I256};
use alloy_sol_types::{SolValue, sol};

use crate::signed::{EthSignature, Report};

sol! {
    /// One member's observation in a report.
    struct AbiObservation {
        int256 priceE8;
        uint64 observedAt;
        bytes signature;
    }
}

/// A report as the contracts take it: no signer addresses (the contract recovers them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChainReport {
    pub pair_hash: B256,
    pub id: u64,
    pub observations: Vec<OnChainObservation>,
}

/// One observation of an [`OnChainReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainObservation {
    pub price_e8: i64,
    pub observed_at: u64,
    pub signature: EthSignature,
}

type Encoded = (B256, u64, Vec<AbiObservation>);

impl From<&Report> for OnChainReport {
    fn from(report: &Report) -> Self {
        Self {
            pair_hash: report.round.pair.hash(),
            id: report.round.id,
            observations: report
                .observations
                .iter()
                .map(|entry| OnChainObservation {
                    price_e8: entry.observation.price.e8(),
                    observed_at: entry.observation.observed_at,
                    signature: entry.signature,
                })
                .collect(),
        }
    }
}

impl OnChainReport {
    /// `abi.encode(...)` of the report, as `abi.decode(report, (bytes32, uint64,
    /// (int256, uint64, bytes)[]))` reads it.
    pub fn encode(&self) -> Vec<u8> {
        let observations = self
            .observations
            .iter()
            .map(|entry| AbiObservation {
                // Every i64 fits an int256.
                priceE8: I256::unchecked_from(entry.price_e8),
                observedAt: entry.observed_at,
                signature: Bytes::copy_from_slice(entry.signature.as_bytes()),
            })
            .collect();
        let encoded: Encoded = (self.pair_hash, self.id, observations);
        encoded.abi_encode_params()
    }

    /// The report read back from its ABI bytes (for tests and tools); `None` when the bytes are
    /// no report.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (pair_hash, id, observations) = Encoded::abi_decode_params(bytes).ok()?;
        let observations = observations
            .into_iter()
            .map(|entry| {
                Some(OnChainObservation {
                    price_e8: i64::try_from(entry.priceE8).ok()?,
                    observed_at: entry.observedAt,
                    signature: EthSignature::from_bytes(
                        <[u8; 65]>::try_from(entry.signature.as_ref()).ok()?,
                    ),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            pair_hash,
            id,
            observations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{Observation, PAIR_HASH, PriceData, Round, SignedObservation};
    use alloy_signer_local::PrivateKeySigner;

    #[test]
    fn a_report_round_trips_and_starts_with_the_pair_and_the_id() {
        let signer = PrivateKeySigner::random();
        let round = Round {
            config: crate::membership::Members::open().signing_config(),
            pair: Pair::EthUsd,
            id: 1_234_567_890_123_456,
            origin: signer.address(),
        };
        let observed = |e8: i64, at: u64| {
            let observation = Observation {
                price: UsdPrice::from_e8(e8).unwrap(),
                observed_at: at,
            };
            SignedObservation {
                signer: signer.address(),
                observation,
                signature: PriceData::new(round, observation).sign(&signer).signature,
            }
        };
        let report = OnChainReport::from(&Report {
            round,
            observations: vec![observed(312_456_789_000, 1_763_700_000), observed(1, 2)],
            commits: Vec::new(),
        });
        let bytes = report.encode();
        // Head: pair, id, offset of the array (3 words); the array's length and two offsets;
        // per observation a price, a time, an offset, a length and 65 bytes padded to 96.
        assert_eq!(bytes.len(), 32 * 3 + 32 * 3 + 2 * (32 * 4 + 96));
        assert_eq!(&bytes[..32], PAIR_HASH.as_slice());
        assert_eq!(OnChainReport::decode(&bytes), Some(report));
        assert_eq!(OnChainReport::decode(&bytes[..100]), None);
    }
}
