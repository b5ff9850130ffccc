//! What a received gossip message must pass before the node uses it or gossipsub forwards it.
//!
//! Gossip is authenticated by its content, not by who relayed it: every message carries the
//! signatures that prove who speaks, so the same bytes get the same verdict from whoever they
//! come. Checks run cheapest first, so a message that fails a cheap check never costs a
//! signature recovery:
//!
//! 1. shape: size, JSON, canonical encoding, a pair this node signs, one origin signature on a
//!    price;
//! 2. the id: its machine bits are the origin's; its time part matches the origin's
//!    `observed_at`, and another member's observation lies within the round window of it;
//! 3. freshness: not older than `--max-age`, not further ahead than `--max-clock-skew`;
//! 4. membership: the origin and every signer are members;
//! 5. signatures: each recovers to its claimed signer;
//! 6. the origin's rate: at most `--max-origin-rate` new prices per pair per minute.
//!
//! A fault any relay can see (malformed, non-canonical, forged, an id outside its origin's space)
//! is [`Action::Reject`]: gossipsub penalises the peer that sent it. What a clock, late delivery,
//! a member list (ours may differ from the relay's) or a busy origin can explain is
//! [`Action::Ignore`]: dropped, not forwarded, no score penalty — the swarm task still counts
//! such refusals per peer and cuts off a peer that sends too many.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use alloy_primitives::Address;

use crate::id::{self, IdGenerator};
use crate::membership::{Members, Standing};
use crate::message::{DecodeError, Gossip};
use crate::pair::{Pair, PairSet};
use crate::signed::{PriceData, ROUND_WINDOW};

/// An id's time part may differ this much from the `observed_at` it is signed with (ids are
/// minted in the same instant; the generator can run slightly ahead under bursts).
const ID_TIME_TOLERANCE: Duration = Duration::from_secs(5);
/// Origins whose rate is tracked at most; beyond it (only possible on an open relay, where
/// anyone is an origin) the oldest state is forgotten.
const MAX_TRACKED_ORIGINS: usize = 4_096;

/// `--max-origin-rate`'s default: new prices per origin per minute.
pub const DEFAULT_MAX_ORIGIN_RATE: u32 = 60;

/// How old or how far ahead a price may be, and how fast an origin may publish.
#[derive(Debug, Clone, Copy)]
pub struct ValidationSettings {
    /// Prices observed longer ago than this are ignored (replays, stragglers).
    pub max_age: Duration,
    /// Prices observed further in the future than this are ignored (clock skew allowance).
    pub max_future_skew: Duration,
    /// New prices accepted from one origin per pair per minute; also the burst it may send at
    /// once.
    pub max_origin_rate: u32,
    /// The pairs this node signs; prices of others are ignored. A bootstrap node, which signs
    /// nothing, relays every pair.
    pub pairs: PairSet,
}

/// What gossipsub should do with a refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drop it and penalise the peer that sent it: the message is provably invalid.
    Reject,
    /// Drop it without penalty: it may be honest but is of no use now.
    Ignore,
}

crate::labels::label_values! {
    /// Why a message was refused, as the `reason` label of `messages_rejected` and
    /// `messages_ignored` names it.
    pub enum RefusalReason {
        TooLarge => "too_large",
        Malformed => "malformed",
        NotCanonical => "not_canonical",
        DuplicateSigner => "duplicate_signer",
        OriginUnsigned => "origin_unsigned",
        BadSignature => "bad_signature",
        ExtraSignatures => "extra_signatures",
        PairNotSigned => "pair_not_signed",
        ForeignId => "foreign_id",
        IdTime => "id_time",
        TooOld => "too_old",
        FromFuture => "from_future",
        FutureId => "future_id",
        Outsider => "outsider",
        NotMember => "not_member",
        MembersUnknown => "members_unknown",
        OriginRate => "origin_rate",
        /// An observation made too far from its round's time to belong to it.
        OutsideRoundWindow => "outside_round_window",
        /// The sender's queue of messages waiting for validation was full (counted by the
        /// swarm task, before validation).
        ValidationQueue => "validation_queue",
    }
}

