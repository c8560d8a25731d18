// Runs the official MCP conformance suite against the real binaries. Started by
// run.sh under Node 22 (the suite needs Node >= 22); see run.sh for the why.
//
//   node conformance/run.js --c016 <dir of @0.1.16> --alpha <dir of @0.2.0-alpha.N> [--only a,b]
//
// Runs: 0.1.16 `server` (active suite), the alpha's `server --requirements 2025-11-25`
// and `--requirements 2026-07-28`, `dns-rebinding-protection` on its own, and the
// alpha's `authorization --url <issuer>` against auth-server. Prints one line per run
// and closes with `N passed, M failed` over the scored checks; exits 1 when a scored
// (required) check failed or a run could not complete.
//
// Then (key `gateway`) the 0.1.16 suite, the alpha's `--requirements 2025-11-25` and
// `dns-rebinding-protection` again, through mcp-server in gateway mode
// (`--upstream-url`) in front of the same fixture: scenario by scenario, everything
// that passed against the fixture directly must pass through the gateway. The gateway
// reaches the fixture with a token of its own (a static `Authorization` in
// `[upstream] headers`, obtained for the fixture's resource); the suites reach the
// gateway through a second bearer proxy with a token for the gateway's resource.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Browser, freePort, startProcess, startStack, stopProcess } from '../lib/harness.js';
import { startBearerProxy } from '../lib/bearer-proxy.js';
import { discover, registerPublicClient, userTokenSession } from '../lib/oauth.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const c016Dir = opt('c016');
const alphaDir = opt('alpha');
const only = opt('only')?.split(',').map((s) => s.trim()).filter(Boolean);
const logDir = opt('logs', path.resolve(here, '../.interop/logs'));
const USER = { username: 'demo', password: 'demo123' };
mkdirSync(logDir, { recursive: true });

const cli = (dir) => {
  const pkg = JSON.parse(readFileSync(path.join(dir, 'node_modules/@modelcontextprotocol/conformance/package.json'), 'utf8'));
  const bin = typeof pkg.bin === 'string' ? pkg.bin : Object.values(pkg.bin)[0];
  return { version: pkg.version, entry: path.join(dir, 'node_modules/@modelcontextprotocol/conformance', bin) };
};

/** Parses the suite's pretty summary: per-scenario check counts and the not-scored set. */
function parseSummary(text) {
  const scenarios = new Map();
  const notScored = new Map();
  let inNotScored = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
    if (/^Not scored for /.test(line)) { inNotScored = true; continue; }
    let m = line.match(/^([✓✗]) (\S+): (\d+) passed, (\d+) failed/);
    if (m) {
      scenarios.set(m[2], { ok: m[1] === '✓', passed: Number(m[3]), failed: Number(m[4]) });
      inNotScored = false;
      continue;
    }
    m = line.match(/^\s+([✓✗]) (\S+) \(([^)]+)\)/);
    if (inNotScored && m) notScored.set(m[2], { ok: m[1] === '✓', reason: m[3] });
  }
  if (scenarios.size === 0) {
    // A single `--scenario` run prints "Passed: 2/2, 0 failed, 0 warnings" instead.
    const name = text.match(/Running client scenario '([^']+)'/)?.[1];
    const m = text.replace(/\x1b\[[0-9;]*m/g, '').match(/^Passed: (\d+)\/(\d+), (\d+) failed/m);
    if (name && m) {
      const failed = Number(m[3]);
      scenarios.set(name, { ok: failed === 0, passed: Number(m[2]) - failed, failed });
    }
  }
  return { scenarios, notScored };
}

function runSuite({ label, slug, entry, args, onStdoutLine, timeoutMs = 600_000 }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [entry, ...args], {
      cwd: logDir,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let pending = '';
    child.stdout.on('data', (chunk) => {
      const s = chunk.toString();
      out += s;
      pending += s;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) onStdoutLine?.(line, child);
    });
    child.stderr.on('data', (chunk) => { out += chunk.toString(); });
    const timer = setTimeout(() => { out += `\n[harness] timeout after ${timeoutMs} ms\n`; child.kill('SIGKILL'); }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const logFile = path.join(logDir, `${slug}.log`);
      writeFileSync(logFile, out);
      resolve({ label, code, out, logFile, seconds: ((Date.now() - started) / 1000).toFixed(1) });
    });
  });
}

