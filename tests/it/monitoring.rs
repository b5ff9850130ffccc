//! The monitoring files name only metrics a node serves: every metric named by the alert rules,
//! their unit tests, the Grafana dashboards and docs/alerts.md appears in the `/metrics` of a
//! running `oracle run`, and the unit tests' input series carry the labels the node prints.
//!
//! Which words are metric names is one rule rather than a hand-kept list: in those files, every
//! word (a run of ASCII letters, digits and `_`) that starts with `oracle_` or `libp2p_`, the
//! prefixes under which the node registers every metric, and goes on after it. PromQL's
//! functions and keywords, label names, alert names, flags and Prometheus's own series (`up`)
//! never start so. Prose is held to the same rule, so that no description sends an operator to a
//! metric that does not exist.
//!
//! Only sample lines count here: every metric is described (`# HELP`, `# TYPE`) from the start,
//! but a labelled family has no series until it counts, and the rules match series with their
//! labels. So the node is made to produce one of each:
//! its first flush meets a locked `prices` table (failed statements, then its verified price
//! dropped unstored); a second node with another price and an extra pair sends it a price it
//! refuses to co-sign, and one of a pair it does not sign; a raw libp2p peer sends it garbage
//! until it is cut off; one of its price sources is unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use price_oracle::testkit::{Peer, mock_exchange};
use sea_orm::{ConnectionTrait, TransactionTrait};
use yaml_rust2::YamlLoader;

use crate::common::oracle::command as oracle;

/// The prefixes of every metric the node registers: its own and libp2p's.
const PREFIXES: [&str; 2] = ["oracle_", "libp2p_"];

/// EXPECTED SOON: metrics the alerts and the dashboard use that the node does not serve yet.
/// The main line adds them under exactly these names; remove each one here when it lands. The
/// test fails while a listed name is served, or no longer used, so the list cannot go stale.
const EXPECTED_SOON: [&str; 0] = [];

/// The unit tests of the alert rules, whose input series stand for the node's.
const RULE_TESTS: &str = "deploy/prometheus/alerts.test.yml";

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// How long each step may take: a debug build, on a machine other tests share.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// Every metric name in the monitoring files (the rules, their tests, the alerts' documentation
/// and every dashboard), with the files that name it.
fn named_metrics() -> BTreeMap<String, Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["deploy/prometheus/alerts.yml", RULE_TESTS, "docs/alerts.md"]
        .iter()
        .map(|file| root.join(file))
        .collect();
    for entry in std::fs::read_dir(root.join("deploy/grafana")).expect("deploy/grafana") {
        let path = entry.expect("deploy/grafana entry").path();
        if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let short = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).unwrap_or_else(|err| panic!("{short}: {err}"));
        for name in metric_names(&text) {
            named.entry(name).or_default().push(short.clone());
        }
    }
    named
}

/// The metric names in `text`, by the rule in the module docs.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            PREFIXES
                .iter()
                .any(|prefix| word.len() > prefix.len() && word.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

/// `name{a="x", b="y"}` (or a bare `name`) → the name and its label names. The values here hold
/// no quotes, which keeps the parsing simple.
fn parse_series(series: &str) -> (String, BTreeSet<String>) {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let mut rest = labels
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("{series}: no closing brace"));
    let mut names = BTreeSet::new();
    while let Some((key, after)) = rest.split_once("=\"") {
        let (_value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("{series}: unterminated value"));
        names.insert(key.trim_start_matches([',', ' ']).to_owned());
        rest = after;
    }
    (name.trim().to_owned(), names)
}

/// Every series name in a scrape, with the label-name sets it is printed with.
fn served(scrape: &str) -> BTreeMap<String, BTreeSet<BTreeSet<String>>> {
    let mut served: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for line in scrape.lines().filter(|line| !line.starts_with('#')) {
        // The value follows the last space (label values may hold spaces: kind="flush insert").
        if let Some((series, _value)) = line.rsplit_once(' ') {
            let (name, labels) = parse_series(series);
            served.entry(name).or_default().insert(labels);
        }
    }
    served
}

