//! Coingecko: `GET /api/v3/simple/price?ids=ethereum,bitcoin,solana&vs_currencies=usd&include_last_updated_at=true`,
//! every pair in one request.
//!
//! `{"ethereum":{"usd":3124.56,"last_updated_at":1763700000},"bitcoin":{…}}` — the price is a
//! JSON number, sometimes an integer, whose text is parsed as an exact decimal, never through a
//! float. `last_updated_at` (unix seconds) is when Coingecko last updated the price: its public
//! API serves prices from a cache, so a quote can be older than the request.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseError, Quote, UsdPrice};
use crate::pair::{Pair, PairSet};

/// Coingecko's id of the pair's base asset.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    Some(match pair {
        Pair::EthUsd => "ethereum",
        Pair::BtcUsd => "bitcoin",
        Pair::SolUsd => "solana",
    })
}

/// One request for every pair of `pairs` Coingecko quotes.
pub(super) fn path(pairs: PairSet) -> String {
    let ids: Vec<&str> = pairs.iter().filter_map(symbol).collect();
    format!(
        "/api/v3/simple/price?ids={}&vs_currencies=usd&include_last_updated_at=true",
        ids.join(",")
    )
}

/// `{"<id>": {"usd": …, "last_updated_at": …}}`.
type Response<'a> = HashMap<&'a str, Entry<'a>>;

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    usd: Option<&'a RawValue>,
    last_updated_at: Option<u64>,
}

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<Quote, ParseError> {
    let response: Response = super::parse_json(body)?;
    let id = symbol(pair).unwrap_or_default();
    let entry = response
        .get(id)
        .ok_or_else(|| ParseError::Shape(format!("no {id} in the answer")))?;
    let usd = entry
        .usd
        .ok_or_else(|| ParseError::Shape(format!("no {id}.usd price")))?;
    let text = usd.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(ParseError::Shape(format!(
            "{id}.usd is {}, not a number",
            crate::logging::truncate_for_display(text)
        )));
    }
    Ok(Quote {
        price: UsdPrice::parse_quote(text)?,
        updated_at: entry
            .last_updated_at
            .and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;

    #[test]
    fn parses_numbers_exactly() {
        let cases = [
            (&br#"{"ethereum":{"usd":3124.56}}"#[..], "3124.56000000"),
            (br#"{"ethereum":{"usd":3124}}"#, "3124.00000000"),
            (br#"{"ethereum":{"usd":3.12456e3}}"#, "3124.56000000"),
            (
                br#"{"ethereum":{"usd":3124.5600000000004}}"#,
                "3124.56000000",
            ),
        ];
        for (body, expected) in cases {
            let quote = parse(Pair::EthUsd, body).unwrap();
            assert_eq!(quote.price.to_string(), expected);
            assert_eq!(quote.updated_at, None);
        }
    }

    #[test]
    fn parses_each_pair_of_a_batch_with_its_update_time() {
        let body = br#"{"bitcoin":{"usd":90000,"last_updated_at":1763700060},"ethereum":{"usd":3124.56,"last_updated_at":1763700000},"solana":{"usd":150.1,"last_updated_at":1763699990}}"#;
        let quote = parse(Pair::EthUsd, body).unwrap();
        assert_eq!(quote.price.to_string(), "3124.56000000");
        assert_eq!(
            quote.updated_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_763_700_000))
        );
        assert_eq!(
            parse(Pair::BtcUsd, body).unwrap().price.to_string(),
            "90000.00000000"
        );
        assert_eq!(
            parse(Pair::SolUsd, body).unwrap().price.to_string(),
            "150.10000000"
        );
    }

    #[test]
    fn one_request_names_every_pair() {
        assert_eq!(
            path(PairSet::ALL),
            "/api/v3/simple/price?ids=ethereum,bitcoin,solana&vs_currencies=usd&include_last_updated_at=true"
        );
        assert_eq!(
            path(PairSet::only(Pair::SolUsd)),
            "/api/v3/simple/price?ids=solana&vs_currencies=usd&include_last_updated_at=true"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        for body in [
            &br#"{"ethereum":{"usd":"3124.56"}}"#[..],
            br#"{"ethereum":{"eur":3124.56}}"#,
            br#"{"ethereum":{}}"#,
            br#"{}"#,
            br#"{"bitcoin":{"usd":3124.56}}"#,
            br#"{"ethereum":{"usd":null}}"#,
            br#"{"ethereum":{"usd":0}}"#,
            br#"{"ethereum":{"usd":-3}}"#,
            br#"{"ethereum":{"usd":1e400}}"#,
            br#"{"ethereum":{"usd":3124.56,"last_updated_at":"yesterday"}}"#,
            br#"{"status":{"error_code":429,"error_message":"rate limited"}}"#,
        ] {
            assert!(
                parse(Pair::EthUsd, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
