//! The node's counters, declared once each in one prometheus-client registry, so that
//! `/metrics` (and the tests and benchmarks) read the same numbers.
//!
//! Dependencies run one way: the parts of a node never name this module. Domain modules
//! declare their label enums with `label_values!` ([`crate::labels`]); this module encodes them
//! for Prometheus. The network, the store and the writer report what they do through a probe
//! trait of their own ([`crate::network::Probe`], [`crate::store::Probe`],
//! [`crate::writer::Probe`]), which [`Metrics`] implements.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;

use crate::audit::FindingKind;
use crate::cosign::{CosignRefusal, FallbackOutcome};
use crate::labels::Limit;
use crate::message::GossipKind;
use crate::network::validation::{Action, RefusalReason};
use crate::pair::Pair;
use crate::price::{ExclusionKind, FailureKind, PairReport, Source, Unused};
use crate::trigger::{Reason, StallCause};
use crate::writer::{FlushResult, RoundOutcome};

/// Makes a type a prometheus-client label value through a method that names it.
macro_rules! label_value_by {
    ($method:ident: $($type:ty),+) => {
        $(impl ::prometheus_client::encoding::EncodeLabelValue for $type {
            fn encode(
                &self,
                encoder: &mut ::prometheus_client::encoding::LabelValueEncoder,
            ) -> ::core::fmt::Result {
                ::core::fmt::Write::write_str(encoder, self.$method())
            }
        })+
    };
}

label_value_by!(name: Pair, Source);
label_value_by!(as_str: CosignRefusal, FallbackOutcome, Limit, GossipKind, RefusalReason,
    ExclusionKind, FailureKind, Reason, StallCause, FlushResult, RoundOutcome, Expiry,
    FindingKind);

/// Declares the node's metrics once: each field with its type, its initial value when not
/// `Default`, and its help text. The struct, its `Default`, its registration under `oracle_`
/// and the list of names all come from that one declaration, so a metric cannot be declared
/// and never reach `/metrics`.
macro_rules! declare_metrics {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($field:ident: $type:ty $(= $init:expr)? => $help:expr;)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(#[doc = $help] pub $field: $type,)+
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: declare_metrics!(@init $type $(, $init)?),)+ }
            }
        }

        impl $name {
            /// Every metric's name, without the `oracle_` prefix.
            pub const NAMES: &[&str] = &[$(stringify!($field)),+];

            /// Registers every metric under the `oracle_` prefix.
            pub fn register(&self, registry: &mut Registry) {
                let registry = registry.sub_registry_with_prefix("oracle");
                $(registry.register(stringify!($field), $help, Described(self.$field.clone()));)+
            }
        }
    };
    (@init $type:ty) => { <$type>::default() };
    (@init $type:ty, $init:expr) => { $init };
}

/// A metric that `/metrics` always describes (`# HELP`, `# TYPE`), also while a family has no
/// series yet: an operator (and the test of every declared name) sees that it exists.
#[derive(Debug, Clone)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// `member="0x…",outcome="…"` of a stored round's committee member.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberRoundLabels {
    pub member: String,
    pub outcome: RoundOutcome,
}

crate::labels::label_values! {
    /// Which prices the pool dropped unstored.
    pub enum Expiry {
        /// Never reached the quorum.
        Unverified => "unverified",
        /// Verified, but the database was away for longer than `--retention`.
        Verified => "verified",
    }
}

/// `writer="0x…"`: the member that signed a stored notice.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriterLabel {
    pub writer: String,
}

/// `kind="…"` of a gossip message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabel {
    pub kind: GossipKind,
}

/// `reason="…"` of a refused message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    pub reason: RefusalReason,
}

/// `reason="…"` of a price this node did not co-sign.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CosignRefusalLabel {
    pub reason: CosignRefusal,
}

/// `kind="…"` of a fallback turn's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabel {
    pub kind: FallbackOutcome,
}

/// `kind="…"` of a flush's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlushLabel {
    pub kind: FlushResult,
}

/// `kind="…"` of dropped prices.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabel {
    pub kind: Expiry,
}

/// `cause="…"` of a round that failed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StallLabel {
    pub cause: StallCause,
}

