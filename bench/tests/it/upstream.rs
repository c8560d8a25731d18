//! bench-upstream, bench-latency and bench-exchange, the binaries of the gateway
//! benchmarks, as the harness runs them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const UPSTREAM: &str = env!("CARGO_BIN_EXE_bench-upstream");
const LATENCY: &str = env!("CARGO_BIN_EXE_bench-latency");
const EXCHANGE: &str = env!("CARGO_BIN_EXE_bench-exchange");

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_http_upstream() -> (Server, String) {
    let mut child = Command::new(UPSTREAM)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (Server(child), url)
}

fn latency(args: &[&str]) -> Value {
    run(LATENCY, args)
}

fn run(binary: &str, args: &[&str]) -> Value {
    let out = Command::new(binary).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_http_upstream_answers_a_stateless_tools_call_in_json() {
    let (_server, url) = start_http_upstream();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(super::CALL)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().get("mcp-session-id").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["content"][0]["text"], "Hello, bench!");
}

#[test]
fn bench_latency_times_calls_over_http_and_stdio_and_counts_failed_ones() {
    let (_server, url) = start_http_upstream();
    let http = latency(&["--calls", "50", "--warmup", "5", "http", "--url", &url]);
    assert_eq!(http["calls"], 50);
    assert_eq!(http["errors"], 0);
    let (p50, p99) = (
        http["p50_us"].as_f64().unwrap(),
        http["p99_us"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{http}");

    let stdio = latency(&[
        "--calls", "50", "--warmup", "5", "stdio", UPSTREAM, "--stdio",
    ]);
    assert_eq!(stdio["calls"], 50);
    assert_eq!(stdio["errors"], 0);

    // A tool the server does not have: every call is an error answer.
    let unknown = latency(&[
        "--calls",
        "10",
        "--warmup",
        "0",
        "--tool",
        "no_such_tool",
        "stdio",
        UPSTREAM,
        "--stdio",
    ]);
    assert_eq!(unknown["errors"], 10);
}

#[test]
fn bench_exchange_counts_answered_calls_and_the_ones_without_a_result() {
    let (_server, url) = start_http_upstream();
    let args = ["--url", &url, "--conns", "4", "--seconds", "0.5"];
    let answered = run(EXCHANGE, &args);
    let requests = answered["requests"].as_u64().unwrap();
    assert!(requests > 10, "{answered}");
    assert_eq!(answered["errors"], 0, "{answered}");
    assert!(answered["seconds"].as_f64().unwrap() >= 0.5, "{answered}");

    // A tool the server does not have: no call gets a result.
    let refused = run(EXCHANGE, &[&args[..], &["--tool", "no_such_tool"]].concat());
    assert!(refused["requests"].as_u64().unwrap() > 0, "{refused}");
    assert_eq!(refused["errors"], refused["requests"], "{refused}");
}
