#!/usr/bin/env bash
# Fault injection against real processes. Starts a mock exchange, two bootstrap nodes and five
# full nodes with short timings, each full node reaching PostgreSQL through its own socat proxy
# (so the database can be cut for one node or for all), then injects five faults in order, each
# with one result line, and ends with a table of what became of every price: originated,
# verified anywhere (some node's pool reached the quorum), stored, and LOST (verified somewhere,
# never stored).
#
#   scripts/faults.sh          # short form, for CI: about 3 minutes after the build
#   scripts/faults.sh --long   # every fault repeated for minutes: about 14 minutes
#   scripts/faults.sh --scenario db-failover [--long]     # the replicated database: see
#   scripts/faults.sh --scenario db-switchover [--long]   # scripts/faults-db.sh
#   scripts/faults.sh --scenario hosts-partition|hosts-loss|hosts-latency [--long]
#                              # nodes on hosts of their own: see scripts/faults-hosts.sh
#
#   1. writer killed   kill -9 the lease holder every 15 s, restart it 3 s later with the same
#                      flags; the takeover is timed (bound: --lease-duration + --heartbeat-interval)
#   2. writer stalled  kill -STOP the lease holder for 20 s, then -CONT; the others must store
#                      rows meanwhile (its fence ends within 5 s, its lease within the bound)
#   3. database down   the writer's own proxy killed for 15 s (another node must take over and
#                      store), then every proxy for 30 s (45 s long); the backlog verified
#                      during the outage must be stored, and is timed
#   4. bootstrap loss  both bootstrap nodes killed; a full node stopped and restarted (new
#                      random port) with only their dead addresses must rejoin (>= 3 peers)
#                      and get its own observation into a stored row
#   5. full stop       SIGTERM to every node at once while prices wait out their flush delay:
#                      every node exits 0 within 10 s, nothing verified is lost
#
# Counting: ids come from the logs (`originated price <id>`, debug `price <id> committed with`)
# and from `SELECT id FROM prices`; a price belongs to the scenario during which it was minted
# (its id holds the time), the rest to "calm" (warm-up and the pauses between scenarios). Each
# scenario waits up to --flush-delay + 15 s for its verified prices to be stored before it
# counts; the full stop counts right after the stop. The final table is counted once all nodes
# have stopped, and `oracle verify` must pass on the database.
#
# Exit status 0 only when no verified price was lost, every node stopped on SIGTERM exited 0
# within 10 s, every scenario's condition held and `oracle verify` passed. Logs stay in
# logs-faults/ (emptied at start); the database (faults_<random>) is dropped at the end.
#
# Settings (environment): DATABASE_URL, a server where we may create a database (default
# postgres://postgres@127.0.0.1:5432/postgres); CARGO_TARGET_DIR; NO_BUILD=1 (or
# FAULTS_NO_BUILD=1) runs the binary already built instead of building it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh
# shellcheck source=lib/ids.sh
source scripts/lib/ids.sh

MODE=short
SCENARIO=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --long) MODE=long ;;
    --scenario) SCENARIO=${2:?--scenario needs a name}; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--long] [--scenario db-failover|db-switchover|hosts-partition|hosts-loss|hosts-latency]" >&2; exit 2 ;;
  esac
  shift
done
case "$SCENARIO" in
  '') ;;
  db-failover|db-switchover) exec scripts/faults-db.sh "$SCENARIO" "$( [ "$MODE" = long ] && echo --long )" ;;
  hosts-partition|hosts-loss|hosts-latency) exec scripts/faults-hosts.sh "$SCENARIO" "$( [ "$MODE" = long ] && echo --long )" ;;
  *) echo "faults: unknown scenario $SCENARIO (db-failover, db-switchover, hosts-partition, hosts-loss, hosts-latency)" >&2; exit 2 ;;
esac

# Timings of the nodes: an observation a second, a round at least every 5 s (more when the mock's
# random walk moves 0.5 %), the lease's heartbeat every second.
OBSERVE=1 ROUND_HEARTBEAT=5 FLUSH_DELAY=5 HEARTBEAT=1 LEASE=3 TERM=15 MAX_AGE=60
TAKEOVER_BOUND=$(( LEASE + HEARTBEAT ))
SETTLE=$(( FLUSH_DELAY + 15 ))   # how long a scenario waits for its verified prices
STOP_LIMIT=10                    # seconds a node may take to exit on SIGTERM
NODES=(node0 node1 node2 node3 node4)
if [ "$MODE" = long ]; then
  KILL_FOR=180 STALLS=3 OUTAGES=3 OUTAGE=45 REJOINS=3 STOPS=3
else
  KILL_FOR=30 STALLS=1 OUTAGES=1 OUTAGE=30 REJOINS=1 STOPS=1
