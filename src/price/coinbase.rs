//! Coinbase: `GET /v2/exchange-rates?currency=ETH`.
//!
//! `{"data":{"currency":"ETH","rates":{"USD":"3124.56","EUR":"…",…}}}` — rates are strings.

use serde::Deserialize;

use super::{ParseError, UsdPrice};

pub(super) const PATH: &str = "/v2/exchange-rates?currency=ETH";

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
struct Data<'a> {
    currency: &'a str,
    #[serde(borrow)]
    rates: Rates<'a>,
}

#[derive(Deserialize)]
struct Rates<'a> {
    #[serde(rename = "USD")]
    usd: Option<&'a str>,
}

pub(super) fn parse(body: &[u8]) -> Result<UsdPrice, ParseError> {
    let response: Response = super::parse_json(body)?;
    if response.data.currency != "ETH" {
        return Err(ParseError::Shape(format!(
            "rates are for {:?}, not ETH",
            super::truncate_for_display(response.data.currency)
        )));
    }
    let usd = response
        .data
        .rates
        .usd
        .ok_or_else(|| ParseError::Shape("no USD rate".into()))?;
    Ok(UsdPrice::parse_quote(usd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_real_shape() {
        let body = br#"{"data":{"currency":"ETH","rates":{"AED":"11476.2","USD":"3124.565","EUR":"2700.1"}}}"#;
        assert_eq!(parse(body).unwrap().to_string(), "3124.56500000");
    }

    #[test]
    fn rejects_wrong_shapes() {
        for body in [
            &br#"{"data":{"currency":"BTC","rates":{"USD":"3124.56"}}}"#[..],
            br#"{"data":{"currency":"ETH","rates":{"EUR":"3124.56"}}}"#,
            br#"{"data":{"currency":"ETH","rates":{"USD":3124.56}}}"#,
            br#"{"data":{"currency":"ETH","rates":{"USD":"abc"}}}"#,
            br#"{"data":{"currency":"ETH","rates":{"USD":"-1"}}}"#,
            br#"{"errors":[{"id":"not_found","message":"Invalid currency"}]}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
