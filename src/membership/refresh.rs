//! Keeping the member list current: every heartbeat carries a digest of the `signers` table,
//! and the list is read again only when the digest changed, so an added or removed member counts
//! within one heartbeat at the cost of one read per change.

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::Address;
use tokio::sync::watch;

use crate::store::Store;

/// The member list as last read from the database (members and since when, Unix seconds);
/// `None` until the first read.
pub type MemberList = Option<Arc<HashMap<Address, u64>>>;

/// Reads the member list whenever its version changes, and publishes it.
#[derive(Debug)]
pub struct MemberRefresh {
    version: Option<String>,
    lists: watch::Sender<MemberList>,
}

impl MemberRefresh {
    /// A refresh that has read nothing yet, and the lists it will publish.
    pub fn new() -> (Self, watch::Receiver<MemberList>) {
        let (lists, receiver) = watch::channel(None);
        (
            Self {
                version: None,
                lists,
            },
            receiver,
        )
    }

    /// A heartbeat saw the list at `version`: read it if that is news. A failed read is tried
    /// again at the next heartbeat.
    pub async fn on_version(&mut self, store: &Store, version: &str) {
        if self.version.as_deref() == Some(version) {
            return;
        }
        match store.current_members().await {
            Ok(list) => {
                log::info!("member list read: {} members", list.len());
                self.lists.send_replace(Some(Arc::new(list)));
                self.version = Some(version.to_owned());
            }
            Err(err) => log::warn!("cannot read the member list: {err}"),
        }
    }
}
