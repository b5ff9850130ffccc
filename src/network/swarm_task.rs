//! The swarm task: the one owner of the Swarm. It publishes (queueing until peers subscribe),
//! hands received messages to the validator and its verdicts to gossipsub, and looks after
//! connections and discovery.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::connection_limits::Exceeded;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, PublishError};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::handle::Command;
use super::intake::{self, Intake, IntakeBounds};
use super::swarm;
use super::validation::{Action, RefusalReason};
use super::validator::{Received, Verdict};
use super::{NetworkSettings, Probe, RESPONSIVE_WINDOW, SILENT_PEER_CLOSE};
use crate::labels::Limit;
use crate::logging::LogLimiter;
use crate::message::Gossip;

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
const WELL_CONNECTED: usize = super::behaviour::MESH_DEGREE;

/// A message waiting for subscribed peers.
struct Pending {
    gossip: Gossip,
    bytes: Vec<u8>,
    since: Instant,
}

/// The channels between the swarm task and the rest: commands in, messages out to the
/// validator and verdicts back, and what the task reports.
pub(super) struct Links {
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) to_validate: mpsc::Sender<Received>,
    pub(super) verdicts: mpsc::Receiver<Verdict>,
    pub(super) peers: watch::Sender<usize>,
    pub(super) responsive: watch::Sender<usize>,
    pub(super) listen_addrs: watch::Sender<Vec<Multiaddr>>,
}

pub(super) struct SwarmTask {
    swarm: Swarm<Behaviour>,
    topic: IdentTopic,
    settings: NetworkSettings,
    bootstrap: Vec<(Option<PeerId>, Multiaddr)>,
    probe: Arc<dyn Probe>,
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
    /// The task for `swarm` (built, subscribed and listening); libp2p's own metrics go into
    /// `registry`.
    pub(super) fn new(
        swarm: Swarm<Behaviour>,
        topic: IdentTopic,
        settings: NetworkSettings,
        probe: Arc<dyn Probe>,
        registry: &mut Registry,
        links: Links,
    ) -> Self {
        let intake = Intake::new(IntakeBounds {
            per_peer_queue: settings.validation_queue.max(1),
            max_refused_per_minute: settings.max_refused_per_peer,
        });
        Self {
            swarm,
            topic,
            bootstrap: swarm::bootstrap_peers(&settings.bootstrap),
            settings,
            probe,
            p2p_metrics: libp2p::metrics::Metrics::new(registry),
            commands: links.commands,
            to_validate: links.to_validate,
            verdicts: links.verdicts,
            intake,
            blocked_log: LogLimiter::default(),
            peers: links.peers,
            responsive: links.responsive,
            last_answer: HashMap::new(),
            listen_addrs: links.listen_addrs,
            pending: VecDeque::new(),
            last_redial: None,
            last_kad_refresh: Instant::now(),
            bootstrap_dial_failures: 0,
            dial_log: LogLimiter::default(),
        }
    }

    pub(super) async fn run(mut self) {
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
                    #[cfg(feature = "test-util")]
                    Some(Command::Crash) => break,
                    #[cfg(feature = "test-util")]
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
                    self.probe.sent(kind, next.bytes.len());
                    self.pending.pop_front();
                }
                Err(PublishError::NoPeersSubscribedToTopic | PublishError::AllQueuesFull(_)) => {
                    if next.since.elapsed() > self.settings.validation.max_age {
                        log::warn!(
                            "gave up publishing a {} message: no subscribed peer for {:?}",
                            next.gossip.kind(),
                            self.settings.validation.max_age
                        );
                        self.probe.publish_dropped();
                        self.pending.pop_front();
                        continue;
                    }
                    self.probe.publish_retried();
                    return;
                }
                Err(err) => {
                    log::error!("cannot publish a {} message: {err}", next.gossip.kind());
                    self.probe.publish_dropped();
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
        self.probe.limit_hit(Limit::RefusedPerPeer);
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
        self.close_silent();
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

    /// Closes the connections of peers that answered no ping for [`SILENT_PEER_CLOSE`].
    fn close_silent(&mut self) {
        let silent: Vec<PeerId> = self
            .last_answer
            .iter()
            .filter(|(_, answered)| answered.elapsed() > SILENT_PEER_CLOSE)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in silent {
            log::info!(
                "closing the connection to {peer}: no ping answered for {}s",
                SILENT_PEER_CLOSE.as_secs()
            );
            // Once: its ConnectionClosed may come later than the next maintenance.
            self.last_answer.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
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
        self.probe.connected_peers(count);
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
                self.probe.limit_hit(Limit::Connections);
                log::debug!("refused a connection from {send_back_addr}: {cause}");
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                ..
            } if cause.downcast_ref::<Exceeded>().is_some() => {
                self.probe.limit_hit(Limit::Connections);
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
            self.probe.limit_hit(Limit::ValidationQueue);
            self.probe
                .refused(RefusalReason::ValidationQueue, Action::Ignore);
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
