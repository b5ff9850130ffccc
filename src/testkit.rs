//! The shared test harness (feature `test-util`): what the integration tests, the benches and
//! `cluster-bench` build networks and databases from, defined once.
//!
//! - [`TestDb`]: a PostgreSQL database of its own, dropped when the value is.
//! - [`node_settings`]: a node with intervals of seconds on 127.0.0.1, a mock exchange as its
//!   only source; callers change the fields a test is about.
//! - [`Peer`]: a network-only peer — a bootstrap node, or an attacker speaking raw gossip.
//! - [`TestNode`]: a running node with its address and metrics.
//! - [`wait_for`] and [`holds_for`]: a condition awaited with a deadline, or held for a window —
//!   never a fixed sleep followed by an assertion.
//! - [`writer_store`] and [`verified_batch`]: a database with members and a writer, and signed
//!   prices ready for its flush.
//! - [`SseReader`]: a client of the API's Server-Sent Events stream.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use libp2p::Multiaddr;
use prometheus_client::registry::Registry;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryOrder};
use tokio::task::JoinHandle;

use crate::committee::CommitteeSettings;
use crate::domain::{Deployment, FaultBound};
use crate::id::IdGenerator;
use crate::identity::Identity;
use crate::membership::Members;
use crate::message::PriceMessage;
use crate::mock_exchange::{MockExchange, MockSettings};
use crate::network::validation::ValidationSettings;
use crate::network::{self, NetworkHandle, NetworkSettings};
use crate::node::{self, Metrics, NodeSettings, RunningNode};
use crate::pair::{Pair, PairSet};
use crate::pool::PoolSettings;
use crate::price::{FeedSettings, QuoteRules, Source, UsdPrice};
use crate::signed::{
    Observation, PriceData, Report, Round, SignatureEntry, SignedObservation, VerifiedPrice,
};
use crate::store::lease::Participant;
use crate::store::reports::StoredPrice;
use crate::store::{DatabaseUrl, DbSettings, Store};
use crate::trigger::TriggerSettings;
use crate::writer::LeaseSettings;

/// Observation times of test prices: `EPOCH + id`, in November 2025.
pub const EPOCH: u64 = 1_763_700_000;

/// What test nodes accept: a minute of age, five seconds of clock skew.
pub const VALIDATION: ValidationSettings = ValidationSettings {
    max_age: Duration::from_secs(60),
    max_future_skew: Duration::from_secs(5),
    max_origin_rate: 60,
    pairs: PairSet::only(Pair::EthUsd),
};

/// The key of test node `seed` (the same seed, the same node, in every test).
pub fn identity(seed: u8) -> Identity {
    Identity::from_secret(&[seed; 32]).unwrap_or_else(|_| unreachable!("a nonzero seed is a key"))
}

/// The addresses of test nodes `seeds`.
pub fn addresses(seeds: impl IntoIterator<Item = u8>) -> Vec<Address> {
    seeds
        .into_iter()
        .map(|seed| identity(seed).address())
        .collect()
}

/// Any free port on 127.0.0.1.
pub fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0"
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid multiaddr"))
}

/// The mock exchange on a free port, quoting every pair steadily at `price` (ETH/USD; the
/// others in proportion).
pub async fn mock_exchange(price: &str) -> MockExchange {
    let price = UsdPrice::parse_quote(price).expect("a test price");
    MockExchange::start(
        "127.0.0.1:0".parse().expect("an address"),
        MockSettings::steady(price),
    )
    .await
    .expect("the mock exchange starts")
}

/// The configuration digest a node signs under without a member list (tools, unit tests):
/// the default deployment's with no members and `f` = 0.
pub fn open_config() -> B256 {
    Members::open().signing_config()
}

/// The configuration digest of a test network whose members are `members`: what every signature
/// in it is bound to (the default deployment, `f` derived from the member count).
pub fn config_of(members: &[Address]) -> B256 {
    let f = FaultBound::for_members(Some(members.len()), None);
    Deployment::default().config_digest(members, f)
}

