//! The contracts (`contracts/PriceVerifier.sol` and `contracts/PriceFeed.sol`, compiled into the
//! committed artifacts) run in a real EVM (revm): committed reports (protocol v2) built per the
//! spec verify on chain, with the median and the time their signers committed to; the feed keeps
//! the newest; and every attack of issue 26 on the contracts — two colluders at N = 7, a
//! re-picked set, a future-dated time, a report carried to another deployment or configuration —
//! reverts with the error that names it, as does every way of spoiling a report.
//!
//! Gas per verification and per feed update: `cargo nextest run -E 'test(/evm::gas/)'
//! --no-capture`.

use alloy_primitives::{Address, B256, Bytes, U256, b256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolConstructor, SolError, SolInterface, SolType};
use price_oracle::domain::{DOMAIN, Deployment, FaultBound, members_digest};
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::signed::{
    EthSignature, REPORT_TAG, Report, Round, SignedObservation, observations_digest, report_digest,
};

use crate::common::evm::{
    CHAIN_ID, Chain, CommittedReport, Config, FEED_ARTIFACT, FeedError, FeedRound, MAX_AGE,
    MAX_FUTURE_SKEW, NETWORK_NAME, OWNER, PriceFeed, PriceVerifier, RELAYER, Revert, SOURCES,
    VERIFIER_ARTIFACT, Verified, VerifierArgs, VerifierError, artifact, intrinsic_gas,
    observation_of, verify_calldata,
};

const ID: u64 = 1_234_567_890_123_456;
const PRICE_E8: i64 = 300_000_000_000;
/// The block time of the tests; observations are a few seconds older.
const NOW: u64 = 1_763_700_010;
const OBSERVED_AT: u64 = NOW - 10;

/// The secp256k1 group order.
const SECP256K1_N: U256 = U256::from_be_bytes(
    b256!("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").0,
);

/// Deterministic member keys, so that signatures, calldata and gas are the same on every run.
fn keys(count: usize) -> Vec<PrivateKeySigner> {
    (0..count)
        .map(|index| {
            PrivateKeySigner::from_bytes(&keccak256(format!("evm test member {index}")))
                .expect("a keccak hash is a valid secp256k1 key")
        })
        .collect()
}

fn stranger(label: &str) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(label)).expect("a keccak hash is a valid key")
}

/// A network of `n` members with fault bound `f` on chain [`CHAIN_ID`] at [`NOW`]: its
/// verifier, an ETH/USD feed on it, the member keys (in key order, not address order) and the
/// configuration digest the members sign under.
struct Net {
    chain: Chain,
    verifier: Address,
    feed: Address,
    keys: Vec<PrivateKeySigner>,
    f: u64,
    config: B256,
}

impl Net {
    fn new(n: usize, f: u64) -> Self {
        Self::on(Chain::new(CHAIN_ID), keys(n), f)
    }

    fn on(mut chain: Chain, keys: Vec<PrivateKeySigner>, f: u64) -> Self {
        chain.set_time(NOW);
        let members: Vec<Address> = keys.iter().map(|key| key.address()).collect();
        let verifier = chain
            .deploy_verifier(&VerifierArgs::new(&members, f))
            .unwrap_or_else(|revert| panic!("the verifier deploys: {revert:?}"));
        let feed = chain
            .deploy_feed(verifier, Pair::EthUsd.hash(), "ETH / USD")
            .unwrap_or_else(|revert| panic!("the feed deploys: {revert:?}"));
        let config = chain.config(verifier).digest;
        Self {
            chain,
            verifier,
            feed,
            keys,
            f,
            config,
        }
    }

    fn members(&self) -> Vec<Address> {
        self.keys.iter().map(|key| key.address()).collect()
    }

    /// Member `index`'s observation.
    fn observation(&self, index: usize, price_e8: i64, observed_at: u64) -> SignedObservation {
        observation_of(self.keys[index].address(), price_e8, observed_at)
    }

    /// The keys of members `indexes`.
    fn signers(&self, indexes: impl IntoIterator<Item = usize>) -> Vec<&PrivateKeySigner> {
        indexes.into_iter().map(|index| &self.keys[index]).collect()
    }

    /// The f+1 signers of an honest report: the first f+1 members.
    fn quorum_signers(&self) -> Vec<&PrivateKeySigner> {
        self.signers(0..self.quorum())
    }

    /// f+1.
    fn quorum(&self) -> usize {
        usize::try_from(self.f + 1).unwrap()
    }

    /// 2f+1.
    fn min_observations(&self) -> usize {
        usize::try_from(2 * self.f + 1).unwrap()
    }

    /// An honest report of round `id`: the first 2f+1 members observing `price_e8` at
    /// `observed_at`, committed and signed by the first f+1.
    fn report(&self, id: u64, price_e8: i64, observed_at: u64) -> CommittedReport {
        let observations: Vec<SignedObservation> = (0..self.min_observations())
            .map(|index| self.observation(index, price_e8, observed_at))
            .collect();
        self.commit(id, &observations)
            .signed_by(&self.quorum_signers())
    }

    /// `observations` committed as ETH/USD round `id` under the network's configuration.
    fn commit(&self, id: u64, observations: &[SignedObservation]) -> CommittedReport {
        CommittedReport::commit(self.config, Pair::EthUsd, id, observations)
    }

    fn verify(&mut self, report: &CommittedReport) -> Result<(Verified, u64), Revert> {
        self.chain.verify(self.verifier, &report.encode())
    }

    fn update(&mut self, report: &CommittedReport) -> Result<(u64, u64), Revert> {
        self.chain.update(self.feed, &report.encode())
    }
}

/// The nodes' settings (`--network-name`, `--chain-id`, `--verifier`) of a network whose
/// verifier is `verifier` on [`CHAIN_ID`]: their configuration digest is the contract's.
fn nodes_of(verifier: Address) -> Deployment {
    Deployment {
        network: NETWORK_NAME.to_owned(),
        chain_id: CHAIN_ID,
        verifier,
        max_faults: None,
    }
}

/// A report's digest built by hand from the spec's words (docs/on-chain.md), not by the crate:
/// `keccak256(abi.encode(config, keccak256("report"), pair, id, median, observedAt, count,
/// observations))`, 256 bytes. It also digests what the crate's types cannot hold (a median
/// that is no price), as colluders may sign one.
fn spec_digest(report: &CommittedReport) -> B256 {
    let mut words = Vec::new();
    for word in [
        report.config,
        keccak256("report"),
        report.pair.hash(),
        B256::from(U256::from(report.id)),
        B256::from(alloy_primitives::I256::unchecked_from(report.median).to_be_bytes::<32>()),
        B256::from(U256::from(report.observed_at)),
        B256::from(U256::from(report.count)),
        report.observations,
    ] {
        words.extend_from_slice(word.as_slice());
    }
    assert_eq!(words.len(), 256);
    keccak256(&words)
}

/// The verifier's error of a revert.
#[track_caller]
fn error_of(result: Result<impl std::fmt::Debug, Revert>) -> VerifierError {
    match result {
        Ok(accepted) => panic!("expected a revert, got {accepted:?}"),
        Err(revert) => match revert.error {
            Some(error) => *error,
            None => panic!("not a verifier error: {revert:?}"),
        },
    }
}

