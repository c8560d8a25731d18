//! `bench-upstream`: the fast MCP server the gateway benchmarks put behind mcp-server's
//! gateway mode (and call directly, for the comparison). rmcp's own Streamable HTTP
//! service on a bare hyper HTTP/1 server: stateless, JSON answers, no auth, no
//! logging, one tokio thread; or the same handler over stdio (`--stdio`).
//!
//! Tools: `hello_world` (answers like mcp-server's demo tool) and `echo`.

use std::convert::Infallible;
use std::sync::Arc;

use clap::Parser;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "bench-upstream",
    about = "Fast rmcp MCP server (stateless Streamable HTTP, JSON answers, no auth) behind the gateway benchmarks"
)]
struct Args {
    /// Address to bind (port 0 picks a free port); the bound address is printed.
    #[arg(long, default_value = "127.0.0.1:3950")]
    listen: String,
    /// Serve one MCP client on stdin/stdout instead of HTTP.
    #[arg(long)]
    stdio: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct HelloArgs {
    /// Whom to greet.
    name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct EchoArgs {
    /// Text answered back.
    text: String,
}

#[derive(Clone)]
struct Upstream {
    tool_router: ToolRouter<Upstream>,
}

#[tool_router]
impl Upstream {
    fn new() -> Self {
        Upstream {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Greets the caller (or `name`).",
        annotations(read_only_hint = true)
    )]
    async fn hello_world(
        &self,
        Parameters(args): Parameters<HelloArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let name = args.name.as_deref().unwrap_or("world");
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "Hello, {name}!"
        ))]))
    }

    #[tool(
        description = "Answers its `text`.",
        annotations(read_only_hint = true)
    )]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(args.text)]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_server_info(
            Implementation::new("bench-upstream", env!("CARGO_PKG_VERSION")),
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread: the benchmarks pin the server to one CPU.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.stdio {
        runtime.block_on(serve_stdio())
    } else {
        runtime.block_on(serve_http(&args.listen))
    }
}

async fn serve_stdio() -> anyhow::Result<()> {
    let service = Upstream::new()
        .serve((tokio::io::stdin(), tokio::io::stdout()))
        .await?;
    service.waiting().await?;
    Ok(())
}

async fn serve_http(listen: &str) -> anyhow::Result<()> {
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    config.json_response = true;
    config.sse_keep_alive = None;
    let service = StreamableHttpService::new(
        || Ok(Upstream::new()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: the next accept may succeed.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _: Result<(), Infallible> = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
                .or(Ok(()));
        });
    }
}
