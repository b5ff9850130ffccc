//! What the feed remembers of each source between observations: whether it answers, fails or
//! blocks this node (and until when it is not asked), its last quote of each pair, its last
//! error and its last left-out quote. `/status` shows it, the feed skips blocked sources by it,
//! and a change is logged once instead of every observation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::report::{PairReport, Unused};
use super::{FailureKind, Source, SourceError, UsdPrice};
use crate::pair::Pair;
use crate::time::unix_seconds;

/// How long a source that refuses this node (HTTP 451 or 403) is not asked. Such a block is a
/// matter of region or address, which does not change within minutes; after this the source is
/// asked once more.
pub const BLOCKED_FOR: Duration = Duration::from_secs(3600);

/// A source's state, as `/status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceCondition {
    /// Its last answer gave quotes (some may have been left out by the rules).
    Ok,
    /// Its last answer, for at least one pair, was an error.
    Failing,
    /// It refused this node (HTTP 451 or 403) and is not asked until `blocked_until`.
    Blocked,
}

/// What `/status` shows of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    pub source: &'static str,
    pub state: SourceCondition,
    /// Unix seconds until which the source is not asked, while it is blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_until: Option<u64>,
    /// Its last quote of each pair, also when the rules left it out.
    pub last_quote: BTreeMap<Pair, UsdPrice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exclusion: Option<String>,
}

/// A line for the log: the feed writes it, the tests read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    pub level: log::Level,
    pub text: String,
}

#[derive(Debug, Default)]
struct Tracked {
    blocked_until: Option<SystemTime>,
    /// The block was explained in a warning, not to be repeated while the source stays blocked.
    block_warned: bool,
    failures: Streak,
    exclusions: Streak,
    last_quote: BTreeMap<Pair, UsdPrice>,
    last_error: Option<String>,
    last_exclusion: Option<String>,
}

/// Observations in a row that showed one kind of problem: its start and its end are worth a
/// log line, the observations between are not.
#[derive(Debug, Default)]
struct Streak(u64);

enum StreakChange {
    Started,
    /// After this many observations.
    Ended(u64),
    Unchanged,
}

impl Streak {
    fn next(&mut self, problem: bool) -> StreakChange {
        match (problem, self.0) {
            (true, 0) => {
                self.0 = 1;
                StreakChange::Started
            }
            (true, _) => {
                self.0 += 1;
                StreakChange::Unchanged
            }
            (false, 0) => StreakChange::Unchanged,
            (false, _) => StreakChange::Ended(std::mem::take(&mut self.0)),
        }
    }
}

impl Tracked {
    fn condition(&self) -> SourceCondition {
        if self.blocked_until.is_some() {
            SourceCondition::Blocked
        } else if self.failures.0 > 0 {
            SourceCondition::Failing
        } else {
            SourceCondition::Ok
        }
    }

    /// Takes in what an observation at `now` showed of `source`.
    fn take_in(&mut self, source: Source, seen: Seen, now: SystemTime, notes: &mut Vec<Note>) {
        if seen.skipped {
            return;
        }
        let mut note = |level, text: String| notes.push(Note { level, text });
        self.last_quote.extend(seen.quotes);
        if let Some(error) = seen.blocked {
            self.blocked_until = Some(now + BLOCKED_FOR);
            self.last_error = Some(error.to_string());
            let pause = humantime::format_duration(BLOCKED_FOR);
            let failure = error.failure;
            if self.block_warned {
                note(
                    log::Level::Debug,
                    format!(
                        "price source {source} still refuses this node ({failure}); \
                         not asking it for another {pause}"
                    ),
                );
            } else {
                self.block_warned = true;
                note(
                    log::Level::Warn,
                    format!(
                        "price source {source} refuses this node ({failure}): it does not serve \
                         this region or address. Not asking it for {pause}, then once more; drop \
                         it from --sources, or run the node where {source} serves"
                    ),
                );
            }
            return;
        }
        if self.blocked_until.take().is_some() {
            self.block_warned = false;
            note(
                log::Level::Info,
                format!("price source {source} answers this node again"),
            );
        }

        if let Some((pair, error)) = &seen.failure {
            self.last_error = Some(format!("{pair}: {error}"));
        }
        match self.failures.next(seen.failure.is_some()) {
            StreakChange::Started => note(
                log::Level::Warn,
                format!(
                    "price source {source} failed ({}); observing without it, and saying so \
                     here when it answers again",
                    self.last_error.as_deref().unwrap_or_default()
                ),
            ),
            StreakChange::Ended(count) => note(
                log::Level::Info,
                format!("price source {source} answers again, after {count} failed observations"),
            ),
            StreakChange::Unchanged => {}
        }

        if let Some((pair, exclusion)) = &seen.exclusion {
            self.last_exclusion = Some(format!("{pair}: {exclusion}"));
        }
        match self.exclusions.next(seen.exclusion.is_some()) {
            StreakChange::Started => note(
                log::Level::Warn,
                format!(
                    "price source {source}'s quote left out ({}); saying so here when its \
                     quotes are used again",
                    self.last_exclusion.as_deref().unwrap_or_default()
                ),
            ),
            StreakChange::Ended(count) => note(
                log::Level::Info,
                format!(
                    "price source {source}'s quotes are used again, after {count} observations \
                     with one left out"
                ),
            ),
            StreakChange::Unchanged => {}
        }
    }
}

