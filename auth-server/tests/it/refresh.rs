//! Refresh-token rotation, reuse detection, the grace window and scope narrowing.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

pub(crate) async fn tokens_for(app: &TestApp, scope: &str) -> (String, Value) {
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let p = obtain_code(
        app,
        &mut browser,
        &client_id,
        &[("scope", scope)],
        "demo",
        "demo123",
    )
    .await;
    let tokens = app.exchange(&client_id, &p["code"]).await;
    (client_id, tokens)
}

#[tokio::test]
async fn reuse_after_grace_revokes_the_family() {
    let app = spawn_with(|s| s.oauth.refresh_grace_secs = 0).await;
    let (client_id, tokens) = tokens_for(&app, "mcp:read offline_access").await;
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let res = app.refresh(&client_id, r1).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second: Value = res.json().await.unwrap();
    let r2 = second["refresh_token"].as_str().unwrap();
    let a2 = second["access_token"].as_str().unwrap();

    // Reusing r1 is theft: error, and r2 and its access token die too.
    let res = app.refresh(&client_id, r1).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        app.refresh(&client_id, r2).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.introspect(a2).await["active"], false);
}

#[tokio::test]
async fn concurrent_duplicate_within_grace_window_is_harmless() {
    let app = spawn_app().await; // default grace: 10 s
    let (client_id, tokens) = tokens_for(&app, "mcp:read").await;
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let (a, b) = tokio::join!(app.refresh(&client_id, r1), app.refresh(&client_id, r1));
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(b.status(), StatusCode::OK);
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    // Both answers carry the one successor, which keeps working (a repeat inside
    // its own grace window included).
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_eq!(
        app.refresh(&client_id, a["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&client_id, b["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_may_narrow_but_never_widen_and_keeps_the_audience() {
    let app = spawn_app().await;
    let (client_id, tokens) = tokens_for(&app, "mcp:read openid").await;
    let r1 = tokens["refresh_token"].as_str().unwrap();

    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r1),
            ("client_id", &client_id),
            ("scope", "mcp:read email"),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r1),
            ("client_id", &client_id),
            ("resource", "http://127.0.0.1:39998/other"),
        ])
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_target"
    );

    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", r1),
            ("client_id", &client_id),
            ("scope", "mcp:read"),
            ("resource", RESOURCE),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let narrowed: Value = res.json().await.unwrap();
    assert_eq!(narrowed["scope"], "mcp:read");
    let claims = decode_claims(narrowed["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "mcp:read");
    assert_eq!(claims["aud"], RESOURCE);

    // The family keeps the original scope: the next refresh may ask for it again.
    let res = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrowed["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
            ("scope", "mcp:read openid"),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Another client cannot use the refresh token.
    let other = app.register_public(&[REDIRECT]).await;
    let res = app.refresh(other["client_id"].as_str().unwrap(), r1).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
