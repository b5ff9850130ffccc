//! Where received messages wait for the validator: one bounded queue per peer, served in turn,
//! so a peer flooding the node delays only its own messages, never its neighbours'. It also
//! counts, per peer, the messages the validator refused that the peer should not have sent
//! (ignored or rejected for a reason the sender could see), and says when a peer has sent so many
//! that it is to be cut off for a while. Pure: the swarm task does the blocking.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Refusals are counted over this window.
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// How long a peer over its refusal budget stays cut off.
pub const BLOCK_TIME: Duration = Duration::from_secs(600);

/// The bounds of the intake.
#[derive(Debug, Clone, Copy)]
pub struct IntakeBounds {
    /// Messages from one peer waiting for validation; more are turned away.
    pub per_peer_queue: usize,
    /// Refused messages one peer may send per minute before it is cut off.
    pub max_refused_per_minute: u32,
}

#[derive(Debug)]
struct Refusals {
    since: Instant,
    count: u32,
}

/// Per-peer queues, their turn order, refusal counts and the peers cut off.
#[derive(Debug)]
pub struct Intake<M> {
    bounds: IntakeBounds,
    queues: HashMap<PeerId, VecDeque<M>>,
    /// Peers with something queued, in the order they are served.
    turns: VecDeque<PeerId>,
    refusals: HashMap<PeerId, Refusals>,
    blocked_until: HashMap<PeerId, Instant>,
}

impl<M> Intake<M> {
    pub fn new(bounds: IntakeBounds) -> Self {
        Self {
            bounds,
            queues: HashMap::new(),
            turns: VecDeque::new(),
            refusals: HashMap::new(),
            blocked_until: HashMap::new(),
        }
    }

    /// Queues `message` from `peer`; hands it back when that peer's queue is full (or the peer
    /// is cut off).
    pub fn push(&mut self, peer: PeerId, message: M) -> Result<(), M> {
        if self.blocked_until.contains_key(&peer) {
            return Err(message);
        }
        let queue = self.queues.entry(peer).or_default();
        if queue.len() >= self.bounds.per_peer_queue {
            return Err(message);
        }
        if queue.is_empty() {
            self.turns.push_back(peer);
        }
        queue.push_back(message);
        Ok(())
    }

    /// The next message to validate: the oldest of the peer whose turn it is.
    pub fn next(&mut self) -> Option<M> {
        let peer = self.turns.pop_front()?;
        let queue = self.queues.get_mut(&peer)?;
        let message = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&peer);
        } else {
            self.turns.push_back(peer);
        }
        message
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Counts a refused message from `peer`. True when this one takes the peer over its budget:
    /// the caller cuts it off with [`Intake::block`].
    pub fn note_refusal(&mut self, peer: PeerId, now: Instant) -> bool {
        let refusals = self.refusals.entry(peer).or_insert(Refusals {
            since: now,
            count: 0,
        });
        if now.duration_since(refusals.since) >= REFUSAL_WINDOW {
            *refusals = Refusals {
                since: now,
                count: 0,
            };
        }
        refusals.count += 1;
        refusals.count > self.bounds.max_refused_per_minute
            && !self.blocked_until.contains_key(&peer)
    }

    /// Turns `peer`'s messages away until `now` + [`BLOCK_TIME`]. What it already queued is
    /// still judged: a relay forwards honest messages among the bad ones, and gossipsub would
    /// not take a dropped one again.
    pub fn block(&mut self, peer: PeerId, now: Instant) {
        self.blocked_until.insert(peer, now + BLOCK_TIME);
        self.refusals.remove(&peer);
    }

    /// Peers whose time is up, to be let back in; also forgets stale refusal counts.
    pub fn expired_blocks(&mut self, now: Instant) -> Vec<PeerId> {
        self.refusals
            .retain(|_, refusals| now.duration_since(refusals.since) < REFUSAL_WINDOW);
        let expired: Vec<PeerId> = self
            .blocked_until
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.blocked_until.remove(peer);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: IntakeBounds = IntakeBounds {
        per_peer_queue: 3,
        max_refused_per_minute: 5,
    };

    #[test]
    fn peers_are_served_in_turn_whatever_they_sent() {
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let mut intake = Intake::new(BOUNDS);
        for i in 0..3 {
            intake.push(flooder, ("flood", i)).unwrap();
        }
        assert_eq!(
            intake.push(flooder, ("flood", 3)),
            Err(("flood", 3)),
            "its queue is full"
        );
        intake.push(honest, ("honest", 0)).unwrap();
        let served: Vec<_> = std::iter::from_fn(|| intake.next()).collect();
        assert_eq!(
            served,
            vec![("flood", 0), ("honest", 0), ("flood", 1), ("flood", 2)],
            "the honest message waits for one flood message, not for all"
        );
        assert!(intake.is_empty());
    }

    #[test]
    fn a_peer_over_its_refusal_budget_is_cut_off_then_let_back() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut intake = Intake::new(BOUNDS);
        let start = Instant::now();
        intake.push(peer, 1).unwrap();
        intake.push(other, 2).unwrap();
        assert!((0..5).all(|_| !intake.note_refusal(peer, start)));
        assert!(intake.note_refusal(peer, start), "the sixth in a minute");
        intake.block(peer, start);
        assert_eq!(intake.push(peer, 3), Err(3), "nothing new from it");
        assert!(!intake.note_refusal(peer, start), "already cut off");
        assert_eq!(intake.next(), Some(1), "what it queued is still judged");
        assert_eq!(intake.next(), Some(2), "others are unaffected");
        assert!(intake.expired_blocks(start + BLOCK_TIME / 2).is_empty());
        assert_eq!(intake.expired_blocks(start + BLOCK_TIME), vec![peer]);
        assert_eq!(intake.push(peer, 4), Ok(()));
    }

    #[test]
    fn refusals_are_counted_per_minute() {
        let peer = PeerId::random();
        let mut intake: Intake<()> = Intake::new(BOUNDS);
        let start = Instant::now();
        for minute in 0..3 {
            let at = start + REFUSAL_WINDOW * minute;
            assert!(
                (0..5).all(|_| !intake.note_refusal(peer, at)),
                "minute {minute}"
            );
        }
    }
}
