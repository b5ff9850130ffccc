//! The libp2p behaviours a node runs, and how each is configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use alloy_primitives::keccak256;
use libp2p::allow_block_list;
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, gossipsub, identify, kad, ping};

use crate::message::MAX_MESSAGE_BYTES;

/// The gossipsub topic of every message: every pair's prices, co-signatures and stored notices.
/// Its version is the protocol's ([`crate::domain::PROTOCOL`]): a v1 node neither hears v2 nor
/// could verify it.
pub const TOPIC: &str = "price-oracle/prices/v2";
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/price-oracle/kad/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/price-oracle/id/1.0.0";

/// Peers each node keeps in its gossip mesh for the topic (gossipsub's `mesh_n`).
pub const MESH_DEGREE: usize = 4;

/// How many connections a node accepts.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    /// Established inbound connections, all peers together.
    pub max_inbound: u32,
    /// Established connections with one peer.
    pub max_per_peer: u32,
}

impl ConnectionBounds {
    /// The command line's defaults.
    pub const DEFAULT: Self = Self {
        max_inbound: 256,
        max_per_peer: 2,
    };
}

/// Gossip for messages, Kademlia + identify to find peers, ping to notice dead connections,
/// and connection limits in front of them all.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    /// Peers cut off for sending too many refused messages.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

impl Behaviour {
    /// `duplicate_window`: how long a message's id is remembered, so that a copy arriving
    /// later — or a replay — is dropped unseen; at least as long as messages stay valid.
    pub fn new(
        key: &Keypair,
        bounds: ConnectionBounds,
        duplicate_window: Duration,
    ) -> Result<Self, String> {
        let peer_id = key.public().to_peer_id();
        let config = gossipsub::ConfigBuilder::default()
            // Anonymous gossip, authenticated by content: the payload's signatures prove who
            // speaks, so no libp2p envelope (publisher, sequence number, signature) is sent or
            // checked. A message's verdict then depends on its bytes only, so republishing
            // someone's bytes under another peer id poisons nothing, and no copy costs an
            // envelope signature check. The application decides on every message before it is
            // forwarded.
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .validate_messages()
            // Content-addressed: the same bytes are the same message, whoever relays them.
            .message_id_fn(|message| gossipsub::MessageId::from(keccak256(&message.data).to_vec()))
            .max_transmit_size(MAX_MESSAGE_BYTES + 1024)
            // Every copy a node receives costs its bytes on the wire (a duplicate is dropped by
            // its message id, before validation). A smaller mesh and publishing to the mesh
            // only (not flooding every peer) keep copies per message near the mesh degree;
            // gossip (IHAVE/IWANT) still reaches peers outside it.
            .mesh_n(MESH_DEGREE)
            .mesh_n_low(3)
            .mesh_n_high(8)
            .mesh_outbound_min(2)
            .flood_publish(false)
            // IHAVE gossip goes to 6 peers outside the mesh, not to a quarter of every peer
            // connected: with many connections (a large network right after discovery) that
            // was most of the bytes a price cost.
            .gossip_factor(0.0)
            .duplicate_cache_time(duplicate_window)
            .build()
            .map_err(|err| format!("gossipsub config: {err}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
                .map_err(|err| format!("gossipsub: {err}"))?;
        let (params, thresholds) = peer_scoring();
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(|err| format!("gossipsub peer scoring: {err}"))?;

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        // The swarm task refreshes the routing table itself, and only once it has peers.
        kad_config.set_periodic_bootstrap_interval(None);
        // A lookup still running after 10 s is waiting on dead peers; its open requests keep
        // connections alive that gossip does not need (the default is a minute).
        kad_config.set_query_timeout(Duration::from_secs(10));
        // Kademlia only finds peers here. Records others ask us to store are handed to the
        // swarm task, which drops them, instead of filling a store anyone can write to (as
        // rust-libp2p's own server does).
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Every oracle node answers DHT queries, so newcomers find all of them.
        kad.set_mode(Some(kad::Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(concat!("price-oracle/", env!("CARGO_PKG_VERSION")).to_owned()),
        );
        let limits = connection_limits::Behaviour::new(
            ConnectionLimits::default()
                .with_max_established_incoming(Some(bounds.max_inbound))
                .with_max_pending_incoming(Some(bounds.max_inbound))
                .with_max_established_per_peer(Some(bounds.max_per_peer)),
        );
        Ok(Self {
            limits,
            blocked: allow_block_list::Behaviour::default(),
            gossipsub,
            kad,
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
        })
    }

    /// Whether a peer speaks our Kademlia protocol (so its addresses belong in our table).
    pub fn speaks_kad(protocols: &[StreamProtocol]) -> bool {
        protocols.contains(&KAD_PROTOCOL)
    }
}

/// Peer scoring tuned for a low-rate topic: a price every few minutes must not look like a
/// lazy peer, while invalid messages cost a lot (that is the penalty `Reject` triggers).
fn peer_scoring() -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams::default();
    // Many nodes on one machine (tests, demos) are not a Sybil attack.
    params.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        first_message_deliveries_weight: 1.0,
        // Delivery-rate penalties assume busy topics; ours is quiet by design.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        ..gossipsub::TopicScoreParams::default()
    };
    params
        .topics
        .insert(gossipsub::IdentTopic::new(TOPIC).hash(), topic);
    (params, gossipsub::PeerScoreThresholds::default())
}
