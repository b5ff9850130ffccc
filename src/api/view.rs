//! The JSON a consumer gets for a price: every field needed to verify it without this code —
//! the round, each member's observation with the digest it signs and its signature, the median
//! and how the observations spread, and the report the verifier contract takes. One function
//! builds it from a stored row (for the HTTP API and `oracle prices` alike), another from a
//! round the node's pool has just verified (for the `verified` stream events).
//!
//! Every 64-bit integer that can pass 2⁵³ (`id`, `price_e8`, `seq`) is a decimal string, since
//! JavaScript and many JSON libraries read numbers as doubles and would round it silently.

use alloy_primitives::hex;
use chrono::{DateTime, SecondsFormat};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::price::UsdPrice;
use crate::report::OnChainReport;
use crate::signed::Report;
use crate::store::reports::StoredPrice;
use crate::store::row::RowError;

/// Where a price stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceStatus {
    /// Its round holds a quorum of member signatures in the serving node's pool, and is not
    /// stored yet: the report verifies on chain, but the stored row may carry more
    /// observations (and so a slightly different median), and no `seq` exists yet.
    Verified,
    /// Stored in the database: final.
    Stored,
}

/// A price, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceView {
    /// `stored`, or `verified` (not stored yet) in the stream's `verified` events and from
    /// `latest?include=verified`.
    pub status: PriceStatus,
    /// The round's Sonyflake-style id, decimal (ids exceed 2⁵³).
    #[schema(example = "99994137125717029")]
    pub id: String,
    #[schema(example = "ETH/USD")]
    pub pair: String,
    /// USD, 8 decimals: the median of the observations' prices — sorted ascending, the one at
    /// index ⌊n/2⌋. Exactly `price_e8 / 10⁸`.
    #[schema(example = "3124.56789000")]
    pub price: String,
    /// The median × 10⁸, decimal.
    #[schema(example = "312456789000")]
    pub price_e8: String,
    /// The report's time, unix seconds: the median of its observations' times (rows stored
    /// under protocol v1: their origin's observation time).
    #[schema(example = 1763700000)]
    pub observed_at: u64,
    /// `observed_at` in RFC 3339, UTC.
    #[schema(example = "2025-11-21T04:40:00Z")]
    pub observed_at_iso: String,
    /// (max − min) / median of the observations' prices, 8 decimals: 0 when they all agree.
    #[schema(example = "0.00080000")]
    pub spread: String,
    /// The oldest observation, unix seconds.
    #[schema(example = 1763700000)]
    pub first_observed_at: u64,
    /// The newest observation, unix seconds.
    #[schema(example = 1763700002)]
    pub last_observed_at: u64,
    /// The round's origin (EIP-55): the member that started it.
    #[schema(example = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")]
    pub origin: String,
    /// The configuration digest every observation is signed under (the first word of each
    /// digest): the network, chain, verifier, member set and fault bound.
    #[schema(example = "0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d")]
    pub config: String,
    /// Every member's observation with the price, each signed over its own digest. A price
    /// under the configuration `GET /v1/network` shows holds at least its `quorum` (2f + 1) of
    /// distinct members.
    pub observations: Vec<ObservationView>,
    /// What the commits sign (docs/protocol.md, the report digest): `keccak256(abi.encode(
    /// bytes32 config, bytes32 keccak256("report"), bytes32 keccak256(pair), uint64 id, int256
    /// median_e8, uint64 observed_at, uint64 count, bytes32 observations))` of this exact set of
    /// observations, recomputed. `null` while no member has committed (and for prices stored
    /// under protocol v1).
    #[schema(example = "0x5d1b1f0c7b7a6a3b1cbb3e8e1c0c6a3f3b7e2a6c2e8b0d7e1f4a9c3b5d6e7f80")]
    pub report_digest: Option<String>,
    /// Members' EIP-191 signatures over `report_digest`, each committing to exactly these
    /// observations: a price is reported once `commit_threshold` (f + 1) distinct members of its
    /// configuration have. Empty while none has (and under protocol v1).
    pub commits: Vec<CommitView>,
    /// Commit order of the row: the cursor for `after=` and `Last-Event-ID`, decimal; `null`
    /// while only verified.
    #[schema(example = "4711")]
    pub seq: Option<String>,
    /// The node that stored it (EIP-55); `null` while only verified.
    pub written_by: Option<String>,
    /// The committed report, 0x-hex: `abi.encode(bytes32 config, bytes32 keccak256(pair),
    /// uint64 id, int256 median, uint64 observedAt, uint64 count, bytes32 observations, bytes[]
    /// signatures)` with every commit signature the price carries — the bytes the verifier
    /// contract's `verify` and the feed's `update` take. `null` for a price no member has
    /// committed to (a round only verified, not committed yet) and for prices stored under
    /// protocol v1, which the verifier cannot check.
    pub report: Option<String>,
}

