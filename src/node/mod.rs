//! The node's event loop: joins the network, waits for peers, connects to the database, then
//! originates a price every `--price-interval`, co-signs its peers' prices, merges signatures in
//! the pool and — while it holds the lease — stores what is due. All slow work (fetching,
//! database calls) runs in spawned tasks that report back, so the loop never blocks.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use anyhow::Context;
use rust_decimal::Decimal;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use prometheus_client::registry::Registry;

use crate::http::{self, DatabaseState, NodeStatus, Observed};
use crate::id::IdGenerator;
use crate::identity::Identity;
use crate::membership::Members;
use crate::message::{Attestation, Gossip, PriceData, PriceMessage, StoredNotice};
use crate::metrics::{Metrics, SourceFailureLabels, SourceLabel};
use crate::network::{self, NetworkEvent, NetworkHandle, NetworkSettings};
use crate::pool::{Added, Pool, PoolSettings};
use crate::price::{FeedError, FeedReport, FeedSettings, PriceFeed, UsdPrice};
use crate::store::lease::{self, LeaseSettings, LeaseState, MemberList, Participant};
use crate::store::prices::{FlushOutcome, VerifiedPrice};
use crate::store::{DbSettings, Store, StoreError};

/// How often the waiting-for-peers line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(3);
/// How often a failed database connection is retried at start.
const DB_RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired prices are swept from the pool.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(10);
/// How many recent writers' stored notices are believed.
const RECENT_WRITERS: usize = 8;
/// How often `/status` and `/health` are refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// A stop takes at most about this long, database or not (Docker waits 10 s before SIGKILL).
const STOP_BUDGET: Duration = Duration::from_secs(4);
/// The part of [`STOP_BUDGET`] kept for removing the heartbeat row and closing the pool.
const STOP_CLEANUP: Duration = Duration::from_secs(1);

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
    /// Serve `/health`, `/status` and `/metrics` here.
    pub http: Option<SocketAddr>,
    /// Narrows the signers table to these members (`--trusted-signers`).
    pub trusted_signers: Option<std::collections::HashSet<Address>>,
    /// Add this node's key to the signers table at start (`--register`).
    pub register: bool,
    /// Peers' prices waiting for this node's own observation; past it new ones are dropped.
    pub max_cosign_queue: usize,
}

/// A price this node fetched.
#[derive(Debug, Clone, Copy)]
struct Observation {
    price: UsdPrice,
    at: SystemTime,
}

type FetchResult = Result<UsdPrice, FeedError>;
type FlushResult = (Vec<u64>, Result<FlushOutcome, StoreError>);

/// Runs a node until `shutdown` resolves, then stops cleanly: a writer flushes what is due, the
/// heartbeat row is deleted and the network closes.
pub async fn run(
    settings: NodeSettings,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let node = start(settings, metrics).await?;
    shutdown.await;
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
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
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
}