/// `reason="…"` of a stored row the API refused: the kind of its finding.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RowRefusalLabel {
    pub reason: FindingKind,
}

/// A bound that was hit, e.g. `limit="origin_rate"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: Limit,
}

/// A database statement's kind, e.g. `kind="heartbeat"`: the names the store gives its calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatementLabel {
    pub kind: &'static str,
}

/// A database server.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    pub server: String,
}

/// A price source and a failure kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceFailureLabels {
    pub source: Source,
    pub kind: FailureKind,
}

/// A price source.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: Source,
}

/// `pair="…",trigger="…"` of a round this node started.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoundStartLabels {
    pub pair: Pair,
    pub trigger: Reason,
}

/// A price source and why one of its quotes was left out.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceExclusionLabels {
    pub source: Source,
    pub kind: ExclusionKind,
}

/// A price source and a pair.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourcePairLabels {
    pub source: Source,
    pub pair: Pair,
}

/// A pair, e.g. `pair="ETH/USD"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabel {
    pub pair: Pair,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A counter with a `pair` label that also knows its total over every pair (prometheus-client's
/// families cannot be summed), for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct PairCounter {
    by_pair: Family<PairLabel, Counter>,
    total: Counter,
}

impl PairCounter {
    pub fn inc(&self, pair: Pair) {
        self.inc_by(pair, 1);
    }

    pub fn inc_by(&self, pair: Pair, count: u64) {
        self.by_pair
            .get_or_create(&PairLabel { pair })
            .inc_by(count);
        self.total.inc_by(count);
    }

    /// Over every pair.
    pub fn get(&self) -> u64 {
        self.total.get()
    }

    pub fn get_pair(&self, pair: Pair) -> u64 {
        self.by_pair.get_or_create(&PairLabel { pair }).get()
    }
}

/// `/metrics` shows the series by pair; the total is for tests and benchmarks.
impl EncodeMetric for PairCounter {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.by_pair.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.by_pair.metric_type()
    }
}

