//! The signed price message: wire format, the normative digest, EIP-191 signing and verification.
//!
//! ```text
//! DOMAIN = keccak256("price-oracle/v1")
//! PAIR   = keccak256(pair)                e.g. keccak256("ETH/USD")
//! digest = keccak256(DOMAIN ‖ PAIR ‖ be32(id) ‖ be32_signed(price_e8) ‖ be32(observed_at))
//! sig    = secp256k1 over keccak256("\x19Ethereum Signed Message:\n32" ‖ digest), r ‖ s ‖ v
//! ```
//!
//! That is `abi.encode(bytes32, bytes32, uint64, int256, uint64)`, so a contract verifies a
//! signature with `ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(digest), sig)`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use alloy_primitives::{Address, B256, Signature, U256, b256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pair::Pair;
use crate::price::UsdPrice;

/// `keccak256("price-oracle/v1")`: separates our signatures from any other use of the same key.
pub const DOMAIN_HASH: B256 =
    b256!("0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d");

/// `keccak256("ETH/USD")`, the PAIR word of the test vector.
pub const PAIR_HASH: B256 = Pair::EthUsd.hash();

/// Encoded messages larger than this are refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Half the secp256k1 group order: signatures with a larger `s` are malleable copies (EIP-2).
const SECP256K1_HALF_ORDER: U256 = U256::from_be_bytes(
    b256!("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0").0,
);

/// The normative digest of a price (see the module docs).
pub fn price_digest(pair: Pair, id: u64, price: UsdPrice, observed_at: u64) -> B256 {
    let mut input = [0u8; 160];
    input[..32].copy_from_slice(DOMAIN_HASH.as_slice());
    input[32..64].copy_from_slice(pair.hash().as_slice());
    input[88..96].copy_from_slice(&id.to_be_bytes());
    input[96..128].copy_from_slice(&int256_be(price.e8()));
    input[152..160].copy_from_slice(&observed_at.to_be_bytes());
    keccak256(input)
}

/// `int256` big-endian, two's complement: an `i64` sign-extended to 32 bytes.
fn int256_be(value: i64) -> [u8; 32] {
    let mut word = [if value < 0 { 0xff } else { 0 }; 32];
    word[24..].copy_from_slice(&value.to_be_bytes());
    word
}

/// A 65-byte `r ‖ s ‖ v` signature, `v ∈ {27, 28}`; on the wire `0x` + 130 lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthSignature([u8; 65]);

/// Why a signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("v must be 27 or 28, got {0}")]
    BadV(u8),
    #[error("s is in the upper half of the curve order (malleable signature)")]
    HighS,
    #[error("signature does not recover to a public key")]
    Unrecoverable,
    #[error("signature recovers to {recovered}, not to its claimed signer {claimed}")]
    WrongSigner {
        claimed: Address,
        recovered: Address,
    },
}

impl EthSignature {
    /// Signs `digest` the EIP-191 way (`personal_sign` of the 32 digest bytes).
    pub fn sign(signer: &PrivateKeySigner, digest: B256) -> Self {
        // The local k256 signer cannot fail on a 32-byte prehash; a failure would be a bug.
        let signature = signer
            .sign_message_sync(digest.as_slice())
            .unwrap_or_else(|err| unreachable!("local secp256k1 signing failed: {err}"));
        Self(signature.as_bytes())
    }

    /// Recovers the address that signed `digest`; refuses odd `v` values and high `s`.
    pub fn recover(&self, digest: B256) -> Result<Address, SignatureError> {
        let v = self.0[64];
        if v != 27 && v != 28 {
            return Err(SignatureError::BadV(v));
        }
        let signature = Signature::from_raw_array(&self.0).map_err(|_| SignatureError::BadV(v))?;
        if signature.s() > SECP256K1_HALF_ORDER {
            return Err(SignatureError::HighS);
        }
        // libsecp256k1 (C) recovers several times faster than the pure-Rust k256, and every
        // node recovers every signature it receives.
        let public = signature
            .recover_from_msg_secp256k1(digest.as_slice())
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(Address::from_raw_public_key(
            &public.serialize_uncompressed()[1..],
        ))
    }

