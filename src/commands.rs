//! What each subcommand does, from parsed arguments to printed output and exit status.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{BootstrapArgs, KeygenArgs, MigrateArgs, MockExchangeArgs, PriceArgs, RunArgs};
use crate::identity::{self, Identity};
use crate::metrics::Metrics;
use crate::mock_exchange::MockExchange;
use crate::price::PriceFeed;
use crate::store::Store;
use crate::{network, node};
use prometheus_client::registry::Registry;

/// `oracle keygen`: create a key (or with `--show`, read one) and print its public identity.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = identity::key_path(&args.key.key_dir, &args.key.name)?;
    let (identity, status) = if args.show {
        (identity::load(&path)?, "existing")
    } else {
        let identity = Identity::generate();
        identity::write(&path, &identity, args.force)?;
        log::info!("wrote key file {}", path.display());
        (identity, "created")
    };
    println!("key file  {} ({status})", path.display());
    println!("address   {}", identity.address());
    println!("peer id   {}", identity.peer_id());
    Ok(ExitCode::SUCCESS)
}

/// `oracle price`: one line per source, then the median; exit 1 below `--min-sources`.
pub async fn price(args: &PriceArgs) -> anyhow::Result<ExitCode> {
    let settings = args.sources.feed_settings()?;
    let required = settings.min_sources;
    let feed = PriceFeed::new(settings)?;
    let report = feed.fetch_all().await;
    for (source, result) in &report.results {
        match result {
            Ok(price) => println!("{:<10} {price}", source.name()),
            Err(err) => println!("{:<10} error: {err}", source.name()),
        }
    }
    let answered = report.prices().len();
    let total = report.results.len();
    match report.median(required) {
        Ok(median) => {
            println!("{:<10} {median} ({answered} of {total} sources)", "median");
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            println!(
                "{:<10} none: {answered} of {total} sources answered, {required} required",
                "median"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `oracle mock-exchange`: serve until Ctrl-C or SIGTERM.
pub async fn mock_exchange(args: &MockExchangeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings();
    let exchange = MockExchange::start(args.listen, settings.clone())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    log::info!(
        "mock exchange on {} (price {}, volatility {}, fail rate {}, faults {:?})",
        exchange.base_url(),
        settings.price,
        settings.volatility,
        settings.fail_rate,
        settings.faults
    );
    println!("{}", exchange.base_url());
    tokio::select! {
        () = exchange.wait() => anyhow::bail!("mock exchange stopped unexpectedly"),
        signal = shutdown_signal() => {
            signal?;
            log::info!("mock exchange stopping");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `oracle migrate`: apply pending migrations under the advisory lock.
pub async fn migrate(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let settings = args.db.settings()?;
    log::info!("migrating {}", settings.url);
    Store::migrate(&settings)
        .await
        .with_context(|| format!("cannot migrate {}", settings.url))?;
    log::info!("database schema is up to date");
    Ok(ExitCode::SUCCESS)
}

/// `oracle run`: a full node until Ctrl-C or SIGTERM.
pub async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let identity = load_or_create_identity(&args.key)?;
    let settings = args.node_settings(identity)?;
    let shutdown = async {
        if let Err(err) = shutdown_signal().await {
            log::error!("{err:#}");
        }
    };
    node::run(settings, Metrics::default(), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `oracle bootstrap`: a network-only node; prints the addresses others join through.
pub async fn bootstrap(args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    let identity = load_or_create_identity(&args.key)?;
    let (mut handle, events, task) = network::spawn(
        identity.keypair(),
        args.network_settings(),
        Metrics::default(),
        &mut Registry::default(),
    )?;
    // A bootstrap node relays and validates gossip but has no use for it.
    drop(events);
    for addr in handle.wait_for_listen_addrs().await {
        println!("{addr}");
    }
    shutdown_signal().await?;
    log::info!("bootstrap node stopping");
    drop(handle);
    let _ = task.await;
    Ok(ExitCode::SUCCESS)
}

fn load_or_create_identity(key: &crate::config::KeyArgs) -> anyhow::Result<Identity> {
    let path = identity::key_path(&key.key_dir, &key.name)?;
    let (identity, created) = identity::load_or_create(&path)?;
    if created {
        log::info!("created key file {}", path.display());
    }
    log::info!(
        "{}: address {}, peer id {}",
        key.name,
        identity.address(),
        identity.peer_id()
    );
    Ok(identity)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot watch Ctrl-C"),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
    }
}