function judge(result) {
  const { scenarios, notScored } = parseSummary(result.out);
  let passed = 0; let failed = 0;
  const requiredFailures = [];
  const notScoredFailures = [];
  for (const [name, s] of scenarios) {
    if (notScored.has(name)) {
      if (!s.ok) notScoredFailures.push(`${name} (${notScored.get(name).reason}; ${s.failed} of ${s.passed + s.failed} checks)`);
      continue;
    }
    passed += s.passed; failed += s.failed;
    if (!s.ok) requiredFailures.push(name);
  }
  const broken = scenarios.size === 0 || result.code !== 0;
  return { ...result, byScenario: scenarios, scenarios: scenarios.size, notScored: notScored.size, passed, failed, requiredFailures, notScoredFailures, ok: !broken && requiredFailures.length === 0 };
}

/** A run through the gateway against the same run straight at the fixture: every
 *  scenario that passed directly must pass through the gateway. */
function judgeAgainst(result, direct) {
  const viaGateway = judge(result);
  const lost = [];
  for (const [name, s] of direct?.byScenario ?? []) {
    if (s.ok && !viaGateway.byScenario.get(name)?.ok) lost.push(`${name} (passes directly, not through the gateway)`);
  }
  const broken = viaGateway.scenarios === 0 || (direct && direct.code === 0 && viaGateway.code !== 0);
  const requiredFailures = direct ? lost : viaGateway.requiredFailures;
  return { ...viaGateway, requiredFailures, ok: !broken && requiredFailures.length === 0 && (direct ? true : viaGateway.ok) };
}

