//! The consensus pool: a pure state machine over prices and their signatures. No IO, no clock —
//! every call gets `now` — so every transition is unit-tested.
//!
//! ```text
//!            add (signatures < quorum)          add (≥ quorum, origin signed)
//!  (unknown) ─────────────────────────▶ pending ──────────────────────────────▶ verified
//!                                          │                                     │   ▲ late signatures:
//!                           older than     │              mark_stored            │   │ merged, flush delayed
//!                           max_age        ▼                                     ▼   │
//!                                      (dropped)                     stored (tombstone until retention)
//! ```
//!
//! Signatures reach the pool already verified against the price's digest (the network layer
//! checks every message); the pool only merges them, counts distinct signers and keeps time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use alloy_primitives::{Address, B256};

use crate::message::{EthSignature, PriceData, SignatureEntry};
use crate::store::prices::VerifiedPrice;

/// How the pool decides.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Distinct valid signers, the origin among them, that make a price verified.
    pub min_signers: usize,
    /// A verified price is due for storage this long after its last new signature.
    pub flush_delay: Duration,
    /// A price still pending this long after it was first seen can no longer gather signatures
    /// (peers reject it as too old): it is dropped.
    pub max_age: Duration,
    /// How long verified-but-unstored prices and stored tombstones are kept. Past it a verified
    /// price is dropped with a warning: the database was away for longer than this.
    pub retention: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    data: PriceData,
    digest: B256,
    signatures: BTreeMap<Address, EthSignature>,
    first_seen: SystemTime,
    last_signed: SystemTime,
    verified_at: Option<SystemTime>,
}

/// What adding signatures did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A price the pool did not know; `new_signatures` of them were new.
    New {
        new_signatures: usize,
        verified: bool,
    },
    /// A known price gained signatures.
    Merged {
        new_signatures: usize,
        /// It reached the quorum with this call.
        became_verified: bool,
    },
    /// Nothing new: every signature was already known.
    Unchanged,
    /// The id is already stored; ignored.
    AlreadyStored,
    /// The id is known with different signed content (another price under the same id).
    Conflict,
}

/// Prices dropped by [`Pool::expire`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Pending prices that never reached the quorum.
    pub unverified: Vec<u64>,
    /// Verified prices that were never stored: data lost, worth a warning.
    pub verified: Vec<u64>,
}

/// How many prices are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolCounts {
    pub pending: usize,
    pub verified: usize,
    pub stored: usize,
}

/// Prices by id, with their signatures and state.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    entries: HashMap<u64, Entry>,
    /// Stored ids and when they were stored, so late messages do not bring them back.
    stored: HashMap<u64, SystemTime>,
}

