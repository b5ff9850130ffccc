//! `oracle db-role`: the nodes' database role can do what a node does and nothing more.
//!
//! The local test server may trust 127.0.0.1 without checking passwords; what is tested here is
//! the privileges, which the server enforces either way.

use price_oracle::store::Store;
use price_oracle::testkit::TestDb;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

use crate::common::oracle;

const ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

async fn db_role(url: &str, role: &str, node: &str) -> std::process::Output {
    db_role_with(url, role, node, &[("ORACLE_ROLE_PASSWORD", "node-pw")]).await
}

/// `oracle db-role --role ROLE --node NODE` against `url`, with `env` (and no other `ORACLE_*`
/// variable).
async fn db_role_with(
    url: &str,
    role: &str,
    node: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    env.push(("ORACLE_DATABASE_URL".into(), url.into()));
    let args = ["db-role", "--role", role, "--node", node]
        .map(str::to_owned)
        .to_vec();
    oracle::run_blocking_with_env(args, env).await
}

/// A role of the server for one test, bound to `node` in `db`; dropped by [`NodeRole::drop_in`].
struct NodeRole {
    name: String,
    url: String,
}

impl NodeRole {
    async fn create(db: &TestDb, node: &str) -> Self {
        let name = format!("oracle_node_test_{:08x}", rand::random::<u32>());
        let output = db_role(&db.url, &name, node).await;
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{err}");
        let mut url = reqwest::Url::parse(&db.url).unwrap();
        url.set_username(&name).unwrap();
        url.set_password(Some("node-pw")).unwrap();
        Self {
            name,
            url: url.to_string(),
        }
    }

    async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.unwrap()
    }

    /// Roles belong to the server, not the test's database: removed before the test judges.
    async fn drop_in(self, db: &TestDb) {
        let admin = db.connect().await;
        admin
            .execute_unprepared(&format!("DROP OWNED BY \"{}\"", self.name))
            .await
            .unwrap();
        let _ = admin.close().await;
        let server = Database::connect(price_oracle::testkit::server_url())
            .await
            .unwrap();
        server
            .execute_unprepared(&format!("DROP ROLE \"{}\"", self.name))
            .await
            .unwrap();
        let _ = server.close().await;
    }
}

async fn allowed(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    db.execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(|err| format!("the node role was refused {sql}: {err}"))
}

async fn refused(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    match db.execute_unprepared(sql).await {
        Ok(_) => Err(format!("the node role may {sql}")),
        Err(err) if err.to_string().contains("permission denied") => Ok(()),
        Err(err) if err.to_string().contains("must be owner") => Ok(()),
        Err(err) => Err(format!("{sql} failed for another reason: {err}")),
    }
}

