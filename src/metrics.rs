//! Counters every part of a node updates, kept in one prometheus-client registry so that
//! `/metrics` (and the tests and benchmarks) read the same numbers.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rust_decimal::prelude::ToPrimitive;

use crate::cosign::{CosignRefusal, FallbackOutcome};
use crate::message::GossipKind;
use crate::network::validation::RefusalReason;
use crate::pair::Pair;
use crate::price::{ExclusionKind, FailureKind, PairReport, Source, Unused};
use crate::trigger::Reason;

/// Defines an enum of metric label values, each variant with the exact text `/metrics` shows
/// (what dashboards and alerts match on), and makes it a prometheus-client label value.
macro_rules! label_values {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code, reason = "not every label enum is enumerated")]
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The text of the label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        $crate::metrics::label_value_by!($name, as_str);

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use label_values;

/// Makes a type a prometheus-client label value through a method that names it.
macro_rules! label_value_by {
    ($type:ty, $method:ident) => {
        impl ::prometheus_client::encoding::EncodeLabelValue for $type {
            fn encode(
                &self,
                encoder: &mut ::prometheus_client::encoding::LabelValueEncoder,
            ) -> ::core::fmt::Result {
                ::core::fmt::Write::write_str(encoder, self.$method())
            }
        }
    };
}
pub(crate) use label_value_by;

label_values! {
    /// The bounds of the trust model, as `limit_hits` counts them.
    pub enum Limit {
        /// A signer's pending prices in the pool.
        PendingPerSigner => "pending_per_signer",
        /// Peers' prices waiting for this node's observation or its fallback turn.
        CosignQueue => "cosign_queue",
        /// Publishes waiting for the network task.
        CommandQueue => "command_queue",
        /// New prices per origin and pair per minute.
        OriginRate => "origin_rate",
        /// Messages kept until the member list is read.
        HeldUntilMembersKnown => "held_until_members_known",
        /// Refused messages per peer per minute.
        RefusedPerPeer => "refused_per_peer",
        /// Connections (in total, per peer, pending).
        Connections => "connections",
        /// Received messages per peer waiting for validation.
        ValidationQueue => "validation_queue",
    }
}

label_values! {
    /// Whether a member of a stored round's committee observed it.
    pub enum RoundOutcome {
        Signed => "signed",
        Missed => "missed",
    }
}

/// `member="0x…",outcome="…"` of a stored round's committee member.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberRoundLabels {
    pub member: String,
    pub outcome: RoundOutcome,
}

label_values! {
    /// How a flush attempt ended.
    pub enum FlushResult {
        Stored => "stored",
        /// Another node held the lease after all.
        Refused => "refused",
        Failed => "failed",
    }
}

