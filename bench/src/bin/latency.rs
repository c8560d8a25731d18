//! `bench-latency`: times N sequential `tools/call`s of one MCP client, either over
//! stdio to a server it starts itself, or over Streamable HTTP (a session, with a
//! bearer token) to a server such as mcp-server's gateway. The client is the leanest
//! possible on both transports (JSON-RPC lines on the child's pipes; one keep-alive
//! HTTP/1 connection), so that the difference is the servers'. Prints one JSON line:
//! `{"calls":N,"errors":E,"p50_us":..,"p90_us":..,"p99_us":..,"mean_us":..,"max_us":..}`.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PROTOCOL: &str = "2025-06-18";

#[derive(Parser, Debug)]
#[command(
    name = "bench-latency",
    about = "Per-call latency of sequential MCP tools/call requests (stdio or Streamable HTTP)"
)]
struct Args {
    /// Timed calls.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Untimed calls first.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Tool called (with `{"name":"bench"}` as its arguments).
    #[arg(long, default_value = "hello_world")]
    tool: String,
    #[command(subcommand)]
    transport: Transport,
}

#[derive(Subcommand, Debug)]
enum Transport {
    /// Start COMMAND [ARG...] and talk to it on its stdin/stdout.
    Stdio {
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// A Streamable HTTP endpoint (session mode; JSON or SSE answers).
    Http {
        #[arg(long)]
        url: String,
        /// Bearer token (or env BENCH_TOKEN).
        #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn init_request() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "bench-latency", "version": env!("CARGO_PKG_VERSION")}}})
}

fn call_request(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"name": "bench"}}})
}

/// Whether `message` is the successful answer to request `id`.
fn answers(message: &Value, id: u64) -> Option<bool> {
    if message.get("id").and_then(Value::as_u64) != Some(id) {
        return None;
    }
    let ok = message
        .get("result")
        .is_some_and(|r| r.get("isError") != Some(&Value::Bool(true)));
    Some(ok)
}

trait Client {
    /// Sends request `id` and waits for its answer: Ok(true) on success.
    async fn call(&mut self, id: u64, request: &Value) -> anyhow::Result<bool>;
}

struct StdioClient {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl StdioClient {
    async fn start(command: &[String]) -> anyhow::Result<Self> {
        let (program, args) = command.split_first().ok_or_else(|| anyhow!("no command"))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut client = StdioClient {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        if !client.call(0, &init_request()).await? {
            bail!("initialize failed");
        }
        client
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(client)
    }

    async fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }
}

impl Client for StdioClient {
    async fn call(&mut self, id: u64, request: &Value) -> anyhow::Result<bool> {
        self.send(request).await?;
        while let Some(line) = self.lines.next_line().await? {
            let message: Value = serde_json::from_str(&line)
                .with_context(|| format!("not JSON from the server: {line}"))?;
            if let Some(ok) = answers(&message, id) {
                return Ok(ok);
            }
        }
        let status = self.child.try_wait()?;
        bail!("the server closed its stdout ({status:?})")
    }
}

struct HttpClient {
    http: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
}

impl HttpClient {
    async fn start(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        use reqwest::header::{HeaderMap, HeaderValue};
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()?;
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(token) = token {
            headers.insert("authorization", format!("Bearer {token}").parse()?);
        }
        let mut client = HttpClient {
            http,
            url: url.to_string(),
            headers,
        };
        let response = client
            .http
            .post(&client.url)
            .headers(client.headers.clone())
            .json(&init_request())
            .send()
            .await?;
        let session = response.headers().get("mcp-session-id").cloned();
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() || !messages(&body).iter().any(|m| answers(m, 0) == Some(true)) {
            bail!(
                "initialize answered {status}: {}",
                &body[..body.len().min(300)]
            );
        }
        client
            .headers
            .insert("mcp-protocol-version", HeaderValue::from_static(PROTOCOL));
        if let Some(session) = session {
            client.headers.insert("mcp-session-id", session);
        }
        let status = client
            .http
            .post(&client.url)
            .headers(client.headers.clone())
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("notifications/initialized answered {status}");
        }
        Ok(client)
    }
}

/// The JSON-RPC messages of a JSON or SSE body.
fn messages(body: &str) -> Vec<Value> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).into_iter().collect();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

impl Client for HttpClient {
    async fn call(&mut self, id: u64, request: &Value) -> anyhow::Result<bool> {
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(serde_json::to_vec(request)?)
            .send()
            .await?;
        let status = response.status();
        let body = response.text().await?;
        Ok(status.is_success() && messages(&body).iter().any(|m| answers(m, id) == Some(true)))
    }
}

async fn run<C: Client>(client: &mut C, args: &Args) -> anyhow::Result<Value> {
    let mut id = 0u64;
    for _ in 0..args.warmup {
        id += 1;
        client.call(id, &call_request(id, &args.tool)).await?;
    }
    let mut times = Vec::with_capacity(args.calls);
    let mut errors = 0usize;
    for _ in 0..args.calls {
        id += 1;
        let request = call_request(id, &args.tool);
        let started = Instant::now();
        let ok = client.call(id, &request).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
        if !ok {
            errors += 1;
        }
    }
    if times.is_empty() {
        bail!("no calls timed");
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    Ok(json!({
        "calls": times.len(), "errors": errors, "mean_us": mean,
        "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "max_us": pct(1.0),
    }))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match &args.transport {
            Transport::Stdio { command } => {
                run(&mut StdioClient::start(command).await?, &args).await
            }
            Transport::Http { url, token } => {
                run(&mut HttpClient::start(url, token.as_deref()).await?, &args).await
            }
        }
    })?;
    println!("{result}");
    Ok(())
}
