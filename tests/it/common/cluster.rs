//! A whole test network: a database with the schema, the fence check and members 1..=5, the
//! mock exchange at 3000 USD, and a bootstrap peer; nodes started from the harness's settings.

use std::time::Duration;

use alloy_primitives::{Address, B256};
use libp2p::Multiaddr;
use price_oracle::domain::{Deployment, FaultBound};
use price_oracle::mock_exchange::MockExchange;
use price_oracle::node::NodeSettings;
use price_oracle::store::Store;
use price_oracle::testkit::{self, Peer, Stored, TestDb, TestNode};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// The nodes every cluster's database lists as members.
pub const MEMBER_SEEDS: std::ops::RangeInclusive<u8> = 1..=5;

pub struct Cluster {
    /// The configuration digest its members sign under (its deployment, f derived).
    pub config: B256,
    /// Where its nodes say they run: the default deployment, or the test chain's verifier.
    pub deployment: Deployment,
    pub db: TestDb,
    pub conn: DatabaseConnection,
    pub exchange: MockExchange,
    /// `None` once killed.
    pub boot: Option<Peer>,
    pub boot_addr: Multiaddr,
}

impl Cluster {
    /// A network whose members are [`MEMBER_SEEDS`].
    pub async fn new(label: &str) -> Self {
        Self::with_members(label, MEMBER_SEEDS).await
    }

    /// A network whose members are `members`.
    pub async fn with_members(label: &str, members: impl IntoIterator<Item = u8>) -> Self {
        Self::deployed(label, members, Deployment::default()).await
    }

    /// A network whose members are `members`, configured for the verifier the test chain
    /// deploys first ([`super::evm::on_chain_deployment`]): its rows' commit signatures are over
    /// that verifier's configuration digest, so they verify there as stored.
    pub async fn on_chain(label: &str, members: impl IntoIterator<Item = u8>) -> Self {
        Self::deployed(label, members, super::evm::on_chain_deployment()).await
    }

    async fn deployed(
        label: &str,
        members: impl IntoIterator<Item = u8>,
        deployment: Deployment,
    ) -> Self {
        super::log_to_stderr();
        let seeds: Vec<u8> = members.into_iter().collect();
        let addresses: Vec<Address> = seeds
            .iter()
            .map(|seed| testkit::identity(*seed).address())
            .collect();
        let db = TestDb::create(label).await;
        Store::migrate(&db.settings()).await.unwrap();
        register(&db, seeds).await;
        let conn = db.connect().await;
        conn.execute_unprepared(super::LEASE_CHECK_TRIGGER)
            .await
            .unwrap();
        let (boot, boot_addr) = Peer::start(100, vec![]).await;
        let f = FaultBound::for_members(Some(addresses.len()), deployment.max_faults);
        Self {
            config: deployment.config_digest(&addresses, f),
            deployment,
            db,
            conn,
            exchange: testkit::mock_exchange("3000").await,
            boot: Some(boot),
            boot_addr,
        }
    }

    /// Ends the bootstrap peer, as a crash would, and waits until it is gone.
    pub async fn kill_bootstrap(&mut self) {
        if let Some(Peer { handle, task, .. }) = self.boot.take() {
            drop(handle);
            task.await.unwrap();
        }
    }

    /// Node `seed` of this network ([`testkit::node_settings`]).
    pub fn settings(&self, seed: u8) -> NodeSettings {
        let mut settings =
            testkit::node_settings(seed, &self.boot_addr, &self.exchange, &self.db.settings());
        settings.deployment = self.deployment.clone();
        settings
    }

    /// Starts nodes `seeds` as [`Cluster::settings`] makes them.
    pub async fn start(&self, seeds: impl IntoIterator<Item = u8>) -> Vec<TestNode> {
        self.start_with(seeds, |_| {}).await
    }

    /// Starts nodes `seeds`, each with its settings changed by `customize` first; each starts
    /// one round once it runs ([`TestNode::start`]).
    pub async fn start_with(
        &self,
        seeds: impl IntoIterator<Item = u8>,
        customize: impl Fn(&mut NodeSettings),
    ) -> Vec<TestNode> {
        self.start_each(seeds, customize, TestNode::start).await
    }

    /// Starts nodes `seeds` whose rounds start only as their triggers say
    /// ([`TestNode::start_on_triggers`]).
    pub async fn start_on_triggers(
        &self,
        seeds: impl IntoIterator<Item = u8>,
        customize: impl Fn(&mut NodeSettings),
    ) -> Vec<TestNode> {
        self.start_each(seeds, customize, TestNode::start_on_triggers)
            .await
    }

    async fn start_each<F: Future<Output = TestNode>>(
        &self,
        seeds: impl IntoIterator<Item = u8>,
        customize: impl Fn(&mut NodeSettings),
        start: impl Fn(NodeSettings) -> F,
    ) -> Vec<TestNode> {
        let mut nodes = Vec::new();
        for seed in seeds {
            let mut settings = self.settings(seed);
            customize(&mut settings);
            nodes.push(start(settings).await);
        }
        nodes
    }

    /// Every stored row, by id.
    pub async fn rows(&self) -> Vec<Stored> {
        testkit::stored(&self.conn).await
    }

    /// Waits until at least `count` rows are stored.
    pub async fn wait_rows(&self, count: usize, limit: Duration) {
        testkit::wait_for(&format!("{count} stored prices"), limit, async || {
            self.rows().await.len() >= count
        })
        .await;
    }
}

/// Makes the nodes of `seeds` members, as `oracle signers add` does.
pub async fn register(db: &TestDb, seeds: impl IntoIterator<Item = u8>) {
    let store = Store::connect(&db.settings()).await.unwrap();
    for seed in seeds {
        let address = testkit::identity(seed).address();
        store
            .add_signer(&address, &format!("node{seed}"))
            .await
            .unwrap();
    }
    store.close().await;
}
