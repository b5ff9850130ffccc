//! `cluster-bench`: whole oracle networks in one process, measured.
//!
//! For each network size N: a fresh PostgreSQL database, the mock exchange, a bootstrap node and
//! N full nodes over real TCP on 127.0.0.1. After a warm-up (a round from every node stored) and
//! an idle window, it originates `--prices` prices from random nodes and measures quorum latency
//! (origin's publish → every node holding the committed report: `2f + 1` observations, the
//! origin's report of them and `f + 1` commits), gossip cost, database load, rows stored
//! and the process's footprint. One table row per N; `--json FILE` for machines.
//!
//! With `--moves M` it measures freshness instead ([`moves`]): the nodes run on their own
//! triggers, a flat market's rounds are counted, then the mock market moves by 2 % M times.
//!
//!     cargo run --release --bin cluster-bench -- --nodes 5,10,25,50 --prices 20
//!     cargo run --release --bin cluster-bench -- --nodes 5,25 --moves 20

mod moves;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use anyhow::{Context, bail};
use clap::Parser;
use price_oracle::committee::{self, CommitteeSettings};
use price_oracle::config::parse_duration;
use price_oracle::domain::FaultBound;
use price_oracle::id::IdGenerator;
use price_oracle::identity::Identity;
use price_oracle::metrics::Metrics;
use price_oracle::network::validation::DEFAULT_MAX_ORIGIN_RATE;
use price_oracle::node::{self, NodeEvent, NodeSettings, RunningNode};
use price_oracle::store::{DbSettings, Store};
use price_oracle::testkit::{self, Peer, TestDb};
use price_oracle::writer::LeaseSettings;
use rand::Rng;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use tokio::sync::broadcast;

/// Measure oracle networks of several sizes in one process.
#[derive(Debug, Parser)]
#[command(name = "cluster-bench")]
struct Args {
    /// Network sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50")]
    nodes: Vec<usize>,
    /// Prices to originate per network, each from a random node.
    #[arg(long, default_value_t = 20)]
    prices: usize,
    /// Time between two originated prices. A real network sees one every price interval / N
    /// (12 s for 50 nodes at the default 10 min); much shorter saturates two cores at large N.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    spacing: Duration,
    /// Idle window after the warm-up: CPU use with no prices flowing. Statement and CPU rates
    /// are taken over this window and the price phase together, so keep it about a minute.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle: Duration,
    /// Give up on a network size after this long.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    timeout: Duration,
    /// PostgreSQL server; a fresh database is created on it per network size and dropped after.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// The fault bound f every node applies: a round needs 2f + 1 observations, its committee
    /// is 3f + 1 members [default: ⌊(N − 1)/3⌋, as a node's default].
    #[arg(long)]
    fault_tolerance: Option<usize>,
    /// How long a price may lack its quorum before the next ranked members step in.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    cosign_fallback: Duration,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Append the nodes' warnings and errors (all nodes, one stream) to this file.
    #[arg(long)]
    log_file: Option<PathBuf>,
    #[command(flatten)]
    moves: moves::MoveArgs,
}

/// The fewest nodes a measured network has: one origin and two co-signers.
const MIN_NODES: usize = 3;

#[derive(Debug, Serialize)]
struct Results {
    nodes: usize,
    prices_originated: usize,
    rows_stored: usize,
    duplicates: usize,
    /// Prices some node never saw verified within the timeout.
    incomplete: usize,
    quorum_ms: Percentiles,
    /// The fault bound the nodes applied.
    f: usize,
    /// Members who observe each round at once, the origin among them: 3f + 1.
    committee_size: usize,
    /// Co-signatures the stored rows of the price phase carry, on average: the committee
    /// actually used.
    cosigners_per_price: f64,
    /// Stored prices of the price phase co-signed by a member outside their committee.
    fallback_prices: usize,
    publishes_per_price: f64,
    payload_bytes_per_price: f64,
    /// All bytes the nodes sent during the price phase (every protocol), per price.
    wire_bytes_per_price: f64,
    /// Background traffic with no prices flowing.
    idle_wire_bytes_per_node_second: f64,
    db_statements_per_node_minute: f64,
    db_statements_per_writer_minute: f64,
    db_statements_per_non_writer_minute: f64,
    writers: usize,
    rss_mb_per_node: f64,
    idle_cpu_percent_of_two_cores: f64,
    cpu_seconds_per_node_minute: f64,
    /// Process CPU during the price phase per message a node received (validation, pool,
    /// co-signing, gossip forwarding: everything).
    cpu_us_per_message: f64,
}

