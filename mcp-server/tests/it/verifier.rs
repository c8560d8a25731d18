//! Token verification against a real (fake) authorization server over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::FakeAs;

#[tokio::test]
async fn fake_as_serves_metadata_and_jwks() {
    let fake = FakeAs::start().await;
    let http = reqwest::Client::new();
    let meta: serde_json::Value = http.get(fake.metadata_url()).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["issuer"], fake.issuer());
    let jwks: serde_json::Value = http.get(fake.jwks_uri()).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], fake.kid());
    assert_eq!(fake.jwks_hits(), 1);
}
