//! Kraken: `GET /0/public/Ticker?pair=ETHUSD,XBTUSD,SOLUSD`, every pair in one request.
//!
//! `{"error":[],"result":{"XETHZUSD":{"c":["3124.56000","0.1"],…},"XXBTZUSD":{…}}}` — `c[0]` is
//! the last trade price; a non-empty `error` array means the call failed even when the HTTP
//! status is 200.

use std::collections::HashMap;

use serde::Deserialize;

use super::{ParseError, Quote, UsdPrice};
use crate::pair::{Pair, PairSet};

/// Kraken's name for the pair in the query, and the key it answers with (Kraken calls bitcoin
/// XBT, and prefixes its oldest assets with X and Z).
fn market(pair: Pair) -> Option<(&'static str, &'static str)> {
    Some(match pair {
        Pair::EthUsd => ("ETHUSD", "XETHZUSD"),
        Pair::BtcUsd => ("XBTUSD", "XXBTZUSD"),
        Pair::SolUsd => ("SOLUSD", "SOLUSD"),
    })
}

/// The key of the pair's ticker in Kraken's answer.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    market(pair).map(|(_, key)| key)
}

/// One request for every pair of `pairs` Kraken quotes.
pub(super) fn path(pairs: PairSet) -> String {
    let markets: Vec<&str> = pairs
        .iter()
        .filter_map(|pair| market(pair).map(|(query, _)| query))
        .collect();
    format!("/0/public/Ticker?pair={}", markets.join(","))
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    error: Vec<&'a str>,
    #[serde(borrow, default)]
    result: HashMap<&'a str, Ticker<'a>>,
}

#[derive(Deserialize)]
struct Ticker<'a> {
    #[serde(borrow)]
    c: Vec<&'a str>,
}

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<Quote, ParseError> {
    let response: Response = super::parse_json(body)?;
    if let Some(first) = response.error.first() {
        return Err(ParseError::Api(crate::logging::truncate_for_display(first)));
    }
    let key = symbol(pair).unwrap_or_default();
    let ticker = response
        .result
        .get(key)
        .ok_or_else(|| ParseError::Shape(format!("no {key} ticker in result")))?;
    let last = ticker
        .c
        .first()
        .ok_or_else(|| ParseError::Shape("empty last-trade array c".into()))?;
    Ok(Quote::undated(UsdPrice::parse_quote(last)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;

    #[test]
    fn parses_the_last_trade_price_of_each_pair() {
        let body = br#"{"error":[],"result":{"XETHZUSD":{"a":["3124.57000","1","1.000"],"b":["3124.55000","3","3.000"],"c":["3124.56000","0.10000000"],"v":["1","2"]},"XXBTZUSD":{"c":["90000.1","0.01"]},"SOLUSD":{"c":["150.25","3"]}}}"#;
        let price = |pair| parse(pair, body).unwrap().price.to_string();
        assert_eq!(price(Pair::EthUsd), "3124.56000000");
        assert_eq!(price(Pair::BtcUsd), "90000.10000000");
        assert_eq!(price(Pair::SolUsd), "150.25000000");
        assert_eq!(
            path(PairSet::ALL),
            "/0/public/Ticker?pair=ETHUSD,XBTUSD,SOLUSD"
        );
    }

    #[test]
    fn api_errors_and_wrong_shapes_are_errors() {
        let api = br#"{"error":["EQuery:Unknown asset pair"]}"#;
        assert_eq!(
            parse(Pair::EthUsd, api),
            Err(ParseError::Api("EQuery:Unknown asset pair".into()))
        );
        for body in [
            &br#"{"error":[],"result":{}}"#[..],
            br#"{"error":[],"result":{"XETHZUSD":{"c":[]}}}"#,
            br#"{"error":[],"result":{"XETHZUSD":{"c":[3124.5]}}}"#,
            br#"{"error":[],"result":{"XETHZUSD":{"c":["x","1"]}}}"#,
            br#"{"error":[],"result":{"XXBTZUSD":{"c":["3124.5","1"]}}}"#,
        ] {
            assert!(
                parse(Pair::EthUsd, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
