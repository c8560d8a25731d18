// mcp-server behind an independent, certified authorization server: node-oidc-provider
// (no auth-server involved). Configuration: config/external-as/oidc-provider.toml.
//  (a) JWKS mode: the official TypeScript SDK client runs the whole flow (401 → PRM →
//      discovery → DCR → authorize with PKCE + resource → devInteractions login/consent
//      → token) and lists and calls tools;
//  (b) introspection mode with opaque tokens, answers cached, revocation honoured;
//  (c) a token the provider minted for another resource is refused (401).
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { freePort, startProcess, stopProcess } from '../lib/harness.js';
import { TestOAuthProvider } from '../lib/provider.js';
import { jwtClaims, userTokenSession } from '../lib/oauth.js';
import { RS_CLIENT, authorizeWithDevInteractions, startOidcProvider } from '../lib/oidc-provider-server.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CONFIG = path.join(repo, 'config/external-as/oidc-provider.toml');

async function startMcpServer({ issuer, env = {} }) {
  const port = await freePort();
  const mcpUrl = `http://127.0.0.1:${port}/mcp`;
  const child = await startProcess('mcp-server', [
    'serve', '--config', CONFIG, '--listen', `127.0.0.1:${port}`, '--resource', mcpUrl, '--issuer', issuer,
  ], {
    MCP__DATA__PROTECTED_DATA_FILE: path.join(repo, 'config/protected-data.json'),
    MCP__SERVER__METRICS_LISTEN: 'off',
    ...env,
  });
  return { child, mcpUrl };
}

/** A raw MCP initialize with a bearer token (no SDK): the status and challenge. */
async function initializeWith(mcpUrl, token) {
  const res = await fetch(mcpUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'interop', version: '1.0.0' } },
    }),
  });
  await res.body?.cancel();
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
}

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');

