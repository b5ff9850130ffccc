#!/usr/bin/env bash
# Per-process footprint of a real multi-process network: run_nodes.sh starts NUM_NODES nodes
# (release build, mock exchange); after a warm-up, one steady minute is measured and every
# process's resident memory and CPU use are printed.
#
#   NUM_NODES=50 scripts/footprint.sh
#   NUM_NODES=10 ORACLE_OBSERVE_INTERVAL=2s ORACLE_HEARTBEAT=15s WINDOW=60 scripts/footprint.sh   # with prices flowing
#
# Settings: NUM_NODES (default 10), WARMUP seconds before measuring (default 30), WINDOW seconds
# measured (default 60); ORACLE_* reach the nodes as with run_nodes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

export NUM_NODES="${NUM_NODES:-10}" PROFILE="${PROFILE:-release}" MOCK_EXCHANGE=1
WARMUP="${WARMUP:-30}"
WINDOW="${WINDOW:-60}"
mkdir -p logs

# Its own process group, so that stopping it is one signal, like Ctrl-C in a terminal.
setsid ./run_nodes.sh > logs/footprint-run.out 2>&1 &
runner=$!
trap 'kill -INT -- "-$runner" 2>/dev/null || true; wait "$runner" 2>/dev/null || true' EXIT

echo "footprint: $NUM_NODES nodes; building and warming up (log: logs/footprint-run.out)" >&2
deadline=$(( SECONDS + 900 ))
until grep -q "nodes running" logs/footprint-run.out 2>/dev/null; do
  kill -0 "$runner" 2>/dev/null || { echo "footprint: run_nodes.sh stopped; see logs/footprint-run.out" >&2; exit 1; }
  [ "$SECONDS" -lt "$deadline" ] || { echo "footprint: run_nodes.sh did not start in time" >&2; exit 1; }
  sleep 1
done
sleep "$WARMUP"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
mapfile -t pids < <(pgrep -P "$runner" -x oracle)
declare -A before
for pid in "${pids[@]}"; do before[$pid]=$(cpu_ticks "$pid"); done
sleep "$WINDOW"
hz=$(getconf CLK_TCK)

# RSS counts every page of the binary a process has mapped, shared with the other nodes or not;
# PSS shares those out, and anonymous memory is the process's own (heap, stacks).
printf '%-14s %10s %10s %10s %12s %9s\n' process "RSS MiB" "PSS MiB" "anon MiB" "CPU s/min" "% 1 core"
total_rss=0; total_ticks=0; nodes_rss=0; nodes_pss=0; nodes_anon=0; nodes=0
for pid in "${pids[@]}"; do
  [ -r "/proc/$pid/status" ] || continue
  name=$(tr '\0' ' ' < "/proc/$pid/cmdline" | awk '{ for (i = 1; i < NF; i++) if ($i == "--name") print $(i + 1) }')
  [ -n "$name" ] || name=mock-exchange
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
  anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status")
  pss=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
  ticks=$(( $(cpu_ticks "$pid") - before[$pid] ))
  total_rss=$(( total_rss + rss )); total_ticks=$(( total_ticks + ticks ))
  case "$name" in node*)
    nodes_rss=$(( nodes_rss + rss )); nodes_pss=$(( nodes_pss + pss ))
    nodes_anon=$(( nodes_anon + anon )); nodes=$(( nodes + 1 )) ;;
  esac
  awk -v n="$name" -v r="$rss" -v p="$pss" -v a="$anon" -v t="$ticks" -v hz="$hz" -v w="$WINDOW" \
    'BEGIN { printf "%-14s %10.1f %10.1f %10.1f %12.3f %8.2f%%\n", n, r / 1024, p / 1024, a / 1024, t / hz * 60 / w, t / hz / w * 100 }'
done
awk -v r="$total_rss" -v t="$total_ticks" -v hz="$hz" -v w="$WINDOW" -v nr="$nodes_rss" \
    -v np="$nodes_pss" -v na="$nodes_anon" -v n="$nodes" \
  'BEGIN {
     printf "%-14s %10.1f %10s %10s %12.3f %8.2f%%  (%.2f%% of 2 cores)\n", "total", r / 1024, "", "", t / hz * 60 / w, t / hz / w * 100, t / hz / w * 50
     if (n > 0) printf "%-14s %10.1f %10.1f %10.1f\n", "mean node", nr / n / 1024, np / n / 1024, na / n / 1024
   }'
