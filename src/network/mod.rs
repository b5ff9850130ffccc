//! The peer-to-peer layer. One task owns the libp2p Swarm; the rest of the node talks to it
//! through a [`NetworkHandle`] and hears from it through a channel of [`NetworkEvent`]s.
//!
//! TCP (+ the private network's pre-shared key, see [`transport`]) + noise + yamux, with the
//! node's secp256k1 key as its identity. Gossipsub carries the messages (anonymous and
//! content-addressed: the payload's signatures say who speaks); every message is validated off
//! this task, by a validator task that reports the verdict back, so a flood of messages to check
//! never stalls the swarm's I/O. Kademlia, fed with identify's listen addresses and bootstrapped
//! from `--bootstrap` addresses, finds the other nodes.

mod behaviour;
mod intake;
pub mod transport;
pub mod validation;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::connection_limits::Exceeded;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use behaviour::{Behaviour, BehaviourEvent};
pub use behaviour::{ConnectionBounds, LEGACY_TOPIC, TOPIC};
use intake::{Intake, IntakeBounds};
use validation::{Action, Refusal, RefusalReason, ValidationSettings, Validator};

use crate::logging::LogLimiter;

use crate::membership::MemberView;
use crate::message::Gossip;
use crate::metrics::{GossipLabel, Limit, Metrics};

/// A peer that has not answered a ping for this long is not counted as responsive (libp2p
/// pings every 15 s).
pub const RESPONSIVE_WINDOW: Duration = Duration::from_secs(45);
/// How often queued publishes are retried and connections looked after.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(500);
/// Outbound dials to discovered peers stop at this many connections; inbound ones are accepted.
const TARGET_PEERS: usize = 12;
/// With no peer at all, the bootstrap nodes are dialed again this often.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// How often the node looks for peers while it has fewer than [`WELL_CONNECTED`], so it keeps
/// finding the others (one lookup: cheap, and only while short).
const KAD_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How often once it has them. A refresh queries (and so connects to) dozens of peers in a large
/// network, and connections outside the gossip mesh close after a minute idle: refreshing every
/// minute kept every node of a 100-node network re-handshaking with dozens of peers a minute,
/// most of its idle traffic and CPU.
const KAD_QUIET_REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// Connected peers that make a node well connected: enough for a full gossip mesh.
const WELL_CONNECTED: usize = behaviour::MESH_DEGREE;

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
    /// Publish on [`LEGACY_TOPIC`] instead of [`TOPIC`] (during a rolling upgrade).
    pub publish_legacy_topic: bool,
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
            publish_legacy_topic: false,
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

#[derive(Debug)]
enum Command {
    Publish(Gossip),
    PublishRaw(Vec<u8>),
    Dial(Vec<Multiaddr>),
    /// Ends the swarm task as a crash would (tests only).
    Crash,
}

/// The rest of the node's way to the Swarm task. Dropping every handle stops the task.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    metrics: Metrics,
    peers: watch::Receiver<usize>,
    /// Connected peers that answered a ping within [`RESPONSIVE_WINDOW`].
    responsive: watch::Receiver<usize>,
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
        self.send(Command::Publish(gossip));
    }

    /// Ends the network task at once, as a crash would. Only for testing how a node notices;
    /// nodes never call it.
    #[doc(hidden)]
    pub fn crash(&self) {
        self.send(Command::Crash);
    }

    /// Publishes arbitrary bytes, once, without retry. Only for testing how peers treat
    /// malformed or forged messages; nodes never call it.
    #[doc(hidden)]
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
            self.metrics.limit_hit(Limit::CommandQueue);
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