#[derive(Debug, Default, Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(file) = &args.log_file {
        price_oracle::logging::init(&price_oracle::logging::LogSettings {
            filter: "warn".parse().map_err(anyhow::Error::msg)?,
            format: Default::default(),
            file: Some(file.clone()),
            node: Some("bench".into()),
        })?;
    }
    if let Some(n) = args.nodes.iter().find(|n| **n < MIN_NODES) {
        bail!("--nodes {n}: a measured network has at least {MIN_NODES} nodes");
    }
    let json = if args.moves.moves > 0 {
        serde_json::to_string_pretty(&moves::run(&args).await?)?
    } else {
        serde_json::to_string_pretty(&price_phases(&args).await?)?
    };
    if let Some(path) = &args.json {
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The price phase at every network size, one table row each.
async fn price_phases(args: &Args) -> anyhow::Result<Vec<Results>> {
    let mut all = Vec::new();
    print_header();
    for &n in &args.nodes {
        let database = TestDb::create_on(&args.database_url, &format!("bench_{n}")).await?;
        let results = run_network(n, args, &database.url)
            .await
            .with_context(|| format!("network of {n} nodes"))?;
        print_row(&results);
        all.push(results);
    }
    Ok(all)
}

/// A network under measurement.
struct Network {
    nodes: Vec<RunningNode>,
    members: Vec<Address>,
    f: FaultBound,
    /// The benchmark's own connection, for row counts polled often.
    counter: DatabaseConnection,
    /// The process's memory before the nodes started (the database, the exchange and the
    /// bootstrap peer already up), in MiB.
    rss_before: f64,
    _boot: Peer,
    exchange: price_oracle::mock_exchange::MockExchange,
}

async fn run_network(n: usize, args: &Args, db_url: &str) -> anyhow::Result<Results> {
    let network = start_network(n, args, db_url, |_, _| {}).await?;
    let deadline = Instant::now() + args.timeout;
    let warm_rows = warm_up(&network, deadline).await?;
    let rss_per_node = (rss_mb() - network.rss_before) / n as f64;
    let nodes = &network.nodes;

    // Rates (database statements, CPU) are taken over the idle window and the price phase
    // together, so that they describe a network at rest plus a burst of prices.
    let before: Vec<Counters> = nodes.iter().map(Counters::read).collect();
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(args.idle).await;
    let idle_percent = (cpu_seconds() - cpu_start) / args.idle.as_secs_f64() / 2.0 * 100.0;
    // Wire bytes per price are counted over the price phase only; the idle window gives the
    // background (ping, identify, Kademlia, gossipsub heartbeats) on its own.
    let idle_end: Vec<Counters> = nodes.iter().map(Counters::read).collect();
    let cpu_price_phase = cpu_seconds();
    let timeline = price_phase(&network, args, warm_rows, deadline).await?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let cpu = cpu_seconds() - cpu_start;
    let cpu_price = cpu_seconds() - cpu_price_phase;
    let after: Vec<Counters> = nodes.iter().map(Counters::read).collect();
    let (rows, distinct) = stored_rows(&network.counter).await?;
    let (cosigners_per_price, fallback_prices) = committee_use(&network, &timeline).await;
    let f = network.f;
    let (quorum_ms, incomplete) = timeline.quorum_latencies(n);
    let sum = |from: &[Counters], to: &[Counters], f: fn(&Counters) -> f64| -> f64 {
        from.iter().zip(to).map(|(b, a)| f(a) - f(b)).sum()
    };
    let prices = timeline.originated.len().max(1) as f64;
    let rates = DbRates::between(&before, &after, minutes);
    let refused = refusals(nodes);
    if !refused.is_empty() {
        eprintln!("cluster-bench: N={n}: messages refused and limits hit, all nodes: {refused}");
    }
    stop(network).await?;
    Ok(Results {
        nodes: n,
        prices_originated: timeline.originated.len(),
        rows_stored: rows.saturating_sub(warm_rows),
        duplicates: rows - distinct,
        incomplete,
        quorum_ms,
        f: f.faults(),
        committee_size: f.committee_size(),
        cosigners_per_price,
        fallback_prices,
        publishes_per_price: sum(&before, &after, |c| c.publishes) / prices,
        payload_bytes_per_price: sum(&before, &after, |c| c.payload_bytes) / prices,
        wire_bytes_per_price: sum(&idle_end, &after, |c| c.wire_bytes) / prices,
        idle_wire_bytes_per_node_second: sum(&before, &idle_end, |c| c.wire_bytes)
            / n as f64
            / args.idle.as_secs_f64().max(0.001),
        db_statements_per_node_minute: rates.per_node,
        db_statements_per_writer_minute: rates.per_writer,
        db_statements_per_non_writer_minute: rates.per_other,
        writers: rates.writers,
        rss_mb_per_node: rss_per_node,
        idle_cpu_percent_of_two_cores: idle_percent,
        cpu_seconds_per_node_minute: cpu / n as f64 / minutes,
        cpu_us_per_message: cpu_price * 1e6 / sum(&idle_end, &after, |c| c.received).max(1.0),
    })
}

/// A fresh database, the mock exchange, a bootstrap peer and `n` member nodes, node `i`'s
/// settings changed by `customize` last.
async fn start_network(
    n: usize,
    args: &Args,
    db_url: &str,
    customize: impl Fn(usize, &mut NodeSettings),
) -> anyhow::Result<Network> {
    let committee = CommitteeSettings::new(args.cosign_fallback);
    let f = FaultBound::for_members(Some(n), args.fault_tolerance);
    let db = DbSettings {
        // One connection per node (a writer's heartbeat waits for its own flush, which takes
        // milliseconds): with two, every node keeps both open and 50 nodes plus the benchmark's
        // own connection exceed PostgreSQL's default max_connections of 100.
        pool_size: 1,
        timeout: Duration::from_secs(10),
        ..testkit::settings_for(db_url)
    };
    check_connection_limit(db_url, n).await?;
    Store::migrate(&db).await?;
    let exchange = testkit::mock_exchange("3000").await;
    let (boot, boot_addr) = Peer::start(200, vec![]).await;
    let identities = member_identities(n);
    let members: Vec<Address> = identities.iter().map(Identity::address).collect();
    // Every node is a member before any starts, as an operator would have registered them.
    let registrar = Store::connect(&db).await?;
    for (i, identity) in identities.iter().enumerate() {
        registrar
            .add_signer(&identity.address(), &format!("node{i}"))
            .await?;
    }
    registrar.close().await;
    let rss_before = rss_mb();
    let mut nodes = Vec::with_capacity(n);
    for (i, identity) in identities.into_iter().enumerate() {
        let mut settings = bench_settings(i, identity, &boot_addr, &exchange, &db);
        settings.committee = committee;
        settings.deployment.max_faults = args.fault_tolerance;
        customize(i, &mut settings);
        nodes.push(node::start(settings, Metrics::default()).await?);
    }
    Ok(Network {
        nodes,
        members,
        f,
        counter: Database::connect(db_url).await?,
        rss_before,
        _boot: boot,
        exchange,
    })
}

/// A round from every node (started as soon as it has peers and a database) stored, then
/// quiet: N rounds at once is a burst of N² attestations, which must be over before anything is
/// measured. Returns the rows stored by then (a new network's first heartbeat round may add
/// one).
async fn warm_up(network: &Network, deadline: Instant) -> anyhow::Result<usize> {
    for node in &network.nodes {
        node.originate_now();
    }
    wait_rows(network, network.nodes.len(), deadline).await?;
    // Quiet: no node received a message or a Kademlia request for 3 s (nodes that joined late
    // never see some warm-up prices, so "every node verified all of them" may never happen).
    // Quiet discovery too: the lookups a joining network starts are part of its warm-up, not
    // of its idle cost.
    let mut last = f64::NAN;
    let mut quiet_since = Instant::now();
    testkit::wait_until("the warm-up gossip to settle", deadline, async || {
        let received: f64 = network
            .nodes
            .iter()
            .map(|node| {
                let counters = Counters::read(node);
                counters.received + counters.lookups
            })
            .sum();
        if received != last {
            last = received;
            quiet_since = Instant::now();
        }
        quiet_since.elapsed() >= Duration::from_secs(3)
    })
    .await?;
    Ok(stored_rows(&network.counter).await?.0)
}

/// Waits until at least `rows` rows are stored.
async fn wait_rows(network: &Network, rows: usize, deadline: Instant) -> anyhow::Result<()> {
    testkit::wait_until(&format!("{rows} stored rows"), deadline, async || {
        stored_rows(&network.counter)
            .await
            .is_ok_and(|stored| stored.0 >= rows)
    })
    .await
}

/// When each price of the price phase was originated, and when each node verified it.
#[derive(Default)]
struct Timeline {
    originated: HashMap<u64, Instant>,
    verified: HashMap<u64, Vec<Instant>>,
}

impl Timeline {
    fn record(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::Originated { id, at } => {
                self.originated.insert(id, at);
            }
            NodeEvent::Verified { report, at, .. } => {
                self.verified.entry(report.round.id).or_default().push(at);
            }
        }
    }

    /// Whether all `prices` were verified by all `n` nodes.
    fn complete(&self, prices: usize, n: usize) -> bool {
        self.originated.len() >= prices
            && self
                .originated
                .keys()
                .all(|id| self.verified.get(id).is_some_and(|at| at.len() >= n))
    }

    /// Milliseconds from the origin's publish to the last of `n` nodes holding the quorum, and
    /// how many prices never got there.
    fn quorum_latencies(&self, n: usize) -> (Percentiles, usize) {
        let mut latencies = Vec::new();
        let mut incomplete = 0;
        for (id, at) in &self.originated {
            match self.verified.get(id) {
                Some(times) if times.len() >= n => {
                    let last = times.iter().max().copied().unwrap_or(*at);
                    latencies.push(last.saturating_duration_since(*at).as_secs_f64() * 1000.0);
                }
                _ => incomplete += 1,
            }
        }
        (percentiles(&mut latencies), incomplete)
    }
}

