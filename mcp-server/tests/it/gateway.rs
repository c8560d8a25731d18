//! Gateway mode over real HTTP: the reference "everything" MCP server (npm
//! `@modelcontextprotocol/server-everything`, installed by `npm ci` in e2e/) as a
//! stdio child behind mcp-server; the scope policy from `[policy]` on its tools,
//! prompts and resources; one child per session, gone with its session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use mcp_server::gateway::settings::CommandLine;
use mcp_server::policy::RuleSettings;
use serde_json::{json, Value};

use crate::mcp::{initialize_body, modern, rpc_response, spawn_with, sse_messages, TestServer};

/// The reference server's entry point (e2e/node_modules, from `npm ci`).
fn everything() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in e2e/ first",
        path.display()
    );
    path
}

fn rule(name: &str, scope: &str) -> RuleSettings {
    RuleSettings {
        name: name.into(),
        scope: scope.into(),
        arguments: vec![],
    }
}

/// A gateway in front of a stdio "everything" server whose children carry `marker`
/// in their environment (so that the test can find them).
async fn gateway(marker: &str) -> TestServer {
    let marker = marker.to_string();
    spawn_with(move |s, _| {
        s.upstream.command = Some(CommandLine::Argv(vec![
            "node".into(),
            everything().display().to_string(),
            "stdio".into(),
        ]));
        s.upstream.env.insert("GATEWAY_TEST_MARK".into(), marker);
        s.upstream.timeout_secs = 20;
        s.policy.default_scope = "mcp:read".into();
        s.policy.tools = Some(vec![
            rule("echo", ""),
            rule("get-env", "mcp:admin"),
            rule("toggle-*", "mcp:admin"),
        ]);
        s.policy.prompts = vec![rule("args-prompt", "mcp:admin")];
        s.policy.resources = vec![rule("demo://resource/static/document/arch*", "mcp:admin")];
    })
    .await
}

