#!/usr/bin/env bash
# Checks the monitoring files under deploy/ with promtool:
#
#   1. deploy/prometheus/alerts.yml parses and its expressions are valid (`promtool check rules`);
#   2. deploy/prometheus/prometheus.yml loads it (`promtool check config`);
#   3. the alerts' unit tests pass (`promtool test rules deploy/prometheus/alerts.test.yml`);
#   4. every query of the Grafana dashboard (deploy/grafana/*.json) is valid PromQL: each one,
#      with Grafana's variables replaced by values of their kind, becomes a recording rule of a
#      temporary rules file that `promtool check rules` reads.
#
# Whether the metrics these files name exist is checked against a running node by
# tests/it/monitoring.rs (cargo test --test it monitoring::).
#
#   scripts/alerts.sh
#
# promtool comes from Debian's prometheus package and jq from Debian's jq; each is installed
# with apt when missing and we are root, as scripts/db.sh does for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh
say() { echo "alerts.sh: $*" >&2; }

# need COMMAND PACKAGE
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2 with apt (for $1)"
  # promtool is all we use. Without recommends: no node exporter. On a host booted with
  # systemd the package also starts a Prometheus server on :9090 (`systemctl disable --now
  # prometheus` stops it); containers usually refuse to start services.
  if ! apt_install "$2"; then
    say "$1 is missing and cannot be installed here (needs root and apt-get): install $2"
    exit 1
  fi
}
need promtool prometheus
need jq jq

promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml
promtool test rules deploy/prometheus/alerts.test.yml

queries=$(mktemp --suffix .yml)
trap 'rm -f "$queries"' EXIT
for dashboard in deploy/grafana/*.json; do
  # JSON is YAML, so jq can write the rules file. Grafana's interval variables become a
  # duration, the others (job, instance, …) a label value; both are only substituted text.
  jq '{groups: [{name: input_filename, rules: [
        [.. | objects | select(has("expr")) | .expr]
        | to_entries[]
        | {record: "dashboard_query_\(.key)",
           expr: (.value | gsub("\\$__(rate_interval|interval|range)"; "5m")
                         | gsub("\\$\\{?[A-Za-z_]+\\}?"; "x"))}]}]}' \
    "$dashboard" >"$queries"
  count=$(jq '.groups[0].rules | length' "$queries")
  [ "$count" -gt 0 ] || { say "$dashboard has no queries"; exit 1; }
  say "$dashboard: $count queries"
  promtool check rules "$queries" >/dev/null
done
say "rules, their tests and the dashboard's queries are fine"
