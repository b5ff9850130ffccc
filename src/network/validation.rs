//! What a received gossip message must pass before the node uses it or gossipsub forwards it.
//! Failing messages are rejected, which costs the peer that sent them gossipsub score.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;

use crate::identity::address_of_peer;
use crate::message::Gossip;

/// How old or how far ahead a price may be.
#[derive(Debug, Clone, Copy)]
pub struct ValidationSettings {
    /// Prices observed longer ago than this are refused (replays, stragglers).
    pub max_age: Duration,
    /// Prices observed further in the future than this are refused (clock skew allowance).
    pub max_future_skew: Duration,
}

/// Why a message was refused: a stable `reason` for counters and a detail for the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
}

/// Checks a received message: it decodes with every signature valid (see [`Gossip::decode`]),
/// its price is neither older than `max_age` nor from the future, and it was published by the
/// node it speaks for — a price by its origin, an attestation by its signer, a stored notice by
/// its writer — so nobody can republish or replay other nodes' messages.
pub fn validate(
    bytes: &[u8],
    publisher: Option<&PeerId>,
    now: SystemTime,
    settings: &ValidationSettings,
) -> Result<Gossip, Rejection> {
    let gossip = Gossip::decode(bytes).map_err(|err| Rejection {
        reason: err.reason(),
        detail: err.to_string(),
    })?;
    let publisher = publisher
        .and_then(address_of_peer)
        .ok_or_else(|| Rejection {
            reason: "unknown_publisher",
            detail: "the publisher has no secp256k1 identity".into(),
        })?;
    let (speaker, observed_at) = match &gossip {
        Gossip::Price(message) => (message.origin, Some(message.observed_at)),
        Gossip::Attestation(attestation) => {
            (attestation.signature.signer, Some(attestation.observed_at))
        }
        Gossip::Stored(notice) => (notice.writer, None),
    };
    if speaker != publisher {
        return Err(Rejection {
            reason: "wrong_publisher",
            detail: format!(
                "{} speaks for {speaker} but was published by {publisher}",
                gossip.kind()
            ),
        });
    }
    if let Some(observed_at) = observed_at {
        check_freshness(observed_at, now, settings)?;
    }
    Ok(gossip)
}

fn check_freshness(
    observed_at: u64,
    now: SystemTime,
    settings: &ValidationSettings,
) -> Result<(), Rejection> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if observed_at.saturating_add(settings.max_age.as_secs()) < now {
        return Err(Rejection {
            reason: "too_old",
            detail: format!("observed {}s ago", now - observed_at),
        });
    }
    if observed_at > now.saturating_add(settings.max_future_skew.as_secs()) {
        return Err(Rejection {
            reason: "from_future",
            detail: format!("observed {}s in the future", observed_at - now),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::message::{Attestation, PriceMessage, StoredNotice};
    use crate::price::UsdPrice;

    const SETTINGS: ValidationSettings = ValidationSettings {
        max_age: Duration::from_secs(900),
        max_future_skew: Duration::from_secs(30),
    };
    const OBSERVED: u64 = 1_763_700_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn node(seed: u8) -> Identity {
        Identity::from_secret(&[seed; 32]).unwrap()
    }

    fn price_from(origin: &Identity) -> PriceMessage {
        PriceMessage::originate(
            7,
            UsdPrice::from_e8(300_000_000_000).unwrap(),
            OBSERVED,
            origin.signer(),
        )
    }

    #[test]
    fn accepts_fresh_messages_from_the_node_they_speak_for() {
        let (origin, cosigner) = (node(1), node(2));
        let price = price_from(&origin);
        let attestation = Attestation::sign(&price.data(), cosigner.signer());
        let notice = StoredNotice {
            writer: cosigner.address(),
            ids: vec![7],
        };
        let cases = [
            (Gossip::Price(price), origin.peer_id()),
            (Gossip::Attestation(attestation), cosigner.peer_id()),
            (Gossip::Stored(notice), cosigner.peer_id()),
        ];
        for (gossip, publisher) in cases {
            let accepted = validate(
                &gossip.encode(),
                Some(&publisher),
                at(OBSERVED + 10),
                &SETTINGS,
            );
            assert_eq!(accepted, Ok(gossip));
        }
    }

    #[test]
    fn refuses_stale_and_future_prices() {
        let origin = node(1);
        let bytes = Gossip::Price(price_from(&origin)).encode();
        let peer = origin.peer_id();
        assert!(validate(&bytes, Some(&peer), at(OBSERVED + 900), &SETTINGS).is_ok());
        assert_eq!(
            validate(&bytes, Some(&peer), at(OBSERVED + 901), &SETTINGS)
                .unwrap_err()
                .reason,
            "too_old"
        );
        assert!(validate(&bytes, Some(&peer), at(OBSERVED - 30), &SETTINGS).is_ok());
        assert_eq!(
            validate(&bytes, Some(&peer), at(OBSERVED - 31), &SETTINGS)
                .unwrap_err()
                .reason,
            "from_future"
        );
    }

    #[test]
    fn refuses_messages_republished_by_someone_else() {
        let (origin, relay) = (node(1), node(2));
        let bytes = Gossip::Price(price_from(&origin)).encode();
        let rejection =
            validate(&bytes, Some(&relay.peer_id()), at(OBSERVED), &SETTINGS).unwrap_err();
        assert_eq!(rejection.reason, "wrong_publisher");
        assert_eq!(
            validate(&bytes, None, at(OBSERVED), &SETTINGS)
                .unwrap_err()
                .reason,
            "unknown_publisher"
        );
        let forged_notice = Gossip::Stored(StoredNotice {
            writer: origin.address(),
            ids: vec![1],
        });
        assert_eq!(
            validate(
                &forged_notice.encode(),
                Some(&relay.peer_id()),
                at(OBSERVED),
                &SETTINGS
            )
            .unwrap_err()
            .reason,
            "wrong_publisher"
        );
    }

    #[test]
    fn refuses_garbage_and_forged_signatures_with_their_reason() {
        let (origin, forger) = (node(1), node(2));
        let peer = origin.peer_id();
        assert_eq!(
            validate(b"garbage", Some(&peer), at(OBSERVED), &SETTINGS)
                .unwrap_err()
                .reason,
            "malformed"
        );
        let mut price = price_from(&origin);
        price.signatures[0].signature = price.sign(forger.signer()).signature;
        assert_eq!(
            validate(
                &Gossip::Price(price).encode(),
                Some(&peer),
                at(OBSERVED),
                &SETTINGS
            )
            .unwrap_err()
            .reason,
            "bad_signature"
        );
    }
}