/// Originates `--prices` prices from random nodes, then waits until every node verified each
/// and every row is stored (or the deadline passes).
async fn price_phase(
    network: &Network,
    args: &Args,
    warm_rows: usize,
    deadline: Instant,
) -> anyhow::Result<Timeline> {
    let nodes = &network.nodes;
    let n = nodes.len();
    let mut subscriptions: Vec<broadcast::Receiver<NodeEvent>> =
        nodes.iter().map(RunningNode::subscribe).collect();
    for _ in 0..args.prices {
        let origin = rand::rng().random_range(0..n);
        nodes[origin].originate_now();
        tokio::time::sleep(args.spacing).await;
    }
    let mut timeline = Timeline::default();
    let expected_rows = warm_rows + args.prices;
    loop {
        for subscription in &mut subscriptions {
            while let Ok(event) = subscription.try_recv() {
                timeline.record(event);
            }
        }
        let rows = stored_rows(&network.counter).await?.0;
        if timeline.complete(args.prices, n) && rows >= expected_rows {
            return Ok(timeline);
        }
        if Instant::now() > deadline {
            eprintln!("cluster-bench: N={n}: timed out; reporting what completed");
            return Ok(timeline);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Co-signatures per stored price of the price phase, and how many were co-signed by a member
/// outside their committee.
async fn committee_use(network: &Network, timeline: &Timeline) -> (f64, usize) {
    let cosigned = cosigners_of(&network.counter, &timeline.originated).await;
    let size = CommitteeSettings::size(network.f);
    let fallback_prices = cosigned
        .iter()
        .filter(|(id, origin, cosigners)| {
            let ranked = committee::ranking(*id, origin, &network.members);
            let first = &ranked[..size.min(ranked.len())];
            cosigners.iter().any(|cosigner| !first.contains(cosigner))
        })
        .count();
    let per_price: Vec<f64> = cosigned
        .iter()
        .map(|(_, _, cosigners)| cosigners.len() as f64)
        .collect();
    (mean(&per_price), fallback_prices)
}

/// Database statements per minute: per node, per writer and per other node.
struct DbRates {
    per_node: f64,
    per_writer: f64,
    per_other: f64,
    writers: usize,
}

impl DbRates {
    fn between(before: &[Counters], after: &[Counters], minutes: f64) -> Self {
        // A node that flushed was a writer for some of the window.
        let per_node: Vec<(bool, f64)> = before
            .iter()
            .zip(after)
            .map(|(b, a)| {
                (
                    a.flush_statements > b.flush_statements,
                    (a.db_statements - b.db_statements) / minutes,
                )
            })
            .collect();
        let of = |writer: bool| -> Vec<f64> {
            per_node
                .iter()
                .filter(|(was_writer, _)| *was_writer == writer)
                .map(|(_, rate)| *rate)
                .collect()
        };
        let writers = of(true);
        Self {
            per_node: mean(&per_node.iter().map(|(_, rate)| *rate).collect::<Vec<_>>()),
            per_writer: mean(&writers),
            per_other: mean(&of(false)),
            writers: writers.len(),
        }
    }
}

async fn stop(network: Network) -> anyhow::Result<()> {
    for node in network.nodes {
        node.stop().await?;
    }
    let _ = network.counter.close().await;
    Ok(())
}

/// `n` fresh keys with distinct id machine bits (the low 16 bits of the address), so that no two
/// nodes of a burst can mint the same id.
fn member_identities(n: usize) -> Vec<Identity> {
    let mut machines = HashSet::new();
    std::iter::repeat_with(Identity::generate)
        .filter(|identity| {
            machines.insert(IdGenerator::machine_id_from_address(&identity.address()))
        })
        .take(n)
        .collect()
}

/// The test harness's node with the defaults that shape the load: a real network's lease
/// timings (so the database load is what one sees), fifteen minutes of accepted age, prices
/// only on demand after the warm-up.
fn bench_settings(
    i: usize,
    identity: Identity,
    bootstrap: &libp2p::Multiaddr,
    exchange: &price_oracle::mock_exchange::MockExchange,
    db: &DbSettings,
) -> NodeSettings {
    let mut settings = testkit::node_settings(1, bootstrap, exchange, db);
    settings.name = format!("node{i}");
    settings.identity = identity;
    settings.network.validation.max_age = Duration::from_secs(900);
    settings.network.validation.max_future_skew = Duration::from_secs(30);
    settings.network.validation.max_origin_rate = DEFAULT_MAX_ORIGIN_RATE;
    settings.pool.max_age = settings.network.validation.max_age;
    settings.pool.retention = Duration::from_secs(3600);
    // Rounds come on demand only (the warm-up's, then the price phase's): observing at the
    // default interval, no heartbeat within the run, a steady market.
    settings.trigger.observe_interval = Duration::from_secs(15);
    // The node's default: two observe intervals.
    settings.trigger.progress_timeout = Duration::from_secs(30);
    settings.trigger.heartbeat = Duration::from_secs(24 * 3600);
    settings.lease = LeaseSettings {
        interval: Duration::from_secs(5),
        lease: Duration::from_secs(20),
        term: Duration::from_secs(60),
        warm_up: Duration::from_secs(1),
    };
    settings.feed.timeout = Duration::from_secs(5);
    settings.migrate = false;
    settings
}

/// A node's counters, read from its own metrics.
struct Counters {
    publishes: f64,
    payload_bytes: f64,
    wire_bytes: f64,
    db_statements: f64,
    flush_statements: f64,
    received: f64,
    /// Kademlia requests this node answered.
    lookups: f64,
}

/// The messages a round costs: the price, the observations, the origin's report, the commits.
const ROUND_KINDS: [&str; 4] = ["price", "attestation", "report", "commit"];

impl Counters {
    fn read(node: &RunningNode) -> Self {
        let text = node.metrics_text();
        let sum = |prefix: &str, needle: &str| -> f64 {
            text.lines()
                .filter(|line| line.starts_with(prefix) && line.contains(needle))
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum()
        };
        Self {
            publishes: ROUND_KINDS
                .iter()
                .map(|kind| sum(&format!("oracle_publishes_total{{kind=\"{kind}\"}}"), ""))
                .sum(),
            payload_bytes: ROUND_KINDS
                .iter()
                .map(|kind| {
                    sum(
                        &format!("oracle_published_bytes_total{{kind=\"{kind}\"}}"),
                        "",
                    )
                })
                .sum(),
            wire_bytes: sum("libp2p_bandwidth_bytes_total{", "Outbound"),
            db_statements: sum("oracle_db_statements_total{", ""),
            flush_statements: sum("oracle_db_statements_total{kind=\"flush", ""),
            received: sum("oracle_messages_received_total{", ""),
            lookups: sum("libp2p_kad_inbound_requests_total{", ""),
        }
    }
}

/// Every refused message and every limit hit, summed over the nodes, as `name{label} count`
/// pairs: where a network that does not complete lost its messages.
fn refusals(nodes: &[RunningNode]) -> String {
    let mut totals: std::collections::BTreeMap<String, f64> = Default::default();
    for node in nodes {
        for line in node.metrics_text().lines() {
            let counted = [
                "oracle_limit_hits_total{",
                "oracle_messages_ignored_total{",
                "oracle_messages_rejected_total{",
            ]
            .iter()
            .any(|prefix| line.starts_with(prefix));
            if let Some((series, value)) = line.rsplit_once(' ')
                && counted
                && let Ok(value) = value.parse::<f64>()
            {
                *totals
                    .entry(series.trim_start_matches("oracle_").to_owned())
                    .or_default() += value;
            }
        }
    }
    totals
        .iter()
        .map(|(series, value)| format!("{series} {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: values[values.len() - 1],
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// (rows, distinct ids) in `prices`.
async fn stored_rows(conn: &DatabaseConnection) -> anyhow::Result<(usize, usize)> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*), count(DISTINCT id) FROM prices",
        ))
        .await?
        .context("count returned no row")?;
    let counts = (
        row.try_get_by_index::<i64>(0)? as usize,
        row.try_get_by_index::<i64>(1)? as usize,
    );
    Ok(counts)
}

/// For each stored row among `ids`: its id, origin and co-signers.
async fn cosigners_of(
    conn: &DatabaseConnection,
    ids: &HashMap<u64, Instant>,
) -> Vec<(u64, Address, Vec<Address>)> {
    testkit::stored(conn)
        .await
        .into_iter()
        .filter(|stored| ids.contains_key(&stored.id()))
        .map(|stored| {
            let origin = stored.report.round.origin;
            let cosigners = stored
                .report
                .signers()
                .filter(|signer| *signer != origin)
                .collect();
            (stored.id(), origin, cosigners)
        })
        .collect()
}

/// Every node holds one database connection: fail early, and say what to change, when the
/// server allows fewer.
async fn check_connection_limit(db_url: &str, n: usize) -> anyhow::Result<()> {
    let conn = Database::connect(db_url).await?;
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('max_connections')::int \
             - current_setting('superuser_reserved_connections')::int \
             - (SELECT count(*)::int FROM pg_stat_activity)",
        ))
        .await?
        .context("no answer to the connection count")?;
    let _ = conn.close().await;
    let free = row.try_get_by_index::<i32>(0)?;
    let needed = n + 3;
    if (free as i64) < needed as i64 {
        bail!(
            "PostgreSQL has {free} free connections and {n} nodes need {needed} (one each and \
             the benchmark's own): raise max_connections, e.g. \
             ALTER SYSTEM SET max_connections = 300 and restart the server"
        );
    }
    Ok(())
}

