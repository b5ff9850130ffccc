#!/usr/bin/env bash
# A network of oracle hosts with addresses of their own (the "pods on different nodes" case):
# a bootstrap node and NUM_NODES full nodes, each in a network namespace of its own with its own
# IP on a Linux bridge, finding the bootstrap node by DNS name, each with its own key, member
# registration, database role and HTTP address.
#
#   scripts/hosts.sh up              make the network, start every process, wait until every
#                                    node has peers and a heartbeat in the database
#   scripts/hosts.sh down            stop and remove exactly what `up` made (also after an `up`
#                                    that failed half-way: it made a list as it went)
#   scripts/hosts.sh status          each host: address, process, peers, database, writer; rows
#   scripts/hosts.sh exec NAME CMD…  run CMD inside host NAME's namespace (boot, node0, …)
#   scripts/hosts.sh env             the network's variables (HOSTS_DB_URL, HOSTS_NODES, …) as
#                                    shell assignments, for scripts: eval "$(scripts/hosts.sh env)"
#
# Layout, bridge po-br0 with 10.77.0.0/24:
#   10.77.0.1      this machine (the root namespace): PostgreSQL at :5432, a socat forward to the
#                  server of DATABASE_URL (which keeps listening where it does, 127.0.0.1 here,
#                  unchanged), and the mock exchange at :8099 (the only price source: the
#                  namespaces reach nothing beyond the bridge)
#   10.77.0.2      namespace po-boot: the bootstrap node, /ip4/10.77.0.2/tcp/4001
#   10.77.0.10+i   namespace po-node<i>: full node i, libp2p /ip4/10.77.0.10+i/tcp/4001, HTTP
#                  (/health, /status, /metrics, /v1) at 10.77.0.10+i:9100
# Every namespace has /etc/netns/po-NAME/hosts naming all of them (boot, node0, …, db, exchange),
# which `ip netns exec` mounts over /etc/hosts: the nodes join through
# /dns4/boot/tcp/4001/p2p/<peer id>, and reach the database and the exchange by name too.
#
# Each full node logs in with a database role of its own (`oracle db-role --node`, as
# run_nodes.sh does): <database>_node<i>, dropped by `down` with the database hosts_<random>.
# Keys (encrypted keystores, their password in a file beside them) and the state live in
# $HOSTS_DIR (default /tmp/price-oracle-hosts); logs in logs-hosts/ (emptied by `up`, kept by
# `down`): NAME.log (the node's log file), NAME.console, socat.log, mock-exchange.log.
#
# Settings (environment): NUM_NODES (5); DATABASE_URL, a server where we may create databases
# and roles (default postgres://postgres@127.0.0.1:5432/postgres); ORACLE, the binary (default
# ${CARGO_TARGET_DIR:-target}/debug/oracle: build it first); ORACLE_* node flags, passed to
# every full node (e.g. ORACLE_OBSERVE_INTERVAL=1s ORACLE_FLUSH_DELAY=5s; ORACLE_LOG_LEVEL to
# the bootstrap node too); HOSTS_DIR; LOG_DIR (logs-hosts); HOSTS_TIMEOUT, seconds `up` waits
# for the network (120). Needs root (namespaces, links); installs socat with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh

NUM_NODES="${NUM_NODES:-5}"
case "$NUM_NODES" in ''|*[!0-9]*|0) echo "hosts: NUM_NODES must be a positive number" >&2; exit 2 ;; esac
[ "$NUM_NODES" -le 200 ] || { echo "hosts: at most 200 nodes (10.77.0.10 … 10.77.0.209)" >&2; exit 2; }
DIR="${HOSTS_DIR:-/tmp/price-oracle-hosts}"; DIR="${DIR%/}"
LOGS="${LOG_DIR:-logs-hosts}"
TIMEOUT="${HOSTS_TIMEOUT:-120}"
ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ORACLE="${ORACLE:-${CARGO_TARGET_DIR:-target}/debug/oracle}"
BRIDGE=po-br0 NET=10.77.0 HOST_IP=10.77.0.1 BOOT_IP=10.77.0.2
P2P_PORT=4001 HTTP_PORT=9100 MOCK_PORT=8099 PG_PORT=5432
STATE="$DIR/made"      # what `up` made, one "kind name" line each, in order: `down` undoes it
ENV_FILE="$DIR/hosts.env"

