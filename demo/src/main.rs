//! `cargo run --bin mcp-demo`: the two-service demo in one process, without Docker.
//! auth-server on 127.0.0.1:3001 (issuer http://localhost:3001) with the demo users and
//! mcp-server's demo client seeded, mcp-server on 127.0.0.1:3000 (http://localhost:3000/mcp).
//! Both are the real applications built from their libraries, configured from
//! `config/auth-server.toml` and `config/mcp-server.toml` plus `AUTH__…`/`MCP__…` env.

use std::path::Path;

use anyhow::Context;

const AUTH_CONFIG: &str = "config/auth-server.toml";
const MCP_CONFIG: &str = "config/mcp-server.toml";

fn optional(path: &str) -> Option<&Path> {
    let path = Path::new(path);
    path.exists().then_some(path)
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init_logging("info,actix_web::middleware::logger=warn");

    let mut auth_settings = auth_server::settings::Settings::load(optional(AUTH_CONFIG))
        .map_err(|e| anyhow::anyhow!("loading the auth-server configuration: {e}"))?;
    auth_settings.demo.enabled = true;
    let auth_app = auth_server::Application::build(auth_settings.clone())
        .await
        .context("starting auth-server")?;
    let auth_handle = auth_app.handle();
    let auth_task = tokio::spawn(auth_app.server());

    let mut mcp_settings = mcp_server::settings::Settings::load(optional(MCP_CONFIG))
        .context("loading the mcp-server configuration")?;
    mcp_settings.apply_demo_defaults(&auth_settings.demo.mcp_server_client_secret);
    let mcp_app = match mcp_server::Application::build(mcp_settings.clone()).await {
        Ok(app) => app,
        Err(err) => {
            auth_handle.stop(true).await;
            return Err(err.context("starting mcp-server"));
        }
    };
    let mcp_handle = mcp_app.handle();
    let mcp_task = tokio::spawn(mcp_app.server());

    print_banner(&auth_settings, &mcp_settings);

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
    outcome?;
    println!("stopped.");
    Ok(())
}

fn print_banner(auth: &auth_server::settings::Settings, mcp: &mcp_server::settings::Settings) {
    let mcp_url = &mcp.server.resource;
    let issuer = &auth.server.issuer;
    println!(
        r#"
  ┌──────────────────────────────────────────────────────────────────────┐
  │  MCP + OAuth 2.1 demo is running                                     │
  └──────────────────────────────────────────────────────────────────────┘
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
    4. Tools tab: call hello_world, user_profile, protected_data.
       admin_panel appears after an admin approves the mcp:admin scope
       (the consent page offers "Sign in as someone else").

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

/// Where a `server.metrics_listen` setting serves `/metrics`, for the banner.
fn metrics_url(setting: &str) -> String {
    match shared::metrics_listener::listen_address(setting) {
        Some(address) => format!("http://{address}/metrics"),
        None => "off".into(),
    }
}
