//! What a request may ask for, checked once for the HTTP API and `oracle prices` alike: the pair
//! (only the node's own), numbers that are numbers, a page size within the limit, a time window
//! that is one, a cursor that can be one.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::logging::truncate_for_display;
use crate::pair::{Pair, PairSet};
use crate::store::read::HistoryQuery;

/// The last moment `from` and `to` may name: 9999-12-31T23:59:59Z, as the document says.
const LAST_MOMENT: u64 = 253_402_300_799;

/// The greatest cursor a request may name, as the document says (no `seq` comes near it).
const LAST_CURSOR: u64 = 9_000_000_000_000_000_000;

/// Page size when none is asked for.
pub const DEFAULT_PAGE: u64 = 100;
/// Bounds on what readers can make a node do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest `limit` a history page may ask for (`--api-max-page`).
    pub max_page: u64,
    /// Most streams open at once (`--api-max-streams`); more are refused with 503.
    pub max_streams: usize,
    /// Stored prices a stream may fall behind by before it is dropped (`--api-stream-backlog`).
    pub stream_backlog: usize,
    /// Requests per second one client (IP address) may make on average (`--api-rate-limit`);
    /// 0: no limit.
    pub rate_per_second: u32,
    /// Requests one client may make at once before the average applies (`--api-rate-burst`).
    pub rate_burst: u32,
    /// Requests being answered at once, all clients together (`--api-max-in-flight`).
    pub max_in_flight: usize,
    /// Worker threads of the HTTP server's own runtime (`--http-threads`).
    pub threads: usize,
}

impl ApiLimits {
    pub const DEFAULT: Self = Self {
        max_page: 1_000,
        max_streams: 10_000,
        stream_backlog: 1_024,
        rate_per_second: 50,
        rate_burst: 100,
        max_in_flight: 512,
        threads: 1,
    };

    /// The page size when the request names none: [`DEFAULT_PAGE`], or less if the limit is
    /// lower.
    pub fn default_page(&self) -> u64 {
        DEFAULT_PAGE.min(self.max_page)
    }
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The query of `/v1/prices/latest`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestParams {
    /// The pair, e.g. `ETH/USD`; one of the node's pairs [default: its first].
    pub pair: Option<String>,
    /// `verified`: the freshest of the stored price and the newest round this node has seen
    /// verified but not yet stored [default: stored prices only].
    #[param(value_type = Option<Include>, inline, example = "verified")]
    pub include: Option<String>,
}

/// What `include` may name, for the document (the handler reads the text, to say what is wrong
/// with another).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Include {
    Verified,
}

impl LatestParams {
    /// Whether verified (not yet stored) prices count.
    pub fn include_verified(&self) -> Result<bool, ApiError> {
        match self.include.as_deref() {
            None => Ok(false),
            Some("verified") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "include must be \"verified\", not {:?}",
                truncate_for_display(other)
            ))),
        }
    }
}

/// The query of `/v1/prices`. Numbers arrive as text so that a bad one gets a message naming it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The pair, e.g. `ETH/USD`; one of the node's pairs [default: its first].
    pub pair: Option<String>,
    /// Only prices observed at or after this moment: unix seconds, inclusive. A window with
    /// `from` after `to` is empty.
    #[param(value_type = Option<u64>, maximum = 253_402_300_799_f64)]
    pub from: Option<String>,
    /// Only prices observed before this moment: unix seconds, exclusive.
    #[param(value_type = Option<u64>, maximum = 253_402_300_799_f64)]
    pub to: Option<String>,
    /// Prices per page: 1 up to the node's `--api-max-page` (1000 by default) [default: 100].
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<String>,
    /// Cursor: the `next` of the previous page, or the greatest `seq` seen [default: the
    /// beginning].
    #[param(value_type = Option<u64>, maximum = 9e18_f64, example = 4711)]
    pub after: Option<String>,
}