fi
KILL_EVERY=15 RESTART_AFTER=3 STALL=20 CUT=15
# Debug, for the `price <id> committed with` lines, without the two targets that write 95 % of
# the lines (7 MB a node in the short form otherwise).
LOG_LEVEL="debug,tracing::span=info,libp2p_gossipsub=info"

T_START=$(date +%s.%N)
say() { printf 'faults: [%4ss] %s\n' "$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b - a }')" "$*" >&2; }
now() { date +%s.%N; }
# Seconds since $1, one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# Sleeps until $1 (epoch seconds) if that is in the future.
sleep_until() { local d; d=$(awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { d = a - b; printf "%.2f", (d > 0 ? d : 0) }'); sleep "$d"; }
# "min-max" of the numbers given ("x" when they are equal, "-" when there are none).
span() {
  [ "$#" -gt 0 ] || { echo -; return; }
  printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print (lo == hi ? lo : lo "-" hi) }'
}
# Float comparison: le A B is true when A <= B.
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# ---------------------------------------------------------------- build, database, ports
# socat is the cuttable proxy in front of PostgreSQL; install it where apt can.
if ! command -v socat >/dev/null 2>&1; then
  say "installing socat"
  apt_install socat || true
  command -v socat >/dev/null 2>&1 || { echo "faults: socat is required (apt install socat)" >&2; exit 1; }
fi
if [ "${NO_BUILD:-${FAULTS_NO_BUILD:-0}}" != 1 ]; then
  say "building oracle (CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target})"
  cargo build --quiet --bin oracle
fi
ORACLE="${CARGO_TARGET_DIR:-target}/debug/oracle"
[ -x "$ORACLE" ] || { echo "faults: no binary at $ORACLE" >&2; exit 2; }

ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# postgres://[userinfo@]host[:port]/db -> the parts the proxies and the nodes need.
rest="${ADMIN_URL#*://}"
userinfo=""; case "$rest" in *@*) userinfo="${rest%%@*}@"; rest="${rest#*@}" ;; esac
hostport="${rest%%/*}"; PG_HOST="${hostport%%:*}"; PG_PORT="${hostport##*:}"
[ "$PG_PORT" = "$hostport" ] && PG_PORT=5432
DB="faults_$(date +%s)_$RANDOM"
DB_URL="postgres://${userinfo}${hostport}/$DB"            # direct, for the script and verify
node_db_url() { echo "postgres://${userinfo}127.0.0.1:$1/$DB"; }   # through a proxy
q() { psql -XAtq "$DB_URL" -c "$1"; }

LOGS=logs-faults
WORK=$(mktemp -d)
KEYS="$WORK/keys"
# Every key is an encrypted keystore (docs/keys.md), opened again at each restart below.
export ORACLE_KEY_PASSWORD="faults suite key password"

# Ports below the ephemeral range (so that no outgoing connection takes one while its owner is
# down), from a random base, each checked free now.
port_free() {
  python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}
next_port=$(( 20000 + RANDOM % 10000 ))
take_port() {
  while ! port_free "$next_port"; do next_port=$(( next_port + 1 )); done
  PORT=$next_port; next_port=$(( next_port + 1 ))
}

# ---------------------------------------------------------------- processes and cleanup
declare -A PID HTTP_PORT DB_PORT PROXY
BOOT_PID=() BOOT_PORT=() BOOT_ARGS=()
MOCK_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local live=()
  for p in "${PID[@]}" "${BOOT_PID[@]}" $MOCK_PID; do
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && live+=("$p")
  done
  if [ "${#live[@]}" -gt 0 ]; then
    say "stopping ${#live[@]} processes"
    kill -CONT "${live[@]}" 2>/dev/null
    kill -TERM "${live[@]}" 2>/dev/null
    for _ in $(seq 1 50); do
      alive_any=0
      for p in "${live[@]}"; do alive "$p" && alive_any=1; done
      [ "$alive_any" = 0 ] && break
      sleep 0.2
    done
    kill -KILL "${live[@]}" 2>/dev/null
    wait "${live[@]}" 2>/dev/null
  fi
  for n in "${!PROXY[@]}"; do stop_proxy "$n"; done
  psql -XAtq "${ADMIN_URL}" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 \
    || say "could not drop database $DB"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A process is alive while it exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  local state; state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

