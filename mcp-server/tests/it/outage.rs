//! The authorization server goes away (connections refused) and comes back:
//! mcp-server keeps verifying tokens signed with the keys it cached, `/readyz`
//! stays ready but reports the degraded state, and once the AS is back (with a
//! rotated key) everything recovers without a restart. The outage lasts
//! `MCP_TEST_AS_OUTAGE_SECS` seconds (default 3; the outage scenario it stands for is 600):
//! nothing in the verifier may depend on it being short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mcp::{initialize_body, spawn_with, TestServer};
use crate::support::{now, RS_CLIENT_ID, RS_CLIENT_SECRET};

fn outage() -> Duration {
    let secs = std::env::var("MCP_TEST_AS_OUTAGE_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .expect("MCP_TEST_AS_OUTAGE_SECS is a number of seconds")
        })
        .unwrap_or(3);
    Duration::from_secs(secs)
}

/// A token that outlives the outage, signed with the AS's current key.
fn token(s: &TestServer, sub: &str, outage: Duration) -> String {
    let mut claims = s.fake.claims(sub, "mcp:read", &s.resource);
    claims["exp"] = (now() + 600 + outage.as_secs() as i64).into();
    s.fake.mint(claims)
}

/// The status of an MCP `initialize` with `token`.
async fn call(s: &TestServer, token: &str) -> u16 {
    s.post(Some(token), None, &initialize_body())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn readyz(s: &TestServer) -> (u16, Value) {
    let r = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Polls until `check` holds, for at most 15 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn healthy(code: u16, body: &Value) -> Result<(), String> {
    if code == 200 && body["status"] == "ok" && body["authorization_server"]["reachable"] == true {
        Ok(())
    } else {
        Err(format!("{code} {body}"))
    }
}

#[tokio::test]
async fn outage_jwks_cached_keys_keep_verifying_readyz_degrades_and_recovers() {
    let outage = outage();
    let mut s = spawn_with(|settings, _| {
        // How soon a probe or an unknown kid may ask the AS again (default 30 s).
        settings.auth.jwks_min_refetch_interval_secs = 1;
    })
    .await;
    let seen = token(&s, "olga", outage);
    assert_eq!(call(&s, &seen).await, 200);
    let (code, body) = readyz(&s).await;
    healthy(code, &body).unwrap();

    s.fake.stop().await;
    let started = Instant::now();
    let mut degraded = None;
    while started.elapsed() < outage || degraded.is_none() {
        assert!(
            started.elapsed() < outage + Duration::from_secs(15),
            "/readyz never reported the outage"
        );
        let (code, body) = readyz(&s).await;
        assert_eq!(code, 200, "still ready with cached keys: {body}");
        assert_eq!(body["ready"], true);
        if body["status"] == "degraded" {
            assert_eq!(body["authorization_server"]["reachable"], false, "{body}");
            assert!(body["authorization_server"]["unreachable_since"].is_i64());
            degraded = Some(body);
        }
        // A token seen before, and one never seen but signed with a cached key.
        assert_eq!(call(&s, &seen).await, 200);
        assert_eq!(call(&s, &token(&s, "otto", outage)).await, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The AS comes back, having rotated its signing key meanwhile.
    s.fake.rotate_key();
    s.fake.restart();
    let fresh = token(&s, "pia", outage);
    eventually("a token signed with the new key", || async {
        match call(&s, &fresh).await {
            200 => Ok(()),
            code => Err(format!("HTTP {code}")),
        }
    })
    .await;
    eventually("/readyz healthy again", || async {
        let (code, body) = readyz(&s).await;
        healthy(code, &body)
    })
    .await;
    assert_eq!(call(&s, &seen).await, 200);
}

#[tokio::test]
async fn outage_introspection_answers_503_never_401_and_recovers() {
    let outage = outage();
    let mut s = spawn_with(|settings, _| {
        settings.auth.mode = mcp_server::auth::VerifierMode::Introspection;
        settings.auth.client_id = RS_CLIENT_ID.into();
        settings.auth.client_secret = shared::Secret::new(RS_CLIENT_SECRET);
    })
    .await;
    let seen = token(&s, "ines", outage);
    assert_eq!(call(&s, &seen).await, 200);
    let (code, body) = readyz(&s).await;
    healthy(code, &body).unwrap();
    let unseen = token(&s, "ivan", outage);

    s.fake.stop().await;
    let started = Instant::now();
    while started.elapsed() < outage {
        // The AS cannot say whether this token is active: unavailable, not invalid.
        assert_eq!(call(&s, &unseen).await, 503);
        let (code, body) = readyz(&s).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["authorization_server"]["reachable"], false);
        // A cached answer serves until its cache lifetime ends, then 503 too.
        assert!(matches!(call(&s, &seen).await, 200 | 503));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    s.fake.restart();
    eventually("introspection answers again", || async {
        match call(&s, &unseen).await {
            200 => Ok(()),
            code => Err(format!("HTTP {code}")),
        }
    })
    .await;
    let (code, body) = readyz(&s).await;
    healthy(code, &body).unwrap();
    assert_eq!(call(&s, &seen).await, 200);
}
