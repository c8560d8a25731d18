//! Token verification against a fake authorization server over real HTTP: both
//! verifiers, every refusal reason, key rotation, AS outages and the caches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Header};
use mcp_server::auth::{build_verifier, AuthSettings, TokenVerifier, VerifierMode, VerifyError};
use serde_json::{json, Value};

use crate::support::{now, FakeAs, RS_CLIENT_ID, RS_CLIENT_SECRET};

const RESOURCE: &str = "http://127.0.0.1:3000/mcp";

fn jwks_settings(fake: &FakeAs) -> AuthSettings {
    AuthSettings {
        issuer: fake.issuer(),
        ..Default::default()
    }
}

fn introspection_settings(fake: &FakeAs) -> AuthSettings {
    AuthSettings {
        issuer: fake.issuer(),
        mode: VerifierMode::Introspection,
        client_id: RS_CLIENT_ID.into(),
        client_secret: shared::Secret::new(RS_CLIENT_SECRET),
        ..Default::default()
    }
}

async fn build(settings: AuthSettings) -> Arc<dyn TokenVerifier> {
    build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .expect("verifier builds")
        .verifier
}

fn claims_with(fake: &FakeAs, key: &str, value: Value) -> Value {
    let mut claims = fake.claims("alice", "mcp:read", RESOURCE);
    claims[key] = value;
    claims
}

fn header(kid: Option<String>, typ: Option<&str>, alg: Algorithm) -> Header {
    let mut h = Header::new(alg);
    h.kid = kid;
    h.typ = typ.map(str::to_string);
    h
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn fake_as_serves_metadata_and_jwks() {
    let fake = FakeAs::start().await;
    let http = reqwest::Client::new();
    let meta: Value = http
        .get(fake.metadata_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], fake.issuer());
    let jwks: Value = http
        .get(fake.jwks_uri())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], fake.kid());
    assert_eq!(fake.jwks_hits(), 1);
}

#[tokio::test]
async fn valid_token_is_accepted_and_then_served_from_the_cache() {
    let fake = FakeAs::start().await;
    let built = build_verifier(&jwks_settings(&fake), RESOURCE, reqwest::Client::new())
        .await
        .unwrap();
    let verifier = built.verifier;
    assert_eq!(built.metadata.as_ref().unwrap().issuer, fake.issuer());
    assert_eq!(verifier.mode(), "jwks");
    assert!(verifier.is_ready());
    assert_eq!(verifier.key_ids(), vec![fake.kid()]);
    assert_eq!(fake.jwks_hits(), 1, "keys are loaded once at startup");

    let mut claims = fake.claims("u-1", "mcp:read openid", RESOURCE);
    claims["name"] = "Alice A.".into();
    claims["email"] = "alice@example.com".into();
    let token = fake.mint(claims.clone());
    assert!(verifier.cached(&token).is_none());
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p.subject, "u-1");
    assert_eq!(p.username.as_deref(), Some("u-1"));
    assert_eq!(p.name.as_deref(), Some("Alice A."));
    assert_eq!(p.email.as_deref(), Some("alice@example.com"));
    assert_eq!(p.roles, vec!["user"]);
    assert_eq!(p.client_id.as_deref(), Some("test-client"));
    assert!(p.scopes.grants("mcp:read") && !p.scopes.grants("mcp:admin"));
    assert_eq!(p.audience, vec![RESOURCE]);
    assert_eq!(p.issuer, fake.issuer());
    assert_eq!(p.expires_at, claims["exp"].as_i64().unwrap());
    assert_eq!(p.token_id.as_deref(), claims["jti"].as_str());

    // Second time: the cache answers, identical principal, no AS traffic.
    let cached = verifier
        .cached(&token)
        .expect("cached after the first verify");
    assert_eq!(*cached, p);
    assert_eq!(verifier.verify(&token).await.unwrap(), p);
    assert_eq!(fake.jwks_hits(), 1);
}