async fn check_privileges(node: &DatabaseConnection) -> Result<(), String> {
    let insert_price = format!(
        "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, \
         signer_count, lastsigned_time, written_by, spread, first_observed_at, last_observed_at) \
         VALUES (1, 'ETH/USD', 3000, now(), '{ADDRESS}', '[]', 1, now(), '{ADDRESS}', 0, now(), \
         now()) ON CONFLICT (id) DO NOTHING"
    );
    allowed(node, "SELECT * FROM prices").await?;
    allowed(
        node,
        &format!(
            "INSERT INTO heartbeat (node_address, nodename, peer_id, \"timestamp\", started_at) \
             VALUES ('{ADDRESS}', 'n', 'p', now(), now()) ON CONFLICT (node_address) \
             DO UPDATE SET \"timestamp\" = EXCLUDED.\"timestamp\""
        ),
    )
    .await?;
    allowed(node, "UPDATE heartbeat SET nodename = 'm'").await?;
    allowed(node, "SELECT * FROM heartbeat").await?;
    // The flush's fence.
    let txn = node.begin().await.map_err(|err| err.to_string())?;
    txn.execute_unprepared("LOCK TABLE heartbeat IN SHARE MODE")
        .await
        .map_err(|err| format!("the node role cannot lock heartbeat: {err}"))?;
    txn.rollback().await.map_err(|err| err.to_string())?;
    allowed(node, "SELECT * FROM signers").await?;
    allowed(node, "SELECT * FROM lease_rules").await?;
    // Its own row, not being the writer (its heartbeat is not in the future): refused by
    // row-level security.
    match node.execute_unprepared(&insert_price).await {
        Err(err) if err.to_string().contains("row-level security") => {}
        other => {
            return Err(format!(
                "a price inserted by a node that is no writer: {other:?}"
            ));
        }
    }
    refused(node, "DELETE FROM heartbeat").await?;
    refused(node, "UPDATE lease_rules SET max_term = '1 year'").await?;
    refused(node, "DELETE FROM node_roles").await?;

    refused(
        node,
        &format!("INSERT INTO signers (address, name) VALUES ('{ADDRESS}', 'me')"),
    )
    .await?;
    refused(node, "UPDATE signers SET revoked_at = now()").await?;
    refused(node, "DELETE FROM signers").await?;
    refused(node, "DELETE FROM prices").await?;
    refused(node, "UPDATE prices SET price = 1").await?;
    refused(node, "TRUNCATE prices").await?;
    refused(node, "DROP TABLE prices").await?;
    refused(node, "DROP TABLE signers").await?;
    refused(node, "CREATE TABLE intruder (x int)").await?;
    refused(node, "ALTER TABLE prices ADD COLUMN x int").await?;
    refused(node, "DELETE FROM seaql_migrations").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_role_has_exactly_a_nodes_privileges() {
    let db = TestDb::create("roles").await;
    Store::migrate(&db.settings()).await.unwrap();
    let role = NodeRole::create(&db, ADDRESS).await;
    // Again: same role, same node, new password.
    let output = db_role(&db.url, &role.name, ADDRESS).await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run again: {err}");
    assert!(
        !err.contains("node-pw"),
        "the password is never logged: {err}"
    );
    // One role per node: another role for the same address is refused.
    let output = db_role(&db.url, "oracle_node_second_role", ADDRESS).await;
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("already has another role"), "{err}");

    let node = role.connect().await;
    let checked = check_privileges(&node).await;
    let _ = node.close().await;
    role.drop_in(&db).await;
    checked.unwrap();
}