impl RunningNode {
    /// Stops the node cleanly and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the node task failed")
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

/// Starts a node: network, HTTP endpoint (when configured) and the event loop.
pub async fn start(settings: NodeSettings, metrics: Metrics) -> anyhow::Result<RunningNode> {
    let feed = Arc::new(PriceFeed::new(settings.feed.clone())?);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    // Nobody counts until the member list has been read from the database.
    let initial_members = Arc::new(Members::for_node(settings.trusted_signers.clone()));
    metrics.members.set(-1);
    let (members, member_view) = watch::channel(Arc::clone(&initial_members));
    let (network, events, network_task) = network::spawn(
        settings.identity.keypair(),
        settings.network.clone(),
        member_view,
        metrics.clone(),
        &mut registry,
    )?;
    let registry = Arc::new(registry);
    let (status_tx, status) = watch::channel(NodeStatus::default());
    let (http_addr, http_task) = match settings.http {
        Some(addr) => {
            let (bound, task) = http::serve(addr, status.clone(), Arc::clone(&registry))
                .await
                .with_context(|| format!("cannot serve HTTP on {addr}"))?;
            log::info!("serving /health, /status and /metrics on http://{bound}");
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
    let (events_tx, _) = broadcast::channel(4096);
    let (control, controls) = mpsc::unbounded_channel();
    let mut node = Node {
        events: events_tx.clone(),
        me: settings.identity.address(),
        ids: IdGenerator::new(IdGenerator::machine_id_from_address(
            &settings.identity.address(),
        )),
        pool: Pool::new(settings.pool, initial_members),
        members,
        cosign_refusals: crate::logging::LogLimiter::default(),
        feed,
        network,
        metrics,
        latest: None,
        awaiting_observation: Vec::new(),
        fetch_in_flight: false,
        originations_wanted: 0,
        flush_in_flight: false,
        lease_refuted: false,
        store: None,
        lease: None,
        recent_writers: VecDeque::new(),
        fetches_tx,
        flushes_tx,
        status: status_tx,
        started: Instant::now(),
        last_stored_id: None,
        settings,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        node.event_loop(events, fetches, flushes, controls, async move {
            let _ = stopped.await;
        })
        .await;
        node.stop().await;
        // The network task ends when the last handle is gone.
        drop(node);
        let _ = network_task.await;
        if let Some(http) = http_task {
            http.abort();
        }
        log::info!("node stopped");
    });
    Ok(RunningNode {
        http_addr,
        status,
        registry,
        events: events_tx,
        control,
        stop,
        task,
    })
}

struct RunningLease {
    state: watch::Receiver<LeaseState>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Node {
    settings: NodeSettings,
    me: Address,
    ids: IdGenerator,
    pool: Pool,
    /// The member set this node applies; the network's validator reads it too.
    members: watch::Sender<Arc<Members>>,
    cosign_refusals: crate::logging::LogLimiter,
    feed: Arc<PriceFeed>,
    network: NetworkHandle,
    metrics: Metrics,
    latest: Option<Observation>,
    /// Peers' prices to co-sign once this node has a fresh observation of its own.
    awaiting_observation: Vec<PriceData>,
    fetch_in_flight: bool,
    /// Prices asked for (by the timer or `originate_now`) and not yet originated.
    originations_wanted: usize,
    flush_in_flight: bool,
    /// A flush found another writer since our last heartbeat.
    lease_refuted: bool,
    store: Option<Store>,
    lease: Option<RunningLease>,
    /// Writers seen by our heartbeats, newest last: only their stored notices are believed.
    recent_writers: VecDeque<String>,
    fetches_tx: mpsc::Sender<FetchResult>,
    flushes_tx: mpsc::Sender<FlushResult>,
    status: watch::Sender<NodeStatus>,
    events: broadcast::Sender<NodeEvent>,
    started: Instant,
    last_stored_id: Option<u64>,
}

impl Node {
    async fn event_loop(
        &mut self,
        mut events: mpsc::Receiver<NetworkEvent>,
        mut fetches: mpsc::Receiver<FetchResult>,
        mut flushes: mpsc::Receiver<FlushResult>,
        mut controls: mpsc::UnboundedReceiver<Control>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut progress = interval(PROGRESS_INTERVAL);
        let mut peers_ready = false;
        let mut peers = self.network.clone();
        let (db_tx, mut db_rx) = mpsc::channel::<Store>(1);
        let mut member_lists: Option<watch::Receiver<MemberList>> = None;
        let mut price_timer: Option<Interval> = None;
        let mut flush_timer = interval(flush_check_interval(self.settings.pool.flush_delay));
        let mut expire_timer = interval(EXPIRE_INTERVAL);
        let mut status_timer = interval(STATUS_INTERVAL);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(NetworkEvent::Gossip(gossip)) = events.recv() => self.on_gossip(gossip),
                Some(Control::Originate) = controls.recv() => self.request_fetch(true),
                _ = progress.tick(), if !peers_ready => {
                    peers_ready = self.check_peers();
                    if peers_ready {
                        self.spawn_db_connect(db_tx.clone());
                    }
                }
                () = peers.peers_changed(), if !peers_ready => {
                    peers_ready = self.check_peers();
                    if peers_ready {
                        self.spawn_db_connect(db_tx.clone());
                    }
                }
                Some(store) = db_rx.recv() => {
                    member_lists = Some(self.start_lease(store));
                    self.refresh_status();
                    price_timer = Some(interval(self.settings.price_interval));
                }
                list = next_member_list(&mut member_lists) => self.on_member_list(list),
                _ = tick(&mut price_timer) => self.request_fetch(true),
                Some(result) = fetches.recv() => self.on_fetched(result),
                _ = flush_timer.tick() => self.maybe_flush(),
                Some(result) = flushes.recv() => self.on_flushed(result),
                _ = expire_timer.tick() => self.expire(),
                _ = status_timer.tick() => self.refresh_status(),
            }
        }
    }

    fn refresh_status(&mut self) {
        let lease = self.lease_state();
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
            listen_addrs: self
                .network
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            connected_peers: self.network.connected_peers(),
            min_peers: self.settings.min_peers,
            database,
            is_writer: lease.is_writer,
            writer: lease.writer,
            pool,
            last_observation: self.latest.map(|observation| Observed {
                price: observation.price.to_string(),
                observed_at: unix_seconds(observation.at),
            }),
            last_stored_id: self.last_stored_id.map(|id| id.to_string()),
        };
        self.status.send_replace(status);
    }

