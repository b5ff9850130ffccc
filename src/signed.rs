//! The signed price, defined once: the fields the normative digest covers, the digest itself,
//! EIP-191 signatures over it, and a round's report — its members' signed observations and
//! their median. The wire messages ([`crate::message`]), the pool, the flush, the on-chain
//! report and the API all carry these types.
//!
//! ```text
//! config = the configuration digest (crate::domain): protocol version, network, chain,
//!          verifier, member set, f
//! PAIR   = keccak256(pair)                e.g. keccak256("ETH/USD")
//! digest = keccak256(config ‖ PAIR ‖ be32(id) ‖ be32_signed(price_e8) ‖ be32(observed_at))
//! sig    = secp256k1 over keccak256("\x19Ethereum Signed Message:\n32" ‖ digest), r ‖ s ‖ v
//! ```
//!
//! That is `abi.encode(bytes32, bytes32, uint64, int256, uint64)`, so a contract verifies a
//! signature with `ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(digest), sig)`.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use alloy_primitives::{Address, B256, Signature, U256, b256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pair::Pair;
use crate::price::UsdPrice;
use rust_decimal::Decimal;

/// `keccak256("price-oracle/v1")`: protocol v1's first digest word, where v2 has the
/// configuration digest. A v1 signature is a v2 signature under this "configuration", so rows
/// stored before v2 keep it as their `config` and verify unchanged.
pub const V1_DOMAIN: B256 =
    b256!("0xcb75fe49645f9651e513d3c97edb5b87fd190de96fdcf156a03039519dd83e5d");

/// `keccak256("ETH/USD")`, the PAIR word of the test vector.
pub const PAIR_HASH: B256 = Pair::EthUsd.hash();

/// Half the secp256k1 group order: signatures with a larger `s` are malleable copies (EIP-2).
const SECP256K1_HALF_ORDER: U256 = U256::from_be_bytes(
    b256!("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0").0,
);

/// The normative digest of an observation under configuration `config` (see the module docs).
pub fn price_digest(config: B256, pair: Pair, id: u64, price: UsdPrice, observed_at: u64) -> B256 {
    let mut input = [0u8; 160];
    input[..32].copy_from_slice(config.as_slice());
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

/// What one signature covers — the pair, the round's id, a price and when it was observed —
/// and whose round it is. The origin's price message carries its own observation; every other
/// member's attestation carries the member's own observation under the same round. On the wire
/// (inside every price and attestation message):
///
/// ```json
/// {"id":"1234567890123456","pair":"ETH/USD","price":"3124.56789000","observed_at":1763700000,
///  "origin":"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"}
/// ```
///
/// `id` is a decimal string because ids exceed 2⁵³ and JavaScript verifiers would round a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PriceData {
    /// The configuration digest ([`crate::domain`]) the signature is bound to.
    pub config: B256,
    #[serde(with = "id_as_string")]
    pub id: u64,
    pub pair: Pair,
    pub price: UsdPrice,
    /// Unix seconds at which the signer fetched the price.
    pub observed_at: u64,
    /// The node that started the round; its id space holds `id`.
    #[serde(with = "checksummed_address")]
    pub origin: Address,
}

impl PriceData {
    /// `observation` under `round`.
    pub fn new(round: Round, observation: Observation) -> Self {
        Self {
            config: round.config,
            pair: round.pair,
            id: round.id,
            price: observation.price,
            observed_at: observation.observed_at,
            origin: round.origin,
        }
    }

    /// The normative digest the signature covers.
    pub fn digest(&self) -> B256 {
        price_digest(
            self.config,
            self.pair,
            self.id,
            self.price,
            self.observed_at,
        )
    }

    /// `signer`'s signature over these fields.
    pub fn sign(&self, signer: &PrivateKeySigner) -> SignatureEntry {
        SignatureEntry::sign(signer, self.digest())
    }

    pub fn round(&self) -> Round {
        Round {
            config: self.config,
            pair: self.pair,
            id: self.id,
            origin: self.origin,
        }
    }

    pub fn observation(&self) -> Observation {
        Observation {
            price: self.price,
            observed_at: self.observed_at,
        }
    }
}

/// How far from its round's time (the time in its id, which is the origin's observation time)
/// an observation may be made and still belong to the round: long enough for the members to
/// hear the round and observe, short enough that all of them see the same market.
pub const ROUND_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// One round of a pair: started by `origin` under an id from its own id space, in one
/// configuration. Its members' observations make one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Round {
    /// The configuration digest every observation of the round is signed under.
    pub config: B256,
    pub pair: Pair,
    pub id: u64,
    pub origin: Address,
}

