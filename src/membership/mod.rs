//! Who counts: the members whose signatures make a price verified.
//!
//! The source of truth is the `signers` table: the database credential that can write `prices`
//! is already the root of trust, so membership lives with it. A static file
//! (`--trusted-signers`, one address per line) can narrow it, and is the whole list for a
//! bootstrap node, which has no database. [`Members`] is pure: the list is handed in.
//!
//! A signer's [`Standing`] decides what validation does with its message: a member's counts;
//! one that is provably not a member (absent from the static file, which never changes) is a
//! fault to `Reject`; one the database does not list *yet* — a membership refresh could explain
//! it — is only `Ignore`d.
//!
//! [`MemberRefresh`] reads the table again whenever the heartbeat says it changed.

mod refresh;

pub use refresh::{MemberList, MemberRefresh};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use anyhow::Context;
use tokio::sync::watch;

use crate::domain::{Deployment, FaultBound};

/// What the database said, as far as this node knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DatabaseView {
    /// This node has no database (a bootstrap node): the static file alone decides.
    NotUsed,
    /// Not read yet: nobody counts until it is.
    NotLoaded,
    /// Members and since when (Unix seconds, rounded down) they are members.
    Loaded(HashMap<Address, u64>),
}

/// Where a signer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Member,
    /// Not in the static file: no refresh can make it a member.
    Outsider,
    /// Not in the database's member list as last read; an added member can look like this
    /// until the next refresh.
    NotMember,
    /// The member list has not been read yet.
    Unknown,
}

/// The member set one node applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    file: Option<Arc<HashSet<Address>>>,
    database: DatabaseView,
    /// What the configuration digest binds besides the members, and the configured `f`.
    deployment: Arc<Deployment>,
}

impl Members {
    /// A full node: the database's list (once read), narrowed by `file` if given.
    pub fn for_node(file: Option<HashSet<Address>>) -> Self {
        Self {
            file: file.map(Arc::new),
            database: DatabaseView::NotLoaded,
            deployment: Arc::default(),
        }
    }

    /// A node without a database: `file` is the list; without one every signer is accepted
    /// for relaying (full nodes still judge what they use).
    pub fn for_relay(file: Option<HashSet<Address>>) -> Self {
        Self {
            file: file.map(Arc::new),
            database: DatabaseView::NotUsed,
            deployment: Arc::default(),
        }
    }

    /// Everyone counts: for tools and tests that do not exercise membership.
    pub fn open() -> Self {
        Self::for_relay(None)
    }

    /// The same file narrowing, with the database's current list (members and since when).
    pub fn with_database(&self, members: HashMap<Address, u64>) -> Self {
        Self {
            file: self.file.clone(),
            database: DatabaseView::Loaded(members),
            deployment: self.deployment.clone(),
        }
    }

    /// The same members in `deployment`.
    pub fn in_deployment(self, deployment: Deployment) -> Self {
        Self {
            deployment: Arc::new(deployment),
            ..self
        }
    }

    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The fault bound these members tolerate: ⌊(n − 1)/3⌋, or the configured one if lower.
    pub fn fault_bound(&self) -> FaultBound {
        FaultBound::for_members(self.count(), self.deployment.max_faults)
    }

    /// The configuration digest every signature of this member set is bound to; `None` for an
    /// open relay, which has no list and forwards whatever configuration it hears.
    pub fn config_digest(&self) -> Option<B256> {
        let mut list = self.current()?;
        list.sort_unstable();
        Some(self.deployment.config_digest(&list, self.fault_bound()))
    }

    /// The configuration this node signs under: [`Members::config_digest`], or for an open
    /// view (tools and tests without a list) the deployment's with no members.
    pub fn signing_config(&self) -> B256 {
        self.config_digest()
            .unwrap_or_else(|| self.deployment.config_digest(&[], self.fault_bound()))
    }

    /// The members now (not "since when"), or `None` for an open relay.
    fn current(&self) -> Option<Vec<Address>> {
        let narrowed =
            |member: &Address| self.file.as_ref().is_none_or(|file| file.contains(member));
        match &self.database {
            DatabaseView::NotLoaded => Some(Vec::new()),
            DatabaseView::Loaded(members) => {
                Some(members.keys().copied().filter(narrowed).collect())
            }
            DatabaseView::NotUsed => self
                .file
                .as_ref()
                .map(|file| file.iter().copied().collect()),
        }
    }

    pub fn standing(&self, signer: &Address) -> Standing {
        if let Some(file) = &self.file
            && !file.contains(signer)
        {
            return Standing::Outsider;
        }
        match &self.database {
            DatabaseView::NotUsed => Standing::Member,
            DatabaseView::NotLoaded => Standing::Unknown,
            DatabaseView::Loaded(members) if members.contains_key(signer) => Standing::Member,
            DatabaseView::Loaded(_) => Standing::NotMember,
        }
    }

    pub fn is_member(&self, signer: &Address) -> bool {
        self.standing(signer) == Standing::Member
    }

