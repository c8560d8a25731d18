//! Restarts keep everything; key rotation keeps old tokens verifiable.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn restart_keeps_users_clients_sessions_consents_grants_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested").join("auth.db");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut settings = test_settings(&db);
    settings.server.listen = format!("127.0.0.1:{port}");
    settings.server.issuer = format!("http://127.0.0.1:{port}");

    let app = start(settings.clone()).await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let tokens = app.exchange(&client_id, &p["code"]).await;
    let jwks_before: Value = app
        .http
        .get(app.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.stop().await;

    // Same file, new process state.
    let app = start(settings).await;
    let jwks_after: Value = app
        .http
        .get(app.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    // The session cookie and the consent survive: straight redirect.
    let (status, headers, _) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let code = location_params(&headers)["code"].clone();
    app.exchange(&client_id, &code).await;
    // The refresh family survives.
    let res = app
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Demo seeding is idempotent: the users are still there, once.
    let admin = app.client_credentials(Some("auth:admin")).await;
    let stats: Value = app
        .http
        .get(app.url("/admin/stats/users"))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["users"].as_array().unwrap().len(), 3);
    assert_eq!(
        stats["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "demo")
            .unwrap()["active_grants"],
        2
    );
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable_via_jwks() {
    let app = spawn_app().await;
    let old = app.client_credentials(None).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = decode_header(&old)["kid"].as_str().unwrap().to_string();

    // Rotate from "another process", as the CLI does.
    let store = auth_server::storage::sql::SqlStore::connect(&app.settings.database_url(), 1)
        .await
        .unwrap();
    let new_kid = auth_server::cli::rotate_keys(
        &store,
        &auth_server::domain::key_encryption::KeyEncryption::plaintext(),
    )
    .await
    .unwrap();
    store.close().await;
    assert_ne!(new_kid, old_kid);

    let jwks: JwkSet = app
        .http
        .get(app.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks.keys.len(), 2);
    let verify = |token: &str, kid: &str| {
        let key = DecodingKey::from_jwk(jwks.find(kid).expect("kid published")).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        v.set_issuer(&[app.issuer()]);
        jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
    };
    assert!(verify(&old, &old_kid));

    let new = app.client_credentials(None).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(decode_header(&new)["kid"], new_kid);
    assert!(verify(&new, &new_kid));
    assert_eq!(app.introspect(&old).await["active"], true);
    assert_eq!(app.introspect(&new).await["active"], true);
}
