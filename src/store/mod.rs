//! PostgreSQL: the only module that holds SQL.
//!
//! - [`Store`]: a small bounded pool, every call under a timeout, migrations under an advisory
//!   lock so that many nodes starting at once do not race on `CREATE TABLE`.
//! - [`lease`]: the heartbeat statement that keeps, takes or hands over the writer lease; the
//!   row with the greatest timestamp is the writer.
//! - [`members`]: the `signers` table — who counts.
//! - [`prices`]: the fenced, exactly-once flush of verified prices.
//! - [`reports`]: reads for `oracle verify` and `oracle status`.
//! - [`read`]: reads for the consumers' API and `oracle prices`.
//! - [`notify`]: `LISTEN prices_stored`, which wakes the API's streams when prices commit.
//! - [`roles`]: the least-privilege role nodes log in as (`oracle db-role`).
//! - [`primary`]: finding and following the primary of a replicated PostgreSQL.
//! - [`row`]: a stored row read back as the signed price it records.

pub mod lease;
pub mod members;
pub mod notify;
pub mod prices;
pub mod primary;
pub mod read;
pub mod reports;
pub mod roles;
pub mod row;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};

pub use primary::Followed;
use primary::Primary;

/// Server-side bounds on every session a node opens, so that no node can hold the others up
/// for longer than a few seconds:
/// - `lock_timeout`: a statement waits at most 2 s for a lock (a heartbeat behind a writer's
///   fence fails and retries on its next tick instead of queueing);
/// - `idle_in_transaction_session_timeout`: a transaction whose client went silent (a writer
///   paused or cut off inside its fence) is ended after 5 s, releasing its locks;
/// - `tcp_keepalives_*`: the server notices a vanished client within about 25 s instead of the
///   operating system's 2 hours.
pub const SESSION_LIMITS: &[(&str, &str)] = &[
    ("lock_timeout", "2s"),
    ("idle_in_transaction_session_timeout", "5s"),
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];

/// Statements running longer than this are logged as warnings.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);
/// Key of the advisory lock that serializes migrations across nodes (any fixed number works;
/// this one is "oracle" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f_72_61_63_6c_65;

/// A database URL. `Display` hides the password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL (any of its servers) carries a password.
    pub fn has_password(&self) -> bool {
        self.servers()
            .iter()
            .any(|server| userinfo(server.expose()).is_some_and(|info| info.contains(':')))
    }
}

/// The `user[:password]` of a single-server URL.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..end].rsplit_once('@').map(|(info, _)| info)
}

impl fmt::Display for DatabaseUrl {
    /// Without the password, also for several servers (a multi-host URL, which no URL parser
    /// takes, or URLs separated by commas).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0.as_str();
        if primary::several_urls(url) {
            let masked: Vec<String> = self.servers().iter().map(ToString::to_string).collect();
            return f.write_str(&masked.join(","));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return f.write_str("<unparsable database URL>");
        };
        match userinfo(url) {
            Some(info) if info.contains(':') => {
                let user = info.split(':').next().unwrap_or_default();
                write!(f, "{scheme}://{user}:***@{}", &rest[info.len() + 1..])
            }
            _ => f.write_str(url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: DatabaseUrl,
    /// Most connections this node opens.
    pub pool_size: u32,
    /// Limit of every database call: connecting, waiting for a connection, each statement.
    pub timeout: Duration,
}

/// A failed database call. Displays as one line without the password, each cause once: the
/// database's error is shown in the message (see [`describe`]), so it is not also a
/// `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: no answer from the database within {timeout:?}")]
    Timeout {
        what: &'static str,
        timeout: Duration,
    },
    #[error("{what}: {}", describe(.error))]
    Db { what: &'static str, error: DbErr },
    #[error("{what}: unexpected result: {detail}")]
    Unexpected { what: &'static str, detail: String },
}

impl StoreError {
    fn db(what: &'static str) -> impl FnOnce(DbErr) -> Self {
        move |error| Self::Db { what, error }
    }
}

/// What a database error says, once. sea-orm and sqlx each print their cause and return it as
/// `source()` too, so an error chain repeats it three times ("Query Error: error returned from
/// database: X: error returned from database: X: X"); and sqlx ends a server's message with the
/// line of the server's C source that raised it ("at line 3319"), which helps nobody here.
pub fn describe(error: &DbErr) -> String {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as SqlxError;
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => match error.as_ref() {
            // The server's own words: `relation "x" does not exist`, `canceling statement due
            // to statement timeout`.
            SqlxError::Database(error) => error.message().to_owned(),
            // sqlx nests a configuration error in another one: "error with configuration:
            // error with configuration: unknown value ...".
            other => {
                let text = other.to_string();
                let mut parts: Vec<&str> = Vec::new();
                for part in text.split(": ") {
                    if parts.last() != Some(&part) {
                        parts.push(part);
                    }
                }
                parts.join(": ")
            }
        },
        DbErr::Conn(RuntimeErr::Internal(text))
        | DbErr::Exec(RuntimeErr::Internal(text))
        | DbErr::Query(RuntimeErr::Internal(text)) => text.clone(),
        other => other.to_string(),
    }
}

/// The database as `/status` and `/health` show it: the outcome of the last call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseState {
    #[default]
    NotConnected,
    Ok,
    Failing,
}

/// The node's handle on the database. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    /// The pool, on the server that takes writes (see [`primary`]).
    primary: Arc<Primary>,
    /// How to open the pool again on another server.
    shape: PoolShape,
    timeout: Duration,
    /// Whether the last database call succeeded (for `/health`).
    healthy: Arc<AtomicBool>,
    probe: Option<Arc<dyn Probe>>,
}

