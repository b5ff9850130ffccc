//! A node's HTTP endpoints in a running network: health, status and metrics that move.

use std::time::Duration;

use price_oracle::mock_exchange::Fault;
use price_oracle::testkit::{TestNode, stop_all, wait_for};

use super::get;
use crate::common::{self, cluster::Cluster};

/// A scrape in the Prometheus / OpenMetrics text format: every line is a comment or
/// `name{labels} value` with a numeric value, and it ends with `# EOF`.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    assert_eq!(
        text.lines().last(),
        Some("# EOF"),
        "the exposition ends with # EOF"
    );
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line}"
            );
            assert_eq!(
                series.matches('{').count(),
                series.matches('}').count(),
                "{line}"
            );
            (
                series.to_owned(),
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}")),
            )
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(name, _)| name == series)
        .map_or(0.0, |(_, value)| *value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_health_status_and_moving_metrics() {
    let cluster = Cluster::new("http").await;
    let others = cluster.start(2..=4).await;
    // The observed node reaches the database through a proxy that can be cut.
    let proxy = common::Proxy::start(common::socket_of(&cluster.db.url).await).await;
    let mut settings = cluster.settings(1);
    settings.db = price_oracle::testkit::settings_for(&proxy.url_through(&cluster.db.url));
    settings.db.timeout = Duration::from_millis(500);
    settings.http = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start(settings).await;
    let base = format!("http://{}", node.node.http_addr.unwrap());

    let (code, first) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let before = parse_exposition(&first);
    // Every metric the node declares is served, and described before it first counts.
    for name in price_oracle::metrics::Metrics::NAMES {
        let help = format!("# HELP oracle_{name} ");
        assert!(
            first.lines().any(|line| line.starts_with(&help)),
            "{help}: {first}"
        );
    }

    wait_for("a healthy node", Duration::from_secs(30), async || {
        get(&format!("{base}/health")).await.0 == 200
    })
    .await;
    cluster.wait_rows(4, Duration::from_secs(90)).await;
    let (code, status) = get(&format!("{base}/status")).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["name"], "node1");
    assert_eq!(status["database"], "ok");
    assert!(status["connected_peers"].as_u64().unwrap() >= 3);
    assert!(
        status["listen_addrs"][0]
            .as_str()
            .unwrap()
            .contains("/p2p/16Uiu2")
    );
    assert_eq!(
        status["last_observations"]["ETH/USD"]["price"],
        "3000.00000000"
    );
    // Test nodes have one source: the mock, as Coinbase.
    assert_eq!(status["last_observations"]["ETH/USD"]["sources"], 1);
    let source = &status["sources"][0];
    assert_eq!(source["source"], "coinbase", "{status}");
    assert_eq!(source["state"], "ok", "{status}");
    assert_eq!(source["last_quote"]["ETH/USD"], "3000.00000000", "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    // Five members: f = 1, a quorum of three, a committee of four.
    let bound = &status["fault_bound"];
    assert_eq!(
        (
            &bound["members"],
            &bound["f"],
            &bound["quorum"],
            &bound["committee_size"]
        ),
        (&5.into(), &1.into(), &3.into(), &4.into()),
        "{status}"
    );
    assert!(
        bound["config"]
            .as_str()
            .is_some_and(|config| config.len() == 66),
        "{status}"
    );
    // The consumers' API shows the same bound, from the node's member set.
    let (code, network) = get(&format!("{base}/v1/network")).await;
    assert_eq!(code, 200, "{network}");
    let network: serde_json::Value = serde_json::from_str(&network).unwrap();
    for field in ["members", "f", "quorum", "committee_size", "config"] {
        assert_eq!(network[field], bound[field], "{field}: {network} {status}");
    }
    assert_eq!(network["commit_threshold"], 2, "{network}");
    for field in [
        "address",
        "peer_id",
        "is_writer",
        "pool",
        "uptime_seconds",
        "last_stored_id",
        "database_server",
        "problems",
    ] {
        assert!(status.get(field).is_some(), "/status has {field}: {status}");
    }

    // Four rows may all have been node1's own rounds, or rounds whose committee it was not in:
    // wait for its first co-signature rather than race it.
    let cosigned = "oracle_prices_cosigned_total{pair=\"ETH/USD\"}";
    wait_for(
        "node1 co-signs a round",
        Duration::from_secs(60),
        async || {
            let (_, text) = get(&format!("{base}/metrics")).await;
            value(&parse_exposition(&text), cosigned) > value(&before, cosigned)
        },
    )
    .await;
    let (_, text) = get(&format!("{base}/metrics")).await;
    let after = parse_exposition(&text);
    for series in [
        "oracle_prices_originated_total{pair=\"ETH/USD\"}",
        "oracle_prices_cosigned_total{pair=\"ETH/USD\"}",
        "oracle_prices_verified_total{pair=\"ETH/USD\"}",
        "oracle_publishes_total{kind=\"attestation\"}",
        "oracle_messages_received_total{kind=\"price\"}",
        "oracle_db_statements_total{kind=\"heartbeat\"}",
        "oracle_quorum_seconds_count",
        "oracle_source_fetch_seconds_count{source=\"coinbase\"}",
    ] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series} did not move: {} -> {}",
            value(&before, series),
            value(&after, series)
        );
    }
    for name in [
        "libp2p_gossipsub",
        "libp2p_kad",
        "libp2p_identify",
        "libp2p_swarm",
        "oracle_lease_writer",
    ] {
        assert!(
            after.iter().any(|(series, _)| series.starts_with(name)),
            "no {name} metrics"
        );
    }

    proxy.cut();
    wait_for(
        "/health to report the database",
        Duration::from_secs(15),
        async || {
            let (code, body) = get(&format!("{base}/health")).await;
            code == 503 && body.contains("database")
        },
    )
    .await;
    proxy.restore().await;
    wait_for("/health to recover", Duration::from_secs(15), async || {
        get(&format!("{base}/health")).await.0 == 200
    })
    .await;

    // Price sources that keep failing make the node unhealthy, and it recovers with them.
    cluster.exchange.set_faults(1.0, &[Fault::ServerError]);
    wait_for(
        "/health to report the price sources",
        Duration::from_secs(15),
        async || {
            node.node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (code, body) = get(&format!("{base}/health")).await;
            code == 503 && body.contains("price fetches failed")
        },
    )
    .await;
    cluster.exchange.set_faults(0.0, &[]);
    wait_for(
        "/health to recover with the sources",
        Duration::from_secs(15),
        async || {
            node.node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            get(&format!("{base}/health")).await.0 == 200
        },
    )
    .await;

    node.stop().await;
    stop_all(others).await;
}
