//! The asset pairs the network can sign. Each is quoted by the exchanges under its own market
//! symbols (see [`crate::price::Source`]), so the set is part of the code; `--pairs` picks which
//! of them a network signs.
//!
//! In the normative digest a pair is `PAIR = keccak256(name)`, e.g. `keccak256("ETH/USD")`.

use std::fmt;
use std::str::FromStr;

use alloy_primitives::{B256, b256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A pair, written `BASE/USD` on the wire, in the database and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pair {
    EthUsd,
    BtcUsd,
    SolUsd,
}

impl Pair {
    pub const ALL: [Pair; 3] = [Pair::EthUsd, Pair::BtcUsd, Pair::SolUsd];

    /// What the network signs unless told otherwise.
    pub const DEFAULT: Pair = Pair::EthUsd;

    pub const fn name(self) -> &'static str {
        match self {
            Self::EthUsd => "ETH/USD",
            Self::BtcUsd => "BTC/USD",
            Self::SolUsd => "SOL/USD",
        }
    }

    /// The asset priced in USD: `ETH` for `ETH/USD`.
    pub const fn base(self) -> &'static str {
        match self {
            Self::EthUsd => "ETH",
            Self::BtcUsd => "BTC",
            Self::SolUsd => "SOL",
        }
    }

    /// `keccak256(name)`: the PAIR word of the digest, and what a contract compares. Constants,
    /// because every signature a node checks needs one (a unit test recomputes them).
    pub const fn hash(self) -> B256 {
        match self {
            Self::EthUsd => {
                b256!("0x0b43555ace6b39aae1b894097d0a9fc17f504c62fea598fa206cc6f5088e6e45")
            }
            Self::BtcUsd => {
                b256!("0xee62665949c883f9e0f6f002eac32e00bd59dfe6c34e92a91c37d6a8322d6489")
            }
            Self::SolUsd => {
                b256!("0x2b1b43ec7f6691d6bf679978bab5c093fa45ee74c0baac6cc75649dc59cc21d3")
            }
        }
    }
}

/// Why a text is not a pair we sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pair {0:?}: expected one of ETH/USD, BTC/USD, SOL/USD")]
pub struct UnknownPair(pub String);

impl FromStr for Pair {
    type Err = UnknownPair;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|pair| pair.name() == text)
            .ok_or_else(|| UnknownPair(crate::logging::truncate_for_display(text)))
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of pairs, e.g. the ones `--pairs` configured: small and `Copy`, so settings that hold
/// it stay `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairSet(u8);

impl PairSet {
    /// Every pair we know: what a bootstrap node relays.
    pub const ALL: PairSet = PairSet(0b111);

    pub const fn only(pair: Pair) -> Self {
        Self(Self::bit(pair))
    }

    pub fn contains(self, pair: Pair) -> bool {
        self.0 & Self::bit(pair) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The pairs in [`Pair::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Pair> {
        Pair::ALL
            .into_iter()
            .filter(move |pair| self.contains(*pair))
    }

    const fn bit(pair: Pair) -> u8 {
        1 << pair as u8
    }
}

impl FromIterator<Pair> for PairSet {
    fn from_iter<I: IntoIterator<Item = Pair>>(pairs: I) -> Self {
        Self(
            pairs
                .into_iter()
                .fold(0, |bits, pair| bits | Self::bit(pair)),
        )
    }
}

impl fmt::Display for PairSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Pair::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_hash_as_the_spec_says() {
        for pair in Pair::ALL {
            assert_eq!(pair.name().parse::<Pair>(), Ok(pair));
            assert_eq!(pair.name(), format!("{}/USD", pair.base()));
            assert_eq!(
                pair.hash(),
                alloy_primitives::keccak256(pair.name()),
                "{pair}"
            );
            let json = serde_json::to_string(&pair).unwrap();
            assert_eq!(serde_json::from_str::<Pair>(&json).unwrap(), pair);
        }
        assert_eq!(
            Pair::EthUsd.hash(),
            "0x0b43555ace6b39aae1b894097d0a9fc17f504c62fea598fa206cc6f5088e6e45"
                .parse::<B256>()
                .unwrap()
        );
        assert!("eth/usd".parse::<Pair>().is_err());
        assert!("ETH/EUR".parse::<Pair>().is_err());
        assert!(serde_json::from_str::<Pair>("\"DOGE/USD\"").is_err());
    }

    #[test]
    fn a_pair_set_holds_each_pair_once_in_a_fixed_order() {
        let set: PairSet = [Pair::SolUsd, Pair::EthUsd, Pair::SolUsd]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
        assert!(set.contains(Pair::EthUsd) && !set.contains(Pair::BtcUsd));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Pair::EthUsd, Pair::SolUsd]
        );
        assert_eq!(set.to_string(), "ETH/USD,SOL/USD");
        assert!(PairSet::default().is_empty());
        assert_eq!(PairSet::ALL, Pair::ALL.into_iter().collect());
    }
}