say() { echo "hosts: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
made() { echo "$*" >>"$STATE"; }
node_ip() { echo "$NET.$(( 10 + $1 ))"; }
# Host names in namespace order: boot node0 node1 …
host_names() { echo boot; for i in $(seq 0 $(( NUM_NODES - 1 ))); do echo "node$i"; done; }
host_ip() { if [ "$1" = boot ]; then echo "$BOOT_IP"; else node_ip "${1#node}"; fi; }
ns_of() { case "$1" in po-*) echo "$1" ;; *) echo "po-$1" ;; esac; }

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root (network namespaces, links, /etc/netns)"; }

install_socat() {
  command -v socat >/dev/null 2>&1 && return 0
  say "installing socat"
  apt_install socat || die "socat is required and could not be installed (apt install socat)"
}

# spawn NAMESPACE|- LOGNAME PIDFILE CMD…: starts CMD in its own session (a terminal's Ctrl-C
# does not reach it), inside NAMESPACE unless "-", and records its pid. The pid is written by
# the process itself just before it becomes CMD: exactly the process to signal later.
spawn() {
  local ns=$1 log=$2 pidfile=$3; shift 3
  # shellcheck disable=SC2016  # expanded by the inner sh, not here
  local inner=(sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@")
  if [ "$ns" = - ]; then
    setsid "${inner[@]}" </dev/null >>"$LOGS/$log" 2>&1 &
  else
    setsid ip netns exec "$ns" "${inner[@]}" </dev/null >>"$LOGS/$log" 2>&1 &
  fi
  local i
  for i in $(seq 1 50); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || die "$log: did not start"
  local pid; pid=$(cat "$pidfile")
  made "pid $pid $(start_time "$pid") $log"
}
# A process's start time (clock ticks since boot): with the pid, it names the process we
# started and not a later one that got the same pid.
start_time() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------------------------------------
# up

# On leaving `up` early: remove what it made so far.
up_exit() {
  local rc=$?
  trap - EXIT
  if [ "$rc" != 0 ]; then say "up failed: removing what it made"; do_down || true; fi
  exit "$rc"
}

do_up() {
  need_root up
  [ -e "$STATE" ] && die "already up (or a failed up was not cleaned): scripts/hosts.sh down first"
  [ -x "$ORACLE" ] || die "no binary at $ORACLE (cargo build --bin oracle, or set ORACLE)"
  ORACLE=$(realpath "$ORACLE")
  install_socat
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "$BRIDGE exists already: not ours to reuse"
  mkdir -p "$DIR" "$LOGS"
  chmod 700 "$DIR"
  find "$LOGS" -mindepth 1 -delete
  : >"$STATE"
  echo "$ADMIN_URL" >"$DIR/admin-url"
  # From here on, a failure (or Ctrl-C) removes what was made so far.
  trap up_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local t0; t0=$(now)

  # The bridge, and this machine's address on it.
  ip link add "$BRIDGE" type bridge
  made link "$BRIDGE"
  ip addr add "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  # /etc/hosts of every namespace: the bridge's names. resolv.conf with no nameserver but the
  # bridge's own address (nothing answers DNS there): names resolve from hosts or fail at once,
  # never by asking this machine's resolver, which the namespaces cannot reach.
  local hosts_file="$DIR/etc-hosts" name ns ip
  { echo "127.0.0.1 localhost"; echo "$HOST_IP db exchange"
    for name in $(host_names); do echo "$(host_ip "$name") $name"; done; } >"$hosts_file"
  for name in $(host_names); do
    ns=$(ns_of "$name") ip=$(host_ip "$name")
    [ -e "/var/run/netns/$ns" ] && die "namespace $ns exists already: not ours to reuse"
    ip netns add "$ns"
    made netns "$ns"
    mkdir -p "/etc/netns/$ns"
    made etcdir "/etc/netns/$ns"
    cp "$hosts_file" "/etc/netns/$ns/hosts"
    echo "nameserver $HOST_IP" >"/etc/netns/$ns/resolv.conf"
    # The veth's far end is eth0 inside the namespace; this end is enslaved to the bridge.
    ip link add "po-v-$name" type veth peer name eth0 netns "$ns"
    made link "po-v-$name"
    ip link set "po-v-$name" master "$BRIDGE" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
  say "bridge $BRIDGE $NET.0/24, $(( NUM_NODES + 1 )) namespaces (po-boot, po-node0…) up"

  # The database at a bridge address: a forward (PostgreSQL itself is not reconfigured).
  local rest="${ADMIN_URL#*://}" userinfo="" hostport pg_host pg_port
  case "$rest" in *@*) userinfo="${rest%%@*}@"; rest="${rest#*@}" ;; esac
  hostport="${rest%%/*}"; pg_host="${hostport%%:*}"; pg_port="${hostport##*:}"
  [ "$pg_port" = "$hostport" ] && pg_port=5432
  spawn - socat.log "$DIR/socat.pid" socat "TCP-LISTEN:$PG_PORT,bind=$HOST_IP,fork,reuseaddr" "TCP:$pg_host:$pg_port"
  spawn - mock-exchange.log "$DIR/mock-exchange.pid" "$ORACLE" mock-exchange --listen "$HOST_IP:$MOCK_PORT"

  local db; db="hosts_$(date +%s)_$RANDOM"
  local db_url="postgres://${userinfo}${hostport}/$db"
  psql -XAtq "$ADMIN_URL" -c "CREATE DATABASE \"$db\"" >/dev/null
  made database "$db"
  "$ORACLE" migrate --database-url "$db_url" --log-level warn

  # Keys, members, roles: the operator's steps for each node (docs/keys.md, run_nodes.sh).
  # Every key an encrypted keystore (docs/keys.md), its password in a file only root reads.
  local keys="$DIR/keys"; mkdir -p "$keys"
  local kpw="$DIR/key-password"
  (umask 077; head -c 24 /dev/urandom | base64 >"$kpw")
  : >"$DIR/members.txt"
  local i address role password
  local -a node_urls addresses
  for i in $(seq 0 $(( NUM_NODES - 1 ))); do
    "$ORACLE" keygen --name "node$i" --key-dir "$keys" --password-file "$kpw" --log-level warn >/dev/null
    address=$("$ORACLE" signers add --key "node$i" --key-dir "$keys" --password-file "$kpw" --database-url "$db_url" --log-level warn | awk '{ print $1 }')
    addresses[i]=$address
    echo "$address" >>"$DIR/members.txt"
    role="${db}_node$i"
    password=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    (umask 077; printf '%s' "$password" >"$keys/node$i.db-password")
    made role "$role"
    ORACLE_PASSWORD_FILE="$keys/node$i.db-password" "$ORACLE" db-role --role "$role" \
      --node "$address" --database-url "$db_url" --log-level warn >/dev/null
    node_urls[i]="postgres://$role:$password@db:$PG_PORT/$db"
  done
  "$ORACLE" keygen --name boot --key-dir "$keys" --password-file "$kpw" --log-level warn >/dev/null
  local boot_peer
  boot_peer=$("$ORACLE" keygen --name boot --key-dir "$keys" --password-file "$kpw" --show --log-level warn | awk '/^peer id/ { print $3 }')
  local bootstrap="/dns4/boot/tcp/$P2P_PORT/p2p/$boot_peer"
  say "database $db: $NUM_NODES members, each node its own role ${db}_nodeN"

  spawn po-boot boot.console "$DIR/boot.pid" "$ORACLE" bootstrap --name boot --key-dir "$keys" --password-file "$kpw" \
    --listen "/ip4/$BOOT_IP/tcp/$P2P_PORT" --trusted-signers "$DIR/members.txt" --log-file "$LOGS/boot.log"
  for i in $(seq 0 $(( NUM_NODES - 1 ))); do
    ip=$(node_ip "$i")
    ORACLE_DATABASE_URL="${node_urls[i]}" \
    ORACLE_SOURCE_BASE_URL="${ORACLE_SOURCE_BASE_URL:-http://exchange:$MOCK_PORT}" \
    ORACLE_MIN_PEERS="${ORACLE_MIN_PEERS:-$(( NUM_NODES < 3 ? NUM_NODES : 3 ))}" \
      spawn "po-node$i" "node$i.console" "$DIR/node$i.pid" "$ORACLE" run --name "node$i" \
        --key-dir "$keys" --password-file "$kpw" --migrate=false --listen "/ip4/$ip/tcp/$P2P_PORT" --bootstrap "$bootstrap" \
        --http "$ip:$HTTP_PORT" --log-file "$LOGS/node$i.log"
  done

  {
    printf 'HOSTS_DIR=%q\nHOSTS_DB=%q\nHOSTS_DB_URL=%q\nHOSTS_ADMIN_URL=%q\n' "$DIR" "$db" "$db_url" "$ADMIN_URL"
    printf 'HOSTS_NODES=%q\nHOSTS_BOOTSTRAP=%q\nHOSTS_LOGS=%q\nHOSTS_KEYS=%q\n' "$NUM_NODES" "$bootstrap" "$LOGS" "$keys"
    printf 'HOSTS_HOST_IP=%q\nHOSTS_BOOT_IP=%q\nHOSTS_EXCHANGE=%q\n' "$HOST_IP" "$BOOT_IP" "http://$HOST_IP:$MOCK_PORT"
    for i in $(seq 0 $(( NUM_NODES - 1 ))); do
      printf 'HOSTS_IP_node%d=%q\nHOSTS_HTTP_node%d=%q\nHOSTS_ADDRESS_node%d=%q\n' \
        "$i" "$(node_ip "$i")" "$i" "http://$(node_ip "$i"):$HTTP_PORT" "$i" "${addresses[i]}"
    done
  } >"$ENV_FILE"

  # Up: every node heartbeating in the database and connected to peers (its /status).
  local need=$(( NUM_NODES < 3 ? NUM_NODES - 1 : 2 )) ready peers
  while :; do
    ready=0
    for i in $(seq 0 $(( NUM_NODES - 1 ))); do
      alive "$(cat "$DIR/node$i.pid")" || die "node$i exited: $(tail -n 3 "$LOGS/node$i.console")"
      peers=$(curl -s --max-time 2 "http://$(node_ip "$i"):$HTTP_PORT/status" | jq -r '.connected_peers // 0' 2>/dev/null || echo 0)
      [ "${peers:-0}" -ge "$need" ] && ready=$(( ready + 1 ))
    done
    [ "$ready" = "$NUM_NODES" ] && [ "$(psql -XAtq "$db_url" -c 'SELECT count(*) FROM heartbeat')" -ge "$NUM_NODES" ] && break
    awk -v a="$(since "$t0")" -v l="$TIMEOUT" 'BEGIN { exit !(a > l) }' \
      && die "the network was not up within $TIMEOUT s ($ready of $NUM_NODES nodes with peers; see $LOGS/)"
    sleep 1
  done
  trap - EXIT INT TERM
  say "up after $(since "$t0") s: $NUM_NODES nodes joined through $bootstrap"
  say "  node i: http://10.77.0.(10+i):$HTTP_PORT/status, logs $LOGS/node<i>.log; scripts/hosts.sh status"
}

