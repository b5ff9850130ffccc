//! The command line: every flag, its `ORACLE_*` environment variable and its default, and the
//! conversion into the typed settings the other modules take.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::Address;
use clap::{Args, Parser, Subcommand};
use reqwest::Url;

use libp2p::Multiaddr;
use rust_decimal::Decimal;

use crate::api::ApiLimits;
use crate::api::limits::Cors;
use crate::committee::CommitteeSettings;
use crate::domain::Deployment;
use crate::identity::Identity;
use crate::logging::LogFilter;
use crate::mock_exchange::{Fault, MockSettings};
use crate::network::validation::{DEFAULT_MAX_ORIGIN_RATE, ValidationSettings};
use crate::network::{
    ConnectionBounds, DEFAULT_MAX_REFUSED_PER_PEER, DEFAULT_VALIDATION_QUEUE, NetworkSettings,
};
use crate::node::NodeSettings;
use crate::pair::{Pair, PairSet};
use crate::pool::PoolSettings;
use crate::price::{FeedSettings, QuoteRules, Source, UsdPrice};
use crate::store::{DatabaseUrl, DbSettings};
use crate::trigger::TriggerSettings;
use crate::writer::LeaseSettings;

/// Decentralized price oracle node: ETH/USD, and BTC/USD or SOL/USD with --pairs.
///
/// Nodes fetch each pair's price, sign it (EIP-191, secp256k1), gossip and co-sign it over libp2p, and
/// store each price with enough signatures in PostgreSQL exactly once.
///
/// Every flag can also be set by an environment variable, ORACLE_<FLAG> (for example
/// --flush-delay is ORACLE_FLUSH_DELAY). Durations read like 500ms, 30s, 10m or 1h.
#[derive(Debug, Parser)]
#[command(name = "oracle", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at startup; boxing the arguments would buy nothing"
)]
pub enum Command {
    /// Create a node key (KEY_DIR/NAME.json, encrypted, or KEY_DIR/NAME.priv), encrypt a .priv
    /// with --import, or show the address and peer id of a key with --show.
    Keygen(KeygenArgs),
    /// Fetch each --pairs pair once from every configured source and print each quote and the
    /// median.
    Price(PriceArgs),
    /// Serve the four exchange APIs locally with a random-walk price for every pair (tests,
    /// offline demos).
    ///
    /// Two POST endpoints change it while it runs:
    ///
    /// POST /mock/price?pair=ETH/USD&price=3060 sets that pair's price; the walk goes on from
    /// there and the other pairs follow at their scale. Answers {"pair":…,"price":…}, or HTTP
    /// 400 with {"error":…} for an unknown pair or a bad price.
    ///
    /// POST /mock/lag?seconds=300 makes Coingecko's last_updated_at that much older than now,
    /// so nodes find its quotes stale (--max-quote-age); 0 undoes it.
    MockExchange(MockExchangeArgs),
    /// Apply pending database migrations (safe to run from many nodes at once).
    Migrate(MigrateArgs),
    /// Create or update a node's least-privilege database role (one per node, bound to its
    /// address). Run it with the admin credential, after `oracle migrate`; safe to run again.
    DbRole(DbRoleArgs),
    /// Run an oracle node: fetch, sign, gossip, co-sign, and store verified prices.
    Run(RunArgs),
    /// Run a bootstrap node: a stable address new nodes join through (no database, no prices).
    Bootstrap(BootstrapArgs),
    /// Audit stored prices: recompute every digest and recover every signature; exit 1 on any
    /// invalid row.
    Verify(VerifyArgs),
    /// Show the nodes' heartbeats (and the writer) and the latest stored prices.
    Status(StatusArgs),
    /// Manage the members whose signatures count (the signers table).
    #[command(subcommand)]
    Signers(SignersCommand),
    /// Read stored prices from the database, as the node's /v1 API shows them (the same JSON).
    #[command(subcommand)]
    Prices(PricesCommand),
}

/// `oracle prices …`: the `/v1` API's answers, read from the database directly and judged as
/// the API judges every row.
#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// The newest stored price of a pair (by observation time), as GET /v1/prices/latest.
    Latest(PricesLatestArgs),
    /// One stored price by id, as GET /v1/prices/{id}.
    Get(PricesGetArgs),
    /// A page of a pair's history in commit order, as GET /v1/prices.
    List(PricesListArgs),
}

