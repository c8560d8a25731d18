// The official TypeScript SDK client against two auth-server and two mcp-server
// replicas behind nginx (deploy/nginx/mcp.conf), started by scripts/ha-test.sh:
//   HA_MCP_URL, HA_ISSUER      the MCP URL and the issuer: both nginx
//   HA_AUTH_METRICS            the auth-server replicas' metrics URLs (comma-separated)
//   HA_MCP_METRICS             the mcp-server replicas' metrics URLs
//   HA_MCP_REPLICAS            the mcp-server replicas' own MCP URLs (behind nginx)
//   HA_AUTH_SERVER_PIDS        the auth-server replicas' process ids; the first one is
//                              killed in the middle of a sign-in
//   HA_MCP_SERVER_PIDS         the mcp-server replicas' process ids; the first one is
//                              killed at the end, with a session open on it
// The mcp-server replicas run with transport.session_route "mcp-1" and "mcp-2", the
// routes deploy/nginx/mcp.conf maps to them.
// The tests run in order and build on each other (one topology, one run).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Browser } from './lib/harness.js';
import { jwtClaims } from './lib/oauth.js';
import { TestOAuthProvider } from './lib/provider.js';
import { authorizeAndConnect, recordingFetch, textOf } from './lib/sdk-flow.js';