/// The feed's error of a revert.
#[track_caller]
fn feed_error_of(result: Result<impl std::fmt::Debug, Revert>) -> FeedError {
    match result {
        Ok(accepted) => panic!("expected a revert, got {accepted:?}"),
        Err(revert) => match revert.feed_error {
            Some(error) => *error,
            None => panic!("not a feed error: {revert:?}"),
        },
    }
}

/// A `NotMember` naming no member: what a signature over other bytes recovers to.
#[track_caller]
fn assert_stranger(error: VerifierError, members: &[Address]) {
    match error {
        VerifierError::NotMember(PriceVerifier::NotMember { signer }) => {
            assert!(!members.contains(&signer), "{signer} is a member")
        }
        other => panic!("expected NotMember, got {other:?}"),
    }
}

fn config_mismatch(got: B256, want: B256) -> VerifierError {
    VerifierError::ConfigMismatch(PriceVerifier::ConfigMismatch { got, want })
}

/// An artifact's ABI entries as `name(type,…)`, sorted.
fn abi_entries(artifact: &serde_json::Value) -> Vec<String> {
    let signature = |entry: &serde_json::Value| {
        let types: Vec<String> = entry["inputs"]
            .as_array()
            .expect("an ABI entry has inputs")
            .iter()
            .map(|input| {
                input["type"]
                    .as_str()
                    .expect("an input has a type")
                    .to_owned()
            })
            .collect();
        format!(
            "{}({})",
            entry["name"].as_str().unwrap_or("constructor"),
            types.join(",")
        )
    };
    let mut entries: Vec<String> = artifact["abi"]
        .as_array()
        .expect("the artifact has an ABI array")
        .iter()
        .map(signature)
        .collect();
    entries.sort();
    entries
}

#[test]
fn the_artifacts_are_compiled_from_the_committed_sources_and_match_the_test_abi() {
    for text in [VERIFIER_ARTIFACT, FEED_ARTIFACT] {
        let artifact = artifact(text);
        for (name, source) in SOURCES {
            // SHA-256 by the EVM's own precompile: no other SHA-256 in the dependency tree.
            let sha256 = revm::precompile::hash::sha256_run(source.as_bytes(), u64::MAX)
                .expect("sha256 runs")
                .bytes;
            assert_eq!(
                artifact["sourceSha256"][name].as_str(),
                Some(alloy_primitives::hex::encode(&sha256).as_str()),
                "the artifacts are stale: run scripts/compile-contract.sh"
            );
            let version = artifact["solcVersion"]
                .as_str()
                .and_then(|version| version.split('+').next())
                .expect("the artifact names its solc version");
            assert!(source.contains(&format!("pragma solidity ={version};")));
        }
        assert!(text.ends_with('\n'));
    }

    // The hand-written ABIs of tests/it/common/evm.rs are the artifacts', entry for entry.
    let constructor = |parameters: &str| {
        format!(
            "constructor({})",
            parameters.trim_start_matches('(').trim_end_matches(')')
        )
    };
    let mut in_test: Vec<String> = VerifierError::SIGNATURES
        .iter()
        .chain(PriceVerifier::PriceVerifierCalls::SIGNATURES)
        .chain(PriceVerifier::PriceVerifierEvents::SIGNATURES)
        .map(|signature| signature.to_string())
        .collect();
    in_test.push(constructor(
        <PriceVerifier::constructorCall as SolConstructor>::Parameters::SOL_NAME,
    ));
    in_test.sort();
    assert_eq!(abi_entries(&artifact(VERIFIER_ARTIFACT)), in_test);

    let mut in_test: Vec<String> = FeedError::SIGNATURES
        .iter()
        .chain(PriceFeed::PriceFeedCalls::SIGNATURES)
        .chain(PriceFeed::PriceFeedEvents::SIGNATURES)
        .map(|signature| signature.to_string())
        .collect();
    in_test.push(constructor(
        <PriceFeed::constructorCall as SolConstructor>::Parameters::SOL_NAME,
    ));
    in_test.sort();
    assert_eq!(abi_entries(&artifact(FEED_ARTIFACT)), in_test);
}

#[test]
fn the_configuration_digest_on_chain_is_the_specs() {
    let mut net = Net::new(7, 2);
    let (domain_on_chain, report_on_chain, max_members, network, max_age, skew) =
        net.chain.constants(net.verifier);
    assert_eq!(domain_on_chain, DOMAIN);
    assert_eq!(domain_on_chain, keccak256("price-oracle/v2"));
    assert_eq!(report_on_chain, REPORT_TAG);
    assert_eq!(report_on_chain, keccak256("report"));
    assert_eq!(max_members, 256);
    assert_eq!(network, keccak256(NETWORK_NAME));
    assert_eq!((max_age, skew), (MAX_AGE, MAX_FUTURE_SKEW));
    let mut ascending = net.members();
    ascending.sort_unstable();
    assert_ne!(
        ascending,
        net.members(),
        "the keys are not in address order"
    );
    assert_eq!(
        net.chain.config(net.verifier),
        Config {
            digest: nodes_of(net.verifier).config_digest(&net.members(), FaultBound::new(2)),
            count: 1,
            f: 2,
            members: ascending.clone(),
        }
    );
    // Byte for byte: MEMBERS packs 20 bytes per member, not abi.encode's 32.
    let packed: Vec<u8> = ascending.iter().flat_map(|a| a.0.0).collect();
    assert_eq!(packed.len(), 140);
    assert_eq!(members_digest(&net.members()), keccak256(&packed));
    let mut words = Vec::new();
    for word in [
        keccak256("price-oracle/v2"),
        network,
        B256::from(U256::from(CHAIN_ID)),
        net.verifier.into_word(),
        keccak256(&packed),
        B256::from(U256::from(2)),
    ] {
        words.extend_from_slice(word.as_slice());
    }
    assert_eq!(net.config, keccak256(&words));
    assert_eq!(net.chain.owners(net.verifier), (OWNER, Address::ZERO));
    assert!(net.chain.is_member(net.verifier, net.members()[6]));
    assert!(!net.chain.is_member(net.verifier, RELAYER));
    assert!(!net.chain.is_member(net.verifier, Address::ZERO));
    assert_eq!(
        net.chain.feed_info(net.feed),
        (
            net.verifier,
            Pair::EthUsd.hash(),
            8,
            "ETH / USD".to_owned(),
            2
        )
    );
}