#[derive(Debug, Args)]
pub struct PricesLatestArgs {
    /// The pair.
    #[arg(long, env = "ORACLE_PAIR", default_value = crate::pair::Pair::DEFAULT.name())]
    pub pair: crate::pair::Pair,
    /// The network a row's signatures must be bound to, and its f: a row that does not verify
    /// by them is never printed, as a node's API never serves it.
    #[command(flatten)]
    pub consensus: DomainArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct PricesGetArgs {
    /// The price's id (decimal).
    pub id: String,
    /// The network a row's signatures must be bound to, and its f: a row that does not verify
    /// by them is never printed, as a node's API never serves it.
    #[command(flatten)]
    pub consensus: DomainArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct PricesListArgs {
    /// The pair.
    #[arg(long, env = "ORACLE_PAIR", default_value = crate::pair::Pair::DEFAULT.name())]
    pub pair: crate::pair::Pair,
    /// Only prices observed at or after this moment (unix seconds, inclusive).
    #[arg(long, env = "ORACLE_FROM")]
    pub from: Option<u64>,
    /// Only prices observed before this moment (unix seconds, exclusive).
    #[arg(long, env = "ORACLE_TO")]
    pub to: Option<u64>,
    /// Prices per page, from 1 to 1000 [default: 100].
    #[arg(long, env = "ORACLE_LIMIT")]
    pub limit: Option<u64>,
    /// Cursor: the `next` of the previous page, or the greatest `seq` seen [default: the
    /// beginning].
    #[arg(long, env = "ORACLE_AFTER")]
    pub after: Option<u64>,
    /// The network a row's signatures must be bound to, and its f: a row that does not verify
    /// by them is never printed, as a node's API never serves it.
    #[command(flatten)]
    pub consensus: DomainArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `oracle signers …`: membership, kept in the database (run with the admin credential).
#[derive(Debug, Subcommand)]
pub enum SignersCommand {
    /// Make an address a member: its signatures count from now on, on every node within one
    /// heartbeat.
    Add(SignerArgs),
    /// Revoke a member: its signatures stop counting now. Rows it signed before stay valid.
    Remove(SignerArgs),
    /// List the members (and, with --all, the revoked ones).
    List(SignersListArgs),
}

/// Whose membership to change: an address, or the address of a key file.
#[derive(Debug, Args)]
pub struct SignerArgs {
    /// The member's address (0x…).
    #[arg(required_unless_present = "key", conflicts_with = "key")]
    pub address: Option<alloy_primitives::Address>,
    /// Take the address from the key KEY_DIR/KEY.json or KEY_DIR/KEY.priv instead.
    #[arg(long, env = "ORACLE_KEY")]
    pub key: Option<String>,
    /// Folder of the key files.
    #[arg(long, env = "ORACLE_KEY_DIR", default_value = "keys")]
    pub key_dir: PathBuf,
    #[command(flatten)]
    pub password: KeyPasswordArgs,
    /// A label for people, e.g. the node name [default: the key name].
    #[arg(long, env = "ORACLE_LABEL")]
    pub label: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct SignersListArgs {
    /// Also list revoked members.
    #[arg(long, env = "ORACLE_ALL")]
    pub all: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Logging, accepted before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log level: off, error, warn, info, debug or trace; per-target levels may follow, as in
    /// "info,libp2p_gossipsub=debug".
    #[arg(long, env = "ORACLE_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: LogFilter,
    /// Also append log lines to this file.
    #[arg(long, env = "ORACLE_LOG_FILE", global = true)]
    pub log_file: Option<PathBuf>,
    /// Log line format: text for people, json (one object per line) for log shippers.
    #[arg(
        long,
        env = "ORACLE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: crate::logging::LogFormat,
}

/// Which key a node uses.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Node name: the key is KEY_DIR/NAME.json (an encrypted keystore) or KEY_DIR/NAME.priv
    /// (unencrypted), created if neither exists (encrypted when a password is given); the name
    /// appears on every log line.
    #[arg(long, env = "ORACLE_NAME")]
    pub name: String,
    /// Folder of the key files.
    #[arg(long, env = "ORACLE_KEY_DIR", default_value = "keys")]
    pub key_dir: PathBuf,
    #[command(flatten)]
    pub password: KeyPasswordArgs,
}

/// Where an encrypted key's password comes from: a file, or the environment.
#[derive(Debug, Args)]
pub struct KeyPasswordArgs {
    /// File holding the password of the key's keystore (its contents less trailing line breaks)
    /// [default: the ORACLE_KEY_PASSWORD environment variable]. There is no flag for the password
    /// itself: command lines are visible to every local user.
    #[arg(long, env = "ORACLE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

/// The environment variable that holds a keystore's password when no --password-file is given.
pub const KEY_PASSWORD_ENV: &str = "ORACLE_KEY_PASSWORD";

impl KeyPasswordArgs {
    /// The password from --password-file, else from ORACLE_KEY_PASSWORD; `None` without either.
    pub fn read(&self) -> anyhow::Result<Option<crate::identity::Password>> {
        Ok(
            read_password(self.password_file.as_deref(), KEY_PASSWORD_ENV)?
                .map(crate::identity::Password::new),
        )
    }
}

/// A password from `file` (its contents less trailing line breaks), else from the environment
/// variable `env_var`; `None` when neither is given. An empty one is refused: it would protect nothing.
pub fn read_password(
    file: Option<&Path>,
    env_var: &str,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    use anyhow::Context;
    use zeroize::Zeroizing;
    let (password, source) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map(Zeroizing::new)
                .with_context(|| format!("cannot read password file {}", path.display()))?;
            let password = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned());
            (password, format!("password file {}", path.display()))
        }
        None => match std::env::var(env_var) {
            Ok(password) => (
                Zeroizing::new(password),
                format!("{env_var} environment variable"),
            ),
            Err(_) => return Ok(None),
        },
    };
    if password.is_empty() {
        anyhow::bail!("the {source} is empty");
    }
    Ok(Some(password))
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Node name: the key is KEY_DIR/NAME.json (encrypted) or KEY_DIR/NAME.priv (unencrypted).
    #[arg(long, env = "ORACLE_NAME", required_unless_present = "psk")]
    pub name: Option<String>,
    /// Folder of the key files.
    #[arg(long, env = "ORACLE_KEY_DIR", default_value = "keys")]
    pub key_dir: PathBuf,
    /// Replace an existing key (either file). The old key, and the identity it gave, are lost.
    #[arg(long, env = "ORACLE_FORCE", conflicts_with = "show")]
    pub force: bool,
    /// Print the address and peer id of the existing key instead of creating one (a keystore
    /// needs its password).
    #[arg(long, env = "ORACLE_SHOW")]
    pub show: bool,
    /// Write the key encrypted, as KEY_DIR/NAME.json: a Web3 Secret Storage v3 keystore (scrypt),
    /// the format of geth, foundry and eth-account. A key is written this way whenever a password
    /// is given; this flag makes a missing password an error instead of an unencrypted .priv.
    #[arg(long, env = "ORACLE_KEYSTORE", conflicts_with_all = ["show", "psk"])]
    pub keystore: bool,
    /// Encrypt the existing KEY_DIR/NAME.priv into the keystore KEY_DIR/NAME.json (same address
    /// and peer id), check that it opens with the password, then delete the .priv.
    #[arg(long, env = "ORACLE_IMPORT", conflicts_with_all = ["show", "psk"])]
    pub import: bool,
    #[command(flatten)]
    pub password: KeyPasswordArgs,
    /// Instead of a node key, write a new random swarm key (the pre-shared key of a private
    /// network, for --psk-file) to this file, and print its fingerprint.
    #[arg(long, env = "ORACLE_PSK", conflicts_with_all = ["name", "show"])]
    pub psk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PriceArgs {
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Which pairs, and where their prices come from.
#[derive(Debug, Args)]
#[command(next_help_heading = "Price sources")]
pub struct SourceArgs {
    /// Comma-separated pairs to fetch and sign: ETH/USD, BTC/USD, SOL/USD. Every node of a
    /// network should sign the same pairs: prices of a pair a node does not sign are ignored by
    /// it (not co-signed, not stored).
    #[arg(
        long,
        env = "ORACLE_PAIRS",
        value_delimiter = ',',
        default_value = Pair::DEFAULT.name()
    )]
    pub pairs: Vec<Pair>,
    /// Comma-separated price sources, each asked once per observation; the median of their
    /// quotes is used, less stale quotes and outliers (--max-quote-age, --max-source-deviation).
    /// Binance quotes USDT, a dollar stablecoin, not USD.
    #[arg(
        long,
        env = "ORACLE_SOURCES",
        value_enum,
        value_delimiter = ',',
        default_value = "coinbase,coingecko,kraken,binance"
    )]
    pub sources: Vec<Source>,
    /// Fewest sources whose quotes must be left after the rules for a price; with fewer the
    /// node signs nothing for the pair. The default, 2, keeps any one source from setting a
    /// node's price alone (docs/sources.md).
    #[arg(long, env = "ORACLE_MIN_SOURCES", default_value_t = 2)]
    pub min_sources: usize,
    /// A quote whose source says it was last updated longer ago than this is left out as stale
    /// (Coingecko says so; the exchanges quote their last trade).
    #[arg(long, env = "ORACLE_MAX_QUOTE_AGE", default_value = "2m", value_parser = parse_duration)]
    pub max_quote_age: Duration,
    /// A quote further than this from the median of the other sources' quotes (for an even
    /// number of others: from the nearer of their two middle quotes) is left out as an
    /// outlier. A percentage like 2% or a fraction like 0.02.
    #[arg(long, env = "ORACLE_MAX_SOURCE_DEVIATION", default_value = "2%", value_parser = parse_ratio)]
    pub max_source_deviation: Decimal,
    /// Base URL for every source, e.g. a mock exchange at http://127.0.0.1:8099.
    #[arg(long, env = "ORACLE_SOURCE_BASE_URL", value_parser = parse_http_url)]
    pub source_base_url: Option<Url>,
    /// Base URL of Coinbase [default: https://api.coinbase.com].
    #[arg(long, env = "ORACLE_COINBASE_URL", value_parser = parse_http_url)]
    pub coinbase_url: Option<Url>,
    /// Base URL of Coingecko [default: https://api.coingecko.com].
    #[arg(long, env = "ORACLE_COINGECKO_URL", value_parser = parse_http_url)]
    pub coingecko_url: Option<Url>,
    /// Base URL of Kraken [default: https://api.kraken.com].
    #[arg(long, env = "ORACLE_KRAKEN_URL", value_parser = parse_http_url)]
    pub kraken_url: Option<Url>,
    /// Base URL of Binance [default: https://api.binance.com].
    #[arg(long, env = "ORACLE_BINANCE_URL", value_parser = parse_http_url)]
    pub binance_url: Option<Url>,
    /// Time limit of one HTTP request to a source. A whole observation, retries included, ends
    /// after twice this: a source that hangs delays the others by no more.
    #[arg(long, env = "ORACLE_SOURCE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub source_timeout: Duration,
    /// Retries after a timeout, connection error, HTTP 5xx or 429 (backoff 250ms, doubling),
    /// within the observation's time. A source answering HTTP 451 or 403 (it does not serve
    /// this region) is not retried, but skipped for an hour.
    #[arg(long, env = "ORACLE_SOURCE_RETRIES", default_value_t = 2)]
    pub source_retries: u32,
}

