//! A node's life, top to bottom. [`start`] builds and spawns every part; the node's task runs
//! the event loop below through three [`Phase`]s — waiting for peers, connecting to the
//! database, running — until it is cancelled; then [`Node::stop`] stores every verified price
//! the node holds, removes its heartbeat row and closes the database, and the network closes
//! last.
//!
//! The loop only dispatches: the decisions are made by the pure parts it owns — the [`Pool`]
//! (pending → verified → stored), [`Cosigning`] (whether and when to co-sign), the [`Writer`]
//! (the lease, when to flush) — and it carries out what they return. Slow work runs in the
//! background ([`work`]) and comes back as an event.
//!
//! - `settings`: what a node needs, and the rules those settings must keep, checked at start
//!   whoever built them (the command line, the test harness, a benchmark).
//! - `start`: the wiring — network, HTTP and API, the node's task.
//! - `database`: connecting to the database in the background at start.
//! - `gossip`: what the node does with a price, an attestation or a stored notice: the pool,
//!   quorums reached, co-signing.
//! - `rounds` and `origination`: observing the market and minting new prices;
//!   [`crate::trigger`] decides when a round starts.
//! - `timers`: the small waits the event loop selects over.
//! - `work`: background tasks in one set.
//! - `status`: what `/status` shows and `/health` judges ([`health`] holds the rules).

mod database;
mod gossip;
mod health;
mod origination;
mod rounds;
mod settings;
mod start;
mod status;
mod timers;
mod work;

use database::Connected;
use timers::{age, ended, flush_check_interval, interval, next_value, sleep_until, tick};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use alloy_primitives::Address;
use anyhow::Context;
use rust_decimal::Decimal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use prometheus_client::registry::Registry;

use crate::cosign::{Action, Cosigning, Declined, FallbackOutcome, Observation};
use crate::labels::Limit;
use crate::logging::LogLimiter;
use crate::membership::{MemberList, Members};
use crate::message::{
    Attestation, CommitMessage, Gossip, PriceMessage, ReportMessage, StoredNotice,
};
pub use crate::metrics::Metrics;
use crate::network::{NetworkEvent, NetworkHandle};
use crate::pair::{Pair, PairSet};
use crate::pool::{Added, Pool};
use crate::price::UsdPrice;
use crate::signed::{self, PriceData, Report, Round};
use crate::store::lease::Participant;
use crate::store::read::StoredRound;
use crate::store::{DbSettings, Store};
use crate::time::{Moment, unix_seconds};
use crate::trigger::{Decision, Reason, StallCause, Stalled, Triggers, Verified};
use crate::writer::{LeaseState, Writer};
use libp2p::Multiaddr;
use origination::{ObservationRound, Origination};
pub use settings::{InvalidSettings, MIN_OBSERVE_INTERVAL, NodeSettings};
pub use start::start;
pub use status::{NodeStatus, Observed};
use work::{Done, Job, Work};

pub use crate::cosign::COSIGN_WINDOW;

/// How often the waiting-for-peers line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(3);
/// How often a failed database connection is retried at start.
const DB_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How often a node short of peers looks up the others' addresses in the database.
const REJOIN_INTERVAL: Duration = Duration::from_secs(10);
/// How often expired prices are swept from the pool.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(10);
/// How often `/status` and `/health` are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A stop takes at most about this long, database or not (Docker waits 10 s before SIGKILL).
pub const STOP_BUDGET: Duration = Duration::from_secs(4);
/// The part of [`STOP_BUDGET`] kept for removing the heartbeat row and closing the pool.
const STOP_CLEANUP: Duration = Duration::from_secs(1);
/// After the node's own stop: how long the network, the HTTP server and stray tasks get.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a stopping node gives its last stored notices to leave before the network closes.
const NOTICE_GRACE: Duration = Duration::from_millis(300);