start_proxy() {
  # Its own session, so that the forked children (one per connection) die with it.
  setsid socat "TCP-LISTEN:${DB_PORT[$1]},bind=127.0.0.1,fork,reuseaddr" "TCP:$PG_HOST:$PG_PORT" \
    2>>"$LOGS/proxy-$1.log" &
  PROXY[$1]=$!
}
stop_proxy() {
  [ -n "${PROXY[$1]:-}" ] || return 0
  kill -KILL -- "-${PROXY[$1]}" 2>/dev/null || kill -KILL "${PROXY[$1]}" 2>/dev/null || true
  wait "${PROXY[$1]}" 2>/dev/null || true
  PROXY[$1]=""
}
proxy_listens() { (exec 3<>"/dev/tcp/127.0.0.1/${DB_PORT[$1]}") 2>/dev/null; }

start_node() {
  local name=$1
  ORACLE_DATABASE_URL="$(node_db_url "${DB_PORT[$name]}")" \
  "$ORACLE" run --name "$name" --key-dir "$KEYS" --listen /ip4/127.0.0.1/tcp/0 "${BOOT_ARGS[@]}" \
    --http "127.0.0.1:${HTTP_PORT[$name]}" \
    --source-base-url "http://127.0.0.1:$MOCK_PORT" --source-timeout 3s \
    --observe-interval "${OBSERVE}s" --heartbeat "${ROUND_HEARTBEAT}s" --flush-delay "${FLUSH_DELAY}s" \
    --heartbeat-interval "${HEARTBEAT}s" --lease-duration "${LEASE}s" --writer-term "${TERM}s" \
    --max-age "${MAX_AGE}s" \
    --log-level "$LOG_LEVEL" --log-file "$LOGS/$name.log" >>"$LOGS/$name.console" 2>&1 &
  PID[$name]=$!
}

start_bootstrap() {
  local b=$1
  "$ORACLE" bootstrap --name "boot$b" --key-dir "$KEYS" \
    --listen "/ip4/127.0.0.1/tcp/${BOOT_PORT[$b]}" --trusted-signers "$WORK/members.txt" \
    --log-level "$LOG_LEVEL" --log-file "$LOGS/boot$b.log" >>"$LOGS/boot$b.console" 2>&1 &
  BOOT_PID[$b]=$!
}

status_of() { curl -s --max-time 2 "http://127.0.0.1:${HTTP_PORT[$1]}/status" 2>/dev/null || true; }
health_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${HTTP_PORT[$1]}/health" 2>/dev/null || true; }
peers_of() { local p; p=$(status_of "$1" | jq -r '.connected_peers // 0' 2>/dev/null); echo "${p:-0}"; }

# The node holding the lease now (a heartbeat timestamp in the future), optionally not $1.
lease_holder() {
  q "SELECT nodename FROM heartbeat WHERE \"timestamp\" > now() AND nodename <> '${1:-}'
     ORDER BY \"timestamp\" DESC, node_address DESC LIMIT 1" 2>/dev/null || true
}
# Waits up to $1 s for a lease holder other than $2; prints it, or nothing.
wait_holder() {
  local until w; until=$(awk -v a="$(now)" -v d="$1" 'BEGIN { printf "%.2f", a + d }')
  while le "$(now)" "$until"; do
    w=$(lease_holder "${2:-}")
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.2
  done
}

# SIGTERM (already sent) to the named nodes: waits for each and records its exit status and
# time. Sets STOP_NOTE; counts failures in UNCLEAN.
UNCLEAN=0
collect_stops() {
  local t0=$1; shift
  local pending=("$@") slowest=0 n rc
  STOP_NOTE=""
  while [ "${#pending[@]}" -gt 0 ]; do
    local left=()
    for n in "${pending[@]}"; do
      if alive "${PID[$n]}" && le "$(since "$t0")" "$(( STOP_LIMIT + 5 ))"; then
        left+=("$n")
        continue
      fi
      local took; took=$(since "$t0")
      if alive "${PID[$n]}"; then
        kill -KILL "${PID[$n]}" 2>/dev/null || true
        took="never"
      fi
      wait "${PID[$n]}" 2>/dev/null && rc=0 || rc=$?
      if [ "$took" = never ] || [ "$rc" != 0 ] || ! le "$took" "$STOP_LIMIT"; then
        UNCLEAN=$(( UNCLEAN + 1 ))
        STOP_NOTE+=" $n:exit=$rc,${took}s"
        say "  $n did not stop cleanly: exit $rc after ${took}s"
      fi
      le "$slowest" "$took" 2>/dev/null && [ "$took" != never ] && slowest=$took
      PID[$n]=""
    done
    pending=("${left[@]+"${left[@]}"}")
    [ "${#pending[@]}" -gt 0 ] && sleep 0.1
  done
  STOP_SLOWEST=$slowest
}

