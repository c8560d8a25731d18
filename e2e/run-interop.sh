#!/usr/bin/env bash
# Interoperability: our servers against software nobody here wrote.
#   1. the official MCP conformance suite (0.1.16 + 0.2.0-alpha) against auth-server +
#      conformance-fixture (mcp-server's application), auth on -> e2e/conformance/run.sh
#   2. mcp-server behind node-oidc-provider (JWKS and introspection modes, audience
#      check), driven by the official TypeScript SDK client   -> e2e/tests/oidc-provider.test.js
#   3. auth-server tokens at a FastMCP resource server (Python) -> e2e/python/test_fastmcp_rs.py
#
#   e2e/run-interop.sh            # all three; needs `cargo build --workspace --bins`
#   INTEROP_ONLY=conformance,oidc,python e2e/run-interop.sh
#
# Installs are idempotent and cached (gitignored): e2e/node_modules (npm ci, only when
# missing), e2e/.interop (Node 22 from npm, conformance suite versions, logs), e2e/.venv
# (PyPI, reinstalled only when python/requirements.txt changes). Closes with
# `N passed, M failed` over all three (conformance counts scored checks, the others tests)
# and exits non-zero if anything failed.
set -uo pipefail
e2e="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$e2e/.." && pwd)"
export MCP_E2E_BIN_DIR="${MCP_E2E_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
only="${INTEROP_ONLY:-conformance,oidc,python}"
want() { [[ ",$only," == *",$1,"* ]]; }
cd "$e2e"

for bin in auth-server mcp-server; do
  [ -x "$MCP_E2E_BIN_DIR/$bin" ] || { echo "missing $MCP_E2E_BIN_DIR/$bin: run 'cargo build -p auth-server -p mcp-server' first" >&2; exit 1; }
done

total_pass=0 total_fail=0 summary=()
record() { # name passed failed
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3))
  summary+=("$(printf '%-44s %4s ok, %s failing' "$1" "$2" "$3")")
}
started=$(date +%s)

if want conformance; then
  echo "== interop 1/3: MCP conformance suite (auth-server + conformance-fixture, auth on)"
  out="$(mktemp)"
  "$e2e/conformance/run.sh" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  read -r p f < <(sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 \2/p' "$out" | tail -n1)
  p=${p:-0}; f=${f:-0}; [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record "conformance (scored checks)" "$p" "$f"; rm -f "$out"
fi

node_bin=node
if [ -x "$e2e/.interop/node22/node_modules/node/bin/node" ]; then
  node_bin="$e2e/.interop/node22/node_modules/node/bin/node" # oidc-provider 9 targets Node 22 LTS
fi

if want oidc; then
  echo "== interop 2/3: mcp-server behind node-oidc-provider (TypeScript SDK client)"
  if [ ! -d node_modules/oidc-provider ] || [ ! -d node_modules/@modelcontextprotocol/sdk ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  out="$(mktemp)"
  "$node_bin" --test --test-concurrency=1 tests/oidc-provider.test.js 2>&1 | grep -v 'oidc-provider WARNING\|oidc-provider NOTICE' | tee "$out"
  rc=${PIPESTATUS[0]}
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n1); f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -n1)
  p=${p:-0}; f=${f:-0}; [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record "node-oidc-provider as the AS (tests)" "$p" "$f"; rm -f "$out"
fi

if want python; then
  echo "== interop 3/3: auth-server tokens at a FastMCP resource server (pytest)"
  venv="$e2e/.venv" req="$e2e/python/requirements.txt"
  stamp="$venv/.requirements.sha256"
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum "$req" | cut -d' ' -f1)" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" && sha256sum "$req" | cut -d' ' -f1 > "$stamp"
  fi
  out="$(mktemp)"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$e2e/python" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  p=$(grep -oE '[0-9]+ passed' "$out" | tail -n1 | grep -oE '[0-9]+'); f=$(grep -oE '[0-9]+ (failed|error)' "$out" | awk '{s+=$1} END {print s+0}')
  p=${p:-0}; f=${f:-0}; [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record "FastMCP resource server (pytest tests)" "$p" "$f"; rm -f "$out"
fi

echo
echo "== interop summary ($(( $(date +%s) - started ))s)"
for line in "${summary[@]}"; do echo "  $line"; done
echo "interop: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
