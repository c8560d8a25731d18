#!/usr/bin/env bash
# The whole test suite, as README and CI run it:
#   1. Rust unit and integration tests (real servers on 127.0.0.1:0), with the store
#      contract tests also on PostgreSQL,
#   2. auth-server's integration tests again on PostgreSQL (each test in a schema of
#      its own, dropped after),
#   3. end-to-end tests: the official MCP TypeScript SDK client against the real binaries,
#   4. interoperability (MCP conformance suite, a FastMCP resource server),
#   5. replicas behind nginx on PostgreSQL and Redis (scripts/ha-test.sh).
# PostgreSQL must answer at $AUTH_TEST_POSTGRES_URL (default: the local server, trust
# authentication, as CI starts it).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Node.js and npm (Debian packages) for the end-to-end tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "The end-to-end tests need Node.js >= 18 with npm; install them and run again." >&2
    exit 1
  fi
fi

# Set: the PostgreSQL runs are mandatory (a test fails when the server does not answer).
export AUTH_TEST_POSTGRES_URL="${AUTH_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# The npm packages first: mcp-server's gateway tests run the reference "everything" MCP
# server (e2e/node_modules) as their upstream.
if [ ! -d e2e/node_modules/@modelcontextprotocol/server-everything ]; then
  (cd e2e && npm ci --no-audit --no-fund)
fi

echo "== cargo test (workspace)"
cargo test --workspace --no-fail-fast

# The store contract tests, the crash tests and the replica tests ran on PostgreSQL
# above already.
echo "== cargo test -p auth-server --test it on PostgreSQL (AUTH_TEST_BACKEND=postgres)"
AUTH_TEST_BACKEND=postgres cargo test -p auth-server --test it --no-fail-fast -- \
  --skip storage:: --skip crash:: --skip postgres::

echo "== building binaries for end-to-end tests"
cargo build --workspace --bins

echo "== end-to-end: official TypeScript SDK client (also through the gateway: e2e/tests/gateway.test.js)"
(cd e2e && MCP_E2E_BIN_DIR="$target_dir/debug" npm test)

echo "== interoperability: MCP conformance suite (0.1.16 + 0.2.0-alpha) and a FastMCP resource server"
# The node-oidc-provider tests already ran above as part of e2e/tests.
INTEROP_ONLY=conformance,python MCP_E2E_BIN_DIR="$target_dir/debug" bash e2e/run-interop.sh

echo "== replicas behind nginx: PostgreSQL, Redis, 2x auth-server, 2x mcp-server, official TypeScript SDK client (scripts/ha-test.sh)"
HA_BIN_DIR="$target_dir/debug" bash scripts/ha-test.sh
