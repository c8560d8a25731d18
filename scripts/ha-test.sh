#!/usr/bin/env bash
# Replicas behind a real load balancer, on this machine's loopback:
#   PostgreSQL (a fresh database, dropped afterwards) and Redis,
#   two auth-server replicas (one issuer: nginx's URL; one database; the same secrets),
#   two mcp-server replicas,
#   nginx (Debian's package) running deploy/nginx/mcp.conf with only the upstream
#   addresses and listen ports replaced,
# then the official TypeScript SDK client (e2e/ha-flow.test.js) runs the OAuth flow and
# tool calls through nginx, checks on each replica's metrics listener that both served
# /authorize, /login, /token and /mcp, kills one auth-server replica in the middle of a
# sign-in and checks that sign-ins, token exchanges and refreshes go on.
#
#   bash scripts/ha-test.sh          (after `cargo build --workspace --bins`)
#
# Needs root (or sudo-less apt) only to install nginx when it is missing. Starts
# PostgreSQL and Redis when they are not answering (and stops them again afterwards).
# Every process it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin_dir="${HA_BIN_DIR:-$target_dir/debug}"
pg_host=127.0.0.1 pg_port=5432 pg_user=postgres
redis_host=127.0.0.1 redis_port=6379

say() { echo "ha-test: $*"; }
fail() { echo "ha-test: FAILED: $*" >&2; exit 1; }

for bin in auth-server mcp-server; do
  [ -x "$bin_dir/$bin" ] || fail "$bin_dir/$bin is missing: run cargo build --workspace --bins first"
done
[ -d e2e/node_modules/@modelcontextprotocol/sdk ] || (cd e2e && npm ci --no-audit --no-fund --loglevel=error)