/// Runs a node until `shutdown` resolves, then stops cleanly: every verified price it holds is
/// stored, the heartbeat row is deleted and the network closes.
pub async fn run(
    settings: NodeSettings,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let node = start(settings, metrics).await?;
    tokio::select! {
        () = shutdown => {}
        // The node stopped on its own (its network died): report why.
        () = node.stopping() => {}
    }
    node.stop().await
}

/// A node running in the background.
pub struct RunningNode {
    /// Where `/health`, `/status` and `/metrics` are served, if asked for.
    pub http_addr: Option<SocketAddr>,
    /// What `/status` shows, refreshed about once a second.
    pub status: watch::Receiver<NodeStatus>,
    registry: Arc<Registry>,
    events: broadcast::Sender<NodeEvent>,
    control: mpsc::UnboundedSender<Control>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Facts about a price's life as this node saw them, one event per fact: for the API's consumers
/// (which render them on the HTTP server's runtime, and only with `--http`), benchmarks and
/// tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// This node published a new price.
    Originated { id: u64, at: Instant },
    /// This node's pool reached the quorum for a round.
    Verified {
        /// The round's report as the pool held it then: a quorum of member signatures over
        /// their own observations. Shared, never copied, by every subscriber.
        report: Arc<Report>,
        /// A stored notice for the round came first: consumers have it already.
        already_stored: bool,
        at: Instant,
    },
}

#[derive(Debug)]
enum Control {
    Originate,
    #[cfg(feature = "test-util")]
    CrashNetwork,
}

impl RunningNode {
    /// Stops the node cleanly and waits for it; an error says why it had stopped on its own.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("the node task panicked")?
    }

    /// Resolves once the node is stopping: asked to, or on its own (its network died; then
    /// [`RunningNode::stop`] says why).
    pub async fn stopping(&self) {
        self.shutdown.cancelled().await;
    }

    /// Whether the node is stopping (asked to, or on its own).
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Ends the node's network task as a crash would. Only for testing that the node notices.
    #[cfg(feature = "test-util")]
    pub fn crash_network(&self) {
        let _ = self.control.send(Control::CrashNetwork);
    }

    /// Starts a round of every pair at the next observation (made at once), whatever the market
    /// did: for tests and benchmarks. Before the node runs, the round waits until it does.
    pub fn originate_now(&self) {
        let _ = self.control.send(Control::Originate);
    }

    /// Every [`NodeEvent`] from now on. Events are dropped when a subscriber lags far behind.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// The node's metrics in the Prometheus text format (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Where the node's task hears from outside: the network and its owner.
struct Inbox {
    gossip: mpsc::Receiver<NetworkEvent>,
    controls: mpsc::UnboundedReceiver<Control>,
    /// `None` once it has ended.
    network_task: Option<JoinHandle<()>>,
}

/// Where the node is in its life. The database connection is made in the background from the
/// start (its heartbeat table tells a node without peers where the others are), but the node
/// heartbeats, and so can become the writer, only once it has its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Until `--min-peers` peers are connected.
    WaitingForPeers,
    /// Has its peers; still connecting (migrating, registering), retried until it works.
    ConnectingToDatabase,
    /// Heartbeating, originating, co-signing and, while the writer, storing.
    Running,
}

/// When things last happened, for `/health`.
#[derive(Debug)]
struct Liveness {
    started: Instant,
    running_since: Option<Instant>,
    last_heartbeat_ok: Option<Instant>,
    last_gossip: Option<Instant>,
}

