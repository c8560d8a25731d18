// Starts the real auth-server and mcp-server binaries on free 127.0.0.1 ports and
// drives the AS login/consent pages the way a browser would (cookies, forms, redirects).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN_DIR = process.env.MCP_E2E_BIN_DIR ?? path.resolve(here, '../../target/debug');

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function waitForListening(child, name, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start in ${timeoutMs} ms:\n${output}`)), timeoutMs);
    const onData = (chunk) => {
      output += chunk.toString();
      if (/listening on http:\/\//.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${output}`));
    });
  });
}

export async function startProcess(name, args, env = {}) {
  const child = spawn(path.join(BIN_DIR, name), args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForListening(child, name);
  // Keep draining output so the child never blocks on a full pipe.
  child.stdout.resume();
  child.stderr.resume();
  return child;
}

export async function stopProcess(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts auth-server (--demo) and mcp-server (--demo) wired to each other. `rsBin` names
 * another binary with mcp-server's flags to start in its place (the conformance fixture).
 */
export async function startStack({ asEnv = {}, asArgs = [], rsEnv = {}, rsArgs = [], rsBin = 'mcp-server' } = {}) {
  const asPort = await freePort();
  const rsPort = await freePort();
  // Metrics are served on a listener of their own (server.metrics_listen), never on the
  // public port; the AS's are not read here.
  const rsMetricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${rsMetricsPort}/metrics`;
  const issuer = `http://127.0.0.1:${asPort}`;
  const mcpUrl = `http://127.0.0.1:${rsPort}/mcp`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mcp-e2e-'));
  const as = await startProcess('auth-server', [
    'serve', '--demo', '--listen', `127.0.0.1:${asPort}`, '--issuer', issuer,
    '--db', path.join(dir, 'auth.db'), '--resource', mcpUrl, ...asArgs,
  ], { AUTH__SERVER__METRICS_LISTEN: 'off', ...asEnv });
  let rs;
  try {
    rs = await startProcess(rsBin, [
      'serve', '--demo', '--listen', `127.0.0.1:${rsPort}`, '--resource', mcpUrl, '--issuer', issuer, ...rsArgs,
    ], { MCP__SERVER__METRICS_LISTEN: `127.0.0.1:${rsMetricsPort}`, ...rsEnv });
  } catch (e) {
    await stopProcess(as);
    throw e;
  }
  return {
    issuer, mcpUrl, metricsUrl, dir, as, rs,
    async stop() {
      await stopProcess(rs);
      await stopProcess(as);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function decodeEntities(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
    .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)')`, 'i'));
  return m ? decodeEntities(m[2] ?? m[3] ?? '') : undefined;
}

/** The single POST form of an AS page: its action and hidden fields. */
export function parseForm(html, baseUrl) {
  const formTag = html.match(/<form\b[^>]*>/i);
  if (!formTag) throw new Error(`no form on page:\n${html.slice(0, 2000)}`);
  const action = new URL(attr(formTag[0], 'action') ?? '', baseUrl).toString();
  const fields = {};
  for (const m of html.matchAll(/<input\b[^>]*>/gi)) {
    const type = (attr(m[0], 'type') ?? 'text').toLowerCase();
    const name = attr(m[0], 'name');
    if (type === 'hidden' && name) fields[name] = attr(m[0], 'value') ?? '';
  }
  const hasPassword = /<input\b[^>]*type\s*=\s*["']password["']/i.test(html);
  const hasDecision = /name\s*=\s*["']decision["']/i.test(html);
  return { action, fields, hasPassword, hasDecision };
}

/** A minimal browser: a cookie jar per origin and manual redirects. */
export class Browser {
  constructor() {
    this.cookies = new Map(); // origin -> Map(name -> value)
    this.pages = []; // every HTML page seen, for assertions
  }

  cookieHeader(url) {
    const jar = this.cookies.get(new URL(url).origin);
    return jar ? [...jar].map(([k, v]) => `${k}=${v}`).join('; ') : undefined;
  }

  storeCookies(url, response) {
    const origin = new URL(url).origin;
    const jar = this.cookies.get(origin) ?? new Map();
    for (const line of response.headers.getSetCookie?.() ?? []) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a)) || value === '';
      if (expired) jar.delete(name); else jar.set(name, value);
    }
    this.cookies.set(origin, jar);
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers ?? {});
    const cookie = this.cookieHeader(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.storeCookies(url, response);
    return response;
  }

  /**
   * Follows an authorization URL through login and consent until the AS redirects
   * to `redirectUri`. Returns that final URL (with code/state/iss or error).
   */
  async authorize(authorizationUrl, { redirectUri, username, password, decision = 'approve', maxSteps = 10 }) {
    let url = String(authorizationUrl);
    let init = { method: 'GET' };
    for (let step = 0; step < maxSteps; step++) {
      if (url.startsWith(redirectUri)) return new URL(url);
      const response = await this.request(url, init);
      if (response.status >= 300 && response.status < 400) {
        url = new URL(response.headers.get('location'), url).toString();
        init = { method: 'GET' };
        continue;
      }
      const html = await response.text();
      this.pages.push({ url, status: response.status, html, headers: response.headers });
      if (response.status !== 200) {
        throw new Error(`authorization page ${url} answered ${response.status}:\n${html.slice(0, 1500)}`);
      }
      const form = parseForm(html, url);
      const body = new URLSearchParams(form.fields);
      if (form.hasPassword) {
        body.set('username', username);
        body.set('password', password);
      } else if (form.hasDecision) {
        body.set('decision', decision);
      }
      url = form.action;
      init = { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
    }
    throw new Error('too many steps in the authorization flow');
  }
}
