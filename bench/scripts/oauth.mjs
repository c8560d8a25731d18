#!/usr/bin/env node
// Obtains real access tokens for the benchmarks through the real OAuth 2.1 flow:
// RFC 8414 metadata → RFC 7591 dynamic registration → /authorize with PKCE (S256) and
// `resource`, with the AS's login and consent forms submitted by the e2e headless
// browser (e2e/lib/harness.js) → /token. No token is minted by hand.
//
//   node bench/scripts/oauth.mjs --issuer URL --resource URL [--username demo]
//        [--password demo123] [--scope mcp:read] [--pool N --pool-file FILE]
//        [--refresh] [--mark-url URL]
//
// Prints one JSON object: access_token, the client and PKCE pair (so the harness can
// mint more codes for the same client through /authorize), the browser's cookies for
// the AS, and the token endpoint. With --pool N it also writes N more distinct access
// tokens (one full authorize + token round per token, consent remembered) to FILE.
// With --refresh it also redeems the refresh token once (refresh_token grant). With
// --mark-url it GETs URL?step=<METHOD path> after every HTTP request to the AS, so that
// the harness can attribute the database traffic it observes to each request.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Browser } from '../../e2e/lib/harness.js';

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) args[key] = true;
    else { args[key] = next; i++; }
  }
  return args;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

async function json(response, what) {
  const text = await response.text();
  if (!response.ok) throw new Error(`${what} answered ${response.status}: ${text.slice(0, 500)}`);
  try { return JSON.parse(text); } catch { throw new Error(`${what} answered non-JSON: ${text.slice(0, 500)}`); }
}

async function metadata(issuer) {
  const base = issuer.replace(/\/$/, '');
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const r = await fetch(base + path);
    if (r.ok) return r.json();
  }
  throw new Error(`no authorization server metadata at ${issuer}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.issuer) throw new Error('--issuer is required');
  const issuer = args.issuer;
  const resource = args.resource && args.resource !== true ? args.resource : undefined;
  const username = args.username ?? 'demo';
  const password = args.password ?? 'demo123';
  const scope = args.scope ?? 'mcp:read';
  const redirectUri = args['redirect-uri'] ?? 'http://127.0.0.1:9/bench/callback';

  const markUrl = args['mark-url'] && args['mark-url'] !== true ? args['mark-url'] : undefined;
  const mark = async (method, url, note = '') => {
    if (!markUrl) return;
    const step = `${method} ${new URL(url).pathname}${note}`;
    const r = await fetch(`${markUrl}?step=${encodeURIComponent(step)}`);
    await r.text();
  };
  const as = await metadata(issuer);
  await mark('GET', `${issuer.replace(/\/$/, '')}/.well-known/oauth-authorization-server`);
  const client = await json(await fetch(as.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      client_name: 'bench harness',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope,
    }),
  }), 'dynamic client registration');
  await mark('POST', as.registration_endpoint);

  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const authorizeUrl = new URL(as.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    scope,
    state: 'bench',
    ...(resource ? { resource } : {}),
  };
  for (const [k, v] of Object.entries(params)) authorizeUrl.searchParams.set(k, v);

  const browser = new Browser();
  if (markUrl) {
    const request = browser.request.bind(browser);
    browser.request = async (url, init = {}) => {
      const response = await request(url, init);
      // The body is read by the caller; the AS has done its database work by the time
      // the status line arrives.
      await mark(init.method ?? 'GET', url);
      return response;
    };
  }
  const exchange = async (code) => json(await fetch(as.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: client.client_id,
      code_verifier: verifier,
      ...(resource ? { resource } : {}),
    }),
  }), 'token exchange');
  const oneToken = async () => {
    const final = await browser.authorize(authorizeUrl, { redirectUri, username, password });
    const code = final.searchParams.get('code');
    if (!code) throw new Error(`authorization failed: ${final}`);
    if (final.searchParams.get('state') !== 'bench') throw new Error('state mismatch');
    const tokens = await exchange(code);
    await mark('POST', as.token_endpoint, ' (authorization_code)');
    return tokens;
  };

  const first = await oneToken();
  if (args.refresh) {
    if (!first.refresh_token) throw new Error('no refresh_token in the token response');
    const refreshed = await json(await fetch(as.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: first.refresh_token,
        client_id: client.client_id,
        ...(resource ? { resource } : {}),
      }),
    }), 'refresh_token grant');
    if (!refreshed.access_token) throw new Error('refresh_token grant gave no access_token');
    await mark('POST', as.token_endpoint, ' (refresh_token)');
  }
  const pool = Number(args.pool ?? 0);
  if (pool > 0) {
    if (!args['pool-file']) throw new Error('--pool needs --pool-file');
    const tokens = [];
    const workers = Array.from({ length: 8 }, async () => {
      while (tokens.length < pool) {
        tokens.push(null);
        const t = await oneToken();
        tokens[tokens.indexOf(null)] = t.access_token;
      }
    });
    await Promise.all(workers);
    writeFileSync(args['pool-file'], tokens.filter(Boolean).join('\n') + '\n');
  }

  const origin = new URL(as.authorization_endpoint).origin;
  process.stdout.write(JSON.stringify({
    access_token: first.access_token,
    expires_in: first.expires_in,
    scope: first.scope,
    token_endpoint: as.token_endpoint,
    registration_endpoint: as.registration_endpoint,
    jwks_uri: as.jwks_uri,
    client_id: client.client_id,
    redirect_uri: redirectUri,
    code_verifier: verifier,
    authorize_url: authorizeUrl.toString(),
    cookie: browser.cookieHeader(origin) ?? '',
    resource: resource ?? null,
  }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`oauth.mjs: ${e.stack ?? e}\n`);
  process.exit(1);
});
