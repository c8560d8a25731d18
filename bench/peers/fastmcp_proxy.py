"""FastMCP proxy peer for the gateway benchmarks: FastMCP's own proxy server in front of
another MCP server (`create_proxy`, which replaced `FastMCP.as_proxy` in FastMCP 3+),
with FastMCP's JWTVerifier (local ES256 verification against our auth-server's JWKS,
audience = this server's URL) in front, as in fastmcp_server.py. The proxy's defaults
are kept (a fresh backend client per request, mirroring the front connection's era).

    python peers/fastmcp_proxy.py --port 3921 --upstream http://127.0.0.1:3950/mcp \
        --issuer http://127.0.0.1:3901 --jwks-uri http://127.0.0.1:3901/jwks.json
"""

import argparse

from fastmcp.server import create_proxy
from fastmcp.server.auth.providers.jwt import JWTVerifier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="Streamable HTTP URL of the proxied server")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--jwks-uri", required=True)
    parser.add_argument("--audience", help="default: http://HOST:PORT/mcp")
    args = parser.parse_args()
    audience = args.audience or f"http://{args.host}:{args.port}/mcp"

    verifier = JWTVerifier(
        jwks_uri=args.jwks_uri,
        issuer=args.issuer,
        audience=audience,
        algorithm="ES256",
        required_scopes=["mcp:read"],
    )
    proxy = create_proxy(args.upstream, name="fastmcp-bench-proxy", auth=verifier)

    print(f"starting fastmcp proxy on http://{args.host}:{args.port}/mcp -> {args.upstream}", flush=True)
    proxy.run(
        transport="http",
        host=args.host,
        port=args.port,
        path="/mcp",
        log_level="warning",
        show_banner=False,
        uvicorn_config={"access_log": False},
    )


if __name__ == "__main__":
    main()
