//! Fetching one request of a source over HTTP: each attempt limited by the request timeout and
//! by the observation's deadline, status checks, a bounded body, and bounded retries with
//! exponential backoff. What comes back is the body; parsing it is the source's business.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use super::ParseError;

/// Real quote responses are a few hundred bytes; anything this large is not one.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// No single wait between attempts exceeds this, whatever `Retry-After` asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One failed attempt at a source, classified so operators (and counters) can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceFailure {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("rate limited (HTTP 429)")]
    RateLimited,
    /// HTTP 451 or 403: the source refuses this node's address (a region it does not serve,
    /// or a firewall). Asking again soon will not help.
    #[error("blocked (HTTP {0})")]
    Blocked(String),
    #[error("HTTP {0}")]
    Status(String),
    #[error("response body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("request failed: {0}")]
    Request(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

crate::labels::label_values! {
    /// The kinds of [`SourceFailure`], as the `kind` label of `source_failures` names them.
    pub enum FailureKind {
        Timeout => "timeout",
        Connect => "connect",
        RateLimited => "rate_limited",
        Blocked => "blocked",
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
            Self::Blocked(_) => FailureKind::Blocked,
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
    /// value, a block, or a 4xx other than 429, will not improve by asking again at once.
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

/// A response body, and how many attempts it took.
#[derive(Debug, Clone)]
pub(super) struct Fetched {
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// The HTTP client of a feed, with its retry policy.
#[derive(Debug, Clone)]
pub(super) struct Fetcher {
    client: reqwest::Client,
    /// Limit of one attempt, connect to last body byte.
    timeout: Duration,
    /// Extra attempts after a transient failure.
    retries: u32,
    /// Wait before the first retry; doubles on each further one.
    backoff: Duration,
}

impl Fetcher {
    pub(super) fn new(
        timeout: Duration,
        retries: u32,
        backoff: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .user_agent(concat!("price-oracle/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            timeout,
            retries,
            backoff,
        })
    }

    /// GETs `url`, retrying transient failures while attempts and time before `deadline`
    /// remain; an attempt that `deadline` cuts short is a timeout.
    pub(super) async fn fetch(&self, url: &Url, deadline: Instant) -> Result<Fetched, SourceError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let (failure, retry_after) = match self.fetch_once(url, left.min(self.timeout)).await {
                Ok(body) => return Ok(Fetched { body, attempts }),
                Err(failed) => failed,
            };
            let delay = self.backoff(attempts, retry_after);
            let out_of_time = Instant::now() + delay >= deadline;
            if attempts > self.retries || !failure.is_transient() || out_of_time {
                return Err(SourceError { failure, attempts });
            }
            log::debug!("{url}: {failure}; retrying in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
        // Up to 25 % jitter so that many nodes do not retry in lockstep.
        let jitter = exponential.mul_f64(rand::random::<f64>() * 0.25);
        (exponential + jitter)
            .max(retry_after.unwrap_or_default())
            .min(MAX_BACKOFF)
    }

    async fn fetch_once(
        &self,
        url: &Url,
        timeout: Duration,
    ) -> Result<Vec<u8>, (SourceFailure, Option<Duration>)> {
        if timeout.is_zero() {
            return Err((SourceFailure::Timeout, None));
        }
        let mut response = self
            .client
            .get(url.clone())
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| (classify(&err), None))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err((SourceFailure::RateLimited, retry_after(response.headers())));
        }
        if status == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS || status == StatusCode::FORBIDDEN {
            return Err((SourceFailure::Blocked(status.to_string()), None));
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
        Ok(body)
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
        assert!(!SourceFailure::Blocked("451 Unavailable For Legal Reasons".into()).is_transient());
        assert!(!SourceFailure::BodyTooLarge.is_transient());
        assert!(!SourceFailure::Parse(ParseError::NotJson("html".into())).is_transient());
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let fetcher = Fetcher::new(Duration::from_secs(1), 10, Duration::from_millis(100)).unwrap();
        let first = fetcher.backoff(1, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let third = fetcher.backoff(3, None);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(500));
        assert_eq!(fetcher.backoff(30, None), MAX_BACKOFF);
        assert_eq!(
            fetcher.backoff(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            fetcher.backoff(1, Some(Duration::from_secs(3600))),
            MAX_BACKOFF
        );
    }
}