    /// The 65 bytes as given; [`EthSignature::recover`] checks them.
    pub fn from_bytes(bytes: [u8; 65]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }
}

impl fmt::Display for EthSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", alloy_primitives::hex::encode(self.0))
    }
}

impl fmt::Debug for EthSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthSignature({self})")
    }
}

impl FromStr for EthSignature {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text
            .strip_prefix("0x")
            .ok_or("a signature is 0x followed by 130 hex characters")?;
        if hex.len() != 130 {
            return Err(format!(
                "a signature has 130 hex characters, got {}",
                hex.len()
            ));
        }
        let mut bytes = [0u8; 65];
        alloy_primitives::hex::decode_to_slice(hex, &mut bytes)
            .map_err(|err| format!("signature is not hex: {err}"))?;
        Ok(Self(bytes))
    }
}

impl Serialize for EthSignature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EthSignature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One signer's signature over a price digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    #[serde(with = "checksummed_address")]
    pub signer: Address,
    pub signature: EthSignature,
}

impl SignatureEntry {
    /// Signs `digest` as `signer`.
    pub fn sign(signer: &PrivateKeySigner, digest: B256) -> Self {
        Self {
            signer: signer.address(),
            signature: EthSignature::sign(signer, digest),
        }
    }

    /// Checks that the signature over `digest` recovers to the claimed signer.
    pub fn verify(&self, digest: B256) -> Result<(), SignatureError> {
        let recovered = self.signature.recover(digest)?;
        if recovered == self.signer {
            Ok(())
        } else {
            Err(SignatureError::WrongSigner {
                claimed: self.signer,
                recovered,
            })
        }
    }
}

/// A price with the signatures known for it, as gossiped between nodes.
///
/// ```json
/// {"id":"1234567890123456","pair":"ETH/USD","price":"3124.56789000","observed_at":1763700000,
///  "origin":"0x2c75…5c23","signatures":[{"signer":"0x2c75…5c23","signature":"0xef40…881c"}]}
/// ```
///
/// `id` is a decimal string because ids exceed 2⁵³ and JavaScript verifiers would round a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceMessage {
    #[serde(with = "id_as_string")]
    pub id: u64,
    pub pair: Pair,
    pub price: UsdPrice,
    /// Unix seconds at which the origin fetched the price.
    pub observed_at: u64,
    /// The node that fetched the price; its signature is always present.
    #[serde(with = "checksummed_address")]
    pub origin: Address,
    pub signatures: Vec<SignatureEntry>,
}

/// Why received bytes are not a valid price message. `reason()` names the kind for counters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("signer {0} appears more than once")]
    DuplicateSigner(Address),
    #[error("origin {0} has not signed its own price")]
    OriginUnsigned(Address),
    #[error("invalid signature of {signer}: {error}")]
    BadSignature {
        signer: Address,
        error: SignatureError,
    },
}

impl DecodeError {
    /// A short stable label, e.g. for a `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
            Self::DuplicateSigner(_) => "duplicate_signer",
            Self::OriginUnsigned(_) => "origin_unsigned",
            Self::BadSignature { .. } => "bad_signature",
        }
    }
}

impl PriceMessage {
    /// A new price signed by its origin.
    pub fn originate(
        pair: Pair,
        id: u64,
        price: UsdPrice,
        observed_at: u64,
        origin: &PrivateKeySigner,
    ) -> Self {
        let digest = price_digest(pair, id, price, observed_at);
        Self {
            id,
            pair,
            price,
            observed_at,
            origin: origin.address(),
            signatures: vec![SignatureEntry::sign(origin, digest)],
        }
    }

    /// The normative digest every signature covers.
    pub fn digest(&self) -> B256 {
        price_digest(self.pair, self.id, self.price, self.observed_at)
    }

    /// This node's signature over the price (a co-signature when the node is not the origin).
    pub fn sign(&self, signer: &PrivateKeySigner) -> SignatureEntry {
        SignatureEntry::sign(signer, self.digest())
    }

