#!/usr/bin/env bash
# A replicated PostgreSQL 15 with automatic failover on this machine: one etcd and three
# Patroni-managed instances on 127.0.0.1, for trying the nodes against a primary that moves.
#
#   scripts/pg-ha.sh up               install (apt) if needed, start what is not running, wait
#                                     until a leader takes writes and both replicas stream; prints
#                                     postgres://postgres@127.0.0.1:5441,127.0.0.1:5442,127.0.0.1:5443/postgres
#   scripts/pg-ha.sh down [--keep]    stop what `up` started, check the ports are free, delete the
#                                     state directory (--keep keeps it: `up` resumes the cluster)
#   scripts/pg-ha.sh status           `patronictl list`, then which port answers
#   scripts/pg-ha.sh url              the URL line (add ?target_session_attrs=read-write for libpq
#                                     to pick the primary)
#   scripts/pg-ha.sh leader           NAME PORT POSTMASTER_PID of the leader (exit 1 if none)
#   scripts/pg-ha.sh switchover       planned switchover to the synchronous standby; waits until
#                                     the new leader takes writes and prints its leader line
#   scripts/pg-ha.sh wait-writable [TIMEOUT_S]   (default 60) waits until an instance commits a
#                                     write; prints NAME PORT POSTMASTER_PID SECONDS_WAITED
#
#   etcd      client 127.0.0.1:2479, peer 127.0.0.1:2480
#   pg1..pg3  PostgreSQL 127.0.0.1:5441..5443, Patroni REST 127.0.0.1:8441..8443
#
# Authentication is trust on 127.0.0.1 (no passwords), like the machine's own server. Patroni
# runs synchronous_mode (not strict): a commit is acknowledged once the synchronous standby has
# it, and only that standby may be promoted, so a failover loses no acknowledged commit. Measured
# here (ttl 10, loop_wait 2, retry_timeout 4, primary_start_timeout 0): the leader's postmaster
# killed -> the synchronous standby takes writes after ~3 s; its Patroni killed as well -> ~10 s
# (the leader key's ttl); a switchover ~2.5 s. A killed instance rejoins as a replica by itself
# (pg_rewind) if its Patroni lives; `up` restarts a Patroni that is gone. The write probe
# (wait-writable, up) upserts one row of table pg_ha_probe in database postgres.
#
# Everything runs as the OS user postgres; state (data, configs, logs, pid files) lives in
# $PG_HA_DIR, default /tmp/price-oracle-pg-ha: pgN/patroni.log, pgN/log/postgresql.log,
# etcd.log. Needs root for up, down and switchover (apt, runuser, kill) and to read pid files.
#
# Settings (environment): PG_HA_DIR; PG_HA_TIMEOUT, seconds `up` waits (default 120);
# PG_HA_TTL, PG_HA_LOOP_WAIT, PG_HA_RETRY_TIMEOUT (10, 2, 4; read only when the cluster is
# first created: later, `patronictl -c $PG_HA_DIR/pg1/patroni.yml edit-config`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh

DIR="${PG_HA_DIR:-/tmp/price-oracle-pg-ha}"
DIR="${DIR%/}"
TIMEOUT="${PG_HA_TIMEOUT:-120}"
TTL="${PG_HA_TTL:-10}" LOOP_WAIT="${PG_HA_LOOP_WAIT:-2}" RETRY_TIMEOUT="${PG_HA_RETRY_TIMEOUT:-4}"
PG_BIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3           # the one the Debian patroni package runs on (not a pyenv shim)
SCOPE=price-oracle
ETCD_CLIENT=2479 ETCD_PEER=2480
NODES=(pg1 pg2 pg3)
PG_PORTS=(5441 5442 5443)
API_PORTS=(8441 8442 8443)
URL="postgres://postgres@127.0.0.1:5441,127.0.0.1:5442,127.0.0.1:5443/postgres"
# A variable from the caller's environment must not steer psql or Patroni elsewhere.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGTARGETSESSIONATTRS PGCONNECT_TIMEOUT

