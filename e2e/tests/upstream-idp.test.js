// auth-server signing users in through upstream identity providers, while the MCP
// client (the official TypeScript SDK) registers with auth-server and gets its tokens:
//  - node-oidc-provider as "Corp SSO": the whole MCP flow, allow-lists, admin groups,
//    tampered state, a replayed code, a wrong RFC 9207 iss, an upstream that is down,
//    a restart of auth-server between the redirect and the callback;
//  - a hostile provider for the ID token checks (nonce, aud, iss), unverified emails on
//    an allow-list, ':' usernames, a plain-http discovered endpoint, an oversized answer,
//    and a plain OAuth 2.0 (GitHub-like) provider;
//  - /logout redirecting only with an id_token_hint of the client.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { BIN_DIR, Browser, freePort } from '../lib/harness.js';
import { TestOAuthProvider } from '../lib/provider.js';
import { jwtClaims } from '../lib/oauth.js';
import { startCorpIdp, startFakeIdp, startFederatedStack, signInUpstream } from '../lib/upstream-idp.js';

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** auth-server's CLI on the stack's database and configuration. */
function cli(stack, ...args) {
  return execFileSync(path.join(BIN_DIR, 'auth-server'), ['--config', stack.config, '--db', stack.db, ...args], {
    encoding: 'utf8', env: { ...process.env, ...stack.env },
  });
}
const userList = (stack) => cli(stack, 'user', 'list');
const auditLog = (stack) => cli(stack, 'audit', '--limit', '200');

/** The SDK's first connect: 401, discovery, DCR; returns the authorization URL. */
async function sdkAuthorizationUrl(mcpUrl, provider) {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await assert.rejects(new Client({ name: 'e2e-idp', version: '1.0.0' }).connect(first), UnauthorizedError);
  assert.ok(provider.lastAuthorizationUrl, 'the SDK asked to open the authorization URL');
  return { first, url: provider.lastAuthorizationUrl };
}

/** The whole SDK flow with the user signing in at the upstream. */
async function sdkConnectUpstream(stack, { username, idpName = 'Corp SSO', scope } = {}) {
  const provider = new TestOAuthProvider({ clientName: `e2e-idp-${username}` });
  const { url } = await sdkAuthorizationUrl(stack.mcpUrl, provider);
  let authorizationUrl = url;
  if (scope) {
    provider.invalidateCredentials('tokens');
    assert.equal(await auth(provider, { serverUrl: stack.mcpUrl, scope }), 'REDIRECT');
    authorizationUrl = provider.lastAuthorizationUrl;
  }
  const result = await signInUpstream(authorizationUrl, { redirectUri: provider.redirectUrl, username, idpName });
  assert.ok(result.callback, `the flow reached the client: ${result.status} ${result.html?.slice(0, 800)}`);
  assert.equal(result.callback.searchParams.get('iss'), stack.issuer);
  const code = result.callback.searchParams.get('code');
  assert.ok(code, `a code: ${result.callback}`);
  assert.equal(await auth(provider, { serverUrl: stack.mcpUrl, authorizationCode: code }), 'AUTHORIZED');
  const client = new Client({ name: 'e2e-idp', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider }));
  return { client, provider, result };
}

/** An authorization URL for a fresh DCR client, without the SDK. */
async function authorizationUrl(stack, { redirectUri = 'http://localhost:8976/oauth/callback', scope = 'mcp:read' } = {}) {
  const reg = await fetch(`${stack.issuer}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'raw', redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
  });
  assert.equal(reg.status, 201);
  const { client_id: clientId } = await reg.json();
  const url = new URL(`${stack.issuer}/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope, state: 'client-state',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', resource: stack.mcpUrl,
  }).toString();
  return { url, redirectUri };
}