/// A price as one member saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Observation {
    pub price: UsdPrice,
    /// Unix seconds.
    pub observed_at: u64,
}

/// One member's observation of a round, with its signature over the normative digest of
/// (pair, id, the observation's price, the observation's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedObservation {
    pub signer: Address,
    pub observation: Observation,
    pub signature: EthSignature,
}

/// A round with its members' signed observations: what the pool hands the flush, what a stored
/// row reads back into, what the on-chain report and the API are built from.
///
/// Its **value** is the median of the observations' prices: sorted ascending, the element at
/// index ⌊n/2⌋ (OCR's rule). With fewer than half the observations dishonest it lies within the
/// honest observations' range. Every part of the system computes it with [`median`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub round: Round,
    pub observations: Vec<SignedObservation>,
    /// Members' signatures over [`Report::digest`], committing to exactly this set of
    /// observations, its value and its time: `f + 1` of them make the report (protocol v2). A
    /// round still gathering observations, and a v1 row, has none.
    pub commits: Vec<SignatureEntry>,
}

impl Report {
    /// The value: the median of the observations' prices (`None` without observations).
    pub fn value(&self) -> Option<UsdPrice> {
        median(
            self.observations
                .iter()
                .map(|entry| entry.observation.price),
        )
    }

    /// (max − min) / median of the prices, rounded down to 8 decimals: how far the observations
    /// spread around the value. Zero when they agree.
    pub fn spread(&self) -> Decimal {
        let prices = self
            .observations
            .iter()
            .map(|entry| entry.observation.price.to_decimal());
        let (Some(min), Some(max), Some(value)) = (
            prices.clone().min(),
            prices.max(),
            self.value().map(UsdPrice::to_decimal),
        ) else {
            return Decimal::ZERO;
        };
        if value.is_zero() {
            return Decimal::ZERO;
        }
        ((max - min) / value).round_dp_with_strategy(8, rust_decimal::RoundingStrategy::ToZero)
    }

    /// The oldest and the newest observation time (Unix seconds).
    pub fn observed_range(&self) -> Option<(u64, u64)> {
        let times = self
            .observations
            .iter()
            .map(|entry| entry.observation.observed_at);
        Some((times.clone().min()?, times.max()?))
    }

    /// The fields `entry` signed.
    pub fn signed_fields(&self, entry: &SignedObservation) -> PriceData {
        PriceData::new(self.round, entry.observation)
    }

    /// Checks that every signature recovers to its signer over the digest of its own
    /// observation; the first that does not is returned with its signer.
    pub fn verify(&self) -> Result<(), (Address, SignatureError)> {
        self.observations.iter().try_for_each(|entry| {
            let signature = SignatureEntry {
                signer: entry.signer,
                signature: entry.signature,
            };
            signature
                .verify(self.signed_fields(entry).digest())
                .map_err(|err| (entry.signer, err))
        })
    }

    /// The report's time: the median of its observations' times (sorted ascending, the element
    /// at index ⌊n/2⌋), so no minority of its members can move it — not to the future, where it
    /// would hold off every newer report, nor to the past. A v1 report (signed under
    /// [`V1_DOMAIN`]) kept its origin's time.
    pub fn time(&self) -> Option<u64> {
        if self.round.config == V1_DOMAIN {
            return self.observed_at();
        }
        median(
            self.observations
                .iter()
                .map(|entry| entry.observation.observed_at),
        )
    }

    /// The digest of the exact set of observations (`observations_digest`).
    pub fn observations_digest(&self) -> B256 {
        observations_digest(self.observations.iter())
    }

    /// The digest `f + 1` members sign to commit to this exact report: its configuration,
    /// round, value, time and set of observations (`report_digest`); `None` without
    /// observations.
    pub fn digest(&self) -> Option<B256> {
        Some(report_digest(
            self.round,
            self.value()?,
            self.time()?,
            self.observations.len(),
            self.observations_digest(),
        ))
    }

    /// The origin's own observation, if it is among them.
    pub fn origin_observation(&self) -> Option<&SignedObservation> {
        self.observations
            .iter()
            .find(|entry| entry.signer == self.round.origin)
    }

