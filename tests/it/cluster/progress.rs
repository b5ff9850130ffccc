//! Progress no one member blocks: a member that keeps publishing near-market rounds nobody can
//! verify — each an equivocating pair of observations — at seven members. Before, every honest
//! node took such a round for one under way and started none of its own: no heartbeat row, and
//! a move never verified. Now its rounds stand for nothing once they fail, and it loses its
//! turn to start rounds.

use std::time::{Duration, Instant, SystemTime};

use alloy_primitives::B256;
use price_oracle::identity::Identity;
use price_oracle::message::{Gossip, PriceMessage};
use price_oracle::node::NodeEvent;
use price_oracle::price::UsdPrice;
use price_oracle::testkit::{Peer, TestNode, price_by, stop_all, total, wait_for};
use price_oracle::time::unix_seconds;
use price_oracle::trigger::StallCause;
use tokio::sync::watch;

use crate::common::cluster::Cluster;

/// The flat market's rounds: one when the newest value is 2 s old (the harness observes every
/// second).
const HEARTBEAT: Duration = Duration::from_secs(3);
/// Two observe intervals, the shortest allowed.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(2);
/// The stalling member publishes a round this often (and at once on a move): well inside the
/// 30 s for which each kept every node from starting one before.
const STALL_EVERY: Duration = Duration::from_secs(3);
/// How long the heartbeat rows are counted, with and without the stalling member.
const WINDOW: Duration = Duration::from_secs(12);

/// A round of `identity` at `usd`, and a second observation of its own for the same round: each
/// message valid, the pair an equivocation.
fn equivocating_pair(config: B256, identity: &Identity, usd: &str) -> [PriceMessage; 2] {
    let first = price_by(config, identity, SystemTime::now(), usd);
    let mut other = first.data;
    other.price = UsdPrice::from_e8(other.price.e8() + 1).expect("a price");
    let second = PriceMessage::originate(other, identity.signer());
    [first, second]
}

/// What one phase measured: heartbeat rows stored with a round time in a window, and how long
/// after the market moved to `target` a value at `target` was verified at a node.
#[derive(Debug)]
struct Phase {
    rows: usize,
    move_verified: Duration,
}

/// Counts the rows of a window, then moves the market to `target` (calling `on_move` then) and
/// times the move.
async fn measure(
    cluster: &Cluster,
    node: &TestNode,
    target: &str,
    on_move: impl FnOnce(&str),
) -> Phase {
    let from = unix_seconds(SystemTime::now());
    tokio::time::sleep(WINDOW).await;
    let until = unix_seconds(SystemTime::now());
    let mut events = node.node.subscribe();
    let moved = Instant::now();
    let price = UsdPrice::parse_quote(target).expect("a price");
    cluster.exchange.set_price(price);
    on_move(target);
    let move_verified = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Verified { report, .. }) if report.value() == Some(price) => {
                    return moved.elapsed();
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(err) => panic!("the node's events ended: {err}"),
            }
        }
    })
    .await
    .expect("the move is verified within 20 s");
    // The move's row comes after the window's: once it is stored, so are they.
    wait_for("the move stored", Duration::from_secs(20), async || {
        cluster
            .rows()
            .await
            .iter()
            .any(|row| row.row.price == price.to_decimal())
    })
    .await;
    let rows = cluster
        .rows()
        .await
        .iter()
        .filter(|row| (from..until).contains(&row.observed_at()))
        .count();
    Phase {
        rows,
        move_verified,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stalling_every_round_changes_neither_the_heartbeat_nor_a_move() {
    let cluster = Cluster::with_members("stall", 1..=7).await;
    let nodes = cluster
        .start_on_triggers(1..=6, |settings| {
            settings.trigger.heartbeat = HEARTBEAT;
            settings.trigger.progress_timeout = PROGRESS_TIMEOUT;
        })
        .await;
    // Member 7's key, on a peer of its own that publishes what it likes.
    let (staller, _) = Peer::start(7, vec![cluster.boot_addr.clone()]).await;
    staller.handle.clone().wait_for_peers(3).await;
    cluster.wait_rows(1, Duration::from_secs(60)).await;

    let without = measure(&cluster, &nodes[0], "3060", |_| {}).await;

    let (market, mut moves) = watch::channel("3060".to_owned());
    let (config, identity, handle) = (
        cluster.config,
        staller.identity.clone(),
        staller.handle.clone(),
    );
    let stalling = tokio::spawn(async move {
        loop {
            let usd = moves.borrow_and_update().clone();
            for message in equivocating_pair(config, &identity, &usd) {
                handle.publish(Gossip::Price(message));
            }
            tokio::select! {
                () = tokio::time::sleep(STALL_EVERY) => {}
                changed = moves.changed() => if changed.is_err() { return },
            }
        }
    });
    // Two failed rounds, and every honest node ranks it last.
    wait_for(
        "every node to take the staller's turn",
        Duration::from_secs(20),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.starter_penalties.get() >= 1)
        },
    )
    .await;
    // The staller publishes at once on the move, as it would seeing the market itself.
    let with = measure(&cluster, &nodes[0], "3000", |target| {
        let _ = market.send(target.to_owned());
    })
    .await;
    stalling.abort();

    println!("without the staller: {without:?}; with it: {with:?}");
    let one_round = HEARTBEAT;
    assert!(
        with.rows + 1 >= without.rows,
        "heartbeat rows: {} with the staller, {} without",
        with.rows,
        without.rows
    );
    assert!(
        with.move_verified <= without.move_verified + one_round,
        "a move verified after {:?} with the staller, {:?} without",
        with.move_verified,
        without.move_verified
    );
    let stalled = total(&nodes, |m| m.round_stalled(StallCause::Equivocation).get());
    assert!(
        stalled >= 2 * nodes.len() as u64,
        "{stalled} rounds stalled"
    );
    stop_all(nodes).await;
}
