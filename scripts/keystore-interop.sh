#!/usr/bin/env bash
# Keystores interoperate with eth-account (Python), an Ethereum library independent of this
# project, both ways: one `oracle keygen --keystore` writes opens in eth-account with the same
# address, and one eth-account writes (its defaults: scrypt n=262144, r=8, p=1) opens in
# `oracle keygen --show` with the same address. Installs eth-account with pip when missing; fails,
# never skips, when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "keystore-interop: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 is needed to run eth-account"
if ! python3 -c 'import eth_account' >/dev/null 2>&1; then
  say "installing eth-account with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'eth-account>=0.13,<1' >&2 \
    || fail "cannot install eth-account with pip (python3 -m pip install eth-account)"
fi
eth_account=(python3 scripts/eth-account-keystore.py)

[ "${NO_BUILD:-0}" = 1 ] || cargo build --quiet --bin oracle
ORACLE="${CARGO_TARGET_DIR:-target}/debug/oracle"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'interop password\n' >"$work/password"
oracle_address() {
  "$ORACLE" --log-level warn keygen --key-dir "$work" --password-file "$work/password" "$@" \
    | awk '/^address/ { print $2 }'
}

ours=$(oracle_address --name ours --keystore)
[ -n "$ours" ] || fail "oracle keygen --keystore printed no address"
theirs_view=$("${eth_account[@]}" read "$work/ours.json" "$work/password") \
  || fail "eth-account cannot open the keystore oracle wrote"
[ "$theirs_view" = "$ours" ] || fail "oracle wrote $ours, eth-account read $theirs_view"
say "oracle's keystore opens in eth-account: $ours"

theirs=$("${eth_account[@]}" write "$work/password" "$work/theirs.json")
our_view=$(oracle_address --name theirs --show) || fail "oracle cannot open eth-account's keystore"
[ "$our_view" = "$theirs" ] || fail "eth-account wrote $theirs, oracle read $our_view"
say "eth-account's keystore opens in oracle: $theirs"
