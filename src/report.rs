//! The on-chain report: the bytes a relayer hands to the verifier contract
//! (`contracts/PriceVerifier.sol`, `verify`) or a push feed (`contracts/PriceFeed.sol`,
//! `update`), built from a committed round (protocol v2).
//!
//! ```text
//! report = abi.encode(bytes32 config, bytes32 pair, uint64 id, int256 median, uint64 observedAt,
//!                     uint64 count, bytes32 observations, bytes[] signatures)
//! ```
//!
//! `pair` is `keccak256(pair name)`; `median`, `observedAt`, `count` and `observations` are the
//! report's value, time, number of observations and [`Report::observations_digest`], so that
//! [`crate::signed::report_digest`] of these words is [`Report::digest`]; each signature is a
//! commit's 65-byte `r ‖ s ‖ v` over that digest. The contract sees the observations only
//! through their digest: it checks the configuration, the count (2f + 1), the time's freshness
//! and f + 1 distinct member signatures (docs/on-chain.md).
//!
//! Only a committed v2 report has this form. A v1 row (signed under [`V1_DOMAIN`]) has no
//! configuration digest and no commits, and a round still gathering observations has no
//! commits: [`OnChainReport::try_from`] refuses both ([`NoOnChainReport`]).

use alloy_primitives::{B256, Bytes, I256};
use alloy_sol_types::SolValue;

use crate::signed::{EthSignature, Report, V1_DOMAIN};

/// A committed report as the v2 contracts take it: no signer addresses (the contract recovers
/// them) and no observations (only their digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChainReport {
    /// The configuration digest the report was signed under.
    pub config: B256,
    pub pair_hash: B256,
    pub id: u64,
    /// The value, USD × 10⁸.
    pub median_e8: i64,
    /// The report's time: the median of its observations' times.
    pub observed_at: u64,
    /// How many observations the committed set holds.
    pub count: u64,
    pub observations_digest: B256,
    /// The commits' signatures over the report digest, in the order the report carries them.
    pub signatures: Vec<EthSignature>,
}

/// Why a report has no on-chain form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoOnChainReport {
    /// Signed under protocol v1, which the v2 verifier cannot check.
    #[error("a protocol v1 report has no on-chain form")]
    V1,
    /// No member has committed to it (yet).
    #[error("the report carries no commit signatures")]
    Uncommitted,
    /// No observations, so no value or time.
    #[error("the report has no observations")]
    Empty,
}

type Encoded = (B256, B256, u64, I256, u64, u64, B256, Vec<Bytes>);

impl TryFrom<&Report> for OnChainReport {
    type Error = NoOnChainReport;

    /// The report with every commit it carries; the contract needs f + 1 of them, and checks
    /// each one sent.
    fn try_from(report: &Report) -> Result<Self, Self::Error> {
        if report.round.config == V1_DOMAIN {
            return Err(NoOnChainReport::V1);
        }
        if report.commits.is_empty() {
            return Err(NoOnChainReport::Uncommitted);
        }
        let (Some(value), Some(observed_at)) = (report.value(), report.time()) else {
            return Err(NoOnChainReport::Empty);
        };
        Ok(Self {
            config: report.round.config,
            pair_hash: report.round.pair.hash(),
            id: report.round.id,
            median_e8: value.e8(),
            observed_at,
            // A usize always fits a u64 on the targets this builds for.
            count: report.observations.len() as u64,
            observations_digest: report.observations_digest(),
            signatures: report
                .commits
                .iter()
                .map(|commit| commit.signature)
                .collect(),
        })
    }
}

impl OnChainReport {
    /// `abi.encode(config, pair, id, median, observedAt, count, observations, signatures)`, as
    /// the contract's `abi.decode` reads it.
    pub fn encode(&self) -> Vec<u8> {
        let encoded: Encoded = (
            self.config,
            self.pair_hash,
            self.id,
            // Every i64 fits an int256.
            I256::unchecked_from(self.median_e8),
            self.observed_at,
            self.count,
            self.observations_digest,
            self.signatures
                .iter()
                .map(|signature| Bytes::copy_from_slice(signature.as_bytes()))
                .collect(),
        );
        encoded.abi_encode_params()
    }

