//! The MCP endpoint over real HTTP: PRM, challenges, scope policy, sessions, both
//! protocol eras, transport security, limits. Tokens come from `support::FakeAs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mcp_server::settings::Settings;
use mcp_server::Application;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::support::{now, FakeAs};

pub const LEGACY_VERSION: &str = "2025-06-18";
pub const MODERN_VERSION: &str = "2026-07-28";

pub struct TestServer {
    pub fake: FakeAs,
    pub base: String,
    /// `http://<metrics listener>` (`server.metrics_listen`).
    pub metrics_base: String,
    pub resource: String,
    pub http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Settings for a server on 127.0.0.1:0 trusting `fake`.
pub fn test_settings(fake: &FakeAs) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".into();
    s.server.metrics_listen = "127.0.0.1:0".into();
    s.server.resource = "http://127.0.0.1:0/mcp".into();
    s.server.workers = 1;
    s.auth.issuer = fake.issuer();
    s.admin_api.enabled = Some(false);
    s
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings, &FakeAs)) -> TestServer {
    let fake = FakeAs::start().await;
    let mut settings = test_settings(&fake);
    tweak(&mut settings, &fake);
    let app = Application::build(settings)
        .await
        .expect("build mcp-server");
    let base = format!("http://127.0.0.1:{}", app.port());
    let metrics_base = format!("http://{}", app.metrics_addr().expect("a metrics listener"));
    let resource = app.resource().to_string();
    let handle = app.handle();
    tokio::spawn(app.server());
    TestServer {
        fake,
        base,
        metrics_base,
        resource,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        handle,
    }
}

pub async fn spawn() -> TestServer {
    spawn_with(|_, _| {}).await
}

/// The Prometheus exposition at `url`.
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The sum of every series of counter `name` in a Prometheus exposition.
pub fn counter_total(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix) || l.split(' ').next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every `data:` payload of an SSE body that parses as JSON.
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            let data = data.join("\n");
            if data.trim().is_empty() {
                None
            } else {
                serde_json::from_str(&data).ok()
            }
        })
        .collect()
}

/// The JSON-RPC response in a JSON or SSE answer.
pub async fn rpc_response(response: reqwest::Response) -> Value {
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    if is_sse {
        sse_messages(&text)
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in SSE body: {text}"))
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }
}

impl TestServer {
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn prm_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/mcp", self.base)
    }

    pub fn token(&self, sub: &str, scope: &str) -> String {
        self.fake.token(sub, scope, &self.resource)
    }

    /// A POST to the MCP endpoint with the headers a legacy client sends.
    pub fn post(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(self.mcp_url())
            .header("Accept", "application/json, text/event-stream")
            .json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = session {
            r = r
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", LEGACY_VERSION);
        }
        r
    }

    /// `initialize` + `notifications/initialized`; returns the session id.
    pub async fn initialize(&self, token: Option<&str>) -> String {
        let (session, init) = self.open_session(token).await;
        assert_eq!(init["result"]["serverInfo"]["name"], "mcp-server", "{init}");
        session
    }

    /// `initialize` + `notifications/initialized` with any server behind (a gateway's
    /// upstream names itself); returns the session id and the `initialize` answer.
    pub async fn open_session(&self, token: Option<&str>) -> (String, Value) {
        let response = self
            .post(token, None, &initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let session = response
            .headers()
            .get("mcp-session-id")
            .expect("session id")
            .to_str()
            .unwrap()
            .to_string();
        let init = rpc_response(response).await;
        let notified = self
            .post(
                token,
                Some(&session),
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(notified.status(), 202);
        (session, init)
    }

    /// The metrics listener's exposition.
    pub async fn metrics(&self) -> String {
        metrics_text(&self.http, &format!("{}/metrics", self.metrics_base)).await
    }

    pub async fn rpc(
        &self,
        token: Option<&str>,
        session: &str,
        id: i64,
        method: &str,
        params: Value,
    ) -> (reqwest::StatusCode, HeaderMap, Value) {
        let response = self
            .post(
                token,
                Some(session),
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = if status.is_success() {
            rpc_response(response).await
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        (status, headers, body)
    }

    pub async fn tool_names(&self, token: Option<&str>) -> Vec<String> {
        let session = self.initialize(token).await;
        let (status, _, body) = self.rpc(token, &session, 2, "tools/list", json!({})).await;
        assert_eq!(status, 200, "{body}");
        let mut names: Vec<String> = body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    pub async fn call_tool(
        &self,
        token: Option<&str>,
        session: &str,
        name: &str,
        arguments: Value,
    ) -> (reqwest::StatusCode, HeaderMap, Value) {
        self.rpc(
            token,
            session,
            3,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
        .await
    }

    /// The `WWW-Authenticate` challenge the server must send with a 401.
    pub fn challenge(&self) -> String {
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"mcp:read\"",
            self.prm_url()
        )
    }
}

pub fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "it", "version": "1"}
        }
    })
}

