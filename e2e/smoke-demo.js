// Smoke test of the README's demo command: the official TypeScript SDK client runs the
// full OAuth flow against the running demo (mcp-server on :3000, auth-server on :3001)
// as the demo user, then lists and calls tools.
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Browser } from './lib/harness.js';
import { TestOAuthProvider } from './lib/provider.js';

const mcpUrl = process.argv[2] ?? 'http://localhost:3000/mcp';
// `--upstream-idp`: the demo runs with "Corp SSO"; sign in there as alice.
const upstream = process.argv.includes('--upstream-idp');
const user = upstream ? 'alice' : 'demo';
const provider = new TestOAuthProvider({ clientName: 'demo-smoke' });
const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
await assert.rejects(new Client({ name: 'smoke', version: '1.0.0' }).connect(first), UnauthorizedError);
// Loaded only here: it needs node-oidc-provider.
const signInUpstream = upstream ? (await import('./lib/upstream-idp.js')).signInUpstream : undefined;
const callback = upstream
  ? (await signInUpstream(provider.lastAuthorizationUrl, { redirectUri: provider.redirectUrl, username: 'alice' })).callback
  : await new Browser().authorize(provider.lastAuthorizationUrl, {
    redirectUri: provider.redirectUrl, username: 'demo', password: 'demo123',
  });
assert.ok(callback?.searchParams.get('code'), 'the sign-in reached the client with a code');
await first.finishAuth(callback.searchParams.get('code'));
const client = new Client({ name: 'smoke', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
assert.ok(tools.includes('hello_world') && tools.includes('user_profile'), tools.join(','));
const hello = await client.callTool({ name: 'hello_world', arguments: {} });
assert.match(hello.content[0].text, new RegExp(user, 'i'));
await client.close();
console.log(`demo smoke: OAuth flow as ${user}${upstream ? ' through Corp SSO' : ''} OK; tools: ${tools.join(', ')}`);
