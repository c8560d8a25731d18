"""FastMCP peer for the benchmarks: a resource server whose tokens are checked by
FastMCP's own JWTVerifier (local ES256 verification) against our auth-server's JWKS,
with audience = this server's URL. One tool, `hello_world`, like ours.

    python peers/fastmcp_server.py --port 3920 --issuer http://127.0.0.1:3901 \
        --jwks-uri http://127.0.0.1:3901/jwks.json
"""

import argparse

from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
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
    mcp = FastMCP("fastmcp-bench-peer", auth=verifier)

    @mcp.tool
    def hello_world(name: str = "world") -> str:
        """Greets the caller."""
        return f"Hello, {name}!"

    print(f"starting fastmcp on http://{args.host}:{args.port}/mcp", flush=True)
    mcp.run(
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