/// Starts the Swarm task and its validator; `members` decides whose signatures count.
/// libp2p's own metrics (gossipsub, kad, identify, ping, swarm) go into `registry`.
pub fn spawn(
    keypair: &Keypair,
    settings: NetworkSettings,
    members: MemberView,
    metrics: Metrics,
    registry: &mut Registry,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>, JoinHandle<()>), NetworkError> {
    let mut swarm = build_swarm(keypair, &settings, registry)?;
    let topic = join(&mut swarm, &settings)?;
    let bootstrap = bootstrap_peers(&settings.bootstrap);
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (events, events_rx) = mpsc::channel(4096);
    let (to_validate, validation_queue) = mpsc::channel(VALIDATOR_BATCH);
    let (verdicts_tx, verdicts) = mpsc::channel(VALIDATOR_BATCH);
    let intake = Intake::new(IntakeBounds {
        per_peer_queue: settings.validation_queue.max(1),
        max_refused_per_minute: settings.max_refused_per_peer,
    });
    let validator = tokio::spawn(validate_messages(
        Validator::new(settings.validation),
        validation_queue,
        verdicts_tx,
        events,
        members,
        metrics.clone(),
    ));
    let (peers_tx, peers) = watch::channel(0);
    let (responsive_tx, responsive) = watch::channel(0);
    let (listen_tx, listen_addrs) = watch::channel(Vec::new());
    let peer_id = *swarm.local_peer_id();
    let task = SwarmTask {
        swarm,
        topic,
        settings,
        bootstrap,
        metrics: metrics.clone(),
        p2p_metrics: libp2p::metrics::Metrics::new(registry),
        commands,
        to_validate,
        verdicts,
        intake,
        blocked_log: LogLimiter::default(),
        peers: peers_tx,
        responsive: responsive_tx,
        last_answer: HashMap::new(),
        listen_addrs: listen_tx,
        pending: VecDeque::new(),
        last_redial: None,
        last_kad_refresh: Instant::now(),
        bootstrap_dial_failures: 0,
        dial_log: LogLimiter::default(),
    };
    let handle = NetworkHandle {
        commands: commands_tx,
        metrics,
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

/// Subscribes to the topic under both names (see [`LEGACY_TOPIC`]) and listens; returns the
/// topic this node publishes on.
fn join(
    swarm: &mut Swarm<Behaviour>,
    settings: &NetworkSettings,
) -> Result<IdentTopic, NetworkError> {
    for name in [TOPIC, LEGACY_TOPIC] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(name))
            .map_err(|err| NetworkError::Build(format!("subscribe to {name}: {err}")))?;
    }
    for addr in &settings.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|err| NetworkError::Listen {
                addr: addr.clone(),
                reason: listen_failure(&err),
            })?;
    }
    Ok(IdentTopic::new(if settings.publish_legacy_topic {
        LEGACY_TOPIC
    } else {
        TOPIC
    }))
}

/// The bootstrap addresses with the peer id each names, if any.
fn bootstrap_peers(addrs: &[Multiaddr]) -> Vec<(Option<PeerId>, Multiaddr)> {
    addrs
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
        .collect()
}

/// Why `listen_on` failed, as one line. libp2p's `TransportError::Other` displays as nothing:
/// the reason (say "Address already in use (os error 98)") is its source.
fn listen_failure(err: &libp2p::TransportError<std::io::Error>) -> String {
    match err {
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            "not an address to listen on (give /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT)"
                .to_owned()
        }
        libp2p::TransportError::Other(_) => crate::logging::one_line(err),
    }
}

/// A received message on its way to the validator.
struct Received {
    id: gossipsub::MessageId,
    from: PeerId,
    data: Vec<u8>,
}

/// The validator's decision, on its way back to gossipsub.
struct Verdict {
    id: gossipsub::MessageId,
    from: PeerId,
    acceptance: MessageAcceptance,
    /// Refused for a reason the sender could have seen itself: it counts against the sender.
    blames_sender: bool,
}

/// Messages held back until this node has read its member list; older ones are dropped.
const HELD_UNTIL_MEMBERS_KNOWN: usize = 1_024;