const list = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is set (scripts/ha-test.sh sets it)`);
  return value.split(',');
};
const mcpUrl = list('HA_MCP_URL')[0];
const issuer = list('HA_ISSUER')[0];
const authMetrics = list('HA_AUTH_METRICS');
const mcpMetrics = list('HA_MCP_METRICS');
const mcpReplicas = list('HA_MCP_REPLICAS');
const authPids = list('HA_AUTH_SERVER_PIDS').map(Number);
const mcpPids = list('HA_MCP_SERVER_PIDS').map(Number);
const ROUTES = ['mcp-1', 'mcp-2'];
const USER = { username: 'demo', password: 'demo123' };
const MODERN_VERSION = '2026-07-28';

// --- metrics ------------------------------------------------------------------------------

/** Prometheus text → [{name, labels, value}]. */
async function scrape(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, `metrics at ${url}`);
  const samples = [];
  for (const line of (await response.text()).split('\n')) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

function sum(samples, name, match = () => true) {
  return samples.filter((s) => s.name === name && match(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** Requests an auth-server replica answered on `route` without an error status. */
const served = (samples, route) => sum(samples, 'auth_http_requests_total',
  (l) => l.route === route && Number(l.status) < 400);
const messages = (samples, method) => sum(samples, 'mcp_server_jsonrpc_messages_total', (l) => l.method === method);

const AUTH_ROUTES = ['/authorize', '/login', '/token'];
const MCP_METHODS = ['initialize', 'tools/call'];

async function authCounts(url) {
  const samples = await scrape(url);
  return Object.fromEntries([...AUTH_ROUTES, '/register', '/consent'].map((r) => [r, served(samples, r)]));
}
async function mcpCounts(url) {
  const samples = await scrape(url);
  return Object.fromEntries(MCP_METHODS.map((m) => [m, messages(samples, m)]));
}

// --- flows --------------------------------------------------------------------------------

/** The whole sign-in of a new client (DCR, authorize, login, consent, token) and tool
 *  calls on the session it opens. Returns the provider (client and tokens). */
async function signInAndCall(n, browser = new Browser()) {
  const provider = new TestOAuthProvider({ clientName: `ha-${n}` });
  const recorder = recordingFetch();
  const { client, transport } = await authorizeAndConnect({ mcpUrl, issuer, ...USER, provider, browser, recorder });
  const seq = recorder.calls.map((c) => `${c.method} ${c.path} ${c.status}`);
  for (const step of ['POST /register 201', 'POST /token 200']) {
    assert.ok(seq.includes(step), `${step} missing from:\n${seq.join('\n')}`);
  }
  const claims = jwtClaims(provider.tokens().access_token);
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, mcpUrl);
  try {
    // Every call after initialize carries the session id: nginx must keep it on the
    // replica that holds the session, or these would be 404s.
    for (let i = 0; i < 3; i++) {
      assert.match(textOf(await client.callTool({ name: 'hello_world', arguments: {} })), /demo/i);
    }
    const personal = await client.callTool({ name: 'protected_data', arguments: { category: 'personal' } });
    assert.ok(!personal.isError, textOf(personal));
    await transport.terminateSession();
  } finally {
    await client.close();
  }
  return provider;
}

/** A refresh_token grant through nginx; the provider gets the rotated tokens. */
async function refresh(provider) {
  const before = provider.tokens();
  assert.ok(before.refresh_token, 'the client holds a refresh token');
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({
      grant_type: 'refresh_token', refresh_token: before.refresh_token,
      client_id: provider.clientInformation().client_id, resource: mcpUrl,
    }),
  });
  const body = await response.json();
  assert.equal(response.status, 200, `refresh: ${JSON.stringify(body)}`);
  assert.ok(body.access_token && body.refresh_token && body.refresh_token !== before.refresh_token, 'rotated');
  provider.saveTokens({ ...before, ...body });
  return body;
}

/** A tool call on a fresh session with the provider's current token. */
async function callWith(provider) {
  const client = new Client({ name: 'ha', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  try {
    assert.match(textOf(await client.callTool({ name: 'hello_world', arguments: {} })), /demo/i);
    await transport.terminateSession();
  } finally {
    await client.close();
  }
}

/** One 2026-07-28 request: no session, so nginx spreads these over the replicas. */
async function statelessCall(token, id) {
  const response = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': MODERN_VERSION,
      'mcp-method': 'tools/call',
      'mcp-name': 'hello_world',
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id, method: 'tools/call',
      params: {
        name: 'hello_world', arguments: {},
        _meta: {
          'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
          'io.modelcontextprotocol/clientInfo': { name: 'ha', version: '1' },
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.equal(response.headers.get('mcp-session-id'), null, 'no session in this era');
  assert.match(text, /demo/i);
}

const isDown = async (url) => fetch(url).then(() => false, () => true);

// --- the run ------------------------------------------------------------------------------

const state = { providers: [] };

test('sign-ins and tool calls through nginx reach both replicas of each server', async () => {
  // nginx alternates the auth-server replicas per request, and the mcp-server replicas
  // per session; the mcp-servers' own calls to the AS (JWKS, revocation feed) share the
  // auth-server rotation, so which replica a given step meets varies. Sign in until
  // every step has met both replicas (a handful of sign-ins; the bound only stops a
  // balancer that never switches). Every other round makes one extra request first,
  // so a fixed number of requests per sign-in cannot keep a step on one replica.
  let auth = [];
  let mcp = [];
  const missing = () => [
    ...AUTH_ROUTES.flatMap((r) => auth.map((c, i) => (c[r] > 0 ? null : `auth-server-${i + 1} ${r}`))),
    ...MCP_METHODS.flatMap((m) => mcp.map((c, i) => (c[m] > 0 ? null : `mcp-server-${i + 1} ${m}`))),
  ].filter(Boolean);
  for (let n = 1; n <= 16; n++) {
    if (n % 2 === 0) assert.equal((await fetch(`${issuer}/.well-known/oauth-authorization-server`)).status, 200);
    state.providers.push(await signInAndCall(n));
    auth = await Promise.all(authMetrics.map(authCounts));
    mcp = await Promise.all(mcpMetrics.map(mcpCounts));
    if (n >= 2 && missing().length === 0) break;
  }
  console.log(`per replica after ${state.providers.length} sign-ins:`, JSON.stringify({ auth, mcp }));
  assert.deepEqual(missing(), [], 'every step was served by both replicas');
});

test('a session stays on its replica; the other one answers 404 for it', async () => {
  const provider = state.providers.at(-1);
  await refresh(provider);
  const token = provider.tokens().access_token;
  const client = new Client({ name: 'ha', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  try {
    const session = transport.sessionId;
    assert.ok(session, 'a legacy session');
    assert.ok(ROUTES.some((r) => session.startsWith(`${r}.`)), `the id names its replica: ${session}`);
    // Through nginx: ten calls on the session, all on the replica that holds it.
    for (let i = 0; i < 10; i++) {
      assert.match(textOf(await client.callTool({ name: 'hello_world', arguments: {} })), /demo/i);
    }
    // Straight to each replica, as if the balancer had lost affinity: the holder
    // serves it, the other answers the spec's 404 with a JSON-RPC error.
    const answers = await Promise.all(mcpReplicas.map(async (url) => {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`, 'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': session, 'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
      });
      return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
    }));
    const statuses = answers.map((a) => a.status);
    const holder = ROUTES.findIndex((r) => session.startsWith(`${r}.`));
    assert.deepEqual(statuses, holder === 0 ? [200, 404] : [404, 200], JSON.stringify(answers));
    const lost = answers.find((a) => a.status === 404);
    assert.match(lost.type, /^application\/json/);
    const body = JSON.parse(lost.text);
    assert.equal(body.jsonrpc, '2.0');
    assert.equal(body.error.code, -32600, lost.text);
    assert.equal(body.result, undefined);
    await transport.terminateSession();
  } finally {
    await client.close();
  }

  // 2026-07-28 requests carry no session: spread over both replicas.
  const before = await Promise.all(mcpMetrics.map(mcpCounts));
  for (let i = 0; i < 16; i++) await statelessCall(token, 100 + i);
  const after = await Promise.all(mcpMetrics.map(mcpCounts));
  const spread = after.map((c, i) => c['tools/call'] - before[i]['tools/call']);
  console.log('stateless tools/call per mcp-server replica:', spread.join(' + '));
  assert.equal(spread.reduce((a, b) => a + b, 0), 16);
  assert.ok(spread.every((n) => n > 0), `both replicas served stateless calls: ${spread}`);
});

