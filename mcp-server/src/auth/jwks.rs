//! Local JWT verification with keys from the AS's JWKS.
//!
//! Keys are decoded once and cached per `kid`. An unknown `kid` triggers at most one
//! refetch per `jwks_min_refetch_interval_secs` (single-flight: concurrent requests
//! wait for the same fetch). While the AS is unreachable the cached keys keep
//! working; `Unavailable` only when there is no key at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header};

use super::cache::{token_key, TokenCache};
use super::claims::{check_alg, check_typ, ClaimRules, ClaimSource, RawClaims};
use super::discovery::get_json;
use super::upstream::{UpstreamHealth, UpstreamStatus};
use super::{unix_now, Principal, TokenVerifier, VerifyError, MAX_TOKEN_BYTES};

/// A decoded verification key.
pub struct CachedKey {
    pub kid: Option<String>,
    key: DecodingKey,
    family: AlgorithmFamily,
    curve: Option<EllipticCurve>,
    /// The JWK's `alg`, when it states one.
    alg: Option<Algorithm>,
}

impl CachedKey {
    /// Decodes one JWK; `None` for keys we never use (symmetric, encryption-only,
    /// unknown type or algorithm).
    pub fn from_jwk(jwk: &Jwk) -> Option<CachedKey> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let (family, curve) = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) => (AlgorithmFamily::Ec, Some(p.curve.clone())),
            AlgorithmParameters::OctetKeyPair(p) => (AlgorithmFamily::Ed, Some(p.curve.clone())),
            AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
            // `oct` keys are HMAC secrets: never a verification key for us.
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => Some(shared::jwk::signing_algorithm(a)?),
            None => None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(CachedKey {
            kid: jwk.common.key_id.clone(),
            key,
            family,
            curve,
            alg,
        })
    }

    /// Whether this key may verify a signature made with `alg`: right family (and
    /// curve), and the JWK's own `alg` when it names one.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        match alg {
            Algorithm::ES256 => {
                self.family == AlgorithmFamily::Ec && self.curve == Some(EllipticCurve::P256)
            }
            Algorithm::ES384 => {
                self.family == AlgorithmFamily::Ec && self.curve == Some(EllipticCurve::P384)
            }
            Algorithm::EdDSA => {
                self.family == AlgorithmFamily::Ed && self.curve == Some(EllipticCurve::Ed25519)
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.family == AlgorithmFamily::Rsa,
            _ => false,
        }
    }
}

/// Parses a JWKS document, skipping keys we cannot or must not use.
pub fn parse_jwks(doc: &serde_json::Value) -> Vec<Arc<CachedKey>> {
    let Some(keys) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| CachedKey::from_jwk(&jwk))
        .map(Arc::new)
        .collect()
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<CachedKey>>,
    /// When these keys were fetched (`None`: never).
    loaded_at: Option<Instant>,
}

enum Lookup {
    Found(Vec<Arc<CachedKey>>),
    /// The kid is known but the key does not fit the header's algorithm.
    Mismatch,
    Missing,
}

impl KeySet {
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if k.fits(alg) => Lookup::Found(vec![k.clone()]),
                Some(_) => Lookup::Mismatch,
                None => Lookup::Missing,
            },
            // No kid (some IdPs with a single key): every key that fits the algorithm.
            None => {
                let fitting: Vec<_> = self.keys.iter().filter(|k| k.fits(alg)).cloned().collect();
                if fitting.is_empty() {
                    Lookup::Missing
                } else {
                    Lookup::Found(fitting)
                }
            }
        }
    }
}

/// The signature of a compact JWS and the `header.payload` it signs.
struct Parts<'a> {
    signature: &'a str,
    message: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(VerifyError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let message = &token[..header.len() + 1 + payload.len()];
    Ok(Parts { signature, message })
}

/// The JOSE header of a compact JWS (already [`split`]), by jsonwebtoken. A header
/// that is JSON but does not fit jsonwebtoken's type names an algorithm it does not
/// know (`none`, `hs256`, ...): refused as such, like the algorithms it knows but we
/// do not accept.
fn jose_header(token: &str) -> Result<Header, VerifyError> {
    jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        ErrorKind::Json(json) if json.classify() == serde_json::error::Category::Data => {
            VerifyError::DisallowedAlgorithm
        }
        _ => VerifyError::Malformed,
    })
}