/// Test price `id`: 3000 USD plus `id` units of 10⁻⁸, observed at `EPOCH + id`.
pub fn price_data(id: u64, origin: Address) -> PriceData {
    PriceData {
        config: open_config(),
        pair: Pair::EthUsd,
        id,
        price: price_of(id),
        observed_at: EPOCH + id,
        origin,
    }
}

/// The id `origin` mints for test round `n`: observed at `EPOCH + n`, so minted then, in its
/// own id space (its machine bits), as a real origin's id is. Rounds keep their order.
pub fn round_id(n: u64, origin: &Address) -> u64 {
    let machine = IdGenerator::machine_id_from_address(origin);
    IdGenerator::new(machine)
        .next_id_at(UNIX_EPOCH + Duration::from_secs(EPOCH + n))
        .expect("a time after the id epoch")
}

/// Test round `n` of `origin`: [`price_data`] of `n` under its proper id ([`round_id`]).
pub fn round_data(n: u64, origin: Address) -> PriceData {
    PriceData {
        id: round_id(n, &origin),
        ..price_data(n, origin)
    }
}

/// The price of test price `id`.
pub fn price_of(id: u64) -> UsdPrice {
    UsdPrice::from_e8(300_000_000_000 + id as i64).expect("a valid price")
}

/// `signer`'s `observation` of `round`, signed over its normative digest: what a member
/// contributes to a report.
pub fn signed_observation(
    signer: &PrivateKeySigner,
    round: Round,
    observation: Observation,
) -> SignedObservation {
    SignedObservation {
        signer: signer.address(),
        observation,
        signature: PriceData::new(round, observation).sign(signer).signature,
    }
}

/// A price `identity` could have originated at `at` (a proper id in its own id space), under
/// configuration `config`.
pub fn price_by(config: B256, identity: &Identity, at: SystemTime, usd: &str) -> PriceMessage {
    let machine = IdGenerator::machine_id_from_address(&identity.address());
    let id = IdGenerator::new(machine)
        .next_id_at(at)
        .expect("a time after the id epoch");
    let data = PriceData {
        config,
        pair: Pair::EthUsd,
        id,
        price: UsdPrice::parse_quote(usd).expect("a test price"),
        observed_at: crate::time::unix_seconds(at),
        origin: identity.address(),
    };
    PriceMessage::originate(data, identity.signer())
}

/// A committed report of a round `observers[0]` starts at `at`, under its own id: each of
/// `observers` observes its price (USD) at `at` and signs it under `config`, and each of
/// `committers` commits to the set. Any keys will do, members' or not, at any time: what
/// whoever can write `prices` could store by hand ([`insert_by_hand`]).
pub fn report_signed_by(
    config: B256,
    at: SystemTime,
    observers: &[(&Identity, &str)],
    committers: &[&Identity],
) -> Report {
    let origin = observers.first().map(|(origin, _)| *origin);
    let round = price_by(config, origin.expect("an origin"), at, "1")
        .data
        .round();
    let observations = observers
        .iter()
        .map(|(observer, usd)| {
            let observation = Observation {
                price: UsdPrice::parse_quote(usd).expect("a test price"),
                observed_at: crate::time::unix_seconds(at),
            };
            signed_observation(observer.signer(), round, observation)
        })
        .collect();
    let mut report = Report {
        round,
        observations,
        commits: Vec::new(),
    };
    let digest = report.digest().expect("a report with observations");
    report.commits = committers
        .iter()
        .map(|committer| SignatureEntry::sign(committer.signer(), digest))
        .collect();
    report
}

/// Writes `report`'s row into `db` as the database's owner can (the admin credential), past
/// the flush and every check of a node; returns the row as stored, with its `seq`.
pub async fn insert_by_hand(db: &TestDb, report: &Report) -> StoredPrice {
    use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, IntoActiveModel};
    let mut row = crate::store::row::row_of(report, 0).into_active_model();
    // Both are the database's to fill in: the commit order and the insert's clock.
    row.seq = NotSet;
    row.created_time = NotSet;
    let conn = db.connect().await;
    let stored = row.insert(&conn).await.expect("insert a row by hand");
    let _ = conn.close().await;
    stored
}

