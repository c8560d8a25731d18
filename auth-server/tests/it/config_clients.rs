//! Pre-registered clients, a pathed issuer, disabled users, ID tokens, userinfo and
//! the audit trail.

use auth_server::settings::ClientConfig;
use auth_server::storage::sql::SqlStore;
use auth_server::storage::Store;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn open_store(app: &TestApp) -> SqlStore {
    SqlStore::connect(&app.settings.database_url(), 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn preregistered_public_and_confidential_clients() {
    let app = spawn_with(|s| {
        s.clients = vec![
            ClientConfig {
                client_id: "cli".into(),
                client_name: "Company CLI".into(),
                redirect_uris: vec!["http://127.0.0.1/callback".into(), REDIRECT.into()],
                scope: "mcp:read offline_access".into(),
                ..Default::default()
            },
            ClientConfig {
                client_id: "webapp".into(),
                client_name: "Web App".into(),
                client_secret_sha256: shared::secret::sha256_b64url("webapp-secret-value"),
                redirect_uris: vec![REDIRECT.into()],
                grant_types: vec!["authorization_code".into()],
                ..Default::default()
            },
        ];
    })
    .await;

    // Public: the configured scope limits what it gets; no secret needed.
    let mut browser = Browser::default();
    let p = obtain_code(
        &app,
        &mut browser,
        "cli",
        &[("scope", "mcp:read email")],
        "demo",
        "demo123",
    )
    .await;
    let tokens = app.exchange("cli", &p["code"]).await;
    assert_eq!(tokens["scope"], "mcp:read");
    assert!(tokens["refresh_token"].is_string());

    // Confidential: the stored hash checks the secret; no refresh_token grant.
    let p = obtain_code(&app, &mut browser, "webapp", &[], "demo", "demo123").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", p["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("webapp", Some("nope"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("webapp", Some("webapp-secret-value"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    // It may not use client_credentials.
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("webapp", Some("webapp-secret-value"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
}

#[tokio::test]
async fn pathed_issuer_serves_path_inserted_metadata_and_prefixed_endpoints() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("a.db"));
    settings.server.listen = format!("127.0.0.1:{port}");
    settings.server.issuer = format!("http://127.0.0.1:{port}/auth");
    let app = start(settings).await;
    let meta: Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/auth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], app.issuer());
    let token_endpoint = meta["token_endpoint"].as_str().unwrap();
    assert!(token_endpoint.ends_with("/auth/token"));
    let res = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .http
        .get(app.url("/.well-known/openid-configuration/auth"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/auth/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The advertised endpoint works.
    let res = app
        .http
        .post(token_endpoint)
        .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let token: Value = res.json().await.unwrap();
    assert_eq!(
        decode_claims(token["access_token"].as_str().unwrap())["iss"],
        app.issuer()
    );
    app.stop().await;
}

#[tokio::test]
async fn id_token_userinfo_disabled_users_and_audit_trail() {
    let app = spawn_app().await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let p = obtain_code(
        &app,
        &mut browser,
        client_id,
        &[
            ("scope", "openid profile mcp:read"),
            ("nonce", "n-0S6_WzA2Mj"),
        ],
        "demo",
        "demo123",
    )
    .await;
    let tokens = app.exchange(client_id, &p["code"]).await;
    let id = decode_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], client_id);
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["iss"], app.issuer());
    assert_eq!(id["preferred_username"], "demo");
    assert!(
        id.get("email").is_none(),
        "no email without the email scope"
    );
    assert!(id.get("email_verified").is_none());
    let access = tokens["access_token"].as_str().unwrap();

    let res = app.http.get(app.url("/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let res = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    let info: Value = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["name"], "Demo User");
    assert!(info.get("email").is_none());
    assert!(info.get("email_verified").is_none());

    // Disabling the user (as `auth-server user disable demo` does) kills tokens and logins.
    let store = open_store(&app).await;
    assert!(store
        .set_disabled("demo", true, auth_server::domain::now())
        .await
        .unwrap());
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(
        app.refresh(client_id, tokens["refresh_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let mut fresh = Browser::default();
    let (_, _, body) = fresh.get(&app, &authorize_url(&app, client_id, &[])).await;
    let (status, _, page) = submit_login(&app, &mut fresh, &body, "demo", "demo123").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Invalid username or password"));

    let events: Vec<String> = store
        .list_audit(100)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.event)
        .collect();
    for e in [
        "register",
        "login_success",
        "consent",
        "token_issued",
        "login_failure",
    ] {
        assert!(events.iter().any(|x| x == e), "audit has {e}: {events:?}");
    }
    store.close().await;
}
