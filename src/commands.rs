//! What each subcommand does, from parsed arguments to printed output and exit status.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::api;
use crate::audit::{self, AuditRules, Counted, FindingKind};
use crate::config::{
    self, BootstrapArgs, DbRoleArgs, KeygenArgs, MigrateArgs, MockExchangeArgs, PriceArgs,
    PricesCommand, RunArgs, SignerArgs, SignersCommand, SignersListArgs, StatusArgs, VerifyArgs,
};
use crate::identity::{Identity, KeyFiles, KeyFormat};
use crate::membership::Members;
use crate::mock_exchange::MockExchange;
use crate::price::PriceFeed;
use crate::store::Store;
use crate::store::members::Added;
use crate::{network, node};
use prometheus_client::registry::Registry;

/// `oracle keygen`: create a key (or with `--show`, read one) and print its public identity.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.psk {
        let psk = network::transport::generate_psk();
        network::transport::write_psk(path, psk, args.force)?;
        log::info!("wrote swarm key file {}", path.display());
        println!("swarm key   {}", path.display());
        println!("fingerprint {}", psk.fingerprint());
        return Ok(ExitCode::SUCCESS);
    }
    // clap requires --name unless --psk is given.
    let name = args.name.as_deref().unwrap_or_default();
    let files = KeyFiles::new(&args.key_dir, name)?;
    let password = args.password.read()?;
    if password.is_none() && (args.import || args.keystore) {
        let flag = if args.import {
            "--import"
        } else {
            "--keystore"
        };
        anyhow::bail!(
            "{flag} needs a password for the keystore: --password-file FILE or the {} environment \
             variable",
            config::KEY_PASSWORD_ENV
        );
    }
    let (identity, format, status) = if args.show {
        let (identity, format) = files.load(password.as_ref())?;
        (identity, format, "existing".to_owned())
    } else if let Some(password) = password.as_ref().filter(|_| args.import) {
        let identity = files.import(password, args.force)?;
        let plain = files.path(KeyFormat::Plain).display();
        log::info!(
            "encrypted {plain} into {}, and deleted {plain}",
            files.path(KeyFormat::Keystore).display()
        );
        let status = format!("imported from {plain}, which is deleted");
        (identity, KeyFormat::Keystore, status)
    } else {
        let identity = Identity::generate();
        let format = files.create(&identity, password.as_ref(), args.force)?;
        log::info!("wrote key file {}", files.path(format).display());
        (identity, format, "created".to_owned())
    };
    if format == KeyFormat::Plain {
        warn_unencrypted(&files, &args.key_dir, name);
    }
    println!("key file  {} ({status})", files.path(format).display());
    println!("address   {}", identity.address());
    println!("peer id   {}", identity.peer_id());
    Ok(ExitCode::SUCCESS)
}