#[test]
fn the_report_digest_is_the_specs_word_for_word() {
    let net = Net::new(4, 1);
    let observations = [
        net.observation(2, 300_100_000_000, OBSERVED_AT + 2),
        net.observation(0, 299_900_000_000, OBSERVED_AT),
        net.observation(1, 5, OBSERVED_AT + 1),
    ];
    let report = net.commit(ID, &observations);
    assert_eq!(
        (report.median, report.observed_at, report.count),
        (299_900_000_000, OBSERVED_AT + 1, 3)
    );
    let mut sorted = observations;
    sorted.sort_by_key(|entry| entry.signer);
    let mut set = Vec::new();
    for entry in sorted {
        set.extend_from_slice(entry.signer.into_word().as_slice());
        set.extend_from_slice(B256::from(U256::from(entry.observation.price.e8())).as_slice());
        set.extend_from_slice(B256::from(U256::from(entry.observation.observed_at)).as_slice());
    }
    assert_eq!(set.len(), 288);
    assert_eq!(report.observations, keccak256(&set));
    assert_eq!(observations_digest(&observations), keccak256(&set));
    let mut words = Vec::new();
    for word in [
        net.config,
        keccak256("report"),
        Pair::EthUsd.hash(),
        B256::from(U256::from(ID)),
        B256::from(U256::from(299_900_000_000u64)),
        B256::from(U256::from(OBSERVED_AT + 1)),
        B256::from(U256::from(3)),
        keccak256(&set),
    ] {
        words.extend_from_slice(word.as_slice());
    }
    assert_eq!(report.digest(), keccak256(&words));
    assert_eq!(spec_digest(&report), keccak256(&words));
    let round = Round {
        config: net.config,
        pair: Pair::EthUsd,
        id: ID,
        origin: net.keys[3].address(),
    };
    assert_eq!(
        report_digest(
            round,
            UsdPrice::from_e8(299_900_000_000).unwrap(),
            OBSERVED_AT + 1,
            3,
            keccak256(&set)
        ),
        keccak256(&words)
    );
    // A node's report of the same round and observations: the origin is not committed to.
    let nodes = Report {
        round,
        observations: observations.to_vec(),
        commits: Vec::new(),
    };
    assert_eq!(nodes.digest(), Some(keccak256(&words)));
}

#[test]
fn a_report_of_2f_plus_1_observations_signed_by_f_plus_1_members_verifies_at_any_f() {
    for (n, f) in [(4, 1), (7, 2), (10, 3), (11, 3)] {
        let mut net = Net::new(n, f);
        // Five spread prices and times: the contract returns the median of each, as committed.
        let observations: Vec<SignedObservation> = (0..net.min_observations())
            .map(|index| {
                let offset = i64::try_from(index).unwrap();
                net.observation(
                    index,
                    PRICE_E8 + (offset - 1) * 7_000_000,
                    OBSERVED_AT - 3 * u64::try_from(index).unwrap(),
                )
            })
            .collect();
        // The last f+1 members sign, in reverse key order: any f+1, in any order.
        let signers: Vec<&PrivateKeySigner> = net.keys.iter().rev().take(net.quorum()).collect();
        let report = net.commit(ID, &observations).signed_by(&signers);
        let (verified, gas) = net.verify(&report).unwrap_or_else(|revert| {
            panic!("n = {n}, f = {f}: {revert:?}");
        });
        assert_eq!(
            verified,
            Verified {
                pair: Pair::EthUsd.hash(),
                id: ID,
                median: report.median,
                observed_at: report.observed_at,
            }
        );
        let mut prices: Vec<i64> = observations
            .iter()
            .map(|entry| entry.observation.price.e8())
            .collect();
        prices.sort_unstable();
        assert_eq!(verified.median, prices[prices.len() / 2]);
        println!("n = {n}, f = {f}: verifies for {gas} gas");
        // Every signature present is checked: one more valid one verifies, one more bad one
        // reverts although f+1 good ones are there.
        let extra = report.clone().signed_by(&net.signers([0]));
        assert!(net.verify(&extra).is_ok());
        let mut spoiled = report.clone();
        spoiled.signatures.push(Bytes::from(vec![0u8; 65]));
        assert_eq!(
            error_of(net.verify(&spoiled)),
            VerifierError::BadV(PriceVerifier::BadV {
                index: U256::from(net.quorum())
            })
        );
    }
}

/// Issue 26, "Why" 1, at N = 7 with f = 2: two colluding members, whatever report they make up
/// and whoever submits it, get nothing accepted. (The old contract accepted `[honest 3000, liar
/// 1.00, liar 1.00]` from a non-member account and the feed answered 1.00.)
#[test]
fn two_colluders_at_n7_f2_get_no_report_accepted_even_through_a_relayer() {
    let mut net = Net::new(7, 2);
    let (a, b) = (5, 6);
    let lie = 100_000_000;
    // The old attack: one honest observation of a fresh round and the two lies under it.
    let old_set = [
        net.observation(0, PRICE_E8, OBSERVED_AT),
        net.observation(a, lie, OBSERVED_AT),
        net.observation(b, lie, OBSERVED_AT),
    ];
    let keys = net.keys.clone();
    let signers = [&keys[a], &keys[b]];
    let three = net.commit(ID, &old_set).signed_by(&signers);
    assert_eq!(three.median, lie);
    assert_eq!(
        error_of(net.update(&three)),
        VerifierError::TooFewObservations(PriceVerifier::TooFewObservations {
            count: 3,
            need: U256::from(5)
        })
    );
    // A made-up set of 2f+1 = 5 (they can commit to any set: nothing on chain sees it), signed
    // by both: two signatures are not f+1 = 3.
    let made_up: Vec<SignedObservation> = (2..7)
        .map(|index| net.observation(index, lie, OBSERVED_AT))
        .collect();
    let two = net.commit(ID, &made_up).signed_by(&signers);
    let too_few = VerifierError::TooFewSignatures(PriceVerifier::TooFewSignatures {
        got: U256::from(2),
        need: U256::from(3),
    });
    assert_eq!(error_of(net.update(&two)), too_few);
    assert_eq!(error_of(net.verify(&two)), too_few);
    // A third signature from anyone who is no member does not count.
    let outsider = stranger("outsider");
    let with_outsider = two.clone().signed_by(&[&outsider]);
    assert_eq!(
        error_of(net.update(&with_outsider)),
        VerifierError::NotMember(PriceVerifier::NotMember {
            signer: outsider.address()
        })
    );
    // Nor one of theirs twice, nor its malleable twin, nor a signature of another report.
    let mut twice = two.clone();
    twice.signatures.push(twice.signatures[0].clone());
    assert_eq!(
        error_of(net.update(&twice)),
        VerifierError::DuplicateSigner(PriceVerifier::DuplicateSigner {
            signer: net.keys[a].address()
        })
    );
    let mut twin = two.clone();
    twin.signatures.push(high_s_copy(&twin.signatures[1]));
    assert_eq!(
        error_of(net.update(&twin)),
        VerifierError::HighS(PriceVerifier::HighS {
            index: U256::from(2)
        })
    );
    // An honest member's signature of the honest report of the same round.
    let honest = net.report(ID, PRICE_E8, OBSERVED_AT);
    let mut borrowed = two.clone();
    borrowed.signatures.push(honest.signatures[0].clone());
    assert_stranger(error_of(net.update(&borrowed)), &net.members());
    // Nothing reached the feed; the honest report does.
    assert_eq!(
        feed_error_of(net.chain.latest_round(net.feed)),
        FeedError::NoData(PriceFeed::NoData {})
    );
    net.update(&honest)
        .expect("the honest report updates the feed");
    assert_eq!(net.chain.latest_round(net.feed).unwrap().answer, PRICE_E8);
}