    /// JSON bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs with string keys: serde_json cannot fail on them.
        serde_json::to_vec(self).unwrap_or_else(|err| unreachable!("PriceMessage to JSON: {err}"))
    }

    /// Parses and fully checks received bytes: size, shape, a known pair, price range, distinct
    /// signers, the origin's own signature, and that every signature recovers to its signer.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message: Self = parse_bounded(bytes)?;
        message.check_structure()?;
        message.verify_signatures()?;
        Ok(message)
    }

    /// The signed content, without the signatures.
    pub fn data(&self) -> PriceData {
        PriceData {
            pair: self.pair,
            id: self.id,
            price: self.price,
            observed_at: self.observed_at,
            origin: self.origin,
        }
    }

    /// Everything but the signatures' cryptography: distinct signers, the origin's own
    /// signature present (the pair is known, or it would not have parsed). Cheap, so it runs
    /// before any signature is recovered.
    fn check_structure(&self) -> Result<(), DecodeError> {
        let mut seen = HashSet::with_capacity(self.signatures.len());
        for entry in &self.signatures {
            if !seen.insert(entry.signer) {
                return Err(DecodeError::DuplicateSigner(entry.signer));
            }
        }
        if !seen.contains(&self.origin) {
            return Err(DecodeError::OriginUnsigned(self.origin));
        }
        Ok(())
    }

    fn verify_signatures(&self) -> Result<(), DecodeError> {
        let digest = self.digest();
        self.signatures
            .iter()
            .try_for_each(|entry| verify_entry(entry, digest))
    }
}

/// What a price signature covers: the pair, the id, the price and when the origin observed it,
/// plus who observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PriceData {
    pub pair: Pair,
    pub id: u64,
    pub price: UsdPrice,
    pub observed_at: u64,
    pub origin: Address,
}

impl PriceData {
    pub fn digest(&self) -> B256 {
        price_digest(self.pair, self.id, self.price, self.observed_at)
    }
}

/// A co-signer's signature over someone else's price. It repeats the signed fields, so it can be
/// checked on its own — also when it arrives before the price it co-signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    #[serde(with = "id_as_string")]
    pub id: u64,
    pub pair: Pair,
    pub price: UsdPrice,
    pub observed_at: u64,
    #[serde(with = "checksummed_address")]
    pub origin: Address,
    pub signature: SignatureEntry,
}

impl Attestation {
    /// `signer`'s co-signature over `data`.
    pub fn sign(data: &PriceData, signer: &PrivateKeySigner) -> Self {
        Self {
            id: data.id,
            pair: data.pair,
            price: data.price,
            observed_at: data.observed_at,
            origin: data.origin,
            signature: SignatureEntry::sign(signer, data.digest()),
        }
    }

    pub fn data(&self) -> PriceData {
        PriceData {
            pair: self.pair,
            id: self.id,
            price: self.price,
            observed_at: self.observed_at,
            origin: self.origin,
        }
    }
}

/// The writer's word that these ids are stored; nodes forget them. The writer signs it, so it
/// can be relayed by anyone and still proves who speaks; nodes act on it only when the writer is
/// a member that their own lease has seen hold the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredNotice {
    #[serde(with = "checksummed_address")]
    pub writer: Address,
    /// Unix seconds at which the writer stored them: a notice is only news for `--max-age`.
    pub at: u64,
    #[serde(with = "ids_as_strings")]
    pub ids: Vec<u64>,
    /// EIP-191 signature of [`StoredNotice::digest`] by `writer`.
    pub signature: EthSignature,
}

/// Ids per stored notice: 500 ids of 20 digits stay well inside [`MAX_MESSAGE_BYTES`] (about
/// 740 would not), whatever the backlog a writer stores at once.
pub const MAX_IDS_PER_NOTICE: usize = 500;

impl StoredNotice {
    /// `writer`'s signed notices that `ids` were stored at `at`, as many as it takes to keep each
    /// one under the message size limit.
    pub fn sign_all(ids: &[u64], at: u64, writer: &PrivateKeySigner) -> Vec<Self> {
        ids.chunks(MAX_IDS_PER_NOTICE)
            .map(|chunk| Self::sign(chunk.to_vec(), at, writer))
            .collect()
    }

