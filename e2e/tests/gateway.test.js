// Gateway mode: mcp-server in front of the reference "everything" MCP server
// (@modelcontextprotocol/server-everything), as a stdio child and as a Streamable HTTP
// server. The official TypeScript SDK client completes OAuth against auth-server, then
// lists and calls the upstream's tools, reads resources, gets prompts, receives
// progress notifications, and answers a sampling request the upstream sends. The
// scope policy comes from a [policy] file; an HTTP upstream behind a recording proxy
// shows what the upstream receives: never the client's token or cookies.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema, LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { Browser, freePort, startStack } from '../lib/harness.js';
import { TestOAuthProvider } from '../lib/provider.js';
import * as flow from '../lib/sdk-flow.js';

const { recordingFetch, textOf } = flow;
const here = path.dirname(fileURLToPath(import.meta.url));
const EVERYTHING = path.resolve(here, '../node_modules/@modelcontextprotocol/server-everything/dist/index.js');

const POLICY = `
[policy]
default_scope = "mcp:read"
[[policy.tools]]
name = "get-env"
scope = "mcp:admin"
[[policy.tools]]
name = "toggle-*"
scope = "mcp:admin"
[[policy.tools]]
name = "echo"
scope = ""
[[policy.resources]]
name = "demo://resource/static/document/arch*"
scope = "mcp:admin"
`;