declare_metrics! {
    /// The node's counters. Cheap to clone: every field is a shared atomic.
    pub struct Metrics {
        prices_originated: PairCounter => "Prices this node fetched, signed and published, by pair";
        rounds_started: Family<RoundStartLabels, Counter> =>
            "Rounds this node started, by pair and trigger (deviation, heartbeat, requested)";
        prices_cosigned: PairCounter => "Peers' prices this node co-signed, by pair";
        cosign_fallbacks: Family<FallbackLabel, Counter> =>
            "Turns this node had as a fallback co-signer, by outcome (stepped_in, not_needed)";
        prices_refused: Family<CosignRefusalLabel, Counter> =>
            "Peers' prices this node refused to co-sign, by reason";
        prices_verified: PairCounter => "Prices that reached the signer quorum here, by pair";
        equivocations: Counter =>
            "Members caught signing two different observations for one round (neither counts)";
        rounds_stalled: Family<StallLabel, Counter> =>
            "Rounds that stopped standing for their pair unverified, so that the next member \
             starts one, by cause (timeout: not verified within --progress-timeout; \
             equivocation: its origin signed two observations)";
        starter_penalties: Counter =>
            "Times a member whose rounds kept failing lost its turn to start rounds here";
        member_rounds: Family<MemberRoundLabels, Counter> =>
            "Committee members of the rounds this node stored, by member and outcome (signed: \
             its observation is in the stored report; missed)";
        healthy: Gauge => "1 while /health finds no problem, else 0";
        prices_stored: PairCounter =>
            "Prices this node wrote to the database as the writer, by pair";
        flushes: Family<FlushLabel, Counter> =>
            "Flush attempts, by outcome: stored, refused (not the writer after all), failed";
        prices_expired: Family<ExpiryLabel, Counter> =>
            "Prices dropped from memory unstored, by state";
        messages_received: Family<GossipLabel, Counter> =>
            "Valid gossip messages received, by kind";
        messages_rejected: Family<RefusalLabel, Counter> =>
            "Invalid gossip messages rejected, by reason";
        messages_ignored: Family<RefusalLabel, Counter> =>
            "Gossip messages neither used nor forwarded though not provably invalid (too old, \
             from the future, not a member, over a limit), by reason";
        limit_hits: Family<LimitLabel, Counter> =>
            "Times a bound refused something (connections, rates, queues, pool entries), by limit";
        members: Gauge =>
            "Members whose signatures count, as this node sees them (-1 while unknown)";
        pool_pending: Gauge => "Prices in memory still short of the signer quorum";
        publishes: Family<GossipLabel, Counter> => "Gossip messages this node published, by kind";
        published_bytes: Family<GossipLabel, Counter> =>
            "Bytes of gossip this node published, by kind";
        publish_retries: Counter =>
            "Publish attempts retried because no peer was subscribed yet";
        publishes_dropped: Counter => "Messages given up on after retrying for --max-age";
        connected_peers: Gauge => "Peers connected now";
        // 1 ms … ~65 s.
        quorum_seconds: Histogram = Histogram::new(exponential_buckets(0.001, 2.0, 17)) =>
            "Time from a price's observation to this node holding its signer quorum";
        // 10 ms … ~40 s.
        source_fetch_seconds: HistogramFamily<SourceLabel> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 13))) =>
            "Time to get a pair's quote from a source (the request that carried it, retries \
             included), one sample per pair, by source";
        source_failures: Family<SourceFailureLabels, Counter> =>
            "Quotes of a pair a source did not give after all retries, by source and kind \
             (blocked: HTTP 451 or 403, then not asked for an hour)";
        source_exclusions: Family<SourceExclusionLabels, Counter> =>
            "Quotes of a pair left out of the price, by source and kind (outlier: too far from \
             the other sources; stale: too old by the source's own timestamp)";
        source_last_quote: Family<SourcePairLabels, Gauge<f64, AtomicU64>> =>
            "Each source's last quote of each pair in USD, also when it was left out";
        observation_sources: Family<PairLabel, Gauge> =>
            "How many sources the last observation of each pair is the median of (0: none)";
        db_statements: Family<StatementLabel, Counter> => "Database statements issued, by kind";
        db_failures: Family<StatementLabel, Counter> =>
            "Database statements that failed or timed out, by kind";
        database_server: Family<ServerLabel, Gauge> =>
            "1 for the database server this node writes to (the primary when last asked), by \
             host:port";
        database_failovers: Counter =>
            "Times this node moved its pool to another server because the primary changed";
        database_without_primary_seconds: Gauge<f64, AtomicU64> =>
            "How long no database server has taken writes, as of the node's last look (0 while \
             one does)";
        lease_writer: Gauge => "1 while this node holds the writer lease";
        lease_writer_changes: Counter => "Times this node gained or lost the writer lease";
        false_notices: Family<WriterLabel, Counter> =>
            "Stored notices that named an id this node's database did not hold when looked up \
             twice (nothing was dropped for them; their writer's notices are then not acted on \
             for 10 minutes), by the member that signed them";
        // Every reason at zero from the start: an alert sees the first refusal as an increase.
        api_rows_refused: Family<RowRefusalLabel, Counter> = {
            let family = Family::<RowRefusalLabel, Counter>::default();
            for reason in FindingKind::ALL {
                let _ = family.get_or_create(&RowRefusalLabel { reason: *reason });
            }
            family
        } =>
            "Stored rows the /v1 API refused to serve because they do not verify (oracle \
             verify's rules), once per row, by reason (invalid, foreign_id, from_future, \
             non_member, below_quorum, uncommitted)";
    }
}

impl Metrics {
    /// The counter of `label` in `family` (created at zero if it has not counted yet).
    pub fn counter<L>(family: &Family<L, Counter>, label: L) -> Counter
    where
        L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug,
    {
        family.get_or_create(&label).clone()
    }