/// Node `seed` of a test network: short intervals (lease heartbeats every 200 ms, a 1 s flush
/// delay, an observation every second), rounds on a 0.5 % move or when asked for (the
/// heartbeat is an hour, so a steady market starts one round per pair, at start), three peers
/// and three signers, the mock exchange as its one source.
pub fn node_settings(
    seed: u8,
    bootstrap: &Multiaddr,
    exchange: &MockExchange,
    db: &DbSettings,
) -> NodeSettings {
    let mut settings = NodeSettings {
        name: format!("node{seed}"),
        network: NetworkSettings::with_default_limits(
            vec![loopback()],
            vec![bootstrap.clone()],
            VALIDATION,
        ),
        min_peers: 3,
        pool: PoolSettings {
            flush_delay: Duration::from_secs(1),
            max_age: VALIDATION.max_age,
            retention: Duration::from_secs(600),
            max_pending_per_signer: 64,
        },
        trigger: TriggerSettings {
            observe_interval: Duration::from_secs(1),
            deviation: Decimal::new(5, 3),
            heartbeat: Duration::from_secs(3600),
            max_deviation: Decimal::new(1, 2),
            // Well past the fallback co-signers' turns (2 s, 4 s): an honest round that needs
            // them still counts as progress.
            progress_timeout: Duration::from_secs(10),
        },
        lease: LeaseSettings {
            interval: Duration::from_millis(200),
            lease: Duration::from_millis(600),
            term: Duration::from_secs(5),
            warm_up: Duration::from_secs(1),
        },
        feed: FeedSettings {
            pairs: VALIDATION.pairs,
            endpoints: Vec::new(),
            // One source (see `fetch_from`): its quote is the price.
            rules: QuoteRules {
                min_sources: 1,
                max_quote_age: Duration::from_secs(120),
                max_deviation: Decimal::new(2, 2),
            },
            timeout: Duration::from_secs(2),
            retries: 1,
            backoff: Duration::from_millis(50),
        },
        db: db.clone(),
        migrate: true,
        http: None,
        api: Default::default(),
        api_cors: Default::default(),
        trusted_signers: None,
        register: false,
        max_cosign_queue: 256,
        committee: CommitteeSettings::new(Duration::from_secs(2)),
        deployment: Deployment::default(),
        identity: identity(seed),
    };
    settings.fetch_from(exchange);
    settings
}

impl NodeSettings {
    /// Signs `pairs` (and accepts them from peers).
    pub fn sign_pairs(&mut self, pairs: PairSet) {
        self.feed.pairs = pairs;
        self.network.validation.pairs = pairs;
    }

    /// Fetches its prices from `exchange` only.
    pub fn fetch_from(&mut self, exchange: &MockExchange) {
        let url = exchange
            .base_url()
            .parse()
            .expect("the mock exchange's URL");
        self.feed.endpoints = vec![(Source::Coinbase, url)];
    }
}

/// A running test node.
pub struct TestNode {
    pub address: Address,
    pub metrics: Metrics,
    pub node: RunningNode,
}

impl TestNode {
    /// Starts the node and asks it for one round of every pair as soon as it runs, so that
    /// every node of a test network originates once at start whatever the market does: what
    /// most tests need to have prices flowing. [`TestNode::start_on_triggers`] does not ask.
    pub async fn start(settings: NodeSettings) -> Self {
        let node = Self::start_on_triggers(settings).await;
        node.node.originate_now();
        node
    }

    /// Starts the node; its rounds start only as its triggers say (a move, the heartbeat).
    pub async fn start_on_triggers(settings: NodeSettings) -> Self {
        let metrics = Metrics::default();
        let address = settings.identity.address();
        let node = node::start(settings, metrics.clone())
            .await
            .expect("the node starts");
        Self {
            address,
            metrics,
            node,
        }
    }

    /// Stops the node, which must not have stopped on its own, within 10 s.
    pub async fn stop(self) {
        assert!(
            !self.node.is_stopping(),
            "node {} stopped on its own",
            self.address
        );
        tokio::time::timeout(Duration::from_secs(10), self.node.stop())
            .await
            .expect("the node stops within 10 s")
            .expect("the node stops cleanly");
    }
}