#[tokio::test]
async fn time_issuer_and_audience_failures() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    let t = now();

    let expired = fake.mint(claims_with(&fake, "exp", json!(t - 120)));
    assert_eq!(
        verifier.verify(&expired).await.unwrap_err(),
        VerifyError::Expired
    );
    let within_leeway = fake.mint(claims_with(&fake, "exp", json!(t - 30)));
    assert!(verifier.verify(&within_leeway).await.is_ok(), "60 s leeway");

    let early = fake.mint(claims_with(&fake, "nbf", json!(t + 300)));
    assert_eq!(
        verifier.verify(&early).await.unwrap_err(),
        VerifyError::NotYetValid
    );

    let other_iss = fake.mint(claims_with(&fake, "iss", json!("http://evil.example")));
    assert_eq!(
        verifier.verify(&other_iss).await.unwrap_err(),
        VerifyError::WrongIssuer
    );

    let other_aud = fake.token("alice", "mcp:read", "http://127.0.0.1:3000/other");
    assert_eq!(
        verifier.verify(&other_aud).await.unwrap_err(),
        VerifyError::WrongAudience
    );
    let issuer_aud = fake.token("alice", "auth:admin", &fake.issuer());
    assert_eq!(
        verifier.verify(&issuer_aud).await.unwrap_err(),
        VerifyError::WrongAudience
    );

    let array_aud = fake.mint(claims_with(
        &fake,
        "aud",
        json!(["https://other.example", format!("{RESOURCE}/")]),
    ));
    assert!(
        verifier.verify(&array_aud).await.is_ok(),
        "aud array with a trailing slash"
    );
}

#[tokio::test]
async fn configured_audiences_replace_the_resource() {
    let fake = FakeAs::start().await;
    let settings = AuthSettings {
        audiences: vec!["api://mcp-demo".into()],
        ..jwks_settings(&fake)
    };
    let verifier = build(settings).await;
    assert!(verifier
        .verify(&fake.token("a", "mcp:read", "api://mcp-demo/"))
        .await
        .is_ok());
    assert_eq!(
        verifier
            .verify(&fake.token("a", "mcp:read", RESOURCE))
            .await
            .unwrap_err(),
        VerifyError::WrongAudience
    );
}

#[tokio::test]
async fn algorithm_attacks_are_refused() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    let claims = fake.claims("mallory", "mcp:admin", RESOURCE);

    let none = fake.unsigned(claims.clone());
    assert_eq!(
        verifier.verify(&none).await.unwrap_err(),
        VerifyError::DisallowedAlgorithm
    );

    let confused = fake.hs256_with_public_key(claims.clone());
    assert_eq!(
        verifier.verify(&confused).await.unwrap_err(),
        VerifyError::DisallowedAlgorithm
    );

    // Header claims RS256 (allowed) but the kid names an EC key: the key does not fit.
    let lying = fake.mint_with_header(
        header(Some(fake.kid()), Some("at+jwt"), Algorithm::RS256),
        claims.clone(),
    );
    assert_eq!(
        verifier.verify(&lying).await.unwrap_err(),
        VerifyError::DisallowedAlgorithm
    );

    // ES384 is not in the default allow-list.
    let es384 = fake.mint_with_header(
        header(Some(fake.kid()), Some("at+jwt"), Algorithm::ES384),
        claims.clone(),
    );
    assert_eq!(
        verifier.verify(&es384).await.unwrap_err(),
        VerifyError::DisallowedAlgorithm
    );

    // The honest ES256 token with the same claims is fine.
    assert!(verifier.verify(&fake.mint(claims)).await.is_ok());
}

