//! What an observation found, per pair and source: the price (or why there is none) and what
//! became of each source's quote. The feed makes these reports; the node's metrics, its
//! `/status` and the sources' memory read them.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::rules::{Exclusion, SourcedPrice};
use super::{Source, SourceError, UsdPrice};

/// Why a source's quote of a pair is not in the price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unused {
    /// No quote: the request failed, or the answer did not hold one.
    Failed(SourceError),
    /// A quote the rules left out.
    Excluded {
        price: UsdPrice,
        exclusion: Exclusion,
    },
    /// Not asked: the source blocks this node, and is skipped until then.
    Blocked { until: SystemTime },
}

impl fmt::Display for Unused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(error) => write!(f, "error: {error}"),
            Self::Excluded { exclusion, .. } => write!(f, "left out, {exclusion}"),
            Self::Blocked { until } => write!(
                f,
                "not asked: it blocked this node, until {}",
                humantime::format_rfc3339_seconds(*until)
            ),
        }
    }
}

/// What one source gave for one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    pub source: Source,
    /// How long the request that carried the pair took, retries included; `None` when the
    /// source was not asked.
    pub elapsed: Option<Duration>,
    /// The quote that went into the price, or why none did.
    pub outcome: Result<UsdPrice, Unused>,
}

/// One pair of an observation: every source that quotes it, and the price.
#[derive(Debug)]
pub struct PairReport {
    /// In the order of [`FeedSettings::endpoints`].
    pub sources: Vec<SourceReport>,
    pub result: Result<SourcedPrice, FeedError>,
}

/// The feed could not produce a price.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{exchange} URL {url}: {reason}")]
    Url {
        exchange: Source,
        url: String,
        reason: String,
    },
    #[error("only {used} of {required} required price sources usable: {}", summary(.unused))]
    TooFewSources {
        used: usize,
        required: usize,
        unused: Vec<(Source, Unused)>,
    },
}

fn summary(unused: &[(Source, Unused)]) -> String {
    if unused.is_empty() {
        return "no other source quotes the pair".to_owned();
    }
    unused
        .iter()
        .map(|(source, why)| format!("{source}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
