//! When rounds start, over a whole network on 127.0.0.1 with the nodes' own triggers only (no
//! round asked for): a market move starts at most two rounds network-wide and reaches a
//! consumer's stream as a verified price before it is stored; a flat market starts heartbeat
//! rounds only, each pair verified at least once per heartbeat.

use std::time::{Duration, Instant};

use price_oracle::metrics::Metrics;
use price_oracle::node::NodeSettings;
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::testkit::{
    SseEvent, SseReader, TestNode, addresses_of, assert_rows_verify, holds_for, stop_all, total,
    wait_for,
};
use price_oracle::trigger::Reason;
use sea_orm::ConnectionTrait;

use crate::common::cluster::Cluster;

const OBSERVE: Duration = Duration::from_secs(2);

fn rounds(nodes: &[TestNode], reason: Reason) -> u64 {
    total(nodes, |metrics: &Metrics| {
        metrics.round_started(Pair::EthUsd, reason).get()
    })
}

fn all_rounds(nodes: &[TestNode]) -> u64 {
    Reason::ALL
        .iter()
        .map(|reason| rounds(nodes, *reason))
        .sum()
}

/// Each node serves the API too.
fn with_http(settings: &mut NodeSettings) {
    settings.http = Some("127.0.0.1:0".parse().unwrap());
}

/// The streams of the first two nodes: whichever node starts a round, one of them did not.
async fn streams(nodes: &[TestNode]) -> Vec<SseReader> {
    let mut streams = Vec::new();
    for node in &nodes[..2] {
        let addr = node.node.http_addr.expect("the node serves HTTP");
        streams.push(SseReader::open(&format!("http://{addr}/v1/prices/stream")).await);
    }
    streams
}

/// Each client reads its stream, all at once, until it has the stored event of a round at
/// `price`.
async fn follow_move(clients: &mut [SseReader], price: &str) -> Vec<Vec<SseEvent>> {
    futures::future::join_all(clients.iter_mut().map(|client| async move {
        let mut session = Vec::new();
        while let Some(event) = client.next(Duration::from_secs(30)).await {
            let done = event.event == "price" && event.data["price"] == price;
            session.push(event);
            if done {
                break;
            }
        }
        session
    }))
    .await
}

