#!/usr/bin/env bash
# Runs a local oracle network: two bootstrap nodes and NUM_NODES full nodes (node0 … node{N-1}).
#
#   NUM_NODES=4 ./run_nodes.sh                   # prices from four public exchanges
#   MOCK_EXCHANGE=1 NUM_NODES=5 ./run_nodes.sh   # offline: a local mock exchange
#
# Settings (environment):
#   NUM_NODES        full nodes to start (default 4)
#   MOCK_EXCHANGE=1  start `oracle mock-exchange` and point every node at it
#   MOCK_PORT        its port (default 8099)
#   BOOTSTRAP_PORT   the bootstrap nodes' fixed ports: this one and the next (default 4001)
#   HTTP_PORT        node i serves /health, /status, /metrics on HTTP_PORT+i (default 9100)
#   PROFILE          cargo profile to build and run (default dev; release for speed)
#   NO_BUILD=1       run the binary already built for PROFILE instead of building it (the test
#                    suite's scripts run the one its tests built)
#   DATABASE_URL     the database (the admin credential; a multi-host URL for a replicated one,
#                    e.g. from scripts/pg-ha.sh); otherwise built from .env-db
#   NODE_ROLES=0     run the nodes with DATABASE_URL's credential, not a role of their own each
#   LOG_DIR          where the per-process logs go (default logs)
#   ORACLE_KEY_DIR   where the keys and the database passwords are (default keys); two networks
#                    started at once from one checkout need one each
#   ORACLE_*         any node flag, e.g. ORACLE_HEARTBEAT=1m ORACLE_FLUSH_DELAY=10s
#   ORACLE_KEY_PASSWORD (or ORACLE_PASSWORD_FILE)  new keys are encrypted keystores, keys/NAME.json,
#                    opened with it; without it keys are unencrypted keys/NAME.priv (docs/keys.md)
#
# Every node's key is registered as a member (`oracle signers add --key nodeN`) before it
# starts; nodes started by hand elsewhere count only once an operator adds them. Members of an
# earlier run with more nodes stay registered, and f follows the member count: remove the ones
# no longer started (`oracle signers remove`), or rounds need more observations than the nodes
# running can give.
#
# Each process logs to logs/<name>.log; this terminal shows every log live, prefixed by name.
# Ctrl-C (or SIGTERM) stops exactly the processes this script started and waits for them.
set -euo pipefail

# Every /v1/prices/stream client is a file descriptor; allow what the hard limit does (each node
# raises its own soft limit too, docs/reading-prices.md#limits).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")"

NUM_NODES="${NUM_NODES:-4}"
MOCK_PORT="${MOCK_PORT:-8099}"
BOOTSTRAP_PORT="${BOOTSTRAP_PORT:-4001}"
HTTP_PORT="${HTTP_PORT:-9100}"
PROFILE="${PROFILE:-dev}"
case "$NUM_NODES" in ''|*[!0-9]*) echo "NUM_NODES must be a number" >&2; exit 2 ;; esac

say() { echo "run_nodes: $*" >&2; }

if [ -z "${DATABASE_URL:-}" ]; then
  # The dev .env-db has no characters that need URL escaping; for others set DATABASE_URL.
  # shellcheck disable=SC1091
  DATABASE_URL=$(set -a; . ./.env-db; set +a
    auth="${POSTGRES_USER:-postgres}${POSTGRES_PASSWORD:+:$POSTGRES_PASSWORD}"
    echo "postgres://$auth@${DB_HOST:-127.0.0.1}:${DB_PORT:-5432}/${POSTGRES_DB:-${POSTGRES_USER:-postgres}}")
fi
export DATABASE_URL
scripts/db.sh "$DATABASE_URL" >/dev/null

if [ "${NO_BUILD:-0}" != 1 ]; then
  say "building (profile $PROFILE)"
  cargo build --quiet --profile "$PROFILE" --bin oracle
fi
target_dir=$( [ "$PROFILE" = dev ] && echo debug || echo "$PROFILE" )
ORACLE="${CARGO_TARGET_DIR:-target}/$target_dir/oracle"

"$ORACLE" migrate

# A network of N members tolerates f = floor((N - 1)/3) faulty ones (lower with
# ORACLE_FAULT_TOLERANCE): a round needs observations of 2f + 1 members. With fewer than four
# members f = 0, and each round is verified by its origin's observation alone; say so, and start
# the nodes anyway. Do not wait for more peers than exist.
if [ "$NUM_NODES" -lt 4 ]; then
  say "note: $NUM_NODES nodes (and no other members) have f = 0: each round is verified by its origin's observation alone, and no faulty member is tolerated (4 or more tolerate one)"
fi
export ORACLE_MIN_PEERS="${ORACLE_MIN_PEERS:-$(( NUM_NODES < 3 ? NUM_NODES : 3 ))}"

