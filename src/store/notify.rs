//! Wakes readers when prices commit: `LISTEN prices_stored`.
//!
//! The migration `m20261130_000006_prices_notify` makes every insert into `prices` send
//! `pg_notify('prices_stored', '')`. PostgreSQL delivers a notification when the inserting
//! transaction commits, to every session listening, on any node: so every node that can read
//! the database can follow the table, not only the writer that stored the rows.
//!
//! A notification says only "something new". Readers then read `seq > their cursor` (see
//! [`super::read`]), so a notification that is lost (while the connection was down) or merged
//! with another (PostgreSQL folds equal ones of one transaction) loses no row: the listener
//! wakes every reader after each (re)connect too, and the readers poll slowly besides.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{DbErr, RuntimeErr};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};

/// The channel the trigger notifies.
pub const CHANNEL: &str = "prices_stored";

/// The first wait after a failure; doubled at each further one, up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Store {
    /// Listens for stored prices until `stop`: bumps `wake` after every notification, and after
    /// every (re)connect, since whatever committed while nobody listened was not announced.
    /// A failed connection is retried with backoff; readers poll meanwhile.
    ///
    /// The listener holds one connection of this store's pool for as long as it runs.
    pub async fn listen_for_stored_prices(
        &self,
        wake: watch::Sender<u64>,
        stop: CancellationToken,
    ) {
        let listening = async {
            let mut backoff = BACKOFF_MIN;
            loop {
                let err = self.listen(&wake, &mut backoff).await;
                log::warn!(
                    "not listening for stored prices: {err}; again in {backoff:?} (the streams poll meanwhile)"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        };
        let () = stop.run_until_cancelled(listening).await.unwrap_or(());
    }

    /// One connection's life: connect, `LISTEN`, wake readers at each notification. Returns why
    /// it ended; resets `backoff` once listening.
    async fn listen(&self, wake: &watch::Sender<u64>, backoff: &mut Duration) -> StoreError {
        // A store is only ever opened from a PostgreSQL URL (the only backend built in), so its
        // pool is a PostgreSQL pool.
        let pool = self.db().get_postgres_connection_pool().clone();
        let connected = self
            .timed("listen", async move {
                let mut listener = PgListener::connect_with(&pool).await.map_err(db_err)?;
                listener.listen(CHANNEL).await.map_err(db_err)?;
                Ok(listener)
            })
            .await;
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(err) => return err,
        };
        log::debug!("listening for stored prices");
        *backoff = BACKOFF_MIN;
        wake_readers(wake);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    // One wake is enough for any number of notifications already here.
                    while listener.next_buffered().is_some() {}
                    wake_readers(wake);
                }
                // The connection was lost and made again: what committed in between was not
                // announced.
                Ok(None) => wake_readers(wake),
                Err(err) => {
                    return StoreError::Db {
                        what: "listen",
                        error: db_err(err),
                    };
                }
            }
        }
    }
}

fn wake_readers(wake: &watch::Sender<u64>) {
    wake.send_modify(|wakes| *wakes = wakes.wrapping_add(1));
}

fn db_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}
