//! Criterion micro-benchmarks of the hot pure functions:
//!
//! - token verification in mcp-server's `JwksVerifier`: cache hit (the path of every
//!   request on a known token) and cache miss (full ES256 check + claims), next to the
//!   bare `jsonwebtoken` ES256 decode as the reference, and the cache alone;
//! - PKCE S256 check (`auth_server::domain::pkce::verify`);
//! - scope check (`shared::ScopeSet::grants_all`);
//! - ES256 JWT signing: `jsonwebtoken` with an aws-lc-rs key, and auth-server's own
//!   `mint_access_token`;
//! - metrics: what mcp-server records per authenticated request (HTTP counter, JSON-RPC
//!   method counter, verification histogram), each lookup alone, and a plain atomic add as
//!   the floor.
//! - mcp-server's bridge on the benchmark's `tools/call`: the one parse of the body
//!   (scope-policy and direct-path inputs), and the direct answer through rmcp's tool
//!   route; the JOSE header decode of a cache miss.
//!
//! `cargo bench -p bench --bench hot_paths` (add `-- --quick` for a short run).
//!
//! `JwksVerifier` only loads keys over HTTP, so the benchmark serves the JWKS from a
//! tiny HTTP responder on 127.0.0.1 for the one `load_keys` call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use auth_server::domain::{keys, pkce, tokens};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use mcp_server::auth::cache::{token_key, TokenCache};
use mcp_server::auth::claims::ClaimRules;
use mcp_server::auth::jwks::{JwksOptions, JwksVerifier};
use mcp_server::auth::{Principal, TokenVerifier};
use mcp_server::direct::{self, DirectCall, DirectTools};
use mcp_server::inspection::Body;
use mcp_server::tools::{McpTools, ToolContext};
use mcp_server::Caller;
use shared::{AccessTokenClaims, Audience, ScopeSet};

const ISSUER: &str = "http://127.0.0.1:3001";
const RESOURCE: &str = "http://127.0.0.1:3000/mcp";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(jti: &str) -> AccessTokenClaims {
    let now = now();
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: Audience::One(RESOURCE.into()),
        exp: now + 3600,
        iat: now,
        nbf: Some(now),
        jti: jti.into(),
        sid: None,
        client_id: "client-1".into(),
        scope: "mcp:read openid profile".into(),
        preferred_username: Some("demo".into()),
        name: Some("Demo User".into()),
        email: None,
        roles: Some(vec!["user".into()]),
    }
}

/// Serves `body` as `application/json` to every connection, forever (loopback only).
fn serve_json(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    format!("http://{addr}/jwks.json")
}

struct Fixture {
    ring: keys::KeyRing,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let now = now();
    let ring = keys::KeyRing::from_stored(&[keys::generate(now).unwrap()], now, 900).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    Fixture { ring, runtime }
}

fn verifier(fx: &Fixture, cache_entries: usize) -> JwksVerifier {
    let jwks_url = serve_json(serde_json::to_string(&fx.ring.jwks).unwrap());
    let v = JwksVerifier::new(
        jwks_url,
        reqwest::Client::new(),
        ClaimRules::new(ISSUER, vec![RESOURCE.to_string()], 60),
        JwksOptions {
            algorithms: vec![Algorithm::ES256],
            required_typ: Some("at+jwt".into()),
            min_refetch_interval: Duration::from_secs(30),
            refresh_interval: None,
            cache_max_entries: cache_entries,
        },
    );
    let n = fx.runtime.block_on(v.load_keys()).unwrap();
    assert_eq!(n, 1);
    v
}

/// What the verifier makes of `claims("jti-a")`.
fn principal() -> Principal {
    Principal {
        subject: "user-1".into(),
        username: Some("demo".into()),
        name: None,
        email: None,
        roles: vec!["user".into()],
        client_id: Some("client-1".into()),
        scopes: ScopeSet::parse("mcp:read").unwrap(),
        audience: vec![RESOURCE.into()],
        issuer: ISSUER.into(),
        expires_at: now() + 3600,
        token_id: Some("jti-a".into()),
        grant_id: None,
    }
}

fn bench_verify(c: &mut Criterion) {
    let fx = fixture();
    let token_a = tokens::mint_access_token(&fx.ring, &claims("jti-a")).unwrap();
    let token_b = tokens::mint_access_token(&fx.ring, &claims("jti-b")).unwrap();
    let mut g = c.benchmark_group("verify");

    // Cache hit: what every request on a known token costs in the verifier.
    let hit = verifier(&fx, 10_000);
    let p = fx.runtime.block_on(hit.verify(&token_a)).unwrap();
    assert_eq!(p.subject, "user-1");
    g.bench_function("jwks_verifier_cache_hit", |b| {
        b.iter(|| {
            fx.runtime
                .block_on(hit.verify(black_box(&token_a)))
                .unwrap()
        })
    });
    g.bench_function("jwks_verifier_cached_lookup", |b| {
        b.iter(|| hit.cached(black_box(&token_a)).unwrap())
    });

    // Cache miss: a cache bounded to one entry and two tokens presented in turn, so
    // every call is a full verification (signature, claims, principal, admit).
    let miss = verifier(&fx, 1);
    let mut flip = false;
    g.bench_function("jwks_verifier_cache_miss_es256", |b| {
        b.iter(|| {
            flip = !flip;
            let t = if flip { &token_a } else { &token_b };
            fx.runtime.block_on(miss.verify(black_box(t))).unwrap()
        })
    });

    // Reference: one bare jsonwebtoken ES256 decode into the claims struct (what the
    // baseline server does per request).
    let key = fx.ring.verifying.values().next().unwrap().clone();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[RESOURCE]);
    g.bench_function("jsonwebtoken_es256_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<AccessTokenClaims>(black_box(&token_a), &key, &validation)
                .unwrap()
        })
    });

    // The cache alone: SHA-256 of the token + LRU lookup + Arc clone.
    let cache = TokenCache::new(10_000);
    let principal = Arc::new(principal());
    cache
        .admit(token_key(&token_a), principal, now() + 3600, now())
        .unwrap();
    g.bench_function("token_cache_sha256_and_get", |b| {
        b.iter(|| cache.get(&token_key(black_box(&token_a)), now()).unwrap())
    });
    g.finish();
}