/// What the store reports of its statements; the node's metrics implement it.
pub trait Probe: Send + Sync + std::fmt::Debug {
    /// A statement of this kind (the name the store gives the call) is issued: counted before
    /// it runs, so that one that hangs shows.
    fn statement_issued(&self, kind: &'static str);
    /// A statement of this kind failed or timed out.
    fn statement_failed(&self, kind: &'static str);
    /// Which server the store writes to, after it looked (at the start, and after a failure
    /// that a failover may explain).
    fn primary_followed(&self, _followed: &Followed) {}
}

/// How a store's pool is opened: kept, to open it again on a new primary.
#[derive(Debug, Clone, Copy)]
struct PoolShape {
    size: u32,
    session: &'static [(&'static str, &'static str)],
    /// Statements running longer than this are logged as warnings.
    slow: Duration,
    timeout: Duration,
}

impl PoolShape {
    fn options(self, url: &DatabaseUrl) -> ConnectOptions {
        let session = self.session;
        let mut options = ConnectOptions::new(url.expose());
        options.map_sqlx_postgres_opts(move |pg| pg.options(session.iter().copied()));
        options
            .max_connections(self.size.max(1))
            .min_connections(0)
            .connect_timeout(self.timeout)
            .acquire_timeout(self.timeout)
            .statement_timeout(self.timeout)
            .idle_timeout(Duration::from_secs(60))
            .set_application_name("price-oracle")
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Trace)
            .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, self.slow);
        options
    }

    /// A pool that connects on first use.
    async fn open_lazy(self, url: &DatabaseUrl) -> Result<DatabaseConnection, StoreError> {
        let mut options = self.options(url);
        options.connect_lazy(true);
        within(self.timeout, "connect", Database::connect(options)).await
    }

    /// A pool whose first connection is made (and checked) now.
    async fn open(self, url: &DatabaseUrl) -> Result<DatabaseConnection, StoreError> {
        within(
            self.timeout,
            "connect",
            connect_pool(url, self.options(url)),
        )
        .await
    }
}

impl Store {
    /// Connects (and checks the connection) within the configured timeout, to the server that
    /// takes writes when the URL names several. Every session is bounded on the server too
    /// (see [`SESSION_LIMITS`]).
    pub async fn connect(settings: &DbSettings) -> Result<Self, StoreError> {
        let shape = Self::node_pool(settings);
        let servers = settings.url.servers();
        let index = if servers.len() > 1 {
            primary::find(&servers, settings.timeout).await?
        } else {
            0
        };
        let db = shape.open(&servers[index]).await?;
        Ok(Self::on(Primary::new(servers, index, db), shape))
    }

    /// A store that opens its connections on first use, so it exists before the database
    /// answers: the node's read API is served from the start, and answers 503 until the
    /// database does. It is a pool of its own, so that readers can never take the connections
    /// the heartbeats and the flush need.
    pub async fn connect_lazy(settings: &DbSettings) -> Result<Self, StoreError> {
        let shape = Self::node_pool(settings);
        let servers = settings.url.servers();
        // No server may answer yet: start on the first, and follow at the first failure.
        let index = if servers.len() > 1 {
            primary::find(&servers, settings.timeout).await.unwrap_or(0)
        } else {
            0
        };
        let db = shape.open_lazy(&servers[index]).await?;
        Ok(Self::on(Primary::new(servers, index, db), shape))
    }

    fn node_pool(settings: &DbSettings) -> PoolShape {
        PoolShape {
            size: settings.pool_size,
            session: SESSION_LIMITS,
            slow: SLOW_STATEMENT,
            timeout: settings.timeout,
        }
    }

    fn on(primary: Primary, shape: PoolShape) -> Self {
        Self {
            primary: Arc::new(primary),
            shape,
            timeout: shape.timeout,
            healthy: Arc::new(AtomicBool::new(true)),
            probe: None,
        }
    }

    /// Reports statements, failures and the server in use to `probe` from now on.
    pub fn with_probe(mut self, probe: Arc<dyn Probe>) -> Self {
        probe.primary_followed(&Followed {
            primary: Some(self.primary.server().host()),
            moved: false,
            without: Duration::ZERO,
        });
        self.probe = Some(probe);
        self
    }

