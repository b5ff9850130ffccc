//! Building the Swarm: the transport, the behaviours, the topic and the listeners.

use std::time::Duration;

use libp2p::gossipsub::IdentTopic;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm};
use prometheus_client::registry::Registry;

use super::behaviour::Behaviour;
use super::{LEGACY_TOPIC, NetworkError, NetworkSettings, TOPIC, transport};

/// Subscribes to the topic under both names (see [`LEGACY_TOPIC`]) and listens; returns the
/// topic this node publishes on.
pub(super) fn join(
    swarm: &mut Swarm<Behaviour>,
    settings: &NetworkSettings,
) -> Result<IdentTopic, NetworkError> {
    for name in [TOPIC, LEGACY_TOPIC] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(name))
            .map_err(|err| NetworkError::Build(format!("subscribe to {name}: {err}")))?;
    }
    for addr in &settings.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|err| NetworkError::Listen {
                addr: addr.clone(),
                reason: listen_failure(&err),
            })?;
    }
    Ok(IdentTopic::new(if settings.publish_legacy_topic {
        LEGACY_TOPIC
    } else {
        TOPIC
    }))
}

/// The bootstrap addresses with the peer id each names, if any.
pub(super) fn bootstrap_peers(addrs: &[Multiaddr]) -> Vec<(Option<PeerId>, Multiaddr)> {
    addrs
        .iter()
        .map(|addr| match addr.iter().last() {
            Some(Protocol::P2p(peer)) => (Some(peer), addr.clone()),
            _ => {
                log::warn!(
                    "bootstrap address {addr} has no /p2p/<peer id>: whoever answers there is trusted"
                );
                (None, addr.clone())
            }
        })
        .collect()
}

/// Why `listen_on` failed, as one line. libp2p's `TransportError::Other` displays as nothing:
/// the reason (say "Address already in use (os error 98)") is its source.
fn listen_failure(err: &libp2p::TransportError<std::io::Error>) -> String {
    match err {
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            "not an address to listen on (give /ip4/ADDRESS/tcp/PORT or /ip6/ADDRESS/tcp/PORT)"
                .to_owned()
        }
        libp2p::TransportError::Other(_) => crate::logging::one_line(err),
    }
}

/// The Swarm with this node's identity, its transport (and private network key) and behaviours.
pub(super) fn build_swarm(
    keypair: &Keypair,
    settings: &NetworkSettings,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NetworkError> {
    // Copies and replays of a message are recognised for as long as it could be valid.
    let duplicate_window = settings
        .validation
        .max_age
        .saturating_add(settings.validation.max_future_skew);
    let connections = settings.connections;
    let psk = settings.psk;
    let build = |err: &dyn std::fmt::Display| NetworkError::Build(err.to_string());
    match &psk {
        // The fingerprint identifies the key without revealing it: equal on every node of one
        // private network.
        Some(psk) => log::info!(
            "private network: swarm key fingerprint {}",
            psk.fingerprint()
        ),
        None => log::debug!("public network: no swarm key"),
    }
    Ok(
        libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_other_transport(|key| {
                transport::build(key, psk).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|err| build(&err))?
            // Bootstrap addresses may name hosts (/dns4/bootstrap/tcp/4001), e.g. in compose.
            .with_dns()
            .map_err(|err| build(&err))?
            // Bytes in and out per protocol: libp2p_bandwidth_bytes_total.
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| {
                Behaviour::new(key, connections, duplicate_window)
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
            })
            .map_err(|err| build(&err))?
            .with_swarm_config(|config| {
                config.with_idle_connection_timeout(Duration::from_secs(60))
            })
            .build(),
    )
}
