#!/usr/bin/env python3
"""Benchmark driver (called by bench/run.sh, which builds and installs first).

Every server under test runs pinned to CPU 0 (`taskset -c 0`), wrk runs on CPU 1, one
load at a time, 127.0.0.1 only, every load bounded in time. Tokens come from the real
OAuth flow (bench/scripts/oauth.mjs). Results: bench/results/<stamp>/results.json and
table.md; with --write-doc the table section of docs/benchmarks.md is replaced.

Standard library only (Python 3.9+).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
CACHE = BENCH / ".cache"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
LOAD_CPU = "1"
PROTOCOL = "2025-06-18"
TS_EXAMPLE = CACHE / "node/node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js"
FASTMCP_PY = CACHE / "venv/bin/python"

CALL_BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "hello_world", "arguments": {"name": "bench"}}},
    separators=(",", ":"),
)
TS_CALL_BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "bench"}}},
    separators=(",", ":"),
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- processes


class Proc:
    """A server process pinned to one CPU, its output in a log file."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict | None = None, cpu: str = SERVER_CPU, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.env = env or {}
        self.cpu = cpu
        self.cwd = cwd
        self.log_path = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.t_spawn = 0.0

    def start(self) -> "Proc":
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        env.update(self.env)
        logf = open(self.log_path, "ab")
        self.t_spawn = time.perf_counter()
        self.popen = subprocess.Popen(
            ["taskset", "-c", self.cpu, *self.argv],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=self.cwd, start_new_session=True,
        )
        logf.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_ready(self, pattern: str | None = None, url: str | None = None, ok_status=(200,), timeout: float = 60.0) -> dict:
        """Waits for `pattern` in the log and/or `url` answering one of `ok_status`;
        returns the seconds from spawn to each."""
        deadline = time.perf_counter() + timeout
        t_pattern = None if pattern else 0.0
        t_url = None if url else 0.0
        offset = 0
        while time.perf_counter() < deadline:
            if not self.alive():
                raise BenchError(f"{self.name} exited with {self.popen.returncode} before it was ready:\n{self.log_tail()}")
            if t_pattern is None:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                if re.search(pattern.encode(), chunk):
                    t_pattern = time.perf_counter() - self.t_spawn
            if t_pattern is not None and t_url is None:
                status = http_status(url)
                if status in ok_status:
                    t_url = time.perf_counter() - self.t_spawn
            if t_pattern is not None and t_url is not None:
                return {"listening_s": t_pattern, "ready_s": t_url}
            time.sleep(0.001)
        raise BenchError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_ticks(self) -> int:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of the full line (1-based).
        return int(fields[11]) + int(fields[12])

    def stop(self) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def http_status(url: str) -> int | None:
    try:
        status, _, _ = http_request("GET", url, timeout=1.0)
        return status
    except OSError:
        return None


def http_request(method: str, url: str, body: str | None = None, headers: dict | None = None, timeout: float = 10.0):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, path or "/", body=body.encode() if body is not None else None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode(errors="replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def rpc_payloads(body: str) -> list[dict]:
    """JSON-RPC messages of a JSON or SSE answer."""
    body = body.strip()
    if body.startswith("{") or body.startswith("["):
        v = json.loads(body)
        return v if isinstance(v, list) else [v]
    out = []
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data:
                out.append(json.loads(data))
    return out


def open_session(url: str, token: str, protocol: str = PROTOCOL) -> str | None:
    """initialize + notifications/initialized; returns the Mcp-Session-Id (None when the
    server is stateless)."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}",
    }
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": protocol, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    status, h, body = http_request("POST", url, json.dumps(init), headers)
    if status != 200:
        raise BenchError(f"initialize at {url} answered {status}: {body[:500]}")
    msgs = rpc_payloads(body)
    if not any("result" in m for m in msgs):
        raise BenchError(f"initialize at {url} gave no result: {body[:500]}")
    session = h.get("mcp-session-id")
    headers2 = dict(headers, **{"MCP-Protocol-Version": protocol})
    if session:
        headers2["Mcp-Session-Id"] = session
    status, _, body = http_request("POST", url, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers2)
    if status not in (200, 202):
        raise BenchError(f"notifications/initialized at {url} answered {status}: {body[:300]}")
    return session


def check_one_call(url: str, headers: dict, body: str) -> str:
    status, _, resp = http_request("POST", url, body, headers)
    msgs = rpc_payloads(resp) if status == 200 else []
    if status != 200 or not any("result" in m and not m["result"].get("isError") for m in msgs):
        raise BenchError(f"tools/call at {url} answered {status}: {resp[:500]}")
    return resp


def oauth(issuer: str, resource: str | None, scope: str, workdir: Path, pool: int = 0, pool_file: Path | None = None, username: str = "demo", password: str = "demo123") -> dict:
    cmd = ["node", str(BENCH / "scripts/oauth.mjs"), "--issuer", issuer, "--scope", scope, "--username", username, "--password", password]
    if resource:
        cmd += ["--resource", resource]
    if pool:
        cmd += ["--pool", str(pool), "--pool-file", str(pool_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if out.returncode != 0:
        raise BenchError(f"OAuth flow against {issuer} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- wrk


def run_wrk(url: str, script: str, env: dict, conns: int, duration: float, stop_when=None) -> dict:
    """One wrk run; `stop_when()` (polled every 0.2 s) ends it early with SIGINT, after
    which wrk still prints its summary."""
    cmd = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{max(1, int(round(duration)))}s", "--latency", "--timeout", "10s",
        "-s", str(LUA / script), url,
    ]
    full_env = dict(os.environ, BENCH_LUA_DIR=str(LUA), **env)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    if stop_when is not None:
        end = time.monotonic() + duration + 5
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.2)
            if stop_when():
                proc.send_signal(signal.SIGINT)
                break
    try:
        stdout, stderr = proc.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^BENCH_JSON (.*)$", stdout, re.M)
    if not m:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{stdout[-1500:]}\n{stderr[-1500:]}")
    res = json.loads(m.group(1))
    se = res["socket_errors"]
    res["errors"] = res["non2xx"] + res["rpc_errors"] + se["connect"] + se["read"] + se["write"] + se["timeout"]
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    # CPU share of wrk itself (1.0 = its core was saturated: the load generator, not the
    # server, would then be the limit).
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    res["wrk_cpu_util"] = wrk_cpu / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    return res


def measured_load(proc: Proc, url: str, script: str, env: dict, conns: int, duration: float,
                  parts: dict | None = None) -> dict:
    """One wrk run with the CPU of `proc` per request; `parts` (name → process, each
    also counted in `proc` when it is a ProcGroup) get their own CPU per request."""
    parts = parts or {}
    t0 = proc.cpu_ticks()
    p0 = {name: q.cpu_ticks() for name, q in parts.items()}
    res = run_wrk(url, script, env, conns, duration)
    t1 = proc.cpu_ticks()
    p1 = {name: q.cpu_ticks() for name, q in parts.items()}
    done = res.get("ok", res["requests"]) or 1
    res["cpu_us_per_req"] = (t1 - t0) * 1e6 / CLK_TCK / done
    if parts:
        res["parts_cpu_us_per_req"] = {name: (p1[name] - p0[name]) * 1e6 / CLK_TCK / done for name in parts}
    res["cpu_util"] = (t1 - t0) / CLK_TCK / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    return res


def summarize(runs: list[dict]) -> dict:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    extra = {}
    if runs and "parts_cpu_us_per_req" in runs[0]:
        extra["parts_cpu_us_per_req"] = {name: statistics.median(r["parts_cpu_us_per_req"][name] for r in runs)
                                         for name in runs[0]["parts_cpu_us_per_req"]}
    return {
        **extra,
        "runs": len(runs),
        "rps": med("rps"),
        "rps_all": [round(r["rps"]) for r in runs],
        "p50_ms": statistics.median(r["latency_us"]["p50"] for r in runs) / 1000,
        "p99_ms": statistics.median(r["latency_us"]["p99"] for r in runs) / 1000,
        "cpu_us_per_req": med("cpu_us_per_req"),
        "cpu_util": med("cpu_util"),
        "wrk_cpu_util": med("wrk_cpu_util"),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "first_error": next((r["first_error"] for r in runs if r.get("first_error")), None),
    }


# --------------------------------------------------------------------------- cases


class Ctx:
    def __init__(self, args, workdir: Path, bindir: Path):
        self.args = args
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.bindir = bindir
        self.as_port = free_port()
        self.rs_port = free_port()
        self.rs_metrics_port = free_port()
        self.base_port = free_port()
        self.ts_port = free_port()
        self.ts_as_port = free_port()
        self.fast_port = free_port()
        self.upstream_port = free_port()
        self.fast_proxy_port = free_port()
        self.issuer = f"http://127.0.0.1:{self.as_port}"
        self.mcp_url = f"http://127.0.0.1:{self.rs_port}/mcp"
        self.fast_url = f"http://127.0.0.1:{self.fast_port}/mcp"
        self.upstream_url = f"http://127.0.0.1:{self.upstream_port}/mcp"
        self.fast_proxy_url = f"http://127.0.0.1:{self.fast_proxy_port}/mcp"
        self.db = workdir / "auth-server.db"
        self.auth: Proc | None = None
        self.results: dict = {"cases": {}, "auth_server": {}, "cold_start": {}, "long_run": None, "failures": {},
                              "gateway_stdio": None, "gateway_long_run": None}
        self.starts = 0

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    # auth-server -------------------------------------------------------
    def auth_env(self) -> dict:
        return {
            "AUTH__RATE_LIMIT__ENABLED": "false",
            # Not read here; off so that a bench never collides with a running instance.
            "AUTH__SERVER__METRICS_LISTEN": "off",
            "AUTH__OAUTH__RESOURCES": f"{self.mcp_url},{self.fast_url},{self.fast_proxy_url}",
            "AUTH__OAUTH__AUTHORIZATION_CODE_TTL_SECS": "600",
        }

    def auth_argv(self) -> list[str]:
        return [self.bin("auth-server"), "serve", "--demo", "--listen", f"127.0.0.1:{self.as_port}",
                "--issuer", self.issuer, "--db", str(self.db)]

    def start_auth(self, cpu: str) -> Proc:
        self.starts += 1
        p = Proc(f"auth-server-{self.starts}", self.auth_argv(), self.logdir, self.auth_env(), cpu=cpu).start()
        times = p.wait_ready(r"listening on http://", f"{self.issuer}/healthz")
        self.auth = p
        return p, times

    def stop_auth(self) -> None:
        if self.auth:
            self.auth.stop()
            self.auth = None

    # mcp-server --------------------------------------------------------
    def mcp_argv(self) -> list[str]:
        return [self.bin("mcp-server"), "serve", "--demo", "--listen", f"127.0.0.1:{self.rs_port}",
                "--resource", self.mcp_url, "--issuer", self.issuer]

    def start_mcp(self, name: str, env: dict, extra_argv: list[str] | None = None) -> tuple[Proc, dict]:
        env = dict({"MCP__SERVER__WORKERS": "1",
                    "MCP__SERVER__METRICS_LISTEN": f"127.0.0.1:{self.rs_metrics_port}"},
                   **env, **self.args.mcp_env)
        p = Proc(name, self.mcp_argv() + (extra_argv or []), self.logdir, env, cwd=ROOT).start()
        times = p.wait_ready(r"listening on http://", f"http://127.0.0.1:{self.rs_port}/readyz")
        return p, times


def rpc_env(token: str | None, session: str | None, body: str, check: str = "jsonrpc", extra: dict | None = None,
            tokens_file: Path | None = None) -> dict:
    """wrk environment for rpc.lua. On a session every request gets its own JSON-RPC id
    (concurrent requests of one session must not share one); elsewhere the body is
    static, the cheapest for wrk."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    headers.update(extra or {})
    env = {
        "BENCH_METHOD": "POST",
        "BENCH_BODY": body,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers.items()),
        "BENCH_CHECK": check,
    }
    if tokens_file:
        env["BENCH_TOKENS_FILE"] = str(tokens_file)
    if session:
        marker = '"id":1,'
        if marker not in body:
            raise BenchError("the request body has no '\"id\":1,' to make unique")
        prefix, suffix = body.split(marker, 1)
        env["BENCH_BODY_ID_PREFIX"] = prefix + '"id":'
        env["BENCH_BODY_ID_SUFFIX"] = "," + suffix
    return env, headers


