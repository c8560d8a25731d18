#!/usr/bin/env bash
# Runs each compose topology without a container engine and drives the official
# TypeScript SDK client through the full OAuth flow against it (scripts/compose-run.py
# says how the compose wiring maps onto the real binaries on loopback).
#
#   bash scripts/compose-run.sh                       # every docker-compose*.yml
#   bash scripts/compose-run.sh docker-compose.yml    # one file
#
# The shared client secret is a fresh random value for each run, so the check proves both
# services take it from the environment. Needs docker-compose (to read the files),
# python3 with PyYAML, node with e2e's npm packages, and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(ls docker-compose*.yml)
fi

python=python3
for candidate in python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
    python="$candidate"; break
  fi
done
# The same selection as scripts/test.sh, so that after it (as in CI) nothing rebuilds.
cargo build --quiet --workspace --bins
if [ ! -d e2e/node_modules/@modelcontextprotocol/sdk ]; then
  (cd e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

passed=0 failed=0 skipped=0
for file in "${files[@]}"; do
  echo "== compose-run: $file"
  rc=0
  MCP_SERVER_CLIENT_SECRET="compose-run-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
    "$python" scripts/compose-run.py "$file" --bin-dir "$target_dir/debug" || rc=$?
  case "$rc" in
    0) passed=$((passed + 1)); echo "compose-run: $file passed" ;;
    3) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)); echo "compose-run: $file FAILED" ;;
  esac
done
echo "compose-run: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
