//! Whole networks in one process: real libp2p over TCP on 127.0.0.1, a real PostgreSQL database
//! per test, the mock exchange, and intervals of seconds.
//!
//! By theme: [`consensus`], [`attacks`], [`network`], [`writer`] and [`http`].

mod attacks;
mod consensus;
mod http;
mod network;
mod progress;
mod writer;

use price_oracle::message::GossipKind;
use price_oracle::testkit::{TestNode, total};

/// Messages of `kind` the nodes published.
fn published(nodes: &[TestNode], kind: GossipKind) -> u64 {
    total(nodes, |m| m.published(kind).get())
}

/// The status and body of a GET.
async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
