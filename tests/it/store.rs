//! Storage against a real PostgreSQL, one database per test: migrations, the heartbeat lease,
//! the fenced exactly-once flush, conflicts and outages.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use migration::{Migrator, MigratorTrait};
use price_oracle::domain::Deployment;
use price_oracle::identity::Identity;
use price_oracle::membership::MemberRefresh;
use price_oracle::metrics::Metrics;
use price_oracle::signed::{Round, VerifiedPrice};
use price_oracle::store::lease::Participant;
use price_oracle::store::prices::{FlushOutcome, Flushed};
use price_oracle::store::{Store, StoreError};
use price_oracle::testkit::TestDb;
use price_oracle::testkit::{self, Signing, wait_for};
use price_oracle::writer::heartbeat::{self, LeaseSettings, LeaseState};
use price_oracle::writer::notices::MAX_IDS_PER_LOOKUP;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use tokio::sync::{oneshot, watch};

use crate::common::{self, Proxy};

/// Node `i + 1`: its key and its heartbeat.
fn participant(i: u8) -> (Identity, Participant) {
    (testkit::identity(i + 1), testkit::participant(i + 1))
}

/// The three signers of [`verified_prices`]: nodes 1, 2 and 3.
fn sample_signers() -> Vec<Identity> {
    (1..=3).map(testkit::identity).collect()
}

/// Test prices `ids` with placeholder signatures of [`sample_signers`].
fn verified_prices(ids: std::ops::Range<u64>) -> Vec<VerifiedPrice> {
    testkit::verified_batch(ids, &sample_signers(), Signing::Placeholder)
}

/// A store reaching `db` through a proxy that can stall it, with a per-call `timeout`. In
/// plain text, so that the proxy sees the statements it stalls after.
async fn through_proxy(db: &TestDb, timeout: Duration) -> (Proxy, Store) {
    let proxy = Proxy::start(common::socket_of(&db.url).await).await;
    let url = format!("{}?sslmode=disable", proxy.url_through(&db.url));
    let mut settings = price_oracle::testkit::settings_for(&url);
    settings.timeout = timeout;
    let store = Store::connect(&settings).await.unwrap();
    (proxy, store)
}