label_values! {
    /// Which prices the pool dropped unstored.
    pub enum Expiry {
        /// Never reached the quorum.
        Unverified => "unverified",
        /// Verified, but the database was away for longer than `--retention`.
        Verified => "verified",
    }
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

/// The node's counters. Cheap to clone: every field is a shared atomic.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub prices_originated: PairCounter,
    /// Rounds this node started, by pair and why: `deviation`, `heartbeat`, `requested`.
    pub rounds_started: Family<RoundStartLabels, Counter>,
    pub prices_cosigned: PairCounter,
    /// Turns this node had as a fallback co-signer (not on a price's committee), by outcome:
    /// `stepped_in` (the price still lacked its quorum) or `not_needed`.
    pub cosign_fallbacks: Family<FallbackLabel, Counter>,
    pub prices_refused: Family<CosignRefusalLabel, Counter>,
    pub prices_verified: PairCounter,
    /// Members caught signing two different observations for one round.
    pub equivocations: Counter,
    /// For each stored round (counted by its writer), each member of its committee: whether
    /// its observation is in the stored report.
    pub member_rounds: Family<MemberRoundLabels, Counter>,
    /// 1 while `/health` finds no problem, else 0.
    pub healthy: Gauge,
    pub prices_stored: PairCounter,
    /// Flush attempts by outcome: `stored`, `refused` (another node held the lease), `failed`.
    pub flushes: Family<FlushLabel, Counter>,
    pub prices_expired: Family<ExpiryLabel, Counter>,
    pub messages_received: Family<GossipLabel, Counter>,
    pub messages_rejected: Family<RefusalLabel, Counter>,
    pub messages_ignored: Family<RefusalLabel, Counter>,
    /// Every bound of the trust model, counted each time it refuses something.
    pub limit_hits: Family<LimitLabel, Counter>,
    /// Members whose signatures count, as this node sees them.
    pub members: Gauge,
    /// Prices in the pool still short of the quorum.
    pub pool_pending: Gauge,
    pub publishes: Family<GossipLabel, Counter>,
    pub published_bytes: Family<GossipLabel, Counter>,
    pub publish_retries: Counter,
    pub publishes_dropped: Counter,
    pub connected_peers: Gauge,
    /// Seconds from a price's observation to this node holding the quorum for it.
    pub quorum_seconds: Histogram,
    /// Per pair quoted: the time of the request that carried the quote, retries included. One
    /// sample per pair, so that its count is the number of quotes asked for, which failures
    /// and exclusions (also per pair) are shares of.
    pub source_fetch_seconds: HistogramFamily<SourceLabel>,
    pub source_failures: Family<SourceFailureLabels, Counter>,
    pub source_exclusions: Family<SourceExclusionLabels, Counter>,
    /// Each source's last quote of each pair in USD, also when it was left out.
    pub source_last_quote: Family<SourcePairLabels, Gauge<f64, AtomicU64>>,
    /// How many sources the last price of each pair is the median of; 0 when it had none.
    pub observation_sources: Family<PairLabel, Gauge>,
    pub db_statements: Family<StatementLabel, Counter>,
    pub db_failures: Family<StatementLabel, Counter>,
    pub lease_writer: Gauge,
    pub lease_writer_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            prices_originated: PairCounter::default(),
            rounds_started: Family::default(),
            prices_cosigned: PairCounter::default(),
            cosign_fallbacks: Family::default(),
            prices_refused: Family::default(),
            prices_verified: PairCounter::default(),
            equivocations: Counter::default(),
            member_rounds: Family::default(),
            healthy: Gauge::default(),
            prices_stored: PairCounter::default(),
            flushes: Family::default(),
            prices_expired: Family::default(),
            messages_received: Family::default(),
            messages_rejected: Family::default(),
            messages_ignored: Family::default(),
            limit_hits: Family::default(),
            members: Gauge::default(),
            pool_pending: Gauge::default(),
            publishes: Family::default(),
            published_bytes: Family::default(),
            publish_retries: Counter::default(),
            publishes_dropped: Counter::default(),
            connected_peers: Gauge::default(),
            // 1 ms … ~65 s.
            quorum_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            source_fetch_seconds: Family::new_with_constructor(|| {
                // 10 ms … ~40 s.
                Histogram::new(exponential_buckets(0.01, 2.0, 13))
            }),
            source_failures: Family::default(),
            source_exclusions: Family::default(),
            source_last_quote: Family::default(),
            observation_sources: Family::default(),
            db_statements: Family::default(),
            db_failures: Family::default(),
            lease_writer: Gauge::default(),
            lease_writer_changes: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every counter under the `oracle_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("oracle");
        registry.register(
            "prices_originated",
            "Prices this node fetched, signed and published, by pair",
            self.prices_originated.by_pair.clone(),
        );
        registry.register(
            "rounds_started",
            "Rounds this node started, by pair and trigger (deviation, heartbeat, requested)",
            self.rounds_started.clone(),
        );
        registry.register(
            "prices_cosigned",
            "Peers' prices this node co-signed, by pair",
            self.prices_cosigned.by_pair.clone(),
        );
        registry.register(
            "cosign_fallbacks",
            "Turns this node had as a fallback co-signer, by outcome (stepped_in, not_needed)",
            self.cosign_fallbacks.clone(),
        );
        registry.register(
            "prices_refused",
            "Peers' prices this node refused to co-sign, by reason",
            self.prices_refused.clone(),
        );
        registry.register(
            "prices_verified",
            "Prices that reached the signer quorum here, by pair",
            self.prices_verified.by_pair.clone(),
        );
        registry.register(
            "equivocations",
            "Members caught signing two different observations for one round (neither counts)",
            self.equivocations.clone(),
        );
        registry.register(
            "member_rounds",
            "Committee members of the rounds this node stored, by member and outcome (signed: \
             its observation is in the stored report; missed)",
            self.member_rounds.clone(),
        );
        registry.register(
            "healthy",
            "1 while /health finds no problem, else 0",
            self.healthy.clone(),
        );
        registry.register(
            "prices_stored",
            "Prices this node wrote to the database as the writer, by pair",
            self.prices_stored.by_pair.clone(),
        );
        registry.register(
            "flushes",
            "Flush attempts, by outcome: stored, refused (not the writer after all), failed",
            self.flushes.clone(),
        );
        registry.register(
            "prices_expired",
            "Prices dropped from memory unstored, by state",
            self.prices_expired.clone(),
        );
        registry.register(
            "messages_received",
            "Valid gossip messages received, by kind",
            self.messages_received.clone(),
        );
        registry.register(
            "messages_rejected",
            "Invalid gossip messages rejected, by reason",
            self.messages_rejected.clone(),
        );
        registry.register(
            "messages_ignored",
            "Gossip messages neither used nor forwarded though not provably invalid (too old, \
             from the future, not a member, over a limit), by reason",
            self.messages_ignored.clone(),
        );
        registry.register(
            "limit_hits",
            "Times a bound refused something (connections, rates, queues, pool entries), by limit",
            self.limit_hits.clone(),
        );
        registry.register(
            "members",
            "Members whose signatures count, as this node sees them (-1 while unknown)",
            self.members.clone(),
        );
        registry.register(
            "pool_pending",
            "Prices in memory still short of the signer quorum",
            self.pool_pending.clone(),
        );
        registry.register(
            "publishes",
            "Gossip messages this node published, by kind",
            self.publishes.clone(),
        );
        registry.register(
            "published_bytes",
            "Bytes of gossip this node published, by kind",
            self.published_bytes.clone(),
        );
        registry.register(
            "publish_retries",
            "Publish attempts retried because no peer was subscribed yet",
            self.publish_retries.clone(),
        );
        registry.register(
            "publishes_dropped",
            "Messages given up on after retrying for --max-age",
            self.publishes_dropped.clone(),
        );
        registry.register(
            "connected_peers",
            "Peers connected now",
            self.connected_peers.clone(),
        );
        registry.register(
            "quorum_seconds",
            "Time from a price's observation to this node holding its signer quorum",
            self.quorum_seconds.clone(),
        );
        registry.register(
            "source_fetch_seconds",
            "Time to get a pair's quote from a source (the request that carried it, retries \
             included), one sample per pair, by source",
            self.source_fetch_seconds.clone(),
        );
        registry.register(
            "source_failures",
            "Quotes of a pair a source did not give after all retries, by source and kind \
             (blocked: HTTP 451 or 403, then not asked for an hour)",
            self.source_failures.clone(),
        );
        registry.register(
            "source_exclusions",
            "Quotes of a pair left out of the price, by source and kind (outlier: too far from \
             the other sources; stale: too old by the source's own timestamp)",
            self.source_exclusions.clone(),
        );
        registry.register(
            "source_last_quote",
            "Each source's last quote of each pair in USD, also when it was left out",
            self.source_last_quote.clone(),
        );
        registry.register(
            "observation_sources",
            "How many sources the last observation of each pair is the median of (0: none)",
            self.observation_sources.clone(),
        );
        registry.register(
            "db_statements",
            "Database statements issued, by kind",
            self.db_statements.clone(),
        );
        registry.register(
            "db_failures",
            "Database statements that failed or timed out, by kind",
            self.db_failures.clone(),
        );
        registry.register(
            "lease_writer",
            "1 while this node holds the writer lease",
            self.lease_writer.clone(),
        );
        registry.register(
            "lease_writer_changes",
            "Times this node gained or lost the writer lease",
            self.lease_writer_changes.clone(),
        );
    }

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

    /// Fallback turns that ended as `outcome`.
    pub fn fallback(&self, outcome: FallbackOutcome) -> Counter {
        Self::counter(&self.cosign_fallbacks, FallbackLabel { kind: outcome })
    }

    /// Counts a valid message of `kind` received.
    pub fn received(&self, kind: GossipKind) {
        self.messages_received
            .get_or_create(&GossipLabel { kind })
            .inc();
    }

    /// Prices dropped unstored, by `state`.
    pub fn expired(&self, state: Expiry) -> Counter {
        Self::counter(&self.prices_expired, ExpiryLabel { kind: state })
    }

    /// A committee member's outcome in a stored round.
    pub fn member_round(
        &self,
        member: alloy_primitives::Address,
        outcome: RoundOutcome,
    ) -> Counter {
        let label = MemberRoundLabels {
            member: member.to_checksum(None),
            outcome,
        };
        Self::counter(&self.member_rounds, label)
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

    /// Messages ignored for `reason`.
    pub fn ignored(&self, reason: RefusalReason) -> Counter {
        Self::counter(&self.messages_ignored, RefusalLabel { reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
