//! `cargo run --bin mcp-demo`: the two-service demo in one process, without Docker.
//! auth-server on 127.0.0.1:3001 (issuer http://localhost:3001) with the demo users and
//! mcp-server's demo client seeded, mcp-server on 127.0.0.1:3000 (http://localhost:3000/mcp).
//! Both are the real applications built from their libraries, configured from
//! `config/auth-server.toml` and `config/mcp-server.toml` plus `AUTH__…`/`MCP__…` env.
//!
//! `--upstream-idp`: the production picture. A local node-oidc-provider runs as
//! "Corp SSO" on http://localhost:3002 (`e2e/corp-sso.js`, needs `npm ci` in `e2e/`),
//! and auth-server signs users in through it while MCP clients keep registering with
//! auth-server and getting its tokens.
//!
//! `--upstream-cmd "COMMAND ARG..."` or `--upstream-url URL` runs mcp-server in gateway
//! mode instead: the demo's OAuth in front of that MCP server, e.g.
//! `cargo run --bin mcp-demo -- --upstream-cmd "npx -y @modelcontextprotocol/server-everything"`.

use std::path::Path;

use anyhow::Context;
use clap::Parser;

/// The demo's command line.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-demo",
    about = "auth-server and mcp-server in one process, with the demo users"
)]
struct DemoArgs {
    /// Gateway mode: protect this stdio MCP server (started once per MCP session,
    /// without a shell) instead of serving the built-in tools.
    #[arg(long, value_name = "COMMAND ARG...", conflicts_with = "upstream_url")]
    upstream_cmd: Option<String>,
    /// Gateway mode: protect this Streamable HTTP MCP server.
    #[arg(long, value_name = "URL")]
    upstream_url: Option<String>,
    /// Sign users in through a local node-oidc-provider ("Corp SSO" on
    /// http://localhost:3002; needs `npm ci` in `e2e/`).
    #[arg(long)]
    upstream_idp: bool,
}

const AUTH_CONFIG: &str = "config/auth-server.toml";
const MCP_CONFIG: &str = "config/mcp-server.toml";

fn optional(path: &str) -> Option<&Path> {
    let path = Path::new(path);
    path.exists().then_some(path)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = DemoArgs::parse();
    shared::telemetry::init_logging(
        "info,rmcp=warn,tracing::span=warn,actix_web::middleware::logger=warn",
    );

    let upstream_idp = args.upstream_idp;
    let mut auth_settings = auth_server::settings::Settings::load(optional(AUTH_CONFIG))
        .map_err(|e| anyhow::anyhow!("loading the auth-server configuration: {e}"))?;
    auth_settings.demo.enabled = true;
    let mut corp_sso = None;
    if upstream_idp {
        let (child, idp) = start_corp_sso(&auth_settings)?;
        corp_sso = Some(CorpSso(child));
        auth_settings.identity_providers.push(idp);
    }
    let auth_app = auth_server::Application::build(auth_settings.clone())
        .await
        .context("starting auth-server")?;
    let auth_handle = auth_app.handle();
    let auth_task = tokio::spawn(auth_app.server());

    let mut mcp_settings = mcp_server::settings::Settings::load(optional(MCP_CONFIG))
        .context("loading the mcp-server configuration")?;
    mcp_settings.apply_demo_defaults(&auth_settings.demo.mcp_server_client_secret);
    mcp_server::cli::ServeArgs {
        upstream_cmd: args.upstream_cmd,
        upstream_url: args.upstream_url,
        ..Default::default()
    }
    .apply(&mut mcp_settings);
    let mcp_app = match mcp_server::Application::build(mcp_settings.clone()).await {
        Ok(app) => app,
        Err(err) => {
            auth_handle.stop(true).await;
            return Err(err.context("starting mcp-server"));
        }
    };
    let mcp_handle = mcp_app.handle();
    let mcp_app_upstream = mcp_app.upstream().map(str::to_string);
    let mcp_task = tokio::spawn(mcp_app.server());

    print_banner(&auth_settings, &mcp_settings, mcp_app_upstream.as_deref());
    if corp_sso.is_some() {
        print_corp_sso_banner(&auth_settings);
    }

    let mut auth_task = auth_task;
    let mut mcp_task = mcp_task;
    // actix-web stops a server cleanly on SIGINT/SIGTERM/SIGQUIT by itself, and may do
    // so before `ctrl_c` fires here: a clean stop is a normal shutdown, only an error
    // or a panic is unexpected.
    let stopped = |name: &str, res: Result<std::io::Result<()>, tokio::task::JoinError>| match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("{name} failed: {e}")),
        Err(e) => Err(anyhow::anyhow!("{name} stopped unexpectedly: {e}")),
    };
    let outcome = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        res = &mut auth_task => stopped("auth-server", res),
        res = &mut mcp_task => stopped("mcp-server", res),
    };
    println!("\nstopping…");
    mcp_handle.stop(true).await;
    auth_handle.stop(true).await;
    if !mcp_task.is_finished() {
        let _ = mcp_task.await;
    }
    if !auth_task.is_finished() {
        let _ = auth_task.await;
    }
    drop(corp_sso);
    outcome?;
    println!("stopped.");
    Ok(())
}