/// Rows in `prices`.
async fn stored_count(db: &TestDb) -> i64 {
    let conn = db.connect().await;
    let rows = count(&conn, "SELECT count(*) FROM prices").await;
    let _ = conn.close().await;
    rows
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

/// Makes the [`sample_signers`] members, since before the (2025) observation times of
/// [`verified_prices`].
async fn register_sample_signers(db: &TestDb, store: &Store) {
    for signer in sample_signers() {
        store.add_signer(&signer.address(), "sample").await.unwrap();
    }
    db.connect()
        .await
        .execute_unprepared("UPDATE signers SET added_at = '2025-01-01T00:00:00Z'")
        .await
        .unwrap();
}

async fn migrated(label: &str) -> (TestDb, Store) {
    let db = TestDb::create(label).await;
    Store::migrate(&db.settings()).await.unwrap();
    let store = Store::connect(&db.settings()).await.unwrap();
    register_sample_signers(&db, &store).await;
    (db, store)
}

/// [`migrated`], with node 1 heartbeating once: the writer.
async fn as_writer(label: &str) -> (TestDb, Store, Participant) {
    let (db, store) = migrated(label).await;
    let (_, me) = participant(0);
    store.heartbeat(&me, Duration::ZERO).await.unwrap();
    (db, store, me)
}

/// Migrations applied before the commit-order one.
const BEFORE_COMMIT_ORDER: u32 = 3;

/// Migrations applied after it: every later one, so that a new migration needs no edit here.
fn after_commit_order() -> u32 {
    Migrator::migrations().len() as u32 - BEFORE_COMMIT_ORDER - 1
}

/// Rows of the format before the observations migration: each signer signed the row's own
/// price and time.
#[tokio::test]
async fn the_observations_migration_reads_old_rows_as_equal_observations_and_verify_passes_both() {
    use price_oracle::audit::{AuditRules, Counted, audit_row};
    use price_oracle::signed::{Observation, Report, SignatureEntry};
    let db = TestDb::create("observations_migration").await;
    let conn = db.connect().await;
    // Every migration before the observations one (the ninth, the configuration, follows).
    Migrator::up(&conn, Some(7)).await.unwrap();
    // Signed as v1 signed: under the v1 domain word, which the configuration migration gives.
    let old = price_oracle::signed::PriceData {
        config: price_oracle::signed::V1_DOMAIN,
        ..testkit::round_data(7, sample_signers()[0].address())
    };
    let entries: Vec<_> = sample_signers()
        .iter()
        .map(|signer| old.sign(signer.signer()))
        .collect();
    let at = chrono::DateTime::from_timestamp(old.observed_at as i64, 0).unwrap();
    conn.execute_unprepared(&format!(
        "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, signer_count, \
         lastsigned_time, written_by) VALUES ({}, 'ETH/USD', {}, '{at}', '{}', '{}', 3, '{at}', '{}')",
        old.id,
        old.price,
        old.origin.to_checksum(None),
        serde_json::to_string(&entries).unwrap(),
        old.origin.to_checksum(None),
    ))
    .await
    .unwrap();
    Migrator::up(&conn, None).await.unwrap();

    // A new row: three different observations, stored by the flush at their median.
    let (store, writer) = testkit::writer_store(&db).await;
    let members: Vec<_> = sample_signers().iter().map(Identity::address).collect();
    let round = price_oracle::signed::Round {
        config: testkit::config_of(&members),
        ..testkit::round_data(8, sample_signers()[0].address()).round()
    };
    let observations = sample_signers()
        .iter()
        .zip([300_000_000_000i64, 303_000_000_000, 301_000_000_000])
        .map(|(signer, e8)| {
            let observation = Observation {
                price: price_oracle::price::UsdPrice::from_e8(e8).unwrap(),
                observed_at: testkit::EPOCH + 8,
            };
            testkit::signed_observation(signer.signer(), round, observation)
        })
        .collect();
    let mut report = Report {
        round,
        observations,
        commits: Vec::new(),
    };
    let digest = report.digest().unwrap();
    report.commits = sample_signers()[..2]
        .iter()
        .map(|signer| SignatureEntry::sign(signer.signer(), digest))
        .collect();
    let new = VerifiedPrice {
        report,
        last_signed: std::time::SystemTime::now(),
    };
    let flushed = store
        .flush(&writer.address, &[new], &Deployment::default())
        .await
        .unwrap();
    let new_id = round.id;
    assert!(matches!(flushed, FlushOutcome::Flushed(ref f) if f.inserted == [new_id]));

    let rows = testkit::stored(&conn).await;
    let rules = AuditRules {
        deployment: Deployment {
            max_faults: Some(1),
            ..Deployment::default()
        },
        counted: Counted::Everyone,
        network: None,
    };
    for row in &rows {
        assert_eq!(
            audit_row(&row.row, &rules, chrono::Utc::now()).finding,
            None,
            "row {}",
            row.id()
        );
    }
    let (old_row, new_row) = (&rows[0], &rows[1]);
    assert!(
        old_row
            .report
            .observations
            .iter()
            .all(|entry| entry.observation == old.observation()),
        "an old row reads as equal observations"
    );
    assert_eq!(old_row.row.spread, rust_decimal::Decimal::ZERO);
    assert_eq!(old_row.row.first_observed_at, old_row.row.observed_at);
    assert_eq!(new_row.row.price.to_string(), "3010.00000000", "the median");
    assert_eq!(new_row.row.spread.to_string(), "0.00996677");

    // Down cannot say the new row (committed, a median of differing observations, signed
    // under a v2 configuration); without it, it gives the old row back as it was. (The node
    // roles' migration, the last, goes down first.)
    Migrator::down(&conn, Some(1)).await.unwrap();
    let refused = Migrator::down(&conn, Some(1)).await.unwrap_err();
    assert!(
        refused.to_string().contains("carry commit signatures"),
        "{refused}"
    );
    conn.execute_unprepared(&format!(
        "UPDATE prices SET commits = '[]' WHERE id = {new_id}"
    ))
    .await
    .unwrap();
    Migrator::down(&conn, Some(1)).await.unwrap();
    let refused = Migrator::down(&conn, Some(1)).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("signed under a v2 configuration"),
        "{refused}"
    );
    conn.execute_unprepared(&format!("DELETE FROM prices WHERE id = {new_id}"))
        .await
        .unwrap();
    Migrator::down(&conn, Some(2)).await.unwrap();
    let sign_data = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT sign_data FROM prices WHERE id = {}", old.id),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<serde_json::Value>(0)
        .unwrap();
    assert_eq!(sign_data, serde_json::to_value(&entries).unwrap());
    store.close().await;
    let _ = conn.close().await;
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let db = TestDb::create("updown").await;
    let conn = db.connect().await;
    let tables = "SELECT count(*) FROM information_schema.tables \
                  WHERE table_schema = 'public' AND table_name IN ('prices', 'heartbeat', 'signers')";
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(count(&conn, tables).await, 3);
    assert!(
        Migrator::get_pending_migrations(&conn)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        Migrator::get_applied_migrations(&conn).await.unwrap().len(),
        Migrator::migrations().len()
    );
    Migrator::status(&conn).await.unwrap();

    Migrator::down(&conn, None).await.unwrap();
    assert_eq!(count(&conn, tables).await, 0);
    assert_eq!(
        Migrator::get_pending_migrations(&conn).await.unwrap().len(),
        Migrator::migrations().len()
    );

    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(count(&conn, tables).await, 3);
    let numeric = count(
        &conn,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'prices' \
         AND column_name = 'price' AND numeric_precision = 38 AND numeric_scale = 8",
    )
    .await;
    assert_eq!(numeric, 1);
    let _ = conn.close().await;
}

#[tokio::test]
async fn five_nodes_migrating_an_empty_database_at_once_all_succeed() {
    let db = TestDb::create("concurrent").await;
    let settings = db.settings();
    let results = join_all((0..5).map(|_| Store::migrate(&settings))).await;
    for result in results {
        result.unwrap();
    }
    let conn = db.connect().await;
    assert_eq!(
        Migrator::get_applied_migrations(&conn).await.unwrap().len(),
        Migrator::migrations().len()
    );
    let _ = conn.close().await;
}

/// `(id, seq)` of every row, in `seq` order.
async fn ids_by_seq(db: &DatabaseConnection) -> Vec<(u64, i64)> {
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT id, seq FROM prices ORDER BY seq",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get_by_index::<i64>(0).unwrap() as u64,
            row.try_get_by_index::<i64>(1).unwrap(),
        )
    })
    .collect()
}

async fn has_seq_column(db: &DatabaseConnection) -> bool {
    count(
        db,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'prices' AND column_name = 'seq'",
    )
    .await
        == 1
}

