//! Bearer tokens at mcp-server: the compact JWS split, the JOSE header (alg, kid,
//! typ, crit), the key lookup and signature check, and the claim rules (iss, aud,
//! exp, nbf, sub, scopes), through `JwksVerifier::verify` with a fixed key set.
//!
//! A random token never carries a valid signature, so most inputs are signed here
//! with the key the verifier trusts, which lets the fuzzer reach the claim rules:
//! - first byte even: the rest is the token, verified as sent;
//! - first byte odd: the rest is `header JSON \n claims JSON` (or the claims alone,
//!   under an `EdDSA`/`at+jwt` header with the trusted kid), encoded and signed.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::split_line;
use mcp_server::auth::claims::{check_typ, ClaimRules};
use mcp_server::auth::jwks::{parse_jwks, JwksOptions, JwksVerifier};
use mcp_server::auth::{unix_now, TokenVerifier, VerifyError, MAX_TOKEN_BYTES};
use shared::Audience;

const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const LEEWAY_SECS: i64 = 60;
const KID: &str = "fuzz-ed25519";
/// A fixed key, so that a crash artefact reproduces in every process.
const SEED: [u8; 32] = [0x5e; 32];

struct Fixture {
    verifier: JwksVerifier,
    rules: ClaimRules,
    signing_key: EncodingKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let pair = Ed25519KeyPair::from_seed_unchecked(&SEED).expect("Ed25519 seed");
    let pkcs8 = pair.to_pkcs8().expect("PKCS#8 of the fixed key");
    let jwks = serde_json::json!({"keys": [
        {
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        },
        // Not a point on the curve: the verifier must refuse, never fall over.
        {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "ec-decoy", "x": "AAAA", "y": "AAAA"},
        {"kty": "RSA", "alg": "RS256", "kid": "rsa-decoy", "n": "AQAB", "e": "AQAB"},
    ]});
    let keys = parse_jwks(&jwks);
    assert_eq!(keys.len(), 3, "the fixture's JWKS");
    let rules = ClaimRules::new(ISSUER, vec![AUDIENCE.to_string()], LEEWAY_SECS as u64);
    let options = JwksOptions {
        algorithms: vec![Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA],
        required_typ: Some(shared::claims::ACCESS_TOKEN_TYP.to_string()),
        // Never fetch: an unknown kid stays unknown.
        min_refetch_interval: Duration::from_secs(365 * 24 * 3600),
        refresh_interval: None,
        cache_max_entries: 4096,
    };
    let verifier = JwksVerifier::with_keys(
        "https://as.example.com/jwks".to_string(),
        reqwest::Client::new(),
        rules.clone(),
        options,
        keys,
    );
    Fixture {
        verifier,
        rules,
        signing_key: EncodingKey::from_ed_der(pkcs8.as_ref()),
    }
});

fn signed(header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &FIXTURE.signing_key, Algorithm::EdDSA)
            .expect("signing with the fixed key");
    format!("{message}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(token) => token.to_string(),
            Err(_) => return,
        }
    } else {
        match split_line(rest) {
            Some((header, claims)) => signed(header, claims),
            None => {
                let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#);
                signed(header.as_bytes(), rest)
            }
        }
    };
    let fixture = &*FIXTURE;
    let now = unix_now();
    let verdict = futures::executor::block_on(fixture.verifier.verify(&token));
    if token.len() > MAX_TOKEN_BYTES {
        assert_eq!(verdict, Err(VerifyError::Malformed));
        return;
    }
    let Ok(principal) = verdict else {
        return;
    };
    // Only our signing key can have signed it, under the header the rules demand.
    let header = jsonwebtoken::decode_header(&token).expect("an accepted token has a header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert!(header.crit.is_none());
    assert!(check_typ(header.typ.as_deref(), Some("at+jwt")).is_ok());
    assert!(header.kid.is_none() || header.kid.as_deref() == Some(KID));
    // The claim rules held.
    assert!(!principal.subject.is_empty());
    assert!(fixture.rules.issuer_matches(&principal.issuer));
    assert!(shared::resource::audience_matches(
        &Audience::Many(principal.audience.clone()),
        &[AUDIENCE.to_string()]
    ));
    assert!(principal.expires_at.saturating_add(LEEWAY_SECS) >= now);
    // A token accepted once is accepted alike from the cache while it is valid.
    if principal.expires_at > now.saturating_add(5) {
        let again = futures::executor::block_on(fixture.verifier.verify(&token));
        assert_eq!(again.as_ref(), Ok(&principal));
        if let Some(cached) = fixture.verifier.cached(&token) {
            assert_eq!(*cached, principal);
        }
    }
});