say() { echo "pg-ha: $*" >&2; }
# A command failing where nothing checks it ends the script (set -e): say where, at least.
set -E
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (apt-get, runuser, signals to postgres' processes)"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ]; }
pid_in() { if [ -r "$1" ]; then head -n 1 "$1" 2>/dev/null | tr -dc 0-9; fi; }
all_ports() { echo "$ETCD_CLIENT $ETCD_PEER ${PG_PORTS[*]} ${API_PORTS[*]}"; }

# ---------------------------------------------------------------------------------------------
# Installation

install_if_missing() {
  local missing=()
  [ -x /usr/bin/patroni ] && [ -x /usr/bin/patronictl ] || missing+=(patroni)
  [ -x /usr/bin/etcd ] || missing+=(etcd-server)
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
  [ -x "$PG_BIN/psql" ] || missing+=(postgresql-client-15)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]} with apt"
  # The packages' postinst scripts start their services through invoke-rc.d. Where a runlevel
  # is known (a booted sysvinit machine) that starts a stray etcd on 2379/2380, and fails the
  # patroni install (its init script exits 1 without /etc/patroni/postgres.yml). Deny service
  # actions while apt runs, unless the machine has a policy already (Docker images ship one).
  local policy=/usr/sbin/policy-rc.d ours=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# pg-ha.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"; ours=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install "${missing[@]}" || { [ -n "$ours" ] && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
  if [ -n "$ours" ]; then rm -f "$policy"; trap - EXIT; fi
  if ! [[ -x /usr/bin/patroni && -x /usr/bin/etcd && -x "$PG_BIN/postgres" && -x "$PG_BIN/psql" ]]; then
    die "installed ${missing[*]}, but a binary is still missing"
  fi
}

# ---------------------------------------------------------------------------------------------
# Looking at the cluster

# "name role state port" per member, from the first Patroni REST API that answers (roles:
# leader, sync_standby, replica; the state is the one Patroni last wrote to etcd).
members() {
  [ -x "$PY" ] || return 1
  "$PY" - "${API_PORTS[@]}" <<'EOF'
import json, signal, sys, urllib.request
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a reader that stops early is no error
for port in sys.argv[1:]:
    try:
        with urllib.request.urlopen('http://127.0.0.1:%s/cluster' % port, timeout=1) as r:
            cluster = json.load(r)
    except Exception:
        continue
    for m in cluster.get('members', []):
        print(m.get('name'), m.get('role'), m.get('state') or '-', m.get('port') or '-')
    sys.exit(0)
sys.exit(1)
EOF
}

postmaster_pid() { pid_in "$DIR/$1/data/postmaster.pid"; }

# The leader line: Patroni's leader, running, whose postmaster is alive.
leader_line() {
  local name role state port pid
  while read -r name role state port; do
    [[ $role == leader && $state == running ]] || continue
    pid=$(postmaster_pid "$name")
    alive "$pid" || return 1
    echo "$name $port $pid"; return 0
  done < <(members 2>/dev/null)
  return 1
}

psql_at() { "$PG_BIN/psql" -X -Atq "$1" "${@:2}"; }
conninfo() { echo "host=127.0.0.1 port=$1 user=postgres dbname=postgres connect_timeout=2 application_name=pg-ha"; }

# One attempt at a committed write on whichever instance libpq finds writable; prints the port
# and the postmaster's pid. The timeout matters: a commit waits for the synchronous standby.
write_once() {
  timeout 5 "$PG_BIN/psql" -X -Atq -v ON_ERROR_STOP=1 \
    "$URL?target_session_attrs=read-write&connect_timeout=1&application_name=pg-ha" <<'EOF' 2>/dev/null
CREATE TABLE IF NOT EXISTS pg_ha_probe (id int PRIMARY KEY, written_at timestamptz NOT NULL);
INSERT INTO pg_ha_probe VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET written_at = now();
SELECT NOT pg_is_in_recovery(), inet_server_port(), split_part(pg_read_file('postmaster.pid'), E'\n', 1);
EOF
}

