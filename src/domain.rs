//! What a signature is bound to: the network's configuration and its fault bound.
//!
//! Every digest a member signs starts with the **configuration digest**, so a signature made
//! for one deployment never verifies in another — another network name, chain, verifier
//! contract, member set or fault bound is another configuration:
//!
//! ```text
//! DOMAIN  = keccak256("price-oracle/v2")
//! NETWORK = keccak256(network name)
//! MEMBERS = keccak256(address₁ ‖ … ‖ addressₙ)      20 bytes each, ascending
//! config  = keccak256(abi.encode(bytes32 DOMAIN, bytes32 NETWORK, uint256 chainId,
//!                                address verifier, bytes32 MEMBERS, uint64 f))
//! ```
//!
//! On chain `chainId` is `block.chainid` and `verifier` the contract that checks the report,
//! so a contract computes the same digest from its own state (`PriceVerifier.configDigest`).
//!
//! **The fault bound.** A network of `n` members tolerates `f` faulty ones (lying, colluding,
//! silent), at most ⌊(n − 1)/3⌋, or fewer when configured: a report needs observations of
//! `2f + 1` distinct members (so its median lies within the honest ones' range), `f + 1` of
//! them commit to it (so at least one honest member checked it), and a round's committee is
//! `3f + 1` members (so `f` silent ones cost time, not the round).

use alloy_primitives::{Address, B256, b256, keccak256};

/// `keccak256("price-oracle/v2")`: the protocol version every configuration digest starts with.
pub const DOMAIN: B256 =
    b256!("0xf1b535c8c2e1aab269d891afd3d5517b7278f041e7428749760f265d6717f077");

/// The protocol version's name, hashed into [`DOMAIN`].
pub const PROTOCOL: &str = "price-oracle/v2";

/// The most faulty members any network tolerates: its origin's report of `2f + 1` observations
/// (at most 264 bytes each) must fit one gossip message of at most
/// [`crate::message::MAX_MESSAGE_BYTES`], 16 KiB, and 61 observations do. A network of 91
/// members or more tolerates 30.
pub const MAX_FAULTS: usize = 30;

/// The number of faulty members a network tolerates, and the counts that follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct FaultBound(usize);

impl FaultBound {
    pub const fn new(f: usize) -> Self {
        Self(f)
    }

    /// The bound for `members` members: ⌊(members − 1)/3⌋ up to [`MAX_FAULTS`], or
    /// `configured` when lower. An unknown member count (a relay without a list) takes
    /// `configured`, or 0.
    pub fn for_members(members: Option<usize>, configured: Option<usize>) -> Self {
        let most = members.map(|n| (n.saturating_sub(1) / 3).min(MAX_FAULTS));
        Self(match (most, configured) {
            (Some(most), Some(configured)) => most.min(configured),
            (Some(most), None) => most,
            (None, configured) => configured.unwrap_or(0),
        })
    }

    /// `f`.
    pub const fn faults(self) -> usize {
        self.0
    }

    /// Distinct members' observations a report needs: `2f + 1`.
    pub const fn quorum(self) -> usize {
        2 * self.0 + 1
    }

    /// Distinct members' signatures over a report that commit it: `f + 1`.
    pub const fn commit_threshold(self) -> usize {
        self.0 + 1
    }

    /// Members that observe a round at once: `3f + 1`.
    pub const fn committee_size(self) -> usize {
        3 * self.0 + 1
    }
}

/// Where a network runs: what, besides its members and `f`, its configuration digest binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Deployment {
    /// `--network-name`: keeps a test network's signatures out of a production one.
    pub network: String,
    /// `--chain-id`: the chain whose verifier takes the reports, 0 for none.
    pub chain_id: u64,
    /// `--verifier`: the contract that checks reports, the zero address for none.
    pub verifier: Address,
    /// `--fault-tolerance`: `f` when lower than the member count allows.
    pub max_faults: Option<usize>,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            network: "price-oracle".to_owned(),
            chain_id: 0,
            verifier: Address::ZERO,
            max_faults: None,
        }
    }
}

impl Deployment {
    /// The configuration digest of this deployment with `members` and `f`.
    pub fn config_digest(&self, members: &[Address], f: FaultBound) -> B256 {
        config_digest(
            keccak256(self.network.as_bytes()),
            self.chain_id,
            self.verifier,
            members_digest(members),
            f,
        )
    }
}

