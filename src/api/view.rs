//! The JSON a consumer gets for a stored price: every field needed to verify it without this
//! code — the signed fields, the digest recomputed from them, the signatures, and the report the
//! verifier contract takes. One function builds it, for the HTTP API and `oracle prices` alike.
//!
//! Every 64-bit integer that can pass 2⁵³ (`id`, `price_e8`, `seq`) is a decimal string, since
//! JavaScript and many JSON libraries read numbers as doubles and would round it silently.

use alloy_primitives::hex;
use chrono::SecondsFormat;
use serde::Serialize;
use utoipa::ToSchema;

use crate::report::Report;
use crate::signed::SignedPrice;
use crate::store::reports::StoredPrice;
use crate::store::row::RowError;

/// A stored price, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PriceView {
    /// Sonyflake-style id, decimal (ids exceed 2⁵³).
    #[schema(example = "99994137125717029")]
    pub id: String,
    #[schema(example = "ETH/USD")]
    pub pair: String,
    /// USD, exactly as stored: `price_e8 / 10⁸`, 8 decimals.
    #[schema(example = "3124.56789000")]
    pub price: String,
    /// The price × 10⁸ as the digest signs it (`int256`), decimal.
    #[schema(example = "312456789000")]
    pub price_e8: String,
    /// When the origin fetched the price, unix seconds (signed).
    #[schema(example = 1763700000)]
    pub observed_at: u64,
    /// `observed_at` in RFC 3339, UTC.
    #[schema(example = "2025-11-21T04:40:00Z")]
    pub observed_at_iso: String,
    /// `keccak256(abi.encode(DOMAIN, keccak256(pair), uint64 id, int256 price_e8,
    /// uint64 observed_at))`, recomputed from the fields above: what every signature signs
    /// (EIP-191, `personal_sign` of these 32 bytes).
    #[schema(example = "0xdd6a7f59cad3b60997cc7a546a94d05957e9b6d8d5b530b49baab4ee2a968a02")]
    pub digest: String,
    /// Every signature stored with the price.
    pub signatures: Vec<SignatureView>,
    /// Commit order of the row: the cursor for `after=` and `Last-Event-ID`, decimal.
    #[schema(example = "4711")]
    pub seq: String,
    /// The node that stored it (EIP-55).
    pub written_by: String,
    /// `abi.encode(bytes32 keccak256(pair), uint64 id, int256 price_e8, uint64 observed_at,
    /// bytes[] signatures)`, 0x-hex: the bytes the verifier contract's `verify` takes.
    pub report: String,
}

/// One signer's EIP-191 signature over the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SignatureView {
    /// The signer's address (EIP-55).
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

impl PriceView {
    /// The view of a stored row. A row this code cannot make sense of (a pair it does not know,
    /// a price that is not 8 decimals, a signature list that is not one) says why: only a
    /// hand-written row can be like that, since the flush writes none.
    pub fn from_row(row: &StoredPrice) -> Result<Self, RowError> {
        let signed = SignedPrice::try_from(row)?;
        let data = &signed.data;
        Ok(Self {
            id: data.id.to_string(),
            pair: data.pair.name().to_owned(),
            price: row.price.to_string(),
            price_e8: data.price.e8().to_string(),
            observed_at: data.observed_at,
            observed_at_iso: row
                .observed_at
                .to_utc()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            digest: data.digest().to_string(),
            signatures: signed
                .signatures
                .iter()
                .map(|entry| SignatureView {
                    signer: entry.signer.to_checksum(None),
                    signature: entry.signature.to_string(),
                })
                .collect(),
            seq: row.seq.to_string(),
            written_by: row.written_by.clone(),
            report: hex::encode_prefixed(Report::from(&signed).encode()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::{PAIR_HASH, SignatureEntry, price_digest};
    use alloy_primitives::b256;
    use chrono::DateTime;

    /// The normative test vector of the design notes.
    const SECRET: [u8; 32] =
        b256!("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").0;
    const DIGEST: &str = "0xdd6a7f59cad3b60997cc7a546a94d05957e9b6d8d5b530b49baab4ee2a968a02";
    const SIGNATURE: &str = "0xef40f898a0a03afabeb62c43d08626fa6e6fe4c1d4f1fa9158614c61ef1f96fc5f626da19ed8a030971217620263d09966d9c9c514b3684eb7586f20a0c960881c";

    fn vector_row() -> StoredPrice {
        let identity = Identity::from_secret(&SECRET).unwrap();
        let price = UsdPrice::from_e8(312_456_789_000).unwrap();
        let digest = price_digest(Pair::EthUsd, 1_234_567_890_123_456, price, 1_763_700_000);
        let entries = vec![SignatureEntry::sign(identity.signer(), digest)];
        let at = DateTime::from_timestamp(1_763_700_000, 0)
            .unwrap()
            .fixed_offset();
        StoredPrice {
            id: 1_234_567_890_123_456,
            pair: "ETH/USD".into(),
            price: price.to_decimal(),
            observed_at: at,
            first_signer: identity.address().to_checksum(None),
            sign_data: serde_json::to_value(&entries).unwrap(),
            signer_count: 1,
            lastsigned_time: at,
            created_time: at,
            written_by: identity.address().to_checksum(None),
            seq: 7,
        }
    }

    #[test]
    fn the_view_of_the_test_vector_carries_its_digest_signature_and_report() {
        let view = PriceView::from_row(&vector_row()).unwrap();
        assert_eq!(view.id, "1234567890123456");
        assert_eq!(view.price, "3124.56789000");
        assert_eq!(view.price_e8, "312456789000");
        assert_eq!(view.observed_at, 1_763_700_000);
        assert_eq!(view.observed_at_iso, "2025-11-21T04:40:00Z");
        assert_eq!(view.digest, DIGEST);
        assert_eq!(
            view.signatures,
            vec![SignatureView {
                signer: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".into(),
                signature: SIGNATURE.into(),
            }]
        );
        assert_eq!(view.seq, "7");
        let report = Report::decode(&hex::decode(&view.report).unwrap()).unwrap();
        assert_eq!(report.pair_hash, PAIR_HASH);
        assert_eq!(
            (report.id, report.price_e8, report.observed_at),
            (1_234_567_890_123_456, 312_456_789_000, 1_763_700_000)
        );
        assert_eq!(report.signatures[0].to_string(), SIGNATURE);
        let json = serde_json::to_value(&view).unwrap();
        assert!(json["id"].is_string() && json["seq"].is_string() && json["price_e8"].is_string());
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
        assert!(broken(|row| row.price = rust_decimal::Decimal::new(1, 9)).contains("price"));
    }
}