#[tokio::test]
async fn tampered_tokens_fail_the_signature_check() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    let token = fake.token("alice", "mcp:read", RESOURCE);
    let parts: Vec<&str> = token.split('.').collect();

    // Payload swapped for one granting more, original signature kept.
    let forged = fake.mint(fake.claims("alice", "mcp:read mcp:admin", RESOURCE));
    let forged_payload = forged.split('.').nth(1).unwrap();
    let tampered_payload = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(
        verifier.verify(&tampered_payload).await.unwrap_err(),
        VerifyError::BadSignature
    );

    // One signature character changed (in the middle, so the base64 stays canonical).
    let mut sig: Vec<char> = parts[2].chars().collect();
    let mid = sig.len() / 2;
    sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
    let sig: String = sig.into_iter().collect();
    let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], sig);
    assert_eq!(
        verifier.verify(&tampered_sig).await.unwrap_err(),
        VerifyError::BadSignature
    );

    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(
        verifier.verify(&stripped).await.unwrap_err(),
        VerifyError::BadSignature
    );

    for garbage in ["", "abc", "a.b.c", "a.b.c.d", &"x".repeat(20_000)] {
        assert_eq!(
            verifier.verify(garbage).await.unwrap_err(),
            VerifyError::Malformed,
            "{garbage:.20}"
        );
    }

    // The genuine token still verifies (the failures did not poison anything).
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn required_typ_is_enforced_unless_switched_off() {
    let fake = FakeAs::start().await;
    let claims = fake.claims("alice", "mcp:read", RESOURCE);
    let jwt_typ = fake.mint_with_header(
        header(Some(fake.kid()), Some("JWT"), Algorithm::ES256),
        claims.clone(),
    );
    let no_typ = fake.mint_with_header(
        header(Some(fake.kid()), None, Algorithm::ES256),
        claims.clone(),
    );
    let long_typ = fake.mint_with_header(
        header(
            Some(fake.kid()),
            Some("application/AT+JWT"),
            Algorithm::ES256,
        ),
        claims.clone(),
    );

    let lenient = build(AuthSettings {
        require_at_jwt_typ: false,
        ..jwks_settings(&fake)
    })
    .await;
    assert!(
        lenient.verify(&jwt_typ).await.is_ok(),
        "typ not checked when switched off"
    );
    assert!(lenient.verify(&no_typ).await.is_ok());

    let strict = build(AuthSettings {
        required_typ: Some("at+jwt".into()),
        ..jwks_settings(&fake)
    })
    .await;
    assert_eq!(
        strict.verify(&jwt_typ).await.unwrap_err(),
        VerifyError::WrongType
    );
    assert_eq!(
        strict.verify(&no_typ).await.unwrap_err(),
        VerifyError::WrongType
    );
    assert!(strict.verify(&long_typ).await.is_ok());
    assert!(strict.verify(&fake.mint(claims)).await.is_ok());
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    assert_eq!(fake.jwks_hits(), 1);
    let claims = fake.claims("alice", "mcp:read", RESOURCE);

    // Ten concurrent requests with an unknown kid: one refetch (single-flight).
    let unknown = fake.mint_with_header(
        header(Some("no-such-kid".into()), Some("at+jwt"), Algorithm::ES256),
        claims.clone(),
    );
    let results = futures::future::join_all((0..10).map(|_| verifier.verify(&unknown))).await;
    for r in results {
        assert_eq!(r.unwrap_err(), VerifyError::UnknownKey);
    }
    assert_eq!(
        fake.jwks_hits(),
        2,
        "exactly one refetch for the unknown kid"
    );

    // Within the 30 s interval another unknown kid causes no fetch.
    let other = fake.mint_with_header(
        header(Some("another-kid".into()), Some("at+jwt"), Algorithm::ES256),
        claims,
    );
    assert_eq!(
        verifier.verify(&other).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(fake.jwks_hits(), 2);
}

#[tokio::test]
async fn key_rotation_is_picked_up_through_the_unknown_kid_refetch() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    let old_kid = fake.kid();
    let before = fake.token("alice", "mcp:read", RESOURCE);
    let before_uncached = fake.token("bob", "mcp:read", RESOURCE);
    assert!(verifier.verify(&before).await.is_ok());

    fake.rotate_key();
    assert_ne!(fake.kid(), old_kid);
    let after = fake.token("alice", "mcp:read", RESOURCE);
    assert!(
        verifier.verify(&after).await.is_ok(),
        "new kid fetched on demand"
    );
    assert_eq!(fake.jwks_hits(), 2);
    assert_eq!(verifier.key_ids(), vec![fake.kid()]);

    // A token verified before the rotation stays valid from the cache until it expires;
    // one never seen, signed by the retired key, is now refused (and the refetch is
    // rate-limited, so no new AS call).
    assert!(verifier.verify(&before).await.is_ok());
    assert_eq!(
        verifier.verify(&before_uncached).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert_eq!(fake.jwks_hits(), 2);
}

#[tokio::test]
async fn jwks_outage_keeps_verifying_with_cached_keys() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    fake.set_down(true);
    // A token never seen before: full signature check with the cached key, no AS call.
    let fresh = fake.token("alice", "mcp:read", RESOURCE);
    assert!(verifier.verify(&fresh).await.is_ok());
    assert_eq!(fake.jwks_hits(), 1);
    // An unknown kid during the outage: the refetch fails, the answer is UnknownKey (401),
    // not Unavailable, since keys are loaded.
    let unknown = fake.mint_with_header(
        header(
            Some("rotated-while-down".into()),
            Some("at+jwt"),
            Algorithm::ES256,
        ),
        fake.claims("alice", "mcp:read", RESOURCE),
    );
    assert_eq!(
        verifier.verify(&unknown).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert!(verifier.is_ready());
    assert!(verifier
        .verify(&fake.token("carol", "mcp:read", RESOURCE))
        .await
        .is_ok());
}

#[tokio::test]
async fn explicit_jwks_uri_starts_without_keys_and_loads_them_later() {
    let fake = FakeAs::start().await;
    fake.set_down(true);
    let settings = AuthSettings {
        jwks_uri: Some(fake.jwks_uri()),
        jwks_min_refetch_interval_secs: 0,
        ..jwks_settings(&fake)
    };
    let built = build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .unwrap();
    let verifier = built.verifier;
    assert!(!verifier.is_ready());
    let token = fake.token("alice", "mcp:read", RESOURCE);
    assert!(matches!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));

    fake.set_down(false);
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.is_ready());
}

