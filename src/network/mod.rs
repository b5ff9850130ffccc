//! The peer-to-peer layer. One task owns the libp2p Swarm; the rest of the node talks to it
//! through a [`NetworkHandle`] and hears from it through a channel of [`NetworkEvent`]s.
//!
//! TCP + noise + yamux, with the node's secp256k1 key as its identity. Gossipsub carries the
//! messages (signed, strictly validated, content-addressed); Kademlia, fed with identify's listen
//! addresses and bootstrapped from `--bootstrap` addresses, finds the other nodes.

mod behaviour;
pub mod validation;

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use behaviour::TOPIC;
use behaviour::{Behaviour, BehaviourEvent};
use validation::{ValidationSettings, validate};

use crate::message::Gossip;
use crate::metrics::Metrics;

/// How often queued publishes are retried and connections looked after.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);
/// Outbound dials to discovered peers stop at this many connections; inbound ones are accepted.
const TARGET_PEERS: usize = 12;
/// With no peer at all, the bootstrap nodes are dialed again this often.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// How often the Kademlia routing table is refreshed, so nodes keep finding each other.
const KAD_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How the node joins the network.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub listen: Vec<Multiaddr>,
    /// Addresses of bootstrap nodes, best ending in `/p2p/<peer id>` (which authenticates the
    /// peer); without it any peer answering there is accepted.
    pub bootstrap: Vec<Multiaddr>,
    pub validation: ValidationSettings,
}

/// Something the rest of the node should know.
#[derive(Debug, Clone)]
pub enum NetworkEvent {
    /// A valid message from a peer.
    Gossip(Gossip),
}

#[derive(Debug)]
enum Command {
    Publish(Gossip),
    PublishRaw(Vec<u8>),
}

/// The rest of the node's way to the Swarm task. Dropping every handle stops the task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::UnboundedSender<Command>,
    peers: watch::Receiver<usize>,
    listen_addrs: watch::Receiver<Vec<Multiaddr>>,
    peer_id: PeerId,
}

/// The network could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

impl NetworkHandle {
    /// Publishes to every subscribed peer. If none is subscribed yet the message is queued and
    /// retried until `max_age` has passed, not lost.
    pub fn publish(&self, gossip: Gossip) {
        // The task only ends when every handle is gone, so this cannot fail while we hold one.
        let _ = self.commands.send(Command::Publish(gossip));
    }

    /// Publishes arbitrary bytes, once, without retry. Only for testing how peers treat
    /// malformed or forged messages; nodes never call it.
    #[doc(hidden)]
    pub fn publish_raw(&self, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::PublishRaw(bytes));
    }

    pub fn connected_peers(&self) -> usize {
        *self.peers.borrow()
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

/// Starts the Swarm task.
/// libp2p's own metrics (gossipsub, kad, identify, ping, swarm) go into `registry`.
pub fn spawn(
    keypair: &Keypair,
    settings: NetworkSettings,
    metrics: Metrics,
    registry: &mut Registry,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>, JoinHandle<()>), NetworkError> {
    let mut swarm = build_swarm(keypair, registry)?;
    let topic = IdentTopic::new(TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|err| NetworkError::Build(format!("subscribe: {err}")))?;
    for addr in &settings.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|err| NetworkError::Listen {
                addr: addr.clone(),
                reason: err.to_string(),
            })?;
    }
    let bootstrap = settings
        .bootstrap
        .iter()
        .map(|addr| match addr.iter().last() {
            Some(Protocol::P2p(peer)) => (Some(peer), addr.clone()),
            _ => {
                log::warn!(
                    "bootstrap address {addr} has no /p2p/<peer id>: whoever answers there is trusted"
                );
                (None, addr.clone())
            }
        })
        .collect();

    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (events, events_rx) = mpsc::channel(4096);
    let (peers_tx, peers) = watch::channel(0);
    let (listen_tx, listen_addrs) = watch::channel(Vec::new());
    let peer_id = *swarm.local_peer_id();
    let task = SwarmTask {
        swarm,
        topic,
        settings,
        bootstrap,
        metrics,
        p2p_metrics: libp2p::metrics::Metrics::new(registry),
        commands,
        events,
        peers: peers_tx,
        listen_addrs: listen_tx,
        pending: VecDeque::new(),
        last_redial: None,
        last_kad_refresh: Instant::now(),
    };
    let handle = NetworkHandle {
        commands: commands_tx,
        peers,
        listen_addrs,
        peer_id,
    };
    Ok((handle, events_rx, tokio::spawn(task.run())))
}

fn build_swarm(
    keypair: &Keypair,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let build = |err: &dyn std::fmt::Display| NetworkError::Build(err.to_string());
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|err| build(&err))?
            // Bootstrap addresses may name hosts (/dns4/bootstrap/tcp/4001), e.g. in compose.
            .with_dns()
            .map_err(|err| build(&err))?
            // Bytes in and out per protocol: libp2p_bandwidth_bytes_total.
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| {
                Behaviour::new(key).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|err| build(&err))?
            .with_swarm_config(|config| {
                config.with_idle_connection_timeout(Duration::from_secs(60))
            })
            .build(),
    )
}

/// A message waiting for subscribed peers.
struct Pending {
    gossip: Gossip,
    bytes: Vec<u8>,
    since: Instant,
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    settings: NetworkSettings,
    bootstrap: Vec<(Option<PeerId>, Multiaddr)>,
    metrics: Metrics,
    p2p_metrics: libp2p::metrics::Metrics,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    peers: watch::Sender<usize>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    pending: VecDeque<Pending>,
    last_redial: Option<Instant>,
    last_kad_refresh: Instant,
}