# wait_writable TIMEOUT [NOT_NAME]: the leader line plus seconds waited, once a write commits
# (on an instance other than NOT_NAME, when given).
wait_writable() {
  local limit=$1 not=${2:-} t0 out ok port pid name i
  t0=$(now)
  while :; do
    if out=$(write_once) && IFS='|' read -r ok port pid <<<"$(tail -n 1 <<<"$out")" && [ "$ok" = t ]; then
      name=
      for i in "${!PG_PORTS[@]}"; do [ "${PG_PORTS[$i]}" = "$port" ] && name=${NODES[$i]}; done
      if [ -n "$name" ] && [ "$name" != "$not" ]; then
        echo "$name $port $pid $(since "$t0")"; return 0
      fi
    fi
    awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a >= l) }' && return 1
    sleep 0.2
  done
}

# Streaming replicas of the primary on PORT, and how many of them are synchronous: "N S".
replication_on() {
  psql_at "$(conninfo "$1")" -F ' ' -c \
    "SELECT count(*) FILTER (WHERE state = 'streaming'), count(*) FILTER (WHERE sync_state IN ('sync', 'quorum')) FROM pg_stat_replication" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
# Starting

# start_bg PIDFILE LOG CMD...: CMD as postgres, in its own session (a Ctrl-C or a CI step's end
# does not reach it), its own pid in PIDFILE (written by the process itself, so it is the
# daemon's pid, not runuser's).
start_bg() {
  local pidfile=$1 log=$2; shift 2
  rm -f "$pidfile"
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
  runuser -u postgres -- setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 &
  local _
  for _ in $(seq 1 50); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
  die "could not start $1; see $log"
}

# Refuse a port held by something else than this cluster (a leftover postmaster of ours is fine:
# Patroni adopts a running PostgreSQL in its data directory).
check_port_free() {
  local port=$1 own=${2:-}
  port_busy "$port" || return 0
  if [ -n "$own" ] && alive "$own" && [[ "$(ss -Hltnp "sport = :$port")" == *"pid=$own,"* ]]; then return 0; fi
  die "port $port is already in use: $(ss -Hltnp "sport = :$port" | awk 'NR == 1 { print $NF }')"
}

start_etcd() {
  local pid; pid=$(pid_in "$DIR/etcd.pid")
  alive "$pid" && return 0
  check_port_free "$ETCD_CLIENT"; check_port_free "$ETCD_PEER"
  say "starting etcd on 127.0.0.1:$ETCD_CLIENT"
  # One member; --initial-* only matter the first time (the data directory remembers them).
  # Periodic compaction because Patroni rewrites its keys every loop_wait.
  start_bg "$DIR/etcd.pid" "$DIR/etcd.log" /usr/bin/etcd --name pg-ha --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "pg-ha=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new \
    --initial-cluster-token price-oracle-pg-ha --auto-compaction-retention 1 --logger zap
  local _
  for _ in $(seq 1 100); do
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$ETCD_CLIENT/health" 2>/dev/null && return 0
    alive "$(pid_in "$DIR/etcd.pid")" || break
    sleep 0.2
  done
  die "etcd does not answer on 127.0.0.1:$ETCD_CLIENT; see $DIR/etcd.log"
}

# The Patroni configuration of node $1 (index $2). bootstrap.dcs is the cluster-wide part,
# written to etcd once, when the first node initialises the cluster.
write_config() {
  local name=$1 i=$2 d="$DIR/$1"
  cat >"$d/patroni.yml" <<EOF
# Written by scripts/pg-ha.sh; rewritten at every start of this node.
scope: $SCOPE
name: $name
restapi:
  listen: 127.0.0.1:${API_PORTS[$i]}
  connect_address: 127.0.0.1:${API_PORTS[$i]}
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT
watchdog:
  mode: 'off'                   # no /dev/watchdog here
bootstrap:
  dcs:
    ttl: $TTL                       # the leader key expires this long after its holder stops
    loop_wait: $LOOP_WAIT                 # seconds between Patroni's checks
    retry_timeout: $RETRY_TIMEOUT             # etcd/PostgreSQL outage tolerated before demoting
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0        # leader's PostgreSQL died: fail over to the sync standby at
                                    # once rather than crash-recover in place (~3 s, not ~7 s)
    synchronous_mode: true          # commit = on the primary and on the synchronous standby
    synchronous_mode_strict: false  # alone, the primary goes on taking writes (see operating.md)
    postgresql:
      use_pg_rewind: true           # a demoted primary rejoins as a standby
      use_slots: true
      parameters:
        max_connections: 200        # every node opens a pool
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
postgresql:
  listen: 127.0.0.1:${PG_PORTS[$i]}
  connect_address: 127.0.0.1:${PG_PORTS[$i]}
  data_dir: $d/data
  bin_dir: $PG_BIN
  pgpass: $d/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  basebackup:
    - checkpoint: fast
  parameters:
    unix_socket_directories: /tmp
    logging_collector: 'on'
    log_directory: $d/log
    log_filename: postgresql.log
    log_line_prefix: '%m [%p] $name '
EOF
}

start_node() {
  local name=$1 i=$2 d="$DIR/$1" pid
  pid=$(pid_in "$d/patroni.pid")
  alive "$pid" && return 0
  check_port_free "${API_PORTS[$i]}"
  check_port_free "${PG_PORTS[$i]}" "$(postmaster_pid "$name")"
  install -d -o postgres -g postgres -m 700 "$d" "$d/log"
  write_config "$name" "$i"
  chown postgres:postgres "$d/patroni.yml"; chmod 600 "$d/patroni.yml"
  say "starting $name (PostgreSQL 127.0.0.1:${PG_PORTS[$i]}, Patroni 127.0.0.1:${API_PORTS[$i]})"
  start_bg "$d/patroni.pid" "$d/patroni.log" /usr/bin/patroni "$d/patroni.yml"
}

logs_hint() {
  local n out="$DIR/etcd.log"
  for n in "${NODES[@]}"; do out+=" $DIR/$n/patroni.log $DIR/$n/log/postgresql.log"; done
  echo "$out"
}

# Ready: a write commits, the leader has two streaming replicas, one of them synchronous, and
# Patroni has published that one as sync_standby (only then may it be promoted).
wait_ready() {
  local t0 line name port pid rep sync
  t0=$(now)
  while :; do
    if line=$(wait_writable 2) && read -r name port pid _ <<<"$line" && read -r rep sync <<<"$(replication_on "$port")" &&
       [ "${rep:-0}" -ge 2 ] && [ "${sync:-0}" -ge 1 ] &&
       [ "$(members 2>/dev/null | awk '$3 == "running" { n[$2]++ } END { print n["leader"] + 0, n["sync_standby"] + 0, n["replica"] + 0 }')" = "1 1 1" ]; then
      say "ready after $(since "$t0") s: leader $name (port $port), 2 replicas streaming, $sync synchronous"
      return 0
    fi
    if awk -v a="$t0" -v b="$(now)" -v l="$TIMEOUT" 'BEGIN { exit !(b - a >= l) }'; then
      say "no writable leader with two streaming replicas after $TIMEOUT s"
      members 2>/dev/null | sed 's/^/pg-ha:   /' >&2 || true
      die "logs: $(logs_hint)"
    fi
    local n; for n in "${NODES[@]}"; do
      alive "$(pid_in "$DIR/$n/patroni.pid")" || die "Patroni $n exited; see $DIR/$n/patroni.log"
    done
    alive "$(pid_in "$DIR/etcd.pid")" || die "etcd exited; see $DIR/etcd.log"
    sleep 1
  done
}

cmd_up() {
  need_root up
  # Patroni's own rule: a leader must be able to retry etcd twice within one ttl.
  [ $((LOOP_WAIT + 2 * RETRY_TIMEOUT)) -le "$TTL" ] ||
    die "PG_HA_LOOP_WAIT + 2 * PG_HA_RETRY_TIMEOUT must not exceed PG_HA_TTL"
  install_if_missing
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  install -d -o postgres -g postgres -m 755 "$DIR"
  runuser -u postgres -- test -w "$DIR" || die "$DIR is not writable for the postgres user (choose PG_HA_DIR elsewhere)"
  # Every port first, so that a clash stops us before anything starts.
  local i
  if ! alive "$(pid_in "$DIR/etcd.pid")"; then check_port_free "$ETCD_CLIENT"; check_port_free "$ETCD_PEER"; fi
  for i in "${!NODES[@]}"; do
    alive "$(pid_in "$DIR/${NODES[$i]}/patroni.pid")" && continue
    check_port_free "${API_PORTS[$i]}"
    check_port_free "${PG_PORTS[$i]}" "$(postmaster_pid "${NODES[$i]}")"
  done
  start_etcd
  for i in "${!NODES[@]}"; do start_node "${NODES[$i]}" "$i"; done
  wait_ready
  echo "$URL"
}

# ---------------------------------------------------------------------------------------------
# Stopping

# Every process whose command line names the state directory: etcd, the Patronis, their
# postmasters (also orphaned ones, after a kill -9 of Patroni) and the runuser wrappers.
own_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
    case "$cmd" in *"$DIR/"*) echo "$p" ;; esac
  done
}

