//! Where prices come from: one file per exchange, each parsing its real response shape into an
//! exact [`UsdPrice`], and a [`PriceFeed`] that asks the configured sources and takes the median.

mod binance;
mod coinbase;
mod coingecko;
mod feed;
mod kraken;
mod rules;
mod value;

pub use feed::{
    FailureKind, FeedError, FeedReport, FeedSettings, PriceFeed, SourceError, SourceFailure,
};
pub use rules::{Exclusion, ExclusionKind, QuoteRules, SourcedPrice, median};
pub(crate) use value::truncate_for_display;
pub use value::{DECIMALS, MAX_USD, PriceValueError, UsdPrice, parse_decimal};

use std::fmt;
use std::time::SystemTime;

use crate::pair::Pair;

/// A source's quote of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: UsdPrice,
    /// When the source last updated the price, where its answer says (Coingecko's
    /// `last_updated_at`); the stale rule needs it.
    pub updated_at: Option<SystemTime>,
}

impl Quote {
    /// A quote whose source does not say how old it is.
    pub fn undated(price: UsdPrice) -> Self {
        Self {
            price,
            updated_at: None,
        }
    }
}

/// An exchange API the node can ask for prices. Each names a pair by its own market symbol, and
/// says which pairs it cannot serve (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Source {
    Coinbase,
    Coingecko,
    Kraken,
    Binance,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Coinbase,
        Source::Coingecko,
        Source::Kraken,
        Source::Binance,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Coinbase => "coinbase",
            Self::Coingecko => "coingecko",
            Self::Kraken => "kraken",
            Self::Binance => "binance",
        }
    }

    /// The public API this source is fetched from unless overridden.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Coinbase => "https://api.coinbase.com",
            Self::Coingecko => "https://api.coingecko.com",
            Self::Kraken => "https://api.kraken.com",
            Self::Binance => "https://api.binance.com",
        }
    }

    /// Path and query of the pair's quote, appended to the base URL; `None` when this source
    /// does not quote the pair.
    pub fn path(self, pair: Pair) -> Option<String> {
        match self {
            Self::Coinbase => coinbase::path(pair),
            Self::Coingecko => coingecko::path(pair),
            Self::Kraken => kraken::path(pair),
            Self::Binance => binance::path(pair),
        }
    }

    /// The name under which this source's answer carries the pair (currency, asset id, ticker
    /// key or symbol).
    pub fn symbol(self, pair: Pair) -> Option<&'static str> {
        match self {
            Self::Coinbase => coinbase::symbol(pair),
            Self::Coingecko => coingecko::symbol(pair),
            Self::Kraken => kraken::symbol(pair),
            Self::Binance => binance::symbol(pair),
        }
    }

    /// Parses a response body of this source to a quote of `pair`.
    pub fn parse(self, pair: Pair, body: &[u8]) -> Result<UsdPrice, ParseError> {
        match self {
            Self::Coinbase => coinbase::parse(pair, body),
            Self::Coingecko => coingecko::parse(pair, body),
            Self::Kraken => kraken::parse(pair, body),
            Self::Binance => binance::parse(pair, body),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

crate::metrics::label_value_by!(Source, name);

/// Why a response body is not a price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("response is not JSON: {0}")]
    NotJson(String),
    #[error("unexpected response: {0}")]
    Shape(String),
    #[error("API error: {0}")]
    Api(String),
    #[error(transparent)]
    Value(#[from] PriceValueError),
}

fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|err| {
        let text = String::from_utf8_lossy(body);
        let start = text.trim_start();
        if start.starts_with('<') {
            ParseError::NotJson("an HTML page".into())
        } else if err.is_data() {
            ParseError::Shape(err.to_string())
        } else {
            ParseError::NotJson(format!("{err} in {:?}", truncate_for_display(start)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_garbage_are_not_json() {
        for source in Source::ALL {
            assert_eq!(
                source.parse(
                    Pair::EthUsd,
                    b"\n<!DOCTYPE html><html><body>Bad gateway</body></html>"
                ),
                Err(ParseError::NotJson("an HTML page".into())),
                "{source}"
            );
            for body in [&b""[..], b"{", b"\xff\xfe", b"null", b"42"] {
                assert!(
                    source.parse(Pair::EthUsd, body).is_err(),
                    "{source}: {body:?}"
                );
            }
        }
    }

    #[test]
    fn names_match_the_cli_values() {
        use clap::ValueEnum;
        for source in Source::ALL {
            assert_eq!(
                source.to_possible_value().unwrap().get_name(),
                source.name()
            );
        }
    }
}