#[tokio::test]
async fn explicit_jwks_uri_works_without_metadata() {
    let fake = FakeAs::start().await;
    let issuer = format!("http://127.0.0.1:{}", closed_port());
    let settings = AuthSettings {
        issuer: issuer.clone(),
        jwks_uri: Some(fake.jwks_uri()),
        ..Default::default()
    };
    let built = build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .unwrap();
    assert!(built.metadata.is_none());
    let token = fake.mint(claims_with(&fake, "iss", json!(issuer)));
    assert!(built.verifier.verify(&token).await.is_ok());
    // Tokens from the fake's own issuer are not this deployment's.
    let other = fake.token("alice", "mcp:read", RESOURCE);
    assert_eq!(
        built.verifier.verify(&other).await.unwrap_err(),
        VerifyError::WrongIssuer
    );
}

#[tokio::test]
async fn startup_refuses_without_metadata_or_with_a_foreign_issuer() {
    let issuer = format!("http://127.0.0.1:{}", closed_port());
    let settings = AuthSettings {
        issuer,
        startup_retries: 2,
        startup_retry_delay_ms: 10,
        ..Default::default()
    };
    let err = build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot fetch AS metadata from "), "{msg}");
    assert!(
        msg.contains("/.well-known/oauth-authorization-server"),
        "{msg}"
    );

    let fake = FakeAs::start().await;
    let settings = AuthSettings {
        issuer: "http://127.0.0.1:1".into(),
        discovery_url: Some(fake.metadata_url()),
        ..Default::default()
    };
    let err = build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.starts_with("metadata issuer mismatch"), "{msg}");
    assert!(msg.contains(&fake.issuer()), "{msg}");

    let settings = AuthSettings {
        algorithms: vec!["HS256".into()],
        ..jwks_settings(&fake)
    };
    let err = build_verifier(&settings, RESOURCE, reqwest::Client::new())
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("auth.algorithms"), "{err}");
}

