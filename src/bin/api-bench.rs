//! `api-bench`: the consumers' read path of a running network, measured. `scripts/api-bench.sh`
//! starts a 5-node network (`run_nodes.sh`, mock exchange) and runs it; see
//! docs/performance.md#the-read-api-api-bench.
//!
//! In one go against one node: the HTTP ceiling (`/health`, a trivial route of the same
//! server), `/v1/prices/latest` and a 100-row history page, each with `wrk`; then the history
//! page again while a second `wrk` floods `latest` on the same node (both figures printed), the
//! page asked for as JSON and, as clients that accept it do, gzip; then `--subscribers`
//! Server-Sent Events clients, idle (the node's memory per subscriber) and then receiving the
//! next `--events` stored prices (the time from each commit, seen by this program's own
//! `LISTEN`, to each subscriber). Throughout: the network's co-sign latency (the mean of every
//! node's `quorum_seconds`) calm and under the load, and whether every round started was stored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use price_oracle::config::parse_duration;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

/// Measure a running node's read API under load.
#[derive(Debug, Parser)]
struct Args {
    /// The node under load.
    #[arg(long, default_value = "http://127.0.0.1:9100")]
    url: String,
    /// Every node's HTTP address, for the network's co-sign latency and rounds started.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9100,http://127.0.0.1:9101,http://127.0.0.1:9102,http://127.0.0.1:9103,http://127.0.0.1:9104"
    )]
    nodes: Vec<String>,
    /// The network's database: history rows are added to it, and its commits are timed.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The node's process id, for its memory per subscriber.
    #[arg(long)]
    pid: Option<u32>,
    /// Server-Sent Events subscribers.
    #[arg(long, default_value_t = 5_000)]
    subscribers: usize,
    /// Stored prices every subscriber must receive.
    #[arg(long, default_value_t = 3)]
    events: usize,
    /// wrk's connections.
    #[arg(long, default_value_t = 128)]
    connections: u32,
    /// Each wrk run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// The calm window before the load, for the co-sign latency without it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    calm: Duration,
    /// How long stored rounds may take to appear (flush delay and margin).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    settle: Duration,
    /// The nodes' log files (run_nodes.sh writes them): the rounds started during the run are
    /// read from them, each then looked up among the stored rows.
    #[arg(long, default_value = "logs")]
    logs: PathBuf,
    /// Also write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Load {
    route: String,
    /// Bytes per response, headers included (wrk's transfer over its requests).
    bytes_per_response: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// The network's mean co-sign latency while it ran.
    cosign_ms: f64,
}

/// The history page while `latest` is flooded on the same node.
#[derive(Debug, Serialize)]
struct Flooded {
    history: Load,
    latest: Load,
}

#[derive(Debug, Default, Serialize)]
struct FanOut {
    subscribers: usize,
    connected: usize,
    events: usize,
    received_all: usize,
    dropped: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    rss_before_kib: u64,
    rss_idle_kib: u64,
    kib_per_subscriber: f64,
}

#[derive(Debug, Serialize)]
struct Results {
    ceiling: Load,
    latest: Load,
    history: Load,
    history_random: Load,
    /// Two wrk at once on the same node: the history page, and `latest` flooding.
    flooded: Vec<Flooded>,
    latest_share_of_ceiling: f64,
    fan_out: FanOut,
    fan_out_cosign_ms: f64,
    cosign_calm_ms: f64,
    cosign_load_ms: f64,
    rounds_started: u64,
    rounds_stored: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(args.subscribers as u64 + 1_024);
    let client = reqwest::Client::new();
    let db = PgPoolOptions::new()
        .max_connections(2)
        .connect(&args.database_url)
        .await
        .context("cannot reach the database")?;

    eprintln!("waiting for a stored price …");
    wait_for_latest(&client, &args.url).await?;
    seed_history(&db).await?;
    let log_marks = log_ends(&args.logs)?;

    eprintln!("calm: {:?} …", args.calm);
    let calm_from = quorum(&client, &args.nodes).await;
    tokio::time::sleep(args.calm).await;
    let calm_to = quorum(&client, &args.nodes).await;

