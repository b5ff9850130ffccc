#!/usr/bin/env bash
# The network across hosts, run by `scripts/faults.sh --scenario NAME [--long]`, on a network
# from scripts/hosts.sh: a bootstrap node and five full nodes (NUM_NODES), each in a network
# namespace of its own with its own address on a bridge; the database and the mock exchange at
# this machine's bridge address.
#
#   hosts-partition  the lease holder and one more node cut off from the rest (2 of 5: the other
#                    three are still 2f + 1 = 3 with f = 1), both ways (each side's namespaces
#                    DROP what comes from the other), for 60 s (--long: three cuts of 120 s, the
#                    writer of the moment in the minority each time), then healed. Both sides
#                    keep the database: a cut between the nodes, not to the database, is the
#                    case where the minority can still claim the lease and write, the one that
#                    must not double-write (a minority without the database cannot write at
#                    all: scripts/faults.sh's database outage covers that).
#   hosts-loss       5 % of the packets lost on every link between hosts, node to node and node
#                    to database (iptables statistic, at each receiving end) for 60 s (--long:
#                    5 minutes), while the market moves by 2 % every 4-5 s
#   hosts-latency    one-way delays from libp2p's test matrix, each host in a region: node0 EU,
#                    node1 US-East, node2 US-West, node3 East Asia, node4 Australia, boot South
#                    Africa, the database in US-East. EU-US-East 70 ms, US-East-US-West 60,
#                    EU-East Asia 125, Australia-EU 165, South Africa-Australia 220; a pair the
#                    matrix does not name takes the shortest path through the named ones, capped
#                    at its largest, 220 ms. This kernel has no netem: scripts/netdelay.py holds
#                    the packets (iptables NFQUEUE, one queue per namespace); the round trips
#                    are measured before the moves and must match. Moves of the market as in
#                    hosts-loss for 60 s (--long: 5 minutes).
#
# The links to the mock exchange (each node's sources, outside the network under test) and from
# this script's HTTP clients (the /v1 streams, /status) lose and wait for nothing. The nodes:
# an observation a second, a round at least every 2 s (partition) or 15 s (loss, latency: the
# moves start the rounds), the flush 3 s after, the lease's heartbeat every second, a lease of
# 3 s, a writer term of 15 s, the co-sign fallback at its default of 5 s.
#
# Counting, as scripts/faults-db.sh: verified = debug `price <id> committed with` in any node's
# log, acknowledged = debug `stored prices <id,…>`, stored = SELECT id FROM prices, counted once
# the fault is over, the verified prices had the flush delay + 20 s to be stored, and every node
# was stopped with SIGTERM (which flushes). Ends with one JSON line:
#   lost          verified, not stored          lost_acked   acknowledged, not stored
#   duplicates    ids acknowledged twice        unverified   rounds originated (before the
#                                                            fault ended) that never verified
#   verify        `oracle verify` on the database
#   moves, missed, verified_p50_ms/p99_ms       move -> first `verified` event reflecting it at a
#                 node that did not start the round (/v1/prices/stream; cluster-bench --moves);
#                 all_nodes_p99_ms: until every node's stream showed it; rounds_per_move
#   quorum_p50_ms/p99_ms (latency)  observation -> a node has the committed report, per node
#   heartbeat_failures (and the worst node's), writer_changes: the lease's health meanwhile
#   partition: majority_rows (stored during the cut), store_gap_s (longest time without a new
#   row during it), minority_rows (rows the minority wrote then), minority_lease_s (seconds a
#   minority node held the lease), rejoin_peers_s / rejoin_stored_s (heal -> the minority nodes
#   have --min-peers (3) peers again / a row with their observation is stored; worst of them),
#   minority_peers_after (their peers once both held; before the cut each had 5)
# Exit 0 only when lost, lost_acked and duplicates are 0 and verify passed, and: partition —
# the majority stored rows during every cut and the minority rejoined within 30 s; loss — no
# round unverified and no move missed; latency — the round trips matched the matrix, no move
# missed and move -> verified p99 <= observe interval + 2 s.
#
#   scripts/faults.sh --scenario hosts-partition [--long]
#
# Needs root. Installs iptables with apt, and for hosts-latency NetfilterQueue with pip (with
# libnetfilter-queue-dev from apt to build it), when missing. Settings (environment):
# NO_BUILD=1 runs the binary already built; NUM_NODES (5); LOSS_PCT (5); ORACLE_DB_TIMEOUT
# (3s), ORACLE_DB_POOL_SIZE (the node's default); HOSTS_KEEP=1 leaves the network up
# afterwards (scripts/hosts.sh down removes it). Logs: logs-hosts/ (the nodes'; moves.jsonl,
# netdelay-NAME.log, verify.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh
# shellcheck source=lib/ids.sh
source scripts/lib/ids.sh