    /// Whether the last database call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The server this store writes to (`host:port`).
    pub fn server(&self) -> String {
        self.primary.server().host()
    }

    /// The pool, on the server that took writes when last asked.
    fn db(&self) -> DatabaseConnection {
        self.primary.db()
    }

    /// Applies pending migrations, one node at a time, on the primary.
    ///
    /// The advisory lock lives in a session, so this uses its own one-connection pool: lock,
    /// migrate and unlock all run on the same connection, and if the node dies the server drops
    /// the lock with the connection.
    pub async fn migrate(settings: &DbSettings) -> Result<(), StoreError> {
        // Migrating can take longer than one statement; give it a generous bound.
        let limit = settings.timeout * 6;
        let url = primary::primary_url(&settings.url, settings.timeout).await?;
        // Migrations may wait for locks longer than a node's statements do: nodes started
        // together queue for the migration lock, which is no slow statement worth a warning.
        let shape = PoolShape {
            size: 1,
            session: &[],
            slow: limit,
            timeout: settings.timeout,
        };
        let db = shape.open(&url).await?;
        let lock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_lock($1)",
            [MIGRATION_LOCK.into()],
        );
        within(limit, "migration lock", db.execute_raw(lock)).await?;
        let migrated = within(limit, "migrate", Migrator::up(&db, None)).await;
        let unlock = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_unlock($1)",
            [MIGRATION_LOCK.into()],
        );
        let unlocked = within(limit, "migration unlock", db.execute_raw(unlock)).await;
        let _ = db.close().await;
        migrated?;
        unlocked.map(|_| ())
    }

    /// Runs one statement under the store's timeout, counting it and its failure.
    async fn timed<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, DbErr>>,
    ) -> Result<T, StoreError> {
        if let Some(probe) = &self.probe {
            probe.statement_issued(what);
        }
        let result = within(self.timeout, what, call).await;
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        if let Err(err) = &result {
            if let Some(probe) = &self.probe {
                probe.statement_failed(what);
            }
            if self.primary.replicated() && primary::may_mean_failover(err) {
                self.follow_primary().await;
            }
        }
        result
    }

    /// Looks for the primary again and moves the pool there (see [`primary`]).
    async fn follow_primary(&self) {
        let shape = self.shape;
        let followed = self
            .primary
            .follow(self.timeout, async |url: &DatabaseUrl| {
                shape.open_lazy(url).await
            })
            .await;
        if let (Some(probe), Some(followed)) = (&self.probe, followed) {
            probe.primary_followed(&followed);
        }
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.db().ping()).await
    }

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.db().close().await;
    }
}

/// Opens a pool after one direct connection. A pool whose connections are refused retries
/// them until its acquire timeout and then says only "pool timed out"; a single connection
/// fails at once with the reason (connection refused, unknown host, no such database).
async fn connect_pool(
    url: &DatabaseUrl,
    options: ConnectOptions,
) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Connection;
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
    let failed = |error| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error)));
    let direct = url
        .expose()
        .parse::<PgConnectOptions>()
        .map_err(failed)?
        .application_name("price-oracle");
    let connection = PgConnection::connect_with(&direct).await.map_err(failed)?;
    let _ = connection.close().await;
    Database::connect(options).await
}

async fn within<T>(
    timeout: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(StoreError::db(what)),
        Err(_) => Err(StoreError::Timeout { what, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_display_without_password() {
        let url = DatabaseUrl::new("postgres://oracle:s3cr%40t@db:15432/oracle");
        assert_eq!(url.to_string(), "postgres://oracle:***@db:15432/oracle");
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(url.expose(), "postgres://oracle:s3cr%40t@db:15432/oracle");
        let plain = DatabaseUrl::new("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(
            plain.to_string(),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert!(!DatabaseUrl::new("not a url:pw").to_string().contains("pw"));
        let replicated = DatabaseUrl::new("postgres://oracle:pw@h1:5441,h2:5442/oracle");
        assert_eq!(
            replicated.to_string(),
            "postgres://oracle:***@h1:5441,h2:5442/oracle"
        );
        let listed = DatabaseUrl::new("postgres://a:pw1@h1/x,postgres://b:pw2@h2/x");
        assert_eq!(
            listed.to_string(),
            "postgres://a:***@h1/x,postgres://b:***@h2/x"
        );
    }

    #[test]
    fn database_errors_are_described_once() {
        use sea_orm::RuntimeErr;
        use sea_orm::sqlx::postgres::PgConnectOptions;
        let error = "postgres://oracle@db/oracle?sslmode=bogus"
            .parse::<PgConnectOptions>()
            .unwrap_err();
        let error = StoreError::Db {
            what: "connect",
            error: DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))),
        };
        assert_eq!(
            error.to_string(),
            "connect: error with configuration: unknown value \"bogus\" for `ssl_mode`"
        );
        assert!(std::error::Error::source(&error).is_none());
    }
}