    let (max_seq,): (i64,) = sea_orm::sqlx::query_as("SELECT coalesce(max(seq), 0) FROM prices")
        .fetch_one(&db)
        .await?;
    let random_pages = random_cursor_script(max_seq.saturating_sub(100).max(1))?;
    let mut loads = Vec::new();
    for (route, script) in [
        ("/health", None),
        ("/v1/prices/latest", None),
        (HISTORY, None),
        (
            "/v1/prices?limit=100&after=<random>",
            Some(random_pages.as_path()),
        ),
    ] {
        let before = quorum(&client, &args.nodes).await;
        let mut load = Wrk::start(&args, route, script, &[])?.finish()?;
        load.cosign_ms = mean_ms(before, quorum(&client, &args.nodes).await);
        loads.push(load);
    }
    let mut flooded = Vec::new();
    for headers in [&[][..], &[GZIP][..]] {
        let before = quorum(&client, &args.nodes).await;
        let flood = Wrk::start(&args, "/v1/prices/latest", None, &[])?;
        let history = Wrk::start(&args, HISTORY, None, headers)?;
        let (mut history, mut latest) = (history.finish()?, flood.finish()?);
        let cosign_ms = mean_ms(before, quorum(&client, &args.nodes).await);
        (history.cosign_ms, latest.cosign_ms) = (cosign_ms, cosign_ms);
        flooded.push(Flooded { history, latest });
    }
    let before = quorum(&client, &args.nodes).await;
    let fan_out = fan_out(&args, &db).await?;
    let fan_out_cosign_ms = mean_ms(before, quorum(&client, &args.nodes).await);
    let load_to = quorum(&client, &args.nodes).await;
    let started = rounds_started_since(&log_marks)?;

    eprintln!(
        "waiting {:?} for the last rounds to be stored …",
        args.settle
    );
    tokio::time::sleep(args.settle).await;
    let rounds_stored = stored_of(&db, &started).await?;
    let rounds_started = started.len() as u64;