struct Node {
    settings: NodeSettings,
    me: Address,
    phase: Phase,
    // Consensus: the prices, and this node's part in starting and signing them.
    pool: Pool,
    cosigning: Cosigning,
    triggers: Triggers,
    origination: Origination,
    writer: Writer,
    /// The member set this node applies; the network's validator reads it too.
    members: watch::Sender<Arc<Members>>,
    // The outside world.
    network: NetworkHandle,
    work: Work,
    /// Cancelled when the node is to stop; stops the loop, the heartbeats and the work.
    shutdown: CancellationToken,
    // What others see of the node.
    liveness: Liveness,
    metrics: Metrics,
    /// Facts for whoever listens: the API's consumers (with `--http`), benchmarks, tests.
    events: broadcast::Sender<NodeEvent>,
    status: watch::Sender<NodeStatus>,
    cosign_refusals: LogLimiter,
}

impl Node {
    /// The node's whole life after [`start`]: the event loop, then the stop, then the network
    /// and the HTTP server close.
    async fn run(
        mut self,
        mut inbox: Inbox,
        http_stop: CancellationToken,
        http_task: Option<JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let ended = self.event_loop(&mut inbox).await;
        if let Err(err) = &ended {
            log::error!("{}; stopping", crate::logging::one_line(err.as_ref()));
            self.shutdown.cancel();
        }
        self.stop().await;
        // The network closes when its last handle is gone.
        drop(self);
        drop(inbox.gossip);
        let close = async {
            if let Some(network) = inbox.network_task {
                let _ = network.await;
            }
            http_stop.cancel();
            if let Some(http) = http_task {
                let _ = http.await;
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, close).await.is_err() {
            log::warn!("the network or the HTTP server did not close within {CLOSE_GRACE:?}");
        }
        log::info!("node stopped");
        ended
    }

    async fn event_loop(&mut self, inbox: &mut Inbox) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let mut peers = self.network.clone();
        let mut progress = interval(PROGRESS_INTERVAL);
        let mut lease_states: Option<watch::Receiver<LeaseState>> = None;
        let mut member_lists: Option<watch::Receiver<MemberList>> = None;
        let mut observe_timer: Option<Interval> = None;
        let mut flush_timer = interval(flush_check_interval(self.settings.pool.flush_delay));
        let mut expire_timer = interval(EXPIRE_INTERVAL);
        let mut status_timer = interval(STATUS_INTERVAL);
        let mut rejoin_timer = interval(REJOIN_INTERVAL);
        self.connect_database();
        loop {
            let was = self.phase;
            let turn_due = self.cosigning.next_turn_due();
            let notice_check_due = if self.work.is_running(Job::CheckNotices) {
                None
            } else {
                self.writer.next_notice_check()
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = ended(&mut inbox.network_task) => {
                    anyhow::bail!("the network task ended unexpectedly")
                }
                // Waiting for peers.
                _ = progress.tick(), if self.phase == Phase::WaitingForPeers => {
                    self.phase = self.check_peers();
                }
                () = peers.peers_changed(), if self.phase == Phase::WaitingForPeers => {
                    self.phase = self.check_peers();
                }
                // Background work coming back, the database connection among it.
                Some(done) = self.work.next(), if !self.work.is_empty() => {
                    if self.on_done(done) && self.phase == Phase::ConnectingToDatabase {
                        self.phase = Phase::Running;
                    }
                }
                // Short of peers at any time: the heartbeat table says where the others are.
                _ = rejoin_timer.tick() => self.look_up_peers(),
                // Running.
                state = next_value(&mut lease_states) => self.on_heartbeat(state),
                list = next_value(&mut member_lists) => self.on_member_list(list),
                _ = tick(&mut observe_timer) => self.observe(),
                Some(NetworkEvent::Gossip(gossip)) = inbox.gossip.recv() => self.on_gossip(gossip),
                Some(control) = inbox.controls.recv() => match control {
                    Control::Originate => self.originate(),
                    #[cfg(feature = "test-util")]
                    Control::CrashNetwork => self.network.crash(),
                },
                () = sleep_until(turn_due), if turn_due.is_some() => {
                    let actions = self.cosigning.take_turns(&self.pool, Instant::now());
                    self.carry_out(actions);
                }
                () = sleep_until(notice_check_due), if notice_check_due.is_some() => {
                    self.check_notices();
                }
                _ = flush_timer.tick() => self.flush_if_due(),
                _ = expire_timer.tick() => self.expire(),
                _ = status_timer.tick() => self.refresh_status(),
            }
            self.note_stalled();
            if self.phase == Phase::Running && was != Phase::Running {
                self.liveness.running_since = Some(Instant::now());
                let (states, lists) = self
                    .writer
                    .start_heartbeats(self.participant(), self.shutdown.clone());
                lease_states = Some(states);
                member_lists = Some(lists);
                observe_timer = Some(interval(self.settings.trigger.observe_interval));
                self.refresh_status();
            }
        }
    }

