//! The network under the rounds: gossip republished or repeated, the bootstrap node dying,
//! the connection bound, the swarm key, and a node whose network dies.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use price_oracle::labels::Limit;
use price_oracle::message::{Attestation, Gossip, GossipKind};
use price_oracle::network::ConnectionBounds;
use price_oracle::testkit::{
    Peer, addresses_of, assert_rows_verify, holds_for, identity, price_by, report_rounds, stop_all,
    wait_for,
};

use crate::common::cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_republished_by_another_peer_still_reaches_quorum_everywhere() {
    let cluster = Cluster::new("poison").await;
    let nodes = cluster.start(1..=4).await;
    let (relay, _, mut heard) =
        Peer::start_listening(66, vec![cluster.boot_addr.clone()], |_| {}).await;
    let mut watcher = relay.handle.clone();
    watcher.wait_for_peers(3).await;
    cluster.wait_rows(4, Duration::from_secs(60)).await;
    // Member 5's genuine price, first heard from a stranger's peer id.
    let member = identity(5);
    let genuine = price_by(cluster.config, &member, SystemTime::now(), "3000");
    relay.handle.publish(Gossip::Price(genuine.clone()));
    // Member 5 runs no node: its report (of its price and the first two members' observations,
    // 2f + 1 with f = 1), signed with its key, is relayed by the stranger too.
    report_rounds(
        &mut heard,
        &relay.handle,
        &member,
        std::slice::from_ref(&genuine),
        3,
        Duration::from_secs(20),
    )
    .await;
    wait_for(
        "the genuine price stored",
        Duration::from_secs(20),
        async || {
            cluster
                .rows()
                .await
                .iter()
                .any(|row| row.id() == genuine.data.id)
        },
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
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_bootstrap_node_dies_prices_flow_and_a_restarted_node_finds_its_way_back() {
    let mut cluster = Cluster::new("noboot").await;
    let every_3s = |settings: &mut price_oracle::node::NodeSettings| {
        settings.trigger.heartbeat = Duration::from_secs(3);
    };
    let mut nodes = cluster.start_with(1..=5, every_3s).await;
    wait_for(
        "a mesh of full nodes",
        Duration::from_secs(30),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.connected_peers.get() >= 4)
                && cluster.rows().await.len() >= 5
        },
    )
    .await;

    cluster.kill_bootstrap().await;
    let before = cluster.rows().await.len();
    let killed_at = Instant::now();
    cluster.wait_rows(before + 5, Duration::from_secs(30)).await;
    println!(
        "{} more prices stored within {:?} of killing the bootstrap node",
        cluster.rows().await.len() - before,
        killed_at.elapsed()
    );

    // Node 5 restarts on a new random port; its only bootstrap is the dead one. The heartbeat
    // table tells it where the others are.
    let Some(node5) = nodes.pop() else {
        unreachable!("five nodes")
    };
    node5.stop().await;
    let restarted_at = SystemTime::now();
    let node5 = cluster.start_with([5], every_3s).await.remove(0);
    let node5_address = node5.address;
    wait_for(
        "a price of the restarted node stored",
        Duration::from_secs(60),
        async || {
            cluster.rows().await.iter().any(|row| {
                row.report.round.origin == node5_address
                    && UNIX_EPOCH + Duration::from_secs(row.observed_at())
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
    assert_rows_verify(&cluster.rows().await, 3, &addresses_of(&nodes));
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_past_the_bound_are_refused_and_counted() {
    let bounds = ConnectionBounds {
        max_inbound: 3,
        max_per_peer: 1,
    };
    let (hub, hub_addr) =
        Peer::start_with(100, vec![], |settings| settings.connections = bounds).await;
    let mut spokes = Vec::new();
    for seed in 30..38u8 {
        spokes.push(Peer::start(seed, vec![hub_addr.clone()]).await.0);
    }
    let refused = || hub.metrics.limit_hit_count(Limit::Connections);
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
    let cluster = Cluster::new("psk").await;
    let key = price_oracle::network::transport::generate_psk();
    let (private_boot, private_addr) =
        Peer::start_with(101, vec![], |settings| settings.psk = Some(key)).await;
    let mut nodes = cluster
        .start_with(1..=4, |settings| {
            settings.network.bootstrap = vec![private_addr.clone()];
            settings.network.psk = Some(key);
        })
        .await;
    // A member, even, but without the key: it never gets onto the transport.
    let keyless = cluster
        .start_with([5], |settings| {
            settings.network.bootstrap = vec![private_addr.clone()]
        })
        .await
        .remove(0);
    cluster.wait_rows(4, Duration::from_secs(90)).await;
    let stored = cluster.rows().await;
    // Five members (f = 1): each round's committee is three of the four others, so every node
    // with the key signs some prices, and every price has the quorum of three from them.
    for node in &nodes {
        assert!(
            stored.iter().any(|row| row.signed_by(&node.address)),
            "every node with the key joined and signed"
        );
    }
    for row in &stored {
        let keyed = nodes
            .iter()
            .filter(|node| row.signed_by(&node.address))
            .count();
        assert!(
            keyed >= 3,
            "row {} has {keyed} signers with the key",
            row.id()
        );
    }
    assert_eq!(keyless.metrics.connected_peers.get(), 0);
    assert!(stored.iter().all(|row| !row.signed_by(&keyless.address)));
    nodes.push(keyless);
    stop_all(nodes).await;
    drop(private_boot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_twice_is_counted_once() {
    let (hub, hub_addr) = Peer::start(60, vec![]).await;
    let (mut spoke, _) = Peer::start(61, vec![hub_addr]).await;
    spoke.handle.wait_for_peers(1).await;
    let price = price_by(
        price_oracle::testkit::open_config(),
        &identity(2),
        SystemTime::now(),
        "3000",
    );
    let attestation = Attestation::sign(&price.data, spoke.identity.signer());
    let sent = || spoke.metrics.published(GossipKind::Attestation).get();
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
    holds_for(
        "one copy sent: a duplicate is not a message",
        Duration::from_millis(500),
        async || sent() == 1,
    )
    .await;
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_network_dies_stops_and_says_why() {
    let cluster = Cluster::new("network_dies").await;
    let node = cluster
        .start_with([1], |settings| settings.min_peers = 1)
        .await
        .remove(0);
    let mut status = node.node.status.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected_peers >= 1),
    )
    .await
    .expect("the node connects");
    node.node.crash_network();
    tokio::time::timeout(Duration::from_secs(10), node.node.stopping())
        .await
        .expect("the node stops on its own");
    let err = node.node.stop().await.unwrap_err();
    assert!(err.to_string().contains("network"), "{err:#}");
}
