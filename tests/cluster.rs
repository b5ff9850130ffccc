//! Whole networks in one process: real libp2p over TCP on 127.0.0.1, a real PostgreSQL database
//! per test, the mock exchange, and intervals of seconds.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use common::TestDb;
use libp2p::Multiaddr;
use price_oracle::committee::{self, CommitteeSettings};
use price_oracle::id::IdGenerator;
use price_oracle::identity::Identity;
use price_oracle::membership::Members;
use price_oracle::message::{Attestation, Gossip, PriceMessage, SignatureEntry, price_digest};
use price_oracle::metrics::Metrics;
use price_oracle::mock_exchange::{Fault, MockExchange, MockSettings};
use price_oracle::network::validation::ValidationSettings;
use price_oracle::network::{self, ConnectionBounds, NetworkHandle, NetworkSettings};
use price_oracle::node::{self, NodeSettings};
use price_oracle::pair::{Pair, PairSet};
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
    max_origin_rate: 60,
    pairs: PairSet::only(Pair::EthUsd),
};
/// The nodes every test database lists as members (`prepared_db`).
const MEMBER_SEEDS: std::ops::RangeInclusive<u8> = 1..=5;

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
    metrics: Metrics,
    task: JoinHandle<()>,
}

async fn start_peer(seed: u8, bootstrap: Vec<Multiaddr>) -> (Peer, Multiaddr) {
    start_peer_with(seed, bootstrap, |_| {}).await
}