fn print_banner(
    auth: &auth_server::settings::Settings,
    mcp: &mcp_server::settings::Settings,
    upstream: Option<&str>,
) {
    let mcp_url = &mcp.server.resource;
    let issuer = &auth.server.issuer;
    let tools = match upstream {
        Some(upstream) => format!(
            "Gateway mode: OAuth 2.1 in front of the {upstream}.\n  \
             Its tools, resources and prompts are served at {mcp_url}; the [policy] of\n  \
             config/mcp-server.toml says which scope each needs (default: mcp:read)."
        ),
        None => "Built-in tools: hello_world, auth_status, user_profile, protected_data, oauth_info, admin_panel.".to_string(),
    };
    println!(
        r#"
  ┌──────────────────────────────────────────────────────────────────────┐
  │  MCP + OAuth 2.1 demo is running                                     │
  └──────────────────────────────────────────────────────────────────────┘
  {tools}
  MCP server (resource):  {mcp_url}
  Authorization server:   {issuer}
  Protected-resource metadata: {prm}
  AS metadata:            {issuer}/.well-known/oauth-authorization-server
  Database:               {db}
  Metrics (own listeners): {auth_metrics}, {mcp_metrics}

  Demo users (seeded by --demo; never use them in production):
    demo / demo123            role user   → mcp:read
    admin / admin123          role admin  → mcp:read, mcp:admin
    inspector / inspector123  role admin  → mcp:read, mcp:admin

  Try it with MCP Inspector (2.x needs Node >= 22.19; see README for Node 20):
    1. npx @modelcontextprotocol/inspector   (open the URL it prints, with its token)
    2. Add Servers -> Add manually: Transport streamable-http, URL {mcp_url}, Add;
       flip the switch on the server card to connect.
    3. Inspector registers itself (DCR) and opens our login page: sign in, Allow.
    4. Tools tab: call the tools (built-in: hello_world, user_profile,
       protected_data; admin_panel appears after an admin approves the mcp:admin
       scope: the consent page offers "Sign in as someone else").

  Ctrl-C stops both services.
"#,
        prm = shared::resource::protected_resource_metadata_url(mcp_url).unwrap_or_default(),
        db = if auth.database.url.is_empty() {
            auth.database.path.clone()
        } else {
            auth_server::storage::redact_url(&auth.database.url)
        },
        auth_metrics = metrics_url(&auth.server.metrics_listen),
        mcp_metrics = metrics_url(&mcp.server.metrics_listen),
    );
}

const CORP_SSO_ISSUER: &str = "http://localhost:3002";

/// The Corp SSO process; stopped with the demo.
struct CorpSso(std::process::Child);

impl Drop for CorpSso {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `e2e/corp-sso.js` and waits until it listens; returns it with the
/// `[[identity_providers]]` entry that points auth-server at it.
fn start_corp_sso(
    auth: &auth_server::settings::Settings,
) -> anyhow::Result<(
    std::process::Child,
    auth_server::settings::identity_providers::IdentityProviderConfig,
)> {
    use auth_server::settings::identity_providers::{AccessPolicy, IdentityProviderConfig};
    use std::io::BufRead as _;
    if !Path::new("e2e/node_modules/oidc-provider").exists() {
        anyhow::bail!(
            "--upstream-idp runs node-oidc-provider from e2e/: run `npm ci` in e2e/ first (Node 20+)"
        );
    }
    let idp = IdentityProviderConfig {
        id: "corp".into(),
        display_name: "Corp SSO".into(),
        issuer: CORP_SSO_ISSUER.into(),
        client_id: "mcp-auth-server".into(),
        client_secret: shared::Secret::new(shared::secret::random_token(24)),
        scopes: "openid email profile groups".into(),
        access: AccessPolicy {
            allowed_email_domains: vec!["example.com".into()],
            admin_groups: vec!["mcp-admins".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let mut child = std::process::Command::new("node")
        .arg("e2e/corp-sso.js")
        .env("CORP_SSO_CLIENT_SECRET", idp.client_secret.expose())
        .env("CORP_SSO_REDIRECT_URI", idp.redirect_uri(&auth.issuer()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting node e2e/corp-sso.js (is Node installed?)")?;
    let stdout = child.stdout.take().context("reading Corp SSO's output")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => {
                // Keep reading, so that a later line never meets a closed pipe.
                std::thread::spawn(move || lines.for_each(drop));
                break;
            }
            Some(Ok(_)) => continue,
            _ => {
                let _ = child.kill();
                anyhow::bail!(
                    "Corp SSO (e2e/corp-sso.js) stopped before listening on {CORP_SSO_ISSUER}"
                );
            }
        }
    }
    Ok((child, idp))
}

fn print_corp_sso_banner(auth: &auth_server::settings::Settings) {
    println!(
        r#"  Upstream identity provider (--upstream-idp): "Corp SSO" = node-oidc-provider at {CORP_SSO_ISSUER}
  The login page shows "Continue with Corp SSO"; at Corp SSO any password works for:
    alice   alice@example.com   groups staff              → role user  (mcp:read)
    root    root@example.com    groups staff, mcp-admins  → role admin (mcp:read, mcp:admin)
    eve     eve@evil.org        outside allowed_email_domains = ["example.com"] → refused
  Users from Corp SSO appear in `auth-server --db {db} user list` as idp:corp.
"#,
        db = auth.database.path,
    );
}

/// Where a `server.metrics_listen` setting serves `/metrics`, for the banner.
fn metrics_url(setting: &str) -> String {
    match shared::metrics_listener::listen_address(setting) {
        Some(address) => format!("http://{address}/metrics"),
        None => "off".into(),
    }
}