/** Redeems a code of `authorizationUrl` (its fixed RFC 7636 verifier) at auth-server. */
async function exchange(stack, url, code) {
  const response = await fetch(`${stack.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: url.searchParams.get('redirect_uri'),
      client_id: url.searchParams.get('client_id'), resource: url.searchParams.get('resource'),
      code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body;
}

function assertErrorPage(result, status, pattern) {
  assert.ok(!result.callback, `no redirect to the client: ${result.callback}`);
  assert.equal(result.status, status, `${result.url}: ${result.html?.slice(0, 600)}`);
  assert.match(result.html, pattern);
  assert.doesNotMatch(result.url, /localhost:8976/);
}

describe('sign-in through node-oidc-provider (Corp SSO), password login on', () => {
  let idp; let stack; let downPort;
  before(async () => {
    const asPort = await freePort();
    downPort = await freePort();
    idp = await startCorpIdp({ redirectUris: [`http://127.0.0.1:${asPort}/idp/corp/callback`] });
    stack = await startFederatedStack({
      asPort,
      idps: [
        {
          id: 'corp', display_name: 'Corp SSO', issuer: idp.issuer, client_id: idp.clientId,
          scopes: 'openid email profile groups',
          access: { allowed_email_domains: ['example.com'], admin_groups: ['mcp-admins'] },
        },
        // Nothing listens there: an upstream that is down.
        { id: 'down', display_name: 'Down SSO', issuer: `http://127.0.0.1:${downPort}`, client_id: 'x', client_secret: 'unused-secret' },
      ],
      // The secret from the environment, by the provider's index.
      asEnv: { AUTH__IDENTITY_PROVIDERS__0__CLIENT_SECRET: idp.clientSecret },
    });
  });
  after(async () => {
    await stack?.stop();
    await idp?.stop();
  });

  test('the SDK client completes the MCP flow with the user signing in at the upstream', async () => {
    const { client, provider, result } = await sdkConnectUpstream(stack, { username: 'alice' });
    const login = result.seen.find((s) => s.url.startsWith(`${stack.issuer}/authorize`));
    assert.equal(login.status, 200, 'our login page first (password login is on)');
    assert.ok(result.seen.some((s) => s.url.startsWith(idp.issuer)), 'the user signed in at the upstream');
    const claims = jwtClaims(provider.tokens().access_token);
    assert.match(claims.sub, UUID, `sub is our user id: ${claims.sub}`);
    assert.notEqual(claims.sub, 'corp-alice');
    assert.equal(claims.aud, stack.mcpUrl);
    assert.equal(claims.iss, stack.issuer);
    assert.ok(!claims.scope.split(' ').includes('mcp:admin'));
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('hello_world') && !names.includes('admin_panel'), names.join(','));
    const hello = await client.callTool({ name: 'hello_world', arguments: {} });
    assert.match(textOf(hello), /alice/);
    await client.close();
    // The consent page named the client; the user list names the provider.
    const list = userList(stack);
    assert.match(list, /alice\s+user\s+active\s+idp:corp\s+alice@example\.com/);
    assert.match(auditLog(stack), /upstream_login/);
    assert.throws(() => cli(stack, 'user', 'passwd', 'alice', '--password-stdin'), /signs in through idp:corp/);

    // A second sign-in finds the same user: the same `sub`.
    const again = await sdkConnectUpstream(stack, { username: 'alice' });
    assert.equal(jwtClaims(again.provider.tokens().access_token).sub, claims.sub);
    await again.client.close();
  });

  test('a member of an admin group gets mcp:admin and sees admin_panel', async () => {
    const { client, provider } = await sdkConnectUpstream(stack, { username: 'root', scope: 'mcp:read mcp:admin' });
    assert.ok(jwtClaims(provider.tokens().access_token).scope.split(' ').includes('mcp:admin'));
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('admin_panel'), names.join(','));
    const panel = await client.callTool({ name: 'admin_panel', arguments: { action: 'user_stats' } });
    assert.ok(!panel.isError, textOf(panel));
    await client.close();
    assert.match(userList(stack), /root\s+admin\s+active\s+idp:corp/);
  });

  test('a user outside allowed_email_domains is refused with a clear page', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, { redirectUri, username: 'eve' });
    assertErrorPage(result, 403, /Access denied/);
    assert.match(result.html, /eve@evil\.org/);
    assert.match(result.html, /email domain evil\.org is not allowed/);
    assert.doesNotMatch(userList(stack), /eve/);
    assert.match(auditLog(stack), /upstream_login_refused.*evil\.org/);
  });

  test('a tampered state is refused', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, {
      redirectUri,
      onUpstreamCallback: (cb) => {
        const u = new URL(cb);
        u.searchParams.set('state', `${u.searchParams.get('state')}x`);
        return u.toString();
      },
    });
    assertErrorPage(result, 400, /could not be verified/);
    assert.match(result.html, /unknown, expired/);
  });

  test('the callback in another browser (no binding cookie) is refused', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const stopped = await signInUpstream(url, { redirectUri, onUpstreamCallback: () => null });
    assert.ok(stopped.stoppedAt);
    const other = await signInUpstream(stopped.stoppedAt, { redirectUri, browser: new Browser() });
    assertErrorPage(other, 400, /another browser/);
  });

  test('a wrong RFC 9207 iss on the callback is refused', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, {
      redirectUri,
      onUpstreamCallback: (cb) => {
        const u = new URL(cb);
        assert.equal(u.searchParams.get('iss'), idp.issuer, 'node-oidc-provider sends iss');
        u.searchParams.set('iss', `http://127.0.0.1:${downPort}`);
        return u.toString();
      },
    });
    assertErrorPage(result, 400, /names the issuer/);
  });

  test('a replayed upstream code is refused, and so is a replayed callback', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    let first;
    const done = await signInUpstream(url, { redirectUri, onUpstreamCallback: (cb) => { first = cb; return cb; } });
    assert.ok(done.callback?.searchParams.get('code'), 'the first use completes');
    // The same callback again, in the same browser: the state was used.
    const replay = await signInUpstream(first, { redirectUri, browser: done.browser });
    assertErrorPage(replay, 400, /already completed/);
    // The old code with a fresh state of this browser: the provider refuses the code.
    const fresh = await authorizationUrl(stack);
    // This browser is signed in with us: prompt=login sends it upstream again.
    fresh.url.searchParams.set('prompt', 'login');
    const injected = await signInUpstream(fresh.url, {
      redirectUri: fresh.redirectUri,
      browser: done.browser,
      onUpstreamCallback: (cb) => {
        const u = new URL(cb);
        u.searchParams.set('code', new URL(first).searchParams.get('code'));
        return u.toString();
      },
    });
    assertErrorPage(injected, 403, /did not sign you in: the code was not accepted/);
  });

  test('an upstream that is down gives a clear page, and password login still works', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, { redirectUri, idpName: 'Down SSO' });
    assertErrorPage(result, 502, /Down SSO cannot be reached/);
    assert.match(auditLog(stack), /upstream_error/);
    const browser = new Browser();
    const callback = await browser.authorize(url, { redirectUri, username: 'demo', password: 'demo123' });
    assert.ok(callback.searchParams.get('code'), `password login: ${callback}`);
  });

  test('GET /logout ends the session; it redirects only with an id_token_hint of the client', async () => {
    const { url, redirectUri } = await authorizationUrl(stack, { scope: 'openid email mcp:read' });
    const done = await signInUpstream(url, { redirectUri, username: 'alice' });
    const code = done.callback?.searchParams.get('code');
    assert.ok(code);
    const { id_token: idToken } = await exchange(stack, url, code);
    const id = jwtClaims(idToken);
    assert.equal(id.email, 'alice@example.com');
    assert.equal(id.email_verified, true, 'email_verified comes with every email');
    const clientId = url.searchParams.get('client_id');
    const logout = (params) => done.browser.request(`${stack.issuer}/logout?${new URLSearchParams(params)}`, { redirect: 'manual' });
    // Without the hint (a link anyone can craft): signed out onto our own page.
    const plain = await logout({ client_id: clientId, post_logout_redirect_uri: redirectUri });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers.get('location'), null);
    assert.match(await plain.text(), /You are signed out/);
    // An unregistered URI, even with the hint: no redirect either.
    const bad = await logout({ client_id: clientId, post_logout_redirect_uri: 'https://evil.example/', id_token_hint: idToken });
    assert.equal(bad.status, 200);
    assert.equal(bad.headers.get('location'), null);
    await bad.body?.cancel();
    // The client's own ID token and registered URI: back to the client, with its state.
    const out = await logout({ client_id: clientId, post_logout_redirect_uri: redirectUri, id_token_hint: idToken, state: 's1' });
    assert.equal(out.status, 303);
    assert.equal(out.headers.get('location'), `${redirectUri}?state=s1`);
    // Signed out: /authorize shows the login page again instead of issuing a code.
    const page = await done.browser.request(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Continue with Corp SSO/);
  });

  test('a user disabled with `auth-server user disable` stays out whatever the provider says', async () => {
    cli(stack, 'user', 'disable', 'alice');
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, { redirectUri, username: 'alice' });
    assertErrorPage(result, 403, /alice is disabled/);
    assert.match(auditLog(stack), /upstream_login_refused.*disabled/);
  });
});

