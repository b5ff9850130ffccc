//! The `oracle` binary as a user runs it: keygen, price against the mock exchange, migrate,
//! errors.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use price_oracle::mock_exchange::{Fault, MockExchange, MockSettings};
use price_oracle::price::UsdPrice;

use crate::common::oracle::{
    command as oracle_command, run as oracle, run_blocking as oracle_async,
    run_with_env as oracle_with_env, stderr, stdout,
};

/// The command exited 1 and its error output says `text`.
fn fails_saying(output: &Output, text: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert!(stderr(output).contains(text), "{}", stderr(output));
}

/// The command exited 1 and its output says `text`.
fn fails_printing(output: &Output, text: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stdout(output));
    prints(output, text);
}

/// The command's output says `text`.
fn prints(output: &Output, text: &str) {
    assert!(stdout(output).contains(text), "{}", stdout(output));
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
    fails_saying(&again, "already exists");
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
    let err = one_error_line(&output);
    assert!(
        err.contains("k/bad.priv") && err.contains("64 hex"),
        "{err}"
    );
}

/// The architecture notes' test vector: a key, its address and its peer id.
const VECTOR_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const VECTOR_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const VECTOR_PEER_ID: &str = "16Uiu2HAkzh4QdxB7ijzVnwd6JFNNe4bcr1JBwYUypXe3pX5BRpqK";