    /// Whether `signer`'s signature counts on a price observed at `observed_at` (Unix seconds):
    /// a member now, and already one then — the rule `oracle verify` applies to stored rows.
    pub fn counts_at(&self, signer: &Address, observed_at: u64) -> bool {
        self.is_member(signer)
            && match &self.database {
                DatabaseView::Loaded(members) => members
                    .get(signer)
                    .is_some_and(|since| *since <= observed_at),
                _ => true,
            }
    }

    /// The signers whose signatures count on a price observed at `observed_at` (see
    /// [`Members::counts_at`]), or `None` for an open relay, which has no list.
    pub fn counting_at(&self, observed_at: u64) -> Option<Vec<Address>> {
        let narrowed =
            |member: &Address| self.file.as_ref().is_none_or(|file| file.contains(member));
        match &self.database {
            DatabaseView::NotLoaded => Some(Vec::new()),
            DatabaseView::Loaded(members) => Some(
                members
                    .iter()
                    .filter(|(member, since)| **since <= observed_at && narrowed(member))
                    .map(|(member, _)| *member)
                    .collect(),
            ),
            DatabaseView::NotUsed => self
                .file
                .as_ref()
                .map(|file| file.iter().copied().collect()),
        }
    }

    /// How many members there are, when that is known (not for an open relay).
    pub fn count(&self) -> Option<usize> {
        self.current().map(|list| list.len())
    }
}

/// The current member set, shared by the tasks that judge signatures. The node replaces it
/// when the database's list changes.
pub type MemberView = watch::Receiver<Arc<Members>>;

/// Reads a trusted-signers file: one address per line; blank lines and `#` comments ignored.
pub fn read_trusted_signers(path: &Path) -> anyhow::Result<HashSet<Address>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read trusted signers from {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            (
                number + 1,
                line.split('#').next().unwrap_or_default().trim(),
            )
        })
        .filter(|(_, line)| !line.is_empty())
        .map(|(number, line)| {
            line.parse::<Address>()
                .with_context(|| format!("{}:{number}: {line:?} is not an address", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(byte: u8) -> Address {
        Address::repeat_byte(byte)
    }

    fn set(bytes: &[u8]) -> HashSet<Address> {
        bytes.iter().copied().map(address).collect()
    }

    /// Members since Unix second 100.
    fn list(bytes: &[u8]) -> HashMap<Address, u64> {
        bytes.iter().map(|byte| (address(*byte), 100)).collect()
    }

    #[test]
    fn a_node_trusts_nobody_until_the_database_is_read() {
        let members = Members::for_node(None);
        assert_eq!(members.standing(&address(1)), Standing::Unknown);
        assert_eq!(members.count(), Some(0));
        let loaded = members.with_database(list(&[1, 2]));
        assert_eq!(loaded.standing(&address(1)), Standing::Member);
        assert_eq!(loaded.standing(&address(3)), Standing::NotMember);
        assert_eq!(loaded.count(), Some(2));
    }

    #[test]
    fn the_file_narrows_the_database_and_its_absentees_are_outsiders() {
        let members = Members::for_node(Some(set(&[1, 3]))).with_database(list(&[1, 2]));
        assert_eq!(members.standing(&address(1)), Standing::Member);
        assert_eq!(members.standing(&address(2)), Standing::Outsider);
        assert_eq!(members.standing(&address(3)), Standing::NotMember);
        assert_eq!(members.count(), Some(1));
    }

    #[test]
    fn a_signature_counts_only_on_prices_observed_since_membership() {
        let members = Members::for_node(None).with_database(list(&[1]));
        assert!(members.counts_at(&address(1), 100));
        assert!(!members.counts_at(&address(1), 99));
        assert!(!members.counts_at(&address(2), 1_000));
        assert!(Members::for_relay(Some(set(&[1]))).counts_at(&address(1), 0));
    }

    #[test]
    fn the_signers_counting_at_a_moment_are_the_narrowed_members_of_then() {
        let mut since = list(&[1, 2, 3]);
        since.insert(address(4), 200);
        let members = Members::for_node(Some(set(&[1, 2, 4]))).with_database(since);
        let mut at_150 = members.counting_at(150).unwrap();
        at_150.sort();
        assert_eq!(at_150, vec![address(1), address(2)]);
        assert_eq!(members.counting_at(200).unwrap().len(), 3);
        assert_eq!(Members::for_node(None).counting_at(150), Some(vec![]));
        assert_eq!(Members::open().counting_at(150), None);
        assert_eq!(
            Members::for_relay(Some(set(&[1]))).counting_at(0),
            Some(vec![address(1)])
        );
    }

    #[test]
    fn a_relay_uses_its_file_or_lets_everyone_through() {
        let listed = Members::for_relay(Some(set(&[1])));
        assert!(listed.is_member(&address(1)));
        assert_eq!(listed.standing(&address(2)), Standing::Outsider);
        let open = Members::open();
        assert!(open.is_member(&address(9)));
        assert_eq!(open.count(), None);
    }
}
