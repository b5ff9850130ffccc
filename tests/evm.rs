//! The verifier contract (`contracts/PriceVerifier.sol`, compiled into the committed artifact
//! `contracts/PriceVerifier.json`) run in a real EVM (revm): reports built by
//! `price_oracle::report::Report` from signatures made by `price_oracle::message` verify on
//! chain, and every way of forging or spoiling one reverts with the error that names it.
//!
//! Gas per verification: `cargo test --test evm gas -- --nocapture`.

mod common;

use alloy_primitives::{Address, B256, Bytes, I256, U256, b256, keccak256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolConstructor, SolError, SolInterface, SolType, SolValue};
use common::evm::{
    ARTIFACT, PriceVerifier, SOURCE, Verified, Verifier, VerifierError, artifact, intrinsic_gas,
    verify_all, verify_calldata,
};
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::report::Report;
use price_oracle::signed::{DOMAIN_HASH, EthSignature, PAIR_HASH, price_digest};

const VECTOR_KEY: B256 =
    b256!("0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");
const VECTOR_ID: u64 = 1_234_567_890_123_456;
const VECTOR_PRICE_E8: i64 = 312_456_789_000;
const VECTOR_OBSERVED_AT: u64 = 1_763_700_000;
const VECTOR_SIGNATURE: &str = "0xef40f898a0a03afabeb62c43d08626fa6e6fe4c1d4f1fa9158614c61ef1f96fc5f626da19ed8a030971217620263d09966d9c9c514b3684eb7586f20a0c960881c";

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

/// The normative digest of an ETH/USD price.
fn digest(id: u64, price_e8: i64, observed_at: u64) -> B256 {
    pair_digest(Pair::EthUsd, id, price_e8, observed_at)
}

fn pair_digest(pair: Pair, id: u64, price_e8: i64, observed_at: u64) -> B256 {
    let price = UsdPrice::from_e8(price_e8).expect("a valid test price");
    price_digest(pair, id, price, observed_at)
}

/// An ETH/USD report of the given price signed by `signers`, in that order.
fn signed_report(signers: &[&PrivateKeySigner], id: u64, price_e8: i64) -> Report {
    pair_report(Pair::EthUsd, signers, id, price_e8)
}

fn pair_report(pair: Pair, signers: &[&PrivateKeySigner], id: u64, price_e8: i64) -> Report {
    let digest = pair_digest(pair, id, price_e8, VECTOR_OBSERVED_AT);
    Report {
        pair_hash: pair.hash(),
        id,
        price_e8,
        observed_at: VECTOR_OBSERVED_AT,
        signatures: signers
            .iter()
            .map(|key| EthSignature::sign(key, digest))
            .collect(),
    }
}

/// A report encoded from raw signature bytes of any length, as a careless relayer could send.
fn raw_report(report: &Report, signatures: Vec<Vec<u8>>) -> Vec<u8> {
    let encoded: (B256, u64, I256, u64, Vec<Bytes>) = (
        report.pair_hash,
        report.id,
        I256::unchecked_from(report.price_e8),
        report.observed_at,
        signatures.into_iter().map(Bytes::from).collect(),
    );
    encoded.abi_encode_params()
}

