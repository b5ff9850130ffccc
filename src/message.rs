//! What nodes gossip, on the wire: a new price from its origin, a co-signer's attestation, the
//! origin's report of a round and the members' commits to it, the writer's stored notice, each
//! carrying the signatures that prove who speaks. The signed fields themselves are
//! [`crate::signed`]'s; here they are framed, encoded and decoded.
//!
//! Every message is `{"type":"price"|"attestation"|"report"|"commit"|"stored","body":{…}}` in one
//! canonical JSON
//! encoding (the one [`Gossip::encode`] writes): gossipsub identifies messages by their bytes, so
//! a message in any other spelling is refused rather than taken for a new one.

use std::collections::HashSet;

use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use crate::pair::Pair;
use crate::price::UsdPrice;
use crate::signed::{
    EthSignature, Observation, PriceData, Report, Round, SignatureEntry, SignatureError,
    SignedObservation, checksummed_address, id_as_string,
};

/// Encoded messages larger than this are refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// A new round: the origin's own observation with its signature, as the origin publishes it.
///
/// ```json
/// {"id":"1234567890123456","pair":"ETH/USD","price":"3124.56789000","observed_at":1763700000,
///  "origin":"0x2c75…5c23","signatures":[{"signer":"0x2c75…5c23","signature":"0xef40…881c"}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceMessage {
    #[serde(flatten)]
    pub data: PriceData,
    pub signatures: Vec<SignatureEntry>,
}

/// Why received bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Valid JSON of a valid message, but not in the one encoding every node writes (other
    /// spacing, key order or extra fields).
    #[error("{0} message is not in canonical encoding")]
    NotCanonical(&'static str),
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

impl PriceMessage {
    /// A new price signed by its origin.
    pub fn originate(data: PriceData, origin: &PrivateKeySigner) -> Self {
        Self {
            signatures: vec![data.sign(origin)],
            data,
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
        if !seen.contains(&self.data.origin) {
            return Err(DecodeError::OriginUnsigned(self.data.origin));
        }
        Ok(())
    }
}

/// A member's own observation of someone else's round: the round's pair, id and origin with the
/// price the member saw and when, signed over their digest. It carries every signed field, so it
/// can be checked on its own — also when it arrives before the round's price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    #[serde(flatten)]
    pub data: PriceData,
    pub signature: SignatureEntry,
}

impl Attestation {
    /// `signer`'s signature over `data`: its own observation under a round.
    pub fn sign(data: &PriceData, signer: &PrivateKeySigner) -> Self {
        Self {
            data: *data,
            signature: data.sign(signer),
        }
    }
}

/// The writer's word that these ids are stored. The writer signs it, so it can be relayed by
/// anyone and still proves who speaks; but any member can sign one, so nodes forget only the ids
/// their own database shows stored ([`crate::writer::notices`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredNotice {
    /// The configuration digest ([`crate::domain`]) the signature is bound to.
    pub config: B256,
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
    pub fn sign_all(ids: &[u64], at: u64, config: B256, writer: &PrivateKeySigner) -> Vec<Self> {
        ids.chunks(MAX_IDS_PER_NOTICE)
            .map(|chunk| Self::sign(chunk.to_vec(), at, config, writer))
            .collect()
    }

    /// `writer`'s signed notice that `ids` were stored at `at` (Unix seconds), under
    /// configuration `config`.
    pub fn sign(ids: Vec<u64>, at: u64, config: B256, writer: &PrivateKeySigner) -> Self {
        let digest = stored_digest(config, &writer.address(), at, &ids);
        Self {
            config,
            writer: writer.address(),
            at,
            ids,
            signature: EthSignature::sign(writer, digest),
        }
    }

    /// `keccak256(config ‖ keccak256("stored") ‖ writer ‖ be8(at) ‖ be8(id)…)`: bound to its
    /// configuration like every signature, and of a length (92 + 8k bytes) no price or report
    /// digest input has, so a notice signature can never pass as either.
    pub fn digest(&self) -> B256 {
        stored_digest(self.config, &self.writer, self.at, &self.ids)
    }

    fn verify_signature(&self) -> Result<(), DecodeError> {
        let entry = SignatureEntry {
            signer: self.writer,
            signature: self.signature,
        };
        verify_entry(&entry, self.digest())
    }
}