/// Judges received messages in arrival order, off the swarm task: tells gossipsub whether to
/// forward each one, and hands the valid ones to the node. Messages that arrive before the
/// node knows its members are not forwarded, but kept (a bounded number) and judged again
/// once the list is read, so the prices of a network starting at once are not lost.
async fn validate_messages(
    mut validator: Validator,
    mut queue: mpsc::Receiver<Received>,
    verdicts: mpsc::Sender<Verdict>,
    events: mpsc::Sender<NetworkEvent>,
    mut members: MemberView,
    metrics: Metrics,
) {
    let mut held: VecDeque<Vec<u8>> = VecDeque::new();
    loop {
        let received = tokio::select! {
            // Held messages first: they arrived before anything still queued.
            biased;
            Ok(()) = members.changed(), if !held.is_empty() => {
                let current = Arc::clone(&members.borrow_and_update());
                for data in std::mem::take(&mut held) {
                    if let Ok(gossip) = validator.validate(&data, SystemTime::now(), &current) {
                        metrics.received(gossip.kind());
                        let _ = events.send(NetworkEvent::Gossip(gossip)).await;
                    }
                }
                continue;
            }
            received = queue.recv() => match received {
                Some(received) => received,
                None => break,
            },
        };
        // `borrow`, not `borrow_and_update`: a new member list must still wake the branch above
        // that judges the held messages again.
        let current = Arc::clone(&members.borrow());
        let result = validator.validate(&received.data, SystemTime::now(), &current);
        let acceptance = match &result {
            Ok(gossip) => {
                metrics.received(gossip.kind());
                MessageAcceptance::Accept
            }
            Err(refusal) => {
                if refusal.reason == RefusalReason::MembersUnknown {
                    if held.len() >= HELD_UNTIL_MEMBERS_KNOWN {
                        held.pop_front();
                        metrics.limit_hit(Limit::HeldUntilMembersKnown);
                    }
                    held.push_back(received.data);
                }
                refused(refusal, &received.from, &metrics)
            }
        };
        let verdict = Verdict {
            id: received.id,
            from: received.from,
            acceptance,
            blames_sender: result.as_ref().is_err_and(Refusal::blames_sender),
        };
        if verdicts.send(verdict).await.is_err() {
            break;
        }
        if let Ok(gossip) = result {
            // Backpressure: if the node falls behind, validation waits (and past the queue,
            // the swarm task ignores new messages) rather than memory growing. A node without
            // use for messages (a bootstrap node) has dropped the receiver.
            let _ = events.send(NetworkEvent::Gossip(gossip)).await;
        }
    }
}

/// Logs and counts a refused message; what gossipsub is to do with it.
fn refused(refusal: &Refusal, from: &PeerId, metrics: &Metrics) -> MessageAcceptance {
    let (verb, acceptance, counter) = match refusal.action {
        Action::Reject => (
            "rejected",
            MessageAcceptance::Reject,
            metrics.rejected(refusal.reason),
        ),
        Action::Ignore => (
            "ignored",
            MessageAcceptance::Ignore,
            metrics.ignored(refusal.reason),
        ),
    };
    log::debug!(
        "{verb} a message from {from} ({}): {}",
        refusal.reason,
        refusal.detail
    );
    counter.inc();
    if refusal.reason == RefusalReason::OriginRate {
        metrics.limit_hit(Limit::OriginRate);
    }
    acceptance
}

