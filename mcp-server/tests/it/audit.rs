//! Regression tests for defects found in the audit of the MCP endpoint: hidden tools
//! must not start OAuth flows, JSON that is not JSON-RPC is a 400 (never 415/500),
//! invalid tokens are challenged the same way on every method, odd `Host` headers are
//! refused, and startup failures tell the operator what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::mcp::{initialize_body, spawn_with, test_settings, LEGACY_VERSION, MODERN_VERSION};
use crate::support::FakeAs;

fn www_authenticate(headers: &HeaderMap) -> Option<String> {
    headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn a_tool_that_is_not_served_never_triggers_a_challenge() {
    // Test servers have no admin API, so `admin_panel` is not offered.
    let s = spawn_with(|settings, _| settings.auth.allow_anonymous = true).await;
    let anonymous = s.initialize(None).await;
    let (status, headers, body) = s
        .call_tool(
            None,
            &anonymous,
            "admin_panel",
            json!({"action": "user_stats"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(www_authenticate(&headers), None);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found"));

    // A reader is not asked to step up to mcp:admin for a tool that does not exist.
    let reader = s.token("rita", "mcp:read");
    let session = s.initialize(Some(&reader)).await;
    let (status, headers, body) = s
        .call_tool(
            Some(&reader),
            &session,
            "admin_panel",
            json!({"action": "user_stats"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(www_authenticate(&headers), None);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found"));

    // Not even for an admin: the tool is simply not there.
    let admin = s.token("ada", "mcp:admin");
    let session = s.initialize(Some(&admin)).await;
    let (status, _, body) = s
        .call_tool(
            Some(&admin),
            &session,
            "admin_panel",
            json!({"action": "user_stats"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found"));

    // Served tools are still challenged.
    let (status, headers, _) = s
        .call_tool(
            None,
            &anonymous,
            "protected_data",
            json!({"category": "personal"}),
        )
        .await;
    assert_eq!(status, 401);
    assert!(www_authenticate(&headers).is_some());
}

#[tokio::test]
async fn json_that_is_not_a_json_rpc_message_is_a_400() {
    let s = spawn_with(|_, _| {}).await;
    let token = s.token("jon", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    for body in [
        json!(42),
        json!(null),
        json!("text"),
        json!({}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}),
    ] {
        let r = s
            .post(Some(&token), Some(&session), &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["jsonrpc"], "2.0", "{body}");
        assert_eq!(answer["error"]["code"], -32600, "{body}: {answer}");
    }

    // tools/call with arguments that cannot be right: Invalid params, with the id.
    for (params, id) in [
        (
            json!({"name": "hello_world", "arguments": [1, 2]}),
            json!(7),
        ),
        (
            json!({"name": "hello_world", "arguments": "x"}),
            json!("req-8"),
        ),
        (json!("hello_world"), json!(9)),
    ] {
        let r = s
            .post(
                Some(&token),
                Some(&session),
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{params}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32602, "{params}: {answer}");
        assert_eq!(answer["id"], id, "{answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools/call"));
    }
    // Null arguments are the same as none.
    let (status, _, body) = s
        .rpc(
            Some(&token),
            &session,
            10,
            "tools/call",
            json!({"name": "hello_world", "arguments": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["isError"], false, "{body}");
}

#[tokio::test]
async fn invalid_tokens_are_challenged_on_every_method_without_echoing_the_token() {
    let s = spawn_with(|_, _| {}).await;
    let mut claims = s.fake.claims("ivy", "mcp:read", &s.resource);
    claims["aud"] = json!("http://127.0.0.1:1/somewhere-else");
    let foreign = s.fake.mint(claims);
    let garbage = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".to_string();
    let prm = format!("{}/.well-known/oauth-protected-resource/mcp", s.base);
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    }});
    for token in [&foreign, &garbage] {
        let requests = [
            s.post(Some(token), None, &initialize_body()),
            s.post(Some(token), None, &discover)
                .header("MCP-Protocol-Version", MODERN_VERSION)
                .header("Mcp-Method", "server/discover"),
            s.http
                .get(s.mcp_url())
                .bearer_auth(token)
                .header("Accept", "text/event-stream")
                .header("Mcp-Session-Id", "x")
                .header("MCP-Protocol-Version", LEGACY_VERSION),
            s.http
                .delete(s.mcp_url())
                .bearer_auth(token)
                .header("Mcp-Session-Id", "x"),
        ];
        for request in requests {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401);
            let challenge = www_authenticate(r.headers()).unwrap();
            let prefix = format!(
                "Bearer resource_metadata=\"{prm}\", scope=\"mcp:read\", error=\"invalid_token\", error_description=\""
            );
            assert!(challenge.starts_with(&prefix), "{challenge}");
            let description = &challenge[prefix.len()..challenge.len() - 1];
            assert!(!description.contains('"'), "{challenge}");
            for part in token.split('.') {
                assert!(!challenge.contains(part), "token material in {challenge}");
            }
            let body = r.text().await.unwrap();
            for part in token.split('.') {
                assert!(!body.contains(part), "token material in {body}");
            }
        }
    }
}

#[tokio::test]
async fn odd_host_headers_are_refused_not_crashed_on() {
    let s = spawn_with(|_, _| {}).await;
    let token = s.token("hal", "mcp:read");
    for host in [
        "127.0.0.1:99999",
        "127.0.0.1:",
        "127.0.0.1:80:80",
        "[::1",
        "user@127.0.0.1",
        "127.0.0.1.evil.example.com",
        "evil.example.com",
    ] {
        let r = s
            .post(Some(&token), None, &initialize_body())
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 403 || r.status() == 400,
            "{host}: {}",
            r.status()
        );
    }
    // Allowed: loopback with another port, case-insensitive names, IPv6 loopback.
    for host in ["LOCALHOST:1234", "[::1]:80"] {
        let r = s
            .post(Some(&token), None, &initialize_body())
            .header("Host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn an_unreachable_as_is_explained_with_what_to_do() {
    let fake = FakeAs::start().await;
    let mut settings = test_settings(&fake);
    drop(fake);
    // Nothing listens there any more.
    settings.auth.issuer = "http://127.0.0.1:9".into();
    let err = match mcp_server::Application::build(settings).await {
        Ok(_) => panic!("started without an AS"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("http://127.0.0.1:9"), "{err}");
    assert!(err.contains("auth.startup_retries"), "{err}");
    assert!(err.contains("auth.jwks_uri"), "{err}");
}

/// The whole legacy sequence (reference request sequence steps 7-9, then DELETE) for
/// every session-era protocol version. 2025-03-26 clients send no
/// `MCP-Protocol-Version` header after initialize.
#[tokio::test]
async fn the_legacy_sequence_works_for_every_session_era_version() {
    let s = spawn_with(|_, _| {}).await;
    let token = s.token("leo", "mcp:read");
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let with_version = |r: reqwest::RequestBuilder| {
            if version == "2025-03-26" {
                r
            } else {
                r.header("MCP-Protocol-Version", version)
            }
        };
        let post = |session: Option<&str>, body: Value| {
            let mut r = s
                .http
                .post(s.mcp_url())
                .bearer_auth(&token)
                .header("Accept", "application/json, text/event-stream")
                .json(&body);
            if let Some(id) = session {
                r = with_version(r.header("Mcp-Session-Id", id));
            }
            r
        };
        let init = post(
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "it", "version": "1"}
            }}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(init.status(), 200, "{version}");
        let session = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let answer = crate::mcp::rpc_response(init).await;
        assert_eq!(answer["result"]["protocolVersion"], version, "{answer}");

        let r = post(
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 202, "{version}");

        let stream = with_version(
            s.http
                .get(s.mcp_url())
                .bearer_auth(&token)
                .header("Accept", "text/event-stream")
                .header("Mcp-Session-Id", &session),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(stream.status(), 200, "{version}");
        assert!(stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        drop(stream);

        let r = post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{version}");
        let list = crate::mcp::rpc_response(r).await;
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"user_profile"), "{version}: {names:?}");

        let r = post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                   "params": {"name": "user_profile", "arguments": {}}}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{version}");
        let call = crate::mcp::rpc_response(r).await;
        assert_eq!(call["result"]["structuredContent"]["id"], "leo", "{call}");

        let r = with_version(
            s.http
                .delete(s.mcp_url())
                .bearer_auth(&token)
                .header("Mcp-Session-Id", &session),
        )
        .send()
        .await
        .unwrap();
        assert!(r.status().is_success(), "{version}: {}", r.status());
        let r = post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 404, "{version}");
    }
}

/// 2026-07-28 requests: a present but different `Mcp-Name` is refused, and the scope
/// policy (403 step-up) applies to stateless calls as to session calls.
#[tokio::test]
async fn stateless_calls_check_mcp_name_and_step_up() {
    let s = spawn_with(|_, _| {}).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let call = |token: &str, header_name: &str, body_name: &str| {
        s.http
            .post(s.mcp_url())
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", MODERN_VERSION)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", header_name)
            .json(
                &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                    "name": body_name, "arguments": {}, "_meta": meta
                }}),
            )
    };
    let reader = s.token("max", "mcp:read");
    let r = call(&reader, "user_profile", "user_profile")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = crate::mcp::rpc_response(r).await;
    assert_eq!(
        answer["result"]["structuredContent"]["id"], "max",
        "{answer}"
    );

    let r = call(&reader, "user_profile", "hello_world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Mcp-Name"));

    let basic = s.token("max", "openid");
    let r = call(&basic, "user_profile", "user_profile")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        www_authenticate(r.headers()).unwrap(),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp:read openid\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            s.base
        )
    );
}

