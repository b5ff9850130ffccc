#!/usr/bin/env bash
# Compiles contracts/PriceVerifier.sol and contracts/PriceFeed.sol with the pinned solcjs
# (contracts/package-lock.json) into the committed artifacts contracts/PriceVerifier.json and
# contracts/PriceFeed.json (abi, creation bytecode, solc version, the sources' sha256), which the
# EVM tests (tests/it/evm.rs) deploy.
#
#   scripts/compile-contract.sh           recompile and rewrite the artifacts
#   scripts/compile-contract.sh --check   recompile into a temporary folder and fail if anything
#                                         differs from the committed artifacts (skips, exit 0,
#                                         without node and npm)
set -euo pipefail
cd "$(dirname "$0")/../contracts"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if $check; then
    echo "compile-contract: node/npm not found, skipping the artifact check" >&2
    exit 0
  fi
  echo "compile-contract: node and npm are needed to compile the contracts" >&2
  exit 1
fi

# The exact solc of package-lock.json (node_modules is not committed).
npm ci --no-audit --no-fund --loglevel=error >&2

if ! $check; then
  node compile.js .
  echo "compile-contract: wrote contracts/PriceVerifier.json and contracts/PriceFeed.json" >&2
  exit 0
fi

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
node compile.js "$fresh"
stale=false
for artifact in PriceVerifier.json PriceFeed.json; do
  if ! diff -u "$artifact" "$fresh/$artifact" >&2; then
    stale=true
  fi
done
if $stale; then
  echo "compile-contract: the artifacts are stale; run scripts/compile-contract.sh and commit them" >&2
  exit 1
fi
echo "compile-contract: the artifacts match the sources" >&2