/// The process's resident memory in MiB (Linux; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds the process has used, all threads (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

fn print_header() {
    println!(
        "{:>5} {:>6} {:>6} {:>4} | {:>8} {:>8} {:>8} {:>8} | {:>4} {:>6} {:>5} | {:>8} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>7} {:>8} {:>9} {:>9}",
        "nodes",
        "prices",
        "stored",
        "dup",
        "q p50 ms",
        "q p95 ms",
        "q p99 ms",
        "q max ms",
        "K",
        "cosig",
        "fallb",
        "pub/pr",
        "bytes/pr",
        "wire/pr",
        "idle B/s/n",
        "db/n/min",
        "writer",
        "others",
        "RSS/n",
        "idle cpu",
        "cpu s/n/m",
        "cpu us/msg"
    );
}

fn print_row(r: &Results) {
    println!(
        "{:>5} {:>6} {:>6} {:>4} | {:>8.1} {:>8.1} {:>8.1} {:>8.1} | {:>4} {:>6.2} {:>5} | {:>8.2} {:>9.0} {:>9.0} {:>9.0} | {:>8.1} {:>8.1} {:>8.1} | {:>6.1}M {:>7.1}% {:>9.3} {:>9.0}",
        r.nodes,
        r.prices_originated,
        r.rows_stored,
        r.duplicates,
        r.quorum_ms.p50,
        r.quorum_ms.p95,
        r.quorum_ms.p99,
        r.quorum_ms.max,
        r.committee_size,
        r.cosigners_per_price,
        r.fallback_prices,
        r.publishes_per_price,
        r.payload_bytes_per_price,
        r.wire_bytes_per_price,
        r.idle_wire_bytes_per_node_second,
        r.db_statements_per_node_minute,
        r.db_statements_per_writer_minute,
        r.db_statements_per_non_writer_minute,
        r.rss_mb_per_node,
        r.idle_cpu_percent_of_two_cores,
        r.cpu_seconds_per_node_minute,
        r.cpu_us_per_message
    );
    if r.incomplete > 0 {
        println!(
            "      ({} prices were not verified by every node in time)",
            r.incomplete
        );
    }
}