#[tokio::test]
async fn deny_token_id_refuses_and_evicts() {
    let fake = FakeAs::start().await;
    let verifier = build(jwks_settings(&fake)).await;
    let claims = fake.claims("alice", "mcp:read", RESOURCE);
    let jti = claims["jti"].as_str().unwrap().to_string();
    let token = fake.mint(claims.clone());
    let other = fake.token("bob", "mcp:read", RESOURCE);
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&other).await.is_ok());

    verifier.deny_token_id(&jti, claims["exp"].as_i64().unwrap());
    assert!(verifier.cached(&token).is_none(), "evicted from the cache");
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::Inactive
    );
    assert!(
        verifier.verify(&other).await.is_ok(),
        "other tokens unaffected"
    );
}

#[tokio::test]
async fn introspection_mode_accepts_caches_and_refuses() {
    let fake = FakeAs::start().await;
    let built = build_verifier(
        &introspection_settings(&fake),
        RESOURCE,
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let verifier = built.verifier;
    assert_eq!(verifier.mode(), "introspection");
    assert!(verifier.is_ready());
    assert!(verifier.key_ids().is_empty());
    assert_eq!(fake.jwks_hits(), 0, "introspection mode never fetches keys");

    let token = fake.token("alice", "mcp:read", RESOURCE);
    let p = verifier.verify(&token).await.unwrap();
    assert_eq!(p.subject, "alice");
    assert_eq!(p.username.as_deref(), Some("alice"));
    assert!(p.scopes.grants("mcp:read"));
    assert_eq!(fake.introspection_hits(), 1);
    assert_eq!(verifier.verify(&token).await.unwrap(), p);
    assert!(verifier.cached(&token).is_some());
    assert_eq!(
        fake.introspection_hits(),
        1,
        "second verify is served from the cache"
    );

    // Cached results survive an AS outage; new tokens cannot be decided.
    fake.set_down(true);
    assert!(verifier.verify(&token).await.is_ok());
    let fresh = fake.token("bob", "mcp:read", RESOURCE);
    assert!(matches!(
        verifier.verify(&fresh).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));
    fake.set_down(false);

    let revoked = fake.token("carol", "mcp:read", RESOURCE);
    fake.revoke(&revoked);
    assert_eq!(
        verifier.verify(&revoked).await.unwrap_err(),
        VerifyError::Inactive
    );
    assert_eq!(
        verifier.verify("opaque-unknown-token").await.unwrap_err(),
        VerifyError::Inactive
    );

    let wrong_aud = fake.token("alice", "mcp:read", "http://127.0.0.1:9999/mcp");
    assert_eq!(
        verifier.verify(&wrong_aud).await.unwrap_err(),
        VerifyError::WrongAudience
    );

    // An active refresh token, as some ASes answer: refused by token_type…
    let t = now();
    fake.set_introspection_answer(
        "refresh-1",
        json!({"active": true, "token_type": "refresh_token", "sub": "alice", "aud": RESOURCE,
               "iss": fake.issuer(), "exp": t + 3600, "scope": "mcp:read"}),
    );
    assert_eq!(
        verifier.verify("refresh-1").await.unwrap_err(),
        VerifyError::WrongType
    );
    // …and, without token_type, by the missing audience.
    fake.set_introspection_answer(
        "refresh-2",
        json!({"active": true, "sub": "alice", "exp": t + 3600, "scope": "mcp:read", "client_id": "c"}),
    );
    assert_eq!(
        verifier.verify("refresh-2").await.unwrap_err(),
        VerifyError::WrongAudience
    );
    fake.set_introspection_answer(
        "foreign",
        json!({"active": true, "sub": "alice", "aud": RESOURCE, "iss": "http://evil.example", "exp": t + 60}),
    );
    assert_eq!(
        verifier.verify("foreign").await.unwrap_err(),
        VerifyError::WrongIssuer
    );
    fake.set_introspection_answer(
        "stale",
        json!({"active": true, "sub": "alice", "aud": RESOURCE, "exp": t - 3600}),
    );
    assert_eq!(
        verifier.verify("stale").await.unwrap_err(),
        VerifyError::Expired
    );

    // deny_token_id evicts the cached introspection result.
    verifier.deny_token_id(p.token_id.as_deref().unwrap(), p.expires_at);
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::Inactive
    );
}