/** Pids of processes whose environment carries GATEWAY_E2E_MARK=<mark> (Linux /proc). */
function marked(mark) {
  const needle = `GATEWAY_E2E_MARK=${mark}`;
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`).toString().split('\0').includes(needle)) pids.push(Number(entry));
    } catch { /* gone or not ours */ }
  }
  return pids;
}

async function waitFor(predicate, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (predicate()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** OAuth as the demo user, then a client that offers sampling, connected through the gateway. */
async function connectWithSampling(stack, sampled) {
  const provider = new TestOAuthProvider({ clientName: 'e2e-gateway' });
  const browser = new Browser();
  const recorder = recordingFetch();
  const { client: first, transport: firstTransport } = await flow.authorizeAndConnect({
    mcpUrl: stack.mcpUrl, issuer: stack.issuer, username: 'demo', password: 'demo123', provider, browser, recorder,
  });
  // DELETE: that session (and, for a stdio upstream, its child) ends now.
  await firstTransport.terminateSession();
  await first.close();
  const client = new Client(
    { name: 'e2e-gateway', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    sampled.push(request.params);
    return { model: 'e2e-model', role: 'assistant', content: { type: 'text', text: 'sampled answer from the client' } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///e2e-root', name: 'e2e root' }] }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
  client.logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { client.logs.push(n.params); });
  const transport = new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider, fetch: recorder.fn });
  await client.connect(transport);
  return { client, provider, recorder };
}

/** What every upstream mode must do through the gateway. */
async function exerciseUpstream(stack) {
  const sampled = [];
  const { client, provider, recorder } = await connectWithSampling(stack, sampled);
  assert.equal(client.getServerVersion()?.name, 'mcp-servers/everything');

  // Listing: the upstream's tools, minus what the demo user's mcp:read may not call.
  let names = [];
  for (let i = 0; i < 20; i++) {
    names = (await client.listTools()).tools.map((t) => t.name);
    // Tools the upstream registers once it knows the client's capabilities.
    if (names.includes('trigger-sampling-request')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(names.includes('echo') && names.includes('get-sum'), names.join(','));
  assert.ok(names.includes('trigger-sampling-request'), names.join(','));
  assert.ok(!names.includes('get-env') && !names.some((n) => n.startsWith('toggle-')), names.join(','));

  const echo = await client.callTool({ name: 'echo', arguments: { message: 'hello through the gateway' } });
  assert.match(textOf(echo), /hello through the gateway/);
  const sum = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
  assert.match(textOf(sum), /5/);

  // An mcp:admin tool: 403 insufficient_scope with the step-up challenge.
  await assert.rejects(
    client.callTool({ name: 'get-env', arguments: {} }),
    (err) => /403/.test(String(err?.message ?? err)),
  );
  const challenge = recorder.calls.find((c) => c.status === 403)?.challenge ?? '';
  assert.match(challenge, /error="insufficient_scope"/);
  assert.match(challenge, /scope="mcp:admin[^"]*"/);
  assert.match(challenge, /resource_metadata="[^"]*\/\.well-known\/oauth-protected-resource\/mcp"/);

  // Resources and prompts.
  const resources = (await client.listResources()).resources.map((r) => r.uri);
  assert.ok(resources.includes('demo://resource/static/document/features.md'), resources.join(','));
  assert.ok(!resources.some((u) => u.includes('/arch')), resources.join(','));
  const read = await client.readResource({ uri: 'demo://resource/static/document/features.md' });
  assert.ok(read.contents[0].text.length > 0);
  const prompt = await client.getPrompt({ name: 'simple-prompt' });
  assert.ok(prompt.messages.length > 0);

  // Progress notifications of a long-running upstream tool reach the client.
  const progress = [];
  const long = await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: (p) => progress.push(p) },
  );
  assert.ok(!long.isError, textOf(long));
  assert.equal(progress.length, 3, JSON.stringify(progress));
  assert.deepEqual(progress.map((p) => p.progress), [1, 2, 3]);

  // The upstream's sampling request reaches this client, and its answer goes back.
  const sampling = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'Say hi', maxTokens: 20 } });
  assert.equal(sampled.length, 1, 'one sampling request reached the client');
  assert.match(JSON.stringify(sampled[0].messages), /Say hi/);
  assert.match(JSON.stringify(sampling), /sampled answer from the client/);

  // Roots and elicitation: the upstream asks, this client answers through the gateway;
  // the upstream's log messages (it logs the roots it received) reach the client too.
  const roots = await client.callTool({ name: 'get-roots-list', arguments: {} });
  assert.match(textOf(roots), /file:\/\/\/e2e-root/);
  const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
  assert.match(textOf(elicited), /declined/);
  await waitFor(() => client.logs.some((l) => /Roots updated: 1 root/.test(JSON.stringify(l.data))), 'the upstream\'s log message');

  await client.close();
  return { provider };
}

/** startStack with mcp-server reading `toml` (plus the policy above) as its config file. */
async function startGateway(toml, rsArgs) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mcp-gateway-'));
  const file = path.join(dir, 'gateway.toml');
  writeFileSync(file, `${toml}\n${POLICY}`);
  const stack = await startStack({ rsArgs: [...rsArgs, '--config', file] });
  return { ...stack, async stop() { await stack.stop(); rmSync(dir, { recursive: true, force: true }); } };
}

describe('gateway: stdio upstream (one child per session)', () => {
  let stack;
  const mark = `stdio-${process.pid}-${Date.now()}`;
  before(async () => {
    stack = await startGateway(`[upstream]\nenv = { GATEWAY_E2E_MARK = "${mark}" }`, ['--upstream-cmd', `node ${EVERYTHING} stdio`]);
  });
  after(async () => { await stack?.stop(); });

  test('OAuth, tools, resources, prompts, progress and sampling through the gateway; children end with the server', async () => {
    await exerciseUpstream(stack);
    // The sessions of this test each had a child; closing the clients ended them
    // (DELETE). One more session keeps a child alive until the server stops.
    const sampled = [];
    const { client } = await connectWithSampling(stack, sampled);
    await waitFor(() => marked(mark).length >= 1, 'a child for the open session');
    // The server stops (SIGTERM) with a session open: its child goes too, no orphan.
    await stack.rs.kill('SIGTERM');
    await new Promise((resolve) => (stack.rs.exitCode !== null ? resolve() : stack.rs.once('exit', resolve)));
    await waitFor(() => marked(mark).length === 0, 'no upstream child left after the server stopped');
    await client.close().catch(() => {});
  });

  test('a killed server (SIGKILL) leaves no child either: the child sees its stdin close', async () => {
    const killedMark = `${mark}-killed`;
    const killed = await startGateway(`[upstream]\nenv = { GATEWAY_E2E_MARK = "${killedMark}" }`, ['--upstream-cmd', `node ${EVERYTHING} stdio`]);
    try {
      const { client } = await connectWithSampling(killed, []);
      await waitFor(() => marked(killedMark).length === 1, 'a child for the open session');
      killed.rs.kill('SIGKILL');
      await waitFor(() => marked(killedMark).length === 0, 'no orphaned upstream child after SIGKILL');
      await client.close().catch(() => {});
    } finally {
      await killed.stop();
    }
  });
});

/** A reverse proxy that records the request headers it forwards to `target`. */
async function recordingProxy(target) {
  const seen = [];
  const state = { expireSessions: false };
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, headers: { ...req.headers } });
    // An upstream that forgot every session (restarted, expired them).
    if (state.expireSessions && req.headers['mcp-session-id']) {
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
      return;
    }
    const upstream = http.request(new URL(req.url, target), { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}/mcp`, seen, state, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

describe('gateway: Streamable HTTP upstream (behind a header-recording proxy)', () => {
  let stack;
  let everything;
  let proxy;
  let identityStack;
  before(async () => {
    const port = await freePort();
    everything = spawn('node', [EVERYTHING, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`everything server did not start: ${out}`)), 20000);
      const onData = (d) => { out += d; if (/listening on port/i.test(out)) { clearTimeout(timer); resolve(); } };
      everything.stdout.on('data', onData);
      everything.stderr.on('data', onData);
    });
    everything.stdout.resume();
    everything.stderr.resume();
    proxy = await recordingProxy(`http://127.0.0.1:${port}`);
    stack = await startGateway('[upstream]\nheaders = { "X-Api-Key" = "gateway-own-key" }', ['--upstream-url', proxy.url]);
  });
  after(async () => {
    await stack?.stop();
    await identityStack?.stop();
    await proxy?.close();
    everything?.kill('SIGTERM');
  });

  test('OAuth, tools, resources, prompts, progress and sampling; the upstream never sees the client token', async () => {
    const { provider } = await exerciseUpstream(stack);
    const token = provider.tokens().access_token;
    assert.ok(proxy.seen.length > 5, `the upstream was used (${proxy.seen.length} requests)`);
    for (const { method, headers } of proxy.seen) {
      assert.equal(headers.authorization, undefined, `${method}: no Authorization header upstream`);
      assert.equal(headers.cookie, undefined, `${method}: no cookies upstream`);
      assert.equal(headers['x-api-key'], 'gateway-own-key', `${method}: the gateway's own static credential`);
      assert.equal(headers['x-mcp-subject'], undefined, 'no identity headers without upstream.forward_identity');
      assert.ok(!JSON.stringify(headers).includes(token), `${method}: the token appears in no header`);
    }
    // The standalone GET stream to the upstream was opened (server-to-client messages).
    assert.ok(proxy.seen.some((r) => r.method === 'GET'), proxy.seen.map((r) => r.method).join(','));
    const ready = await (await fetch(stack.mcpUrl.replace(/\/mcp$/, '/readyz'))).json();
    assert.equal(ready.upstream.reachable, true, JSON.stringify(ready));
  });

  test('forward_identity sends who is calling; an upstream that forgets the session ends ours', async () => {
    identityStack = await startGateway('[upstream]\nforward_identity = true', ['--upstream-url', proxy.url]);
    const sampled = [];
    const { client, provider } = await connectWithSampling(identityStack, sampled);
    const before = proxy.seen.length;
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'who am I' } });
    assert.match(textOf(echo), /who am I/);
    const calls = proxy.seen.slice(before);
    assert.ok(calls.length > 0);
    const claims = JSON.parse(Buffer.from(provider.tokens().access_token.split('.')[1], 'base64url').toString());
    for (const { headers } of calls) {
      assert.equal(headers.authorization, undefined);
      assert.equal(headers['x-mcp-subject'], claims.sub);
      assert.equal(headers['x-mcp-username'], 'demo');
      assert.equal(headers['x-mcp-client-id'], provider.clientInformation().client_id);
      assert.ok(headers['x-mcp-scopes'].split(' ').includes('mcp:read'), headers['x-mcp-scopes']);
      assert.equal(headers['x-api-key'], undefined, 'no static headers configured here');
    }
    await client.close();

    // A session of our own, by hand; then the upstream forgets its session.
    const token = provider.tokens().access_token;
    const post = (body, session) => fetch(identityStack.mcpUrl, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream',
        ...(session ? { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } : {}),
      },
      body: JSON.stringify(body),
    });
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    assert.equal(init.status, 200);
    const session = init.headers.get('mcp-session-id');
    await init.text();
    assert.equal((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status, 202);
    const ok = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x' } } }, session);
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /Echo: x/);
    proxy.state.expireSessions = true;
    try {
      const failed = await post({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { message: 'y' } } }, session);
      assert.equal(failed.status, 200);
      assert.match(await failed.text(), /"error".*upstream MCP server ended this session/);
      let status = 0;
      for (let i = 0; i < 50 && status !== 404; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const again = await post({ jsonrpc: '2.0', id: 4, method: 'ping' }, session);
        status = again.status;
        await again.text();
      }
      assert.equal(status, 404, 'our session ended with the upstream one');
    } finally {
      proxy.state.expireSessions = false;
    }
  });
});
