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
//! - [`row`]: a stored row read back as the signed price it records.

pub mod lease;
pub mod members;
pub mod notify;
pub mod prices;
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
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match reqwest::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                f.write_str(url.as_str())
            }
            Ok(url) => f.write_str(url.as_str()),
            Err(_) => f.write_str("<unparsable database URL>"),
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
    db: DatabaseConnection,
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
}

impl Store {
    /// Connects (and checks the connection) within the configured timeout. Every session is
    /// bounded on the server too (see [`SESSION_LIMITS`]).
    pub async fn connect(settings: &DbSettings) -> Result<Self, StoreError> {
        let db = Self::open(settings, settings.pool_size, SESSION_LIMITS, SLOW_STATEMENT).await?;
        Ok(Self {
            db,
            timeout: settings.timeout,
            healthy: Arc::new(AtomicBool::new(true)),
            probe: None,
        })
    }

    /// Reports statements and failures to `probe` from now on.
    pub fn with_probe(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Whether the last database call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A store that opens its connections on first use, so it exists before the database
    /// answers: the node's read API is served from the start, and answers 503 until the
    /// database does. It is a pool of its own, so that readers can never take the connections
    /// the heartbeats and the flush need.
    pub async fn connect_lazy(settings: &DbSettings) -> Result<Self, StoreError> {
        let mut options =
            Self::options(settings, settings.pool_size, SESSION_LIMITS, SLOW_STATEMENT);
        options.connect_lazy(true);
        let db = within(settings.timeout, "connect", Database::connect(options)).await?;
        Ok(Self {
            db,
            timeout: settings.timeout,
            healthy: Arc::new(AtomicBool::new(true)),
            probe: None,
        })
    }

    /// A pool; statements running longer than `slow` are logged as warnings.
    async fn open(
        settings: &DbSettings,
        pool_size: u32,
        session: &'static [(&'static str, &'static str)],
        slow: Duration,
    ) -> Result<DatabaseConnection, StoreError> {
        let options = Self::options(settings, pool_size, session, slow);
        within(
            settings.timeout,
            "connect",
            connect_pool(&settings.url, options),
        )
        .await
    }

    fn options(
        settings: &DbSettings,
        pool_size: u32,
        session: &'static [(&'static str, &'static str)],
        slow: Duration,
    ) -> ConnectOptions {
        let mut options = ConnectOptions::new(settings.url.expose());
        options.map_sqlx_postgres_opts(move |pg| pg.options(session.iter().copied()));
        options
            .max_connections(pool_size.max(1))
            .min_connections(0)
            .connect_timeout(settings.timeout)
            .acquire_timeout(settings.timeout)
            .statement_timeout(settings.timeout)
            .idle_timeout(Duration::from_secs(60))
            .set_application_name("price-oracle")
            .sqlx_logging(true)
            .sqlx_logging_level(log::LevelFilter::Trace)
            .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, slow);
        options
    }

    /// Applies pending migrations, one node at a time.
    ///
    /// The advisory lock lives in a session, so this uses its own one-connection pool: lock,
    /// migrate and unlock all run on the same connection, and if the node dies the server drops
    /// the lock with the connection.
    pub async fn migrate(settings: &DbSettings) -> Result<(), StoreError> {
        // Migrating can take longer than one statement; give it a generous bound.
        let limit = settings.timeout * 6;
        // Migrations may wait for locks longer than a node's statements do: nodes started
        // together queue for the migration lock, which is no slow statement worth a warning.
        let db = Self::open(settings, 1, &[], limit).await?;
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
        if let (Some(probe), Err(_)) = (&self.probe, &result) {
            probe.statement_failed(what);
        }
        result
    }

    /// A cheap round trip, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.db.ping()).await
    }

    /// Closes the pool.
    pub async fn close(self) {
        let _ = self.db.close().await;
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