# ---------------------------------------------------------------- accounting
# Ids: originated and verified from the logs, stored from the database.
ID_DIR="$WORK/ids"
collect_ids() {
  mkdir -p "$ID_DIR"
  originated_ids >"$ID_DIR/originated"
  verified_ids >"$ID_DIR/verified"
  db_ids >"$ID_DIR/stored"
}
# Scenario windows, "start end" epoch seconds each; an id belongs to the window its time is in.
WIN_NAME=("calm") WIN_START=(0) WIN_END=(0) WIN_NOTE=("warm-up and pauses") WIN_OK=("-")
# count: per window "index originated verified stored lost" lines; lost ids to $ID_DIR/lost.
count() {
  local bounds=""
  for i in "${!WIN_START[@]}"; do [ "$i" = 0 ] || bounds+="${WIN_START[$i]} ${WIN_END[$i]} "; done
  awk -v bounds="$bounds" -v lostfile="$ID_DIR/lost" '
    BEGIN { nw = split(bounds, b, " ") / 2 }
    # Sonyflake-style: 10 ms ticks since 2025-01-01T00:00:00Z above 24 bits of sequence+machine.
    function win(id,   t, i) {
      t = 1735689600 + int(id / 16777216) / 100
      for (i = 1; i <= nw; i++) if (t >= b[2 * i - 1] && t < b[2 * i]) return i
      return 0
    }
    FILENAME == ARGV[1] { o[win($1)]++; next }
    FILENAME == ARGV[2] { V[$1] = 1; next }
    FILENAME == ARGV[3] { S[$1] = 1; s[win($1)]++; next }
    END {
      printf "" >lostfile; close(lostfile)
      for (id in V) { w = win(id); v[w]++; if (!(id in S)) { l[w]++; print w, id >>lostfile } }
      for (i = 0; i <= nw; i++) print i, o[i] + 0, v[i] + 0, s[i] + 0, l[i] + 0
    }' "$ID_DIR/originated" "$ID_DIR/verified" "$ID_DIR/stored"
}
# Verified prices minted before $1 (and from $2 on, if given) that are not stored (yet).
unstored_before() {
  collect_ids
  awk -v end="$1" -v start="${2:-0}" 'FILENAME == ARGV[1] { S[$1] = 1; next }
    { t = 1735689600 + int($1 / 16777216) / 100 }
    !($1 in S) && t < end && t >= start { n++ }
    END { print n + 0 }' "$ID_DIR/stored" "$ID_DIR/verified"
}
# Waits up to SETTLE s for every price verified before $1 to be stored; prints the seconds taken.
# Never less than a flush delay and 3 s past $1: a price minted just before $1 is verified a
# moment later and stored a flush delay after that, so an empty list earlier proves nothing.
settle() {
  local t0 left due; t0=$(now)
  due=$(awk -v a="$1" -v d="$FLUSH_DELAY" 'BEGIN { printf "%.2f", a + d + 3 }')
  while :; do
    left=$(unstored_before "$1")
    [ "$left" = 0 ] && le "$due" "$(now)" && break
    le "$SETTLE" "$(since "$t0")" && break
    sleep 1
  done
  since "$t0"
}
# Scenario bookkeeping: begin NAME; end [PASS|FAIL] NOTE (after the settle).
FAILED=0
begin() { WIN_NAME+=("$1"); WIN_START+=("$(now)"); WIN_END+=(9999999999); CUR=$(( ${#WIN_NAME[@]} - 1 )); say "scenario $CUR: $1"; }
mark_end() { WIN_END[$CUR]=$(now); }
finish() {
  local verdict=$1 note=$2 line
  dead_nodes
  [ -n "$DEAD" ] && { verdict=FAIL; note+="; died:$DEAD"; }
  collect_ids
  line=$(count | awk -v w="$CUR" '$1 == w')
  read -r _ o v s l <<<"$line"
  [ "$l" != 0 ] && verdict=FAIL
  [ "$verdict" = PASS ] || FAILED=1
  WIN_OK[$CUR]=$verdict WIN_NOTE[$CUR]=$note
  echo "RESULT $CUR ${WIN_NAME[$CUR]}: $verdict originated=$o verified=$v stored=$s lost=$l; $note"
}
# Nodes that should run but do not.
dead_nodes() {
  DEAD=""
  for n in "${NODES[@]}"; do
    [ -n "${PID[$n]:-}" ] && ! alive "${PID[$n]}" && DEAD+=" $n"
  done
  return 0
}

# ---------------------------------------------------------------- the network
rm -rf "$LOGS"; mkdir -p "$LOGS" "$KEYS"
say "database $DB; logs in $LOGS/; mode $MODE"
psql -XAtq "$ADMIN_URL" -c "CREATE DATABASE \"$DB\"" >/dev/null
"$ORACLE" migrate --database-url "$DB_URL" --log-level warn
: >"$WORK/members.txt"
declare -A ADDRESS
for n in "${NODES[@]}"; do
  "$ORACLE" keygen --name "$n" --key-dir "$KEYS" --log-level warn >/dev/null
  "$ORACLE" signers add --key "$n" --key-dir "$KEYS" --database-url "$DB_URL" --log-level warn >/dev/null
  ADDRESS[$n]=$("$ORACLE" keygen --name "$n" --key-dir "$KEYS" --show --log-level warn \
    | awk '/^address/ { print $2 }')
  echo "${ADDRESS[$n]}" >>"$WORK/members.txt"
done

take_port; MOCK_PORT=$PORT
"$ORACLE" mock-exchange --listen "127.0.0.1:$MOCK_PORT" --seed 7 \
  --log-file "$LOGS/mock-exchange.log" >/dev/null 2>&1 &
MOCK_PID=$!
for b in 0 1; do
  take_port; BOOT_PORT[$b]=$PORT
  "$ORACLE" keygen --name "boot$b" --key-dir "$KEYS" --log-level warn >/dev/null
  peer=$("$ORACLE" keygen --name "boot$b" --key-dir "$KEYS" --show --log-level warn | awk '/^peer id/ { print $3 }')
  BOOT_ARGS+=(--bootstrap "/ip4/127.0.0.1/tcp/${BOOT_PORT[$b]}/p2p/$peer")
  start_bootstrap "$b"
done
for n in "${NODES[@]}"; do
  take_port; HTTP_PORT[$n]=$PORT
  take_port; DB_PORT[$n]=$PORT
  start_proxy "$n"
done
for n in "${NODES[@]}"; do
  for _ in $(seq 1 50); do proxy_listens "$n" && break; sleep 0.1; done
  start_node "$n"
done
say "started mock exchange :$MOCK_PORT, bootstraps :${BOOT_PORT[0]} :${BOOT_PORT[1]}, nodes on HTTP :${HTTP_PORT[node0]}…, each through its own proxy"

# Warm-up: every node connected and heartbeating, and prices stored.
t0=$(now)
until [ "$(q 'SELECT count(*) FROM heartbeat')" -ge 5 ] && [ "$(q 'SELECT count(*) FROM prices')" -ge 3 ]; do
  dead_nodes; [ -n "$DEAD" ] && { say "nodes died during start:$DEAD (see $LOGS/)"; exit 1; }
  le 120 "$(since "$t0")" && { say "the network did not start within 120 s (see $LOGS/)"; exit 1; }
  sleep 1
done
say "network up: 5 nodes heartbeating, $(q 'SELECT count(*) FROM prices') prices stored after $(since "$t0") s"

# ---------------------------------------------------------------- 1. writer killed
begin "writer killed"
kills=0 takeovers=() missed=0 restart_fail=0
end_at=$(awk -v a="$(now)" -v d="$KILL_FOR" 'BEGIN { printf "%.2f", a + d }')
while le "$(now)" "$end_at"; do
  w=$(wait_holder 10)
  if [ -z "$w" ]; then say "  no lease holder for 10 s"; missed=$(( missed + 1 )); continue; fi
  t_kill=$(now)
  kill -KILL "${PID[$w]}"; wait "${PID[$w]}" 2>/dev/null || true
  kills=$(( kills + 1 ))
  nw=$(wait_holder 20 "$w")
  took=$(since "$t_kill")
  if [ -n "$nw" ]; then takeovers+=("$took"); say "  kill -9 $w (writer): $nw took over after ${took}s"
  else missed=$(( missed + 1 )); say "  kill -9 $w (writer): nobody took over within 20 s"; fi
  sleep_until "$(awk -v a="$t_kill" -v d="$RESTART_AFTER" 'BEGIN { printf "%.2f", a + d }')"
  start_node "$w"
  sleep 1
  alive "${PID[$w]}" || { restart_fail=$(( restart_fail + 1 )); say "  $w did not restart (see $LOGS/$w.console)"; }
  sleep_until "$(awk -v a="$t_kill" -v d="$KILL_EVERY" 'BEGIN { printf "%.2f", a + d }')"
done
mark_end
settled=$(settle "${WIN_END[$CUR]}")
max_takeover=$(printf '%s\n' "${takeovers[@]:-0}" | sort -g | tail -n 1)
verdict=PASS
# A takeover may exceed the bound by a heartbeat's round trip and the 0.2 s polling.
le "$max_takeover" "$(( TAKEOVER_BOUND + 2 ))" || verdict=FAIL
[ "$missed" = 0 ] && [ "$restart_fail" = 0 ] && [ "$kills" -gt 0 ] || verdict=FAIL
finish "$verdict" "$kills kills: takeover $(span "${takeovers[@]}") s (bound ${TAKEOVER_BOUND} s)$( [ "$missed" = 0 ] || echo ", $missed without takeover")$( [ "$restart_fail" = 0 ] || echo ", $restart_fail failed restarts")"

# ---------------------------------------------------------------- 2. writer stalled
begin "writer stalled"
stalled_rows=() stall_takeovers=() fences=0 verdict=PASS
for r in $(seq 1 "$STALLS"); do
  w=$(wait_holder 10)
  [ -n "$w" ] || { say "  no lease holder for 10 s"; verdict=FAIL; continue; }
  t_stop=$(now); db_t_stop=$(q 'SELECT extract(epoch FROM clock_timestamp())')
  kill -STOP "${PID[$w]}"
  # Did the stop catch it inside a flush (its fence: a transaction left open)?
  sleep 0.3
  open=$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
            AND state LIKE 'idle in transaction%'")
  [ "$open" -gt 0 ] && fences=$(( fences + 1 ))
  nw=$(wait_holder $(( STALL - 2 )) "$w"); took=$(since "$t_stop")
  sleep_until "$(awk -v a="$t_stop" -v d="$STALL" 'BEGIN { printf "%.2f", a + d }')"
  db_t_cont=$(q 'SELECT extract(epoch FROM clock_timestamp())')
  kill -CONT "${PID[$w]}"
  rows=$(q "SELECT count(*) FROM prices WHERE created_time >= to_timestamp($db_t_stop) AND created_time < to_timestamp($db_t_cont)")
  stalled_rows+=("$rows")
  if [ -n "$nw" ]; then stall_takeovers+=("$took"); else verdict=FAIL; fi
  [ "$rows" -gt 0 ] || verdict=FAIL
  say "  kill -STOP $w (writer) for ${STALL}s: $( [ -n "$nw" ] && echo "$nw took over after ${took}s" || echo "no takeover"), $rows rows stored meanwhile$( [ "$open" = 0 ] || echo "; it was inside its fence")"
  # The stalled node must come back: database ok and answering within 10 s.
  back=""
  for _ in $(seq 1 20); do
    [ "$(status_of "$w" | jq -r '.database' 2>/dev/null)" = ok ] && { back=1; break; }
    sleep 0.5
  done
  [ -n "$back" ] || { verdict=FAIL; say "  $w did not come back within 10 s of SIGCONT"; }
  [ "$r" -lt "$STALLS" ] && sleep 10
done
mark_end
settle "${WIN_END[$CUR]}" >/dev/null
finish "$verdict" "$STALLS x ${STALL} s: takeover $(span "${stall_takeovers[@]}") s, rows stored meanwhile $(span "${stalled_rows[@]}"), stopped inside its fence $fences"

# ---------------------------------------------------------------- 3. database outage
begin "database outage"
verdict=PASS cut_takeovers=() cut_rows=() backlog_sizes=() firsts=() backlog_times=() unhealthy_counts=()
for r in $(seq 1 "$OUTAGES"); do
  # (a) Only the writer loses the database (it still gossips): another node takes over.
  w=$(wait_holder 10)
  if [ -n "$w" ]; then
    t_cut=$(now); db_t_cut=$(q 'SELECT extract(epoch FROM clock_timestamp())')
    stop_proxy "$w"
    nw=$(wait_holder $(( CUT - 1 )) "$w"); took=$(since "$t_cut")
    sleep_until "$(awk -v a="$t_cut" -v d="$CUT" 'BEGIN { printf "%.2f", a + d }')"
    rows=$(q "SELECT count(*) FROM prices WHERE created_time >= to_timestamp($db_t_cut)")
    start_proxy "$w"
    cut_rows+=("$rows")
    if [ -n "$nw" ]; then cut_takeovers+=("$took"); else verdict=FAIL; fi
    [ "$rows" -gt 0 ] || verdict=FAIL
    say "  $w (writer) cut off the database for ${CUT}s: $( [ -n "$nw" ] && echo "$nw took over after ${took}s" || echo "no takeover"), $rows rows stored meanwhile"
    sleep 10
  else
    say "  no lease holder for 10 s"; verdict=FAIL
  fi
  # (b) Every node loses the database.
  t_cut=$(now)
  for n in "${NODES[@]}"; do stop_proxy "$n"; done
  say "  all proxies down for ${OUTAGE}s"
  sleep $(( OUTAGE / 2 ))
  unhealthy=0
  for n in "${NODES[@]}"; do [ "$(health_code "$n")" = 503 ] && unhealthy=$(( unhealthy + 1 )); done
  unhealthy_counts+=("$unhealthy")
  [ "$unhealthy" = 5 ] || { verdict=FAIL; say "  only $unhealthy of 5 nodes reported the outage on /health"; }
  sleep_until "$(awk -v a="$t_cut" -v d="$OUTAGE" 'BEGIN { printf "%.2f", a + d }')"
  db_t_restore=$(q 'SELECT extract(epoch FROM clock_timestamp())')
  for n in "${NODES[@]}"; do start_proxy "$n"; done
  t_restore=$(now)
  backlog=$(unstored_before "$t_restore")
  took="" first=""
  while le "$(since "$t_restore")" "$SETTLE"; do
    if [ -z "$first" ] && [ "$(q "SELECT count(*) FROM prices WHERE created_time >= to_timestamp($db_t_restore)")" -gt 0 ]; then
      first=$(since "$t_restore")
    fi
    [ "$(unstored_before "$t_restore")" = 0 ] && { took=$(since "$t_restore"); break; }
    sleep 0.5
  done
  first=${first:-$took}
  backlog_sizes+=("$backlog")
  [ -n "$first" ] && firsts+=("$first")
  if [ -n "$took" ]; then backlog_times+=("$took"); else verdict=FAIL; fi
  say "  database back: first row after ${first:-?}s, backlog of $backlog verified prices $( [ -n "$took" ] && echo "stored after ${took}s" || echo "NOT stored within ${SETTLE}s")"
  [ "$r" -lt "$OUTAGES" ] && sleep 15
done
mark_end
settle "${WIN_END[$CUR]}" >/dev/null
finish "$verdict" "writer cut ${CUT} s x$OUTAGES: takeover $(span "${cut_takeovers[@]}") s, rows meanwhile $(span "${cut_rows[@]}"); all cut ${OUTAGE} s x$OUTAGES: /health 503 on $(span "${unhealthy_counts[@]}")/5, backlog $(span "${backlog_sizes[@]}") prices, first row $(span "${firsts[@]}") s, all stored $(span "${backlog_times[@]}") s after restore"

# ---------------------------------------------------------------- 4. bootstrap loss
begin "bootstrap loss, node restart"
for b in 0 1; do kill -KILL "${BOOT_PID[$b]}" 2>/dev/null || true; wait "${BOOT_PID[$b]}" 2>/dev/null || true; BOOT_PID[$b]=""; done
say "  both bootstrap nodes killed"
verdict=PASS restarted=() joins=() owns=() last=""
for r in $(seq 1 "$REJOINS"); do
  holder=$(lease_holder)
  # A node that is not the writer, another one than last round.
  for i in 0 1 2 3 4; do
    n=${NODES[$(( (2 * r + i) % 5 ))]}
    [ "$n" != "$holder" ] && [ "$n" != "$last" ] && break
  done
  last=$n
  t_term=$(now)
  kill -TERM "${PID[$n]}"
  collect_stops "$t_term" "$n"
  [ -z "$STOP_NOTE" ] || verdict=FAIL
  sleep 2
  offset=$(stat -c %s "$LOGS/$n.log")
  start_node "$n"; t_start=$(now)
  joined="" stored=""
  while le "$(since "$t_start")" 90; do
    if [ -z "$joined" ] && [ "$(peers_of "$n")" -ge 3 ]; then joined=$(since "$t_start"); fi
    if [ -n "$joined" ]; then
      # Any member's round will do: one member starts each, and the restarted node takes part
      # in every one it hears.
      if [ "$(q "SELECT count(*) FROM prices WHERE sign_data::text ILIKE '%${ADDRESS[$n]}%' \
                 AND observed_at > to_timestamp($t_start)")" -gt 0 ]; then
        stored=$(since "$t_start"); break
      fi
    fi
    alive "${PID[$n]}" || break
    sleep 1
  done
  if [ -n "$joined" ] && [ -n "$stored" ]; then
    restarted+=("$n") joins+=("$joined") owns+=("$stored")
    say "  $n restarted with dead bootstraps: $(peers_of "$n") peers after ${joined}s, own observation stored after ${stored}s"
  else
    verdict=FAIL; restarted+=("$n:FAILED")
    say "  $n restarted with dead bootstraps: peers reached after ${joined:-never}s, own observation stored after ${stored:-never}s"
  fi
done
mark_end
settle "${WIN_END[$CUR]}" >/dev/null
finish "$verdict" "restarted $(IFS=,; echo "${restarted[*]}"): >= 3 peers after $(span "${joins[@]}") s, own observation stored after $(span "${owns[@]}") s"
# The bootstrap nodes come back (same keys and ports) for what follows.
for b in 0 1; do start_bootstrap "$b"; done

# ---------------------------------------------------------------- 5. full stop
begin "full stop"
verdict=PASS in_window=() slowest=() leftover=() unclean_before=$UNCLEAN
for r in $(seq 1 "$STOPS"); do
  # Prices of this round inside their flush window: verified somewhere, not yet stored.
  t_round=$(now) waiting=0
  for _ in $(seq 1 60); do
    waiting=$(unstored_before 9999999999 "$t_round")
    [ "$waiting" -gt 0 ] && break
    sleep 0.5
  done
  t_term=$(now)
  for n in "${NODES[@]}"; do kill -TERM "${PID[$n]}"; done
  collect_stops "$t_term" "${NODES[@]}"
  [ -z "$STOP_NOTE" ] || verdict=FAIL
  left=$(unstored_before 9999999999)
  in_window+=("$waiting") slowest+=("$STOP_SLOWEST") leftover+=("$left")
  [ "$waiting" -gt 0 ] || say "  (no price was inside its flush window at the stop)"
  say "  SIGTERM to all 5 nodes with $waiting verified prices unstored: slowest exit ${STOP_SLOWEST}s${STOP_NOTE:+, unclean:$STOP_NOTE}; $left left unstored"
  if [ "$r" -lt "$STOPS" ]; then
    for n in "${NODES[@]}"; do start_node "$n"; done
    t0=$(now) before=$(q 'SELECT count(*) FROM prices')
    until [ "$(q 'SELECT count(*) FROM prices')" -gt $(( before + 2 )) ]; do
      le 90 "$(since "$t0")" && { say "  the restarted network stored nothing within 90 s"; verdict=FAIL; break; }
      sleep 1
    done
    say "  restarted all nodes: storing again after $(since "$t0")s"
  fi
done
mark_end
[ "$UNCLEAN" = "$unclean_before" ] || verdict=FAIL
finish "$verdict" "$STOPS x SIGTERM to all: $(span "${in_window[@]}") verified prices unstored at the signal, slowest exit $(span "${slowest[@]}") s, unstored after the stop $(span "${leftover[@]}")$( [ "$UNCLEAN" = "$unclean_before" ] || echo ", $(( UNCLEAN - unclean_before )) unclean exits")"

# ---------------------------------------------------------------- totals and audit
for b in 0 1; do [ -n "${BOOT_PID[$b]}" ] && kill -TERM "${BOOT_PID[$b]}" 2>/dev/null; done
collect_ids
counts=$(count)
{
  echo
  printf '%-40s | %10s | %8s | %6s | %4s | %s\n' scenario originated verified stored lost notes
  printf '%s\n' "-----------------------------------------+------------+----------+--------+------+------"
  tot_o=0 tot_v=0 tot_s=0 tot_l=0
  for i in $(seq 1 $(( ${#WIN_NAME[@]} - 1 ))) 0; do
    read -r _ o v s l <<<"$(awk -v w="$i" '$1 == w' <<<"$counts")"
    tot_o=$(( tot_o + o )) tot_v=$(( tot_v + v )) tot_s=$(( tot_s + s )) tot_l=$(( tot_l + l ))
    label=$( [ "$i" = 0 ] && echo "${WIN_NAME[0]}" || echo "$i. ${WIN_NAME[$i]} [${WIN_OK[$i]}]")
    printf '%-40s | %10d | %8d | %6d | %4d | %s\n' "$label" "$o" "$v" "$s" "$l" "${WIN_NOTE[$i]}"
  done
  printf '%-40s | %10d | %8d | %6d | %4d | %s\n' "total" "$tot_o" "$tot_v" "$tot_s" "$tot_l" \
    "unclean stops: $UNCLEAN"
  echo
} | tee "$LOGS/results.txt"
if [ -s "$ID_DIR/lost" ]; then
  echo "LOST (window id):"; sed 's/^/  /' "$ID_DIR/lost"
  FAILED=1
fi
[ "$UNCLEAN" = 0 ] || FAILED=1
# Stored rows were verified first: none seen verified means the log line counted above is no
# longer what the nodes print, and "lost" would count nothing.
all_verified=$(awk '{ n += $3 } END { print n + 0 }' <<<"$counts")
all_stored=$(awk '{ n += $4 } END { print n + 0 }' <<<"$counts")
if [ "$all_stored" -gt 0 ] && [ "$all_verified" = 0 ]; then
  say "$BLIND_COUNT ($all_stored rows)"
  FAILED=1
fi
if grep -l 'panicked' "$LOGS"/*.console >/dev/null 2>&1; then
  say "a process panicked: $(grep -l 'panicked' "$LOGS"/*.console | tr '\n' ' ')"; FAILED=1
fi
say "oracle verify"
if "$ORACLE" verify --database-url "$DB_URL" --log-level warn | tee -a "$LOGS/results.txt"; then :; else
  say "oracle verify FAILED"; FAILED=1
fi
if [ "$FAILED" = 0 ]; then say "PASS ($MODE, $(since "$T_START")s)"; else say "FAIL ($MODE, $(since "$T_START")s; see $LOGS/)"; fi
exit "$FAILED"
