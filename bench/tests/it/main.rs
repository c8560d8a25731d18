//! The baseline server over real HTTP on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use bench::baseline::{Baseline, Es256Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use shared::{AccessTokenClaims, Audience};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hello_world","arguments":{"name":"bench"}}}"#;

fn keypair() -> (EncodingKey, DecodingKey) {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    (
        EncodingKey::from_ec_der(pkcs8.as_ref()),
        DecodingKey::from_ec_der(pair.public_key().as_ref()),
    )
}

fn token(key: &EncodingKey, aud: &str, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = AccessTokenClaims {
        iss: "http://127.0.0.1:1".into(),
        sub: "u1".into(),
        aud: Audience::One(aud.into()),
        exp: now + exp_offset,
        iat: now,
        nbf: Some(now),
        jti: "j".into(),
        sid: None,
        client_id: "c".into(),
        scope: "mcp:read".into(),
        preferred_username: Some("demo".into()),
        name: None,
        email: None,
        roles: Some(vec!["user".into()]),
    };
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

async fn spawn(verifier: Option<Es256Verifier>) -> String {
    let app = Baseline::build("127.0.0.1:0", 1, verifier).unwrap();
    let url = format!("http://127.0.0.1:{}/mcp", app.port());
    tokio::spawn(app.server());
    url
}

async fn post(url: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn answers_a_fixed_tools_call_result_with_the_request_id() {
    let url = spawn(None).await;
    let (status, body) = post(&url, CALL, None).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"]["isError"], false);
    assert!(v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Hello"));
}

#[tokio::test]
async fn bad_json_is_a_parse_error_and_notifications_are_accepted() {
    let url = spawn(None).await;
    let (status, body) = post(&url, "{not json", None).await;
    assert_eq!(status, 400);
    assert!(body.contains("-32700"));
    let (status, _) = post(
        &url,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        None,
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn es256_mode_verifies_every_request() {
    let (enc, dec) = keypair();
    let (other_enc, _) = keypair();
    let verifier = Es256Verifier::new(
        vec![(Some("k1".into()), dec)],
        Some("http://127.0.0.1:1"),
        Some("http://rs/mcp"),
    )
    .unwrap();
    let url = spawn(Some(verifier)).await;
    let good = token(&enc, "http://rs/mcp", 600);
    let (status, body) = post(&url, CALL, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(post(&url, CALL, None).await.0, 401);
    assert_eq!(
        post(&url, CALL, Some(&token(&other_enc, "http://rs/mcp", 600)))
            .await
            .0,
        401
    );
    assert_eq!(
        post(&url, CALL, Some(&token(&enc, "http://elsewhere/mcp", 600)))
            .await
            .0,
        401
    );
    assert_eq!(
        post(&url, CALL, Some(&token(&enc, "http://rs/mcp", -600)))
            .await
            .0,
        401
    );
}

mod upstream;
