// The official MCP TypeScript SDK client runs the whole OAuth 2.1 flow against the
// real auth-server and mcp-server binaries: 401 → PRM → AS metadata → DCR →
// authorize (PKCE + resource) → login + consent → token → MCP calls → refresh,
// then a step-up to mcp:admin (granted to an admin, refused to the demo user).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Browser, startStack } from '../lib/harness.js';
import { TestOAuthProvider } from '../lib/provider.js';
import * as flow from '../lib/sdk-flow.js';

const { recordingFetch, textOf } = flow;
let stack;
before(async () => { stack = await startStack(); });
after(async () => { await stack?.stop(); });

const authorizeAndConnect = (opts) => flow.authorizeAndConnect({ mcpUrl: stack.mcpUrl, issuer: stack.issuer, ...opts });
const stepUp = (opts) => flow.stepUp({ mcpUrl: stack.mcpUrl, ...opts });

describe('official TypeScript SDK client against auth-server + mcp-server', () => {
  test('demo user: discovery, DCR, PKCE, tools, refresh, and a refused step-up', async () => {
    const provider = new TestOAuthProvider();
    const browser = new Browser();
    const recorder = recordingFetch();
    const { client, authorizationUrl } = await authorizeAndConnect({ username: 'demo', password: 'demo123', provider, browser, recorder });

    // The SDK walked the documented sequence.
    const seq = recorder.calls.map((c) => `${c.method} ${c.path} ${c.status}`);
    assert.equal(seq[0], 'POST /mcp 401');
    assert.match(recorder.calls[0].challenge, /^Bearer /);
    assert.match(recorder.calls[0].challenge, /resource_metadata="[^"]*\/\.well-known\/oauth-protected-resource\/mcp"/);
    assert.match(recorder.calls[0].challenge, /scope="mcp:read"/);
    assert.ok(seq.includes('GET /.well-known/oauth-protected-resource/mcp 200'), seq.join('\n'));
    assert.ok(seq.includes('GET /.well-known/oauth-authorization-server 200'), seq.join('\n'));
    assert.ok(seq.includes('POST /register 201'), seq.join('\n'));
    assert.ok(seq.includes('POST /token 200'), seq.join('\n'));
    assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorizationUrl.searchParams.get('code_challenge'));
    assert.equal(authorizationUrl.searchParams.get('resource'), stack.mcpUrl);

    // The login page was shown, then consent.
    assert.ok(browser.pages.some((p) => /type=["']password["']/.test(p.html)), 'login page shown');
    assert.ok(browser.pages.some((p) => /name=["']decision["']/.test(p.html)), 'consent page shown');
    const tokens = provider.tokens();
    assert.ok(tokens.access_token && tokens.refresh_token, 'access and refresh token issued');
    const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString());
    assert.equal(claims.aud, stack.mcpUrl);
    assert.equal(claims.iss, stack.issuer);
    assert.equal(claims.preferred_username, 'demo');

    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['auth_status', 'hello_world', 'oauth_info', 'protected_data', 'user_profile']);

    const hello = await client.callTool({ name: 'hello_world', arguments: {} });
    assert.match(textOf(hello), /demo/i);
    const profile = await client.callTool({ name: 'user_profile', arguments: {} });
    assert.match(textOf(profile), /demo/);
    const personal = await client.callTool({ name: 'protected_data', arguments: { category: 'personal' } });
    assert.ok(!personal.isError, textOf(personal));
    const again = await client.callTool({ name: 'protected_data', arguments: { category: 'personal' } });
    assert.equal(textOf(again), textOf(personal), 'protected data is stable per user');
    const status = await client.callTool({ name: 'auth_status', arguments: {} });
    assert.ok(!textOf(status).includes(tokens.access_token), 'auth_status never shows the token');
    // Those five calls were answered by mcp-server's bridge itself (transport.direct_tool_calls):
    // the official client accepts those answers like rmcp's.
    assert.equal((await fetch(stack.mcpUrl.replace(/\/mcp$/, '/metrics'))).status, 404, 'no metrics on the public port');
    const metrics = await (await fetch(stack.metricsUrl)).text();
    const direct = metrics.split('\n').filter((l) => l.startsWith('mcp_server_direct_tool_calls_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    assert.equal(direct, 5, metrics);

    // The admin category needs mcp:admin: the server answers 403 insufficient_scope;
    // the SDK refreshes (rotating the refresh token), is refused again and gives up.
    await assert.rejects(
      client.callTool({ name: 'protected_data', arguments: { category: 'admin' } }),
      (err) => /403/.test(String(err?.message ?? err)),
    );
    const stepUpChallenge = recorder.calls.find((c) => c.status === 403)?.challenge ?? '';
    assert.match(stepUpChallenge, /error="insufficient_scope"/);
    assert.match(stepUpChallenge, /scope="[^"]*mcp:admin[^"]*"/);
    assert.ok(recorder.calls.filter((c) => c.path === '/token' && c.status === 200).length >= 2, 'refresh happened');
    const refreshed = provider.tokens();
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh token rotated');

    // A rotated-out refresh token is refused by the AS.
    const reuse = await fetch(`${stack.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token', refresh_token: tokens.refresh_token,
        client_id: provider.clientInformation().client_id, resource: stack.mcpUrl,
      }),
    });
    // Inside the grace window a duplicate refresh is harmless, so either answer is
    // acceptable here; the AS's own tests pin the exact rule.
    assert.ok([200, 400].includes(reuse.status), `refresh reuse answered ${reuse.status}`);

    // Re-authorizing with mcp:admin does not give the demo user admin rights.
    await stepUp({ provider, browser, scope: 'mcp:read mcp:admin', username: 'demo', password: 'demo123' });
    const demoClaims = JSON.parse(Buffer.from(provider.tokens().access_token.split('.')[1], 'base64url').toString());
    assert.ok(!demoClaims.scope.split(' ').includes('mcp:admin'), `demo got ${demoClaims.scope}`);
    const t2 = new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider, fetch: recorder.fn });
    const c2 = new Client({ name: 'e2e', version: '1.0.0' });
    await c2.connect(t2);
    await assert.rejects(
      c2.callTool({ name: 'admin_panel', arguments: { action: 'user_stats' } }),
      (err) => /403/.test(String(err?.message ?? err)),
    );
    await c2.close();
    await client.close();
  });

  test('admin user: step-up to mcp:admin unlocks admin tools', async () => {
    const provider = new TestOAuthProvider({ clientName: 'e2e-admin' });
    const browser = new Browser();
    const recorder = recordingFetch();
    const { client } = await authorizeAndConnect({ username: 'admin', password: 'admin123', provider, browser, recorder });
    let names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(!names.includes('admin_panel'), 'admin_panel hidden without mcp:admin');
    await assert.rejects(
      client.callTool({ name: 'admin_panel', arguments: { action: 'user_stats' } }),
      (err) => /403/.test(String(err?.message ?? err)),
    );
    const challenge = recorder.calls.find((c) => c.status === 403)?.challenge ?? '';
    const scope = challenge.match(/scope="([^"]*)"/)?.[1];
    assert.ok(scope?.split(' ').includes('mcp:admin'), challenge);
    await client.close();

    const url = await stepUp({ provider, browser, scope, username: 'admin', password: 'admin123' });
    assert.ok(url.searchParams.get('scope').split(' ').includes('mcp:admin'));
    const transport = new StreamableHTTPClientTransport(new URL(stack.mcpUrl), { authProvider: provider, fetch: recorder.fn });
    const admin = new Client({ name: 'e2e', version: '1.0.0' });
    await admin.connect(transport);
    names = (await admin.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('admin_panel'), names.join(','));
    const stats = await admin.callTool({ name: 'admin_panel', arguments: { action: 'user_stats' } });
    assert.ok(!stats.isError, textOf(stats));
    assert.match(textOf(stats), /demo/);
    const list = await admin.callTool({ name: 'admin_panel', arguments: { action: 'list_tokens' } });
    assert.ok(!list.isError, textOf(list));
    assert.ok(!textOf(list).includes(provider.tokens().access_token), 'token values never listed');
    const secret = await admin.callTool({ name: 'protected_data', arguments: { category: 'admin' } });
    assert.ok(!secret.isError, textOf(secret));
    await admin.close();
  });
});