fn build_swarm(
    keypair: &Keypair,
    settings: &NetworkSettings,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetworkError> {
    // Copies and replays of a message are recognised for as long as it could be valid.
    let duplicate_window = settings
        .validation
        .max_age
        .saturating_add(settings.validation.max_future_skew);
    let connections = settings.connections;
    let psk = settings.psk;
    let build = |err: &dyn std::fmt::Display| NetworkError::Build(err.to_string());
    match &psk {
        // The fingerprint identifies the key without revealing it: equal on every node of one
        // private network.
        Some(psk) => log::info!(
            "private network: swarm key fingerprint {}",
            psk.fingerprint()
        ),
        None => log::debug!("public network: no swarm key"),
    }
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_other_transport(|key| {
                transport::build(key, psk).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|err| build(&err))?
            // Bootstrap addresses may name hosts (/dns4/bootstrap/tcp/4001), e.g. in compose.
            .with_dns()
            .map_err(|err| build(&err))?
            // Bytes in and out per protocol: libp2p_bandwidth_bytes_total.
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| {
                Behaviour::new(key, connections, duplicate_window)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
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
    commands: mpsc::Receiver<Command>,
    to_validate: mpsc::Sender<Received>,
    verdicts: mpsc::Receiver<Verdict>,
    intake: Intake<Received>,
    blocked_log: LogLimiter,
    peers: watch::Sender<usize>,
    responsive: watch::Sender<usize>,
    /// When each connected peer last answered a ping (or connected).
    last_answer: HashMap<PeerId, Instant>,
    listen_addrs: watch::Sender<Vec<Multiaddr>>,
    pending: VecDeque<Pending>,
    last_redial: Option<Instant>,
    last_kad_refresh: Instant,
    bootstrap_dial_failures: u64,
    dial_log: LogLimiter,
}

impl SwarmTask {
    async fn run(mut self) {
        self.dial_bootstrap();
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A handle of its own: a permit borrows the sender, and must not borrow `self`.
        let to_validate = self.to_validate.clone();
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Publish(gossip)) => self.publish(gossip),
                    Some(Command::Dial(addrs)) => self.dial_known(addrs),
                    Some(Command::Crash) => break,
                    Some(Command::PublishRaw(bytes)) => {
                        let topic = self.topic.clone();
                        if let Err(err) = self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                            log::debug!("raw publish failed: {err}");
                        }
                    }
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(verdict) = self.verdicts.recv() => self.on_verdict(verdict),
                Ok(permit) = to_validate.reserve(), if !self.intake.is_empty() => {
                    if let Some(received) = self.intake.next() {
                        permit.send(received);
                    }
                }
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
                Err(PublishError::Duplicate) => {
                    // The same bytes went out before: nothing was sent this time.
                    log::debug!("not publishing a {} message twice", next.gossip.kind());
                    self.pending.pop_front();
                }
                Ok(_) => {
                    let kind = next.gossip.kind();
                    self.metrics.published(kind).inc();
                    Metrics::counter(&self.metrics.published_bytes, GossipLabel { kind })
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

    fn on_verdict(&mut self, verdict: Verdict) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&verdict.id, &verdict.from, verdict.acceptance);
        if verdict.blames_sender && self.intake.note_refusal(verdict.from, Instant::now()) {
            self.block(verdict.from);
        }
    }

    /// Cuts a peer off for [`intake::BLOCK_TIME`]: its connections close and new ones are
    /// denied (what it had already sent is still judged).
    fn block(&mut self, peer: PeerId) {
        self.metrics.limit_hit(Limit::RefusedPerPeer);
        if let Some(suppressed) = self.blocked_log.allow(Instant::now()) {
            log::warn!(
                "cut off peer {peer} for {:?}: more than {} refused messages in a minute{}",
                intake::BLOCK_TIME,
                self.settings.max_refused_per_peer,
                crate::logging::suppressed_note(suppressed)
            );
        }
        self.intake.block(peer, Instant::now());
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        // A peer cut off may have been our way to the others (a relay that forwarded a flood):
        // look for them directly now rather than at the next refresh.
        if self.last_kad_refresh.elapsed() >= KAD_REFRESH_INTERVAL {
            self.last_kad_refresh = Instant::now();
            self.look_around();
        }
    }

    fn maintain(&mut self) {
        let responsive = self
            .last_answer
            .values()
            .filter(|answered| answered.elapsed() <= RESPONSIVE_WINDOW)
            .count();
        self.responsive.send_if_modified(|current| {
            let changed = *current != responsive;
            *current = responsive;
            changed
        });
        for peer in self.intake.expired_blocks(Instant::now()) {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        self.flush_pending();
        let no_peers = self.swarm.connected_peers().next().is_none();
        let redial_due = self
            .last_redial
            .is_none_or(|last| last.elapsed() >= REDIAL_INTERVAL);
        if no_peers && redial_due {
            self.dial_bootstrap();
        }
        let refresh_interval = if self.swarm.connected_peers().count() >= WELL_CONNECTED {
            KAD_QUIET_REFRESH_INTERVAL
        } else {
            KAD_REFRESH_INTERVAL
        };
        if !no_peers && self.last_kad_refresh.elapsed() >= refresh_interval {
            self.last_kad_refresh = Instant::now();
            self.look_around();
        }
    }

    /// One Kademlia lookup of our own id: it finds (and so lets us dial) the peers closest to
    /// us. Not a full `bootstrap()`, which walks every bucket with a lookup each: in a
    /// 100-node network that was hundreds of requests per node, connections to most peers and
    /// most of an idle node's traffic.
    fn look_around(&mut self) {
        let me = *self.swarm.local_peer_id();
        self.swarm.behaviour_mut().kad.get_closest_peers(me);
    }

    fn dial_known(&mut self, addrs: Vec<Multiaddr>) {
        let me = *self.swarm.local_peer_id();
        for addr in addrs {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                continue;
            };
            if peer == me || self.swarm.is_connected(&peer) {
                continue;
            }
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            if let Err(err) = self.swarm.dial(addr.clone()) {
                log::debug!("dialing {addr}: {err}");
            }
        }
    }

    /// A failed dial to a bootstrap node is worth a warning (rate-limited): without one, a node
    /// whose bootstrap is gone would wait for peers in silence.
    fn on_dial_failure(&mut self, peer: Option<PeerId>, error: &DialError) {
        let to_bootstrap = self
            .bootstrap
            .iter()
            .any(|(bootstrap_peer, addr)| match peer {
                Some(peer) => *bootstrap_peer == Some(peer),
                None => error.to_string().contains(&addr.to_string()),
            });
        if !to_bootstrap {
            log::debug!("dial to {peer:?} failed: {error}");
            return;
        }
        self.bootstrap_dial_failures += 1;
        if let Some(suppressed) = self.dial_log.allow(Instant::now()) {
            log::warn!(
                "cannot reach a bootstrap node ({} failed dials so far): {}{}",
                self.bootstrap_dial_failures,
                one_line(&error.to_string()),
                crate::logging::suppressed_note(suppressed)
            );
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

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.record(&event);
        match event {
            SwarmEvent::NewListenAddr { .. }
            | SwarmEvent::ExpiredListenAddr { .. }
            | SwarmEvent::ListenerClosed { .. }
            | SwarmEvent::ListenerError { .. } => self.on_listener_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => self.on_connected(peer_id, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    log::debug!("disconnected from {peer_id}");
                    self.last_answer.remove(&peer_id);
                }
                self.update_peer_count();
            }
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                send_back_addr,
                ..
            } if cause.downcast_ref::<Exceeded>().is_some() => {
                self.metrics.limit_hit(Limit::Connections);
                log::debug!("refused a connection from {send_back_addr}: {cause}");
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                ..
            } if cause.downcast_ref::<Exceeded>().is_some() => {
                self.metrics.limit_hit(Limit::Connections);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                self.on_dial_failure(peer_id, &error);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event),
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

    /// libp2p's own metrics, and pings as signs of life.
    fn record(&mut self, event: &SwarmEvent<BehaviourEvent>) {
        self.p2p_metrics.record(event);
        let SwarmEvent::Behaviour(behaviour) = event else {
            return;
        };
        match behaviour {
            BehaviourEvent::Gossipsub(event) => self.p2p_metrics.record(event),
            BehaviourEvent::Kad(event) => self.p2p_metrics.record(event),
            BehaviourEvent::Identify(event) => self.p2p_metrics.record(event),
            BehaviourEvent::Ping(event) => {
                self.p2p_metrics.record(event);
                if event.result.is_ok() {
                    self.last_answer.insert(event.peer, Instant::now());
                }
            }
            BehaviourEvent::Limits(event) => match *event {},
            BehaviourEvent::Blocked(event) => match *event {},
        }
    }

    /// Where this node listens, as the swarm reports it.
    fn on_listener_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                log::info!("listening on {address}/p2p/{}", self.swarm.local_peer_id());
                self.listen_addrs.send_modify(|addrs| addrs.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs
                    .send_modify(|addrs| addrs.retain(|a| *a != address));
            }
            // Binding fails in `listen_on` (see `spawn`); a listener that fails later says so
            // here. Outbound connections still work, so the node goes on.
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                if let Err(error) = reason {
                    let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                    log::error!(
                        "stopped listening on {}: {}",
                        shown.join(", "),
                        crate::logging::one_line(&error)
                    );
                }
                // The swarm sends no ExpiredListenAddr for a closed listener's addresses.
                self.listen_addrs
                    .send_modify(|addrs| addrs.retain(|a| !addresses.contains(a)));
            }
            SwarmEvent::ListenerError { error, .. } => {
                log::warn!("a listener failed: {}", crate::logging::one_line(&error));
            }
            _ => {}
        }
    }

    fn on_connected(&mut self, peer: PeerId, connections: u32) {
        if connections == 1 {
            log::debug!("connected to {peer}");
        }
        self.last_answer.insert(peer, Instant::now());
        // The first connection is the way into the network: look around at once. Later
        // connections do not trigger lookups (each lookup dials peers, which would trigger
        // more: a storm in a large network); the periodic refresh covers them.
        if self.swarm.connected_peers().count() == 1 {
            self.last_kad_refresh = Instant::now();
            self.look_around();
        }
        self.update_peer_count();
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

    /// Hands a received message to the validator; with the validator too far behind, the
    /// message is ignored rather than queued without bound.
    fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            return;
        };
        let received = Received {
            id: message_id,
            from: propagation_source,
            data: message.data,
        };
        if let Err(received) = self.intake.push(propagation_source, received) {
            self.metrics.limit_hit(Limit::ValidationQueue);
            self.metrics.ignored(RefusalReason::ValidationQueue).inc();
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &received.id,
                    &received.from,
                    MessageAcceptance::Ignore,
                );
        }
    }
}