    fn check_peers(&self) -> bool {
        let peers = self.network.connected_peers();
        let ready = peers >= self.settings.min_peers;
        if ready {
            log::info!("connected to {peers} peers; connecting to the database");
        } else {
            log::info!("waiting for peers: {peers}/{}", self.settings.min_peers);
        }
        ready
    }

    /// Connects (and migrates, and registers) in the background, retrying until it works.
    fn spawn_db_connect(&self, done: mpsc::Sender<Store>) {
        let settings = self.settings.db.clone();
        let migrate = self.settings.migrate;
        let register = self
            .settings
            .register
            .then(|| (self.me, self.settings.name.clone()));
        tokio::spawn(async move {
            loop {
                match connect(&settings, migrate, register.as_ref()).await {
                    Ok(store) => {
                        let _ = done.send(store).await;
                        return;
                    }
                    Err(err) => {
                        log::error!(
                            "database {}: {err:#}; retrying in {DB_RETRY_INTERVAL:?}",
                            settings.url
                        );
                        tokio::time::sleep(DB_RETRY_INTERVAL).await;
                    }
                }
            }
        });
    }

    /// Starts heartbeating; returns the member lists the heartbeats read.
    fn start_lease(&mut self, store: Store) -> watch::Receiver<MemberList> {
        log::info!("database connected: {}", self.settings.db.url);
        let participant = Participant {
            address: self.me,
            name: self.settings.name.clone(),
            peer_id: self.settings.identity.peer_id().to_string(),
        };
        let (state_tx, state) = watch::channel(LeaseState::default());
        let (lists_tx, lists) = watch::channel(None);
        let (stop, stopped) = oneshot::channel();
        let store = store.with_metrics(self.metrics.clone());
        let task = tokio::spawn(lease::run(
            store.clone(),
            participant,
            self.settings.lease,
            state_tx,
            lists_tx,
            async move {
                let _ = stopped.await;
            },
        ));
        self.store = Some(store);
        self.lease = Some(RunningLease { state, stop, task });
        lists
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
        let now = SystemTime::now();
        for data in self.pool.set_members(members, now) {
            self.note_added(
                &data,
                Added::New {
                    new_signatures: 0,
                    verified: true,
                },
            );
        }
    }

    fn lease_state(&mut self) -> LeaseState {
        let Some(lease) = &mut self.lease else {
            return LeaseState::default();
        };
        if lease.state.has_changed().unwrap_or(false) {
            // A fresh heartbeat outranks what a refused flush told us.
            self.lease_refuted = false;
        }
        let state = lease.state.borrow_and_update().clone();
        if let Some(writer) = &state.writer
            && self.recent_writers.back() != Some(writer)
        {
            self.recent_writers.retain(|known| known != writer);
            self.recent_writers.push_back(writer.clone());
            if self.recent_writers.len() > RECENT_WRITERS {
                self.recent_writers.pop_front();
            }
        }
        state
    }