fn stored_digest(config: B256, writer: &Address, at: u64, ids: &[u64]) -> B256 {
    let mut input = Vec::with_capacity(92 + 8 * ids.len());
    input.extend_from_slice(config.as_slice());
    input.extend_from_slice(keccak256("stored").as_slice());
    input.extend_from_slice(writer.as_slice());
    input.extend_from_slice(&at.to_be_bytes());
    for id in ids {
        input.extend_from_slice(&id.to_be_bytes());
    }
    keccak256(input)
}

/// The origin's report of its round: one exact set of its members' observations (each signed by
/// its own member over its own digest, in ascending signer order) and the origin's signature over
/// the report digest ([`Report::digest`]: the configuration, the round, the median, the median
/// time, the count and the observations digest). Members whose observation it holds commit to
/// it ([`CommitMessage`]); `f + 1` signatures over one digest make the round's report, so no
/// writer or relayer can pick another subset. It carries everything it commits to, so it can be
/// checked on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportMessage {
    pub config: B256,
    #[serde(with = "id_as_string")]
    pub id: u64,
    pub pair: Pair,
    #[serde(with = "checksummed_address")]
    pub origin: Address,
    pub observations: Vec<ObservationEntry>,
    /// The origin's signature over the report digest.
    pub signature: SignatureEntry,
}

/// One observation in a [`ReportMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationEntry {
    #[serde(with = "checksummed_address")]
    pub signer: Address,
    pub price: UsdPrice,
    pub observed_at: u64,
    pub signature: EthSignature,
}

impl ReportMessage {
    /// The origin's report of `report`'s observations (in any order), signed by `origin`.
    pub fn sign(report: &Report, origin: &PrivateKeySigner) -> Option<Self> {
        let digest = report.digest()?;
        let mut observations: Vec<ObservationEntry> = report
            .observations
            .iter()
            .map(|entry| ObservationEntry {
                signer: entry.signer,
                price: entry.observation.price,
                observed_at: entry.observation.observed_at,
                signature: entry.signature,
            })
            .collect();
        observations.sort_unstable_by_key(|entry| entry.signer);
        Some(Self {
            config: report.round.config,
            id: report.round.id,
            pair: report.round.pair,
            origin: report.round.origin,
            observations,
            signature: SignatureEntry::sign(origin, digest),
        })
    }

    pub fn round(&self) -> Round {
        Round {
            config: self.config,
            pair: self.pair,
            id: self.id,
            origin: self.origin,
        }
    }

    /// The report it stands for, without commits.
    pub fn report(&self) -> Report {
        Report {
            round: self.round(),
            observations: self
                .observations
                .iter()
                .map(|entry| SignedObservation {
                    signer: entry.signer,
                    observation: Observation {
                        price: entry.price,
                        observed_at: entry.observed_at,
                    },
                    signature: entry.signature,
                })
                .collect(),
            commits: Vec::new(),
        }
    }