fn www_authenticate(headers: &HeaderMap) -> String {
    headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The text of the first content block of a tool result.
fn result_text(body: &Value) -> String {
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Protected-resource metadata
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn prm_is_served_on_both_paths_with_cors_and_no_auth() {
    let s = spawn().await;
    let expected = json!({
        "resource": s.resource,
        "authorization_servers": [s.fake.issuer()],
        "scopes_supported": ["mcp:read"],
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP OAuth demo server",
    });
    for url in [
        s.prm_url(),
        format!("{}/.well-known/oauth-protected-resource", s.base),
    ] {
        let r = s
            .http
            .get(&url)
            .header("Origin", "https://client.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://client.example"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, expected, "{url}");
    }
    assert_eq!(s.resource, format!("{}/mcp", s.base));

    // Preflight from any origin, without auth.
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.prm_url())
        .header("Origin", "https://client.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://client.example"
    );

    // Unknown well-known documents and paths: clean JSON 404s.
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/other",
        "/nope",
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}");
    }
}

// ---------------------------------------------------------------------------------------
// 401 challenges
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_without_a_token_get_the_exact_401_challenge() {
    let s = spawn().await;
    let challenge = s.challenge();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read\"",
            s.base
        )
    );
    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}});
    let requests = [
        s.post(None, None, &initialize_body()),
        s.post(None, None, &discover),
        s.http
            .get(s.mcp_url())
            .header("Accept", "text/event-stream"),
        s.http.delete(s.mcp_url()).header("Mcp-Session-Id", "x"),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(www_authenticate(r.headers()), challenge);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0");
        assert!(body["error"]["message"].as_str().is_some());
    }
    // Another auth scheme counts as "no token" (RFC 6750 §3.1).
    let r = s
        .http
        .post(s.mcp_url())
        .basic_auth("u", Some("p"))
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(www_authenticate(r.headers()), challenge);
}

#[tokio::test]
async fn cors_on_the_mcp_endpoint_exposes_the_challenge_and_preflight_needs_no_auth() {
    let s = spawn().await;
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.mcp_url())
        .header("Origin", "http://localhost:6274")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type, mcp-protocol-version, mcp-session-id",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let allowed = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }

    let r = s
        .post(None, None, &initialize_body())
        .header("Origin", "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:6274"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["www-authenticate", "mcp-session-id", "mcp-protocol-version"] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }

    // A plain OPTIONS (no preflight headers) is answered without auth too.
    let plain = s
        .http
        .request(reqwest::Method::OPTIONS, s.mcp_url())
        .send()
        .await
        .unwrap();
    assert!(plain.status().is_success());
}

