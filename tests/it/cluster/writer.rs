//! The writer: its stop while the database hangs, every verified price stored when every node
//! stops at once, and one writer per term on a healthy network.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use price_oracle::metrics::Metrics;
use price_oracle::node::NodeEvent;
use price_oracle::testkit::{
    Stored, TestNode, addresses_of, assert_rows_verify, stop_all, total, wait_for,
};
use price_oracle::writer::FlushResult;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::common::{self, cluster::Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stops_within_its_budget_while_the_database_hangs() {
    let cluster = Cluster::new("stop_hang").await;
    let proxy = common::Proxy::start(common::socket_of(&cluster.db.url).await).await;
    let mut settings = cluster.settings(1);
    // A database timeout far longer than the stop budget: a stop that waited on the database
    // would take at least this long.
    settings.db = price_oracle::testkit::settings_for(&proxy.url_through(&cluster.db.url));
    settings.db.timeout = Duration::from_secs(15);
    settings.min_peers = 0;
    let node = TestNode::start(settings).await;
    wait_for(
        "the node to hold the lease",
        Duration::from_secs(30),
        async || node.metrics.lease_writer.get() == 1,
    )
    .await;
    proxy.stall();
    // A heartbeat starts, and hangs.
    let heartbeats = || {
        Metrics::counter(
            &node.metrics.db_statements,
            price_oracle::metrics::StatementLabel { kind: "heartbeat" },
        )
        .get()
    };
    let stalled_at = heartbeats();
    wait_for("a heartbeat to hang", Duration::from_secs(5), async || {
        heartbeats() > stalled_at
    })
    .await;
    let started = Instant::now();
    node.stop().await;
    let took = started.elapsed();
    println!("stopped in {took:?} with the database hanging");
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    proxy.resume();
}

/// Ids every node has seen reach the quorum so far.
fn drain_verified(
    events: &mut [tokio::sync::broadcast::Receiver<NodeEvent>],
    verified: &mut HashSet<u64>,
) {
    for receiver in events {
        while let Ok(event) = receiver.try_recv() {
            if let NodeEvent::Verified { report, .. } = event {
                verified.insert(report.round.id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_every_node_at_once_stores_every_verified_price() {
    let cluster = Cluster::new("full_stop").await;
    // Nothing becomes due during the test: only the stop can store a price.
    let nodes = cluster
        .start_with(1..=4, |settings| {
            settings.pool.flush_delay = Duration::from_secs(600)
        })
        .await;
    let mut events: Vec<_> = nodes.iter().map(|node| node.node.subscribe()).collect();
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
            node.node.originate_now();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(cluster.rows().await.is_empty(), "nothing was due yet");
    let writers = addresses_of(&nodes);
    let started = Instant::now();
    stop_all(nodes).await;
    let took = started.elapsed();
    drain_verified(&mut events, &mut verified);
    let stored = cluster.rows().await;
    let stored_ids: HashSet<u64> = stored.iter().map(Stored::id).collect();
    println!(
        "{} prices verified somewhere, {} stored by the stopping nodes in {took:?}",
        verified.len(),
        stored_ids.len()
    );
    let lost: Vec<&u64> = verified.difference(&stored_ids).collect();
    assert!(lost.is_empty(), "verified but lost at the stop: {lost:?}");
    assert_rows_verify(&stored, 3, &writers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_healthy_network_the_writer_changes_once_per_term_and_stores_on_time() {
    let cluster = Cluster::new("calm_lease").await;
    let nodes = cluster
        .start_with(1..=5, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2)
        })
        .await;
    cluster.wait_rows(5, Duration::from_secs(90)).await;
    let writer_sql = Statement::from_string(
        DbBackend::Postgres,
        r#"SELECT node_address FROM heartbeat ORDER BY "timestamp" DESC, node_address DESC LIMIT 1"#,
    );
    let flushes = |outcome| total(&nodes, |m| m.flushed(outcome).get());
    let (stored_before, refused_before) =
        (flushes(FlushResult::Stored), flushes(FlushResult::Refused));
    let rows_before = cluster.rows().await.len();
    let mut writers: Vec<String> = Vec::new();
    let watched = Duration::from_secs(20);
    let started = Instant::now();
    while started.elapsed() < watched {
        if let Ok(Some(row)) = cluster.conn.query_one_raw(writer_sql.clone()).await
            && let Ok(writer) = row.try_get_by_index::<String>(0)
            && writers.last() != Some(&writer)
        {
            writers.push(writer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes = writers.len().saturating_sub(1);
    let stored = flushes(FlushResult::Stored) - stored_before;
    let refused = flushes(FlushResult::Refused) - refused_before;
    // How long after its flush delay (1 s) each price of the watched window was stored.
    let lags: Vec<f64> = cluster
        .conn
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
        cluster.rows().await.len() - rows_before
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
}
