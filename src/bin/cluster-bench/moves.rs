//! The freshness benchmark (`--moves M`): the nodes run on their own triggers (observing every
//! `--observe-interval`, a round on a 0.5 % move or at the `--heartbeat`), two of them serve
//! the API, and two clients follow their Server-Sent Events streams.
//!
//! 1. A flat market for `--flat`: the rounds the network starts, per hour and per heartbeat.
//! 2. M moves of the mock market by 2 % (up to 3060, back to 3000, …), one every four to five
//!    observe intervals (at a random phase of the nodes' observations): for each, the time from the move to the first `verified` event that reflects
//!    it at a client whose node did not start the round, the time to its stored `price` event,
//!    and the rounds the network started for it.

use std::time::{Duration, Instant};

use alloy_primitives::Address;
use anyhow::Context;
use clap::Args as ClapArgs;
use price_oracle::config::parse_duration;
use price_oracle::node::RunningNode;
use price_oracle::price::UsdPrice;
use price_oracle::testkit::{SseEvent, SseReader, TestDb};
use price_oracle::trigger::Reason;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Args, Network, Percentiles, mean, percentiles, start_network, stop, wait_rows};

/// How the freshness benchmark runs.
#[derive(Debug, ClapArgs)]
pub struct MoveArgs {
    /// Measure freshness instead of the price phase: move the mock market by 2 % this many
    /// times.
    #[arg(long, default_value_t = 0)]
    pub moves: usize,
    /// How often the nodes observe (a node's default is 15 s; the latency to a verified price
    /// scales with it).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub observe_interval: Duration,
    /// The nodes' heartbeat: the flat market's rounds come at this rate (a node's default is
    /// 10 min, too slow to count in a benchmark).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// How long the flat market is watched.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub flat: Duration,
    /// The nodes' flush delay (a node's default).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub flush_delay: Duration,
}

/// One network size's freshness.
#[derive(Debug, Serialize)]
pub struct MoveResults {
    nodes: usize,
    moves: usize,
    observe_interval_s: f64,
    /// Move → first `verified` event reflecting it, at a client of a node that did not start
    /// the round.
    verified_ms: Percentiles,
    /// Move → its round's stored `price` event.
    stored_ms: Percentiles,
    /// Moves no client saw verified in time.
    missed: usize,
    rounds_per_move: f64,
    most_rounds_per_move: u64,
    heartbeat_s: f64,
    flat_rounds: u64,
    flat_rounds_per_hour: f64,
    /// Flat rounds per heartbeat period: 1 is one round per pair per heartbeat.
    flat_rounds_per_heartbeat: f64,
}

/// The two prices the market moves between: 2 % apart.
const LOW: &str = "3000";
const HIGH: &str = "3060";
/// Nodes whose API the clients follow: whichever starts a round, one of them did not.
const CLIENTS: usize = 2;

pub async fn run(args: &Args) -> anyhow::Result<Vec<MoveResults>> {
    let mut all = Vec::new();
    print_header();
    for &n in &args.nodes {
        let database = TestDb::create_on(&args.database_url, &format!("bench_moves_{n}")).await?;
        let results = measure(n, args, &database.url)
            .await
            .with_context(|| format!("network of {n} nodes"))?;
        print_row(&results);
        all.push(results);
    }
    Ok(all)
}

/// A move, and what became of it.
struct Move {
    at: Instant,
    target: UsdPrice,
    /// The round that reflected it, and when a client of another node had it verified.
    verified: Option<(String, Duration)>,
    stored: Option<Duration>,
    rounds: u64,
}

async fn measure(n: usize, args: &Args, db_url: &str) -> anyhow::Result<MoveResults> {
    let settings = &args.moves;
    let network = start_network(n, args, db_url, |i, node| {
        node.trigger.observe_interval = settings.observe_interval;
        // The node's default: two observe intervals.
        node.trigger.progress_timeout = settings.observe_interval.saturating_mul(2);
        node.trigger.heartbeat = settings.heartbeat;
        node.pool.flush_delay = settings.flush_delay;
        if i < CLIENTS {
            node.http = Some(([127, 0, 0, 1], 0).into());
        }
    })
    .await?;
    let deadline = Instant::now() + args.timeout;
    // A new network's first round is a heartbeat round: no value yet.
    wait_rows(&network, 1, deadline).await?;

    let flat_before = rounds(&network.nodes, Reason::Heartbeat);
    tokio::time::sleep(settings.flat).await;
    let flat_rounds = rounds(&network.nodes, Reason::Heartbeat) - flat_before;
    let flat_hours = settings.flat.as_secs_f64() / 3600.0;

    let mut events = follow(&network).await?;
    let spacing = settings.observe_interval * 4;
    let mut moves: Vec<Move> = Vec::new();
    for k in 0..settings.moves {
        let target = UsdPrice::parse_quote(if k % 2 == 0 { HIGH } else { LOW })?;
        let before = rounds(&network.nodes, Reason::Deviation);
        network.exchange.set_price(target);
        moves.push(Move {
            at: Instant::now(),
            target,
            verified: None,
            stored: None,
            rounds: 0,
        });
        // A random part, so that the moves fall at every phase of the nodes' observations.
        let jitter = settings.observe_interval.mul_f64(rand::random::<f64>());
        let until = Instant::now() + spacing + jitter;
        while let Ok(Some((client, event))) =
            tokio::time::timeout_at(until.into(), events.recv()).await
        {
            record(&mut moves, &network.members[client], event);
        }
        if let Some(current) = moves.last_mut() {
            current.rounds = rounds(&network.nodes, Reason::Deviation) - before;
        }
    }
    // The last rounds wait out their flush delay.
    let until = Instant::now() + settings.flush_delay + Duration::from_secs(10);
    while moves
        .iter()
        .any(|m| m.verified.is_some() && m.stored.is_none())
    {
        match tokio::time::timeout_at(until.into(), events.recv()).await {
            Ok(Some((client, event))) => record(&mut moves, &network.members[client], event),
            _ => break,
        }
    }
    stop(network).await?;

    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut verified: Vec<f64> = moves
        .iter()
        .filter_map(|m| m.verified.as_ref().map(|(_, at)| millis(*at)))
        .collect();
    let mut stored: Vec<f64> = moves.iter().filter_map(|m| m.stored.map(millis)).collect();
    let per_move: Vec<f64> = moves.iter().map(|m| m.rounds as f64).collect();
    Ok(MoveResults {
        nodes: n,
        moves: moves.len(),
        observe_interval_s: settings.observe_interval.as_secs_f64(),
        missed: moves.len() - verified.len(),
        verified_ms: percentiles(&mut verified),
        stored_ms: percentiles(&mut stored),
        rounds_per_move: mean(&per_move),
        most_rounds_per_move: moves.iter().map(|m| m.rounds).max().unwrap_or(0),
        heartbeat_s: settings.heartbeat.as_secs_f64(),
        flat_rounds,
        flat_rounds_per_hour: flat_rounds as f64 / flat_hours,
        flat_rounds_per_heartbeat: flat_rounds as f64
            / (settings.flat.as_secs_f64() / settings.heartbeat.as_secs_f64()),
    })
}