/// `MEMBERS`: the hash of the member addresses in ascending order, whatever order they come in.
pub fn members_digest(members: &[Address]) -> B256 {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    keccak256(sorted.concat())
}

/// The configuration digest (module docs).
pub fn config_digest(
    network: B256,
    chain_id: u64,
    verifier: Address,
    members: B256,
    f: FaultBound,
) -> B256 {
    let mut input = [0u8; 192];
    input[..32].copy_from_slice(DOMAIN.as_slice());
    input[32..64].copy_from_slice(network.as_slice());
    input[88..96].copy_from_slice(&chain_id.to_be_bytes());
    input[108..128].copy_from_slice(verifier.as_slice());
    input[128..160].copy_from_slice(members.as_slice());
    input[184..192].copy_from_slice(&(f.faults() as u64).to_be_bytes());
    keccak256(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_is_the_hash_of_the_protocol_name() {
        assert_eq!(DOMAIN, keccak256(PROTOCOL));
    }

    #[test]
    fn the_bound_is_a_third_of_the_members_less_one_or_lower_when_configured() {
        let f = |n, configured| FaultBound::for_members(Some(n), configured).faults();
        assert_eq!(
            [1, 3, 4, 5, 6, 7, 50].map(|n| f(n, None)),
            [0, 0, 1, 1, 1, 2, 16]
        );
        assert_eq!(f(7, Some(1)), 1, "configured lower");
        assert_eq!(f(7, Some(5)), 2, "never above what the members allow");
        assert_eq!(
            [91, 94, 256].map(|n| f(n, None)),
            [30, 30, 30],
            "at most MAX_FAULTS"
        );
        assert_eq!(f(0, None), 0);
        assert_eq!(FaultBound::for_members(None, Some(2)).faults(), 2);
        let two = FaultBound::new(2);
        assert_eq!(
            (two.quorum(), two.commit_threshold(), two.committee_size()),
            (5, 3, 7)
        );
    }

    #[test]
    fn every_part_of_the_configuration_changes_its_digest() {
        let members = [Address::repeat_byte(1), Address::repeat_byte(2)];
        let base = Deployment::default();
        let digest = base.config_digest(&members, FaultBound::new(0));
        let reordered = [members[1], members[0]];
        assert_eq!(digest, base.config_digest(&reordered, FaultBound::new(0)));
        let variants = [
            Deployment {
                network: "other".into(),
                ..base.clone()
            }
            .config_digest(&members, FaultBound::new(0)),
            Deployment {
                chain_id: 1,
                ..base.clone()
            }
            .config_digest(&members, FaultBound::new(0)),
            Deployment {
                verifier: Address::repeat_byte(9),
                ..base.clone()
            }
            .config_digest(&members, FaultBound::new(0)),
            base.config_digest(&members[..1], FaultBound::new(0)),
            base.config_digest(&members, FaultBound::new(1)),
        ];
        for variant in variants {
            assert_ne!(variant, digest);
        }
    }

    #[test]
    fn the_digest_is_abi_encode_of_the_six_words() {
        use alloy_primitives::U256;
        let verifier = Address::repeat_byte(0xaa);
        let members = [Address::repeat_byte(2), Address::repeat_byte(1)];
        let f = FaultBound::new(3);
        let mut expected = Vec::new();
        expected.extend_from_slice(keccak256("price-oracle/v2").as_slice());
        expected.extend_from_slice(keccak256("net").as_slice());
        expected.extend_from_slice(&U256::from(5u64).to_be_bytes::<32>());
        expected.extend_from_slice(&[0u8; 12]);
        expected.extend_from_slice(verifier.as_slice());
        let mut packed = Vec::new();
        packed.extend_from_slice(members[1].as_slice());
        packed.extend_from_slice(members[0].as_slice());
        expected.extend_from_slice(keccak256(&packed).as_slice());
        expected.extend_from_slice(&U256::from(3u64).to_be_bytes::<32>());
        let deployment = Deployment {
            network: "net".into(),
            chain_id: 5,
            verifier,
            max_faults: None,
        };
        assert_eq!(deployment.config_digest(&members, f), keccak256(&expected));
    }
}
