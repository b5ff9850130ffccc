//! The rest of the node's way to the swarm task: publish, dial, and what the task reports
//! (peers, listen addresses).

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};

#[cfg(doc)]
use super::RESPONSIVE_WINDOW;
use super::{COMMAND_QUEUE, Probe};
use crate::labels::Limit;
use crate::message::Gossip;

#[derive(Debug)]
pub(super) enum Command {
    Publish(Gossip),
    Dial(Vec<Multiaddr>),
    /// Publishes bytes as they are, once (tests only).
    #[cfg(feature = "test-util")]
    PublishRaw(Vec<u8>),
    /// Ends the swarm task as a crash would (tests only).
    #[cfg(feature = "test-util")]
    Crash,
}

/// The rest of the node's way to the Swarm task. Dropping every handle stops the task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) probe: Arc<dyn Probe>,
    pub(super) peers: watch::Receiver<usize>,
    /// Connected peers that answered a ping within [`RESPONSIVE_WINDOW`].
    pub(super) responsive: watch::Receiver<usize>,
    pub(super) listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    pub(super) peer_id: PeerId,
}

impl NetworkHandle {
    /// Publishes to every subscribed peer. If none is subscribed yet the message is queued and
    /// retried until `max_age` has passed, not lost.
    pub fn publish(&self, gossip: Gossip) {
        self.send(Command::Publish(gossip));
    }

    /// Ends the network task at once, as a crash would. Only for testing how a node notices.
    #[cfg(feature = "test-util")]
    pub fn crash(&self) {
        self.send(Command::Crash);
    }

    /// Publishes arbitrary bytes, once, without retry. Only for testing how peers treat
    /// malformed or forged messages.
    #[cfg(feature = "test-util")]
    pub fn publish_raw(&self, bytes: Vec<u8>) {
        self.send(Command::PublishRaw(bytes));
    }

    /// Dials these peers (multiaddrs ending in `/p2p/<peer id>`) unless already connected, and
    /// remembers them for discovery: the way back for a node whose bootstrap nodes are gone.
    pub fn dial(&self, addrs: Vec<Multiaddr>) {
        self.send(Command::Dial(addrs));
    }

    fn send(&self, command: Command) {
        // A full queue means the swarm task is far behind: dropping a message beats stalling
        // the node's event loop. (A closed one means the network stopped.)
        if let Err(mpsc::error::TrySendError::Full(_)) = self.commands.try_send(command) {
            self.probe.limit_hit(Limit::CommandQueue);
            log::warn!(
                "the network task is {COMMAND_QUEUE} messages behind; a publish was dropped"
            );
        }
    }

    pub fn connected_peers(&self) -> usize {
        *self.peers.borrow()
    }

    /// Connected peers that answered a ping within [`RESPONSIVE_WINDOW`]: a connection can
    /// look open through a partition long after its peer went silent.
    pub fn responsive_peers(&self) -> usize {
        *self.responsive.borrow()
    }

    /// Waits until at least `count` peers are connected.
    pub async fn wait_for_peers(&mut self, count: usize) {
        let _ = self.peers.wait_for(|peers| *peers >= count).await;
    }

    /// Resolves when the number of connected peers changes (never, once the network stopped).
    pub async fn peers_changed(&mut self) {
        if self.peers.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Full addresses others can dial: each listen address with `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .borrow()
            .iter()
            .map(|addr| {
                addr.clone()
                    .with_p2p(self.peer_id)
                    .unwrap_or_else(|addr| addr)
            })
            .collect()
    }

    /// Waits until the node listens on at least one address, then returns them all.
    pub async fn wait_for_listen_addrs(&mut self) -> Vec<Multiaddr> {
        let _ = self.listen_addrs.wait_for(|addrs| !addrs.is_empty()).await;
        self.listen_addrs()
    }
}
