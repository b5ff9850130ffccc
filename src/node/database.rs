//! Connecting to the database in the background at start: the store, and each pair's newest
//! stored value for the triggers.

use super::*;

impl Node {
    /// Connects (and migrates, and registers) in the background, retrying until it works or
    /// the node stops.
    pub(super) fn connect_database(&mut self) {
        let settings = self.settings.db.clone();
        let migrate = self.settings.migrate;
        let register = self
            .settings
            .register
            .then(|| (self.me, self.settings.name.clone()));
        let pairs = self.settings.feed.pairs;
        self.work.spawn(Job::Connect, async move {
            loop {
                match connect(&settings, migrate, register.as_ref()).await {
                    Ok(store) => {
                        let newest = newest_stored(&store, pairs).await;
                        return Done::Connected(Box::new(Connected { store, newest }));
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
        });
    }
}

/// What the background connection brings: the store, and each pair's newest stored value, where
/// the triggers take up (a read that fails only costs a heartbeat round).
#[derive(Debug)]
pub struct Connected {
    pub(super) store: Store,
    pub(super) newest: Vec<(Pair, Verified)>,
}

pub(super) async fn newest_stored(store: &Store, pairs: PairSet) -> Vec<(Pair, Verified)> {
    let mut newest = Vec::new();
    for pair in pairs.iter() {
        let row = match store.latest_price(pair).await {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(err) => {
                log::warn!("cannot read the newest stored {pair} price: {err}");
                continue;
            }
        };
        let report = match Report::try_from(&row) {
            Ok(report) => report,
            Err(err) => {
                log::warn!(
                    "the newest stored {pair} price (id {}) is unreadable: {err}",
                    row.id
                );
                continue;
            }
        };
        if let (Some(value), Some(observed_at)) = (report.value(), report.time()) {
            let id = report.round.id;
            newest.push((
                pair,
                Verified {
                    id,
                    origin: report.round.origin,
                    observed_at,
                    value,
                },
            ));
        }
    }
    newest
}

pub(super) async fn connect(
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