impl Pool {
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            stored: HashMap::new(),
        }
    }

    /// Merges already-verified `signatures` over `data` (from a price message, an attestation or
    /// this node's own signature).
    pub fn add(
        &mut self,
        data: &PriceData,
        signatures: &[SignatureEntry],
        now: SystemTime,
    ) -> Added {
        if self.stored.contains_key(&data.id) {
            return Added::AlreadyStored;
        }
        let min_signers = self.settings.min_signers;
        match self.entries.get_mut(&data.id) {
            Some(entry) if entry.data != *data => Added::Conflict,
            Some(entry) => {
                let new_signatures = entry.merge(signatures, now);
                if new_signatures == 0 {
                    return Added::Unchanged;
                }
                let became_verified =
                    entry.verified_at.is_none() && entry.check_quorum(min_signers, now);
                Added::Merged {
                    new_signatures,
                    became_verified,
                }
            }
            None => {
                let mut entry = Entry {
                    data: *data,
                    digest: data.digest(),
                    signatures: BTreeMap::new(),
                    first_seen: now,
                    last_signed: now,
                    verified_at: None,
                };
                let new_signatures = entry.merge(signatures, now);
                let verified = entry.check_quorum(min_signers, now);
                self.entries.insert(data.id, entry);
                Added::New {
                    new_signatures,
                    verified,
                }
            }
        }
    }

    /// Whether `signer` has a signature on price `id` here.
    pub fn has_signed(&self, id: u64, signer: &Address) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|entry| entry.signatures.contains_key(signer))
    }

    /// Whether `id` is already stored (and forgotten).
    pub fn is_stored(&self, id: u64) -> bool {
        self.stored.contains_key(&id)
    }

    /// The digest of a known price.
    pub fn digest(&self, id: u64) -> Option<B256> {
        self.entries.get(&id).map(|entry| entry.digest)
    }

    /// How many distinct signers a known price has.
    pub fn signer_count(&self, id: u64) -> usize {
        self.entries
            .get(&id)
            .map_or(0, |entry| entry.signatures.len())
    }

    /// Verified prices whose last signature is at least `flush_delay` old, oldest id first.
    pub fn due(&self, now: SystemTime) -> Vec<VerifiedPrice> {
        let mut due: Vec<VerifiedPrice> = self
            .entries
            .values()
            .filter(|entry| {
                entry.verified_at.is_some()
                    && age(entry.last_signed, now) >= self.settings.flush_delay
            })
            .map(Entry::to_verified)
            .collect();
        due.sort_unstable_by_key(|price| price.id);
        due
    }

    /// Marks ids as stored: they leave the pool, and later messages about them are ignored.
    /// Returns how many were known here.
    pub fn mark_stored(&mut self, ids: &[u64], now: SystemTime) -> usize {
        let mut known = 0;
        for id in ids {
            if self.entries.remove(id).is_some() {
                known += 1;
            }
            self.stored.entry(*id).or_insert(now);
        }
        known
    }

    /// Drops what can no longer be used: pending prices older than `max_age`, verified prices
    /// and stored tombstones older than `retention`.
    pub fn expire(&mut self, now: SystemTime) -> Expired {
        let PoolSettings {
            max_age, retention, ..
        } = self.settings;
        let mut expired = Expired::default();
        self.entries.retain(|id, entry| {
            let old = age(entry.first_seen, now);
            match entry.verified_at {
                None if old > max_age => expired.unverified.push(*id),
                Some(_) if old > retention => expired.verified.push(*id),
                _ => return true,
            }
            false
        });
        self.stored
            .retain(|_, stored_at| age(*stored_at, now) <= retention);
        expired.unverified.sort_unstable();
        expired.verified.sort_unstable();
        expired
    }

    pub fn counts(&self) -> PoolCounts {
        let verified = self
            .entries
            .values()
            .filter(|entry| entry.verified_at.is_some())
            .count();
        PoolCounts {
            pending: self.entries.len() - verified,
            verified,
            stored: self.stored.len(),
        }
    }
}

impl Entry {
    /// Adds signatures not yet known; returns how many were new.
    fn merge(&mut self, signatures: &[SignatureEntry], now: SystemTime) -> usize {
        let mut new = 0;
        for entry in signatures {
            if self
                .signatures
                .insert(entry.signer, entry.signature)
                .is_none()
            {
                new += 1;
            }
        }
        if new > 0 {
            self.last_signed = self.last_signed.max(now);
        }
        new
    }

    /// Marks the entry verified when it has the quorum and the origin's signature.
    fn check_quorum(&mut self, min_signers: usize, now: SystemTime) -> bool {
        if self.verified_at.is_none()
            && self.signatures.len() >= min_signers
            && self.signatures.contains_key(&self.data.origin)
        {
            self.verified_at = Some(now);
        }
        self.verified_at.is_some()
    }

    fn to_verified(&self) -> VerifiedPrice {
        VerifiedPrice {
            id: self.data.id,
            price: self.data.price,
            observed_at: self.data.observed_at,
            origin: self.data.origin,
            signatures: self
                .signatures
                .iter()
                .map(|(signer, signature)| SignatureEntry {
                    signer: *signer,
                    signature: *signature,
                })
                .collect(),
            last_signed: self.last_signed,
        }
    }
}