    let [ceiling, latest, history, history_random] =
        <[Load; 4]>::try_from(loads).map_err(|_| anyhow::anyhow!("four loads were run"))?;
    let results = Results {
        latest_share_of_ceiling: latest.requests_per_second / ceiling.requests_per_second,
        ceiling,
        latest,
        history,
        history_random,
        flooded,
        fan_out,
        fan_out_cosign_ms,
        cosign_calm_ms: mean_ms(calm_from, calm_to),
        cosign_load_ms: mean_ms(calm_to, load_to),
        rounds_started,
        rounds_stored,
    };
    print(&args, &results);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn wait_for_latest(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let answer = client.get(format!("{url}/v1/prices/latest")).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no stored price at {url} within 5 minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Enough history for a full page: copies of the oldest row under older ids, each signature
/// replaced by distinct bytes (well-formed: r and a low s, v = 27), so that a page is as varied
/// — and compresses as little — as real history, where every signature differs. (The copies'
/// signatures do not match their digests. Since the nodes judge every row before serving it,
/// they refuse these copies: history pages then come back nearly empty, so measure history again
/// only once the copies are signed with the members' keys.)
async fn seed_history(db: &sea_orm::sqlx::PgPool) -> anyhow::Result<()> {
    let (rows,): (i64,) = sea_orm::sqlx::query_as("SELECT count(*) FROM prices")
        .fetch_one(db)
        .await?;
    if rows >= 1_000 {
        return Ok(());
    }
    sea_orm::sqlx::query(
        "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, signer_count, \
         lastsigned_time, written_by, spread, first_observed_at, last_observed_at) \
         SELECT p.id - g * 1000, p.pair, p.price, p.observed_at - g * interval '1 second', \
         p.first_signer, \
         (SELECT jsonb_agg(jsonb_set(e, '{signature}', to_jsonb( \
             '0x1' || substr(encode(sha512(convert_to(g || e::text || 'r', 'UTF8')), 'hex'), 1, 63) \
             || '0' || substr(encode(sha512(convert_to(g || e::text || 's', 'UTF8')), 'hex'), 1, 63) \
             || '1b')) ORDER BY n) FROM jsonb_array_elements(p.sign_data) WITH ORDINALITY x(e, n)), \
         p.signer_count, p.lastsigned_time, p.written_by, p.spread, \
         p.first_observed_at, p.last_observed_at \
         FROM (SELECT * FROM prices ORDER BY seq LIMIT 1) p, generate_series(1, 1000) g \
         ON CONFLICT DO NOTHING",
    )
    .execute(db)
    .await
    .context("cannot add history rows")?;
    Ok(())
}

/// Every node's `quorum_seconds` sum and count, added up.
async fn quorum(client: &reqwest::Client, nodes: &[String]) -> (f64, f64) {
    let sum = sum_metric_f64(client, nodes, "oracle_quorum_seconds_sum").await;
    let count = sum_metric_f64(client, nodes, "oracle_quorum_seconds_count").await;
    (sum, count)
}

fn mean_ms(from: (f64, f64), to: (f64, f64)) -> f64 {
    let count = to.1 - from.1;
    if count <= 0.0 {
        return f64::NAN;
    }
    (to.0 - from.0) / count * 1_000.0
}

/// A metric added up over the nodes and its label sets; a node that does not answer counts 0.
async fn sum_metric_f64(client: &reqwest::Client, nodes: &[String], name: &str) -> f64 {
    let mut total = 0.0;
    for node in nodes {
        let Ok(response) = client.get(format!("{node}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        total += text
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

/// The history page every client polling the first page asks for.
const HISTORY: &str = "/v1/prices?limit=100";
/// What a client that takes gzip sends (browsers, `curl --compressed`, most HTTP libraries).
const GZIP: &str = "Accept-Encoding: gzip";

/// A `wrk` run against one route of the node (or the paths `script` makes), started.
struct Wrk {
    route: String,
    child: std::process::Child,
}

impl Wrk {
    fn start(
        args: &Args,
        route: &str,
        script: Option<&std::path::Path>,
        headers: &[&str],
    ) -> anyhow::Result<Self> {
        let label = match headers {
            [] => route.to_owned(),
            _ => format!("{route} ({})", headers.join(", ")),
        };
        eprintln!("wrk {label} …");
        let mut command = Command::new("wrk");
        command.args([
            "-t2",
            &format!("-c{}", args.connections),
            &format!("-d{}s", args.duration.as_secs().max(1)),
            "--latency",
        ]);
        for header in headers {
            command.arg("-H").arg(header);
        }
        match script {
            Some(script) => command.arg("-s").arg(script).arg(&args.url),
            None => command.arg(format!("{}{route}", args.url)),
        };
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run wrk (apt-get install wrk)")?;
        Ok(Self {
            route: label,
            child,
        })
    }

    /// Waits for it and reads what it printed.
    fn finish(self) -> anyhow::Result<Load> {
        let output = self
            .child
            .wait_with_output()
            .context("wrk did not finish")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let field = |prefix: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix(prefix))
                .map(str::trim)
        };
        // "123456 requests in 10.00s, 1.23GB read"
        let (requests, read) = text
            .lines()
            .find_map(|line| {
                let (requests, rest) = line.trim().split_once(" requests in ")?;
                let read = rest.split(", ").nth(1)?.strip_suffix(" read")?;
                Some((requests.parse::<f64>().ok()?, bytes(read)?))
            })
            .unwrap_or((f64::NAN, f64::NAN));
        Ok(Load {
            route: self.route,
            bytes_per_response: read / requests,
            requests_per_second: field("Requests/sec:")
                .and_then(|value| value.parse().ok())
                .context("wrk printed no Requests/sec")?,
            p50_ms: field("50%").and_then(millis).unwrap_or(f64::NAN),
            p99_ms: field("99%").and_then(millis).unwrap_or(f64::NAN),
            errors: field("Non-2xx or 3xx responses:")
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            cosign_ms: f64::NAN,
        })
    }
}

/// wrk's `1.23GB`, `456.78MB`, `12.00KB`, `512B` in bytes.
fn bytes(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * scale)
}

/// A wrk script asking for 100-row pages after random cursors below `max_after`: pages that
/// differ, as a client scanning history would ask.
fn random_cursor_script(max_after: i64) -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("api-bench-{}.lua", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "math.randomseed(os.time())\nrequest = function()\n  return wrk.format(nil, \"/v1/prices?limit=100&after=\" .. math.random(0, {max_after}))\nend\n"
        ),
    )?;
    Ok(path)
}

/// wrk's `1.23ms`, `456.00us`, `1.02s` in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1_000.0),
        "ms" => Some(number),
        "s" => Some(number * 1_000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}

/// What one subscriber saw: each price's `seq` and when it arrived.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(i64, Instant)>,
    dropped: bool,
}

