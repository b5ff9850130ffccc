#!/usr/bin/env bash
# The project's test command: a PostgreSQL that answers, then format, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

export TEST_DATABASE_URL
TEST_DATABASE_URL=$(scripts/db.sh)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