/// First retry waits this long; each further one twice as long, capped at 5 s.
const SOURCE_BACKOFF: Duration = Duration::from_millis(250);

impl SourceArgs {
    /// The feed settings, with each source's URL resolved: its own flag, else the shared base
    /// URL, else the public API.
    pub fn feed_settings(&self) -> anyhow::Result<FeedSettings> {
        let mut sources = self.sources.clone();
        sources.sort_unstable();
        sources.dedup();
        if self.min_sources == 0 || self.min_sources > sources.len() {
            anyhow::bail!(
                "--min-sources {} must be between 1 and the number of sources ({})",
                self.min_sources,
                sources.len()
            );
        }
        if self.source_timeout.is_zero() {
            anyhow::bail!("--source-timeout must be longer than 0");
        }
        let pairs: PairSet = self.pairs.iter().copied().collect();
        if pairs.is_empty() {
            anyhow::bail!("--pairs needs at least one pair");
        }
        for pair in pairs.iter() {
            let (quoting, not): (Vec<Source>, Vec<Source>) =
                sources.iter().partition(|source| source.quotes(pair));
            if quoting.len() < self.min_sources {
                anyhow::bail!(
                    "{pair}: only {} of the --sources quote it ({} cannot), fewer than --min-sources {}",
                    quoting.len(),
                    not.iter()
                        .map(|source| source.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.min_sources
                );
            }
        }
        let endpoints = sources
            .into_iter()
            .map(|source| {
                let base = self
                    .url_override(source)
                    .or(self.source_base_url.as_ref())
                    .map(Url::as_str)
                    .unwrap_or(source.default_base_url());
                Url::parse(base)
                    .map(|url| (source, url))
                    .map_err(|err| anyhow::anyhow!("{source} URL {base}: {err}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(FeedSettings {
            pairs,
            endpoints,
            rules: QuoteRules {
                min_sources: self.min_sources,
                max_quote_age: self.max_quote_age,
                max_deviation: self.max_source_deviation,
            },
            timeout: self.source_timeout,
            retries: self.source_retries,
            backoff: SOURCE_BACKOFF,
        })
    }

    fn url_override(&self, source: Source) -> Option<&Url> {
        match source {
            Source::Coinbase => self.coinbase_url.as_ref(),
            Source::Coingecko => self.coingecko_url.as_ref(),
            Source::Kraken => self.kraken_url.as_ref(),
            Source::Binance => self.binance_url.as_ref(),
        }
    }
}

#[derive(Debug, Args)]
pub struct MockExchangeArgs {
    /// Address to serve on.
    #[arg(long, env = "ORACLE_LISTEN", default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    /// Starting ETH price in USD. Every pair is served: BTC/USD at 30 times the ETH price,
    /// SOL/USD at a twentieth of it, so all move together.
    #[arg(long, env = "ORACLE_PRICE", default_value = "3000", value_parser = parse_usd)]
    pub price: UsdPrice,
    /// Largest relative step of the random walk per tick (0.001 = ±0.1 %); 0 keeps the price.
    #[arg(long, env = "ORACLE_VOLATILITY", default_value_t = 0.001, value_parser = parse_volatility)]
    pub volatility: f64,
    /// How often the random walk steps.
    #[arg(long, env = "ORACLE_TICK", default_value = "1s", value_parser = parse_duration)]
    pub tick: Duration,
    /// Seed of the walk and the faults, for reproducible runs [default: random].
    #[arg(long, env = "ORACLE_SEED")]
    pub seed: Option<u64>,
    /// Share of answers (0.0 to 1.0) that are faults instead of prices.
    #[arg(long, env = "ORACLE_FAIL_RATE", default_value_t = 0.0, value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Comma-separated faults to pick from. The default leaves out blocked (HTTP 451), after
    /// which a node does not ask the source for an hour.
    #[arg(
        long,
        env = "ORACLE_FAULTS",
        value_enum,
        value_delimiter = ',',
        default_value = "server-error,rate-limited,html,non-numeric,hang"
    )]
    pub faults: Vec<Fault>,
    /// How long a hang fault stalls before answering; longer than the clients' timeout.
    #[arg(long, env = "ORACLE_HANG", default_value = "15s", value_parser = parse_duration)]
    pub hang: Duration,
    /// How much older than now Coingecko's last_updated_at says its quotes are (see POST
    /// /mock/lag).
    #[arg(long, env = "ORACLE_QUOTE_LAG", default_value = "0s", value_parser = parse_duration)]
    pub quote_lag: Duration,
}

impl MockExchangeArgs {
    pub fn settings(&self) -> MockSettings {
        MockSettings {
            price: self.price,
            volatility: self.volatility,
            tick: self.tick,
            seed: self.seed,
            fail_rate: self.fail_rate,
            faults: self.faults.clone(),
            hang: self.hang,
            quote_lag: self.quote_lag,
        }
    }
}

/// How a node joins the peer-to-peer network.
#[derive(Debug, Args)]
#[command(next_help_heading = "Network")]
pub struct NetArgs {
    /// Address of a node to join through (repeatable), e.g. /ip4/10.0.0.5/tcp/4001/p2p/16Uiu2HAm…
    /// as printed by `oracle bootstrap`. The /p2p/<peer id> part authenticates that node.
    #[arg(long, env = "ORACLE_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Accept bootstrap addresses without /p2p/<peer id> (e.g. /dns4/bootstrap/tcp/4001):
    /// whoever answers there is trusted. Only inside a network you control.
    #[arg(long, env = "ORACLE_ALLOW_UNAUTHENTICATED_BOOTSTRAP")]
    pub allow_unauthenticated_bootstrap: bool,
    /// Prices observed longer ago than this are refused, and no longer co-signed.
    #[arg(long, env = "ORACLE_MAX_AGE", default_value = "15m", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Prices observed up to this far in the future are accepted (clock skew between nodes).
    #[arg(long, env = "ORACLE_MAX_CLOCK_SKEW", default_value = "30s", value_parser = parse_duration)]
    pub max_clock_skew: Duration,
    /// File of member addresses, one per line (# comments allowed), as `oracle verify` reads.
    /// A full node counts only signers that are both in the signers table and in this file; a
    /// bootstrap node (no database) relays only their messages. Without it a bootstrap node
    /// relays every well-formed message and full nodes use the table alone.
    #[arg(long, env = "ORACLE_TRUSTED_SIGNERS")]
    pub trusted_signers: Option<PathBuf>,
    /// Swarm key of a private network (go-ipfs/Kubo swarm.key format, made by
    /// `oracle keygen --psk PATH`): only nodes with the same key can connect [default: public].
    #[arg(long, env = "ORACLE_PSK_FILE")]
    pub psk_file: Option<PathBuf>,
    /// Retired: nodes gossip on price-oracle/prices/v2 alone. Takes an optional value so that
    /// any use of it, even `ORACLE_LEGACY_TOPIC=false`, is refused by name, not silently taken.
    #[arg(long, env = "ORACLE_LEGACY_TOPIC", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub legacy_topic: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Bounds on what peers can make this node do. Each one counts in `oracle_limit_hits_total`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Most established inbound connections, all peers together (and most half-open ones).
    #[arg(long, env = "ORACLE_MAX_INBOUND_CONNECTIONS", default_value_t = ConnectionBounds::DEFAULT.max_inbound)]
    pub max_inbound_connections: u32,
    /// Most connections with any one peer.
    #[arg(long, env = "ORACLE_MAX_CONNECTIONS_PER_PEER", default_value_t = ConnectionBounds::DEFAULT.max_per_peer, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_peer: u32,
    /// Most new prices of one pair accepted from one origin per minute (also its burst); more
    /// are ignored. An honest origin starts at most one round per pair per --observe-interval.
    #[arg(long, env = "ORACLE_MAX_ORIGIN_RATE", default_value_t = DEFAULT_MAX_ORIGIN_RATE, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_origin_rate: u32,
    /// Received messages from one peer waiting for validation (peers are served in turn); past
    /// it that peer's new messages are ignored.
    #[arg(long, env = "ORACLE_VALIDATION_QUEUE", default_value_t = DEFAULT_VALIDATION_QUEUE, value_parser = parse_queue_size)]
    pub validation_queue: usize,
    /// Refused messages (invalid, or not a member's) one peer may send per minute; past it the
    /// peer is cut off for 10 minutes. Honest peers send next to none.
    #[arg(long, env = "ORACLE_MAX_REFUSED_PER_PEER", default_value_t = DEFAULT_MAX_REFUSED_PER_PEER, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_refused_per_peer: u32,
    /// Pending (not yet verified) prices one signer's messages may hold in memory.
    #[arg(long, env = "ORACLE_MAX_PENDING_PER_SIGNER", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pending_per_signer: u32,
    /// Peers' prices waiting for this node's own observation before it can co-sign them.
    #[arg(long, env = "ORACLE_MAX_COSIGN_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_cosign_queue: u32,
}

impl NetArgs {
    /// Refuses the retired network settings by name: run before any other check, so that the
    /// message names what to remove rather than something unrelated.
    fn refuse_retired(&self) -> anyhow::Result<()> {
        if self.legacy_topic.is_some() {
            anyhow::bail!(
                "--legacy-topic (ORACLE_LEGACY_TOPIC) was retired: nodes gossip on \
                 price-oracle/prices/v2 alone, and a message on an older topic could not verify \
                 under a v2 configuration; remove it (docs/operating.md#renamed-and-retired-settings)"
            );
        }
        Ok(())
    }