    /// `writer`'s signed notice that `ids` were stored at `at` (Unix seconds).
    pub fn sign(ids: Vec<u64>, at: u64, writer: &PrivateKeySigner) -> Self {
        let digest = stored_digest(&writer.address(), at, &ids);
        Self {
            writer: writer.address(),
            at,
            ids,
            signature: EthSignature::sign(writer, digest),
        }
    }

    /// `keccak256(DOMAIN ‖ keccak256("stored") ‖ writer ‖ be8(at) ‖ be8(id)…)`: domain-separated
    /// from price digests, so a notice signature can never pass as a price signature.
    pub fn digest(&self) -> B256 {
        stored_digest(&self.writer, self.at, &self.ids)
    }

    fn verify_signature(&self) -> Result<(), DecodeError> {
        let entry = SignatureEntry {
            signer: self.writer,
            signature: self.signature,
        };
        verify_entry(&entry, self.digest())
    }
}

fn stored_digest(writer: &Address, at: u64, ids: &[u64]) -> B256 {
    let mut input = Vec::with_capacity(92 + 8 * ids.len());
    input.extend_from_slice(DOMAIN_HASH.as_slice());
    input.extend_from_slice(keccak256("stored").as_slice());
    input.extend_from_slice(writer.as_slice());
    input.extend_from_slice(&at.to_be_bytes());
    for id in ids {
        input.extend_from_slice(&id.to_be_bytes());
    }
    keccak256(input)
}

/// Everything nodes gossip: `{"type":"price"|"attestation"|"stored","body":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Gossip {
    /// A new price from its origin.
    Price(PriceMessage),
    /// A co-signature.
    Attestation(Attestation),
    /// Ids the writer has stored.
    Stored(StoredNotice),
}

impl Gossip {
    /// JSON bytes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Plain structs with string keys: serde_json cannot fail on them.
        serde_json::to_vec(self).unwrap_or_else(|err| unreachable!("Gossip to JSON: {err}"))
    }

    /// Parses and fully checks received bytes: [`Gossip::parse`], then every signature
    /// ([`Gossip::verify_signatures`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let gossip = Self::parse(bytes)?;
        gossip.verify_signatures()?;
        Ok(gossip)
    }

    /// Parses received bytes and checks everything that needs no cryptography: size, shape,
    /// pair, distinct signers, the origin's signature present, a notice with ids. Validation
    /// runs it first, so a message that fails cheap checks never costs a signature recovery.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let gossip: Self = parse_bounded(bytes)?;
        match &gossip {
            Self::Price(message) => message.check_structure()?,
            Self::Attestation(_) => {}
            Self::Stored(notice) if notice.ids.is_empty() => {
                return Err(DecodeError::Malformed("stored notice without ids".into()));
            }
            Self::Stored(_) => {}
        }
        Ok(gossip)
    }

    /// Checks that every signature the message carries recovers to its claimed signer.
    pub fn verify_signatures(&self) -> Result<(), DecodeError> {
        match self {
            Self::Price(message) => message.verify_signatures(),
            Self::Attestation(attestation) => {
                verify_entry(&attestation.signature, attestation.data().digest())
            }
            Self::Stored(notice) => notice.verify_signature(),
        }
    }

    /// Everyone whose membership decides whether the message counts: every signer, and the
    /// origin of the price it is about.
    pub fn speakers(&self) -> Vec<Address> {
        match self {
            Self::Price(message) => message
                .signatures
                .iter()
                .map(|entry| entry.signer)
                .collect(),
            Self::Attestation(attestation) => {
                vec![attestation.origin, attestation.signature.signer]
            }
            Self::Stored(notice) => vec![notice.writer],
        }
    }

    /// The price a price or attestation is about.
    pub fn price_data(&self) -> Option<PriceData> {
        match self {
            Self::Price(message) => Some(message.data()),
            Self::Attestation(attestation) => Some(attestation.data()),
            Self::Stored(_) => None,
        }
    }

    /// A short label for counters: `price`, `attestation` or `stored`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Price(_) => "price",
            Self::Attestation(_) => "attestation",
            Self::Stored(_) => "stored",
        }
    }
}

