// The README's "Walkthrough with MCP Inspector", driven in a real (headless) browser.
// Not part of CI: it needs Debian's chromium and Node >= 22.19 (MCP Inspector 2.x).
//
// How to run (from a scratch directory, nothing is installed into the repository):
//   apt-get install -y chromium
//   cargo run --bin mcp-demo                                    # terminal 1 (or a temp DB: AUTH__DATABASE__PATH=/tmp/x.db)
//   mkdir -p /tmp/insp && cd /tmp/insp && npm install node@22 @modelcontextprotocol/inspector@2 playwright-core
//   PATH=$PWD/node_modules/.bin:$PATH MCP_AUTO_OPEN_ENABLED=false MCP_CATALOG_PATH=/tmp/insp/mcp.json \
//     npx mcp-inspector                                         # terminal 2: prints http://127.0.0.1:6274?MCP_INSPECTOR_API_TOKEN=...
//   cd /tmp/insp && PATH=$PWD/node_modules/.bin:$PATH \
//     node /path/to/repo/e2e/inspector/walkthrough.mjs 'http://127.0.0.1:6274?MCP_INSPECTOR_API_TOKEN=...'
// (never `npx playwright install`: playwright-core drives the system chromium)
//
// Environment: CHROMIUM (default /usr/bin/chromium), SHOTS (screenshot folder, default
// /tmp/inspector-walkthrough), SERVER_ID (Inspector catalog name, default oauth-demo),
// MCP_URL (default http://localhost:3000/mcp). Exit code 0 when every step passed.
// Tested with MCP Inspector 2.12.0, Chromium 156, Node 22.23.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

// playwright-core from the current directory's node_modules (the scratch dir), else next to this file.
async function loadPlaywright() {
  try {
    const at = createRequire(path.join(process.cwd(), "noop.js")).resolve("playwright-core");
    return await import(pathToFileURL(at).href);
  } catch {
    return await import("playwright-core");
  }
}
const playwright = await loadPlaywright();
const chromium = playwright.chromium ?? playwright.default.chromium;

const inspectorUrl = process.argv[2] || process.env.INSPECTOR_URL;
if (!inspectorUrl) {
  console.error("usage: node walkthrough.mjs 'http://127.0.0.1:6274?MCP_INSPECTOR_API_TOKEN=...'");
  process.exit(2);
}
const SHOTS = process.env.SHOTS || "/tmp/inspector-walkthrough";
const SERVER_ID = process.env.SERVER_ID || "oauth-demo";
const MCP_URL = process.env.MCP_URL || "http://localhost:3000/mcp";
const AS_ORIGIN = /localhost:3001|127\.0\.0\.1:3001/;
fs.mkdirSync(SHOTS, { recursive: true });

