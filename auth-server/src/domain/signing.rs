//! ES256 signing without re-parsing the private key for every token.
//!
//! jsonwebtoken's aws-lc provider builds an `EcdsaKeyPair` from the PKCS#8 bytes
//! on every `encode` (~14 % of a token exchange's CPU). This module installs a
//! jsonwebtoken [`CryptoProvider`] whose ES256 signer factory reuses an already
//! parsed `aws_lc_rs` key pair, cached by a SHA-256 of the key's bytes (so the
//! cache holds no second copy of the key material), bounded to a few entries
//! (keys rotate; the oldest entry goes). Everything else — other algorithms,
//! verification, JWK utilities — is delegated unchanged to
//! `jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER`. JOSE stays in jsonwebtoken
//! and the cryptography in aws-lc; a signature is made exactly as the default
//! provider makes it (`EcdsaKeyPair::sign` with the system RNG, fixed-size r||s).
//!
//! jsonwebtoken allows one process-wide provider, installed once. [`install`] is
//! called before any key ring exists; if something else installed a provider
//! first, signing still works through that provider, only without the cache.

use std::collections::VecDeque;
use std::sync::{Arc, LazyLock, RwLock};

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::crypto::{aws_lc::DEFAULT_PROVIDER, CryptoProvider, JwtSigner};
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};

/// How many parsed signing keys are kept (the active key and a few recent ones).
const CAPACITY: usize = 4;

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: new_signer,
    ..DEFAULT_PROVIDER.clone()
});

type Fingerprint = [u8; 32];

/// Parsed key pairs by fingerprint, oldest first.
struct KeyCache(RwLock<VecDeque<(Fingerprint, Arc<EcdsaKeyPair>)>>);

static CACHE: KeyCache = KeyCache::new();

/// Makes this module's provider jsonwebtoken's process-wide one. Returns whether
/// it is in use (true also when it was installed before).
pub fn install() -> bool {
    let ours: &'static CryptoProvider = &PROVIDER;
    match ours.install_default() {
        Ok(()) => true,
        Err(existing) => std::ptr::eq(existing, ours),
    }
}

fn fingerprint(der: &[u8]) -> Fingerprint {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, der).as_ref());
    out
}

impl KeyCache {
    const fn new() -> KeyCache {
        KeyCache(RwLock::new(VecDeque::new()))
    }

    /// The parsed P-256 key pair for these PKCS#8 bytes, or `None` if they are
    /// not one (the default provider then reports the error).
    fn key_pair(&self, der: &[u8]) -> Option<Arc<EcdsaKeyPair>> {
        let id = fingerprint(der);
        {
            let cache = match self.0.read() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some((_, pair)) = cache.iter().find(|(k, _)| *k == id) {
                return Some(pair.clone());
            }
        }
        let pair = Arc::new(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).ok()?);
        let mut cache = match self.0.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !cache.iter().any(|(k, _)| *k == id) {
            if cache.len() >= CAPACITY {
                cache.pop_front();
            }
            cache.push_back((id, pair.clone()));
        }
        Some(pair)
    }

    #[cfg(test)]
    fn contains(&self, der: &[u8]) -> bool {
        let id = fingerprint(der);
        self.0
            .read()
            .map(|c| c.iter().any(|(k, _)| *k == id))
            .unwrap_or(false)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.read().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
thread_local! {
    /// Cached ES256 signers made on this thread (tests only).
    static CACHED_SIGNERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn new_signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::ES256 && key.family() == AlgorithmFamily::Ec {
        if let Some(pair) = CACHE.key_pair(key.as_bytes()) {
            #[cfg(test)]
            CACHED_SIGNERS.with(|n| n.set(n.get() + 1));
            return Ok(Box::new(Es256Signer(pair)));
        }
    }
    (DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

struct Es256Signer(Arc<EcdsaKeyPair>);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        let signature = self
            .0
            .sign(&rng, msg)
            .map_err(SignatureError::from_source)?;
        Ok(signature.as_ref().to_vec())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use jsonwebtoken::{DecodingKey, Header, Validation};

    fn pkcs8() -> Vec<u8> {
        let key = crate::domain::keys::generate(1).unwrap();
        STANDARD.decode(key.private_pkcs8_b64).unwrap()
    }

    #[test]
    fn es256_signer_reuses_the_parsed_key_and_signs_verifiably() {
        let cache = KeyCache::new();
        let der = pkcs8();
        assert!(!cache.contains(&der));
        let a = cache.key_pair(&der).unwrap();
        assert!(cache.contains(&der));
        let b = cache.key_pair(&der).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second lookup is a cache hit");
        let sig = Es256Signer(b).try_sign(b"header.payload").unwrap();
        assert_eq!(sig.len(), 64, "fixed-size r||s as JWS requires");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, a.public_key().as_ref());
        assert!(public.verify(b"header.payload", &sig).is_ok());
        assert!(public.verify(b"header.payloaX", &sig).is_err());
    }

    #[test]
    fn cache_is_bounded_and_bad_keys_fall_through_to_the_default_error() {
        let cache = KeyCache::new();
        let keys: Vec<Vec<u8>> = (0..CAPACITY + 2).map(|_| pkcs8()).collect();
        for der in &keys {
            assert!(cache.key_pair(der).is_some());
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.contains(keys.last().unwrap()));
        assert!(!cache.contains(&keys[0]), "the oldest entry was evicted");
        assert!(cache.key_pair(b"not a key").is_none());
        // Not a P-256 PKCS#8 key: the default provider's error, not a panic.
        let bad = EncodingKey::from_ec_der(b"not a key");
        assert!(new_signer(&Algorithm::ES256, &bad).is_err());
        // Other algorithms are the default provider's business.
        let hmac = EncodingKey::from_secret(b"secret");
        assert_eq!(
            new_signer(&Algorithm::HS256, &hmac).unwrap().algorithm(),
            Algorithm::HS256
        );
    }

    #[test]
    fn installed_provider_signs_tokens_the_default_verifier_accepts() {
        assert!(
            install(),
            "no other provider may be installed in this crate"
        );
        assert!(install(), "installing again is harmless");
        let stored = crate::domain::keys::generate(1).unwrap();
        let der = STANDARD.decode(&stored.private_pkcs8_b64).unwrap();
        let public = STANDARD.decode(&stored.public_b64).unwrap();
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
        let before = CACHED_SIGNERS.with(|n| n.get());
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&der),
        )
        .unwrap();
        assert_eq!(
            CACHED_SIGNERS.with(|n| n.get()),
            before + 1,
            "encode went through this provider's cached signer"
        );
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_aud = false;
        let back = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_ec_der(&public),
            &v,
        )
        .unwrap();
        assert_eq!(back.claims["sub"], "x");
    }
}