# --- cleanup: every process and the database this script created --------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/ha-test-XXXXXX")
pids=()          # our processes, stopped in reverse order
database=""      # dropped at exit
started_pg="" started_redis=""
cleanup() {
  local rc=$?
  set +e
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    kill -TERM "${pids[$i]}" 2>/dev/null
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ -n "$database" ]; then
    psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -q -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null \
      || echo "ha-test: could not drop database $database" >&2
  fi
  if [ -n "$started_redis" ]; then redis-cli -h "$redis_host" -p "$redis_port" shutdown nosave >/dev/null 2>&1; fi
  if [ -n "$started_pg" ]; then pg_ctlcluster --skip-systemctl-redirect "$started_pg" main stop >/dev/null 2>&1; fi
  if [ "$rc" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- $(basename "$log") (tail)"
      tail -n 40 "$log"
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the peers: nginx from Debian, PostgreSQL, Redis ----------------------------------------
nginx_bin=$(command -v nginx || true)
[ -z "$nginx_bin" ] && [ -x /usr/sbin/nginx ] && nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || fail "nginx is not installed (Debian: apt-get install nginx)"
  say "installing nginx (Debian package)"
  # The package's own service is not wanted (we run nginx with our own prefix below):
  # containers usually forbid starting it anyway (policy-rc.d), and nothing here uses it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
fi

if ! pg_isready -q -h "$pg_host" -p "$pg_port"; then
  cluster=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$cluster" ] || fail "PostgreSQL is not answering on $pg_host:$pg_port and no cluster is installed"
  say "starting PostgreSQL $cluster"
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
  started_pg=$cluster
  for _ in $(seq 50); do pg_isready -q -h "$pg_host" -p "$pg_port" && break; sleep 0.2; done
fi
if ! redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
  say "starting Redis"
  redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no >/dev/null
  started_redis=1
  for _ in $(seq 50); do redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null || fail "Redis is not answering on $redis_host:$redis_port"

database="ha_test_$(date +%s)_$$"
psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE DATABASE \"$database\"" >/dev/null
say "PostgreSQL database $database"

# --- ports and shared secrets -----------------------------------------------------------------
# Free loopback ports, all held until every one is chosen so that none repeats.
read -r nginx_as nginx_mcp as1 as2 as1_metrics as2_metrics mcp1 mcp2 mcp1_metrics mcp2_metrics < <(
  python3 - <<'EOF'
import socket
held = []
for _ in range(10):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
)
issuer="http://127.0.0.1:$nginx_as"
mcp_url="http://127.0.0.1:$nginx_mcp/mcp"
# What the replicas share besides the database: the key-encryption key of the keys at
# rest and mcp-server's client secret. Fresh for each run.
kek=$(head -c 32 /dev/urandom | base64)
client_secret="ha-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

wait_http() {  # URL NAME PID: until URL answers 2xx, or the process exits
  local url=$1 name=$2 pid=$3
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || fail "$name exited before it was ready (log: $name.log)"
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  fail "$name not ready at $url after 30 s"
}

start_auth_server() {  # NAME PORT METRICS_PORT
  local name=$1 port=$2 metrics=$3
  AUTH__DATABASE__URL="postgres://$pg_user@$pg_host:$pg_port/$database" \
  AUTH__RATE_LIMIT__REDIS_URL="redis://$redis_host:$redis_port" \
  AUTH__SERVER__METRICS_LISTEN="127.0.0.1:$metrics" \
  AUTH__SERVER__TRUSTED_PROXIES="127.0.0.1" \
  AUTH__SECRETS__KEY="$kek" \
  AUTH__SECRETS__REQUIRED=true \
  AUTH__DEMO__MCP_SERVER_CLIENT_SECRET="$client_secret" \
  RUST_LOG="${RUST_LOG:-warn}" \
    "$bin_dir/auth-server" serve --demo --listen "127.0.0.1:$port" --issuer "$issuer" \
      --resource "$mcp_url" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz" "$name" "$!"
  say "$name on 127.0.0.1:$port (metrics 127.0.0.1:$metrics), pid $!"
}

start_mcp_server() {  # NAME PORT METRICS_PORT ROUTE
  local name=$1 port=$2 metrics=$3 route=$4
  # Back-channel (discovery, JWKS, revocation feed, admin API) through nginx, like a
  # client: it keeps working when one auth-server replica is gone. The session route is
  # the one deploy/nginx/mcp.conf maps to this replica.
  MCP__SERVER__METRICS_LISTEN="127.0.0.1:$metrics" \
  MCP__TRANSPORT__SESSION_ROUTE="$route" \
  MCP__AUTH__CLIENT_SECRET="$client_secret" \
  RUST_LOG="${RUST_LOG:-warn}" \
    "$bin_dir/mcp-server" serve --demo --listen "127.0.0.1:$port" --resource "$mcp_url" \
      --issuer "$issuer" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/readyz" "$name" "$!"
  say "$name on 127.0.0.1:$port (metrics 127.0.0.1:$metrics), pid $!"
}

# --- auth-server replicas (one after the other: the first creates the schema, keys and demo
# --- accounts, the second finds them) -------------------------------------------------------
start_auth_server auth-server-1 "$as1" "$as1_metrics"
as1_pid=${pids[-1]}
start_auth_server auth-server-2 "$as2" "$as2_metrics"
as2_pid=${pids[-1]}

# --- nginx: the shipped configuration, with loopback addresses ------------------------------
mkdir -p "$work/nginx/logs"
sed -e "s/auth-server-1:3001/127.0.0.1:$as1/; s/auth-server-2:3001/127.0.0.1:$as2/" \
    -e "s/mcp-server-1:3000/127.0.0.1:$mcp1/; s/mcp-server-2:3000/127.0.0.1:$mcp2/" \
    -e "s/^\(\s*\)listen 3001;/\1listen 127.0.0.1:$nginx_as;/" \
    -e "s/^\(\s*\)listen 3000;/\1listen 127.0.0.1:$nginx_mcp;/" \
    deploy/nginx/mcp.conf >"$work/nginx/mcp.conf"
# Every address of the shipped file must have been replaced, or the test would not be
# testing it.
if grep -nE '^[^#]*(auth-server-[0-9]|mcp-server-[0-9]|listen (3000|3001);)' "$work/nginx/mcp.conf"; then
  fail "deploy/nginx/mcp.conf changed shape: the lines above were not rewritten for loopback"
fi
# auth_server (2), mcp_server (2), mcp_server_by_session_id (2), mcp_server_1 and
# mcp_server_2 (each its replica and the other as backup).
[ "$(grep -c "server 127.0.0.1:" "$work/nginx/mcp.conf")" -eq 10 ] \
  || fail "expected 10 upstream server lines in deploy/nginx/mcp.conf"
cat >"$work/nginx/nginx.conf" <<EOF
# The minimal main configuration around deploy/nginx/mcp.conf (as nginx's default
# nginx.conf includes conf.d/*.conf in its http block).
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 1024; }
http {
    log_format upstream '\$remote_addr "\$request" \$status upstream=\$upstream_addr '
                        'upstream_status=\$upstream_status session=\$http_mcp_session_id';
    access_log $work/nginx-access.log upstream;
    client_body_temp_path $work/nginx/client_body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    include $work/nginx/mcp.conf;
}
EOF
"$nginx_bin" -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' \
  || fail "nginx rejects deploy/nginx/mcp.conf"
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >>"$work/nginx.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$nginx_as/nginx-health" nginx "$!"
say "nginx ($("$nginx_bin" -v 2>&1 | sed 's/.*: //')): issuer $issuer, MCP $mcp_url, pid $!"