case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
SCENARIO=${1:?usage: faults-hosts.sh hosts-partition|hosts-loss|hosts-latency [--long]}
MODE=short
[ "${2:-}" = --long ] && MODE=long
case "$SCENARIO" in hosts-partition|hosts-loss|hosts-latency) ;; *) echo "faults-hosts: unknown scenario $SCENARIO" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "faults-hosts: needs root (network namespaces, iptables)" >&2; exit 1; }

T_START=$(date +%s.%N)
say() { printf 'faults-hosts: [%4ss] %s\n' "$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b - a }')" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0 ? a : b) }'; }

# ---------------------------------------------------------------- tools
need_packages() {
  say "installing $* with apt"
  apt_install "$@" || { say "cannot install $* (needs apt-get and root)"; exit 1; }
}
command -v iptables >/dev/null 2>&1 || need_packages iptables
if [ "$SCENARIO" = hosts-latency ] && ! python3 -c 'import netfilterqueue' 2>/dev/null; then
  # A C extension built against libnetfilter_queue: no wheel on PyPI.
  [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need_packages libnetfilter-queue-dev
  say "installing NetfilterQueue with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'NetfilterQueue>=1.1,<2' >&2 \
    || { say "cannot install NetfilterQueue (python3 -m pip install NetfilterQueue)"; exit 1; }
fi
if [ "${NO_BUILD:-${FAULTS_NO_BUILD:-0}}" != 1 ]; then
  say "building oracle"
  cargo build --quiet --bin oracle
fi
export ORACLE="${ORACLE:-${CARGO_TARGET_DIR:-target}/debug/oracle}"

# ---------------------------------------------------------------- settings
export NUM_NODES="${NUM_NODES:-5}"
[ "$NUM_NODES" -ge 4 ] || { say "NUM_NODES must be at least 4 (f = 1)"; exit 2; }
OBSERVE=1 FLUSH=3 HB_INTERVAL=1 LEASE=3 TERM=15 FALLBACK=5
ROUND_HB=15
[ "$SCENARIO" = hosts-partition ] && ROUND_HB=2
if [ "$MODE" = long ]; then CUTS=3 CUT=120 FAULT_S=300; else CUTS=1 CUT=60 FAULT_S=60; fi
LOSS=$(awk -v p="${LOSS_PCT:-5}" 'BEGIN { print p / 100 }')
# Moves: four observe intervals apart plus up to one more (cluster-bench --moves).
SPACING=$(( 4 * OBSERVE )) JITTER=$OBSERVE
SETTLE=$(( FLUSH + 20 ))
# After a cut of a minute or more a node has closed its silent connections (60 s without a
# ping answered) and, short of peers, dials the heartbeat table's addresses every 10 s; a round
# or two more puts its observation in a row (measured 5 s). Kept open, the connections resumed
# only at TCP's next retransmission, up to about the cut's length after the heal.
REJOIN_LIMIT=30
export ORACLE_OBSERVE_INTERVAL=${OBSERVE}s ORACLE_HEARTBEAT=${ROUND_HB}s ORACLE_FLUSH_DELAY=${FLUSH}s \
  ORACLE_HEARTBEAT_INTERVAL=${HB_INTERVAL}s ORACLE_LEASE_DURATION=${LEASE}s ORACLE_WRITER_TERM=${TERM}s \
  ORACLE_COSIGN_FALLBACK=${FALLBACK}s ORACLE_DB_TIMEOUT="${ORACLE_DB_TIMEOUT:-3s}" ORACLE_SOURCE_TIMEOUT=3s \
  ORACLE_LOG_LEVEL="debug,tracing::span=info,libp2p_gossipsub=info"
# The mock exchange's walk stands still: the market moves only when the moves move it.
export ORACLE_VOLATILITY=0
SETTINGS="observe ${OBSERVE}s, round heartbeat ${ROUND_HB}s, flush ${FLUSH}s, heartbeat interval ${HB_INTERVAL}s, lease ${LEASE}s, writer term ${TERM}s, cosign fallback ${FALLBACK}s, db timeout $ORACLE_DB_TIMEOUT${ORACLE_DB_POOL_SIZE:+, db pool $ORACLE_DB_POOL_SIZE}"

# ---------------------------------------------------------------- cleanup
RULES=()     # "WHERE CHAIN RULE…" of every iptables rule added (WHERE: a host name or root)
HELPERS=()   # pids of netdelay.py processes
HOSTS_IS_UP=""
# ipt WHERE -I|-A CHAIN RULE…: adds an iptables rule in host WHERE's namespace (root: this
# machine's); unrules removes them. Arguments hold no spaces.
ipt() {
  local where=$1 op=$2; shift 2
  if [ "$where" = root ]; then iptables "$op" "$@"; else ip netns exec "po-$where" iptables "$op" "$@"; fi
  RULES+=("$where $*")
}
unrules() {
  local k where rest
  for (( k = ${#RULES[@]} - 1; k >= 0; k-- )); do
    read -r where rest <<<"${RULES[k]}"
    # shellcheck disable=SC2086
    if [ "$where" = root ]; then iptables -D $rest; else ip netns exec "po-$where" iptables -D $rest; fi \
      2>/dev/null || say "could not remove rule in $where: $rest"
  done
  RULES=()
}
stop_helpers() {
  local p
  for p in "${HELPERS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${HELPERS[@]}"; do wait "$p" 2>/dev/null || true; done
  HELPERS=()
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  unrules
  stop_helpers
  if [ -n "$HOSTS_IS_UP" ]; then
    if [ "${HOSTS_KEEP:-0}" = 1 ]; then say "the network stays up (HOSTS_KEEP=1): scripts/hosts.sh down removes it"
    else scripts/hosts.sh down 2>&1 | sed 's/^/  /' >&2; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- the network
say "$SCENARIO ($MODE): $SETTINGS"
HOSTS_IS_UP=1
scripts/hosts.sh up 2>&1 | sed 's/^/  /' >&2
[ "${PIPESTATUS[0]}" = 0 ] || { HOSTS_IS_UP=""; say "scripts/hosts.sh up failed"; exit 1; }
eval "$(scripts/hosts.sh env)"
LOGS=$HOSTS_LOGS
NODES=()
for i in $(seq 0 $(( NUM_NODES - 1 ))); do NODES+=("node$i"); done
q() { psql -XAtq "$HOSTS_DB_URL" -c "$1"; }
db_now() { q 'SELECT extract(epoch FROM clock_timestamp())'; }
ip_of() { if [ "$1" = boot ]; then echo "$HOSTS_BOOT_IP"; else local v="HOSTS_IP_$1"; echo "${!v}"; fi; }
http_of() { local v="HOSTS_HTTP_$1"; echo "${!v}"; }
address_of() { local v="HOSTS_ADDRESS_$1"; echo "${!v}"; }
peers_of() { local p; p=$(curl -s --max-time 2 "$(http_of "$1")/status" | jq -r '.connected_peers // 0' 2>/dev/null); echo "${p:-0}"; }
lease_holder() { q "SELECT nodename FROM heartbeat WHERE \"timestamp\" > now() ORDER BY \"timestamp\" DESC LIMIT 1" 2>/dev/null || true; }

t0=$(now)
until [ "$(q 'SELECT count(*) FROM prices')" -ge 2 ]; do
  le 90 "$(since "$t0")" && { say "no rows stored within 90 s (see $LOGS/)"; exit 1; }
  sleep 0.5
done
say "storing: $(q 'SELECT count(*) FROM prices') rows after $(since "$t0") s"

# moves SECONDS: the market moved for that long; the summary to $LOGS/moves.json.
moves() {
  local args=() n
  for n in "${NODES[@]}"; do args+=(--node "$(http_of "$n")"); done
  python3 scripts/hosts-moves.py --exchange "$HOSTS_EXCHANGE" "${args[@]}" --duration "$1" \
    --spacing "$SPACING" --jitter "$JITTER" --log "$LOGS/moves.jsonl" >"$LOGS/moves.json"
}
# The moves' figures as JSON members (without braces), or nulls.
moves_fields() {
  if [ -s "$LOGS/moves.json" ]; then
    jq -c '{moves, missed, verified_p50_ms, verified_p99_ms, all_nodes_p99_ms, rounds_per_move, most_rounds_per_move}' "$LOGS/moves.json" | sed 's/^{//; s/}$//'
  else
    echo '"moves":0,"missed":0,"verified_p50_ms":null,"verified_p99_ms":null,"all_nodes_p99_ms":null,"rounds_per_move":null,"most_rounds_per_move":null'
  fi
}

EXTRA=""     # scenario figures, as JSON members
OK=true
FAULT_END=""

# ---------------------------------------------------------------- hosts-partition
if [ "$SCENARIO" = hosts-partition ]; then
  declare -A BEFORE
  for n in "${NODES[@]}"; do BEFORE[$n]=$(peers_of "$n"); done
  MIN_PEERS=3
  MAJ_ROWS=() GAPS=() MIN_ROWS=() MIN_LEASE=() REJOIN_P=0 REJOIN_S=0 MINORITIES=() PEERS_AFTER=()
  for k in $(seq 1 "$CUTS"); do
    w=""
    for _ in $(seq 1 20); do w=$(lease_holder); [ -n "$w" ] && break; sleep 0.5; done
    [ -n "$w" ] || { say "no lease holder"; OK=false; break; }
    wi=${w#node}
    other="node$(( (wi + k) % NUM_NODES ))"
    minority=("$w" "$other")
    majority=(boot)
    for n in "${NODES[@]}"; do [ "$n" != "$w" ] && [ "$n" != "$other" ] && majority+=("$n"); done
    MINORITIES+=("$w+$other")
    db_cut=$(db_now); t_cut=$(now)
    for a in "${minority[@]}"; do
      for b in "${majority[@]}"; do
        ipt "$a" -I INPUT -s "$(ip_of "$b")" -j DROP
        ipt "$b" -I INPUT -s "$(ip_of "$a")" -j DROP
      done
    done
    say "cut $k: ${minority[*]} (${w} holds the lease) cut off from ${majority[*]} for ${CUT}s"
    lease_s=0
    while le "$(since "$t_cut")" "$CUT"; do
      h=$(lease_holder)
      [ "$h" = "$w" ] || [ "$h" = "$other" ] && lease_s=$(( lease_s + 1 ))
      sleep 1
    done
    unrules
    db_heal=$(db_now); t_heal=$(now)
    window="created_time >= to_timestamp($db_cut) AND created_time < to_timestamp($db_heal)"
    rows=$(q "SELECT count(*) FROM prices WHERE $window")
    min_rows=$(q "SELECT count(*) FROM prices WHERE $window AND written_by IN ('$(address_of "$w")', '$(address_of "$other")')")
    gap=$(q "SELECT round(max(g)::numeric, 1) FROM (SELECT extract(epoch FROM c - lag(c) OVER (ORDER BY c)) AS g FROM (
               SELECT created_time AS c FROM prices WHERE $window
               UNION ALL SELECT to_timestamp($db_cut) UNION ALL SELECT to_timestamp($db_heal)) t) u")
    MAJ_ROWS+=("$rows") GAPS+=("$gap") MIN_ROWS+=("$min_rows") MIN_LEASE+=("$lease_s")
    [ "$rows" -gt "$min_rows" ] || { OK=false; say "  the majority stored nothing during the cut"; }
    say "  healed: $rows rows stored during the cut ($min_rows written by the minority, which held the lease ~${lease_s}s), longest gap ${gap}s"
    # Rejoin: each minority node back to --min-peers connected peers (3: a node short of them
    # dials the heartbeat table's addresses until it has them, not necessarily every peer it
    # had), and its observation in a new row.
    declare -A JOINED=() STORED=()
    while le "$(since "$t_heal")" "$REJOIN_LIMIT"; do
      for n in "${minority[@]}"; do
        [ -z "${JOINED[$n]:-}" ] && [ "$(peers_of "$n")" -ge "$MIN_PEERS" ] && JOINED[$n]=$(since "$t_heal")
        [ -z "${STORED[$n]:-}" ] && [ "$(q "SELECT count(*) FROM prices WHERE sign_data::text ILIKE '%$(address_of "$n")%'
             AND observed_at > to_timestamp($db_heal)")" -gt 0 ] && STORED[$n]=$(since "$t_heal")
      done
      [ "${#JOINED[@]}" = 2 ] && [ "${#STORED[@]}" = 2 ] && break
      sleep 0.5
    done
    for n in "${minority[@]}"; do
      if [ -z "${JOINED[$n]:-}" ] || [ -z "${STORED[$n]:-}" ]; then
        OK=false
        say "  $n did not rejoin within ${REJOIN_LIMIT}s: peers ${JOINED[$n]:-never} s, own observation stored ${STORED[$n]:-never} s"
      else
        REJOIN_P=$(max "$REJOIN_P" "${JOINED[$n]}") REJOIN_S=$(max "$REJOIN_S" "${STORED[$n]}")
      fi
    done
    for n in "${minority[@]}"; do PEERS_AFTER+=("$(peers_of "$n")"); done
    say "  rejoined: $MIN_PEERS peers after ${REJOIN_P}s, own observation stored after ${REJOIN_S}s (worst so far); peers now ${PEERS_AFTER[*]: -2} (before the cut ${BEFORE[$w]} ${BEFORE[$other]})"
    unset JOINED STORED
    [ "$k" -lt "$CUTS" ] && sleep 10
  done
  FAULT_END=$(now)
  j() { local IFS=,; echo "[$*]"; }
  EXTRA=$(printf '"minority":"%s","cut_s":%d,"cuts":%d,"majority_rows":%s,"store_gap_s":%s,"minority_rows":%s,"minority_lease_s":%s,"rejoin_peers_s":%s,"rejoin_stored_s":%s,"minority_peers_after":%s' \
    "${MINORITIES[*]}" "$CUT" "$CUTS" "$(j "${MAJ_ROWS[@]}")" "$(j "${GAPS[@]}")" "$(j "${MIN_ROWS[@]}")" \
    "$(j "${MIN_LEASE[@]}")" "$REJOIN_P" "$REJOIN_S" "$(j "${PEERS_AFTER[@]}")")
fi

# ---------------------------------------------------------------- hosts-loss
if [ "$SCENARIO" = hosts-loss ]; then
  # At each receiving end: a full node drops LOSS of what comes from the other hosts and from
  # the database; this machine drops LOSS of what comes to the database forward. Each packet
  # between two hosts crosses one such rule.
  for n in boot "${NODES[@]}"; do
    ipt "$n" -A INPUT -i eth0 ! -s "$HOSTS_HOST_IP" -m statistic --mode random --probability "$LOSS" -j DROP
    [ "$n" = boot ] || ipt "$n" -A INPUT -i eth0 -s "$HOSTS_HOST_IP" -p tcp --sport 5432 -m statistic --mode random --probability "$LOSS" -j DROP
  done
  ipt root -A INPUT -i po-br0 -d "$HOSTS_HOST_IP" -p tcp --dport 5432 -m statistic --mode random --probability "$LOSS" -j DROP
  say "$(awk -v l="$LOSS" 'BEGIN { print l * 100 }') % loss on every link for ${FAULT_S}s, the market moving"
  moves "$FAULT_S" || { say "the moves failed"; OK=false; }
  # The rules' counters: the packets they dropped.
  dropped=0
  for n in boot "${NODES[@]}" root; do
    if [ "$n" = root ]; then c=(iptables); else c=(ip netns exec "po-$n" iptables); fi
    d=$("${c[@]}" -L INPUT -v -x -n 2>/dev/null | awk '/statistic/ { d += $1 } END { print d + 0 }')
    dropped=$(( dropped + d ))
  done
  unrules
  FAULT_END=$(now)
  say "  loss over: $dropped packets dropped; $(jq -c . "$LOGS/moves.json" 2>/dev/null)"
  EXTRA=$(printf '"loss_pct":%s,"fault_s":%d,"dropped_packets":%d' "$(awk -v l="$LOSS" 'BEGIN { print l * 100 }')" "$FAULT_S" "$dropped")
fi

# ---------------------------------------------------------------- hosts-latency
if [ "$SCENARIO" = hosts-latency ]; then
  # One-way ms between regions: the named pairs of the matrix; the others, the shortest path
  # through them capped at 220 ms (computed once here, printed in the log).
  REGIONS=(EU US-East US-West East-Asia Australia)
  ALL=(EU US-East US-West East-Asia Australia South-Africa)
  matrix=$(python3 - "${ALL[@]}" <<'EOF'
import itertools, sys
named = {("EU","US-East"):70, ("US-East","US-West"):60, ("EU","East-Asia"):125, ("Australia","EU"):165, ("South-Africa","Australia"):220}
regions = sys.argv[1:]
d = {(a, b): (0 if a == b else float("inf")) for a in regions for b in regions}
for (a, b), ms in named.items():
    d[a, b] = d[b, a] = ms
for k, a, b in itertools.product(regions, regions, regions):
    d[a, b] = min(d[a, b], d[a, k] + d[k, b])
for a, b in itertools.combinations(regions, 2):
    print(a, b, int(min(d[a, b], 220)))
EOF
)
  declare -A DELAY
  while read -r a b ms; do DELAY[$a,$b]=$ms DELAY[$b,$a]=$ms; done <<<"$matrix"
  declare -A REGION=([boot]=South-Africa [db]=US-East)
  for i in $(seq 0 $(( NUM_NODES - 1 ))); do REGION[node$i]=${REGIONS[$(( i % ${#REGIONS[@]} ))]}; done
  delay() { [ "${REGION[$1]}" = "${REGION[$2]}" ] && echo 0 || echo "${DELAY[${REGION[$1]},${REGION[$2]}]}"; }
  say "regions: $(for n in boot "${NODES[@]}" db; do printf '%s=%s ' "$n" "${REGION[$n]}"; done)"
  echo "$matrix" >"$LOGS/latency-matrix.txt"
  # A netdelay.py in every namespace, bound to its queue before any rule sends packets there
  # (a queue nobody reads drops them).
  for n in boot "${NODES[@]}"; do
    args=()
    for m in boot "${NODES[@]}"; do
      [ "$m" = "$n" ] && continue
      ms=$(delay "$n" "$m"); [ "$ms" -gt 0 ] && args+=(--delay "$(ip_of "$m")=$ms")
    done
    [ "$n" = boot ] || { ms=$(delay "$n" db); [ "$ms" -gt 0 ] && args+=(--delay "$HOSTS_HOST_IP=$ms"); }
    setsid ip netns exec "po-$n" python3 scripts/netdelay.py --queue 0 "${args[@]}" \
      </dev/null >"$LOGS/netdelay-$n.log" 2>&1 &
    HELPERS+=($!)
  done
  for n in boot "${NODES[@]}"; do
    for _ in $(seq 1 50); do grep -q bound "$LOGS/netdelay-$n.log" 2>/dev/null && break; sleep 0.1; done
    grep -q bound "$LOGS/netdelay-$n.log" || { say "netdelay in $n did not start: $(cat "$LOGS/netdelay-$n.log")"; exit 1; }
  done
  for n in boot "${NODES[@]}"; do
    # To the other hosts, to the database and back; not to the exchange, not this script's HTTP.
    ipt "$n" -A OUTPUT -o eth0 ! -d "$HOSTS_HOST_IP" -j NFQUEUE --queue-num 0
    if [ "$n" != boot ]; then
      ipt "$n" -A OUTPUT -o eth0 -d "$HOSTS_HOST_IP" -p tcp --dport 5432 -j NFQUEUE --queue-num 0
      ipt "$n" -A INPUT -i eth0 -s "$HOSTS_HOST_IP" -p tcp --sport 5432 -j NFQUEUE --queue-num 0
    fi
  done
  # The delays are real: a TCP connect takes one round trip, 2 x the one-way delay.
  connect_ms() { ip netns exec "po-$1" python3 -c 'import socket, sys, time
t = time.monotonic(); socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
print(round((time.monotonic() - t) * 1000))' "$2" "$3"; }
  rtt_ok=0 rtt_n=0 rtt_worst=0 rtt_notes=""
  for a in "${NODES[@]}"; do
    targets=()
    for b in "${NODES[@]}"; do [[ "$b" > "$a" ]] && targets+=("$b"); done
    for b in "${targets[@]}" db; do
      if [ "$b" = db ]; then got=$(connect_ms "$a" "$HOSTS_HOST_IP" 5432); else got=$(connect_ms "$a" "$(ip_of "$b")" 9100); fi
      want=$(( 2 * $(delay "$a" "$b") ))
      off=$(awk -v g="$got" -v w="$want" 'BEGIN { d = g - w; print (d < 0 ? -d : d) }')
      rtt_n=$(( rtt_n + 1 ))
      # Within 10 % (and 5 ms) of the matrix: the holding program's timer and the scheduler.
      if le "$off" "$(awk -v w="$want" 'BEGIN { print (w * 0.1 > 5 ? w * 0.1 : 5) }')"; then rtt_ok=$(( rtt_ok + 1 )); else rtt_notes+=" $a-$b:${got}/${want}ms"; fi
      rtt_worst=$(max "$rtt_worst" "$off")
    done
  done
  say "round trips: $rtt_ok of $rtt_n within 10 % of the matrix (worst off by ${rtt_worst} ms)${rtt_notes:+; off:$rtt_notes}"
  [ "$rtt_ok" = "$rtt_n" ] || OK=false
  # A few rounds under the delays before the measured moves.
  sleep 5
  t_moves=$(date -u +%Y-%m-%dT%H:%M:%S)
  say "the market moving for ${FAULT_S}s under the delays"
  moves "$FAULT_S" || { say "the moves failed"; OK=false; }
  t_moves_end=$(date -u +%Y-%m-%dT%H:%M:%S)
  # Observation -> committed report at each node, from the debug lines of the moves' time.
  quorum=$(grep -h 'committed with' "$LOGS"/node*.log | awk -v a="$t_moves" -v b="$t_moves_end" '
      substr($1, 1, 19) >= a && substr($1, 1, 19) <= b {
        for (i = 1; i <= NF; i++) if ($i == "after") { d = $(i - 1) }
        if (d ~ /ms$/) v = d + 0; else if (d ~ /µs$/) v = d / 1000; else if (d ~ /ns$/) v = d / 1e6; else v = d * 1000
        print v }' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "null null"; exit }
        r50 = int((NR * 50 + 99) / 100); r99 = int((NR * 99 + 99) / 100)
        printf "%.0f %.0f\n", v[r50], v[r99] }')
  read -r Q50 Q99 <<<"$quorum"
  unrules
  stop_helpers
  FAULT_END=$(now)
  say "  delays off: $(jq -c . "$LOGS/moves.json" 2>/dev/null); quorum p50 ${Q50} ms, p99 ${Q99} ms"
  EXTRA=$(printf '"regions":"%s","rtt_checked":%d,"rtt_ok":%d,"rtt_worst_off_ms":%s,"quorum_p50_ms":%s,"quorum_p99_ms":%s,"fault_s":%d' \
    "$(for n in "${NODES[@]}" boot; do printf '%s=%s ' "$n" "${REGION[$n]}"; done | sed 's/ $//')" \
    "$rtt_n" "$rtt_ok" "$rtt_worst" "$Q50" "$Q99" "$FAULT_S")
fi

# ---------------------------------------------------------------- settle, stop, count
ID_AWK='function t(id) { return 1735689600 + int(id / 16777216) / 100 }'
# Verified prices minted before the fault ended that are not stored yet.
unstored() {
  comm -23 <(verified_ids | awk -v end="$FAULT_END" "$ID_AWK"' t($1) < end') <(q 'SELECT id FROM prices' | sort -u) | grep -c . || true
}
t0=$(now)
while [ "$(unstored)" -gt 0 ] && le "$(since "$t0")" "$SETTLE"; do sleep 1; done
say "settled after $(since "$t0")s; stopping the nodes (SIGTERM: each flushes what it holds)"
NODE_PIDS=()
for n in "${NODES[@]}"; do NODE_PIDS+=("$(cat "$HOSTS_DIR/$n.pid")"); done
kill -TERM "${NODE_PIDS[@]}" 2>/dev/null || true
for _ in $(seq 1 150); do
  running=0
  for p in "${NODE_PIDS[@]}"; do [ -d "/proc/$p" ] && [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$p/stat" 2>/dev/null)" != Z ] && running=1; done
  [ "$running" = 0 ] && break
  sleep 0.1
done

originated=$(originated_ids)
tally_ids
unverified=$(comm -23 <(echo "$originated" | awk -v end="$FAULT_END" "$ID_AWK"' NF && t($1) < end') <(echo "$verified") | lines)
if "$ORACLE" verify --database-url "$HOSTS_DB_URL" --log-level warn >"$LOGS/verify.txt" 2>&1; then verify=ok; else verify=failed; fi
# The lease's health under the fault: failed heartbeats (all nodes, and the worst node's) and
# how often the writer changed.
hb_failed=0 hb_worst="-" hb_worst_n=-1 writer_changes=0
for n in "${NODES[@]}"; do
  failed=$(grep -c 'heartbeat failed' "$LOGS/$n.log" || true)
  hb_failed=$(( hb_failed + failed ))
  [ "$failed" -gt "$hb_worst_n" ] && hb_worst_n=$failed hb_worst="$n:$failed"
  writer_changes=$(( writer_changes + $(grep -c 'this node is now the writer' "$LOGS/$n.log" || true) ))
done

if [ "$blind" = 1 ]; then say "$BLIND_COUNT"; OK=false; fi
[ "$lost" = 0 ] && [ "$lost_acked" = 0 ] && [ "$duplicates" = 0 ] && [ "$verify" = ok ] || OK=false
MOVES=$(moves_fields)
missed=$(jq -r '.missed // 0' "$LOGS/moves.json" 2>/dev/null || echo 0)
case "$SCENARIO" in
  hosts-loss) [ "$unverified" = 0 ] && [ "$missed" = 0 ] || OK=false ;;
  hosts-latency)
    p99=$(jq -r '.verified_p99_ms // 1e9' "$LOGS/moves.json" 2>/dev/null || echo 1e9)
    [ "$missed" = 0 ] && le "$p99" "$(( (OBSERVE + 2) * 1000 ))" || OK=false ;;
esac
printf '{"scenario":"%s","mode":"%s","nodes":%d,"settings":"%s",%s,"originated":%d,"verified":%d,"stored":%d,"unverified":%d,"lost":%d,"lost_acked":%d,"duplicates":%d,%s,"heartbeat_failures":%d,"heartbeat_failures_worst":"%s","writer_changes":%d,"verify":"%s","seconds":%.0f,"ok":%s}\n' \
  "$SCENARIO" "$MODE" "$NUM_NODES" "$SETTINGS" "$EXTRA" "$(echo "$originated" | lines)" "$(echo "$verified" | lines)" \
  "$(echo "$stored_ids" | lines)" "$unverified" "$lost" "$lost_acked" "$duplicates" "$MOVES" "$hb_failed" \
  "$hb_worst" "$writer_changes" "$verify" "$(since "$T_START")" "$OK" | tee "$LOGS/result.json"
$OK