    /// Counts one refusal by the bound `limit`.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits.get_or_create(&LimitLabel { limit }).inc();
    }

    /// How often the bound `limit` has refused something.
    pub fn limit_hit_count(&self, limit: Limit) -> u64 {
        self.limit_hits.get_or_create(&LimitLabel { limit }).get()
    }

    /// Messages of `kind` this node published.
    pub fn published(&self, kind: GossipKind) -> Counter {
        Self::counter(&self.publishes, GossipLabel { kind })
    }

    /// Flushes that ended as `result`.
    pub fn flushed(&self, result: FlushResult) -> Counter {
        Self::counter(&self.flushes, FlushLabel { kind: result })
    }

    /// Peers' prices this node did not co-sign, for `reason`.
    pub fn cosign_refused(&self, reason: CosignRefusal) -> Counter {
        Self::counter(&self.prices_refused, CosignRefusalLabel { reason })
    }

    /// Creates every per-pair series of the pairs this node signs at zero, so that a pair's
    /// series exist from the start — alerts can tell "nothing happened" from "not signed" —
    /// even when this node has not started a round of it yet (in a flat market one member
    /// starts each round).
    pub fn start_pairs(&self, pairs: crate::pair::PairSet) {
        for pair in pairs.iter() {
            for counter in [
                &self.prices_originated,
                &self.prices_cosigned,
                &self.prices_verified,
                &self.prices_stored,
            ] {
                counter.inc_by(pair, 0);
            }
            for trigger in Reason::ALL {
                self.round_started(pair, *trigger);
            }
        }
    }

    /// Rounds of `pair` this node started for `trigger`.
    pub fn round_started(&self, pair: Pair, trigger: Reason) -> Counter {
        Self::counter(&self.rounds_started, RoundStartLabels { pair, trigger })
    }

    /// Rounds that failed for `cause`.
    pub fn round_stalled(&self, cause: StallCause) -> Counter {
        Self::counter(&self.rounds_stalled, StallLabel { cause })
    }

    /// Fallback turns that ended as `outcome`.
    pub fn fallback(&self, outcome: FallbackOutcome) -> Counter {
        Self::counter(&self.cosign_fallbacks, FallbackLabel { kind: outcome })
    }

    /// Prices dropped unstored, by `state`.
    pub fn expired(&self, state: Expiry) -> Counter {
        Self::counter(&self.prices_expired, ExpiryLabel { kind: state })
    }

    /// Messages rejected for `reason`.
    pub fn rejected(&self, reason: RefusalReason) -> Counter {
        Self::counter(&self.messages_rejected, RefusalLabel { reason })
    }

    /// Quotes of `source` left out as `kind`.
    pub fn source_excluded(&self, source: Source, kind: ExclusionKind) -> Counter {
        Self::counter(
            &self.source_exclusions,
            SourceExclusionLabels { source, kind },
        )
    }

    /// Counts what an observation of `pair` showed of each source: the request's latency, the
    /// quote, a failure or an exclusion, and how many sources the price came from.
    pub fn observed(&self, pair: Pair, report: &PairReport) {
        for answer in &report.sources {
            let source = answer.source;
            // At zero from the first observation, so that alerts see 0 rather than nothing.
            for kind in ExclusionKind::ALL {
                self.source_excluded(source, *kind);
            }
            if let Some(elapsed) = answer.elapsed {
                self.source_fetch_seconds
                    .get_or_create(&SourceLabel { source })
                    .observe(elapsed.as_secs_f64());
            }
            let quote = match &answer.outcome {
                Ok(price) => Some(*price),
                Err(Unused::Excluded { price, exclusion }) => {
                    self.source_excluded(source, exclusion.kind()).inc();
                    Some(*price)
                }
                Err(Unused::Failed(error)) => {
                    let kind = error.failure.kind();
                    Self::counter(&self.source_failures, SourceFailureLabels { source, kind })
                        .inc();
                    None
                }
                Err(Unused::Blocked { .. }) => None,
            };
            if let Some(price) = quote {
                self.source_last_quote
                    .get_or_create(&SourcePairLabels { source, pair })
                    .set(price.to_decimal().to_f64().unwrap_or(f64::NAN));
            }
        }
        let sources = report.result.as_ref().map_or(0, |price| price.sources);
        self.observation_sources
            .get_or_create(&PairLabel { pair })
            .set(i64::try_from(sources).unwrap_or(i64::MAX));
    }

    /// False stored notices signed by `writer`.
    pub fn false_notices_of(&self, writer: alloy_primitives::Address) -> Counter {
        let writer = writer.to_checksum(None);
        Self::counter(&self.false_notices, WriterLabel { writer })
    }

    /// Messages ignored for `reason`.
    pub fn ignored(&self, reason: RefusalReason) -> Counter {
        Self::counter(&self.messages_ignored, RefusalLabel { reason })
    }
}