async fn fan_out(args: &Args, db: &sea_orm::sqlx::PgPool) -> anyhow::Result<FanOut> {
    eprintln!("{} subscribers …", args.subscribers);
    let addr: SocketAddr = args
        .url
        .trim_start_matches("http://")
        .parse()
        .context("--url must be http://IP:PORT")?;
    let rss_before_kib = args.pid.map_or(0, rss_kib);
    let mut listener = PgListener::connect_with(db).await?;
    listener.listen("prices_stored").await?;

    let stop = CancellationToken::new();
    let connected = Arc::new(Semaphore::new(0));
    let connecting = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let (connected, connecting, stop) = (
            Arc::clone(&connected),
            Arc::clone(&connecting),
            stop.clone(),
        );
        let events = args.events;
        tasks.push(tokio::spawn(async move {
            subscribe(addr, events, &connected, &connecting, &stop).await
        }));
    }
    // Everyone connected (or failed), then idle for a moment: the node's memory at rest.
    let all = u32::try_from(args.subscribers).unwrap_or(u32::MAX);
    let ready = tokio::time::timeout(Duration::from_secs(120), connected.acquire_many(all)).await;
    let connected_count = if ready.is_ok() {
        args.subscribers
    } else {
        connected.available_permits()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = args.pid.map_or(0, rss_kib);

    // Commits from now on, as this program's own listener sees them.
    let commits = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let watching = tokio::spawn({
        let commits = Arc::clone(&commits);
        let stop = stop.clone();
        async move {
            while let Some(Ok(_)) = stop.run_until_cancelled(listener.recv()).await {
                commits.lock().await.push(Instant::now());
            }
        }
    });
    let deadline = tokio::time::sleep(Duration::from_secs(120));
    tokio::pin!(deadline);
    let mut seen = Vec::with_capacity(tasks.len());
    for task in tasks {
        tokio::select! {
            result = task => seen.push(result.unwrap_or_default()),
            () = &mut deadline => { stop.cancel(); }
        }
    }
    stop.cancel();
    let _ = watching.await;
    let commits = commits.lock().await.clone();

    // Each price's commit: the last one seen before its first arrival anywhere.
    let mut latencies = Vec::new();
    let first_arrival = |seq: i64| {
        seen.iter()
            .flat_map(|subscriber| &subscriber.arrivals)
            .filter(|(arrived, _)| *arrived == seq)
            .map(|(_, at)| *at)
            .min()
    };
    let mut seqs: Vec<i64> = seen
        .iter()
        .flat_map(|subscriber| subscriber.arrivals.iter().map(|(seq, _)| *seq))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    for seq in &seqs {
        let Some(first) = first_arrival(*seq) else {
            continue;
        };
        let Some(commit) = commits.iter().filter(|at| **at <= first).max() else {
            continue;
        };
        for subscriber in &seen {
            for (arrived, at) in &subscriber.arrivals {
                if arrived == seq {
                    latencies.push(at.duration_since(*commit).as_secs_f64() * 1_000.0);
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let subscribers = args.subscribers;
    Ok(FanOut {
        subscribers,
        connected: connected_count,
        events: args.events,
        received_all: seen
            .iter()
            .filter(|subscriber| subscriber.arrivals.len() >= args.events)
            .count(),
        dropped: seen.iter().filter(|subscriber| subscriber.dropped).count(),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: quantile(1.0),
        rss_before_kib,
        rss_idle_kib,
        kib_per_subscriber: rss_idle_kib.saturating_sub(rss_before_kib) as f64
            / subscribers.max(1) as f64,
    })
}

/// One subscriber: connects, says so, then records the next `events` prices.
async fn subscribe(
    addr: SocketAddr,
    events: usize,
    connected: &Semaphore,
    connecting: &Semaphore,
    stop: &CancellationToken,
) -> Seen {
    let mut seen = Seen::default();
    let reader = {
        let _turn = connecting.acquire().await;
        open_stream(addr).await
    };
    connected.add_permits(1);
    let Ok(mut reader) = reader else {
        return seen;
    };
    let mut line = String::new();
    while seen.arrivals.len() < events {
        line.clear();
        match stop.run_until_cancelled(reader.read_line(&mut line)).await {
            Some(Ok(read)) if read > 0 => {}
            _ => break,
        }
        if let Some(seq) = line.trim_end().strip_prefix("id: ") {
            if let Ok(seq) = seq.parse() {
                seen.arrivals.push((seq, Instant::now()));
            }
        } else if line.starts_with("event: dropped") {
            seen.dropped = true;
        }
    }
    seen
}

async fn open_stream(addr: SocketAddr) -> anyhow::Result<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /v1/prices/stream HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.contains(" 200 ") {
        bail!("refused: {}", line.trim_end());
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).await? <= 2 {
            return Ok(reader);
        }
    }
}

/// A process's resident memory.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Each log file's length now.
fn log_ends(dir: &std::path::Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut marks = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "log") {
            marks.push((path.clone(), std::fs::metadata(&path)?.len()));
        }
    }
    Ok(marks)
}

