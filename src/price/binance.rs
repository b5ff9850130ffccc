//! Binance: `GET /api/v3/ticker/price?symbols=["ETHUSDT","BTCUSDT"]`, every pair in one request
//! (the list URL-encoded, `%5B%22ETHUSDT%22,%22BTCUSDT%22%5D`, as Binance documents it).
//!
//! `[{"symbol":"ETHUSDT","price":"3124.56000000"},…]`. Binance quotes ETH in USDT, a dollar
//! stablecoin, not in USD: it usually tracks the dollar within a few hundredths of a percent,
//! which the median over several sources absorbs. Use it beside USD sources, not alone.
//!
//! The `symbols` form weighs 4 against Binance's per-IP limit, the single-`symbol` form 2: one
//! request for three pairs costs less than three single ones. It is used for one pair too (4
//! instead of 2, still far below the limit) so that every answer has one shape.

use serde::Deserialize;

use super::{ParseError, Quote, UsdPrice};
use crate::pair::{Pair, PairSet};

/// Binance's market for the pair: its base asset against USDT.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    Some(match pair {
        Pair::EthUsd => "ETHUSDT",
        Pair::BtcUsd => "BTCUSDT",
        Pair::SolUsd => "SOLUSDT",
    })
}

/// One request for every pair of `pairs` Binance quotes.
pub(super) fn path(pairs: PairSet) -> String {
    let symbols: Vec<String> = pairs
        .iter()
        .filter_map(symbol)
        .map(|symbol| format!("%22{symbol}%22"))
        .collect();
    format!("/api/v3/ticker/price?symbols=%5B{}%5D", symbols.join(","))
}

#[derive(Deserialize)]
struct Ticker<'a> {
    symbol: &'a str,
    price: &'a str,
}

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<Quote, ParseError> {
    let tickers: Vec<Ticker> = super::parse_json(body)?;
    let expected = symbol(pair).unwrap_or_default();
    let ticker = tickers
        .iter()
        .find(|ticker| ticker.symbol == expected)
        .ok_or_else(|| ParseError::Shape(format!("no {expected} ticker in the answer")))?;
    Ok(Quote::undated(UsdPrice::parse_quote(ticker.price)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;

    #[test]
    fn parses_each_pair_of_the_real_shape() {
        let body = br#"[{"symbol":"ETHUSDT","price":"3124.56000000"},{"symbol":"BTCUSDT","price":"90000.01000000"}]"#;
        assert_eq!(
            parse(Pair::EthUsd, body).unwrap().price.to_string(),
            "3124.56000000"
        );
        assert_eq!(
            parse(Pair::BtcUsd, body).unwrap().price.to_string(),
            "90000.01000000"
        );
        assert!(parse(Pair::SolUsd, body).is_err());
    }

    #[test]
    fn the_symbol_list_is_url_encoded() {
        assert_eq!(
            path([Pair::EthUsd, Pair::BtcUsd].into_iter().collect()),
            "/api/v3/ticker/price?symbols=%5B%22ETHUSDT%22,%22BTCUSDT%22%5D"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        for body in [
            &br#"[{"symbol":"BTCUSDT","price":"3124.56"}]"#[..],
            br#"[{"symbol":"ETHUSDT","price":3124.56}]"#,
            br#"[{"symbol":"ETHUSDT","price":"NaN"}]"#,
            br#"[{"symbol":"ETHUSDT"}]"#,
            br#"[]"#,
            br#"{"symbol":"ETHUSDT","price":"3124.56"}"#,
            br#"{"code":-1121,"msg":"Invalid symbol."}"#,
        ] {
            assert!(
                parse(Pair::EthUsd, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