impl crate::network::Probe for Metrics {
    fn received(&self, kind: GossipKind) {
        self.messages_received
            .get_or_create(&GossipLabel { kind })
            .inc();
    }

    fn refused(&self, reason: RefusalReason, action: Action) {
        match action {
            Action::Reject => self.rejected(reason).inc(),
            Action::Ignore => self.ignored(reason).inc(),
        };
    }

    fn limit_hit(&self, limit: Limit) {
        Metrics::limit_hit(self, limit);
    }

    fn sent(&self, kind: GossipKind, bytes: usize) {
        self.published(kind).inc();
        Self::counter(&self.published_bytes, GossipLabel { kind }).inc_by(bytes as u64);
    }

    fn publish_retried(&self) {
        self.publish_retries.inc();
    }

    fn publish_dropped(&self) {
        self.publishes_dropped.inc();
    }

    fn connected_peers(&self, count: usize) {
        self.connected_peers
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

impl crate::store::Probe for Metrics {
    fn statement_issued(&self, kind: &'static str) {
        Self::counter(&self.db_statements, StatementLabel { kind }).inc();
    }

    fn statement_failed(&self, kind: &'static str) {
        Self::counter(&self.db_failures, StatementLabel { kind }).inc();
    }

    fn primary_followed(&self, followed: &crate::store::Followed) {
        self.database_without_primary_seconds
            .set(followed.without.as_secs_f64());
        if followed.moved {
            self.database_failovers.inc();
        }
        if let Some(server) = &followed.primary {
            // One server at a time: the family holds only the one in use.
            self.database_server.clear();
            self.database_server
                .get_or_create(&ServerLabel {
                    server: server.clone(),
                })
                .set(1);
        }
    }
}

impl crate::api::checked::Probe for Metrics {
    fn row_refused(&self, reason: FindingKind) {
        Self::counter(&self.api_rows_refused, RowRefusalLabel { reason }).inc();
    }
}

impl crate::writer::Probe for Metrics {
    fn flush_ended(&self, result: FlushResult) {
        self.flushed(result).inc();
    }

    fn stored(&self, pair: Pair) {
        self.prices_stored.inc(pair);
    }

    fn committee_member(&self, member: alloy_primitives::Address, outcome: RoundOutcome) {
        let label = MemberRoundLabels {
            member: member.to_checksum(None),
            outcome,
        };
        Self::counter(&self.member_rounds, label).inc();
    }

    fn lease(&self, held: bool, changed: bool) {
        self.lease_writer.set(i64::from(held));
        if changed {
            self.lease_writer_changes.inc();
        }
    }

    fn false_notice(&self, writer: alloy_primitives::Address) {
        self.false_notices_of(writer).inc();
    }

    fn notice_queue_full(&self) {
        Metrics::limit_hit(self, Limit::NoticeQueue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_is_described_before_it_counts() {
        let mut registry = Registry::default();
        Metrics::default().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in Metrics::NAMES {
            for line in ["HELP", "TYPE"] {
                let start = format!("# {line} oracle_{name} ");
                assert!(
                    text.lines().any(|l| l.starts_with(&start)),
                    "{start}: {text}"
                );
            }
        }
    }

    #[test]
    fn registered_counters_show_in_the_text_exposition() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.prices_originated.inc(Pair::BtcUsd);
        metrics.published(GossipKind::Price).inc_by(2);
        metrics.quorum_seconds.observe(0.5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("oracle_quorum_seconds_count 1"), "{text}");
        assert!(
            text.contains("oracle_prices_originated_total{pair=\"BTC/USD\"} 1"),
            "{text}"
        );
        assert_eq!(metrics.prices_originated.get(), 1);
        assert_eq!(metrics.prices_originated.get_pair(Pair::EthUsd), 0);
        assert!(
            text.contains("oracle_publishes_total{kind=\"price\"} 2"),
            "{text}"
        );
    }
}