    /// The report read back from its ABI bytes (for tests and tools); `None` when the bytes are
    /// no report, its median does not fit an `i64` or a signature is not 65 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (config, pair_hash, id, median, observed_at, count, observations_digest, signatures) =
            Encoded::abi_decode_params(bytes).ok()?;
        let signatures = signatures
            .iter()
            .map(|signature| {
                <[u8; 65]>::try_from(signature.as_ref())
                    .ok()
                    .map(EthSignature::from_bytes)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            config,
            pair_hash,
            id,
            median_e8: i64::try_from(median).ok()?,
            observed_at,
            count,
            observations_digest,
            signatures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{
        Observation, PAIR_HASH, PriceData, Round, SignatureEntry, SignedObservation, report_digest,
    };
    use alloy_signer_local::PrivateKeySigner;

    /// A v2 round of three members' observations (spread prices and times), committed by the
    /// first `commits` of them.
    fn committed(config: B256, commits: usize) -> (Report, Vec<PrivateKeySigner>) {
        let keys: Vec<PrivateKeySigner> = (0..3).map(|_| PrivateKeySigner::random()).collect();
        let round = Round {
            config,
            pair: Pair::EthUsd,
            id: 1_234_567_890_123_456,
            origin: keys[0].address(),
        };
        let observations = keys
            .iter()
            .zip([
                (312_456_789_000, 1_763_700_004),
                (1, 2),
                (312_500_000_000, 1_763_700_000),
            ])
            .map(|(key, (e8, at))| {
                let observation = Observation {
                    price: UsdPrice::from_e8(e8).unwrap(),
                    observed_at: at,
                };
                SignedObservation {
                    signer: key.address(),
                    observation,
                    signature: PriceData::new(round, observation).sign(key).signature,
                }
            })
            .collect();
        let mut report = Report {
            round,
            observations,
            commits: Vec::new(),
        };
        let digest = report.digest().unwrap();
        report.commits = keys[..commits]
            .iter()
            .map(|key| SignatureEntry::sign(key, digest))
            .collect();
        (report, keys)
    }

    #[test]
    fn a_committed_report_round_trips_and_its_words_digest_to_the_report_digest() {
        let (report, keys) = committed(B256::repeat_byte(7), 2);
        let on_chain = OnChainReport::try_from(&report).unwrap();
        assert_eq!(on_chain.median_e8, 312_456_789_000);
        assert_eq!(on_chain.observed_at, 1_763_700_000);
        assert_eq!(on_chain.count, 3);
        let bytes = on_chain.encode();
        // Head: 8 words (the last the array's offset); the array's length and 2 offsets; per
        // signature a length and 65 bytes padded to 96.
        assert_eq!(bytes.len(), 32 * 8 + 32 * 3 + 2 * (32 + 96));
        assert_eq!(&bytes[..32], B256::repeat_byte(7).as_slice());
        assert_eq!(&bytes[32..64], PAIR_HASH.as_slice());
        assert_eq!(OnChainReport::decode(&bytes), Some(on_chain.clone()));
        assert_eq!(OnChainReport::decode(&bytes[..100]), None);
        // What the contract recomputes from the words is what the commits signed.
        let digest = report_digest(
            report.round,
            UsdPrice::from_e8(on_chain.median_e8).unwrap(),
            on_chain.observed_at,
            on_chain.count as usize,
            on_chain.observations_digest,
        );
        assert_eq!(Some(digest), report.digest());
        for (signature, key) in on_chain.signatures.iter().zip(&keys) {
            assert_eq!(signature.recover(digest).unwrap(), key.address());
        }
    }

    #[test]
    fn v1_uncommitted_and_empty_reports_have_no_on_chain_form() {
        let (v1, _) = committed(V1_DOMAIN, 2);
        assert_eq!(OnChainReport::try_from(&v1), Err(NoOnChainReport::V1));
        let (uncommitted, _) = committed(B256::repeat_byte(7), 0);
        assert_eq!(
            OnChainReport::try_from(&uncommitted),
            Err(NoOnChainReport::Uncommitted)
        );
        let (mut empty, _) = committed(B256::repeat_byte(7), 1);
        empty.observations.clear();
        assert_eq!(OnChainReport::try_from(&empty), Err(NoOnChainReport::Empty));
    }

    #[test]
    fn a_signature_of_another_length_or_a_median_beyond_i64_does_not_decode() {
        let (report, _) = committed(B256::repeat_byte(7), 1);
        let on_chain = OnChainReport::try_from(&report).unwrap();
        let mut words: Encoded = Encoded::abi_decode_params(&on_chain.encode()).unwrap();
        words.7[0] = Bytes::from(vec![1; 64]);
        assert_eq!(OnChainReport::decode(&words.abi_encode_params()), None);
        let mut words: Encoded = Encoded::abi_decode_params(&on_chain.encode()).unwrap();
        words.3 = I256::MAX;
        assert_eq!(OnChainReport::decode(&words.abi_encode_params()), None);
    }
}