/// One member's observation and its EIP-191 signature over the observation's own digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ObservationView {
    /// The signer's address (EIP-55).
    #[schema(example = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")]
    pub signer: String,
    /// The price it observed, USD, 8 decimals.
    #[schema(example = "3124.56789000")]
    pub price: String,
    /// That price × 10⁸, decimal.
    #[schema(example = "312456789000")]
    pub price_e8: String,
    /// When it observed it, unix seconds.
    #[schema(example = 1763700000)]
    pub observed_at: u64,
    /// `keccak256(abi.encode(DOMAIN, keccak256(pair), uint64 id, int256 price_e8,
    /// uint64 observed_at))` of this observation, recomputed: what the signature signs (EIP-191,
    /// `personal_sign` of these 32 bytes).
    #[schema(example = "0xdd6a7f59cad3b60997cc7a546a94d05957e9b6d8d5b530b49baab4ee2a968a02")]
    pub digest: String,
    /// 65 bytes `r ‖ s ‖ v`, `v` ∈ {27, 28}, 0x-hex.
    pub signature: String,
}

/// One member's commit: its EIP-191 signature over the price's `report_digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CommitView {
    /// The committing member's address (EIP-55).
    #[schema(example = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23")]
    pub signer: String,
    /// 65 bytes `r ‖ s ‖ v`, `v` ∈ {27, 28}, 0x-hex.
    pub signature: String,
}

/// A page of history in commit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PricePage {
    pub prices: Vec<PriceView>,
    /// Pass as `after=` for the next page; `null` when this page was the last one so far.
    pub next: Option<String>,
}

/// What a stored row adds to its report, or what a verified round's report says itself.
struct Shown {
    status: PriceStatus,
    price: UsdPrice,
    observed_at: u64,
    spread: Decimal,
    observed_range: (u64, u64),
    seq: Option<i64>,
    written_by: Option<String>,
}

impl PriceView {
    /// The view of a stored row. A row this code cannot make sense of (a pair it does not know,
    /// a price that is not 8 decimals, observations that are not a list of them) says why: only
    /// a hand-written row can be like that, since the flush writes none.
    pub fn from_row(row: &StoredPrice) -> Result<Self, RowError> {
        let report = Report::try_from(row)?;
        let unix = |at: DateTime<chrono::FixedOffset>| u64::try_from(at.timestamp()).unwrap_or(0);
        let price =
            UsdPrice::from_exact(row.price).map_err(|err| RowError::Price(err.to_string()))?;
        let shown = Shown {
            status: PriceStatus::Stored,
            price,
            observed_at: unix(row.observed_at),
            spread: row.spread,
            observed_range: (unix(row.first_observed_at), unix(row.last_observed_at)),
            seq: Some(row.seq),
            written_by: Some(row.written_by.clone()),
        };
        Ok(Self::build(&report, shown))
    }

    /// The view of a round just verified, not stored yet: everything comes from its report.
    /// `None` for a report without its origin's observation (a verified round always has it).
    pub fn verified(report: &Report) -> Option<Self> {
        report.origin_observation()?;
        let shown = Shown {
            status: PriceStatus::Verified,
            price: report.value()?,
            observed_at: report.time()?,
            spread: report.spread(),
            observed_range: report.observed_range()?,
            seq: None,
            written_by: None,
        };
        Some(Self::build(report, shown))
    }

