//! RFC 7591 validation and RFC 7592 management.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

pub(crate) async fn register(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let res = app
        .http
        .post(app.url("/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn dcr_validates_metadata() {
    let app = spawn_app().await;
    let (s, b) = register(&app, json!({"redirect_uris": []})).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "invalid_redirect_uri")
    );
    let (s, b) = register(&app, json!({"redirect_uris": ["http://evil.example/cb"]})).await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "invalid_redirect_uri")
    );
    let (_, b) = register(&app, json!({"redirect_uris": ["https://a.example/cb#x"]})).await;
    assert_eq!(b["error"], "invalid_redirect_uri");
    let (_, b) = register(
        &app,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["implicit"]}),
    )
    .await;
    assert_eq!(b["error"], "invalid_client_metadata");
    let (_, b) = register(
        &app,
        json!({"redirect_uris": [REDIRECT], "response_types": ["token"]}),
    )
    .await;
    assert_eq!(b["error"], "invalid_client_metadata");
    let (_, b) = register(
        &app,
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
    )
    .await;
    assert_eq!(b["error"], "invalid_client_metadata");
    let (_, b) = register(
        &app,
        json!({"redirect_uris": [REDIRECT], "application_type": "desktop"}),
    )
    .await;
    assert_eq!(b["error"], "invalid_client_metadata");
    let (_, b) = register(&app, json!({"redirect_uris": "not-a-list"})).await;
    assert_eq!(b["error"], "invalid_client_metadata");

    // Inspector v2's registration, with CORS for browser clients.
    let res = app
        .http
        .post(app.url("/register"))
        .header("origin", "http://localhost:6274")
        .json(&json!({
            "redirect_uris": ["http://localhost:6274/oauth/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "MCP Inspector",
            "application_type": "native",
            "scope": ""
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(res.headers().get("access-control-allow-origin").is_some());
    assert_eq!(res.headers()["cache-control"], "no-store");
    let b: Value = res.json().await.unwrap();
    assert!(b["client_id"].is_string());
    assert!(b.get("client_secret").is_none());
    assert_eq!(
        b["redirect_uris"],
        json!(["http://localhost:6274/oauth/callback"])
    );
    assert!(b["registration_access_token"].is_string());

    // CORS preflight on /token.
    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert!(res.headers().get("access-control-allow-origin").is_some());
}

#[tokio::test]
async fn rfc7592_read_update_delete() {
    let app = spawn_app().await;
    let (s, reg) = register(&app, json!({"redirect_uris": [REDIRECT], "client_name": "Before", "token_endpoint_auth_method": "none"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let client_id = reg["client_id"].as_str().unwrap();
    let rat = reg["registration_access_token"].as_str().unwrap();
    let uri = reg["registration_client_uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/register/{client_id}", app.issuer()));

    let res = app
        .http
        .get(app.url(&format!("/register/{client_id}")))
        .bearer_auth(rat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["client_name"], "Before");

    let res = app
        .http
        .get(app.url(&format!("/register/{client_id}")))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .http
        .get(app.url("/register/unknown"))
        .bearer_auth(rat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = app
        .http
        .put(app.url(&format!("/register/{client_id}")))
        .bearer_auth(rat)
        .json(&json!({"client_id": client_id, "redirect_uris": [REDIRECT, "http://127.0.0.1/cb"], "client_name": "After", "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["client_name"], "After");
    assert_eq!(updated["redirect_uris"].as_array().unwrap().len(), 2);

    let res = app
        .http
        .put(app.url(&format!("/register/{client_id}")))
        .bearer_auth(rat)
        .json(&json!({"client_id": client_id, "redirect_uris": ["http://evil.example/cb"], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let res = app
        .http
        .delete(app.url(&format!("/register/{client_id}")))
        .bearer_auth(rat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let mut browser = Browser::default();
    let (status, _, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("Unknown application"));
}