impl RefusalReason {
    /// Whether the peer that sent a message refused for this reason should have known better:
    /// everything but what depends on this node's own state (its member list not read yet,
    /// its per-origin rate, the pairs it signs, its queue).
    pub fn blames_sender(self) -> bool {
        match self {
            Self::MembersUnknown
            | Self::OriginRate
            | Self::PairNotSigned
            | Self::ValidationQueue => false,
            Self::TooLarge
            | Self::Malformed
            | Self::NotCanonical
            | Self::DuplicateSigner
            | Self::OriginUnsigned
            | Self::BadSignature
            | Self::ExtraSignatures
            | Self::ForeignId
            | Self::IdTime
            | Self::TooOld
            | Self::FromFuture
            | Self::FutureId
            | Self::Outsider
            | Self::NotMember
            | Self::OutsideRoundWindow => true,
        }
    }
}

impl From<&DecodeError> for RefusalReason {
    fn from(err: &DecodeError) -> Self {
        match err {
            DecodeError::TooLarge(_) => Self::TooLarge,
            DecodeError::Malformed(_) => Self::Malformed,
            DecodeError::NotCanonical(_) => Self::NotCanonical,
            DecodeError::DuplicateSigner(_) => Self::DuplicateSigner,
            DecodeError::OriginUnsigned(_) => Self::OriginUnsigned,
            DecodeError::BadSignature { .. } => Self::BadSignature,
        }
    }
}

/// Why a message was refused: a stable `reason` for counters and a detail for the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub detail: String,
    pub action: Action,
}

impl Refusal {
    /// Whether the peer that sent the message should have known better.
    pub fn blames_sender(&self) -> bool {
        self.reason.blames_sender()
    }

    fn reject(reason: RefusalReason, detail: String) -> Self {
        Self {
            reason,
            detail,
            action: Action::Reject,
        }
    }

    fn ignore(reason: RefusalReason, detail: String) -> Self {
        Self {
            reason,
            detail,
            action: Action::Ignore,
        }
    }
}

impl From<DecodeError> for Refusal {
    fn from(err: DecodeError) -> Self {
        Self::reject(RefusalReason::from(&err), err.to_string())
    }
}

/// Judges messages; remembers each origin's recent rate.
#[derive(Debug)]
pub struct Validator {
    settings: ValidationSettings,
    buckets: HashMap<(Address, Pair), Bucket>,
}

/// A token bucket: `max_origin_rate` tokens, refilled at that many per minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: SystemTime,
}

impl Validator {
    pub fn new(settings: ValidationSettings) -> Self {
        Self {
            settings,
            buckets: HashMap::new(),
        }
    }

    /// Checks a received message (see the module docs for the order of checks).
    pub fn validate(
        &mut self,
        bytes: &[u8],
        now: SystemTime,
        members: &Members,
    ) -> Result<Gossip, Refusal> {
        let gossip = Gossip::parse(bytes)?;
        if let Gossip::Price(message) = &gossip
            && message.signatures.len() != 1
        {
            return Err(Refusal::reject(
                RefusalReason::ExtraSignatures,
                format!(
                    "a price message carries only its origin's signature, this one {}",
                    message.signatures.len()
                ),
            ));
        }
        if let Some(data) = gossip.price_data() {
            self.check_pair(data.pair)?;
            check_id(&data, matches!(gossip, Gossip::Price(_)))?;
            self.check_freshness(data.observed_at, now)?;
        }
        // A report is each of its observations, checked as its attestation would be.
        if let Gossip::Report(report) = &gossip {
            self.check_pair(report.pair)?;
            for (entry, data) in report.observations.iter().zip(report.observation_data()) {
                check_id(&data, entry.signer == report.origin)?;
                self.check_freshness(data.observed_at, now)?;
            }
        }
        // A commit is as fresh as its round: the id's time is its origin's observation time.
        if let Gossip::Commit(commit) = &gossip {
            self.check_pair(commit.pair)?;
            check_machine(commit.id, &commit.origin)?;
            self.check_freshness(id::decompose(commit.id).unix_ms / 1000, now)?;
        }
        if let Gossip::Stored(notice) = &gossip {
            check_stored_ids(notice.at, &notice.ids)?;
            self.check_freshness(notice.at, now)?;
        }
        for speaker in gossip.speakers() {
            check_member(&speaker, members)?;
        }
        gossip.verify_signatures()?;
        if let Gossip::Price(message) = &gossip {
            self.take_origin_token(message.data.origin, message.data.pair, now)?;
        }
        Ok(gossip)
    }