# ---------------------------------------------------------------------------------------------
# down

# ours PID START: the process started by `up` is still running under that pid.
ours() { alive "$1" && [ "$(start_time "$1")" = "$2" ]; }
do_down() {
  need_root down
  [ -e "$STATE" ] || { say "nothing to remove (no $STATE)"; return 0; }
  local kind name rest
  # Processes first: SIGTERM to all at once, SIGKILL to any still there 10 s later.
  local pids=() starts=() names=() k i
  while read -r kind name rest; do
    [ "$kind" = pid ] || continue
    read -r start label <<<"$rest"
    ours "$name" "$start" || continue
    pids+=("$name") starts+=("$start") names+=("$label")
    # Each runs in a session of its own (spawn): its group goes too (socat's forked children).
    kill -TERM -- "-$name" 2>/dev/null || kill -TERM "$name" 2>/dev/null || true
  done < <(tac "$STATE")
  for i in $(seq 1 100); do
    local running=0
    for k in "${!pids[@]}"; do ours "${pids[k]}" "${starts[k]}" && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  for k in "${!pids[@]}"; do
    if ours "${pids[k]}" "${starts[k]}"; then
      say "${names[k]%.*} (pid ${pids[k]}) still running 10 s after SIGTERM: SIGKILL"
      kill -KILL -- "-${pids[k]}" 2>/dev/null || kill -KILL "${pids[k]}" 2>/dev/null || true
    fi
  done
  # Whatever else still runs inside our namespaces (a scenario's helpers, `exec` leftovers)
  # lives in what `up` made: it goes with them.
  while read -r kind name rest; do
    [ "$kind" = netns ] || continue
    for k in $(ip netns pids "$name" 2>/dev/null); do
      say "stopping pid $k left in $name: $(tr '\0' ' ' <"/proc/$k/cmdline" 2>/dev/null | cut -c1-80)"
      kill -TERM "$k" 2>/dev/null || true
    done
  done <"$STATE"
  sleep 0.5
  while read -r kind name rest; do
    [ "$kind" = netns ] || continue
    for k in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$k" 2>/dev/null || true; done
  done <"$STATE"
  local admin; admin=$(cat "$DIR/admin-url" 2>/dev/null || echo "$ADMIN_URL")
  # Then the rest, newest first; roles last (a role cannot go while its database holds grants).
  while read -r kind name rest; do
    case "$kind" in
      pid) ;;
      # Deleting our end of a veth deletes both ends at once; deleting a namespace does so only
      # once the kernel gets to it (seconds later, seen here).
      link) ip link del "$name" 2>/dev/null || true ;;
      netns) ip netns del "$name" 2>/dev/null || true ;;
      etcdir) rm -rf -- "$name" ;;
      database)
        psql -XAtq "$admin" -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null \
          || say "could not drop database $name" ;;
      role) ;;
      *) say "unknown entry in $STATE: $kind $name" ;;
    esac
  done < <(tac "$STATE")
  while read -r kind name rest; do
    [ "$kind" = role ] || continue
    psql -XAtq "$admin" -c "DROP ROLE IF EXISTS \"$name\"" >/dev/null || say "could not drop role $name"
  done <"$STATE"
  rmdir /etc/netns 2>/dev/null || true
  rm -rf -- "$DIR"
  # What must be gone now.
  local left=""
  ip netns list 2>/dev/null | grep -q '^po-' && left+=" namespaces: $(ip netns list | awk '/^po-/ { print $1 }' | tr '\n' ' ')"
  ip -br link 2>/dev/null | grep -qE '^(po-br0|po-v-)' && left+=" links: $(ip -br link | awk '/^(po-br0|po-v-)/ { print $1 }' | tr '\n' ' ')"
  [ -z "$left" ] || { say "still there after down:$left"; return 1; }
  say "down: processes, namespaces, links, /etc/netns entries, database and roles removed"
}