# stop_pids SECONDS SIGNAL PID...: SIGNAL, then SIGKILL whoever is left after SECONDS.
stop_pids() {
  local limit=$1 sig=$2 p left _; shift 2
  [ $# -eq 0 ] && return 0
  kill "-$sig" "$@" 2>/dev/null || true
  for _ in $(seq 1 $((limit * 5))); do
    left=(); for p in "$@"; do alive "$p" && left+=("$p"); done
    [ ${#left[@]} -eq 0 ] && return 0
    sleep 0.2
  done
  say "still running after ${limit} s, killing: ${left[*]}"
  kill -KILL "${left[@]}" 2>/dev/null || true
  sleep 0.5
}

cmd_down() {
  local keep=
  case "${1:-}" in '') ;; --keep) keep=1 ;; *) die "usage: $0 down [--keep]" ;; esac
  need_root down
  if [ -d "$DIR" ]; then
    # Replicas first, the leader last: a replica still running when the leader stops would
    # take over (and with --keep the data must be a clean shutdown, not a failover).
    local leader pid n pids=() names=()
    leader=$(members 2>/dev/null | awk '$2 == "leader" { print $1 }') || true
    for n in "${NODES[@]}"; do
      pid=$(pid_in "$DIR/$n/patroni.pid")
      if alive "$pid" && [ "$n" != "$leader" ]; then pids+=("$pid"); names+=("$n"); fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
      say "stopping ${names[*]} (Patroni ${pids[*]}, which stops its PostgreSQL)"
      stop_pids 60 TERM "${pids[@]}"
    fi
    if [ -n "$leader" ]; then
      pid=$(pid_in "$DIR/$leader/patroni.pid")
      if alive "$pid"; then
        say "stopping the leader $leader (Patroni $pid)"
        stop_pids 60 TERM "$pid"
      fi
    fi
    # PostgreSQL left without its Patroni (Patroni killed): a fast shutdown.
    for n in "${NODES[@]}"; do
      pid=$(postmaster_pid "$n")
      alive "$pid" || continue
      say "stopping the PostgreSQL of $n (postmaster $pid, its Patroni is gone)"
      stop_pids 30 INT "$pid"
    done
    pid=$(pid_in "$DIR/etcd.pid")
    if alive "$pid"; then say "stopping etcd ($pid)"; stop_pids 20 TERM "$pid"; fi
  fi
  local rest
  mapfile -t rest < <(own_pids)
  if [ ${#rest[@]} -gt 0 ]; then
    say "stopping leftover processes: ${rest[*]}"
    stop_pids 10 TERM "${rest[@]}"
  fi
  local p busy=()
  for p in $(all_ports); do port_busy "$p" && busy+=("$p"); done
  if [ ${#busy[@]} -gt 0 ]; then
    ss -Hltnp | grep -E ":($(IFS='|'; echo "${busy[*]}"))\b" | sed 's/^/pg-ha:   /' >&2 || true
    die "ports still in use after down: ${busy[*]}"
  fi
  if [ -n "$keep" ]; then
    say "stopped; data kept in $DIR (\`up\` resumes it)"
  elif [ -d "$DIR" ]; then
    rm -rf "$DIR"
    say "stopped; removed $DIR"
  else
    say "nothing to stop ($DIR does not exist)"
  fi
}

# ---------------------------------------------------------------------------------------------
# The other commands

cmd_status() {
  local cfg="" n i
  for n in "${NODES[@]}"; do [ -r "$DIR/$n/patroni.yml" ] && { cfg="$DIR/$n/patroni.yml"; break; }; done
  if [ -n "$cfg" ] && [ -x /usr/bin/patronictl ]; then
    patronictl -c "$cfg" list 2>&1 || true
  else
    echo "no Patroni configuration in $DIR (not started?)"
  fi
  echo "etcd 127.0.0.1:$ETCD_CLIENT: $(port_busy "$ETCD_CLIENT" && echo answers || echo down)"
  for i in "${!NODES[@]}"; do
    local pg=down api=down rec
    if rec=$(psql_at "$(conninfo "${PG_PORTS[$i]}")" -c 'SELECT pg_is_in_recovery()' 2>/dev/null); then
      [ "$rec" = f ] && pg="answers (primary)" || pg="answers (standby)"
    fi
    port_busy "${API_PORTS[$i]}" && api=answers
    echo "${NODES[$i]} PostgreSQL 127.0.0.1:${PG_PORTS[$i]}: $pg; Patroni 127.0.0.1:${API_PORTS[$i]}: $api"
  done
}

cmd_switchover() {
  need_root switchover
  local line name port pid cand t0 cfg="$DIR/pg1/patroni.yml" n
  line=$(leader_line) || die "no leader to switch over from"
  read -r name port pid <<<"$line"
  # In synchronous mode Patroni only hands over to the synchronous standby.
  cand=$(members | awk '$2 == "sync_standby" && $3 == "running" && !n++ { print $1 }')
  [ -n "$cand" ] || die "no running synchronous standby to switch over to"
  for n in "${NODES[@]}"; do [ -r "$DIR/$n/patroni.yml" ] && { cfg="$DIR/$n/patroni.yml"; break; }; done
  say "switchover $name -> $cand"
  t0=$(now)
  patronictl -c "$cfg" switchover --leader "$name" --candidate "$cand" --force >&2 || die "patronictl switchover failed"
  line=$(wait_writable 60 "$name") || die "no writable leader other than $name 60 s after the switchover"
  read -r name port pid _ <<<"$line"
  say "$name takes writes $(since "$t0") s after the switchover began"
  echo "$name $port $pid"
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  url) echo "$URL" ;;
  leader) leader_line || { say "no leader"; exit 1; } ;;
  switchover) cmd_switchover ;;
  wait-writable)
    limit=${2:-60}
    [[ "$limit" =~ ^[0-9]+$ ]] || die "usage: $0 wait-writable [TIMEOUT_S]"
    wait_writable "$limit" || die "nothing took a write within $limit s"
    ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
