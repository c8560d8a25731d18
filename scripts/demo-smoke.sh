#!/usr/bin/env bash
# Starts the README's demo command, waits for both services, runs the official TypeScript
# SDK client's full OAuth flow against it as the demo user, and stops it with Ctrl-C (SIGINT).
# Then the same with `--upstream-idp` (node-oidc-provider as "Corp SSO" on :3002), the user
# signing in at Corp SSO.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --bin mcp-demo

# run_demo DEMO_ARGS... -- SMOKE_ARGS...
run_demo() {
  local demo_args=() smoke_args=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do demo_args+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  smoke_args=("$@")
  for port in 3000 3001 3002; do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
      echo "port $port is already in use: stop whatever runs there (another demo?) and retry" >&2
      exit 1
    fi
  done
  data_dir="$(mktemp -d)"
  log="$data_dir/demo.log"
  AUTH__DATABASE__PATH="$data_dir/auth-server.db" "$target_dir/debug/mcp-demo" "${demo_args[@]}" >"$log" 2>&1 &
  pid=$!
  trap 'kill -INT "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if grep -q "Ctrl-C stops both services" "$log" \
      && curl -fsS http://127.0.0.1:3001/healthz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:3000/readyz >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "demo exited early:"; cat "$log"; exit 1; fi
    sleep 0.3
  done
  curl -fsS http://127.0.0.1:3000/healthz >/dev/null || { echo "demo did not become healthy:"; cat "$log"; exit 1; }
  grep -q "http://localhost:3000/mcp" "$log" || { echo "banner does not show the MCP URL:"; cat "$log"; exit 1; }
  (cd e2e && node smoke-demo.js http://localhost:3000/mcp "${smoke_args[@]}")
  kill -INT "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then echo "demo did not stop on Ctrl-C"; kill -9 "$pid"; exit 1; fi
  trap - EXIT
  rm -rf "$data_dir"
}

run_demo --
if [ -d e2e/node_modules/oidc-provider ]; then
  run_demo --upstream-idp -- --upstream-idp
  # Corp SSO stops with the demo.
  if curl -s -o /dev/null http://127.0.0.1:3002/; then echo "Corp SSO still runs after the demo stopped"; exit 1; fi
  echo "demo-smoke: 2 passed, 0 failed"
else
  echo "demo-smoke: 1 passed, 0 failed (--upstream-idp skipped: run npm ci in e2e/)"
fi