const TOTAL_STEPS = 17;
const results = [];
const consoleErrors = [];
const failedRequests = [];
const serverResponses = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
const page = await context.newPage();
const ignorable = (u) => u.includes("fonts.googleapis.com") || u.includes("fonts.gstatic.com");
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") {
    const loc = m.location()?.url || "";
    if (!ignorable(loc) && !m.text().includes("ERR_NAME_NOT_RESOLVED")) consoleErrors.push(`${m.type()}: ${m.text()} (${loc})`);
  }
});
page.on("requestfailed", (r) => {
  const err = r.failure()?.errorText || "";
  // ERR_ABORTED on Inspector's own /api/* calls is the page unloading for the OAuth redirect.
  // blob: aborts are Inspector's own editor workers.
  if (ignorable(r.url()) || r.url().startsWith("blob:")) return;
  if (err === "net::ERR_ABORTED" && r.url().includes(":6274/api/")) return;
  failedRequests.push(`${r.method()} ${r.url()} ${err}`);
});
page.on("response", (r) => {
  if (/:(3000|3001)\//.test(r.url())) serverResponses.push(`${r.status()} ${r.request().method()} ${r.url().split("?")[0]}`);
});

let n = 0;
async function shot(name) {
  n += 1;
  const file = path.join(SHOTS, `${String(n).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file });
  return file;
}
async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    const file = await shot(name);
    results.push({ name, ok: true, detail, file, ms: Date.now() - t0 });
    console.log(`PASS ${name}${detail ? ` — ${detail}` : ""}`);
  } catch (e) {
    const file = await shot(`${name}-FAILED`).catch(() => "");
    results.push({ name, ok: false, detail: e.message.split("\n")[0], file });
    console.log(`FAIL ${name} — ${e.message.split("\n").slice(0, 3).join(" | ")} (url: ${page.url()})`);
    throw e;
  }
}
function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

const card = () =>
  page
    .locator("div", { has: page.getByText(SERVER_ID, { exact: true }) })
    .filter({ has: page.getByRole("button", { name: "Settings", exact: true }) })
    .last();
const settingsDialog = () => page.getByRole("dialog").filter({ hasText: "Server Settings" });
const mainText = () => page.locator("main").innerText();
// A tool's button; its accessible name may carry a suffix (Inspector's schema-warning icon).
const toolButton = (name) => page.locator("main").getByRole("button", { name: new RegExp(`^${name}(\\s|$)`) });

async function toServers() {
  const tab = page.getByText("Servers", { exact: true }).first();
  if (await tab.isVisible()) await tab.click();
  await page.waitForTimeout(400);
}
async function toTools() {
  await page.getByText("Tools", { exact: true }).first().click();
  await page.getByText(/^Tools \(\d+\)$/).waitFor({ timeout: 15000 });
}
async function toolNames() {
  const t = await mainText();
  const count = Number(/Tools \((\d+)\)/.exec(t)?.[1] || 0);
  const names = ["admin_panel", "auth_status", "hello_world", "oauth_info", "protected_data", "user_profile"];
  const seen = [];
  for (const nm of names) {
    if (await toolButton(nm).count()) seen.push(nm);
  }
  return { count, seen };
}
async function openTool(name) {
  const close = page.getByRole("button", { name: "Close results" });
  if (await close.count()) await close.click();
  await toolButton(name).first().click();
  await page.getByRole("button", { name: "Execute Tool" }).waitFor();
}
async function execute() {
  await page.getByRole("button", { name: "Execute Tool" }).click();
  await page.getByText("Results", { exact: true }).waitFor({ timeout: 15000 });
  await page.waitForTimeout(500);
  const t = await mainText();
  const from = t.indexOf("Results");
  const to = t.indexOf("⎘", from);
  return t.slice(from, to > from ? to : undefined);
}
async function selectOption(field, value) {
  await page.getByRole("textbox", { name: field }).click();
  await page.getByRole("option", { name: value, exact: true }).click();
}
async function connectAndReachAs() {
  await toServers();
  await page.getByLabel(`Connect or disconnect "${SERVER_ID}"`).click({ force: true });
  await page.waitForURL(AS_ORIGIN, { timeout: 20000 });
  await page.waitForLoadState();
}
async function signIn(user, password) {
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Allow" }).waitFor({ timeout: 15000 });
}
async function allowAndReturn() {
  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL(/:6274\//, { timeout: 20000 });
  await card().getByText("Connected", { exact: true }).waitFor({ timeout: 20000 });
}

try {
  await step("inspector-home", async () => {
    await page.goto(inspectorUrl);
    await page.getByRole("button", { name: "Add Servers" }).waitFor({ timeout: 20000 });
    const version = (await page.getByText(/^v\d+\.\d+\.\d+$/).first().innerText().catch(() => "?")).trim();
    return `Inspector ${version}`;
  });

  await step("add-server", async () => {
    let note = "";
    if (await page.getByText(SERVER_ID, { exact: true }).count()) {
      // A previous run's entry keeps its OAuth settings (scopes, prompt=login): start from a clean one.
      await card().getByRole("button", { name: "Remove", exact: true }).click();
      await page.getByRole("dialog").getByRole("button", { name: "Remove", exact: true }).click();
      await page.getByText(SERVER_ID, { exact: true }).waitFor({ state: "detached" });
      note = " (replaced an older entry)";
    }
    await page.getByRole("button", { name: "Add Servers" }).click();
    await page.getByRole("menuitem", { name: /Add manually/ }).click();
    const d = page.getByRole("dialog");
    await d.getByLabel("Server ID").fill(SERVER_ID);
    await d.getByLabel("Transport").click();
    await page.getByRole("option", { name: "streamable-http" }).click();
    await d.getByLabel("URL").fill(MCP_URL);
    await shot("add-server-form");
    await d.getByRole("button", { name: "Add", exact: true }).click();
    await card().waitFor();
    return `Add Servers → Add manually: ${SERVER_ID}, streamable-http, ${MCP_URL}${note}`;
  });

  await step("login-page", async () => {
    await connectAndReachAs();
    const u = new URL(page.url());
    const q = Object.fromEntries(u.searchParams);
    expect(u.pathname === "/authorize", `expected /authorize, got ${u.pathname}`);
    expect(await page.getByRole("button", { name: "Sign in" }).isVisible(), "no sign-in form");
    return `redirect_uri=${q.redirect_uri} scope="${q.scope}" prompt=${q.prompt} resource=${q.resource}`;
  });

  await step("consent-demo", async () => {
    await signIn("demo", "demo123");
    const t = await page.locator("body").innerText();
    expect(t.includes("account demo"), "consent page does not name the user");
    expect(!t.includes("mcp:admin"), "demo is offered mcp:admin");
    return t.replace(/\s+/g, " ").slice(0, 200);
  });

  await step("connected-demo", async () => {
    await allowAndReturn();
    return "back in Inspector, card shows Connected";
  });

  await step("tools-demo", async () => {
    await toTools();
    const { count, seen } = await toolNames();
    expect(count === 5 && !seen.includes("admin_panel"), `demo sees ${count}: ${seen}`);
    return `Tools (${count}): ${seen.join(", ")}`;
  });

  await step("hello_world", async () => {
    await openTool("hello_world");
    const r = await execute();
    expect(r.includes("Hello, demo") && r.includes("authenticated"), r);
    return r.replace(/\s+/g, " ").slice(0, 160);
  });

  await step("user_profile", async () => {
    await openTool("user_profile");
    const r = await execute();
    expect(r.includes('"username": "demo"'), r);
    return r.replace(/\s+/g, " ").replace(/Results( \d+)+ /, "").slice(0, 200);
  });

  await step("protected_data-personal", async () => {
    await openTool("protected_data");
    await selectOption("category", "personal");
    const r = await execute();
    expect(r.includes('"owner": "demo"') && r.includes('"category": "personal"'), r);
    return r.replace(/\s+/g, " ").replace(/Results( \d+)+ /, "").slice(0, 200);
  });

  await step("protected_data-admin-as-demo", async () => {
    await openTool("protected_data");
    await selectOption("category", "admin");
    await page.getByRole("button", { name: "Execute Tool" }).click();
    const dlg = page.getByRole("dialog").filter({ hasText: "Additional permissions required" });
    await dlg.waitFor({ timeout: 15000 });
    const t = (await dlg.innerText()).replace(/\s+/g, " ");
    expect(t.includes("mcp:admin"), t);
    return t.slice(0, 220);
  });

  await step("step-up-demo-consent", async () => {
    await page.getByRole("button", { name: "Authorize", exact: true }).click();
    await page.waitForURL(AS_ORIGIN, { timeout: 20000 });
    await page.waitForLoadState();
    const t = await page.locator("body").innerText();
    const login = await page.getByRole("button", { name: "Sign in" }).count();
    expect(!login && t.includes("account demo"), "expected the remembered demo session to go straight to consent");
    expect(!t.includes("mcp:admin"), "demo is offered mcp:admin");
    return `scope asked: ${new URL(page.url()).searchParams.get("scope")}; consent (still demo) lists no mcp:admin`;
  });

  await step("step-up-demo-not-granted", async () => {
    await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL(/:6274\//, { timeout: 20000 });
    const toast = page.getByText("Additional permissions not granted");
    await toast.waitFor({ timeout: 20000 });
    return (await toast.locator("xpath=..").innerText()).replace(/\s+/g, " ").slice(0, 220);
  });

  await step("clear-oauth-and-set-admin-scope", async () => {
    await toServers();
    await card().getByRole("button", { name: "Settings", exact: true }).click();
    const d = settingsDialog();
    await d.getByText("OAuth Settings", { exact: true }).click();
    await d.getByRole("button", { name: "Clear stored OAuth state" }).click();
    await page.getByText("OAuth state cleared").waitFor({ timeout: 10000 });
    await d.getByLabel("Scopes").fill("mcp:read mcp:admin");
    // The AS remembers the demo sign-in (8 h session cookie): prompt=login makes it show the login page.
    const name = d.getByPlaceholder("Parameter (e.g. kc_idp_hint)");
    if ((await name.count()) === 0 || (await name.first().inputValue()) !== "prompt") {
      await d.getByRole("button", { name: "+ Add Parameter" }).click();
      await d.getByPlaceholder("Parameter (e.g. kc_idp_hint)").last().fill("prompt");
      await d.getByPlaceholder("Value").last().fill("login");
    }
    await d.getByText("Additional authorization parameters").scrollIntoViewIfNeeded();
    await shot("oauth-settings");
    await d.getByRole("button", { name: "Close" }).click();
    return 'Settings → OAuth Settings: "Clear stored OAuth state", Scopes "mcp:read mcp:admin", parameter prompt=login';
  });

  await step("login-admin", async () => {
    await connectAndReachAs();
    const q = new URL(page.url()).searchParams;
    expect(await page.getByRole("button", { name: "Sign in" }).isVisible(), "no login page (prompt=login ignored?)");
    await signIn("admin", "admin123");
    const t = await page.locator("body").innerText();
    expect(t.includes("account admin") && t.includes("mcp:admin"), t);
    return `scope="${q.get("scope")}" prompt=${q.get("prompt")}; consent lists mcp:admin`;
  });

  await step("tools-admin", async () => {
    await allowAndReturn();
    await toTools();
    const { count, seen } = await toolNames();
    expect(count === 6 && seen.includes("admin_panel"), `admin sees ${count}: ${seen}`);
    return `Tools (${count}): ${seen.join(", ")}`;
  });

  await step("protected_data-admin", async () => {
    await openTool("protected_data");
    await selectOption("category", "admin");
    const r = await execute();
    expect(r.includes('"owner": "admin"') && r.includes('"category": "admin"'), r);
    return r.replace(/\s+/g, " ").replace(/Results( \d+)+ /, "").slice(0, 160);
  });

  await step("admin_panel-list_tokens", async () => {
    await openTool("admin_panel");
    // `action` is rendered as a JSON editor (the enum's schema is a oneOf of consts), so type a JSON string.
    await page.locator("main .ace_editor").first().click();
    await page.keyboard.press("Control+A");
    await page.keyboard.type('"list_tokens"');
    const r = await execute();
    expect(r.includes('"grants"'), r);
    return r.replace(/\s+/g, " ").replace(/Results( \d+)+ /, "").slice(0, 160);
  });
} catch {
  // already reported by step()
} finally {
  fs.writeFileSync(path.join(SHOTS, "results.json"), JSON.stringify({ results, consoleErrors, failedRequests, serverResponses }, null, 2));
  console.log(`\nbrowser console errors/warnings (${consoleErrors.length}):`);
  for (const e of consoleErrors) console.log(`  ${e}`);
  console.log(`failed requests (${failedRequests.length}):`);
  for (const e of failedRequests) console.log(`  ${e}`);
  console.log(`responses the browser got from :3000/:3001 (${serverResponses.length}):`);
  for (const e of serverResponses) console.log(`  ${e}`);
  const passed = results.filter((r) => r.ok).length;
  console.log(`\nscreenshots in ${SHOTS}`);
  console.log(`${passed} passed, ${TOTAL_STEPS - passed} failed`);
  await browser.close();
  process.exitCode = passed === TOTAL_STEPS ? 0 : 1;
}