/// The input series of the rules' unit tests.
fn rule_test_series() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(RULE_TESTS);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{RULE_TESTS}: {err}"));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|err| panic!("{RULE_TESTS}: {err}"));
    docs[0]["tests"]
        .as_vec()
        .expect("tests")
        .iter()
        .flat_map(|test| test["input_series"].as_vec().expect("input_series"))
        .map(|input| input["series"].as_str().expect("series").to_owned())
        .collect()
}

/// A free TCP port on 127.0.0.1 (free when asked; the node binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Runs an `oracle` command to success; its standard output.
fn oracle_ok(dir: &Path, args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = oracle(dir).args(args).output().expect("oracle runs");
    assert!(
        status.success(),
        "oracle {args:?} failed: {}",
        String::from_utf8_lossy(&stderr)
    );
    String::from_utf8_lossy(&stdout).into_owned()
}

/// An `oracle run` process, killed when dropped; the end of its log is shown if the test failed.
struct Node {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Runs node `name` (key `dir/keys/<name>.priv`) with these flags and values.
    fn start(dir: &Path, name: &'static str, flags: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = oracle(dir)
            .args(["run", "--name", name, "--key-dir", "keys"])
            .args(flags.iter().flat_map(|(flag, value)| [flag, value]))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("oracle run starts");
        Self { name, child, log }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- the end of {}'s log ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The node's /metrics; empty while it does not answer (not started yet).
async fn scrape(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Scrapes `url` until `ready` holds for the scrape, and returns it; after [`STEP_LIMIT`], the
/// last scrape as the error.
async fn scrape_until(url: &str, ready: impl Fn(&str) -> bool) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let text = scrape(url).await;
        if ready(&text) {
            return Ok(text);
        }
        if started.elapsed() > STEP_LIMIT {
            return Err(text);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A libp2p peer that sends `node` garbage until the node cuts it off, as its metrics show.
async fn send_garbage_until_cut_off(node: &Multiaddr, metrics_url: &str) {
    let (
        Peer {
            mut handle, task, ..
        },
        _,
    ) = Peer::start(9, vec![node.clone()]).await;
    let peer = &mut handle;
    peer.wait_for_peers(1).await;
    // publish_raw sends once, without retry, and what goes out before the node's subscription
    // has arrived is lost: so a new message (gossipsub drops repeated bytes) goes out before
    // every scrape.
    let started = Instant::now();
    for attempt in 0.. {
        let body = format!("{{\"type\":\"price\",\"body\":\"garbage {attempt}\"}}");
        peer.publish_raw(body.into_bytes());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let cut_off = "oracle_limit_hits_total{limit=\"refused_per_peer\"}";
        if scrape(metrics_url).await.contains(cut_off) {
            break;
        }
        assert!(
            started.elapsed() < STEP_LIMIT,
            "the node never cut off a peer sending garbage"
        );
    }
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_monitoring_files_name_is_served_by_a_node() {
    let named = named_metrics();
    for soon in EXPECTED_SOON {
        assert!(
            named.contains_key(soon),
            "{soon} is in EXPECTED_SOON but no monitoring file names it: remove it from the list"
        );
    }

    let db = price_oracle::testkit::TestDb::create("monitoring").await;
    let db_url = db.url.as_str();
    let quotes = mock_exchange("3000").await;
    // Twice the price: node1 refuses to co-sign node2's prices, and binance's quotes are
    // outliers among node1's sources.
    let far = mock_exchange("6000").await;
    let (quotes_url, far_url) = (quotes.base_url(), far.base_url());
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let created = oracle_ok(dir, &["keygen", "--name", "node1", "--key-dir", "keys"]);
    let peer_id = created
        .lines()
        .find_map(|line| line.strip_prefix("peer id"))
        .expect("keygen prints the peer id")
        .trim()
        .to_owned();
    oracle_ok(dir, &["keygen", "--name", "node2", "--key-dir", "keys"]);
    // Two members that never run: with node2 the network has four members, f = 1, so node1 is on
    // the committee of node2's rounds; before node2, three (f = 0), so node1's rounds verify on
    // its own observation.
    for idle in ["idle1", "idle2"] {
        oracle_ok(dir, &["keygen", "--name", idle, "--key-dir", "keys"]);
    }
    oracle_ok(dir, &["migrate", "--database-url", db_url]);
    let add_member = |name: &str| {
        oracle_ok(
            dir,
            &[
                "signers",
                "add",
                "--key",
                name,
                "--key-dir",
                "keys",
                "--database-url",
                db_url,
            ],
        )
    };
    for member in ["node1", "idle1", "idle2"] {
        add_member(member);
    }

    // Until the rollback below, node1's flushes wait for this lock until --db-timeout, again and
    // again, and its verified price is dropped after --retention.
    let admin = db.connect().await;
    let lock = admin.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE prices IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let metrics_url = format!("http://{http}/metrics");
    let node1 = Node::start(
        dir,
        "node1",
        &[
            ("--listen", &listen),
            ("--http", &http),
            ("--database-url", db_url),
            ("--migrate", "false"),
            ("--min-peers", "0"),
            ("--flush-delay", "1s"),
            // The idle members may rank ahead of node1 to start a round: short turns; and a
            // heartbeat round every few seconds, so that one is stored once the lock is gone.
            ("--observe-interval", "2s"),
            ("--heartbeat", "10s"),
            ("--max-age", "10s"),
            ("--retention", "10s"),
            ("--db-timeout", "1s"),
            // node1 stays the writer: it stores node2's prices.
            ("--writer-term", "1h"),
            ("--max-refused-per-peer", "1"),
            ("--source-retries", "0"),
            ("--sources", "coinbase,coingecko,kraken,binance"),
            ("--source-base-url", &quotes_url),
            ("--binance-url", &far_url),
            ("--kraken-url", "http://127.0.0.1:1"),
        ],
    );
    scrape_until(&metrics_url, |m| {
        m.contains("oracle_db_failures_total{")
            && m.contains("oracle_prices_expired_total{kind=\"verified\"}")
    })
    .await
    .expect("node1 fails to flush, then drops its verified price");
    lock.rollback().await.unwrap();
    // With three members (f = 0) node1's own rounds verify alone: one is stored, and counted
    // for its committee, before node2 joins and makes f = 1.
    scrape_until(&metrics_url, |m| m.contains("oracle_member_rounds_total{"))
        .await
        .expect("node1 stores a round of its own once the lock is gone");

    add_member("node2");
    scrape_until(&metrics_url, |m| {
        m.lines().any(|line| line == "oracle_members 4")
    })
    .await
    .expect("node1 counts node2 as a member");
    let node1_addr: Multiaddr = format!("{listen}/p2p/{peer_id}").parse().unwrap();
    let node2 = Node::start(
        dir,
        "node2",
        &[
            ("--listen", "/ip4/127.0.0.1/tcp/0"),
            ("--bootstrap", &node1_addr.to_string()),
            ("--database-url", db_url),
            ("--migrate", "false"),
            ("--min-peers", "1"),
            ("--pairs", "ETH/USD,BTC/USD"),
            // The idle members may rank ahead of node2 to start a round: short turns.
            ("--observe-interval", "2s"),
            ("--source-base-url", &far_url),
        ],
    );
    send_garbage_until_cut_off(&node1_addr, &metrics_url).await;

    let wanted: BTreeSet<&str> = named
        .keys()
        .map(String::as_str)
        .filter(|name| !EXPECTED_SOON.contains(name))
        .collect();
    let scrape = scrape_until(&metrics_url, |m| {
        let served = served(m);
        wanted.iter().all(|name| served.contains_key(*name))
    })
    .await
    .unwrap_or_else(|last| last);
    let served = served(&scrape);
    let missing: Vec<String> = wanted
        .iter()
        .filter(|name| !served.contains_key(**name))
        .map(|name| format!("{name} (in {})", named[*name].join(", ")))
        .collect();
    assert!(
        missing.is_empty(),
        "not served by the node: {missing:#?}\nserved: {:#?}",
        served.keys().collect::<Vec<_>>()
    );
    for soon in EXPECTED_SOON {
        assert!(
            !served.contains_key(soon),
            "{soon} is served now: remove it from EXPECTED_SOON"
        );
    }
    for series in rule_test_series() {
        let (name, mut labels) = parse_series(&series);
        let Some(printed) = served.get(&name) else {
            continue;
        };
        for label in TARGET_LABELS {
            labels.remove(label);
        }
        assert!(
            printed.contains(&labels),
            "{RULE_TESTS}: {series} has labels {labels:?}; the node prints {name} with {printed:?}"
        );
    }
    drop((node1, node2));
}