/// The query of `/v1/prices/stream`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The pair, e.g. `ETH/USD`; one of the node's pairs [default: its first].
    pub pair: Option<String>,
    /// Replay prices with `seq` above this first [default: only prices stored from now on].
    /// A `Last-Event-ID` header wins over it (a reconnecting EventSource sends both).
    #[param(value_type = Option<u64>, maximum = 9e18_f64, example = 4711)]
    pub after: Option<String>,
}

/// A history request with its numbers read, before it is checked against the node's pairs
/// and limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub pair: Option<String>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub limit: Option<u64>,
    pub after: Option<u64>,
}

impl ListParams {
    pub fn read(&self) -> Result<HistoryRequest, ApiError> {
        Ok(HistoryRequest {
            pair: self.pair.clone(),
            from: number("from", self.from.as_deref())?,
            to: number("to", self.to.as_deref())?,
            limit: number("limit", self.limit.as_deref())?,
            after: number("after", self.after.as_deref())?,
        })
    }
}

impl HistoryRequest {
    /// The query to run, or why the request is not one.
    pub fn check(&self, pairs: PairSet, limits: &ApiLimits) -> Result<HistoryQuery, ApiError> {
        let pair = pick_pair(pairs, self.pair.as_deref())?;
        let limit = match self.limit {
            None => limits.default_page(),
            Some(limit) if (1..=limits.max_page).contains(&limit) => limit,
            Some(limit) => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be from 1 to {}, got {limit}",
                    limits.max_page
                )));
            }
        };
        Ok(HistoryQuery {
            pair,
            after: cursor("after", self.after)?,
            from: self.from.map(|at| moment("from", at)).transpose()?,
            to: self.to.map(|at| moment("to", at)).transpose()?,
            limit,
        })
    }
}