/// What one observation showed of one source, over every pair.
#[derive(Default)]
struct Seen {
    /// Not asked: it was blocked.
    skipped: bool,
    blocked: Option<SourceError>,
    failure: Option<(Pair, SourceError)>,
    exclusion: Option<(Pair, String)>,
    quotes: Vec<(Pair, UsdPrice)>,
}

/// Every configured source's state, and how many sources each pair's last price came from.
#[derive(Debug)]
pub(super) struct SourceStates {
    sources: BTreeMap<Source, Tracked>,
    sources_used: BTreeMap<Pair, usize>,
}

impl SourceStates {
    pub(super) fn new(sources: impl IntoIterator<Item = Source>) -> Self {
        Self {
            sources: sources
                .into_iter()
                .map(|source| (source, Tracked::default()))
                .collect(),
            sources_used: BTreeMap::new(),
        }
    }

    /// The sources not to ask at `now`, each with the time until which it is skipped.
    pub(super) fn skipped(&self, now: SystemTime) -> BTreeMap<Source, SystemTime> {
        self.sources
            .iter()
            .filter_map(|(source, tracked)| {
                let until = tracked.blocked_until?;
                (until > now).then_some((*source, until))
            })
            .collect()
    }

    /// How many sources the last price of `pair` is the median of.
    pub(super) fn sources_used(&self, pair: Pair) -> Option<usize> {
        self.sources_used.get(&pair).copied()
    }

    pub(super) fn statuses(&self) -> Vec<SourceStatus> {
        self.sources
            .iter()
            .map(|(source, tracked)| SourceStatus {
                source: source.name(),
                state: tracked.condition(),
                blocked_until: tracked.blocked_until.map(unix_seconds),
                last_quote: tracked.last_quote.clone(),
                last_error: tracked.last_error.clone(),
                last_exclusion: tracked.last_exclusion.clone(),
            })
            .collect()
    }