    /// Each observation's signed fields.
    pub fn observation_data(&self) -> impl Iterator<Item = PriceData> + '_ {
        let round = self.round();
        self.observations.iter().map(move |entry| {
            PriceData::new(
                round,
                Observation {
                    price: entry.price,
                    observed_at: entry.observed_at,
                },
            )
        })
    }

    /// Signed by its origin, with at least one observation, in strictly ascending signer order
    /// (so distinct, and one spelling of one set).
    fn check_structure(&self) -> Result<(), DecodeError> {
        if self.signature.signer != self.origin {
            return Err(DecodeError::OriginUnsigned(self.origin));
        }
        if self.observations.is_empty() {
            return Err(DecodeError::Malformed(
                "a report without observations".into(),
            ));
        }
        if let Some(pair) = self
            .observations
            .windows(2)
            .find(|pair| pair[0].signer >= pair[1].signer)
        {
            return Err(DecodeError::Malformed(format!(
                "report observations not in ascending signer order at {}",
                pair[1].signer
            )));
        }
        Ok(())
    }

    fn verify_signatures(&self) -> Result<(), DecodeError> {
        let report = self.report();
        report
            .verify()
            .map_err(|(signer, error)| DecodeError::BadSignature { signer, error })?;
        let digest = report
            .digest()
            .ok_or_else(|| DecodeError::Malformed("a report without observations".into()))?;
        verify_entry(&self.signature, digest)
    }
}

/// A member's commitment to the report of a round whose digest is `digest`: its signature over
/// that digest. The report itself travels once, in the origin's [`ReportMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitMessage {
    pub config: B256,
    #[serde(with = "id_as_string")]
    pub id: u64,
    pub pair: Pair,
    #[serde(with = "checksummed_address")]
    pub origin: Address,
    pub digest: B256,
    pub signature: SignatureEntry,
}

impl CommitMessage {
    /// `signer`'s commitment to `report`.
    pub fn sign(report: &Report, signer: &PrivateKeySigner) -> Option<Self> {
        let digest = report.digest()?;
        let round = report.round;
        Some(Self {
            config: round.config,
            id: round.id,
            pair: round.pair,
            origin: round.origin,
            digest,
            signature: SignatureEntry::sign(signer, digest),
        })
    }

    pub fn round(&self) -> Round {
        Round {
            config: self.config,
            pair: self.pair,
            id: self.id,
            origin: self.origin,
        }
    }
}

/// Everything nodes gossip: `{"type":"price"|"attestation"|"report"|"commit"|"stored","body":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Gossip {
    /// A new price from its origin.
    Price(PriceMessage),
    /// A member's own observation of a round.
    Attestation(Attestation),
    /// The origin's report of its round: one exact set of observations.
    Report(ReportMessage),
    /// A member's commitment to a round's report.
    Commit(CommitMessage),
    /// Ids the writer has stored.
    Stored(StoredNotice),
}

impl Gossip {
    /// JSON bytes for the wire: the message's one canonical encoding.
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
    /// canonical encoding, pair, distinct signers, the origin's signature present, a notice with
    /// ids. Validation runs it first, so a message that fails cheap checks never costs a
    /// signature recovery.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let gossip: Self =
            serde_json::from_slice(bytes).map_err(|err| DecodeError::Malformed(err.to_string()))?;
        // One fact, one byte string: nobody can re-space, re-order or pad a message to make
        // gossipsub (which identifies messages by their bytes) take it for a new one.
        if gossip.encode() != bytes {
            return Err(DecodeError::NotCanonical(gossip.kind().as_str()));
        }
        match &gossip {
            Self::Price(message) => message.check_structure()?,
            Self::Report(report) => report.check_structure()?,
            Self::Attestation(_) | Self::Commit(_) => {}
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
            Self::Price(message) => {
                let digest = message.data.digest();
                message
                    .signatures
                    .iter()
                    .try_for_each(|entry| verify_entry(entry, digest))
            }
            Self::Attestation(attestation) => {
                verify_entry(&attestation.signature, attestation.data.digest())
            }
            Self::Report(report) => report.verify_signatures(),
            Self::Commit(commit) => verify_entry(&commit.signature, commit.digest),
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
                vec![attestation.data.origin, attestation.signature.signer]
            }
            Self::Report(report) => std::iter::once(report.origin)
                .chain(report.observations.iter().map(|entry| entry.signer))
                .collect(),
            Self::Commit(commit) => vec![commit.origin, commit.signature.signer],
            Self::Stored(notice) => vec![notice.writer],
        }
    }

    /// The price a price or attestation is about.
    pub fn price_data(&self) -> Option<PriceData> {
        match self {
            Self::Price(message) => Some(message.data),
            Self::Attestation(attestation) => Some(attestation.data),
            Self::Report(_) | Self::Commit(_) | Self::Stored(_) => None,
        }
    }

    /// What kind of message it is, for counters and logs.
    pub fn kind(&self) -> GossipKind {
        match self {
            Self::Price(_) => GossipKind::Price,
            Self::Attestation(_) => GossipKind::Attestation,
            Self::Report(_) => GossipKind::Report,
            Self::Commit(_) => GossipKind::Commit,
            Self::Stored(_) => GossipKind::Stored,
        }
    }
}