#[tokio::test]
async fn bad_role_names_and_missing_passwords_are_refused_before_connecting() {
    let unreachable = "postgres://admin@127.0.0.1:1/oracle";
    let output = db_role(unreachable, "Robert'); DROP TABLE prices;--", ADDRESS).await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("invalid role name"), "{err}");

    // No ORACLE_ROLE_PASSWORD, no ORACLE_PASSWORD_FILE.
    let output = db_role_with(unreachable, "oracle_node", ADDRESS, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("ORACLE_ROLE_PASSWORD"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// What the database answers `sql` sent with a node's own credential: `Ok` with the rows
/// touched, or the error's text.
async fn send(db: &DatabaseConnection, sql: &str) -> Result<u64, String> {
    db.execute_unprepared(sql)
        .await
        .map(|done| done.rows_affected())
        .map_err(|err| err.to_string())
}

fn beat_sql(address: &str, timestamp: &str, lease_since: &str) -> String {
    format!(
        "INSERT INTO heartbeat (node_address, nodename, peer_id, \"timestamp\", started_at, \
         lease_since) VALUES ('{address}', 'n', 'p', {timestamp}, now(), {lease_since}) \
         ON CONFLICT (node_address) DO UPDATE SET \"timestamp\" = EXCLUDED.\"timestamp\", \
         lease_since = EXCLUDED.lease_since"
    )
}

fn price_sql(id: u64, writer: &str) -> String {
    format!(
        "INSERT INTO prices (id, pair, price, observed_at, first_signer, sign_data, \
         signer_count, lastsigned_time, written_by, spread, first_observed_at, last_observed_at) \
         VALUES ({id}, 'ETH/USD', 1, now(), '{writer}', '[]', 1, now(), '{writer}', 0, now(), \
         now())"
    )
}

fn refused_because(result: Result<u64, String>, why: &str) -> Result<(), String> {
    match result {
        Err(err) if err.contains(why) => Ok(()),
        other => Err(format!("expected a refusal ({why}), got {other:?}")),
    }
}

/// A member holding its own node credential, sending any SQL it likes: the database keeps it
/// to its own heartbeat row, to the lease rules, and to inserting prices only as the writer.
async fn attack_with_own_credential(
    admin: &DatabaseConnection,
    a: &DatabaseConnection,
    b: &DatabaseConnection,
    (addr_a, addr_b): (&str, &str),
) -> Result<(), String> {
    admin
        .execute_unprepared(
            "UPDATE lease_rules SET max_lease = '30 seconds', max_term = '2 seconds', \
             retake_after = '10 seconds'",
        )
        .await
        .map_err(|err| err.to_string())?;
    send(b, &beat_sql(addr_b, "now()", "NULL")).await?;
    // Another node's heartbeat: neither inserted nor changed.
    refused_because(
        send(a, &beat_sql(addr_b, "'infinity'", "now()")).await,
        "writes only the heartbeat of node",
    )?;
    let touched = send(
        a,
        &format!("UPDATE heartbeat SET \"timestamp\" = 'infinity' WHERE node_address = '{addr_b}'"),
    )
    .await?;
    if touched != 0 {
        return Err("A changed B's heartbeat".into());
    }
    // A lease past the rules' reach.
    refused_because(
        send(a, &beat_sql(addr_a, "'infinity'", "now()")).await,
        "max_lease",
    )?;
    refused_because(
        send(
            a,
            &beat_sql(addr_a, "now() + interval '31 seconds'", "now()"),
        )
        .await,
        "max_lease",
    )?;
    // Not the writer: no price.
    refused_because(send(a, &price_sql(1, addr_a)).await, "row-level security")?;
    // A takes the lease by the rules; B cannot take it from A, nor insert while A holds it.
    send(
        a,
        &beat_sql(addr_a, "now() + interval '20 seconds'", "now()"),
    )
    .await?;
    refused_because(
        send(
            b,
            &beat_sql(addr_b, "now() + interval '30 seconds'", "now()"),
        )
        .await,
        "another node holds the lease",
    )?;
    refused_because(send(b, &price_sql(2, addr_b)).await, "row-level security")?;
    // Nor in A's name.
    refused_because(send(b, &price_sql(3, addr_a)).await, "row-level security")?;
    send(a, &price_sql(4, addr_a)).await?;
    // Renewing keeps the term's start, whatever A sends.
    send(
        a,
        &beat_sql(
            addr_a,
            "now() + interval '20 seconds'",
            "now() + interval '1 hour'",
        ),
    )
    .await?;
    let since_kept = send(
        admin,
        &format!(
            "SELECT 1 FROM heartbeat WHERE node_address = '{addr_a}' AND lease_since <= now()"
        ),
    )
    .await?;
    if since_kept != 1 {
        return Err("a renewal moved the term's start".into());
    }
    // Past the term (2 s): no renewal.
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    refused_because(
        send(
            a,
            &beat_sql(addr_a, "now() + interval '20 seconds'", "now()"),
        )
        .await,
        "max_term",
    )?;
    // Released and taken again at once: refused while B is alive; B takes it.
    send(a, &beat_sql(addr_a, "now()", "NULL")).await?;
    refused_because(
        send(
            a,
            &beat_sql(addr_a, "now() + interval '20 seconds'", "now()"),
        )
        .await,
        "another live node takes the lease first",
    )?;
    send(b, &beat_sql(addr_b, "now()", "NULL")).await?;
    send(
        b,
        &beat_sql(addr_b, "now() + interval '20 seconds'", "now()"),
    )
    .await?;
    send(b, &price_sql(5, addr_b)).await?;
    refused_because(send(a, &price_sql(6, addr_a)).await, "row-level security")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_its_own_node_credential_is_held_to_its_row_its_term_and_the_writers_turn() {
    let db = TestDb::create("roles_rls").await;
    Store::migrate(&db.settings()).await.unwrap();
    let (addr_a, addr_b) = (
        price_oracle::testkit::participant(1).key(),
        price_oracle::testkit::participant(2).key(),
    );
    let (role_a, role_b) = (
        NodeRole::create(&db, &addr_a).await,
        NodeRole::create(&db, &addr_b).await,
    );
    let (admin, a, b) = (
        db.connect().await,
        role_a.connect().await,
        role_b.connect().await,
    );
    let result = attack_with_own_credential(&admin, &a, &b, (&addr_a, &addr_b)).await;
    for conn in [admin, a, b] {
        let _ = conn.close().await;
    }
    role_a.drop_in(&db).await;
    role_b.drop_in(&db).await;
    result.unwrap();
}

/// Honest nodes on their own roles: the lease's heartbeats, the writer's flush and a stop never
/// send what the database refuses, and the term the database caps ends as it says.
#[tokio::test(flavor = "multi_thread")]
async fn honest_nodes_on_their_own_roles_heartbeat_take_turns_and_store() {
    use price_oracle::domain::Deployment;
    use price_oracle::store::lease::LeaseTerms;
    use price_oracle::store::prices::FlushOutcome;
    use price_oracle::testkit::{self, Signing};
    use std::time::Duration;

    let db = TestDb::create("roles_honest").await;
    Store::migrate(&db.settings()).await.unwrap();
    let admin_store = Store::connect(&db.settings()).await.unwrap();
    let signers: Vec<_> = (1..=3).map(testkit::identity).collect();
    for signer in &signers {
        admin_store
            .add_signer(&signer.address(), "m")
            .await
            .unwrap();
    }
    let admin = db.connect().await;
    admin
        .execute_unprepared(
            "UPDATE signers SET added_at = '2025-01-01T00:00:00Z'; \
             UPDATE lease_rules SET max_term = '2 seconds', retake_after = '10 seconds'",
        )
        .await
        .unwrap();
    let (me_a, me_b) = (testkit::participant(1), testkit::participant(2));
    let (role_a, role_b) = (
        NodeRole::create(&db, &me_a.key()).await,
        NodeRole::create(&db, &me_b.key()).await,
    );
    let checked = async {
        let store_a = Store::connect(&testkit::settings_for(&role_a.url)).await?;
        let store_b = Store::connect(&testkit::settings_for(&role_b.url)).await?;
        // The node's term is a minute; the database's rules cap it at 2 s.
        let terms = LeaseTerms {
            lease: Duration::from_secs(20),
            term: Duration::from_secs(60),
        };
        let first = store_a.heartbeat_with(&me_a, terms, true).await?;
        anyhow::ensure!(first.holds);
        // The database says what it applied: the lease as asked (under max_lease), the term cut.
        let applied = LeaseTerms {
            lease: Duration::from_secs(20),
            term: Duration::from_secs(2),
        };
        anyhow::ensure!(first.applied == applied, "{:?}", first.applied);
        anyhow::ensure!(!store_b.heartbeat_with(&me_b, terms, true).await?.holds);
        let batch = testkit::verified_batch(1..3, &signers, Signing::Placeholder);
        let flushed = store_a
            .flush(&me_a.address, &batch, &Deployment::default())
            .await?;
        anyhow::ensure!(
            matches!(&flushed, FlushOutcome::Flushed(f) if f.inserted.len() == 2),
            "{flushed:?}"
        );
        let other = store_b
            .flush(&me_b.address, &batch, &Deployment::default())
            .await?;
        anyhow::ensure!(matches!(other, FlushOutcome::NotWriter { .. }), "{other:?}");
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        // A's term ended: it releases, and does not take the lease again while B is alive.
        anyhow::ensure!(!store_a.heartbeat_with(&me_a, terms, true).await?.holds);
        anyhow::ensure!(!store_a.heartbeat_with(&me_a, terms, true).await?.holds);
        anyhow::ensure!(store_b.heartbeat_with(&me_b, terms, true).await?.holds);
        // B stops: it claims (keeps) the lease for its last flush and leaves; A then takes.
        anyhow::ensure!(store_b.claim_lease(&me_b, Duration::from_secs(20)).await?);
        store_b.leave(&me_b).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        anyhow::ensure!(store_a.claim_lease(&me_a, Duration::from_secs(20)).await?);
        anyhow::ensure!(admin_store.writer().await? == Some(me_a.address));
        store_a.close().await;
        store_b.close().await;
        Ok(())
    }
    .await;
    let _ = admin.close().await;
    admin_store.close().await;
    role_a.drop_in(&db).await;
    role_b.drop_in(&db).await;
    checked.unwrap();
}
