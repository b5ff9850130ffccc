#!/usr/bin/env bash
# The consumers' read path under load: run_nodes.sh starts a 5-node network (release build, mock
# exchange, a round every few seconds, no per-client rate limit), then api-bench loads node0:
# the HTTP ceiling, /v1/prices/latest, a 100-row history page (each with wrk), the history page
# while a second wrk floods latest (both at once, as JSON and as gzip), and SUBSCRIBERS
# Server-Sent Events clients receiving the next stored prices; with the network's co-sign
# latency calm and under load, and whether every round started was stored. The machine's load
# (uptime) is printed before and after: other work on it distorts every figure.
#
#   scripts/api-bench.sh
#   SUBSCRIBERS=1000 DURATION=5s scripts/api-bench.sh
#
# Results: docs/performance.md#the-read-api-api-bench. Installs wrk with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh

SUBSCRIBERS="${SUBSCRIBERS:-5000}"
DURATION="${DURATION:-10s}"
export NUM_NODES=5 PROFILE=release MOCK_EXCHANGE=1
export ORACLE_API_RATE_LIMIT=0 ORACLE_OBSERVE_INTERVAL="${ORACLE_OBSERVE_INTERVAL:-2s}"
export ORACLE_HEARTBEAT="${ORACLE_HEARTBEAT:-5s}" ORACLE_FLUSH_DELAY="${ORACLE_FLUSH_DELAY:-3s}"

if ! command -v wrk >/dev/null; then
  echo "api-bench: installing wrk" >&2
  apt_install wrk || { echo "api-bench: cannot install wrk (apt install wrk)" >&2; exit 1; }
fi
ulimit -n "$(ulimit -Hn)"
# One build for both (run_nodes.sh then finds the node built), with the node's own features.
cargo build --quiet --release --bin oracle --bin api-bench
target="${CARGO_TARGET_DIR:-target}/release"
mkdir -p logs
rm -f logs/node*.log

if [ -z "${DATABASE_URL:-}" ]; then
  # As run_nodes.sh reads it; api-bench adds history rows to it and times its commits.
  # shellcheck disable=SC1091
  DATABASE_URL=$(set -a; . ./.env-db; set +a
    auth="${POSTGRES_USER:-postgres}${POSTGRES_PASSWORD:+:$POSTGRES_PASSWORD}"
    echo "postgres://$auth@${DB_HOST:-127.0.0.1}:${DB_PORT:-5432}/${POSTGRES_DB:-${POSTGRES_USER:-postgres}}")
fi
export DATABASE_URL

setsid ./run_nodes.sh > logs/api-bench-run.out 2>&1 &
runner=$!
trap 'kill -INT -- "-$runner" 2>/dev/null || true; wait "$runner" 2>/dev/null || true' EXIT
deadline=$(( SECONDS + 900 ))
until grep -q "nodes running" logs/api-bench-run.out 2>/dev/null; do
  kill -0 "$runner" 2>/dev/null || { echo "api-bench: run_nodes.sh stopped; see logs/api-bench-run.out" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "api-bench: run_nodes.sh did not start in time" >&2; exit 1; }
  sleep 1
done

node0=$(pgrep -f -- "--name node0( |$)" | head -1)
echo "api-bench: load before: $(uptime)"
"$target/api-bench" --database-url "$DATABASE_URL" --pid "$node0" \
  --subscribers "$SUBSCRIBERS" --duration "$DURATION" "$@"
echo "api-bench: load after: $(uptime)"
