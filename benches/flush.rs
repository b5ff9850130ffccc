//! The fenced flush of a 10,000-row backlog against a real PostgreSQL (rows/s).
//!
//!     cargo bench --bench flush      # uses TEST_DATABASE_URL, else the local server

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use price_oracle::identity::Identity;
use price_oracle::store::prices::FlushOutcome;
use price_oracle::testkit::{self, Signing, TestDb};

const ROWS: u64 = 10_000;

fn flush(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (db, store, writer) = runtime.block_on(async {
        let db = TestDb::create("bench_flush").await;
        let (store, writer) = testkit::writer_store(&db).await;
        (db, store, writer)
    });
    // The store does not verify signatures; three real ones make the rows realistic in size.
    let signers: Vec<Identity> = (1..=3).map(testkit::identity).collect();
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ROWS));
    let mut next_id = 1;
    group.bench_function("10,000-row backlog", |b| {
        b.iter_batched(
            || {
                let rows = testkit::verified_batch(
                    next_id..next_id + ROWS,
                    &signers,
                    Signing::Placeholder,
                );
                next_id += ROWS;
                rows
            },
            |rows| {
                runtime.block_on(async {
                    let outcome = store.flush(&writer.address, &rows, &Default::default()).await.expect("flush");
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
