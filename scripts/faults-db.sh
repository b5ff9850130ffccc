#!/usr/bin/env bash
# The replicated database's fault scenarios, run by `scripts/faults.sh --scenario NAME`:
#
#   db-failover    kill -9 of the primary's postmaster while a flush is open (caught in
#                  pg_stat_activity; `mid_flush` says whether it was), under a steady stream of
#                  rounds; Patroni promotes a synchronous standby
#   db-switchover  `patronictl switchover` (scripts/pg-ha.sh switchover) under the same stream
#
# Starts the replicated PostgreSQL (scripts/pg-ha.sh up: etcd and three Patroni instances, its
# packages installed when missing), a database of its own there, and a network of four nodes
# with run_nodes.sh (a mock exchange, each node its own database role, the multi-host URL), with
# short timings: an observation a second, a round every 2 s at least, the flush 3 s after. Once
# rows are stored, the fault, KILLS times (1; 3 with --long, a different instance each time —
# switched over to first when the leader is one already hit — after the last one is back as a
# standby), then 8 s more, then every node stopped (SIGTERM).
#
# Ends with one JSON line:
#   lost         ids verified somewhere (debug `price <id> committed with`) that are not stored
#   lost_acked   ids a flush was told were committed (debug `stored prices …`) that are not
#                stored: an acknowledged commit the failover lost
#   duplicates   ids two flushes were both told they inserted: a commit lost and made again
#   failover_s   the primary gone (kill or switchover) -> a server takes writes, worst of KILLS
#   resume_s     that server takes writes -> the network's first row stored there, worst
#   verify       `oracle verify` on the new primary
# Exit 0 only when lost, lost_acked and duplicates are 0, resume_s <= 10 and verify passed.
#
#   scripts/faults.sh --scenario db-failover [--long]
#
# Settings (environment): NO_BUILD=1 runs the binary already built; PG_HA_KEEP=1 leaves the
# cluster up afterwards (scripts/pg-ha.sh down stops it). Logs: logs-faults-db/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/ids.sh
source scripts/lib/ids.sh

SCENARIO=${1:?usage: faults-db.sh db-failover|db-switchover [--long]}
KILLS=1
[ "${2:-}" = --long ] && KILLS=3
case "$SCENARIO" in db-failover|db-switchover) ;; *) echo "faults-db: unknown scenario $SCENARIO" >&2; exit 2 ;; esac

LOGS=logs-faults-db
RESUME_LIMIT=10
T_START=$(date +%s.%N)
say() { printf 'faults-db: [%4ss] %s\n' "$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b - a }')" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0 ? a : b) }'; }

if [ "${NO_BUILD:-${FAULTS_NO_BUILD:-0}}" != 1 ]; then
  say "building oracle"
  cargo build --quiet --bin oracle
fi
ORACLE="${CARGO_TARGET_DIR:-target}/debug/oracle"

rm -rf "$LOGS"; mkdir -p "$LOGS"
SERVERS=$(scripts/pg-ha.sh up)
say "replicated database up: $SERVERS"
DB="faults_db_$(date +%s)_$RANDOM"
base="${SERVERS%/*}"
DB_URL="$base/$DB"
PRIMARY="target_session_attrs=read-write"
q() { psql -XAtq "$DB_URL?$PRIMARY" -c "$1"; }
psql -XAtq "$base/postgres?$PRIMARY" -c "CREATE DATABASE \"$DB\"" >/dev/null

RUN_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "$RUN_PID" ] && kill -TERM "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null
  psql -XAtq "$base/postgres?$PRIMARY" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1
  [ "${PG_HA_KEEP:-0}" = 1 ] || scripts/pg-ha.sh down >/dev/null 2>&1
  exit "$rc"
}
trap cleanup EXIT INT TERM

# The network: run_nodes.sh, as an operator starts it, against the replicated database.
export ORACLE_OBSERVE_INTERVAL=1s ORACLE_HEARTBEAT=2s ORACLE_FLUSH_DELAY=3s \
  ORACLE_HEARTBEAT_INTERVAL=1s ORACLE_LEASE_DURATION=3s ORACLE_WRITER_TERM=15s \
  ORACLE_DB_TIMEOUT=3s ORACLE_LOG_LEVEL="debug,tracing::span=info,libp2p_gossipsub=info"
# Keys of its own (fresh each run): test.sh runs this beside api-schema.sh's network.
DATABASE_URL="$DB_URL" MOCK_EXCHANGE=1 NUM_NODES=4 NO_BUILD=1 LOG_DIR="$LOGS" ORACLE_KEY_DIR="$LOGS/keys" \
  MOCK_PORT=$(( 21000 + RANDOM % 1000 )) BOOTSTRAP_PORT=$(( 22000 + RANDOM % 1000 )) \
  HTTP_PORT=$(( 23000 + RANDOM % 1000 )) \
  ./run_nodes.sh >"$LOGS/run_nodes.console" 2>&1 &
RUN_PID=$!

