//! The cluster benchmark in a tiny configuration, so that it cannot rot.

use std::process::Command;

#[test]
fn cluster_bench_runs_and_reports_consistent_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cluster-bench"));
    command.args([
        "--nodes",
        "3",
        "--prices",
        "2",
        "--idle",
        "1s",
        "--timeout",
        "90s",
        "--json",
    ]);
    command.arg(&json);
    if let Ok(url) = std::env::var("TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")) {
        command.args(["--database-url", &url]);
    }
    let output = command.env("RUST_LOG", "warn").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("q p50 ms"), "{stdout}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let row = &results[0];
    assert_eq!(row["nodes"], 3);
    assert_eq!(row["prices_originated"], 2);
    assert_eq!(row["rows_stored"], 2, "{row}");
    assert_eq!(row["duplicates"], 0);
    assert_eq!(row["incomplete"], 0);
    let publishes = row["publishes_per_price"].as_f64().unwrap();
    assert!(
        publishes > 0.0 && publishes <= 4.0,
        "≤ N + 1 publishes per price: {row}"
    );
    assert!(row["quorum_ms"]["max"].as_f64().unwrap() > 0.0);
    assert!(
        row["db_statements_per_non_writer_minute"]
            .as_f64()
            .is_some()
    );
}
