//! The peer-to-peer layer. One task owns the libp2p Swarm; the rest of the node talks to it
//! through a [`NetworkHandle`] and hears from it through a channel of [`NetworkEvent`]s.
//!
//! TCP (+ the private network's pre-shared key, see [`transport`]) + noise + yamux, with the
//! node's secp256k1 key as its identity. Gossipsub carries the messages (anonymous and
//! content-addressed: the payload's signatures say who speaks); every message is validated off
//! the swarm task, by a validator task that reports the verdict back, so a flood of messages to
//! check never stalls the swarm's I/O. Kademlia, fed with identify's listen addresses and
//! bootstrapped from `--bootstrap` addresses, finds the other nodes.
//!
//! - this file: the settings, the [`Probe`] the layer reports to, and [`spawn`], which wires
//!   the tasks;
//! - `swarm`: building the Swarm (transport, behaviours, topic, listeners);
//! - `swarm_task`: the task that owns it;
//! - `validator`: the task that judges received messages by [`validation`]'s rules;
//! - `handle`: [`NetworkHandle`], the rest of the node's way in.

mod behaviour;
mod handle;
mod intake;
mod swarm;
mod swarm_task;
pub mod transport;
pub mod validation;
mod validator;

use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use behaviour::{ConnectionBounds, TOPIC};
pub use handle::NetworkHandle;
use swarm_task::{Links, SwarmTask};
use validation::{Action, RefusalReason, ValidationSettings, Validator};

use crate::labels::Limit;
use crate::membership::MemberView;
use crate::message::{Gossip, GossipKind};

/// A peer that has not answered a ping for this long is not counted as responsive (libp2p
/// pings every 15 s).
pub const RESPONSIVE_WINDOW: Duration = Duration::from_secs(45);

/// A connection whose peer has answered no ping for this long is closed, so that a fresh dial
/// (the heartbeat table's, Kademlia's) replaces it. Kept open, a connection across a network
/// partition resumes only at TCP's next retransmission, whose interval doubled while the cut
/// lasted: measured 42-56 s after a 60 s cut healed (scripts/faults.sh --scenario
/// hosts-partition). Four pings' time: longer than [`RESPONSIVE_WINDOW`], so that `/health`
/// says "a partition?" before the peers drop.
pub const SILENT_PEER_CLOSE: Duration = Duration::from_secs(60);

/// How the node joins the network.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub listen: Vec<Multiaddr>,
    /// Addresses of bootstrap nodes, best ending in `/p2p/<peer id>` (which authenticates the
    /// peer); without it any peer answering there is accepted.
    pub bootstrap: Vec<Multiaddr>,
    pub validation: ValidationSettings,
    pub connections: ConnectionBounds,
    /// Received messages from one peer waiting for validation; past it that peer's new ones are
    /// ignored (and counted). Peers are served in turn.
    pub validation_queue: usize,
    /// Refused messages one peer may send per minute before it is cut off for 10 minutes.
    pub max_refused_per_peer: u32,
    /// The private network's pre-shared key: only peers holding it can connect. None: public.
    pub psk: Option<libp2p::pnet::PreSharedKey>,
}

impl NetworkSettings {
    /// Settings with the command line's default bounds.
    pub fn with_default_limits(
        listen: Vec<Multiaddr>,
        bootstrap: Vec<Multiaddr>,
        validation: ValidationSettings,
    ) -> Self {
        Self {
            listen,
            bootstrap,
            validation,
            connections: ConnectionBounds::DEFAULT,
            validation_queue: DEFAULT_VALIDATION_QUEUE,
            max_refused_per_peer: DEFAULT_MAX_REFUSED_PER_PEER,
            psk: None,
        }
    }
}

/// `--validation-queue`'s default: messages per peer.
pub const DEFAULT_VALIDATION_QUEUE: usize = 256;
/// `--max-refused-per-peer`'s default: refused messages per peer per minute.
pub const DEFAULT_MAX_REFUSED_PER_PEER: u32 = 600;
/// Messages handed to the validator at once; the rest wait in the per-peer queues, where peers
/// take turns.
const VALIDATOR_BATCH: usize = 32;

/// Publishes waiting for the swarm task; past it a publish is dropped (and counted).
const COMMAND_QUEUE: usize = 1_024;

/// Something the rest of the node should know.
#[derive(Debug, Clone)]
pub enum NetworkEvent {
    /// A valid message from a peer.
    Gossip(Gossip),
}

/// The network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

/// What the network layer reports as it works. The node's metrics implement it: this layer
/// counts without knowing how the counts are kept.
pub trait Probe: Send + Sync + std::fmt::Debug {
    /// A valid message of `kind` came in.
    fn received(&self, kind: GossipKind);
    /// A message was refused (rejected or ignored, as `action` says) for `reason`.
    fn refused(&self, reason: RefusalReason, action: Action);
    /// A bound refused something.
    fn limit_hit(&self, limit: Limit);
    /// A message of `kind`, `bytes` long, went out.
    fn sent(&self, kind: GossipKind, bytes: usize);
    /// A publish waits: no peer is subscribed yet.
    fn publish_retried(&self);
    /// A publish was given up on.
    fn publish_dropped(&self);
    /// The number of connected peers changed.
    fn connected_peers(&self, count: usize);
}

/// Starts the Swarm task and its validator; `members` decides whose signatures count.
/// libp2p's own metrics (gossipsub, kad, identify, ping, swarm) go into `registry`.
pub fn spawn(
    keypair: &Keypair,
    settings: NetworkSettings,
    members: MemberView,
    probe: Arc<dyn Probe>,
    registry: &mut Registry,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>, JoinHandle<()>), NetworkError> {
    let mut swarm = swarm::build_swarm(keypair, &settings, registry)?;
    let topic = swarm::join(&mut swarm, &settings)?;
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (events, events_rx) = mpsc::channel(4096);
    let (to_validate, validation_queue) = mpsc::channel(VALIDATOR_BATCH);
    let (verdicts_tx, verdicts) = mpsc::channel(VALIDATOR_BATCH);
    let validator = tokio::spawn(validator::validate_messages(
        Validator::new(settings.validation),
        validation_queue,
        verdicts_tx,
        events,
        members,
        Arc::clone(&probe),
    ));
    let (peers_tx, peers) = watch::channel(0);
    let (responsive_tx, responsive) = watch::channel(0);
    let (listen_tx, listen_addrs) = watch::channel(Vec::new());
    let peer_id = *swarm.local_peer_id();
    let links = Links {
        commands,
        to_validate,
        verdicts,
        peers: peers_tx,
        responsive: responsive_tx,
        listen_addrs: listen_tx,
    };
    let task = SwarmTask::new(swarm, topic, settings, Arc::clone(&probe), registry, links);
    let handle = NetworkHandle {
        commands: commands_tx,
        probe,
        peers,
        responsive,
        listen_addrs,
        peer_id,
    };
    let task = tokio::spawn(async move {
        task.run().await;
        // The validator stops once the swarm task dropped its queue.
        let _ = validator.await;
    });
    Ok((handle, events_rx, task))
}