fn bench_pkce(c: &mut Criterion) {
    let verifier = shared::secret::random_token(32);
    let challenge = shared::secret::sha256_b64url(&verifier);
    assert!(pkce::verify(Some(&verifier), &challenge).is_ok());
    c.bench_function("pkce/verify_s256", |b| {
        b.iter(|| pkce::verify(Some(black_box(&verifier)), black_box(&challenge)).unwrap())
    });
}

fn bench_scopes(c: &mut Criterion) {
    let granted = ScopeSet::parse("mcp:admin openid profile email offline_access").unwrap();
    let needed = ScopeSet::parse("mcp:read").unwrap();
    assert!(granted.grants_all(&needed));
    c.bench_function("scope/grants_all_hierarchy", |b| {
        b.iter(|| black_box(&granted).grants_all(black_box(&needed)))
    });
    c.bench_function("scope/parse_5", |b| {
        b.iter(|| {
            ScopeSet::parse(black_box("mcp:admin openid profile email offline_access")).unwrap()
        })
    });
}

fn bench_signing(c: &mut Criterion) {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let claims = claims("jti-sign");
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("kid-1".into());
    let mut g = c.benchmark_group("sign");
    g.bench_function("jsonwebtoken_es256_aws_lc_rs", |b| {
        b.iter(|| jsonwebtoken::encode(black_box(&header), black_box(&claims), &key).unwrap())
    });
    let fx = fixture();
    g.bench_function("auth_server_mint_access_token", |b| {
        b.iter(|| tokens::mint_access_token(&fx.ring, black_box(&claims)).unwrap())
    });
    g.finish();
}

fn bench_metrics(c: &mut Criterion) {
    let metrics = mcp_server::metrics::Metrics::new().unwrap();
    let post = actix_web::http::Method::POST;
    let elapsed = Duration::from_micros(3);
    let mut g = c.benchmark_group("metrics");
    g.bench_function("mcp_request", |b| {
        b.iter(|| {
            let method = shared::metrics::method_label(black_box(&post));
            metrics.http_requests.inc(&[method, "200"]);
            metrics.count_method(black_box("tools/call"));
            metrics
                .verify_latency
                .observe_duration(&["cached"], black_box(elapsed));
        })
    });
    g.bench_function("counter_two_labels", |b| {
        b.iter(|| metrics.http_requests.inc(black_box(&["POST", "200"])))
    });
    let handle = metrics.http_requests.with_labels(&["POST", "200"]).unwrap();
    g.bench_function("counter_resolved_handle", |b| {
        b.iter(|| black_box(&handle).inc())
    });
    g.bench_function("histogram_one_label", |b| {
        b.iter(|| {
            metrics
                .verify_latency
                .observe_duration(black_box(&["cached"]), black_box(elapsed))
        })
    });
    let atomic = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("atomic_add", |b| {
        b.iter(|| black_box(&atomic).fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    });
    g.finish();
}

/// The `tools/call` the session-mode load sends (docs/benchmarks.md).
const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","arguments":{"name":"bench"}}}"#;

fn plain_call(body: &[u8]) -> DirectCall<'_> {
    match Body::parse(body).unwrap() {
        Body::Single(message) => DirectCall::from_message(message).unwrap(),
        Body::Batch(_) => panic!("a single message"),
    }
}

fn bench_bridge(c: &mut Criterion) {
    let fx = fixture();
    let mut g = c.benchmark_group("bridge");
    g.bench_function("inspect_plain_call", |b| {
        b.iter(|| plain_call(black_box(CALL)))
    });

    let tools = McpTools::new(Arc::new(ToolContext {
        verifier: Arc::new(verifier(&fx, 10)),
        metadata: None,
        issuer: ISSUER.into(),
        resource: RESOURCE.into(),
        resource_metadata_url: format!("{RESOURCE}/.well-known"),
        data: mcp_server::data::ProtectedData::parse("{}").unwrap(),
        admin: None,
        policy: Arc::new(mcp_server::policy::Policy::builtin().clone()),
    }));
    let direct_tools = {
        let _runtime = fx.runtime.enter();
        DirectTools::new(tools)
    };
    let caller = Caller(Some(Arc::new(principal())));
    // Parse, run the tool through its rmcp route, serialize the JSON-RPC answer.
    g.bench_function("direct_answer_hello_world", |b| {
        b.iter(|| {
            let call = plain_call(black_box(CALL));
            let outcome = fx
                .runtime
                .block_on(direct_tools.call(
                    call.id.clone(),
                    call.name,
                    call.arguments,
                    caller.clone(),
                ))
                .unwrap();
            direct::message(&call.id, outcome).unwrap()
        })
    });
    g.finish();

    let token = tokens::mint_access_token(&fx.ring, &claims("jti-h")).unwrap();
    c.bench_function("verify/jose_header", |b| {
        b.iter(|| jsonwebtoken::decode_header(black_box(&token)).unwrap())
    });
}

criterion_group!(
    benches,
    bench_verify,
    bench_pkce,
    bench_scopes,
    bench_signing,
    bench_metrics,
    bench_bridge
);
criterion_main!(benches);
