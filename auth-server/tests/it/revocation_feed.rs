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
    s.server.metrics_listen = "off".into();
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
                assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
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

async fn read_feed(app: &TestApp, since: Option<&str>) -> Value {
    let mut url = url::Url::parse(&app.url("/revocations")).unwrap();
    if let Some(since) = since {
        url.query_pairs_mut().append_pair("since", since);
    }
    let res = app
        .http
        .get(url)
        .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_feed_serves_resource_servers_from_their_cursor() {
    let app = spawn_with(|s| {
        s.clients.push(auth_server::settings::ClientConfig {
            client_id: "svc".into(),
            client_secret: shared::Secret::new("a-long-service-secret"),
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
    })
    .await;
    let metadata: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["revocation_feed_endpoint"],
        app.url("/revocations")
    );

    // Only authenticated resource-server clients read it.
    let anonymous = app.http.get(app.url("/revocations")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = app
        .http
        .get(app.url("/revocations"))
        .basic_auth("mcp-server", Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let service = app
        .http
        .get(app.url("/revocations"))
        .basic_auth("svc", Some("a-long-service-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(service.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        service.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );

    let first = read_feed(&app, None).await;
    assert_eq!(first["snapshot"], true);
    assert_eq!(first["grants"], json!([]));
    let cursor = first["cursor"].as_str().unwrap().to_string();

    // Revoking one access token lists its jti, until its expiry.
    let (client_id, tokens) = tokens_for(&app, "mcp:read").await;
    let access = tokens["access_token"].as_str().unwrap();
    let claims = decode_claims(access);
    assert!(claims["sid"].is_string(), "access tokens name their grant");
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", access), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let next = read_feed(&app, Some(&cursor)).await;
    assert_eq!(next["snapshot"], false);
    assert_eq!(
        next["jtis"],
        json!([{"id": claims["jti"], "exp": claims["exp"]}])
    );
    assert_eq!(next["more"], false);
    let idle = read_feed(&app, next["cursor"].as_str()).await;
    assert_eq!(
        (idle["grants"].clone(), idle["jtis"].clone()),
        (json!([]), json!([]))
    );

    // A cursor of another database answers with everything still relevant.
    let unknown = read_feed(&app, Some("elsewhere.1")).await;
    assert_eq!(unknown["snapshot"], true);
    assert_eq!(unknown["jtis"], next["jtis"]);
}