#[tokio::test]
async fn introspection_cache_ttl_and_credentials() {
    let fake = FakeAs::start().await;
    let no_cache = build(AuthSettings {
        introspection_cache_max_ttl_secs: 0,
        ..introspection_settings(&fake)
    })
    .await;
    let token = fake.token("alice", "mcp:read", RESOURCE);
    assert!(no_cache.verify(&token).await.is_ok());
    assert!(no_cache.verify(&token).await.is_ok());
    assert_eq!(fake.introspection_hits(), 2, "max TTL 0 disables the cache");
    // Revocation at the AS is seen immediately without a cache.
    fake.revoke(&token);
    assert_eq!(
        no_cache.verify(&token).await.unwrap_err(),
        VerifyError::Inactive
    );

    let bad_creds = build(AuthSettings {
        client_secret: shared::Secret::new("wrong"),
        ..introspection_settings(&fake)
    })
    .await;
    let token = fake.token("alice", "mcp:read", RESOURCE);
    let err = bad_creds.verify(&token).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::Unavailable(ref m) if m.contains("401")),
        "{err:?}"
    );

    let explicit = build(AuthSettings {
        introspection_endpoint: Some(fake.introspection_endpoint()),
        ..introspection_settings(&fake)
    })
    .await;
    assert!(explicit.verify(&token).await.is_ok());
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let fake = FakeAs::start().await;
    let settings = AuthSettings {
        jwks_refresh_interval_secs: 1,
        ..jwks_settings(&fake)
    };
    let verifier = build(settings).await;
    let old_kid = fake.kid();
    let old_a = fake.token("alice", "mcp:read", RESOURCE);
    let old_b = fake.token("bob", "mcp:read", RESOURCE);
    fake.rotate_key();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // The keys are stale: this request is still answered with the cached key, and it
    // starts a reload without waiting for it.
    assert!(verifier.verify(&old_a).await.is_ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while verifier.key_ids() == vec![old_kid.clone()] {
        assert!(
            std::time::Instant::now() < deadline,
            "background refresh did not happen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(verifier.key_ids(), vec![fake.kid()]);
    assert_eq!(fake.jwks_hits(), 2);
    // The withdrawn key is no longer trusted for tokens not seen before.
    assert_eq!(
        verifier.verify(&old_b).await.unwrap_err(),
        VerifyError::UnknownKey
    );
    assert!(verifier
        .verify(&fake.token("carol", "mcp:read", RESOURCE))
        .await
        .is_ok());
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration() {
    let fake = FakeAs::start().await;
    fake.set_oidc_only(true);
    let built = build_verifier(&jwks_settings(&fake), RESOURCE, reqwest::Client::new())
        .await
        .unwrap();
    let metadata = built.metadata.expect("metadata from OIDC discovery");
    assert_eq!(metadata.issuer, fake.issuer());
    assert_eq!(metadata.jwks_uri.as_deref(), Some(fake.jwks_uri().as_str()));
    assert!(built
        .verifier
        .verify(&fake.token("alice", "mcp:read", RESOURCE))
        .await
        .is_ok());
}

#[tokio::test]
async fn eddsa_tokens_verify_and_the_allow_list_applies() {
    let fake = FakeAs::start().await;
    let claims = fake.claims("alice", "mcp:read", RESOURCE);
    let eddsa = fake.mint_eddsa(claims.clone());
    let verifier = build(jwks_settings(&fake)).await;
    assert_eq!(
        verifier.key_ids().len(),
        2,
        "ES256 and Ed25519 keys published"
    );
    assert_eq!(verifier.verify(&eddsa).await.unwrap().subject, "alice");

    let es256_only = build(AuthSettings {
        algorithms: vec!["ES256".into()],
        ..jwks_settings(&fake)
    })
    .await;
    assert_eq!(
        es256_only.verify(&eddsa).await.unwrap_err(),
        VerifyError::DisallowedAlgorithm
    );
    assert!(es256_only.verify(&fake.mint(claims)).await.is_ok());
}