/// Issue 26, "Why" 2: whoever relays cannot re-pick the set. A report's f+1 signatures are over
/// its observations' digest, median, time and count: any of them changed after signing, or
/// signatures of two different sets combined, leaves signatures over other bytes.
#[test]
fn a_report_whose_set_is_re_picked_after_signing_is_refused() {
    let mut net = Net::new(7, 2);
    // Seven observations; two members (5 and 6) observe low.
    let low = PRICE_E8 - 20_000_000_000;
    let all: Vec<SignedObservation> = (0..7)
        .map(|index| {
            let price = if index >= 5 {
                low
            } else {
                PRICE_E8 + 1_000 * index as i64
            };
            net.observation(index, price, OBSERVED_AT + index as u64)
        })
        .collect();
    let report = net.commit(ID, &all).signed_by(&net.quorum_signers());
    assert!(net.verify(&report).is_ok());
    // The relayer keeps the five that suit it (dropping honest 3 and 4) and recomputes the
    // median, time, count and digest of that subset honestly: the signatures do not cover it.
    let subset: Vec<SignedObservation> = [0, 1, 2, 5, 6].iter().map(|&i| all[i]).collect();
    let re_picked = net.commit(ID, &subset);
    assert_ne!(re_picked.median, report.median);
    let mut moved = report.clone();
    moved.median = re_picked.median;
    moved.observed_at = re_picked.observed_at;
    moved.count = re_picked.count;
    moved.observations = re_picked.observations;
    assert_stranger(error_of(net.verify(&moved)), &net.members());
    // Each field on its own.
    let tamper = |change: &dyn Fn(&mut CommittedReport)| {
        let mut tampered = report.clone();
        change(&mut tampered);
        tampered
    };
    for tampered in [
        tamper(&|r| r.median = low),
        tamper(&|r| r.median += 1),
        tamper(&|r| r.observations = re_picked.observations),
        tamper(&|r| r.count = 5),
        tamper(&|r| r.count = 8),
        tamper(&|r| r.observed_at -= 1),
        tamper(&|r| r.id ^= 1),
        tamper(&|r| r.pair = Pair::BtcUsd),
    ] {
        assert_stranger(error_of(net.verify(&tampered)), &net.members());
    }
    // Two signers of the full set and one of the subset: f+1 signatures, but not over one report.
    let mut mixed = re_picked.clone().signed_by(&net.signers([2]));
    mixed
        .signatures
        .splice(0..0, report.signatures[..2].iter().cloned());
    mixed.median = report.median;
    mixed.observed_at = report.observed_at;
    mixed.count = report.count;
    mixed.observations = report.observations;
    assert_stranger(error_of(net.verify(&mixed)), &net.members());
}

/// Issue 26, "Why" 5: a report's time is the median of its observations' times, so one
/// observation dated a minute ahead (inside the old `maxFutureSkew`) neither pins the feed nor
/// puts `updatedAt` ahead of the block. (On the old contract `updatedAt` was the newest
/// observation: honest updates reverted `NotNewer` and `block.timestamp - updatedAt`
/// underflowed.)
#[test]
fn one_future_dated_observation_cannot_pin_the_feed() {
    let mut net = Net::new(7, 2);
    let ahead = NOW + MAX_FUTURE_SKEW;
    let observations: Vec<SignedObservation> = (0..5)
        .map(|index| {
            let at = if index == 4 {
                ahead
            } else {
                OBSERVED_AT - index as u64
            };
            net.observation(index, PRICE_E8, at)
        })
        .collect();
    let pinning = net
        .commit(ID, &observations)
        .signed_by(&net.quorum_signers());
    assert_eq!(pinning.observed_at, OBSERVED_AT - 1, "the median time");
    net.update(&pinning).expect("the report is fresh");
    let held = net.chain.latest_round(net.feed).unwrap();
    assert_eq!(held.updated_at, OBSERVED_AT - 1);
    assert!(held.updated_at <= net.chain.time());
    // Every later honest report goes through, a second apart.
    for step in 1..=30u64 {
        net.chain.set_time(NOW + step);
        let honest = net.report(
            ID + step,
            PRICE_E8 + i64::try_from(step).unwrap(),
            NOW + step - 5,
        );
        net.update(&honest)
            .unwrap_or_else(|revert| panic!("honest update {step}: {revert:?}"));
        let round = net.chain.latest_round(net.feed).unwrap();
        assert_eq!(round.updated_at, NOW + step - 5);
        // What a consumer computes: never below zero.
        assert!(net.chain.time().checked_sub(round.updated_at).is_some());
    }
}

/// A report whose time — the median, so f+1 observations — lies ahead of the block is refused
/// beyond `maxFutureSkew` and capped at the block time within it; a stale one is refused.
#[test]
fn a_report_from_the_future_is_refused_and_updated_at_never_passes_the_block() {
    let mut net = Net::new(7, 2);
    let too_far = net.report(ID, PRICE_E8, NOW + MAX_FUTURE_SKEW + 1);
    let future = VerifierError::FutureReport(PriceVerifier::FutureReport {
        observedAt: NOW + MAX_FUTURE_SKEW + 1,
        blockTime: U256::from(NOW),
        maxFutureSkew: U256::from(MAX_FUTURE_SKEW),
    });
    assert_eq!(error_of(net.verify(&too_far)), future);
    assert_eq!(error_of(net.update(&too_far)), future);
    // Within the skew (honest clocks a minute fast): accepted, `updatedAt` and `startedAt` the
    // block time, the report's own time kept beside it.
    let fast = net.report(ID, PRICE_E8, NOW + MAX_FUTURE_SKEW);
    let (round, _) = net.update(&fast).expect("within the skew");
    assert_eq!(
        net.chain.latest_round(net.feed).unwrap(),
        FeedRound {
            round_id: round,
            answer: PRICE_E8,
            started_at: NOW,
            updated_at: NOW,
            answered_in_round: round,
        }
    );
    assert_eq!(
        net.chain.report_of(net.feed, round),
        Ok((ID, NOW + MAX_FUTURE_SKEW))
    );
    // It holds the feed for at most the skew, and only because f+1 clocks ran that fast: a
    // report of an earlier time is not newer until the block passes it.
    net.chain.set_time(NOW + 30);
    let honest = net.report(ID + 1, PRICE_E8, NOW + 25);
    assert_eq!(
        feed_error_of(net.update(&honest)),
        FeedError::NotNewer(PriceFeed::NotNewer {
            observedAt: NOW + 25,
            held: NOW + MAX_FUTURE_SKEW,
        })
    );
    net.chain.set_time(NOW + MAX_FUTURE_SKEW + 5);
    let honest = net.report(ID + 2, PRICE_E8, NOW + MAX_FUTURE_SKEW + 1);
    assert_eq!(net.update(&honest).map(|(round, _)| round), Ok(round + 1));
    // Stale: exactly maxAge old still verifies, one second more does not.
    let report = net.report(ID + 3, PRICE_E8, OBSERVED_AT);
    net.chain.set_time(OBSERVED_AT + MAX_AGE);
    assert!(net.verify(&report).is_ok());
    net.chain.set_time(OBSERVED_AT + MAX_AGE + 1);
    assert_eq!(
        error_of(net.verify(&report)),
        VerifierError::StaleReport(PriceVerifier::StaleReport {
            observedAt: OBSERVED_AT,
            blockTime: U256::from(OBSERVED_AT + MAX_AGE + 1),
            maxAge: U256::from(MAX_AGE),
        })
    );
}

