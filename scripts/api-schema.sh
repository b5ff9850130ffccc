#!/usr/bin/env bash
# The /v1 API against its own OpenAPI document: schemathesis runs its examples, coverage and
# fuzzing phases, with every check, against a live network (run_nodes.sh: 3 nodes, the mock
# exchange, a database of its own) once prices are stored. Any failure fails the script.
#
#   scripts/api-schema.sh           # short form (./scripts/test.sh): 25 examples per operation
#   scripts/api-schema.sh --long    # 500
#
# The stream (/v1/prices/stream) never ends: schemathesis reads each one for at most
# STREAM_SECONDS or STREAM_EVENTS events, then checks every event it got against the document
# (each `event:`, `id:` and `data:`, the data against its contentSchema).
#
# Installs schemathesis with pip when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=25
STREAM_SECONDS=2
STREAM_EVENTS=3
case "${1:-}" in
  '') ;;
  --long) EXAMPLES=500 ;;
  *) echo "usage: $0 [--long]" >&2; exit 2 ;;
esac
say() { echo "api-schema: $*" >&2; }

if ! command -v schemathesis >/dev/null 2>&1; then
  say "installing schemathesis with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5' >&2 \
    || { say "cannot install schemathesis (python3 -m pip install schemathesis)"; exit 1; }
fi

ADMIN_URL="${TEST_DATABASE_URL:-$(scripts/db.sh)}"
DB="api_schema_$(date +%s)_$RANDOM"
psql -XAtq "$ADMIN_URL" -c "CREATE DATABASE $DB"
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
base=$(( 30000 + RANDOM % 20000 ))
export NUM_NODES=3 MOCK_EXCHANGE=1 HTTP_PORT=$base BOOTSTRAP_PORT=$(( base + 10 )) MOCK_PORT=$(( base + 20 ))
export ORACLE_OBSERVE_INTERVAL=1s ORACLE_HEARTBEAT=2s ORACLE_FLUSH_DELAY=1s
# Fuzzing is many requests from one address: the per-client limit would answer most with 429
# (which the document lists, and tests/it/api.rs checks).
export ORACLE_API_RATE_LIMIT=0
mkdir -p logs
config="logs/api-schema.toml"
cat > "$config" <<TOML
[[operations]]
include-path = "/v1/prices/stream"
request-timeout = $STREAM_SECONDS
max-stream-events = $STREAM_EVENTS
TOML

# Keys of its own: test.sh runs this beside another run_nodes.sh network (faults-db.sh).
export ORACLE_KEY_DIR=logs/api-schema-keys
setsid ./run_nodes.sh > logs/api-schema-run.out 2>&1 &
runner=$!
cleanup() {
  kill -INT -- "-$runner" 2>/dev/null || true
  wait "$runner" 2>/dev/null || true
  psql -XAtq "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

api="http://127.0.0.1:$HTTP_PORT"
deadline=$(( SECONDS + 600 ))
say "starting 3 nodes (log: logs/api-schema-run.out)"
until curl -sf "$api/v1/prices/latest" >/dev/null 2>&1; do
  kill -0 "$runner" 2>/dev/null || { say "run_nodes.sh stopped; see logs/api-schema-run.out"; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { say "no stored price within 10 minutes"; exit 1; }
  sleep 1
done

say "schemathesis: $EXAMPLES examples per operation"
schemathesis --config-file "$config" run "$api/v1/openapi.json" \
  --phases examples,coverage,fuzzing \
  --checks all \
  --max-examples "$EXAMPLES" \
  --request-timeout 10 \
  --seed 1
