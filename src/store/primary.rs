//! Following the primary of a replicated PostgreSQL.
//!
//! sqlx takes one host per URL and knows no `target_session_attrs` (sqlx issues #179, #2290,
//! #3333), so a node given several servers — a libpq multi-host URL
//! `postgres://user@h1:5432,h2:5432/db`, or whole URLs separated by commas — asks each whether
//! it takes writes (not in recovery, not read-only) and keeps its pool on the first that does.
//! When a call fails in a way a failover explains (the server is gone, or refuses a write as
//! read-only because it is now a standby), the store asks again and moves its pool to the new
//! primary: no restart. PostgreSQL itself refuses every write on a standby or a demoted primary,
//! so following the primary is about progress, never about safety (docs/operating.md).

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{Connection, Row};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};

use super::{DatabaseUrl, StoreError};

/// Searches no more often than this, however many calls fail meanwhile.
const SEARCH_GAP: Duration = Duration::from_millis(500);

/// The parameter libpq uses to pick the primary; sqlx would only warn that it ignores it.
const TARGET_SESSION_ATTRS: &str = "target_session_attrs";

impl DatabaseUrl {
    /// The servers this URL names, one URL each: a libpq multi-host URL or comma-separated URLs
    /// give several, any other URL itself.
    pub fn servers(&self) -> Vec<DatabaseUrl> {
        split_servers(self.expose())
            .into_iter()
            .map(DatabaseUrl::new)
            .collect()
    }

    /// `host:port` (or the host alone) of a single-server URL, for logs and metrics.
    pub fn host(&self) -> String {
        let url = self.expose();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        host.to_owned()
    }
}

fn split_servers(url: &str) -> Vec<String> {
    let url = url.trim();
    // Whole URLs, each with its scheme.
    if several_urls(url) {
        let mut servers: Vec<String> = Vec::new();
        for part in url.split(',') {
            match servers.last_mut() {
                Some(last) if !part.contains("://") => {
                    last.push(',');
                    last.push_str(part);
                }
                _ => servers.push(part.trim().to_owned()),
            }
        }
        return servers
            .iter()
            .map(|server| without_session_attrs(server))
            .collect();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    hosts
        .split(',')
        .map(|host| without_session_attrs(&format!("{scheme}://{userinfo}{host}{tail}")))
        .collect()
}

/// Whether `url` is whole URLs separated by commas (rather than one URL, maybe multi-host).
pub(super) fn several_urls(url: &str) -> bool {
    url.split(',').skip(1).any(|part| part.contains("://"))
}

fn without_session_attrs(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split('=').next() != Some(TARGET_SESSION_ATTRS))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// What one server said when asked whether it takes writes.
#[derive(Debug)]
enum Answer {
    Primary,
    Standby,
    Unreachable(String),
}

/// Asks one server whether it takes writes, on a connection of its own.
async fn ask(url: &DatabaseUrl, timeout: Duration) -> Answer {
    let asking = async {
        let options = url
            .expose()
            .parse::<PgConnectOptions>()?
            .application_name("price-oracle");
        let mut connection = PgConnection::connect_with(&options).await?;
        let row = sea_orm::sqlx::query(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
        )
        .fetch_one(&mut connection)
        .await?;
        let writable: bool = row.try_get(0)?;
        let _ = connection.close().await;
        Ok::<_, sea_orm::sqlx::Error>(writable)
    };
    match tokio::time::timeout(timeout, asking).await {
        Ok(Ok(true)) => Answer::Primary,
        Ok(Ok(false)) => Answer::Standby,
        Ok(Err(err)) => Answer::Unreachable(super::describe(&DbErr::Conn(RuntimeErr::SqlxError(
            std::sync::Arc::new(err),
        )))),
        Err(_) => Answer::Unreachable(format!("no answer within {timeout:?}")),
    }
}

/// The index of the first of `servers` that takes writes, asking them all at once.
pub(super) async fn find(servers: &[DatabaseUrl], timeout: Duration) -> Result<usize, StoreError> {
    let answers = futures::future::join_all(servers.iter().map(|url| ask(url, timeout))).await;
    if let Some(index) = answers
        .iter()
        .position(|answer| matches!(answer, Answer::Primary))
    {
        return Ok(index);
    }
    let said: Vec<String> = servers
        .iter()
        .zip(&answers)
        .map(|(url, answer)| match answer {
            Answer::Primary | Answer::Standby => format!("{}: read-only (a standby)", url.host()),
            Answer::Unreachable(why) => format!("{}: {why}", url.host()),
        })
        .collect();
    Err(StoreError::Unexpected {
        what: "find the primary",
        detail: format!("no server takes writes ({})", said.join("; ")),
    })
}

/// The URL of the server that takes writes: the URL itself when it names one server.
pub(super) async fn primary_url(
    url: &DatabaseUrl,
    timeout: Duration,
) -> Result<DatabaseUrl, StoreError> {
    let mut servers = url.servers();
    if servers.len() == 1 {
        return Ok(servers.remove(0));
    }
    let index = find(&servers, timeout).await?;
    Ok(servers.swap_remove(index))
}

/// Whether a failed call may mean the primary moved: the server is gone or unreachable, shuts
/// down, or refuses a write as read-only. A statement's own error (a constraint, a lock
/// timeout, bad SQL) does not.
pub(super) fn may_mean_failover(err: &StoreError) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    let error = match err {
        StoreError::Timeout { .. } => return true,
        StoreError::Unexpected { .. } => return false,
        StoreError::Db { error, .. } => error,
    };
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => match error.as_ref() {
            SqlxError::Database(error) => error.code().is_some_and(|code| {
                // 08: connection exception; 57P01–03: shutting down or starting;
                // 25006: read-only transaction (a standby); 53300: too many connections.
                code.starts_with("08")
                    || matches!(
                        code.as_ref(),
                        "57P01" | "57P02" | "57P03" | "25006" | "53300"
                    )
            }),
            _ => true,
        },
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        _ => false,
    }
}