#[test]
fn keygen_writes_a_keystore_that_opens_only_with_its_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "correct horse\n").unwrap();
    let with_file = ["--password-file", "pw"];
    let keygen = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["keygen", "--name", "node0"];
        args.extend_from_slice(extra);
        oracle_with_env(dir.path(), &args, env)
    };

    let missing = keygen(&["--keystore"], &[]);
    let err = one_error_line(&missing);
    assert!(
        err.contains("--password-file FILE") && err.contains("ORACLE_KEY_PASSWORD"),
        "{err}"
    );
    assert!(!dir.path().join("keys").exists());

    let created = keygen(&["--keystore", "--password-file", "pw"], &[]);
    assert!(created.status.success(), "{}", stderr(&created));
    let out = stdout(&created);
    assert!(out.contains("keys/node0.json (created)"), "{out}");
    let (address, peer_id) = (field(&out, "address"), field(&out, "peer id"));
    let path = dir.path().join("keys/node0.json");
    let keystore = std::fs::read(&path).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&keystore).unwrap();
    assert_eq!(
        (&json["version"], &json["crypto"]["kdf"]),
        (&3.into(), &"scrypt".into())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // From --password-file (its line break dropped), ORACLE_PASSWORD_FILE or ORACLE_KEY_PASSWORD.
    let show_with_file = ["--show", "--password-file", "pw"];
    for (args, env) in [
        (&show_with_file[..], &[][..]),
        (&["--show"], &[("ORACLE_PASSWORD_FILE", "pw")]),
        (&["--show"], &[("ORACLE_KEY_PASSWORD", "correct horse")]),
    ] {
        let shown = keygen(args, env);
        assert!(shown.status.success(), "{env:?}: {}", stderr(&shown));
        assert_eq!(field(&stdout(&shown), "address"), address);
        assert_eq!(field(&stdout(&shown), "peer id"), peer_id);
    }

    let err = one_error_line(&keygen(&["--show"], &[]));
    assert!(err.contains("keys/node0.json is encrypted"), "{err}");
    assert!(err.contains("ORACLE_KEY_PASSWORD"), "{err}");
    let err = one_error_line(&keygen(&["--show"], &[("ORACLE_KEY_PASSWORD", "correct")]));
    assert!(
        err.contains("wrong password for keystore keys/node0.json"),
        "{err}"
    );

    // No flag takes the password itself: command lines are visible to every local user.
    let flag = keygen(&["--show", "--password", "correct horse"], &[]);
    assert_eq!(flag.status.code(), Some(2));
    assert!(
        stderr(&flag).contains("unexpected argument '--password'"),
        "{}",
        stderr(&flag)
    );

    // Neither format is written over or beside the key without --force.
    for extra in [&with_file[..], &[]] {
        let err = one_error_line(&keygen(extra, &[]));
        assert!(err.contains("keys/node0.json already exists"), "{err}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), keystore);
    assert!(!dir.path().join("keys/node0.priv").exists());
}

#[test]
fn import_encrypts_a_plain_key_with_the_same_address_and_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let plain = dir.path().join("keys/v.priv");
    std::fs::write(&plain, VECTOR_KEY).unwrap();
    let password = [("ORACLE_KEY_PASSWORD", "import pw")];

    let shown = oracle(dir.path(), &["keygen", "--name", "v", "--show"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let warnings: Vec<_> = stderr(&shown)
        .lines()
        .filter(|line| line.contains("not encrypted"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&shown));
    assert!(
        warnings[0].contains("WARN")
            && warnings[0].contains("keys/v.priv is not encrypted")
            && warnings[0].contains("oracle keygen --name v --key-dir keys --import"),
        "{}",
        warnings[0]
    );

    let err = one_error_line(&oracle(dir.path(), &["keygen", "--name", "v", "--import"]));
    assert!(err.contains("--import needs a password"), "{err}");
    assert!(plain.exists());

    let imported = oracle_with_env(
        dir.path(),
        &["keygen", "--name", "v", "--import"],
        &password,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let out = stdout(&imported);
    assert!(
        out.contains("keys/v.json (imported from keys/v.priv, which is deleted)"),
        "{out}"
    );
    assert_eq!(field(&out, "address"), VECTOR_ADDRESS);
    assert_eq!(field(&out, "peer id"), VECTOR_PEER_ID);
    assert!(!plain.exists());

    let shown = oracle_with_env(dir.path(), &["keygen", "--name", "v", "--show"], &password);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(field(&stdout(&shown), "address"), VECTOR_ADDRESS);
    assert_eq!(field(&stdout(&shown), "peer id"), VECTOR_PEER_ID);
    assert!(
        !stderr(&shown).contains("not encrypted"),
        "{}",
        stderr(&shown)
    );

    let again = oracle_with_env(
        dir.path(),
        &["keygen", "--name", "v", "--import"],
        &password,
    );
    assert!(one_error_line(&again).contains("nothing to import: keys/v.priv not found"));
}

#[test]
fn broken_keystores_fail_every_command_in_one_line_and_stay_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let made = oracle_with_env(
        dir.path(),
        &["keygen", "--name", "good", "--keystore"],
        &[("ORACLE_KEY_PASSWORD", "pw")],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let good = std::fs::read_to_string(keys.join("good.json")).unwrap();
    let cases = [
        (
            "truncated",
            good[..good.len() / 2].to_owned(),
            "is it truncated?",
        ),
        (
            "argon2",
            good.replace("\"kdf\":\"scrypt\"", "\"kdf\":\"argon2id\""),
            "uses the key derivation function argon2id",
        ),
        ("good", good.clone(), "wrong password"),
    ];
    let password = [("ORACLE_KEY_PASSWORD", "not pw")];
    for (name, contents, expected) in cases {
        let path = keys.join(format!("{name}.json"));
        std::fs::write(&path, &contents).unwrap();
        let listen = ["--listen", "/ip4/127.0.0.1/tcp/0"];
        let commands: [&[&str]; 4] = [
            &["keygen", "--show"],
            &["keygen"],
            &["bootstrap", listen[0], listen[1]],
            // Never reached: the key is loaded first.
            &[
                "run",
                listen[0],
                listen[1],
                "--database-url",
                "postgres://oracle@127.0.0.1:1/x",
            ],
        ];
        for command in commands {
            let mut args = vec!["--log-level", "error", command[0], "--name", name];
            args.extend_from_slice(&command[1..]);
            let err = one_error_line(&oracle_with_env(dir.path(), &args, &password));
            let expected = if command == ["keygen"] {
                "already exists"
            } else {
                expected
            };
            assert!(err.contains(expected), "{name} {command:?}: {err}");
            assert!(
                err.contains(&format!("keys/{name}.json")),
                "{name} {command:?}: {err}"
            );
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                contents,
                "{name} {command:?}"
            );
            assert!(
                !keys.join(format!("{name}.priv")).exists(),
                "{name} {command:?}"
            );
        }
    }
}

/// Starts `oracle bootstrap` as `name` with `env`, waits for its first listen address, stops it,
/// and returns what it logged.
fn bootstrap_log(dir: &Path, name: &str, env: &[(&str, &str)]) -> String {
    let mut child = oracle_command(dir)
        .args([
            "bootstrap",
            "--name",
            name,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        line.starts_with("/ip4/127.0.0.1/tcp/"),
        "{line} {}",
        stderr(&output)
    );
    stderr(&output)
}

#[test]
fn nodes_start_with_a_keystore_and_warn_once_about_a_plain_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/plain.priv"), VECTOR_KEY).unwrap();
    let log = bootstrap_log(dir.path(), "plain", &[]);
    assert_eq!(log.matches("is not encrypted").count(), 1, "{log}");
    assert!(log.contains(&format!("peer id {VECTOR_PEER_ID}")), "{log}");

    let password = [("ORACLE_KEY_PASSWORD", "node pw")];
    let imported = oracle_with_env(
        dir.path(),
        &["keygen", "--name", "plain", "--import"],
        &password,
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let log = bootstrap_log(dir.path(), "plain", &password);
    assert!(!log.contains("not encrypted"), "{log}");
    assert!(log.contains(&format!("peer id {VECTOR_PEER_ID}")), "{log}");

    // A node without a key makes one, encrypted when it has a password.
    let log = bootstrap_log(dir.path(), "fresh", &password);
    assert!(log.contains("created key file keys/fresh.json"), "{log}");
    assert!(!log.contains("not encrypted"), "{log}");
}

/// `oracle price` with the default sources (all four) at `base`.
async fn run_price(base: String, extra: Vec<String>) -> Output {
    let mut args = vec!["price".to_owned(), "--source-base-url".to_owned(), base];
    args.extend(extra);
    oracle_async(args).await
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
    let output = run_price(exchange.base_url(), Vec::new()).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    for name in ["coinbase", "coingecko", "kraken", "binance"] {
        assert_eq!(field(&out, name), "3000.00000000", "{out}");
    }
    assert_eq!(field(&out, "median"), "3000.00000000 (4 of 4 sources)");
}

#[tokio::test(flavor = "multi_thread")]
async fn price_names_a_quote_left_out_and_why() {
    let exchange = MockExchange::start("127.0.0.1:0".parse().unwrap(), mock_settings(0.0))
        .await
        .unwrap();
    let wild = MockExchange::start(
        "127.0.0.1:0".parse().unwrap(),
        MockSettings::steady(UsdPrice::parse_quote("6000").unwrap()),
    )
    .await
    .unwrap();
    let output = run_price(
        exchange.base_url(),
        vec!["--binance-url".into(), wild.base_url()],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        field(&out, "binance").starts_with("left out, outlier: 6000.00000000 is 100 %"),
        "{out}"
    );
    assert_eq!(field(&out, "median"), "3000.00000000 (3 of 4 sources)");
}

#[tokio::test(flavor = "multi_thread")]
async fn price_prints_a_block_per_pair() {
    let exchange = MockExchange::start("127.0.0.1:0".parse().unwrap(), mock_settings(0.0))
        .await
        .unwrap();
    let pairs = vec!["--pairs".into(), "BTC/USD,SOL/USD".into()];
    let output = run_price(exchange.base_url(), pairs).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    let blocks: Vec<&str> = out
        .split("pair ")
        .filter(|b| !b.trim().is_empty())
        .collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert!(blocks[0].trim_start().starts_with("BTC/USD"), "{out}");
    assert_eq!(
        field(blocks[0], "median"),
        "90000.00000000 (4 of 4 sources)"
    );
    assert!(blocks[1].trim_start().starts_with("SOL/USD"), "{out}");
    assert_eq!(field(blocks[1], "median"), "150.00000000 (4 of 4 sources)");
}

#[tokio::test(flavor = "multi_thread")]
async fn price_with_every_answer_faulty_exits_1_with_a_line_per_source() {
    let exchange = MockExchange::start("127.0.0.1:0".parse().unwrap(), mock_settings(1.0))
        .await
        .unwrap();
    let flags = ["--source-timeout", "300ms", "--source-retries", "1"];
    let output = run_price(exchange.base_url(), flags.map(String::from).to_vec()).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let out = stdout(&output);
    for name in ["coinbase", "coingecko", "kraken", "binance"] {
        assert!(field(&out, name).starts_with("error: "), "{out}");
    }
    assert!(field(&out, "median").starts_with("none"), "{out}");
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn keygen_psk_writes_a_private_swarm_key_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let created = oracle(dir.path(), &["keygen", "--psk", "net/swarm.key"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let fingerprint = field(&stdout(&created), "fingerprint").to_owned();
    assert_eq!(fingerprint.len(), 32, "{fingerprint}");
    let path = dir.path().join("net/swarm.key");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    assert!(
        !stdout(&created).contains(text.lines().nth(2).unwrap()),
        "the key itself is never printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = oracle(dir.path(), &["keygen", "--psk", "net/swarm.key"]);
    fails_saying(&again, "already exists");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let replaced = oracle(dir.path(), &["keygen", "--psk", "net/swarm.key", "--force"]);
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert_ne!(field(&stdout(&replaced), "fingerprint"), fingerprint);
}

#[test]
fn a_bad_swarm_key_file_is_one_line_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("swarm.key"),
        "/key/swarm/psk/1.0.0/\n/base16/\nxyz\n",
    )
    .unwrap();
    for psk in ["swarm.key", "absent.key"] {
        let output = oracle(
            dir.path(),
            &[
                "--log-level",
                "error",
                "bootstrap",
                "--name",
                "boot",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--psk-file",
                psk,
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{psk}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("swarm key file") && err.contains(psk), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bootstrap_addresses_need_a_port_and_a_peer_id() {
    const BOOTSTRAP: [&str; 7] = [
        "--log-level",
        "error",
        "bootstrap",
        "--name",
        "boot",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ];
    let dir = tempfile::tempdir().unwrap();
    let run = |bootstrap: &str, extra: &[&str]| {
        let mut args = BOOTSTRAP.to_vec();
        args.extend_from_slice(&["--bootstrap", bootstrap]);
        args.extend_from_slice(extra);
        oracle(dir.path(), &args)
    };
    let output = run("/dns4/bootstrap/tcp/4001", &[]);
    let err = one_error_line(&output);
    for part in [
        "/dns4/bootstrap/tcp/4001",
        "no /p2p/<peer id>",
        "--allow-unauthenticated-bootstrap",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    for extra in [&[][..], &["--allow-unauthenticated-bootstrap"]] {
        let output = run("/ip4/127.0.0.1", extra);
        let err = one_error_line(&output);
        assert!(err.contains("/ip4/127.0.0.1 has no /tcp/<port>"), "{err}");
    }
    // The node starts (and is stopped by the timeout) when the operator accepts the risk; it
    // would have exited at once with an error otherwise.
    let mut child = oracle_command(dir.path())
        .args(BOOTSTRAP)
        .args(["--bootstrap", "/ip4/127.0.0.1/tcp/9"])
        .env("ORACLE_ALLOW_UNAUTHENTICATED_BOOTSTRAP", "true")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("/ip4/127.0.0.1/tcp/"), "{line}");
}

#[test]
fn a_password_on_the_command_line_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the command fails fast, after the warning.
    let url = "postgres://oracle:s3cret@127.0.0.1:1/oracle";
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = oracle_command(dir.path());
        command.args(args).args(["--db-timeout", "2s"]);
        if let Some(url) = env {
            command.env("ORACLE_DATABASE_URL", url);
        }
        command.output().unwrap()
    };
    let output = run(&["migrate", "--database-url", url], None);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let warnings: Vec<_> = err.lines().filter(|l| l.contains("ps)")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for part in ["ORACLE_DATABASE_URL", "DATABASE_URL", ".env-db", "WARN"] {
        assert!(warnings[0].contains(part), "{part}: {err}");
    }
    assert!(!err.contains("s3cret"), "{err}");

    // The same URL from the environment, or one without a password: no warning.
    let from_env = run(&["migrate"], Some(url));
    assert_eq!(from_env.status.code(), Some(1));
    assert!(!stderr(&from_env).contains("ps)"), "{}", stderr(&from_env));
    let no_password = run(
        &[
            "migrate",
            "--database-url",
            "postgres://oracle@127.0.0.1:1/oracle",
        ],
        None,
    );
    assert_eq!(no_password.status.code(), Some(1));
    assert!(
        !stderr(&no_password).contains("ps)"),
        "{}",
        stderr(&no_password)
    );
}

#[test]
fn bad_flags_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let output = oracle(dir.path(), &["price", "--source-timeout", "ten"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("30s"), "{}", stderr(&output));
    let output = oracle_with_env(
        dir.path(),
        &["price", "--min-sources", "3"],
        &[("ORACLE_SOURCES", "coinbase,kraken")],
    );
    fails_saying(&output, "--min-sources 3");
    // At least two sources by default: one alone is refused.
    let output = oracle(dir.path(), &["price", "--sources", "coinbase"]);
    fails_saying(&output, "--min-sources 2");
}

#[test]
fn help_shows_the_source_defaults_and_the_mocks_controls() {
    let dir = tempfile::tempdir().unwrap();
    let help = oracle(dir.path(), &["price", "--help"]);
    for text in [
        "[default: coinbase,coingecko,kraken,binance]",
        "--min-sources <MIN_SOURCES>",
        "[default: 2]",
        "--max-quote-age <MAX_QUOTE_AGE>",
        "[default: 2m]",
        "--max-source-deviation <MAX_SOURCE_DEVIATION>",
        "[default: 2%]",
        "[default: 5s]",
    ] {
        prints(&help, text);
    }
    let help = oracle(dir.path(), &["mock-exchange", "--help"]);
    for text in [
        "POST /mock/price?pair=ETH/USD&price=3060",
        "POST /mock/lag?seconds=300",
    ] {
        prints(&help, text);
    }
}

#[test]
fn round_timings_are_checked_and_price_interval_now_means_the_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    oracle(dir.path(), &["keygen", "--name", "n"]);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["run", "--name", "n"];
        all.extend_from_slice(args);
        oracle_with_env(dir.path(), &all, env)
    };
    fails_saying(
        &run(&["--heartbeat", "10s"], &[]),
        "--heartbeat (10s) must be longer than --observe-interval (15s)",
    );
    // The old flag still works, as the heartbeat it always was.
    fails_saying(
        &run(&["--price-interval", "10s"], &[]),
        "--heartbeat (10s) must be longer",
    );
    fails_saying(
        &run(&["--observe-interval", "500ms"], &[]),
        "--observe-interval must be at least 1s",
    );
    fails_saying(
        &run(&["--progress-timeout", "20s"], &[]),
        "--progress-timeout (20s) must be at least 2 × --observe-interval (15s)",
    );
    fails_saying(
        &run(&["--deviation", "0%"], &[]),
        "--deviation must be above 0",
    );
    // Its variable cannot be an alias: it is refused with what replaced it.
    fails_saying(
        &run(&[], &[("ORACLE_PRICE_INTERVAL", "10m")]),
        "ORACLE_PRICE_INTERVAL was replaced by ORACLE_HEARTBEAT",
    );
}

/// `--legacy-topic` was retired with the v1 topics: `run` and `bootstrap` refuse it by name,
/// flag or variable, whatever its value, before they touch the network.
#[test]
fn the_legacy_topic_flag_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["run", "bootstrap"] {
        let refused = [
            oracle(dir.path(), &[command, "--name", "n", "--legacy-topic"]),
            oracle_with_env(
                dir.path(),
                &[command, "--name", "n"],
                &[("ORACLE_LEGACY_TOPIC", "false")],
            ),
        ];
        for output in &refused {
            fails_saying(output, "--legacy-topic (ORACLE_LEGACY_TOPIC) was retired");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_the_schema_and_never_prints_the_password() {
    let db = price_oracle::testkit::TestDb::create("cli_migrate").await;
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

/// Stores test rounds `rounds` ([`price_oracle::testkit::round_id`]) of test nodes 1 to 3, the
/// members, through the flush.
async fn store_signed_prices(db: &price_oracle::testkit::TestDb, rounds: &[u64]) {
    use price_oracle::store::prices::FlushOutcome;
    use price_oracle::testkit::{self, Signing};

    let (store, writer) = testkit::writer_store(db).await;
    let signers: Vec<_> = (1..=3).map(testkit::identity).collect();
    let batch = testkit::verified_rounds(rounds.iter().copied(), &signers, Signing::Genuine);
    let outcome = store
        .flush(&writer.address, &batch, &Default::default())
        .await
        .unwrap();
    assert!(matches!(outcome, FlushOutcome::Flushed(ref f) if f.inserted.len() == rounds.len()));
    store.close().await;
}

/// The id of test round `n` of [`store_signed_prices`].
fn id_of(n: u64) -> u64 {
    use price_oracle::testkit;
    testkit::round_id(n, &testkit::identity(1).address())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_a_clean_database_and_names_tampered_rows() {
    use sea_orm::ConnectionTrait;

    let db = price_oracle::testkit::TestDb::create("verify").await;
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
    prints(&clean, "rows              4");
    prints(&clean, "signatures        12");
    assert!(stdout(&clean).contains("OK"));

    let conn = db.connect().await;
    // One tampered price (no longer the median of the observations), one tampered signature (a
    // changed byte in the second signature's s).
    conn.execute_unprepared(&format!(
        "UPDATE prices SET price = price + 1 WHERE id = {}",
        id_of(102)
    ))
    .await
    .unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE prices SET sign_data = jsonb_set(sign_data, '{{1,signature}}', \
         to_jsonb(overlay(sign_data->1->>'signature' placing \
         (CASE WHEN substr(sign_data->1->>'signature', 80, 1) = 'a' THEN 'b' ELSE 'a' END) \
         from 80 for 1))) WHERE id = {}",
        id_of(104)
    ))
    .await
    .unwrap();
    let _ = conn.close().await;

    let tampered = verify().await;
    assert_eq!(tampered.status.code(), Some(1), "{}", stderr(&tampered));
    let out = stdout(&tampered);
    assert!(out.contains("invalid           2"), "{out}");
    assert!(
        out.contains(&format!(
            "  {}  price 3001.00000102 is not the median",
            id_of(102)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("  {}  signature of", id_of(104))),
        "{out}"
    );
    assert!(
        !out.contains(&format!("  {} ", id_of(101)))
            && !out.contains(&format!("  {} ", id_of(103))),
        "{out}"
    );
    assert!(out.contains("FAILED"), "{out}");

    // A trusted-signers list naming none of the signers: every observation of the clean rows is
    // a non-member's.
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.txt");
    let lines: Vec<String> = (9..=9u8)
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
    fails_printing(&out, "non-member        2");
}

/// Rows written by hand that no quorum of members made fail `oracle verify`, each named: one
/// dated in the future, and observations of non-members, even beside a member's quorum (its
/// median was theirs). A genuine row still passes.
#[tokio::test(flavor = "multi_thread")]
async fn verify_fails_rows_no_quorum_of_members_made() {
    let db = price_oracle::testkit::TestDb::create("verify_forged").await;
    store_signed_prices(&db, &[1]).await;
    let forged = crate::common::forged::rows();
    for (report, _) in &forged {
        price_oracle::testkit::insert_by_hand(&db, report).await;
    }
    let out = oracle_async(vec![
        "verify".into(),
        "--database-url".into(),
        db.url.clone(),
    ])
    .await;
    fails_printing(&out, "rows              4");
    prints(&out, "invalid           0");
    prints(&out, "from the future   1");
    prints(&out, "non-member        2");
    for (report, _) in &forged {
        prints(&out, &format!("  {}  ", report.round.id));
    }
    assert!(!stdout(&out).contains(&format!("  {}  ", id_of(1))));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_nodes_and_prices() {
    let db = price_oracle::testkit::TestDb::create("status").await;
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

#[tokio::test(flavor = "multi_thread")]
async fn signers_are_managed_from_the_command_line_and_verify_judges_rows_by_them() {
    use sea_orm::ConnectionTrait;

    let db = price_oracle::testkit::TestDb::create("signers_cli").await;
    store_signed_prices(&db, &[201, 202]).await;
    let run = |args: &[&str]| {
        let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        args.extend(["--database-url".into(), db.url.clone()]);
        oracle_async(args)
    };
    let newcomer = price_oracle::identity::Identity::from_secret(&[9; 32])
        .unwrap()
        .address()
        .to_string();
    let added = run(&["signers", "add", &newcomer, "--label", "node9"]).await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stdout(&added).contains(&format!("{newcomer} added")));
    let listed = run(&["signers", "list"]).await;
    assert!(stdout(&listed).contains(&newcomer) && stdout(&listed).contains("4 members"));
    let removed = run(&["signers", "remove", &newcomer]).await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    let again = run(&["signers", "remove", &newcomer]).await;
    fails_saying(&again, "is not a member");
    assert!(!stdout(&run(&["signers", "list"]).await).contains(&newcomer));
    assert!(stdout(&run(&["signers", "list", "--all"]).await).contains(&newcomer));
    let bad = run(&["signers", "add", "0x1234"]).await;
    assert_eq!(bad.status.code(), Some(2), "clap refuses a bad address");

    // verify judges a row by the members when its price was observed: the rows are from 2025,
    // so a membership that starts today is not the member set their signatures were bound to.
    let clean = run(&["verify"]).await;
    assert!(clean.status.success(), "{}", stdout(&clean));
    let conn = db.connect().await;
    conn.execute_unprepared(&format!(
        "UPDATE signers SET added_at = now() WHERE address = '{}'",
        price_oracle::identity::Identity::from_secret(&[3; 32])
            .unwrap()
            .address()
    ))
    .await
    .unwrap();
    let _ = conn.close().await;
    let late = run(&["verify"]).await;
    fails_printing(&late, "invalid           2");
    prints(&late, "not this network's");
}

/// The one line a failed command prints on stderr (its exit code is 1).
fn one_error_line(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("ERROR"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[cfg(unix)]
#[test]
fn a_directory_where_a_file_belongs_names_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["keys/node0.priv", "swarm.key", "trusted", ".env-db"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    let bootstrap = |extra: &[&str]| {
        let mut args = vec![
            "--log-level",
            "error",
            "bootstrap",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        args.extend_from_slice(extra);
        oracle(dir.path(), &args)
    };
    let migrate = oracle(dir.path(), &["migrate", "--db-env", ".env-db"]);
    for (output, names) in [
        (
            oracle(dir.path(), &["keygen", "--name", "node0", "--show"]),
            "cannot read key file keys/node0.priv: ",
        ),
        (
            bootstrap(&["--name", "node0"]),
            "cannot read key file keys/node0.priv: ",
        ),
        (
            bootstrap(&["--name", "boot", "--psk-file", "swarm.key"]),
            "cannot read swarm key file swarm.key: ",
        ),
        (
            bootstrap(&["--name", "boot", "--trusted-signers", "trusted"]),
            "cannot read trusted signers from trusted: ",
        ),
        (migrate, "cannot parse .env-db: "),
    ] {
        let err = one_error_line(&output);
        assert!(err.contains(names), "{names}: {err}");
        assert!(
            err.trim_end().ends_with("Is a directory (os error 21)"),
            "{err}"
        );
        assert_eq!(err.matches("Is a directory").count(), 1, "{err}");
    }
}

#[test]
fn a_port_in_use_is_one_line_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let start = |command: &str, listen: &str| {
        let mut args = vec!["--log-level", "error", command, "--name", command];
        args.extend(["--listen", listen]);
        if command == "run" {
            // Never reached: the network starts first.
            args.extend(["--database-url", "postgres://oracle@127.0.0.1:1/oracle"]);
        }
        oracle(dir.path(), &args)
    };
    for command in ["bootstrap", "run"] {
        let err = one_error_line(&start(command, &listen));
        assert!(
            err.contains(&format!(
                "cannot listen on {listen}: Address already in use"
            )),
            "{command}: {err}"
        );
        assert_eq!(err.matches("already in use").count(), 1, "{err}");

        let udp = format!("/ip4/127.0.0.1/udp/{port}");
        let err = one_error_line(&start(command, &udp));
        assert!(
            err.contains(&format!(
                "cannot listen on {udp}: not an address to listen on"
            )),
            "{command}: {err}"
        );
    }
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn database_errors_are_one_line_with_the_servers_words_once() {
    // Not migrated: no tables.
    let db = price_oracle::testkit::TestDb::create("cli_db_errors").await;
    let absent = format!("{}_absent", db.name);
    let absent_url = format!("{}_absent", db.url);
    let cases = [
        (
            vec!["status", "--database-url", &db.url],
            "read heartbeats: relation \"heartbeat\" does not exist".to_owned(),
        ),
        (
            vec!["verify", "--database-url", &absent_url],
            format!(
                "cannot connect to {absent_url}: connect: database \"{absent}\" does not exist"
            ),
        ),
    ];
    for (args, expected) in cases {
        let output = oracle_async(args.iter().map(|arg| arg.to_string()).collect()).await;
        let err = one_error_line(&output);
        assert!(err.trim_end().ends_with(&expected), "{expected}: {err}");
        assert_eq!(err.matches("does not exist").count(), 1, "{err}");
        assert!(!err.contains("at line"), "{err}");
        assert!(!err.contains("Error"), "{err}");
    }
}

#[test]
fn a_database_nobody_listens_on_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://oracle@127.0.0.1:{port}/oracle");
    for command in ["migrate", "verify", "status"] {
        let started = std::time::Instant::now();
        // The default --db-timeout, 10 s (no ORACLE_DB_TIMEOUT): the refusal must not wait for it.
        let output = oracle(
            dir.path(),
            &["--log-level", "error", command, "--database-url", &url],
        );
        let elapsed = started.elapsed();
        let err = one_error_line(&output);
        assert!(elapsed < Duration::from_secs(3), "{command}: {elapsed:?}");
        assert!(
            err.contains(&format!(
                "{url}: connect: error communicating with database: Connection refused (os error "
            )),
            "{command}: {err}"
        );
        assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
        assert!(
            !err.contains("timed out") && !err.contains("no answer"),
            "{err}"
        );
    }
}
