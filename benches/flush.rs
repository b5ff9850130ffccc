//! The fenced flush of a 10,000-row backlog against a real PostgreSQL (rows/s).
//!
//!     cargo bench --bench flush      # uses TEST_DATABASE_URL, else the local server

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use price_oracle::identity::Identity;
use price_oracle::message::SignatureEntry;
use price_oracle::pair::Pair;
use price_oracle::price::UsdPrice;
use price_oracle::store::Store;
use price_oracle::store::lease::Participant;
use price_oracle::store::prices::{FlushOutcome, VerifiedPrice};

const ROWS: u64 = 10_000;

fn batch(first_id: u64, signatures: &[SignatureEntry]) -> Vec<VerifiedPrice> {
    (first_id..first_id + ROWS)
        .map(|id| VerifiedPrice {
            pair: Pair::EthUsd,
            id,
            price: UsdPrice::from_e8(300_000_000_000 + id as i64 % 1_000).expect("valid price"),
            observed_at: 1_763_700_000,
            origin: signatures[0].signer,
            signatures: signatures.to_vec(),
            last_signed: SystemTime::now(),
        })
        .collect()
}

fn flush(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (db, store, writer) = runtime.block_on(async {
        let db = common::TestDb::create("bench_flush").await;
        Store::migrate(&db.settings()).await.expect("migrate");
        let store = Store::connect(&db.settings()).await.expect("connect");
        let identity = Identity::from_secret(&[1; 32]).expect("valid key");
        let writer = Participant {
            address: identity.address(),
            name: "bench".into(),
            peer_id: identity.peer_id().to_string(),
            listen_addrs: Vec::new(),
        };
        store
            .heartbeat(&writer, Duration::ZERO)
            .await
            .expect("heartbeat");
        for i in 1..=3u8 {
            let member = Identity::from_secret(&[i; 32]).expect("valid key");
            store
                .add_signer(&member.address(), "bench")
                .await
                .expect("add signer");
        }
        (db, store, writer)
    });
    // The store does not verify signatures; three real ones make the rows realistic in size.
    let signatures: Vec<SignatureEntry> = (1..=3u8)
        .map(|i| {
            let identity = Identity::from_secret(&[i; 32]).expect("valid key");
            SignatureEntry::sign(identity.signer(), Default::default())
        })
        .collect();
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    let mut next_id = 1;
    group.bench_function("10,000-row backlog", |b| {
        b.iter_batched(
            || {
                let rows = batch(next_id, &signatures);
                next_id += ROWS;
                rows
            },
            |rows| {
                runtime.block_on(async {
                    let outcome = store.flush(&writer.address, &rows, 3).await.expect("flush");
                    assert!(matches!(outcome, FlushOutcome::Flushed(ref f) if f.inserted.len() == rows.len()));
                })
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
    runtime.block_on(store.close());
    drop(db);
}

criterion_group!(benches, flush);
criterion_main!(benches);