/// Processes whose environment carries `GATEWAY_TEST_MARK=<marker>`.
fn children(marker: &str) -> Vec<u32> {
    let needle = format!("GATEWAY_TEST_MARK={marker}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
            if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

async fn wait_for_children(marker: &str, count: usize) -> Vec<u32> {
    for _ in 0..100 {
        let found = children(marker);
        if found.len() == count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "expected {count} upstream processes, found {:?}",
        children(marker)
    );
}

fn names(list: &Value, key: &str, field: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}: {list}"))
        .iter()
        .map(|t| t[field].as_str().unwrap().to_string())
        .collect()
}

fn challenge(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_stdio_upstream_is_served_behind_the_scope_policy() {
    let marker = format!("policy-{}", std::process::id());
    let s = gateway(&marker).await;
    let reader = s.token("alice", "mcp:read");
    let (session, init) = s.open_session(Some(&reader)).await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "mcp-servers/everything",
        "{init}"
    );
    wait_for_children(&marker, 1).await;

    // tools/list shows what the caller may call: mcp:admin tools are hidden.
    let (status, _, list) = s
        .rpc(Some(&reader), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200, "{list}");
    let tools = names(&list, "tools", "name");
    assert!(tools.contains(&"echo".to_string()), "{tools:?}");
    assert!(tools.contains(&"get-sum".to_string()), "{tools:?}");
    assert!(!tools.contains(&"get-env".to_string()), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("toggle-")), "{tools:?}");

    let (status, _, echo) = s
        .call_tool(
            Some(&reader),
            &session,
            "echo",
            json!({"message": "through the gateway"}),
        )
        .await;
    assert_eq!(status, 200, "{echo}");
    assert!(echo.to_string().contains("through the gateway"), "{echo}");

    // An mcp:admin tool: 403 with the step-up challenge, as for the built-in tools.
    for tool in ["get-env", "toggle-simulated-logging"] {
        let (status, headers, body) = s.call_tool(Some(&reader), &session, tool, json!({})).await;
        assert_eq!(status, 403, "{tool}: {body}");
        assert_eq!(
            challenge(&headers),
            format!(
                "Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:read\", resource_metadata=\"{}\"",
                s.prm_url()
            )
        );
    }

    // A token without the default scope may only call the tool the policy opens.
    let basic = s.token("alice", "openid");
    let (status, headers, _) = s
        .call_tool(Some(&basic), &session, "get-sum", json!({"a": 1, "b": 2}))
        .await;
    assert_eq!(status, 403);
    assert!(challenge(&headers).contains("scope=\"mcp:read openid\""));
    let (status, _, body) = s
        .call_tool(Some(&basic), &session, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Prompts and resources follow their own rules.
    let (status, _, prompts) = s
        .rpc(Some(&reader), &session, 4, "prompts/list", json!({}))
        .await;
    assert_eq!(status, 200);
    let prompts = names(&prompts, "prompts", "name");
    assert!(
        prompts.contains(&"simple-prompt".to_string()),
        "{prompts:?}"
    );
    assert!(!prompts.contains(&"args-prompt".to_string()), "{prompts:?}");
    let (status, _, prompt) = s
        .rpc(
            Some(&reader),
            &session,
            5,
            "prompts/get",
            json!({"name": "simple-prompt"}),
        )
        .await;
    assert_eq!(status, 200, "{prompt}");
    assert!(prompt["result"]["messages"].is_array(), "{prompt}");
    let (status, _, _) = s
        .rpc(
            Some(&reader),
            &session,
            6,
            "prompts/get",
            json!({"name": "args-prompt", "arguments": {"city": "x"}}),
        )
        .await;
    assert_eq!(status, 403);

    let (status, _, resources) = s
        .rpc(Some(&reader), &session, 7, "resources/list", json!({}))
        .await;
    assert_eq!(status, 200);
    let uris = names(&resources, "resources", "uri");
    assert!(!uris.iter().any(|u| u.contains("/arch")), "{uris:?}");
    let features = "demo://resource/static/document/features.md";
    assert!(uris.contains(&features.to_string()), "{uris:?}");
    let (status, _, read) = s
        .rpc(
            Some(&reader),
            &session,
            8,
            "resources/read",
            json!({"uri": features}),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["result"]["contents"][0]["uri"], features, "{read}");
    let (status, _, _) = s
        .rpc(
            Some(&reader),
            &session,
            9,
            "resources/read",
            json!({"uri": "demo://resource/static/document/architecture.md"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, templates) = s
        .rpc(
            Some(&reader),
            &session,
            10,
            "resources/templates/list",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{templates}");
    assert!(
        templates["result"]["resourceTemplates"].is_array(),
        "{templates}"
    );
    let (status, _, completion) = s
        .rpc(
            Some(&reader),
            &session,
            11,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "E"}}),
        )
        .await;
    assert_eq!(status, 200, "{completion}");
    assert!(
        completion["result"]["completion"]["values"].is_array(),
        "{completion}"
    );

    // Progress notifications of the upstream reach the client with the client's token.
    let response = s
        .post(
            Some(&reader),
            Some(&session),
            &json!({"jsonrpc": "2.0", "id": 12, "method": "tools/call", "params": {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 1, "steps": 2},
                "_meta": {"progressToken": "client-token-7"}
            }}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = sse_messages(&response.text().await.unwrap());
    let progress: Vec<&Value> = events
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{events:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "client-token-7"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|m| m["id"] == 12 && m.get("result").is_some()),
        "{events:?}"
    );

    // The child's environment: the configured variables, not this server's settings.
    let admin = s.token("alice", "mcp:admin");
    let (status, _, env) = s
        .call_tool(Some(&admin), &session, "get-env", json!({}))
        .await;
    assert_eq!(status, 200, "{env}");
    let env = env.to_string();
    assert!(env.contains(&marker), "{env}");
    assert!(!env.contains("MCP__"), "{env}");
    assert!(
        !env.contains(&admin) && !env.contains("MCP_SUBJECT"),
        "{env}"
    );
}

#[tokio::test]
async fn one_child_per_session_gone_with_its_session() {
    let marker = format!("sessions-{}", std::process::id());
    let s = gateway(&marker).await;
    let token = s.token("bob", "mcp:read");
    let (first, _) = s.open_session(Some(&token)).await;
    let one = wait_for_children(&marker, 1).await;
    let (second, _) = s.open_session(Some(&token)).await;
    let two = wait_for_children(&marker, 2).await;
    assert!(one.iter().all(|p| two.contains(p)));

    // Another subject cannot use bob's session (and so not his child).
    let mallory = s.token("mallory", "mcp:read");
    let (status, _, _) = s
        .call_tool(Some(&mallory), &first, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 403);

    // DELETE ends the session and its child.
    let deleted = s
        .http
        .delete(s.mcp_url())
        .bearer_auth(&token)
        .header("Mcp-Session-Id", &first)
        .header("MCP-Protocol-Version", crate::mcp::LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let left = wait_for_children(&marker, 1).await;
    assert!(!left.contains(&one[0]), "the first session's child is gone");
    let (status, _, body) = s
        .call_tool(
            Some(&token),
            &second,
            "echo",
            json!({"message": "still here"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A crashed child ends its session cleanly; the next session starts a new child.
    std::process::Command::new("kill")
        .args(["-9", &left[0].to_string()])
        .status()
        .unwrap();
    wait_for_children(&marker, 0).await;
    let mut ended = false;
    for _ in 0..50 {
        let (status, _, body) = s
            .call_tool(Some(&token), &second, "echo", json!({"message": "x"}))
            .await;
        if status == 404 {
            ended = true;
            break;
        }
        // Until the gateway noticed: a JSON-RPC error, never a hang or a 5xx.
        assert_eq!(status, 200, "{body}");
        assert!(body.get("error").is_some(), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the session of a crashed child ends (404)");
    let (third, _) = s.open_session(Some(&token)).await;
    wait_for_children(&marker, 1).await;
    let (status, _, body) = s
        .call_tool(Some(&token), &third, "echo", json!({"message": "again"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // /readyz reports the upstream.
    let ready: Value = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["upstream"]["reachable"], true, "{ready}");
    assert_eq!(ready["upstream"]["open_sessions"], 1, "{ready}");
}

#[tokio::test]
async fn an_unreachable_http_upstream_is_a_clear_error_and_not_ready() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = spawn_with(move |s, _| {
        s.upstream.url = Some(format!("http://127.0.0.1:{port}/mcp"));
        s.upstream.timeout_secs = 3;
    })
    .await;
    let token = s.token("carol", "mcp:read");
    let started = std::time::Instant::now();
    let response = s
        .post(Some(&token), None, &initialize_body())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = rpc_response(response).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status, 200, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream"),
        "{body}"
    );
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["upstream"]["reachable"], false, "{ready}");
    assert_eq!(ready["upstream"]["transport"], "streamable-http", "{ready}");
    // Public answers name no internal address (the log does).
    assert!(!ready.to_string().contains("127.0.0.1"), "{ready}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn children_are_bounded_per_subject_and_in_total() {
    let marker = format!("bounds-{}", std::process::id());
    let m = marker.clone();
    let s = spawn_with(move |s, _| {
        s.upstream.command = Some(CommandLine::Argv(vec![
            "node".into(),
            everything().display().to_string(),
            "stdio".into(),
        ]));
        s.upstream.env.insert("GATEWAY_TEST_MARK".into(), m);
        s.upstream.max_sessions = 2;
        s.transport.max_sessions_per_subject = 1;
    })
    .await;
    let alice = s.token("alice", "mcp:read");
    let (first, _) = s.open_session(Some(&alice)).await;
    let before = wait_for_children(&marker, 1).await;
    // A second session of the same subject evicts the first, and its child.
    let (second, _) = s.open_session(Some(&alice)).await;
    let mut replaced = false;
    for _ in 0..100 {
        let now = children(&marker);
        if now.len() == 1 && now[0] != before[0] {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        replaced,
        "the evicted session's child is gone: {:?}",
        children(&marker)
    );
    let (status, _, _) = s
        .call_tool(Some(&alice), &first, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = s
        .call_tool(Some(&alice), &second, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 200);

    let bob = s.token("bob", "mcp:read");
    s.open_session(Some(&bob)).await;
    wait_for_children(&marker, 2).await;
    // upstream.max_sessions: a third connection is refused with a JSON-RPC error.
    let carol = s.token("carol", "mcp:read");
    let response = s
        .post(Some(&carol), None, &initialize_body())
        .send()
        .await
        .unwrap();
    let body = rpc_response(response).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("too many upstream sessions"),
        "{body}"
    );
    assert_eq!(children(&marker).len(), 2);
}

#[tokio::test]
async fn a_slow_upstream_gets_a_json_rpc_error_within_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let s = spawn_with(move |s, _| {
        s.upstream.url = Some(format!("http://127.0.0.1:{port}/mcp"));
        s.upstream.timeout_secs = 2;
    })
    .await;
    let token = s.token("dan", "mcp:read");
    let started = std::time::Instant::now();
    let response = s
        .post(Some(&token), None, &initialize_body())
        .send()
        .await
        .unwrap();
    let body = rpc_response(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not initialize within 2 s"),
        "{body}"
    );
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn an_idle_session_ends_with_its_child() {
    let marker = format!("idle-{}", std::process::id());
    let m = marker.clone();
    let s = spawn_with(move |s, _| {
        s.upstream.command = Some(CommandLine::Argv(vec![
            "node".into(),
            everything().display().to_string(),
            "stdio".into(),
        ]));
        s.upstream.env.insert("GATEWAY_TEST_MARK".into(), m);
        s.transport.session_idle_secs = 1;
    })
    .await;
    let token = s.token("erin", "mcp:read");
    let (session, _) = s.open_session(Some(&token)).await;
    wait_for_children(&marker, 1).await;
    // rmcp closes a session idle for session_idle_secs (within 1.25x + 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_for_children(&marker, 0).await;
    let (status, _, _) = s
        .call_tool(Some(&token), &session, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn stateless_era_requests_each_get_their_own_upstream_connection() {
    let marker = format!("modern-{}", std::process::id());
    let s = gateway(&marker).await;
    let token = s.token("fay", "mcp:read");

    let r = modern(&s, &token, "server/discover", None, json!({})).await;
    assert_eq!(r.status(), 200);
    let body = rpc_response(r).await;
    assert!(
        body["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(crate::mcp::MODERN_VERSION)),
        "{body}"
    );

    let r = modern(&s, &token, "tools/list", None, json!({})).await;
    assert_eq!(r.status(), 200);
    let list = rpc_response(r).await;
    let tools = names(&list, "tools", "name");
    assert!(tools.contains(&"echo".to_string()), "{tools:?}");
    assert!(!tools.contains(&"get-env".to_string()), "{tools:?}");

    let r = modern(
        &s,
        &token,
        "tools/call",
        Some("echo"),
        json!({"name": "echo", "arguments": {"message": "stateless"}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = rpc_response(r).await;
    assert!(body.to_string().contains("Echo: stateless"), "{body}");

    let r = modern(
        &s,
        &token,
        "tools/call",
        Some("get-env"),
        json!({"name": "get-env", "arguments": {}}),
    )
    .await;
    assert_eq!(r.status(), 403);
    // Each request's child ended with it.
    wait_for_children(&marker, 0).await;
}
