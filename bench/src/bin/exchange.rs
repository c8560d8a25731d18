//! `bench-exchange`: `--conns` concurrent loops of `tools/call` POSTs to a Streamable
//! HTTP MCP server for `--seconds`, through hyper's pooled HTTP/1 client with
//! TCP_NODELAY (the client the gateway's direct route uses, without the gateway).
//! Run beside the gateway benchmark, its CPU per call (measured by the harness) is
//! the least the gateway can spend on the hop to its upstream. Prints one JSON line:
//! `{"requests":N,"errors":E,"seconds":S}`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Parser, Debug)]
#[command(
    name = "bench-exchange",
    about = "Concurrent tools/call exchanges of a bare HTTP client with an MCP server"
)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Tool called (with `{"name":"bench"}` as its arguments).
    #[arg(long, default_value = "hello_world")]
    tool: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let uri: hyper::Uri = args.url.parse()?;
    let body = Bytes::from(serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": args.tool, "arguments": {"name": "bench"}}
    }))?);
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(tcp);
    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(args.seconds);
    let mut loops = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
        let (requests, errors) = (requests.clone(), errors.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let request = hyper::Request::post(uri.clone())
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-06-18")
                    .body(Full::new(body.clone()));
                let answered = match request {
                    Ok(request) => match client.request(request).await {
                        Ok(response) if response.status().is_success() => response
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().windows(9).any(|w| w == b"\"result\":"))
                            .unwrap_or(false),
                        _ => false,
                    },
                    Err(_) => false,
                };
                requests.fetch_add(1, Ordering::Relaxed);
                if !answered {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for l in loops {
        l.await?;
    }
    println!(
        "{}",
        serde_json::json!({
            "requests": requests.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