/// Tuning of a [`JwksVerifier`] (from the settings).
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// Accepted header algorithms (never `none`/`HS*`, see `claims::check_alg`).
    pub algorithms: Vec<Algorithm>,
    pub required_typ: Option<String>,
    /// An unknown kid refetches the JWKS at most once per this interval.
    pub min_refetch_interval: Duration,
    /// Keys older than this are refreshed in the background (so a key the AS
    /// withdrew stops being trusted); `None` = only on unknown kids.
    pub refresh_interval: Option<Duration>,
    pub cache_max_entries: usize,
}

struct Inner {
    jwks_uri: String,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped on every successful key load; lets waiters see that a fetch happened.
    generation: AtomicU64,
    /// Time of the last refetch attempt triggered by an unknown kid (single-flight lock).
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// Time of the last background refresh attempt.
    last_background: Mutex<Option<Instant>>,
    upstream: UpstreamHealth,
    options: JwksOptions,
    rules: ClaimRules,
    cache: TokenCache,
}

/// Verifies JWT access tokens locally with the AS's published keys.
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

impl Inner {
    fn key_set(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn load_keys(&self) -> Result<usize, String> {
        let loaded = self.fetch_keys().await;
        self.upstream.record(&loaded);
        loaded
    }

    async fn fetch_keys(&self) -> Result<usize, String> {
        let doc: serde_json::Value = get_json(&self.http, &self.jwks_uri).await?;
        let keys = parse_jwks(&doc);
        if keys.is_empty() {
            return Err("the JWKS holds no usable signing key".into());
        }
        let count = keys.len();
        let set = KeySet {
            keys,
            loaded_at: Some(Instant::now()),
        };
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(count)
    }

    /// Unknown kid: refetch unless another request just did, or the last attempt is
    /// younger than the minimum interval. Returns whether the key set may have changed.
    async fn refetch(&self, seen_generation: u64) -> bool {
        let mut last = self.last_refetch.lock().await;
        if self.generation.load(Ordering::SeqCst) != seen_generation {
            return true; // someone refetched while we waited
        }
        if last.is_some_and(|t| t.elapsed() < self.options.min_refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.load_keys().await {
            Ok(n) => {
                log::info!(
                    "reloaded {n} signing key(s) from {} after an unknown kid",
                    self.jwks_uri
                );
                true
            }
            Err(e) => {
                log::warn!("cannot refetch signing keys from {}: {e}", self.jwks_uri);
                false
            }
        }
    }

    /// Starts a background reload when the keys are older than the refresh interval
    /// (at most one attempt per max(min refetch interval, 1 s)). Never delays the caller.
    fn maybe_refresh_in_background(self: &Arc<Self>, set: &KeySet) {
        let (Some(interval), Some(loaded_at)) = (self.options.refresh_interval, set.loaded_at)
        else {
            return;
        };
        if loaded_at.elapsed() < interval {
            return;
        }
        self.reload_in_background();
    }

    /// Reloads the keys unless the AS was asked within the minimum refetch
    /// interval: a probe that finds the AS down keeps the cached keys.
    fn probe_in_background(self: &Arc<Self>) {
        if !self
            .upstream
            .asked_within(self.options.min_refetch_interval)
        {
            self.reload_in_background();
        }
    }

    /// Starts a key reload (at most one attempt per max(min refetch interval, 1 s)).
    fn reload_in_background(self: &Arc<Self>) {
        {
            let mut last = self
                .last_background
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let spacing = self
                .options
                .min_refetch_interval
                .max(Duration::from_secs(1));
            if last.is_some_and(|t| t.elapsed() < spacing) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            match inner.load_keys().await {
                Ok(n) => log::debug!("refreshed {n} signing key(s) from {}", inner.jwks_uri),
                Err(e) => log::warn!(
                    "cannot refresh signing keys from {} (keeping the cached ones): {e}",
                    inner.jwks_uri
                ),
            }
        });
    }

    async fn candidates(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<CachedKey>>, VerifyError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let set = self.key_set();
        self.maybe_refresh_in_background(&set);
        match set.lookup(kid, alg) {
            Lookup::Found(keys) => return Ok(keys),
            Lookup::Mismatch => return Err(VerifyError::DisallowedAlgorithm),
            Lookup::Missing => {}
        }
        if self.refetch(generation).await {
            match self.key_set().lookup(kid, alg) {
                Lookup::Found(keys) => return Ok(keys),
                Lookup::Mismatch => return Err(VerifyError::DisallowedAlgorithm),
                Lookup::Missing => {}
            }
        }
        if self.key_set().keys.is_empty() {
            Err(VerifyError::Unavailable(format!(
                "no signing keys could be loaded from {}",
                self.jwks_uri
            )))
        } else {
            Err(VerifyError::UnknownKey)
        }
    }

    /// The full check of a token not in the cache.
    async fn verify_uncached(
        self: &Arc<Self>,
        token: &str,
        now: i64,
    ) -> Result<Principal, VerifyError> {
        let parts = split(token)?;
        let header = jose_header(token)?;
        let alg = check_alg(header.alg, &self.options.algorithms)?;
        if header.crit.is_some() {
            // We understand no critical header extension (RFC 7515 §4.1.11).
            return Err(VerifyError::Malformed);
        }
        check_typ(header.typ.as_deref(), self.options.required_typ.as_deref())?;
        let keys = self.candidates(header.kid.as_deref(), alg).await?;
        let signed = keys.iter().any(|k| {
            matches!(
                jsonwebtoken::crypto::verify(
                    parts.signature,
                    parts.message.as_bytes(),
                    &k.key,
                    alg
                ),
                Ok(true)
            )
        });
        if !signed {
            return Err(VerifyError::BadSignature);
        }
        // The signature checked out, so the claims may be read (the claim rules
        // follow).
        let claims: RawClaims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| VerifyError::Malformed)?;
        self.rules.principal(claims, ClaimSource::Jwt, now)
    }
}

