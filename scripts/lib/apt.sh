# Installing the Debian packages a script needs. Sourced (from the repository's root) by every
# script that installs something.
#
# apt_install PACKAGE…: installs them without recommends, as root or with `sudo -n`. Another
# install holding apt's lock is waited for, not failed on: scripts/test.sh runs two fault
# scripts at once on a clean machine, and both install (`E: Could not get lock
# /var/lib/dpkg/lock-frontend` failed one of them). The package lists are refreshed when a
# package is not found (a clean machine may have stale or none). Returns 1 when it cannot
# install (no apt-get, neither root nor sudo, or apt failed); the caller says what it needed.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local as=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || return 1
    as=(sudo -n)
  fi
  local apt=("${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq
    -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
  local attempt
  for attempt in 1 2 3; do
    "${apt[@]}" install --no-install-recommends "$@" >/dev/null 2>&1 && return 0
    # `update` takes the lists' lock, which older apt does not wait for: a busy one is retried.
    if "${apt[@]}" update >/dev/null 2>&1; then
      "${apt[@]}" install --no-install-recommends "$@" >&2 && return 0
    fi
    [ "$attempt" = 3 ] || sleep 5
  done
  return 1
}
