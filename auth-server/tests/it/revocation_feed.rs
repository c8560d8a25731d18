//! Revocation reaches the resource server: a real mcp-server follows this server's
//! revocation feed, and a token whose grant was revoked here is refused on `/mcp`
//! within 6 s although mcp-server verified (and cached) it before. No request of
//! mcp-server waits for this server.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::refresh::tokens_for;

/// How fast a revocation must reach the resource server (the feed is polled every 5 s).
const PROPAGATION_TARGET: Duration = Duration::from_secs(6);

struct ResourceServer {
    mcp_url: String,
    http: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for ResourceServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// mcp-server for [`RESOURCE`], trusting `app`, with the demo's resource-server
/// credentials and every feed setting at its default.
async fn resource_server(app: &TestApp) -> ResourceServer {
    let mut s = mcp_server::settings::Settings::default();
    s.server.listen = "127.0.0.1:0".into();
    s.server.resource = RESOURCE.into();
    s.server.workers = 1;
    s.auth.issuer = app.issuer();
    s.auth.client_id = "mcp-server".into();
    s.auth.client_secret = shared::Secret::new("demo-mcp-server-secret");
    s.admin_api.enabled = Some(false);
    s.transport.stateless = true;
    s.transport.json_response = true;
    let rs = mcp_server::Application::build(s)
        .await
        .expect("mcp-server builds");
    let mcp_url = format!("http://{}/mcp", rs.local_addr());
    let handle = rs.handle();
    tokio::spawn(rs.server());
    ResourceServer {
        mcp_url,
        http: reqwest::Client::new(),
        handle,
    }
}

impl ResourceServer {
    /// The status of an MCP `initialize` with `token`, and its challenge.
    async fn call(&self, token: &str) -> (StatusCode, String) {
        let r = self
            .http
            .post(&self.mcp_url)
            .bearer_auth(token)
            .header("Accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "it", "version": "1"}}
            }))
            .send()
            .await
            .unwrap();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), challenge)
    }

    /// Calls with `token` until it is refused; returns how long that took.
    async fn refused_after(&self, token: &str, started: Instant) -> Duration {
        loop {
            let (status, challenge) = self.call(token).await;
            if status == StatusCode::UNAUTHORIZED {
                assert!(
                    challenge.contains("error=\"invalid_token\""),
                    "{challenge}"
                );
                return started.elapsed();
            }
            assert_eq!(status, StatusCode::OK);
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the revoked token is still accepted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn revoking_the_refresh_token_reaches_the_resource_server_within_6_s() {
    let app = spawn_app().await;
    let rs = resource_server(&app).await;
    let (client_id, revoked) = tokens_for(&app, "mcp:read offline_access").await;
    let (_, other) = tokens_for(&app, "mcp:read offline_access").await;
    let access = revoked["access_token"].as_str().unwrap();
    let other_access = other["access_token"].as_str().unwrap();
    assert_eq!(rs.call(access).await.0, StatusCode::OK);
    assert_eq!(rs.call(other_access).await.0, StatusCode::OK);

    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[
            ("token", revoked["refresh_token"].as_str().unwrap()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let started = Instant::now();
    assert_eq!(app.introspect(access).await["active"], false);

    let latency = rs.refused_after(access, started).await;
    println!("revocation by /revoke reached mcp-server after {latency:?}");
    assert!(latency < PROPAGATION_TARGET, "{latency:?}");
    assert_eq!(
        rs.call(other_access).await.0,
        StatusCode::OK,
        "another grant's token still works"
    );
}

#[tokio::test]
async fn a_code_replay_reaches_the_resource_server_within_6_s() {
    let app = spawn_app().await;
    let rs = resource_server(&app).await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let code = obtain_code(
        &app,
        &mut browser,
        client_id,
        &[("scope", "mcp:read")],
        "demo",
        "demo123",
    )
    .await["code"]
        .clone();
    let tokens = app.exchange(client_id, &code).await;
    let access = tokens["access_token"].as_str().unwrap();
    let (_, other) = tokens_for(&app, "mcp:read").await;
    let other_access = other["access_token"].as_str().unwrap();
    assert_eq!(rs.call(access).await.0, StatusCode::OK);

    // The code again (RFC 6749 §10.5): refused, and the grant it created is revoked.
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let started = Instant::now();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");

    let latency = rs.refused_after(access, started).await;
    println!("revocation by a code replay reached mcp-server after {latency:?}");
    assert!(latency < PROPAGATION_TARGET, "{latency:?}");
    assert_eq!(rs.call(other_access).await.0, StatusCode::OK);
}
