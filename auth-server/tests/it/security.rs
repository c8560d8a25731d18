//! Regression tests for the protections listed in `docs/security.md`: each test
//! drives the real server over HTTP and names the attack it stops.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::refresh::tokens_for;
use crate::registration::register;

// ----- a refused URL client_id says why -----

/// A loopback server publishing metadata documents that fail in different ways.
async fn refusing_document_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let own = base.clone();
    let server = HttpServer::new(move || {
        let own = own.clone();
        App::new()
            .route(
                "/mismatch.json",
                web::get().to(|| async {
                    HttpResponse::Ok().json(json!({
                        "client_id": "http://127.0.0.1:1/other.json",
                        "client_name": "Liar",
                        "redirect_uris": [REDIRECT]
                    }))
                }),
            )
            .route(
                "/big.json",
                web::get().to(move || {
                    let id = format!("{own}/big.json");
                    async move {
                        HttpResponse::Ok().json(json!({
                            "client_id": id,
                            "client_name": "Big",
                            "redirect_uris": [REDIRECT],
                            "padding": "x".repeat(4096)
                        }))
                    }
                }),
            )
            .route(
                "/slow.json",
                web::get().to(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    HttpResponse::Ok().json(json!({}))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    base
}

/// The reason shown on the browser error page and in `/token`'s
/// `error_description` for the URL client id `client_id`.
async fn refusal_reasons(app: &TestApp, client_id: &str) -> (String, String) {
    let mut browser = Browser::default();
    let (status, headers, page) = browser.get(app, &authorize_url(app, client_id, &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id}: {page}");
    assert!(headers.get("location").is_none());
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", "unused"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{client_id}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let description = body["error_description"].as_str().unwrap().to_string();
    (page, description)
}

fn assert_reason(client_id: &str, (page, description): &(String, String), reason: &str) {
    assert!(
        page.contains(reason),
        "the page for {client_id} must say {reason:?}: {page}"
    );
    assert!(
        description.contains(reason),
        "/token for {client_id} must say {reason:?}: {description:?}"
    );
    for text in [page.as_str(), description.as_str()] {
        assert!(!text.contains("page:"), "wrapped twice: {text}");
    }
}

#[tokio::test]
async fn refused_metadata_documents_show_why_on_the_page_and_at_the_token_endpoint() {
    let docs = refusing_document_server().await;
    let app = spawn_with(|s| {
        s.cimd.allow_insecure_cimd_for_tests = true;
        s.cimd.max_document_bytes = 1024;
        s.cimd.timeout_ms = 500;
    })
    .await;
    for (path, reason) in [
        ("/mismatch.json", "does not match the URL"),
        ("/big.json", "larger than 1024 bytes"),
        ("/slow.json", "timed out"),
    ] {
        let client_id = format!("{docs}{path}");
        let reasons = refusal_reasons(&app, &client_id).await;
        assert_reason(&client_id, &reasons, reason);
    }
    // Nothing listens on port 1.
    let unreachable = "http://127.0.0.1:1/client.json";
    let reasons = refusal_reasons(&app, unreachable).await;
    assert_reason(unreachable, &reasons, "could not be fetched");
}

#[tokio::test]
async fn refused_client_id_urls_show_the_address_and_scheme_rules() {
    let app = spawn_app().await;
    let private = "https://10.1.2.3/client.json";
    let reasons = refusal_reasons(&app, private).await;
    assert_reason(private, &reasons, "does not resolve to a public address");
    let plain_http = "http://app.example.com/client.json";
    let reasons = refusal_reasons(&app, plain_http).await;
    assert_reason(plain_http, &reasons, "https");

    let off = spawn_with(|s| s.cimd.enabled = false).await;
    let document = "https://app.example.com/client.json";
    let reasons = refusal_reasons(&off, document).await;
    assert_reason(document, &reasons, "not enabled on this server");
}

// ----- one live refresh token per family -----

/// A public client and the first refresh token of a user grant.
async fn refreshable_tokens(app: &TestApp) -> (String, String) {
    let (client_id, tokens) = tokens_for(app, "mcp:read offline_access").await;
    (
        client_id,
        tokens["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn refreshed(app: &TestApp, client_id: &str, token: &str) -> Value {
    let res = app.refresh(client_id, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_share_one_successor() {
    let app = spawn_app().await; // default grace window: 10 s
    let (client_id, r1) = refreshable_tokens(&app).await;
    let answers =
        futures_util::future::join_all((0..10).map(|_| app.refresh(&client_id, &r1))).await;
    let mut successors = std::collections::BTreeSet::new();
    let mut access_tokens = Vec::new();
    for res in answers {
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        successors.insert(body["refresh_token"].as_str().unwrap().to_string());
        access_tokens.push(body["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(successors.len(), 1, "one successor for every duplicate");
    let successor = successors.into_iter().next().unwrap();
    // The family has exactly one live refresh token: the successor.
    assert_eq!(app.introspect(&r1).await["active"], false);
    assert_eq!(app.introspect(&successor).await["active"], true);
    for access in &access_tokens {
        assert_eq!(app.introspect(access).await["active"], true);
    }
    let next = refreshed(&app, &client_id, &successor).await;
    assert_ne!(next["refresh_token"], successor.as_str());
}

#[tokio::test]
async fn a_stolen_token_replayed_in_the_grace_window_gets_no_chain_of_its_own() {
    // Two seconds: the window counts whole seconds, so with one a replay right
    // after a rotation that crosses a second boundary would already be outside it.
    let app = spawn_with(|s| s.oauth.refresh_grace_secs = 2).await;
    let (client_id, r1) = refreshable_tokens(&app).await;
    let legit = refreshed(&app, &client_id, &r1).await;
    let r2 = legit["refresh_token"].as_str().unwrap();
    // The thief replays r1 at once: the same successor, not a second chain.
    let thief = refreshed(&app, &client_id, &r1).await;
    assert_eq!(thief["refresh_token"], r2);
    let r3 = refreshed(&app, &client_id, r2).await;
    let r3 = r3["refresh_token"].as_str().unwrap().to_string();
    // After the window (2.1 s later is at least two whole seconds on), the
    // superseded r2 is reuse: the whole family dies.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = app.refresh(&client_id, r2).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        app.refresh(&client_id, &r3).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.introspect(&r3).await["active"], false);
}

// ----- redirect URI schemes by application type -----

#[tokio::test]
async fn redirect_schemes_follow_the_application_type() {
    let app = spawn_app().await;
    let cases: &[(Option<&str>, &str, bool)] = &[
        (None, "https://app.example/cb", true),
        (None, "http://127.0.0.1:8080/cb", true),
        (None, "mailto:someone@example.com", false),
        (None, "com.example.app:/cb", false),
        (Some("web"), "mailto:someone@example.com", false),
        (Some("web"), "tel:+15555550100", false),
        (Some("native"), "com.example.app:/cb", true),
        (Some("native"), "http://localhost:6274/cb", true),
        (Some("native"), "https://app.example/cb", true),
        (Some("native"), "mailto:someone@example.com", false),
        (Some("native"), "myapp:/cb", false),
        (Some("native"), "http://app.example/cb", false),
    ];
    for (application_type, uri, accepted) in cases {
        let mut body = json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"});
        if let Some(t) = application_type {
            body["application_type"] = json!(t);
        }
        let (status, answer) = register(&app, body).await;
        if *accepted {
            assert_eq!(
                status,
                StatusCode::CREATED,
                "{application_type:?} {uri}: {answer}"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{application_type:?} {uri}"
            );
            assert_eq!(answer["error"], "invalid_redirect_uri", "{uri}: {answer}");
        }
    }
}

// ----- JSON bodies need a JSON content type -----

async fn send_json_as(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    bearer: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .body(serde_json::to_vec(body).unwrap());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn json_endpoints_refuse_other_content_types_with_415() {
    let app = spawn_app().await;
    let client = json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"});
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let (status, body) = send_json_as(
            &app,
            reqwest::Method::POST,
            "/register",
            content_type,
            None,
            &client,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    let (status, registered) = send_json_as(
        &app,
        reqwest::Method::POST,
        "/register",
        Some("application/json; charset=utf-8"),
        None,
        &client,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // RFC 7592 update.
    let path = format!("/register/{}", registered["client_id"].as_str().unwrap());
    let management = registered["registration_access_token"].as_str().unwrap();
    let mut update = client.clone();
    update["client_id"] = registered["client_id"].clone();
    let (status, _) = send_json_as(
        &app,
        reqwest::Method::PUT,
        &path,
        Some("text/plain"),
        Some(management),
        &update,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = send_json_as(
        &app,
        reqwest::Method::PUT,
        &path,
        Some("application/json"),
        Some(management),
        &update,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The admin API.
    let admin = app.client_credentials(Some("auth:admin")).await;
    let admin = admin["access_token"].as_str().unwrap();
    let (status, body) = send_json_as(
        &app,
        reqwest::Method::POST,
        "/admin/grants/revoke",
        Some("text/plain"),
        Some(admin),
        &json!({"grant_id": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"], "invalid_request");
}

// ----- introspection has no leeway at the issuer -----

#[tokio::test]
async fn introspection_says_inactive_at_exp() {
    let app = spawn_with(|s| s.oauth.access_token_ttl_secs = 3).await;
    let token = app.client_credentials(None).await;
    let token = token["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(token).await["active"], true);
    let exp = decode_claims(token)["exp"].as_i64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let wait = (exp * 1000 - now_ms).max(0) as u64 + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(app.introspect(token).await, json!({"active": false}));
}

// ----- metadata follows the configuration -----

async fn metadata(app: &TestApp) -> Value {
    let res = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn grant_types(doc: &Value) -> Vec<&str> {
    doc["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn metadata_advertises_only_what_is_switched_on() {
    let app = spawn_app().await;
    let doc = metadata(&app).await;
    assert_eq!(doc["client_id_metadata_document_supported"], true);
    assert_eq!(
        doc["registration_endpoint"],
        format!("{}/register", app.issuer())
    );
    assert_eq!(
        grant_types(&doc),
        ["authorization_code", "refresh_token", "client_credentials"]
    );

    let off = spawn_with(|s| {
        s.cimd.enabled = false;
        s.registration.enabled = false;
        s.demo.enabled = false;
    })
    .await;
    let doc = metadata(&off).await;
    assert_ne!(doc["client_id_metadata_document_supported"], true, "{doc}");
    assert!(doc.get("registration_endpoint").is_none(), "{doc}");
    assert_eq!(grant_types(&doc), ["authorization_code", "refresh_token"]);

    // A configured service client turns client_credentials on.
    let service = spawn_with(|s| {
        s.demo.enabled = false;
        s.clients.push(auth_server::settings::ClientConfig {
            client_id: "reporting".into(),
            client_secret: shared::Secret::new("a-long-secret"),
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        });
    })
    .await;
    assert_eq!(
        grant_types(&metadata(&service).await),
        ["authorization_code", "refresh_token", "client_credentials"]
    );
}
