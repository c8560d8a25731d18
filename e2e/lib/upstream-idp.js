// auth-server in front of upstream identity providers: node-oidc-provider as a real
// OpenID Connect provider ("Corp SSO", with a client registered for auth-server), a
// small hostile provider that breaks one rule of the ID token at a time (or speaks
// plain OAuth 2.0 like GitHub), and a browser that signs in through them.
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Provider from 'oidc-provider';
import { Browser, freePort, startProcess, stopProcess } from './harness.js';

/** The people node-oidc-provider knows (any password signs them in). */
export const CORP_ACCOUNTS = {
  alice: { email: 'alice@example.com', name: 'Alice Example', groups: ['staff'] },
  root: { email: 'root@example.com', name: 'Root Admin', groups: ['staff', 'mcp-admins'] },
  eve: { email: 'eve@evil.org', name: 'Eve Outsider', groups: [] },
};

/**
 * node-oidc-provider with one confidential client (`clientId` / `clientSecret`)
 * whose redirect URIs are given (auth-server's `{issuer}/idp/{id}/callback`).
 */
export async function startCorpIdp({ redirectUris, clientId = 'auth-server', clientSecret = randomBytes(24).toString('base64url'), port, host = '127.0.0.1' }) {
  port = port ?? await freePort();
  const issuer = `http://${host}:${port}`;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [{ ...rsa, kid: `corp-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' }] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    findAccount: async (_ctx, id) => {
      const account = CORP_ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: `corp-${id}`,
          preferred_username: id,
          email: account.email,
          email_verified: true,
          name: account.name,
          groups: account.groups,
        }),
      };
    },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    ttl: { AuthorizationCode: 60, IdToken: 300, Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 300 },
  });
  provider.proxy = false;
  const counters = { token: 0 };
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token') counters.token++;
    await next();
  });
  const server = provider.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => { server.once('listening', resolve); server.once('error', reject); });
  return {
    issuer, clientId, clientSecret, counters,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/**
 * A provider that follows the protocol except where `mode` says:
 *  'ok' | 'wrong-nonce' | 'wrong-aud' | 'wrong-iss' (the ID token's) | 'several-aud'
 *  (two audiences, no azp) | 'several-aud-azp' (two audiences, azp = us) | 'oauth2'
 *  (no ID token; GitHub-like `/user` and `/user/emails`).
 * Its authorization endpoint signs the user in at once.
 */
export async function startFakeIdp({ clientId = 'auth-server', clientSecret = 'fake-idp-secret' } = {}) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `fake-${randomBytes(4).toString('hex')}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const codes = new Map();
  const tokens = new Map();
  const state = { mode: 'ok', user: { sub: 'fake-1', preferred_username: 'fakeuser', email: 'fake@example.com', email_verified: true } };
  const json = (res, status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        userinfo_endpoint: `${issuer}/userinfo`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    // A provider whose discovery names a plain-http token endpoint on another host.
    if (url.pathname === '/plain/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer: `${issuer}/plain`,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: 'http://idp.example/token',
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (url.pathname === '/jwks') return json(res, 200, { keys: [jwk] });
    if (url.pathname === '/authorize') {
      const p = Object.fromEntries(url.searchParams);
      const code = randomBytes(16).toString('base64url');
      codes.set(code, p);
      const back = new URL(p.redirect_uri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', p.state);
      res.writeHead(302, { location: back.toString() });
      return res.end();
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const form = new URLSearchParams(body);
      const basic = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString();
      if (basic !== `${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`) return json(res, 401, { error: 'invalid_client' });
      const p = codes.get(form.get('code'));
      codes.delete(form.get('code'));
      if (!p) return json(res, 400, { error: 'invalid_grant', error_description: 'unknown or used code' });
      const challenge = createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url');
      if (challenge !== p.code_challenge || p.code_challenge_method !== 'S256') return json(res, 400, { error: 'invalid_grant', error_description: 'PKCE' });
      if (form.get('redirect_uri') !== p.redirect_uri) return json(res, 400, { error: 'invalid_grant', error_description: 'redirect_uri' });
      const accessToken = randomBytes(16).toString('base64url');
      tokens.set(accessToken, state.user);
      if (state.mode === 'oauth2') return json(res, 200, { access_token: accessToken, token_type: 'bearer', scope: p.scope ?? '' });
      const now = Math.floor(Date.now() / 1000);
      const claims = {
        iss: state.mode === 'wrong-iss' ? 'http://127.0.0.1:1/elsewhere' : issuer,
        aud: { 'wrong-aud': 'another-client', 'several-aud': [clientId, 'another-client'], 'several-aud-azp': [clientId, 'another-client'] }[state.mode] ?? clientId,
        ...(state.mode === 'several-aud-azp' ? { azp: clientId } : {}),
        sub: state.user.sub,
        iat: now,
        exp: now + 300,
        nonce: state.mode === 'wrong-nonce' ? 'not-the-nonce' : p.nonce,
      };
      const input = `${b64url({ alg: 'RS256', kid, typ: 'JWT' })}.${b64url(claims)}`;
      const idToken = `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
      return json(res, 200, { access_token: accessToken, token_type: 'Bearer', id_token: idToken, expires_in: 300 });
    }
    const bearer = (req.headers.authorization ?? '').replace(/^Bearer /i, '');
    if (url.pathname === '/userinfo' || url.pathname === '/user' || url.pathname === '/user/emails') {
      const user = tokens.get(bearer);
      if (!user) return json(res, 401, { error: 'invalid_token' });
      if (url.pathname === '/userinfo' && state.mode === 'huge-userinfo') {
        return json(res, 200, { ...user, padding: 'x'.repeat(300 * 1024) });
      }
      if (url.pathname === '/userinfo') return json(res, 200, user);
      if (url.pathname === '/user') return json(res, 200, { id: 4242, login: 'octocat', name: 'The Octocat', email: null });
      return json(res, 200, [
        { email: 'octo-old@example.com', primary: false, verified: true },
        { email: 'octocat@example.com', primary: true, verified: true },
      ]);
    }
    json(res, 404, { error: 'not_found' });
  });
  server.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => { server.once('listening', resolve); server.once('error', reject); });
  return {
    issuer, clientId, clientSecret, state,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function decodeEntities(s) {
  return s.replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** Every POST form of a page: action, hidden fields, inputs and button text. */
export function parseForms(html, baseUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const action = m[1].match(/action\s*=\s*"([^"]*)"/i)?.[1] ?? '';
    const fields = {};
    for (const input of m[2].matchAll(/<input\b[^>]*>/gi)) {
      const type = input[0].match(/type\s*=\s*"([^"]*)"/i)?.[1] ?? 'text';
      const name = input[0].match(/name\s*=\s*"([^"]*)"/i)?.[1];
      const value = input[0].match(/value\s*=\s*"([^"]*)"/i)?.[1] ?? '';
      if (type === 'hidden' && name) fields[name] = decodeEntities(value);
    }
    forms.push({
      action: new URL(decodeEntities(action), baseUrl).toString(),
      fields,
      text: decodeEntities(m[2].replace(/<[^>]+>/g, ' ')),
      hasPassword: /type\s*=\s*"password"/i.test(m[2]),
      hasDecision: /name\s*=\s*"decision"/i.test(m[2]),
      hasLogin: /name\s*=\s*"login"/i.test(m[2]),
    });
  }
  return forms;
}

/**
 * Signs in through an identity provider, starting at an authorization URL of
 * auth-server, until the redirect to `redirectUri` (returned as a URL) or an
 * error page (returned as `{ status, html, url }`). On our login page it presses
 * "Continue with <idpName>"; at node-oidc-provider it signs in as `username`; our
 * consent page is approved. `onUpstreamCallback(url)` may return a changed callback
 * URL (tampering), or `null` to stop there (returned as `{ stoppedAt }`).
 */
export async function signInUpstream(authorizationUrl, { redirectUri, idpName = 'Corp SSO', username = 'alice', browser = new Browser(), onUpstreamCallback, maxSteps = 20 }) {
  let url = String(authorizationUrl);
  let init = { method: 'GET' };
  const seen = [];
  for (let step = 0; step < maxSteps; step++) {
    if (url.startsWith(redirectUri)) return { callback: new URL(url), seen, browser };
    if (onUpstreamCallback && /\/idp\/[^/]+\/callback\?/.test(url)) {
      const changed = await onUpstreamCallback(url);
      onUpstreamCallback = undefined;
      if (changed === null) return { stoppedAt: url, seen, browser };
      url = changed ?? url;
    }
    const response = await browser.request(url, init);
    seen.push({ url, status: response.status });
    if (response.status >= 300 && response.status < 400) {
      url = new URL(response.headers.get('location'), url).toString();
      init = { method: 'GET' };
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) return { status: response.status, html, url, seen, browser };
    const forms = parseForms(html, url);
    let form = forms.find((f) => f.text.includes(`Continue with ${idpName}`));
    const body = new URLSearchParams();
    if (form) {
      for (const [k, v] of Object.entries(form.fields)) body.set(k, v);
    } else if ((form = forms.find((f) => f.hasDecision))) {
      for (const [k, v] of Object.entries(form.fields)) body.set(k, v);
      body.set('decision', 'approve');
    } else if ((form = forms.find((f) => f.hasLogin))) {
      // node-oidc-provider's development login page.
      for (const [k, v] of Object.entries(form.fields)) body.set(k, v);
      body.set('login', username);
      body.set('password', 'any-password');
    } else if ((form = forms[0]) && !form.hasPassword) {
      // node-oidc-provider's consent page ("Continue").
      for (const [k, v] of Object.entries(form.fields)) body.set(k, v);
    } else {
      return { status: response.status, html, url, seen, browser };
    }
    url = form.action;
    init = { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
  }
  throw new Error(`too many steps signing in upstream: ${JSON.stringify(seen)}`);
}

/** The TOML of one `[[identity_providers]]` table. */
export function idpToml(p) {
  const lines = ['[[identity_providers]]'];
  const scalar = (v) => (typeof v === 'boolean' ? String(v) : JSON.stringify(v));
  for (const [k, v] of Object.entries(p)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) continue;
    lines.push(`${k} = ${Array.isArray(v) ? `[${v.map(scalar).join(', ')}]` : scalar(v)}`);
  }
  for (const [k, v] of Object.entries(p)) {
    if (!v || typeof v !== 'object' || Array.isArray(v)) continue;
    lines.push(`[identity_providers.${k}]`);
    for (const [kk, vv] of Object.entries(v)) lines.push(`${kk} = ${Array.isArray(vv) ? `[${vv.map(scalar).join(', ')}]` : scalar(vv)}`);
  }
  return lines.join('\n');
}

/**
 * auth-server (--demo, with the given identity providers and `[login] password`)
 * and mcp-server (--demo) wired to each other. `asPort` may be chosen first so that
 * the providers know auth-server's callback URLs.
 */
export async function startFederatedStack({ asPort, idps, password = true, asEnv = {} }) {
  asPort = asPort ?? await freePort();
  const rsPort = await freePort();
  const issuer = `http://127.0.0.1:${asPort}`;
  const mcpUrl = `http://127.0.0.1:${rsPort}/mcp`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mcp-e2e-idp-'));
  const config = path.join(dir, 'auth.toml');
  writeFileSync(config, `[login]\npassword = ${password}\n\n${idps.map(idpToml).join('\n\n')}\n`);
  const db = path.join(dir, 'auth.db');
  const asArgs = ['serve', '--config', config, '--demo', '--listen', `127.0.0.1:${asPort}`, '--issuer', issuer, '--db', db, '--resource', mcpUrl];
  const asEnvAll = { AUTH__SERVER__METRICS_LISTEN: 'off', ...asEnv };
  const stack = {
    issuer, mcpUrl, dir, config, db, env: asEnvAll,
    as: await startProcess('auth-server', asArgs, asEnvAll),
    rs: undefined,
    async restartAs() {
      await stopProcess(stack.as);
      stack.as = await startProcess('auth-server', asArgs, asEnvAll);
    },
    async stop() {
      await stopProcess(stack.rs);
      await stopProcess(stack.as);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    stack.rs = await startProcess('mcp-server', [
      'serve', '--demo', '--listen', `127.0.0.1:${rsPort}`, '--resource', mcpUrl, '--issuer', issuer,
    ], { MCP__SERVER__METRICS_LISTEN: 'off' });
  } catch (e) {
    await stopProcess(stack.as);
    throw e;
  }
  return stack;
}