const wanted = (key) => !only || only.includes(key);
const results = [];
let stack; let proxy; let gateway; let gatewayProxy;
try {
  const gatewayPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}/mcp`;
  // The AS knows both resources: the fixture's and the gateway's.
  stack = await startStack({ rsBin: 'conformance-fixture', asArgs: ['--resource', gatewayUrl] });
  const direct = await fetch(stack.mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  if (direct.status !== 401) throw new Error(`conformance-fixture without a token answered ${direct.status}, expected 401: auth must be on`);
  console.log(`auth on: ${stack.mcpUrl} without a token -> 401; suites go through a bearer proxy as user '${USER.username}'`);

  const session = await userTokenSession({ issuer: stack.issuer, resource: stack.mcpUrl, ...USER });
  proxy = await startBearerProxy({ target: stack.mcpUrl, accessToken: () => session.accessToken() });
  const url = `${proxy.origin}/mcp`;

  const c016 = c016Dir && cli(c016Dir);
  const alpha = alphaDir && cli(alphaDir);
  const serverRuns = [];
  if (c016) {
    serverRuns.push({ key: 'c016', slug: 'server-0.1.16', label: `${c016.version} server (active suite)`, entry: c016.entry, args: ['server', '--url', url] });
    serverRuns.push({ key: 'dns', slug: 'dns-0.1.16', label: `${c016.version} dns-rebinding-protection (auth on)`, entry: c016.entry, args: ['server', '--url', url, '--scenario', 'dns-rebinding-protection'] });
  }
  if (alpha) {
    for (const rev of ['2025-11-25', '2026-07-28']) {
      serverRuns.push({ key: `alpha-${rev}`, slug: `server-${alpha.version}-${rev}`, label: `${alpha.version} server --requirements ${rev}`, entry: alpha.entry, args: ['server', '--url', url, '--requirements', rev] });
    }
    serverRuns.push({ key: 'dns', slug: `dns-${alpha.version}`, label: `${alpha.version} dns-rebinding-protection (auth on)`, entry: alpha.entry, args: ['server', '--url', url, '--scenario', 'dns-rebinding-protection'] });
  }
  const directByLabel = new Map();
  for (const run of serverRuns.filter((r) => wanted(r.key))) {
    const result = judge(await runSuite(run));
    directByLabel.set(run.slug, result);
    results.push(result);
  }

  if (wanted('gateway')) {
    // The gateway's own credential at the fixture: a token for the fixture's resource.
    const upstreamSession = await userTokenSession({ issuer: stack.issuer, resource: stack.mcpUrl, ...USER });
    gateway = await startProcess('mcp-server', [
      'serve', '--demo', '--listen', `127.0.0.1:${gatewayPort}`, '--resource', gatewayUrl,
      '--issuer', stack.issuer, '--upstream-url', stack.mcpUrl,
    ], {
      MCP__SERVER__METRICS_LISTEN: 'off',
      MCP__UPSTREAM__HEADERS__AUTHORIZATION: `Bearer ${await upstreamSession.accessToken()}`,
    });
    const gatewaySession = await userTokenSession({ issuer: stack.issuer, resource: gatewayUrl, ...USER });
    gatewayProxy = await startBearerProxy({ target: gatewayUrl, accessToken: () => gatewaySession.accessToken() });
    const viaUrl = `${gatewayProxy.origin}/mcp`;
    console.log(`gateway: ${gatewayUrl} in front of ${stack.mcpUrl}; suites through a bearer proxy as '${USER.username}'`);
    const gatewayRuns = serverRuns
      .filter((r) => r.key === 'c016' || r.key === 'alpha-2025-11-25' || r.key === 'dns')
      .map((r) => ({
        ...r,
        slug: `gateway-${r.slug}`,
        label: `${r.label} through the gateway`,
        args: r.args.map((a) => (a === url ? viaUrl : a)),
        direct: r.slug,
      }));
    for (const run of gatewayRuns) {
      results.push(judgeAgainst(await runSuite(run), directByLabel.get(run.direct)));
    }
  }

  if (alpha && wanted('authorization')) {
    const cbPort = await freePort();
    const redirectUri = `http://127.0.0.1:${cbPort}/callback`;
    // The suite needs a client registered for its callback; a public PKCE client is
    // registered through the AS's own registration endpoint first.
    const client = await registerPublicClient(await discover(stack.issuer), { redirectUri, clientName: 'conformance-authorization', scope: 'mcp:read' });
    let login;
    const result = await runSuite({
      key: 'authorization',
      slug: `authorization-${alpha.version}`,
      label: `${alpha.version} authorization --url <auth-server>`,
      entry: alpha.entry,
      args: ['authorization', '--url', stack.issuer, '--client-id', client.client_id, '--resource', stack.mcpUrl, '--port', String(cbPort)],
      timeoutMs: 120_000,
      // The suite prints the authorization URL for a person to open; the harness is
      // that person: it logs in and consents on auth-server's forms and delivers the
      // redirect to the suite's callback listener.
      onStdoutLine: (line) => {
        const m = line.trim().match(/^(https?:\/\/\S+\?\S*response_type=code\S*)$/);
        if (!m || login) return;
        login = (async () => {
          const callback = await new Browser().authorize(new URL(m[1]), { redirectUri, ...USER });
          await fetch(callback);
        })().catch((e) => console.error(`[authorization] driving the login failed: ${e.message}`));
      },
    });
    await login;
    results.push(judge(result));
  }
} catch (e) {
  console.error(`conformance harness failed: ${e.stack ?? e}`);
  results.push({ label: 'harness', ok: false, passed: 0, failed: 1, requiredFailures: [String(e.message ?? e)], notScoredFailures: [], scenarios: 0, seconds: '0', code: 1 });
} finally {
  await gatewayProxy?.close();
  await stopProcess(gateway);
  await proxy?.close();
  await stack?.stop();
}

let passed = 0; let failed = 0; let ok = results.length > 0;
console.log('\n== MCP conformance results (scored checks; logs in ' + path.relative(process.cwd(), logDir) + ')');
for (const r of results) {
  passed += r.passed; failed += r.failed; ok &&= r.ok;
  const status = r.ok ? 'PASS' : 'FAIL';
  console.log(`${status}  ${r.label}: ${r.scenarios - (r.notScored ?? 0)} scored scenarios, ${r.passed}/${r.passed + r.failed} checks ok, exit ${r.code}, ${r.seconds}s`);
  for (const f of r.requiredFailures) console.log(`      required failure: ${f}`);
  if (r.notScored) console.log(`      + ${r.notScored} not-scored scenarios run (extensions, pending): ${r.notScoredFailures.length} failing`);
  for (const f of r.notScoredFailures) console.log(`      not scored, failing: ${f}`);
  if (!r.ok && r.requiredFailures.length === 0 && r.logFile) console.log(`      see ${r.logFile}`);
}
if (!ok && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(ok ? 0 : 1);