/// The pair asked for, if the node serves it; its first pair when none is named.
pub fn pick_pair(pairs: PairSet, asked: Option<&str>) -> Result<Pair, ApiError> {
    let Some(asked) = asked else {
        return pairs
            .iter()
            .next()
            .ok_or_else(|| ApiError::BadRequest("this node serves no pair".to_owned()));
    };
    match asked.parse::<Pair>() {
        Ok(pair) if pairs.contains(pair) => Ok(pair),
        _ => Err(ApiError::BadRequest(format!(
            "unknown pair {:?}: this node serves {}",
            truncate_for_display(asked),
            pairs.iter().map(Pair::name).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A price id from a path: a positive decimal number.
pub fn price_id(text: &str) -> Result<i64, ApiError> {
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits || text.len() > 19 {
        return Err(ApiError::BadRequest(format!(
            "a price id is a decimal number of at most 19 digits, got {:?}",
            truncate_for_display(text)
        )));
    }
    // Up to 19 digits always fit 64 bits; past 2⁶³ − 1 no price can have it.
    let id = text
        .parse::<u64>()
        .ok()
        .and_then(|id| i64::try_from(id).ok());
    id.ok_or_else(|| ApiError::NotFound(format!("no stored price with id {text}")))
}

/// A `seq` cursor from text (`after=`, `Last-Event-ID`).
pub fn parse_cursor(name: &str, text: &str) -> Result<i64, ApiError> {
    cursor(name, number(name, Some(text))?)
}

fn cursor(name: &str, value: Option<u64>) -> Result<i64, ApiError> {
    match value {
        None => Ok(0),
        Some(value) => i64::try_from(value)
            .ok()
            .filter(|_| value <= LAST_CURSOR)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("{name} {value} is no cursor: above {LAST_CURSOR}"))
            }),
    }
}

/// A whole number, or why the text is not one.
fn number(name: &str, text: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && let Ok(value) = text.parse()
    {
        return Ok(Some(value));
    }
    Err(ApiError::BadRequest(format!(
        "{name} must be a whole number, got {:?}",
        truncate_for_display(text)
    )))
}

/// Unix seconds as a moment the database can compare.
fn moment(name: &str, seconds: u64) -> Result<DateTime<Utc>, ApiError> {
    (seconds <= LAST_MOMENT)
        .then(|| i64::try_from(seconds).ok())
        .flatten()
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        .ok_or_else(|| ApiError::BadRequest(format!("{name} ({seconds}) is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> PairSet {
        [Pair::EthUsd, Pair::BtcUsd].into_iter().collect()
    }

    fn bad(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("not a bad request: {other:?}"),
        }
    }

    #[test]
    fn a_history_request_gets_defaults_and_its_bounds_checked() {
        let limits = ApiLimits::DEFAULT;
        let query = HistoryRequest::default().check(pairs(), &limits).unwrap();
        assert_eq!(
            query,
            HistoryQuery {
                pair: Pair::EthUsd,
                after: 0,
                from: None,
                to: None,
                limit: 100,
            }
        );
        let asked = HistoryRequest {
            pair: Some("BTC/USD".into()),
            from: Some(1_763_700_000),
            to: Some(1_763_700_000),
            limit: Some(1_000),
            after: Some(42),
        };
        let query = asked.check(pairs(), &limits).unwrap();
        assert_eq!(
            (query.pair.name(), query.after, query.limit),
            ("BTC/USD", 42, 1_000)
        );
        assert_eq!(query.from, DateTime::from_timestamp(1_763_700_000, 0));

        let with = |change: fn(&mut HistoryRequest)| {
            let mut request = HistoryRequest::default();
            change(&mut request);
            bad(request.check(pairs(), &limits))
        };
        assert!(with(|r| r.limit = Some(0)).contains("limit must be from 1 to 1000"));
        assert!(with(|r| r.limit = Some(1_001)).contains("got 1001"));
        assert!(with(|r| r.pair = Some("DOGE/USD".into())).contains("unknown pair \"DOGE/USD\""));
        let empty_window = HistoryRequest {
            from: Some(2),
            to: Some(1),
            ..HistoryRequest::default()
        };
        assert!(
            empty_window.check(pairs(), &limits).is_ok(),
            "an empty window"
        );
        assert!(with(|r| r.to = Some(LAST_MOMENT + 1)).contains("out of range"));
        assert!(with(|r| r.after = Some(u64::MAX)).contains("no cursor"));
        assert!(with(|r| r.from = Some(u64::MAX)).contains("out of range"));
        // A node configured for small pages also defaults to them.
        let small = ApiLimits {
            max_page: 10,
            ..limits
        };
        assert_eq!(
            HistoryRequest::default()
                .check(pairs(), &small)
                .unwrap()
                .limit,
            10
        );
    }

    #[test]
    fn numbers_ids_and_cursors_are_read_strictly() {
        let params = ListParams {
            from: Some("-5".into()),
            ..ListParams::default()
        };
        assert!(bad(params.read()).contains("from must be a whole number, got \"-5\""));
        for text in ["", "1e3", " 1", "+1", "0x10", "99999999999999999999"] {
            let params = ListParams {
                limit: Some(text.into()),
                ..ListParams::default()
            };
            assert!(params.read().is_err(), "{text:?}");
        }
        assert_eq!(price_id("1234567890123456").unwrap(), 1_234_567_890_123_456);
        for text in ["abc", "-1", "", "12a", "12345678901234567890"] {
            assert!(bad(price_id(text)).contains("decimal number"), "{text:?}");
        }
        // Past 2⁶³ − 1: a well-formed id that no price can have.
        assert!(matches!(
            price_id("9223372036854775808"),
            Err(ApiError::NotFound(_))
        ));
        assert_eq!(parse_cursor("after", "4711").unwrap(), 4711);
        assert!(bad(parse_cursor("Last-Event-ID", "x")).contains("Last-Event-ID"));
        let long = "x".repeat(10_000);
        assert!(bad(price_id(&long)).len() < 200);
    }
}