/// `oracle price`: one observation, as a node makes it. For each pair its name, one line per
/// source (its quote, or why it is not used), then the median; exit 1 when any pair has none.
pub async fn price(args: &PriceArgs) -> anyhow::Result<ExitCode> {
    let feed = PriceFeed::new(args.sources.feed_settings()?)?;
    let required = feed.settings().rules.min_sources;
    let mut code = ExitCode::SUCCESS;
    for (pair, report) in feed.observe().await {
        println!("{:<10} {pair}", "pair");
        for source in &report.sources {
            let name = source.source.name();
            match &source.outcome {
                Ok(price) => println!("{name:<10} {price}"),
                Err(unused) => println!("{name:<10} {unused}"),
            }
        }
        let total = report.sources.len();
        match report.result {
            Ok(median) => println!(
                "{:<10} {} ({} of {total} sources)",
                "median", median.price, median.sources
            ),
            Err(_) => {
                let used = report.sources.iter().filter(|s| s.outcome.is_ok()).count();
                println!(
                    "{:<10} none: {used} of {total} sources usable, {required} required",
                    "median"
                );
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
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

/// `oracle db-role`: create or update a node's least-privilege role.
pub async fn db_role(args: &DbRoleArgs) -> anyhow::Result<ExitCode> {
    crate::store::roles::check_role_name(&args.role)?;
    let password = role_password(args)?;
    let settings = args.db.settings()?;
    crate::store::roles::ensure_node_role(&settings, &args.role, &password, &args.node)
        .await
        .with_context(|| format!("cannot set up role {} in {}", args.role, settings.url))?;
    log::info!("role {} is ready in {}", args.role, settings.url);
    println!(
        "role {} (LOGIN) for node {}: SELECT, INSERT on prices (only as the writer); SELECT, INSERT, UPDATE on heartbeat (only its own row, by the lease rules); SELECT on signers, lease_rules, node_roles",
        args.role, args.node
    );
    Ok(ExitCode::SUCCESS)
}

/// The new role's password: the --password-file's contents (without the final line break), else
/// ORACLE_ROLE_PASSWORD.
fn role_password(args: &DbRoleArgs) -> anyhow::Result<zeroize::Zeroizing<String>> {
    config::read_password(args.password_file.as_deref(), "ORACLE_ROLE_PASSWORD")?
        .context("no password for the role: set ORACLE_ROLE_PASSWORD or pass --password-file")
}

/// `oracle run`: a full node until Ctrl-C or SIGTERM.
pub async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let identity = load_or_create_identity(&args.key)?;
    let settings = args.node_settings(identity)?;
    let shutdown = async {
        if let Err(err) = shutdown_signal().await {
            log::error!("{}", crate::logging::one_line(err.as_ref()));
        }
    };
    node::run(settings, node::Metrics::default(), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `oracle bootstrap`: a network-only node; prints the addresses others join through.
pub async fn bootstrap(args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    let settings = args.network_settings()?;
    let identity = load_or_create_identity(&args.key)?;
    let trusted = args.net.trusted_signers()?;
    if trusted.is_none() {
        log::warn!(
            "no --trusted-signers: this bootstrap node relays every well-formed message \
             (full nodes still count only members)"
        );
    }
    let members = tokio::sync::watch::channel(std::sync::Arc::new(Members::for_relay(trusted))).1;
    let (mut handle, events, task) = network::spawn(
        identity.keypair(),
        settings,
        members,
        // A bootstrap node serves no /metrics: its counts go nowhere.
        Arc::new(node::Metrics::default()),
        &mut Registry::default(),
    )?;
    // A bootstrap node relays and validates gossip but has no use for it.
    drop(events);
    let addrs = handle.wait_for_listen_addrs().await;
    if addrs.is_empty() {
        anyhow::bail!("the network stopped before listening on any address");
    }
    for addr in addrs {
        println!("{addr}");
    }
    shutdown_signal().await?;
    log::info!("bootstrap node stopping");
    drop(handle);
    let _ = task.await;
    Ok(ExitCode::SUCCESS)
}

/// How many offending ids `oracle verify` lists per kind.
const OFFENDERS_SHOWN: usize = 10;
/// Rows read per query by `oracle verify`.
const VERIFY_PAGE: u64 = 1_000;

/// `oracle verify`: audit every stored row; exit 1 on any row with a finding (invalid, an id
/// outside its origin's space, from the future, a non-member's observation, below quorum,
/// uncommitted).
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let settings = args.db.settings()?;
    let store = Store::connect(&settings)
        .await
        .with_context(|| format!("cannot connect to {}", settings.url))?;
    let history = store.signers().await?;
    let counted = match &args.trusted_signers {
        Some(path) => Counted::Listed(audit::read_trusted_signers(path)?),
        None => Counted::Members(history.clone()),
    };
    let rules = AuditRules {
        deployment: args.consensus.deployment(),
        counted,
        network: Some(history),
    };
    // One clock for the whole run: what "the future" is does not move while it reads.
    let now = chrono::Utc::now();
    let (mut rows, mut signatures) = (0usize, 0usize);
    let mut rows_by_pair: std::collections::BTreeMap<String, usize> = Default::default();
    let mut offenders: std::collections::HashMap<FindingKind, Vec<(i64, String)>> =
        Default::default();
    let mut after = None;
    loop {
        let page = store.prices_page(after, args.since, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for row in &page {
            let report = audit::audit_row(row, &rules, now);
            rows += 1;
            *rows_by_pair.entry(row.pair.clone()).or_default() += 1;
            signatures += report.signatures;
            if let Some(finding) = report.finding {
                let kind = finding.kind();
                offenders
                    .entry(kind)
                    .or_default()
                    .push((report.id, finding.to_string()));
            }
        }
    }
    store.close().await;
    println!("rows              {rows}");
    for (pair, count) in &rows_by_pair {
        println!("  {pair:<15} {count}");
    }
    println!("signatures        {signatures}");
    for kind in FindingKind::ALL {
        let listed = offenders.get(kind).map_or(&[][..], Vec::as_slice);
        print_offenders(heading(*kind), listed);
    }
    let ok = offenders.is_empty();
    println!("result            {}", if ok { "OK" } else { "FAILED" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How `oracle verify` heads the rows of a kind of finding.
fn heading(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Invalid => "invalid",
        FindingKind::ForeignId => "foreign id",
        FindingKind::FromFuture => "from the future",
        FindingKind::NonMember => "non-member",
        FindingKind::BelowQuorum => "below quorum",
        FindingKind::Uncommitted => "uncommitted",
    }
}

fn print_offenders(label: &str, offenders: &[(i64, String)]) {
    println!("{label:<17} {}", offenders.len());
    for (id, reason) in offenders.iter().take(OFFENDERS_SHOWN) {
        println!("  {id}  {reason}");
    }
    if offenders.len() > OFFENDERS_SHOWN {
        println!("  … and {} more", offenders.len() - OFFENDERS_SHOWN);
    }
}

/// `oracle signers add|remove|list`.
pub async fn signers(command: &SignersCommand) -> anyhow::Result<ExitCode> {
    match command {
        SignersCommand::Add(args) => {
            let (address, name) = signer_of(args)?;
            let store = connect_for(&args.db).await?;
            let added = store.add_signer(&address, &name).await;
            store.close().await;
            let what = match added? {
                Added::New => "added",
                Added::Readmitted => {
                    "added again (it keeps its first added_at, so its old rows still verify)"
                }
                Added::AlreadyMember => "already a member",
            };
            println!("{address} {what}");
        }
        SignersCommand::Remove(args) => {
            let (address, _) = signer_of(args)?;
            let store = connect_for(&args.db).await?;
            let removed = store.remove_signer(&address).await;
            store.close().await;
            if !removed? {
                anyhow::bail!("{address} is not a member");
            }
            println!("{address} removed: its signatures no longer count");
        }
        SignersCommand::List(args) => list_signers(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The address (and label) `oracle signers add|remove` acts on.
fn signer_of(args: &SignerArgs) -> anyhow::Result<(alloy_primitives::Address, String)> {
    match (&args.address, &args.key) {
        (Some(address), _) => Ok((*address, args.label.clone().unwrap_or_default())),
        (None, Some(key)) => {
            let password = args.password.read()?;
            let (identity, _) = KeyFiles::new(&args.key_dir, key)?.load(password.as_ref())?;
            Ok((
                identity.address(),
                args.label.clone().unwrap_or_else(|| key.clone()),
            ))
        }
        (None, None) => anyhow::bail!("give an address or --key NAME"),
    }
}

async fn list_signers(args: &SignersListArgs) -> anyhow::Result<()> {
    let store = connect_for(&args.db).await?;
    let rows = store.signers().await;
    store.close().await;
    let rows = rows?;
    let shown: Vec<_> = rows
        .iter()
        .filter(|row| args.all || row.revoked_at.is_none())
        .collect();
    println!("{:<42} {:<16} {:<25} revoked", "address", "name", "added");
    for row in &shown {
        println!(
            "{:<42} {:<16} {:<25} {}",
            row.address,
            row.name,
            row.added_at.format("%Y-%m-%d %H:%M:%S UTC"),
            row.revoked_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        );
    }
    let members = rows.iter().filter(|row| row.revoked_at.is_none()).count();
    println!("{members} members");
    Ok(())
}

async fn connect_for(db: &crate::config::DbArgs) -> anyhow::Result<Store> {
    let settings = db.settings()?;
    Store::connect(&settings)
        .await
        .with_context(|| format!("cannot connect to {}", settings.url))
}

/// `oracle prices latest|get|list`: what the node's `/v1` API answers, read from the database
/// directly and printed as the same JSON (one line), so scripts can use either.
pub async fn prices(command: &PricesCommand) -> anyhow::Result<ExitCode> {
    // The request is checked before connecting: a bad one needs no database to be refused.
    let (db, consensus, question) = match command {
        PricesCommand::Latest(args) => (&args.db, &args.consensus, Question::Latest(args.pair)),
        PricesCommand::Get(args) => {
            let id = api::params::price_id(&args.id)?;
            (&args.db, &args.consensus, Question::Get(id))
        }
        PricesCommand::List(args) => {
            let request = api::params::HistoryRequest {
                pair: Some(args.pair.name().to_owned()),
                from: args.from,
                to: args.to,
                limit: args.limit,
                after: args.after,
            };
            // Any pair the code knows: the database read here is the operator's own.
            let query = request.check(crate::pair::PairSet::ALL, &api::ApiLimits::DEFAULT)?;
            (&args.db, &args.consensus, Question::List(query))
        }
    };
    let store = connect_for(db).await?;
    let reader = api::DirectReader::new(consensus.deployment());
    let answer = question.answer(&reader, &store).await;
    store.close().await;
    println!("{}", answer?);
    Ok(ExitCode::SUCCESS)
}

/// What `oracle prices` asks, checked.
enum Question {
    Latest(crate::pair::Pair),
    Get(i64),
    List(crate::store::read::HistoryQuery),
}

impl Question {
    /// The answer as the API's JSON.
    async fn answer(&self, reader: &api::DirectReader, store: &Store) -> anyhow::Result<String> {
        Ok(match self {
            Self::Latest(pair) => reader.latest(store, *pair).await?,
            Self::Get(id) => reader.price(store, *id).await?,
            Self::List(query) => reader.history(store, query).await?,
        })
    }
}

/// `oracle status`: the heartbeat table and the latest stored prices.
pub async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let settings = args.db.settings()?;
    let store = Store::connect(&settings)
        .await
        .with_context(|| format!("cannot connect to {}", settings.url))?;
    let nodes = store.heartbeats().await?;
    let prices = store.latest_prices(args.limit, args.pair).await?;
    store.close().await;
    println!("NODES ({})", nodes.len());
    println!(
        "  {:<12} {:<42} {:<54} {:>10}  writer",
        "name", "address", "peer id", "ts - now"
    );
    for node in &nodes {
        println!(
            "  {:<12} {:<42} {:<54} {:>+9.1}s  {}",
            node.nodename,
            node.node_address,
            node.peer_id,
            node.lead_seconds,
            if node.is_writer { "*" } else { "" }
        );
    }
    println!();
    println!("LATEST PRICES ({} shown)", prices.len());
    println!(
        "  {:>10} {:<20} {:<8} {:>16} {:>7} {:>10}  written by",
        "seq", "id", "pair", "price", "signers", "age"
    );
    let now = chrono::Utc::now();
    for price in &prices {
        let age = (now - price.created_time.to_utc()).num_seconds();
        println!(
            "  {:>10} {:<20} {:<8} {:>16} {:>7} {:>9}s  {}",
            price.seq, price.id, price.pair, price.price, price.signer_count, age, price.written_by
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_or_create_identity(key: &crate::config::KeyArgs) -> anyhow::Result<Identity> {
    let files = KeyFiles::new(&key.key_dir, &key.name)?;
    let password = key.password.read()?;
    let (identity, format, created) = files.load_or_create(password.as_ref())?;
    if created {
        log::info!("created key file {}", files.path(format).display());
    }
    if format == KeyFormat::Plain {
        warn_unencrypted(&files, &key.key_dir, &key.name);
    }
    log::info!(
        "{}: address {}, peer id {}",
        key.name,
        identity.address(),
        identity.peer_id()
    );
    Ok(identity)
}

/// Said once wherever an unencrypted key is loaded or made: how to encrypt it.
fn warn_unencrypted(files: &KeyFiles, key_dir: &std::path::Path, name: &str) {
    log::warn!(
        "key file {} is not encrypted; encrypt it with `oracle keygen --name {name} --key-dir {} \
         --import --password-file FILE`, then start the node with that password (docs/keys.md)",
        files.path(KeyFormat::Plain).display(),
        key_dir.display()
    );
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
