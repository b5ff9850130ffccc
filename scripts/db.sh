#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers, then prints its URL on stdout (progress goes to stderr).
#
#   scripts/db.sh [URL]
#
# URL defaults to $TEST_DATABASE_URL, then $DATABASE_URL, then
# postgres://postgres@127.0.0.1:5432/postgres (the server these machines run).
#
# In order: a server already answers -> use it. A Docker engine answers and postgres-dc.yaml is
# here -> `docker compose -f postgres-dc.yaml up -d` and wait for it. Otherwise start a local
# throwaway cluster from the system's PostgreSQL binaries (installed with apt when missing and we
# are root), listening on the URL's port, data under .pgdata/ (git-ignored). Idempotent.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh
url="${1:-${TEST_DATABASE_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}}"
say() { echo "db.sh: $*" >&2; }

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$url" -t 2 >/dev/null 2>&1
  elif command -v psql >/dev/null 2>&1; then
    psql "$url" -Atqc 'select 1' >/dev/null 2>&1
  else
    return 1
  fi
}

wait_until_answers() {
  for _ in $(seq 1 60); do
    answers && return 0
    sleep 1
  done
  return 1
}

# The server answers; make sure the URL's database exists too (a fresh cluster has only
# "postgres"). Harmless when it exists or when we may not create it.
ensure_database() {
  command -v psql >/dev/null 2>&1 || return 0
  psql "$url" -Atqc 'select 1' >/dev/null 2>&1 && return 0
  local db="${url##*/}"; db="${db%%\?*}"
  local admin="${url%/*}/postgres"
  say "creating database $db"
  psql "$admin" -Atqc "CREATE DATABASE \"$db\"" >/dev/null 2>&1 || true
}

done_with() { ensure_database; say "PostgreSQL answers ($1)"; echo "$url"; exit 0; }

# postgres://user[:password]@host[:port]/db -> host and port, for starting a server.
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
host="${hostport%%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5432
user="${url#*://}"; user="${user%%@*}"; user="${user%%:*}"
[ "$user" = "${url#*://}" ] && user=postgres

answers && done_with "already running"

if [ -f postgres-dc.yaml ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  say "starting PostgreSQL with docker compose"
  docker compose -f postgres-dc.yaml up -d >&2
  wait_until_answers && done_with "docker compose"
  say "docker compose started, but nothing answers at the URL"; exit 1
fi

case "$host" in
  127.0.0.1|localhost|::1) ;;
  *) say "nothing answers at $host:$port and it is not local; start it yourself"; exit 1 ;;
esac

# A packaged cluster on this port (Debian's postgresql-common) just needs starting.
if command -v pg_lsclusters >/dev/null 2>&1; then
  cluster=$(pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p { print $1 " " $2; exit }')
  if [ -n "$cluster" ]; then
    say "starting packaged cluster $cluster"
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $cluster start >&2 || true
    wait_until_answers && done_with "packaged cluster $cluster"
  fi
fi

find_bin() {
  command -v "$1" 2>/dev/null && return 0
  ls -1d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 | grep . && return 0
  return 1
}

if ! find_bin initdb >/dev/null; then
  say "installing PostgreSQL with apt"
  if ! apt_install postgresql postgresql-client; then
    say "no PostgreSQL binaries and cannot install them (need root and apt-get)"; exit 1
  fi
fi
initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl)

data="$PWD/.pgdata/$port"
as_owner=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: the cluster belongs to the postgres user.
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PWD/.pgdata" postgres
  as_owner=(runuser -u postgres --)
fi
mkdir -p "$data"
[ "$(id -u)" = 0 ] && chown -R postgres "$PWD/.pgdata" && chmod 700 "$data"
if [ ! -f "$data/PG_VERSION" ]; then
  say "creating a throwaway cluster in $data"
  "${as_owner[@]}" "$initdb" -D "$data" -U "$user" --auth=trust -E UTF8 >&2
fi
say "starting the throwaway cluster on port $port"
"${as_owner[@]}" "$pg_ctl" -D "$data" -l "$data/server.log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >&2 || true
wait_until_answers && done_with "throwaway cluster in $data"
say "PostgreSQL did not come up; see $data/server.log"; exit 1
