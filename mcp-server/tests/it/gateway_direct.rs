//! Gateway mode's direct route (plain `tools/call`s forwarded by the bridge itself) in
//! front of a real rmcp upstream that answers in JSON: the same answers as rmcp's path
//! (a differential test: the same calls through two gateways, one with
//! `transport.direct_tool_calls` off), cancellation and timeouts, an upstream that
//! answers with a stream after all, and an upstream that forgets its session.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The upstream logs (deprecated by SEP-2577 for the newest version, used by the older ones).
#![allow(deprecated)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorData, Implementation, LoggingLevel,
    LoggingMessageNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::mcp::{counter_total, rpc_response, spawn_with, sse_messages, TestServer};

/// What the upstream saw, for the assertions.
#[derive(Default)]
struct Seen {
    /// Header names of every request (lower case).
    headers: Mutex<Vec<Vec<String>>>,
    /// `tools/call`s that ran to their end, or were cancelled.
    calls: AtomicUsize,
    cancelled: AtomicBool,
    /// Session mode of the fixture: the upstream "forgot" its session (404 on it).
    forgotten: AtomicBool,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct EchoArgs {
    text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SlowArgs {
    ms: u64,
}

#[derive(Clone)]
struct JsonUpstream {
    tool_router: ToolRouter<JsonUpstream>,
    seen: Arc<Seen>,
}

#[tool_router]
impl JsonUpstream {
    fn new(seen: Arc<Seen>) -> Self {
        JsonUpstream {
            tool_router: Self::tool_router(),
            seen,
        }
    }

    #[tool(description = "Answers its text.")]
    async fn echo(
        &self,
        Parameters(args): Parameters<EchoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.seen.calls.fetch_add(1, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text(args.text)]))
    }

    #[tool(description = "The caller the gateway named in `X-MCP-Subject`.")]
    async fn whoami(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let subject = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("x-mcp-subject"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(nobody)")
            .to_string();
        Ok(CallToolResult::success(vec![ContentBlock::text(subject)]))
    }

    #[tool(description = "A tool that reports its own failure.")]
    async fn broken(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text("it broke")]))
    }

    #[tool(description = "A tool that answers with a JSON-RPC error.")]
    async fn refuse(&self) -> Result<CallToolResult, ErrorData> {
        Err(ErrorData::invalid_params(
            "refused on purpose",
            Some(json!({"why": "test"})),
        ))
    }

    #[tool(description = "Structured content.")]
    async fn structured(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::structured(
            json!({"answer": 42, "list": [1, 2]}),
        ))
    }

    #[tool(description = "Sleeps `ms` milliseconds unless cancelled.")]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.ms)) => {
                Ok(CallToolResult::success(vec![ContentBlock::text("slept")]))
            }
            _ = context.ct.cancelled() => {
                self.seen.cancelled.store(true, Ordering::SeqCst);
                Ok(CallToolResult::success(vec![ContentBlock::text("cancelled")]))
            }
        }
    }

    #[tool(description = "Logs a line before answering (the answer becomes a stream).")]
    async fn chatty(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let mut log = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!("chatting"));
        log.logger = Some("upstream".into());
        let _ = context.peer.notify_logging_message(log).await;
        Ok(CallToolResult::success(vec![ContentBlock::text("chatted")]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for JsonUpstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("json-upstream", "1.0.0"))
    }
}

