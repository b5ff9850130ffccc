//! Fetching: HTTP with a per-request timeout, status checks, a bounded body, bounded retries with
//! exponential backoff, and the median over the sources that answered.

use std::fmt;
use std::time::Duration;

use futures::future::join_all;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::{ParseError, Source, UsdPrice, median};
use crate::pair::{Pair, PairSet};

/// Real quote responses are a few hundred bytes; anything this large is not one.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// No single wait between attempts exceeds this, whatever `Retry-After` asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the feed reaches its sources.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The pairs to fetch (`--pairs`).
    pub pairs: PairSet,
    /// Each source with its base URL (the pair's path is appended, see [`Source::path`]).
    pub endpoints: Vec<(Source, Url)>,
    /// Fewer answering sources than this is a failed fetch.
    pub min_sources: usize,
    /// Limit for one HTTP request, connect to last body byte.
    pub timeout: Duration,
    /// Extra attempts after a transient failure (timeout, connection, 5xx, 429).
    pub retries: u32,
    /// Wait before the first retry; doubles on each further one.
    pub backoff: Duration,
}

/// One failed attempt at a source, classified so operators (and counters) can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFailure {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    #[error("HTTP {0}")]
    Status(String),
    #[error("response body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("request failed: {0}")]
    Request(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

crate::metrics::label_values! {
    /// The kinds of [`SourceFailure`], as the `kind` label of `source_failures` names them.
    pub enum FailureKind {
        Timeout => "timeout",
        Connect => "connect",
        RateLimited => "rate_limited",
        HttpStatus => "http_status",
        BodyTooLarge => "body_too_large",
        Request => "request",
        NotJson => "not_json",
        BadShape => "bad_shape",
        ApiError => "api_error",
        BadValue => "bad_value",
    }
}

impl SourceFailure {
    /// Which kind of failure this is, so operators (and counters) can tell them apart.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Timeout => FailureKind::Timeout,
            Self::Connect(_) => FailureKind::Connect,
            Self::RateLimited => FailureKind::RateLimited,
            Self::Status(_) => FailureKind::HttpStatus,
            Self::BodyTooLarge => FailureKind::BodyTooLarge,
            Self::Request(_) => FailureKind::Request,
            Self::Parse(ParseError::NotJson(_)) => FailureKind::NotJson,
            Self::Parse(ParseError::Shape(_)) => FailureKind::BadShape,
            Self::Parse(ParseError::Api(_)) => FailureKind::ApiError,
            Self::Parse(ParseError::Value(_)) => FailureKind::BadValue,
        }
    }

    /// Worth another attempt: the next one may well succeed. A well-formed answer with a bad
    /// value, or a 4xx other than 429, will not improve by asking again at once.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Connect(_) | Self::RateLimited | Self::Request(_)
        ) || matches!(self, Self::Status(status) if status.starts_with('5'))
    }
}

/// A source that did not give a price, after all attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub failure: SourceFailure,
    pub attempts: u32,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(f, "{} ({} attempt{plural})", self.failure, self.attempts)
    }
}

impl std::error::Error for SourceError {}

/// The feed could not produce a price.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("only {answered} of {required} required price sources answered: {}", summary(.failures))]
    TooFewSources {
        answered: usize,
        required: usize,
        failures: Vec<(Source, SourceError)>,
    },
}