#[tokio::test]
async fn the_commit_order_migration_numbers_existing_rows_and_steps_back() {
    let db = TestDb::create("seq_migration").await;
    let conn = db.connect().await;
    Migrator::up(&conn, Some(BEFORE_COMMIT_ORDER))
        .await
        .unwrap();
    assert!(!has_seq_column(&conn).await);
    // Rows written before the migration: (id, created_time). Equal times fall back to the id.
    let insert = |id: u64, created: &str| {
        format!(
            "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, \
             signer_count, lastsigned_time, created_time, written_by) VALUES ({id}, 'ETH/USD', \
             3000, now(), '0x0', '[]', 1, now(), '{created}', '0x0')"
        )
    };
    for (id, created) in [
        (40, "2026-01-01T00:00:03Z"),
        (10, "2026-01-01T00:00:02Z"),
        (30, "2026-01-01T00:00:01Z"),
        (20, "2026-01-01T00:00:02Z"),
    ] {
        conn.execute_unprepared(&insert(id, created)).await.unwrap();
    }
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(
        ids_by_seq(&conn).await,
        vec![(30, 1), (10, 2), (20, 3), (40, 4)]
    );
    // New rows go after them, numbered by the database only, stamped with its clock.
    let insert_now = |id: u64, columns: &str, values: &str| {
        format!(
            "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, \
             signer_count, lastsigned_time, written_by, spread, first_observed_at, \
             last_observed_at{columns}) VALUES ({id}, 'ETH/USD', 3000, now(), '0x0', '[]', 1, \
             now(), '0x0', 0, now(), now(){values})"
        )
    };
    conn.execute_unprepared(&insert_now(5, "", ""))
        .await
        .unwrap();
    let chosen = conn
        .execute_unprepared(&insert_now(6, ", seq", ", 1000"))
        .await
        .unwrap_err();
    assert!(chosen.to_string().contains("seq"), "{chosen}");
    assert_eq!(ids_by_seq(&conn).await[4..], [(5, 5)]);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM prices WHERE id = 5 \
             AND created_time > now() - interval '1 minute'",
        )
        .await,
        1,
        "the database clock"
    );

    // One step down past it removes the column and the trigger and restores the old default.
    Migrator::down(&conn, Some(after_commit_order() + 1))
        .await
        .unwrap();
    assert!(!has_seq_column(&conn).await);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'prices' \
             AND column_name = 'created_time' AND column_default = 'now()'",
        )
        .await,
        1
    );
    conn.execute_unprepared(&insert(7, "2000-01-01T00:00:00Z"))
        .await
        .unwrap();
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(
        ids_by_seq(&conn).await.first(),
        Some(&(7, 1)),
        "numbered again, in created_time order"
    );
    assert_eq!(count(&conn, "SELECT max(seq) FROM prices").await, 6);
    conn.execute_unprepared(&insert_now(8, "", ""))
        .await
        .unwrap();
    assert_eq!(ids_by_seq(&conn).await.last(), Some(&(8, 7)));
    let _ = conn.close().await;
}