/// rmcp's stateless JSON server on a random port. With `session`, the fixture gives
/// the gateway a session id on every answer and answers 404 on it once forgotten
/// (rmcp itself, stateless, never sees the header).
async fn start_upstream(session: bool) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    config.json_response = true;
    config.sse_keep_alive = None;
    let handler_seen = seen.clone();
    let service = StreamableHttpService::new(
        move || Ok(JsonUpstream::new(handler_seen.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let fixture_seen = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            let seen = fixture_seen.clone();
            let serve = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    let service = service.clone();
                    let seen = seen.clone();
                    async move {
                        seen.headers.lock().unwrap().push(
                            request
                                .headers()
                                .keys()
                                .map(|k| k.as_str().to_string())
                                .collect(),
                        );
                        let had_session = request.headers_mut().remove("mcp-session-id").is_some();
                        if session && had_session && seen.forgotten.load(Ordering::SeqCst) {
                            let response = hyper::Response::builder()
                                .status(404)
                                .body(http_body_util::Full::new(bytes::Bytes::new()).boxed())
                                .unwrap();
                            return Ok::<_, Infallible>(response);
                        }
                        let mut response = service.handle(request).await;
                        if session {
                            response
                                .headers_mut()
                                .insert("mcp-session-id", "upstream-session-1".parse().unwrap());
                        }
                        Ok(response)
                    }
                },
            );
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), serve)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn gateway(upstream: &str, direct: bool, timeout_secs: u64) -> TestServer {
    gateway_with(upstream, direct, timeout_secs, false).await
}

async fn gateway_with(
    upstream: &str,
    direct: bool,
    timeout_secs: u64,
    forward_identity: bool,
) -> TestServer {
    let upstream = upstream.to_string();
    spawn_with(move |s, _| {
        s.upstream.forward_identity = forward_identity;
        s.upstream.url = Some(upstream);
        s.upstream.timeout_secs = timeout_secs;
        s.transport.direct_tool_calls = direct;
        s.policy.default_scope = "mcp:read".into();
    })
    .await
}

async fn open(s: &TestServer, token: &str) -> String {
    s.open_session(Some(token)).await.0
}

/// An upstream (`upstream_sessions`: it gives session ids), a gateway with the direct
/// route in front of it, and a session of ada's (`mcp:read`) on that gateway.
struct DirectSession {
    url: String,
    seen: Arc<Seen>,
    s: TestServer,
    token: String,
    session: String,
}

async fn direct_session(upstream_sessions: bool, timeout_secs: u64) -> DirectSession {
    let (url, seen) = start_upstream(upstream_sessions).await;
    let s = gateway(&url, true, timeout_secs).await;
    let token = s.token("ada", "mcp:read");
    let session = open(&s, &token).await;
    DirectSession {
        url,
        seen,
        s,
        token,
        session,
    }
}

/// The JSON-RPC message answering `echo` of `text` (request `id`) on `session`.
async fn echo(s: &TestServer, token: &str, session: &str, id: u64, text: &str) -> Value {
    call(
        s,
        token,
        session,
        &tool_call(json!(id), "echo", json!({ "text": text })),
    )
    .await
    .2
}

/// The status, media type and JSON-RPC message of one call.
async fn call(s: &TestServer, token: &str, session: &str, body: &Value) -> (u16, String, Value) {
    let response = s
        .post(Some(token), Some(session), body)
        .header("Cookie", "session=browser-secret")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, media, rpc_response(response).await)
}

async fn direct_count(s: &TestServer) -> u64 {
    counter_total(&s.metrics().await, "mcp_server_direct_tool_calls_total") as u64
}