fn summary(failures: &[(Source, SourceError)]) -> String {
    failures
        .iter()
        .map(|(source, error)| format!("{source}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The result of asking every source once.
#[derive(Debug, Clone)]
pub struct FeedReport {
    /// Every configured source in order, with its price or why it has none.
    pub results: Vec<(Source, Result<UsdPrice, SourceError>)>,
    /// How long each source took, retries included, in the same order.
    pub elapsed: Vec<Duration>,
}

impl FeedReport {
    pub fn prices(&self) -> Vec<UsdPrice> {
        self.results
            .iter()
            .filter_map(|(_, result)| result.as_ref().ok().copied())
            .collect()
    }

    pub fn failures(&self) -> Vec<(Source, SourceError)> {
        self.results
            .iter()
            .filter_map(|(source, result)| result.as_ref().err().map(|err| (*source, err.clone())))
            .collect()
    }

    /// The median of the answers, when at least `required` sources answered.
    pub fn median(&self, required: usize) -> Result<UsdPrice, FeedError> {
        let prices = self.prices();
        match median(&prices) {
            Some(price) if prices.len() >= required => Ok(price),
            _ => Err(FeedError::TooFewSources {
                answered: prices.len(),
                required,
                failures: self.failures(),
            }),
        }
    }
}

/// Asks the configured exchanges for a pair's price.
#[derive(Debug, Clone)]
pub struct PriceFeed {
    client: reqwest::Client,
    settings: FeedSettings,
}

impl PriceFeed {
    pub fn new(settings: FeedSettings) -> Result<Self, FeedError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!("price-oracle/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| FeedError::Client(err.to_string()))?;
        Ok(Self { client, settings })
    }

    pub fn settings(&self) -> &FeedSettings {
        &self.settings
    }

    /// Asks every source at once; returns when all have answered or given up.
    /// The full URL of each configured source that quotes `pair`.
    pub fn quote_urls(&self, pair: Pair) -> Vec<(Source, Url)> {
        self.settings
            .endpoints
            .iter()
            .filter_map(|(source, base)| {
                let path = source.path(pair)?;
                let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
                Url::parse(&url).ok().map(|url| (*source, url))
            })
            .collect()
    }

    /// Asks every configured source that quotes `pair` once (with retries).
    pub async fn fetch_all(&self, pair: Pair) -> FeedReport {
        let fetches = self
            .quote_urls(pair)
            .into_iter()
            .map(|(source, url)| async move {
                let started = std::time::Instant::now();
                let result = self.fetch_with_retries(source, pair, &url).await;
                ((source, result), started.elapsed())
            });
        let (results, elapsed) = join_all(fetches).await.into_iter().unzip();
        FeedReport { results, elapsed }
    }

    /// The median of every source that answered, or an error naming each failure.
    pub async fn fetch_median(&self, pair: Pair) -> Result<(UsdPrice, FeedReport), FeedError> {
        let report = self.fetch_all(pair).await;
        let price = report.median(self.settings.min_sources)?;
        Ok((price, report))
    }

    async fn fetch_with_retries(
        &self,
        source: Source,
        pair: Pair,
        url: &Url,
    ) -> Result<UsdPrice, SourceError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (failure, retry_after) = match self.fetch_once(source, pair, url).await {
                Ok(price) => return Ok(price),
                Err(failed) => failed,
            };
            if attempts > self.settings.retries || !failure.is_transient() {
                return Err(SourceError { failure, attempts });
            }
            let delay = self.backoff(attempts, retry_after);
            log::debug!("{source} ({url}): {failure}; retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .settings
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16));
        // Up to 25 % jitter so that many nodes do not retry in lockstep.
        let jitter = exponential.mul_f64(rand::random::<f64>() * 0.25);
        (exponential + jitter)
            .max(retry_after.unwrap_or_default())
            .min(MAX_BACKOFF)
    }

    async fn fetch_once(
        &self,
        source: Source,
        pair: Pair,
        url: &Url,
    ) -> Result<UsdPrice, (SourceFailure, Option<Duration>)> {
        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|err| (classify(&err), None))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err((SourceFailure::RateLimited, retry_after(response.headers())));
        }
        if !status.is_success() {
            return Err((SourceFailure::Status(status.to_string()), None));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| (classify(&err), None))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err((SourceFailure::BodyTooLarge, None));
            }
            body.extend_from_slice(&chunk);
        }
        source.parse(pair, &body).map_err(|err| (err.into(), None))
    }
}

fn classify(err: &reqwest::Error) -> SourceFailure {
    if err.is_timeout() {
        SourceFailure::Timeout
    } else if err.is_connect() {
        SourceFailure::Connect(innermost_cause(err))
    } else {
        SourceFailure::Request(innermost_cause(err))
    }
}

/// reqwest's own message repeats the URL; the innermost cause says what actually happened.
fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(SourceFailure::Timeout.is_transient());
        assert!(SourceFailure::Connect("refused".into()).is_transient());
        assert!(SourceFailure::RateLimited.is_transient());
        assert!(SourceFailure::Status("503 Service Unavailable".into()).is_transient());
        assert!(!SourceFailure::Status("404 Not Found".into()).is_transient());
        assert!(!SourceFailure::BodyTooLarge.is_transient());
        assert!(!SourceFailure::Parse(ParseError::NotJson("html".into())).is_transient());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let feed = PriceFeed::new(FeedSettings {
            pairs: PairSet::only(Pair::EthUsd),
            endpoints: vec![],
            min_sources: 1,
            timeout: Duration::from_secs(1),
            retries: 10,
            backoff: Duration::from_millis(100),
        })
        .unwrap();
        let first = feed.backoff(1, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let third = feed.backoff(3, None);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(500));
        assert_eq!(feed.backoff(30, None), MAX_BACKOFF);
        assert_eq!(
            feed.backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            feed.backoff(1, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }
}