# ---------------------------------------------------------------------------------------------
# status, exec, env

do_status() {
  [ -e "$ENV_FILE" ] || { say "not up"; return 1; }
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  NUM_NODES=$HOSTS_NODES
  local name pid state s line
  printf '%-6s %-11s %-7s %-5s %-5s %-8s %-6s %-6s %s\n' host address pid state peers database writer stored problems
  for name in $(host_names); do
    pid=$(cat "$DIR/$name.pid" 2>/dev/null || echo -)
    state=$(alive "$pid" && echo up || echo down)
    line="- - - - -"
    if [ "$name" != boot ]; then
      s=$(curl -s --max-time 2 "http://$(host_ip "$name"):$HTTP_PORT/status" || true)
      line=$(jq -r '[(.connected_peers // "-"), (.database // "-"), (if .is_writer then "yes" else "no" end),
                     (.pool.stored // "-"), ((.problems // []) | join("; ") | if . == "" then "-" else . end)]
                    | map(tostring) | join(" ")' <<<"${s:-null}" 2>/dev/null || echo "- - - - no answer")
    fi
    read -r peers db writer stored problems <<<"$line"
    printf '%-6s %-11s %-7s %-5s %-5s %-8s %-6s %-6s %s\n' "$name" "$(host_ip "$name")" "$pid" "$state" \
      "$peers" "$db" "$writer" "$stored" "$problems"
  done
  echo "database $HOSTS_DB: $(psql -XAtq "$HOSTS_DB_URL" -c 'SELECT count(*) FROM prices') prices stored"
}

case "${1:-}" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  exec)
    [ "$#" -ge 3 ] || { echo "usage: $0 exec NAME CMD…" >&2; exit 2; }
    need_root exec
    ns=$(ns_of "$2"); shift 2
    [ -e "/var/run/netns/$ns" ] || die "no namespace $ns (up?)"
    exec ip netns exec "$ns" "$@" ;;
  env) [ -e "$ENV_FILE" ] || die "not up"; cat "$ENV_FILE" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