struct Running {
    participant: Participant,
    state: watch::Receiver<LeaseState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start_heartbeat(store: &Store, participant: Participant, settings: LeaseSettings) -> Running {
    let (state_tx, state) = watch::channel(LeaseState::default());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(heartbeat::run(
        store.clone(),
        participant.clone(),
        settings,
        state_tx,
        MemberRefresh::new().0,
        std::sync::Arc::new(Metrics::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        participant,
        state,
        stop: Some(stop),
        task,
    }
}

#[tokio::test]
async fn the_lease_has_one_writer_that_rotates_once_per_term_and_is_replaced_when_it_stops() {
    let (_db, store) = migrated("lease").await;
    let settings = LeaseSettings {
        interval: Duration::from_millis(100),
        lease: Duration::from_millis(400),
        term: Duration::from_secs(1),
        warm_up: Duration::ZERO,
    };
    let mut nodes: Vec<Running> = (0..3)
        .map(|i| start_heartbeat(&store, participant(i).1, settings))
        .collect();
    let keys: HashSet<_> = nodes.iter().map(|n| n.participant.address).collect();

    // Sample the writer as the database sees it.
    let mut writers = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if let Some(writer) = store.writer().await.unwrap() {
            assert!(
                keys.contains(&writer),
                "writer {writer} is not a participant"
            );
            writers.push(writer);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let distinct: HashSet<_> = writers.iter().collect();
    let changes = writers.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        distinct.len() >= 2,
        "the writer never rotated: {distinct:?}"
    );
    // About one change per term (1 s), not one per heartbeat (every 100 ms).
    assert!(changes <= 5, "{changes} writer changes in 3 s");
    println!(
        "lease: {} samples, {} distinct writers, {changes} changes in 3 s",
        writers.len(),
        distinct.len()
    );
    // The participants' own views agree that somebody holds the lease.
    assert!(nodes.iter().any(|n| n.state.borrow().healthy));

    // Crash the current writer: it stops heartbeating and leaves its row behind.
    let crashed_key = store.writer().await.unwrap().unwrap();
    let crashed = nodes
        .iter()
        .position(|n| n.participant.address == crashed_key)
        .unwrap();
    let crashed = nodes.remove(crashed);
    crashed.task.abort();
    let crashed_at = Instant::now();
    loop {
        let writer = store.writer().await.unwrap().unwrap();
        if writer != crashed_key {
            break;
        }
        assert!(
            crashed_at.elapsed() < settings.takeover_bound() + Duration::from_millis(500),
            "no takeover within the bound {:?}",
            settings.takeover_bound()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "lease: takeover after a crash took {:?} (bound {:?})",
        crashed_at.elapsed(),
        settings.takeover_bound()
    );

    // A graceful stop removes the row, and with it any claim to the lease.
    for node in &mut nodes {
        let _ = node.stop.take().unwrap().send(());
    }
    for node in nodes {
        node.task.await.unwrap();
        assert!(!node.state.borrow().is_writer);
    }
    assert_eq!(store.writer().await.unwrap(), Some(crashed_key));
}

#[tokio::test]
async fn five_contenders_flush_the_same_thousand_prices_exactly_once() {
    let (db, store) = migrated("contention").await;
    let conn = db.connect().await;
    conn.execute_unprepared(common::LEASE_CHECK_TRIGGER)
        .await
        .unwrap();
    let batch = verified_prices(1..1_001);
    let settings = LeaseSettings {
        interval: Duration::from_millis(50),
        lease: Duration::from_millis(200),
        term: Duration::from_millis(300),
        warm_up: Duration::ZERO,
    };
    let contenders: Vec<Participant> = (0..5).map(|i| participant(i).1).collect();
    let mut heartbeats: Vec<Running> = contenders
        .iter()
        .map(|p| start_heartbeat(&store, p.clone(), settings))
        .collect();
    wait_for("a writer", Duration::from_secs(5), async || {
        store.writer().await.is_ok_and(|writer| writer.is_some())
    })
    .await;

    // Every contender flushes the whole batch over and over for a while, all at once, a slice
    // of 100 at a time, each starting at a different slice: so the rows spread over the writers.
    // Every contender keeps flushing until every slice is stored, by itself or another: the
    // lease moves once per term, so how many turns each contender gets is up to the rotation.
    let stored_slices = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let flushes = contenders.iter().enumerate().map(|(start, contender)| {
        let store = store.clone();
        let slices: Vec<Vec<VerifiedPrice>> = batch.chunks(100).map(<[_]>::to_vec).collect();
        let stored_slices = std::sync::Arc::clone(&stored_slices);
        async move {
            let mut inserted = Vec::new();
            let mut not_writer = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut next = start * 2;
            while stored_slices.lock().unwrap().len() < slices.len() {
                assert!(Instant::now() < deadline, "flushes made no progress");
                let index = next % slices.len();
                next += 1;
                let slice = &slices[index];
                match store
                    .flush(&contender.address, slice, &Deployment::default())
                    .await
                    .unwrap()
                {
                    FlushOutcome::Flushed(flushed) => {
                        assert!(flushed.conflicting.is_empty());
                        assert_eq!(flushed.inserted.len() + flushed.existing.len(), slice.len());
                        inserted.extend(flushed.inserted);
                        stored_slices.lock().unwrap().insert(index);
                    }
                    FlushOutcome::NotWriter { .. } => not_writer += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (contender.key(), inserted, not_writer)
        }
    });
    let results = join_all(flushes).await;

    let mut written_by = HashMap::new();
    for (key, inserted, not_writer) in &results {
        println!(
            "{key}: inserted {} rows, refused {not_writer} times",
            inserted.len()
        );
        for id in inserted {
            assert!(
                written_by.insert(*id, key.clone()).is_none(),
                "{id} inserted twice"
            );
        }
    }
    assert_eq!(written_by.len(), 1_000);
    assert_eq!(count(&conn, "SELECT count(*) FROM prices").await, 1_000);
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT id) FROM prices").await,
        1_000
    );
    // The column agrees with what each contender reported.
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id, written_by FROM prices",
        ))
        .await
        .unwrap();
    for row in rows {
        let id = row.try_get_by_index::<i64>(0).unwrap() as u64;
        let by = row.try_get_by_index::<String>(1).unwrap();
        assert_eq!(written_by.get(&id), Some(&by));
    }

    // A node that does not hold the lease writes nothing.
    for node in &mut heartbeats {
        let _ = node.stop.take().unwrap().send(());
    }
    join_all(heartbeats.into_iter().map(|n| n.task)).await;
    let outsider = participant(9).1;
    let others = verified_prices(5_000..5_010);
    let (_, lone) = participant(0);
    store.heartbeat(&lone, Duration::ZERO).await.unwrap();
    assert!(matches!(
        store.flush(&outsider.address, &others, &Deployment::default()).await.unwrap(),
        FlushOutcome::NotWriter { writer: Some(w) } if w == lone.address
    ));
    assert_eq!(count(&conn, "SELECT count(*) FROM prices").await, 1_000);
    let _ = conn.close().await;
}

#[tokio::test]
async fn another_round_under_a_stored_id_is_reported_and_not_written() {
    let (db, store, me) = as_writer("conflict").await;
    let original = verified_prices(7..8);
    assert_eq!(
        store
            .flush(&me.address, &original, &Deployment::default())
            .await
            .unwrap(),
        FlushOutcome::Flushed(Flushed {
            inserted: vec![7],
            ..Flushed::default()
        })
    );

    // The same round with other observations (another writer's set of them): already stored.
    let mut other_observations = original.clone();
    other_observations[0].report.observations[0]
        .observation
        .price = price_oracle::price::UsdPrice::from_e8(1).unwrap();
    // Another pair, or another origin, under the id is another round: a conflict.
    let mut other_pair = original.clone();
    other_pair[0].report.round.pair = price_oracle::pair::Pair::BtcUsd;
    let mut other_origin = original.clone();
    other_origin[0].report.round.origin = sample_signers()[1].address();
    other_origin[0].report.observations.rotate_left(1);
    let mut more = verified_prices(8..10);
    more.extend(other_observations);
    more.extend(other_pair);
    more.extend(other_origin);
    more.extend(original.clone());
    let FlushOutcome::Flushed(flushed) = store
        .flush(&me.address, &more, &Deployment::default())
        .await
        .unwrap()
    else {
        panic!("the only participant is the writer")
    };
    assert_eq!(flushed.inserted, vec![8, 9]);
    assert_eq!(flushed.conflicting, vec![7, 7]);
    assert_eq!(flushed.existing, vec![7, 7]);

    let conn = db.connect().await;
    let stored = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT price::text, signer_count, pair, first_signer, sign_data FROM prices WHERE id = 7",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.try_get_by_index::<String>(0).unwrap(),
        original[0].report.value().unwrap().to_string()
    );
    assert_eq!(stored.try_get_by_index::<i32>(1).unwrap(), 3);
    assert_eq!(stored.try_get_by_index::<String>(2).unwrap(), "ETH/USD");
    assert_eq!(
        stored.try_get_by_index::<String>(3).unwrap(),
        original[0].round().origin.to_checksum(None)
    );
    let sign_data = stored.try_get_by_index::<serde_json::Value>(4).unwrap();
    assert_eq!(
        sign_data,
        serde_json::to_value(price_oracle::store::row::sign_data(&original[0].report)).unwrap()
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn prices_pending_during_an_outage_are_written_afterwards() {
    let db = TestDb::create("outage").await;
    Store::migrate(&db.settings()).await.unwrap();
    let proxy = Proxy::start(common::socket_of(&db.url).await).await;
    let mut settings = price_oracle::testkit::settings_for(&proxy.url_through(&db.url));
    settings.timeout = Duration::from_millis(500);
    let store = Store::connect(&settings).await.unwrap();
    register_sample_signers(&db, &store).await;
    let (_, me) = participant(0);
    store.heartbeat(&me, Duration::ZERO).await.unwrap();

    let mut pending = verified_prices(1..101);
    let flushed = store
        .flush(&me.address, &pending, &Deployment::default())
        .await
        .unwrap();
    assert!(matches!(flushed, FlushOutcome::Flushed(ref f) if f.inserted.len() == 100));
    pending = verified_prices(101..201);

    proxy.cut();
    let started = Instant::now();
    let err = store
        .flush(&me.address, &pending, &Deployment::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { .. } | StoreError::Db { .. }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(store.heartbeat(&me, Duration::ZERO).await.is_err());
    println!("during the outage: {err}");

    proxy.restore().await;
    // The node retries on its next ticks until the database answers again.
    let mut attempts = 0;
    let flushed = loop {
        attempts += 1;
        match store
            .flush(&me.address, &pending, &Deployment::default())
            .await
        {
            Ok(outcome) => break outcome,
            Err(err) if attempts < 20 => {
                println!("retry {attempts}: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the database never came back: {err}"),
        }
    };
    assert!(matches!(flushed, FlushOutcome::Flushed(ref f) if f.inserted.len() == 100));
    assert_eq!(stored_count(&db).await, 200);
}

#[tokio::test]
async fn a_writer_stalled_inside_its_fence_holds_the_others_up_for_seconds_only() {
    let (db, other) = migrated("stalled_fence").await;
    // The stalled writer's own client never gives up during the test: only the server's
    // session limits can release its fence.
    let (proxy, stalled) = through_proxy(&db, Duration::from_secs(60)).await;
    let (_, writer) = participant(0);
    let (_, next) = participant(1);
    other.heartbeat(&next, Duration::ZERO).await.unwrap();
    let beat = stalled.heartbeat(&writer, Duration::ZERO).await.unwrap();
    assert_eq!(beat.writer, writer.address);

    proxy.stall_after("LOCK TABLE heartbeat");
    let stalled_flush = tokio::spawn({
        let writer = writer.address;
        async move {
            stalled
                .flush(&writer, &verified_prices(1..11), &Deployment::default())
                .await
        }
    });
    wait_for(
        "the flush to send its fence",
        Duration::from_secs(5),
        async || proxy.is_stalled(),
    )
    .await;
    let stalled_at = Instant::now();
    let mut refused_heartbeats = 0;
    let mut longest_wait = Duration::ZERO;
    loop {
        let attempt = Instant::now();
        let result = other.heartbeat(&next, Duration::ZERO).await;
        longest_wait = longest_wait.max(attempt.elapsed());
        match result {
            Ok(beat) if beat.writer == next.address => break,
            Ok(beat) => println!("writer still {}", beat.writer),
            Err(err) => {
                refused_heartbeats += 1;
                println!("heartbeat behind the fence: {err}");
            }
        }
        assert!(
            stalled_at.elapsed() < Duration::from_secs(15),
            "the stalled fence still blocks the others"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let flushed = other
        .flush(
            &next.address,
            &verified_prices(1..11),
            &Deployment::default(),
        )
        .await
        .unwrap();
    let took_over = stalled_at.elapsed();
    assert!(matches!(flushed, FlushOutcome::Flushed(ref f) if f.inserted.len() == 10));
    println!(
        "stored by the next writer {took_over:?} after the stall; {refused_heartbeats} heartbeats \
         refused, the longest waited {longest_wait:?}"
    );
    assert!(refused_heartbeats > 0, "the fence was never held");
    assert!(longest_wait < Duration::from_secs(3), "{longest_wait:?}");
    assert!(took_over < Duration::from_secs(8), "{took_over:?}");

    // Once its connection flows again, the stalled writer learns that its session is gone.
    proxy.resume();
    let late = stalled_flush.await.unwrap();
    assert!(late.is_err(), "{late:?}");
}

#[tokio::test]
async fn a_backlog_of_ten_thousand_prices_flushes_in_one_go() {
    let (db, store, me) = as_writer("throughput").await;
    let backlog = verified_prices(1..10_001);
    let started = Instant::now();
    let outcome = store
        .flush(&me.address, &backlog, &Deployment::default())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(matches!(outcome, FlushOutcome::Flushed(ref f) if f.inserted.len() == 10_000));
    println!(
        "flush: 10,000 rows in {elapsed:?} = {:.0} rows/s ({} build)",
        10_000.0 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let again = store
        .flush(&me.address, &backlog, &Deployment::default())
        .await
        .unwrap();
    assert!(matches!(again, FlushOutcome::Flushed(ref f) if f.existing.len() == 10_000));
    assert_eq!(stored_count(&db).await, 10_000);
}

#[tokio::test]
async fn the_flush_stores_only_rounds_of_the_current_configuration() {
    let (_db, store, me) = as_writer("members_flush").await;
    // The rounds were signed for the three sample signers' configuration; the third stops
    // being a member, which makes another configuration: none of them is written.
    let third = sample_signers()[2].address();
    assert!(store.remove_signer(&third).await.unwrap());
    let FlushOutcome::Flushed(flushed) = store
        .flush(&me.address, &verified_prices(1..3), &Deployment::default())
        .await
        .unwrap()
    else {
        panic!("the writer flushes");
    };
    assert_eq!(flushed.below_quorum, vec![1, 2]);
    assert!(flushed.inserted.is_empty());
    let db = _db.connect().await;
    assert_eq!(count(&db, "SELECT count(*) FROM prices").await, 0);
    // Back to the three: the same configuration, and the rounds are written.
    db.execute_unprepared("UPDATE signers SET revoked_at = NULL")
        .await
        .unwrap();
    let FlushOutcome::Flushed(flushed) = store
        .flush(&me.address, &verified_prices(1..3), &Deployment::default())
        .await
        .unwrap()
    else {
        panic!("the writer flushes");
    };
    assert_eq!(flushed.inserted, vec![1, 2]);
}

#[tokio::test]
async fn signers_are_added_removed_and_readmitted_and_heartbeats_notice() {
    let (_db, store) = migrated("members_manage").await;
    let (newcomer, me) = participant(7);
    let address = newcomer.address();
    let before = store.heartbeat(&me, Duration::ZERO).await.unwrap();
    use price_oracle::store::members::Added;
    assert_eq!(store.add_signer(&address, "n7").await.unwrap(), Added::New);
    assert_eq!(
        store.add_signer(&address, "").await.unwrap(),
        Added::AlreadyMember
    );
    let after_add = store.heartbeat(&me, Duration::ZERO).await.unwrap();
    assert_ne!(before.members_version, after_add.members_version);
    assert!(
        store
            .current_members()
            .await
            .unwrap()
            .contains_key(&address)
    );
    assert!(store.remove_signer(&address).await.unwrap());
    assert!(
        !store.remove_signer(&address).await.unwrap(),
        "already removed"
    );
    assert!(
        !store
            .current_members()
            .await
            .unwrap()
            .contains_key(&address)
    );
    let after_remove = store.heartbeat(&me, Duration::ZERO).await.unwrap();
    assert_eq!(before.members_version, after_remove.members_version);
    let row_of = async || {
        store
            .signers()
            .await
            .unwrap()
            .into_iter()
            .find(|row| row.address == address)
            .unwrap()
    };
    let row = row_of().await;
    assert_eq!(row.name, "n7");
    assert!(row.revoked_at.is_some(), "a removed member keeps its row");
    assert_eq!(
        store.add_signer(&address, "").await.unwrap(),
        Added::Readmitted
    );
    let readmitted = row_of().await;
    assert_eq!(
        readmitted.added_at, row.added_at,
        "the first period is kept, so rows from it still verify"
    );
    assert_eq!(readmitted.revoked_at, None);
    assert!(
        store
            .current_members()
            .await
            .unwrap()
            .contains_key(&address)
    );
}

#[tokio::test]
async fn the_lease_reads_the_member_list_when_it_changes() {
    let (_db, store) = migrated("members_lease").await;
    let (_, me) = participant(0);
    let (state_tx, _state) = watch::channel(LeaseState::default());
    let (refresh, mut lists) = MemberRefresh::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let settings = LeaseSettings {
        interval: Duration::from_millis(100),
        lease: Duration::ZERO,
        term: Duration::from_secs(60),
        warm_up: Duration::ZERO,
    };
    let task = tokio::spawn(heartbeat::run(
        store.clone(),
        me,
        settings,
        state_tx,
        refresh,
        std::sync::Arc::new(Metrics::default()),
        async move {
            let _ = stopped.await;
        },
    ));
    let first = lists
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(first.len(), 3);
    let newcomer = Identity::from_secret(&[42; 32]).unwrap().address();
    store.add_signer(&newcomer, "late").await.unwrap();
    let started = Instant::now();
    let second = lists
        .wait_for(|list| {
            list.as_ref()
                .is_some_and(|list| list.contains_key(&newcomer))
        })
        .await
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(second.len(), 4);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within a heartbeat or two"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

/// Follows `prices` the documented way (`seq > last ORDER BY seq`), keeping every row it saw.
struct Poller {
    last: i64,
    seen: Vec<(u64, i64)>,
}

impl Poller {
    fn new() -> Self {
        Self {
            last: 0,
            seen: Vec::new(),
        }
    }

    /// Reads until caught up; returns how many new rows it saw.
    async fn poll(&mut self, store: &Store) -> usize {
        let before = self.seen.len();
        loop {
            let page = store.prices_committed_after(self.last, 100).await.unwrap();
            let Some(newest) = page.last() else {
                return self.seen.len() - before;
            };
            self.last = newest.seq;
            self.seen
                .extend(page.iter().map(|row| (row.id as u64, row.seq)));
        }
    }
}

#[tokio::test]
async fn seq_follows_commit_order_when_a_writers_flushes_overlap() {
    // Two handles of one writer, as when a node retries a flush whose COMMIT is still on its
    // way: the fence lets both through.
    let (db, direct) = migrated("commit_order").await;
    let (proxy, held) = through_proxy(&db, Duration::from_secs(10)).await;
    let (_, me) = participant(0);
    let address = me.address;
    direct.heartbeat(&me, Duration::ZERO).await.unwrap();
    let earlier = direct
        .flush(&address, &verified_prices(1..3), &Deployment::default())
        .await
        .unwrap();
    assert!(matches!(earlier, FlushOutcome::Flushed(ref f) if f.inserted == [1, 2]));
    let mut poller = Poller::new();
    assert_eq!(poller.poll(&direct).await, 2);

    // The first flush inserts 10…19 and is held just before it commits: id 2 is already
    // stored, so it goes on to compare it, and the proxy stalls that statement.
    let mut first_batch = verified_prices(2..3);
    first_batch.extend(verified_prices(10..20));
    proxy.stall_after("WHERE id = ANY");
    let first = tokio::spawn({
        let held = held.clone();
        async move {
            held.flush(&address, &first_batch, &Deployment::default())
                .await
        }
    });
    wait_for(
        "the first flush to stall",
        Duration::from_secs(5),
        async || proxy.is_stalled(),
    )
    .await;
    // The second starts later and has nothing in its way but the first's open transaction.
    let second = tokio::spawn({
        let direct = direct.clone();
        async move {
            direct
                .flush(&address, &verified_prices(20..25), &Deployment::default())
                .await
        }
    });
    let holding = Instant::now();
    while holding.elapsed() < Duration::from_millis(800) {
        assert_eq!(
            poller.poll(&direct).await,
            0,
            "a reader sees nothing past the open transaction's rows"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !second.is_finished(),
        "the second flush committed while the first, which inserted before it, was still open"
    );

    proxy.resume();
    let first = first.await.unwrap().unwrap();
    let second = second.await.unwrap().unwrap();
    assert!(
        matches!(first, FlushOutcome::Flushed(ref f) if f.inserted.len() == 10 && f.existing == [2]),
        "{first:?}"
    );
    assert!(
        matches!(second, FlushOutcome::Flushed(ref f) if f.inserted.len() == 5),
        "{second:?}"
    );
    poller.poll(&direct).await;

    // Commit order: 1, 2; then the first flush's rows; then the second's, which waited for it.
    let expected: Vec<u64> = (1..3).chain(10..20).chain(20..25).collect();
    let conn = db.connect().await;
    let table = ids_by_seq(&conn).await;
    assert_eq!(
        table.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(poller.seen, table, "the poller missed nothing");
    let _ = conn.close().await;
}

/// Test databases only: every insert statement into `prices` lingers up to 20 ms before its
/// transaction can go on to commit.
const DAWDLE_TRIGGER: &str = r#"
CREATE FUNCTION dawdle() RETURNS trigger AS $$
BEGIN
  PERFORM pg_sleep(random() * 0.02);
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER dawdle AFTER INSERT ON prices FOR EACH STATEMENT EXECUTE FUNCTION dawdle();
"#;

#[tokio::test]
async fn a_poller_following_seq_misses_no_row_while_writers_rotate_and_overlap() {
    let (db, direct) = migrated("poller").await;
    let conn = db.connect().await;
    conn.execute_unprepared(common::LEASE_CHECK_TRIGGER)
        .await
        .unwrap();
    // Widens the window between a flush's insert and its commit, where a reader could see a
    // later flush's rows before this one's.
    conn.execute_unprepared(DAWDLE_TRIGGER).await.unwrap();
    let settings = LeaseSettings {
        interval: Duration::from_millis(100),
        lease: Duration::from_millis(300),
        term: Duration::from_millis(500),
        warm_up: Duration::ZERO,
    };
    let mut nodes = Vec::new();
    for i in 0..5 {
        let store = Store::connect(&db.settings()).await.unwrap();
        let heartbeat = start_heartbeat(&store, participant(i).1, settings);
        nodes.push((store, heartbeat));
    }
    wait_for("a writer", Duration::from_secs(5), async || {
        nodes[0]
            .0
            .writer()
            .await
            .is_ok_and(|writer| writer.is_some())
    })
    .await;

    // Every node flushes from three tasks at once (so one writer's flushes overlap), new ids each
    // time and a few that another flush has probably stored already.
    let next_id = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let writing = Duration::from_secs(3);
    let flushes = nodes.iter().flat_map(|(store, heartbeat)| {
        let address = heartbeat.participant.address;
        let next_id = next_id.clone();
        (0..3).map(move |_| {
            let (store, next_id) = (store.clone(), next_id.clone());
            async move {
                let until = Instant::now() + writing;
                let mut inserted = 0;
                while Instant::now() < until {
                    let start = next_id.fetch_add(20, std::sync::atomic::Ordering::Relaxed);
                    // Five ids of a batch two back, most likely stored by now: flushes that
                    // share uncommitted ids would wait for each other and hide the race.
                    let mut batch = verified_prices(start.max(41) - 40..start.max(41) - 35);
                    batch.extend(verified_prices(start..start + 20));
                    if let FlushOutcome::Flushed(flushed) = store
                        .flush(&address, &batch, &Deployment::default())
                        .await
                        .unwrap()
                    {
                        inserted += flushed.inserted.len();
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                inserted
            }
        })
    });
    let writers = tokio::spawn(join_all(flushes.collect::<Vec<_>>()));

    let mut poller = Poller::new();
    let mut polls = 0;
    while !writers.is_finished() {
        poller.poll(&direct).await;
        polls += 1;
    }
    let inserted: usize = writers.await.unwrap().into_iter().sum();
    poller.poll(&direct).await;

    let table = ids_by_seq(&conn).await;
    println!(
        "poller: {} rows in {polls} polls while {inserted} were inserted",
        poller.seen.len()
    );
    assert_eq!(table.len(), inserted);
    assert!(inserted > 100, "too few rows to judge: {inserted}");
    assert_eq!(
        poller.seen, table,
        "the poller missed rows or saw them out of order"
    );

    for (_, node) in &mut nodes {
        let _ = node.stop.take().unwrap().send(());
    }
    for (_, node) in nodes {
        node.task.await.unwrap();
    }
    let _ = conn.close().await;
}

#[tokio::test]
async fn created_time_is_the_moment_of_the_insert_not_the_start_of_its_transaction() {
    let (db, store) = migrated("created_time").await;
    let (_, me) = participant(0);
    let address = me.address;
    store.heartbeat(&me, Duration::ZERO).await.unwrap();

    // Something holds the heartbeat table, as a heartbeat does for a moment: the flush's
    // transaction has begun and waits at its fence.
    let blocker = db.connect().await;
    let blocking = blocker.begin().await.unwrap();
    blocking
        .execute_unprepared("LOCK TABLE heartbeat IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let flush = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .flush(&address, &verified_prices(1..4), &Deployment::default())
                .await
        }
    });
    let observer = db.connect().await;
    wait_for(
        "the flush to wait for the lock",
        Duration::from_secs(5),
        async || {
            let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted \
                       AND relation = 'heartbeat'::regclass";
            count(&observer, waiting).await > 0
        },
    )
    .await;
    // The lock is held a while longer, as a slow transaction would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let released: chrono::DateTime<chrono::Utc> = blocking
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT clock_timestamp()",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    blocking.commit().await.unwrap();
    let flushed = flush.await.unwrap().unwrap();
    assert!(matches!(flushed, FlushOutcome::Flushed(ref f) if f.inserted.len() == 3));

    let rows = observer
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT created_time, clock_timestamp() FROM prices ORDER BY seq",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        let created: chrono::DateTime<chrono::Utc> = row.try_get_by_index(0).unwrap();
        let now: chrono::DateTime<chrono::Utc> = row.try_get_by_index(1).unwrap();
        assert!(
            created >= released,
            "created_time {created} is before the fence let the flush through at {released}"
        );
        assert!(created <= now);
    }
    let _ = blocker.close().await;
    let _ = observer.close().await;
}

/// What a node checks a stored notice against: one statement reads the rows under the named
/// ids, ids without a row are simply absent, another round under a stored id reads as a
/// conflict, and a database that does not answer is an error, never "not stored".
#[tokio::test]
async fn a_notices_ids_are_looked_up_in_one_statement_and_a_failure_is_no_answer() {
    let (db, store, me) = as_writer("notice_lookup").await;
    let prices = verified_prices(7..10);
    store
        .flush(&me.address, &prices, &Deployment::default())
        .await
        .unwrap();
    let metrics = Metrics::default();
    let (proxy, through) = through_proxy(&db, Duration::from_millis(500)).await;
    let through = through.with_probe(std::sync::Arc::new(metrics.clone()));
    let lookups = || {
        Metrics::counter(
            &metrics.db_statements,
            price_oracle::metrics::StatementLabel {
                kind: "read stored ids",
            },
        )
        .get()
    };

    // A full lookup's worth of ids, two of them stored, one beyond any BIGINT.
    let mut asked: Vec<u64> = (1_000..1_000 + MAX_IDS_PER_LOOKUP as u64 - 3).collect();
    asked.extend([9, 7, u64::MAX]);
    let mut rows = through.stored_rounds(&asked).await.unwrap();
    rows.sort_by_key(|row| row.id);
    assert_eq!(lookups(), 1, "one statement for {} ids", asked.len());
    assert_eq!(rows.iter().map(|row| row.id).collect::<Vec<_>>(), [7, 9]);
    for (row, price) in rows.iter().zip([&prices[0], &prices[2]]) {
        assert!(row.records(price.round()), "{row:?}");
        assert_eq!(row.pair, "ETH/USD");
    }
    // Another origin, or another pair, under a stored id: a conflict, never stored either.
    let round = *prices[0].round();
    let other_origin = Round {
        origin: sample_signers()[1].address(),
        ..round
    };
    let other_pair = Round {
        pair: price_oracle::pair::Pair::BtcUsd,
        ..round
    };
    assert!(!rows[0].records(&other_origin) && !rows[0].records(&other_pair));
    // Nothing to ask, nothing asked.
    assert!(through.stored_rounds(&[]).await.unwrap().is_empty());
    assert!(through.stored_rounds(&[u64::MAX]).await.unwrap().is_empty());
    assert_eq!(lookups(), 1);

    proxy.stall();
    let err = through.stored_rounds(&[7, 8]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { .. } | StoreError::Db { .. }),
        "{err}"
    );
    proxy.resume();
}