crate::labels::label_values! {
    /// The kinds of gossip message, as the `type` field and the `kind` metric label name them.
    pub enum GossipKind {
        Price => "price",
        Attestation => "attestation",
        Report => "report",
        Commit => "commit",
        Stored => "stored",
    }
}

fn verify_entry(entry: &SignatureEntry, digest: B256) -> Result<(), DecodeError> {
    entry
        .verify(digest)
        .map_err(|error| DecodeError::BadSignature {
            signer: entry.signer,
            error,
        })
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
            .map(|text| crate::signed::parse_id(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::pair::Pair;
    use crate::price::UsdPrice;

    const VECTOR_KEY: [u8; 32] =
        alloy_primitives::hex!("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
    const VECTOR_SIGNATURE: &str = "0xef40f898a0a03afabeb62c43d08626fa6e6fe4c1d4f1fa9158614c61ef1f96fc5f626da19ed8a030971217620263d09966d9c9c514b3684eb7586f20a0c960881c";

    fn vector_message() -> PriceMessage {
        let origin = Identity::from_secret(&VECTOR_KEY).unwrap();
        let data = PriceData {
            // The v1 vector's fields under the v1 domain word: its signature is the v1 vector's.
            config: crate::signed::V1_DOMAIN,
            pair: Pair::EthUsd,
            id: 1_234_567_890_123_456,
            price: UsdPrice::from_e8(312_456_789_000).unwrap(),
            observed_at: 1_763_700_000,
            origin: origin.address(),
        };
        PriceMessage::originate(data, origin.signer())
    }

    fn identities(n: u8) -> Vec<Identity> {
        (1..=n)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect()
    }

    fn decode_price(message: PriceMessage) -> Result<Gossip, DecodeError> {
        Gossip::decode(&Gossip::Price(message).encode())
    }

    /// The vector's price message as a JSON value, inside its gossip envelope.
    fn vector_json() -> serde_json::Value {
        serde_json::to_value(Gossip::Price(vector_message())).unwrap()
    }

    #[test]
    fn the_price_message_is_the_signed_fields_and_the_signatures_in_one_object() {
        let mut message = vector_message();
        for identity in identities(3) {
            message
                .signatures
                .push(message.data.sign(identity.signer()));
        }
        let bytes = Gossip::Price(message.clone()).encode();
        assert_eq!(Gossip::decode(&bytes), Ok(Gossip::Price(message)));
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(
                "{\"type\":\"price\",\"body\":{\"config\":\
                 \"0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d\",\
                 \"id\":\"1234567890123456\",\"pair\":\"ETH/USD\",\
                 \"price\":\"3124.56789000\",\"observed_at\":1763700000,\
                 \"origin\":\"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23\",\"signatures\":[{\"signer\""
            ),
            "{text}"
        );
        assert!(text.contains(VECTOR_SIGNATURE), "{text}");
    }

    #[test]
    fn rejects_oversized_input_before_parsing() {
        let mut bytes = Gossip::Price(vector_message()).encode();
        bytes.resize(MAX_MESSAGE_BYTES + 1, b' ');
        assert_eq!(
            Gossip::decode(&bytes),
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
            b"{\"type\":\"price\",\"body\":{\"id\":1}}".to_vec(),
        ];
        let mutations: [(&str, serde_json::Value); 12] = [
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
        ];
        for (field, value) in mutations {
            let mut json = vector_json();
            json["body"][field] = value;
            cases.push(json.to_string().into_bytes());
        }
        let mut json = vector_json();
        json["body"]["signatures"][0]["signature"] = serde_json::json!("0x1234");
        cases.push(json.to_string().into_bytes());
        for bytes in cases {
            let result = Gossip::decode(&bytes);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn a_message_in_any_other_spelling_is_not_canonical() {
        let canonical = String::from_utf8(Gossip::Price(vector_message()).encode()).unwrap();
        let spaced = canonical.replacen(':', ": ", 1);
        let padded = canonical.replacen("\"signatures\"", "\"extra\":true,\"signatures\"", 1);
        let uppercase_hex = canonical.replacen("0xef40", "0xEF40", 1);
        // serde_json writes object keys sorted: the canonical encoding keeps the field order.
        let reordered = vector_json().to_string();
        for variant in [spaced, padded, uppercase_hex, reordered] {
            assert_eq!(
                Gossip::decode(variant.as_bytes()),
                Err(DecodeError::NotCanonical("price")),
                "{variant}"
            );
        }
    }

    #[test]
    fn rejects_an_unknown_pair_and_a_pair_swapped_under_its_signature() {
        let mut json = vector_json();
        json["body"]["pair"] = serde_json::json!("DOGE/USD");
        assert!(matches!(
            Gossip::decode(json.to_string().as_bytes()),
            Err(DecodeError::Malformed(detail)) if detail.contains("unknown pair")
        ));
        // BTC/USD is a pair we know, but the signature covers ETH/USD.
        let mut message = vector_message();
        message.data.pair = Pair::BtcUsd;
        assert!(matches!(
            decode_price(message),
            Err(DecodeError::BadSignature { .. })
        ));
    }

    #[test]
    fn rejects_duplicate_signers() {
        let mut message = vector_message();
        message.signatures.push(message.signatures[0]);
        assert_eq!(
            decode_price(message.clone()),
            Err(DecodeError::DuplicateSigner(message.data.origin))
        );
    }

    #[test]
    fn rejects_a_price_its_origin_did_not_sign() {
        let [other] = identities(1).try_into().unwrap();
        let mut message = vector_message();
        message.signatures = vec![message.data.sign(other.signer())];
        assert_eq!(
            decode_price(message.clone()),
            Err(DecodeError::OriginUnsigned(message.data.origin))
        );
    }

    #[test]
    fn rejects_signatures_that_do_not_recover_to_their_signer() {
        let cosigners = identities(2);
        // A co-signature claimed by someone else.
        let mut message = vector_message();
        let mut forged = message.data.sign(cosigners[0].signer());
        forged.signer = cosigners[1].address();
        message.signatures.push(forged);
        assert!(matches!(
            decode_price(message),
            Err(DecodeError::BadSignature {
                error: SignatureError::WrongSigner { .. },
                ..
            })
        ));
        // A valid signature over a different price.
        let mut message = vector_message();
        let other = PriceData {
            id: message.data.id + 1,
            ..message.data
        };
        message.signatures.push(other.sign(cosigners[0].signer()));
        assert!(matches!(
            decode_price(message),
            Err(DecodeError::BadSignature { .. })
        ));
        // The price changed after signing.
        let mut message = vector_message();
        message.data.price = UsdPrice::from_e8(312_456_789_001).unwrap();
        assert!(matches!(
            decode_price(message),
            Err(DecodeError::BadSignature { .. })
        ));
    }

    #[test]
    fn gossip_round_trips_every_kind() {
        let message = vector_message();
        let [cosigner] = identities(1).try_into().unwrap();
        let attestation = Attestation::sign(&message.data, cosigner.signer());
        let notice = StoredNotice::sign(
            vec![1, message.data.id],
            1_763_700_000,
            crate::membership::Members::open().signing_config(),
            cosigner.signer(),
        );
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
            crate::membership::Members::open().signing_config(),
            writer.signer(),
        ));
        assert!(
            whole.encode().len() > MAX_MESSAGE_BYTES,
            "one notice would not fit"
        );
        let notices = StoredNotice::sign_all(
            &ids,
            1_763_700_000,
            crate::membership::Members::open().signing_config(),
            writer.signer(),
        );
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
        let mut attestation = Attestation::sign(&message.data, cosigner.signer());
        attestation.signature.signer = other.address();
        assert!(matches!(
            Gossip::decode(&Gossip::Attestation(attestation.clone()).encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        attestation = Attestation::sign(&message.data, cosigner.signer());
        attestation.data.price = UsdPrice::from_e8(1).unwrap();
        assert!(Gossip::decode(&Gossip::Attestation(attestation).encode()).is_err());
        let mut unsigned = message.clone();
        unsigned.signatures.clear();
        assert_eq!(
            decode_price(unsigned),
            Err(DecodeError::OriginUnsigned(message.data.origin))
        );
        let empty = StoredNotice::sign(
            vec![],
            1_763_700_000,
            crate::membership::Members::open().signing_config(),
            cosigner.signer(),
        );
        assert!(Gossip::decode(&Gossip::Stored(empty).encode()).is_err());
        let mut forged = StoredNotice::sign(
            vec![5],
            1_763_700_000,
            crate::membership::Members::open().signing_config(),
            cosigner.signer(),
        );
        forged.writer = other.address();
        assert!(matches!(
            Gossip::decode(&Gossip::Stored(forged).encode()),
            Err(DecodeError::BadSignature { .. })
        ));
        let mut extended = StoredNotice::sign(
            vec![5],
            1_763_700_000,
            crate::membership::Members::open().signing_config(),
            cosigner.signer(),
        );
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
        let message = vector_message();
        let bytes = Gossip::Price(message.clone()).encode();
        for cut in 0..bytes.len() {
            let _ = Gossip::decode(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            // One message, one encoding: no flip decodes to anything.
            assert!(Gossip::decode(&flipped).is_err(), "flip at {i}");
        }
    }

    /// The largest report a network makes — 2f + 1 observations at the most f, each of the
    /// longest price and time — fits one message, and two more observations (f + 1) would not:
    /// `MAX_FAULTS` follows from the size limit.
    #[test]
    fn the_largest_report_fits_one_message() {
        let quorum = crate::domain::FaultBound::new(crate::domain::MAX_FAULTS).quorum();
        let origin = Identity::from_secret(&[1; 32]).unwrap();
        let round = Round {
            config: B256::repeat_byte(7),
            pair: Pair::EthUsd,
            id: u64::MAX >> 1,
            origin: origin.address(),
        };
        // The longest price; a time of ten digits (until the year 2286: validation refuses
        // any time far from the receiver's clock).
        let observation = Observation {
            price: UsdPrice::from_e8(10_000_000_000_000_000).unwrap(),
            observed_at: 9_999_999_999,
        };
        let observations = (1..=quorum)
            .map(|i| {
                let signer = Identity::from_secret(&[u8::try_from(i).unwrap(); 32]).unwrap();
                SignedObservation {
                    signer: signer.address(),
                    observation,
                    signature: PriceData::new(round, observation)
                        .sign(signer.signer())
                        .signature,
                }
            })
            .collect();
        let report = Report {
            round,
            observations,
            commits: Vec::new(),
        };
        let bytes = Gossip::Report(ReportMessage::sign(&report, origin.signer()).unwrap()).encode();
        assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
        let per_observation = bytes.len() / quorum;
        assert!(
            bytes.len() + 2 * per_observation > MAX_MESSAGE_BYTES,
            "{} bytes",
            bytes.len()
        );
    }
}