/// Issue 26, "Why" 6: a report carries its configuration digest, which names the network, the
/// chain, the verifier and the member set with f. The same members' report is refused by a
/// second verifier (and a feed on it), by the same verifier deployed on another chain, and by
/// one of a network of another name with the same keys. (The old contract's digest named none
/// of these: a report pushed to one feed was accepted unchanged by a second feed and verifier.)
#[test]
fn a_report_for_one_deployment_is_refused_by_any_other() {
    let mut net = Net::new(7, 2);
    let report = net.report(ID, PRICE_E8, OBSERVED_AT);
    net.update(&report).expect("its own deployment takes it");

    // Another verifier of the same members and f on the same chain, and a feed on it.
    let members = net.members();
    let second = net
        .chain
        .deploy_verifier(&VerifierArgs::new(&members, 2))
        .unwrap();
    assert_ne!(second, net.verifier);
    let second_config = net.chain.config(second).digest;
    let second_feed = net
        .chain
        .deploy_feed(second, Pair::EthUsd.hash(), "ETH / USD")
        .unwrap();
    assert_eq!(
        error_of(net.chain.verify(second, &report.encode())),
        config_mismatch(net.config, second_config)
    );
    assert_eq!(
        error_of(net.chain.update(second_feed, &report.encode())),
        config_mismatch(net.config, second_config)
    );

    // The same deployment on another chain: the same deployer and nonce give the same
    // addresses, so only the chain id tells the configurations apart.
    let mut other_chain = Net::on(Chain::new(CHAIN_ID + 9), keys(7), 2);
    assert_eq!(
        (other_chain.verifier, other_chain.feed),
        (net.verifier, net.feed)
    );
    assert_eq!(
        error_of(other_chain.update(&report)),
        config_mismatch(net.config, other_chain.config)
    );

    // A development network run with the same keys, on the same chain at the same address.
    let mut chain = Chain::new(CHAIN_ID);
    chain.set_time(NOW);
    let mut dev = VerifierArgs::new(&members, 2);
    dev.network = keccak256("price-oracle-dev");
    let dev_verifier = chain.deploy_verifier(&dev).unwrap();
    assert_eq!(dev_verifier, net.verifier);
    let dev_config = chain.config(dev_verifier).digest;
    assert_eq!(
        dev_config,
        Deployment {
            network: "price-oracle-dev".to_owned(),
            ..nodes_of(dev_verifier)
        }
        .config_digest(&members, FaultBound::new(2))
    );
    assert_eq!(
        error_of(chain.verify(dev_verifier, &report.encode())),
        config_mismatch(net.config, dev_config)
    );
    // And the other way round: the development network's report is no production report.
    let mut dev_report = report.clone();
    dev_report.config = dev_config;
    let dev_report = CommittedReport {
        signatures: Vec::new(),
        ..dev_report
    }
    .signed_by(&net.quorum_signers());
    assert!(chain.verify(dev_verifier, &dev_report.encode()).is_ok());
    assert_eq!(
        error_of(net.verify(&dev_report)),
        config_mismatch(dev_config, net.config)
    );
    // A report claiming the production config with the development signatures: other bytes.
    let mut relabelled = dev_report.clone();
    relabelled.config = net.config;
    assert_stranger(error_of(net.verify(&relabelled)), &members);
}

/// The owner rotates members and f with `setConfig`, with the event; reports of the previous
/// configuration are refused at once, a removed member counts no more, and every feed on the
/// verifier follows.
#[test]
fn set_config_rotates_members_and_f_and_refuses_the_previous_configurations_reports() {
    let mut net = Net::new(7, 2);
    let before = net.report(ID, PRICE_E8, OBSERVED_AT);
    net.update(&before)
        .expect("the first configuration's report");

    // Members 5 and 6 leave, two new ones join; f stays 2.
    let joining = [stranger("joining 1"), stranger("joining 2")];
    let mut members: Vec<Address> = net.members()[..5]
        .iter()
        .copied()
        .chain(joining.iter().map(|key| key.address()))
        .collect();
    members.sort_unstable();
    let event = net
        .chain
        .set_config(net.verifier, OWNER, &members, 2)
        .expect("the owner sets a configuration");
    let rotated = nodes_of(net.verifier).config_digest(&members, FaultBound::new(2));
    assert_eq!(
        event,
        PriceVerifier::ConfigSet {
            previousConfigDigest: net.config,
            configDigest: rotated,
            configCount: 2,
            members: members.clone(),
            f: 2,
        }
    );
    assert_eq!(
        net.chain.config(net.verifier),
        Config {
            digest: rotated,
            count: 2,
            f: 2,
            members: members.clone(),
        }
    );
    assert!(!net.chain.is_member(net.verifier, net.keys[6].address()));
    assert!(net.chain.is_member(net.verifier, joining[1].address()));

    // The previous configuration's report, even a fresh one, is refused by verifier and feed.
    let old = net.report(ID + 1, PRICE_E8, OBSERVED_AT + 1);
    assert_eq!(
        error_of(net.verify(&old)),
        config_mismatch(net.config, rotated)
    );
    assert_eq!(
        error_of(net.update(&old)),
        config_mismatch(net.config, rotated)
    );
    // The new configuration's report verifies; a removed member's signature does not count.
    let previous = net.config;
    net.config = rotated;
    let observations: Vec<SignedObservation> = (0..5)
        .map(|index| net.observation(index, PRICE_E8 + 1, OBSERVED_AT + 1))
        .collect();
    let unsigned = net.commit(ID + 1, &observations);
    let new = unsigned
        .clone()
        .signed_by(&[&net.keys[0], &joining[0], &joining[1]]);
    assert_eq!(net.update(&new).map(|(round, _)| round), Ok(2));
    let with_removed = unsigned.signed_by(&[&net.keys[0], &net.keys[1], &net.keys[6]]);
    assert_eq!(
        error_of(net.verify(&with_removed)),
        VerifierError::NotMember(PriceVerifier::NotMember {
            signer: net.keys[6].address()
        })
    );

    // f alone changes the digest too: f = 1 needs 3 observations and 2 signatures.
    let event = net
        .chain
        .set_config(net.verifier, OWNER, &members, 1)
        .unwrap();
    assert_eq!(event.previousConfigDigest, rotated);
    assert_eq!(event.configCount, 3);
    assert_ne!(event.configDigest, rotated);
    assert_eq!(
        error_of(net.verify(&new)),
        config_mismatch(rotated, event.configDigest)
    );
    net.config = event.configDigest;
    net.f = 1;
    let later: Vec<SignedObservation> = (0..3)
        .map(|index| net.observation(index, PRICE_E8 + 2, OBSERVED_AT + 2))
        .collect();
    let small = net
        .commit(ID + 2, &later)
        .signed_by(&[&joining[1], &net.keys[3]]);
    assert_eq!(net.update(&small).map(|(round, _)| round), Ok(3));
    // Back to the first configuration: its digest again, so its reports verify again (the
    // configuration, not its count, is what is signed).
    let event = net
        .chain
        .set_config(
            net.verifier,
            OWNER,
            &VerifierArgs::new(&net.members(), 2).members,
            2,
        )
        .unwrap();
    assert_eq!((event.configDigest, event.configCount), (previous, 4));
}

