//! The contracts (`contracts/PriceVerifier.sol` and `contracts/PriceFeed.sol`, compiled into the
//! committed artifacts) run in a real EVM (revm): reports built by `price_oracle::report` from
//! observations signed by `price_oracle::signed` verify on chain with the median every other
//! part computes, the feed keeps the newest, and every way of forging, spoiling, aging or
//! replaying a report reverts with the error that names it.
//!
//! Gas per verification and per feed update: `cargo test --test it evm::gas -- --nocapture`.

use alloy_primitives::{Address, B256, Bytes, I256, U256, b256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolConstructor, SolError, SolInterface, SolType};
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::report::{OnChainObservation, OnChainReport};
use price_oracle::signed::{EthSignature, Observation, PAIR_HASH, Round, V1_DOMAIN, price_digest};
use price_oracle::testkit;

use crate::common::evm::{
    FEED_ARTIFACT, FeedError, FeedRound, MAX_AGE, MAX_FUTURE_SKEW, PriceFeed, PriceVerifier,
    SOURCES, VERIFIER_ARTIFACT, Verified, Verifier, VerifierError, artifact, intrinsic_gas,
    verify_calldata,
};

const VECTOR_ID: u64 = 1_234_567_890_123_456;
const VECTOR_PRICE_E8: i64 = 312_456_789_000;
const VECTOR_OBSERVED_AT: u64 = 1_763_700_000;
/// A block time a few seconds after the test observations.
const BLOCK_TIME: u64 = VECTOR_OBSERVED_AT + 10;

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

fn addresses(keys: &[PrivateKeySigner]) -> Vec<Address> {
    keys.iter().map(|key| key.address()).collect()
}

/// `key`'s observation of `price_e8` at `observed_at` in round `id` of `pair`.
fn observation(
    key: &PrivateKeySigner,
    pair: Pair,
    id: u64,
    price_e8: i64,
    observed_at: u64,
) -> OnChainObservation {
    let price = UsdPrice::from_e8(price_e8).expect("a valid test price");
    // The origin is not signed: any address makes the same signature.
    // The contracts in contracts/ still take v1 reports: the v1 domain word in place of a
    // configuration digest.
    let round = Round {
        config: V1_DOMAIN,
        pair,
        id,
        origin: Address::ZERO,
    };
    let signed = testkit::signed_observation(key, round, Observation { price, observed_at });
    OnChainObservation {
        price_e8,
        observed_at,
        signature: signed.signature,
    }
}

/// An ETH/USD report in which each of `signers` observed `price_e8` at the vector's time.
fn report_of(signers: &[&PrivateKeySigner], id: u64, price_e8: i64) -> OnChainReport {
    pair_report(Pair::EthUsd, signers, id, price_e8)
}

fn pair_report(pair: Pair, signers: &[&PrivateKeySigner], id: u64, price_e8: i64) -> OnChainReport {
    OnChainReport {
        pair_hash: pair.hash(),
        id,
        observations: signers
            .iter()
            .map(|key| observation(key, pair, id, price_e8, VECTOR_OBSERVED_AT))
            .collect(),
    }
}

/// A report encoded from raw signature bytes of any length, as a careless relayer could send.
fn raw_report(report: &OnChainReport, signatures: Vec<Vec<u8>>) -> Vec<u8> {
    type Raw = (B256, u64, Vec<(I256, u64, Bytes)>);
    use alloy_sol_types::SolValue;
    let observations = report
        .observations
        .iter()
        .zip(signatures)
        .map(|(entry, signature)| {
            (
                I256::unchecked_from(entry.price_e8),
                entry.observed_at,
                Bytes::from(signature),
            )
        })
        .collect();
    let raw: Raw = (report.pair_hash, report.id, observations);
    raw.abi_encode_params()
}

/// The 3-of-5 deployment every rejection test uses at [`BLOCK_TIME`], its keys, and a valid
/// report of members 4, 0 and 2 (not in address order: stored rows are not sorted).
fn three_of_five() -> (Verifier, Vec<PrivateKeySigner>, OnChainReport) {
    let keys = keys(5);
    let mut verifier =
        Verifier::deploy_verifier(&addresses(&keys), 3).expect("a 3-of-5 verifier deploys");
    verifier.set_time(BLOCK_TIME);
    let report = report_of(&[&keys[4], &keys[0], &keys[2]], VECTOR_ID, VECTOR_PRICE_E8);
    (verifier, keys, report)
}