fn print_session(node: &TestNode, session: &[SseEvent], moved: Instant, price: &str) {
    println!(
        "SSE session at {} (market moved to {price} at +0 ms):",
        node.address
    );
    for event in session {
        println!(
            "  +{:>5} ms  event: {:<8} id: {:<4} round {} from {} price {} ({} observations)",
            event.at.duration_since(moved).as_millis(),
            event.event,
            event.id,
            event.data["id"].as_str().unwrap_or_default(),
            event.data["origin"].as_str().unwrap_or_default(),
            event.data["price"].as_str().unwrap_or_default(),
            event.data["observations"].as_array().map_or(0, Vec::len),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_percent_moves_are_streamed_verified_then_stored_each_after_at_most_two_rounds() {
    let cluster = Cluster::new("move").await;
    // Observing every 2 s, a member's last observation before a round is often older than the
    // move that started it: what it signs must be made after.
    let nodes = cluster
        .start_on_triggers(1..=5, |settings| {
            with_http(settings);
            settings.trigger.observe_interval = OBSERVE;
        })
        .await;
    // A new network has no value yet: a heartbeat round starts it.
    cluster.wait_rows(1, Duration::from_secs(90)).await;
    let at_start = all_rounds(&nodes);
    assert!(
        (1..=2).contains(&at_start),
        "{at_start} rounds at start, not one (two at worst)"
    );
    assert_eq!(rounds(&nodes, Reason::Requested), 0);
    // Then nothing: the market is flat and the heartbeat an hour away.
    holds_for("a flat market", Duration::from_secs(4), async || {
        all_rounds(&nodes) == at_start
    })
    .await;

    let mut clients = streams(&nodes).await;
    // Up 2 %, then back, twice: each move its own rounds, judged by observations made after it.
    let mut before = at_start;
    for target in ["3060", "3000", "3060", "3000"] {
        let moved = Instant::now();
        cluster
            .exchange
            .set_price(UsdPrice::parse_quote(target).unwrap());
        let price = format!("{target}.00000000");
        let sessions = follow_move(&mut clients, &price).await;
        for (node, session) in nodes.iter().zip(&sessions) {
            print_session(node, session, moved, &price);
            let verified = session
                .iter()
                .position(|event| event.event == "verified" && event.data["price"] == price)
                .expect("a verified event reflecting the move");
            let stored = session.len() - 1;
            assert!(verified < stored, "verified before stored");
            assert_eq!(session[verified].data["id"], session[stored].data["id"]);
            assert_eq!(session[verified].data["status"], "verified");
            assert_eq!(session[stored].data["status"], "stored");
            // The first-ranked member's next observation, and the others' fresh ones.
            let latency = session[verified].at.duration_since(moved);
            assert!(latency < OBSERVE + Duration::from_secs(2), "{latency:?}");
        }
        // Another member's round never comes later than one and a half observe intervals
        // after its own observation of the move; the window holds more than that.
        let after = all_rounds(&nodes);
        holds_for("no further round", OBSERVE * 3, async || {
            all_rounds(&nodes) == after
        })
        .await;
        let moved_rounds = after - before;
        println!("rounds for the move to {target}: {moved_rounds}");
        assert!(
            (1..=2).contains(&moved_rounds),
            "{moved_rounds} rounds for one move"
        );
        before = after;
    }
    assert_eq!(rounds(&nodes, Reason::Deviation), before - at_start);
    let stored = cluster.rows().await;
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));
    stop_all(nodes).await;
}

/// Rows no quorum made, written by whoever can write `prices` — the newest 1 USD dated 2030 — do
/// not drive the triggers of nodes that start after them: they take up from the newest row that
/// verifies, as the API serves it. Taken from the forged row, the market's 3,000 USD was a move
/// from 1 USD for as long as that row stayed the newest (until 2030), and the heartbeat was due
/// only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_row_dated_in_the_future_neither_starts_nor_holds_off_rounds() {
    let cluster = Cluster::new("forged_future").await;
    let forged = crate::common::forged::rows();
    // Written past the test's own check that only the lease holder inserts, as an admin could.
    let lease_check = async |toggle: &str| {
        let sql = format!("ALTER TABLE prices {toggle} TRIGGER lease_check");
        cluster.conn.execute_unprepared(&sql).await.unwrap();
    };
    lease_check("DISABLE").await;
    for (report, _) in &forged {
        price_oracle::testkit::insert_by_hand(&cluster.db, report).await;
    }
    lease_check("ENABLE").await;
    let nodes = cluster
        .start_on_triggers(1..=4, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2);
        })
        .await;
    cluster
        .wait_rows(forged.len() + 2, Duration::from_secs(40))
        .await;
    assert_eq!(
        rounds(&nodes, Reason::Deviation),
        0,
        "no move from a forged value"
    );
    assert!(rounds(&nodes, Reason::Heartbeat) >= 2);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_market_gets_heartbeat_rounds_only_each_pair_verified_every_heartbeat() {
    const HEARTBEAT: Duration = Duration::from_secs(3);
    let cluster = Cluster::new("flat").await;
    let nodes = cluster
        .start_on_triggers(1..=5, |settings| settings.trigger.heartbeat = HEARTBEAT)
        .await;
    cluster.wait_rows(1, Duration::from_secs(90)).await;
    let first = cluster.rows().await.len();
    let window = Duration::from_secs(15);
    tokio::time::sleep(window).await;
    wait_for(
        "the last round stored",
        Duration::from_secs(10),
        async || cluster.rows().await.len() as u64 == all_rounds(&nodes),
    )
    .await;
    let stored = cluster.rows().await;
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));
    assert_eq!(rounds(&nodes, Reason::Deviation), 0);
    assert_eq!(rounds(&nodes, Reason::Requested), 0);
    // One round per heartbeat (due one observe interval early: every 2 to 3 s), not one per
    // member: 15 s hold 5 to 8, whoever starts them.
    let during = stored.len() - first;
    println!(
        "{during} heartbeat rounds in {window:?} at a {HEARTBEAT:?} heartbeat, started by {:?}",
        stored
            .iter()
            .map(|row| row.report.round.origin)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    assert!((4..=9).contains(&during), "{during} rounds in {window:?}");
    let mut times: Vec<u64> = stored.iter().map(|row| row.observed_at()).collect();
    times.sort_unstable();
    for gap in times.windows(2).map(|pair| pair[1] - pair[0]) {
        assert!(
            gap <= HEARTBEAT.as_secs(),
            "{gap} s between two values of a pair: {times:?}"
        );
    }
    stop_all(nodes).await;
}
