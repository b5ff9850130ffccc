#!/usr/bin/env bash
# The outsider attack, tried against a running `run_nodes.sh` network: three complete
# `oracle run` nodes with fresh keys, a database of their own (where they register themselves)
# and a mock exchange at 1 USD, bootstrapping into the honest network. Then it reports what
# the honest database holds of theirs (it must be nothing) and runs `oracle verify`.
#
#   MOCK_EXCHANGE=1 ORACLE_OBSERVE_INTERVAL=5s ORACLE_HEARTBEAT=15s ./run_nodes.sh   # in one terminal
#   scripts/outsider-attack.sh 90                               # in another: seconds to attack
#
# Settings (environment): DATABASE_URL (the honest database, as for run_nodes.sh),
# OUTSIDER_PRICE (default 1), BOOTSTRAP_PORT (default 4001), PROFILE (default dev).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-90}"
PROFILE="${PROFILE:-dev}"
target_dir=$( [ "$PROFILE" = dev ] && echo debug || echo "$PROFILE" )
ORACLE="${CARGO_TARGET_DIR:-target}/$target_dir/oracle"
honest_url="${DATABASE_URL:?set DATABASE_URL to the honest network database}"
outsider_url="${honest_url%/*}/oracle_outsiders"
scripts/db.sh "$outsider_url" >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
  [ "${#pids[@]}" -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

peer_id=$("$ORACLE" keygen --name boot --show --log-level warn | awk '/^peer id/ { print $3 }')
bootstrap="/ip4/127.0.0.1/tcp/${BOOTSTRAP_PORT:-4001}/p2p/$peer_id"
"$ORACLE" mock-exchange --listen 127.0.0.1:8199 --price "${OUTSIDER_PRICE:-1}" --volatility 0 \
  --log-level warn & pids+=($!)
addresses=()
for i in 1 2 3; do
  "$ORACLE" keygen --name "outsider$i" --key-dir "$work" --log-level warn >/dev/null
  addresses+=("$("$ORACLE" keygen --name "outsider$i" --key-dir "$work" --show --log-level warn \
    | awk '/^address/ { print $2 }')")
  ORACLE_DATABASE_URL="$outsider_url" "$ORACLE" run --name "outsider$i" --key-dir "$work" \
    --register --bootstrap "$bootstrap" --listen /ip4/127.0.0.1/tcp/0 \
    --source-base-url http://127.0.0.1:8199 --log-file "$work/outsider$i.log" \
    --log-level warn 2>/dev/null & pids+=($!)
done
echo "outsider-attack: ${addresses[*]} attacking for ${seconds}s" >&2
sleep "$seconds"
list=$(printf "'%s'," "${addresses[@]}"); list="${list%,}"
echo "outsider-attack: rows the outsiders stored in their own database:" \
  "$(psql -Atq "$outsider_url" -c 'SELECT count(*) FROM prices')"
echo "outsider-attack: honest rows, and rows with an outsider's signature or at their price:"
psql -Atq "$honest_url" -c "SELECT count(*), count(*) FILTER (WHERE price < 100 OR EXISTS (
  SELECT 1 FROM jsonb_array_elements(sign_data) AS s WHERE s->>'signer' IN ($list))) FROM prices"
"$ORACLE" verify --log-level warn