#[test]
fn set_config_is_the_owners_and_refuses_bad_member_lists() {
    let mut net = Net::new(7, 2);
    let members = VerifierArgs::new(&net.members(), 2).members;
    let not_owner = |caller| VerifierError::NotOwner(PriceVerifier::NotOwner { caller });
    for caller in [RELAYER, members[0]] {
        assert_eq!(
            error_of(net.chain.set_config(net.verifier, caller, &members, 1)),
            not_owner(caller)
        );
        assert_eq!(
            error_of(net.chain.transfer_ownership(net.verifier, caller, caller)),
            not_owner(caller)
        );
    }
    let refusal = |net: &mut Net, members: &[Address], f: u64| {
        error_of(net.chain.set_config(net.verifier, OWNER, members, f))
    };
    assert_eq!(
        refusal(&mut net, &members[..6], 2),
        VerifierError::FaultBoundTooHigh(PriceVerifier::FaultBoundTooHigh {
            f: 2,
            members: U256::from(6)
        })
    );
    assert_eq!(
        refusal(&mut net, &[], 0),
        VerifierError::FaultBoundTooHigh(PriceVerifier::FaultBoundTooHigh {
            f: 0,
            members: U256::ZERO
        })
    );
    let not_ascending = |index: usize| {
        VerifierError::MembersNotAscending(PriceVerifier::MembersNotAscending {
            index: U256::from(index),
        })
    };
    let mut descending = members.clone();
    descending.reverse();
    assert_eq!(refusal(&mut net, &descending, 2), not_ascending(1));
    let mut duplicate = members.clone();
    duplicate[4] = duplicate[3];
    assert_eq!(refusal(&mut net, &duplicate, 2), not_ascending(4));
    let mut zero = members.clone();
    zero[0] = Address::ZERO;
    assert_eq!(
        refusal(&mut net, &zero, 2),
        VerifierError::ZeroAddressMember(PriceVerifier::ZeroAddressMember { index: U256::ZERO })
    );
    let many: Vec<Address> = (1..=257u64)
        .map(|index| Address::from_word(B256::from(U256::from(index))))
        .collect();
    assert_eq!(
        refusal(&mut net, &many, 1),
        VerifierError::TooManyMembers(PriceVerifier::TooManyMembers {
            members: U256::from(257),
            max: U256::from(256)
        })
    );
    // Nothing changed; the constructor refuses the same.
    assert_eq!(net.chain.config(net.verifier).count, 1);
    assert_eq!(
        error_of(net.chain.deploy_verifier(&VerifierArgs {
            members: descending,
            ..VerifierArgs::new(&members, 2)
        })),
        not_ascending(1)
    );
    assert_eq!(
        error_of(net.chain.deploy_verifier(&VerifierArgs::new(&members, 3))),
        VerifierError::FaultBoundTooHigh(PriceVerifier::FaultBoundTooHigh {
            f: 3,
            members: U256::from(7)
        })
    );
    // n = 3f + 1 exactly, and f = 0 (one signature, one observation) are configurations.
    assert!(
        net.chain
            .set_config(net.verifier, OWNER, &members, 2)
            .is_ok()
    );
    assert!(
        net.chain
            .set_config(net.verifier, OWNER, &members[..1], 0)
            .is_ok()
    );

    // Ownership moves in two steps; the old owner loses it.
    let next = Address::repeat_byte(0x0e);
    net.chain
        .transfer_ownership(net.verifier, OWNER, next)
        .unwrap();
    assert_eq!(net.chain.owners(net.verifier), (OWNER, next));
    assert_eq!(
        error_of(net.chain.set_config(net.verifier, next, &members, 2)),
        not_owner(next),
        "not before it accepts"
    );
    assert_eq!(
        error_of(net.chain.accept_ownership(net.verifier, RELAYER)),
        VerifierError::NotPendingOwner(PriceVerifier::NotPendingOwner { caller: RELAYER })
    );
    net.chain.accept_ownership(net.verifier, next).unwrap();
    assert_eq!(net.chain.owners(net.verifier), (next, Address::ZERO));
    assert_eq!(
        error_of(net.chain.set_config(net.verifier, OWNER, &members, 2)),
        not_owner(OWNER)
    );
    assert!(
        net.chain
            .set_config(net.verifier, next, &members, 2)
            .is_ok()
    );
}

/// 256 members (the bitmap's width), f = 85: the member at the last index counts, once.
#[test]
fn the_largest_configuration_verifies_with_its_last_member() {
    let mut net = Net::new(256, 85);
    let mut by_address: Vec<usize> = (0..256).collect();
    by_address.sort_by_key(|&index| net.keys[index].address());
    let observations: Vec<SignedObservation> = by_address[..171]
        .iter()
        .map(|&index| net.observation(index, PRICE_E8, OBSERVED_AT))
        .collect();
    let unsigned = net.commit(ID, &observations);
    // The 86 highest addresses: index 255 among them.
    let top = net.signers(by_address[170..].iter().copied());
    let report = unsigned.clone().signed_by(&top);
    let (_, gas) = net.verify(&report).expect("86 signatures of 256 members");
    println!("n = 256, f = 85: {gas} gas");
    let mut twice = report.clone();
    twice.signatures[0] = twice.signatures[85].clone();
    assert_eq!(
        error_of(net.verify(&twice)),
        VerifierError::DuplicateSigner(PriceVerifier::DuplicateSigner {
            signer: net.keys[by_address[255]].address()
        })
    );
}

/// The malleable twin of a signature: `s' = n − s` and the other `v`, which recovers to the
/// same signer.
fn high_s_copy(signature: &Bytes) -> Bytes {
    let mut bytes = signature.to_vec();
    let s = U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&(SECP256K1_N - s).to_be_bytes::<32>());
    bytes[64] = if bytes[64] == 27 { 28 } else { 27 };
    Bytes::from(bytes)
}

#[test]
fn a_spoiled_signature_reverts_naming_its_position() {
    let mut net = Net::new(4, 1);
    let report = net.report(ID, PRICE_E8, OBSERVED_AT);
    let spoil = |index: usize, change: &dyn Fn(&mut Vec<u8>)| {
        let mut spoiled = report.clone();
        let mut bytes = spoiled.signatures[index].to_vec();
        change(&mut bytes);
        spoiled.signatures[index] = Bytes::from(bytes);
        spoiled
    };
    let at = |index: usize| U256::from(index);
    // The high-s twin is a valid signature of the same key: only the contract's s check
    // refuses it.
    let twin = high_s_copy(&report.signatures[1]);
    let twin_bytes: [u8; 65] = twin.as_ref().try_into().unwrap();
    let recovered = alloy_primitives::Signature::from_raw_array(&twin_bytes)
        .unwrap()
        .recover_address_from_msg(report.digest().as_slice())
        .unwrap();
    assert_eq!(recovered, net.keys[1].address());
    let mut with_twin = report.clone();
    with_twin.signatures[1] = twin;
    assert_eq!(
        error_of(net.verify(&with_twin)),
        VerifierError::HighS(PriceVerifier::HighS { index: at(1) })
    );
    for v in [0u8, 1, 26, 29, 255] {
        assert_eq!(
            error_of(net.verify(&spoil(0, &|bytes| bytes[64] = v))),
            VerifierError::BadV(PriceVerifier::BadV { index: at(0) })
        );
    }
    for length in [0, 64, 66, 130] {
        assert_eq!(
            error_of(net.verify(&spoil(1, &|bytes| bytes.resize(length, 0x1b)))),
            VerifierError::BadSignatureLength(PriceVerifier::BadSignatureLength { index: at(1) })
        );
    }
    // r = 0 is no curve point: ecrecover returns the zero address.
    assert_eq!(
        error_of(net.verify(&spoil(1, &|bytes| bytes[..32].fill(0)))),
        VerifierError::InvalidSignature(PriceVerifier::InvalidSignature { index: at(1) })
    );
    // Too few, counted before any recovery.
    let mut one = report.clone();
    one.signatures.truncate(1);
    assert_eq!(
        error_of(net.verify(&one)),
        VerifierError::TooFewSignatures(PriceVerifier::TooFewSignatures {
            got: at(1),
            need: at(2)
        })
    );
}