    fn on_gossip(&mut self, gossip: Gossip) {
        let now = SystemTime::now();
        match gossip {
            Gossip::Price(message) => {
                let data = message.data();
                let added = self.pool.add(&data, &message.signatures, now);
                self.note_added(&data, added);
                // Validation let the price through as a member's; the member list may have
                // changed since.
                let member_origin = self.members.borrow().is_member(&data.origin);
                if data.origin != self.me
                    && member_origin
                    && !self.pool.is_stored(data.id)
                    && !self.pool.has_signed(&data, &self.me)
                    && added != Added::OverLimit
                {
                    self.consider_cosigning(data);
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
                self.metrics.prices_verified.inc();
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

    fn on_stored_notice(&mut self, notice: &StoredNotice, now: SystemTime) {
        let writer = notice.writer.to_checksum(None);
        // Refresh what our lease saw, then believe only writers we know of.
        let _ = self.lease_state();
        if !self.recent_writers.contains(&writer) {
            log::debug!("ignoring a stored notice from {writer}, not a writer we know of");
            return;
        }
        let known = self.pool.mark_stored(&notice.ids, now);
        log::debug!(
            "{writer} stored {} prices ({known} known here)",
            notice.ids.len()
        );
    }

    fn consider_cosigning(&mut self, data: PriceData) {
        match self.latest {
            Some(observation) if age(observation.at) <= self.settings.price_interval => {
                self.cosign_or_refuse(data, observation.price);
            }
            _ => {
                if self.awaiting_observation.len() >= self.settings.max_cosign_queue {
                    self.metrics.limit_hit("cosign_queue");
                    return;
                }
                self.awaiting_observation.push(data);
                self.request_fetch(false);
            }
        }
    }

    fn cosign_or_refuse(&mut self, data: PriceData, ours: UsdPrice) {
        let deviation = data.price.relative_deviation(ours);
        if deviation > self.settings.max_deviation {
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
            return;
        }
        let attestation = Attestation::sign(&data, self.settings.identity.signer());
        let added = self
            .pool
            .add(&data, &[attestation.signature], SystemTime::now());
        self.note_added(&data, added);
        self.metrics.prices_cosigned.inc();
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
        tokio::spawn(async move {
            let report = feed.fetch_all().await;
            record_fetch(&metrics, &report);
            let result = report.median(feed.settings().min_sources);
            if result.is_ok() {
                for (source, error) in report.failures() {
                    log::warn!("price source {source}: {error}");
                }
            }
            let _ = done.send(result).await;
        });
    }

    fn on_fetched(&mut self, result: FetchResult) {
        self.fetch_in_flight = false;
        let price = match result {
            Ok(price) => price,
            Err(err) => {
                // This round's price is skipped; the next timer tick asks again. Peers' prices
                // waiting for our observation cannot be judged: they go unsigned by us.
                self.originations_wanted = 0;
                self.awaiting_observation.clear();
                log::warn!("cannot fetch the ETH/USD price: {err}");
                return;
            }
        };
        let now = SystemTime::now();
        self.latest = Some(Observation { price, at: now });
        if self.originations_wanted > 0 {
            self.originations_wanted -= 1;
            self.originate(price, now);
            // Each price gets its own observation.
            if self.originations_wanted > 0 {
                self.request_fetch(false);
            }
        }
        for data in std::mem::take(&mut self.awaiting_observation) {
            let too_old = age(UNIX_EPOCH + Duration::from_secs(data.observed_at))
                > self.settings.pool.max_age;
            if !too_old && !self.pool.is_stored(data.id) && !self.pool.has_signed(&data, &self.me) {
                self.cosign_or_refuse(data, price);
            }
        }
    }

    fn originate(&mut self, price: UsdPrice, now: SystemTime) {
        let id = match self.ids.next_id_at(now) {
            Ok(id) => id,
            Err(err) => {
                log::error!("cannot mint a price id: {err}");
                return;
            }
        };
        let observed_at = unix_seconds(now);
        let message =
            PriceMessage::originate(id, price, observed_at, self.settings.identity.signer());
        let added = self.pool.add(&message.data(), &message.signatures, now);
        self.note_added(&message.data(), added);
        self.metrics.prices_originated.inc();
        log::info!("originated price {id}: ETH/USD {price}");
        self.network.publish(Gossip::Price(message));
        let _ = self.events.send(NodeEvent::Originated {
            id,
            at: Instant::now(),
        });
    }

    fn maybe_flush(&mut self) {
        let is_writer = self.lease_state().is_writer;
        let Some(store) = &self.store else { return };
        if !is_writer || self.lease_refuted || self.flush_in_flight {
            return;
        }
        let due = self.pool.due(SystemTime::now());
        if due.is_empty() {
            return;
        }
        self.flush_in_flight = true;
        let store = store.clone();
        let me = self.me;
        let min_signers = self.settings.pool.min_signers;
        let done = self.flushes_tx.clone();
        tokio::spawn(async move {
            let ids = due.iter().map(|price| price.id).collect();
            let result = store.flush(&me, &due, min_signers).await;
            let _ = done.send((ids, result)).await;
        });
    }

    fn on_flushed(&mut self, (ids, result): FlushResult) {
        self.flush_in_flight = false;
        match result {
            Ok(FlushOutcome::Flushed(flushed)) => {
                self.metrics
                    .prices_stored
                    .inc_by(flushed.inserted.len() as u64);
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
                self.pool.mark_stored(&done, SystemTime::now());
                self.network.publish(Gossip::Stored(StoredNotice::sign(
                    done,
                    unix_seconds(SystemTime::now()),
                    self.settings.identity.signer(),
                )));
            }
            Ok(FlushOutcome::NotWriter { writer }) => {
                // Our heartbeat's view is stale: stop trying until the next heartbeat, instead
                // of spending a transaction on every flush tick.
                self.lease_refuted = true;
                log::debug!("lost the lease before flushing (writer now {writer:?})");
            }
            Err(err) => log::warn!(
                "storing {} verified prices failed; they stay in memory and are retried: {err}",
                ids.len()
            ),
        }
    }

    fn expire(&mut self) {
        let expired = self.pool.expire(SystemTime::now());
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

    /// Graceful stop within [`STOP_BUDGET`]: a writer stores what is due, then the lease row
    /// goes, then the database pool. A step the database is too slow for is abandoned: the
    /// next writer stores those prices, and the heartbeat row expires on its own.
    async fn stop(&mut self) {
        log::info!("stopping");
        let deadline = tokio::time::Instant::now() + STOP_BUDGET;
        if self.lease_state().is_writer
            && let Some(store) = self.store.clone()
        {
            let due: Vec<VerifiedPrice> = self.pool.due(SystemTime::now());
            if !due.is_empty() {
                let ids = due.iter().map(|price| price.id).collect();
                let flush = store.flush(&self.me, &due, self.settings.pool.min_signers);
                match tokio::time::timeout_at(deadline - STOP_CLEANUP, flush).await {
                    Ok(result) => {
                        self.on_flushed((ids, result));
                        // Give the stored notice a moment to leave before the network closes.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(_) => log::warn!(
                        "stopping without storing {} due prices: the database did not answer in time; the next writer stores them",
                        due.len()
                    ),
                }
            }
        }
        if let Some(mut lease) = self.lease.take() {
            let _ = lease.stop.send(());
            let removal = tokio::time::timeout_at(deadline - STOP_CLEANUP / 2, &mut lease.task);
            if removal.await.is_err() {
                lease.task.abort();
                log::warn!("the heartbeat row was not removed in time; it expires on its own");
            }
        }
        if let Some(store) = self.store.take() {
            let _ = tokio::time::timeout_at(deadline, store.close()).await;
        }
    }
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

/// Waits for the next member list the heartbeats read; never resolves before the lease runs.
async fn next_member_list(lists: &mut Option<watch::Receiver<MemberList>>) -> MemberList {
    match lists {
        Some(lists) => {
            if lists.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            lists.borrow_and_update().clone()
        }
        None => std::future::pending().await,
    }
}

/// Flushes are checked often enough that a due price waits at most a fraction of its delay.
fn flush_check_interval(flush_delay: Duration) -> Duration {
    (flush_delay / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

fn interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Ticks an optional timer; never resolves while there is none.
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
