//! The log bridge: libp2p logs through `tracing`, and its lines must reach fern's output with the
//! node name, like the node's own. The logger is global: one test sets it, in a process of its
//! own under cargo-nextest (under plain `cargo test` the other tests' lines reach its file too,
//! which none of its checks counts on).

use std::time::Duration;

use price_oracle::logging::{self, LogSettings};
use price_oracle::testkit::{Peer, wait_for};

#[tokio::test]
async fn a_libp2p_log_line_arrives_in_the_fern_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.log");
    logging::init(&LogSettings {
        filter: "warn,libp2p_swarm=info".parse().unwrap(),
        format: Default::default(),
        file: Some(file.clone()),
        node: Some("bridged".into()),
    })
    .unwrap();
    log::warn!("a line of our own");
    // Building a swarm logs its peer id at info, from the libp2p_swarm crate, through tracing.
    let (peer, _) = Peer::start(42, Vec::new()).await;
    let peer_id = peer.identity.peer_id().to_string();
    let read = || std::fs::read_to_string(&file).unwrap_or_default();
    wait_for(
        "libp2p's line in the log file",
        Duration::from_secs(5),
        async || read().contains(&peer_id),
    )
    .await;
    let text = read();
    let line = text.lines().find(|line| line.contains(&peer_id)).unwrap();
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(" bridged libp2p_swarm"), "{line}");
    // Our own line under its target, this module's path.
    let own = format!("bridged {}: a line of our own", module_path!());
    assert!(text.lines().any(|line| line.contains(&own)), "{text}");
}