    fn settings(&self, listen: &[Multiaddr]) -> anyhow::Result<NetworkSettings> {
        self.refuse_retired()?;
        for addr in &self.bootstrap {
            check_bootstrap_addr(addr, self.allow_unauthenticated_bootstrap)?;
        }
        let psk = self
            .psk_file
            .as_deref()
            .map(crate::network::transport::read_psk)
            .transpose()?;
        Ok(NetworkSettings {
            listen: listen.to_vec(),
            bootstrap: self.bootstrap.clone(),
            validation: ValidationSettings {
                max_age: self.max_age,
                max_future_skew: self.max_clock_skew,
                max_origin_rate: self.limits.max_origin_rate,
                // A bootstrap node relays every pair; `oracle run` narrows this to --pairs.
                pairs: PairSet::ALL,
            },
            connections: ConnectionBounds {
                max_inbound: self.limits.max_inbound_connections,
                max_per_peer: self.limits.max_connections_per_peer,
            },
            validation_queue: self.limits.validation_queue,
            max_refused_per_peer: self.limits.max_refused_per_peer,
            psk,
        })
    }

    /// The static member list, if one was given.
    pub fn trusted_signers(&self) -> anyhow::Result<Option<HashSet<alloy_primitives::Address>>> {
        self.trusted_signers
            .as_deref()
            .map(crate::membership::read_trusted_signers)
            .transpose()
    }
}

/// A bootstrap address must name a TCP port (the only transport), and — unless the operator
/// accepts the risk — the peer id that authenticates whoever answers there.
fn check_bootstrap_addr(addr: &Multiaddr, allow_unauthenticated: bool) -> anyhow::Result<()> {
    use libp2p::multiaddr::Protocol;
    match addr.iter().find_map(|protocol| match protocol {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    }) {
        Some(0) => anyhow::bail!("bootstrap address {addr} has port 0; give the node's real port"),
        Some(_) => {}
        None => anyhow::bail!("bootstrap address {addr} has no /tcp/<port>, e.g. {addr}/tcp/4001"),
    }
    if !allow_unauthenticated && !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        anyhow::bail!(
            "bootstrap address {addr} has no /p2p/<peer id>: whoever answers there would be \
             trusted; append the peer id `oracle bootstrap` prints, or pass \
             --allow-unauthenticated-bootstrap to accept it"
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Address to listen on (repeatable). Give it a fixed port: others are configured with it.
    #[arg(
        long,
        env = "ORACLE_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/0.0.0.0/tcp/4001"
    )]
    pub listen: Vec<Multiaddr>,
    #[command(flatten)]
    pub net: NetArgs,
}

impl BootstrapArgs {
    pub fn network_settings(&self) -> anyhow::Result<NetworkSettings> {
        self.net.settings(&self.listen)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Address to listen on (repeatable); port 0 picks a free port.
    #[arg(
        long,
        env = "ORACLE_LISTEN",
        value_delimiter = ',',
        default_value = "/ip4/0.0.0.0/tcp/0"
    )]
    pub listen: Vec<Multiaddr>,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub consensus: ConsensusArgs,
    /// Serve /health, /status and /metrics, and the consumers' read API under /v1 (stored
    /// prices, history, a live stream, /v1/openapi.json), on this address, e.g. 127.0.0.1:9100
    /// [default: off].
    #[arg(long, env = "ORACLE_HTTP")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Add this node's own key to the signers table at start. A convenience for development
    /// networks: it needs a credential that can write the table, which is the trust root, so
    /// production nodes are registered by an operator with `oracle signers add` instead.
    #[arg(long, env = "ORACLE_REGISTER")]
    pub register: bool,
}

