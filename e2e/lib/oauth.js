// The OAuth 2.1 authorization-code flow (DCR + PKCE + resource indicator) driven the
// way a real client does it, for harnesses that need a user's access token without an
// MCP SDK in the loop: the conformance proxy, the Python interop test's helpers.
import { createHash, randomBytes } from 'node:crypto';
import { Browser } from './harness.js';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

export function pkcePair() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

/** RFC 8414 metadata of an issuer (path-inserted form first, as RFC 8414 §3 says). */
export async function discover(issuer) {
  const u = new URL(issuer);
  const path = u.pathname === '/' ? '' : u.pathname;
  const candidates = [
    `${u.origin}/.well-known/oauth-authorization-server${path}`,
    `${u.origin}/.well-known/openid-configuration${path}`,
    `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
  ];
  for (const url of candidates) {
    const res = await fetch(url);
    if (res.ok) return res.json();
  }
  throw new Error(`no authorization server metadata for ${issuer}`);
}

/** RFC 7591 registration of a public (PKCE-only) client. */
export async function registerPublicClient(metadata, { redirectUri, clientName = 'interop-harness', scope } = {}) {
  const res = await fetch(metadata.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: clientName,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(scope ? { scope } : {}),
    }),
  });
  const body = await res.json().catch(() => ({}));
  if (res.status !== 201 && res.status !== 200) {
    throw new Error(`registration answered ${res.status}: ${JSON.stringify(body)}`);
  }
  return body;
}

async function tokenRequest(metadata, params) {
  const res = await fetch(metadata.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(params),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

export function jwtClaims(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return undefined;
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch {
    return undefined;
  }
}

/**
 * Registers a public client, authorizes as `username` (our login + consent forms, or
 * any AS whose pages `authorize` can complete), and exchanges the code. Returns a
 * session with `accessToken()` that refreshes itself shortly before expiry.
 */
export async function userTokenSession({
  issuer, resource, username, password, scope = 'mcp:read offline_access',
  redirectUri = 'http://127.0.0.1:8976/oauth/callback', authorize, registrationScope = scope,
}) {
  const metadata = await discover(issuer);
  // registrationScope: null registers without a `scope` (ASes such as oidc-provider
  // only accept their own scopes there, not a resource server's).
  const client = await registerPublicClient(metadata, { redirectUri, scope: registrationScope ?? undefined });
  const { verifier, challenge } = pkcePair();
  const state = b64url(randomBytes(16));
  const url = new URL(metadata.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: client.client_id, redirect_uri: redirectUri,
    code_challenge: challenge, code_challenge_method: 'S256', state, scope,
    ...(resource ? { resource } : {}),
  }).toString();
  const browse = authorize ?? ((u, opts) => new Browser().authorize(u, opts));
  const callback = await browse(url, { redirectUri, username, password });
  if (callback.searchParams.get('state') !== state) throw new Error(`state mismatch in ${callback}`);
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code in ${callback}`);
  let tokens = await tokenRequest(metadata, {
    grant_type: 'authorization_code', code, redirect_uri: redirectUri,
    code_verifier: verifier, client_id: client.client_id, ...(resource ? { resource } : {}),
  });
  const expiresAt = () => {
    const exp = jwtClaims(tokens.access_token)?.exp;
    if (exp) return exp * 1000;
    return Date.now() + (tokens.expires_in ?? 300) * 1000;
  };
  let refreshing;
  return {
    metadata,
    client,
    get tokens() { return tokens; },
    async accessToken() {
      if (tokens.refresh_token && expiresAt() - Date.now() < 60_000) {
        refreshing ??= tokenRequest(metadata, {
          grant_type: 'refresh_token', refresh_token: tokens.refresh_token,
          client_id: client.client_id, ...(resource ? { resource } : {}),
        }).then((t) => { tokens = { ...tokens, ...t }; }).finally(() => { refreshing = undefined; });
        await refreshing;
      }
      return tokens.access_token;
    },
  };
}