/// Introspection with credentials the AS refuses: every request is a 503 (never a 401
/// blaming the caller's token), and `/readyz` stops claiming readiness.
#[tokio::test]
async fn refused_introspection_credentials_make_the_server_not_ready() {
    let capture = captured_log();
    let s = spawn_with(|settings, _| {
        settings.auth.mode = mcp_server::auth::VerifierMode::Introspection;
        settings.auth.client_id = crate::support::RS_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new("not-the-secret");
    })
    .await;
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "nothing known to be wrong yet");
    let token = s.token("una", "mcp:read");
    let r = s
        .post(Some(&token), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(www_authenticate(r.headers()), None);
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["verification_mode"], "introspection");
    // The operator learns why (the client only sees "temporarily unavailable").
    let log = capture.0.lock().unwrap().clone();
    assert!(
        log.contains("token verification unavailable (answered 503): introspection endpoint answered HTTP 401"),
        "no reason logged"
    );
}

/// A token inside the clock-skew leeway (expired a few seconds ago) is accepted for a
/// request, so the answer must arrive in full: only the long-lived GET stream is tied
/// to the token's lifetime, and opening one with an already expired token is a 401
/// (the client refreshes instead of reconnecting in a loop).
#[tokio::test]
async fn answers_are_complete_for_tokens_inside_the_leeway() {
    let s = spawn_with(|_, _| {}).await;
    let fresh = s.token("ned", "mcp:read");
    let session = s.initialize(Some(&fresh)).await;
    let mut claims = s.fake.claims("ned", "mcp:read", &s.resource);
    claims["exp"] = json!(crate::support::now() - 10);
    let skewed = s.fake.mint(claims);

    let (status, _, body) = s
        .call_tool(Some(&skewed), &session, "user_profile", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["structuredContent"]["id"], "ned", "{body}");

    let r = s
        .http
        .get(s.mcp_url())
        .bearer_auth(&skewed)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = www_authenticate(r.headers()).unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("expired"),
        "{challenge}"
    );
}

