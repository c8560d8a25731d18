"""Our auth-server behind someone else's resource server.

A FastMCP server (PyPI `fastmcp`, `JWTVerifier` with our JWKS, audience = its own URL)
accepts an access token that auth-server minted for that URL through the real
authorization-code flow (DCR, PKCE, `resource`, login and consent forms driven with
`requests`), and refuses a token auth-server minted for another resource.

Run: e2e/run-interop.sh (or: MCP_E2E_BIN_DIR=target/debug e2e/.venv/bin/pytest e2e/python)
"""

import asyncio
import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN_DIR = Path(os.environ.get("MCP_E2E_BIN_DIR", REPO / "target" / "debug"))
REDIRECT_URI = "http://127.0.0.1:8976/oauth/callback"
USER, PASSWORD = "demo", "demo123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], name: str, timeout: float = 30.0) -> subprocess.Popen:
    """Starts a process and waits for its `listening on http://` line."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Metrics (their own listener, default port) are not read here: off, so that
        # several stacks can run on one machine.
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
             "AUTH__SERVER__METRICS_LISTEN": "off", "MCP__SERVER__METRICS_LISTEN": "off"},
    )
    ready = threading.Event()
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keep draining so the pipe never fills
            if len(lines) < 200:
                lines.append(line)
            if "listening on http://" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        proc.kill()
        raise RuntimeError(f"{name} did not start:\n{''.join(lines)}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


class FormParser(HTMLParser):
    """The single POST form of an auth-server page: action, hidden fields, kind."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.has_password = False
        self.has_decision = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind == "hidden" and a.get("name"):
                self.hidden[a["name"]] = a.get("value") or ""
            elif kind == "password":
                self.has_password = True
        elif tag == "button" and a.get("name") == "decision":
            self.has_decision = True


def authorize(session: requests.Session, url: str) -> str:
    """Follows the authorization URL through login and consent; returns the redirect."""
    method, data = "GET", None
    for _ in range(10):
        if url.startswith(REDIRECT_URI):
            return url
        resp = session.request(method, url, data=data, allow_redirects=False, timeout=10)
        if 300 <= resp.status_code < 400:
            url, method, data = urljoin(url, resp.headers["location"]), "GET", None
            continue
        assert resp.status_code == 200, f"{url} answered {resp.status_code}: {resp.text[:500]}"
        form = FormParser()
        form.feed(resp.text)
        assert form.action is not None, f"no form on {url}"
        data = dict(form.hidden)
        if form.has_password:
            data.update(username=USER, password=PASSWORD)
        elif form.has_decision:
            data["decision"] = "approve"
        url, method = urljoin(url, form.action), "POST"
    raise AssertionError("too many steps in the authorization flow")


def obtain_token(issuer: str, resource: str) -> str:
    """DCR + authorization code with PKCE and `resource`, as a real client does it."""
    meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
    reg = requests.post(
        meta["registration_endpoint"],
        json={
            "client_name": "fastmcp-interop",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        },
        timeout=10,
    )
    assert reg.status_code == 201, reg.text
    client_id = reg.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    auth_url = requests.Request(
        "GET",
        meta["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "mcp:read",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": resource,
        },
    ).prepare().url
    callback = parse_qs(urlparse(authorize(requests.Session(), auth_url)).query)
    assert callback["state"] == [state]
    assert callback["iss"] == [issuer]
    token = requests.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": callback["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": client_id,
            "resource": resource,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def initialize(url: str, token: str | None) -> requests.Response:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "interop", "version": "1.0.0"},
        },
    }
    return requests.post(url, json=body, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def stack():
    as_port, rs_port, other_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    rs_url = f"http://127.0.0.1:{rs_port}/mcp"
    other_url = f"http://127.0.0.1:{other_port}/mcp"
    with tempfile.TemporaryDirectory() as tmp:
        auth = start(
            [str(BIN_DIR / "auth-server"), "serve", "--demo", "--listen", f"127.0.0.1:{as_port}",
             "--issuer", issuer, "--db", str(Path(tmp) / "auth.db"),
             "--resource", rs_url, "--resource", other_url],
            "auth-server",
        )
        try:
            jwks_uri = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()["jwks_uri"]
            rs = start(
                [sys.executable, str(HERE / "fastmcp_rs.py"), "--port", str(rs_port),
                 "--issuer", issuer, "--jwks-uri", jwks_uri],
                "fastmcp resource server",
                timeout=60,
            )
            try:
                deadline = time.time() + 30
                while time.time() < deadline:  # uvicorn prints before it binds
                    try:
                        requests.get(f"http://127.0.0.1:{rs_port}/.well-known/oauth-protected-resource/mcp", timeout=2)
                        break
                    except requests.ConnectionError:
                        time.sleep(0.2)
                yield {"issuer": issuer, "rs_url": rs_url, "other_url": other_url, "rs_port": rs_port}
            finally:
                stop(rs)
        finally:
            stop(auth)


async def whoami(url: str, token: str) -> dict:
    from fastmcp import Client

    async with Client(url, auth=token) as client:
        result = await client.call_tool("whoami", {})
        return result.structured_content or json.loads(result.content[0].text)


def test_fastmcp_accepts_our_token_for_its_url_and_rejects_another_audience(stack):
    # FastMCP advertises our AS (RFC 9728), so an MCP client would find auth-server from it.
    prm = requests.get(
        f"http://127.0.0.1:{stack['rs_port']}/.well-known/oauth-protected-resource/mcp", timeout=10
    ).json()
    assert [s.rstrip("/") for s in prm["authorization_servers"]] == [stack["issuer"]]
    assert initialize(stack["rs_url"], None).status_code == 401

    good = obtain_token(stack["issuer"], stack["rs_url"])
    other = obtain_token(stack["issuer"], stack["other_url"])
    assert claims(good)["aud"] == stack["rs_url"]
    assert claims(other)["aud"] == stack["other_url"]
    assert claims(good)["iss"] == claims(other)["iss"] == stack["issuer"]

    # Accepted: FastMCP's own client calls a tool with our token.
    me = asyncio.run(whoami(stack["rs_url"], good))
    assert me["preferred_username"] == USER
    assert me["aud"] == stack["rs_url"]
    assert "mcp:read" in me["scopes"]

    # Refused: same issuer, same user, valid signature, but minted for another resource.
    refused = initialize(stack["rs_url"], other)
    assert refused.status_code == 401, refused.text
    assert refused.headers.get("www-authenticate", "").lower().startswith("bearer")
    with pytest.raises(Exception):
        asyncio.run(whoami(stack["rs_url"], other))