def load_case(ctx: Ctx, key: str, label: str, proc: Proc, url: str, env: dict, conns: list[int], note: str = "",
              parts: dict | None = None) -> dict:
    a = ctx.args
    rss_idle = proc.rss_kib()
    if a.warmup > 0:
        run_wrk(url, "rpc.lua", env, max(conns), a.warmup)
    per_c = {}
    for c in conns:
        runs = []
        for i in range(a.runs):
            r = measured_load(proc, url, "rpc.lua", env, c, a.duration, parts)
            split = "".join(f", {name} {v:.1f}" for name, v in r.get("parts_cpu_us_per_req", {}).items())
            log(f"  {key} c={c} run {i + 1}: {r['rps']:.0f} req/s p99 {r['latency_us']['p99'] / 1000:.2f} ms "
                f"cpu {r['cpu_us_per_req']:.1f} us/req{split} (server {100 * r['cpu_util']:.0f} %, wrk {100 * r['wrk_cpu_util']:.0f} %) errors {r['errors']}")
            runs.append(r)
        per_c[str(c)] = summarize(runs)
    result = {"label": label, "note": note, "rss_idle_kib": rss_idle, "rss_after_kib": proc.rss_kib(), "conns": per_c}
    ctx.results["cases"][key] = result
    if key in a.perf:
        profile(ctx, key, proc, url, "rpc.lua", env, max(conns))
    return result


def profile(ctx: Ctx, key: str, proc: Proc, url: str, script: str, env: dict, conns: int) -> None:
    """An extra, unrecorded run under `perf record -e cpu-clock` (software clock: no
    hardware counters in this VM); the flat profile goes to perf-KEY.txt."""
    data = ctx.workdir / f"perf-{key}.data"
    rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "4000", "-p", str(proc.pid), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        run_wrk(url, script, env, conns, ctx.args.duration)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "-F", "overhead,dso,sym", "--stdio",
                             "--percent-limit", "0.3"], capture_output=True, text=True, timeout=300)
    (ctx.workdir / f"perf-{key}.txt").write_text("\n".join(line.rstrip() for line in report.stdout.splitlines()) + "\n")
    log(f"  perf profile of {key}: {ctx.workdir / f'perf-{key}.txt'}")


def case_baseline(ctx: Ctx, conns: list[int], es256: bool) -> None:
    key = "baseline_es256" if es256 else "baseline"
    argv = [ctx.bin("baseline"), "--listen", f"127.0.0.1:{ctx.base_port}", "--workers", "1"]
    if es256:
        argv += ["--verify-es256", f"{ctx.issuer}/jwks.json", "--issuer", ctx.issuer, "--audience", ctx.mcp_url]
    tok = oauth(ctx.issuer, ctx.mcp_url, "mcp:read", ctx.workdir)
    p = Proc(key, argv, ctx.logdir).start()
    try:
        p.wait_ready(r"listening on http://", f"http://127.0.0.1:{ctx.base_port}/readyz")
        url = f"http://127.0.0.1:{ctx.base_port}/mcp"
        env, headers = rpc_env(tok["access_token"], None, CALL_BODY, extra={"Mcp-Session-Id": "bench-session-id"})
        check_one_call(url, headers, CALL_BODY)
        label = "baseline: bare actix-web JSON-RPC handler, no auth (the ceiling)" if not es256 else \
            "baseline + one ES256 JWT verify per request (ceiling with ES256)"
        load_case(ctx, key, label, p, url, env, conns)
    finally:
        p.stop()


def verification_histogram(metrics_url: str) -> dict | None:
    """Cache evidence from mcp-server's /metrics (`mcp_server_token_verification_seconds`
    by outcome): how many requests were answered from the verified-token cache
    (`cached`), how many needed a full verification (`valid`), and how many of the full
    ones took under 10 µs."""
    try:
        status, _, text = http_request("GET", metrics_url)
    except OSError:
        return None
    if status != 200:
        return None
    counts: dict = {}
    fast_valid = None
    for line in text.splitlines():
        if not line.startswith("mcp_server_token_verification_seconds"):
            continue
        m = re.search(r'outcome="([^"]+)"', line)
        if not m:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("mcp_server_token_verification_seconds_count"):
            counts[m.group(1)] = int(value)
        le = re.search(r'le="([^"]+)"', line)
        if m.group(1) == "valid" and le and le.group(1) != "+Inf" and abs(float(le.group(1)) - 1e-5) < 1e-12:
            fast_valid = int(value)
    if not counts:
        return None
    return {"cached": counts.get("cached", 0), "full": counts.get("valid", 0), "invalid": counts.get("invalid", 0),
            "full_under_10us": fast_valid}


def case_mcp(ctx: Ctx, key: str, label: str, conns: list[int], env: dict, stateless: bool = False, pool: int = 0,
             note: str = "", keep: bool = False) -> Proc | None:
    """One mcp-server configuration under load; with `keep` the server is left running
    (and returned) for the long run."""
    tokens_file = ctx.workdir / f"{key}-tokens.txt" if pool else None
    tok = oauth(ctx.issuer, ctx.mcp_url, "mcp:read", ctx.workdir, pool=pool, pool_file=tokens_file)
    p, _ = ctx.start_mcp(key, env)
    try:
        session = None if stateless else open_session(ctx.mcp_url, tok["access_token"])
        extra = {"Mcp-Method": "tools/call", "Mcp-Name": "hello_world"} if stateless else {}
        env_w, headers = rpc_env(tok["access_token"], session, CALL_BODY, extra=extra, tokens_file=tokens_file)
        check_one_call(ctx.mcp_url, headers, CALL_BODY)
        result = load_case(ctx, key, label, p, ctx.mcp_url, env_w, conns, note)
        hist = verification_histogram(f"http://127.0.0.1:{ctx.rs_metrics_port}/metrics")
        if hist:
            result["verification"] = hist
            log(f"  {key}: {hist['cached']:,} requests answered from the token cache, {hist['full']:,} full verifications")
    except BaseException:
        p.stop()
        raise
    if keep:
        return p
    p.stop()
    return None


def case_ts(ctx: Ctx, conns: list[int]) -> None:
    if not TS_EXAMPLE.exists():
        raise BenchError(f"TypeScript SDK example missing: {TS_EXAMPLE} (run bench/run.sh, which installs it)")
    env = {"MCP_PORT": str(ctx.ts_port), "MCP_AUTH_PORT": str(ctx.ts_as_port)}
    p = Proc("ts-sdk-example", ["node", str(TS_EXAMPLE), "--oauth"], ctx.logdir, env, cwd=TS_EXAMPLE.parent).start()
    try:
        url = f"http://127.0.0.1:{ctx.ts_port}/mcp"
        p.wait_ready(r"MCP Streamable HTTP Server listening", None)
        p.wait_ready(r"OAuth Authorization Server listening", None)
        # Its own demo AS (in the same process) is the issuer; the flow is the same.
        tok = oauth(f"http://localhost:{ctx.ts_as_port}", f"http://localhost:{ctx.ts_port}/mcp", "mcp:tools", ctx.workdir)
        session = open_session(url, tok["access_token"])
        env_w, headers = rpc_env(tok["access_token"], session, TS_CALL_BODY)
        check_one_call(url, headers, TS_CALL_BODY)
        load_case(ctx, "ts_sdk", "TypeScript SDK 1.32 example RS (`simpleStreamableHttp.js --oauth`, introspection per request)",
                  p, url, env_w, conns, note="its in-process demo AS answers the introspection; it logs every request (stdout to a file)")
    finally:
        p.stop()


def case_fastmcp(ctx: Ctx, conns: list[int]) -> None:
    if not FASTMCP_PY.exists():
        raise BenchError(f"FastMCP venv missing: {FASTMCP_PY} (run bench/run.sh, which installs it)")
    argv = [str(FASTMCP_PY), str(BENCH / "peers/fastmcp_server.py"), "--port", str(ctx.fast_port),
            "--issuer", ctx.issuer, "--jwks-uri", f"{ctx.issuer}/jwks.json", "--audience", ctx.fast_url]
    p = Proc("fastmcp", argv, ctx.logdir).start()
    try:
        p.wait_ready(None, ctx.fast_url, ok_status=(401, 405, 406, 400))
        tok = oauth(ctx.issuer, ctx.fast_url, "mcp:read", ctx.workdir)
        session = open_session(ctx.fast_url, tok["access_token"])
        env_w, headers = rpc_env(tok["access_token"], session, CALL_BODY)
        check_one_call(ctx.fast_url, headers, CALL_BODY)
        load_case(ctx, "fastmcp", "FastMCP RS (`JWTVerifier`, local ES256 verify against our JWKS)", p, ctx.fast_url, env_w, conns)
    finally:
        p.stop()


# --------------------------------------------------------------------------- gateway


def start_upstream(ctx: Ctx, name: str) -> Proc:
    """bench-upstream (rmcp, stateless JSON, no auth) on the server CPU."""
    p = Proc(name, [ctx.bin("bench-upstream"), "--listen", f"127.0.0.1:{ctx.upstream_port}"], ctx.logdir).start()
    p.wait_ready(r"listening on http://", None)
    return p


def start_gateway(ctx: Ctx, name: str, upstream: list[str]) -> Proc:
    """mcp-server in gateway mode (`upstream` = its --upstream-url/--upstream-cmd flag),
    with the same settings as the mcp-server cases."""
    p, _ = ctx.start_mcp(name, {}, extra_argv=upstream)
    return p