/// The scope policy reads the same values rmcp dispatches on, however the JSON is
/// spelled: escapes, duplicate keys and the like never let a call skip its check.
#[tokio::test]
async fn json_spelling_tricks_do_not_sidestep_the_scope_policy() {
    let s = spawn_with(|_, _| {}).await;
    let basic = s.token("oz", "openid");
    let reader = s.token("oz", "mcp:read");
    let session = s.initialize(Some(&basic)).await;
    let send = |token: &str, body: &str| {
        s.http
            .post(s.mcp_url())
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .header("Mcp-Session-Id", &session)
            .header("MCP-Protocol-Version", LEGACY_VERSION)
            .body(body.to_string())
            .send()
    };
    let cases = [
        (
            &basic,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"user_\u0070rofile","arguments":{}}}"#,
        ),
        (
            &basic,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"user_profile","arguments":{}}}"#,
        ),
        (
            &basic,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","name":"user_profile","arguments":{}}}"#,
        ),
        (
            &reader,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"adm\u0069n"}}}"#,
        ),
        (
            &reader,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"personal","category":"admin"}}}"#,
        ),
        (
            &reader,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin"}},"params":{"name":"protected_data","arguments":{"category":"personal"}}}"#,
        ),
    ];
    for (token, body) in cases {
        let r = send(token, body).await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        // Refused by the policy (403), or not understood at all (400, a JSON-RPC
        // error): never a tool result.
        assert!(
            status == 403 || status == 400 || !text.contains("\"result\""),
            "{body}: {status} {text}"
        );
        assert!(!text.contains("\"records\""), "{body}: {text}");
        assert!(!text.contains("structuredContent"), "{body}: {text}");
    }
    // The plain spellings for comparison: allowed, and refused with a step-up.
    let r = send(
        &reader,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"personal"}}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"records\""));
    let r = send(
        &reader,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin"}}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
}

