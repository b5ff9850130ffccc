//! Counters every part of a node updates, kept in one prometheus-client registry so that
//! `/metrics` (and the tests and benchmarks) read the same numbers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label with one value, e.g. `kind="price"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// A `reason` label, e.g. `reason="bad_signature"`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The node's counters. Cheap to clone: every field is a shared atomic.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub prices_originated: Counter,
    pub prices_cosigned: Counter,
    pub prices_refused: Family<ReasonLabel, Counter>,
    pub prices_verified: Counter,
    pub prices_stored: Counter,
    pub prices_expired: Family<KindLabel, Counter>,
    pub messages_received: Family<KindLabel, Counter>,
    pub messages_rejected: Family<ReasonLabel, Counter>,
    pub publishes: Family<KindLabel, Counter>,
    pub published_bytes: Family<KindLabel, Counter>,
    pub publish_retries: Counter,
    pub publishes_dropped: Counter,
    pub connected_peers: Gauge,
}

impl Metrics {
    /// Registers every counter under the `oracle_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("oracle");
        registry.register(
            "prices_originated",
            "Prices this node fetched, signed and published",
            self.prices_originated.clone(),
        );
        registry.register(
            "prices_cosigned",
            "Peers' prices this node co-signed",
            self.prices_cosigned.clone(),
        );
        registry.register(
            "prices_refused",
            "Peers' prices this node refused to co-sign, by reason",
            self.prices_refused.clone(),
        );
        registry.register(
            "prices_verified",
            "Prices that reached the signer quorum here",
            self.prices_verified.clone(),
        );
        registry.register(
            "prices_stored",
            "Prices this node wrote to the database as the writer",
            self.prices_stored.clone(),
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
    }

    pub fn kind(family: &Family<KindLabel, Counter>, kind: &str) -> Counter {
        family
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .clone()
    }

    pub fn reason(family: &Family<ReasonLabel, Counter>, reason: &str) -> Counter {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .clone()
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
        metrics.prices_originated.inc();
        Metrics::kind(&metrics.publishes, "price").inc_by(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("oracle_prices_originated_total 1"), "{text}");
        assert!(
            text.contains("oracle_publishes_total{kind=\"price\"} 2"),
            "{text}"
        );
    }
}
