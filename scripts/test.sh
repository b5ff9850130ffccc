#!/usr/bin/env bash
# The project's test command: a PostgreSQL that answers, then format, the contract artifact,
# lints, the alert rules, every test and the fault-injection suite's short form.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL
TEST_DATABASE_URL=$(scripts/db.sh)

cargo fmt --all -- --check
# The committed verifier bytecode is what the pinned solc makes of the source (skipped without
# node and npm).
scripts/compile-contract.sh --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The alert rules and their unit tests (promtool).
scripts/alerts.sh
# Every test. cargo-nextest (when installed) runs each in a process of its own, several at once
# (.config/nextest.toml says how many, and which never together); it skips doctests, so those
# run first and nextest's summary closes the tests' output. Without nextest: plain `cargo test`.
if cargo nextest --version >/dev/null 2>&1; then
  cargo test --workspace --doc --locked
  cargo nextest run --workspace --locked
else
  cargo test --workspace --locked
fi
# The /v1 API against its own OpenAPI document (schemathesis, installed with pip when missing),
# short form (the long form: scripts/api-schema.sh --long).
scripts/api-schema.sh
# Keystores open both ways between oracle and eth-account (installed with pip when missing).
scripts/keystore-interop.sh
# Faults against real processes, short form (the long form: scripts/faults.sh --long).
scripts/faults.sh
