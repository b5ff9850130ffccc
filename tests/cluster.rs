//! Whole networks in one process: real libp2p over TCP on 127.0.0.1, a real PostgreSQL database
//! per test, the mock exchange, and intervals of seconds.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use common::TestDb;
use libp2p::Multiaddr;
use price_oracle::identity::Identity;
use price_oracle::message::{Gossip, PriceMessage, SignatureEntry, price_digest};
use price_oracle::metrics::Metrics;
use price_oracle::mock_exchange::{MockExchange, MockSettings};
use price_oracle::network::validation::ValidationSettings;
use price_oracle::network::{self, NetworkHandle, NetworkSettings};
use price_oracle::node::{self, NodeSettings};
use price_oracle::pool::PoolSettings;
use price_oracle::price::{FeedSettings, Source, UsdPrice};
use price_oracle::store::lease::LeaseSettings;
use price_oracle::store::{DbSettings, Store};
use prometheus_client::registry::Registry;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const VALIDATION: ValidationSettings = ValidationSettings {
    max_age: Duration::from_secs(60),
    max_future_skew: Duration::from_secs(5),
};

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

async fn mock_at(price: &str) -> MockExchange {
    MockExchange::start(
        "127.0.0.1:0".parse().unwrap(),
        MockSettings::steady(UsdPrice::parse_quote(price).unwrap()),
    )
    .await
    .unwrap()
}

/// A network-only peer: the bootstrap node, or an attacker speaking raw gossip.
struct Peer {
    identity: Identity,
    handle: NetworkHandle,
    task: JoinHandle<()>,
}

async fn start_peer(seed: u8, bootstrap: Vec<Multiaddr>) -> (Peer, Multiaddr) {
    let identity = Identity::from_secret(&[seed; 32]).unwrap();
    let settings = NetworkSettings {
        listen: vec![loopback()],
        bootstrap,
        validation: VALIDATION,
    };
    let (mut handle, events, task) = network::spawn(
        identity.keypair(),
        settings,
        Metrics::default(),
        &mut Registry::default(),
    )
    .unwrap();
    drop(events);
    let addr = handle.wait_for_listen_addrs().await.remove(0);
    (
        Peer {
            identity,
            handle,
            task,
        },
        addr,
    )
}

