#!/usr/bin/env bash
# One command for the benchmarks (see docs/benchmarks.md):
#
#   bash bench/run.sh                 # full run (~15 min): every case, 3 × 10 s at c=64 and c=16
#   bash bench/run.sh --smoke         # ~1 min: baseline, mcp-server session, gateway (HTTP and stdio
#                                     # upstream), auth-server /token;
#                                     # exits non-zero if a server answered an error (CI)
#   bash bench/run.sh --write-doc docs/benchmarks.md   # also refresh the table in the doc
#
# Options of this script (the rest go to bench/scripts/bench.py, see its --help):
#   --skip-build         use the binaries already built
#   --profile P          cargo profile to build and run (default release; CI smoke may use dev)
#
# It builds the release binaries, installs the peers on first use into bench/.cache/
# (gitignored: npm @modelcontextprotocol/sdk for the TypeScript example RS, a venv with
# PyPI fastmcp), installs wrk from Debian if missing, then drives the servers (pinned to
# CPU 0, wrk on CPU 1, 127.0.0.1 only) and writes bench/results/<stamp>/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="$ROOT/bench/.cache"
TS_SDK_VERSION="${BENCH_TS_SDK_VERSION:-1.32.2}"
FASTMCP_SPEC="${BENCH_FASTMCP_SPEC:-fastmcp>=4,<5}"

profile=release
build=1
smoke=0
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) build=0 ;;
    --profile) profile="$2"; shift ;;
    --smoke) smoke=1; pass+=("$1") ;;
    *) pass+=("$1") ;;
  esac
  shift
done

say() { echo "[run.sh $(date -u +%H:%M:%S)] $*"; }

if [ "$(nproc)" -lt 2 ]; then
  say "needs at least 2 CPUs (server on CPU 0, load generator on CPU 1)"; exit 2
fi

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$profile" in
  dev|debug) bin_dir="$target_dir/debug"; cargo_profile=(--profile dev) ;;
  release) bin_dir="$target_dir/release"; cargo_profile=(--release) ;;
  *) bin_dir="$target_dir/$profile"; cargo_profile=(--profile "$profile") ;;
esac
if [ "$build" = 1 ]; then
  say "cargo build ${cargo_profile[*]} -p auth-server -p mcp-server -p bench"
  cargo build "${cargo_profile[@]}" -p auth-server -p mcp-server -p bench
fi
for b in auth-server mcp-server baseline bench-upstream bench-latency bench-exchange; do
  [ -x "$bin_dir/$b" ] || { say "missing $bin_dir/$b (build it or drop --skip-build)"; exit 2; }
done

if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null 2>&1 || { say "taskset (util-linux) is required"; exit 2; }
command -v node >/dev/null 2>&1 || { say "node is required (the OAuth flow helper)"; exit 2; }

if [ "$smoke" = 0 ]; then
  mkdir -p "$CACHE/node"
  if [ ! -f "$CACHE/node/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js" ]; then
    say "installing @modelcontextprotocol/sdk@$TS_SDK_VERSION into bench/.cache/node"
    [ -f "$CACHE/node/package.json" ] || echo '{"name":"bench-peers","private":true}' > "$CACHE/node/package.json"
    (cd "$CACHE/node" && npm install --no-audit --no-fund --silent "@modelcontextprotocol/sdk@$TS_SDK_VERSION") \
      || say "WARNING: npm install failed; the TypeScript SDK case will be reported as not measured"
  fi
  if [ ! -x "$CACHE/venv/bin/python" ] || ! "$CACHE/venv/bin/python" -c 'import fastmcp' 2>/dev/null; then
    say "installing $FASTMCP_SPEC into bench/.cache/venv"
    { python3 -m venv "$CACHE/venv" && "$CACHE/venv/bin/pip" install -q "$FASTMCP_SPEC"; } \
      || say "WARNING: pip install failed; the FastMCP case will be reported as not measured"
  fi
fi

say "running benchmarks (binaries from $bin_dir)"
exec python3 "$ROOT/bench/scripts/bench.py" --bin-dir "$bin_dir" "${pass[@]}"
