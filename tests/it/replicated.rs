//! A store given several servers writes to the one that takes writes and follows it when it
//! moves. Two databases of the test server play the two servers: one made read-only with
//! `default_transaction_read_only`, which refuses writes as a standby does (SQLSTATE 25006);
//! a demotion ends every session, as PostgreSQL's restart into recovery does.

use std::sync::Arc;
use std::time::Duration;

use price_oracle::metrics::Metrics;
use price_oracle::store::{DatabaseUrl, Store};
use price_oracle::testkit::{self, TestDb};
use sea_orm::{ConnectionTrait, Database};

/// Makes `db` refuse writes in every new session (and ends its sessions), or take them again.
async fn set_read_only(db: &TestDb, read_only: bool) {
    let admin = Database::connect(testkit::server_url()).await.unwrap();
    let setting = if read_only {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    admin
        .execute_unprepared(&format!("ALTER DATABASE \"{}\" {setting}", db.name))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ))
        .await
        .unwrap();
    let _ = admin.close().await;
}

async fn heartbeats(db: &TestDb) -> i64 {
    let conn = Database::connect(&db.url).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) FROM heartbeat",
        ))
        .await
        .unwrap()
        .unwrap();
    let _ = conn.close().await;
    row.try_get_by_index::<i64>(0).unwrap()
}

#[tokio::test]
async fn a_store_writes_to_the_server_that_takes_writes_and_follows_a_demotion() {
    let (first, second) = (
        TestDb::create("primary_a").await,
        TestDb::create("primary_b").await,
    );
    for db in [&first, &second] {
        Store::migrate(&db.settings()).await.unwrap();
    }
    set_read_only(&first, true).await;
    let mut settings = testkit::settings_for(&format!("{},{}", first.url, second.url));
    settings.timeout = Duration::from_secs(2);
    // Migrations go to the primary too (here: nothing left to apply).
    Store::migrate(&settings).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let store = Store::connect(&settings)
        .await
        .unwrap()
        .with_probe(metrics.clone());
    let me = testkit::participant(1);
    store.heartbeat(&me, Duration::ZERO).await.unwrap();
    assert_eq!(
        (heartbeats(&first).await, heartbeats(&second).await),
        (0, 1)
    );

    // The second is demoted and answers read-only; the first is promoted.
    set_read_only(&first, false).await;
    set_read_only(&second, true).await;
    // The first call after the demotion fails (its session ended, or the write is refused);
    // the store looks again, and the next heartbeat is written on the new primary.
    let mut written = false;
    for _ in 0..5 {
        if store.heartbeat(&me, Duration::ZERO).await.is_ok() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(written, "no heartbeat after the failover");
    assert_eq!(heartbeats(&first).await, 1, "written on the new primary");
    assert_eq!(store.server(), DatabaseUrl::new(&first.url).host());
    assert_eq!(metrics.database_failovers.get(), 1);
    // Never on the demoted one, which still answers.
    let demoted = Database::connect(&second.url).await.unwrap();
    let refused = demoted
        .execute_unprepared("UPDATE heartbeat SET nodename = 'x'")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    let _ = demoted.close().await;
    store.close().await;
    set_read_only(&second, false).await;
}

#[tokio::test]
async fn with_no_server_taking_writes_a_store_says_which_answered_what() {
    let db = TestDb::create("no_primary").await;
    Store::migrate(&db.settings()).await.unwrap();
    set_read_only(&db, true).await;
    // Port 1 on loopback: nothing listens there.
    let unused = format!("postgres://postgres@127.0.0.1:1/{}", db.name);
    let settings = testkit::settings_for(&format!("{},{unused}", db.url));
    let err = Store::connect(&settings).await.unwrap_err().to_string();
    assert!(err.contains("no server takes writes"), "{err}");
    assert!(err.contains("read-only (a standby)"), "{err}");
    assert!(err.contains("refused") || err.contains("connect"), "{err}");
    assert!(Store::migrate(&settings).await.is_err());
    set_read_only(&db, false).await;
}