/// Stops every node (see [`TestNode::stop`]).
pub async fn stop_all(nodes: Vec<TestNode>) {
    futures::future::join_all(nodes.into_iter().map(TestNode::stop)).await;
}

/// The nodes' addresses.
pub fn addresses_of(nodes: &[TestNode]) -> Vec<Address> {
    nodes.iter().map(|node| node.address).collect()
}

/// The sum of a counter over `nodes`.
pub fn total(nodes: &[TestNode], counter: impl Fn(&Metrics) -> u64) -> u64 {
    nodes.iter().map(|node| counter(&node.metrics)).sum()
}

/// A network-only peer: a bootstrap node, or an attacker speaking raw gossip.
pub struct Peer {
    pub identity: Identity,
    pub handle: NetworkHandle,
    pub metrics: Metrics,
    pub task: JoinHandle<()>,
}

impl Peer {
    /// Peer `seed` on a free port, joining through `bootstrap`: a relay without a member list,
    /// like a bootstrap node without `--trusted-signers`. Returns it and its address.
    pub async fn start(seed: u8, bootstrap: Vec<Multiaddr>) -> (Self, Multiaddr) {
        Self::start_with(seed, bootstrap, |_| {}).await
    }

    /// The same, with its settings changed by `customize` first.
    pub async fn start_with(
        seed: u8,
        bootstrap: Vec<Multiaddr>,
        customize: impl FnOnce(&mut NetworkSettings),
    ) -> (Self, Multiaddr) {
        let (peer, addr, events) = Self::start_listening(seed, bootstrap, customize).await;
        drop(events);
        (peer, addr)
    }

    /// The same, also returning the valid gossip it receives (every signer counts for it): an
    /// attacker that answers what it hears. The caller drains the receiver, or the peer stalls.
    pub async fn start_listening(
        seed: u8,
        bootstrap: Vec<Multiaddr>,
        customize: impl FnOnce(&mut NetworkSettings),
    ) -> (
        Self,
        Multiaddr,
        tokio::sync::mpsc::Receiver<network::NetworkEvent>,
    ) {
        let identity = identity(seed);
        let mut settings = NetworkSettings::with_default_limits(
            vec![loopback()],
            bootstrap,
            ValidationSettings {
                pairs: PairSet::ALL,
                ..VALIDATION
            },
        );
        customize(&mut settings);
        let members = tokio::sync::watch::channel(Arc::new(Members::open())).1;
        let metrics = Metrics::default();
        let (mut handle, events, task) = network::spawn(
            identity.keypair(),
            settings,
            members,
            Arc::new(metrics.clone()),
            &mut Registry::default(),
        )
        .expect("the peer's network starts");
        let addr = handle.wait_for_listen_addrs().await.remove(0);
        let peer = Self {
            identity,
            handle,
            metrics,
            task,
        };
        (peer, addr, events)
    }
}

/// Waits until `check` holds, polling every 100 ms; fails the test after `limit`.
pub async fn wait_for(what: &str, limit: Duration, check: impl AsyncFnMut() -> bool) {
    if let Err(err) = wait_until(what, Instant::now() + limit, check).await {
        panic!("{err}");
    }
}