/// libp2p's dial errors span lines; a log line should not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;
    use crate::identity::Identity;
    use crate::membership::Members;
    use crate::message::PriceMessage;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::PriceData;

    fn price_bytes(origin: &Identity) -> Vec<u8> {
        let machine = IdGenerator::machine_id_from_address(&origin.address());
        let id = IdGenerator::new(machine).next_id().unwrap();
        let observed_at = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let price = UsdPrice::from_e8(300_000_000_000).unwrap();
        let data = PriceData {
            pair: Pair::EthUsd,
            id,
            price,
            observed_at,
            origin: origin.address(),
        };
        Gossip::Price(PriceMessage::originate(data, origin.signer())).encode()
    }

    #[tokio::test]
    async fn messages_heard_before_the_member_list_are_judged_again_once_it_is_read() {
        let origins: Vec<Identity> = (1..=2u8)
            .map(|seed| Identity::from_secret(&[seed; 32]).unwrap())
            .collect();
        let unknown = Arc::new(Members::for_node(None));
        let (members, view) = watch::channel(Arc::clone(&unknown));
        let (queue_tx, queue) = mpsc::channel(8);
        let (verdicts_tx, mut verdicts) = mpsc::channel(8);
        let (events_tx, mut events) = mpsc::channel(8);
        let settings = ValidationSettings {
            max_age: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(5),
            max_origin_rate: 60,
            pairs: crate::pair::PairSet::only(crate::pair::Pair::EthUsd),
        };
        let task = tokio::spawn(validate_messages(
            Validator::new(settings),
            queue,
            verdicts_tx,
            events_tx,
            view,
            Metrics::default(),
        ));
        let receive = |data| Received {
            id: gossipsub::MessageId::from(vec![1]),
            from: PeerId::random(),
            data,
        };
        queue_tx
            .send(receive(price_bytes(&origins[0])))
            .await
            .unwrap();
        let first = verdicts.recv().await.unwrap();
        assert_eq!(first.acceptance, MessageAcceptance::Ignore, "not forwarded");
        assert!(events.try_recv().is_err(), "not used yet");

        let list = origins.iter().map(|origin| (origin.address(), 0)).collect();
        members.send_replace(Arc::new(unknown.with_database(list)));
        queue_tx
            .send(receive(price_bytes(&origins[1])))
            .await
            .unwrap();
        let mut heard = Vec::new();
        for _ in 0..2 {
            let event = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
            let Ok(Some(NetworkEvent::Gossip(Gossip::Price(price)))) = event else {
                panic!("a price");
            };
            heard.push(price.data.origin);
        }
        assert_eq!(
            heard,
            vec![origins[0].address(), origins[1].address()],
            "the held message is judged again, before the newer one"
        );
        drop(queue_tx);
        task.await.unwrap();
    }
}