#[track_caller]
fn expect_revert(verifier: &mut Verifier, report: &[u8], expected: VerifierError) {
    match verifier.verify(report) {
        Ok((verified, _)) => panic!("expected {expected:?}, the report verified: {verified:?}"),
        Err(revert) => assert_eq!(
            revert.error.as_deref(),
            Some(&expected),
            "revert {} (data {})",
            revert.name,
            revert.data
        ),
    }
}

/// The error a report reverts with, which must be a `NotMember` naming no member.
#[track_caller]
fn expect_stranger(verifier: &mut Verifier, report: &[u8], members: &[Address]) {
    let revert = verifier
        .verify(report)
        .expect_err("the report must not verify");
    match revert.error.as_deref() {
        Some(VerifierError::NotMember(PriceVerifier::NotMember { signer })) => {
            assert!(!members.contains(signer), "{signer} is a member")
        }
        other => panic!("expected NotMember, got {other:?} ({})", revert.name),
    }
}

/// An artifact's ABI entries as `name(type,…)`, sorted.
fn abi_entries(artifact: &serde_json::Value) -> Vec<String> {
    let signature = |entry: &serde_json::Value| {
        let types: Vec<String> = entry["inputs"]
            .as_array()
            .expect("an ABI entry has inputs")
            .iter()
            .map(|input| {
                let kind = input["type"].as_str().expect("an input has a type");
                // A struct is written out as its tuple, as sol! does.
                match input["components"].as_array() {
                    Some(fields) if kind.starts_with("tuple") => format!(
                        "({}){}",
                        fields
                            .iter()
                            .map(|field| field["type"].as_str().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(","),
                        kind.trim_start_matches("tuple")
                    ),
                    _ => kind.to_owned(),
                }
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
    let verifier_entries: Vec<String> = VerifierError::SIGNATURES
        .iter()
        .chain(PriceVerifier::PriceVerifierCalls::SIGNATURES)
        .map(|signature| signature.to_string())
        .collect();
    let mut in_test = verifier_entries.clone();
    in_test.push(constructor(
        <PriceVerifier::constructorCall as SolConstructor>::Parameters::SOL_NAME,
    ));
    in_test.sort();
    assert_eq!(abi_entries(&artifact(VERIFIER_ARTIFACT)), in_test);

    let mut in_test: Vec<String> = verifier_entries
        .into_iter()
        .chain(FeedError::SIGNATURES.iter().map(|s| s.to_string()))
        .chain(
            PriceFeed::PriceFeedCalls::SIGNATURES
                .iter()
                .map(|s| s.to_string()),
        )
        .chain(["AnswerUpdated(int256,uint256,uint256)".to_owned()])
        .collect();
    in_test.push(constructor(
        <PriceFeed::constructorCall as SolConstructor>::Parameters::SOL_NAME,
    ));
    in_test.sort();
    assert_eq!(abi_entries(&artifact(FEED_ARTIFACT)), in_test);
}

#[test]
fn the_published_three_observation_vector_verifies_on_chain_with_its_median() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/protocol-vectors.json")).unwrap();
    let vector = &vectors["report"];
    let bytes = alloy_primitives::hex::decode(vector["abi"].as_str().unwrap()).unwrap();
    let signers: Vec<Address> = vector["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["signer"].as_str().unwrap().parse().unwrap())
        .collect();
    // The vectors' network: its configuration digest is the verifier's first digest word.
    let config: B256 = vectors["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut verifier =
        Verifier::deploy_verifier_in(config, &signers, 3).expect("a 3-of-3 verifier deploys");
    verifier.set_time(BLOCK_TIME);
    assert_eq!(verifier.domain(), config);
    assert_eq!(verifier.members(), signers);
    assert_eq!(verifier.quorum(), 3);
    assert_eq!(verifier.freshness(), (MAX_AGE, MAX_FUTURE_SKEW));
    assert!(verifier.is_member(signers[1]));
    assert!(!verifier.is_member(Address::ZERO));
    let (verified, gas) = verifier.verify(&bytes).expect("the vector verifies");
    assert_eq!(
        verified,
        Verified {
            pair: PAIR_HASH,
            id: VECTOR_ID,
            median: vector["median_e8"].as_str().unwrap().parse().unwrap(),
            oldest: vector["first_observed_at"].as_u64().unwrap(),
            newest: vector["last_observed_at"].as_u64().unwrap(),
        }
    );
    // The first observation is the single-signature vector of ARCHITECTURE.md.
    let report = OnChainReport::decode(&bytes).unwrap();
    assert_eq!(
        report.observations[0].signature.to_string(),
        vectors["observation"]["signature"]
    );
    println!("the 3-observation vector: {gas} gas");
}

#[test]
fn the_constructor_refuses_bad_member_lists_and_quorums() {
    let members = addresses(&keys(3));
    let revert = |members: &[Address], quorum: u64| {
        Verifier::deploy_verifier(members, quorum)
            .expect_err("the deployment must revert")
            .error
            .map(|error| *error)
    };
    let invalid_quorum = |quorum: u64, count: u64| {
        Some(VerifierError::InvalidQuorum(PriceVerifier::InvalidQuorum {
            quorum: U256::from(quorum),
            members: U256::from(count),
        }))
    };
    assert_eq!(revert(&members, 0), invalid_quorum(0, 3));
    assert_eq!(revert(&members, 4), invalid_quorum(4, 3));
    assert_eq!(revert(&[], 1), invalid_quorum(1, 0));
    assert_eq!(
        revert(&[members[0], Address::ZERO, members[1]], 2),
        Some(VerifierError::ZeroAddressMember(
            PriceVerifier::ZeroAddressMember {
                index: U256::from(1)
            }
        ))
    );
    assert_eq!(
        revert(&[members[0], members[1], members[0]], 2),
        Some(VerifierError::DuplicateMember(
            PriceVerifier::DuplicateMember { member: members[0] }
        ))
    );
    let mut verifier = Verifier::deploy_verifier(&members, 3).expect("quorum = members is allowed");
    assert_eq!(verifier.members(), members);
    assert_eq!(verifier.quorum(), 3);
}

#[test]
fn the_median_on_chain_is_the_one_every_other_part_computes_in_any_order() {
    let (mut verifier, keys, _) = three_of_five();
    // Five members, one of them lying by half: the value stays with the honest ones.
    let prices = [
        300_000_000_000,
        300_100_000_000,
        150_000_000_000,
        299_900_000_000,
        300_050_000_000,
    ];
    let mut observations: Vec<OnChainObservation> = keys
        .iter()
        .zip(prices)
        .zip(0..)
        .map(|((key, price), offset)| {
            observation(
                key,
                Pair::EthUsd,
                VECTOR_ID,
                price,
                VECTOR_OBSERVED_AT + offset,
            )
        })
        .collect();
    let expected =
        price_oracle::signed::median(prices.iter().map(|e8| UsdPrice::from_e8(*e8).unwrap()))
            .unwrap()
            .e8();
    assert_eq!(expected, 300_000_000_000);
    for _ in 0..5 {
        let report = OnChainReport {
            pair_hash: PAIR_HASH,
            id: VECTOR_ID,
            observations: observations.clone(),
        };
        let (verified, _) = verifier
            .verify(&report.encode())
            .expect("five members verify");
        assert_eq!(verified.median, expected);
        assert_eq!(
            (verified.oldest, verified.newest),
            (VECTOR_OBSERVED_AT, VECTOR_OBSERVED_AT + 4)
        );
        observations.rotate_left(2);
    }
    // An even count takes the upper of the two middle prices.
    observations.truncate(4);
    let report = OnChainReport {
        pair_hash: PAIR_HASH,
        id: VECTOR_ID,
        observations: observations.clone(),
    };
    let four: Vec<i64> = observations.iter().map(|entry| entry.price_e8).collect();
    let mut sorted = four.clone();
    sorted.sort_unstable();
    assert_eq!(
        verifier.verify(&report.encode()).unwrap().0.median,
        sorted[2]
    );
}

#[test]
fn every_pair_verifies_and_the_consumer_tells_them_apart() {
    // The verifier checks signatures, not which pair: the returned `pair` is the consumer's to
    // compare, and a report of one pair never passes as another's (the pair is signed).
    let (mut verifier, keys, _) = three_of_five();
    for pair in Pair::ALL {
        let report = pair_report(pair, &[&keys[1], &keys[3], &keys[0]], VECTOR_ID, 6_543_210);
        let (verified, _) = verifier
            .verify(&report.encode())
            .unwrap_or_else(|revert| panic!("{pair:?}: {revert:?}"));
        assert_eq!(verified.pair, keccak256(pair.name()));
        assert_eq!(verified.median, 6_543_210);
    }
    let btc = pair_report(
        Pair::BtcUsd,
        &[&keys[1], &keys[3], &keys[0]],
        VECTOR_ID,
        6_543_210,
    );
    let as_eth = OnChainReport {
        pair_hash: Pair::EthUsd.hash(),
        ..btc
    };
    expect_stranger(&mut verifier, &as_eth.encode(), &addresses(&keys));
}

#[test]
fn a_tampered_observation_moves_its_signer_off_the_member_list() {
    let (mut verifier, keys, report) = three_of_five();
    let members = addresses(&keys);
    let tamper = |change: fn(&mut OnChainReport)| {
        let mut tampered = report.clone();
        change(&mut tampered);
        tampered
    };
    for tampered in [
        tamper(|report| report.observations[1].price_e8 += 1),
        tamper(|report| report.observations[1].price_e8 *= -1),
        tamper(|report| report.observations[2].observed_at += 1),
        tamper(|report| report.id ^= 1),
        tamper(|report| report.pair_hash = keccak256("BTC/USD")),
    ] {
        expect_stranger(&mut verifier, &tampered.encode(), &members);
    }
}

#[test]
fn a_signature_of_another_observation_does_not_count() {
    let (mut verifier, keys, mut report) = three_of_five();
    let other = report_of(&[&keys[0]], VECTOR_ID, VECTOR_PRICE_E8 + 100);
    report.observations[1].signature = other.observations[0].signature;
    expect_stranger(&mut verifier, &report.encode(), &addresses(&keys));
}

#[test]
fn a_non_member_observation_reverts_naming_the_signer() {
    let (mut verifier, _, mut report) = three_of_five();
    let outsider = PrivateKeySigner::from_bytes(&keccak256("outsider")).unwrap();
    report.observations.push(observation(
        &outsider,
        Pair::EthUsd,
        VECTOR_ID,
        VECTOR_PRICE_E8,
        VECTOR_OBSERVED_AT,
    ));
    expect_revert(
        &mut verifier,
        &report.encode(),
        VerifierError::NotMember(PriceVerifier::NotMember {
            signer: outsider.address(),
        }),
    );
}

#[test]
fn a_repeated_signer_reverts_even_with_another_observation() {
    let (mut verifier, keys, report) = three_of_five();
    // The same observation twice, making up a quorum of three with two signers.
    let mut twice = report.clone();
    twice.observations[2] = twice.observations[0];
    let duplicate = VerifierError::DuplicateSigner(PriceVerifier::DuplicateSigner {
        signer: keys[4].address(),
    });
    expect_revert(&mut verifier, &twice.encode(), duplicate.clone());
    // A member equivocating: a second, different observation of its own.
    let mut equivocating = report.clone();
    equivocating.observations.push(observation(
        &keys[4],
        Pair::EthUsd,
        VECTOR_ID,
        1,
        VECTOR_OBSERVED_AT,
    ));
    expect_revert(&mut verifier, &equivocating.encode(), duplicate);
    // A high-s copy is caught before it could pass as a second signature of the same signer.
    let mut copy = report.clone();
    let mut copied = copy.observations[1];
    copied.signature = high_s_copy(&copied.signature);
    copy.observations.push(copied);
    expect_revert(
        &mut verifier,
        &copy.encode(),
        VerifierError::HighS(PriceVerifier::HighS {
            index: U256::from(3),
        }),
    );
}

/// The malleable twin of a signature: `s' = n − s` and the other `v`, which recovers to the
/// same signer.
fn high_s_copy(signature: &EthSignature) -> EthSignature {
    let mut bytes = *signature.as_bytes();
    let s = U256::from_be_slice(&bytes[32..64]);
    bytes[32..64].copy_from_slice(&(SECP256K1_N - s).to_be_bytes::<32>());
    bytes[64] = if bytes[64] == 27 { 28 } else { 27 };
    EthSignature::from_bytes(bytes)
}

#[test]
fn a_high_s_signature_reverts_although_ecrecover_would_accept_it() {
    let (mut verifier, keys, mut report) = three_of_five();
    let entry = report.observations[1];
    let digest = price_digest(
        V1_DOMAIN,
        Pair::EthUsd,
        report.id,
        UsdPrice::from_e8(entry.price_e8).unwrap(),
        entry.observed_at,
    );
    let copy = high_s_copy(&entry.signature);
    // The copy is a valid signature of the same key: only the contract's s check refuses it.
    let recovered = alloy_primitives::Signature::from_raw_array(copy.as_bytes())
        .unwrap()
        .recover_address_from_msg(digest.as_slice())
        .unwrap();
    assert_eq!(recovered, keys[0].address());
    report.observations[1].signature = copy;
    expect_revert(
        &mut verifier,
        &report.encode(),
        VerifierError::HighS(PriceVerifier::HighS {
            index: U256::from(1),
        }),
    );
}

#[test]
fn a_bad_v_reverts() {
    let (mut verifier, _, report) = three_of_five();
    for v in [0u8, 1, 26, 29, 255] {
        let mut bad = report.clone();
        let mut bytes = *bad.observations[2].signature.as_bytes();
        bytes[64] = v;
        bad.observations[2].signature = EthSignature::from_bytes(bytes);
        expect_revert(
            &mut verifier,
            &bad.encode(),
            VerifierError::BadV(PriceVerifier::BadV {
                index: U256::from(2),
            }),
        );
    }
}

#[test]
fn a_signature_of_the_wrong_length_reverts() {
    let (mut verifier, _, report) = three_of_five();
    let valid: Vec<Vec<u8>> = report
        .observations
        .iter()
        .map(|entry| entry.signature.as_bytes().to_vec())
        .collect();
    // The raw encoding is the report's own for valid signatures.
    assert_eq!(raw_report(&report, valid.clone()), report.encode());
    for length in [0, 64, 66, 130] {
        let mut signatures = valid.clone();
        signatures[1].resize(length, 0x1b);
        expect_revert(
            &mut verifier,
            &raw_report(&report, signatures),
            VerifierError::BadSignatureLength(PriceVerifier::BadSignatureLength {
                index: U256::from(1),
            }),
        );
    }
}

#[test]
fn a_signature_that_recovers_no_key_reverts() {
    let (mut verifier, _, mut report) = three_of_five();
    // r = 0 is no curve point: ecrecover returns the zero address.
    let mut bytes = *report.observations[0].signature.as_bytes();
    bytes[..32].fill(0);
    report.observations[0].signature = EthSignature::from_bytes(bytes);
    expect_revert(
        &mut verifier,
        &report.encode(),
        VerifierError::InvalidSignature(PriceVerifier::InvalidSignature { index: U256::ZERO }),
    );
}

#[test]
fn too_few_observations_revert_below_quorum() {
    let (mut verifier, _, mut report) = three_of_five();
    for got in [2usize, 1, 0] {
        report.observations.truncate(got);
        expect_revert(
            &mut verifier,
            &report.encode(),
            VerifierError::BelowQuorum(PriceVerifier::BelowQuorum {
                got: U256::from(got),
                need: U256::from(3),
            }),
        );
    }
}

#[test]
fn a_stale_report_and_one_from_the_future_revert_with_their_times() {
    let (mut verifier, keys, report) = three_of_five();
    let encoded = report.encode();
    // Exactly maxAge old still verifies; one second more does not.
    verifier.set_time(VECTOR_OBSERVED_AT + MAX_AGE);
    assert!(verifier.verify(&encoded).is_ok());
    verifier.set_time(VECTOR_OBSERVED_AT + MAX_AGE + 1);
    expect_revert(
        &mut verifier,
        &encoded,
        VerifierError::StaleReport(PriceVerifier::StaleReport {
            oldest: VECTOR_OBSERVED_AT,
            blockTime: U256::from(VECTOR_OBSERVED_AT + MAX_AGE + 1),
            maxAge: U256::from(MAX_AGE),
        }),
    );
    // One observation made further ahead of the block than the skew allows.
    verifier.set_time(BLOCK_TIME);
    let mut ahead = report.clone();
    let future = BLOCK_TIME + MAX_FUTURE_SKEW + 1;
    ahead.observations[2] = observation(&keys[2], Pair::EthUsd, VECTOR_ID, VECTOR_PRICE_E8, future);
    expect_revert(
        &mut verifier,
        &ahead.encode(),
        VerifierError::FutureReport(PriceVerifier::FutureReport {
            newest: future,
            blockTime: U256::from(BLOCK_TIME),
            maxFutureSkew: U256::from(MAX_FUTURE_SKEW),
        }),
    );
}

#[test]
fn bytes_that_are_no_report_revert_without_an_error_name() {
    let (mut verifier, _, report) = three_of_five();
    let encoded = report.encode();
    for junk in [&encoded[..100], &[][..], &[0xff; 64][..]] {
        let revert = verifier.verify(junk).expect_err("junk must not verify");
        assert!(revert.error.is_none(), "{}", revert.name);
        assert!(revert.data.is_empty(), "abi.decode reverts with no data");
    }
    // A uint64 field with high bits set is no uint64.
    let mut dirty = encoded.clone();
    dirty[32] = 1;
    assert!(verifier.verify(&dirty).is_err());
}

/// A feed of ETH/USD with the 3-of-5 members, at [`BLOCK_TIME`].
fn feed() -> (Verifier, Vec<PrivateKeySigner>) {
    let keys = keys(5);
    let mut feed = Verifier::deploy_feed(&addresses(&keys), 3, PAIR_HASH, "ETH / USD")
        .expect("the feed deploys");
    feed.set_time(BLOCK_TIME);
    (feed, keys)
}

#[track_caller]
fn expect_feed_revert(feed: &mut Verifier, report: &[u8], expected: FeedError) {
    let revert = feed.update(report).expect_err("the update must revert");
    assert_eq!(
        revert.feed_error.as_deref(),
        Some(&expected),
        "{}",
        revert.name
    );
}

#[test]
fn the_feed_keeps_the_newest_report_and_answers_as_a_chainlink_feed_does() {
    let (mut feed, keys) = feed();
    assert_eq!(feed.feed_info(), (8, "ETH / USD".to_owned(), 1));
    let no_data = feed.latest_round().expect_err("no round yet");
    assert_eq!(
        no_data.feed_error.as_deref(),
        Some(&FeedError::NoData(PriceFeed::NoData {}))
    );
    let signers = [&keys[0], &keys[1], &keys[2]];
    let first = report_of(&signers, VECTOR_ID, VECTOR_PRICE_E8);
    let (round, _) = feed
        .update(&first.encode())
        .expect("a fresh report updates the feed");
    assert_eq!(round, 1);
    let expected = FeedRound {
        round_id: 1,
        answer: VECTOR_PRICE_E8,
        started_at: VECTOR_OBSERVED_AT,
        updated_at: VECTOR_OBSERVED_AT,
        answered_in_round: 1,
    };
    assert_eq!(feed.latest_round(), Ok(expected));
    // The same report again, and an older one: refused.
    let not_newer = FeedError::NotNewer(PriceFeed::NotNewer {
        newest: VECTOR_OBSERVED_AT,
        held: VECTOR_OBSERVED_AT,
    });
    expect_feed_revert(&mut feed, &first.encode(), not_newer);
    let mut older = report_of(&signers, VECTOR_ID - 1, VECTOR_PRICE_E8);
    for (entry, key) in older.observations.iter_mut().zip(signers) {
        *entry = observation(key, Pair::EthUsd, VECTOR_ID - 1, 1, VECTOR_OBSERVED_AT - 5);
    }
    expect_feed_revert(
        &mut feed,
        &older.encode(),
        FeedError::NotNewer(PriceFeed::NotNewer {
            newest: VECTOR_OBSERVED_AT - 5,
            held: VECTOR_OBSERVED_AT,
        }),
    );
    // Another pair's report.
    let btc = pair_report(Pair::BtcUsd, &signers, VECTOR_ID + 1, 9_000_000_000_000);
    expect_feed_revert(
        &mut feed,
        &btc.encode(),
        FeedError::WrongPair(PriceFeed::WrongPair {
            got: Pair::BtcUsd.hash(),
            want: PAIR_HASH,
        }),
    );
    // A newer report: its median, its time range, round 2; round 1 stays readable.
    let newer = OnChainReport {
        pair_hash: PAIR_HASH,
        id: VECTOR_ID + 7,
        observations: [
            (0, 310_000_000_000),
            (3, 311_000_000_000),
            (4, 300_000_000_000),
        ]
        .iter()
        .map(|(key, price)| {
            observation(
                &keys[*key],
                Pair::EthUsd,
                VECTOR_ID + 7,
                *price,
                VECTOR_OBSERVED_AT + 3 + *key as u64,
            )
        })
        .collect(),
    };
    assert_eq!(feed.update(&newer.encode()).map(|(round, _)| round), Ok(2));
    assert_eq!(
        feed.latest_round(),
        Ok(FeedRound {
            round_id: 2,
            answer: 310_000_000_000,
            started_at: VECTOR_OBSERVED_AT + 3,
            updated_at: VECTOR_OBSERVED_AT + 7,
            answered_in_round: 2,
        })
    );
    assert_eq!(feed.round(1), Ok(expected));
    // A stale report is refused by the verifier inside the feed.
    feed.set_time(VECTOR_OBSERVED_AT + 3 * MAX_AGE);
    let late = report_of(&signers, VECTOR_ID + 9, VECTOR_PRICE_E8);
    let revert = feed.update(&late.encode()).expect_err("stale");
    assert_eq!(revert.name, "StaleReport");
}

#[test]
fn a_feed_refuses_an_answer_no_price_can_be() {
    // Members could sign any int256; the feed stores int64 prices, and positive ones only.
    let (mut feed, keys) = feed();
    let negative = OnChainReport {
        pair_hash: PAIR_HASH,
        id: VECTOR_ID,
        observations: keys[..3]
            .iter()
            .map(|key| {
                let words = (
                    V1_DOMAIN,
                    PAIR_HASH,
                    VECTOR_ID,
                    I256::MINUS_ONE,
                    VECTOR_OBSERVED_AT,
                );
                let digest = keccak256(alloy_sol_types::SolValue::abi_encode(&words));
                OnChainObservation {
                    price_e8: -1,
                    observed_at: VECTOR_OBSERVED_AT,
                    signature: EthSignature::sign(key, digest),
                }
            })
            .collect(),
    };
    expect_feed_revert(
        &mut feed,
        &negative.encode(),
        FeedError::AnswerOutOfRange(PriceFeed::AnswerOutOfRange {
            median: I256::MINUS_ONE,
        }),
    );
}

#[test]
fn gas_per_verification_and_per_feed_update() {
    let keys = keys(10);
    let members = addresses(&keys);
    let signers: Vec<&PrivateKeySigner> = keys.iter().collect();
    println!(
        "observations | report bytes | verify tx gas | intrinsic | execution | first feed update | next feed update"
    );
    let mut costs = Vec::new();
    for count in [3usize, 5, 10] {
        let report = report_of(&signers[..count], VECTOR_ID, VECTOR_PRICE_E8).encode();
        let mut verifier = Verifier::deploy_verifier(&members, 3).unwrap();
        verifier.set_time(BLOCK_TIME);
        let (_, gas) = verifier.verify(&report).unwrap();
        let intrinsic = intrinsic_gas(&verify_calldata(&report));
        let mut feed = Verifier::deploy_feed(&members, 3, PAIR_HASH, "ETH / USD").unwrap();
        feed.set_time(BLOCK_TIME);
        let (_, update) = feed.update(&report).unwrap();
        // The next update writes over slots already in use.
        let next_id = VECTOR_ID + 1;
        let next = OnChainReport {
            pair_hash: PAIR_HASH,
            id: next_id,
            observations: signers[..count]
                .iter()
                .map(|key| {
                    observation(
                        key,
                        Pair::EthUsd,
                        next_id,
                        VECTOR_PRICE_E8,
                        VECTOR_OBSERVED_AT + 5,
                    )
                })
                .collect(),
        };
        let (_, next_update) = feed.update(&next.encode()).unwrap();
        println!(
            "{count:>12} | {:>12} | {gas:>13} | {intrinsic:>9} | {:>9} | {update:>17} | {next_update:>16}",
            report.len(),
            gas - intrinsic
        );
        costs.push((gas, update));
    }
    // Each observation adds about the same: recovery, a cold member lookup, its calldata.
    assert!(costs.windows(2).all(|pair| pair[0].0 < pair[1].0));
    let (ten, ten_update) = costs[2];
    assert!(
        ten < 250_000 && ten_update < 350_000,
        "10 observations: {ten} / {ten_update}"
    );
}

#[test]
fn the_error_names_are_decoded() {
    let (mut verifier, _, mut report) = three_of_five();
    report.observations.truncate(1);
    let revert = verifier.verify(&report.encode()).unwrap_err();
    assert_eq!(revert.name, "BelowQuorum");
    assert_eq!(
        &revert.data[..4],
        PriceVerifier::BelowQuorum::SELECTOR.as_slice()
    );
    assert_eq!(
        format!("{revert:?}"),
        "BelowQuorum(BelowQuorum { got: 1, need: 3 })"
    );
    let _ = VerifierError::abi_decode(&revert.data).unwrap();
}