    fn build(report: &Report, shown: Shown) -> Self {
        let round = &report.round;
        let observations = report
            .observations
            .iter()
            .map(|entry| ObservationView {
                signer: entry.signer.to_checksum(None),
                price: entry.observation.price.to_string(),
                price_e8: entry.observation.price.e8().to_string(),
                observed_at: entry.observation.observed_at,
                digest: report.signed_fields(entry).digest().to_string(),
                signature: entry.signature.to_string(),
            })
            .collect();
        let observed_at_iso = i64::try_from(shown.observed_at)
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default();
        Self {
            status: shown.status,
            id: round.id.to_string(),
            pair: round.pair.name().to_owned(),
            price: shown.price.to_string(),
            price_e8: shown.price.e8().to_string(),
            observed_at: shown.observed_at,
            observed_at_iso,
            spread: format!("{:.8}", shown.spread),
            first_observed_at: shown.observed_range.0,
            last_observed_at: shown.observed_range.1,
            origin: round.origin.to_checksum(None),
            config: round.config.to_string(),
            observations,
            // Shown with the commits that sign it: without any it names nothing to check.
            report_digest: report
                .digest()
                .filter(|_| !report.commits.is_empty())
                .map(|digest| digest.to_string()),
            commits: report
                .commits
                .iter()
                .map(|commit| CommitView {
                    signer: commit.signer.to_checksum(None),
                    signature: commit.signature.to_string(),
                })
                .collect(),
            seq: shown.seq.map(|seq| seq.to_string()),
            written_by: shown.written_by,
            // A report without an on-chain form shows null rather than bytes no verifier takes.
            report: OnChainReport::try_from(report)
                .ok()
                .map(|on_chain| hex::encode_prefixed(on_chain.encode())),
        }
    }