#[tokio::test]
async fn bad_tokens_get_401_invalid_token_never_500() {
    let s = spawn().await;
    let resource = s.resource.clone();
    let mut expired = s.fake.claims("alice", "mcp:read", &resource);
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let mut wrong_aud = s.fake.claims("alice", "mcp:read", &resource);
    wrong_aud["aud"] = json!("http://127.0.0.1:1/other");
    let mut wrong_iss = s.fake.claims("alice", "mcp:read", &resource);
    wrong_iss["iss"] = json!("http://evil.example.com");
    let good = s.token("alice", "mcp:read");
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
        let mut claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
                .unwrap(),
        )
        .unwrap();
        claims["scope"] = json!("mcp:read mcp:admin");
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&claims).unwrap(),
        );
        parts.join(".")
    };
    let cases = [
        ("garbage", "not-a-jwt".to_string()),
        ("expired", s.fake.mint(expired)),
        ("wrong audience", s.fake.mint(wrong_aud)),
        ("wrong issuer", s.fake.mint(wrong_iss)),
        ("tampered", tampered),
        (
            "alg none",
            s.fake
                .unsigned(s.fake.claims("alice", "mcp:read", &resource)),
        ),
    ];
    let prefix = format!(
        "{}, error=\"invalid_token\", error_description=\"",
        s.challenge()
    );
    for (what, token) in cases {
        let r = s
            .post(Some(&token), None, &initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        let challenge = www_authenticate(r.headers());
        assert!(challenge.starts_with(&prefix), "{what}: {challenge}");
        assert!(challenge.ends_with('"'), "{what}: {challenge}");
    }
    // The exact header for one well-known case.
    let mut expired = s.fake.claims("bob", "mcp:read", &resource);
    expired["exp"] = json!(now() - 3600);
    let r = s
        .post(Some(&s.fake.mint(expired)), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(
        www_authenticate(r.headers()),
        format!(
            "{}, error=\"invalid_token\", error_description=\"token has expired\"",
            s.challenge()
        )
    );
    // `Bearer` with nothing usable after it.
    let r = s
        .http
        .post(s.mcp_url())
        .header("Authorization", "Bearer a b")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(r.headers()).contains("error=\"invalid_token\""));
}