    /// Another node's --pairs can differ during a change of the network's pairs: not the
    /// relay's fault.
    fn check_pair(&self, pair: Pair) -> Result<(), Refusal> {
        if self.settings.pairs.contains(pair) {
            return Ok(());
        }
        Err(Refusal::ignore(
            RefusalReason::PairNotSigned,
            format!("{pair} is not among the pairs this node signs"),
        ))
    }

    fn check_freshness(&self, observed_at: u64, now: SystemTime) -> Result<(), Refusal> {
        let now = crate::time::unix_seconds(now);
        if observed_at.saturating_add(self.settings.max_age.as_secs()) < now {
            return Err(Refusal::ignore(
                RefusalReason::TooOld,
                format!("observed {}s ago", now - observed_at),
            ));
        }
        if observed_at > now.saturating_add(self.settings.max_future_skew.as_secs()) {
            return Err(Refusal::ignore(
                RefusalReason::FromFuture,
                format!("observed {}s in the future", observed_at - now),
            ));
        }
        Ok(())
    }

    /// Prices reach here once each (gossipsub drops copies of bytes it has seen, and a price
    /// has one encoding), so each token is one distinct price of that origin.
    fn take_origin_token(
        &mut self,
        origin: Address,
        pair: Pair,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let capacity = f64::from(self.settings.max_origin_rate.max(1));
        let key = (origin, pair);
        if self.buckets.len() >= MAX_TRACKED_ORIGINS && !self.buckets.contains_key(&key) {
            self.buckets.clear();
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).unwrap_or_default();
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * capacity / 60.0).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Refusal::ignore(
                RefusalReason::OriginRate,
                format!(
                    "{origin} published more than {} {pair} prices a minute",
                    self.settings.max_origin_rate
                ),
            ));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// An id carries its origin's machine bits and the time it was minted, which is the time the
/// origin observed its price: so nobody can mint ids in another node's id space (id squatting).
/// The origin's own price (`origin_price`) was observed when its id was minted; another
/// member's observation belongs to the round only within [`ROUND_WINDOW`] of that time.
fn check_id(data: &PriceData, origin_price: bool) -> Result<(), Refusal> {
    check_machine(data.id, &data.origin)?;
    let parts = id::decompose(data.id);
    let observed_ms = data.observed_at.saturating_mul(1000);
    if !origin_price {
        let window = ROUND_WINDOW.as_millis() as u64;
        if parts.unix_ms.abs_diff(observed_ms) > window + 1000 {
            // Clocks of two nodes can explain it: ignored, not held against the relay.
            return Err(Refusal::ignore(
                RefusalReason::OutsideRoundWindow,
                format!(
                    "observation at {} s is more than {}s from its round {} (minted at {} ms)",
                    data.observed_at,
                    ROUND_WINDOW.as_secs(),
                    data.id,
                    parts.unix_ms
                ),
            ));
        }
        return Ok(());
    }
    let tolerance = ID_TIME_TOLERANCE.as_millis() as u64;
    // observed_at is whole seconds, so the id's tick lies within the second after it.
    if parts.unix_ms.saturating_add(tolerance) < observed_ms
        || parts.unix_ms > observed_ms.saturating_add(1000 + tolerance)
    {
        return Err(Refusal::reject(
            RefusalReason::IdTime,
            format!(
                "id {} was minted at {} ms, the price observed at {} s",
                data.id, parts.unix_ms, data.observed_at
            ),
        ));
    }
    Ok(())
}