/** The official TS SDK client's whole OAuth flow against oidc-provider's dev pages. */
async function sdkConnect(mcpUrl, username) {
  const provider = new TestOAuthProvider({ clientName: `oidc-interop-${username}` });
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  await assert.rejects(new Client({ name: 'interop', version: '1.0.0' }).connect(first), UnauthorizedError);
  const authorizationUrl = provider.lastAuthorizationUrl;
  assert.ok(authorizationUrl, 'the SDK asked to open the authorization URL');
  assert.equal(authorizationUrl.searchParams.get('resource'), mcpUrl);
  assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
  const callback = await authorizeWithDevInteractions(authorizationUrl, { redirectUri: provider.redirectUrl, username });
  const code = callback.searchParams.get('code');
  assert.ok(code, `redirect carries a code: ${callback}`);
  await first.finishAuth(code);
  const client = new Client({ name: 'interop', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return { client, provider, authorizationUrl };
}

describe('mcp-server with node-oidc-provider as the authorization server', () => {
  describe('JWKS mode (JWT access tokens, aud = the MCP URL)', () => {
    let op; let rs; let otherResource;
    before(async () => {
      otherResource = `http://127.0.0.1:${await freePort()}/other-mcp`;
      const resources = {};
      op = await startOidcProvider({ resources, accessTokenFormat: 'jwt' });
      rs = await startMcpServer({ issuer: op.issuer });
      // The provider learns the resource URLs once mcp-server's port is known.
      resources[rs.mcpUrl] = 'mcp:read';
      resources[otherResource] = 'mcp:read';
    });
    after(async () => {
      await stopProcess(rs?.child);
      await op?.stop();
    });

    test('the TypeScript SDK client completes the flow, lists and calls tools', async () => {
      const { client, provider } = await sdkConnect(rs.mcpUrl, 'alice');
      const claims = jwtClaims(provider.tokens().access_token);
      assert.equal(claims.iss, op.issuer);
      assert.equal(claims.aud, rs.mcpUrl);
      assert.equal(claims.sub, 'alice');
      assert.ok(op.counters.registration >= 1, 'the SDK registered dynamically at oidc-provider');

      const names = (await client.listTools()).tools.map((t) => t.name);
      for (const expected of ['hello_world', 'auth_status', 'user_profile', 'protected_data', 'oauth_info']) {
        assert.ok(names.includes(expected), `${expected} listed: ${names.join(',')}`);
      }
      assert.ok(!names.includes('admin_panel'), 'admin_panel needs our AS admin API: not listed against an external AS');

      const hello = await client.callTool({ name: 'hello_world', arguments: {} });
      assert.ok(!hello.isError, textOf(hello));
      assert.match(textOf(hello), /alice/);
      const status = await client.callTool({ name: 'auth_status', arguments: {} });
      assert.ok(!status.isError, textOf(status));
      assert.ok(textOf(status).includes(op.issuer), textOf(status));
      assert.ok(!textOf(status).includes(provider.tokens().access_token), 'never the token itself');
      const data = await client.callTool({ name: 'protected_data', arguments: { category: 'personal' } });
      assert.ok(!data.isError, textOf(data));
      await client.close();
    });

    test('a token oidc-provider minted for another resource is refused', async () => {
      const session = await userTokenSession({
        issuer: op.issuer, resource: otherResource, username: 'mallory', scope: 'mcp:read',
        authorize: authorizeWithDevInteractions,
      });
      const token = await session.accessToken();
      assert.equal(jwtClaims(token).aud, otherResource, 'the provider honoured the resource indicator');
      const { status, challenge } = await initializeWith(rs.mcpUrl, token);
      assert.equal(status, 401);
      assert.match(challenge, /error="invalid_token"/);
      assert.match(challenge, /resource_metadata="/);

      // The same flow for our resource is accepted: the refusal above is the audience.
      const ok = await userTokenSession({
        issuer: op.issuer, resource: rs.mcpUrl, username: 'mallory', scope: 'mcp:read',
        authorize: authorizeWithDevInteractions,
      });
      assert.equal((await initializeWith(rs.mcpUrl, await ok.accessToken())).status, 200);
    });
  });

  describe('introspection mode (opaque access tokens)', () => {
    let op; let rs; let otherResource;
    before(async () => {
      otherResource = `http://127.0.0.1:${await freePort()}/other-mcp`;
      const resources = {};
      op = await startOidcProvider({ resources, accessTokenFormat: 'opaque' });
      rs = await startMcpServer({
        issuer: op.issuer,
        env: {
          MCP__AUTH__MODE: 'introspection',
          MCP__AUTH__CLIENT_ID: RS_CLIENT.client_id,
          MCP__AUTH__CLIENT_SECRET: RS_CLIENT.client_secret,
        },
      });
      resources[rs.mcpUrl] = 'mcp:read';
      resources[otherResource] = 'mcp:read';
    });
    after(async () => {
      await stopProcess(rs?.child);
      await op?.stop();
    });

    test('the SDK flow works with introspected opaque tokens, and answers are cached', async () => {
      const { client, provider } = await sdkConnect(rs.mcpUrl, 'bob');
      assert.equal(jwtClaims(provider.tokens().access_token), undefined, 'an opaque token, not a JWT');
      const before = op.counters.introspection;
      assert.ok(before >= 1, 'mcp-server introspected the token');
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('user_profile') && !names.includes('admin_panel'), names.join(','));
      for (let i = 0; i < 4; i++) {
        const hello = await client.callTool({ name: 'hello_world', arguments: {} });
        assert.ok(!hello.isError, textOf(hello));
      }
      const status = await client.callTool({ name: 'auth_status', arguments: {} });
      assert.match(textOf(status), /introspection/i);
      assert.equal(op.counters.introspection, before, 'six more MCP requests, no further introspection call (cached)');
      await client.close();
    });

    test('a revoked token and a token for another resource are refused', async () => {
      const session = await userTokenSession({
        issuer: op.issuer, resource: rs.mcpUrl, username: 'carol', scope: 'mcp:read',
        authorize: authorizeWithDevInteractions,
      });
      const token = await session.accessToken();
      const revoke = await fetch(op.metadata.revocation_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token', client_id: session.client.client_id }),
      });
      assert.equal(revoke.status, 200);
      const revoked = await initializeWith(rs.mcpUrl, token);
      assert.equal(revoked.status, 401, 'introspection answers active:false for a revoked token');
      assert.match(revoked.challenge, /error="invalid_token"/);

      const other = await userTokenSession({
        issuer: op.issuer, resource: otherResource, username: 'carol', scope: 'mcp:read',
        authorize: authorizeWithDevInteractions,
      });
      const foreign = await initializeWith(rs.mcpUrl, await other.accessToken());
      assert.equal(foreign.status, 401, 'the introspected aud is checked like a JWT aud');
    });
  });
});
