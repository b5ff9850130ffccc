//! Micro-benchmarks of the per-message work: signing, recovering, decoding with full validation,
//! and merging a signature into the pool.
//!
//!     cargo bench --bench core

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use price_oracle::identity::Identity;
use price_oracle::message::{Attestation, Gossip, PriceMessage, SignatureEntry, price_digest};
use price_oracle::network::validation::{ValidationSettings, validate};
use price_oracle::pool::{Pool, PoolSettings};
use price_oracle::price::UsdPrice;

fn identity(seed: u8) -> Identity {
    Identity::from_secret(&[seed; 32]).expect("a valid test key")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn signing(c: &mut Criterion) {
    let signer = identity(1);
    let price = UsdPrice::from_e8(312_456_789_000).expect("valid price");
    let mut id = 0u64;
    c.bench_function("digest + sign", |b| {
        b.iter(|| {
            id += 1;
            let digest = price_digest(black_box(id), price, 1_763_700_000);
            SignatureEntry::sign(signer.signer(), digest)
        })
    });
    let digest = price_digest(1, price, 1_763_700_000);
    let entry = SignatureEntry::sign(signer.signer(), digest);
    c.bench_function("verify (recover)", |b| {
        b.iter(|| black_box(&entry).verify(black_box(digest)))
    });
}

fn decoding(c: &mut Criterion) {
    let origin = identity(1);
    let price = UsdPrice::from_e8(312_456_789_000).expect("valid price");
    let message = PriceMessage::originate(7, price, now_secs(), origin.signer());
    let bytes = Gossip::Price(message).encode();
    let settings = ValidationSettings {
        max_age: Duration::from_secs(900),
        max_future_skew: Duration::from_secs(30),
    };
    let publisher = origin.peer_id();
    c.bench_function("decode + full validation (price, 1 signature)", |b| {
        b.iter(|| {
            validate(
                black_box(&bytes),
                Some(&publisher),
                SystemTime::now(),
                &settings,
            )
        })
    });
}

fn pool(c: &mut Criterion) {
    let signers: Vec<Identity> = (1..=4).map(identity).collect();
    let price = UsdPrice::from_e8(312_456_789_000).expect("valid price");
    let settings = PoolSettings {
        min_signers: 3,
        flush_delay: Duration::from_secs(30),
        max_age: Duration::from_secs(900),
        retention: Duration::from_secs(3600),
    };
    let now = SystemTime::now();
    let message = PriceMessage::originate(500, price, 1_763_700_000, signers[0].signer());
    let data = message.data();
    let attestation = Attestation::sign(&data, signers[1].signer());
    c.bench_function("pool: merge a signature", |b| {
        b.iter_batched(
            || {
                let mut pool = Pool::new(settings);
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
