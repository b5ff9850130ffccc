# Price ids a fault scenario counts, from the nodes' logs and the database. Sourced by
# scripts/faults.sh, faults-db.sh and faults-hosts.sh (run from the repository's root), which
# set $LOGS (the folder of the nodes' node*.log files) and define `q SQL` (psql, one value a line).
#
# The log lines are the nodes' own (src/node/rounds.rs, src/node/gossip.rs, src/writer); should
# one change, tally_ids says the count is blind. Each prints ids sorted, once (unless it says).

# The field $2 of every match of the extended regex $1 in the node logs.
log_ids() { { grep -hoE "$1" "$LOGS"/node*.log 2>/dev/null || true; } | awk -v f="$2" '{ print $f }'; }
originated_ids() { log_ids 'originated price [0-9]+' 3 | sort -u; }
verified_ids() { log_ids 'price [0-9]+ committed with' 2 | sort -u; }
# Ids flushes were told they inserted (debug `stored prices …`), once per telling: an id told
# twice is a commit lost and made again.
acked_ids() { log_ids 'stored prices [0-9,]+' 3 | tr ',' '\n' | { grep . || true; } | sort; }
db_ids() { q 'SELECT id FROM prices' | sort -u; }
# Non-empty lines on stdin.
lines() { grep -c . || true; }

# Sets verified, acked, stored_ids (lists) and lost, lost_acked, duplicates (counts), and
# blind=1 when rows were stored but no id was seen verified: the nodes' log line changed, and
# "lost" would count nothing.
tally_ids() {
  verified=$(verified_ids)
  acked=$(acked_ids)
  stored_ids=$(db_ids)
  lost=$(comm -23 <(echo "$verified") <(echo "$stored_ids") | lines)
  lost_acked=$(comm -23 <(echo "$acked" | sort -u) <(echo "$stored_ids") | lines)
  duplicates=$(echo "$acked" | uniq -d | lines)
  blind=0
  if [ -n "$stored_ids" ] && [ -z "$verified" ]; then blind=1; fi
}
BLIND_COUNT="no 'price <id> committed with' line in the logs although prices were stored: the count of lost prices is blind"
