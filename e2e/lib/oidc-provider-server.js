// node-oidc-provider (npm `oidc-provider`, OpenID Certified) as an independent,
// external authorization server for the interop tests: started in-process on
// 127.0.0.1 with dynamic client registration, resource indicators (RFC 8707: access
// tokens for a registered resource carry `aud` = that resource), introspection,
// revocation and its built-in development login + consent pages (devInteractions).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { Browser, freePort, parseForm } from './harness.js';

/** The resource-server client mcp-server uses for introspection (client_secret_basic/post). */
export const RS_CLIENT = { client_id: 'mcp-server-rs', client_secret: randomBytes(24).toString('base64url') };

function signingKeys() {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return [
    { ...ec, kid: `es-${randomBytes(4).toString('hex')}`, alg: 'ES256', use: 'sig' },
    { ...rsa, kid: `rs-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' },
  ];
}

/**
 * Starts oidc-provider. `resources` maps each accepted resource indicator (canonical
 * URL) to its scopes (read at request time, so entries may be added after start); `accessTokenFormat` is 'jwt' (ES256, `typ: at+jwt`, `aud` = the
 * resource) or 'opaque' (only introspection can tell what it is).
 */
export async function startOidcProvider({ resources, accessTokenFormat = 'jwt', accessTokenTTL = 300, resourceScopes = ['mcp:read'] } = {}) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const counters = { introspection: 0, token: 0, registration: 0 };
  const provider = new Provider(issuer, {
    clients: [{
      ...RS_CLIENT,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: signingKeys() },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    // The MCP scopes are listed here too so that dynamic registration accepts a
    // client metadata `scope` of "mcp:read" (the TS SDK registers with the scope it
    // will request); which of them an access token carries is decided per resource in
    // getResourceServerInfo below.
    scopes: ['openid', 'offline_access', ...resourceScopes],
    claims: { openid: ['sub'], profile: ['name'] },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      revocation: {
        enabled: true,
        // A client may revoke only its own tokens.
        allowedPolicy: (ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        // Only the resource server (or the token's own client) may introspect.
        allowedPolicy: (ctx, client, token) => client.clientId === RS_CLIENT.client_id || token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        // A request without `resource` gets no resource-bound token.
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          const scope = resources[resourceIndicator];
          if (!scope) throw new Provider.errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          return {
            scope,
            audience: resourceIndicator,
            accessTokenTTL,
            accessTokenFormat,
            ...(accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
          };
        },
      },
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
      AuthorizationCode: 60,
      Grant: 3600,
      Interaction: 600,
      Session: 3600,
      IdToken: 300,
      RefreshToken: 3600,
    },
  });
  provider.proxy = false;
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token/introspection') counters.introspection++;
    if (ctx.method === 'POST' && ctx.path === '/token') counters.token++;
    if (ctx.method === 'POST' && ctx.path === '/reg') counters.registration++;
    await next();
  });
  const server = provider.listen(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const metadata = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  return {
    issuer,
    metadata,
    counters,
    provider,
    async stop() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Completes oidc-provider's devInteractions (login: any `login` + password, then the
 * consent "Continue" form) until the redirect to `redirectUri`, keeping cookies like a
 * browser. Same contract as `Browser.authorize` in harness.js.
 */
export async function authorizeWithDevInteractions(authorizationUrl, { redirectUri, username = 'alice', password = 'any-password', maxSteps = 12 } = {}) {
  const browser = new Browser();
  let url = String(authorizationUrl);
  let init = { method: 'GET' };
  for (let step = 0; step < maxSteps; step++) {
    if (url.startsWith(redirectUri)) return new URL(url);
    const response = await browser.request(url, init);
    if (response.status >= 300 && response.status < 400) {
      url = new URL(response.headers.get('location'), url).toString();
      init = { method: 'GET' };
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) throw new Error(`oidc-provider page ${url} answered ${response.status}:\n${html.slice(0, 1500)}`);
    const form = parseForm(html, url);
    const body = new URLSearchParams(form.fields);
    if (form.hasPassword) {
      body.set('login', username);
      body.set('password', password);
    }
    url = form.action;
    init = { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
  }
  throw new Error('too many steps in the oidc-provider interaction');
}