/// The pool a store uses, on the server that took writes when last asked.
#[derive(Debug)]
pub(super) struct Primary {
    servers: Vec<DatabaseUrl>,
    current: RwLock<Current>,
    /// When the last search began; held during a search, so searches never overlap.
    searched: tokio::sync::Mutex<Option<Instant>>,
    /// Since when no server took writes, while none does.
    missing_since: std::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
struct Current {
    db: DatabaseConnection,
    index: usize,
}

/// What a search found, for the store's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The server taking writes, where the pool now is; `None` when none does (the pool
    /// stays where it was).
    pub primary: Option<String>,
    /// Whether the pool moved to another server.
    pub moved: bool,
    /// How long no server has taken writes: zero when one does.
    pub without: Duration,
}

impl Primary {
    pub(super) fn new(servers: Vec<DatabaseUrl>, index: usize, db: DatabaseConnection) -> Self {
        Self {
            servers,
            current: RwLock::new(Current { db, index }),
            searched: tokio::sync::Mutex::new(None),
            missing_since: std::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn db(&self) -> DatabaseConnection {
        self.current().db
    }

    /// The server the pool is on.
    pub(super) fn server(&self) -> &DatabaseUrl {
        &self.servers[self.current().index]
    }

    pub(super) fn replicated(&self) -> bool {
        self.servers.len() > 1
    }

    /// Asks every server which takes writes and moves the pool there, opening it with `open`.
    /// Returns `None` when another search ran within [`SEARCH_GAP`].
    pub(super) async fn follow(
        &self,
        timeout: Duration,
        open: impl AsyncFnOnce(&DatabaseUrl) -> Result<DatabaseConnection, StoreError>,
    ) -> Option<Followed> {
        let mut searched = self.searched.lock().await;
        if searched.is_some_and(|at| at.elapsed() < SEARCH_GAP) {
            return None;
        }
        *searched = Some(Instant::now());
        let found = find(&self.servers, timeout).await;
        let index = match found {
            Ok(index) => index,
            Err(err) => {
                log::warn!("{err}");
                let since = *self
                    .missing_since
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert_with(Instant::now);
                return Some(Followed {
                    primary: None,
                    moved: false,
                    without: since.elapsed(),
                });
            }
        };
        *self
            .missing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let current = self.current().index;
        let host = self.servers[index].host();
        if index != current {
            let db = match open(&self.servers[index]).await {
                Ok(db) => db,
                Err(err) => {
                    log::warn!("the primary is now {host}, but its pool did not open: {err}");
                    return None;
                }
            };
            let old = std::mem::replace(
                &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
                Current { db, index },
            );
            log::warn!(
                "the database primary moved from {} to {host}: writing there now",
                self.servers[old.index].host()
            );
            // Connections still checked out finish (and fail) on the old server first.
            tokio::spawn(async move {
                let _ = old.db.close().await;
            });
        }
        Some(Followed {
            primary: Some(host),
            moved: index != current,
            without: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_names_each_server_with_the_same_credentials_and_database() {
        let servers = split_servers(
            "postgres://oracle:s3cr%40t@10.0.0.1:5432,10.0.0.2,[::1]:5433/prices?sslmode=disable&target_session_attrs=read-write",
        );
        assert_eq!(
            servers,
            [
                "postgres://oracle:s3cr%40t@10.0.0.1:5432/prices?sslmode=disable",
                "postgres://oracle:s3cr%40t@10.0.0.2/prices?sslmode=disable",
                "postgres://oracle:s3cr%40t@[::1]:5433/prices?sslmode=disable",
            ]
        );
        assert_eq!(
            split_servers("postgres://h1:1,h2:2?target_session_attrs=primary"),
            ["postgres://h1:1", "postgres://h2:2"]
        );
    }

    #[test]
    fn comma_separated_urls_are_taken_whole() {
        assert_eq!(
            split_servers("postgres://a@h1/db1, postgresql://b:pw@h2:5433/db2?x=1,2"),
            ["postgres://a@h1/db1", "postgresql://b:pw@h2:5433/db2?x=1,2"]
        );
    }

    #[test]
    fn one_server_is_one_url() {
        let url = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(split_servers(url), [url]);
        assert_eq!(DatabaseUrl::new(url).host(), "127.0.0.1:5432");
        assert_eq!(DatabaseUrl::new("postgres://u:p@db/x").host(), "db");
    }
}