    /// Leaves [`Phase::WaitingForPeers`] once enough peers are connected.
    fn check_peers(&mut self) -> Phase {
        let peers = self.network.connected_peers();
        if peers < self.settings.min_peers {
            log::info!("waiting for peers: {peers}/{}", self.settings.min_peers);
            return Phase::WaitingForPeers;
        }
        if self.writer.store().is_some() {
            log::info!("connected to {peers} peers");
            Phase::Running
        } else {
            log::info!("connected to {peers} peers; waiting for the database");
            Phase::ConnectingToDatabase
        }
    }

    /// Background work came back. Returns whether it was the database connection.
    fn on_done(&mut self, done: Done) -> bool {
        match done {
            Done::Observed(round) => self.on_observed(round),
            Done::Flushed(flush) => {
                let members = Arc::clone(&self.members.borrow());
                let notices = self.writer.flushed(flush, &mut self.pool, &members);
                self.publish_stored(notices);
            }
            Done::Connected(connected) => {
                log::info!("database connected: {}", self.settings.db.url);
                let Connected { store, newest } = *connected;
                for (pair, verified) in newest {
                    log::info!(
                        "newest stored {pair}: {} (round {}, observed at {})",
                        verified.value,
                        verified.id,
                        verified.observed_at
                    );
                    self.triggers.verified(pair, verified, Instant::now());
                }
                self.writer.connected(store);
                return true;
            }
            Done::FoundPeers(addrs) => self.dial_peers(addrs),
            Done::NoticesChecked(check) => {
                let rows = self.writer.notices_checked(check, Instant::now());
                self.found_stored(&rows);
                self.check_notices();
            }
            Done::Nothing(job) => log::debug!("background work {job:?} ended without a result"),
        }
        false
    }

    /// Reads the other nodes' addresses from the heartbeat table when short of peers.
    fn look_up_peers(&mut self) {
        let Some(store) = self.writer.store().cloned() else {
            return;
        };
        if self.work.is_running(Job::FindPeers)
            || self.network.connected_peers() >= self.settings.min_peers
        {
            return;
        }
        let me = self.me;
        self.work.spawn(Job::FindPeers, async move {
            match store.peer_addresses(&me).await {
                Ok(addrs) => Done::FoundPeers(addrs),
                Err(err) => {
                    log::warn!("cannot read peers' addresses from the database: {err}");
                    Done::FoundPeers(Vec::new())
                }
            }
        });
    }

    fn dial_peers(&mut self, addrs: Vec<String>) {
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .filter_map(|addr| match addr.parse() {
                Ok(addr) => Some(addr),
                Err(err) => {
                    log::debug!("ignoring a peer address {addr:?} from the database: {err}");
                    None
                }
            })
            .collect();
        if !addrs.is_empty() {
            log::info!(
                "short of peers: dialing {} addresses from the heartbeat table",
                addrs.len()
            );
            self.network.dial(addrs);
        }
    }

    fn on_heartbeat(&mut self, state: LeaseState) {
        if state.healthy {
            self.liveness.last_heartbeat_ok = Some(Instant::now());
        }
        self.writer.on_heartbeat(state);
    }

