//! Coingecko: `GET /api/v3/simple/price?ids=ethereum&vs_currencies=usd`.
//!
//! `{"ethereum":{"usd":3124.56}}` — a JSON number, sometimes an integer. The number's text is
//! parsed as an exact decimal, never through a float.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ParseError, UsdPrice};

pub(super) const PATH: &str = "/api/v3/simple/price?ids=ethereum&vs_currencies=usd";

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    ethereum: Option<Quote<'a>>,
}

#[derive(Deserialize)]
struct Quote<'a> {
    #[serde(borrow)]
    usd: Option<&'a RawValue>,
}

pub(super) fn parse(body: &[u8]) -> Result<UsdPrice, ParseError> {
    let response: Response = super::parse_json(body)?;
    let usd = response
        .ethereum
        .and_then(|quote| quote.usd)
        .ok_or_else(|| ParseError::Shape("no ethereum.usd price".into()))?;
    let text = usd.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(ParseError::Shape(format!(
            "ethereum.usd is {}, not a number",
            super::truncate_for_display(text)
        )));
    }
    Ok(UsdPrice::parse_quote(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(parse(body).unwrap().to_string(), expected);
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
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
