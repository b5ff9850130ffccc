//! The `oracle` binary as a user runs it: keygen, price against the mock exchange, migrate,
//! errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use price_oracle::mock_exchange::{Fault, MockExchange, MockSettings};
use price_oracle::price::UsdPrice;

fn oracle(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oracle"))
        .args(args)
        .current_dir(dir)
        .env_remove("ORACLE_LOG_LEVEL")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn keygen_creates_a_private_key_and_shows_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let created = oracle(dir.path(), &["keygen", "--name", "node0"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let out = stdout(&created);
    let address = field(&out, "address");
    let peer_id = field(&out, "peer id");
    assert!(address.starts_with("0x") && address.len() == 42, "{out}");
    assert!(peer_id.starts_with("16Uiu2"), "{out}");

    let key = dir.path().join("keys/node0.priv");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let shown = oracle(dir.path(), &["keygen", "--name", "node0", "--show"]);
    assert!(shown.status.success());
    assert_eq!(field(&stdout(&shown), "address"), address);
    assert_eq!(field(&stdout(&shown), "peer id"), peer_id);

    let again = oracle(dir.path(), &["keygen", "--name", "node0"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));

    let replaced = oracle(dir.path(), &["keygen", "--name", "node0", "--force"]);
    assert!(replaced.status.success());
    assert_ne!(field(&stdout(&replaced), "address"), address);
}

#[test]
fn keygen_show_of_a_broken_key_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("k")).unwrap();
    std::fs::write(dir.path().join("k/bad.priv"), "not a key").unwrap();
    let output = oracle(
        dir.path(),
        &["keygen", "--name", "bad", "--key-dir", "k", "--show"],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("k/bad.priv") && err.contains("64 hex"),
        "{err}"
    );
}

async fn run_price(base: String, extra: &'static [&'static str]) -> Output {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "price",
            "--sources",
            "coinbase,coingecko,kraken,binance",
            "--source-base-url",
            &base,
        ];
        args.extend_from_slice(extra);
        oracle(dir.path(), &args)
    })
    .await
    .unwrap()
}

