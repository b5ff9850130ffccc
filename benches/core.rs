//! Micro-benchmarks of the per-message work: signing, recovering, decoding with full validation,
//! merging a signature into the pool, and judging a stored row as a node's readers do once per
//! row they read.
//!
//!     cargo bench --bench core

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use price_oracle::audit::{AuditRules, Counted, audit_row};
use price_oracle::committee::CommitteeSettings;
use price_oracle::domain::Deployment;
use price_oracle::identity::Identity;
use price_oracle::membership::Members;
use price_oracle::message::{Attestation, Gossip, PriceMessage};
use price_oracle::network::validation::{ValidationSettings, Validator};
use price_oracle::pair::Pair;
use price_oracle::pool::{Pool, PoolSettings};
use price_oracle::price::UsdPrice;
use price_oracle::signed::{SignatureEntry, price_digest};
use price_oracle::store::members::SignerRow;
use price_oracle::store::row::row_of;
use price_oracle::testkit::{self, Signing, identity, price_by, price_data};
use price_oracle::time::Moment;

fn signing(c: &mut Criterion) {
    let signer = identity(1);
    let price = UsdPrice::from_e8(312_456_789_000).expect("valid price");
    let mut id = 0u64;
    c.bench_function("digest + sign", |b| {
        b.iter(|| {
            id += 1;
            let digest = price_digest(
                testkit::open_config(),
                Pair::EthUsd,
                black_box(id),
                price,
                1_763_700_000,
            );
            SignatureEntry::sign(signer.signer(), digest)
        })
    });
    let digest = price_digest(
        testkit::open_config(),
        Pair::EthUsd,
        1,
        price,
        1_763_700_000,
    );
    let entry = SignatureEntry::sign(signer.signer(), digest);
    c.bench_function("verify (recover)", |b| {
        b.iter(|| black_box(&entry).verify(black_box(digest)))
    });
}

fn decoding(c: &mut Criterion) {
    let origin = identity(1);
    let message = price_by(
        testkit::open_config(),
        &origin,
        SystemTime::now(),
        "3124.56789",
    );
    let bytes = Gossip::Price(message).encode();
    let mut validator = Validator::new(ValidationSettings {
        max_age: Duration::from_secs(900),
        max_future_skew: Duration::from_secs(30),
        // The same price again and again: no rate limit in the way of what is measured.
        max_origin_rate: u32::MAX,
        pairs: price_oracle::pair::PairSet::ALL,
    });
    let member = Members::for_node(None).with_database([(origin.address(), 0)].into());
    c.bench_function("decode + full validation (member's price)", |b| {
        b.iter(|| {
            let verdict = validator.validate(black_box(&bytes), SystemTime::now(), &member);
            assert!(verdict.is_ok());
        })
    });
    let nobody = Members::for_node(None).with_database(Default::default());
    c.bench_function("decode + refusal (outsider's price)", |b| {
        b.iter(|| {
            let verdict = validator.validate(black_box(&bytes), SystemTime::now(), &nobody);
            assert!(verdict.is_err());
        })
    });
}

fn pool(c: &mut Criterion) {
    let signers: Vec<Identity> = (1..=4).map(identity).collect();
    let settings = PoolSettings {
        flush_delay: Duration::from_secs(30),
        max_age: Duration::from_secs(900),
        retention: Duration::from_secs(3600),
        max_pending_per_signer: 64,
    };
    let committee = CommitteeSettings::new(Duration::from_secs(5));
    let now = Moment::now();
    let message =
        PriceMessage::originate(price_data(500, signers[0].address()), signers[0].signer());
    let data = message.data;
    let attestation = Attestation::sign(&data, signers[1].signer());
    c.bench_function("pool: merge a signature", |b| {
        b.iter_batched(
            || {
                let mut pool = Pool::new(settings, committee, Arc::new(Members::open()));
                pool.add(&data, &message.signatures, now);
                pool
            },
            |mut pool| pool.add(&data, &[attestation.signature], now),
            BatchSize::SmallInput,
        )
    });
}

/// `oracle verify`'s judgement of a stored row of three observations and three commits, with the
/// member history of the `signers` table: what a node's `/v1` readers do once per row read.
fn judging(c: &mut Criterion) {
    let signers: Vec<Identity> = (1..=3).map(identity).collect();
    let verified = testkit::verified_rounds([1], &signers, Signing::Genuine);
    let row = row_of(&verified[0].report, 1);
    let history = signers
        .iter()
        .map(|signer| SignerRow {
            address: signer.address(),
            name: String::new(),
            added_at: chrono::DateTime::UNIX_EPOCH,
            revoked_at: None,
        })
        .collect();
    let rules = AuditRules {
        deployment: Deployment::default(),
        counted: Counted::Members(history),
        network: None,
    };
    let now = chrono::Utc::now();
    c.bench_function("judge a stored row (3 observations, 3 commits)", |b| {
        b.iter(|| audit_row(black_box(&row), &rules, now).finding.is_none())
    });
}

criterion_group!(benches, signing, decoding, pool, judging);
criterion_main!(benches);
