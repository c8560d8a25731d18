// The official TypeScript SDK client's OAuth steps, shared by the end-to-end tests and
// the compose topology check: first connect (401 → PRM → AS metadata → DCR → authorize
// with PKCE + resource → login + consent → token) and an explicit step-up.
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

/** fetch that records "METHOD path status" and the challenges it saw. */
export function recordingFetch() {
  const calls = [];
  const fn = async (url, init = {}) => {
    const response = await fetch(url, init);
    calls.push({
      method: (init.method ?? 'GET').toUpperCase(),
      path: new URL(url).pathname,
      status: response.status,
      challenge: response.headers.get('www-authenticate'),
    });
    return response;
  };
  return { fn, calls };
}

export function textOf(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** First connect: 401, discovery, DCR, authorize, login + consent, token exchange. */
export async function authorizeAndConnect({ mcpUrl, issuer, username, password, provider, browser, recorder }) {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recorder.fn });
  await assert.rejects(new Client({ name: 'e2e', version: '1.0.0' }).connect(first), UnauthorizedError);
  const authorizationUrl = provider.lastAuthorizationUrl;
  assert.ok(authorizationUrl, 'the SDK asked to open the authorization URL');
  const callback = await browser.authorize(authorizationUrl, { redirectUri: provider.redirectUrl, username, password });
  assert.equal(callback.searchParams.get('iss'), issuer, 'RFC 9207 iss on the redirect');
  assert.equal(callback.searchParams.get('state'), authorizationUrl.searchParams.get('state'));
  const code = callback.searchParams.get('code');
  assert.ok(code, `redirect carries a code: ${callback}`);
  await first.finishAuth(code);

  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recorder.fn });
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport, authorizationUrl };
}

/** Explicit re-authorization with more scopes (what a client does after a 403 step-up). */
export async function stepUp({ mcpUrl, provider, browser, scope, username, password }) {
  provider.invalidateCredentials('tokens');
  const result = await auth(provider, { serverUrl: mcpUrl, scope });
  assert.equal(result, 'REDIRECT');
  const url = provider.lastAuthorizationUrl;
  const callback = await browser.authorize(url, { redirectUri: provider.redirectUrl, username, password });
  const code = callback.searchParams.get('code');
  assert.ok(code, `step-up redirect carries a code: ${callback}`);
  assert.equal(await auth(provider, { serverUrl: mcpUrl, authorizationCode: code }), 'AUTHORIZED');
  return url;
}