# --- mcp-server replicas ---------------------------------------------------------------------
start_mcp_server mcp-server-1 "$mcp1" "$mcp1_metrics" mcp-1
mcp1_pid=${pids[-1]}
start_mcp_server mcp-server-2 "$mcp2" "$mcp2_metrics" mcp-2
mcp2_pid=${pids[-1]}

# --- the client ------------------------------------------------------------------------------
say "official TypeScript SDK client through nginx (it kills auth-server-1 and mcp-server-1 on purpose: the shell reports them as Killed)"
(
  cd e2e
  HA_MCP_URL="$mcp_url" HA_ISSUER="$issuer" \
  HA_AUTH_METRICS="http://127.0.0.1:$as1_metrics/metrics,http://127.0.0.1:$as2_metrics/metrics" \
  HA_MCP_METRICS="http://127.0.0.1:$mcp1_metrics/metrics,http://127.0.0.1:$mcp2_metrics/metrics" \
  HA_MCP_REPLICAS="http://127.0.0.1:$mcp1/mcp,http://127.0.0.1:$mcp2/mcp" \
  HA_AUTH_SERVER_PIDS="$as1_pid,$as2_pid" \
  HA_MCP_SERVER_PIDS="$mcp1_pid,$mcp2_pid" \
    node --test --test-concurrency=1 ha-flow.test.js
) || fail "the flow through nginx failed"

# The replicas shared PostgreSQL (not each a file of its own): the clients the flows
# registered are rows there.
clients=$(psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -d "$database" -tAq -c "SELECT count(*) FROM clients")
[ "${clients:-0}" -gt 1 ] || fail "no registered clients in PostgreSQL database $database (found ${clients:-none})"
say "PostgreSQL holds $clients clients"
# nginx met each killed replica and moved the request on (access log: "upstream=dead, live"),
# so the flows above went on through a real failover, not around it.
as_failovers=$(grep -c "upstream=127.0.0.1:$as1, 127.0.0.1:$as2 " "$work/nginx-access.log" || true)
mcp_failovers=$(grep -c "upstream=127.0.0.1:$mcp1, 127.0.0.1:$mcp2 " "$work/nginx-access.log" || true)
say "nginx: $(wc -l <"$work/nginx-access.log") requests; moved from the killed auth-server-1 to auth-server-2: $as_failovers, from the killed mcp-server-1 to mcp-server-2: $mcp_failovers"
[ "$as_failovers" -ge 1 ] || fail "nginx never moved a request off the killed auth-server-1"
[ "$mcp_failovers" -ge 1 ] || fail "nginx never moved a request off the killed mcp-server-1"
say "passed"
