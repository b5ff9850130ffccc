//! `oracle db-role`: the nodes' database role can do what a node does and nothing more.
//!
//! The local test server may trust 127.0.0.1 without checking passwords; what is tested here is
//! the privileges, which the server enforces either way.

use price_oracle::store::Store;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

use crate::common::oracle;

const ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

async fn db_role(url: &str, role: &str) -> std::process::Output {
    db_role_with(url, role, &[("ORACLE_ROLE_PASSWORD", "node-pw")]).await
}

/// `oracle db-role --role ROLE` against `url`, with `env` (and no other `ORACLE_*` variable).
async fn db_role_with(url: &str, role: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    env.push(("ORACLE_DATABASE_URL".into(), url.into()));
    let args = ["db-role", "--role", role].map(str::to_owned).to_vec();
    oracle::run_blocking_with_env(args, env).await
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
    allowed(node, &insert_price).await?;
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
    allowed(node, "DELETE FROM heartbeat").await?;
    allowed(node, "SELECT * FROM signers").await?;

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
    let db = price_oracle::testkit::TestDb::create("roles").await;
    Store::migrate(&db.settings()).await.unwrap();
    let role = format!("oracle_node_test_{:08x}", rand::random::<u32>());

    for run in 0..2 {
        let output = db_role(&db.url, &role).await;
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run}: {err}");
        assert!(
            !err.contains("node-pw"),
            "the password is never logged: {err}"
        );
    }

    let mut url = reqwest::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("node-pw")).unwrap();
    let node = Database::connect(url.as_str()).await.unwrap();
    let checked = check_privileges(&node).await;
    let _ = node.close().await;

    // Roles belong to the server, not the test's database: remove it before judging.
    let admin = db.connect().await;
    admin
        .execute_unprepared(&format!("DROP OWNED BY \"{role}\""))
        .await
        .unwrap();
    let _ = admin.close().await;
    let server = Database::connect(price_oracle::testkit::server_url())
        .await
        .unwrap();
    server
        .execute_unprepared(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
    let _ = server.close().await;

    checked.unwrap();
}

#[tokio::test]
async fn bad_role_names_and_missing_passwords_are_refused_before_connecting() {
    let unreachable = "postgres://admin@127.0.0.1:1/oracle";
    let output = db_role(unreachable, "Robert'); DROP TABLE prices;--").await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("invalid role name"), "{err}");

    // No ORACLE_ROLE_PASSWORD, no ORACLE_PASSWORD_FILE.
    let output = db_role_with(unreachable, "oracle_node", &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("ORACLE_ROLE_PASSWORD"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
