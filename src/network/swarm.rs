//! Building the Swarm: the transport, the behaviours, the topic and the listeners.

use std::time::Duration;

use libp2p::gossipsub::IdentTopic;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm};
use prometheus_client::registry::Registry;

use super::behaviour::Behaviour;
use super::{NetworkError, NetworkSettings, TOPIC, transport};

/// Subscribes to [`TOPIC`] and listens; returns the topic this node publishes on. Only the
/// protocol's own topic: a message from an older one could not verify under its configuration.
pub(super) fn join(
    swarm: &mut Swarm<Behaviour>,
    settings: &NetworkSettings,
) -> Result<IdentTopic, NetworkError> {
    let topic = IdentTopic::new(TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|err| NetworkError::Build(format!("subscribe to {TOPIC}: {err}")))?;
    for addr in &settings.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|err| NetworkError::Listen {
                addr: addr.clone(),
                reason: listen_failure(&err),
            })?;
    }
    Ok(topic)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The topics of protocols before v2 are not listened on: what is published there is never
    /// heard (and could not verify under a v2 configuration anyway).
    #[tokio::test]
    async fn a_node_subscribes_to_the_v2_topic_alone() {
        let keypair = Keypair::generate_secp256k1();
        let validation = crate::network::validation::ValidationSettings {
            max_age: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(1),
            max_origin_rate: 1,
            pairs: crate::pair::PairSet::ALL,
        };
        let settings = NetworkSettings::with_default_limits(vec![], vec![], validation);
        let mut swarm = build_swarm(&keypair, &settings, &mut Registry::default()).unwrap();
        let topic = join(&mut swarm, &settings).unwrap();
        assert_eq!(topic.to_string(), TOPIC);
        let subscribed: Vec<String> = swarm
            .behaviour()
            .gossipsub
            .topics()
            .map(ToString::to_string)
            .collect();
        assert_eq!(subscribed, [TOPIC]);
    }
}
