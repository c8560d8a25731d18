//! Command line: `mcp-server [serve] [--config FILE] [--listen ADDR] [--resource URL]
//! [--issuer URL] [--client-id ID] [--client-secret S] [--allow-anonymous] [--demo]`.
//! Flags override the config file and the `MCP__...` environment.

use std::path::PathBuf;
use std::process::ExitCode;

use std::future::Future;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use shared::Secret;

use crate::settings::Settings;
use crate::Application;

pub use crate::settings::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-server",
    version,
    about = "Remote MCP server (Streamable HTTP) protected by OAuth 2.1",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Check the server this configuration describes: GET /healthz on its listen address
    /// (exit 0 when healthy, 1 otherwise; the container health check).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct HealthcheckArgs {
    /// The TOML configuration file `serve` runs with (the `MCP__...` environment applies too).
    #[arg(long, value_name = "FILE", env = "MCP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check `/readyz` instead: healthy only once tokens can be verified (keys loaded),
    /// which is what services that depend on this one wait for.
    #[arg(long)]
    pub ready: bool,
}

impl HealthcheckArgs {
    /// Runs the check and reports it on stdout / stderr.
    pub fn run(&self) -> ExitCode {
        let path = if self.ready { "/readyz" } else { "/healthz" };
        let result = Settings::load(self.config.as_deref()).and_then(|settings| {
            actix_web::rt::System::new()
                .block_on(shared::healthcheck::probe(&settings.server.listen, path))
                .map_err(anyhow::Error::from)
        });
        match result {
            Ok(url) => {
                println!("healthy: {url}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcp-server: unhealthy: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file (keys as in `mcp_server::settings::Settings`).
    #[arg(long, value_name = "FILE", env = "MCP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:3000 (server.listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Canonical URL of the MCP endpoint, e.g. https://mcp.example.com/mcp (server.resource).
    #[arg(long, value_name = "URL")]
    pub resource: Option<String>,
    /// Issuer URL of the authorization server (auth.issuer).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// This server's own OAuth client id, for introspection and the admin API (auth.client_id).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// This server's own OAuth client secret (auth.client_secret; prefer MCP__AUTH__CLIENT_SECRET).
    #[arg(long, value_name = "SECRET")]
    pub client_secret: Option<String>,
    /// Let callers without a token use the public tools (auth.allow_anonymous).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Use the demo client that `auth-server --demo` registers (mcp-server / demo-mcp-server-secret).
    #[arg(long)]
    pub demo: bool,
    /// Gateway mode: protect this Streamable HTTP MCP server instead of serving the
    /// built-in tools (upstream.url).
    #[arg(long, value_name = "URL", conflicts_with = "upstream_cmd")]
    pub upstream_url: Option<String>,
    /// Gateway mode: protect this stdio MCP server, started once per MCP session
    /// without a shell, e.g. "npx -y @modelcontextprotocol/server-everything"
    /// (upstream.command).
    #[arg(long, value_name = "COMMAND ARG...")]
    pub upstream_cmd: Option<String>,
}

impl ServeArgs {
    /// Loads the layered settings and applies the flags on top.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(self.config.as_deref())?;
        self.apply(&mut settings);
        Ok(settings)
    }

    pub fn apply(&self, settings: &mut Settings) {
        if let Some(listen) = &self.listen {
            settings.server.listen = listen.clone();
        }
        if let Some(resource) = &self.resource {
            settings.server.resource = resource.clone();
        }
        if let Some(issuer) = &self.issuer {
            settings.auth.issuer = issuer.clone();
        }
        if self.demo {
            settings.apply_demo_defaults(&Secret::new(DEMO_CLIENT_SECRET));
        }
        if let Some(id) = &self.client_id {
            settings.auth.client_id = id.clone();
        }
        if let Some(secret) = &self.client_secret {
            settings.auth.client_secret = Secret::new(secret.clone());
        }
        if self.allow_anonymous {
            settings.auth.allow_anonymous = true;
        }
        // A flag names the upstream outright: it replaces one from the file or env.
        if let Some(url) = &self.upstream_url {
            settings.upstream.url = Some(url.clone());
            settings.upstream.command = None;
        }
        if let Some(command) = &self.upstream_cmd {
            settings.upstream.command =
                Some(crate::gateway::settings::CommandLine::Line(command.clone()));
            settings.upstream.url = None;
        }
    }
}

async fn serve<F, Fut>(args: ServeArgs, build: F) -> anyhow::Result<()>
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let settings = args.settings()?;
    let app = build(settings).await?;
    println!("listening on http://{}", app.local_addr());
    if let Some(upstream) = app.upstream() {
        println!("gateway: OAuth in front of the {upstream}");
    }
    if let Some(metrics) = app.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    if app.upstream().is_none() {
        log::info!(
            "MCP endpoint {} (tools: {})",
            app.resource(),
            app.tool_names().join(", ")
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    run(Cli::command(), Application::build)
}

/// Runs a server binary: parses the command line of [`Cli`] (under the name and help
/// text of `command`), sets up logging, builds the application with `build` and serves
/// until stopped. A binary that mounts its own rmcp handler passes
/// [`Application::build_with_service`] here and shares every flag of `mcp-server`.
pub fn run<F, Fut>(command: clap::Command, build: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let name = command.get_name().to_owned();
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // rmcp logs through `tracing`; its span events arrive under the `tracing::span`
    // target (one INFO line per session otherwise).
    // No access-log line per request at info by default (it costs ~8 % of a cached
    // tools/call); `RUST_LOG=info` brings the access log back.
    shared::telemetry::init_logging(
        "info,rmcp=warn,tracing::span=warn,actix_web::middleware::logger=warn",
    );
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Healthcheck(args)) => return args.run(),
        None => cli.serve,
    };
    let result = actix_web::rt::System::new().block_on(serve(args, build));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bare_invocation_and_serve_subcommand_parse_alike() {
        let bare =
            Cli::try_parse_from(["mcp-server", "--demo", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(bare.command.is_none());
        assert!(bare.serve.demo);
        let sub = Cli::try_parse_from(["mcp-server", "serve", "--demo", "--issuer", "http://as"])
            .unwrap();
        match sub.command {
            Some(Command::Serve(a)) => {
                assert!(a.demo);
                assert_eq!(a.issuer.as_deref(), Some("http://as"));
            }
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn demo_sets_the_demo_client_unless_given() {
        let mut s = Settings::default();
        ServeArgs {
            demo: true,
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(s.auth.client_id, DEMO_CLIENT_ID);
        assert_eq!(s.auth.client_secret.expose(), DEMO_CLIENT_SECRET);
        let mut s = Settings::default();
        ServeArgs {
            demo: true,
            client_id: Some("rs".into()),
            allow_anonymous: true,
            ..Default::default()
        }
        .apply(&mut s);
        assert_eq!(s.auth.client_id, "rs");
        assert!(s.auth.allow_anonymous);
    }

    #[test]
    fn upstream_flags_name_the_upstream() {
        let cli = Cli::try_parse_from([
            "mcp-server",
            "--upstream-cmd",
            "npx -y @modelcontextprotocol/server-everything",
        ])
        .unwrap();
        let mut s = Settings::default();
        s.upstream.url = Some("http://from-file/mcp".into());
        cli.serve.apply(&mut s);
        assert_eq!(s.upstream.url, None);
        assert_eq!(
            s.upstream.target().unwrap(),
            Some(crate::gateway::Target::Command(vec![
                "npx".into(),
                "-y".into(),
                "@modelcontextprotocol/server-everything".into()
            ]))
        );
        let cli = Cli::try_parse_from([
            "mcp-server",
            "serve",
            "--upstream-url",
            "http://127.0.0.1:9000/mcp",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("serve");
        };
        let mut s = Settings::default();
        args.apply(&mut s);
        assert_eq!(s.upstream.url.as_deref(), Some("http://127.0.0.1:9000/mcp"));
        s.validate().unwrap();
        assert!(Cli::try_parse_from([
            "mcp-server",
            "--upstream-url",
            "http://x/mcp",
            "--upstream-cmd",
            "x"
        ])
        .is_err());
    }
}