def case_gateway_http(ctx: Ctx, conns: list[int]) -> None:
    """bench-upstream alone, then mcp-server's gateway in front of it (session mode,
    real token); both on the server CPU, wrk alone on the load CPU."""
    up = start_upstream(ctx, "gateway-upstream")
    gw = None
    try:
        env_w, headers = rpc_env(None, None, CALL_BODY)
        check_one_call(ctx.upstream_url, headers, CALL_BODY)
        load_case(ctx, "gateway_upstream", "bench-upstream called directly (rmcp stateless JSON, no auth; CPU 0)",
                  up, ctx.upstream_url, env_w, conns)
        for c in conns:
            ctx.results.setdefault("gateway_floor", {})[str(c)] = exchange_floor(ctx, up, c)
        tok = oauth(ctx.issuer, ctx.mcp_url, "mcp:read", ctx.workdir)
        gw = start_gateway(ctx, "gateway-http", ["--upstream-url", ctx.upstream_url])
        session = open_session(ctx.mcp_url, tok["access_token"])
        env_w, headers = rpc_env(tok["access_token"], session, CALL_BODY)
        check_one_call(ctx.mcp_url, headers, CALL_BODY)
        load_case(ctx, "gateway_http",
                  "mcp-server gateway → bench-upstream (session mode, known token; gateway + upstream on CPU 0, CPU µs/req of both)",
                  ProcGroup([gw, up]), ctx.mcp_url, env_w, conns, parts={"gateway": gw, "upstream": up})
    finally:
        if gw:
            gw.stop()
        up.stop()


def exchange_floor(ctx: Ctx, up: Proc, c: int) -> dict:
    """bench-exchange (a bare hyper client, the one the gateway's direct route uses) on
    the server CPU beside the upstream, as the gateway runs: the CPU per call of the
    hop alone, and of the upstream behind it."""
    argv = ["taskset", "-c", SERVER_CPU, ctx.bin("bench-exchange"), "--url", ctx.upstream_url,
            "--conns", str(c), "--seconds", str(ctx.args.duration)]
    u0 = up.cpu_ticks()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    out = p.stdout.read() if p.stdout else ""
    p.returncode = os.waitstatus_to_exitcode(status)
    u1 = up.cpu_ticks()
    if p.returncode != 0:
        raise BenchError(f"bench-exchange failed: {p.stderr.read() if p.stderr else ''}")
    res = json.loads(out)
    done = max(res["requests"] - res["errors"], 1)
    floor = {"requests": res["requests"], "errors": res["errors"], "rps": res["requests"] / res["seconds"],
             "client_cpu_us_per_req": (usage.ru_utime + usage.ru_stime) * 1e6 / done,
             "upstream_cpu_us_per_req": (u1 - u0) * 1e6 / CLK_TCK / done}
    log(f"  gateway_floor c={c}: bare client {floor['rps']:.0f} req/s, client {floor['client_cpu_us_per_req']:.1f} us/req, "
        f"upstream behind it {floor['upstream_cpu_us_per_req']:.1f} us/req, errors {res['errors']}")
    if res["errors"]:
        raise BenchError(f"bench-exchange: {res['errors']} calls without a result")
    return floor


def case_gateway_fastmcp(ctx: Ctx, conns: list[int]) -> None:
    """FastMCP's proxy (JWTVerifier in front) → bench-upstream, placed as case_gateway_http."""
    if not FASTMCP_PY.exists():
        raise BenchError(f"FastMCP venv missing: {FASTMCP_PY} (run bench/run.sh, which installs it)")
    up = start_upstream(ctx, "fastmcp-proxy-upstream")
    p = None
    try:
        argv = [str(FASTMCP_PY), str(BENCH / "peers/fastmcp_proxy.py"), "--port", str(ctx.fast_proxy_port),
                "--upstream", ctx.upstream_url, "--issuer", ctx.issuer, "--jwks-uri", f"{ctx.issuer}/jwks.json",
                "--audience", ctx.fast_proxy_url]
        p = Proc("fastmcp-proxy", argv, ctx.logdir).start()
        p.wait_ready(None, ctx.fast_proxy_url, ok_status=(401, 405, 406, 400))
        tok = oauth(ctx.issuer, ctx.fast_proxy_url, "mcp:read", ctx.workdir)
        session = open_session(ctx.fast_proxy_url, tok["access_token"])
        env_w, headers = rpc_env(tok["access_token"], session, CALL_BODY)
        check_one_call(ctx.fast_proxy_url, headers, CALL_BODY)
        load_case(ctx, "gateway_fastmcp",
                  "FastMCP proxy (`create_proxy` + `JWTVerifier`) → bench-upstream (proxy + upstream on CPU 0, CPU µs/req of both)",
                  ProcGroup([p, up]), ctx.fast_proxy_url, env_w, conns, parts={"proxy": p, "upstream": up})
    finally:
        if p:
            p.stop()
        up.stop()