fn parse_bounded<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|err| DecodeError::Malformed(err.to_string()))
}

fn verify_entry(entry: &SignatureEntry, digest: B256) -> Result<(), DecodeError> {
    entry
        .verify(digest)
        .map_err(|error| DecodeError::BadSignature {
            signer: entry.signer,
            error,
        })
}

/// Addresses as EIP-55 text: the form `oracle keygen` prints and people compare by eye.
/// Input in any case is accepted.
mod checksummed_address {
    use alloy_primitives::Address;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(address: &Address, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(address)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if !text.starts_with("0x") || text.len() != 42 {
            return Err(serde::de::Error::custom(
                "an address is 0x followed by 40 hex characters",
            ));
        }
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses an id: canonical decimal (no sign, no leading zeros, so one id has one spelling) and
/// below 2⁶³, as ids are stored in a positive BIGINT.
fn parse_id(text: &str) -> Result<u64, &'static str> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    if !canonical {
        return Err("id must be a decimal string");
    }
    text.parse::<u64>()
        .ok()
        .filter(|id| i64::try_from(*id).is_ok())
        .ok_or("id must be below 2^63")
}

mod id_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_id(&text).map_err(serde::de::Error::custom)
    }
}

mod ids_as_strings {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| super::parse_id(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use alloy_primitives::I256;

    const VECTOR_KEY: [u8; 32] =
        alloy_primitives::hex!("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    const VECTOR_ID: u64 = 1_234_567_890_123_456;
    const VECTOR_PRICE_E8: i64 = 312_456_789_000;
    const VECTOR_OBSERVED_AT: u64 = 1_763_700_000;
    const VECTOR_DIGEST: B256 =
        b256!("0xdd6a7f59cad3b60997cc7a546a94d05957e9b6d8d5b530b49baab4ee2a968a02");
    const VECTOR_SIGNATURE: &str = "0xef40f898a0a03afabeb62c43d08626fa6e6fe4c1d4f1fa9158614c61ef1f96fc5f626da19ed8a030971217620263d09966d9c9c514b3684eb7586f20a0c960881c";

    fn vector_identity() -> Identity {
        Identity::from_secret(&VECTOR_KEY).unwrap()
    }

    fn vector_price() -> UsdPrice {
        UsdPrice::from_e8(VECTOR_PRICE_E8).unwrap()
    }

    fn vector_message() -> PriceMessage {
        PriceMessage::originate(
            Pair::EthUsd,
            VECTOR_ID,
            vector_price(),
            VECTOR_OBSERVED_AT,
            vector_identity().signer(),
        )
    }

    fn identities(n: u8) -> Vec<Identity> {
        (1..=n)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    #[test]
    fn constants_are_the_hashes_they_claim() {
        assert_eq!(keccak256("price-oracle/v1"), DOMAIN_HASH);
        assert_eq!(keccak256("ETH/USD"), PAIR_HASH);
        let order = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        assert_eq!(SECP256K1_HALF_ORDER, order >> 1);
    }

    #[test]
    fn normative_test_vector() {
        assert_eq!(vector_price().to_string(), "3124.56789000");
        let digest = price_digest(Pair::EthUsd, VECTOR_ID, vector_price(), VECTOR_OBSERVED_AT);
        assert_eq!(digest, VECTOR_DIGEST);
        let message = vector_message();
        assert_eq!(message.digest(), VECTOR_DIGEST);
        let entry = message.signatures[0];
        assert_eq!(entry.signature.to_string(), VECTOR_SIGNATURE);
        assert_eq!(
            entry.signer.to_checksum(None),
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
        let parsed: EthSignature = VECTOR_SIGNATURE.parse().unwrap();
        assert_eq!(parsed.as_bytes(), entry.signature.as_bytes());
        assert_eq!(parsed.recover(VECTOR_DIGEST).unwrap(), entry.signer);
    }

    #[test]
    fn digest_is_abi_encode_of_the_five_words() {
        // Independent construction: five 32-byte words, the int256 sign-extended.
        let negative = -5i64;
        let mut words = Vec::new();
        words.extend_from_slice(DOMAIN_HASH.as_slice());
        words.extend_from_slice(PAIR_HASH.as_slice());
        words.extend_from_slice(&U256::from(7u64).to_be_bytes::<32>());
        words.extend_from_slice(&I256::try_from(negative).unwrap().to_be_bytes::<32>());
        words.extend_from_slice(&U256::from(9u64).to_be_bytes::<32>());
        let mut input = [0u8; 160];
        input[..32].copy_from_slice(DOMAIN_HASH.as_slice());
        input[32..64].copy_from_slice(PAIR_HASH.as_slice());
        input[88..96].copy_from_slice(&7u64.to_be_bytes());
        input[96..128].copy_from_slice(&int256_be(negative));
        input[152..160].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(words, input);
        // And the positive vector price lands in the low bytes of its word.
        assert_eq!(
            int256_be(VECTOR_PRICE_E8),
            I256::try_from(VECTOR_PRICE_E8).unwrap().to_be_bytes::<32>()
        );
    }

    #[test]
    fn every_field_changes_the_digest() {
        let digest = |pair, id, e8, at| price_digest(pair, id, UsdPrice::from_e8(e8).unwrap(), at);
        let base = digest(Pair::EthUsd, 1, 2, 3);
        assert_ne!(base, digest(Pair::BtcUsd, 1, 2, 3));
        assert_ne!(base, digest(Pair::EthUsd, 9, 2, 3));
        assert_ne!(base, digest(Pair::EthUsd, 1, 9, 3));
        assert_ne!(base, digest(Pair::EthUsd, 1, 2, 9));
    }

    #[test]
    fn encode_decode_round_trip_with_cosigners() {
        let mut message = vector_message();
        for identity in identities(3) {
            message.signatures.push(message.sign(identity.signer()));
        }
        let bytes = message.encode();
        let decoded = PriceMessage::decode(&bytes).unwrap();
        assert_eq!(decoded, message);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"id\":\"1234567890123456\""), "{text}");
        assert!(text.contains("\"price\":\"3124.56789000\""), "{text}");
        assert!(
            text.contains("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
            "{text}"
        );
        assert!(text.contains(VECTOR_SIGNATURE), "{text}");
    }

    fn decode_json(value: serde_json::Value) -> Result<PriceMessage, DecodeError> {
        PriceMessage::decode(value.to_string().as_bytes())
    }

    fn vector_json() -> serde_json::Value {
        serde_json::to_value(vector_message()).unwrap()
    }

    #[test]
    fn rejects_oversized_input_before_parsing() {
        let mut bytes = vector_message().encode();
        bytes.resize(MAX_MESSAGE_BYTES + 1, b' ');
        assert_eq!(
            PriceMessage::decode(&bytes),
            Err(DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1))
        );
    }

    #[test]
    fn rejects_malformed_input() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"null".to_vec(),
            b"[]".to_vec(),
            b"{".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"{\"id\":1}".to_vec(),
        ];
        let mutations: [(&str, serde_json::Value); 13] = [
            ("id", serde_json::json!(1234567890123456u64)),
            ("id", serde_json::json!("-1")),
            ("id", serde_json::json!("01")),
            ("id", serde_json::json!("18446744073709551616")),
            ("id", serde_json::json!("9223372036854775808")),
            ("price", serde_json::json!(3124.5)),
            ("price", serde_json::json!("-3124.5")),
            ("price", serde_json::json!("3124.123456789")),
            ("price", serde_json::json!("NaN")),
            ("observed_at", serde_json::json!(-1)),
            ("origin", serde_json::json!("0x1234")),
            ("signatures", serde_json::json!("none")),
            ("extra", serde_json::json!(true)),
        ];
        for (field, value) in mutations {
            let mut json = vector_json();
            json[field] = value;
            cases.push(json.to_string().into_bytes());
        }
        let mut json = vector_json();
        json["signatures"][0]["signature"] = serde_json::json!("0x1234");
        cases.push(json.to_string().into_bytes());
        for bytes in cases {
            let result = PriceMessage::decode(&bytes);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn rejects_an_unknown_pair_and_a_pair_swapped_under_its_signature() {
        let mut json = vector_json();
        json["pair"] = serde_json::json!("DOGE/USD");
        assert!(
            matches!(decode_json(json), Err(DecodeError::Malformed(detail)) if detail.contains("unknown pair"))
        );
        // BTC/USD is a pair we know, but the signature covers ETH/USD.
        let mut json = vector_json();
        json["pair"] = serde_json::json!("BTC/USD");
        assert!(matches!(
            decode_json(json),
            Err(DecodeError::BadSignature { .. })
        ));
    }

    #[test]
    fn rejects_duplicate_signers() {
        let mut message = vector_message();
        message.signatures.push(message.signatures[0]);
        assert_eq!(
            PriceMessage::decode(&message.encode()),
            Err(DecodeError::DuplicateSigner(message.origin))
        );
    }

    #[test]
    fn rejects_a_price_its_origin_did_not_sign() {
        let [other] = identities(1).try_into().unwrap();
        let mut message = vector_message();
        message.signatures = vec![message.sign(other.signer())];
        assert_eq!(
            PriceMessage::decode(&message.encode()),
            Err(DecodeError::OriginUnsigned(message.origin))
        );
    }

    #[test]
    fn rejects_signatures_that_do_not_recover_to_their_signer() {
        let cosigners = identities(2);
        // A co-signature claimed by someone else.
        let mut message = vector_message();
        let mut forged = message.sign(cosigners[0].signer());
        forged.signer = cosigners[1].address();
        message.signatures.push(forged);
        assert!(matches!(
            PriceMessage::decode(&message.encode()),
            Err(DecodeError::BadSignature {
                error: SignatureError::WrongSigner { .. },
                ..
            })
        ));
        // A valid signature over a different price.
        let mut message = vector_message();
        let other_digest = price_digest(
            Pair::EthUsd,
            VECTOR_ID + 1,
            vector_price(),
            VECTOR_OBSERVED_AT,
        );
        message
            .signatures
            .push(SignatureEntry::sign(cosigners[0].signer(), other_digest));
        assert!(matches!(
            PriceMessage::decode(&message.encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        // The price changed after signing.
        let mut message = vector_message();
        message.price = UsdPrice::from_e8(VECTOR_PRICE_E8 + 1).unwrap();
        assert!(matches!(
            PriceMessage::decode(&message.encode()),
            Err(DecodeError::BadSignature { .. })
        ));
    }

    #[test]
    fn rejects_bad_v_high_s_and_garbage_signatures() {
        let message = vector_message();
        let digest = message.digest();
        let good = *message.signatures[0].signature.as_bytes();

        let mut bad_v = good;
        bad_v[64] = 1;
        assert_eq!(
            EthSignature(bad_v).recover(digest),
            Err(SignatureError::BadV(1))
        );

        // (r, n − s, v flipped) is the same signature in its malleable form.
        let order = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let s = U256::from_be_slice(&good[32..64]);
        let mut high_s = good;
        high_s[32..64].copy_from_slice(&(order - s).to_be_bytes::<32>());
        high_s[64] = if good[64] == 27 { 28 } else { 27 };
        assert_eq!(
            EthSignature(high_s).recover(digest),
            Err(SignatureError::HighS)
        );

        let zeros = EthSignature([0u8; 65]);
        let mut zeros_v = *zeros.as_bytes();
        zeros_v[64] = 27;
        assert_eq!(
            EthSignature(zeros_v).recover(digest),
            Err(SignatureError::Unrecoverable)
        );
    }

    #[test]
    fn reasons_are_distinct_labels() {
        let errors = [
            DecodeError::TooLarge(0),
            DecodeError::Malformed(String::new()),
            DecodeError::DuplicateSigner(Address::ZERO),
            DecodeError::OriginUnsigned(Address::ZERO),
            DecodeError::BadSignature {
                signer: Address::ZERO,
                error: SignatureError::HighS,
            },
        ];
        let labels: HashSet<_> = errors.iter().map(DecodeError::reason).collect();
        assert_eq!(labels.len(), errors.len());
    }

    #[test]
    fn gossip_round_trips_every_kind() {
        let message = vector_message();
        let [cosigner] = identities(1).try_into().unwrap();
        let attestation = Attestation::sign(&message.data(), cosigner.signer());
        let notice = StoredNotice::sign(vec![1, VECTOR_ID], 1_763_700_000, cosigner.signer());
        for gossip in [
            Gossip::Price(message),
            Gossip::Attestation(attestation),
            Gossip::Stored(notice),
        ] {
            let bytes = gossip.encode();
            assert_eq!(Gossip::decode(&bytes).unwrap(), gossip);
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.starts_with(&format!("{{\"type\":\"{}\",\"body\":", gossip.kind())));
        }
    }

    #[test]
    fn a_large_backlog_is_announced_in_notices_that_each_fit_a_message() {
        let [writer] = identities(1).try_into().unwrap();
        // The largest ids (below 2^63) take the most room.
        let ids: Vec<u64> = (0..10_000).map(|i| i64::MAX as u64 - i).collect();
        let whole = Gossip::Stored(StoredNotice::sign(
            ids.clone(),
            1_763_700_000,
            writer.signer(),
        ));
        assert!(
            whole.encode().len() > MAX_MESSAGE_BYTES,
            "one notice would not fit"
        );
        let notices = StoredNotice::sign_all(&ids, 1_763_700_000, writer.signer());
        assert_eq!(notices.len(), 20);
        let mut announced = Vec::new();
        for notice in notices {
            let bytes = Gossip::Stored(notice).encode();
            assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
            let decoded = match Gossip::decode(&bytes) {
                Ok(Gossip::Stored(decoded)) => decoded,
                other => panic!("a notice does not decode: {other:?}"),
            };
            announced.extend(decoded.ids);
        }
        assert_eq!(announced, ids);
    }

    #[test]
    fn gossip_checks_what_it_carries() {
        let message = vector_message();
        let [cosigner, other] = identities(2).try_into().unwrap();
        let mut attestation = Attestation::sign(&message.data(), cosigner.signer());
        attestation.signature.signer = other.address();
        assert!(matches!(
            Gossip::decode(&Gossip::Attestation(attestation.clone()).encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        attestation = Attestation::sign(&message.data(), cosigner.signer());
        attestation.price = UsdPrice::from_e8(1).unwrap();
        assert!(Gossip::decode(&Gossip::Attestation(attestation).encode()).is_err());
        let mut unsigned = message.clone();
        unsigned.signatures.clear();
        assert_eq!(
            Gossip::decode(&Gossip::Price(unsigned).encode()),
            Err(DecodeError::OriginUnsigned(message.origin))
        );
        let empty = StoredNotice::sign(vec![], 1_763_700_000, cosigner.signer());
        assert!(Gossip::decode(&Gossip::Stored(empty).encode()).is_err());
        let mut forged = StoredNotice::sign(vec![5], 1_763_700_000, cosigner.signer());
        forged.writer = other.address();
        assert!(matches!(
            Gossip::decode(&Gossip::Stored(forged).encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        let mut extended = StoredNotice::sign(vec![5], 1_763_700_000, cosigner.signer());
        extended.ids.push(6);
        assert!(matches!(
            Gossip::decode(&Gossip::Stored(extended).encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        for bad in [
            r#"{"type":"price"}"#,
            r#"{"type":"other","body":{}}"#,
            r#"{"type":"stored","body":{"writer":"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23","at":1,"ids":[1]}}"#,
            r#"{"type":"stored","body":{"writer":"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23","at":1,"ids":["01"]}}"#,
        ] {
            assert!(
                matches!(
                    Gossip::decode(bad.as_bytes()),
                    Err(DecodeError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn decode_never_panics_on_truncations_and_bit_flips() {
        let bytes = vector_message().encode();
        for cut in 0..bytes.len() {
            let _ = PriceMessage::decode(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            if let Ok(decoded) = PriceMessage::decode(&flipped) {
                // Only flips that keep the meaning (e.g. hex case) may still decode.
                assert_eq!(decoded.digest(), VECTOR_DIGEST);
            }
        }
    }
}