/// Reads the streams of the first [`CLIENTS`] nodes in the background: each event with the
/// index of the node it came from.
async fn follow(network: &Network) -> anyhow::Result<mpsc::UnboundedReceiver<(usize, SseEvent)>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    for (client, node) in network.nodes.iter().take(CLIENTS).enumerate() {
        let addr = node.http_addr.context("the node serves no API")?;
        let mut stream = SseReader::open(&format!("http://{addr}/v1/prices/stream")).await;
        let sender = sender.clone();
        tokio::spawn(async move {
            while let Some(event) = stream.next_event().await {
                if sender.send((client, event)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(receiver)
}

/// Files an event under the move it reflects: a `verified` one (from a node that did not
/// start the round) under the newest move whose price it shows, a stored one under the move
/// whose round it is.
fn record(moves: &mut [Move], node: &Address, event: SseEvent) {
    let id = event.data["id"].as_str().unwrap_or_default().to_owned();
    match event.event.as_str() {
        "verified" => {
            let origin: Option<Address> =
                event.data["origin"].as_str().and_then(|o| o.parse().ok());
            let price = event.data["price"]
                .as_str()
                .and_then(|p| UsdPrice::parse_quote(p).ok());
            let Some(current) = moves.last_mut() else {
                return;
            };
            // Within a quarter of the move: the new market, not the old one.
            let reflects =
                price.is_some_and(|p| p.relative_deviation(current.target) < Decimal::new(5, 3));
            if reflects && origin.as_ref() != Some(node) && current.verified.is_none() {
                current.verified = Some((id, event.at.duration_since(current.at)));
            }
        }
        "price" => {
            if let Some(found) = moves.iter_mut().find(|m| {
                m.stored.is_none() && m.verified.as_ref().is_some_and(|(round, _)| *round == id)
            }) {
                found.stored = Some(event.at.duration_since(found.at));
            }
        }
        _ => {}
    }
}

/// Rounds started for `reason` over every node, every pair.
fn rounds(nodes: &[RunningNode], reason: Reason) -> u64 {
    let prefix = "oracle_rounds_started_total{";
    let label = format!("trigger=\"{}\"", reason.as_str());
    nodes
        .iter()
        .map(|node| {
            node.metrics_text()
                .lines()
                .filter(|line| line.starts_with(prefix) && line.contains(&label))
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64
        })
        .sum()
}

fn print_header() {
    println!(
        "{:>5} {:>5} {:>6} | {:>9} {:>9} {:>9} {:>6} | {:>9} {:>9} | {:>7} {:>6} | {:>5} {:>7} {:>8}",
        "nodes",
        "moves",
        "obs s",
        "ver p50ms",
        "ver p99ms",
        "ver maxms",
        "missed",
        "sto p50ms",
        "sto p99ms",
        "rnd/mv",
        "max",
        "hb s",
        "flat/h",
        "flat/hb"
    );
}

fn print_row(r: &MoveResults) {
    println!(
        "{:>5} {:>5} {:>6.1} | {:>9.0} {:>9.0} {:>9.0} {:>6} | {:>9.0} {:>9.0} | {:>7.2} {:>6} | {:>5.0} {:>7.0} {:>8.2}",
        r.nodes,
        r.moves,
        r.observe_interval_s,
        r.verified_ms.p50,
        r.verified_ms.p99,
        r.verified_ms.max,
        r.missed,
        r.stored_ms.p50,
        r.stored_ms.p99,
        r.rounds_per_move,
        r.most_rounds_per_move,
        r.heartbeat_s,
        r.flat_rounds_per_hour,
        r.flat_rounds_per_heartbeat
    );
}