describe('password login off, one provider; auth-server restarts mid-sign-in', () => {
  let idp; let stack;
  before(async () => {
    const asPort = await freePort();
    idp = await startCorpIdp({ redirectUris: [`http://127.0.0.1:${asPort}/idp/corp/callback`] });
    stack = await startFederatedStack({
      asPort,
      password: false,
      idps: [{ id: 'corp', display_name: 'Corp SSO', issuer: idp.issuer, client_id: idp.clientId, client_secret: idp.clientSecret, scopes: 'openid email profile groups' }],
    });
  });
  after(async () => {
    await stack?.stop();
    await idp?.stop();
  });

  test('/authorize goes straight to the provider, but only for a valid client request', async () => {
    const { url } = await authorizationUrl(stack);
    const response = await fetch(url, { redirect: 'manual' });
    assert.equal(response.status, 302);
    const location = new URL(response.headers.get('location'));
    assert.equal(location.origin, idp.issuer);
    assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(location.searchParams.get('nonce') && location.searchParams.get('state'));
    assert.equal(location.searchParams.get('redirect_uri'), `${stack.issuer}/idp/corp/callback`);
    // An unregistered redirect URI never leaves our origin.
    const bad = new URL(url);
    bad.searchParams.set('redirect_uri', 'https://evil.example/cb');
    const refused = await fetch(bad, { redirect: 'manual' });
    assert.equal(refused.status, 400);
    assert.match(await refused.text(), /not registered/);
  });

  test('a restart between the redirect to the provider and its callback still completes', async () => {
    const provider = new TestOAuthProvider({ clientName: 'e2e-idp-restart' });
    const { url } = await sdkAuthorizationUrl(stack.mcpUrl, provider);
    const stopped = await signInUpstream(url, { redirectUri: provider.redirectUrl, onUpstreamCallback: () => null });
    assert.ok(stopped.stoppedAt, 'stopped at the callback');
    await stack.restartAs();
    const result = await signInUpstream(stopped.stoppedAt, { redirectUri: provider.redirectUrl, browser: stopped.browser });
    assert.ok(result.callback?.searchParams.get('code'), `completed after the restart: ${result.status} ${result.html?.slice(0, 500)}`);
    assert.equal(await auth(provider, { serverUrl: stack.mcpUrl, authorizationCode: result.callback.searchParams.get('code') }), 'AUTHORIZED');
    const client = new Client({ name: 'e2e-idp', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider }));
    assert.ok((await client.listTools()).tools.length > 0);
    await client.close();
  });

  test('POST /login with a password is refused when password login is off', async () => {
    const browser = new Browser();
    const { url } = await authorizationUrl(stack);
    await (await browser.request(url)).body?.cancel();
    const response = await browser.request(`${stack.issuer}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...Object.fromEntries(url.searchParams), username: 'demo', password: 'demo123' }),
    });
    assert.equal(response.status, 403);
    assert.match(await response.text(), /Password sign-in is off/);
  });
});

describe('ID token checks (a hostile provider) and a plain OAuth 2.0 provider', () => {
  let fake; let stack;
  before(async () => {
    fake = await startFakeIdp();
    stack = await startFederatedStack({
      idps: [
        { id: 'fake', display_name: 'Fake OIDC', issuer: fake.issuer, client_id: fake.clientId, client_secret: fake.clientSecret },
        {
          id: 'gh', display_name: 'GitHub-like', kind: 'oauth2', issuer: fake.issuer,
          authorization_endpoint: `${fake.issuer}/authorize`, token_endpoint: `${fake.issuer}/token`,
          userinfo_endpoint: `${fake.issuer}/user`, emails_endpoint: `${fake.issuer}/user/emails`,
          client_id: fake.clientId, client_secret: fake.clientSecret, scopes: 'read:user user:email',
          claims: { subject: 'id', username: 'login' },
        },
        // The username is the email, and only one email may sign in.
        {
          id: 'strict', display_name: 'Strict OIDC', issuer: fake.issuer, client_id: fake.clientId, client_secret: fake.clientSecret,
          claims: { username: 'email' }, access: { allowed_users: ['boss@example.com'] },
        },
        { id: 'plain', display_name: 'Plain HTTP OIDC', issuer: `${fake.issuer}/plain`, client_id: fake.clientId, client_secret: fake.clientSecret },
      ],
    });
  });
  after(async () => {
    await stack?.stop();
    await fake?.stop();
  });

  test('the fake provider signs a user in when it follows the rules', async () => {
    fake.state.mode = 'ok';
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, { redirectUri, idpName: 'Fake OIDC' });
    assert.ok(result.callback?.searchParams.get('code'), `${result.status} ${result.html?.slice(0, 500)}`);
  });

  for (const [mode, pattern] of [
    ['wrong-nonce', /nonce/],
    ['wrong-aud', /meant for another client/],
    ['wrong-iss', /issued by another issuer/],
    ['several-aud', /several audiences and no azp/],
  ]) {
    test(`an ID token with ${mode} is refused`, async () => {
      fake.state.mode = mode;
      try {
        const { url, redirectUri } = await authorizationUrl(stack);
        const result = await signInUpstream(url, { redirectUri, idpName: 'Fake OIDC' });
        assertErrorPage(result, 400, pattern);
      } finally {
        fake.state.mode = 'ok';
      }
    });
  }

  test('an ID token with several audiences is accepted when azp names us', async () => {
    fake.state.mode = 'several-aud-azp';
    try {
      const { url, redirectUri } = await authorizationUrl(stack);
      const result = await signInUpstream(url, { redirectUri, idpName: 'Fake OIDC' });
      assert.ok(result.callback?.searchParams.get('code'), `${result.status} ${result.html?.slice(0, 500)}`);
    } finally {
      fake.state.mode = 'ok';
    }
  });

  test('allowed_users admits an email only when the provider says it is verified', async () => {
    const boss = { sub: 'boss-1', email: 'boss@example.com' };
    try {
      for (const user of [{ ...boss, sub: 'attacker-1', email_verified: false }, { ...boss, sub: 'attacker-2' }]) {
        fake.state.user = user;
        const { url, redirectUri } = await authorizationUrl(stack);
        const result = await signInUpstream(url, { redirectUri, idpName: 'Strict OIDC' });
        assertErrorPage(result, 403, /not on the list of allowed users/);
      }
      assert.doesNotMatch(userList(stack), /boss@example\.com/);
      fake.state.user = { ...boss, email_verified: true };
      const { url, redirectUri } = await authorizationUrl(stack);
      const result = await signInUpstream(url, { redirectUri, idpName: 'Strict OIDC' });
      assert.ok(result.callback?.searchParams.get('code'), `${result.status} ${result.html?.slice(0, 500)}`);
      assert.match(userList(stack), /boss@example\.com\s+user\s+active\s+idp:strict/);
    } finally {
      fake.state.user = { sub: 'fake-1', preferred_username: 'fakeuser', email: 'fake@example.com', email_verified: true };
    }
  });

  test('a username with ":" (our fallbacks\' mark) is not taken as it is', async () => {
    try {
      fake.state.user = { sub: 'squatter-1', preferred_username: 'gh:octocat' };
      const { url, redirectUri } = await authorizationUrl(stack);
      const result = await signInUpstream(url, { redirectUri, idpName: 'Fake OIDC' });
      assert.ok(result.callback?.searchParams.get('code'), `${result.status} ${result.html?.slice(0, 500)}`);
      const list = userList(stack);
      assert.match(list, /fake:squatter-1\s+user\s+active\s+idp:fake/);
      assert.doesNotMatch(list, /^gh:octocat/m);
    } finally {
      fake.state.user = { sub: 'fake-1', preferred_username: 'fakeuser', email: 'fake@example.com', email_verified: true };
    }
  });

  test('a discovered plain-http endpoint off loopback is refused before anything is sent there', async () => {
    const { url, redirectUri } = await authorizationUrl(stack);
    const result = await signInUpstream(url, { redirectUri, idpName: 'Plain HTTP OIDC' });
    assertErrorPage(result, 502, /Plain HTTP OIDC cannot be reached/);
    assert.match(result.html, /token_endpoint .*must use https/);
  });

  test('a provider answer over the size cap is refused, not buffered', async () => {
    fake.state.mode = 'huge-userinfo';
    try {
      const { url, redirectUri } = await authorizationUrl(stack);
      const result = await signInUpstream(url, { redirectUri, idpName: 'Fake OIDC' });
      assertErrorPage(result, 502, /did not answer JSON/);
    } finally {
      fake.state.mode = 'ok';
    }
  });

  test('an OAuth2-only provider (no ID token; userinfo only) signs a user in', async () => {
    fake.state.mode = 'oauth2';
    try {
      const { client, provider } = await sdkConnectUpstream(stack, { username: 'octocat', idpName: 'GitHub-like' });
      assert.match(jwtClaims(provider.tokens().access_token).sub, UUID);
      const hello = await client.callTool({ name: 'hello_world', arguments: {} });
      assert.match(textOf(hello), /octocat/);
      await client.close();
      assert.match(userList(stack), /octocat\s+user\s+active\s+idp:gh\s+octocat@example\.com/);
    } finally {
      fake.state.mode = 'ok';
    }
  });
});
