//! client_credentials, the admin API and who may introspect.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn client_credentials_and_admin_api() {
    let app = spawn_app().await;
    let cc = app.client_credentials(Some("auth:admin")).await;
    let admin_token = cc["access_token"].as_str().unwrap();
    assert!(cc.get("refresh_token").is_none());
    let claims = decode_claims(admin_token);
    assert_eq!(claims["sub"], "mcp-server");
    assert_eq!(claims["aud"], app.issuer());
    assert_eq!(claims["scope"], "auth:admin");

    // Scope beyond the registration.
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mcp:admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");

    // A user grant to look at.
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let p = obtain_code(&app, &mut browser, client_id, &[], "demo", "demo123").await;
    let tokens = app.exchange(client_id, &p["code"]).await;
    let user_access = tokens["access_token"].as_str().unwrap();
    let jti = decode_claims(user_access)["jti"]
        .as_str()
        .unwrap()
        .to_string();

    // No token / a user token / a token without auth:admin.
    let res = app.http.get(app.url("/admin/grants")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let res = app
        .http
        .get(app.url("/admin/grants"))
        .bearer_auth(user_access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let introspect_only = app.client_credentials(Some("auth:introspect")).await;
    let res = app
        .http
        .get(app.url("/admin/grants"))
        .bearer_auth(introspect_only["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));

    let grants: Value = app
        .http
        .get(app.url("/admin/grants"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = grants["grants"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let g = &list[0];
    assert_eq!(g["username"], "demo");
    assert_eq!(g["client_id"], client_id);
    assert_eq!(g["client_name"], "Test Client");
    assert_eq!(g["token_ids"], json!([jti]));
    assert!(!grants.to_string().contains(user_access));

    let stats: Value = app
        .http
        .get(app.url("/admin/stats/users"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let demo = stats["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["active_grants"], 1);
    assert_eq!(demo["role"], "user");

    // Revoke by a too-short prefix, an unknown one, then a real one.
    let revoke = |body: Value| {
        app.http
            .post(app.url("/admin/grants/revoke"))
            .bearer_auth(admin_token)
            .json(&body)
            .send()
    };
    let res = revoke(json!({"token_id_prefix": "abc"})).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = revoke(json!({"grant_id": "nope"})).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = revoke(json!({"token_id_prefix": &jti[..8]})).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["revoked"][0]["grant_id"], g["id"]);
    assert_eq!(body["revoked"][0]["token_ids"], json!([jti]));

    assert_eq!(app.introspect(user_access).await["active"], false);
    let grants: Value = app
        .http
        .get(app.url("/admin/grants"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grants["grants"], json!([]));

    // Revocation forgets the consent: the consent page is back.
    let (_, _, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    assert!(body.contains("value=\"approve\""));
}

#[tokio::test]
async fn only_authorized_clients_may_introspect() {
    let app = spawn_app().await;
    let cc = app.client_credentials(None).await;
    let token = cc["access_token"].as_str().unwrap();
    let intro = app.introspect(token).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["client_id"], "mcp-server");

    // Wrong secret
    let res = app
        .http
        .post(app.url("/introspect"))
        .basic_auth("mcp-server", Some("nope"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A public client
    let client = app.register_public(&[REDIRECT]).await;
    let res = app
        .http
        .post(app.url("/introspect"))
        .form(&[
            ("token", token),
            ("client_id", client["client_id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Garbage is inactive, not an error.
    assert_eq!(
        app.introspect("not-a-token").await,
        json!({"active": false})
    );
    assert_eq!(app.introspect("a.b.c").await, json!({"active": false}));

    // health + metrics (on their own listener: `metrics_are_served_on_their_own_listener_only`)
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let metrics_base = app.metrics_base.as_deref().expect("a metrics listener");
    let metrics = app
        .http
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("auth_token_requests_total"));
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_only() {
    let app = spawn_app().await;
    let _ = app.client_credentials(None).await;
    for path in ["/metrics", "/metrics/", "/admin/metrics"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let metrics_base = app.metrics_base.clone().expect("a metrics listener");
    let res = app
        .http
        .get(format!("{metrics_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(res.text().await.unwrap().contains(
        "auth_token_requests_total{grant_type=\"client_credentials\",outcome=\"success\"} 1"
    ));
    // The metrics listener serves nothing else.
    let res = app
        .http
        .get(format!(
            "{metrics_base}/.well-known/oauth-authorization-server"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;

    // `off` serves no metrics at all.
    let app = spawn_with(|s| s.server.metrics_listen = "off".into()).await;
    assert!(app.metrics_base.is_none());
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
