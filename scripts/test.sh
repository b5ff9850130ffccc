#!/usr/bin/env bash
# The project's test command: a PostgreSQL that answers, then format, the contract artifact,
# lints, the alert rules, the Kubernetes manifests, every test and the fault-injection suite's
# short form. Each step's time is printed as it ends, and all of them at the end: where a run's
# minutes go.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
started=$SECONDS
# step NAME COMMAND...: runs the command, notes how long it took.
step() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
  echo "test.sh: $name took $((SECONDS - start)) s" >&2
}

export TEST_DATABASE_URL
TEST_DATABASE_URL=$(scripts/db.sh)

step "cargo fmt --check" cargo fmt --all -- --check
# The committed verifier bytecode is what the pinned solc makes of the source (skipped without
# node and npm).
step "contract artifacts" scripts/compile-contract.sh --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# The alert rules and their unit tests (promtool).
step "alert rules" scripts/alerts.sh
# The Kubernetes manifests: every overlay rendered and validated (kubernetes-validate, installed
# with pip when missing).
step "kubernetes manifests" scripts/k8s-check.sh
# Every test. cargo-nextest (when installed) runs each in a process of its own, several at once
# (.config/nextest.toml says how many, and which never together); it skips doctests, so those
# run first and nextest's summary closes the tests' output. Without nextest: plain `cargo test`.
if cargo nextest --version >/dev/null 2>&1; then
  step "doctests" cargo test --workspace --doc --locked
  step "tests (nextest)" cargo nextest run --workspace --locked
else
  step "tests (cargo test)" cargo test --workspace --locked
fi
# The scripts below run target/debug/oracle as the tests just built it, rather than build it
# again: a plain `cargo build` leaves out the test-util feature the tests turn on, and would
# compile the whole crate a third time for a binary that behaves the same (the feature adds
# hooks only Rust callers in tests reach, none on the command line).
export NO_BUILD=1
# Keystores open both ways between oracle and eth-account (installed with pip when missing).
step "keystore interop" scripts/keystore-interop.sh
# Faults against real processes, short form (the long form: scripts/faults.sh --long). Alone:
# its bounds (a writer replaced within 4 s) are timings.
step "fault injection" scripts/faults.sh
# together CMD… [-- CMD…]…: runs the commands at once; fails when any does. For scripts that
# share nothing (ports, databases, keys, logs) and mostly wait, with no timing tighter than
# seconds:
# - the /v1 API against its own OpenAPI document (schemathesis, installed with pip when
#   missing), short form (the long form: scripts/api-schema.sh --long);
# - the replicated database (Patroni, installed with apt when missing): the primary killed in the
#   middle of a flush (three times in a row: scripts/faults.sh --scenario db-failover --long);
# - nodes on hosts of their own (network namespaces on a bridge): two of five cut off for 60 s
#   and healed (loss and WAN latency: scripts/faults.sh --scenario hosts-loss|hosts-latency).
together() {
  local pids=() command=() rc=0
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
      "${command[@]}" & pids+=($!); command=()
    else
      command+=("$1")
    fi
    shift
  done
  "${command[@]}" & pids+=($!)
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  return "$rc"
}
step "API schema, database failover, partition across hosts" \
  together scripts/api-schema.sh \
  -- scripts/faults.sh --scenario db-failover \
  -- scripts/faults.sh --scenario hosts-partition

echo "test.sh: every step passed in $((SECONDS - started)) s:" >&2
printf '  %s\n' "${timings[@]}" >&2
