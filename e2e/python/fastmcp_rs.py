"""A resource server nobody on this team wrote: FastMCP, configured only with our
auth-server's issuer and JWKS URL and its own URL as the audience.

    python fastmcp_rs.py --port 8123 --issuer http://127.0.0.1:3001 --jwks-uri http://127.0.0.1:3001/jwks.json

It serves MCP at http://127.0.0.1:<port>/mcp and RFC 9728 metadata naming our issuer.
"""

import argparse

import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_access_token


def build(port: int, issuer: str, jwks_uri: str) -> FastMCP:
    base_url = f"http://127.0.0.1:{port}"
    verifier = JWTVerifier(
        jwks_uri=jwks_uri,
        issuer=issuer,
        audience=f"{base_url}/mcp",  # RFC 8707: only tokens minted for this URL
        algorithm="ES256",
        required_scopes=["mcp:read"],
    )
    auth = RemoteAuthProvider(
        token_verifier=verifier,
        authorization_servers=[issuer],
        base_url=base_url,
        scopes_supported=["mcp:read"],
        resource_name="FastMCP interop resource server",
    )
    mcp = FastMCP("fastmcp-interop-rs", auth=auth)

    @mcp.tool
    def whoami() -> dict:
        """Who the verified token says the caller is."""
        token = get_access_token()
        claims = token.claims if token else {}
        return {
            "sub": claims.get("sub"),
            "preferred_username": claims.get("preferred_username"),
            "aud": claims.get("aud"),
            "iss": claims.get("iss"),
            "scopes": token.scopes if token else [],
        }

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--jwks-uri", required=True)
    args = parser.parse_args()
    app = build(args.port, args.issuer, args.jwks_uri).http_app(path="/mcp")
    print(f"listening on http://127.0.0.1:{args.port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
