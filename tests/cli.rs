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
        price: UsdPrice::parse_quote("3000").unwrap(),
        volatility: 0.0,
        tick: Duration::from_secs(1),
        seed: None,
        fail_rate,
        faults: Fault::ALL.to_vec(),
        hang: Duration::from_secs(2),
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
