//! A node's life, top to bottom. [`start`] spawns the network and the node's task. The task's
//! event loop goes through three [`Phase`]s — waiting for peers, connecting to the database,
//! running — until it is cancelled; then [`Node::stop`] stores every verified price the node
//! holds, removes its heartbeat row and closes the database, and the network closes last.
//!
//! - [`cosign`]: whether to co-sign a peer's price.
//! - [`writer`]: the lease as the heartbeats see it, when to flush, whose stored notices count.
//! - [`health`]: the rules `/health` applies.
//!
//! Slow work (fetching, database calls, heartbeats) runs in tasks on one [`TaskTracker`] and
//! reports back through channels, so the loop never blocks; one [`CancellationToken`] stops it
//! all, and the stop waits for work in flight within [`STOP_BUDGET`].

mod cosign;
mod health;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use anyhow::Context;
use rust_decimal::Decimal;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use prometheus_client::registry::Registry;

use crate::committee::{self, CommitteeSettings};
use crate::http::{self, DatabaseState, NodeStatus, Observed};
use crate::id::IdGenerator;
use crate::identity::Identity;
use crate::logging::LogLimiter;
use crate::membership::Members;
use crate::message::{Attestation, Gossip, PriceData, PriceMessage, StoredNotice};
use crate::metrics::{Metrics, SourceFailureLabels, SourceLabel};
use crate::network::{self, NetworkEvent, NetworkHandle, NetworkSettings};
use crate::pair::Pair;
use crate::pool::{Added, Moment, Pool, PoolSettings};
use crate::price::{FeedError, FeedReport, FeedSettings, PriceFeed, UsdPrice};
use crate::store::lease::{self, LeaseSettings, LeaseState, MemberList, Participant};
use crate::store::prices::{FlushOutcome, VerifiedPrice};
use crate::store::{DbSettings, Store, StoreError};
use libp2p::Multiaddr;

pub use cosign::COSIGN_WINDOW;
use cosign::{Cosigner, Decision, FallbackTurns, Observation};
use writer::WriterDuties;

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

/// Everything a node needs.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub name: String,
    pub identity: Identity,
    pub network: NetworkSettings,
    pub min_peers: usize,
    pub pool: PoolSettings,
    pub price_interval: Duration,
    pub max_deviation: Decimal,
    pub lease: LeaseSettings,
    pub feed: FeedSettings,
    pub db: DbSettings,
    pub migrate: bool,
    /// Serve `/health`, `/status`, `/metrics` and the `/v1` API here.
    pub http: Option<SocketAddr>,
    /// Bounds on what the `/v1` API's readers can make the node do.
    pub api: crate::api::ApiLimits,
    /// Narrows the signers table to these members (`--trusted-signers`).
    pub trusted_signers: Option<std::collections::HashSet<Address>>,
    /// Add this node's key to the signers table at start (`--register`).
    pub register: bool,
    /// Peers' prices waiting for this node's own observation, and (separately) for its
    /// fallback turn; past it new ones are dropped.
    pub max_cosign_queue: usize,
    /// Who co-signs each price at once, and when the others step in.
    pub committee: CommitteeSettings,
}

/// One fetch round: every configured pair's median, or why it has none.
type FetchResult = Vec<(Pair, Result<UsdPrice, FeedError>)>;
/// A flush's outcome, with the pair of each price in its batch.
type FlushResult = (HashMap<u64, Pair>, Result<FlushOutcome, StoreError>);

/// Runs a node until `shutdown` resolves, then stops cleanly: every verified price it holds is
/// stored, the heartbeat row is deleted and the network closes.
pub async fn run(
    settings: NodeSettings,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
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

/// Moments in a price's life as this node saw them, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    /// This node published a new price.
    Originated { id: u64, at: Instant },
    /// This node's pool reached the quorum for a price.
    Verified { id: u64, at: Instant },
}

#[derive(Debug)]
enum Control {
    Originate,
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

    /// Ends the node's network task as a crash would. Only for testing that the node notices.
    #[doc(hidden)]
    pub fn crash_network(&self) {
        let _ = self.control.send(Control::CrashNetwork);
    }