impl JwksVerifier {
    /// A verifier with no keys yet; call [`load_keys`](Self::load_keys).
    pub fn new(
        jwks_uri: String,
        http: reqwest::Client,
        rules: ClaimRules,
        options: JwksOptions,
    ) -> Self {
        Self::with_key_set(jwks_uri, http, rules, options, KeySet::default(), None)
    }

    /// A verifier that trusts exactly `keys`, as if just fetched from `jwks_uri`: an
    /// unknown kid refetches only after `min_refetch_interval`, and with
    /// `refresh_interval: None` nothing is fetched in the background. Lets the header
    /// and claim rules run without an authorization server (the fuzz targets).
    #[doc(hidden)]
    pub fn with_keys(
        jwks_uri: String,
        http: reqwest::Client,
        rules: ClaimRules,
        options: JwksOptions,
        keys: Vec<Arc<CachedKey>>,
    ) -> Self {
        let now = Instant::now();
        let set = KeySet {
            keys,
            loaded_at: Some(now),
        };
        Self::with_key_set(jwks_uri, http, rules, options, set, Some(now))
    }

    fn with_key_set(
        jwks_uri: String,
        http: reqwest::Client,
        rules: ClaimRules,
        options: JwksOptions,
        keys: KeySet,
        last_refetch: Option<Instant>,
    ) -> Self {
        let cache = TokenCache::new(options.cache_max_entries);
        JwksVerifier {
            inner: Arc::new(Inner {
                jwks_uri,
                http,
                keys: RwLock::new(Arc::new(keys)),
                generation: AtomicU64::new(0),
                last_refetch: tokio::sync::Mutex::new(last_refetch),
                last_background: Mutex::new(None),
                upstream: UpstreamHealth::default(),
                options,
                rules,
                cache,
            }),
        }
    }

    pub fn jwks_uri(&self) -> &str {
        &self.inner.jwks_uri
    }

    /// Fetches the JWKS and replaces the cached keys; on failure the old keys stay.
    /// Returns the number of usable keys loaded.
    pub async fn load_keys(&self) -> Result<usize, String> {
        self.inner.load_keys().await
    }
}

