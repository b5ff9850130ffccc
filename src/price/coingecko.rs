//! Coingecko: `GET /api/v3/simple/price?ids=ethereum&vs_currencies=usd` (bitcoin, solana for the
//! other pairs).
//!
//! `{"ethereum":{"usd":3124.56}}` — a JSON number, sometimes an integer. The number's text is
//! parsed as an exact decimal, never through a float.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseError, UsdPrice};
use crate::pair::Pair;

/// Coingecko's id of the pair's base asset.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    Some(match pair {
        Pair::EthUsd => "ethereum",
        Pair::BtcUsd => "bitcoin",
        Pair::SolUsd => "solana",
    })
}

pub(super) fn path(pair: Pair) -> Option<String> {
    symbol(pair).map(|id| format!("/api/v3/simple/price?ids={id}&vs_currencies=usd"))
}

/// `{"<id>": {"usd": …}}`.
type Response<'a> = HashMap<&'a str, Quote<'a>>;

#[derive(Deserialize)]
struct Quote<'a> {
    #[serde(borrow)]
    usd: Option<&'a RawValue>,
}

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<UsdPrice, ParseError> {
    let response: Response = super::parse_json(body)?;
    let id = symbol(pair).unwrap_or_default();
    let usd = response
        .get(id)
        .and_then(|quote| quote.usd)
        .ok_or_else(|| ParseError::Shape(format!("no {id}.usd price")))?;
    let text = usd.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(ParseError::Shape(format!(
            "{id}.usd is {}, not a number",
            super::truncate_for_display(text)
        )));
    }
    Ok(UsdPrice::parse_quote(text)?)
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
            assert_eq!(parse(Pair::EthUsd, body).unwrap().to_string(), expected);
        }
    }

    #[test]
    fn rejects_wrong_shapes() {
        for body in [
            &br#"{"ethereum":{"usd":"3124.56"}}"#[..],
            br#"{"ethereum":{"eur":3124.56}}"#,
            br#"{"ethereum":{}}"#,
            br#"{}"#,
            br#"{"ethereum":{"usd":null}}"#,
            br#"{"ethereum":{"usd":0}}"#,
            br#"{"ethereum":{"usd":-3}}"#,
            br#"{"ethereum":{"usd":1e400}}"#,
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
