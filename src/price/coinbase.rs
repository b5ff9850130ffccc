//! Coinbase: `GET /v2/exchange-rates?currency=ETH` (the pair's base asset: ETH, BTC, SOL), one
//! request per pair: the endpoint takes one currency.
//!
//! `{"data":{"currency":"ETH","rates":{"USD":"3124.56","EUR":"…",…}}}` — rates are strings, and
//! carry no timestamp.

use serde::Deserialize;

use super::{ParseError, Quote, UsdPrice};
use crate::pair::Pair;

/// The currency Coinbase quotes the pair's base asset under: every pair we know.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    Some(pair.base())
}

pub(super) fn path(pair: Pair) -> Option<String> {
    symbol(pair).map(|currency| format!("/v2/exchange-rates?currency={currency}"))
}

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

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<Quote, ParseError> {
    let response: Response = super::parse_json(body)?;
    let expected = symbol(pair).unwrap_or_default();
    if response.data.currency != expected {
        return Err(ParseError::Shape(format!(
            "rates are for {:?}, not {expected}",
            crate::logging::truncate_for_display(response.data.currency)
        )));
    }
    let usd = response
        .data
        .rates
        .usd
        .ok_or_else(|| ParseError::Shape("no USD rate".into()))?;
    Ok(Quote::undated(UsdPrice::parse_quote(usd)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;

    #[test]
    fn parses_the_real_shape() {
        let body = br#"{"data":{"currency":"ETH","rates":{"AED":"11476.2","USD":"3124.565","EUR":"2700.1"}}}"#;
        assert_eq!(
            parse(Pair::EthUsd, body).unwrap().price.to_string(),
            "3124.56500000"
        );
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
            assert!(
                parse(Pair::EthUsd, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