test('one auth-server replica dies in the middle of a sign-in; everything goes on', async () => {
  const [victim] = authPids;
  const [victimMetrics, survivorMetrics] = authMetrics;
  const before = await authCounts(survivorMetrics);

  // A sign-in whose login page came from either replica; right after it, replica 1
  // is killed (SIGKILL: no graceful shutdown), so the login, the consent and the code
  // exchange run while nginx discovers that it is gone.
  let killedAt;
  class KillingBrowser extends Browser {
    async request(url, init) {
      const response = await super.request(url, init);
      if (!killedAt && new URL(url).pathname === '/authorize') {
        process.kill(victim, 'SIGKILL');
        for (let i = 0; i < 100 && !(await isDown(victimMetrics)); i++) await new Promise((r) => setTimeout(r, 50));
        killedAt = Date.now();
      }
      return response;
    }
  }
  const midway = await signInAndCall('killed-midway', new KillingBrowser());
  assert.ok(killedAt, 'the replica was killed during the sign-in');
  assert.ok(await isDown(victimMetrics), 'auth-server-1 is gone');

  // After it: a token issued while both were up refreshes, the new one works, and new
  // clients register and sign in.
  const early = state.providers[0];
  await refresh(early);
  await callWith(early);
  await refresh(midway);
  await callWith(midway);
  for (let n = 1; n <= 3; n++) {
    const provider = await signInAndCall(`after-kill-${n}`);
    await refresh(provider);
  }

  const after = await authCounts(survivorMetrics);
  const delta = Object.fromEntries(Object.keys(after).map((r) => [r, after[r] - before[r]]));
  console.log('served by auth-server-2 after the kill:', JSON.stringify(delta));
  for (const route of ['/register', '/login', '/consent']) {
    assert.ok(delta[route] >= 3, `auth-server-2 served ${route} after the kill: ${JSON.stringify(delta)}`);
  }
  // 3 new sign-ins and 3 of their refreshes, 2 older refreshes, the sign-in that
  // spanned the kill (its code exchange at least).
  assert.ok(delta['/token'] >= 9, `auth-server-2 served the token requests: ${JSON.stringify(delta)}`);
});

/** A raw legacy request on `session` through nginx. */
async function onSession(token, session, body) {
  const response = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`, 'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18',
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
}

test('an mcp-server replica dies: its sessions get 404 through nginx, new ones work', async () => {
  const provider = state.providers.at(-1);
  await refresh(provider);
  const token = provider.tokens().access_token;
  const [victim] = mcpPids;
  const [victimMetrics] = mcpMetrics;

  // A session on mcp-server-1: header-less initializes alternate between the replicas.
  let onVictim;
  const open = [];
  for (let i = 0; i < 8 && !onVictim; i++) {
    const client = new Client({ name: 'ha', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
    await client.connect(transport);
    open.push(client);
    if (transport.sessionId.startsWith('mcp-1.')) onVictim = transport.sessionId;
  }
  assert.ok(onVictim, 'a session opened on mcp-server-1');
  const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hello_world', arguments: {} } };
  // Several calls at once: nginx then holds several connections to mcp-server-1, which
  // the requests right after its death could be sent on.
  const before = await Promise.all(Array.from({ length: 8 }, () => onSession(token, onVictim, call)));
  assert.deepEqual(before.map((r) => r.status), Array(8).fill(200));

  process.kill(victim, 'SIGKILL');
  for (let i = 0; i < 100 && !(await isDown(victimMetrics)); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(await isDown(victimMetrics), 'mcp-server-1 is gone');

  // Its session: nginx hands it to the other replica, which does not have it: the
  // spec's 404 with a JSON-RPC error (the client's cue to initialize again), also once
  // nginx has marked the replica down.
  // At once first (none may land on a connection to the dead replica: a 502), then
  // one by one.
  const lostTogether = await Promise.all(Array.from({ length: 8 }, () => onSession(token, onVictim, call)));
  for (let i = 0; i < 2; i++) lostTogether.push(await onSession(token, onVictim, call));
  for (const lost of lostTogether) {
    assert.equal(lost.status, 404, JSON.stringify(lost));
    assert.match(lost.type, /^application\/json/);
    assert.equal(JSON.parse(lost.text).error.code, -32600, lost.text);
  }
  // Starting over works, on the replica that is left.
  const client = new Client({ name: 'ha', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await client.connect(transport);
  try {
    assert.ok(transport.sessionId.startsWith('mcp-2.'), transport.sessionId);
    assert.match(textOf(await client.callTool({ name: 'hello_world', arguments: {} })), /demo/i);
  } finally {
    await client.close();
  }
  for (let i = 0; i < 4; i++) await statelessCall(token, 200 + i);
  for (const c of open) await c.close();
});