/// Only `origin` mints ids with its machine bits.
fn check_machine(id: u64, origin: &Address) -> Result<(), Refusal> {
    let machine = id::decompose(id).machine;
    let expected = IdGenerator::machine_id_from_address(origin);
    if machine == expected {
        return Ok(());
    }
    Err(Refusal::reject(
        RefusalReason::ForeignId,
        format!(
            "id {id} has machine bits {machine:#06x}, its origin {origin} mints {expected:#06x}"
        ),
    ))
}

/// A writer can only have stored prices minted before its notice: an id from later is a lie
/// meant to make nodes forget a price before it exists.
fn check_stored_ids(at: u64, ids: &[u64]) -> Result<(), Refusal> {
    let latest_ms = at
        .saturating_mul(1000)
        .saturating_add(1000 + ID_TIME_TOLERANCE.as_millis() as u64);
    match ids
        .iter()
        .find(|id| id::decompose(**id).unix_ms > latest_ms)
    {
        Some(id) => Err(Refusal::reject(
            RefusalReason::FutureId,
            format!("stored notice of {at} names id {id}, minted later"),
        )),
        None => Ok(()),
    }
}

fn check_member(signer: &Address, members: &Members) -> Result<(), Refusal> {
    match members.standing(signer) {
        Standing::Member => Ok(()),
        // Not a fault of the peer that relayed it: the list is ours, and a relay with another
        // (or none, like an open bootstrap node) forwards it in good faith.
        Standing::Outsider => Err(Refusal::ignore(
            RefusalReason::Outsider,
            format!("{signer} is not in the trusted signers list"),
        )),
        Standing::NotMember => Err(Refusal::ignore(
            RefusalReason::NotMember,
            format!("{signer} is not a member"),
        )),
        Standing::Unknown => Err(Refusal::ignore(
            RefusalReason::MembersUnknown,
            "the member list has not been read yet".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::identity::Identity;
    use crate::message::{Attestation, PriceMessage, StoredNotice};
    use crate::price::UsdPrice;
    use std::collections::HashSet;

    fn settings() -> ValidationSettings {
        ValidationSettings {
            max_age: Duration::from_secs(900),
            max_future_skew: Duration::from_secs(30),
            max_origin_rate: 3,
            pairs: PairSet::only(Pair::EthUsd),
        }
    }
    const OBSERVED: u64 = 1_763_700_000;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn node(seed: u8) -> Identity {
        Identity::from_secret(&[seed; 32]).unwrap()
    }

    fn members_of(nodes: &[&Identity]) -> Members {
        Members::for_node(None)
            .with_database(nodes.iter().map(|node| (node.address(), 0)).collect())
    }

    /// The id `origin`'s generator mints at `observed_at` (+ `extra_ms`).
    fn id_for(origin: &Identity, observed_at: u64, extra_ms: u64) -> u64 {
        IdGenerator::new(IdGenerator::machine_id_from_address(&origin.address()))
            .next_id_at(UNIX_EPOCH + Duration::from_millis(observed_at * 1000 + extra_ms))
            .unwrap()
    }

    /// `origin`'s price of 3000 USD.
    fn signed_by(origin: &Identity, pair: Pair, id: u64, observed_at: u64) -> PriceMessage {
        let data = PriceData {
            config: crate::membership::Members::open().signing_config(),
            pair,
            id,
            price: UsdPrice::from_e8(300_000_000_000).unwrap(),
            observed_at,
            origin: origin.address(),
        };
        PriceMessage::originate(data, origin.signer())
    }

    fn price_from(origin: &Identity) -> PriceMessage {
        price_at(origin, OBSERVED)
    }

    fn price_at(origin: &Identity, observed_at: u64) -> PriceMessage {
        signed_by(
            origin,
            Pair::EthUsd,
            id_for(origin, observed_at, 250),
            observed_at,
        )
    }

    fn refusal(result: Result<Gossip, Refusal>) -> (RefusalReason, Action) {
        let refusal = result.unwrap_err();
        (refusal.reason, refusal.action)
    }

    #[test]
    fn accepts_members_messages_whoever_relays_them() {
        let (origin, cosigner) = (node(1), node(2));
        let members = members_of(&[&origin, &cosigner]);
        let price = price_from(&origin);
        let attestation = Attestation::sign(&price.data, cosigner.signer());
        let notice = StoredNotice::sign(
            vec![id_for(&origin, OBSERVED, 0)],
            OBSERVED,
            crate::membership::Members::open().signing_config(),
            cosigner.signer(),
        );
        let mut validator = Validator::new(settings());
        for gossip in [
            Gossip::Price(price),
            Gossip::Attestation(attestation),
            Gossip::Stored(notice),
        ] {
            let accepted = validator.validate(&gossip.encode(), at(OBSERVED + 10), &members);
            assert_eq!(accepted, Ok(gossip));
        }
    }

    #[test]
    fn ignores_stale_and_future_prices_without_penalty() {
        let origin = node(1);
        let members = members_of(&[&origin]);
        let bytes = Gossip::Price(price_from(&origin)).encode();
        let check = |now| Validator::new(settings()).validate(&bytes, at(now), &members);
        assert!(check(OBSERVED + 900).is_ok());
        assert_eq!(
            refusal(check(OBSERVED + 901)),
            (RefusalReason::TooOld, Action::Ignore)
        );
        assert!(check(OBSERVED - 30).is_ok());
        assert_eq!(
            refusal(check(OBSERVED - 31)),
            (RefusalReason::FromFuture, Action::Ignore)
        );
    }

    #[test]
    fn outsiders_count_for_nothing() {
        let (member, outsider, other) = (node(1), node(2), node(3));
        let members = members_of(&[&member]);
        let mut validator = Validator::new(settings());
        let mut check =
            |gossip: Gossip| validator.validate(&gossip.encode(), at(OBSERVED), &members);
        // An outsider's own price, its co-signature on a member's price, a member's
        // co-signature on an outsider's price, and an outsider's stored notice.
        let outsider_price = price_from(&outsider);
        let cases = [
            Gossip::Price(outsider_price.clone()),
            Gossip::Attestation(Attestation::sign(
                &price_from(&member).data,
                outsider.signer(),
            )),
            Gossip::Attestation(Attestation::sign(&outsider_price.data, member.signer())),
            Gossip::Stored(StoredNotice::sign(
                vec![1],
                OBSERVED,
                crate::membership::Members::open().signing_config(),
                outsider.signer(),
            )),
        ];
        for gossip in cases {
            assert_eq!(
                refusal(check(gossip)),
                (RefusalReason::NotMember, Action::Ignore)
            );
        }
        // Absent from a static list: an outsider, but the relay may not have that list.
        let listed = Members::for_relay(Some(HashSet::from([member.address()])));
        let bytes = Gossip::Price(price_from(&other)).encode();
        assert_eq!(
            refusal(Validator::new(settings()).validate(&bytes, at(OBSERVED), &listed)),
            (RefusalReason::Outsider, Action::Ignore)
        );
        // Before the member list is read, nothing counts.
        let bytes = Gossip::Price(price_from(&member)).encode();
        assert_eq!(
            refusal(Validator::new(settings()).validate(
                &bytes,
                at(OBSERVED),
                &Members::for_node(None)
            )),
            (RefusalReason::MembersUnknown, Action::Ignore)
        );
    }

    #[test]
    fn a_non_member_costs_no_signature_recovery() {
        // A forged signature by a non-member is refused for membership, before any recovery
        // would have found it bad.
        let (member, outsider) = (node(1), node(2));
        let mut price = price_from(&outsider);
        price.signatures[0].signature = price.data.sign(member.signer()).signature;
        let bytes = Gossip::Price(price).encode();
        let members = members_of(&[&member]);
        assert_eq!(
            refusal(Validator::new(settings()).validate(&bytes, at(OBSERVED), &members)),
            (RefusalReason::NotMember, Action::Ignore)
        );
    }

    #[test]
    fn ids_outside_the_origins_space_or_time_are_rejected() {
        let (origin, victim) = (node(1), node(2));
        let members = members_of(&[&origin, &victim]);
        let price =
            |id: u64| Gossip::Price(signed_by(&origin, Pair::EthUsd, id, OBSERVED)).encode();
        let mut validator = Validator::new(settings());
        let mut check = |id| validator.validate(&price(id), at(OBSERVED), &members);
        // Squatting: an id in the victim's space.
        assert_eq!(
            refusal(check(id_for(&victim, OBSERVED, 0))),
            (RefusalReason::ForeignId, Action::Reject)
        );
        // An id minted long after or before the observation.
        assert_eq!(
            refusal(check(id_for(&origin, OBSERVED + 60, 0))),
            (RefusalReason::IdTime, Action::Reject)
        );
        assert_eq!(
            refusal(check(id_for(&origin, OBSERVED - 60, 0))),
            (RefusalReason::IdTime, Action::Reject)
        );
        assert!(check(id_for(&origin, OBSERVED, 990)).is_ok());
    }

    #[test]
    fn messages_have_one_encoding_and_prices_one_signature() {
        let (origin, cosigner) = (node(1), node(2));
        let members = members_of(&[&origin, &cosigner]);
        let price = price_from(&origin);
        let mut validator = Validator::new(settings());
        let spaced = String::from_utf8(Gossip::Price(price.clone()).encode())
            .unwrap()
            .replacen(':', ": ", 1);
        assert_eq!(
            refusal(validator.validate(spaced.as_bytes(), at(OBSERVED), &members)),
            (RefusalReason::NotCanonical, Action::Reject)
        );
        let mut packed = price.clone();
        packed.signatures.push(price.data.sign(cosigner.signer()));
        assert_eq!(
            refusal(validator.validate(&Gossip::Price(packed).encode(), at(OBSERVED), &members)),
            (RefusalReason::ExtraSignatures, Action::Reject)
        );
    }

    #[test]
    fn an_origin_publishing_too_fast_is_held_to_its_rate() {
        let origin = node(1);
        let members = members_of(&[&origin]);
        let mut validator = Validator::new(settings());
        let mut accepted = 0;
        for i in 0..10 {
            let bytes = Gossip::Price(price_at(&origin, OBSERVED + i)).encode();
            match validator.validate(&bytes, at(OBSERVED + 10), &members) {
                Ok(_) => accepted += 1,
                Err(refusal) => assert_eq!(refusal.reason, RefusalReason::OriginRate),
            }
        }
        assert_eq!(accepted, 3, "the burst is the per-minute rate");
        // Twenty seconds refill one token at 3 a minute.
        let bytes = Gossip::Price(price_at(&origin, OBSERVED + 29)).encode();
        assert!(
            validator
                .validate(&bytes, at(OBSERVED + 30), &members)
                .is_ok()
        );
    }

    #[test]
    fn a_pair_this_node_does_not_sign_is_ignored_and_each_pair_has_its_own_rate() {
        let origin = node(1);
        let members = members_of(&[&origin]);
        let btc_at = |observed_at| {
            let eth = price_at(&origin, observed_at);
            signed_by(&origin, Pair::BtcUsd, eth.data.id, observed_at)
        };
        let btc = Gossip::Price(btc_at(OBSERVED)).encode();
        let refused = Validator::new(settings())
            .validate(&btc, at(OBSERVED), &members)
            .unwrap_err();
        assert_eq!(
            (refused.reason, refused.action),
            (RefusalReason::PairNotSigned, Action::Ignore)
        );
        assert!(!refused.blames_sender(), "another --pairs is no fault");
        let mut validator = Validator::new(ValidationSettings {
            pairs: [Pair::EthUsd, Pair::BtcUsd].into_iter().collect(),
            ..settings()
        });
        // Three ETH/USD prices use up ETH/USD's burst, not BTC/USD's.
        for i in 0..3 {
            let eth = Gossip::Price(price_at(&origin, OBSERVED + i)).encode();
            assert!(validator.validate(&eth, at(OBSERVED + 3), &members).is_ok());
        }
        for i in 0..3 {
            let btc = Gossip::Price(btc_at(OBSERVED + i)).encode();
            assert!(validator.validate(&btc, at(OBSERVED + 3), &members).is_ok());
        }
        let eth = Gossip::Price(price_at(&origin, OBSERVED + 3)).encode();
        assert_eq!(
            refusal(validator.validate(&eth, at(OBSERVED + 3), &members)).0,
            RefusalReason::OriginRate
        );
    }

    #[test]
    fn refuses_garbage_and_forged_signatures_with_their_reason() {
        let (origin, forger) = (node(1), node(2));
        let members = members_of(&[&origin, &forger]);
        let mut validator = Validator::new(settings());
        assert_eq!(
            refusal(validator.validate(b"garbage", at(OBSERVED), &members)),
            (RefusalReason::Malformed, Action::Reject)
        );
        let mut price = price_from(&origin);
        price.signatures[0].signature = price.data.sign(forger.signer()).signature;
        assert_eq!(
            refusal(validator.validate(&Gossip::Price(price).encode(), at(OBSERVED), &members)),
            (RefusalReason::BadSignature, Action::Reject)
        );
    }
}

#[cfg(test)]
mod stored_notice_tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::identity::Identity;
    use crate::message::StoredNotice;

    #[test]
    fn stored_notices_are_dated_and_cannot_name_ids_from_their_future() {
        let writer = Identity::from_secret(&[1; 32]).unwrap();
        let members = Members::for_node(None).with_database([(writer.address(), 0)].into());
        let settings = ValidationSettings {
            max_age: Duration::from_secs(900),
            max_future_skew: Duration::from_secs(30),
            max_origin_rate: 60,
            pairs: PairSet::only(Pair::EthUsd),
        };
        let at = 1_763_700_000;
        let id_at = |seconds: u64| {
            IdGenerator::new(7)
                .next_id_at(UNIX_EPOCH + Duration::from_secs(seconds))
                .unwrap()
        };
        let check = |notice: StoredNotice, now: u64| {
            Validator::new(settings).validate(
                &Gossip::Stored(notice).encode(),
                UNIX_EPOCH + Duration::from_secs(now),
                &members,
            )
        };
        let fresh = StoredNotice::sign(
            vec![id_at(at - 40), id_at(at)],
            at,
            crate::membership::Members::open().signing_config(),
            writer.signer(),
        );
        assert!(check(fresh.clone(), at + 5).is_ok());
        // Replayed after --max-age: ignored, whatever its signature.
        let replayed = check(fresh, at + 901).unwrap_err();
        assert_eq!(
            (replayed.reason, replayed.action),
            (RefusalReason::TooOld, Action::Ignore)
        );
        // A member's price minted a minute after the notice cannot have been stored by it.
        let squatting = StoredNotice::sign(
            vec![id_at(at + 60)],
            at,
            crate::membership::Members::open().signing_config(),
            writer.signer(),
        );
        let refused = check(squatting, at + 5).unwrap_err();
        assert_eq!(
            (refused.reason, refused.action),
            (RefusalReason::FutureId, Action::Reject)
        );
    }
}
