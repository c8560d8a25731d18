// "Corp SSO" for `cargo run --bin mcp-demo -- --upstream-idp`: node-oidc-provider on
// http://localhost:3002 with a client for the demo's auth-server (its secret comes from
// CORP_SSO_CLIENT_SECRET) and the people of CORP_ACCOUNTS (any password signs them in).
import { CORP_ACCOUNTS, startCorpIdp } from './lib/upstream-idp.js';

const port = Number(process.env.CORP_SSO_PORT ?? 3002);
const callback = process.env.CORP_SSO_REDIRECT_URI ?? 'http://localhost:3001/idp/corp/callback';
const clientSecret = process.env.CORP_SSO_CLIENT_SECRET;
if (!clientSecret) {
  console.error('CORP_SSO_CLIENT_SECRET is not set');
  process.exit(2);
}
const idp = await startCorpIdp({ port, host: 'localhost', clientId: 'mcp-auth-server', clientSecret, redirectUris: [callback] });
console.log(`Corp SSO listening on ${idp.issuer} (users: ${Object.keys(CORP_ACCOUNTS).join(', ')})`);
const stop = async () => { await idp.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