    /// The round's time: its origin's observation time (what a stored row's `observed_at`
    /// holds), if the origin's observation is among them.
    pub fn observed_at(&self) -> Option<u64> {
        self.origin_observation()
            .map(|origin| origin.observation.observed_at)
    }

    /// The signers, in the order of the observations.
    pub fn signers(&self) -> impl Iterator<Item = Address> + '_ {
        self.observations.iter().map(|entry| entry.signer)
    }
}

/// `keccak256("report")`: the second word of a report digest, which no observation digest has.
pub const REPORT_TAG: B256 =
    b256!("0x92fd736d0ab72b18a95b4344b671dea40a408ba8217d0f440e040276ec25db32");

/// The digest of a set of observations: `keccak256` of `abi.encode(address signer, int256
/// price_e8, uint64 observed_at)` of each, concatenated in ascending signer order (96 bytes
/// each), whatever order they come in.
pub fn observations_digest<'a>(
    observations: impl IntoIterator<Item = &'a SignedObservation>,
) -> B256 {
    let mut sorted: Vec<&SignedObservation> = observations.into_iter().collect();
    sorted.sort_unstable_by_key(|entry| entry.signer);
    let mut input = Vec::with_capacity(sorted.len() * 96);
    for entry in sorted {
        let mut word = [0u8; 96];
        word[12..32].copy_from_slice(entry.signer.as_slice());
        word[32..64].copy_from_slice(&int256_be(entry.observation.price.e8()));
        word[88..96].copy_from_slice(&entry.observation.observed_at.to_be_bytes());
        input.extend_from_slice(&word);
    }
    keccak256(input)
}

/// The digest of a committed report:
/// `keccak256(abi.encode(bytes32 config, bytes32 REPORT, bytes32 PAIR, uint64 id, int256
/// median_e8, uint64 observed_at, uint64 count, bytes32 observations))`.
pub fn report_digest(
    round: Round,
    median: UsdPrice,
    observed_at: u64,
    count: usize,
    observations: B256,
) -> B256 {
    let mut input = [0u8; 256];
    input[..32].copy_from_slice(round.config.as_slice());
    input[32..64].copy_from_slice(REPORT_TAG.as_slice());
    input[64..96].copy_from_slice(round.pair.hash().as_slice());
    input[120..128].copy_from_slice(&round.id.to_be_bytes());
    input[128..160].copy_from_slice(&int256_be(median.e8()));
    input[184..192].copy_from_slice(&observed_at.to_be_bytes());
    input[216..224].copy_from_slice(&(count as u64).to_be_bytes());
    input[224..256].copy_from_slice(observations.as_slice());
    keccak256(input)
}

/// The median rule, the one definition every part uses: prices or times sorted ascending, the element
/// at index ⌊n/2⌋ (for an even count, the upper of the two middle ones); `None` for none.
pub fn median<T: Ord + Copy>(values: impl IntoIterator<Item = T>) -> Option<T> {
    let mut values: Vec<T> = values.into_iter().collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// Addresses as EIP-55 text: the form `oracle keygen` prints and people compare by eye.
/// Input in any case is accepted.
pub(crate) mod checksummed_address {
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
pub(crate) fn parse_id(text: &str) -> Result<u64, &'static str> {
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

pub(crate) mod id_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_id(&text).map_err(serde::de::Error::custom)
    }
}

/// A round with a quorum of valid member observations, ready to be stored: its member
/// observations only, and when the last one arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPrice {
    pub report: Report,
    /// Wall-clock time of the last new observation, stored as `lastsigned_time`.
    pub last_signed: SystemTime,
}

impl VerifiedPrice {
    pub fn id(&self) -> u64 {
        self.report.round.id
    }