    /// Takes in an observation made at `now`; returns the changes worth a log line.
    pub(super) fn record(&mut self, reports: &[(Pair, PairReport)], now: SystemTime) -> Vec<Note> {
        let mut seen: BTreeMap<Source, Seen> = BTreeMap::new();
        for (pair, report) in reports {
            if let Ok(price) = &report.result {
                self.sources_used.insert(*pair, price.sources);
            }
            for answer in &report.sources {
                let seen = seen.entry(answer.source).or_default();
                match &answer.outcome {
                    Ok(price) => seen.quotes.push((*pair, *price)),
                    Err(Unused::Blocked { .. }) => seen.skipped = true,
                    Err(Unused::Failed(error)) if error.failure.kind() == FailureKind::Blocked => {
                        seen.blocked = Some(error.clone());
                    }
                    Err(Unused::Failed(error)) => {
                        seen.failure.get_or_insert_with(|| (*pair, error.clone()));
                    }
                    Err(Unused::Excluded { price, exclusion }) => {
                        seen.quotes.push((*pair, *price));
                        seen.exclusion
                            .get_or_insert_with(|| (*pair, exclusion.to_string()));
                    }
                }
            }
        }
        let mut notes = Vec::new();
        for (source, seen) in seen {
            let tracked = self.sources.entry(source).or_default();
            tracked.take_in(source, seen, now, &mut notes);
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::SourceReport;
    use crate::price::{Exclusion, SourceFailure, SourcedPrice};

    fn usd(text: &str) -> UsdPrice {
        UsdPrice::parse_quote(text).unwrap()
    }

    fn failed(failure: SourceFailure) -> Result<UsdPrice, Unused> {
        Err(Unused::Failed(SourceError {
            failure,
            attempts: 1,
        }))
    }

    /// An ETH/USD observation in which binance answered `binance` and coinbase 3000.
    fn observation(binance: Result<UsdPrice, Unused>) -> Vec<(Pair, PairReport)> {
        let report = PairReport {
            sources: vec![
                SourceReport {
                    source: Source::Coinbase,
                    elapsed: Some(Duration::from_millis(20)),
                    outcome: Ok(usd("3000")),
                },
                SourceReport {
                    source: Source::Binance,
                    elapsed: Some(Duration::from_millis(20)),
                    outcome: binance,
                },
            ],
            result: Ok(SourcedPrice {
                price: usd("3000"),
                sources: 1,
            }),
        };
        vec![(Pair::EthUsd, report)]
    }

    fn levels(notes: &[Note]) -> Vec<log::Level> {
        notes.iter().map(|note| note.level).collect()
    }

    fn binance(states: &SourceStates) -> SourceStatus {
        states
            .statuses()
            .into_iter()
            .find(|status| status.source == "binance")
            .unwrap()
    }

    #[test]
    fn a_block_is_explained_once_and_skipped_for_an_hour_each_time() {
        let mut states = SourceStates::new([Source::Coinbase, Source::Binance]);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000);
        let blocked = || {
            failed(SourceFailure::Blocked(
                "451 Unavailable For Legal Reasons".into(),
            ))
        };

        let notes = states.record(&observation(blocked()), start);
        assert_eq!(levels(&notes), [log::Level::Warn]);
        assert!(notes[0].text.contains("binance") && notes[0].text.contains("451"));
        assert!(notes[0].text.contains("--sources"), "{}", notes[0].text);
        let until = start + BLOCKED_FOR;
        assert_eq!(
            states.skipped(start),
            BTreeMap::from([(Source::Binance, until)])
        );
        let status = binance(&states);
        assert_eq!(status.state, SourceCondition::Blocked);
        assert_eq!(status.blocked_until, Some(unix_seconds(until)));

        // Skipped while blocked: nothing changes, nothing is logged.
        let skipped = Err(Unused::Blocked { until });
        assert!(
            states
                .record(&observation(skipped), start + Duration::from_secs(15))
                .is_empty()
        );
        assert_eq!(binance(&states).state, SourceCondition::Blocked);

        // Asked again after the hour, still blocked: skipped for another hour, no new warning.
        let later = until + Duration::from_secs(1);
        assert!(states.skipped(later).is_empty());
        let notes = states.record(&observation(blocked()), later);
        assert_eq!(levels(&notes), [log::Level::Debug]);
        assert_eq!(
            states.skipped(later).get(&Source::Binance),
            Some(&(later + BLOCKED_FOR))
        );

        // Answering again ends the block, said once.
        let notes = states.record(&observation(Ok(usd("3001"))), later + BLOCKED_FOR);
        assert_eq!(levels(&notes), [log::Level::Info]);
        let status = binance(&states);
        assert_eq!(status.state, SourceCondition::Ok);
        assert_eq!(status.blocked_until, None);
        assert_eq!(status.last_quote.get(&Pair::EthUsd), Some(&usd("3001")));
    }

    #[test]
    fn failing_and_left_out_are_logged_when_they_start_and_end() {
        let mut states = SourceStates::new([Source::Coinbase, Source::Binance]);
        let now = SystemTime::UNIX_EPOCH;
        let mut warnings = 0;
        for _ in 0..5 {
            let notes = states.record(&observation(failed(SourceFailure::Timeout)), now);
            warnings += notes.len();
        }
        assert_eq!(warnings, 1);
        let status = binance(&states);
        assert_eq!(status.state, SourceCondition::Failing);
        assert_eq!(
            status.last_error.as_deref(),
            Some("ETH/USD: timed out (1 attempt)")
        );
        let notes = states.record(&observation(Ok(usd("3000"))), now);
        assert_eq!(levels(&notes), [log::Level::Info]);
        assert!(
            notes[0].text.contains("after 5 failed observations"),
            "{notes:?}"
        );
        assert_eq!(binance(&states).state, SourceCondition::Ok);

        let outlier = || {
            Err(Unused::Excluded {
                price: usd("6000"),
                exclusion: Exclusion::Stale {
                    age: Duration::from_secs(300),
                    max: Duration::from_secs(120),
                },
            })
        };
        assert_eq!(
            levels(&states.record(&observation(outlier()), now)),
            [log::Level::Warn]
        );
        assert!(states.record(&observation(outlier()), now).is_empty());
        let status = binance(&states);
        assert_eq!(status.state, SourceCondition::Ok);
        assert_eq!(status.last_quote.get(&Pair::EthUsd), Some(&usd("6000")));
        assert!(status.last_exclusion.unwrap().starts_with("ETH/USD: stale"));
        assert_eq!(
            levels(&states.record(&observation(Ok(usd("3000"))), now)),
            [log::Level::Info]
        );
        assert_eq!(states.sources_used(Pair::EthUsd), Some(1));
        assert_eq!(states.sources_used(Pair::BtcUsd), None);
    }

    #[test]
    fn the_status_serializes_as_the_operator_reads_it() {
        let mut states = SourceStates::new([Source::Binance]);
        let json = serde_json::to_value(states.statuses()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"source": "binance", "state": "ok", "last_quote": {}}])
        );
        states.record(
            &observation(failed(SourceFailure::Blocked("403 Forbidden".into()))),
            SystemTime::UNIX_EPOCH,
        );
        let json = serde_json::to_value(binance(&states)).unwrap();
        assert_eq!(json["state"], "blocked");
        assert_eq!(json["blocked_until"], 3600);
        assert_eq!(
            json["last_error"],
            "blocked (HTTP 403 Forbidden) (1 attempt)"
        );
        assert_eq!(json["last_quote"], serde_json::json!({}));
    }
}
