//! Micro-benchmarks of the per-message work: signing, recovering, decoding with full validation,
//! and merging a signature into the pool.
//!
//!     cargo bench --bench core

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use price_oracle::committee::CommitteeSettings;
use price_oracle::identity::Identity;
use price_oracle::membership::Members;
use price_oracle::message::{Attestation, Gossip, PriceMessage};
use price_oracle::network::validation::{ValidationSettings, Validator};
use price_oracle::pair::Pair;
use price_oracle::pool::{Pool, PoolSettings};
use price_oracle::price::UsdPrice;
use price_oracle::signed::{SignatureEntry, price_digest};
use price_oracle::testkit::{self, identity, price_by, price_data};
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

criterion_group!(benches, signing, decoding, pool);
criterion_main!(benches);