    /// Fetches, signs and publishes a price now, besides the `--price-interval` schedule.
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

/// Starts a node: network, HTTP endpoint (when configured) and the node's task.
pub async fn start(settings: NodeSettings, metrics: Metrics) -> anyhow::Result<RunningNode> {
    let feed = Arc::new(PriceFeed::new(settings.feed.clone())?);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    // Nobody counts until the member list has been read from the database.
    let initial_members = Arc::new(Members::for_node(settings.trusted_signers.clone()));
    metrics.members.set(-1);
    let (members, member_view) = watch::channel(Arc::clone(&initial_members));
    let (network, gossip, network_task) = network::spawn(
        settings.identity.keypair(),
        settings.network.clone(),
        member_view,
        metrics.clone(),
        &mut registry,
    )?;
    let registry = Arc::new(registry);
    let (status_tx, status) = watch::channel(NodeStatus::default());
    // HTTP outlives the node's own stop, so that /health answers until the end.
    let http_stop = CancellationToken::new();
    let (http_addr, http_task) = match settings.http {
        Some(addr) => {
            // The consumers' API reads through a lazily connected store of its own: it is served
            // from the start (503 until the database answers), and its readers never take the
            // connections the heartbeats and the flush need.
            let api_store = Store::connect_lazy(&settings.db)
                .await
                .context("cannot set up the /v1 API's database pool")?
                .with_metrics(metrics.clone());
            let api = crate::api::router(crate::api::ApiState {
                store: api_store,
                // The first is what `?pair=` defaults to.
                pairs: settings.feed.pairs,
                limits: settings.api,
                stop: http_stop.clone(),
            });
            let (bound, task) = http::serve(
                addr,
                status.clone(),
                Arc::clone(&registry),
                http_stop.clone(),
                Some(api),
            )
            .await
            .with_context(|| format!("cannot serve HTTP on {addr}"))?;
            log::info!("serving /health, /status, /metrics and /v1 on http://{bound}");
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    log::info!(
        "node {} starting: address {}, peer id {}",
        settings.name,
        settings.identity.address(),
        settings.identity.peer_id()
    );
    let (fetches_tx, fetches) = mpsc::channel(4);
    let (flushes_tx, flushes) = mpsc::channel(4);
    let (database_tx, database) = mpsc::channel(1);
    let (peer_addrs_tx, peer_addrs) = mpsc::channel(1);
    let (events_tx, _) = broadcast::channel(4096);
    let (control, controls) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let node = Node {
        events: events_tx.clone(),
        me: settings.identity.address(),
        ids: IdGenerator::new(IdGenerator::machine_id_from_address(
            &settings.identity.address(),
        )),
        pool: Pool::new(settings.pool, initial_members),
        members,
        cosigner: Cosigner::new(settings.max_deviation, settings.max_cosign_queue),
        fallback_turns: FallbackTurns::new(settings.max_cosign_queue),
        cosign_refusals: LogLimiter::default(),
        writer: WriterDuties::default(),
        feed,
        network,
        metrics,
        fetch_in_flight: false,
        originations_wanted: 0,
        store: None,
        lease_task: None,
        tasks: TaskTracker::new(),
        shutdown: shutdown.clone(),
        fetches_tx,
        flushes_tx,
        database_tx,
        peer_addrs_tx,
        lookup_in_flight: false,
        running_since: None,
        last_heartbeat_ok: None,
        failed_fetches: 0,
        last_gossip: None,
        status: status_tx,
        started: Instant::now(),
        last_stored_id: None,
        settings,
    };
    let inbox = Inbox {
        gossip,
        fetches,
        flushes,
        database,
        peer_addrs,
        controls,
        network_task: Some(network_task),
    };
    let task = tokio::spawn(node.run(inbox, http_stop, http_task));
    Ok(RunningNode {
        http_addr,
        status,
        registry,
        events: events_tx,
        control,
        shutdown,
        task,
    })
}

/// Where the node's task hears from the network and from its own background tasks.
struct Inbox {
    gossip: mpsc::Receiver<NetworkEvent>,
    fetches: mpsc::Receiver<FetchResult>,
    flushes: mpsc::Receiver<FlushResult>,
    database: mpsc::Receiver<Store>,
    /// Peers' addresses read from the heartbeat table.
    peer_addrs: mpsc::Receiver<Vec<String>>,
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

struct Node {
    settings: NodeSettings,
    me: Address,
    ids: IdGenerator,
    pool: Pool,
    /// The member set this node applies; the network's validator reads it too.
    members: watch::Sender<Arc<Members>>,
    cosigner: Cosigner,
    /// Peers' prices this node co-signs only if they still lack a quorum at its turn.
    fallback_turns: FallbackTurns,
    cosign_refusals: LogLimiter,
    writer: WriterDuties,
    feed: Arc<PriceFeed>,
    network: NetworkHandle,
    metrics: Metrics,
    fetch_in_flight: bool,
    /// Prices asked for (by the timer or `originate_now`) and not yet originated.
    originations_wanted: usize,
    store: Option<Store>,
    lease_task: Option<JoinHandle<()>>,
    /// Every background task of the node, so the stop can wait for them.
    tasks: TaskTracker,
    /// Cancelled when the node is to stop; stops the loop, the heartbeats and fetches.
    shutdown: CancellationToken,
    fetches_tx: mpsc::Sender<FetchResult>,
    flushes_tx: mpsc::Sender<FlushResult>,
    database_tx: mpsc::Sender<Store>,
    peer_addrs_tx: mpsc::Sender<Vec<String>>,
    lookup_in_flight: bool,
    /// What `/health` judges by.
    running_since: Option<Instant>,
    last_heartbeat_ok: Option<Instant>,
    failed_fetches: u32,
    last_gossip: Option<Instant>,
    status: watch::Sender<NodeStatus>,
    events: broadcast::Sender<NodeEvent>,
    started: Instant,
    last_stored_id: Option<u64>,
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
        self.stop(&mut inbox.flushes).await;
        let tasks = self.tasks.clone();
        // The network closes when its last handle is gone.
        drop(self);
        drop(inbox.gossip);
        let close = async {
            tasks.close();
            tasks.wait().await;
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
        let mut phase = Phase::WaitingForPeers;
        let mut peers = self.network.clone();
        let mut progress = interval(PROGRESS_INTERVAL);
        let mut lease_states: Option<watch::Receiver<LeaseState>> = None;
        let mut member_lists: Option<watch::Receiver<MemberList>> = None;
        let mut price_timer: Option<Interval> = None;
        let mut flush_timer = interval(flush_check_interval(self.settings.pool.flush_delay));
        let mut expire_timer = interval(EXPIRE_INTERVAL);
        let mut status_timer = interval(STATUS_INTERVAL);
        let mut rejoin_timer = interval(REJOIN_INTERVAL);
        self.spawn_db_connect();
        loop {
            let was = phase;
            let fallback_due = self.fallback_turns.next_due();
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = ended(&mut inbox.network_task) => {
                    anyhow::bail!("the network task ended unexpectedly")
                }
                // Waiting for peers.
                _ = progress.tick(), if phase == Phase::WaitingForPeers => {
                    phase = self.check_peers();
                }
                () = peers.peers_changed(), if phase == Phase::WaitingForPeers => {
                    phase = self.check_peers();
                }
                // Connecting to the database (from the start, in the background).
                Some(store) = inbox.database.recv() => {
                    log::info!("database connected: {}", self.settings.db.url);
                    self.store = Some(store.with_metrics(self.metrics.clone()));
                    if phase == Phase::ConnectingToDatabase {
                        phase = Phase::Running;
                    }
                }
                // Short of peers at any time: the heartbeat table says where the others are.
                _ = rejoin_timer.tick() => self.look_up_peers(),
                Some(addrs) = inbox.peer_addrs.recv() => self.dial_peers(addrs),
                // Running.
                state = next_value(&mut lease_states) => {
                    if state.healthy {
                        self.last_heartbeat_ok = Some(Instant::now());
                    }
                    self.writer.on_heartbeat(state);
                }
                list = next_value(&mut member_lists) => self.on_member_list(list),
                _ = tick(&mut price_timer) => self.request_fetch(true),
                Some(NetworkEvent::Gossip(gossip)) = inbox.gossip.recv() => self.on_gossip(gossip),
                Some(control) = inbox.controls.recv() => match control {
                    Control::Originate => self.request_fetch(true),
                    Control::CrashNetwork => self.network.crash(),
                },
                Some(result) = inbox.fetches.recv() => self.on_fetched(result),
                () = sleep_until(fallback_due), if fallback_due.is_some() => {
                    self.take_fallback_turns();
                }
                _ = flush_timer.tick() => self.maybe_flush(),
                Some(result) = inbox.flushes.recv() => self.on_flushed(result),
                _ = expire_timer.tick() => self.expire(),
                _ = status_timer.tick() => self.refresh_status(),
            }
            if phase == Phase::Running && was != Phase::Running {
                self.running_since = Some(Instant::now());
                let (states, lists) = self.start_lease();
                lease_states = Some(states);
                member_lists = Some(lists);
                price_timer = Some(interval(self.settings.price_interval));
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
        if self.store.is_some() {
            log::info!("connected to {peers} peers");
            Phase::Running
        } else {
            log::info!("connected to {peers} peers; waiting for the database");
            Phase::ConnectingToDatabase
        }
    }

    /// Reads the other nodes' addresses from the heartbeat table when short of peers.
    fn look_up_peers(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if self.lookup_in_flight || self.network.connected_peers() >= self.settings.min_peers {
            return;
        }
        self.lookup_in_flight = true;
        let me = self.me;
        let done = self.peer_addrs_tx.clone();
        let lookup = async move {
            let addrs = match store.peer_addresses(&me).await {
                Ok(addrs) => addrs,
                Err(err) => {
                    log::warn!("cannot read peers' addresses from the database: {err}");
                    Vec::new()
                }
            };
            let _ = done.send(addrs).await;
        };
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(lookup));
    }

    fn dial_peers(&mut self, addrs: Vec<String>) {
        self.lookup_in_flight = false;
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

    /// Connects (and migrates, and registers) in the background, retrying until it works or
    /// the node stops.
    fn spawn_db_connect(&self) {
        let settings = self.settings.db.clone();
        let migrate = self.settings.migrate;
        let register = self
            .settings
            .register
            .then(|| (self.me, self.settings.name.clone()));
        let done = self.database_tx.clone();
        let connecting = async move {
            loop {
                match connect(&settings, migrate, register.as_ref()).await {
                    Ok(store) => {
                        let _ = done.send(store).await;
                        return;
                    }
                    Err(err) => {
                        log::error!(
                            "database {}: {}; retrying in {DB_RETRY_INTERVAL:?}",
                            settings.url,
                            crate::logging::one_line(err.as_ref())
                        );
                        tokio::time::sleep(DB_RETRY_INTERVAL).await;
                    }
                }
            }
        };
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(connecting));
    }

    /// Starts heartbeating (the store is connected by now); returns the lease states and the
    /// member lists the heartbeats read.
    fn start_lease(&mut self) -> (watch::Receiver<LeaseState>, watch::Receiver<MemberList>) {
        let (states_tx, states) = watch::channel(LeaseState::default());
        let (lists_tx, lists) = watch::channel(None);
        let Some(store) = self.store.clone() else {
            return (states, lists);
        };
        self.lease_task = Some(self.tasks.spawn(lease::run(
            store,
            self.participant(),
            self.settings.lease,
            states_tx,
            lists_tx,
            self.shutdown.clone().cancelled_owned(),
        )));
        (states, lists)
    }

    fn refresh_status(&mut self) {
        let lease = self.writer.lease().clone();
        let pool = self.pool.counts();
        self.metrics.pool_pending.set(pool.pending as i64);
        let database = match &self.store {
            None => DatabaseState::NotConnected,
            Some(store) if store.is_healthy() => DatabaseState::Ok,
            Some(_) => DatabaseState::Failing,
        };
        let status = NodeStatus {
            name: self.settings.name.clone(),
            address: self.me.to_checksum(None),
            peer_id: self.network.peer_id().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            listen_addrs: self.listen_addrs(),
            connected_peers: self.network.connected_peers(),
            min_peers: self.settings.min_peers,
            database,
            is_writer: lease.is_writer,
            writer: lease.writer,
            pool,
            last_observations: self
                .settings
                .feed
                .pairs
                .iter()
                .filter_map(|pair| {
                    let observation = self.cosigner.latest(pair)?;
                    let observed = Observed {
                        price: observation.price.to_string(),
                        observed_at: unix_seconds(observation.at),
                    };
                    Some((pair.name().to_owned(), observed))
                })
                .collect(),
            last_stored_id: self.last_stored_id.map(|id| id.to_string()),
            problems: Vec::new(),
        };
        let since = |at: Option<Instant>| at.map(|at| at.elapsed());
        let observations = health::Observations {
            connected_peers: status.connected_peers,
            responsive_peers: self.network.responsive_peers(),
            min_peers: self.settings.min_peers,
            database: status.database,
            since_heartbeat: since(self.last_heartbeat_ok.or(self.running_since)),
            heartbeat_interval: self.settings.lease.interval,
            running_for: since(self.running_since),
            since_fetch: since(self.cosigner.last_fetched()),
            failed_fetches: self.failed_fetches,
            since_gossip: since(self.last_gossip),
            price_interval: self.settings.price_interval,
        };
        let status = NodeStatus {
            problems: health::problems(&observations),
            ..status
        };
        self.status.send_replace(status);
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
        for data in self.pool.set_members(members, Moment::now()) {
            self.note_added(
                &data,
                Added::New {
                    new_signatures: 0,
                    verified: true,
                },
            );
        }
    }

    fn on_gossip(&mut self, gossip: Gossip) {
        let now = Moment::now();
        self.last_gossip = Some(now.at);
        match gossip {
            Gossip::Price(message) => {
                let data = message.data();
                let added = self.pool.add(&data, &message.signatures, now);
                self.note_added(&data, added);
                // Validation let the price through as a member's; the member list may have
                // changed since.
                let member_origin = self.members.borrow().is_member(&data.origin);
                if data.origin != self.me && member_origin && added != Added::OverLimit {
                    self.take_part(data);
                }
            }
            Gossip::Attestation(attestation) => {
                let data = attestation.data();
                let added = self.pool.add(&data, &[attestation.signature], now);
                self.note_added(&data, added);
            }
            Gossip::Stored(notice) => self.on_stored_notice(&notice, now),
        }
    }

    fn note_added(&self, data: &PriceData, added: Added) {
        match added {
            Added::New { verified: true, .. }
            | Added::Merged {
                became_verified: true,
                ..
            } => {
                self.metrics.prices_verified.inc(data.pair);
                let _ = self.events.send(NodeEvent::Verified {
                    id: data.id,
                    at: Instant::now(),
                });
                let since_observed = age(UNIX_EPOCH + Duration::from_secs(data.observed_at));
                self.metrics
                    .quorum_seconds
                    .observe(since_observed.as_secs_f64());
                log::debug!(
                    "price {} verified with {} signatures, {since_observed:?} after it was observed",
                    data.id,
                    self.pool.signer_count(data),
                );
            }
            Added::OverLimit => {
                self.metrics.limit_hit("pending_per_signer");
                log::debug!(
                    "price {} from {} refused: its signer has too many pending prices here",
                    data.id,
                    data.origin
                );
            }
            _ => {}
        }
    }

    fn on_stored_notice(&mut self, notice: &StoredNotice, now: Moment) {
        let writer = notice.writer.to_checksum(None);
        if !self.writer.believes(&writer) {
            log::debug!("ignoring a stored notice from {writer}, not a writer we know of");
            return;
        }
        let known = self.pool.mark_stored(&notice.ids, now);
        log::debug!(
            "{writer} stored {} prices ({known} known here)",
            notice.ids.len()
        );
    }

    /// Co-signs a peer's price now if this node is on its committee, or schedules its fallback
    /// turn; a node that is not a member has no part.
    fn take_part(&mut self, data: PriceData) {
        let wait = {
            let members = self.members.borrow();
            match members.counting_at(data.observed_at) {
                // No list to draw a committee from: everyone co-signs.
                None => Some(Duration::ZERO),
                Some(list) => committee::rank_of(data.id, &data.origin, &self.me, &list)
                    .map(|rank| self.settings.committee.wait(rank)),
            }
        };
        match wait {
            None => {}
            Some(wait) if wait.is_zero() => {
                let decision = self.cosigner.consider(data);
                self.act_on(data, decision);
            }
            Some(wait) if !self.fallback_turns.schedule(Instant::now() + wait, data) => {
                self.metrics.limit_hit("cosign_queue");
            }
            Some(_) => {}
        }
    }

    /// This node's fallback turns that came due: it co-signs the prices still short of their
    /// quorum.
    fn take_fallback_turns(&mut self) {
        for data in self.fallback_turns.take_due(Instant::now()) {
            let outcome = if self.pool.is_stored(data.id) || self.pool.is_verified(&data) {
                "not_needed"
            } else {
                "stepped_in"
            };
            Metrics::kind(&self.metrics.cosign_fallbacks, outcome).inc();
            if outcome == "stepped_in" {
                log::debug!(
                    "stepping in to co-sign price {} from {}: still short of its quorum",
                    data.id,
                    data.origin
                );
                let decision = self.cosigner.consider(data);
                self.act_on(data, decision);
            }
        }
    }

    /// Carries out the co-signer's decision on a peer's price.
    fn act_on(&mut self, data: PriceData, decision: Decision) {
        if self.pool.is_stored(data.id) || self.pool.has_signed(&data, &self.me) {
            return;
        }
        match decision {
            Decision::Sign => self.cosign(data),
            Decision::Wait => self.request_fetch(false),
            Decision::QueueFull => self.metrics.limit_hit("cosign_queue"),
            Decision::Stale => {
                Metrics::reason(&self.metrics.prices_refused, "stale").inc();
                log::debug!(
                    "not co-signing price {} from {}: observed more than {COSIGN_WINDOW:?} from our observation",
                    data.id,
                    data.origin
                );
            }
            Decision::Deviates { deviation, ours } => {
                Metrics::reason(&self.metrics.prices_refused, "deviation").inc();
                if let Some(suppressed) = self.cosign_refusals.allow(Instant::now()) {
                    log::info!(
                        "not co-signing price {} from {}: {} is {:.3}% from our {}{}",
                        data.id,
                        data.origin,
                        data.price,
                        deviation * Decimal::ONE_HUNDRED,
                        ours,
                        crate::logging::suppressed_note(suppressed)
                    );
                }
            }
        }
    }

    fn cosign(&mut self, data: PriceData) {
        let attestation = Attestation::sign(&data, self.settings.identity.signer());
        let added = self
            .pool
            .add(&data, &[attestation.signature], Moment::now());
        self.note_added(&data, added);
        self.metrics.prices_cosigned.inc(data.pair);
        log::debug!("co-signed price {} from {}", data.id, data.origin);
        self.network.publish(Gossip::Attestation(attestation));
    }

    fn request_fetch(&mut self, originate: bool) {
        self.originations_wanted += usize::from(originate);
        if self.fetch_in_flight {
            return;
        }
        self.fetch_in_flight = true;
        let feed = Arc::clone(&self.feed);
        let done = self.fetches_tx.clone();
        let metrics = self.metrics.clone();
        let fetch = async move {
            let rounds = feed.settings().pairs.iter().map(|pair| {
                let (feed, metrics) = (&feed, &metrics);
                async move {
                    let report = feed.fetch_all(pair).await;
                    record_fetch(metrics, &report);
                    let result = report.median(feed.settings().min_sources);
                    if result.is_ok() {
                        for (source, error) in report.failures() {
                            log::warn!("price source {source} ({pair}): {error}");
                        }
                    }
                    (pair, result)
                }
            });
            let _ = done.send(futures::future::join_all(rounds).await).await;
        };
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(fetch));
    }

    fn on_fetched(&mut self, results: FetchResult) {
        self.fetch_in_flight = false;
        let originate = self.originations_wanted > 0;
        self.originations_wanted = self.originations_wanted.saturating_sub(1);
        let mut failed = false;
        for (pair, result) in results {
            let price = match result {
                Ok(price) => price,
                Err(err) => {
                    // This round's price of the pair is skipped; the next timer tick asks again.
                    // Peers' prices waiting for our observation of it cannot be judged: they go
                    // unsigned by us.
                    failed = true;
                    let unjudged = self.cosigner.fetch_failed(pair);
                    log::warn!(
                        "cannot fetch the {pair} price: {err}{}",
                        if unjudged > 0 {
                            format!("; {unjudged} peers' prices go unsigned by us")
                        } else {
                            String::new()
                        }
                    );
                    continue;
                }
            };
            let now = Moment::now();
            let decisions = self.cosigner.observed(
                pair,
                Observation {
                    price,
                    at: now.wall,
                    fetched: now.at,
                },
            );
            if originate {
                self.originate(pair, price, now);
            }
            for (data, decision) in decisions {
                self.act_on(data, decision);
            }
        }
        if failed {
            self.failed_fetches += 1;
            self.originations_wanted = 0;
        } else {
            self.failed_fetches = 0;
        }
        // Each price gets its own observation.
        if self.originations_wanted > 0 {
            self.request_fetch(false);
        }
    }

    fn originate(&mut self, pair: Pair, price: UsdPrice, now: Moment) {
        let id = match self.ids.next_id_at(now.wall) {
            Ok(id) => id,
            Err(err) => {
                log::error!("cannot mint a price id: {err}");
                return;
            }
        };
        let observed_at = unix_seconds(now.wall);
        let message = PriceMessage::originate(
            pair,
            id,
            price,
            observed_at,
            self.settings.identity.signer(),
        );
        let added = self.pool.add(&message.data(), &message.signatures, now);
        self.note_added(&message.data(), added);
        self.metrics.prices_originated.inc(pair);
        log::info!("originated price {id}: {pair} {price}");
        self.network.publish(Gossip::Price(message));
        let _ = self.events.send(NodeEvent::Originated {
            id,
            at: Instant::now(),
        });
    }

    fn maybe_flush(&mut self) {
        let Some(store) = &self.store else { return };
        if !self.writer.may_flush() {
            return;
        }
        let due = self.pool.due(Moment::now());
        if due.is_empty() {
            return;
        }
        self.writer.flush_started();
        let store = store.clone();
        let me = self.me;
        let min_signers = self.settings.pool.min_signers;
        let done = self.flushes_tx.clone();
        // Not cancelled by the stop, which waits for it instead.
        self.tasks.spawn(async move {
            let batch = pairs_by_id(&due);
            let result = store.flush(&me, &due, min_signers).await;
            let _ = done.send((batch, result)).await;
        });
    }

    fn on_flushed(&mut self, (batch, result): FlushResult) {
        self.writer.flush_finished(&result);
        let outcome = match &result {
            Ok(FlushOutcome::Flushed(_)) => "stored",
            Ok(FlushOutcome::NotWriter { .. }) => "refused",
            Err(_) => "failed",
        };
        Metrics::kind(&self.metrics.flushes, outcome).inc();
        match result {
            Ok(FlushOutcome::Flushed(flushed)) => {
                for id in &flushed.inserted {
                    if let Some(pair) = batch.get(id) {
                        self.metrics.prices_stored.inc(*pair);
                    }
                }
                if let Some(newest) = flushed.inserted.iter().max() {
                    self.last_stored_id = self.last_stored_id.max(Some(*newest));
                }
                if !flushed.inserted.is_empty() {
                    log::info!("stored {} verified prices", flushed.inserted.len());
                }
                for id in &flushed.conflicting {
                    log::error!(
                        "price {id} is already stored with a different price; this one is dropped"
                    );
                }
                if !flushed.below_quorum.is_empty() {
                    // Our member list is behind the table's; the next heartbeat refreshes it.
                    log::warn!(
                        "not storing {} prices: fewer than --min-signers current members signed them",
                        flushed.below_quorum.len()
                    );
                }
                let done: Vec<u64> = flushed
                    .inserted
                    .iter()
                    .chain(&flushed.existing)
                    .chain(&flushed.conflicting)
                    .copied()
                    .collect();
                self.pool.mark_stored(&done, Moment::now());
                let at = unix_seconds(SystemTime::now());
                for notice in StoredNotice::sign_all(&done, at, self.settings.identity.signer()) {
                    self.network.publish(Gossip::Stored(notice));
                }
            }
            Ok(FlushOutcome::NotWriter { writer }) => {
                log::debug!("lost the lease before flushing (writer now {writer:?})");
            }
            Err(err) => log::warn!(
                "storing {} verified prices failed; they stay in memory and are retried: {err}",
                batch.len()
            ),
        }
    }

    fn expire(&mut self) {
        let expired = self.pool.expire(Moment::now());
        if !expired.unverified.is_empty() {
            log::debug!(
                "dropped {} prices that never reached the quorum",
                expired.unverified.len()
            );
            Metrics::kind(&self.metrics.prices_expired, "unverified")
                .inc_by(expired.unverified.len() as u64);
        }
        if !expired.verified.is_empty() {
            log::warn!(
                "dropped {} verified prices that could not be stored within --retention: {:?}",
                expired.verified.len(),
                expired.verified
            );
            Metrics::kind(&self.metrics.prices_expired, "verified")
                .inc_by(expired.verified.len() as u64);
        }
    }

    /// Graceful stop within [`STOP_BUDGET`], in order: heartbeats end, the flush in flight
    /// finishes, every verified price this node holds (due or not) is stored under a claimed
    /// lease, the heartbeat row goes and the pool closes. A step the database is too slow for is
    /// abandoned: a running writer stores those prices, and the heartbeat row expires.
    async fn stop(&mut self, flushes: &mut mpsc::Receiver<FlushResult>) {
        log::info!("stopping");
        let deadline = tokio::time::Instant::now() + STOP_BUDGET;
        // The heartbeats end with the cancellation; the last one may still be on its way.
        if let Some(mut lease) = self.lease_task.take() {
            let ended = tokio::time::timeout_at(deadline - STOP_BUDGET / 2, &mut lease);
            if ended.await.is_err() {
                lease.abort();
            }
        }
        let Some(store) = self.store.take() else {
            return;
        };
        let stored = tokio::time::timeout_at(
            deadline - STOP_CLEANUP,
            self.store_before_stopping(&store, flushes),
        );
        if stored.await.is_err() {
            log::warn!(
                "stopping with {} verified prices unstored: the database did not answer in time; a running writer stores them",
                self.pool.counts().verified
            );
        }
        let me = self.participant();
        let left = tokio::time::timeout_at(deadline - STOP_CLEANUP / 2, store.leave(&me));
        if !matches!(left.await, Ok(Ok(()))) {
            log::warn!("the heartbeat row was not removed in time; it expires on its own");
        }
        let _ = tokio::time::timeout_at(deadline, store.close()).await;
    }

    /// Stores every verified price this node holds, due or not, so that nothing with a quorum
    /// is lost when every node stops at once. The node takes the lease for it; while another
    /// stopping node holds a later claim, it waits for that one to leave and tries again.
    async fn store_before_stopping(
        &mut self,
        store: &Store,
        flushes: &mut mpsc::Receiver<FlushResult>,
    ) {
        if self.writer.flush_in_flight()
            && let Some(result) = flushes.recv().await
        {
            self.on_flushed(result);
        }
        let me = self.participant();
        loop {
            let verified = self.pool.verified();
            if verified.is_empty() {
                return;
            }
            let claimed = store.claim_lease(&me, self.settings.lease.lease).await;
            let result = match claimed {
                Ok(()) => {
                    store
                        .flush(&self.me, &verified, self.settings.pool.min_signers)
                        .await
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(FlushOutcome::NotWriter { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(flushed) => {
                    self.on_flushed((pairs_by_id(&verified), Ok(flushed)));
                    // Give the stored notice a moment to leave before the network closes.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    return;
                }
                Err(err) => {
                    log::warn!(
                        "could not store {} verified prices before stopping: {err}",
                        verified.len()
                    );
                    return;
                }
            }
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

    /// Who this node is in the heartbeat table.
    fn participant(&self) -> Participant {
        Participant {
            address: self.me,
            name: self.settings.name.clone(),
            peer_id: self.settings.identity.peer_id().to_string(),
            listen_addrs: self.listen_addrs(),
        }
    }
}

fn pairs_by_id(batch: &[VerifiedPrice]) -> HashMap<u64, Pair> {
    batch.iter().map(|price| (price.id, price.pair)).collect()
}

fn record_fetch(metrics: &Metrics, report: &FeedReport) {
    for ((source, result), elapsed) in report.results.iter().zip(&report.elapsed) {
        metrics
            .source_fetch_seconds
            .get_or_create(&SourceLabel {
                source: source.name().to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        if let Err(err) = result {
            metrics
                .source_failures
                .get_or_create(&SourceFailureLabels {
                    source: source.name().to_owned(),
                    kind: err.failure.kind().to_owned(),
                })
                .inc();
        }
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

async fn connect(
    settings: &DbSettings,
    migrate: bool,
    register: Option<&(Address, String)>,
) -> anyhow::Result<Store> {
    if migrate {
        Store::migrate(settings).await.context("migrating")?;
    }
    let store = Store::connect(settings).await?;
    if let Some((address, name)) = register {
        let added = store
            .add_signer(address, name)
            .await
            .context("registering this node as a member (--register)")?;
        log::info!("registered {address} as a member ({added:?})");
    }
    Ok(store)
}

/// The next value of a watch that may not exist yet; never resolves while there is none or
/// after its sender is gone.
async fn next_value<T: Clone>(watch: &mut Option<watch::Receiver<T>>) -> T {
    match watch {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            receiver.borrow_and_update().clone()
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the task ends (and forgets it); never while there is none.
async fn ended(task: &mut Option<JoinHandle<()>>) {
    match task {
        Some(running) => {
            let _ = running.await;
            *task = None;
        }
        None => std::future::pending().await,
    }
}

/// Flushes are checked often enough that a due price waits at most half a second (and a fraction
/// of a short delay); a check is a scan of the pool in memory.
fn flush_check_interval(flush_delay: Duration) -> Duration {
    (flush_delay / 4).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

fn interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Ticks an optional timer; never resolves while there is none.
/// Resolves at `due` (callers guard on `Some`).
async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn age(at: SystemTime) -> Duration {
    SystemTime::now().duration_since(at).unwrap_or_default()
}
