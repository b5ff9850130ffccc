//! Binance: `GET /api/v3/ticker/price?symbol=ETHUSDT` (BTCUSDT, SOLUSDT for the other pairs).
//!
//! `{"symbol":"ETHUSDT","price":"3124.56000000"}`. Binance quotes ETH in USDT, a dollar
//! stablecoin, not in USD: it usually tracks the dollar within a few hundredths of a percent,
//! which the median over several sources absorbs. Use it beside USD sources, not alone.

use serde::Deserialize;

use super::{ParseError, UsdPrice};
use crate::pair::Pair;

/// Binance's market for the pair: its base asset against USDT.
pub(super) fn symbol(pair: Pair) -> Option<&'static str> {
    Some(match pair {
        Pair::EthUsd => "ETHUSDT",
        Pair::BtcUsd => "BTCUSDT",
        Pair::SolUsd => "SOLUSDT",
    })
}

pub(super) fn path(pair: Pair) -> Option<String> {
    symbol(pair).map(|symbol| format!("/api/v3/ticker/price?symbol={symbol}"))
}

#[derive(Deserialize)]
struct Response<'a> {
    symbol: &'a str,
    price: &'a str,
}

pub(super) fn parse(pair: Pair, body: &[u8]) -> Result<UsdPrice, ParseError> {
    let response: Response = super::parse_json(body)?;
    let expected = symbol(pair).unwrap_or_default();
    if response.symbol != expected {
        return Err(ParseError::Shape(format!(
            "ticker is for {:?}, not {expected}",
            super::truncate_for_display(response.symbol)
        )));
    }
    Ok(UsdPrice::parse_quote(response.price)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pair::Pair;

    #[test]
    fn parses_the_real_shape() {
        let body = br#"{"symbol":"ETHUSDT","price":"3124.56000000"}"#;
        assert_eq!(
            parse(Pair::EthUsd, body).unwrap().to_string(),
            "3124.56000000"
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        for body in [
            &br#"{"symbol":"BTCUSDT","price":"3124.56"}"#[..],
            br#"{"symbol":"ETHUSDT","price":3124.56}"#,
            br#"{"symbol":"ETHUSDT","price":"NaN"}"#,
            br#"{"symbol":"ETHUSDT"}"#,
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
