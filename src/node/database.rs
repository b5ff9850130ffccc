//! Connecting to the database in the background at start: the store, and each pair's newest
//! stored value for the triggers.

use super::*;
use crate::audit::{self, AuditRules, Counted};
use crate::store::StoreError;

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
        let deployment = self.settings.deployment.clone();
        self.work.spawn(Job::Connect, async move {
            loop {
                match connect(&settings, migrate, register.as_ref()).await {
                    Ok(store) => {
                        let newest = newest_stored(&store, pairs, deployment).await;
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

/// Rows read per query while looking for a pair's newest price that verifies.
const NEWEST_PAGE: u64 = 100;

/// Each pair's newest stored value that verifies, by the rules the API serves by: a row that
/// does not (one dated in the future would hold off every heartbeat round until its date) is
/// passed over. A read that fails leaves the pair to a heartbeat round.
pub(super) async fn newest_stored(
    store: &Store,
    pairs: PairSet,
    deployment: crate::domain::Deployment,
) -> Vec<(Pair, Verified)> {
    let rules = match store.signers().await {
        Ok(history) => AuditRules {
            deployment,
            counted: Counted::Members(history),
            network: None,
        },
        Err(err) => {
            log::warn!("cannot read the members to judge the newest stored prices: {err}");
            return Vec::new();
        }
    };
    let mut newest = Vec::new();
    for pair in pairs.iter() {
        match newest_verified(store, pair, &rules).await {
            Ok(Some(verified)) => newest.push((pair, verified)),
            Ok(None) => {}
            Err(err) => log::warn!("cannot read the newest stored {pair} price: {err}"),
        }
    }
    newest
}

async fn newest_verified(
    store: &Store,
    pair: Pair,
    rules: &AuditRules,
) -> Result<Option<Verified>, StoreError> {
    let now = chrono::Utc::now();
    let mut pages = store.newest_first(pair, NEWEST_PAGE);
    while let Some(rows) = pages.next_page().await? {
        for row in &rows {
            if let Some(finding) = audit::audit_row(row, rules, now).finding {
                log::warn!(
                    "passing over the stored {pair} price {}, which does not verify ({}): {finding}",
                    row.id,
                    finding.kind()
                );
                continue;
            }
            let Ok(report) = Report::try_from(row) else {
                continue;
            };
            if let (Some(value), Some(observed_at)) = (report.value(), report.time()) {
                return Ok(Some(Verified {
                    id: report.round.id,
                    origin: report.round.origin,
                    observed_at,
                    value,
                }));
            }
        }
    }
    Ok(None)
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