#[test]
fn bytes_that_are_no_report_revert_without_an_error_name() {
    let mut net = Net::new(4, 1);
    let encoded = net.report(ID, PRICE_E8, OBSERVED_AT).encode();
    for junk in [&encoded[..100], &encoded[..250], &[][..], &[0xff; 64][..]] {
        let revert = net
            .chain
            .verify(net.verifier, junk)
            .expect_err("junk must not verify");
        assert!(revert.error.is_none(), "{}", revert.name);
        assert!(revert.data.is_empty(), "abi.decode reverts with no data");
    }
    // A uint64 field with high bits set is no uint64.
    let mut dirty = encoded.clone();
    dirty[64] = 1;
    assert!(net.chain.verify(net.verifier, &dirty).is_err());
}

#[test]
fn the_feed_keeps_the_newest_report_and_answers_as_a_chainlink_feed_does() {
    let mut net = Net::new(7, 2);
    assert_eq!(
        feed_error_of(net.chain.latest_round(net.feed)),
        FeedError::NoData(PriceFeed::NoData {})
    );
    let first = net.report(ID, PRICE_E8, OBSERVED_AT);
    assert_eq!(net.update(&first).map(|(round, _)| round), Ok(1));
    let expected = FeedRound {
        round_id: 1,
        answer: PRICE_E8,
        started_at: OBSERVED_AT,
        updated_at: OBSERVED_AT,
        answered_in_round: 1,
    };
    assert_eq!(net.chain.latest_round(net.feed), Ok(expected));
    // The same report again, and an older one: refused.
    assert_eq!(
        feed_error_of(net.update(&first)),
        FeedError::NotNewer(PriceFeed::NotNewer {
            observedAt: OBSERVED_AT,
            held: OBSERVED_AT
        })
    );
    let older = net.report(ID - 1, 1, OBSERVED_AT - 5);
    assert_eq!(
        feed_error_of(net.update(&older)),
        FeedError::NotNewer(PriceFeed::NotNewer {
            observedAt: OBSERVED_AT - 5,
            held: OBSERVED_AT
        })
    );
    // Another pair's report verifies, and the feed refuses it.
    let observations: Vec<SignedObservation> = (0..5)
        .map(|index| net.observation(index, 9_000_000_000_000, OBSERVED_AT + 1))
        .collect();
    let btc = CommittedReport::commit(net.config, Pair::BtcUsd, ID + 1, &observations)
        .signed_by(&net.quorum_signers());
    assert_eq!(net.verify(&btc).unwrap().0.pair, Pair::BtcUsd.hash());
    assert_eq!(
        feed_error_of(net.update(&btc)),
        FeedError::WrongPair(PriceFeed::WrongPair {
            got: Pair::BtcUsd.hash(),
            want: Pair::EthUsd.hash()
        })
    );
    // An answer no price can be: f+1 members (colluders, or a bug) committing to a median of
    // -1, which the nodes' types cannot hold, so its digest is built by hand.
    let mut negative = net.report(ID + 1, PRICE_E8, OBSERVED_AT + 1);
    negative.median = -1;
    negative.signatures.clear();
    let digest = spec_digest(&negative);
    let negative = negative.signed_over(digest, &net.quorum_signers());
    assert!(net.verify(&negative).is_ok(), "the verifier takes it");
    assert_eq!(
        feed_error_of(net.update(&negative)),
        FeedError::AnswerOutOfRange(PriceFeed::AnswerOutOfRange {
            median: alloy_primitives::I256::MINUS_ONE
        })
    );
    // A newer report: round 2 with its median and time; round 1 stays readable.
    let newer = net.report(ID + 7, 310_000_000_000, OBSERVED_AT + 3);
    assert_eq!(net.update(&newer).map(|(round, _)| round), Ok(2));
    assert_eq!(
        net.chain.latest_round(net.feed),
        Ok(FeedRound {
            round_id: 2,
            answer: 310_000_000_000,
            started_at: OBSERVED_AT + 3,
            updated_at: OBSERVED_AT + 3,
            answered_in_round: 2,
        })
    );
    assert_eq!(net.chain.round(net.feed, 1), Ok(expected));
    assert_eq!(
        net.chain.report_of(net.feed, 2),
        Ok((ID + 7, OBSERVED_AT + 3))
    );
    assert_eq!(
        feed_error_of(net.chain.round(net.feed, 3)),
        FeedError::NoData(PriceFeed::NoData {})
    );
    assert_eq!(
        feed_error_of(net.chain.report_of(net.feed, 0)),
        FeedError::NoData(PriceFeed::NoData {})
    );
    // A stale report is refused by the verifier under the feed.
    net.chain.set_time(OBSERVED_AT + 3 * MAX_AGE);
    let late = net.report(ID + 9, PRICE_E8, OBSERVED_AT + 4);
    assert_eq!(net.update(&late).unwrap_err().name, "StaleReport");
}

/// Gas of `verify` and of `update` with f+1 signatures over 2f+1 observations among 3f+1
/// members, for the table in docs/on-chain.md.
#[test]
fn gas_per_verification_and_per_feed_update() {
    println!(
        "f | members | signatures | report bytes | verify tx gas | intrinsic | execution | first update | next update"
    );
    let mut costs = Vec::new();
    for f in [1u64, 2, 3] {
        let n = usize::try_from(3 * f + 1).unwrap();
        let mut net = Net::new(n, f);
        let report = net.report(ID, PRICE_E8, OBSERVED_AT);
        let encoded = report.encode();
        let (_, verify) = net.verify(&report).unwrap();
        let intrinsic = intrinsic_gas(&verify_calldata(&encoded));
        let (_, first) = net.update(&report).unwrap();
        // The next update writes over slots already in use.
        let next = net.report(ID + 1, PRICE_E8 + 1, OBSERVED_AT + 5);
        let (_, next) = net.update(&next).unwrap();
        println!(
            "{f} | {n:>7} | {:>10} | {:>12} | {verify:>13} | {intrinsic:>9} | {:>9} | {first:>12} | {next:>11}",
            f + 1,
            encoded.len(),
            verify - intrinsic
        );
        costs.push((verify, next));
    }
    // Each f adds one signature: a recovery, a cold member lookup, its calldata.
    assert!(costs.windows(2).all(|pair| pair[0] < pair[1]));
    let (verify, next) = costs[2];
    assert!(
        verify < 80_000 && next < 100_000,
        "f = 3: verify {verify}, update {next}"
    );
}

#[test]
fn the_error_names_are_decoded() {
    let mut net = Net::new(4, 1);
    let mut report = net.report(ID, PRICE_E8, OBSERVED_AT);
    report.count = 2;
    let revert = net.verify(&report).unwrap_err();
    assert_eq!(revert.name, "TooFewObservations");
    assert_eq!(
        &revert.data[..4],
        PriceVerifier::TooFewObservations::SELECTOR.as_slice()
    );
    assert_eq!(
        format!("{revert:?}"),
        "TooFewObservations(TooFewObservations { count: 2, need: 3 })"
    );
    let _ = VerifierError::abi_decode(&revert.data).unwrap();
}