/// The limits of the consumers' `/v1` API (docs/reading-prices.md#limits).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Read API")]
pub struct ApiArgs {
    /// Largest page of price history one /v1/prices request may ask for (its `limit`).
    #[arg(long, env = "ORACLE_API_MAX_PAGE", default_value_t = ApiLimits::DEFAULT.max_page, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub api_max_page: u64,
    /// Most /v1/prices/stream clients at once; more are refused with 503 until one leaves.
    /// Each takes a file descriptor: the node raises its limit at start and warns when it
    /// stays below what this needs.
    #[arg(long, env = "ORACLE_API_MAX_STREAMS", default_value_t = ApiLimits::DEFAULT.max_streams as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_max_streams: u32,
    /// Stored prices a stream may fall behind by (a client that does not read) before the node
    /// drops it with an `event: dropped`; the client resumes with Last-Event-ID.
    #[arg(long, env = "ORACLE_API_STREAM_BACKLOG", default_value_t = ApiLimits::DEFAULT.stream_backlog as u32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub api_stream_backlog: u32,
    /// Requests per second one client (IP address) may make on average; past it, 429 with
    /// Retry-After. 0: no limit (behind a proxy every client shares its address).
    #[arg(long, env = "ORACLE_API_RATE_LIMIT", default_value_t = ApiLimits::DEFAULT.rate_per_second)]
    pub api_rate_limit: u32,
    /// Requests one client may make at once before --api-rate-limit applies.
    #[arg(long, env = "ORACLE_API_RATE_BURST", default_value_t = ApiLimits::DEFAULT.rate_burst, value_parser = clap::value_parser!(u32).range(1..))]
    pub api_rate_burst: u32,
    /// Requests being answered at once, all clients together; more get 429 with Retry-After
    /// at once rather than queueing.
    #[arg(long, env = "ORACLE_API_MAX_IN_FLIGHT", default_value_t = ApiLimits::DEFAULT.max_in_flight as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_max_in_flight: u32,
    /// Worker threads of the HTTP server, a runtime of its own: readers flooding the API then
    /// compete with the node's consensus only through the OS scheduler [default: half the
    /// cores, at least 1].
    #[arg(long, env = "ORACLE_HTTP_THREADS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub http_threads: Option<u32>,
    /// Let browsers on this origin read the API (CORS), e.g. https://app.example.org;
    /// repeat or comma-separate for several, `*` for any [default: none].
    #[arg(long, env = "ORACLE_API_CORS_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub api_cors_origin: Vec<String>,
}

/// Half the machine's cores, at least one.
fn half_the_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

fn parse_origin(text: &str) -> Result<String, String> {
    Cors::from_origins(&[text.to_owned()]).map(|_| text.to_owned())
}

/// When prices are fetched, co-signed, verified and stored.
#[derive(Debug, Args)]
#[command(next_help_heading = "Consensus")]
pub struct ConsensusArgs {
    /// Connected peers to wait for before the node starts fetching prices.
    #[arg(long, env = "ORACLE_MIN_PEERS", default_value_t = 3)]
    pub min_peers: usize,
    #[command(flatten)]
    pub domain: DomainArgs,
    /// Retired: a round needs 2f + 1 observations (--fault-tolerance).
    #[arg(long, env = "ORACLE_MIN_SIGNERS", hide = true)]
    pub min_signers: Option<String>,
    /// Retired: the committee is 3f + 1 members (--fault-tolerance).
    #[arg(long, env = "ORACLE_COSIGNERS", hide = true)]
    pub cosigners: Option<String>,
    /// A price still short of its quorum this long after it was heard gets co-signed by the next
    /// members in its ranking (f more at each step, at least one), so down or disagreeing
    /// co-signers cost time, not the price.
    #[arg(long, env = "ORACLE_COSIGN_FALLBACK", default_value = "5s", value_parser = parse_duration)]
    pub cosign_fallback: Duration,
    /// How often each pair is observed at the price sources. A round starts only when one is
    /// due (--deviation, --heartbeat); 15 s keeps every source within its public rate limit
    /// with three pairs (docs/sources.md).
    #[arg(long, env = "ORACLE_OBSERVE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub observe_interval: Duration,
    /// A member's rounds stand for their pair (nobody else starts one) only this long unless one
    /// verifies; then the next member in the starting order starts one. A member whose rounds
    /// fail twice in a row loses its turn to start rounds for ten times this. At least
    /// 2 × --observe-interval [default: 2 × --observe-interval].
    #[arg(long, env = "ORACLE_PROGRESS_TIMEOUT", value_parser = parse_duration)]
    pub progress_timeout: Option<Duration>,
    /// Start a round of a pair when our observation is this far from its newest verified value
    /// (the market moved): 0.5%, 1% or 0.005.
    #[arg(long, env = "ORACLE_DEVIATION", default_value = "0.5%", value_parser = parse_ratio)]
    pub deviation: Decimal,
    /// Start a round of a pair when its newest verified value is this old, however flat the
    /// market: the original 10-minute cadence. Replaces --price-interval (still accepted).
    #[arg(long, alias = "price-interval", env = "ORACLE_HEARTBEAT", default_value = "10m", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// A verified price is stored this long after its last signature.
    #[arg(long, env = "ORACLE_FLUSH_DELAY", default_value = "30s", value_parser = parse_duration)]
    pub flush_delay: Duration,
    /// Take part in a peer's round only if its origin's price is within this distance of our own
    /// observation (1%, 0.5% or 0.01): a member whose source is far off starts rounds nobody
    /// joins. It never sets the value, the median of the observations does.
    #[arg(long, env = "ORACLE_MAX_DEVIATION", default_value = "1%", value_parser = parse_ratio)]
    pub max_deviation: Decimal,
    /// Verified prices the database has not taken are kept in memory this long, then dropped.
    #[arg(long, env = "ORACLE_RETENTION", default_value = "1h", value_parser = parse_duration)]
    pub retention: Duration,
    /// How often this node renews its heartbeat (writer lease) in the database.
    #[arg(long, env = "ORACLE_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// How far past its last heartbeat the writer's lease reaches: a writer that dies is
    /// replaced within this plus --heartbeat-interval.
    #[arg(
        long,
        alias = "heartbeat-jitter",
        env = "ORACLE_LEASE_DURATION",
        default_value = "20s",
        value_parser = parse_duration
    )]
    pub lease_duration: Duration,
    /// How long one node stays the writer before it hands the lease to the next (the writer
    /// rotates about once per term, not at every heartbeat).
    #[arg(long, env = "ORACLE_WRITER_TERM", default_value = "60s", value_parser = parse_duration)]
    pub writer_term: Duration,
    /// Apply database migrations at start (serialized across nodes by an advisory lock).
    #[arg(
        long,
        env = "ORACLE_MIGRATE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub migrate: bool,
}

/// What every signature of a network is bound to besides its members: its name, chain and
/// verifier, and its fault bound.
#[derive(Debug, Args)]
#[command(next_help_heading = "Network configuration")]
pub struct DomainArgs {
    /// The number f of faulty members (lying, colluding, silent) the network tolerates: a round
    /// needs observations of 2f + 1 distinct members and its committee is 3f + 1 members. Every
    /// member must use the same f: it is bound into every signature. At most ⌊(members − 1)/3⌋,
    /// which is the default; a lower f costs fewer messages per round and tolerates less.
    #[arg(long, env = "ORACLE_FAULT_TOLERANCE", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub fault_tolerance: Option<u32>,
    /// The network's name, bound into every signature so that a test network's signatures never
    /// count in another network run with the same keys.
    #[arg(long, env = "ORACLE_NETWORK_NAME", default_value = "price-oracle")]
    pub network_name: String,
    /// The chain whose verifier contract takes this network's reports (0: none), bound into
    /// every signature.
    #[arg(long, env = "ORACLE_CHAIN_ID", default_value_t = 0)]
    pub chain_id: u64,
    /// The verifier contract (PriceVerifier or PriceFeed) that takes this network's reports,
    /// bound into every signature so that a report verifies there only [default: none, the
    /// zero address].
    #[arg(long, env = "ORACLE_VERIFIER")]
    pub verifier: Option<Address>,
}