impl TokenVerifier for JwksVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            if token.len() > MAX_TOKEN_BYTES {
                return Err(VerifyError::Malformed);
            }
            let key = token_key(token);
            let now = unix_now();
            if let Some(hit) = self.inner.cache.get(&key, now) {
                return Ok((*hit).clone());
            }
            let principal = Arc::new(self.inner.verify_uncached(token, now).await?);
            self.inner
                .cache
                .admit(key, principal.clone(), principal.expires_at, now)?;
            Ok(Arc::unwrap_or_clone(principal))
        })
    }

    fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.inner.cache.get(&token_key(token), unix_now())
    }

    fn mode(&self) -> &'static str {
        "jwks"
    }

    fn key_ids(&self) -> Vec<String> {
        self.inner
            .key_set()
            .keys
            .iter()
            .filter_map(|k| k.kid.clone())
            .collect()
    }

    fn is_ready(&self) -> bool {
        !self.inner.key_set().keys.is_empty()
    }

    fn upstream(&self) -> UpstreamStatus {
        self.inner.upstream.status()
    }

    fn check_upstream(&self) {
        self.inner.probe_in_background();
    }

    fn deny_token_id(&self, token_id: &str, expires_at: i64) {
        self.inner.cache.deny(token_id, expires_at, unix_now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_jwk(kid: &str, crv: &str, alg: Option<&str>) -> serde_json::Value {
        // A valid P-256 point (the generator) is not needed: DecodingKey::from_jwk
        // does not validate the point, and these tests never verify a signature.
        let mut v = json!({"kty": "EC", "crv": crv, "x": "AAAA", "y": "AAAA", "kid": kid});
        if let Some(a) = alg {
            v["alg"] = a.into();
        }
        v
    }

    #[test]
    fn jwks_parsing_skips_symmetric_and_encryption_keys() {
        let doc = json!({"keys": [
            ec_jwk("ec1", "P-256", Some("ES256")),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa1"},
            {"kty": "weird", "kid": "w"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "ed1"},
        ]});
        let keys = parse_jwks(&doc);
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec!["ec1", "rsa1", "ed1"]);
        assert!(parse_jwks(&json!({"nokeys": 1})).is_empty());
    }

    #[test]
    fn key_must_fit_the_header_algorithm() {
        let keys = parse_jwks(&json!({"keys": [
            ec_jwk("p256", "P-256", None),
            ec_jwk("p256-es256", "P-256", Some("ES256")),
            ec_jwk("p384", "P-384", None),
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "ed"},
        ]}));
        let by = |kid: &str| keys.iter().find(|k| k.kid.as_deref() == Some(kid)).unwrap();
        assert!(by("p256").fits(Algorithm::ES256));
        assert!(!by("p256").fits(Algorithm::ES384));
        assert!(!by("p256").fits(Algorithm::RS256));
        assert!(!by("p256").fits(Algorithm::HS256));
        assert!(by("p384").fits(Algorithm::ES384));
        assert!(!by("p384").fits(Algorithm::ES256));
        assert!(by("rsa").fits(Algorithm::RS256));
        assert!(
            !by("rsa").fits(Algorithm::PS256),
            "JWK alg pins the algorithm"
        );
        assert!(by("ed").fits(Algorithm::EdDSA));
        assert!(!by("ed").fits(Algorithm::ES256));
    }

    #[test]
    fn headers_naming_unknown_algorithms_are_refused_as_such() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let token = |header: &str| format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header));
        let header = jose_header(&token(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#)).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        for alg in ["none", "None", "hs256", "", "ES256 ", "HS1"] {
            assert!(
                matches!(
                    jose_header(&token(&format!(r#"{{"alg":"{alg}"}}"#))),
                    Err(VerifyError::DisallowedAlgorithm)
                ),
                "{alg}"
            );
        }
        for bad in ["{not json", r#"{"alg":"#] {
            assert!(
                matches!(jose_header(&token(bad)), Err(VerifyError::Malformed)),
                "{bad}"
            );
        }
        assert!(matches!(
            jose_header("%%%.e30.c2ln"),
            Err(VerifyError::Malformed)
        ));
    }

    #[test]
    fn compact_serialisation_split() {
        assert!(split("a.b.c").is_ok());
        assert_eq!(split("a.b.c").unwrap().message, "a.b");
        assert!(
            split("a.b.").is_ok(),
            "empty signature is split, then refused later"
        );
        for bad in ["", "a", "a.b", "a.b.c.d", ".b.c", "a..c"] {
            assert!(matches!(split(bad), Err(VerifyError::Malformed)), "{bad}");
        }
    }
}