async fn start_peer_with(
    seed: u8,
    bootstrap: Vec<Multiaddr>,
    customize: impl FnOnce(&mut NetworkSettings),
) -> (Peer, Multiaddr) {
    let identity = Identity::from_secret(&[seed; 32]).unwrap();
    let mut settings =
        NetworkSettings::with_default_limits(vec![loopback()], bootstrap, VALIDATION);
    customize(&mut settings);
    // A relay without a member list, like a bootstrap node without --trusted-signers.
    let members = tokio::sync::watch::channel(Arc::new(Members::open())).1;
    let metrics = Metrics::default();
    let (mut handle, events, task) = network::spawn(
        identity.keypair(),
        settings,
        members,
        metrics.clone(),
        &mut Registry::default(),
    )
    .unwrap();
    drop(events);
    let addr = handle.wait_for_listen_addrs().await.remove(0);
    (
        Peer {
            identity,
            handle,
            metrics,
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
    pairs: PairSet,
}

fn node_settings(
    seed: u8,
    bootstrap: &Multiaddr,
    source: &MockExchange,
    db: &DbSettings,
    config: &ClusterConfig,
) -> NodeSettings {
    let identity = Identity::from_secret(&[seed; 32]).unwrap();
    let url = source.base_url();
    NodeSettings {
        name: format!("node{seed}"),
        network: NetworkSettings::with_default_limits(
            vec![loopback()],
            vec![bootstrap.clone()],
            ValidationSettings {
                pairs: config.pairs,
                ..VALIDATION
            },
        ),
        min_peers: config.min_peers,
        pool: PoolSettings {
            min_signers: 3,
            flush_delay: Duration::from_secs(1),
            max_age: VALIDATION.max_age,
            retention: Duration::from_secs(600),
            max_pending_per_signer: 64,
        },
        price_interval: config.price_interval,
        max_deviation: Decimal::new(1, 2),
        lease: LeaseSettings {
            interval: Duration::from_millis(200),
            lease: Duration::from_millis(600),
            term: Duration::from_secs(5),
            warm_up: Duration::from_secs(1),
        },
        feed: FeedSettings {
            pairs: config.pairs,
            endpoints: vec![(Source::Coinbase, url.parse().unwrap())],
            min_sources: 1,
            timeout: Duration::from_secs(2),
            retries: 1,
            backoff: Duration::from_millis(50),
        },
        db: db.clone(),
        migrate: true,
        http: None,
        api: Default::default(),
        trusted_signers: None,
        register: false,
        max_cosign_queue: 256,
        committee: CommitteeSettings::for_quorum(3, Duration::from_secs(2)),
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

/// The database with the schema, the lease-check trigger and the members (seeds
/// [`MEMBER_SEEDS`]) already in place.
async fn prepared_db(label: &str) -> (TestDb, DatabaseConnection) {
    let db = TestDb::create(label).await;
    Store::migrate(&db.settings()).await.unwrap();
    register(&db, MEMBER_SEEDS).await;
    let conn = db.connect().await;
    conn.execute_unprepared(common::LEASE_CHECK_TRIGGER)
        .await
        .unwrap();
    (db, conn)
}

/// Makes the nodes of `seeds` members, as `oracle signers add` does.
async fn register(db: &TestDb, seeds: impl IntoIterator<Item = u8>) {
    let store = Store::connect(&db.settings()).await.unwrap();
    for seed in seeds {
        let address = Identity::from_secret(&[seed; 32]).unwrap().address();
        store
            .add_signer(&address, &format!("node{seed}"))
            .await
            .unwrap();
    }
    store.close().await;
}

#[derive(Debug)]
struct Row {
    pair: Pair,
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
         signer_count, written_by, pair FROM prices ORDER BY id",
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
            pair: row.try_get_by_index::<String>(7).unwrap().parse().unwrap(),
        })
        .collect()
}

/// Every row: at least three distinct signers whose signatures recover against the normative
/// digest, the origin among them, written by one of the nodes.
fn assert_rows_verify(rows: &[Row], nodes: &HashSet<String>) {
    for row in rows {
        let price = UsdPrice::from_exact(row.price).unwrap();
        let digest = price_digest(row.pair, row.id, price, row.observed_at);
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
        pairs: PairSet::only(Pair::EthUsd),
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
    wait_for("5 stored prices", Duration::from_secs(90), async || {
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
async fn two_pairs_are_each_stored_with_a_quorum_of_signatures_over_their_own_digest() {
    let (db, conn) = prepared_db("two_pairs").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    // One round per node: each originates ETH/USD and BTC/USD once.
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: [Pair::EthUsd, Pair::BtcUsd].into_iter().collect(),
    };
    let nodes = start_nodes(2..=4, &boot_addr, &exchange, &db.settings(), &config);
    // Node 1 also serves the read API, which gives each stored price's on-chain report.
    let mut settings = node_settings(1, &boot_addr, &exchange, &db.settings(), &config);
    settings.http = Some("127.0.0.1:0".parse().unwrap());
    let reader_metrics = Metrics::default();
    let reader = node::start(settings, reader_metrics.clone()).await.unwrap();
    let api = format!("http://{}/v1", reader.http_addr.unwrap());
    wait_for("8 stored prices", Duration::from_secs(90), async || {
        rows(&conn).await.len() >= 8
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = rows(&conn).await;
    assert_eq!(stored.len(), 8, "{stored:#?}");
    let mut addresses: HashSet<String> =
        nodes.iter().map(|n| n.address.to_checksum(None)).collect();
    addresses.insert(
        Identity::from_secret(&[1; 32])
            .unwrap()
            .address()
            .to_checksum(None),
    );
    // Each row's signatures recover over the digest of its own pair.
    assert_rows_verify(&stored, &addresses);
    for (pair, price) in [(Pair::EthUsd, "3000"), (Pair::BtcUsd, "90000")] {
        let of_pair: Vec<&Row> = stored.iter().filter(|row| row.pair == pair).collect();
        assert_eq!(of_pair.len(), 4, "one {pair} price from each node");
        let origins: HashSet<&String> = of_pair.iter().map(|row| &row.first_signer).collect();
        assert_eq!(origins.len(), 4);
        for row in of_pair {
            assert_eq!(row.price, price.parse::<Decimal>().unwrap(), "{pair}");
            // The same signatures do not hold for the other pair: the pair is signed.
            let other = if pair == Pair::EthUsd {
                Pair::BtcUsd
            } else {
                Pair::EthUsd
            };
            let price = UsdPrice::from_exact(row.price).unwrap();
            let digest = price_digest(other, row.id, price, row.observed_at);
            assert!(
                row.signatures
                    .iter()
                    .all(|entry| entry.verify(digest).is_err())
            );
        }
        let everyone = |count: fn(&Metrics, Pair) -> u64| {
            nodes
                .iter()
                .map(|node| count(&node.metrics, pair))
                .sum::<u64>()
                + count(&reader_metrics, pair)
        };
        assert_eq!(
            everyone(|m, pair| m.prices_stored.get_pair(pair)),
            4,
            "{pair}"
        );
        assert_eq!(
            everyone(|m, pair| m.prices_originated.get_pair(pair)),
            4,
            "{pair}"
        );
    }
    // Every stored row, as the API hands it to consumers, verifies in the EVM against a
    // verifier deployed with the members and the quorum.
    let members: Vec<Address> = MEMBER_SEEDS
        .map(|seed| Identity::from_secret(&[seed; 32]).unwrap().address())
        .collect();
    let mut reports = Vec::new();
    let mut first_signers = Vec::new();
    for pair in ["ETH/USD", "BTC/USD"] {
        let (code, body) = get(&format!("{api}/prices?pair={pair}")).await;
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let prices = page["prices"].as_array().unwrap();
        assert_eq!(prices.len(), 4, "{pair}: {body}");
        for price in prices {
            assert_eq!(price["pair"], pair);
            let report = price["report"].as_str().unwrap();
            reports.push(alloy_primitives::hex::decode(report).unwrap());
            let signer = price["signatures"][0]["signer"].as_str().unwrap();
            first_signers.push(signer.parse::<Address>().unwrap());
        }
    }
    let gas = common::evm::verify_all(&reports, &members, 3);
    println!("the 8 stored prices verify on chain; gas per verification {gas:?}");
    // The same stored rows, altered, do not: a tampered price, a signature of another stored
    // price, a verifier that does not count one of the signers, a quorum above the signatures.
    use common::evm::Verifier;
    use price_oracle::report::Report;
    let row = Report::decode(&reports[0]).unwrap();
    let other = Report::decode(&reports[1]).unwrap();
    let refusal = |verifier: &mut Verifier, report: &Report| {
        verifier.verify(&report.encode()).unwrap_err().name
    };
    let mut verifier = Verifier::deploy(&members, 3).unwrap();
    let tampered = Report {
        price_e8: row.price_e8 + 1,
        ..row.clone()
    };
    assert_eq!(refusal(&mut verifier, &tampered), "NotMember");
    let mut swapped = row.clone();
    swapped.signatures[1] = other.signatures[1];
    assert_eq!(refusal(&mut verifier, &swapped), "NotMember");
    let others: Vec<Address> = members
        .iter()
        .filter(|member| **member != first_signers[0])
        .copied()
        .collect();
    let mut without_one = Verifier::deploy(&others, 3).unwrap();
    assert_eq!(refusal(&mut without_one, &row), "NotMember");
    let mut five = Verifier::deploy(&members, 5).unwrap();
    assert_eq!(refusal(&mut five, &row), "BelowQuorum");
    let mut short = row.clone();
    short.signatures.truncate(2);
    assert_eq!(refusal(&mut verifier, &short), "BelowQuorum");
    reader.stop().await.unwrap();
    stop_all(nodes).await;
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
        pairs: PairSet::only(Pair::EthUsd),
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

    wait_for("the 4 honest prices", Duration::from_secs(90), async || {
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

/// A price `identity` could have originated at `at` (a proper id in its own id space).
fn price_by(identity: &Identity, at: SystemTime, usd: &str) -> PriceMessage {
    let machine = IdGenerator::machine_id_from_address(&identity.address());
    let id = IdGenerator::new(machine).next_id_at(at).unwrap();
    let observed_at = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let price = UsdPrice::parse_quote(usd).unwrap();
    PriceMessage::originate(Pair::EthUsd, id, price, observed_at, identity.signer())
}

fn ignored(nodes: &[TestNode], reason: &str) -> u64 {
    total(nodes, |m| {
        Metrics::reason(&m.messages_ignored, reason).get()
    })
}

fn rejected(nodes: &[TestNode], reason: &str) -> u64 {
    total(nodes, |m| {
        Metrics::reason(&m.messages_rejected, reason).get()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_with_valid_signatures_forgeries_and_replays_gets_nothing_stored() {
    let (db, conn) = prepared_db("attack").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(2),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let nodes: Vec<TestNode> = start_nodes(1..=4, &boot_addr, &exchange, &db.settings(), &config);
    // One libp2p peer with two more keys that never ran a node: three valid signatures.
    let (attacker, _) = start_peer(66, vec![boot_addr.clone()]).await;
    let offline: Vec<Identity> = [67u8, 68]
        .iter()
        .map(|seed| Identity::from_secret(&[*seed; 32]).unwrap())
        .collect();
    let mut watcher = attacker.handle.clone();
    watcher.wait_for_peers(3).await;
    wait_for("the honest prices", Duration::from_secs(60), async || {
        rows(&conn).await.len() >= 4
    })
    .await;

    let now = SystemTime::now();
    let outsider = price_by(&attacker.identity, now, "1");
    attacker.handle.publish(Gossip::Price(outsider.clone()));
    for key in &offline {
        attacker
            .handle
            .publish(Gossip::Attestation(Attestation::sign(
                &outsider.data(),
                key.signer(),
            )));
    }
    // A price "co-signed" by three honest nodes — signatures the attacker made itself.
    let mut forged = price_by(&attacker.identity, now, "3000");
    for node in &nodes[..3] {
        let mut fake = forged.sign(attacker.identity.signer());
        fake.signer = node.address;
        forged.signatures.push(fake);
    }
    attacker.handle.publish(Gossip::Price(forged));
    // A validly signed member price from an hour ago, and garbage.
    let member = Identity::from_secret(&[1; 32]).unwrap();
    let replayed = price_by(&member, now - Duration::from_secs(3600), "3000");
    attacker.handle.publish(Gossip::Price(replayed));
    attacker
        .handle
        .publish_raw(b"{\"type\":\"price\",\"body\":\"garbage\"}".to_vec());

    // The attacker publishes to its mesh peers only, and a refused message is not forwarded:
    // the honest nodes it reached refuse each message, and nobody else ever sees it.
    wait_for(
        "the honest nodes to refuse every kind",
        Duration::from_secs(20),
        async || {
            ignored(&nodes, "not_member") >= 3
                && ignored(&nodes, "too_old") >= 1
                && rejected(&nodes, "extra_signatures") >= 1
                && rejected(&nodes, "malformed") >= 1
        },
    )
    .await;
    let before = rows(&conn).await.len();
    wait_for(
        "honest prices to keep flowing",
        Duration::from_secs(30),
        async || rows(&conn).await.len() >= before + 4,
    )
    .await;
    let stored = rows(&conn).await;
    let attacker_keys: HashSet<Address> = offline
        .iter()
        .map(Identity::address)
        .chain([attacker.identity.address()])
        .collect();
    assert!(stored.iter().all(|row| {
        row.price == Decimal::from(3000)
            && row
                .signatures
                .iter()
                .all(|entry| !attacker_keys.contains(&entry.signer))
    }));
    assert_eq!(ignored(&nodes, "from_future"), 0);
    stop_all(nodes).await;
    drop((attacker, boot));
    let _ = conn.close().await;
}

/// Three outsiders run complete nodes, with a database of their own where they are members,
/// inside the honest network.
async fn outsider_nodes_attack(label: &str, outsider_price: &str) {
    let (db, conn) = prepared_db(label).await;
    let honest_source = mock_at("3000").await;
    let outsider_source = mock_at(outsider_price).await;
    let outsider_db = TestDb::create(&format!("{label}_own")).await;
    Store::migrate(&outsider_db.settings()).await.unwrap();
    register(&outsider_db, 11..=13).await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let honest = start_nodes(1..=4, &boot_addr, &honest_source, &db.settings(), &config);
    let outsiders = start_nodes(
        11..=13,
        &boot_addr,
        &outsider_source,
        &outsider_db.settings(),
        &config,
    );
    wait_for("the 4 honest prices", Duration::from_secs(90), async || {
        rows(&conn).await.len() >= 4
    })
    .await;
    wait_for(
        "the outsiders' prices to reach the honest nodes",
        Duration::from_secs(20),
        async || ignored(&honest, "not_member") >= 3,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = rows(&conn).await;
    let outsider_addresses: HashSet<Address> = outsiders.iter().map(|n| n.address).collect();
    assert_eq!(stored.len(), 4, "nothing of theirs is stored");
    assert!(stored.iter().all(|row| {
        row.signatures
            .iter()
            .all(|entry| !outsider_addresses.contains(&entry.signer))
    }));
    assert_eq!(
        total(&honest, |m| m.prices_cosigned.get()),
        12,
        "each honest node co-signed the 3 other honest prices and no outsider's"
    );
    stop_all(honest).await;
    stop_all(outsiders).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_nodes_at_a_price_of_one_get_nothing_stored() {
    outsider_nodes_attack("outsiders_one", "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_nodes_inside_the_deviation_get_no_cosignatures() {
    outsider_nodes_attack("outsiders_close", "3000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_squatting_cannot_block_a_members_prices() {
    let (db, conn) = prepared_db("squat").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let quiet = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    // Room for every junk entry, so that the squatting itself (not the per-signer bound) is
    // what this test is about.
    let roomy = |seed: u8, config: &ClusterConfig| {
        let mut settings = node_settings(seed, &boot_addr, &exchange, &db.settings(), config);
        settings.pool.max_pending_per_signer = 10_000;
        start_node(settings)
    };
    let mut nodes: Vec<TestNode> = (2..=4).map(|seed| roomy(seed, &quiet)).collect();
    // The squatter is a member (seed 5) speaking raw gossip: the strongest case.
    let (squatter, _) = start_peer(5, vec![boot_addr.clone()]).await;
    let mut watcher = squatter.handle.clone();
    watcher.wait_for_peers(3).await;
    wait_for("the first prices", Duration::from_secs(90), async || {
        rows(&conn).await.len() >= 3
    })
    .await;
    let busy = ClusterConfig {
        price_interval: Duration::from_secs(1),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let victim_node = roomy(1, &busy);
    let victim_metrics = victim_node.metrics.clone();
    nodes.push(victim_node);
    // Squat once the victim is about to run, so that its next seconds of prices fall in the
    // squatted window even on a loaded machine.
    wait_for("the victim to join", Duration::from_secs(30), async || {
        victim_metrics.connected_peers.get() >= 3
    })
    .await;
    // The victim's ids are predictable: its machine bits, each 10 ms tick, sequence 0. The
    // squatter keeps signing junk under every tick of the next seconds (within the clock skew
    // peers accept), before the victim mints them, until the victim has prices stored: a
    // rolling window, so a victim delayed on a loaded machine still mints inside it.
    let victim = Identity::from_secret(&[1; 32]).unwrap();
    let victim_address = victim.address().to_checksum(None);
    let victims_rows = async || -> Vec<u64> {
        rows(&conn)
            .await
            .iter()
            .filter(|row| row.first_signer == victim_address)
            .map(|row| row.id)
            .collect()
    };
    let mut squatted = HashSet::new();
    let mut squatted_until = SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    while victims_rows().await.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for 6 of the victim's prices"
        );
        let horizon = SystemTime::now() + Duration::from_secs(5);
        while squatted_until < horizon {
            let junk = price_by(&victim, squatted_until, "1").data();
            squatted.insert(junk.id);
            squatter
                .handle
                .publish(Gossip::Attestation(Attestation::sign(
                    &junk,
                    squatter.identity.signer(),
                )));
            squatted_until += Duration::from_millis(10);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every price the victim has minted so far gets stored. The grace is generous: on a loaded
    // machine the last ones may still be gathering co-signatures; a blocked price never would.
    let originated = victim_metrics.prices_originated.get();
    let grace = Instant::now() + Duration::from_secs(30);
    let mut stored = victims_rows().await;
    while (stored.len() as u64) < originated && Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stored = victims_rows().await;
    }
    assert!(
        stored.len() as u64 >= originated,
        "{} of the victim's {originated} prices stored",
        stored.len()
    );
    let hit = stored.iter().filter(|id| squatted.contains(id)).count();
    println!("{hit} of the victim's stored prices had ids the squatter signed junk under first");
    assert!(
        hit >= 1,
        "the squatter's window covered none of the victim's prices"
    );
    stop_all(nodes).await;
    drop((squatter, boot));
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_republished_by_another_peer_still_reaches_quorum_everywhere() {
    let (db, conn) = prepared_db("poison").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let nodes = start_nodes(1..=4, &boot_addr, &exchange, &db.settings(), &config);
    let (relay, _) = start_peer(66, vec![boot_addr.clone()]).await;
    let mut watcher = relay.handle.clone();
    watcher.wait_for_peers(3).await;
    wait_for("the honest prices", Duration::from_secs(60), async || {
        rows(&conn).await.len() >= 4
    })
    .await;
    // Member 5's genuine price, first heard from a stranger's peer id.
    let member = Identity::from_secret(&[5; 32]).unwrap();
    let genuine = price_by(&member, SystemTime::now(), "3000");
    relay.handle.publish(Gossip::Price(genuine.clone()));
    wait_for(
        "the genuine price stored",
        Duration::from_secs(20),
        async || rows(&conn).await.iter().any(|row| row.id == genuine.id),
    )
    .await;
    wait_for(
        "every node to verify it",
        Duration::from_secs(10),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.prices_verified.get() >= 5)
        },
    )
    .await;
    assert_eq!(rejected(&nodes, "wrong_publisher"), 0);
    stop_all(nodes).await;
    drop((relay, boot));
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_and_outsider_messages_leaves_prices_flowing_and_memory_bounded() {
    let (db, conn) = prepared_db("flood").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(2),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let mut settings: Vec<NodeSettings> = (1..=4)
        .map(|seed| node_settings(seed, &boot_addr, &exchange, &db.settings(), &config))
        .collect();
    // One node takes few inbound connections, so the flood's connections hit the bound; every
    // node cuts off a peer after 40 refused messages in a minute.
    settings[0].network.connections.max_inbound = 6;
    for node in &mut settings {
        node.network.max_refused_per_peer = 40;
    }
    let nodes: Vec<TestNode> = settings.into_iter().map(start_node).collect();
    wait_for("the honest prices", Duration::from_secs(60), async || {
        rows(&conn).await.len() >= 4
    })
    .await;
    // Twenty attacking peers, each with its own key, each sending 250 messages: garbage,
    // outsider prices and outsider attestations on members' prices.
    let mut attackers = Vec::new();
    for seed in 30..50u8 {
        attackers.push(start_peer(seed, vec![boot_addr.clone()]).await.0);
    }
    let member = Identity::from_secret(&[2; 32]).unwrap();
    let before = rows(&conn).await.len();
    let flood_started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (n, attacker) in attackers.iter().enumerate() {
        let mut watcher = attacker.handle.clone();
        watcher.wait_for_peers(1).await;
        for i in 0..250u64 {
            let at = SystemTime::now() + Duration::from_millis(i * 10);
            match i % 3 {
                0 => attacker.handle.publish_raw(
                    format!("{{\"type\":\"garbage\",\"n\":{n},\"i\":{i}}}").into_bytes(),
                ),
                1 => attacker
                    .handle
                    .publish(Gossip::Price(price_by(&attacker.identity, at, "1"))),
                _ => attacker
                    .handle
                    .publish(Gossip::Attestation(Attestation::sign(
                        &price_by(&member, at, "3000").data(),
                        attacker.identity.signer(),
                    ))),
            }
        }
    }
    wait_for(
        "prices to keep being stored",
        Duration::from_secs(60),
        async || rows(&conn).await.len() >= before + 8,
    )
    .await;
    assert!(ignored(&nodes, "not_member") + rejected(&nodes, "malformed") > 100);
    let cut_off = total(&nodes, |m| m.limit_hit_count("refused_per_peer"));
    assert!(cut_off > 0, "flooding peers are cut off");
    println!("the honest nodes cut off {cut_off} flooding peers");
    // Every price keeps its quorum (checked below); on two shared cores a co-signature can
    // arrive after the 1 s flush delay, so a full set is reported rather than required.
    let during: Vec<Row> = rows(&conn)
        .await
        .into_iter()
        .filter(|row| row.observed_at >= flood_started)
        .collect();
    let complete = during
        .iter()
        .filter(|row| row.signatures.len() == 4)
        .count();
    println!(
        "{complete} of {} prices stored during the flood carry all 4 signatures",
        during.len()
    );
    let refused = nodes[0].metrics.limit_hit_count("connections");
    println!("node 1 refused {refused} connections over its limit of 6");
    let addresses: HashSet<String> = nodes.iter().map(|n| n.address.to_checksum(None)).collect();
    assert_rows_verify(&rows(&conn).await, &addresses);
    stop_all(nodes).await;
    drop((attackers, boot));
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_while_running_counts_and_a_removed_one_stops_counting() {
    let db = TestDb::create("membership").await;
    Store::migrate(&db.settings()).await.unwrap();
    register(&db, 1..=3).await;
    let conn = db.connect().await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(2),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let nodes = start_nodes(1..=4, &boot_addr, &exchange, &db.settings(), &config);
    let newcomer = nodes[3].address;
    let signed_by = |row: &Row, who: Address| row.signatures.iter().any(|e| e.signer == who);
    wait_for(
        "prices of the three members",
        Duration::from_secs(90),
        async || rows(&conn).await.len() >= 6,
    )
    .await;
    assert!(
        rows(&conn)
            .await
            .iter()
            .all(|row| !signed_by(row, newcomer)),
        "a non-member neither originates nor co-signs a stored row"
    );

    let store = Store::connect(&db.settings()).await.unwrap();
    store.add_signer(&newcomer, "node4").await.unwrap();
    let added_at = Instant::now();
    wait_for(
        "the new member's price stored",
        Duration::from_secs(15),
        async || {
            rows(&conn)
                .await
                .iter()
                .any(|row| row.first_signer == newcomer.to_checksum(None))
        },
    )
    .await;
    println!(
        "a new member's price was stored {:?} after `signers add`",
        added_at.elapsed()
    );

    let removed = nodes[1].address;
    store.remove_signer(&removed).await.unwrap();
    // One heartbeat (200 ms here) later nobody counts it; prices observed after that must
    // not carry its signature.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    wait_for(
        "prices after the removal",
        Duration::from_secs(30),
        async || {
            rows(&conn)
                .await
                .iter()
                .filter(|row| row.observed_at > cutoff)
                .count()
                >= 4
        },
    )
    .await;
    for row in rows(&conn)
        .await
        .iter()
        .filter(|row| row.observed_at > cutoff)
    {
        assert!(
            !signed_by(row, removed),
            "row {} still counts the removed member",
            row.id
        );
        assert!(row.signatures.len() >= 3);
    }
    // `oracle verify`'s rule: every row had its quorum of members at its observation time.
    let rules = price_oracle::audit::AuditRules {
        min_signers: 3,
        counted: price_oracle::audit::Counted::Members(store.signers().await.unwrap()),
    };
    for row in store.prices_page(None, None, 1000).await.unwrap() {
        let report = price_oracle::audit::audit_row(&row, &rules);
        assert_eq!(report.finding, None, "row {}", row.id);
    }
    store.close().await;
    stop_all(nodes).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_bootstrap_node_dies_prices_flow_and_a_restarted_node_finds_its_way_back() {
    let (db, conn) = prepared_db("noboot").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
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

    // Node 5 restarts on a new random port; its only bootstrap is the dead one. The heartbeat
    // table tells it where the others are.
    let mut nodes = nodes;
    let Some(node5) = nodes.pop() else {
        unreachable!("five nodes")
    };
    stop_all(vec![node5]).await;
    let restarted_at = SystemTime::now();
    let node5 = start_node(node_settings(
        5,
        &boot_addr,
        &exchange,
        &db.settings(),
        &config,
    ));
    let node5_address = node5.address.to_checksum(None);
    wait_for(
        "a price of the restarted node stored",
        Duration::from_secs(60),
        async || {
            rows(&conn).await.iter().any(|row| {
                row.first_signer == node5_address
                    && UNIX_EPOCH + Duration::from_secs(row.observed_at)
                        >= restarted_at - Duration::from_secs(1)
            })
        },
    )
    .await;
    println!(
        "the restarted node rejoined: {} peers",
        node5.metrics.connected_peers.get()
    );
    nodes.push(node5);
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
        pairs: PairSet::only(Pair::EthUsd),
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
    wait_for("the 4 prices stored", Duration::from_secs(90), async || {
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
    assert_eq!(
        status["last_observations"]["ETH/USD"]["price"],
        "3000.00000000"
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    for field in [
        "address",
        "peer_id",
        "is_writer",
        "pool",
        "uptime_seconds",
        "last_stored_id",
        "problems",
    ] {
        assert!(status.get(field).is_some(), "/status has {field}: {status}");
    }

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
    exchange.set_faults(1.0, &[Fault::ServerError]);
    wait_for(
        "/health to report the price sources",
        Duration::from_secs(15),
        async || {
            node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (code, body) = get(&format!("{base}/health")).await;
            code == 503 && body.contains("price fetches failed")
        },
    )
    .await;
    exchange.set_faults(0.0, &[]);
    wait_for(
        "/health to recover with the sources",
        Duration::from_secs(15),
        async || {
            node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            get(&format!("{base}/health")).await.0 == 200
        },
    )
    .await;

    node.stop().await.unwrap();
    stop_all(others).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_past_the_bound_are_refused_and_counted() {
    let bounds = ConnectionBounds {
        max_inbound: 3,
        max_per_peer: 1,
    };
    let (hub, hub_addr) =
        start_peer_with(100, vec![], |settings| settings.connections = bounds).await;
    let mut spokes = Vec::new();
    for seed in 30..38u8 {
        spokes.push(start_peer(seed, vec![hub_addr.clone()]).await.0);
    }
    let refused = || hub.metrics.limit_hit_count("connections");
    wait_for("refused connections", Duration::from_secs(15), async || {
        refused() >= 5
    })
    .await;
    assert!(
        hub.handle.connected_peers() <= 3,
        "{} peers connected past a bound of 3",
        hub.handle.connected_peers()
    );
    drop((spokes, hub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_takes_only_nodes_with_its_swarm_key() {
    let (db, conn) = prepared_db("psk").await;
    let exchange = mock_at("3000").await;
    let key = price_oracle::network::transport::generate_psk();
    let (boot, boot_addr) = start_peer_with(100, vec![], |settings| settings.psk = Some(key)).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let with_key = |seed: u8| {
        let mut settings = node_settings(seed, &boot_addr, &exchange, &db.settings(), &config);
        settings.network.psk = Some(key);
        start_node(settings)
    };
    let mut nodes: Vec<TestNode> = (1..=4).map(with_key).collect();
    // A member, even, but without the key: it never gets onto the transport.
    let keyless = start_node(node_settings(
        5,
        &boot_addr,
        &exchange,
        &db.settings(),
        &config,
    ));
    wait_for(
        "the 4 private prices",
        Duration::from_secs(90),
        async || rows(&conn).await.len() >= 4,
    )
    .await;
    let stored = rows(&conn).await;
    for node in &nodes {
        assert!(
            stored
                .iter()
                .all(|row| row.signatures.iter().any(|e| e.signer == node.address)),
            "every node with the key joined and signed every price"
        );
    }
    assert_eq!(keyless.metrics.connected_peers.get(), 0);
    assert!(
        stored
            .iter()
            .all(|row| row.signatures.iter().all(|e| e.signer != keyless.address))
    );
    nodes.push(keyless);
    stop_all(nodes).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stops_within_its_budget_while_the_database_hangs() {
    let (db, conn) = prepared_db("stop_hang").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let proxy = common::Proxy::start(common::socket_of(&db.url).await).await;
    // A database timeout far longer than the stop budget: a stop that waited on the database
    // would take at least this long.
    let mut db_settings = common::settings_for(&proxy.url_through(&db.url));
    db_settings.timeout = Duration::from_secs(15);
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 0,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let node = start_node(node_settings(
        1,
        &boot_addr,
        &exchange,
        &db_settings,
        &config,
    ));
    wait_for(
        "the node to hold the lease",
        Duration::from_secs(30),
        async || node.metrics.lease_writer.get() == 1,
    )
    .await;
    proxy.stall();
    // Let a heartbeat start and hang.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let _ = node.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), node.task)
        .await
        .expect("the node stops")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    println!("stopped in {took:?} with the database hanging");
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    proxy.resume();
    drop(boot);
    let _ = conn.close().await;
}

/// Ids every node has seen reach the quorum so far.
fn drain_verified(
    events: &mut [tokio::sync::broadcast::Receiver<node::NodeEvent>],
    verified: &mut HashSet<u64>,
) {
    for receiver in events {
        while let Ok(event) = receiver.try_recv() {
            if let node::NodeEvent::Verified { id, .. } = event {
                verified.insert(id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_every_node_at_once_stores_every_verified_price() {
    let (db, conn) = prepared_db("full_stop").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let mut nodes = Vec::new();
    for seed in 1..=4 {
        let mut settings = node_settings(seed, &boot_addr, &exchange, &db.settings(), &config);
        // Nothing becomes due during the test: only the stop can store a price.
        settings.pool.flush_delay = Duration::from_secs(600);
        nodes.push(node::start(settings, Metrics::default()).await.unwrap());
    }
    let mut events: Vec<_> = nodes.iter().map(node::RunningNode::subscribe).collect();
    let mut verified = HashSet::new();
    // Each node originates once when its database is connected.
    wait_for("the first prices", Duration::from_secs(90), async || {
        drain_verified(&mut events, &mut verified);
        verified.len() >= 4
    })
    .await;
    // More prices, then everybody stops while the last ones are still gathering signatures.
    for _ in 0..3 {
        for node in &nodes {
            node.originate_now();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(rows(&conn).await.is_empty(), "nothing was due yet");
    let started = Instant::now();
    let results = futures::future::join_all(nodes.into_iter().map(node::RunningNode::stop)).await;
    let took = started.elapsed();
    for result in results {
        result.unwrap();
    }
    drain_verified(&mut events, &mut verified);
    let stored = rows(&conn).await;
    let stored_ids: HashSet<u64> = stored.iter().map(|row| row.id).collect();
    println!(
        "{} prices verified somewhere, {} stored by the stopping nodes in {took:?}",
        verified.len(),
        stored_ids.len()
    );
    let lost: Vec<&u64> = verified.difference(&stored_ids).collect();
    assert!(lost.is_empty(), "verified but lost at the stop: {lost:?}");
    let addresses: HashSet<String> = (1..=4u8)
        .map(|seed| {
            Identity::from_secret(&[seed; 32])
                .unwrap()
                .address()
                .to_checksum(None)
        })
        .collect();
    assert_rows_verify(&stored, &addresses);
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_twice_is_counted_once() {
    let (hub, hub_addr) = start_peer(60, vec![]).await;
    let (mut spoke, _) = start_peer(61, vec![hub_addr]).await;
    spoke.handle.wait_for_peers(1).await;
    let member = Identity::from_secret(&[2; 32]).unwrap();
    let price = price_by(&member, SystemTime::now(), "3000");
    let attestation = Attestation::sign(&price.data(), spoke.identity.signer());
    let sent = || Metrics::kind(&spoke.metrics.publishes, "attestation").get();
    spoke
        .handle
        .publish(Gossip::Attestation(attestation.clone()));
    wait_for(
        "the first copy to go out",
        Duration::from_secs(20),
        async || sent() == 1,
    )
    .await;
    spoke.handle.publish(Gossip::Attestation(attestation));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent(), 1, "a duplicate is not a message sent");
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_healthy_network_the_writer_changes_once_per_term_and_stores_on_time() {
    let (db, conn) = prepared_db("calm_lease").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(2),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let nodes = start_nodes(1..=5, &boot_addr, &exchange, &db.settings(), &config);
    wait_for("the first prices", Duration::from_secs(90), async || {
        rows(&conn).await.len() >= 5
    })
    .await;
    let writer_sql = Statement::from_string(
        DbBackend::Postgres,
        r#"SELECT node_address FROM heartbeat ORDER BY "timestamp" DESC, node_address DESC LIMIT 1"#,
    );
    let flushes = |outcome: &str| total(&nodes, |m| Metrics::kind(&m.flushes, outcome).get());
    let (stored_before, refused_before) = (flushes("stored"), flushes("refused"));
    let rows_before = rows(&conn).await.len();
    let mut writers: Vec<String> = Vec::new();
    let watched = Duration::from_secs(20);
    let started = Instant::now();
    while started.elapsed() < watched {
        if let Ok(Some(row)) = conn.query_one_raw(writer_sql.clone()).await
            && let Ok(writer) = row.try_get_by_index::<String>(0)
            && writers.last() != Some(&writer)
        {
            writers.push(writer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes = writers.len().saturating_sub(1);
    let stored = flushes("stored") - stored_before;
    let refused = flushes("refused") - refused_before;
    // How long after its flush delay (1 s) each price of the watched window was stored.
    let lags: Vec<f64> = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT extract(epoch FROM created_time - lastsigned_time)::float8 - 1.0 FROM prices \
             ORDER BY id OFFSET 5",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<f64>(0).unwrap())
        .collect();
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    println!(
        "in {watched:?}: {changes} writer changes (term 5 s), {stored} flushes stored, {refused} \
         refused, {} prices; storage lag after the flush delay p90 {p90:.2} s",
        rows(&conn).await.len() - rows_before
    );
    // Four terms; a handover where two nodes take at once counts twice.
    assert!(changes <= 8, "{changes} writer changes in {watched:?}");
    assert!(
        refused * 10 <= stored + refused,
        "{refused} of {} flushes refused",
        stored + refused
    );
    assert!(p90 <= 1.0, "storage lag p90 {p90:.2} s: {sorted:?}");
    stop_all(nodes).await;
    drop(boot);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_network_dies_stops_and_says_why() {
    let (db, conn) = prepared_db("network_dies").await;
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 1,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let node = node::start(
        node_settings(1, &boot_addr, &exchange, &db.settings(), &config),
        Metrics::default(),
    )
    .await
    .unwrap();
    let mut status = node.status.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected_peers >= 1),
    )
    .await
    .expect("the node connects");
    node.crash_network();
    tokio::time::timeout(Duration::from_secs(10), node.stopping())
        .await
        .expect("the node stops on its own");
    let err = node.stop().await.unwrap_err();
    assert!(err.to_string().contains("network"), "{err:#}");
    drop(boot);
    let _ = conn.close().await;
}

/// The first `size` of price `id`'s co-signing order include every one of `silent`.
fn committee_holds_all(
    id: u64,
    origin: &Address,
    members: &[Address],
    size: usize,
    silent: &[Address],
) -> bool {
    let ranked = committee::ranking(id, origin, members);
    silent.iter().all(|member| ranked[..size].contains(member))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_whose_committee_is_down_are_cosigned_by_the_fallback_and_others_by_the_committee_alone()
 {
    const COMMITTEE: usize = 3;
    let (db, conn) = prepared_db("committee").await;
    register(&db, [6, 7, 9]).await;
    let members: Vec<Address> = (1..=7)
        .chain([9])
        .map(|seed| Identity::from_secret(&[seed; 32]).unwrap().address())
        .collect();
    let exchange = mock_at("3000").await;
    let (boot, boot_addr) = start_peer(100, vec![]).await;
    let config = ClusterConfig {
        price_interval: Duration::from_secs(3600),
        min_peers: 3,
        pairs: PairSet::only(Pair::EthUsd),
    };
    let fallback = Duration::from_secs(5);
    let mut nodes: Vec<TestNode> = (1..=7)
        .map(|seed| {
            let mut settings = node_settings(seed, &boot_addr, &exchange, &db.settings(), &config);
            settings.committee = CommitteeSettings {
                size: COMMITTEE,
                step: 2,
                fallback,
            };
            start_node(settings)
        })
        .collect();
    // The origin: member 9, speaking raw gossip, so the test picks which ids it publishes.
    let (origin, _) = start_peer(9, vec![boot_addr.clone()]).await;
    let mut watcher = origin.handle.clone();
    watcher.wait_for_peers(3).await;
    wait_for(
        "each node's first price",
        Duration::from_secs(90),
        async || rows(&conn).await.len() >= 7,
    )
    .await;
    // Two members go down: members 6 and 7.
    let down: Vec<TestNode> = nodes.split_off(5);
    let silent: Vec<Address> = down.iter().map(|node| node.address).collect();
    stop_all(down).await;
    let origin_address = origin.identity.address();
    // Prices whose committee holds both silent members (one live co-signer: no quorum without
    // the fallback), and prices whose committee holds neither.
    let mut stranded = Vec::new();
    let mut served = Vec::new();
    let mut at = SystemTime::now();
    while stranded.len() < 3 || served.len() < 3 {
        at += Duration::from_millis(10);
        let price = price_by(&origin.identity, at, "3000");
        let id = price.data().id;
        if committee_holds_all(id, &origin_address, &members, COMMITTEE, &silent) {
            if stranded.len() < 3 {
                stranded.push(price);
            }
        } else if !committee::ranking(id, &origin_address, &members)[..COMMITTEE]
            .iter()
            .any(|member| silent.contains(member))
            && served.len() < 3
        {
            served.push(price);
        }
    }
    for price in stranded.iter().chain(&served) {
        origin.handle.publish(Gossip::Price(price.clone()));
    }
    let wanted: HashSet<u64> = stranded
        .iter()
        .chain(&served)
        .map(|p| p.data().id)
        .collect();
    wait_for(
        "all six prices stored",
        Duration::from_secs(60),
        async || {
            let stored: HashSet<u64> = rows(&conn).await.iter().map(|row| row.id).collect();
            wanted.is_subset(&stored)
        },
    )
    .await;
    let stored = rows(&conn).await;
    let by_id = |id: u64| stored.iter().find(|row| row.id == id).unwrap();
    let signers_ranked = |id: u64| -> Vec<usize> {
        let ranked = committee::ranking(id, &origin_address, &members);
        by_id(id)
            .signatures
            .iter()
            .filter(|entry| entry.signer != origin_address)
            .map(|entry| ranked.iter().position(|m| *m == entry.signer).unwrap())
            .collect()
    };
    // A stranded price needs a co-signer from outside its committee; a served one gets none.
    for (kind, prices, needs_fallback) in
        [("stranded", &stranded, true), ("served", &served, false)]
    {
        for price in prices {
            let id = price.data().id;
            let ranks = signers_ranked(id);
            println!("{kind} price {id}: co-signed by ranks {ranks:?}");
            assert_eq!(
                ranks.iter().any(|rank| *rank >= COMMITTEE),
                needs_fallback,
                "{kind} price {id}: co-signed by ranks {ranks:?} (committee: ranks below {COMMITTEE})"
            );
        }
    }
    let writers: HashSet<String> = members.iter().map(|m| m.to_checksum(None)).collect();
    assert_rows_verify(&stored, &writers);
    let stepped_in = total(&nodes, |m| {
        Metrics::kind(&m.cosign_fallbacks, "stepped_in").get()
    });
    assert!(
        stepped_in >= 3,
        "fallback co-signers stepped in {stepped_in} times"
    );
    stop_all(nodes).await;
    drop((origin, boot));
    let _ = conn.close().await;
}