impl SwarmTask {
    async fn run(mut self) {
        self.dial_bootstrap();
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Publish(gossip)) => self.publish(gossip),
                    Some(Command::PublishRaw(bytes)) => {
                        let topic = self.topic.clone();
                        if let Err(err) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                            log::debug!("raw publish failed: {err}");
                        }
                    }
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = maintenance.tick() => self.maintain(),
            }
        }
        log::debug!("network task stopped");
    }

    fn publish(&mut self, gossip: Gossip) {
        let bytes = gossip.encode();
        self.pending.push_back(Pending {
            gossip,
            bytes,
            since: Instant::now(),
        });
        self.flush_pending();
    }

    /// Publishes queued messages in order; stops at the first that still has nobody to go to.
    fn flush_pending(&mut self) {
        while let Some(next) = self.pending.front() {
            let result = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(self.topic.clone(), next.bytes.clone());
            match result {
                Ok(_) | Err(PublishError::Duplicate) => {
                    let kind = next.gossip.kind();
                    Metrics::kind(&self.metrics.publishes, kind).inc();
                    Metrics::kind(&self.metrics.published_bytes, kind)
                        .inc_by(next.bytes.len() as u64);
                    self.pending.pop_front();
                }
                Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => {
                    if next.since.elapsed() > self.settings.validation.max_age {
                        log::warn!(
                            "gave up publishing a {} message: no subscribed peer for {:?}",
                            next.gossip.kind(),
                            self.settings.validation.max_age
                        );
                        self.metrics.publishes_dropped.inc();
                        self.pending.pop_front();
                        continue;
                    }
                    self.metrics.publish_retries.inc();
                    return;
                }
                Err(err) => {
                    log::error!("cannot publish a {} message: {err}", next.gossip.kind());
                    self.metrics.publishes_dropped.inc();
                    self.pending.pop_front();
                }
            }
        }
    }

    fn maintain(&mut self) {
        self.flush_pending();
        let no_peers = self.swarm.connected_peers().next().is_none();
        let redial_due = self
            .last_redial
            .is_none_or(|last| last.elapsed() >= REDIAL_INTERVAL);
        if no_peers && redial_due {
            self.dial_bootstrap();
        }
        if !no_peers && self.last_kad_refresh.elapsed() >= KAD_REFRESH_INTERVAL {
            self.last_kad_refresh = Instant::now();
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn dial_bootstrap(&mut self) {
        self.last_redial = Some(Instant::now());
        for (peer, addr) in &self.bootstrap {
            if let Some(peer) = peer {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(peer, addr.clone());
            }
            if let Err(err) = self.swarm.dial(addr.clone()) {
                log::debug!("dialing bootstrap node {addr}: {err}");
            }
        }
    }

    fn update_peer_count(&mut self) {
        let count = self.swarm.connected_peers().count();
        self.metrics.connected_peers.set(count as i64);
        self.peers.send_if_modified(|current| {
            let changed = *current != count;
            *current = count;
            changed
        });
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.p2p_metrics.record(&event);
        if let SwarmEvent::Behaviour(behaviour) = &event {
            match behaviour {
                BehaviourEvent::Gossipsub(event) => self.p2p_metrics.record(event),
                BehaviourEvent::Kad(event) => self.p2p_metrics.record(event),
                BehaviourEvent::Identify(event) => self.p2p_metrics.record(event),
                BehaviourEvent::Ping(event) => self.p2p_metrics.record(event),
            }
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                log::info!("listening on {address}/p2p/{}", self.swarm.local_peer_id());
                self.listen_addrs.send_modify(|addrs| addrs.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .send_modify(|addrs| addrs.retain(|a| *a != address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    log::debug!("connected to {peer_id}");
                }
                // The first connection is the way into the network: look around at once. Later
                // connections do not trigger lookups (each lookup dials peers, which would
                // trigger more: a storm in a large network); the periodic refresh covers them.
                if self.swarm.connected_peers().count() == 1 {
                    self.last_kad_refresh = Instant::now();
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                self.update_peer_count();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    log::debug!("disconnected from {peer_id}");
                }
                self.update_peer_count();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if Behaviour::speaks_kad(&info.protocols) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                ..
            })) => self.dial_discovered(peer, addresses.into_vec()),
            _ => {}
        }
    }

    /// Connects to a peer Kademlia found, until the node has enough connections.
    fn dial_discovered(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        let enough = self.swarm.connected_peers().count() >= TARGET_PEERS;
        if enough || self.swarm.is_connected(&peer) || peer == *self.swarm.local_peer_id() {
            return;
        }
        let dial = DialOpts::peer_id(peer).addresses(addresses).build();
        if let Err(err) = self.swarm.dial(dial) {
            log::debug!("dialing discovered peer {peer}: {err}");
        }
    }

    async fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let verdict = validate(
            &message.data,
            message.source.as_ref(),
            SystemTime::now(),
            &self.settings.validation,
        );
        let acceptance = match &verdict {
            Ok(gossip) => {
                Metrics::kind(&self.metrics.messages_received, gossip.kind()).inc();
                MessageAcceptance::Accept
            }
            Err(rejection) => {
                log::debug!(
                    "rejected a message from {propagation_source} ({}): {}",
                    rejection.reason,
                    rejection.detail
                );
                Metrics::reason(&self.metrics.messages_rejected, rejection.reason).inc();
                MessageAcceptance::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let Ok(gossip) = verdict {
            // Backpressure: if the node falls behind, the swarm waits rather than dropping.
            let _ = self.events.send(NetworkEvent::Gossip(gossip)).await;
        }
    }
}