    /// Whether this is a fresher price than `other`: the later round time, then the greater id;
    /// for the same round, the stored view.
    pub fn is_fresher_than(&self, other: &PriceView) -> bool {
        let key = |view: &PriceView| {
            (
                view.observed_at,
                view.id.parse::<u64>().unwrap_or(0),
                view.status == PriceStatus::Stored,
            )
        };
        key(self) > key(other)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pair::Pair;
    use crate::signed::{Observation, PAIR_HASH, PriceData, Round, SignedObservation};
    use crate::store::row::row_of;
    use alloy_primitives::b256;

    /// The normative test vector of the design notes.
    const SECRET: [u8; 32] =
        b256!("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").0;
    const DIGEST: &str = "0xdd6a7f59cad3b60997cc7a546a94d05957e9b6d8d5b530b49baab4ee2a968a02";
    const SIGNATURE: &str = "0xef40f898a0a03afabeb62c43d08626fa6e6fe4c1d4f1fa9158614c61ef1f96fc5f626da19ed8a030971217620263d09966d9c9c514b3684eb7586f20a0c960881c";

    /// The vector's price as a round of its own, and a second member seeing 3126 two seconds on.
    pub(crate) fn vector_row() -> StoredPrice {
        let origin = Identity::from_secret(&SECRET).unwrap();
        let other = Identity::from_secret(&[1; 32]).unwrap();
        // Under the v1 domain word, so that the vector's observation keeps its v1 signature.
        let round = Round {
            config: crate::signed::V1_DOMAIN,
            pair: Pair::EthUsd,
            id: 1_234_567_890_123_456,
            origin: origin.address(),
        };
        let observed = |signer: &Identity, e8: i64, at: u64| {
            let observation = Observation {
                price: UsdPrice::from_e8(e8).unwrap(),
                observed_at: at,
            };
            SignedObservation {
                signer: signer.address(),
                observation,
                signature: PriceData::new(round, observation)
                    .sign(signer.signer())
                    .signature,
            }
        };
        let report = Report {
            round,
            observations: vec![
                observed(&origin, 312_456_789_000, 1_763_700_000),
                observed(&other, 312_600_000_000, 1_763_700_002),
            ],
            commits: Vec::new(),
        };
        row_of(&report, 7)
    }

    #[test]
    fn the_view_carries_each_observation_with_its_digest_and_signature_and_the_report() {
        let view = PriceView::from_row(&vector_row()).unwrap();
        assert_eq!(view.id, "1234567890123456");
        // Two observations: the median is the one at index 1, the higher. A v1 row's time is
        // its origin's.
        assert_eq!(view.price, "3126.00000000");
        assert_eq!(view.price_e8, "312600000000");
        assert_eq!(view.observed_at, 1_763_700_000);
        assert_eq!(view.observed_at_iso, "2025-11-21T04:40:00Z");
        assert_eq!(view.spread, "0.00045812");
        assert_eq!(
            (view.first_observed_at, view.last_observed_at),
            (1_763_700_000, 1_763_700_002)
        );
        assert_eq!(view.origin, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
        let vector = &view.observations[0];
        assert_eq!(
            (
                vector.price.as_str(),
                vector.digest.as_str(),
                vector.signature.as_str()
            ),
            ("3124.56789000", DIGEST, SIGNATURE)
        );
        assert_ne!(
            view.observations[1].digest, DIGEST,
            "each signs its own digest"
        );
        assert_eq!(view.seq.as_deref(), Some("7"));
        assert_eq!(view.status, PriceStatus::Stored);
        let json = serde_json::to_value(&view).unwrap();
        assert!(json["id"].is_string() && json["seq"].is_string() && json["price_e8"].is_string());
        assert_eq!(json["status"], "stored");
        // A v1 row has no on-chain form: the v2 verifier cannot check it.
        assert_eq!(view.report, None);
        assert!(json["report"].is_null(), "{json}");
    }

    /// The vector's round under a v2 configuration, committed by `commits` of its two members.
    fn committed_row(commits: usize) -> (StoredPrice, Report) {
        let keys = [
            Identity::from_secret(&SECRET).unwrap(),
            Identity::from_secret(&[1; 32]).unwrap(),
        ];
        let mut report = Report::try_from(&vector_row()).unwrap();
        report.round.config = alloy_primitives::B256::repeat_byte(7);
        for entry in &mut report.observations {
            let key = keys
                .iter()
                .find(|key| key.address() == entry.signer)
                .unwrap();
            entry.signature = PriceData::new(report.round, entry.observation)
                .sign(key.signer())
                .signature;
        }
        let digest = report.digest().unwrap();
        report.commits = keys[..commits]
            .iter()
            .map(|key| crate::signed::SignatureEntry::sign(key.signer(), digest))
            .collect();
        (row_of(&report, 7), report)
    }

    #[test]
    fn a_committed_price_shows_its_on_chain_report_and_an_uncommitted_one_null() {
        let (row, report) = committed_row(2);
        let view = PriceView::from_row(&row).unwrap();
        let on_chain = OnChainReport::decode(&hex::decode(view.report.unwrap()).unwrap()).unwrap();
        assert_eq!(on_chain, OnChainReport::try_from(&report).unwrap());
        assert_eq!(on_chain.pair_hash, PAIR_HASH);
        assert_eq!(on_chain.id, 1_234_567_890_123_456);
        assert_eq!(on_chain.median_e8, 312_600_000_000);
        assert_eq!(on_chain.signatures.len(), 2);
        // A round verified but not committed yet: its view has no report.
        let (_, uncommitted) = committed_row(0);
        let verified = PriceView::verified(&uncommitted).unwrap();
        assert_eq!(verified.report, None);
        assert!(serde_json::to_value(&verified).unwrap()["report"].is_null());
    }

    #[test]
    fn a_verified_round_reads_like_its_stored_row_but_for_the_storage() {
        let row = vector_row();
        let report = Report::try_from(&row).unwrap();
        let stored = PriceView::from_row(&row).unwrap();
        let verified = PriceView::verified(&report).unwrap();
        assert_eq!(verified.status, PriceStatus::Verified);
        assert_eq!(
            (verified.seq.as_ref(), verified.written_by.as_ref()),
            (None, None)
        );
        assert_eq!(
            PriceView {
                status: PriceStatus::Stored,
                seq: stored.seq.clone(),
                written_by: stored.written_by.clone(),
                ..verified.clone()
            },
            stored
        );
        assert!(stored.is_fresher_than(&verified));
        assert!(!verified.is_fresher_than(&stored));
        let json = serde_json::to_value(&verified).unwrap();
        assert_eq!(json["status"], "verified");
        assert!(json["seq"].is_null());
    }

    #[test]
    fn a_row_that_cannot_be_shown_says_why() {
        let broken = |change: fn(&mut StoredPrice)| {
            let mut row = vector_row();
            change(&mut row);
            PriceView::from_row(&row).unwrap_err().to_string()
        };
        assert!(broken(|row| row.id = -1).contains("negative id"));
        assert!(broken(|row| row.pair = "DOGE/USD".into()).contains("unknown pair"));
        assert!(broken(|row| row.sign_data = serde_json::json!({})).contains("sign_data"));
        assert!(broken(|row| row.sign_data[0]["price_e8"] = "x".into()).contains("price_e8"));
        assert!(broken(|row| row.price = rust_decimal::Decimal::new(1, 9)).contains("price"));
    }
}