def latency_run(ctx: Ctx, transport: list[str], token: str | None = None) -> dict:
    """bench-latency on the load CPU: --latency-calls sequential tools/call, timed one by one."""
    a = ctx.args
    argv = ["taskset", "-c", LOAD_CPU, ctx.bin("bench-latency"), "--calls", str(a.latency_calls),
            "--warmup", str(max(a.latency_calls // 10, 10)), *transport]
    env = dict(os.environ, BENCH_TOKEN=token) if token else None
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if out.returncode != 0:
        raise BenchError(f"bench-latency {' '.join(transport[:2])} failed: {(out.stderr or out.stdout)[-1500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def case_gateway_stdio(ctx: Ctx) -> None:
    """Sequential calls through the gateway to a stdio child (bench-upstream --stdio,
    started by the gateway for the session: it inherits CPU 0), against the same
    server started by a direct stdio client (taskset to CPU 0); clients on CPU 1."""
    tok = oauth(ctx.issuer, ctx.mcp_url, "mcp:read", ctx.workdir)
    gw = start_gateway(ctx, "gateway-stdio", ["--upstream-cmd", f"{ctx.bin('bench-upstream')} --stdio"])
    try:
        through = latency_run(ctx, ["http", "--url", ctx.mcp_url], tok["access_token"])
        children = child_pids(gw.pid)
        child_rss = sum(pid_rss_kib(pid) for pid in children)
        gw_rss = gw.rss_kib()
    finally:
        gw.stop()
    direct = latency_run(ctx, ["stdio", "taskset", "-c", SERVER_CPU, ctx.bin("bench-upstream"), "--stdio"])
    ctx.results["gateway_stdio"] = {"through_gateway": through, "direct": direct, "gateway_rss_kib": gw_rss,
                                    "child_rss_kib": child_rss, "children": len(children)}
    for name, r in (("through the gateway", through), ("direct stdio client", direct)):
        log(f"  gateway_stdio {name}: {r['calls']} calls, p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, errors {r['errors']}")
    if through["errors"] or direct["errors"]:
        raise BenchError(f"error answers: {through['errors']} through the gateway, {direct['errors']} direct")


def case_gateway_long(ctx: Ctx, target: int) -> None:
    """The gateway in front of bench-upstream under closed-loop load until `target`
    proxied calls; the gateway's RSS and the upstream's, each sampled after every chunk."""
    up = start_upstream(ctx, "gateway-long-upstream")
    gw = None
    try:
        gw = start_gateway(ctx, "gateway-long", ["--upstream-url", ctx.upstream_url])
        rps_hint = ctx.results["cases"].get("gateway_http", {}).get("conns", {}).get("64", {}).get("rps") or 5000.0
        ctx.results["gateway_long_run"] = lr = long_run(ctx, gw, target, rps_hint, others={"upstream": up})
        if lr["errors"]:
            raise BenchError(f"{lr['errors']} error answers through the gateway in the long run")
    finally:
        if gw:
            gw.stop()
        up.stop()


def long_run(ctx: Ctx, p: Proc, target: int, rps_hint: float, others: dict | None = None) -> dict:
    """Closed-loop load on the known-token session until `target` requests, RSS sampled
    after ~100k and then after every chunk (also of the `others` processes, apart)."""
    others = others or {}
    tok = oauth(ctx.issuer, ctx.mcp_url, "mcp:read", ctx.workdir)
    session = open_session(ctx.mcp_url, tok["access_token"])
    env, _ = rpc_env(tok["access_token"], session, CALL_BODY)

    def sample(n: int) -> dict:
        return {"requests": n, "rss_kib": p.rss_kib(), **{f"{k}_rss_kib": q.rss_kib() for k, q in others.items()}}
    samples = [sample(0)]
    total, errors = 0, 0
    step = min(100_000, target)
    deadline = time.monotonic() + 600
    while total < target and time.monotonic() < deadline:
        # Chunks of ~100k requests (sized from the last measured rate), RSS after each.
        want = min(step, target - total)
        secs = min(60.0, max(1.0, want / max(rps_hint, 1.0)))
        r = run_wrk(ctx.mcp_url, "rpc.lua", env, 64, secs)
        total += r["requests"]
        errors += r["errors"]
        rps_hint = r["rps"] or rps_hint
        samples.append(sample(total))
        extra = "".join(f", {k} {q.rss_kib() / 1024:.1f} MiB" for k, q in others.items())
        log(f"  long run: {total} requests, RSS {samples[-1]['rss_kib'] / 1024:.1f} MiB{extra}, errors {errors}")
    return {"target": target, "requests": total, "errors": errors, "samples": samples}


def cold_start(ctx: Ctx, reps: int) -> None:
    # mcp-server: the AS is up (on the load CPU); time from spawn to "listening on" and
    # to /readyz 200.
    rows = []
    for i in range(reps):
        p, t = ctx.start_mcp(f"mcp-cold-{i}", {})
        rows.append(t)
        p.stop()
    ctx.results["cold_start"]["mcp_server"] = {
        "listening_ms": statistics.median(r["listening_s"] for r in rows) * 1000,
        "ready_ms": statistics.median(r["ready_s"] for r in rows) * 1000,
        "all_ready_ms": [round(r["ready_s"] * 1000, 1) for r in rows],
    }


def auth_server_loads(ctx: Ctx) -> None:
    """/token authorization_code exchanges, DCR, /jwks.json; the AS on the server CPU."""
    a = ctx.args
    # Cold start of the AS with an existing database, measured on the restarts.
    ctx.stop_auth()
    rows = []
    for _ in range(a.cold_reps):
        p, t = ctx.start_auth(SERVER_CPU)
        rows.append(t)
        ctx.stop_auth()
    if rows:
        ctx.results["cold_start"]["auth_server"] = {
            "listening_ms": statistics.median(r["listening_s"] for r in rows) * 1000,
            "ready_ms": statistics.median(r["ready_s"] for r in rows) * 1000,
            "all_ready_ms": [round(r["ready_s"] * 1000, 1) for r in rows],
        }
    p, _ = ctx.start_auth(SERVER_CPU)
    out = ctx.results["auth_server"]
    c = 64
    # --- /token: codes minted beforehand through /authorize with the browser's session.
    s = token_exchange_runs(ctx, p, ctx.issuer, "auth_server", c)
    out["token"] = dict(s, label="`/token` authorization_code exchange (ES256 JWT + refresh token, SQLite)")

    # --- DCR
    dcr_body = json.dumps({
        "client_name": "bench dcr", "redirect_uris": ["http://127.0.0.1:9/cb"], "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"], "token_endpoint_auth_method": "none", "scope": "mcp:read",
    })
    for key, url, env, label in [
        ("register", f"{ctx.issuer}/register",
         {"BENCH_METHOD": "POST", "BENCH_BODY": dcr_body, "BENCH_HEADERS": "Content-Type: application/json\nAccept: application/json", "BENCH_CHECK": "status"},
         "`/register` dynamic client registration (SQLite insert)"),
        ("jwks", f"{ctx.issuer}/jwks.json", {"BENCH_METHOD": "GET", "BENCH_HEADERS": "Accept: application/json", "BENCH_CHECK": "status"},
         "`/jwks.json`"),
    ]:
        runs = []
        for i in range(a.runs):
            r = measured_load(p, url, "rpc.lua", env, c, a.duration)
            log(f"  {key} run {i + 1}: {r['rps']:.0f} req/s p99 {r['latency_us']['p99'] / 1000:.2f} ms cpu {r['cpu_us_per_req']:.1f} us/req errors {r['errors']}")
            runs.append(r)
        out[key] = dict(summarize(runs), label=label, rss_after_kib=p.rss_kib())
    ctx.stop_auth()


def micro(ctx: Ctx) -> None:
    """criterion micro-benchmarks (bench/benches/hot_paths.rs), pinned to the server CPU."""
    build = subprocess.run(["cargo", "bench", "-p", "bench", "--bench", "hot_paths", "--no-run"],
                           cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if build.returncode != 0:
        raise BenchError(f"cargo bench --no-run failed:\n{build.stderr[-2000:]}")
    out = subprocess.run(["taskset", "-c", SERVER_CPU, "cargo", "bench", "-p", "bench", "--bench", "hot_paths", "--",
                          "--warm-up-time", "1", "--measurement-time", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800)
    (ctx.workdir / "criterion.txt").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise BenchError(f"cargo bench failed:\n{out.stderr[-2000:]}")
    rows, name = [], None
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+/\S+)\s*(time:.*)?$", line.strip())
        if m and not line.startswith(" "):
            name = m.group(1)
        t = re.search(r"time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
        if t and name:
            rows.append({"name": name, "low": t.group(1), "median": t.group(2), "high": t.group(3)})
            name = None
    ctx.results["micro"] = rows
    for r in rows:
        log(f"  {r['name']}: {r['median']}")


# --------------------------------------------------------------------------- PostgreSQL


PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def psql(sql: str, db: str = "postgres") -> str:
    out = subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", db, "-tAq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise BenchError(f"psql failed: {out.stderr.strip()[:500]}")
    return out.stdout.strip()


class PgDatabase:
    """A fresh PostgreSQL database for one case, dropped afterwards (also on failure)."""

    def __init__(self, suffix: str):
        self.name = f"bench_{suffix}_{os.getpid()}_{int(time.time())}"

    def __enter__(self) -> "PgDatabase":
        if subprocess.run(["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)]).returncode != 0:
            raise BenchError(f"PostgreSQL is not answering on {PG_HOST}:{PG_PORT}")
        psql(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        try:
            psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except BenchError as e:
            log(f"  could not drop database {self.name}: {e}")

    def url(self, port: int = PG_PORT) -> str:
        # No TLS on loopback: the proxy of the round-trip case reads the protocol, and
        # the load cases should not time a TLS layer the single-node setup lacks.
        return f"postgres://{PG_USER}@{PG_HOST}:{port}/{self.name}?sslmode=disable"

    def backend_pids(self) -> list[int]:
        rows = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}' AND pid <> pg_backend_pid()")
        return [int(x) for x in rows.split()]

    def stats(self) -> dict:
        cols = ["xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched", "tup_returned"]
        row = psql(f"SELECT {', '.join(cols)} FROM pg_stat_database WHERE datname = '{self.name}'")
        return dict(zip(cols, (int(x) for x in row.split("|"))))


def pid_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def pid_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def child_pids(pid: int) -> list[int]:
    """The children of every thread of `pid` (a child started from a tokio worker thread
    is listed under that thread, not the main one)."""
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return out


class ProcGroup:
    """Several server processes measured as one (replicas, nginx and its workers), plus
    the PostgreSQL backends serving the case's database, whose CPU is reported apart."""

    def __init__(self, procs: list[Proc], db: PgDatabase | None = None):
        self.procs = procs
        self.db = db
        self._db_t0: dict[int, int] = {}

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def pids(self) -> list[int]:
        out = []
        for p in self.procs:
            out.append(p.pid)
            # nginx: the master's workers; our servers have no child processes.
            out.extend(child_pids(p.pid))
        return out

    def cpu_ticks(self) -> int:
        return sum(pid_ticks(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            except OSError:
                pass
        return total

    def db_ticks(self) -> dict[int, int]:
        return {pid: pid_ticks(pid) for pid in self.db.backend_pids()} if self.db else {}


def measured_db_load(group: ProcGroup, url: str, script: str, env: dict, conns: int, duration: float) -> dict:
    """measured_load, plus the CPU of the database's backends for the same requests."""
    db0 = group.db_ticks()
    res = measured_load(group, url, script, env, conns, duration)
    db1 = group.db_ticks()
    ticks = sum(t - db0.get(pid, 0) for pid, t in db1.items())
    done = res.get("ok", res["requests"]) or 1
    res["db_cpu_us_per_req"] = ticks * 1e6 / CLK_TCK / done
    return res


def pg_auth_env(ctx: Ctx, db: PgDatabase, kek: str, db_port: int = PG_PORT) -> dict:
    env = dict(ctx.auth_env())
    env.update({
        "AUTH__DATABASE__URL": db.url(db_port),
        # The replicas share the key-encryption key of the signing keys at rest.
        "AUTH__SECRETS__KEY": kek,
        "AUTH__SERVER__TRUSTED_PROXIES": "127.0.0.1",
    })
    return env


def start_pg_auth(ctx: Ctx, name: str, port: int, issuer: str, env: dict, cpu: str = SERVER_CPU) -> Proc:
    argv = [ctx.bin("auth-server"), "serve", "--demo", "--listen", f"127.0.0.1:{port}", "--issuer", issuer]
    p = Proc(name, argv, ctx.logdir, env, cpu=cpu).start()
    p.wait_ready(r"listening on http://", f"http://127.0.0.1:{port}/healthz")
    return p


def new_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def token_exchange_runs(ctx: Ctx, group, issuer: str, key: str, c: int = 64) -> dict:
    """Runs of /token authorization_code exchanges against `issuer`: each run mints up to
    --token-codes codes through /authorize (the browser's session, consent remembered),
    then exchanges them at c connections; `group` is what the CPU is measured on."""
    a = ctx.args
    tok = oauth(issuer, ctx.mcp_url, "mcp:read", ctx.workdir)
    auth_url = urllib.parse.urlsplit(tok["authorize_url"])
    authorize_target = f"{issuer}{auth_url.path}?{auth_url.query}"
    token_url = tok["token_endpoint"].replace("http://localhost", "http://127.0.0.1")
    prefix = "grant_type=authorization_code&client_id=" + urllib.parse.quote(tok["client_id"], safe="") + "&code="
    suffix = "&" + urllib.parse.urlencode({"redirect_uri": tok["redirect_uri"], "code_verifier": tok["code_verifier"], "resource": ctx.mcp_url})

    def exchange_env(codes_file: Path) -> dict:
        return {"BENCH_CODES_FILE": str(codes_file), "BENCH_BODY_PREFIX": prefix, "BENCH_BODY_SUFFIX": suffix}

    def mint(codes_file: Path) -> tuple[int, dict]:
        codes_file.write_text("")

        def enough() -> bool:
            try:
                return codes_file.read_bytes().count(b"\n") >= a.token_codes
            except OSError:
                return False
        result = run_wrk(authorize_target, "mint_codes.lua",
                         {"BENCH_HEADERS": f"Cookie: {tok['cookie']}", "BENCH_CODES_OUT": str(codes_file), "BENCH_MAX_CODES": str(a.token_codes)},
                         16, a.mint_secs, stop_when=enough)
        n_codes = sum(1 for line in codes_file.read_text().splitlines() if line.strip())
        if n_codes < 100:
            raise BenchError(f"minting codes through /authorize failed ({n_codes} codes): {result.get('first_error')}")
        return n_codes, result

    rss_idle = group.rss_kib()
    runs = []
    for i in range(a.runs):
        codes_file = ctx.workdir / f"codes-{key}-{i}.txt"
        n_codes, minted = mint(codes_file)
        if isinstance(group, ProcGroup):
            r = measured_db_load(group, token_url, "token_exchange.lua", exchange_env(codes_file), c, a.duration)
        else:
            r = measured_load(group, token_url, "token_exchange.lua", exchange_env(codes_file), c, a.duration)
        elapsed = r.get("elapsed_us") or r["duration_us"]
        r["rps"] = r.get("ok", 0) / (elapsed / 1e6) if elapsed else 0.0
        r["codes"] = n_codes
        r["authorize_rps"] = minted["rps"]
        db_cpu = f", database {r['db_cpu_us_per_req']:.1f} us/req" if "db_cpu_us_per_req" in r else ""
        log(f"  {key} run {i + 1}: {n_codes} codes minted ({minted['rps']:.0f}/s through /authorize), "
            f"{r.get('ok', 0)} exchanges at {r['rps']:.0f}/s, p99 {r['latency_us']['p99'] / 1000:.2f} ms, "
            f"cpu {r['cpu_us_per_req']:.1f} us/req{db_cpu}, errors {r['errors']}")
        runs.append(r)
    if key in a.perf:
        codes_file = ctx.workdir / f"codes-{key}-perf.txt"
        mint(codes_file)
        profile(ctx, key, group, token_url, "token_exchange.lua", exchange_env(codes_file), c)
    s = summarize(runs)
    s["authorize_rps"] = statistics.median(r["authorize_rps"] for r in runs)
    s["codes_per_run"] = [r["codes"] for r in runs]
    if runs and "db_cpu_us_per_req" in runs[0]:
        s["db_cpu_us_per_req"] = statistics.median(r["db_cpu_us_per_req"] for r in runs)
    s["rss_idle_kib"] = rss_idle
    s["rss_after_kib"] = group.rss_kib()
    return s


def case_token_pg(ctx: Ctx) -> None:
    """/token exchanges with one auth-server replica on PostgreSQL (server on CPU 0;
    PostgreSQL is the machine's own service and not pinned), then the same exchanges'
    statements run by pgbench alone on the same database: PostgreSQL's ceiling."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with PgDatabase("token") as db:
        p = start_pg_auth(ctx, "auth-server-pg", port, issuer, pg_auth_env(ctx, db, new_kek()))
        try:
            s = token_exchange_runs(ctx, ProcGroup([p], db), issuer, "auth_token_pg")
        finally:
            p.stop()
        ceiling = pg_ceiling_runs(ctx, db)
    ctx.results["auth_server"]["token_pg"] = dict(
        s, label="`/token` authorization_code exchange, PostgreSQL, one replica (CPU µs/req: auth-server; PostgreSQL unpinned)",
        ceiling=ceiling)


def backend_ticks_sampler(db: PgDatabase, stop: threading.Event, seen: dict[int, int]) -> None:
    """Keeps the latest CPU ticks of each backend of `db` until `stop`: pgbench's
    backends exit with it, so their totals are read while they run (every 0.2 s)."""
    while not stop.is_set():
        for pid in db.backend_pids():
            seen[pid] = max(seen.get(pid, 0), pid_ticks(pid))
        stop.wait(0.2)


def pg_ceiling_runs(ctx: Ctx, db: PgDatabase, c: int = 8) -> dict:
    """PostgreSQL alone running one exchange's statements (bench/pg/code_exchange.sql)
    through pgbench -M prepared, pgbench on the load CPU as wrk is: what the database
    can do for these exchanges without HTTP, JWT signing or the driver. At c = 8
    connections, auth-server's pool (`database.max_connections`): the database serves
    the replica through those, and on 2 CPUs more backends only add context switches
    (64 pgbench connections do about a third fewer exchanges per second than 8). Runs
    on the database auth_token_pg has just filled, after its auth-server stopped."""
    if not shutil.which("pgbench"):
        raise BenchError("pgbench is not installed (Debian: postgresql-client)")
    a = ctx.args
    row = psql("SELECT client_id, user_id, resource FROM auth_codes LIMIT 1", db.name)
    if not row:
        raise BenchError("no code left by auth_token_pg to take the client and user from")
    client, user_id, resource = row.split("|")
    per_run = 8000 * int(a.duration + 1)
    psql("CREATE SEQUENCE IF NOT EXISTS bench_code_seq", db.name)
    psql("INSERT INTO auth_codes (code_hash, client_id, user_id, redirect_uri, scope, resource, code_challenge, "
         "nonce, auth_time, created_at, expires_at, used_at, grant_id) "
         f"SELECT 'bench-code-' || g, '{client}', '{user_id}', 'http://127.0.0.1/callback', 'mcp:read', '{resource}', "
         f"'challenge', NULL, 1, 1, 4102444800, NULL, NULL FROM generate_series(1, {per_run * a.runs}) g", db.name)
    psql("VACUUM ANALYZE auth_codes", db.name)
    script = ROOT / "bench/pg/code_exchange.sql"
    runs = []
    for i in range(a.runs):
        seen: dict[int, int] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=backend_ticks_sampler, args=(db, stop, seen), daemon=True)
        sampler.start()
        argv = ["taskset", "-c", LOAD_CPU, "pgbench", "-n", "-M", "prepared", "-c", str(c), "-j", "1",
                "-T", str(int(a.duration)), "-f", str(script), "-D", f"client={client}", "-D", f"resource={resource}",
                "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, db.name]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=a.duration + 120)
        stop.set()
        sampler.join()
        if out.returncode != 0:
            raise BenchError(f"pgbench failed: {(out.stderr or out.stdout).strip()[-800:]}")
        done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
        tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        if not done or not tps:
            raise BenchError(f"pgbench output not understood: {out.stdout[-800:]}")
        n = int(done.group(1))
        r = {"rps": float(tps.group(1)), "transactions": n, "failed": int(failed.group(1)) if failed else 0,
             "db_cpu_us_per_req": sum(seen.values()) * 1e6 / CLK_TCK / max(n, 1)}
        log(f"  pg_ceiling run {i + 1}: {n} exchanges' statements at {r['rps']:.0f}/s, "
            f"database {r['db_cpu_us_per_req']:.1f} us/exchange, failed {r['failed']}")
        runs.append(r)
    return {"rps": statistics.median(r["rps"] for r in runs),
            "db_cpu_us_per_req": statistics.median(r["db_cpu_us_per_req"] for r in runs),
            "failed": sum(r["failed"] for r in runs), "runs": runs, "c": c}


def nginx_conf(workdir: Path, as_ports: list[int], listen: int) -> Path:
    """deploy/nginx/mcp.conf with its addresses rewritten for loopback, the way
    scripts/ha-test.sh does, inside a minimal main configuration."""
    d = workdir / "nginx"
    (d / "logs").mkdir(parents=True, exist_ok=True)
    text = (ROOT / "deploy/nginx/mcp.conf").read_text()
    text = text.replace("auth-server-1:3001", f"127.0.0.1:{as_ports[0]}").replace("auth-server-2:3001", f"127.0.0.1:{as_ports[1]}")
    # The MCP origin is not under test here; its upstreams point at a closed port.
    dead = free_port()
    text = re.sub(r"mcp-server-[12]:3000", f"127.0.0.1:{dead}", text)
    text = re.sub(r"(?m)^(\s*)listen 3001;", rf"\1listen 127.0.0.1:{listen};", text)
    text = re.sub(r"(?m)^(\s*)listen 3000;", rf"\1listen 127.0.0.1:{free_port()};", text)
    if re.search(r"(?m)^[^#]*(auth-server-[0-9]|mcp-server-[0-9]|listen (3000|3001);)", text):
        raise BenchError("deploy/nginx/mcp.conf changed shape: some addresses were not rewritten for loopback")
    (d / "mcp.conf").write_text(text)
    main = d / "nginx.conf"
    # One worker: the replicas and nginx share CPU 0, wrk has CPU 1.
    main.write_text(f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/mcp.conf;
}}
""")
    return main


def nginx_bin() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if not path:
        raise BenchError("nginx is not installed (Debian: apt-get install nginx)")
    return path


def case_token_pg_ha(ctx: Ctx) -> None:
    """/token exchanges through nginx (deploy/nginx/mcp.conf) to two auth-server replicas
    on one PostgreSQL database. Both replicas and nginx on CPU 0, wrk on CPU 1."""
    ports = [free_port(), free_port()]
    lb_port = free_port()
    issuer = f"http://127.0.0.1:{lb_port}"
    procs: list[Proc] = []
    with PgDatabase("token_ha") as db:
        try:
            env = pg_auth_env(ctx, db, new_kek())
            # One after the other: the first creates the schema, keys and demo account.
            for i, port in enumerate(ports):
                procs.append(start_pg_auth(ctx, f"auth-server-pg-{i + 1}", port, issuer, env))
            nginx = nginx_bin()
            conf = nginx_conf(ctx.workdir, ports, lb_port)
            check = subprocess.run([nginx, "-t", "-q", "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise BenchError(f"nginx rejects the configuration: {check.stderr[-1000:]}")
            lb = Proc("nginx", [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"], ctx.logdir).start()
            procs.append(lb)
            lb.wait_ready(None, f"{issuer}/nginx-health")
            before = [p.cpu_ticks() for p in procs[:2]]
            s = token_exchange_runs(ctx, ProcGroup(procs, db), issuer, "auth_token_pg_ha")
            used = [p.cpu_ticks() - t for p, t in zip(procs[:2], before)]
            # Round robin must have spread the load: each replica's share of the CPU.
            s["replica_cpu_share"] = [round(u / max(sum(used), 1), 2) for u in used]
            log(f"  auth_token_pg_ha: CPU share of the two replicas {s['replica_cpu_share']}")
            if min(s["replica_cpu_share"]) < 0.2:
                raise BenchError(f"nginx did not spread the exchanges over both replicas (CPU shares {s['replica_cpu_share']})")
        finally:
            for p in reversed(procs):
                p.stop()
    ctx.results["auth_server"]["token_pg_ha"] = dict(
        s, label="`/token` authorization_code exchange, PostgreSQL, two replicas behind nginx (CPU µs/req: both replicas + nginx; PostgreSQL unpinned)")


# ------------------------------------------------------------- database round trips


class PgWireCounter:
    """A loopback TCP proxy in front of PostgreSQL that reads the frontend side of the
    wire protocol and counts, per step of the flow: round trips (a Sync of the extended
    protocol or a simple Query: each waits for ReadyForQuery), split into those that run
    statements, those that prepare one (Parse/Describe, once per pooled connection and
    statement) and bare Syncs (the pool checking a connection, nothing executed);
    statements (Execute or Query, BEGIN/COMMIT/ROLLBACK apart), and of those the writes
    (INSERT/UPDATE/DELETE, also inside WITH) and locking reads (SELECT … FOR UPDATE).
    Prepared statements are followed by name, so a statement cached by the driver is
    still classified."""

    STARTUP_ONLY = {80877103, 80877104}  # SSLRequest, GSSENCRequest

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = self._zero()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _zero() -> dict:
        return {"round_trips": 0, "prepare_round_trips": 0, "bare_syncs": 0, "statements": 0, "writes": 0, "locking_reads": 0,
                "transactions": 0, "sql": []}

    def take(self) -> dict:
        """The counts since the last take."""
        with self.lock:
            out, self.counts = self.counts, self._zero()
        return out

    def close(self) -> None:
        self.closed = True
        try:
            # Wakes the accept() of the listening thread (Linux).
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((PG_HOST, PG_PORT))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @staticmethod
    def kind(sql: str) -> str:
        text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).strip().upper()
        first = text.split(None, 1)[0] if text else ""
        if first in ("BEGIN", "START", "COMMIT", "ROLLBACK", "END", "SAVEPOINT", "RELEASE"):
            return "tx"
        if first in ("INSERT", "UPDATE", "DELETE", "MERGE") or (first == "WITH" and re.search(r"\b(INSERT|UPDATE|DELETE)\b", text)):
            return "write"
        if re.search(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b|\bFOR\s+SHARE\b", text):
            return "lock"
        return "read"

    def _count(self, sql: str) -> None:
        k = self.kind(sql)
        with self.lock:
            # The statement's verb and table, for the record of what each request runs.
            self.counts["sql"].append(" ".join(re.sub(r"\s+", " ", sql).strip().split(" ")[:4])[:80])
            if k == "tx":
                if sql.strip().upper().startswith(("BEGIN", "START")):
                    self.counts["transactions"] += 1
                return
            self.counts["statements"] += 1
            if k == "write":
                self.counts["writes"] += 1
            elif k == "lock":
                self.counts["locking_reads"] += 1

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        buf = b""
        startup = True
        prepared: dict[bytes, str] = {}
        bound = ""
        # What the messages since the last Sync did: "" (nothing), "prepare", "execute".
        since_sync = ""

        def cstr(b: bytes, at: int) -> tuple[bytes, int]:
            end = b.index(b"\0", at)
            return b[at:end], end + 1
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                server.sendall(data)
                buf += data
                while True:
                    if startup:
                        if len(buf) < 8:
                            break
                        n = int.from_bytes(buf[:4], "big")
                        if len(buf) < n:
                            break
                        code = int.from_bytes(buf[4:8], "big")
                        buf = buf[n:]
                        if code not in self.STARTUP_ONLY:
                            startup = False
                        continue
                    if len(buf) < 5:
                        break
                    t = buf[:1]
                    n = int.from_bytes(buf[1:5], "big")
                    if len(buf) < 1 + n:
                        break
                    body, buf = buf[5:1 + n], buf[1 + n:]
                    if t == b"P":
                        name, at = cstr(body, 0)
                        query, _ = cstr(body, at)
                        prepared[name] = query.decode(errors="replace")
                        since_sync = since_sync or "prepare"
                    elif t == b"B":
                        _, at = cstr(body, 0)
                        name, _ = cstr(body, at)
                        bound = prepared.get(name, "")
                    elif t == b"E":
                        self._count(bound)
                        since_sync = "execute"
                    elif t == b"S":
                        with self.lock:
                            self.counts["round_trips"] += 1
                            if since_sync == "prepare":
                                self.counts["prepare_round_trips"] += 1
                            elif since_sync == "":
                                self.counts["bare_syncs"] += 1
                        since_sync = ""
                    elif t == b"Q":
                        query, _ = cstr(body, 0)
                        with self.lock:
                            self.counts["round_trips"] += 1
                        for part in query.decode(errors="replace").split(";"):
                            if part.strip():
                                self._count(part)
        except (OSError, ValueError):
            pass
        self._pipe(client, server)


def case_flow_db(ctx: Ctx, flows: int) -> None:
    """Database traffic of full OAuth flows on PostgreSQL (metadata → DCR → authorize →
    login → consent → token → refresh), each with a new client and a new browser: per
    HTTP request from the wire protocol (PgWireCounter), and for the whole flow also
    from PostgreSQL's own counters (pg_stat_database)."""
    counter = PgWireCounter()
    steps: list[tuple[str, dict]] = []

    class Marks(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            steps.append((q.get("step", ["?"])[0], counter.take()))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass
    marks = ThreadingHTTPServer(("127.0.0.1", 0), Marks)
    threading.Thread(target=marks.serve_forever, daemon=True).start()
    mark_url = f"http://127.0.0.1:{marks.server_address[1]}/mark"
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"

    def flow() -> None:
        cmd = ["node", str(BENCH / "scripts/oauth.mjs"), "--issuer", issuer, "--resource", ctx.mcp_url, "--scope", "mcp:read",
               "--refresh", "--mark-url", mark_url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
        if out.returncode != 0:
            raise BenchError(f"OAuth flow against {issuer} failed:\n{out.stderr[-2000:]}")

    try:
        with PgDatabase("flow") as db:
            env = pg_auth_env(ctx, db, new_kek(), db_port=counter.port)
            p = start_pg_auth(ctx, "auth-server-flow", port, issuer, env)
            try:
                # Warm-up flows: the driver prepares each statement once per connection.
                for _ in range(3):
                    flow()
                counter.take()
                steps.clear()
                # Idle: PostgreSQL backends flush their statistics at the latest 10 s
                # after they go idle, so the warm-up is in the counters before the first
                # snapshot; the wire counts of the same window show background work.
                idle_t0 = time.monotonic()
                time.sleep(11.0)
                idle = counter.take()
                idle_s = time.monotonic() - idle_t0
                s0 = db.stats()
                t0 = time.monotonic()
                for _ in range(flows):
                    flow()
                flows_s = time.monotonic() - t0
                tail = counter.take()
            finally:
                p.stop()
            # A backend flushes its statistics when it exits: after the stop, the
            # database's counters hold every transaction of the flows.
            time.sleep(1.0)
            s1 = db.stats()
    finally:
        marks.shutdown()
        counter.close()
    tail.pop("sql", None)
    idle.pop("sql", None)
    if tail["statements"]:
        log(f"  flow_db: {tail['statements']} statements after the last step of a flow (background work or unmarked requests)")
    per_step: dict[str, dict] = {}
    order: list[str] = []
    statements_of: dict[str, list[str]] = {}
    for name, c in steps:
        sql = c.pop("sql")
        statements_of.setdefault(name, sql)
        if name not in per_step:
            per_step[name] = {k: 0 for k in c}
            per_step[name]["count"] = 0
            order.append(name)
        per_step[name]["count"] += 1
        for k, v in c.items():
            per_step[name][k] += v
    rows = []
    for name in order:
        st = per_step[name]
        # A step a flow makes more than once (the redirect chain) is averaged per flow.
        rows.append({"step": name, "per_flow": round(st["count"] / flows, 2), "sql_of_one": statements_of[name],
                     **{k: round(st[k] / flows, 2) for k in ("round_trips", "prepare_round_trips", "bare_syncs", "statements", "writes", "locking_reads", "transactions")}})
    total = {k: round(sum(r[k] for r in rows), 2) for k in ("round_trips", "prepare_round_trips", "bare_syncs", "statements", "writes", "locking_reads", "transactions")}
    # The harness's own two stats queries run in the postgres database, not this one.
    pg = {k: round((s1[k] - s0[k]) / flows, 2) for k in s0}
    idle_rate = idle["round_trips"] / idle_s if idle_s else 0.0
    ctx.results["flow_db"] = {"flows": flows, "seconds": round(flows_s, 1), "steps": rows, "total": total, "pg_stat_database": pg,
                              "idle_round_trips_per_s": round(idle_rate, 2)}
    log(f"  flow_db: {flows} flows, per flow {total['round_trips']} round trips ({total['bare_syncs']} pool checks, "
        f"{total['prepare_round_trips']} prepares), {total['statements']} statements, "
        f"{total['writes']} writes; pg_stat_database per flow {pg}; idle {idle_rate:.2f} round trips/s")


# --------------------------------------------------------------------------- report


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "?"
    return {
        "nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
        "rustc": ver(["rustc", "--version"]), "wrk": ver(["sh", "-c", "wrk -v 2>&1 | head -1"]),
        "node": ver(["node", "--version"]),
        "fastmcp": ver([str(FASTMCP_PY), "-c", "import fastmcp; print(fastmcp.__version__)"]) if FASTMCP_PY.exists() else "not installed",
    }


def mib(kib) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f}"


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def gateway_cpu_beyond(res: dict, c: str = "64") -> float | None:
    """CPU per proxied call of gateway + upstream, minus the upstream's own per direct call."""
    via = res["cases"].get("gateway_http", {}).get("conns", {}).get(c)
    direct = res["cases"].get("gateway_upstream", {}).get("conns", {}).get(c)
    if not via or not direct:
        return None
    return via["cpu_us_per_req"] - direct["cpu_us_per_req"]


def gateway_floor(res: dict, c: str = "64") -> dict | None:
    """The least a gateway can cost per proxied call here, from parts measured in the
    run: mcp-server's own authenticated request answered by itself (mcp_session), a
    bare client's exchange with the upstream (bench-exchange, on the gateway's CPU),
    and the upstream's CPU behind that client. `beyond` compares with
    gateway_cpu_beyond, `ratio` with gateway_http / gateway_upstream."""
    cases = res["cases"]
    front = cases.get("mcp_session", {}).get("conns", {}).get(c, {}).get("cpu_us_per_req")
    alone = cases.get("gateway_upstream", {}).get("conns", {}).get(c, {}).get("cpu_us_per_req")
    hop = res.get("gateway_floor", {}).get(c)
    if not front or not alone or not hop:
        return None
    client, behind = hop["client_cpu_us_per_req"], hop["upstream_cpu_us_per_req"]
    return {"front": front, "client": client, "behind": behind, "alone": alone,
            "beyond": front + client + behind - alone, "ratio": alone / (front + client + behind)}


def ratio_rows(res: dict) -> list[tuple]:
    cases = res["cases"]

    def rps(key, c="64"):
        return cases.get(key, {}).get("conns", {}).get(c, {}).get("rps")

    def p99(key, c="16"):
        return cases.get(key, {}).get("conns", {}).get(c, {}).get("p99_ms")

    rows = []

    def add(what, value, target, ok, fmt="{:.2f}×"):
        if value is None:
            rows.append((what, "not measured", target, "–"))
        elif ok is None:
            rows.append((what, fmt.format(value), target, "–"))
        else:
            rows.append((what, fmt.format(value), target, "met" if ok(value) else "**missed**"))

    base, base_es = rps("baseline"), rps("baseline_es256")
    sess, stl, cold = rps("mcp_session"), rps("mcp_stateless"), rps("mcp_cold")
    ts, fast = rps("ts_sdk"), rps("fastmcp")
    div = lambda a, b: a / b if a is not None and b else None  # noqa: E731
    add("mcp-server session mode (known token) / ceiling, c=64", div(sess, base), "≥ 0.4×", lambda v: v >= 0.4)
    add("mcp-server stateless JSON / ceiling, c=64", div(stl, base), "≥ 0.5×", lambda v: v >= 0.5)
    add("mcp-server cold token / ceiling with ES256, c=64", div(cold, base_es), "≥ 0.7×", lambda v: v >= 0.7)
    add("mcp-server session / TypeScript SDK example, c=64", div(sess, ts), "≥ 30×", lambda v: v >= 30, "{:.0f}×")
    add("mcp-server session / FastMCP, c=64", div(sess, fast), "≥ 50×", lambda v: v >= 50, "{:.0f}×")
    add("p99 at c=16: mcp-server session / ceiling", div(p99("mcp_session"), p99("baseline")), "≤ 2×", lambda v: v <= 2)
    add("p99 at c=16: mcp-server stateless / ceiling", div(p99("mcp_stateless"), p99("baseline")), "≤ 2×", lambda v: v <= 2)
    idle = cases.get("mcp_session", {}).get("rss_idle_kib")
    add("mcp-server RSS idle", idle / 1024 if idle else None, "≤ 20 MiB", lambda v: v <= 20, "{:.1f} MiB")
    lr = res.get("long_run")
    if lr and len(lr["samples"]) > 1:
        last = lr["samples"][-1]
        after100k = next((s for s in lr["samples"] if s["requests"] >= 100_000), last)
        add(f"mcp-server RSS after {last['requests']:,} requests", last["rss_kib"] / 1024, "≤ 64 MiB", lambda v: v <= 64, "{:.1f} MiB")
        growth = (last["rss_kib"] - after100k["rss_kib"]) / 1024
        add(f"RSS growth from {after100k['requests']:,} to {last['requests']:,} requests", growth, "flat (≈ 0)", lambda v: v <= 2.0, "{:+.1f} MiB")
    gw, gw_up = rps("gateway_http"), rps("gateway_upstream")
    add("mcp-server gateway → bench-upstream / bench-upstream alone, c=64 (same CPU 0)", div(gw, gw_up), "≥ 0.5×",
        lambda v: v >= 0.5)
    add("gateway CPU per proxied `tools/call` beyond the upstream's own, c=64", gateway_cpu_beyond(res), "≤ 30 µs",
        lambda v: v <= 30, "{:.1f} µs")
    floor = gateway_floor(res)
    add("least gateway CPU per proxied call beyond the upstream's own on this machine: mcp-server's own request "
        "(mcp_session) + a bare HTTP client's exchange with the upstream + the upstream's extra CPU behind it, c=64",
        floor and floor["beyond"], "reported (the floor under the ≤ 30 µs above)", None, "{:.1f} µs")
    add("gateway → upstream / upstream alone that floor allows, c=64", floor and floor["ratio"],
        "reported (the ceiling over the ≥ 0.5× above)", None)
    add("mcp-server gateway / FastMCP proxy, same upstream, c=64", div(gw, rps("gateway_fastmcp")), "≥ 10×",
        lambda v: v >= 10, "{:.0f}×")
    st = res.get("gateway_stdio")
    if st:
        t, d = st["through_gateway"], st["direct"]
        add("stdio upstream, sequential calls: p50 / p99 through the gateway (HTTP client) vs a direct stdio client",
            f"{t['p50_us']:.0f} / {t['p99_us']:.0f} µs vs {d['p50_us']:.0f} / {d['p99_us']:.0f} µs", "reported", None, "{}")
    else:
        add("stdio upstream, sequential calls: p50 / p99 through the gateway vs a direct stdio client", None, "reported", None)
    glr = res.get("gateway_long_run")
    if glr and len(glr["samples"]) > 1:
        last = glr["samples"][-1]
        after100k = next((s for s in glr["samples"] if s["requests"] >= 100_000), last)
        growth = (last["rss_kib"] - after100k["rss_kib"]) / 1024
        add(f"gateway RSS growth from {after100k['requests']:,} to {last['requests']:,} proxied calls (upstream apart)", growth,
            "flat (≈ 0)", lambda v: v <= 2.0, "{:+.1f} MiB")
    else:
        add("gateway RSS growth over 1,000,000 proxied calls", None, "flat (≈ 0)", None)
    tok = res["auth_server"].get("token")
    add("auth-server `/token` exchanges per second", tok["rps"] if tok else None, "≥ 5,000/s", lambda v: v >= 5000, "{:,.0f}/s")
    pg = res["auth_server"].get("token_pg")
    add("auth-server `/token` exchanges per second on PostgreSQL, one replica, c=64", pg["rps"] if pg else None, "≥ 3,000/s",
        lambda v: v >= 3000, "{:,.0f}/s")
    ceiling = pg.get("ceiling") if pg else None
    add("auth-server `/token` on PostgreSQL, c=64 / PostgreSQL alone running the same statements (pgbench, auth-server's 8 connections)",
        div(pg["rps"] if pg else None, ceiling["rps"] if ceiling else None), "reported (the database's own rate on this machine)", None)
    ha = res["auth_server"].get("token_pg_ha")
    add("auth-server `/token` on PostgreSQL: two replicas behind nginx / one replica, c=64 (same 2 CPUs)",
        div(ha["rps"] if ha else None, pg["rps"] if pg else None), "reported (no target: one server CPU for both)", None)
    cs = res["cold_start"]
    m = cs.get("mcp_server")
    add("mcp-server cold start to /readyz 200 (AS up)", m["ready_ms"] if m else None, "≤ 100 ms", lambda v: v <= 100, "{:.0f} ms")
    a = cs.get("auth_server")
    add("auth-server cold start to /healthz 200 (existing DB)", a["ready_ms"] if a else None, "≤ 300 ms", lambda v: v <= 300, "{:.0f} ms")
    return rows


def render(res: dict) -> str:
    m = res["machine"]
    a = res["params"]
    lines = []
    lines.append(f"Run {res['started']} ({res['mode']} mode): {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, {m['rustc']}, "
                 f"{m['wrk']}, node {m['node']}, fastmcp {m['fastmcp']}. Server on CPU {SERVER_CPU}, wrk (1 thread) on CPU {LOAD_CPU}; "
                 f"{a['runs']} × {a['duration']} s per point, medians.")
    lines.append("")
    lines.append("| case | c | req/s | p50 ms | p99 ms | CPU µs/req | server / wrk CPU | RSS idle → after (MiB) | errors |")
    lines.append("|---|---:|---:|---:|---:|---:|---|---|---:|")
    pct = lambda s: f"{100 * s.get('cpu_util', 0):.0f} % / {100 * s.get('wrk_cpu_util', 0):.0f} %"  # noqa: E731
    for key, case in res["cases"].items():
        for c, s in case["conns"].items():
            lines.append(f"| {case['label']} | {c} | {fmt_int(s['rps'])} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                         f"{s['cpu_us_per_req']:.1f} | {pct(s)} | {mib(case['rss_idle_kib'])} → {mib(case['rss_after_kib'])} | {s['errors']} |")
    for key, s in res["auth_server"].items():
        lines.append(f"| auth-server {s['label']} | 64 | {fmt_int(s['rps'])} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                     f"{s['cpu_us_per_req']:.1f} | {pct(s)} | {mib(s.get('rss_idle_kib'))} → {mib(s.get('rss_after_kib'))} | {s['errors']} |")
    dbcpu = [(s["label"], s) for s in res["auth_server"].values() if "db_cpu_us_per_req" in s]
    if dbcpu:
        lines.append("")
        lines.append("PostgreSQL cases: PostgreSQL 15 is the machine's own service, not pinned (its backends run on either CPU); "
                     "the auth-server replicas and nginx run on CPU 0, wrk on CPU 1, connections to the database without TLS. "
                     "CPU of the database backends serving the case, per exchange: " + "; ".join(
                         f"{label.split(' (')[0]}: {s['db_cpu_us_per_req']:.1f} µs"
                         + (f" (replicas' shares of the server CPU {s['replica_cpu_share']})" if s.get("replica_cpu_share") else "")
                         for label, s in dbcpu) + ".")
        ceiling = res["auth_server"].get("token_pg", {}).get("ceiling")
        if ceiling:
            lines.append("")
            lines.append(f"PostgreSQL alone, the same statements: `bench/pg/code_exchange.sql` (one exchange's statements as "
                         f"auth-server sends them, without HTTP, JWT signing or the driver) run by pgbench -M prepared at "
                         f"c={ceiling['c']} on CPU {LOAD_CPU}, on the database the one-replica case has just filled: "
                         f"{ceiling['rps']:,.0f} exchanges/s, database {ceiling['db_cpu_us_per_req']:.1f} µs CPU per exchange "
                         f"(runs: {[round(r['rps']) for r in ceiling['runs']]}; failed transactions {ceiling['failed']}).")
    for key, f in res["failures"].items():
        lines.append(f"| {key}: **not measured** ({f[:160]}) | | | | | | | | |")
    ver = [(c["label"], c["verification"]) for c in res["cases"].values() if "cached" in c.get("verification", {})]
    if ver:
        lines.append("")
        lines.append("Token verification per case, from mcp-server's `/metrics` (`mcp_server_token_verification_seconds` by outcome, "
                     "whole case including warm-up): " + "; ".join(
                         f"{label}: {v['cached']:,} cache hits, {v['full']:,} full verifications" for label, v in ver) + ".")
    lr = res.get("long_run")
    if lr:
        lines.append("")
        pts = ", ".join(f"{s['requests']:,} → {s['rss_kib'] / 1024:.1f} MiB" for s in lr["samples"])
        lines.append(f"mcp-server RSS over a long run (session mode, c=64, requests → RSS): {pts}; errors {lr['errors']}.")
    via = res["cases"].get("gateway_http", {}).get("conns", {}).get("64", {})
    direct = res["cases"].get("gateway_upstream", {}).get("conns", {}).get("64", {})
    if via.get("parts_cpu_us_per_req") and direct:
        pc = via["parts_cpu_us_per_req"]
        lines.append("")
        lines.append(f"Gateway CPU per proxied `tools/call` at c=64 (medians): mcp-server gateway {pc['gateway']:.1f} µs + bench-upstream "
                     f"{pc['upstream']:.1f} µs behind it = {via['cpu_us_per_req']:.1f} µs, against bench-upstream's own "
                     f"{direct['cpu_us_per_req']:.1f} µs per direct call: {gateway_cpu_beyond(res):.1f} µs beyond the upstream's own.")
    fp = res["cases"].get("gateway_fastmcp", {}).get("conns", {}).get("64", {})
    if fp.get("parts_cpu_us_per_req"):
        pc = fp["parts_cpu_us_per_req"]
        lines.append("")
        lines.append(f"FastMCP proxy CPU per proxied call at c=64: proxy {pc['proxy']:.1f} µs + bench-upstream {pc['upstream']:.1f} µs.")
    st = res.get("gateway_stdio")
    if st:
        t, d = st["through_gateway"], st["direct"]
        lines.append("")
        lines.append(f"Stdio upstream (`bench-upstream --stdio`), {t['calls']:,} sequential `tools/call`s per client after "
                     f"{max(t['calls'] // 10, 10):,} unrecorded: through the gateway (`--upstream-cmd`, HTTP client, session, real token) "
                     f"p50 {t['p50_us']:.0f} µs, p90 {t['p90_us']:.0f} µs, p99 {t['p99_us']:.0f} µs, mean {t['mean_us']:.0f} µs; "
                     f"a direct stdio client of the same server p50 {d['p50_us']:.0f} µs, p90 {d['p90_us']:.0f} µs, p99 {d['p99_us']:.0f} µs, "
                     f"mean {d['mean_us']:.0f} µs. Gateway RSS {mib(st['gateway_rss_kib'])} MiB with the session's child "
                     f"({st['children']} process, {mib(st['child_rss_kib'])} MiB, accounted apart).")
    glr = res.get("gateway_long_run")
    if glr:
        lines.append("")
        pts = ", ".join(f"{s['requests']:,} → {s['rss_kib'] / 1024:.1f} MiB" for s in glr["samples"])
        up = glr["samples"][-1].get("upstream_rss_kib")
        lines.append(f"mcp-server gateway RSS over a long run (one session, c=64, proxied calls → gateway RSS): {pts}; errors {glr['errors']}"
                     + (f"; bench-upstream (apart) {mib(glr['samples'][0].get('upstream_rss_kib'))} → {mib(up)} MiB." if up else "."))
    cs = res["cold_start"]
    if cs:
        lines.append("")
        parts = []
        if "mcp_server" in cs:
            parts.append(f"mcp-server {cs['mcp_server']['listening_ms']:.0f} ms to `listening on`, {cs['mcp_server']['ready_ms']:.0f} ms to `/readyz` 200 "
                         f"(runs: {cs['mcp_server']['all_ready_ms']})")
        if "auth_server" in cs:
            parts.append(f"auth-server {cs['auth_server']['listening_ms']:.0f} ms to `listening on`, {cs['auth_server']['ready_ms']:.0f} ms to `/healthz` 200 "
                         f"(runs: {cs['auth_server']['all_ready_ms']})")
        lines.append("Cold start (medians): " + "; ".join(parts) + ".")
    tok = res["auth_server"].get("token")
    if tok:
        lines.append("")
        lines.append(f"`/token` codes were minted beforehand through `/authorize` (logged-in browser session, consent remembered) at "
                     f"{tok['authorize_rps']:,.0f}/s; codes per run: {tok['codes_per_run']}.")
    fd = res.get("flow_db")
    if fd:
        lines.append("")
        lines.append(f"Database traffic of one full OAuth flow on PostgreSQL (auth_flow_db: {fd['flows']} flows after 3 warm-up flows, "
                     "each a new client and a new browser; averages per flow, counted on the wire between auth-server and PostgreSQL; "
                     "a round trip is one wait for the database (a Sync or a simple query); of those, *pool checks* are bare Syncs "
                     "that execute nothing (the driver's pool checking a connection) and *prepares* are a statement's first use on a "
                     "pooled connection; a write is an INSERT/UPDATE/DELETE statement; BEGIN/COMMIT count as round trips, not statements):")
        lines.append("")
        lines.append("| request | per flow | round trips | of which pool checks | of which prepares | statements | writes | locking reads | transactions |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in fd["steps"] + [dict(fd["total"], step="whole flow", per_flow="")]:
            lines.append(f"| `{r['step']}` | {r['per_flow']} | {r['round_trips']:g} | {r['bare_syncs']:g} | {r['prepare_round_trips']:g} | "
                         f"{r['statements']:g} | {r['writes']:g} | {r['locking_reads']:g} | {r['transactions']:g} |")
        pg = fd["pg_stat_database"]
        lines.append("")
        lines.append(f"PostgreSQL's own counters for the same flows (`pg_stat_database`, per flow): {pg['xact_commit']:g} commits, "
                     f"{pg['xact_rollback']:g} rollbacks, {pg['tup_inserted']:g} rows inserted, {pg['tup_updated']:g} updated, "
                     f"{pg['tup_deleted']:g} deleted, {pg['tup_fetched']:g} fetched (commits also count each statement preparation and "
                     "autovacuum's work on the new tables; UPDATEs that match no row update none). Idle auth-server: "
                     f"{fd['idle_round_trips_per_s']:g} round trips per second of background work.")
    if res.get("micro"):
        lines.append("")
        lines.append("Micro-benchmarks (criterion, `cargo bench -p bench --bench hot_paths`, CPU 0; estimate and 95 % interval):")
        lines.append("")
        lines.append("| function | time | interval |")
        lines.append("|---|---:|---|")
        for r in res["micro"]:
            lines.append(f"| `{r['name']}` | {r['median']} | {r['low']} – {r['high']} |")
    lines.append("")
    lines.append("| ratio (same run) | measured | target | |")
    lines.append("|---|---:|---|---|")
    for what, value, target, verdict in ratio_rows(res):
        lines.append(f"| {what} | {value} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_doc(doc: Path, table: str) -> None:
    start, end = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{table}{end}{after}")


# --------------------------------------------------------------------------- main


ALL_CASES = ["baseline", "baseline_es256", "mcp_session", "mcp_stateless", "mcp_cold", "mcp_introspection",
             "ts_sdk", "fastmcp", "long", "gateway_http", "gateway_fastmcp", "gateway_stdio", "gateway_long",
             "cold_start", "auth_server", "auth_token_pg", "auth_token_pg_ha", "auth_flow_db", "micro"]
SMOKE_CASES = ["baseline", "mcp_session", "gateway_http", "gateway_stdio", "auth_server"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--smoke", action="store_true", help="~5 s per case, baseline + mcp-server session + gateway (HTTP, stdio) + auth-server /token; non-zero exit on any error")
    ap.add_argument("--duration", type=float, help="seconds per run (default 10, smoke 5)")
    ap.add_argument("--runs", type=int, help="runs per point (default 3, smoke 1)")
    ap.add_argument("--conns", help="connection counts (default 64,16; smoke 64)")
    ap.add_argument("--cases", help="comma-separated subset of: " + ",".join(ALL_CASES))
    ap.add_argument("--warmup", type=float, help="unrecorded warm-up seconds per case (default 2, smoke 0)")
    ap.add_argument("--long-requests", type=int, default=1_000_000, help="requests of the long runs (long, gateway_long)")
    ap.add_argument("--latency-calls", type=int, help="sequential calls timed per client in gateway_stdio (default 20000, smoke 1000)")
    ap.add_argument("--cold-token-pool", type=int, help="distinct tokens rotated in the cold-token case (default 2000)")
    ap.add_argument("--cold-reps", type=int, help="cold-start repetitions (default 5)")
    ap.add_argument("--token-codes", type=int, help="max codes minted per /token run (default 60000, smoke 5000)")
    ap.add_argument("--mint-secs", type=float, help="max seconds of code minting per /token run (default 20, smoke 5)")
    ap.add_argument("--flows", type=int, default=20, help="full OAuth flows counted by auth_flow_db (default 20)")
    ap.add_argument("--mcp-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every mcp-server start (e.g. RUST_LOG=warn), repeatable")
    ap.add_argument("--perf", default="", help="comma-separated cases to profile with perf in an extra unrecorded run")
    ap.add_argument("--out", help="results directory (default bench/results/<stamp>)")
    ap.add_argument("--write-doc", help="replace the results section of this Markdown file (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    smoke = args.smoke
    args.duration = args.duration or (5.0 if smoke else 10.0)
    args.runs = args.runs or (1 if smoke else 3)
    conns = [int(c) for c in (args.conns or ("64" if smoke else "64,16")).split(",")]
    args.warmup = args.warmup if args.warmup is not None else (0.0 if smoke else 2.0)
    args.cold_token_pool = args.cold_token_pool or (200 if smoke else 2000)
    args.cold_reps = args.cold_reps if args.cold_reps is not None else (0 if smoke else 5)
    args.token_codes = args.token_codes or (5000 if smoke else 60000)
    args.latency_calls = args.latency_calls or (1000 if smoke else 20000)
    args.mint_secs = args.mint_secs or (5.0 if smoke else 20.0)
    cases = args.cases.split(",") if args.cases else (SMOKE_CASES if smoke else ALL_CASES)
    args.perf = [c for c in args.perf.split(",") if c]
    args.mcp_env = dict(kv.split("=", 1) for kv in args.mcp_env)
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        ap.error(f"unknown cases: {sorted(unknown)}")

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(args.out) if args.out else BENCH / "results" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args, workdir, Path(args.bin_dir))
    ctx.results.update({
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "mode": "smoke" if smoke else "full",
        "machine": machine(), "params": {"duration": args.duration, "runs": args.runs, "conns": conns, "cases": cases},
    })
    log(f"results in {workdir}; AS {ctx.issuer}, mcp-server {ctx.mcp_url}")

    ours_failed = False

    def attempt(key: str, fn, ours: bool = True):
        nonlocal ours_failed
        log(f"case {key}")
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
            log(f"case {key} FAILED: {e}")
            ctx.results["failures"][key] = str(e).splitlines()[0] if str(e) else type(e).__name__
            (workdir / f"failure-{key}.txt").write_text(str(e))
            if ours:
                ours_failed = True
            return None

    try:
        ctx.start_auth(LOAD_CPU)
        session_proc = None
        if "baseline" in cases:
            attempt("baseline", lambda: case_baseline(ctx, conns, es256=False))
        if "baseline_es256" in cases:
            attempt("baseline_es256", lambda: case_baseline(ctx, conns, es256=True))
        if "mcp_session" in cases:
            session_proc = attempt("mcp_session", lambda: case_mcp(
                ctx, "mcp_session", "mcp-server, session mode (SSE answers), known token", conns, {},
                keep="long" in cases))
        if "long" in cases and session_proc is not None:
            rps_hint = ctx.results["cases"]["mcp_session"]["conns"][str(max(conns))]["rps"]
            attempt("long", lambda: ctx.results.update(long_run=long_run(ctx, session_proc, args.long_requests, rps_hint)))
        if session_proc is not None:
            session_proc.stop()
        if "mcp_stateless" in cases:
            attempt("mcp_stateless", lambda: case_mcp(
                ctx, "mcp_stateless", "mcp-server, stateless JSON mode, known token", conns,
                {"MCP__TRANSPORT__STATELESS": "true", "MCP__TRANSPORT__JSON_RESPONSE": "true"}, stateless=True))
        if "mcp_cold" in cases:
            attempt("mcp_cold", lambda: case_mcp(
                ctx, "mcp_cold", "mcp-server, session mode, cold token (a different valid token on every request)", conns,
                {"MCP__AUTH__TOKEN_CACHE_MAX_ENTRIES": "1"}, pool=args.cold_token_pool,
                note=f"{args.cold_token_pool} real tokens rotated, token cache bound set to 1: every request is a full ES256 verify"))
        if "mcp_introspection" in cases:
            attempt("mcp_introspection", lambda: case_mcp(
                ctx, "mcp_introspection", "mcp-server, session mode, introspection verifier (cached), known token", conns,
                {"MCP__AUTH__MODE": "introspection"}))
        if "ts_sdk" in cases:
            attempt("ts_sdk", lambda: case_ts(ctx, conns), ours=False)
        if "fastmcp" in cases:
            attempt("fastmcp", lambda: case_fastmcp(ctx, conns), ours=False)
        if "gateway_http" in cases:
            attempt("gateway_http", lambda: case_gateway_http(ctx, conns))
        if "gateway_fastmcp" in cases:
            attempt("gateway_fastmcp", lambda: case_gateway_fastmcp(ctx, conns), ours=False)
        if "gateway_stdio" in cases:
            attempt("gateway_stdio", lambda: case_gateway_stdio(ctx))
        if "gateway_long" in cases:
            attempt("gateway_long", lambda: case_gateway_long(ctx, args.long_requests))
        if "cold_start" in cases:
            attempt("cold_start", lambda: cold_start(ctx, args.cold_reps))
        if "auth_server" in cases:
            attempt("auth_server", lambda: auth_server_loads(ctx))
        pg_cases = [("auth_token_pg", lambda: case_token_pg(ctx)), ("auth_token_pg_ha", lambda: case_token_pg_ha(ctx)),
                    ("auth_flow_db", lambda: case_flow_db(ctx, args.flows))]
        if any(key in cases for key, _ in pg_cases):
            # Their own auth-servers on PostgreSQL: the SQLite one is not needed any more.
            ctx.stop_auth()
        for key, fn in pg_cases:
            if key in cases:
                attempt(key, fn)
        if "micro" in cases:
            ctx.stop_auth()
            attempt("micro", lambda: micro(ctx))
    finally:
        ctx.stop_auth()

    (workdir / "results.json").write_text(json.dumps(ctx.results, indent=2))
    table = render(ctx.results)
    (workdir / "table.md").write_text(table)
    print()
    print(table)
    if args.write_doc:
        write_doc(ROOT / args.write_doc if not os.path.isabs(args.write_doc) else Path(args.write_doc), table)
        log(f"updated {args.write_doc}")

    errors = sum(s["errors"] for c in ctx.results["cases"].values() for s in c["conns"].values())
    errors += sum(s["errors"] for s in ctx.results["auth_server"].values())
    our_errors = sum(s["errors"] for k, c in ctx.results["cases"].items() if k not in ("ts_sdk", "fastmcp", "gateway_fastmcp") for s in c["conns"].values())
    our_errors += sum(s["errors"] for s in ctx.results["auth_server"].values())
    if ours_failed or our_errors:
        log(f"FAILED: {len(ctx.results['failures'])} case(s) failed, {our_errors} error answers from our servers")
        return 1
    log(f"done ({errors} error answers in total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
