//! The validator task: judges received messages off the swarm task, in arrival order, and
//! sends each verdict back to gossipsub and each valid message to the node.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use libp2p::PeerId;
use libp2p::gossipsub::{self, MessageAcceptance};
use tokio::sync::mpsc;

use super::validation::{Action, Refusal, RefusalReason, Validator};
use super::{NetworkEvent, Probe};
use crate::labels::Limit;
use crate::membership::MemberView;

/// A received message on its way to the validator.
pub(super) struct Received {
    pub(super) id: gossipsub::MessageId,
    pub(super) from: PeerId,
    pub(super) data: Vec<u8>,
}

/// The validator's decision, on its way back to gossipsub.
pub(super) struct Verdict {
    pub(super) id: gossipsub::MessageId,
    pub(super) from: PeerId,
    pub(super) acceptance: MessageAcceptance,
    /// Refused for a reason the sender could have seen itself: it counts against the sender.
    pub(super) blames_sender: bool,
}

/// Messages held back until this node has read its member list; older ones are dropped.
const HELD_UNTIL_MEMBERS_KNOWN: usize = 1_024;

/// Judges received messages in arrival order, off the swarm task: tells gossipsub whether to
/// forward each one, and hands the valid ones to the node. Messages that arrive before the
/// node knows its members are not forwarded, but kept (a bounded number) and judged again
/// once the list is read, so the prices of a network starting at once are not lost.
pub(super) async fn validate_messages(
    mut validator: Validator,
    mut queue: mpsc::Receiver<Received>,
    verdicts: mpsc::Sender<Verdict>,
    events: mpsc::Sender<NetworkEvent>,
    mut members: MemberView,
    probe: Arc<dyn Probe>,
) {
    let mut held: VecDeque<Vec<u8>> = VecDeque::new();
    loop {
        let received = tokio::select! {
            // Held messages first: they arrived before anything still queued.
            biased;
            Ok(()) = members.changed(), if !held.is_empty() => {
                let current = Arc::clone(&members.borrow_and_update());
                for data in std::mem::take(&mut held) {
                    if let Ok(gossip) = validator.validate(&data, SystemTime::now(), &current) {
                        probe.received(gossip.kind());
                        let _ = events.send(NetworkEvent::Gossip(gossip)).await;
                    }
                }
                continue;
            }
            received = queue.recv() => match received {
                Some(received) => received,
                None => break,
            },
        };
        // `borrow`, not `borrow_and_update`: a new member list must still wake the branch above
        // that judges the held messages again.
        let current = Arc::clone(&members.borrow());
        let result = validator.validate(&received.data, SystemTime::now(), &current);
        let acceptance = match &result {
            Ok(gossip) => {
                probe.received(gossip.kind());
                MessageAcceptance::Accept
            }
            Err(refusal) => {
                if refusal.reason == RefusalReason::MembersUnknown {
                    if held.len() >= HELD_UNTIL_MEMBERS_KNOWN {
                        held.pop_front();
                        probe.limit_hit(Limit::HeldUntilMembersKnown);
                    }
                    held.push_back(received.data);
                }
                refused(refusal, &received.from, probe.as_ref())
            }
        };
        let verdict = Verdict {
            id: received.id,
            from: received.from,
            acceptance,
            blames_sender: result.as_ref().is_err_and(Refusal::blames_sender),
        };
        if verdicts.send(verdict).await.is_err() {
            break;
        }
        if let Ok(gossip) = result {
            // Backpressure: if the node falls behind, validation waits (and past the queue,
            // the swarm task ignores new messages) rather than memory growing. A node without
            // use for messages (a bootstrap node) has dropped the receiver.
            let _ = events.send(NetworkEvent::Gossip(gossip)).await;
        }
    }
}

/// Logs and counts a refused message; what gossipsub is to do with it.
fn refused(refusal: &Refusal, from: &PeerId, probe: &dyn Probe) -> MessageAcceptance {
    let (verb, acceptance) = match refusal.action {
        Action::Reject => ("rejected", MessageAcceptance::Reject),
        Action::Ignore => ("ignored", MessageAcceptance::Ignore),
    };
    log::debug!(
        "{verb} a message from {from} ({}): {}",
        refusal.reason,
        refusal.detail
    );
    probe.refused(refusal.reason, refusal.action);
    if refusal.reason == RefusalReason::OriginRate {
        probe.limit_hit(Limit::OriginRate);
    }
    acceptance
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use tokio::sync::watch;

    use super::*;
    use crate::id::IdGenerator;
    use crate::identity::Identity;
    use crate::membership::Members;
    use crate::message::{Gossip, PriceMessage};
    use crate::network::validation::ValidationSettings;
    use crate::node::Metrics;
    use crate::pair::Pair;
    use crate::price::UsdPrice;
    use crate::signed::PriceData;

    fn price_bytes(origin: &Identity) -> Vec<u8> {
        let machine = IdGenerator::machine_id_from_address(&origin.address());
        let id = IdGenerator::new(machine).next_id().unwrap();
        let observed_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let price = UsdPrice::from_e8(300_000_000_000).unwrap();
        let data = PriceData {
            config: crate::membership::Members::open().signing_config(),
            pair: Pair::EthUsd,
            id,
            price,
            observed_at,
            origin: origin.address(),
        };
        Gossip::Price(PriceMessage::originate(data, origin.signer())).encode()
    }

    #[tokio::test]
    async fn messages_heard_before_the_member_list_are_judged_again_once_it_is_read() {
        let origins: Vec<Identity> = (1..=2u8)
            .map(|seed| Identity::from_secret(&[seed; 32]).unwrap())
            .collect();
        let unknown = Arc::new(Members::for_node(None));
        let (members, view) = watch::channel(Arc::clone(&unknown));
        let (queue_tx, queue) = mpsc::channel(8);
        let (verdicts_tx, mut verdicts) = mpsc::channel(8);
        let (events_tx, mut events) = mpsc::channel(8);
        let settings = ValidationSettings {
            max_age: Duration::from_secs(60),
            max_future_skew: Duration::from_secs(5),
            max_origin_rate: 60,
            pairs: crate::pair::PairSet::only(crate::pair::Pair::EthUsd),
        };
        let task = tokio::spawn(validate_messages(
            Validator::new(settings),
            queue,
            verdicts_tx,
            events_tx,
            view,
            Arc::new(Metrics::default()),
        ));
        let receive = |data| Received {
            id: gossipsub::MessageId::from(vec![1]),
            from: PeerId::random(),
            data,
        };
        queue_tx
            .send(receive(price_bytes(&origins[0])))
            .await
            .unwrap();
        let first = verdicts.recv().await.unwrap();
        assert_eq!(first.acceptance, MessageAcceptance::Ignore, "not forwarded");
        assert!(events.try_recv().is_err(), "not used yet");

        let list = origins.iter().map(|origin| (origin.address(), 0)).collect();
        members.send_replace(Arc::new(unknown.with_database(list)));
        queue_tx
            .send(receive(price_bytes(&origins[1])))
            .await
            .unwrap();
        let mut heard = Vec::new();
        for _ in 0..2 {
            let event = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
            let Ok(Some(NetworkEvent::Gossip(Gossip::Price(price)))) = event else {
                panic!("a price");
            };
            heard.push(price.data.origin);
        }
        assert_eq!(
            heard,
            vec![origins[0].address(), origins[1].address()],
            "the held message is judged again, before the newer one"
        );
        drop(queue_tx);
        task.await.unwrap();
    }
}