/// RFC 9068 §4: a JWT access token says `typ: at+jwt`. A correctly signed token of the
/// right issuer and audience without it (an ID token, or any other JWT) is refused,
/// unless the deployment switches the check off for a provider that never sets it.
#[tokio::test]
async fn tokens_without_the_access_token_typ_are_refused_unless_switched_off() {
    fn header(typ: Option<&str>, kid: String) -> jsonwebtoken::Header {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(kid);
        h.typ = typ.map(str::to_string);
        h
    }
    let strict = spawn().await;
    let claims = strict.fake.claims("alice", "mcp:read", &strict.resource);
    for typ in [Some("JWT"), None] {
        let token = strict
            .fake
            .mint_with_header(header(typ, strict.fake.kid()), claims.clone());
        let r = strict
            .post(Some(&token), None, &initialize_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "typ {typ:?}");
        assert_eq!(
            www_authenticate(r.headers()),
            format!(
                "{}, error=\"invalid_token\", error_description=\"token has the wrong type\"",
                strict.challenge()
            ),
            "typ {typ:?}"
        );
    }
    for typ in ["at+jwt", "application/AT+JWT"] {
        let token = strict
            .fake
            .mint_with_header(header(Some(typ), strict.fake.kid()), claims.clone());
        strict.initialize(Some(&token)).await;
    }

    let relaxed = spawn_with(|s, _| s.auth.require_at_jwt_typ = false).await;
    let claims = relaxed.fake.claims("alice", "mcp:read", &relaxed.resource);
    for typ in [Some("JWT"), None] {
        let token = relaxed
            .fake
            .mint_with_header(header(typ, relaxed.fake.kid()), claims.clone());
        relaxed.initialize(Some(&token)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scope policy
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tools_list_shows_only_what_the_caller_may_call() {
    let s = spawn().await;
    let basic = s.token("carol", "openid profile");
    assert_eq!(
        s.tool_names(Some(&basic)).await,
        ["auth_status", "hello_world"]
    );
    let reader = s.token("carol", "mcp:read");
    assert_eq!(
        s.tool_names(Some(&reader)).await,
        [
            "auth_status",
            "hello_world",
            "oauth_info",
            "protected_data",
            "user_profile"
        ]
    );
    // No admin API configured: admin_panel is not offered even to admins.
    let admin = s.token("root", "mcp:admin");
    assert!(!s
        .tool_names(Some(&admin))
        .await
        .contains(&"admin_panel".to_string()));
}

#[tokio::test]
async fn missing_scope_gets_a_403_step_up_challenge() {
    let s = spawn().await;
    let reader = s.token("dave", "mcp:read openid");
    let session = s.initialize(Some(&reader)).await;
    let (status, headers, body) = s
        .call_tool(
            Some(&reader),
            &session,
            "protected_data",
            json!({"category": "admin"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        www_authenticate(&headers),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:read openid\", resource_metadata=\"{}\"",
            s.prm_url()
        )
    );
    assert_eq!(body["jsonrpc"], "2.0");

    // The same caller may read the other categories.
    let (status, _, body) = s
        .call_tool(
            Some(&reader),
            &session,
            "protected_data",
            json!({"category": "financial"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["structuredContent"]["category"], "financial");
    assert_eq!(body["result"]["structuredContent"]["owner"], "dave");

    // A token without mcp:read cannot call a read tool.
    let basic = s.token("erin", "openid");
    let session = s.initialize(Some(&basic)).await;
    let (status, headers, _) = s
        .call_tool(Some(&basic), &session, "user_profile", json!({}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        www_authenticate(&headers),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp:read openid\", resource_metadata=\"{}\"",
            s.prm_url()
        )
    );
    // Public tools still work for that token.
    let (status, _, body) = s
        .call_tool(Some(&basic), &session, "hello_world", json!({}))
        .await;
    assert_eq!(status, 200);
    assert!(result_text(&body).contains("erin"), "{body}");
}

#[tokio::test]
async fn tools_answer_from_the_token_and_bad_arguments_are_tool_errors() {
    let s = spawn().await;
    let token = s.token("frank", "mcp:read");
    let session = s.initialize(Some(&token)).await;

    let (_, _, body) = s
        .call_tool(Some(&token), &session, "auth_status", json!({}))
        .await;
    let status = &body["result"]["structuredContent"];
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["subject"], "frank");
    assert_eq!(status["client_id"], "test-client");
    assert_eq!(status["scopes"], json!(["mcp:read"]));
    assert_eq!(status["issuer"], s.fake.issuer());
    assert_eq!(status["verification_mode"], "jwks");
    assert!(
        !body.to_string().contains(&token),
        "auth_status must never echo the token"
    );

    let (_, _, body) = s
        .call_tool(Some(&token), &session, "user_profile", json!({}))
        .await;
    assert_eq!(body["result"]["structuredContent"]["id"], "frank");
    assert_eq!(
        body["result"]["structuredContent"]["roles"],
        json!(["user"])
    );

    let (_, _, first) = s
        .call_tool(
            Some(&token),
            &session,
            "protected_data",
            json!({"category": "personal"}),
        )
        .await;
    let (_, _, second) = s
        .call_tool(
            Some(&token),
            &session,
            "protected_data",
            json!({"category": "personal"}),
        )
        .await;
    assert_eq!(
        first["result"], second["result"],
        "records are stable per user"
    );
    assert_eq!(
        first["result"]["structuredContent"]["records"]["email"],
        "frank@example.com"
    );

    let (_, _, body) = s
        .call_tool(Some(&token), &session, "oauth_info", json!({}))
        .await;
    let info = &body["result"]["structuredContent"];
    assert_eq!(info["issuer"], s.fake.issuer());
    assert_eq!(info["resource"], s.resource);
    assert_eq!(info["jwks_uri"], s.fake.jwks_uri());
    assert_eq!(info["token_endpoint"], format!("{}/token", s.fake.issuer()));
    assert_eq!(info["scopes_supported"], json!(["mcp:read"]));
    assert_eq!(info["key_ids"], json!([s.fake.kid()]));

    let (status, _, body) = s
        .call_tool(
            Some(&token),
            &session,
            "protected_data",
            json!({"category": "bogus"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        result_text(&body).contains("category") || result_text(&body).contains("bogus"),
        "{body}"
    );

    let (status, _, body) = s
        .call_tool(Some(&token), &session, "protected_data", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(result_text(&body).contains("category"), "{body}");

    let (_, _, body) = s
        .call_tool(
            Some(&token),
            &session,
            "hello_world",
            json!({"name": "World"}),
        )
        .await;
    assert!(result_text(&body).starts_with("Hello, World!"), "{body}");
}

// ---------------------------------------------------------------------------------------
// Sessions (legacy era)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_is_bound_to_the_subject_that_opened_it() {
    let s = spawn().await;
    let alice = s.token("alice", "mcp:read");
    let bob = s.token("bob", "mcp:read");
    let session = s.initialize(Some(&alice)).await;

    let (status, _, body) = s
        .rpc(Some(&bob), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("another user"));

    let (status, headers, _) = s.rpc(None, &session, 2, "tools/list", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(www_authenticate(&headers), s.challenge());

    // A fresh token of the same subject keeps working (every request re-verifies).
    let alice_again = s.token("alice", "mcp:read");
    let (status, _, _) = s
        .rpc(Some(&alice_again), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn delete_ends_the_session_then_404_and_missing_ids_get_400() {
    let s = spawn().await;
    let token = s.token("gina", "mcp:read");
    let session = s.initialize(Some(&token)).await;

    // GET opens the standalone SSE stream; its first event arrives without waiting
    // for the stream to end.
    let mut stream = s
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
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let first = tokio::time::timeout(Duration::from_secs(3), stream.chunk())
        .await
        .expect("the SSE priming event is flushed at once")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("retry:"),
        "{first:?}"
    );
    drop(stream);

    let deleted = s
        .http
        .delete(s.mcp_url())
        .bearer_auth(&token)
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (status, _, _) = s
        .rpc(Some(&token), &session, 5, "tools/list", json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = s
        .rpc(Some(&token), "no-such-session", 5, "tools/list", json!({}))
        .await;
    assert_eq!(status, 404);

    // No session id on a non-initialize request.
    let r = s
        .post(
            Some(&token),
            None,
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn an_unsupported_protocol_version_is_400() {
    let s = spawn().await;
    let token = s.token("hank", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    let r = s
        .http
        .post(s.mcp_url())
        .bearer_auth(&token)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", "1999-01-01")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

// ---------------------------------------------------------------------------------------
// Stateless era (2026-07-28)
// ---------------------------------------------------------------------------------------

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

pub async fn modern(
    s: &TestServer,
    token: &str,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> reqwest::Response {
    let mut params = params;
    params["_meta"] = modern_meta();
    let mut r = s
        .http
        .post(s.mcp_url())
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", MODERN_VERSION)
        .header("Mcp-Method", method)
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
    if let Some(n) = name {
        r = r.header("Mcp-Name", n);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn the_stateless_era_is_served_on_the_same_endpoint() {
    let s = spawn().await;
    let token = s.token("ivy", "mcp:read");

    let r = modern(&s, &token, "server/discover", None, json!({})).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let body = rpc_response(r).await;
    let versions = body["result"]["supportedVersions"].as_array().unwrap();
    assert!(versions.contains(&json!(MODERN_VERSION)), "{body}");
    assert!(versions.contains(&json!(LEGACY_VERSION)), "{body}");

    let r = modern(&s, &token, "tools/list", None, json!({})).await;
    assert_eq!(r.status(), 200);
    let body = rpc_response(r).await;
    assert_eq!(
        body["result"]["tools"].as_array().unwrap().len(),
        5,
        "{body}"
    );
    assert_eq!(body["result"]["cacheScope"], "private");

    let r = modern(
        &s,
        &token,
        "tools/call",
        Some("user_profile"),
        json!({"name": "user_profile", "arguments": {}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body = rpc_response(r).await;
    assert_eq!(body["result"]["structuredContent"]["id"], "ivy", "{body}");

    // Header checks: a missing Mcp-Name or a mismatching Mcp-Method is refused.
    let r = modern(
        &s,
        &token,
        "tools/call",
        None,
        json!({"name": "user_profile", "arguments": {}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let mut params = json!({});
    params["_meta"] = modern_meta();
    let r = s
        .http
        .post(s.mcp_url())
        .bearer_auth(&token)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", MODERN_VERSION)
        .header("Mcp-Method", "tools/call")
        .json(&json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The scope policy applies in this era too.
    let r = modern(
        &s,
        &token,
        "tools/call",
        Some("protected_data"),
        json!({"name": "protected_data", "arguments": {"category": "admin"}}),
    )
    .await;
    assert_eq!(r.status(), 403);

    // GET/DELETE are not part of this era without a session.
    let r = s
        .http
        .delete(s.mcp_url())
        .bearer_auth(&token)
        .header("MCP-Protocol-Version", MODERN_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn stateless_mode_serves_legacy_requests_without_sessions() {
    let s = spawn_with(|settings, _| {
        settings.transport.stateless = true;
        settings.transport.json_response = true;
    })
    .await;
    let token = s.token("jack", "mcp:read");
    let r = s
        .post(Some(&token), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let r = s
        .post(
            Some(&token),
            None,
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "user_profile", "arguments": {}}}),
        )
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["id"], "jack");
}

// ---------------------------------------------------------------------------------------
// Transport security and limits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn foreign_origins_and_hosts_are_refused_before_anything_else() {
    let s = spawn().await;
    let token = s.token("kim", "mcp:read");
    let r = s
        .post(Some(&token), None, &initialize_body())
        .header("Origin", "http://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Origin"));

    let r = s
        .post(Some(&token), None, &initialize_body())
        .header("Host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Allowed origins (the resource's own and loopback) pass.
    let r = s
        .post(Some(&token), None, &initialize_body())
        .header("Origin", s.base.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let s = spawn_with(|settings, _| settings.server.max_body_bytes = 2048).await;
    let token = s.token("lea", "mcp:read");
    let mut body = initialize_body();
    body["params"]["padding"] = json!("x".repeat(5000));
    let r = s.post(Some(&token), None, &body).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
}

// ---------------------------------------------------------------------------------------
// Anonymous mode
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_mode_serves_public_tools_and_challenges_protected_ones() {
    let s = spawn_with(|settings, _| settings.auth.allow_anonymous = true).await;
    assert_eq!(s.tool_names(None).await, ["auth_status", "hello_world"]);
    let session = s.initialize(None).await;
    let (status, _, body) = s.call_tool(None, &session, "hello_world", json!({})).await;
    assert_eq!(status, 200);
    assert!(result_text(&body).contains("not authenticated"), "{body}");
    let (status, headers, _) = s.call_tool(None, &session, "user_profile", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(www_authenticate(&headers), s.challenge());
    let (status, headers, _) = s
        .call_tool(
            None,
            &session,
            "protected_data",
            json!({"category": "admin"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        www_authenticate(&headers),
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"mcp:admin mcp:read\"",
            s.prm_url()
        )
    );
    // After signing in, the client continues on its session with the token.
    let token = s.token("mia", "mcp:read");
    let (status, _, body) = s
        .call_tool(Some(&token), &session, "user_profile", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["structuredContent"]["id"], "mia");
    // A bad token is still refused in anonymous mode.
    let r = s
        .post(Some("nonsense"), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = spawn().await;
    let r = s
        .http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ready"], true);

    let token = s.token("nina", "mcp:read");
    s.initialize(Some(&token)).await;
    let _ = s.post(None, None, &initialize_body()).send().await.unwrap();
    let _ = s
        .post(Some("bad"), None, &initialize_body())
        .send()
        .await
        .unwrap();
    // Metrics are not on the public port ...
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // ... but on the metrics listener.
    let r = s
        .http
        .get(format!("{}/metrics", s.metrics_base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("mcp_server_auth_failures_total{reason=\"missing_token\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mcp_server_auth_failures_total{reason=\"malformed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mcp_server_http_requests_total{method=\"POST\",status=\"401\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("mcp_server_jsonrpc_messages_total{method=\"initialize\"}"),
        "{text}"
    );
    assert!(
        text.contains("mcp_server_token_verification_seconds_count{outcome=\"valid\"}"),
        "{text}"
    );
}

/// The AS's revocation feed: a token of a revoked grant is refused, although it was
/// verified and cached before; while the feed is unreachable the server keeps
/// serving (and says so in `/readyz` and `/metrics`), then catches up.
#[tokio::test]
async fn a_revoked_grant_is_refused_and_a_feed_outage_does_not_stop_serving() {
    let s = spawn_with(|settings, fake| {
        fake.enable_revocation_feed();
        settings.auth.client_id = crate::support::RS_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new(crate::support::RS_CLIENT_SECRET);
        settings.auth.revocation_poll_secs = 1;
    })
    .await;
    let token = |sid: &str| {
        let mut claims = s.fake.claims("alice", "mcp:read", &s.resource);
        claims["sid"] = json!(sid);
        s.fake.mint(claims)
    };
    let (revoked, kept) = (token("g1"), token("g2"));
    s.initialize(Some(&revoked)).await;
    s.initialize(Some(&kept)).await;
    let readyz = || async {
        let r = s
            .http
            .get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a feed outage does not make the server unready"
        );
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(readyz().await["revocation_feed"]["state"], "ok");

    // The AS goes down and revokes g1 meanwhile: the server keeps serving.
    s.fake.set_down(true);
    s.fake.revoke_grant("g1", now() + 600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.initialize(Some(&revoked)).await;
    let status = readyz().await;
    assert_eq!(
        status["revocation_feed"]["state"], "unreachable",
        "{status}"
    );
    let metrics = s
        .http
        .get(format!("{}/metrics", s.metrics_base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mcp_server_revocation_feed_polls_total{outcome=\"failed\"}"),
        "{metrics}"
    );

    // Back up: caught up within the poll interval.
    s.fake.set_down(false);
    let started = std::time::Instant::now();
    loop {
        let r = s
            .post(Some(&revoked), None, &initialize_body())
            .send()
            .await
            .unwrap();
        if r.status() == 401 {
            assert_eq!(
                www_authenticate(r.headers()),
                format!(
                    "{}, error=\"invalid_token\", error_description=\"token has been revoked\"",
                    s.challenge()
                )
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.initialize(Some(&kept)).await;
    let status = readyz().await;
    assert_eq!(status["revocation_feed"]["state"], "ok", "{status}");
    assert_eq!(status["revocation_feed"]["revoked_grants"], 1, "{status}");
}

#[tokio::test]
async fn startup_fails_clearly_when_the_as_is_unreachable() {
    let fake = FakeAs::start().await;
    let mut settings = test_settings(&fake);
    settings.auth.issuer = "http://127.0.0.1:1".into();
    let error = match Application::build(settings).await {
        Ok(_) => panic!("must not start without AS metadata"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        error.contains("authorization server http://127.0.0.1:1"),
        "{error}"
    );

    let mut settings = test_settings(&fake);
    settings.security.allowed_hosts = Some(vec![]);
    let error = match Application::build(settings).await {
        Ok(_) => panic!("must not start with an empty host list"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("security.allowed_hosts"), "{error}");
}

#[tokio::test]
async fn malformed_bodies_and_batches_get_json_rpc_errors() {
    let s = spawn().await;
    let token = s.token("olga", "mcp:read");
    let session = s.initialize(Some(&token)).await;

    let r = s
        .http
        .post(s.mcp_url())
        .bearer_auth(&token)
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .header("Mcp-Session-Id", &session)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);

    // A batch hiding a forbidden call is still challenged; an allowed batch is refused
    // clearly (rmcp, like MCP 2025-06-18, speaks single messages).
    let forbidden = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "protected_data", "arguments": {"category": "admin"}}}
    ]);
    let r = s
        .post(Some(&token), Some(&session), &forbidden)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(www_authenticate(r.headers()).contains("scope=\"mcp:admin mcp:read\""));
    let allowed = json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]);
    let r = s
        .post(Some(&token), Some(&session), &allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batches"),
        "{body}"
    );

    // rmcp's own transport errors arrive as JSON-RPC error objects too.
    let r = s
        .post(
            Some(&token),
            None,
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Session ID"),
        "{body}"
    );
}

#[tokio::test]
async fn expired_sessions_are_forgotten() {
    let s = spawn_with(|settings, _| settings.transport.session_idle_secs = 1).await;
    let token = s.token("pia", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    // Closed within session_idle_secs + the touch interval (1 s) + 1 s.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let (status, _, _) = s
        .rpc(Some(&token), &session, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn introspection_mode_works_through_the_endpoint() {
    let s = spawn_with(|settings, _| {
        settings.auth.mode = mcp_server::auth::VerifierMode::Introspection;
        settings.auth.client_id = crate::support::RS_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new(crate::support::RS_CLIENT_SECRET);
    })
    .await;
    let token = s.token("quinn", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    let (status, _, body) = s
        .call_tool(Some(&token), &session, "auth_status", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["structuredContent"]["verification_mode"],
        "introspection"
    );
    assert_eq!(body["result"]["structuredContent"]["subject"], "quinn");
    // An opaque token the AS does not know is inactive: 401 invalid_token.
    let r = s
        .post(Some("opaque-unknown-token"), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(r.headers()).contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn readiness_reports_missing_keys() {
    let s = spawn_with(|_, fake| fake.set_down(true)).await;
    let r = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false);
    let r = s
        .http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn priming_events_can_be_switched_off() {
    let s = spawn_with(|settings, _| settings.transport.sse_retry_ms = 0).await;
    let token = s.token("rita", "mcp:read");
    let r = s
        .post(Some(&token), None, &initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("retry:"), "{text}");
    assert_eq!(sse_messages(&text).len(), 1, "{text}");
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    let s = spawn().await;
    let token = s.token("sam", "mcp:read");
    let session = s.initialize(Some(&token)).await;
    let mut claims = s.fake.claims("sam", "mcp:read", &s.resource);
    claims["exp"] = json!(now() + 2);
    let short = s.fake.mint(claims);
    let response = s
        .http
        .get(s.mcp_url())
        .bearer_auth(&short)
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &session)
        .header("MCP-Protocol-Version", LEGACY_VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(8), response.text())
        .await
        .expect("the stream must end at the token's expiry");
    assert!(body.unwrap().contains("retry:"));
}

#[tokio::test]
async fn a_subject_cannot_pile_up_sessions() {
    let s = spawn_with(|settings, _| settings.transport.max_sessions_per_subject = 1).await;
    let token = s.token("tom", "mcp:read");
    let first = s.initialize(Some(&token)).await;
    let other = s.token("uma", "mcp:read");
    let others = s.initialize(Some(&other)).await;
    let second = s.initialize(Some(&token)).await;
    let (status, _, _) = s
        .rpc(Some(&token), &first, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 404, "the oldest session of the subject was closed");
    let (status, _, _) = s
        .rpc(Some(&token), &second, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = s
        .rpc(Some(&other), &others, 2, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
}