    /// A new member list from the database: the validator and the pool apply it at once.
    fn on_member_list(&mut self, list: MemberList) {
        let Some(list) = list else { return };
        let members = Arc::new(self.members.borrow().with_database((*list).clone()));
        let count = members.count().unwrap_or(0);
        self.metrics.members.set(count as i64);
        if !members.is_member(&self.me) {
            log::warn!(
                "this node ({}) is not a member: its signatures do not count \
                 (an operator adds it with `oracle signers add {}`)",
                self.me,
                self.me
            );
        }
        self.members.send_replace(Arc::clone(&members));
        for round in self.pool.set_members(members, Moment::now()) {
            self.count_verified(&round);
        }
    }

    /// Stores the due prices, if this node is the writer and no flush is running.
    fn flush_if_due(&mut self) {
        if self.work.is_running(Job::Flush) {
            return;
        }
        if let Some(flush) = self.writer.flush_due(&self.pool, Moment::now()) {
            // Not cancelled by the stop, which waits for it instead.
            self.work
                .spawn_uncancelled(Job::Flush, async move { Done::Flushed(flush.await) });
        }
    }

    fn publish_stored(&self, notices: Vec<StoredNotice>) {
        for notice in notices {
            self.network.publish(Gossip::Stored(notice));
        }
    }

    fn expire(&mut self) {
        let expired = self.pool.expire(Moment::now());
        if !expired.unverified.is_empty() {
            log::debug!(
                "dropped {} prices that never reached the quorum",
                expired.unverified.len()
            );
            self.metrics
                .expired(crate::metrics::Expiry::Unverified)
                .inc_by(expired.unverified.len() as u64);
        }
        if !expired.verified.is_empty() {
            log::warn!(
                "dropped {} verified prices that could not be stored within --retention: {:?}",
                expired.verified.len(),
                expired.verified
            );
            self.metrics
                .expired(crate::metrics::Expiry::Verified)
                .inc_by(expired.verified.len() as u64);
        }
    }

    /// Graceful stop within [`STOP_BUDGET`], in order: heartbeats end, the flush in flight
    /// finishes, every verified price this node holds (due or not) is stored under a claimed
    /// lease, the heartbeat row goes and the pool closes. A step the database is too slow for is
    /// abandoned: a running writer stores those prices, and the heartbeat row expires.
    async fn stop(&mut self) {
        log::info!("stopping");
        let deadline = tokio::time::Instant::now() + STOP_BUDGET;
        self.writer.end_heartbeats(deadline - STOP_BUDGET / 2).await;
        if self.writer.store().is_none() {
            return;
        }
        let me = self.participant();
        let members = Arc::clone(&self.members.borrow());
        let stored = tokio::time::timeout_at(deadline - STOP_CLEANUP, async {
            // Cancelled work ends at once; a flush in flight is waited for.
            while let Some(done) = self.work.next().await {
                if let Done::Flushed(flush) = done {
                    let notices = self.writer.flushed(flush, &mut self.pool, &members);
                    self.publish_stored(notices);
                }
            }
            let notices = self
                .writer
                .store_before_stopping(&mut self.pool, &members, &me)
                .await;
            if !notices.is_empty() {
                self.publish_stored(notices);
                tokio::time::sleep(NOTICE_GRACE).await;
            }
        });
        if stored.await.is_err() {
            log::warn!(
                "stopping with {} verified prices unstored: the database did not answer in time; a running writer stores them",
                self.pool.counts().verified
            );
        }
        self.writer.leave(&me, deadline).await;
    }

    /// Who this node is in the heartbeat table.
    fn participant(&self) -> Participant {
        Participant {
            address: self.me,
            name: self.settings.name.clone(),
            peer_id: self.network.peer_id().to_string(),
            listen_addrs: self.listen_addrs(),
        }
    }

    /// Where others can dial this node, as text.
    fn listen_addrs(&self) -> Vec<String> {
        self.network
            .listen_addrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}