impl DomainArgs {
    /// What this network's signatures are bound to besides the members.
    pub fn deployment(&self) -> Deployment {
        Deployment {
            network: self.network_name.clone(),
            chain_id: self.chain_id,
            verifier: self.verifier.unwrap_or(Address::ZERO),
            max_faults: self.fault_tolerance.map(|f| f as usize),
        }
    }
}

impl RunArgs {
    /// Everything a node needs, given its identity.
    pub fn node_settings(&self, identity: Identity) -> anyhow::Result<NodeSettings> {
        let consensus = &self.consensus;
        if std::env::var_os("ORACLE_PRICE_INTERVAL").is_some() {
            anyhow::bail!(
                "ORACLE_PRICE_INTERVAL was replaced by ORACLE_HEARTBEAT (rounds now also start \
                 when the market moves --deviation; see --observe-interval)"
            );
        }
        self.net.refuse_retired()?;
        if consensus.min_signers.is_some() || consensus.cosigners.is_some() {
            anyhow::bail!(
                "--min-signers and --cosigners (ORACLE_MIN_SIGNERS, ORACLE_COSIGNERS) were retired: \
                 a round needs observations of 2f + 1 members and its committee is 3f + 1, where f \
                 is --fault-tolerance (default: a third of the members, less one)"
            );
        }
        let pool = PoolSettings {
            flush_delay: consensus.flush_delay,
            max_age: self.net.max_age,
            retention: consensus.retention.max(self.net.max_age),
            max_pending_per_signer: self.net.limits.max_pending_per_signer as usize,
        };
        let trigger = TriggerSettings {
            observe_interval: consensus.observe_interval,
            deviation: consensus.deviation,
            heartbeat: consensus.heartbeat,
            max_deviation: consensus.max_deviation,
            progress_timeout: consensus
                .progress_timeout
                .unwrap_or(consensus.observe_interval.saturating_mul(2)),
        };
        let lease = LeaseSettings {
            interval: consensus.heartbeat_interval,
            lease: consensus.lease_duration,
            term: consensus.writer_term,
            // A node that just started holds none of the recent prices yet.
            warm_up: consensus.flush_delay,
        };
        let committee = CommitteeSettings::new(consensus.cosign_fallback);
        NodeSettings::check(&trigger, &lease, &pool, &committee)?;
        let trusted_signers = self.net.trusted_signers()?;
        let feed = self.sources.feed_settings()?;
        let mut network = self.net.settings(&self.listen)?;
        network.validation.pairs = feed.pairs;
        Ok(NodeSettings {
            name: self.key.name.clone(),
            identity,
            network,
            min_peers: consensus.min_peers,
            pool,
            trigger,
            lease,
            feed,
            db: self.db.settings()?,
            migrate: consensus.migrate,
            trusted_signers,
            register: self.register,
            max_cosign_queue: self.net.limits.max_cosign_queue as usize,
            committee,
            deployment: consensus.domain.deployment(),
            http: self.http,
            api: ApiLimits {
                max_page: self.api.api_max_page,
                max_streams: self.api.api_max_streams as usize,
                stream_backlog: self.api.api_stream_backlog as usize,
                rate_per_second: self.api.api_rate_limit,
                rate_burst: self.api.api_rate_burst,
                max_in_flight: self.api.api_max_in_flight as usize,
                threads: self
                    .api
                    .http_threads
                    .map_or_else(half_the_cores, |threads| threads as usize),
            },
            // Each value was checked as it was parsed.
            api_cors: Cors::from_origins(&self.api.api_cors_origin).map_err(anyhow::Error::msg)?,
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only rows written within this long, e.g. 24h [default: all rows].
    #[arg(long, env = "ORACLE_SINCE", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// File of trusted signer addresses, one per line (# comments allowed); only they count
    /// toward the quorum, and others are reported [default: the signers table — a signature
    /// counts if its signer was a member when the price was observed].
    #[arg(long, env = "ORACLE_TRUSTED_SIGNERS")]
    pub trusted_signers: Option<PathBuf>,
    /// The network a row's signatures must be bound to, and its f: a row needs 2f + 1
    /// observations of members at its time.
    #[command(flatten)]
    pub consensus: DomainArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// How many of the latest prices to show.
    #[arg(long, env = "ORACLE_LIMIT", default_value_t = 10)]
    pub limit: u64,
    /// Show only this pair's prices [default: every pair].
    #[arg(long, env = "ORACLE_PAIR")]
    pub pair: Option<Pair>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct DbRoleArgs {
    /// Name of the role, e.g. oracle_node0: lowercase letters, digits and '_'.
    #[arg(long, env = "ORACLE_ROLE")]
    pub role: String,
    /// The address of the node that logs in with this role (0x…): the only heartbeat row it
    /// may write, and the writer it must be to insert prices. One role per node.
    #[arg(long, env = "ORACLE_NODE")]
    pub node: alloy_primitives::Address,
    /// File holding the role's password [default: the ORACLE_ROLE_PASSWORD environment
    /// variable]. Never given as a flag value: command lines are visible to every local user.
    #[arg(long, env = "ORACLE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// How to reach PostgreSQL.
#[derive(Debug, Args)]
#[command(next_help_heading = "Database")]
pub struct DbArgs {
    /// PostgreSQL URL; DATABASE_URL is read too. Without either, the URL is built from the
    /// --db-env file. A replicated database: a multi-host URL
    /// (postgres://user@h1:5432,h2:5432,h3:5432/db) or URLs separated by commas; the node
    /// writes to the one that takes writes and follows it when it moves.
    #[arg(long, env = "ORACLE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File with POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, DB_HOST and DB_PORT (the file
    /// postgres-dc.yaml gives the database container).
    #[arg(long, env = "ORACLE_DB_ENV", default_value = ".env-db")]
    pub db_env: PathBuf,
    /// Limit of every database call: connecting, waiting for a pooled connection, each statement.
    #[arg(long, env = "ORACLE_DB_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_timeout: Duration,
    /// Most database connections this node keeps open.
    #[arg(long, env = "ORACLE_DB_POOL_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub db_pool_size: u32,
}

impl DbArgs {
    /// The URL from, in order: --database-url / ORACLE_DATABASE_URL, DATABASE_URL, the --db-env file.
    pub fn settings(&self) -> anyhow::Result<DbSettings> {
        let url = match (&self.database_url, std::env::var("DATABASE_URL")) {
            (Some(url), _) => url.clone(),
            (None, Ok(url)) if !url.is_empty() => url,
            _ => url_from_env_file(&self.db_env, |key| std::env::var(key).ok())?,
        };
        if self.db_timeout.is_zero() {
            anyhow::bail!("--db-timeout must be longer than 0");
        }
        Ok(DbSettings {
            url: DatabaseUrl::new(url),
            pool_size: self.db_pool_size,
            timeout: self.db_timeout,
        })
    }
}

/// Whether the subcommand was given `--database-url` with a password on the command line, where
/// every local user can read it (`ps`, /proc). `matches` are the parsed top-level arguments.
pub fn database_password_on_command_line(matches: &clap::ArgMatches) -> bool {
    const ID: &str = "database_url";
    // The innermost subcommand holds the flag (`oracle signers add … --database-url …`).
    let mut sub = matches;
    while let Some((_, inner)) = sub.subcommand() {
        sub = inner;
    }
    // Only subcommands that have the flag: asking others about it would panic in debug builds.
    sub.ids().any(|id| id.as_str() == ID)
        && sub.value_source(ID) == Some(clap::parser::ValueSource::CommandLine)
        && sub
            .get_one::<String>(ID)
            .is_some_and(|url| DatabaseUrl::new(url.as_str()).has_password())
}

/// What to say when [`database_password_on_command_line`] holds.
pub const DATABASE_PASSWORD_WARNING: &str = "--database-url carries a password on the command \
    line, where every local user can read it (ps); set ORACLE_DATABASE_URL or DATABASE_URL in \
    the environment, or put the credentials in .env-db (--db-env), instead";

/// The variables a database URL is built from, as in `.env-db`.
const DB_ENV_KEYS: [&str; 5] = [
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "DB_HOST",
    "DB_PORT",
];

/// Builds `postgres://USER:PASSWORD@HOST:PORT/DB` from a `.env-db` style file (without putting
/// its values into the process environment), where variables of the same names in the
/// environment (`env`) win — so a container given the file as `env_file` needs no copy of it.
pub fn url_from_env_file(
    path: &std::path::Path,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let mut vars = std::collections::HashMap::new();
    match dotenvy::from_path_iter(path) {
        Ok(entries) => {
            for entry in entries {
                let (key, value) =
                    entry.with_context(|| format!("cannot parse {}", path.display()))?;
                vars.insert(key, value);
            }
        }
        Err(_) if DB_ENV_KEYS.iter().any(|key| env(key).is_some()) => {}
        Err(err) => {
            return Err(err).with_context(|| {
                format!(
                    "no database URL: set --database-url or DATABASE_URL, or provide {}",
                    path.display()
                )
            });
        }
    }
    for key in DB_ENV_KEYS {
        if let Some(value) = env(key) {
            vars.insert(key.to_owned(), value);
        }
    }
    let get = |key: &str, default: Option<&str>| {
        vars.get(key)
            .map(String::as_str)
            .or(default)
            .map(str::to_owned)
            .with_context(|| format!("{} sets no {key}", path.display()))
    };
    let user = get("POSTGRES_USER", Some("postgres"))?;
    let password = get("POSTGRES_PASSWORD", Some(""))?;
    let database = get("POSTGRES_DB", Some(&user))?;
    let host = get("DB_HOST", Some("127.0.0.1"))?;
    let port: u16 = get("DB_PORT", Some("5432"))?
        .parse()
        .with_context(|| format!("DB_PORT in {} is not a port number", path.display()))?;
    let mut url = Url::parse("postgres://localhost")?;
    let invalid =
        |what: &str| anyhow::anyhow!("{what} in {} is not usable in a URL", path.display());
    url.set_host(Some(&host)).map_err(|_| invalid("DB_HOST"))?;
    url.set_port(Some(port)).map_err(|()| invalid("DB_PORT"))?;
    url.set_username(&user)
        .map_err(|()| invalid("POSTGRES_USER"))?;
    if !password.is_empty() {
        url.set_password(Some(&password))
            .map_err(|()| invalid("POSTGRES_PASSWORD"))?;
    }
    url.set_path(&database);
    Ok(url.to_string())
}

/// Durations as people write them: `500ms`, `30s`, `10m`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|err| format!("{err} (write durations like 500ms, 30s, 10m or 1h)"))
}

/// `1%`, `0.5%` or a plain fraction `0.01`; from 0 up to 100 %.
fn parse_ratio(text: &str) -> Result<Decimal, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(percent) => (percent, Decimal::ONE_HUNDRED),
        None => (text.trim(), Decimal::ONE),
    };
    match crate::price::parse_decimal(number) {
        Ok(value) if value >= Decimal::ZERO && value / scale <= Decimal::ONE => Ok(value / scale),
        _ => Err("expected a percentage like 1% or a fraction like 0.01".to_owned()),
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|err| format!("{err}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err("expected an http:// or https:// URL with a host".to_owned()),
    }
}

fn parse_usd(text: &str) -> Result<UsdPrice, String> {
    UsdPrice::parse_quote(text).map_err(|err| err.to_string())
}

fn parse_queue_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(value) if (1..=65_536).contains(&value) => Ok(value),
        _ => Err("expected a whole number from 1 to 65536".to_owned()),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("expected a number from 0.0 to 1.0".to_owned()),
    }
}

fn parse_volatility(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..0.5).contains(&value) => Ok(value),
        _ => Err("expected a number from 0.0 up to 0.5".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("oracle").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag of every subcommand has the environment variable ORACLE_<FLAG_IN_UPPER_SNAKE>.
    #[test]
    fn every_flag_has_its_oracle_env_var() {
        fn check(command: &clap::Command, checked: &mut usize) {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                let expected = format!("ORACLE_{}", long.to_uppercase().replace('-', "_"));
                assert_eq!(
                    arg.get_env().and_then(|env| env.to_str()),
                    Some(expected.as_str()),
                    "--{long} of `{}`",
                    command.get_name()
                );
                *checked += 1;
            }
            for sub in command.get_subcommands() {
                check(sub, checked);
            }
        }
        let mut checked = 0;
        check(&Cli::command(), &mut checked);
        assert!(checked > 20, "only {checked} flags seen");
    }

