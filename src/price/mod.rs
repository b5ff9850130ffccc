//! Where prices come from: one file per exchange, each parsing its real response shape into an
//! exact [`UsdPrice`]; fetching over HTTP (`fetch`); the rules that decide which quotes count
//! (`rules`); what the node remembers of each source (`source_state`); and the [`PriceFeed`]
//! that asks every source once per observation and applies the rules.

mod binance;
mod coinbase;
mod coingecko;
mod feed;
mod fetch;
mod kraken;
mod report;
mod rules;
mod source_state;
mod value;

pub use feed::{FeedSettings, PriceFeed, SourceRequest};
pub use fetch::{FailureKind, SourceError, SourceFailure};
pub use report::{FeedError, PairReport, SourceReport, Unused};
pub use rules::{Exclusion, ExclusionKind, QuoteRules, SourcedPrice};
pub use source_state::{SourceCondition, SourceStatus};
pub use value::{DECIMALS, MAX_USD, PriceValueError, UsdPrice, parse_decimal};

use std::fmt;
use std::time::SystemTime;

use crate::pair::{Pair, PairSet};

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

/// One HTTP request to a source: its path and query, and the pairs its answer quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub pairs: PairSet,
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

    /// Whether this source quotes `pair`.
    pub fn quotes(self, pair: Pair) -> bool {
        self.symbol(pair).is_some()
    }

    /// The requests that fetch `pairs` from this source (paths appended to its base URL): one
    /// for them all where the API takes several markets at once (Coingecko, Kraken, Binance),
    /// one per pair where it does not (Coinbase). Pairs it does not quote are left out.
    pub fn requests(self, pairs: PairSet) -> Vec<Request> {
        let quoted: PairSet = pairs.iter().filter(|pair| self.quotes(*pair)).collect();
        if quoted.is_empty() {
            return Vec::new();
        }
        let batch = |path: fn(PairSet) -> String| Request {
            path: path(quoted),
            pairs: quoted,
        };
        match self {
            Self::Coinbase => quoted
                .iter()
                .filter_map(|pair| {
                    coinbase::path(pair).map(|path| Request {
                        path,
                        pairs: PairSet::only(pair),
                    })
                })
                .collect(),
            Self::Coingecko => vec![batch(coingecko::path)],
            Self::Kraken => vec![batch(kraken::path)],
            Self::Binance => vec![batch(binance::path)],
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

    /// Parses a response body of this source to its quote of `pair` (one of the pairs of the
    /// request it answers).
    pub fn parse(self, pair: Pair, body: &[u8]) -> Result<Quote, ParseError> {
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
            ParseError::NotJson(format!(
                "{err} in {:?}",
                crate::logging::truncate_for_display(start)
            ))
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
    fn one_request_per_source_except_coinbase_one_per_pair() {
        for source in Source::ALL {
            let requests = source.requests(PairSet::ALL);
            let expected = if source == Source::Coinbase { 3 } else { 1 };
            assert_eq!(requests.len(), expected, "{source}");
            let covered: PairSet = requests
                .iter()
                .flat_map(|request| request.pairs.iter())
                .collect();
            assert_eq!(covered, PairSet::ALL, "{source}");
            assert!(source.requests(PairSet::default()).is_empty());
        }
        let coinbase: Vec<String> = Source::Coinbase
            .requests(PairSet::ALL)
            .into_iter()
            .map(|request| request.path)
            .collect();
        assert_eq!(
            coinbase,
            [
                "/v2/exchange-rates?currency=ETH",
                "/v2/exchange-rates?currency=BTC",
                "/v2/exchange-rates?currency=SOL"
            ]
        );
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
