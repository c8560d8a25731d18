// The official TypeScript SDK client against a compose topology that
// scripts/compose-run.sh started from the compose file's own wiring:
//   MCP_URL   the MCP endpoint as a browser on the host reaches it (published port)
//   ISSUER    optional: the issuer the topology is meant to have
//   GATEWAY   set when the topology's mcp-server fronts an upstream MCP server (gateway
//             mode with config/gateway.toml's policy, e.g. the everything server): the
//             tools checked are the upstream's, `echo` for anyone and `get-env` for
//             mcp:admin, instead of the built-in demo tools
// A demo user runs the full OAuth flow (its token is verified through the RS's
// back-channel JWKS/discovery URLs, against the issuer browsers see); an admin steps up
// to mcp:admin and calls admin_panel, which reaches the AS's admin API with the RS's
// own client credentials (the secret both services take from the environment).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Browser } from './lib/harness.js';
import { jwtClaims } from './lib/oauth.js';
import { TestOAuthProvider } from './lib/provider.js';
import { authorizeAndConnect, recordingFetch, stepUp, textOf } from './lib/sdk-flow.js';

const mcpUrl = process.env.MCP_URL;
assert.ok(mcpUrl, 'MCP_URL names the MCP endpoint of the running topology');
const gateway = Boolean(process.env.GATEWAY);

/** The issuer the resource server names in its protected-resource metadata. */
async function advertisedIssuer() {
  const url = new URL(mcpUrl);
  const prm = await (await fetch(`${url.origin}/.well-known/oauth-protected-resource${url.pathname}`)).json();
  assert.equal(prm.resource, mcpUrl, 'PRM names the MCP URL browsers use');
  const [issuer] = prm.authorization_servers ?? [];
  assert.ok(issuer, JSON.stringify(prm));
  if (process.env.ISSUER) assert.equal(issuer, process.env.ISSUER);
  return issuer;
}

test('demo user: PRM, AS metadata, DCR, login + consent, token, tools', async () => {
  const issuer = await advertisedIssuer();
  const provider = new TestOAuthProvider({ clientName: 'compose-run' });
  const recorder = recordingFetch();
  const { client } = await authorizeAndConnect({
    mcpUrl, issuer, username: 'demo', password: 'demo123', provider, browser: new Browser(), recorder,
  });
  const seq = recorder.calls.map((c) => `${c.method} ${c.path} ${c.status}`);
  assert.equal(seq[0], 'POST /mcp 401');
  for (const step of ['GET /.well-known/oauth-authorization-server 200', 'POST /register 201', 'POST /token 200']) {
    assert.ok(seq.includes(step), `${step} missing from:\n${seq.join('\n')}`);
  }
  const claims = jwtClaims(provider.tokens().access_token);
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, mcpUrl);

  try {
    const names = (await client.listTools()).tools.map((t) => t.name);
    if (gateway) {
      // The upstream's tools through the policy: mcp:read sees echo, not get-env.
      assert.ok(names.includes('echo') && !names.includes('hello_world'), names.join(','));
      assert.ok(!names.includes('get-env'), `get-env needs mcp:admin: ${names.join(',')}`);
      assert.match(textOf(await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } })),
        /through the gateway/);
    } else {
      assert.ok(names.includes('hello_world') && names.includes('protected_data'), names.join(','));
      assert.match(textOf(await client.callTool({ name: 'hello_world', arguments: {} })), /demo/i);
      const personal = await client.callTool({ name: 'protected_data', arguments: { category: 'personal' } });
      assert.ok(!personal.isError, textOf(personal));
    }
  } finally {
    await client.close();
  }
});

test(gateway ? 'admin user: step-up to mcp:admin, the upstream\'s admin-only tool' : 'admin user: step-up to mcp:admin, admin_panel through the AS admin API', async () => {
  const issuer = await advertisedIssuer();
  const provider = new TestOAuthProvider({ clientName: 'compose-run-admin' });
  const browser = new Browser();
  const first = await authorizeAndConnect({
    mcpUrl, issuer, username: 'admin', password: 'admin123', provider, browser, recorder: recordingFetch(),
  });
  await first.client.close();
  await stepUp({ mcpUrl, provider, browser, scope: 'mcp:read mcp:admin', username: 'admin', password: 'admin123' });
  const admin = new Client({ name: 'compose-run', version: '1.0.0' });
  await admin.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  try {
    if (gateway) {
      // The upstream's admin-only tool, visible and callable after the step-up.
      const names = (await admin.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('get-env'), names.join(','));
      const env = await admin.callTool({ name: 'get-env', arguments: {} });
      assert.ok(!env.isError, textOf(env));
    } else {
      const stats = await admin.callTool({ name: 'admin_panel', arguments: { action: 'user_stats' } });
      assert.ok(!stats.isError, textOf(stats));
      assert.match(textOf(stats), /demo/);
    }
  } finally {
    await admin.close();
  }
});