/// The 3-of-5 deployment every rejection test uses, its keys, and a valid report of members 4,
/// 0 and 2 (not in address order: stored rows are not sorted).
fn three_of_five() -> (Verifier, Vec<PrivateKeySigner>, Report) {
    let keys = keys(5);
    let verifier = Verifier::deploy(&addresses(&keys), 3).expect("a 3-of-5 verifier deploys");
    let report = signed_report(&[&keys[4], &keys[0], &keys[2]], VECTOR_ID, VECTOR_PRICE_E8);
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

#[test]
fn the_artifact_is_compiled_from_the_committed_source_and_matches_the_test_abi() {
    let artifact = artifact();
    // SHA-256 by the EVM's own precompile: no other SHA-256 in the dependency tree.
    let sha256 = revm::precompile::hash::sha256_run(SOURCE.as_bytes(), u64::MAX)
        .expect("sha256 runs")
        .bytes;
    assert_eq!(
        artifact["sourceSha256"].as_str(),
        Some(alloy_primitives::hex::encode(&sha256).as_str()),
        "contracts/PriceVerifier.json is stale: run scripts/compile-contract.sh"
    );
    assert!(
        SOURCE.contains(&format!(
            "pragma solidity ={};",
            artifact["solcVersion"]
                .as_str()
                .and_then(|version| version.split('+').next())
                .expect("the artifact names its solc version")
        )),
        "the artifact's solc is the version the source pins"
    );

    // The hand-written ABI of tests/common/evm.rs is the artifact's, entry for entry.
    let signature = |entry: &serde_json::Value| {
        let types: Vec<&str> = entry["inputs"]
            .as_array()
            .expect("an ABI entry has inputs")
            .iter()
            .map(|input| input["type"].as_str().expect("an input has a type"))
            .collect();
        format!(
            "{}({})",
            entry["name"].as_str().unwrap_or("constructor"),
            types.join(",")
        )
    };
    let mut in_artifact: Vec<String> = artifact["abi"]
        .as_array()
        .expect("the artifact has an ABI array")
        .iter()
        .map(signature)
        .collect();
    let mut in_test: Vec<String> = VerifierError::SIGNATURES
        .iter()
        .chain(PriceVerifier::PriceVerifierCalls::SIGNATURES)
        .map(|signature| signature.to_string())
        .chain([format!(
            "constructor({})",
            <PriceVerifier::constructorCall as SolConstructor>::Parameters::SOL_NAME
                .trim_start_matches('(')
                .trim_end_matches(')')
        )])
        .collect();
    in_artifact.sort();
    in_test.sort();
    assert_eq!(in_artifact, in_test);
    assert!(ARTIFACT.ends_with('\n'));
}

#[test]
fn the_architecture_test_vector_verifies_on_chain() {
    let key = PrivateKeySigner::from_bytes(&VECTOR_KEY).expect("the vector key is valid");
    assert_eq!(
        key.address(),
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
            .parse::<Address>()
            .unwrap()
    );
    let signature: EthSignature = VECTOR_SIGNATURE
        .parse()
        .expect("the vector signature parses");
    assert_eq!(
        EthSignature::sign(&key, digest(VECTOR_ID, VECTOR_PRICE_E8, VECTOR_OBSERVED_AT)),
        signature
    );
    let report = Report {
        pair_hash: PAIR_HASH,
        id: VECTOR_ID,
        price_e8: VECTOR_PRICE_E8,
        observed_at: VECTOR_OBSERVED_AT,
        signatures: vec![signature],
    };

    let mut verifier = Verifier::deploy(&[key.address()], 1).expect("a 1-of-1 verifier deploys");
    assert_eq!(verifier.domain(), DOMAIN_HASH);
    assert_eq!(verifier.members(), vec![key.address()]);
    assert_eq!(verifier.quorum(), 1);
    assert!(verifier.is_member(key.address()));
    assert!(!verifier.is_member(Address::ZERO));

    let (verified, gas) = verifier
        .verify(&report.encode())
        .expect("the test vector verifies");
    assert_eq!(
        verified,
        Verified {
            pair: PAIR_HASH,
            price_e8: 312_456_789_000,
            observed_at: 1_763_700_000,
            id: 1_234_567_890_123_456,
        }
    );
    assert_eq!(verified.pair, keccak256("ETH/USD"));
    println!("test vector, 1 signature: {gas} gas");
}

#[test]
fn the_constructor_refuses_bad_member_lists_and_quorums() {
    let members = addresses(&keys(3));
    let revert = |members: &[Address], quorum: u64| {
        Verifier::deploy(members, quorum)
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
    let mut verifier = Verifier::deploy(&members, 3).expect("quorum = members is allowed");
    assert_eq!(verifier.members(), members);
    assert_eq!(verifier.quorum(), 3);
}

#[test]
fn a_three_of_five_report_verifies_in_any_signer_order() {
    let (mut verifier, keys, report) = three_of_five();
    let expected = Verified {
        pair: PAIR_HASH,
        price_e8: VECTOR_PRICE_E8,
        observed_at: VECTOR_OBSERVED_AT,
        id: VECTOR_ID,
    };
    let (verified, _) = verifier
        .verify(&report.encode())
        .expect("three member signatures verify");
    assert_eq!(verified, expected);

    // All five, in reverse order; and members sorted the other way round.
    let all: Vec<&PrivateKeySigner> = keys.iter().rev().collect();
    let report = signed_report(&all, VECTOR_ID, VECTOR_PRICE_E8);
    assert_eq!(
        verifier.verify(&report.encode()).map(|(v, _)| v),
        Ok(expected)
    );
    let gas = verify_all(
        &[report.encode()],
        &addresses(&keys).into_iter().rev().collect::<Vec<_>>(),
        5,
    );
    assert_eq!(gas.len(), 1);
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
        assert_eq!(verified.price_e8, 6_543_210);
    }
    let btc = pair_report(
        Pair::BtcUsd,
        &[&keys[1], &keys[3], &keys[0]],
        VECTOR_ID,
        6_543_210,
    );
    let as_eth = Report {
        pair_hash: Pair::EthUsd.hash(),
        ..btc
    };
    expect_stranger(&mut verifier, &as_eth.encode(), &addresses(&keys));
}

#[test]
fn a_tampered_field_moves_every_signer_off_the_member_list() {
    let (mut verifier, keys, report) = three_of_five();
    let members = addresses(&keys);
    for tampered in [
        Report {
            price_e8: report.price_e8 + 1,
            ..report.clone()
        },
        Report {
            price_e8: -report.price_e8,
            ..report.clone()
        },
        Report {
            id: report.id ^ 1,
            ..report.clone()
        },
        Report {
            observed_at: report.observed_at + 1,
            ..report.clone()
        },
        Report {
            pair_hash: keccak256("BTC/USD"),
            ..report.clone()
        },
    ] {
        expect_stranger(&mut verifier, &tampered.encode(), &members);
    }
}

#[test]
fn a_signature_of_another_price_does_not_count() {
    let (mut verifier, keys, mut report) = three_of_five();
    let other = signed_report(&[&keys[1]], VECTOR_ID, VECTOR_PRICE_E8 + 100);
    report.signatures[1] = other.signatures[0];
    expect_stranger(&mut verifier, &report.encode(), &addresses(&keys));
}

#[test]
fn a_non_member_signature_reverts_naming_the_signer() {
    let (mut verifier, _, mut report) = three_of_five();
    let outsider = PrivateKeySigner::from_bytes(&keccak256("outsider")).unwrap();
    let extra = signed_report(&[&outsider], VECTOR_ID, VECTOR_PRICE_E8);
    report.signatures.push(extra.signatures[0]);
    expect_revert(
        &mut verifier,
        &report.encode(),
        VerifierError::NotMember(PriceVerifier::NotMember {
            signer: outsider.address(),
        }),
    );
}

#[test]
fn a_repeated_signer_reverts_even_with_a_fresh_signature() {
    let (mut verifier, keys, report) = three_of_five();
    // The same signature twice, making up a quorum of three with two signers.
    let mut twice = report.clone();
    twice.signatures[2] = twice.signatures[0];
    expect_revert(
        &mut verifier,
        &twice.encode(),
        VerifierError::DuplicateSigner(PriceVerifier::DuplicateSigner {
            signer: keys[4].address(),
        }),
    );
    // A high-s copy is caught before it could pass as a second signature of the same signer.
    let mut copy = report.clone();
    copy.signatures.push(high_s_copy(&report.signatures[1]));
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
    let digest = digest(report.id, report.price_e8, report.observed_at);
    let copy = high_s_copy(&report.signatures[1]);
    // The copy is a valid signature of the same key: only the contract's s check refuses it.
    let recovered = alloy_primitives::Signature::from_raw_array(copy.as_bytes())
        .unwrap()
        .recover_address_from_msg(digest.as_slice())
        .unwrap();
    assert_eq!(recovered, keys[0].address());
    report.signatures[1] = copy;
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
        let mut bytes = *bad.signatures[2].as_bytes();
        bytes[64] = v;
        bad.signatures[2] = EthSignature::from_bytes(bytes);
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
        .signatures
        .iter()
        .map(|signature| signature.as_bytes().to_vec())
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
    let mut bytes = *report.signatures[0].as_bytes();
    bytes[..32].fill(0);
    report.signatures[0] = EthSignature::from_bytes(bytes);
    expect_revert(
        &mut verifier,
        &report.encode(),
        VerifierError::InvalidSignature(PriceVerifier::InvalidSignature { index: U256::ZERO }),
    );
}

#[test]
fn too_few_signatures_revert_below_quorum() {
    let (mut verifier, _, mut report) = three_of_five();
    for got in [2usize, 1, 0] {
        report.signatures.truncate(got);
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

#[test]
fn gas_per_verification() {
    let keys = keys(10);
    let members = addresses(&keys);
    let signers: Vec<&PrivateKeySigner> = keys.iter().collect();
    println!("signatures | report bytes | tx gas | intrinsic (21000 + calldata) | execution");
    let mut reports = Vec::new();
    for count in [1usize, 3, 5, 10] {
        let report = signed_report(&signers[..count], VECTOR_ID, VECTOR_PRICE_E8).encode();
        let gas = verify_all(std::slice::from_ref(&report), &members, count.min(3))[0];
        let intrinsic = intrinsic_gas(&verify_calldata(&report));
        println!(
            "{count:>10} | {:>12} | {gas:>6} | {intrinsic:>28} | {:>9}",
            report.len(),
            gas - intrinsic
        );
        reports.push((count, gas));
    }
    let (_, ten) = reports[reports.len() - 1];
    assert!(ten < 200_000, "10 signatures cost {ten} gas");
    // Each signature adds about the same: recovery, a cold member lookup, its calldata.
    assert!(reports.windows(2).all(|pair| pair[0].1 < pair[1].1));
}

#[test]
fn the_error_names_are_decoded() {
    let (mut verifier, _, mut report) = three_of_five();
    report.signatures.truncate(1);
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