LOG_DIR="${LOG_DIR:-logs}"
export ORACLE_KEY_DIR="${ORACLE_KEY_DIR:-keys}"
KEY_DIR=$ORACLE_KEY_DIR
mkdir -p "$KEY_DIR"
mkdir -p "$LOG_DIR"
pids=()
stop() {
  trap - INT TERM EXIT
  if [ "${#pids[@]}" -gt 0 ]; then
    say "stopping ${#pids[@]} processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  say "stopped"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME ARGS…: runs oracle with its own log file and a name-prefixed live view. The
# prefixer ignores Ctrl-C and SIGTERM so that it relays the node's last lines while it stops.
start() {
  local name=$1; shift
  "$ORACLE" "$@" --log-file "$LOG_DIR/$name.log" \
    > >(trap '' INT TERM; exec sed -u "s/^/$name | /") 2>&1 &
  pids+=($!)
}

if [ "${MOCK_EXCHANGE:-0}" = 1 ]; then
  start mock-exchange mock-exchange --listen "127.0.0.1:$MOCK_PORT"
  export ORACLE_SOURCE_BASE_URL="http://127.0.0.1:$MOCK_PORT"
fi

# Two bootstrap nodes, so that losing one does not strand a restarting node (nodes also find
# each other through the heartbeat table). Each address includes its peer id, which comes from
# its (stable) key.
BOOTSTRAP_ARGS=()
BOOTSTRAP=""
for b in 0 1; do
  name="boot$b"
  [ "$b" = 0 ] && name=boot
  port=$(( BOOTSTRAP_PORT + b ))
  [ -f "$KEY_DIR/$name.priv" ] || [ -f "$KEY_DIR/$name.json" ] || "$ORACLE" keygen --name "$name" --log-level warn >/dev/null
  peer_id=$("$ORACLE" keygen --name "$name" --show --log-level warn | awk '/^peer id/ { print $3 }')
  start "$name" bootstrap --name "$name" --listen "/ip4/127.0.0.1/tcp/$port"
  BOOTSTRAP_ARGS+=(--bootstrap "/ip4/127.0.0.1/tcp/$port/p2p/$peer_id")
  BOOTSTRAP+="/ip4/127.0.0.1/tcp/$port/p2p/$peer_id "
done

# The URL of DATABASE_URL's servers and database with USER:PASSWORD as the credential.
node_url() {
  local scheme="${DATABASE_URL%%://*}" rest="${DATABASE_URL#*://}"
  local authority="${rest%%[/?]*}"
  printf '%s://%s:%s@%s%s' "$scheme" "$1" "$2" "${authority##*@}" "${rest:${#authority}}"
}

# Membership: every node's key is registered in the signers table (the operator's step,
# `oracle signers add`, done here with the same database credential). Only members count.
# Each node then logs in with a database role of its own (`oracle db-role --node`, password in
# keys/nodeN.db-password): the database holds it to its own heartbeat row, to the lease rules,
# and to inserting prices only while it is the writer. NODE_ROLES=0 runs every node with
# DATABASE_URL's credential instead.
declare -A NODE_URL
for i in $(seq 0 $(( NUM_NODES - 1 ))); do
  [ -f "$KEY_DIR/node$i.priv" ] || [ -f "$KEY_DIR/node$i.json" ] || "$ORACLE" keygen --name "node$i" --log-level warn >/dev/null
  address=$("$ORACLE" signers add --key "node$i" --log-level warn | awk '{ print $1 }')
  NODE_URL[$i]=$DATABASE_URL
  if [ "${NODE_ROLES:-1}" = 1 ]; then
    password_file="$KEY_DIR/node$i.db-password"
    [ -s "$password_file" ] || (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$password_file")
    ORACLE_PASSWORD_FILE="$password_file" "$ORACLE" db-role --role "oracle_node$i" \
      --node "$address" --log-level warn >/dev/null
    NODE_URL[$i]=$(node_url "oracle_node$i" "$(cat "$password_file")")
  fi
done
say "$NUM_NODES members registered (oracle signers list shows them)"
[ "${NODE_ROLES:-1}" = 1 ] && say "each node logs in as its own role oracle_nodeN (oracle db-role)"

endpoints=""
for i in $(seq 0 $(( NUM_NODES - 1 ))); do
  port=$(( HTTP_PORT + i ))
  ORACLE_DATABASE_URL="${NODE_URL[$i]}" start "node$i" run --name "node$i" --migrate=false \
    --listen /ip4/127.0.0.1/tcp/0 "${BOOTSTRAP_ARGS[@]}" --http "127.0.0.1:$port"
  endpoints+="run_nodes:   node$i  http://127.0.0.1:$port/status  /health  /metrics"$'\n'
done

cat >&2 <<EOT

run_nodes: $NUM_NODES nodes running, bootstrapped from $BOOTSTRAP
run_nodes: logs:     $LOG_DIR/<name>.log  (tail -f $LOG_DIR/node0.log)
run_nodes: HTTP endpoints:
${endpoints%$'\n'}
run_nodes: database: ${DATABASE_URL%%:*}://…@${DATABASE_URL##*@}
run_nodes: Adminer:  http://localhost:8080  (with docker compose -f postgres-dc.yaml up -d)
run_nodes:           System PostgreSQL, Server postgres, and the user, password and database
run_nodes:           from .env-db (oracle / oracle-dev-password / oracle)
run_nodes: Ctrl-C stops them all.

EOT
wait "${pids[@]}" || true