#[test]
fn a_report_s_signatures_sign_its_digest_the_eip_191_way() {
    // The signature the contract recovers is `personal_sign` of the digest's 32 bytes.
    let net = Net::new(4, 1);
    let report = net.report(ID, PRICE_E8, OBSERVED_AT);
    let signature = EthSignature::from_bytes(report.signatures[0].as_ref().try_into().unwrap());
    assert_eq!(
        signature.recover(report.digest()),
        Ok(net.keys[0].address())
    );
    let prefixed = keccak256(
        [
            b"\x19Ethereum Signed Message:\n32".as_slice(),
            report.digest().as_slice(),
        ]
        .concat(),
    );
    let raw = alloy_primitives::Signature::from_raw_array(signature.as_bytes()).unwrap();
    assert_eq!(
        raw.recover_address_from_prehash(&prefixed).unwrap(),
        net.keys[0].address()
    );
}

/// Fixed values of the v2 digests, the contract's own: a deployment of the first four test keys
/// with f = 1 by [`OWNER`] at nonce 0 on chain 1, and one report under it; `price_oracle`'s
/// digests (a node's configuration from its settings, a node's report) give the same. Any other
/// implementation of protocol v2 (a relayer's) can be checked against them.
#[test]
fn the_v2_digests_of_a_fixed_deployment() {
    let mut net = Net::new(4, 1);
    let observations = [
        net.observation(0, 312_456_789_000, OBSERVED_AT),
        net.observation(1, 312_400_000_000, OBSERVED_AT + 1),
        net.observation(2, 312_500_000_000, OBSERVED_AT - 2),
    ];
    let report = net
        .commit(ID, &observations)
        .signed_by(&net.quorum_signers());
    // Recomputed outside Rust and Solidity too (js-sha3 over the bytes of the spec): equal.
    assert_eq!(
        net.verifier,
        alloy_primitives::address!("0xa909E8B4972E9Cc4Eb95E87b22A555ABD9D907a7")
    );
    assert_eq!(
        members_digest(&net.members()),
        b256!("0x71805df7efb1c942980eb81f590982f081e8aa4579baa6cd184b95f3642a7b54")
    );
    let config = b256!("0x4211c4d1d8ee29822e82cdc2b1f9c463c3059b4e2e1c99edf46bdb207794d216");
    assert_eq!(net.config, config, "the contract's configDigest");
    assert_eq!(
        nodes_of(net.verifier).config_digest(&net.members(), FaultBound::new(1)),
        config,
        "the nodes' configuration digest with --chain-id 1 --verifier <the contract>"
    );
    assert_eq!(
        (report.median, report.observed_at, report.count),
        (312_456_789_000, OBSERVED_AT, 3)
    );
    let set = b256!("0x69a073abdd46c5aa6f87e8a16690901cba24d05190d8747c3bc2f9e86473e2b8");
    let digest = b256!("0x39bbd64145b8470097d898cbccf02c086af430450feffcec110318e57ae35455");
    assert_eq!(report.observations, set);
    assert_eq!(report.digest(), digest);
    assert_eq!(spec_digest(&report), digest, "by hand, word for word");
    // A node's report of that round, originated by member 0.
    let nodes = Report {
        round: Round {
            config,
            pair: Pair::EthUsd,
            id: ID,
            origin: net.keys[0].address(),
        },
        observations: observations.to_vec(),
        commits: Vec::new(),
    };
    assert_eq!(nodes.observations_digest(), set);
    assert_eq!(nodes.digest(), Some(digest));
    assert!(net.verify(&report).is_ok());
}

/// `price_oracle::report::OnChainReport`, what the API hands consumers, built from a node's
/// `Report` with its commits: verifies at f = 1 and 2 with f + 1 commits (and with every
/// member's), and is refused with f; a v1 or uncommitted report has no on-chain form at all.
#[test]
fn the_crates_on_chain_report_of_a_committed_report_verifies_and_one_with_too_few_commits_does_not()
{
    use price_oracle::report::{NoOnChainReport, OnChainReport};
    use price_oracle::signed::{PriceData, SignatureEntry, V1_DOMAIN};

    for (n, f) in [(4, 1), (7, 2)] {
        let mut net = Net::new(n, f);
        let round = Round {
            config: net.config,
            pair: Pair::EthUsd,
            id: ID,
            origin: net.keys[0].address(),
        };
        // 2f+1 members' own signed observations, as a node's pool holds them.
        let observations: Vec<SignedObservation> = (0..net.min_observations())
            .map(|index| {
                let observation = net
                    .observation(
                        index,
                        PRICE_E8 + i64::try_from(index).unwrap() * 1_000_000,
                        OBSERVED_AT - u64::try_from(index).unwrap(),
                    )
                    .observation;
                SignedObservation {
                    signer: net.keys[index].address(),
                    observation,
                    signature: PriceData::new(round, observation)
                        .sign(&net.keys[index])
                        .signature,
                }
            })
            .collect();
        let mut report = Report {
            round,
            observations,
            commits: Vec::new(),
        };
        assert_eq!(
            OnChainReport::try_from(&report),
            Err(NoOnChainReport::Uncommitted)
        );
        let digest = report.digest().unwrap();
        let commit = |keys: &[PrivateKeySigner]| -> Vec<SignatureEntry> {
            keys.iter()
                .rev()
                .map(|key| SignatureEntry::sign(key, digest))
                .collect()
        };
        let median = report.value().unwrap().e8();
        for committers in [net.quorum(), n] {
            report.commits = commit(&net.keys[..committers]);
            let bytes = OnChainReport::try_from(&report).unwrap().encode();
            let (verified, gas) = net
                .chain
                .verify(net.verifier, &bytes)
                .unwrap_or_else(|revert| panic!("f = {f}, {committers} commits: {revert:?}"));
            assert_eq!(
                (
                    verified.pair,
                    verified.id,
                    verified.median,
                    verified.observed_at
                ),
                (Pair::EthUsd.hash(), ID, median, report.time().unwrap())
            );
            println!("f = {f}: the crate's report with {committers} commits verifies, {gas} gas");
        }
        // f commits: refused, however genuine.
        report.commits = commit(&net.keys[..net.quorum() - 1]);
        let few = OnChainReport::try_from(&report).unwrap().encode();
        let refused = net.chain.verify(net.verifier, &few).unwrap_err();
        assert_eq!(refused.name, "TooFewSignatures", "{refused:?}");
        // The same commits over a set with one observation's price changed after they were
        // made: they sign other bytes, so they recover to strangers.
        report.commits = commit(&net.keys[..net.quorum()]);
        let mut changed = report.clone();
        changed.observations[0].observation.price = UsdPrice::from_e8(PRICE_E8 - 1).unwrap();
        let refused = net
            .chain
            .verify(
                net.verifier,
                &OnChainReport::try_from(&changed).unwrap().encode(),
            )
            .unwrap_err();
        assert_eq!(refused.name, "NotMember", "{refused:?}");
        // Under protocol v1 there is no on-chain form: the v2 verifier cannot check it.
        let v1 = Report {
            round: Round {
                config: V1_DOMAIN,
                ..round
            },
            ..report.clone()
        };
        assert_eq!(OnChainReport::try_from(&v1), Err(NoOnChainReport::V1));
    }
}