/// `now − then`, zero when the clock went backwards.
fn age(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::price::UsdPrice;
    use std::time::UNIX_EPOCH;

    const FLUSH_DELAY: Duration = Duration::from_secs(30);
    const MAX_AGE: Duration = Duration::from_secs(900);
    const RETENTION: Duration = Duration::from_secs(3600);

    fn pool() -> Pool {
        Pool::new(PoolSettings {
            min_signers: 3,
            flush_delay: FLUSH_DELAY,
            max_age: MAX_AGE,
            retention: RETENTION,
        })
    }

    fn nodes() -> Vec<Identity> {
        (1..=5u8)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    fn t(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_763_700_000 + seconds)
    }

    fn data(id: u64, origin: &Identity) -> PriceData {
        PriceData {
            id,
            price: UsdPrice::from_e8(300_000_000_000).unwrap(),
            observed_at: 1_763_700_000,
            origin: origin.address(),
        }
    }

    fn sig(data: &PriceData, signer: &Identity) -> SignatureEntry {
        SignatureEntry::sign(signer.signer(), data.digest())
    }

    #[test]
    fn a_price_becomes_verified_at_the_quorum() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0])], t(0)),
            Added::New {
                new_signatures: 1,
                verified: false
            }
        );
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[1])], t(1)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert_eq!(pool.counts().pending, 1);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[2])], t(2)),
            Added::Merged {
                new_signatures: 1,
                became_verified: true
            }
        );
        assert_eq!(
            pool.counts(),
            PoolCounts {
                pending: 0,
                verified: 1,
                stored: 0
            }
        );
        assert!(pool.has_signed(1, &n[2].address()));
        assert!(!pool.has_signed(1, &n[3].address()));
        assert_eq!(pool.signer_count(1), 3);
    }

    #[test]
    fn a_full_message_can_arrive_verified() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&d, node)).collect();
        assert_eq!(
            pool.add(&d, &all, t(0)),
            Added::New {
                new_signatures: 3,
                verified: true
            }
        );
    }

    #[test]
    fn repeated_signatures_count_once() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        pool.add(&d, &[sig(&d, &n[0])], t(0));
        assert_eq!(pool.add(&d, &[sig(&d, &n[0])], t(5)), Added::Unchanged);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0]), sig(&d, &n[1])], t(6)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert_eq!(pool.signer_count(1), 2);
    }

    #[test]
    fn without_the_origin_there_is_no_quorum() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        // Attestations arrive before the origin's price message (out of order).
        for node in &n[1..4] {
            pool.add(&d, &[sig(&d, node)], t(0));
        }
        assert_eq!(pool.counts().verified, 0);
        assert_eq!(pool.signer_count(1), 3);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0])], t(1)),
            Added::Merged {
                new_signatures: 1,
                became_verified: true
            }
        );
    }

    #[test]
    fn late_signatures_after_verification_are_kept_and_delay_the_flush() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        for (i, node) in n[..3].iter().enumerate() {
            pool.add(&d, &[sig(&d, node)], t(i as u64));
        }
        assert!(
            pool.due(t(2) + FLUSH_DELAY - Duration::from_secs(1))
                .is_empty()
        );
        assert_eq!(pool.due(t(2) + FLUSH_DELAY).len(), 1);
        // A fourth signature arrives late: merged, and the 30 s restart from it.
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[3])], t(20)),
            Added::Merged {
                new_signatures: 1,
                became_verified: false
            }
        );
        assert!(
            pool.due(t(20) + FLUSH_DELAY - Duration::from_secs(1))
                .is_empty()
        );
        let due = pool.due(t(20) + FLUSH_DELAY);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].signatures.len(), 4);
        assert_eq!(due[0].last_signed, t(20));
        assert_eq!(due[0].origin, n[0].address());
    }

    #[test]
    fn pending_prices_are_never_due() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        pool.add(&d, &[sig(&d, &n[0]), sig(&d, &n[1])], t(0));
        assert!(pool.due(t(10_000)).is_empty());
    }

    #[test]
    fn due_lists_only_ripe_prices_in_id_order() {
        let n = nodes();
        let mut pool = pool();
        for (id, at) in [(3, 0), (1, 0), (2, 100)] {
            let d = data(id, &n[0]);
            let all: Vec<_> = n[..3].iter().map(|node| sig(&d, node)).collect();
            pool.add(&d, &all, t(at));
        }
        let ids: Vec<u64> = pool.due(t(31)).iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![1, 3]);
        let ids: Vec<u64> = pool.due(t(130)).iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }

    #[test]
    fn stored_prices_are_forgotten_and_late_messages_ignored() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&d, node)).collect();
        pool.add(&d, &all, t(0));
        assert_eq!(pool.mark_stored(&[1, 99], t(40)), 1);
        assert_eq!(
            pool.counts(),
            PoolCounts {
                pending: 0,
                verified: 0,
                stored: 2
            }
        );
        assert!(pool.due(t(100)).is_empty());
        assert!(pool.is_stored(1));
        assert_eq!(pool.add(&d, &[sig(&d, &n[4])], t(41)), Added::AlreadyStored);
        // A notice can come before the price itself: the price is then never collected.
        let d99 = data(99, &n[1]);
        assert_eq!(
            pool.add(&d99, &[sig(&d99, &n[1])], t(42)),
            Added::AlreadyStored
        );
    }

    #[test]
    fn another_price_under_a_known_id_is_a_conflict() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        pool.add(&d, &[sig(&d, &n[0])], t(0));
        let mut other = d;
        other.price = UsdPrice::from_e8(1).unwrap();
        assert_eq!(
            pool.add(&other, &[sig(&other, &n[1])], t(1)),
            Added::Conflict
        );
        let mut other_origin = d;
        other_origin.origin = n[1].address();
        assert_eq!(
            pool.add(&other_origin, &[sig(&other_origin, &n[1])], t(1)),
            Added::Conflict
        );
        assert_eq!(pool.signer_count(1), 1);
        assert_eq!(pool.digest(1), Some(d.digest()));
    }

    #[test]
    fn expiry_drops_stale_pending_then_unstored_verified_then_tombstones() {
        let n = nodes();
        let mut pool = pool();
        let pending = data(1, &n[0]);
        pool.add(&pending, &[sig(&pending, &n[0])], t(0));
        let verified = data(2, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&verified, node)).collect();
        pool.add(&verified, &all, t(0));
        pool.mark_stored(&[3], t(0));

        assert_eq!(pool.expire(t(900)), Expired::default());
        assert_eq!(
            pool.expire(t(901)),
            Expired {
                unverified: vec![1],
                verified: vec![]
            }
        );
        assert_eq!(pool.counts().stored, 1);
        assert_eq!(
            pool.expire(t(3601)),
            Expired {
                unverified: vec![],
                verified: vec![2]
            }
        );
        assert_eq!(pool.counts(), PoolCounts::default());
        // Once the tombstone is gone the id is new again (peers reject it as too old by then).
        let stored = data(3, &n[0]);
        assert!(matches!(
            pool.add(&stored, &[sig(&stored, &n[0])], t(3602)),
            Added::New { .. }
        ));
    }

    #[test]
    fn a_clock_going_backwards_does_not_panic_or_expire() {
        let n = nodes();
        let mut pool = pool();
        let d = data(1, &n[0]);
        let all: Vec<_> = n[..3].iter().map(|node| sig(&d, node)).collect();
        pool.add(&d, &all, t(100));
        assert!(pool.due(t(0)).is_empty());
        assert_eq!(pool.expire(t(0)), Expired::default());
        pool.add(&d, &[sig(&d, &n[3])], t(50));
        assert_eq!(pool.due(t(130)).len(), 1, "last_signed never moves back");
    }

    #[test]
    fn min_signers_of_one_verifies_the_origin_alone() {
        let n = nodes();
        let mut pool = Pool::new(PoolSettings {
            min_signers: 1,
            flush_delay: Duration::ZERO,
            max_age: MAX_AGE,
            retention: RETENTION,
        });
        let d = data(1, &n[0]);
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[1])], t(0)),
            Added::New {
                new_signatures: 1,
                verified: false
            }
        );
        assert_eq!(
            pool.add(&d, &[sig(&d, &n[0])], t(0)),
            Added::Merged {
                new_signatures: 1,
                became_verified: true
            }
        );
        assert_eq!(pool.due(t(0)).len(), 1);
    }
}
