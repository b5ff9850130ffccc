//! An observation: every configured source asked once, concurrently, within one time budget;
//! each pair's quotes judged by the [`QuoteRules`]; the median of the quotes left.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use reqwest::Url;
use tokio::time::Instant;

use super::fetch::{Fetched, Fetcher};
use super::report::{FeedError, PairReport, SourceReport, Unused};
use super::rules::QuoteRules;
use super::source_state::SourceStates;
use super::{Quote, Source, SourceError, SourceStatus, UsdPrice};
use crate::pair::{Pair, PairSet};

/// The whole observation ends this many request timeouts after it starts: room for one retry
/// of a quick failure, while a source that hangs delays the others' quotes by at most twice
/// `--source-timeout`.
const BUDGET_IN_TIMEOUTS: u32 = 2;

/// How the feed reaches its sources, and which quotes it uses.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The pairs to fetch (`--pairs`).
    pub pairs: PairSet,
    /// Each source with its base URL (the paths of [`Source::requests`] are appended).
    pub endpoints: Vec<(Source, Url)>,
    /// Which quotes count, and how many are needed.
    pub rules: QuoteRules,
    /// Limit for one HTTP request, connect to last body byte.
    pub timeout: Duration,
    /// Extra attempts after a transient failure (timeout, connection, 5xx, 429).
    pub retries: u32,
    /// Wait before the first retry; doubles on each further one.
    pub backoff: Duration,
}

/// One HTTP request of every observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRequest {
    pub source: Source,
    pub url: Url,
    /// The pairs its answer quotes.
    pub pairs: PairSet,
}

/// A request's answer in an observation.
struct Answer<'a> {
    request: &'a SourceRequest,
    elapsed: Duration,
    body: Result<Fetched, SourceError>,
}

/// Asks the configured exchanges for every pair's price, and remembers how each source does.
#[derive(Debug)]
pub struct PriceFeed {
    fetcher: Fetcher,
    settings: FeedSettings,
    requests: Vec<SourceRequest>,
    states: Mutex<SourceStates>,
}

impl PriceFeed {
    pub fn new(settings: FeedSettings) -> Result<Self, FeedError> {
        let fetcher = Fetcher::new(settings.timeout, settings.retries, settings.backoff)
            .map_err(|err| FeedError::Client(err.to_string()))?;
        let requests = settings
            .endpoints
            .iter()
            .flat_map(|(source, base)| {
                source.requests(settings.pairs).into_iter().map(|request| {
                    let url = format!("{}{}", base.as_str().trim_end_matches('/'), request.path);
                    let parsed = Url::parse(&url).map_err(|err| FeedError::Url {
                        exchange: *source,
                        url: url.clone(),
                        reason: err.to_string(),
                    })?;
                    Ok(SourceRequest {
                        source: *source,
                        url: parsed,
                        pairs: request.pairs,
                    })
                })
            })
            .collect::<Result<_, FeedError>>()?;
        let states = SourceStates::new(settings.endpoints.iter().map(|(source, _)| *source));
        Ok(Self {
            fetcher,
            settings,
            requests,
            states: Mutex::new(states),
        })
    }

    pub fn settings(&self) -> &FeedSettings {
        &self.settings
    }

    /// The requests every observation makes (less those of blocked sources).
    pub fn requests(&self) -> &[SourceRequest] {
        &self.requests
    }

    /// The longest an observation takes, retries included.
    pub fn budget(&self) -> Duration {
        self.settings.timeout.saturating_mul(BUDGET_IN_TIMEOUTS)
    }

    /// Each source's state, for `/status`.
    pub fn source_statuses(&self) -> Vec<SourceStatus> {
        self.states().statuses()
    }

    /// How many sources the last price of `pair` is the median of.
    pub fn sources_used(&self, pair: Pair) -> Option<usize> {
        self.states().sources_used(pair)
    }

