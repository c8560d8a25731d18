//! The `admin_panel` tool against a fake admin API (an in-test actix app that also
//! plays the token endpoint for mcp-server's client_credentials grant).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::mcp::{spawn_with, TestServer};
use crate::support::now;

const ADMIN_CLIENT_ID: &str = "mcp-server";
const ADMIN_CLIENT_SECRET: &str = "s3cret:with space";
const ADMIN_TOKEN: &str = "admin-access-token-1";

struct AdminState {
    grants: Mutex<Vec<Value>>,
    token_requests: AtomicUsize,
    /// Every Authorization header the admin endpoints saw.
    seen_authorization: Mutex<Vec<String>>,
}

struct FakeAdmin {
    state: Arc<AdminState>,
    base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn challenge() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer error=\"invalid_token\""))
        .json(json!({"error": "invalid_token"}))
}

fn authorized(req: &HttpRequest, state: &AdminState) -> bool {
    let value = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    state.seen_authorization.lock().unwrap().push(value.clone());
    value == format!("Bearer {ADMIN_TOKEN}")
}

async fn token(
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .unwrap_or_default();
    let expected = format!(
        "{}:{}",
        url::form_urlencoded::byte_serialize(ADMIN_CLIENT_ID.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(ADMIN_CLIENT_SECRET.as_bytes()).collect::<String>()
    );
    let form: std::collections::HashMap<_, _> = form.into_inner().into_iter().collect();
    if basic != expected {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some("auth:admin")
    {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    }
    HttpResponse::Ok()
        .json(json!({"access_token": ADMIN_TOKEN, "token_type": "Bearer", "expires_in": 300}))
}

async fn list_grants(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if !authorized(&req, &state) {
        return challenge();
    }
    HttpResponse::Ok().json(json!({"grants": *state.grants.lock().unwrap()}))
}

async fn revoke(
    req: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<AdminState>,
) -> HttpResponse {
    if !authorized(&req, &state) {
        return challenge();
    }
    let mut grants = state.grants.lock().unwrap();
    let position = if let Some(id) = body.get("grant_id").and_then(Value::as_str) {
        grants.iter().position(|g| g["id"] == id)
    } else if let Some(prefix) = body.get("token_id_prefix").and_then(Value::as_str) {
        grants.iter().position(|g| {
            g["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().starts_with(prefix))
        })
    } else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    let Some(position) = position else {
        return HttpResponse::NotFound()
            .json(json!({"error": "not_found", "error_description": "no such grant"}));
    };
    let g = grants.remove(position);
    HttpResponse::Ok().json(json!({"revoked": [{
        "grant_id": g["id"], "username": g["username"], "client_id": g["client_id"],
        "token_ids": g["token_ids"], "expires_at": g["expires_at"]
    }]}))
}

async fn users(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if !authorized(&req, &state) {
        return challenge();
    }
    HttpResponse::Ok().json(json!({"users": [
        {"username": "admin", "role": "admin", "disabled": false, "active_grants": 1},
        {"username": "bob", "role": "user", "disabled": false, "active_grants": 1}
    ]}))
}

async fn start_admin(grants: Vec<Value>) -> FakeAdmin {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let state = Arc::new(AdminState {
        grants: Mutex::new(grants),
        token_requests: AtomicUsize::new(0),
        seen_authorization: Mutex::new(Vec::new()),
    });
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/token", web::post().to(token))
            .route("/admin/grants", web::get().to(list_grants))
            .route("/admin/grants/revoke", web::post().to(revoke))
            .route("/admin/stats/users", web::get().to(users))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    FakeAdmin {
        state,
        base,
        handle,
    }
}

async fn spawn_against(admin: &FakeAdmin, enabled: Option<bool>) -> TestServer {
    let base = admin.base.clone();
    spawn_with(move |settings, _| {
        settings.admin_api.enabled = enabled;
        settings.admin_api.base_url = Some(base.clone());
        settings.admin_api.token_endpoint = Some(format!("{base}/token"));
        settings.auth.client_id = ADMIN_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new(ADMIN_CLIENT_SECRET);
    })
    .await
}

#[tokio::test]
async fn admin_panel_lists_revokes_and_the_revoked_token_stops_working() {
    let bob_jti = "bobjti-0123456789abcdef";
    let admin = start_admin(vec![json!({
        "id": "grant-bob", "username": "bob", "client_id": "test-client", "client_name": "Test",
        "scope": "mcp:read", "created_at": now() - 60, "expires_at": now() + 600,
        "token_ids": [bob_jti]
    })])
    .await;
    let s = spawn_against(&admin, Some(true)).await;

    let mut bob_claims = s.fake.claims("bob", "mcp:read", &s.resource);
    bob_claims["jti"] = json!(bob_jti);
    let bob = s.fake.mint(bob_claims);
    let bob_session = s.initialize(Some(&bob)).await;
    let (status, _, _) = s
        .call_tool(Some(&bob), &bob_session, "user_profile", json!({}))
        .await;
    assert_eq!(status, 200);
    // bob may not use the admin tool: not listed, and a call is a step-up 403.
    assert!(!s
        .tool_names(Some(&bob))
        .await
        .contains(&"admin_panel".to_string()));
    let (status, _, _) = s
        .call_tool(
            Some(&bob),
            &bob_session,
            "admin_panel",
            json!({"action": "user_stats"}),
        )
        .await;
    assert_eq!(status, 403);

    let root = s.token("root", "mcp:admin");
    assert!(s
        .tool_names(Some(&root))
        .await
        .contains(&"admin_panel".to_string()));
    let session = s.initialize(Some(&root)).await;
    // The action is a plain string enum, so clients render a choice, not a JSON editor.
    let (status, _, listed) = s
        .rpc(Some(&root), &session, 90, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
    let admin_tool = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "admin_panel")
        .unwrap()
        .clone();
    let action = &admin_tool["inputSchema"]["properties"]["action"];
    let action = if action.get("$ref").is_some() || action.get("allOf").is_some() {
        let name = action["$ref"]
            .as_str()
            .or_else(|| action["allOf"][0]["$ref"].as_str())
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        admin_tool["inputSchema"]["$defs"][name].clone()
    } else {
        action.clone()
    };
    assert_eq!(
        action["enum"],
        json!(["list_tokens", "revoke_token", "user_stats"]),
        "{admin_tool}"
    );

    let (status, _, body) = s
        .call_tool(
            Some(&root),
            &session,
            "admin_panel",
            json!({"action": "list_tokens"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = &body["result"]["structuredContent"];
    assert_eq!(listed["count"], 1, "{body}");
    assert_eq!(listed["grants"][0]["id"], "grant-bob");

    let (_, _, body) = s
        .call_tool(
            Some(&root),
            &session,
            "admin_panel",
            json!({"action": "user_stats"}),
        )
        .await;
    assert_eq!(
        body["result"]["structuredContent"]["users"][1]["username"], "bob",
        "{body}"
    );

    let (_, _, body) = s
        .call_tool(
            Some(&root),
            &session,
            "admin_panel",
            json!({"action": "revoke_token"}),
        )
        .await;
    assert_eq!(
        body["result"]["isError"], true,
        "a revoke without target is a tool error"
    );

    let (_, _, body) = s
        .call_tool(
            Some(&root),
            &session,
            "admin_panel",
            json!({"action": "revoke_token", "target": "bobjti-0123"}),
        )
        .await;
    assert_eq!(body["result"]["isError"], false, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["revoked"][0]["grant_id"],
        "grant-bob"
    );
    assert_eq!(
        body["result"]["structuredContent"]["token_ids_denied_locally"],
        1
    );

    // bob's JWT is still signed and unexpired, but the server refuses it from now on.
    let r = s
        .post(
            Some(&bob),
            Some(&bob_session),
            &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (_, _, body) = s
        .call_tool(
            Some(&root),
            &session,
            "admin_panel",
            json!({"action": "nuke"}),
        )
        .await;
    assert_eq!(body["result"]["isError"], true, "{body}");

    // mcp-server used its own token, fetched once, and never the caller's.
    assert_eq!(admin.state.token_requests.load(Ordering::SeqCst), 1);
    let seen = admin.state.seen_authorization.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| a == &format!("Bearer {ADMIN_TOKEN}")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_admin_api_is_detected_automatically() {
    let admin = start_admin(vec![]).await;
    let s = spawn_against(&admin, None).await;
    let root = s.token("root", "mcp:admin");
    assert!(s
        .tool_names(Some(&root))
        .await
        .contains(&"admin_panel".to_string()));

    // An AS without the admin API (the fake AS answers 404): the tool is not offered.
    let s = spawn_with(|settings, fake| {
        settings.admin_api.enabled = None;
        settings.auth.client_id = ADMIN_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new(ADMIN_CLIENT_SECRET);
        settings.admin_api.base_url = Some(fake.issuer());
    })
    .await;
    let root = s.token("root", "mcp:admin");
    assert!(!s
        .tool_names(Some(&root))
        .await
        .contains(&"admin_panel".to_string()));
}
