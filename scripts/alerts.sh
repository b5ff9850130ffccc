#!/usr/bin/env bash
# Checks the monitoring files under deploy/ with promtool:
#
#   1. deploy/prometheus/alerts.yml parses and its expressions are valid (`promtool check rules`);
#   2. deploy/prometheus/prometheus.yml loads it (`promtool check config`);
#   3. the alerts' unit tests pass (`promtool test rules deploy/prometheus/alerts.test.yml`).
#
#   scripts/alerts.sh
#
# promtool comes from Debian's prometheus package, installed with apt when missing and we are
# root, as scripts/db.sh does for PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "alerts.sh: $*" >&2; }

# need COMMAND PACKAGE
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $2 with apt (for $1)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # promtool is all we use. Without recommends: no node exporter. On a host booted with
    # systemd the package also starts a Prometheus server on :9090 (`systemctl disable --now
    # prometheus` stops it); containers usually refuse to start services.
    apt-get install -y -qq --no-install-recommends "$2" >&2
  else
    say "$1 is missing and cannot be installed here (needs root and apt-get): install $2"
    exit 1
  fi
}
need promtool prometheus

promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml
promtool test rules deploy/prometheus/alerts.test.yml

say "the rules and their tests are fine"
