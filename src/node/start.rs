//! A node's wiring, in one place: the price feed, the metrics registry, the member set the
//! validator shares, the network, the operator's HTTP endpoints and the consumers' API, and the
//! node's own task. Each part is built here and handed what it talks to; nothing else builds
//! them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::NodeStatus;
use super::{Inbox, Liveness, Node, NodeEvent, NodeSettings, Phase, RunningNode, Work};
use crate::api::verified::VerifiedPrices;
use crate::cosign::Cosigning;
use crate::http;
use crate::logging::LogLimiter;
use crate::membership::{MemberView, Members};
use crate::metrics::Metrics;
use crate::network;
use crate::pool::Pool;
use crate::price::PriceFeed;
use crate::store::Store;
use crate::trigger::Triggers;
use crate::writer::Writer;

use super::origination::Origination;

/// Starts a node: network, HTTP endpoint (when configured) and the node's task.
pub async fn start(settings: NodeSettings, metrics: Metrics) -> anyhow::Result<RunningNode> {
    settings.validate()?;
    let feed = Arc::new(PriceFeed::new(settings.feed.clone())?);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    metrics.start_pairs(settings.feed.pairs);
    // Nobody counts until the member list has been read from the database.
    let initial_members = Arc::new(
        Members::for_node(settings.trusted_signers.clone())
            .in_deployment(settings.deployment.clone()),
    );
    metrics.members.set(-1);
    let (members, member_view) = watch::channel(Arc::clone(&initial_members));
    let (network, gossip, network_task) = network::spawn(
        settings.identity.keypair(),
        settings.network.clone(),
        member_view.clone(),
        Arc::new(metrics.clone()),
        &mut registry,
    )?;
    let registry = Arc::new(registry);
    let (status_tx, status) = watch::channel(NodeStatus::default());
    // Subscribed to before the node's task starts: the API misses no event.
    let (events, _) = broadcast::channel(4096);
    // HTTP outlives the node's own stop, so that /health answers until the end.
    let http_stop = CancellationToken::new();
    let (http_addr, http_task) = match settings.http {
        Some(addr) => {
            let served = Served {
                status: &status,
                registry: &registry,
                events: events.subscribe(),
                members: member_view,
            };
            let (bound, task) = serve_http(addr, &settings, &metrics, served, &http_stop).await?;
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
    let (control, controls) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let me = settings.identity.address();
    let node = Node {
        me,
        phase: Phase::WaitingForPeers,
        pool: Pool::new(settings.pool, settings.committee, initial_members),
        cosigning: Cosigning::new(settings.cosign(), me),
        triggers: Triggers::new(settings.trigger, me),
        origination: Origination::new(feed, &me),
        writer: Writer::new(
            settings.lease,
            settings.deployment.clone(),
            settings.identity.signer().clone(),
            Arc::new(metrics.clone()),
        ),
        members,
        network,
        work: Work::new(shutdown.clone()),
        shutdown: shutdown.clone(),
        liveness: Liveness {
            started: Instant::now(),
            running_since: None,
            last_heartbeat_ok: None,
            last_gossip: None,
        },
        metrics,
        events: events.clone(),
        status: status_tx,
        cosign_refusals: LogLimiter::default(),
        settings,
    };
    let inbox = Inbox {
        gossip,
        controls,
        network_task: Some(network_task),
    };
    let task = tokio::spawn(node.run(inbox, http_stop, http_task));
    Ok(RunningNode {
        http_addr,
        status,
        registry,
        events,
        control,
        shutdown,
        task,
    })
}

/// What the HTTP server shows of the node.
struct Served<'a> {
    status: &'a watch::Receiver<NodeStatus>,
    registry: &'a Arc<Registry>,
    /// The node's facts, of which the API renders the verified rounds for its consumers.
    events: broadcast::Receiver<NodeEvent>,
    /// The member set the node applies, for `/v1/network`.
    members: MemberView,
}

/// How long the HTTP runtime gives its tasks after the node's stop (the server's own graceful
/// stop, its streams ended by the same signal, takes less).
const HTTP_SHUTDOWN: Duration = Duration::from_secs(2);

/// File descriptors a node needs besides its streams: peers, database connections, requests.
const FILES_BESIDES_STREAMS: u64 = 1_024;

/// Raises the soft open-files limit as far as the hard one allows (often 1,024 soft against
/// 524,288 hard), and says so when it stays below what `--api-max-streams` needs.
fn raise_open_files_limit(max_streams: usize) {
    let needed = max_streams as u64 + FILES_BESIDES_STREAMS;
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit < needed => log::warn!(
            "open files limited to {limit}: fewer than the {needed} that --api-max-streams \
             {max_streams} needs; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower \
             --api-max-streams"
        ),
        Ok(limit) => log::debug!("open files limit: {limit}"),
        Err(err) => log::warn!("cannot raise the open files limit: {err}"),
    }
}