stored() { q "SELECT count(*) FROM prices" 2>/dev/null || echo 0; }
wait_rows() { # N LIMIT_S: waits for N rows
  local t0; t0=$(now)
  while [ "$(stored)" -lt "$1" ]; do
    awk -v a="$(since "$t0")" -v l="$2" 'BEGIN { exit !(a > l) }' && return 1
    kill -0 "$RUN_PID" 2>/dev/null || { say "run_nodes.sh ended: $(tail -3 "$LOGS/run_nodes.console")"; return 1; }
    sleep 0.5
  done
}
wait_rows 3 120 || { say "no rows stored within 120 s"; exit 1; }
say "storing: $(stored) rows"

# Waits (up to 10 s) until a node's flush holds its fence — the SHARE lock on heartbeat it takes
# first and keeps until it commits — on the server at port $1; true when it saw one. One session
# polling every millisecond inside the server: a flush lasts milliseconds, too short for a new
# psql per look.
in_flush() {
  psql -XAtq "postgres://postgres@127.0.0.1:$1/$DB" -c "SET statement_timeout = '11s'" -c "
    DO \$\$ BEGIN
      FOR i IN 1..10000 LOOP
        IF EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                   WHERE c.relname = 'heartbeat' AND l.mode = 'ShareLock' AND l.granted
                     AND l.pid <> pg_backend_pid()) THEN
          RETURN;
        END IF;
        PERFORM pg_sleep(0.001);
      END LOOP;
      RAISE EXCEPTION 'no flush seen';
    END \$\$;" >/dev/null 2>&1
}

FAILOVER=0 RESUME=0 MID=0 KILLED=()
for k in $(seq 1 "$KILLS"); do
  read -r name port pid < <(scripts/pg-ha.sh leader)
  # A different instance each time: while the leader is one already hit, hand it on (Patroni
  # switches over only to the synchronous standby, so this may take two).
  for _ in 1 2 3; do
    case " ${KILLED[*]} " in *" $name "*) ;; *) break ;; esac
    scripts/pg-ha.sh switchover >/dev/null 2>>"$LOGS/switchover.log" || true
    PG_HA_TIMEOUT=60 scripts/pg-ha.sh up >/dev/null 2>&1 || true
    read -r name port pid < <(scripts/pg-ha.sh leader)
  done
  KILLED+=("$name")
  if [ "$SCENARIO" = db-failover ]; then
    in_flush "$port" && MID=$(( MID + 1 ))
    t_gone=$(now)
    kill -9 "$pid"
    say "fault $k: kill -9 of $name's postmaster (pid $pid)"
    read -r new_name _ _ < <(scripts/pg-ha.sh wait-writable 120 | head -1)
  else
    say "fault $k: switchover away from $name"
    t_gone=$(now)
    # Returns once the new leader takes writes.
    read -r new_name _ _ < <(scripts/pg-ha.sh switchover 2>"$LOGS/switchover-$k.log" | tail -1)
  fi
  failover=$(since "$t_gone")
  t_writable=$(q "SELECT now()")
  say "  $new_name takes writes after ${failover}s"
  t0=$(now); resume=""
  while awk -v a="$(since "$t0")" 'BEGIN { exit !(a < 60) }'; do
    if [ "$(q "SELECT count(*) FROM prices WHERE created_time > '$t_writable'" 2>/dev/null || echo 0)" -gt 0 ]; then
      resume=$(since "$t0"); break
    fi
    sleep 0.2
  done
  say "  first row stored there after ${resume:-more than 60}s"
  FAILOVER=$(max "$FAILOVER" "$failover")
  RESUME=$(max "$RESUME" "${resume:-999}")
  # The next fault only once all three instances run again (the old primary as a standby).
  PG_HA_TIMEOUT=120 scripts/pg-ha.sh up >/dev/null 2>&1 || say "  not all three instances back within 120 s"
  say "  $name is back as a standby"
  if [ "$k" -lt "$KILLS" ]; then sleep 10; fi
done

# Rounds verified up to now are stored one flush delay (3 s) after; give them twice that.
sleep 8
say "stopping the network"
kill -TERM "$RUN_PID"; wait "$RUN_PID" 2>/dev/null || true; RUN_PID=""

tally_ids
if "$ORACLE" verify --database-url "$DB_URL" --log-level warn >"$LOGS/verify.txt" 2>&1; then
  verify=ok
else
  verify=failed
fi
ok=true
if [ "$blind" = 1 ]; then say "$BLIND_COUNT"; ok=false; fi
[ "$lost" = 0 ] && [ "$lost_acked" = 0 ] && [ "$duplicates" = 0 ] && [ "$verify" = ok ] \
  && awk -v r="$RESUME" -v l="$RESUME_LIMIT" 'BEGIN { exit !(r <= l) }' || ok=false
printf '{"scenario":"%s","faults":%d,"killed":"%s","mid_flush":%d,"verified":%d,"stored":%d,"lost":%d,"lost_acked":%d,"duplicates":%d,"failover_s":%s,"resume_s":%s,"verify":"%s","ok":%s}\n' \
  "$SCENARIO" "$KILLS" "${KILLED[*]}" "$MID" "$(echo "$verified" | lines)" "$(echo "$stored_ids" | lines)" \
  "$lost" "$lost_acked" "$duplicates" "$FAILOVER" "$RESUME" "$verify" "$ok"
$ok
