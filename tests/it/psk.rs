//! A private network: real libp2p swarms over TCP on 127.0.0.1. Only nodes holding the same
//! pre-shared key (swarm key) connect; one without a key, or with another key, stays outside.

use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::pnet::PreSharedKey;
use price_oracle::network::transport::generate_psk;
use price_oracle::testkit::Peer;

/// How long the outsiders get to connect. Bootstrap dials are retried every 5 s, so they try at
/// least once; a plain connection on loopback takes milliseconds.
const OUTSIDERS_GET: Duration = Duration::from_secs(4);

/// Peer `seed` holding `psk` (none: a public node), joining through `bootstrap`.
async fn start(
    seed: u8,
    psk: Option<PreSharedKey>,
    bootstrap: Vec<Multiaddr>,
) -> (Peer, Multiaddr) {
    Peer::start_with(seed, bootstrap, |settings| settings.psk = psk).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_same_swarm_key_connect() {
    let key = generate_psk();
    let (mut private, addr) = start(1, Some(key), vec![]).await;

    // Each outsider dials the private node directly, by its full address.
    let (no_key, _) = start(2, None, vec![addr.clone()]).await;
    let (other_key, _) = start(3, Some(generate_psk()), vec![addr.clone()]).await;
    tokio::time::sleep(OUTSIDERS_GET).await;
    assert_eq!(no_key.handle.connected_peers(), 0, "a node without the key");
    assert_eq!(
        other_key.handle.connected_peers(),
        0,
        "a node with another key"
    );
    assert_eq!(private.handle.connected_peers(), 0);

    // The control: same dial, same key — it connects, so the refusals above are the key's doing.
    let (mut member, _) = start(4, Some(key), vec![addr]).await;
    tokio::time::timeout(Duration::from_secs(10), member.handle.wait_for_peers(1))
        .await
        .expect("a node with the same key connects within 10 s");
    // The listener sees the connection a moment after the dialer does.
    tokio::time::timeout(Duration::from_secs(5), private.handle.wait_for_peers(1))
        .await
        .expect("the private node sees the member");
    assert_eq!(private.handle.connected_peers(), 1, "only the member");

    // And the outsiders still are not in, even now that the network has a member to gossip with.
    assert_eq!(no_key.handle.connected_peers(), 0);
    assert_eq!(other_key.handle.connected_peers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_nodes_still_connect_without_a_key() {
    let (mut public, addr) = start(5, None, vec![]).await;
    let (mut joiner, _) = start(6, None, vec![addr]).await;
    tokio::time::timeout(Duration::from_secs(10), joiner.handle.wait_for_peers(1))
        .await
        .expect("two public nodes connect within 10 s");
    tokio::time::timeout(Duration::from_secs(5), public.handle.wait_for_peers(1))
        .await
        .expect("the listener sees the joiner");
}
