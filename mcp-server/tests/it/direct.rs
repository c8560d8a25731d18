//! Calls the bridge answers itself (`transport.direct_tool_calls`) must be
//! indistinguishable from rmcp's answers, and sessions used only that way must stay
//! open. Each test runs the same requests against a server with direct answers and
//! one without, both trusting the same `FakeAs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_server::settings::Settings;
use mcp_server::Application;
use serde_json::{json, Value};

use crate::mcp::{
    counter_total, initialize_body, metrics_text, sse_messages, test_settings, LEGACY_VERSION,
};
use crate::support::FakeAs;

struct Server {
    url: String,
    metrics_url: String,
    resource: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn start(fake: &FakeAs, tweak: impl FnOnce(&mut Settings)) -> Server {
    let mut settings = test_settings(fake);
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("build");
    let server = Server {
        url: format!("http://127.0.0.1:{}/mcp", app.port()),
        metrics_url: format!("http://{}/metrics", app.metrics_addr().expect("metrics on")),
        resource: app.resource().to_string(),
        handle: app.handle(),
    };
    tokio::spawn(app.server());
    server
}

struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

async fn post(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    session: Option<&str>,
    body: &str,
) -> Answer {
    let mut request = http
        .post(&server.url)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .body(body.to_string());
    if let Some(s) = session {
        request = request.header("Mcp-Session-Id", s);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    Answer {
        status,
        content_type,
        text,
    }
}

async fn open_session(http: &reqwest::Client, server: &Server, token: &str) -> String {
    let response = http
        .post(&server.url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await;
    let done = post(
        http,
        server,
        token,
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(done.status, 202);
    session
}

/// The JSON-RPC message of an answer with what differs legitimately between two
/// servers (their resource URL, a clock-dependent `expires_in`) blanked.
fn normalized(answer: &Answer, server: &Server) -> Value {
    let origin = server.url.trim_end_matches("/mcp");
    let message = if answer.content_type.starts_with("text/event-stream") {
        sse_messages(&answer.text)
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&answer.text).unwrap_or(Value::Null)
    };
    let text = message.to_string().replace(origin, "<origin>");
    let mut value: Value = serde_json::from_str(&text).unwrap();
    if let Some(sc) = value.pointer_mut("/result/structuredContent") {
        if let Some(obj) = sc.as_object_mut() {
            obj.remove("expires_in");
        }
    }
    value
}

/// Calls that exercise every direct tool, the fallbacks (bad arguments, unknown tool,
/// `_meta`, admin_panel when not served) and string ids.
fn calls() -> Vec<String> {
    [
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","arguments":{"name":"bench"}}}),
        json!({"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"hello_world"}}),
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hello_world","arguments":null}}),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"hello_world","arguments":{"name":5}}}),
        json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"auth_status","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"user_profile","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"financial"}}}),
        json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"bogus"}}}),
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin"}}}),
        json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"oauth_info"}}),
        json!({"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"admin_panel","arguments":{"action":"user_stats"}}}),
        json!({"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"hello_world","_meta":{"progressToken":"p"}}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

async fn compare(stateless: bool, json_response: bool) {
    let fake = FakeAs::start().await;
    let configure = |direct: bool| {
        move |s: &mut Settings| {
            s.transport.direct_tool_calls = direct;
            s.transport.stateless = stateless;
            s.transport.json_response = json_response;
        }
    };
    let direct = start(&fake, configure(true)).await;
    let through_rmcp = start(&fake, configure(false)).await;
    let http = reqwest::Client::new();
    let mut answered_directly = 0;
    for body in calls() {
        let mut seen = Vec::new();
        for server in [&direct, &through_rmcp] {
            let token = fake.token("frank", "mcp:read", &server.resource);
            let session = if stateless {
                None
            } else {
                Some(open_session(&http, server, &token).await)
            };
            let answer = post(&http, server, &token, session.as_deref(), &body).await;
            seen.push(answer);
        }
        let (a, b) = (&seen[0], &seen[1]);
        assert_eq!(a.status, b.status, "{body}: {} vs {}", a.text, b.text);
        assert_eq!(
            a.content_type, b.content_type,
            "{body}: {} vs {}",
            a.text, b.text
        );
        assert_eq!(
            normalized(a, &direct),
            normalized(b, &through_rmcp),
            "{body}"
        );
        // In session mode rmcp primes its SSE streams (`retry:`); a direct answer is
        // complete and not primed.
        if !stateless && a.status == 200 && !a.text.contains("retry:") {
            answered_directly += 1;
            assert!(b.text.contains("retry:"), "rmcp primes: {}", b.text);
        }
    }
    let counted = |server: &Server| {
        let http = http.clone();
        let url = server.metrics_url.clone();
        async move {
            counter_total(
                &metrics_text(&http, &url).await,
                "mcp_server_direct_tool_calls_total",
            )
        }
    };
    // hello_world ×3, auth_status, user_profile, protected_data, oauth_info.
    assert_eq!(counted(&direct).await, 7.0);
    assert_eq!(counted(&through_rmcp).await, 0.0);
    if !stateless {
        assert_eq!(answered_directly, 7);
    }
}

#[actix_web::test]
async fn direct_answers_are_rmcps_answers_in_session_mode() {
    compare(false, false).await;
}

#[actix_web::test]
async fn direct_answers_are_rmcps_answers_in_stateless_sse_mode() {
    compare(true, false).await;
}

#[actix_web::test]
async fn direct_answers_are_rmcps_answers_in_stateless_json_mode() {
    compare(true, true).await;
}

#[actix_web::test]
async fn sessions_used_only_through_direct_answers_stay_open() {
    let fake = FakeAs::start().await;
    let server = start(&fake, |s| s.transport.session_idle_secs = 2).await;
    let http = reqwest::Client::new();
    let token = fake.token("frank", "mcp:read", &server.resource);
    let list = r#"{"jsonrpc":"2.0","id":99,"method":"tools/list"}"#;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world"}}"#;

    // Control: an idle session is closed (after 2 s + the 1 s touch interval + 1 s).
    let idle = open_session(&http, &server, &token).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        post(&http, &server, &token, Some(&idle), list).await.status,
        200,
        "session_idle_secs is a lower bound"
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        post(&http, &server, &token, Some(&idle), list).await.status,
        404
    );

    // A session used only for direct answers for longer than that stays open.
    let busy = open_session(&http, &server, &token).await;
    for _ in 0..22 {
        let answer = post(&http, &server, &token, Some(&busy), call).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(!answer.text.contains("retry:"), "answered directly");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = post(&http, &server, &token, Some(&busy), list).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.contains("hello_world"));
}

#[actix_web::test]
async fn a_direct_answer_needs_a_live_session() {
    let fake = FakeAs::start().await;
    let server = start(&fake, |_| {}).await;
    let http = reqwest::Client::new();
    let token = fake.token("frank", "mcp:read", &server.resource);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world"}}"#;
    // No session: rmcp's 400, not a direct answer.
    let answer = post(&http, &server, &token, None, call).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    // A session closed with DELETE: 404.
    let session = open_session(&http, &server, &token).await;
    let deleted = http
        .delete(&server.url)
        .bearer_auth(&token)
        .header("Mcp-Session-Id", &session)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let answer = post(&http, &server, &token, Some(&session), call).await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    // Another subject's session: 403 before anything is answered.
    let session = open_session(&http, &server, &token).await;
    let mallory = fake.token("mallory", "mcp:read", &server.resource);
    let answer = post(&http, &server, &mallory, Some(&session), call).await;
    assert_eq!(answer.status, 403, "{}", answer.text);
}

/// HTTP/1.0 may come without a Host header; the DNS-rebinding check must not be
/// skipped for it, with or without direct answers.
#[actix_web::test]
async fn a_request_without_host_is_refused_on_both_paths() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = FakeAs::start().await;
    for direct in [true, false] {
        let server = start(&fake, |s| {
            s.transport.stateless = true;
            s.transport.direct_tool_calls = direct;
        })
        .await;
        let token = fake.token("frank", "mcp:read", &server.resource);
        let body =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world"}}"#;
        let request = format!(
            "POST /mcp HTTP/1.0\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let address = server
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"),
            "direct={direct}: {answer}"
        );
        assert!(!answer.contains("Hello"), "direct={direct}: {answer}");
    }
}