/// Captures every log record of this test binary at debug level (set once; other
/// tests log into it too, which does no harm).
struct CapturedLog(std::sync::Mutex<String>);

impl log::Log for CapturedLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Debug
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let mut text = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Bounded: this is a test helper, not a log store.
            if text.len() < 64 * 1024 * 1024 {
                text.push_str(&format!(
                    "{} {} {}\n",
                    record.level(),
                    record.target(),
                    record.args()
                ));
            }
        }
    }
    fn flush(&self) {}
}

fn captured_log() -> &'static CapturedLog {
    static CAPTURE: std::sync::OnceLock<&'static CapturedLog> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static CapturedLog =
            Box::leak(Box::new(CapturedLog(std::sync::Mutex::new(String::new()))));
        log::set_logger(capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Debug);
        capture
    })
}

/// `RUST_LOG=debug` of a full session (and of refused tokens) holds no token material:
/// not the token, not its payload, not its signature.
#[tokio::test]
async fn debug_logs_of_a_full_flow_contain_no_token() {
    let capture = captured_log();
    let s = spawn_with(|_, _| {}).await;
    let token = s.token("lou", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    let (status, _, _) = s
        .rpc(Some(&token), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
    for tool in ["auth_status", "hello_world", "user_profile"] {
        let (status, _, _) = s.call_tool(Some(&token), &session, tool, json!({})).await;
        assert_eq!(status, 200);
    }
    let stream = s
        .http
        .get(s.mcp_url())
        .bearer_auth(&token)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    let mut claims = s.fake.claims("lou", "mcp:read", &s.resource);
    claims["aud"] = json!("http://127.0.0.1:1/elsewhere");
    let foreign = s.fake.mint(claims);
    let garbage = "eyJhbGciOiJFUzI1NiJ9.eyJsb2ctbWFya2VyIjoxfQ.bG9nLW1hcmtlci1zaWc".to_string();
    for bad in [&foreign, &garbage] {
        let r = s
            .post(
                Some(bad),
                Some(&session),
                &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = s
        .http
        .delete(s.mcp_url())
        .bearer_auth(&token)
        .header("Mcp-Session-Id", &session)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let text = capture.0.lock().unwrap().clone();
    // The capture works: the access log and rmcp's debug output are in it.
    assert!(text.contains("\"POST /mcp\" 200"), "no access log captured");
    assert!(text.contains("DEBUG rmcp"), "no rmcp debug output captured");
    for t in [&token, &foreign, &garbage] {
        for part in t.split('.').skip(1) {
            assert!(!text.contains(part), "token material in the logs: {part}");
        }
    }
}

/// Anonymous mode: a client without a token cannot pile up sessions (there is no
/// subject to bound them by); the oldest unclaimed one is closed.
#[tokio::test]
async fn anonymous_sessions_are_bounded() {
    let s = spawn_with(|settings, _| {
        settings.auth.allow_anonymous = true;
        settings.transport.max_anonymous_sessions = 2;
    })
    .await;
    let first = s.initialize(None).await;
    let second = s.initialize(None).await;
    let third = s.initialize(None).await;
    let (status, _, _) = s.rpc(None, &first, 2, "tools/list", json!({})).await;
    assert_eq!(status, 404);
    for session in [&second, &third] {
        let (status, _, body) = s.rpc(None, session, 2, "tools/list", json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    // Signed-in sessions are bounded per subject instead, and do not count here.
    let token = s.token("amy", "mcp:read");
    let mine = s.initialize(Some(&token)).await;
    let _fourth = s.initialize(None).await;
    let (status, _, _) = s.rpc(Some(&token), &mine, 2, "tools/list", json!({})).await;
    assert_eq!(status, 200);
}

/// Transport-level mistakes get a 4xx with a JSON-RPC error body, never a 500.
#[tokio::test]
async fn transport_mistakes_are_4xx_json_rpc_errors() {
    let s = spawn_with(|_, _| {}).await;
    let token = s.token("tia", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let base = || {
        s.http
            .post(s.mcp_url())
            .bearer_auth(&token)
            .header("MCP-Protocol-Version", LEGACY_VERSION)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "text/plain body",
            base()
                .header("Accept", "application/json, text/event-stream")
                .header("Content-Type", "text/plain")
                .header("Mcp-Session-Id", &session)
                .body(list.to_string()),
            415,
        ),
        (
            "no Accept",
            base()
                .header("Content-Type", "application/json")
                .header("Mcp-Session-Id", &session)
                .body(list.to_string()),
            406,
        ),
        (
            "Accept without text/event-stream",
            base()
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .header("Mcp-Session-Id", &session)
                .body(list.to_string()),
            406,
        ),
        (
            "garbage session id",
            base()
                .header("Accept", "application/json, text/event-stream")
                .header("Mcp-Session-Id", "../../etc/passwd;%00<script>")
                .json(&list),
            404,
        ),
        (
            "non-UTF-8 session id",
            base()
                .header("Accept", "application/json, text/event-stream")
                .header(
                    "Mcp-Session-Id",
                    reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
                )
                .json(&list),
            400,
        ),
        (
            "missing session id",
            base()
                .header("Accept", "application/json, text/event-stream")
                .json(&list),
            400,
        ),
        (
            "unsupported version on initialize",
            s.http
                .post(s.mcp_url())
                .bearer_auth(&token)
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", "1999-01-01")
                .json(&initialize_body()),
            400,
        ),
        (
            "PUT",
            s.http
                .put(s.mcp_url())
                .bearer_auth(&token)
                .header("Mcp-Session-Id", &session),
            405,
        ),
    ];
    for (what, request, expected) in cases {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
        assert!(body["error"]["code"].is_i64(), "{what}: {body}");
        assert!(body["error"]["message"].is_string(), "{what}: {body}");
    }
}