    /// Asks every source once — all at once, each request retried within the observation's
    /// [`budget`](Self::budget), blocked sources skipped — and judges each pair's quotes.
    pub async fn observe(&self) -> Vec<(Pair, PairReport)> {
        let deadline = Instant::now() + self.budget();
        let skipped = self.states().skipped(SystemTime::now());
        let fetches = self
            .requests
            .iter()
            .filter(|request| !skipped.contains_key(&request.source))
            .map(|request| async move {
                let started = Instant::now();
                let body = self.fetcher.fetch(&request.url, deadline).await;
                Answer {
                    request,
                    elapsed: started.elapsed(),
                    body,
                }
            });
        let answers = join_all(fetches).await;
        let now = SystemTime::now();
        let reports: Vec<(Pair, PairReport)> = self
            .settings
            .pairs
            .iter()
            .map(|pair| (pair, self.report(pair, &answers, &skipped, now)))
            .collect();
        // Bound first: a `for` head's temporaries, the lock among them, live through the loop.
        let notes = self.states().record(&reports, now);
        for note in notes {
            log::log!(note.level, "{}", note.text);
        }
        reports
    }

    /// One pair's report from the observation's answers, judged at `now`.
    fn report(
        &self,
        pair: Pair,
        answers: &[Answer<'_>],
        skipped: &BTreeMap<Source, SystemTime>,
        now: SystemTime,
    ) -> PairReport {
        let (mut sources, quotes): (Vec<SourceReport>, Vec<Option<Quote>>) = self
            .settings
            .endpoints
            .iter()
            .filter_map(|(source, _)| answer_of(*source, pair, answers, skipped))
            .unzip();
        let arrived: Vec<(usize, Quote)> = quotes
            .into_iter()
            .enumerate()
            .filter_map(|(index, quote)| Some((index, quote?)))
            .collect();
        let rules = self.settings.rules;
        let quotes: Vec<Quote> = arrived.iter().map(|(_, quote)| *quote).collect();
        for ((index, quote), exclusion) in arrived.into_iter().zip(rules.judge(&quotes, now)) {
            if let Some(exclusion) = exclusion {
                sources[index].outcome = Err(Unused::Excluded {
                    price: quote.price,
                    exclusion,
                });
            }
        }
        let used: Vec<UsdPrice> = sources
            .iter()
            .filter_map(|report| report.outcome.as_ref().ok().copied())
            .collect();
        let result = rules.price(&used).ok_or_else(|| FeedError::TooFewSources {
            used: used.len(),
            required: rules.min_sources,
            unused: sources
                .iter()
                .filter_map(|report| {
                    let unused = report.outcome.as_ref().err()?;
                    Some((report.source, unused.clone()))
                })
                .collect(),
        });
        PairReport { sources, result }
    }

    /// The state is consistent after every statement, so a lock poisoned by a panic elsewhere
    /// is still usable.
    fn states(&self) -> MutexGuard<'_, SourceStates> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `source` gave for `pair` in the observation's `answers`, with its quote when one
/// arrived (for the rules to judge); `None` when it does not quote the pair.
fn answer_of(
    source: Source,
    pair: Pair,
    answers: &[Answer<'_>],
    skipped: &BTreeMap<Source, SystemTime>,
) -> Option<(SourceReport, Option<Quote>)> {
    if let Some(until) = skipped.get(&source) {
        let report = SourceReport {
            source,
            elapsed: None,
            outcome: Err(Unused::Blocked { until: *until }),
        };
        return Some((report, None));
    }
    let answer = answers
        .iter()
        .find(|answer| answer.request.source == source && answer.request.pairs.contains(pair))?;
    let quote = answer
        .body
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|fetched| {
            source
                .parse(pair, &fetched.body)
                .map_err(|err| SourceError {
                    failure: err.into(),
                    attempts: fetched.attempts,
                })
        });
    let (outcome, quote) = match quote {
        Ok(quote) => (Ok(quote.price), Some(quote)),
        Err(error) => (Err(Unused::Failed(error)), None),
    };
    let report = SourceReport {
        source,
        elapsed: Some(answer.elapsed),
        outcome,
    };
    Some((report, quote))
}
