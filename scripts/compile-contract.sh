#!/usr/bin/env bash
# Compiles contracts/PriceVerifier.sol with the pinned solcjs (contracts/package-lock.json) into
# the committed artifact contracts/PriceVerifier.json (abi, creation bytecode, solc version,
# the source's sha256), which the EVM tests (tests/evm.rs) deploy.
#
#   scripts/compile-contract.sh           recompile and rewrite contracts/PriceVerifier.json
#   scripts/compile-contract.sh --check   recompile into a temporary file and fail if it differs
#                                         from the committed artifact (skips, exit 0, without
#                                         node and npm)
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
  echo "compile-contract: node and npm are needed to compile the contract" >&2
  exit 1
fi

# The exact solc of package-lock.json (node_modules is not committed).
npm ci --no-audit --no-fund --loglevel=error >&2

if ! $check; then
  node compile.js PriceVerifier.json
  echo "compile-contract: wrote contracts/PriceVerifier.json" >&2
  exit 0
fi

fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
node compile.js "$fresh"
if ! diff -u PriceVerifier.json "$fresh" >&2; then
  echo "compile-contract: contracts/PriceVerifier.json is stale; run scripts/compile-contract.sh and commit it" >&2
  exit 1
fi
echo "compile-contract: contracts/PriceVerifier.json matches the source" >&2