/// Waits until `check` holds, polling every 100 ms; an error once `deadline` has passed.
pub async fn wait_until(
    what: &str,
    deadline: Instant,
    mut check: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !check().await {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {:?} waiting for {what}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Checks that `check` holds throughout `window`, polling every 100 ms: for what must *not*
/// happen (no extra row, no second message), which no deadline can prove.
pub async fn holds_for(what: &str, window: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    loop {
        assert!(
            check().await,
            "{what} stopped holding after {:?}",
            started.elapsed()
        );
        if started.elapsed() >= window {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The server tests use: `TEST_DATABASE_URL`, else `DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test (or one benchmark run), dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl TestDb {
    /// A fresh database on the test server ([`server_url`]).
    pub async fn create(label: &str) -> Self {
        Self::create_on(&server_url(), label)
            .await
            .expect("the test PostgreSQL answers (run scripts/db.sh)")
    }

    /// A fresh database on `server`.
    pub async fn create_on(server: &str, label: &str) -> anyhow::Result<Self> {
        let name = format!("oracle_test_{label}_{:08x}", rand::random::<u32>());
        let admin = Database::connect(server).await.map_err(|err| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {}: {err}",
                DatabaseUrl::new(server)
            )
        })?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(server)?;
        url.set_path(&name);
        Ok(Self {
            name,
            url: url.to_string(),
            server: server.to_owned(),
        })
    }

    pub fn settings(&self) -> DbSettings {
        settings_for(&self.url)
    }

    /// A plain connection for the test's own checks.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.expect("connect test db")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; use a thread.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(server).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = admin.execute_unprepared(&drop).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Test settings for the database at `url`: four connections, 2 s per call.
pub fn settings_for(url: &str) -> DbSettings {
    DbSettings {
        url: DatabaseUrl::new(url),
        pool_size: 4,
        timeout: Duration::from_secs(2),
    }
}

/// A stored row and the report it records.
#[derive(Debug, Clone)]
pub struct Stored {
    pub row: StoredPrice,
    pub report: Report,
}

impl Stored {
    pub fn id(&self) -> u64 {
        self.report.round.id
    }

    /// The round's time: when its origin observed.
    pub fn observed_at(&self) -> u64 {
        u64::try_from(self.row.observed_at.timestamp()).unwrap_or_default()
    }

    /// Whether `signer` has an observation in it.
    pub fn signed_by(&self, signer: &Address) -> bool {
        self.report.signers().any(|known| known == *signer)
    }

    /// The observation of `signer`, if it has one.
    pub fn observation_of(&self, signer: &Address) -> Option<&SignedObservation> {
        self.report
            .observations
            .iter()
            .find(|entry| entry.signer == *signer)
    }
}

/// Every stored row, by id, read back the one way the API and `oracle verify` read it.
pub async fn stored(conn: &DatabaseConnection) -> Vec<Stored> {
    entity::prices::Entity::find()
        .order_by_asc(entity::prices::Column::Id)
        .all(conn)
        .await
        .expect("read prices")
        .into_iter()
        .map(|row| {
            let report = Report::try_from(&row).expect("a stored row reads back");
            Stored { row, report }
        })
        .collect()
}

/// Every row: at least `min_signers` distinct signers whose signatures recover against the
/// normative digests of their own observations, `signer_count` right, the origin among them,
/// the price their median and the spread and range theirs (what `oracle verify` checks, and
/// computed here independently of it), committed by `f + 1` of `writers`, written by one of
/// `writers`.
pub fn assert_rows_verify(rows: &[Stored], min_signers: usize, writers: &[Address]) {
    for stored in rows {
        let id = stored.id();
        let report = &stored.report;
        let signers: std::collections::HashSet<Address> = report.signers().collect();
        assert_eq!(
            signers.len(),
            report.observations.len(),
            "row {id}: a signer twice"
        );
        assert!(
            signers.len() >= min_signers,
            "row {id} has {} signers",
            signers.len()
        );
        assert_eq!(stored.row.signer_count as usize, signers.len(), "row {id}");
        report.verify().expect("every signature verifies");
        assert!(
            report.origin_observation().is_some(),
            "row {id}: the origin did not observe"
        );
        // Committed: f + 1 distinct signers (among `writers`, the members) over this very
        // report's digest, f such that 2f + 1 is `min_signers`.
        let digest = report.digest().expect("a report with observations");
        let committers: std::collections::HashSet<Address> = report
            .commits
            .iter()
            .filter(|commit| commit.verify(digest).is_ok() && writers.contains(&commit.signer))
            .map(|commit| commit.signer)
            .collect();
        assert!(
            committers.len() > min_signers.saturating_sub(1) / 2,
            "row {id}: {} valid member commits of {}",
            committers.len(),
            report.commits.len()
        );
        // The median, by a sort of its own rather than the crate's `median`.
        let mut prices: Vec<Decimal> = report
            .observations
            .iter()
            .map(|entry| entry.observation.price.to_decimal())
            .collect();
        prices.sort();
        assert_eq!(
            stored.row.price,
            prices[prices.len() / 2],
            "row {id}: not the median"
        );
        let writer: Address = stored
            .row
            .written_by
            .parse()
            .expect("written_by is an address");
        assert!(writers.contains(&writer), "row {id} written by {writer}");
        let audit = crate::audit::audit_row(
            &stored.row,
            &crate::audit::AuditRules {
                // Every signer counts; f such that 2f + 1 is `min_signers` (rounded down).
                deployment: Deployment {
                    max_faults: Some(min_signers.saturating_sub(1) / 2),
                    ..Deployment::default()
                },
                counted: crate::audit::Counted::Everyone,
                network: None,
            },
            chrono::Utc::now(),
        );
        assert_eq!(audit.finding, None, "row {id}: oracle verify disagrees");
    }
}

/// Migrates the database, makes test nodes 1..=3 members since before the test prices'
/// observation times, and makes node 1 the writer. Returns the store and the writer.
pub async fn writer_store(db: &TestDb) -> (Store, Participant) {
    Store::migrate(&db.settings()).await.expect("migrate");
    let store = Store::connect(&db.settings()).await.expect("connect");
    for seed in 1..=3 {
        store
            .add_signer(&identity(seed).address(), &format!("node{seed}"))
            .await
            .expect("add signer");
    }
    // The test prices are observed in 2025: their signers were members then.
    db.connect()
        .await
        .execute_unprepared("UPDATE signers SET added_at = '2025-01-01T00:00:00Z'")
        .await
        .expect("backdate the members");
    let writer = participant(1);
    store
        .heartbeat(&writer, Duration::ZERO)
        .await
        .expect("heartbeat");
    (store, writer)
}

/// Test node `seed` as the heartbeat table knows it.
pub fn participant(seed: u8) -> Participant {
    let identity = identity(seed);
    Participant {
        address: identity.address(),
        name: format!("node{seed}"),
        peer_id: identity.peer_id().to_string(),
        listen_addrs: Vec::new(),
    }
}

/// Plays an origin's part after its price for a raw peer (one that publishes gossip by hand):
/// for each of `prices` (rounds of `origin`), collects the attestations `heard` brings and, once
/// the origin's observation and the first others make `quorum`, publishes the origin's report
/// of them. Returns when every round is reported, or after `within`.
pub async fn report_rounds(
    heard: &mut tokio::sync::mpsc::Receiver<network::NetworkEvent>,
    handle: &NetworkHandle,
    origin: &Identity,
    prices: &[PriceMessage],
    quorum: usize,
    within: Duration,
) {
    let mut rounds: std::collections::HashMap<Round, Vec<SignedObservation>> = prices
        .iter()
        .map(|price| {
            let round = price.data.round();
            let own = signed_observation(origin.signer(), round, price.data.observation());
            (round, vec![own])
        })
        .collect();
    let deadline = Instant::now() + within;
    while !rounds.is_empty() && Instant::now() < deadline {
        let Ok(Some(network::NetworkEvent::Gossip(crate::message::Gossip::Attestation(heard)))) =
            tokio::time::timeout(Duration::from_millis(200), heard.recv()).await
        else {
            continue;
        };
        let round = heard.data.round();
        let Some(observations) = rounds.get_mut(&round) else {
            continue;
        };
        observations.push(SignedObservation {
            signer: heard.signature.signer,
            observation: heard.data.observation(),
            signature: heard.signature.signature,
        });
        if observations.len() >= quorum
            && let Some(observations) = rounds.remove(&round)
        {
            let report = Report {
                round,
                observations,
                commits: Vec::new(),
            };
            if let Some(message) = crate::message::ReportMessage::sign(&report, origin.signer()) {
                handle.publish(crate::message::Gossip::Report(message));
            }
        }
    }
}

/// How a test batch is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Every price by every signer over its own digest: what a verifier checks.
    Genuine,
    /// One placeholder signature per signer, reused for every price: the store does not verify
    /// signatures (the network layer does), and signing thousands would only slow tests down.
    Placeholder,
}

/// Test rounds `ids` ([`price_data`]) of the first of `signers`, each signer observing the same
/// price at the same time and committing to the report, verified just now, under the
/// configuration of a network whose members are `signers` ([`config_of`]). The ids are taken
/// as they are: for the store, which does not judge them; [`verified_rounds`] mints them as
/// origins do, for readers and `oracle verify`.
pub fn verified_batch(
    ids: impl IntoIterator<Item = u64>,
    signers: &[Identity],
    signing: Signing,
) -> Vec<VerifiedPrice> {
    let origin = signers.first().map(Identity::address).unwrap_or_default();
    let data = ids.into_iter().map(|id| price_data(id, origin));
    batch_of(data, signers, signing)
}

/// [`verified_batch`] of test rounds `rounds` under the ids their origin mints ([`round_data`]):
/// rows that pass every reader's check.
pub fn verified_rounds(
    rounds: impl IntoIterator<Item = u64>,
    signers: &[Identity],
    signing: Signing,
) -> Vec<VerifiedPrice> {
    let origin = signers.first().map(Identity::address).unwrap_or_default();
    let data = rounds.into_iter().map(|n| round_data(n, origin));
    batch_of(data, signers, signing)
}

/// `data`, each round observed by every one of `signers` and committed to by them.
fn batch_of(
    data: impl IntoIterator<Item = PriceData>,
    signers: &[Identity],
    signing: Signing,
) -> Vec<VerifiedPrice> {
    let placeholders: Vec<SignatureEntry> = signers
        .iter()
        .map(|signer| SignatureEntry::sign(signer.signer(), Default::default()))
        .collect();
    let addresses: Vec<Address> = signers.iter().map(Identity::address).collect();
    let config = config_of(&addresses);
    data.into_iter()
        .map(|data| {
            let data = PriceData { config, ..data };
            let observations = signers
                .iter()
                .zip(&placeholders)
                .map(|(signer, placeholder)| match signing {
                    Signing::Genuine => {
                        signed_observation(signer.signer(), data.round(), data.observation())
                    }
                    Signing::Placeholder => SignedObservation {
                        signer: signer.address(),
                        observation: data.observation(),
                        signature: placeholder.signature,
                    },
                })
                .collect();
            let mut report = Report {
                round: data.round(),
                observations,
                commits: Vec::new(),
            };
            // Every signer commits to the report, as members whose observation it holds do.
            report.commits = match (signing, report.digest()) {
                (Signing::Genuine, Some(digest)) => signers
                    .iter()
                    .map(|signer| SignatureEntry::sign(signer.signer(), digest))
                    .collect(),
                _ => placeholders.clone(),
            };
            VerifiedPrice {
                report,
                last_signed: SystemTime::now(),
            }
        })
        .collect()
}

/// One Server-Sent Event: its `id`, `event` and `data` fields (`data` as JSON).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: serde_json::Value,
    /// When the reader had it whole.
    pub at: Instant,
}

/// Reads Server-Sent Events from a streaming response, as an EventSource would.
pub struct SseReader {
    response: reqwest::Response,
    text: String,
}

impl SseReader {
    /// A reader of `response`, which must be a 200 `text/event-stream`.
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{response:?}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{response:?}"
        );
        Self {
            response,
            text: String::new(),
        }
    }

    /// Opens `url` and reads its events.
    pub async fn open(url: &str) -> Self {
        let response = reqwest::get(url).await.expect("the stream opens");
        Self::new(response)
    }

    /// The next event (keep-alive comments skipped); `None` when the stream ends.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(&format!("{name}:")))
                        .map(|value| value.trim_start().to_owned())
                };
                let Some(data) = field("data") else { continue };
                return Some(SseEvent {
                    id: field("id").unwrap_or_default(),
                    event: field("event").unwrap_or_default(),
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                    at: Instant::now(),
                });
            }
            let chunk = self.response.chunk().await.ok()??;
            self.text
                .push_str(std::str::from_utf8(&chunk).expect("the stream is UTF-8"));
        }
    }

    /// The next event, which must come within `within`; `None` when the stream ends.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        tokio::time::timeout(within, self.next_event())
            .await
            .expect("an event in time")
    }
}