struct TestNode {
    address: Address,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

struct ClusterConfig {
    price_interval: Duration,
    min_peers: usize,
}

fn node_settings(
    seed: u8,
    bootstrap: &Multiaddr,
    source: &MockExchange,
    db: &DbSettings,
    config: &ClusterConfig,
) -> NodeSettings {
    let identity = Identity::from_secret(&[seed; 32]).unwrap();
    let url = format!("{}{}", source.base_url(), Source::Coinbase.path());
    NodeSettings {
        name: format!("node{seed}"),
        network: NetworkSettings {
            listen: vec![loopback()],
            bootstrap: vec![bootstrap.clone()],
            validation: VALIDATION,
        },
        min_peers: config.min_peers,
        pool: PoolSettings {
            min_signers: 3,
            flush_delay: Duration::from_secs(1),
            max_age: VALIDATION.max_age,
            retention: Duration::from_secs(600),
        },
        price_interval: config.price_interval,
        max_deviation: Decimal::new(1, 2),
        lease: LeaseSettings {
            interval: Duration::from_millis(200),
            jitter: Duration::from_millis(600),
        },
        feed: FeedSettings {
            endpoints: vec![(Source::Coinbase, url.parse().unwrap())],
            min_sources: 1,
            timeout: Duration::from_secs(2),
            retries: 1,
            backoff: Duration::from_millis(50),
        },
        db: db.clone(),
        migrate: true,
        machine_id: u16::from(seed),
        http: None,
        identity,
    }
}

fn start_node(settings: NodeSettings) -> TestNode {
    let metrics = Metrics::default();
    let (stop, stopped) = oneshot::channel();
    let address = settings.identity.address();
    let task = tokio::spawn(node::run(settings, metrics.clone(), async move {
        let _ = stopped.await;
    }));
    TestNode {
        address,
        metrics,
        stop,
        task,
    }
}

/// `/ip4/127.0.0.1/tcp/P/p2p/ID` → `/dns4/localhost/tcp/P`.
fn by_host_name(addr: &Multiaddr) -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    let port = addr
        .iter()
        .find_map(|protocol| match protocol {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    format!("/dns4/localhost/tcp/{port}").parse().unwrap()
}

fn start_nodes(
    seeds: std::ops::RangeInclusive<u8>,
    bootstrap: &Multiaddr,
    source: &MockExchange,
    db: &DbSettings,
    config: &ClusterConfig,
) -> Vec<TestNode> {
    seeds
        .map(|seed| start_node(node_settings(seed, bootstrap, source, db, config)))
        .collect()
}

async fn stop_all(nodes: Vec<TestNode>) {
    for node in &nodes {
        assert!(!node.task.is_finished(), "a node stopped on its own");
    }
    for node in nodes {
        let _ = node.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), node.task)
            .await
            .expect("the node stops within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// The database with the schema and the lease-check trigger already in place.
async fn prepared_db(label: &str) -> (TestDb, DatabaseConnection) {
    let db = TestDb::create(label).await;
    Store::migrate(&db.settings()).await.unwrap();
    let conn = db.connect().await;
    conn.execute_unprepared(common::LEASE_CHECK_TRIGGER)
        .await
        .unwrap();
    (db, conn)
}

#[derive(Debug)]
struct Row {
    id: u64,
    price: Decimal,
    observed_at: u64,
    first_signer: String,
    signatures: Vec<SignatureEntry>,
    signer_count: i32,
    written_by: String,
}

async fn rows(conn: &DatabaseConnection) -> Vec<Row> {
    let statement = Statement::from_string(
        DbBackend::Postgres,
        "SELECT id, price, extract(epoch FROM observed_at)::bigint, first_signer, sign_data, \
         signer_count, written_by FROM prices ORDER BY id",
    );
    conn.query_all_raw(statement)
        .await
        .unwrap()
        .into_iter()
        .map(|row| Row {
            id: row.try_get_by_index::<i64>(0).unwrap() as u64,
            price: row.try_get_by_index(1).unwrap(),
            observed_at: row.try_get_by_index::<i64>(2).unwrap() as u64,
            first_signer: row.try_get_by_index(3).unwrap(),
            signatures: serde_json::from_value(row.try_get_by_index(4).unwrap()).unwrap(),
            signer_count: row.try_get_by_index(5).unwrap(),
            written_by: row.try_get_by_index(6).unwrap(),
        })
        .collect()
}

/// Every row: at least three distinct signers whose signatures recover against the normative
/// digest, the origin among them, written by one of the nodes.
fn assert_rows_verify(rows: &[Row], nodes: &HashSet<String>) {
    for row in rows {
        let price = UsdPrice::from_exact(row.price).unwrap();
        let digest = price_digest(row.id, price, row.observed_at);
        let signers: HashSet<Address> = row.signatures.iter().map(|s| s.signer).collect();
        assert_eq!(signers.len(), row.signatures.len(), "row {}", row.id);
        assert!(
            signers.len() >= 3,
            "row {} has {} signers",
            row.id,
            signers.len()
        );
        assert_eq!(row.signer_count as usize, signers.len());
        for entry in &row.signatures {
            entry.verify(digest).unwrap();
        }
        assert!(
            signers
                .iter()
                .any(|s| s.to_checksum(None) == row.first_signer)
        );
        assert!(
            nodes.contains(&row.written_by),
            "row {} written by {}",
            row.id,
            row.written_by
        );
    }
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn total(nodes: &[TestNode], counter: impl Fn(&Metrics) -> u64) -> u64 {
    nodes.iter().map(|node| counter(&node.metrics)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_store_every_price_exactly_once() {
    let (db, conn) = prepared_db("cluster").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    // One price per node: each originates once, as soon as it has peers and a database.
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
    };
    let mut nodes: Vec<TestNode> =
        start_nodes(1..=4, &boot_addr, &exchange, &db.settings(), &config);
    // The fifth joins by host name and without a peer id, as compose's nodes do.
    let by_name = by_host_name(&boot_addr);
    nodes.push(start_node(node_settings(
        5,
        &by_name,
        &exchange,
        &db.settings(),
        &config,
    )));
    let started = Instant::now();
    wait_for("5 stored prices", Duration::from_secs(40), async || {
        rows(&conn).await.len() >= 5
    })
    .await;
    println!("5 prices stored {:?} after start", started.elapsed());
    // Nothing else may show up: no duplicates, no extra rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = rows(&conn).await;
    let addresses: HashSet<String> = nodes.iter().map(|n| n.address.to_checksum(None)).collect();
    assert_eq!(stored.len(), 5);
    let ids: HashSet<u64> = stored.iter().map(|row| row.id).collect();
    assert_eq!(ids.len(), 5);
    let origins: HashSet<&String> = stored.iter().map(|row| &row.first_signer).collect();
    assert_eq!(origins.len(), 5, "one price from each node");
    assert_rows_verify(&stored, &addresses);

    let originated = total(&nodes, |m| m.prices_originated.get());
    assert_eq!(originated, 5);
    let publishes = total(&nodes, |m| {
        Metrics::kind(&m.publishes, "price").get()
            + Metrics::kind(&m.publishes, "attestation").get()
    });
    println!(
        "publishes per price: {:.2} (N + 1 = 6)",
        publishes as f64 / originated as f64
    );
    assert!(
        publishes <= originated * 6,
        "{publishes} publishes for {originated} prices"
    );
    assert_eq!(
        total(&nodes, |m| m.prices_stored.get()),
        5,
        "the writers' own count agrees"
    );
    stop_all(nodes).await;
    assert_eq!(rows(&conn).await.len(), 5);
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ten_percent_off_gets_no_cosignatures() {
    let (db, conn) = prepared_db("deviant").await;
    let honest = mock_at("3000").await;
    let deviant = mock_at("3300").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
    };
    let mut nodes: Vec<TestNode> = start_nodes(1..=4, &boot_addr, &honest, &db.settings(), &config);
    let liar = start_node(node_settings(
        5,
        &boot_addr,
        &deviant,
        &db.settings(),
        &config,
    ));
    let liar_address = liar.address.to_checksum(None);
    let liar_metrics = liar.metrics.clone();
    nodes.push(liar);

    wait_for("the 4 honest prices", Duration::from_secs(40), async || {
        rows(&conn).await.len() >= 4
    })
    .await;
    wait_for(
        "the liar's price to be refused by all",
        Duration::from_secs(20),
        async || {
            total(&nodes[..4], |m| {
                Metrics::reason(&m.prices_refused, "deviation").get()
            }) >= 4
        },
    )
    .await;
    // Give the liar's price every chance to be (wrongly) stored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = rows(&conn).await;
    assert_eq!(stored.len(), 4);
    assert!(stored.iter().all(|row| row.first_signer != liar_address));
    assert!(stored.iter().all(|row| row.price == Decimal::from(3000)));
    assert!(
        stored.iter().all(|row| row
            .signatures
            .iter()
            .all(|s| s.signer.to_checksum(None) != liar_address)),
        "the liar co-signed nobody: the honest prices are 9 % off its own"
    );
    assert_eq!(liar_metrics.prices_cosigned.get(), 0);
    stop_all(nodes).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_garbage_messages_are_rejected_and_never_stored() {
    let (db, conn) = prepared_db("attack").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
    };
    let nodes: Vec<TestNode> = start_nodes(1..=4, &boot_addr, &exchange, &db.settings(), &config);
    let (attacker, _) = start_peer(66, vec![boot_addr.clone()]).await;
    let mut watcher = attacker.handle.clone();
    watcher.wait_for_peers(3).await;
    wait_for("the honest prices", Duration::from_secs(40), async || {
        rows(&conn).await.len() >= 4
    })
    .await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let price = UsdPrice::from_e8(300_000_000_000).unwrap();
    let signer = attacker.identity.signer();
    // A fresh price "co-signed" by three honest nodes — signatures the attacker made itself.
    let mut forged = PriceMessage::originate(1, price, now, signer);
    for node in &nodes[..3] {
        let mut fake = forged.sign(signer);
        fake.signer = node.address;
        forged.signatures.push(fake);
    }
    // A validly signed price from an hour ago.
    let replayed = PriceMessage::originate(2, price, now - 3600, signer);
    attacker.handle.publish(Gossip::Price(forged));
    attacker.handle.publish(Gossip::Price(replayed));
    attacker
        .handle
        .publish_raw(b"{\"type\":\"price\",\"body\":\"garbage\"}".to_vec());

    // The attacker publishes to its mesh peers only, and a rejected message is not forwarded:
    // the honest nodes it reached reject each message, and nobody else ever sees it.
    wait_for(
        "the honest nodes to reject all three",
        Duration::from_secs(20),
        async || {
            ["bad_signature", "too_old", "malformed"]
                .iter()
                .all(|reason| {
                    total(&nodes, |m| {
                        Metrics::reason(&m.messages_rejected, reason).get()
                    }) >= 1
                })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = rows(&conn).await;
    let attacker_address = attacker.identity.address().to_checksum(None);
    assert_eq!(stored.len(), 4);
    assert!(
        stored
            .iter()
            .all(|row| row.first_signer != attacker_address && row.id > 2)
    );
    assert_eq!(
        total(&nodes, |m| Metrics::kind(&m.messages_received, "price")
            .get()),
        12,
        "each node accepted only the three honest prices of the others"
    );
    stop_all(nodes).await;
    drop((attacker, boot));
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_are_still_stored_after_the_bootstrap_node_dies() {
    let (db, conn) = prepared_db("noboot").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3),
        min_peers: 3,
    };
    let nodes: Vec<TestNode> = start_nodes(1..=5, &boot_addr, &exchange, &db.settings(), &config);
    wait_for(
        "a mesh of full nodes",
        Duration::from_secs(30),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.connected_peers.get() >= 4)
                && rows(&conn).await.len() >= 5
        },
    )
    .await;

    let Peer { handle, task, .. } = boot;
    drop(handle);
    task.await.unwrap();
    let before = rows(&conn).await.len();
    let killed_at = Instant::now();
    wait_for(
        "prices stored after the bootstrap node died",
        Duration::from_secs(30),
        async || rows(&conn).await.len() >= before + 5,
    )
    .await;
    println!(
        "{} more prices stored within {:?} of killing the bootstrap node",
        rows(&conn).await.len() - before,
        killed_at.elapsed()
    );
    let addresses: HashSet<String> = nodes.iter().map(|n| n.address.to_checksum(None)).collect();
    assert_rows_verify(&rows(&conn).await, &addresses);
    stop_all(nodes).await;
    let _ = conn.close().await;
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

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
    let (db, conn) = prepared_db("http").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
    };
    let others = start_nodes(2..=4, &boot_addr, &exchange, &db.settings(), &config);
    // The observed node reaches the database through a proxy that can be cut.
    let proxy = common::Proxy::start(common::socket_of(&db.url).await).await;
    let mut db_settings = common::settings_for(&proxy.url_through(&db.url));
    db_settings.timeout = Duration::from_millis(500);
    let mut settings = node_settings(1, &boot_addr, &exchange, &db_settings, &config);
    settings.http = Some("127.0.0.1:0".parse().unwrap());
    let metrics = Metrics::default();
    let node = node::start(settings, metrics).await.unwrap();
    let base = format!("http://{}", node.http_addr.unwrap());

    let (code, first) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let before = parse_exposition(&first);

    wait_for("a healthy node", Duration::from_secs(30), async || {
        get(&format!("{base}/health")).await.0 == 200
    })
    .await;
    wait_for("the 4 prices stored", Duration::from_secs(40), async || {
        rows(&conn).await.len() >= 4
    })
    .await;
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
    assert_eq!(status["last_observation"]["price"], "3000.00000000");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    for field in [
        "address",
        "peer_id",
        "is_writer",
        "pool",
        "uptime_seconds",
        "last_stored_id",
    ] {
        assert!(status.get(field).is_some(), "/status has {field}: {status}");
    }

    let (_, text) = get(&format!("{base}/metrics")).await;
    let after = parse_exposition(&text);
    for series in [
        "oracle_prices_originated_total",
        "oracle_prices_cosigned_total",
        "oracle_prices_verified_total",
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

    node.stop().await.unwrap();
    stop_all(others).await;
    drop(boot);
    let _ = conn.close().await;
}