/// Serves `/health`, `/status`, `/metrics` and the `/v1` API on `addr`.
async fn serve_http(
    addr: SocketAddr,
    settings: &NodeSettings,
    metrics: &Metrics,
    served: Served<'_>,
    stop: &CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    // The consumers' API reads through a lazily connected store of its own: it is served from
    // the start (503 until the database answers), and its readers never take the connections
    // the heartbeats and the flush need. The streams' listener holds one of its connections
    // for good, so it has at least one more for the readers.
    let api_db = crate::store::DbSettings {
        pool_size: settings.db.pool_size.max(2),
        ..settings.db.clone()
    };
    let state = ApiSetup {
        db: api_db,
        metrics: metrics.clone(),
        pairs: settings.feed.pairs,
        limits: settings.api,
        cors: settings.api_cors.clone(),
        events: served.events,
        members: served.members,
        status: served.status.clone(),
        registry: Arc::clone(served.registry),
        stop: stop.clone(),
    };
    raise_open_files_limit(settings.api.max_streams);
    // Everything HTTP runs on a runtime of its own, started here.
    let runtime = http_runtime(settings.api.threads, stop)?;
    let (bound, task) = runtime
        .spawn(state.serve(addr))
        .await
        .context("the HTTP server's runtime stopped")??;
    log::info!("serving /health, /status, /metrics and /v1 on http://{bound}");
    Ok((bound, task))
}

/// What the HTTP server needs, owned, to be set up on its own runtime.
struct ApiSetup {
    db: crate::store::DbSettings,
    metrics: Metrics,
    pairs: crate::pair::PairSet,
    limits: crate::api::ApiLimits,
    cors: crate::api::limits::Cors,
    events: broadcast::Receiver<NodeEvent>,
    members: MemberView,
    status: watch::Receiver<NodeStatus>,
    registry: Arc<Registry>,
    stop: CancellationToken,
}

impl ApiSetup {
    /// The API's store, its reader and the server, on the current (the HTTP) runtime.
    async fn serve(self, addr: SocketAddr) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
        let metrics = Arc::new(self.metrics);
        let api_store = Store::connect_lazy(&self.db)
            .await
            .context("cannot set up the /v1 API's database pool")?
            .with_probe(Arc::clone(&metrics) as Arc<dyn crate::store::Probe>);
        let verified = Arc::new(VerifiedPrices::default());
        tokio::spawn(render_verified(
            self.events,
            Arc::clone(&verified),
            self.stop.clone(),
        ));
        let api = crate::api::router(crate::api::ApiState {
            store: api_store,
            // The first is what `?pair=` defaults to.
            pairs: self.pairs,
            limits: self.limits,
            cors: self.cors,
            verified,
            members: self.members,
            probe: metrics,
            stop: self.stop.clone(),
        });
        http::serve(addr, self.status, self.registry, self.stop, Some(api))
            .await
            .with_context(|| format!("cannot serve HTTP on {addr}"))
    }
}

/// The rounds the node verified, rendered for the API's consumers here, on the HTTP runtime:
/// the node's own loop only says what happened. A round stored before it was verified here is
/// not published (consumers have it already). A consumer that falls far behind skips rounds;
/// the stored prices follow anyway.
async fn render_verified(
    mut events: broadcast::Receiver<NodeEvent>,
    verified: Arc<VerifiedPrices>,
    stop: CancellationToken,
) {
    loop {
        let Some(event) = stop.run_until_cancelled(events.recv()).await else {
            return;
        };
        match event {
            Ok(NodeEvent::Verified {
                report,
                already_stored: false,
                ..
            }) => verified.publish(&report),
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                log::debug!("API: {missed} verified rounds skipped: the HTTP runtime fell behind");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// A runtime for the HTTP server alone (`--http-threads` workers): readers flooding the API
/// then compete with the node's consensus for CPU only through the OS scheduler, never for
/// the workers of the runtime the consensus runs on. It runs until `stop`, then gives what is
/// left a moment and shuts down.
fn http_runtime(threads: usize, stop: &CancellationToken) -> anyhow::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the HTTP server's runtime")?;
    let handle = runtime.handle().clone();
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("http-runtime".to_owned())
        .spawn(move || {
            runtime.block_on(stop.cancelled());
            runtime.shutdown_timeout(HTTP_SHUTDOWN);
        })
        .context("cannot start the HTTP server's thread")?;
    Ok(handle)
}