fn mock_settings(fail_rate: f64) -> MockSettings {
    MockSettings {
        seed: None,
        fail_rate,
        faults: Fault::ALL.to_vec(),
        hang: Duration::from_secs(2),
        ..MockSettings::steady(UsdPrice::parse_quote("3000").unwrap())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn price_prints_four_quotes_and_the_median() {
    let exchange = MockExchange::start("127.0.0.1:0".parse().unwrap(), mock_settings(0.0))
        .await
        .unwrap();
    let output = run_price(exchange.base_url(), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    for name in ["coinbase", "coingecko", "kraken", "binance"] {
        assert_eq!(field(&out, name), "3000.00000000", "{out}");
    }
    assert_eq!(field(&out, "median"), "3000.00000000 (4 of 4 sources)");
}

#[tokio::test(flavor = "multi_thread")]
async fn price_with_every_answer_faulty_exits_1_with_a_line_per_source() {
    let exchange = MockExchange::start("127.0.0.1:0".parse().unwrap(), mock_settings(1.0))
        .await
        .unwrap();
    let output = run_price(
        exchange.base_url(),
        &["--source-timeout", "300ms", "--source-retries", "1"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    for name in ["coinbase", "coingecko", "kraken", "binance"] {
        assert!(field(&out, name).starts_with("error: "), "{out}");
    }
    assert!(field(&out, "median").starts_with("none"), "{out}");
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn bad_flags_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let output = oracle(dir.path(), &["price", "--source-timeout", "ten"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("30s"), "{}", stderr(&output));
    let output = Command::new(env!("CARGO_BIN_EXE_oracle"))
        .args(["price", "--min-sources", "3"])
        .env("ORACLE_SOURCES", "coinbase,kraken")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--min-sources 3"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_the_schema_and_never_prints_the_password() {
    let db = common::TestDb::create("cli_migrate").await;
    let url = db.url.clone();
    let (migrated, again, unreachable) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let migrated = oracle(dir.path(), &["migrate", "--database-url", &url]);
        let again = oracle(dir.path(), &["migrate", "--database-url", &url]);
        let unreachable = oracle(
            dir.path(),
            &[
                "migrate",
                "--database-url",
                "postgres://oracle:hunter2@127.0.0.1:1/oracle",
                "--db-timeout",
                "1s",
            ],
        );
        (migrated, again, unreachable)
    })
    .await
    .unwrap();
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&migrated).contains("up to date"),
        "{}",
        stderr(&migrated)
    );

    assert_eq!(unreachable.status.code(), Some(1));
    let err = stderr(&unreachable);
    assert!(
        err.contains("cannot migrate postgres://oracle:***@127.0.0.1:1/oracle"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

async fn store_signed_prices(db: &common::TestDb, ids: &[u64]) {
    use price_oracle::identity::Identity;
    use price_oracle::message::{SignatureEntry, price_digest};
    use price_oracle::store::Store;
    use price_oracle::store::lease::Participant;
    use price_oracle::store::prices::{FlushOutcome, VerifiedPrice};

    Store::migrate(&db.settings()).await.unwrap();
    let store = Store::connect(&db.settings()).await.unwrap();
    let signers: Vec<Identity> = (1..=3u8)
        .map(|i| Identity::from_secret(&[i; 32]).unwrap())
        .collect();
    let writer = Participant {
        address: signers[0].address(),
        name: "node1".into(),
        peer_id: signers[0].peer_id().to_string(),
    };
    store.heartbeat(&writer, Duration::ZERO).await.unwrap();
    let batch: Vec<VerifiedPrice> = ids
        .iter()
        .map(|&id| {
            let price = UsdPrice::from_e8(300_000_000_000 + id as i64).unwrap();
            let observed_at = 1_763_700_000 + id;
            let digest = price_digest(id, price, observed_at);
            VerifiedPrice {
                id,
                price,
                observed_at,
                origin: signers[0].address(),
                signatures: signers
                    .iter()
                    .map(|s| SignatureEntry::sign(s.signer(), digest))
                    .collect(),
                last_signed: std::time::SystemTime::now(),
            }
        })
        .collect();
    let outcome = store.flush(&writer.address, &batch).await.unwrap();
    assert!(matches!(outcome, FlushOutcome::Flushed(ref f) if f.inserted.len() == ids.len()));
    store.close().await;
}

async fn oracle_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        oracle(dir.path(), &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_a_clean_database_and_names_tampered_rows() {
    use sea_orm::ConnectionTrait;

    let db = common::TestDb::create("verify").await;
    store_signed_prices(&db, &[101, 102, 103, 104]).await;
    let verify = || {
        oracle_async(vec![
            "verify".into(),
            "--database-url".into(),
            db.url.clone(),
        ])
    };

    let clean = verify().await;
    assert!(
        clean.status.success(),
        "{}\n{}",
        stdout(&clean),
        stderr(&clean)
    );
    assert!(
        stdout(&clean).contains("rows              4"),
        "{}",
        stdout(&clean)
    );
    assert!(
        stdout(&clean).contains("signatures        12"),
        "{}",
        stdout(&clean)
    );
    assert!(stdout(&clean).contains("OK"));

    let conn = db.connect().await;
    // One tampered price, one tampered signature (a changed byte in the second signature's s).
    conn.execute_unprepared("UPDATE prices SET price = price + 1 WHERE id = 102")
        .await
        .unwrap();
    conn.execute_unprepared(
        "UPDATE prices SET sign_data = jsonb_set(sign_data, '{1,signature}', \
         to_jsonb(overlay(sign_data->1->>'signature' placing \
         (CASE WHEN substr(sign_data->1->>'signature', 80, 1) = 'a' THEN 'b' ELSE 'a' END) \
         from 80 for 1))) WHERE id = 104",
    )
    .await
    .unwrap();
    let _ = conn.close().await;

    let tampered = verify().await;
    assert_eq!(tampered.status.code(), Some(1), "{}", stderr(&tampered));
    let out = stdout(&tampered);
    assert!(out.contains("invalid           2"), "{out}");
    assert!(out.contains("  102  signature of"), "{out}");
    assert!(out.contains("  104  signature of"), "{out}");
    assert!(!out.contains("  101 ") && !out.contains("  103 "), "{out}");
    assert!(out.contains("FAILED"), "{out}");

    // A trusted-signers list without the third signer leaves the clean rows below quorum.
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.txt");
    let lines: Vec<String> = (1..=2u8)
        .map(|i| {
            price_oracle::identity::Identity::from_secret(&[i; 32])
                .unwrap()
                .address()
                .to_string()
        })
        .collect();
    std::fs::write(&trusted, lines.join("\n")).unwrap();
    let out = oracle_async(vec![
        "verify".into(),
        "--database-url".into(),
        db.url.clone(),
        "--trusted-signers".into(),
        trusted.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("below quorum      2"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_nodes_and_prices() {
    let db = common::TestDb::create("status").await;
    store_signed_prices(&db, &[7]).await;
    let out = oracle_async(vec![
        "status".into(),
        "--database-url".into(),
        db.url.clone(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("NODES (1)") && text.contains("node1"),
        "{text}"
    );
    assert!(
        text.contains("LATEST PRICES (1 shown)") && text.contains("3000.00000007"),
        "{text}"
    );
}