fn tool_call(id: Value, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

#[tokio::test]
async fn direct_answers_equal_rmcp_answers() {
    let (url, seen) = start_upstream(false).await;
    let direct = gateway(&url, true, 10).await;
    let through_rmcp = gateway(&url, false, 10).await;
    let token = direct.token("ada", "mcp:read");
    let other_token = through_rmcp.token("ada", "mcp:read");
    let direct_session = open(&direct, &token).await;
    let rmcp_session = open(&through_rmcp, &other_token).await;

    let calls = [
        tool_call(json!(7), "echo", json!({"text": "héllo \"quoted\" ✓"})),
        tool_call(json!("str-id"), "echo", json!({"text": ""})),
        tool_call(json!(8), "broken", json!({})),
        tool_call(json!(9), "refuse", json!({})),
        tool_call(json!(10), "structured", json!({})),
        tool_call(json!(11), "no_such_tool", json!({})),
        tool_call(json!(12), "echo", json!({"text": 5})),
        tool_call(json!(13), "echo", json!({})),
        json!({"jsonrpc": "2.0", "id": 14, "method": "tools/call", "params": {"name": "broken"}}),
    ];
    for body in &calls {
        let via_direct = call(&direct, &token, &direct_session, body).await;
        let via_rmcp = call(&through_rmcp, &other_token, &rmcp_session, body).await;
        assert_eq!(via_direct, via_rmcp, "{body}");
        assert_eq!(via_direct.0, 200, "{body}");
        assert!(
            via_direct.1.starts_with("text/event-stream"),
            "{body}: {}",
            via_direct.1
        );
    }
    // Spot checks of what both said.
    let (_, _, echo) = call(&direct, &token, &direct_session, &calls[0]).await;
    assert_eq!(echo["id"], 7);
    assert_eq!(echo["result"]["content"][0]["text"], "héllo \"quoted\" ✓");
    let (_, _, refused) = call(&direct, &token, &direct_session, &calls[3]).await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(refused["error"]["data"]["why"], "test", "{refused}");

    // Every call of the first gateway went the direct way; none of the second's.
    assert_eq!(direct_count(&direct).await, calls.len() as u64 + 2);
    assert_eq!(direct_count(&through_rmcp).await, 0);

    // No token passthrough on the direct route either; the protocol version is sent.
    for headers in seen.headers.lock().unwrap().iter() {
        assert!(
            !headers
                .iter()
                .any(|h| h == "authorization" || h == "cookie"),
            "{headers:?}"
        );
    }
    let last = seen.headers.lock().unwrap().last().cloned().unwrap();
    assert!(last.iter().any(|h| h == "mcp-protocol-version"), "{last:?}");

    // A call needing more than the token grants is refused in front, as always.
    let weak = direct.token("bob", "");
    let weak_session = open(&direct, &weak).await;
    let response = direct
        .post(Some(&weak), Some(&weak_session), &calls[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

/// A slow call cancelled by the client 300 ms in: the answer's status and messages,
/// and how long it took.
async fn cancelled_call(s: &TestServer, token: &str, session: &str) -> (u16, Vec<Value>, Duration) {
    let started = Instant::now();
    let pending = {
        let request = s.post(
            Some(token),
            Some(session),
            &tool_call(json!(21), "slow", json!({"ms": 1500})),
        );
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, sse_messages(&response.text().await.unwrap()))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 21, "reason": "user"}});
    let response = s
        .post(Some(token), Some(session), &cancel)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (status, messages) = pending.await.unwrap();
    (status, messages, started.elapsed())
}

#[tokio::test]
async fn a_cancelled_direct_call_is_cancelled_upstream_and_a_slow_one_times_out() {
    let DirectSession {
        url,
        seen,
        s,
        token,
        session,
    } = direct_session(false, 2).await;

    // The client sees what rmcp's path shows it: the stream ends, no answer.
    let through_rmcp = gateway(&url, false, 2).await;
    let rmcp_token = through_rmcp.token("ada", "mcp:read");
    let rmcp_session = open(&through_rmcp, &rmcp_token).await;
    let (rmcp_status, rmcp_messages, _) =
        cancelled_call(&through_rmcp, &rmcp_token, &rmcp_session).await;
    seen.cancelled.store(false, Ordering::SeqCst);
    let (status, messages, elapsed) = cancelled_call(&s, &token, &session).await;
    assert!(elapsed < Duration::from_millis(1400), "{elapsed:?}");
    assert_eq!((status, &messages), (rmcp_status, &rmcp_messages));
    assert_eq!(direct_count(&s).await, 1);
    for _ in 0..50 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.cancelled.load(Ordering::SeqCst),
        "the upstream saw no cancellation"
    );

    let started = Instant::now();
    let (status, _, answer) = call(
        &s,
        &token,
        &session,
        &tool_call(json!(22), "slow", json!({"ms": 5000})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["error"]["message"], "the upstream MCP server did not answer within 2 s",
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The session still works.
    let echo = echo(&s, &token, &session, 23, "still here").await;
    assert_eq!(echo["result"]["content"][0]["text"], "still here", "{echo}");
}

#[tokio::test]
async fn an_upstream_answering_with_a_stream_gets_its_calls_through_rmcp_afterwards() {
    let DirectSession {
        seen,
        s,
        token,
        session,
        ..
    } = direct_session(false, 10).await;
    let first = echo(&s, &token, &session, 1, "a").await;
    assert_eq!(first["result"]["content"][0]["text"], "a");
    assert_eq!(direct_count(&s).await, 1);
    // The upstream logs before answering: its answer is a stream, read in full here.
    let (status, _, chatty) = call(
        &s,
        &token,
        &session,
        &tool_call(json!(2), "chatty", json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(chatty["id"], 2, "{chatty}");
    assert_eq!(
        chatty["result"]["content"][0]["text"], "chatted",
        "{chatty}"
    );
    assert_eq!(direct_count(&s).await, 2);
    // From then on, this session's calls go through rmcp (which relays streams).
    let later = echo(&s, &token, &session, 3, "b").await;
    assert_eq!(later["result"]["content"][0]["text"], "b", "{later}");
    assert_eq!(direct_count(&s).await, 2);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_that_forgot_its_session_ends_ours() {
    let DirectSession {
        seen,
        s,
        token,
        session,
        ..
    } = direct_session(true, 10).await;
    let first = echo(&s, &token, &session, 1, "a").await;
    assert_eq!(first["result"]["content"][0]["text"], "a", "{first}");
    assert_eq!(direct_count(&s).await, 1);
    let last = seen.headers.lock().unwrap().last().cloned().unwrap();
    assert!(last.iter().any(|h| h == "mcp-session-id"), "{last:?}");

    seen.forgotten.store(true, Ordering::SeqCst);
    let gone = echo(&s, &token, &session, 2, "b").await;
    assert_eq!(
        gone["error"]["message"], "the upstream MCP server ended this session; start a new one",
        "{gone}"
    );
    // Our session ends with it: the client gets 404 and starts a new one.
    let mut status = 0;
    for _ in 0..40 {
        let response = s
            .post(
                Some(&token),
                Some(&session),
                &tool_call(json!(3), "echo", json!({"text": "c"})),
            )
            .send()
            .await
            .unwrap();
        status = response.status().as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404);
    seen.forgotten.store(false, Ordering::SeqCst);
    let fresh = open(&s, &token).await;
    assert_ne!(fresh, session);
    let again = echo(&s, &token, &fresh, 4, "d").await;
    assert_eq!(again["result"]["content"][0]["text"], "d", "{again}");
}

#[tokio::test]
async fn each_session_s_direct_calls_carry_its_own_identity() {
    let (url, seen) = start_upstream(false).await;
    let s = gateway_with(&url, true, 10, true).await;
    let ada = s.token("ada", "mcp:read");
    let bob = s.token("bob", "mcp:read");
    let ada_session = open(&s, &ada).await;
    let bob_session = open(&s, &bob).await;
    for round in 0..3 {
        for (token, session, subject) in [(&ada, &ada_session, "ada"), (&bob, &bob_session, "bob")]
        {
            let (_, _, answer) = call(
                &s,
                token,
                session,
                &tool_call(json!(round), "whoami", json!({})),
            )
            .await;
            assert_eq!(answer["result"]["content"][0]["text"], subject, "{answer}");
        }
    }
    assert_eq!(direct_count(&s).await, 6);
    // bob cannot use ada's session (and so not her route).
    let response = s
        .post(
            Some(&bob),
            Some(&ada_session),
            &tool_call(json!(9), "whoami", json!({})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    for headers in seen.headers.lock().unwrap().iter() {
        assert!(
            !headers
                .iter()
                .any(|h| h == "authorization" || h == "cookie"),
            "{headers:?}"
        );
    }
}