/// The ids of the rounds the nodes logged as started since `marks`.
fn rounds_started_since(marks: &[(PathBuf, u64)]) -> anyhow::Result<Vec<i64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut ids = Vec::new();
    for (path, from) in marks {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(*from))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        ids.extend(text.lines().filter_map(|line| {
            let rest = &line[line.find("originated price ")? + "originated price ".len()..];
            rest.split(':').next()?.parse::<i64>().ok()
        }));
    }
    Ok(ids)
}

/// How many of these rounds are stored.
async fn stored_of(db: &sea_orm::sqlx::PgPool, ids: &[i64]) -> anyhow::Result<u64> {
    let (rows,): (i64,) = sea_orm::sqlx::query_as("SELECT count(*) FROM prices WHERE id = ANY($1)")
        .bind(ids)
        .fetch_one(db)
        .await?;
    Ok(u64::try_from(rows).unwrap_or(0))
}

fn print(args: &Args, results: &Results) {
    println!(
        "node {} · wrk -t2 -c{} -d{}s · {} subscribers",
        args.url,
        args.connections,
        args.duration.as_secs(),
        args.subscribers
    );
    println!(
        "{:<62} {:>9} {:>8} {:>8} {:>9} {:>7} {:>10}",
        "load", "req/s", "p50 ms", "p99 ms", "B/resp", "errors", "co-sign ms"
    );
    let row = |prefix: &str, load: &Load| {
        println!(
            "{:<62} {:>9.0} {:>8.2} {:>8.2} {:>9.0} {:>7} {:>10.1}",
            format!("{prefix}{}", load.route),
            load.requests_per_second,
            load.p50_ms,
            load.p99_ms,
            load.bytes_per_response,
            load.errors,
            load.cosign_ms
        );
    };
    for load in [
        &results.ceiling,
        &results.latest,
        &results.history,
        &results.history_random,
    ] {
        row("", load);
    }
    for flooded in &results.flooded {
        row("at once: ", &flooded.history);
        row("  with:  ", &flooded.latest);
    }
    println!(
        "latest / ceiling: {:.1} %",
        results.latest_share_of_ceiling * 100.0
    );
    let fan = &results.fan_out;
    println!(
        "SSE: {}/{} connected, {} got all {} prices, {} dropped; commit → subscriber p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; co-sign {:.1} ms",
        fan.connected,
        fan.subscribers,
        fan.received_all,
        fan.events,
        fan.dropped,
        fan.p50_ms,
        fan.p99_ms,
        fan.max_ms,
        results.fan_out_cosign_ms
    );
    println!(
        "node RSS {} → {} KiB with the subscribers idle: {:.1} KiB per subscriber",
        fan.rss_before_kib, fan.rss_idle_kib, fan.kib_per_subscriber
    );
    println!(
        "co-sign latency (mean quorum_seconds): calm {:.1} ms, under load {:.1} ms ({:.2}×)",
        results.cosign_calm_ms,
        results.cosign_load_ms,
        results.cosign_load_ms / results.cosign_calm_ms
    );
    println!(
        "rounds started {} · stored {}",
        results.rounds_started, results.rounds_stored
    );
}