    #[test]
    fn humane_durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10").unwrap_err().contains("30s"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn source_urls_resolve_by_precedence() {
        let cli = parse(&[
            "price",
            "--sources",
            "kraken,coinbase,binance,coinbase",
            "--source-base-url",
            "http://127.0.0.1:8099/",
            "--binance-url",
            "https://binance.example/prefix",
        ])
        .unwrap();
        let Command::Price(args) = cli.command else {
            panic!("not the price command")
        };
        let settings = args.sources.feed_settings().unwrap();
        let feed = crate::price::PriceFeed::new(settings.clone()).unwrap();
        let urls: Vec<_> = feed
            .requests()
            .iter()
            .map(|request| (request.source, request.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            vec![
                (
                    Source::Coinbase,
                    "http://127.0.0.1:8099/v2/exchange-rates?currency=ETH"
                ),
                (
                    Source::Kraken,
                    "http://127.0.0.1:8099/0/public/Ticker?pair=ETHUSD"
                ),
                (
                    Source::Binance,
                    "https://binance.example/prefix/api/v3/ticker/price?symbols=%5B%22ETHUSDT%22%5D"
                ),
            ]
        );
        assert_eq!(settings.timeout, Duration::from_secs(5));
    }

    #[test]
    fn defaults_are_the_four_public_apis_and_two_sources_per_price() {
        let Command::Price(args) = parse(&["price"]).unwrap().command else {
            panic!("not the price command")
        };
        let settings = args.sources.feed_settings().unwrap();
        assert_eq!(settings.pairs, PairSet::only(Pair::EthUsd));
        assert_eq!(
            settings.rules,
            QuoteRules {
                min_sources: 2,
                max_quote_age: Duration::from_secs(120),
                max_deviation: Decimal::new(2, 2),
            }
        );
        let feed = crate::price::PriceFeed::new(settings).unwrap();
        let urls: Vec<&str> = feed
            .requests()
            .iter()
            .map(|request| request.url.as_str())
            .collect();
        assert_eq!(
            urls,
            [
                "https://api.coinbase.com/v2/exchange-rates?currency=ETH",
                "https://api.coingecko.com/api/v3/simple/price?ids=ethereum&vs_currencies=usd&include_last_updated_at=true",
                "https://api.kraken.com/0/public/Ticker?pair=ETHUSD",
                "https://api.binance.com/api/v3/ticker/price?symbols=%5B%22ETHUSDT%22%5D",
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for args in [
            &["price", "--sources", "bitstamp"][..],
            &["price", "--source-base-url", "ftp://x"],
            &["price", "--source-timeout", "ten"],
            &["price", "--max-source-deviation", "150%"],
            &["price", "--max-quote-age", "old"],
            &["mock-exchange", "--fail-rate", "1.5"],
            &["mock-exchange", "--price", "-3"],
            &["mock-exchange", "--volatility", "NaN"],
            &["keygen", "--name", "a", "--force", "--show"],
            &["--log-level", "loud", "price"],
            &["price", "--pairs", "ETH/EUR"],
            &["price", "--pairs", "eth/usd"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let Command::Price(args) = parse(&["price", "--pairs", "SOL/USD,BTC/USD,SOL/USD"])
            .unwrap()
            .command
        else {
            panic!("not the price command")
        };
        let pairs = args.sources.feed_settings().unwrap().pairs;
        assert_eq!(
            pairs.iter().collect::<Vec<_>>(),
            [Pair::BtcUsd, Pair::SolUsd]
        );
        for args in [
            &["price", "--min-sources", "5"][..],
            &["price", "--sources", "coinbase"],
        ] {
            let Command::Price(args) = parse(args).unwrap().command else {
                panic!("not the price command")
            };
            let err = args.sources.feed_settings().unwrap_err().to_string();
            assert!(err.contains("--min-sources"), "{err}");
        }
    }

    #[test]
    fn database_url_from_the_env_file_escapes_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env-db");
        std::fs::write(
            &path,
            "# dev\nPOSTGRES_USER=oracle\nPOSTGRES_PASSWORD='p@ss:w/rd'\nPOSTGRES_DB=prices\nDB_HOST=db.local\nDB_PORT=15432\n",
        )
        .unwrap();
        let url = url_from_env_file(&path, no_env).unwrap();
        assert_eq!(
            url,
            "postgres://oracle:p%40ss%3Aw%2Frd@db.local:15432/prices"
        );
        assert_eq!(
            DatabaseUrl::new(url).to_string(),
            "postgres://oracle:***@db.local:15432/prices"
        );

        std::fs::write(&path, "POSTGRES_USER=me\n").unwrap();
        assert_eq!(
            url_from_env_file(&path, no_env).unwrap(),
            "postgres://me@127.0.0.1:5432/me"
        );
        std::fs::write(&path, "DB_PORT=high\n").unwrap();
        assert!(
            url_from_env_file(&path, no_env)
                .unwrap_err()
                .to_string()
                .contains("DB_PORT")
        );
        let missing = url_from_env_file(&dir.path().join("nope"), no_env).unwrap_err();
        assert!(missing.to_string().contains("--database-url"), "{missing}");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn environment_variables_override_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env-db");
        std::fs::write(&path, "POSTGRES_USER=oracle\nPOSTGRES_PASSWORD=pw\nPOSTGRES_DB=oracle\nDB_HOST=127.0.0.1\nDB_PORT=15432\n").unwrap();
        let env = |key: &str| match key {
            "DB_HOST" => Some("postgres".to_owned()),
            "DB_PORT" => Some("5432".to_owned()),
            _ => None,
        };
        assert_eq!(
            url_from_env_file(&path, env).unwrap(),
            "postgres://oracle:pw@postgres:5432/oracle"
        );
        // A container with env_file: .env-db and no copy of the file.
        let only_env = |key: &str| match key {
            "POSTGRES_USER" => Some("oracle".to_owned()),
            "DB_HOST" => Some("postgres".to_owned()),
            _ => None,
        };
        assert_eq!(
            url_from_env_file(&dir.path().join("absent"), only_env).unwrap(),
            "postgres://oracle@postgres:5432/oracle"
        );
    }

    #[test]
    fn committed_env_db_gives_the_compose_database() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".env-db");
        let url = url_from_env_file(&path, no_env).unwrap();
        assert!(url.contains(":15432/"), "{url}");
    }

    #[test]
    fn ratios_read_as_percent_or_fraction() {
        assert_eq!(parse_ratio("1%"), Ok(Decimal::new(1, 2)));
        assert_eq!(parse_ratio("0.5%"), Ok(Decimal::new(5, 3)));
        assert_eq!(parse_ratio("0.01"), Ok(Decimal::new(1, 2)));
        for bad in ["-1%", "101%", "2", "x", "%"] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_defaults_match_the_design() {
        let cli = parse(&["run", "--name", "node0"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not the run command")
        };
        let c = &args.consensus;
        assert_eq!(c.min_peers, 3);
        assert_eq!(c.domain.fault_tolerance, None);
        assert_eq!(c.heartbeat, Duration::from_secs(600));
        assert_eq!(c.observe_interval, Duration::from_secs(15));
        assert_eq!(c.deviation, Decimal::new(5, 3));
        assert_eq!(c.flush_delay, Duration::from_secs(30));
        assert_eq!(c.max_deviation, Decimal::new(1, 2));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(c.lease_duration, Duration::from_secs(20));
        assert_eq!(c.writer_term, Duration::from_secs(60));
        assert!(c.migrate);
        assert_eq!(args.net.max_age, Duration::from_secs(900));
        assert_eq!(
            args.listen,
            vec!["/ip4/0.0.0.0/tcp/0".parse::<Multiaddr>().unwrap()]
        );
        let cli = parse(&[
            "run",
            "--name",
            "n",
            "--migrate",
            "false",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4001/p2p/16Uiu2HAkzh4QdxB7ijzVnwd6JFNNe4bcr1JBwYUypXe3pX5BRpqK",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not the run command")
        };
        assert!(!args.consensus.migrate);
        assert_eq!(args.net.bootstrap.len(), 1);
    }

    #[test]
    fn a_password_in_database_url_on_the_command_line_is_noticed() {
        let noticed = |args: &[&str]| {
            let matches = Cli::command()
                .try_get_matches_from(std::iter::once("oracle").chain(args.iter().copied()))
                .unwrap();
            database_password_on_command_line(&matches)
        };
        let with_password = "postgres://oracle:pw@db:5432/oracle";
        assert!(noticed(&["migrate", "--database-url", with_password]));
        assert!(noticed(&["status", "--database-url", with_password]));
        assert!(noticed(&[
            "signers",
            "list",
            "--database-url",
            with_password
        ]));
        assert!(!noticed(&[
            "migrate",
            "--database-url",
            "postgres://oracle@db:5432/oracle"
        ]));
        assert!(noticed(&[
            "migrate",
            "--database-url",
            "postgres://oracle:pw@h1:5441,h2:5442/oracle"
        ]));
        assert!(!noticed(&["price"]));
        assert!(!noticed(&["keygen", "--name", "n"]));
    }

    #[test]
    fn log_flags_work_after_the_subcommand() {
        let cli = parse(&["price", "--log-level", "debug"]).unwrap();
        assert_eq!(cli.log.log_level.default, log::LevelFilter::Debug);
    }
}