    pub fn round(&self) -> &Round {
        &self.report.round
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

    /// The vectors' nine members: the vector key, then the keys `[seed; 32]` for seeds 1..=8.
    fn vector_members() -> Vec<Address> {
        std::iter::once(vector_identity().address())
            .chain((1..=8u8).map(|seed| Identity::from_secret(&[seed; 32]).unwrap().address()))
            .collect()
    }

    /// The vectors' configuration: the default deployment (network "price-oracle", no chain, no
    /// verifier) of the nine members, f = 2.
    fn vector_config() -> B256 {
        crate::domain::Deployment::default()
            .config_digest(&vector_members(), crate::domain::FaultBound::new(2))
    }

    fn vector_data() -> PriceData {
        PriceData {
            config: vector_config(),
            pair: Pair::EthUsd,
            id: VECTOR_ID,
            price: UsdPrice::from_e8(VECTOR_PRICE_E8).unwrap(),
            observed_at: VECTOR_OBSERVED_AT,
            origin: vector_identity().address(),
        }
    }

    #[test]
    fn constants_are_the_hashes_they_claim() {
        assert_eq!(keccak256("price-oracle/v1"), V1_DOMAIN);
        assert_eq!(keccak256("report"), REPORT_TAG);
        assert_eq!(keccak256("ETH/USD"), PAIR_HASH);
        let order = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        assert_eq!(SECP256K1_HALF_ORDER, order >> 1);
    }

    /// ARCHITECTURE.md's v1 vector: v2's digest with the v1 domain word for the configuration.
    #[test]
    fn normative_test_vector() {
        let data = PriceData {
            config: V1_DOMAIN,
            ..vector_data()
        };
        assert_eq!(data.price.to_string(), "3124.56789000");
        assert_eq!(
            price_digest(
                V1_DOMAIN,
                Pair::EthUsd,
                VECTOR_ID,
                data.price,
                VECTOR_OBSERVED_AT
            ),
            VECTOR_DIGEST
        );
        assert_eq!(data.digest(), VECTOR_DIGEST);
        let entry = data.sign(vector_identity().signer());
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
        words.extend_from_slice(V1_DOMAIN.as_slice());
        words.extend_from_slice(PAIR_HASH.as_slice());
        words.extend_from_slice(&U256::from(7u64).to_be_bytes::<32>());
        words.extend_from_slice(&I256::try_from(negative).unwrap().to_be_bytes::<32>());
        words.extend_from_slice(&U256::from(9u64).to_be_bytes::<32>());
        let mut input = [0u8; 160];
        input[..32].copy_from_slice(V1_DOMAIN.as_slice());
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
        let digest = |pair, id, e8, at| {
            price_digest(V1_DOMAIN, pair, id, UsdPrice::from_e8(e8).unwrap(), at)
        };
        let base = digest(Pair::EthUsd, 1, 2, 3);
        assert_ne!(base, digest(Pair::BtcUsd, 1, 2, 3));
        assert_ne!(base, digest(Pair::EthUsd, 9, 2, 3));
        assert_ne!(base, digest(Pair::EthUsd, 1, 9, 3));
        assert_ne!(base, digest(Pair::EthUsd, 1, 2, 9));
    }

    #[test]
    fn rejects_bad_v_high_s_and_garbage_signatures() {
        let digest = VECTOR_DIGEST;
        let good = *vector_data()
            .sign(vector_identity().signer())
            .signature
            .as_bytes();

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

        let mut zeros = [0u8; 65];
        zeros[64] = 27;
        assert_eq!(
            EthSignature(zeros).recover(digest),
            Err(SignatureError::Unrecoverable)
        );
    }

    /// `signer`'s observation of `price` at `observed_at` under the vector's round.
    fn observed(signer: &Identity, price: i64, observed_at: u64) -> SignedObservation {
        let observation = Observation {
            price: UsdPrice::from_e8(price).unwrap(),
            observed_at,
        };
        let data = PriceData::new(vector_data().round(), observation);
        SignedObservation {
            signer: signer.address(),
            observation,
            signature: data.sign(signer.signer()).signature,
        }
    }

    /// The report and observations digests against an independent `abi.encode`.
    #[test]
    fn report_digests_are_abi_encode_of_their_words() {
        use alloy_sol_types::SolValue;
        let keys: Vec<Identity> = (1..=3u8)
            .map(|seed| Identity::from_secret(&[seed; 32]).unwrap())
            .collect();
        let report = Report {
            round: vector_data().round(),
            observations: vec![
                observed(&keys[2], 300_000_000_000, 10),
                observed(&keys[0], 1, 30),
                observed(&keys[1], 200_000_000_000, 20),
            ],
            commits: Vec::new(),
        };
        let mut sorted = report.observations.clone();
        sorted.sort_by_key(|entry| entry.signer);
        let packed: Vec<u8> = sorted
            .iter()
            .flat_map(|entry| {
                (
                    entry.signer,
                    I256::try_from(entry.observation.price.e8()).unwrap(),
                    entry.observation.observed_at,
                )
                    .abi_encode()
            })
            .collect();
        let observations = keccak256(&packed);
        assert_eq!(report.observations_digest(), observations);
        // The median price and the median time need not be one observation's.
        let (median, time) = (report.value().unwrap(), report.time().unwrap());
        assert_eq!((median.e8(), time), (200_000_000_000, 20));
        let words = (
            report.round.config,
            keccak256("report"),
            PAIR_HASH,
            VECTOR_ID,
            I256::try_from(median.e8()).unwrap(),
            time,
            3u64,
            observations,
        )
            .abi_encode();
        assert_eq!(report.digest(), Some(keccak256(&words)));
        // Dropping or changing one observation is another report.
        let mut picked = report.clone();
        picked.observations.pop();
        assert_ne!(picked.digest(), report.digest());
    }

    #[test]
    fn a_report_checks_each_signature_over_its_own_observation() {
        let origin = vector_identity();
        let others: Vec<Identity> = (1..=2u8)
            .map(|i| Identity::from_secret(&[i; 32]).unwrap())
            .collect();
        let mut report = Report {
            round: vector_data().round(),
            observations: vec![
                observed(&origin, VECTOR_PRICE_E8, VECTOR_OBSERVED_AT),
                observed(&others[0], VECTOR_PRICE_E8 + 1, VECTOR_OBSERVED_AT + 3),
            ],
            commits: Vec::new(),
        };
        assert_eq!(report.verify(), Ok(()));
        assert!(report.origin_observation().is_some());
        // An observation claimed by someone else, or changed after signing, does not verify.
        report.observations[1].signer = others[1].address();
        assert!(matches!(
            report.verify(),
            Err((signer, SignatureError::WrongSigner { .. })) if signer == others[1].address()
        ));
        report.observations[1] = observed(&others[0], VECTOR_PRICE_E8 + 1, VECTOR_OBSERVED_AT);
        report.observations[1].observation.price = UsdPrice::from_e8(VECTOR_PRICE_E8).unwrap();
        assert!(report.verify().is_err());
        report.observations.remove(0);
        assert!(report.origin_observation().is_none());
    }

    #[test]
    fn the_value_is_the_element_at_half_the_count_of_the_sorted_prices() {
        let e8 = |prices: &[i64]| {
            median(prices.iter().map(|e8| UsdPrice::from_e8(*e8).unwrap())).map(UsdPrice::e8)
        };
        assert_eq!(e8(&[]), None);
        assert_eq!(e8(&[7]), Some(7));
        assert_eq!(e8(&[9, 1, 5]), Some(5));
        // An even count takes the upper of the two middle prices.
        assert_eq!(e8(&[4, 1, 3, 2]), Some(3));
        assert_eq!(e8(&[2, 2, 2, 9_000]), Some(2));
        // One liar at any price among three honest observations stays out of the value.
        for liar in [1, 299_999, 300_000, 302_700, 1_000_000_000] {
            let value = e8(&[300_000, 300_001, 299_999, liar]).unwrap();
            assert!((299_999..=300_001).contains(&value), "liar {liar}: {value}");
        }
    }

    #[test]
    fn spread_and_range_describe_the_observations() {
        let signer = vector_identity();
        let report = Report {
            round: vector_data().round(),
            observations: vec![
                observed(&signer, 300_000_000_000, 100),
                observed(&signer, 303_000_000_000, 130),
                observed(&signer, 301_000_000_000, 110),
            ],
            commits: Vec::new(),
        };
        assert_eq!(report.value().unwrap().e8(), 301_000_000_000);
        // (3030 − 3000) / 3010, to 8 decimals, rounded down.
        assert_eq!(report.spread().to_string(), "0.00996677");
        assert_eq!(report.observed_range(), Some((100, 130)));
        let empty = Report {
            round: report.round,
            observations: Vec::new(),
            commits: Vec::new(),
        };
        assert_eq!((empty.value(), empty.spread()), (None, Decimal::ZERO));
    }

    /// The protocol's test vectors, as this code computes them: the digest and signature of one
    /// observation (ARCHITECTURE.md's), and a report of three members' observations with its
    /// digests, signatures, median and ABI bytes. `docs/protocol-vectors.json` holds them for
    /// other implementations; this test keeps the file and the code in agreement (run it with
    /// `UPDATE_VECTORS=1` to rewrite the file after a deliberate change).
    fn vectors() -> serde_json::Value {
        let secrets = [VECTOR_KEY, [1u8; 32], [2u8; 32]];
        let keys: Vec<Identity> = secrets
            .iter()
            .map(|secret| Identity::from_secret(secret).unwrap())
            .collect();
        let round = vector_data().round();
        let seen = [
            (VECTOR_PRICE_E8, VECTOR_OBSERVED_AT),
            (312_500_000_000, VECTOR_OBSERVED_AT + 2),
            (312_350_000_000, VECTOR_OBSERVED_AT + 1),
        ];
        let observations: Vec<SignedObservation> = keys
            .iter()
            .zip(seen)
            .map(|(key, (e8, at))| observed(key, e8, at))
            .collect();
        let report = Report {
            round,
            observations,
            commits: Vec::new(),
        };
        let entries: Vec<serde_json::Value> = report
            .observations
            .iter()
            .zip(&secrets)
            .map(|(entry, secret)| {
                serde_json::json!({
                    "private_key": alloy_primitives::hex::encode(secret),
                    "signer": entry.signer.to_checksum(None),
                    "price_e8": entry.observation.price.e8().to_string(),
                    "observed_at": entry.observation.observed_at,
                    "digest": report.signed_fields(entry).digest().to_string(),
                    "signature": entry.signature.to_string(),
                })
            })
            .collect();
        let (first, last) = report.observed_range().unwrap();
        // Committed by the first two (f + 1 at f = 1): the on-chain report's signatures.
        let commits: Vec<SignatureEntry> = keys[..2]
            .iter()
            .map(|key| SignatureEntry::sign(key.signer(), report.digest().unwrap()))
            .collect();
        let committed = Report {
            commits: commits.clone(),
            ..report.clone()
        };
        // A committee: nine members (f = 2), the vector's key the origin.
        let members = vector_members();
        let f = crate::domain::FaultBound::new(2);
        let settings = crate::committee::CommitteeSettings::new(std::time::Duration::from_secs(5));
        let ranking: Vec<serde_json::Value> =
            crate::committee::ranking(VECTOR_ID, &round.origin, &members)
                .iter()
                .enumerate()
                .map(|(rank, member)| {
                    serde_json::json!({
                        "member": member.to_checksum(None),
                        "score": crate::committee::score(VECTOR_ID, member).to_string(),
                        "waits_seconds": settings.wait(rank, f).as_secs(),
                    })
                })
                .collect();
        // Who starts the round after the vector's round: the same nine members.
        let observe = std::time::Duration::from_secs(15);
        let starters: Vec<serde_json::Value> =
            crate::trigger::starter_ranking(Pair::EthUsd, VECTOR_ID, &members)
                .iter()
                .enumerate()
                .map(|(rank, member)| {
                    serde_json::json!({
                        "member": member.to_checksum(None),
                        "score": crate::trigger::score(Pair::EthUsd, VECTOR_ID, member).to_string(),
                        "waits_ms": crate::trigger::start_wait(rank, observe).as_millis() as u64,
                    })
                })
                .collect();
        serde_json::json!({
            "messages": message_vectors(&keys, &report),
            "starter": {
                "pair": "ETH/USD",
                "last_verified_id": VECTOR_ID.to_string(),
                "members": members.iter().map(|member| member.to_checksum(None)).collect::<Vec<_>>(),
                "observe_interval_seconds": observe.as_secs(),
                "ranking": starters,
            },
            "committee": {
                "id": VECTOR_ID.to_string(),
                "origin": round.origin.to_checksum(None),
                "members": members.iter().map(|member| member.to_checksum(None)).collect::<Vec<_>>(),
                "f": f.faults(),
                "size": crate::committee::CommitteeSettings::size(f),
                "step": crate::committee::CommitteeSettings::step(f),
                "fallback_seconds": settings.fallback.as_secs(),
                "ranking": ranking,
            },
            "config": {
                "domain": crate::domain::DOMAIN.to_string(),
                "network": "price-oracle",
                "network_hash": keccak256("price-oracle").to_string(),
                "chain_id": 0,
                "verifier": Address::ZERO.to_checksum(None),
                "members": members.iter().map(|member| member.to_checksum(None)).collect::<Vec<_>>(),
                "members_digest": crate::domain::members_digest(&members).to_string(),
                "f": f.faults(),
                "digest": vector_config().to_string(),
            },
            "v1_observation": {
                "domain": V1_DOMAIN.to_string(),
                "digest": VECTOR_DIGEST.to_string(),
                "signature": VECTOR_SIGNATURE,
            },
            "observation": {
                "private_key": alloy_primitives::hex::encode(VECTOR_KEY),
                "address": vector_identity().address().to_checksum(None),
                "peer_id": vector_identity().peer_id().to_string(),
                "pair": "ETH/USD",
                "pair_hash": PAIR_HASH.to_string(),
                "id": VECTOR_ID.to_string(),
                "price_e8": VECTOR_PRICE_E8.to_string(),
                "observed_at": VECTOR_OBSERVED_AT,
                "config": vector_config().to_string(),
                "digest": vector_data().digest().to_string(),
                "signature": vector_data().sign(vector_identity().signer()).signature.to_string(),
            },
            "report": {
                "pair": "ETH/USD",
                "id": VECTOR_ID.to_string(),
                "origin": round.origin.to_checksum(None),
                "observations": entries,
                "median_e8": report.value().unwrap().e8().to_string(),
                "observed_at": report.time().unwrap(),
                "observations_digest": report.observations_digest().to_string(),
                "digest": report.digest().unwrap().to_string(),
                "spread": report.spread().to_string(),
                "first_observed_at": first,
                "last_observed_at": last,
                "commits": commits
                    .iter()
                    .map(|commit| serde_json::json!({
                        "signer": commit.signer.to_checksum(None),
                        "signature": commit.signature.to_string(),
                    }))
                    .collect::<Vec<_>>(),
                "abi": alloy_primitives::hex::encode_prefixed(
                    crate::report::OnChainReport::try_from(&committed).unwrap().encode()
                ),
            },
        })
    }

    /// Whole gossip messages, byte for byte: the vector's round as its origin publishes it, the
    /// second member's attestation, the origin's report of the round and the second member's
    /// commit to it, a writer's stored notice (with its own digest), each with its gossipsub
    /// message id; and an id the vector's key could mint (its machine bits and time).
    fn message_vectors(keys: &[Identity], report: &Report) -> serde_json::Value {
        use crate::message::{
            Attestation, CommitMessage, Gossip, PriceMessage, ReportMessage, StoredNotice,
        };
        let origin = keys[0].signer();
        let member = &report.observations[1];
        let notice = StoredNotice::sign(
            vec![VECTOR_ID],
            VECTOR_OBSERVED_AT + 32,
            report.round.config,
            origin,
        );
        let digest = notice.digest();
        let messages = [
            (
                "price",
                Gossip::Price(PriceMessage::originate(vector_data(), origin)),
            ),
            (
                "attestation",
                Gossip::Attestation(Attestation::sign(
                    &report.signed_fields(member),
                    keys[1].signer(),
                )),
            ),
            (
                "report",
                Gossip::Report(ReportMessage::sign(report, origin).unwrap()),
            ),
            (
                "commit",
                Gossip::Commit(CommitMessage::sign(report, keys[1].signer()).unwrap()),
            ),
            ("stored", Gossip::Stored(notice)),
        ];
        let mut vectors = serde_json::Map::new();
        for (kind, message) in messages {
            let bytes = message.encode();
            // What a receiver parses back is what was sent: the bytes are canonical.
            assert_eq!(Gossip::parse(&bytes).unwrap(), message, "{kind}");
            let mut vector = serde_json::json!({
                "bytes": String::from_utf8(bytes.clone()).unwrap(),
                "message_id": keccak256(&bytes).to_string(),
            });
            if kind == "stored" {
                vector["digest"] = digest.to_string().into();
            }
            vectors.insert(kind.to_owned(), vector);
        }
        let machine = crate::id::IdGenerator::machine_id_from_address(&keys[0].address());
        let minted_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(VECTOR_OBSERVED_AT);
        let id = crate::id::IdGenerator::new(machine)
            .next_id_at(minted_at)
            .unwrap();
        vectors.insert(
            "valid_id".to_owned(),
            serde_json::json!({
                "address": keys[0].address().to_checksum(None),
                "machine": machine,
                "unix_ms": VECTOR_OBSERVED_AT * 1000,
                "id": id.to_string(),
            }),
        );
        vectors.into()
    }

    #[test]
    fn the_published_vectors_are_what_this_code_computes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/protocol-vectors.json");
        let computed = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
        if std::env::var_os("UPDATE_VECTORS").is_some() {
            std::fs::write(path, &computed).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            published, computed,
            "docs/protocol-vectors.json differs from the code"
        );
    }
}
