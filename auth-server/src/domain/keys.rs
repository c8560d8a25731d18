//! ES256 signing keys: generation (aws-lc-rs), the in-memory key ring used to sign
//! and verify, and the JWKS document. Old public keys stay published until every
//! token they signed has expired.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::collections::HashMap;

pub const ALG: &str = "ES256";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored key {0} is unreadable")]
    Corrupt(String),
    #[error("no active signing key")]
    NoActiveKey,
}

/// A key as stored: PKCS#8 private key and the uncompressed public point, base64.
#[derive(Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub private_pkcs8_b64: String,
    pub public_b64: String,
    pub created_at: i64,
    /// When a newer key replaced it; `None` while it signs.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Generates a fresh P-256 key with a random `kid`.
pub fn generate(now: i64) -> Result<StoredKey, KeyError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Generate)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| KeyError::Generate)?;
    Ok(StoredKey {
        kid: shared::secret::random_token(12),
        alg: ALG.into(),
        private_pkcs8_b64: STANDARD.encode(pkcs8.as_ref()),
        public_b64: STANDARD.encode(pair.public_key().as_ref()),
        created_at: now,
        retired_at: None,
    })
}

/// Whether a retired key must still be published: until `max_token_ttl` after it
/// stopped signing (plus a minute of clock leeway).
pub fn still_published(key: &StoredKey, now: i64, max_token_ttl: i64) -> bool {
    match key.retired_at {
        None => true,
        Some(retired) => retired + max_token_ttl + 60 > now,
    }
}

pub struct ActiveKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

/// The keys in use: one active signing key, and every published verification key.
pub struct KeyRing {
    pub active: ActiveKey,
    pub verifying: HashMap<String, DecodingKey>,
    pub jwks: JwkSet,
}

impl KeyRing {
    /// Builds the ring from stored keys: the newest unretired key signs.
    pub fn from_stored(
        keys: &[StoredKey],
        now: i64,
        max_token_ttl: i64,
    ) -> Result<KeyRing, KeyError> {
        // Before anything signs: the provider that reuses parsed signing keys.
        super::signing::install();
        let active = keys
            .iter()
            .filter(|k| k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
            .ok_or(KeyError::NoActiveKey)?;
        let pkcs8 = STANDARD
            .decode(&active.private_pkcs8_b64)
            .map_err(|_| KeyError::Corrupt(active.kid.clone()))?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| KeyError::Corrupt(active.kid.clone()))?;
        let mut verifying = HashMap::new();
        let mut jwks = JwkSet::default();
        for key in keys
            .iter()
            .filter(|k| still_published(k, now, max_token_ttl))
        {
            let public = STANDARD
                .decode(&key.public_b64)
                .map_err(|_| KeyError::Corrupt(key.kid.clone()))?;
            let decoding = DecodingKey::from_ec_der(&public);
            let mut jwk = Jwk::from_decoding_key(&decoding, Some(Algorithm::ES256))
                .map_err(|_| KeyError::Corrupt(key.kid.clone()))?;
            jwk.common.key_id = Some(key.kid.clone());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
            jwks.keys.push(jwk);
            verifying.insert(key.kid.clone(), decoding);
        }
        Ok(KeyRing {
            active: ActiveKey {
                kid: active.kid.clone(),
                encoding: EncodingKey::from_ec_der(&pkcs8),
            },
            verifying,
            jwks,
        })
    }
}

impl KeyRing {
    /// Whether [`KeyRing::from_stored`] on `keys` would sign with the same key and
    /// publish the same set of keys as this ring: then there is nothing to rebuild
    /// (rebuilding re-parses and re-checks every private key, ~50 µs each).
    pub fn same_keys(&self, keys: &[StoredKey], now: i64, max_token_ttl: i64) -> bool {
        let Some(active) = keys
            .iter()
            .filter(|k| k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
        else {
            return false;
        };
        if active.kid != self.active.kid {
            return false;
        }
        let mut published = 0;
        for key in keys
            .iter()
            .filter(|k| still_published(k, now, max_token_ttl))
        {
            if !self.verifying.contains_key(&key.kid) {
                return false;
            }
            published += 1;
        }
        published == self.verifying.len()
    }
}

/// RFC 7638-style short fingerprint (for CLI output only).
pub fn fingerprint(public_b64: &str) -> String {
    let digest = shared::secret::sha256_b64url(public_b64);
    URL_SAFE_NO_PAD.encode(&digest.as_bytes()[..9.min(digest.len())])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ring_signs_with_newest_and_publishes_retired_until_expiry() {
        let mut old = generate(1000).unwrap();
        let new = generate(2000).unwrap();
        old.retired_at = Some(2000);
        let keys = vec![old.clone(), new.clone()];
        let ring = KeyRing::from_stored(&keys, 2100, 900).unwrap();
        assert_eq!(ring.active.kid, new.kid);
        assert_eq!(ring.jwks.keys.len(), 2);
        assert!(ring.verifying.contains_key(&old.kid));
        let later = KeyRing::from_stored(&keys, 2000 + 900 + 61, 900).unwrap();
        assert_eq!(later.jwks.keys.len(), 1);
        assert!(!later.verifying.contains_key(&old.kid));
        assert_ne!(old.kid, new.kid);
    }

    #[test]
    fn same_keys_detects_rotation_and_expiry_of_published_keys() {
        let mut old = generate(1000).unwrap();
        let new = generate(2000).unwrap();
        old.retired_at = Some(2000);
        let keys = vec![old.clone(), new.clone()];
        let ring = KeyRing::from_stored(&keys, 2100, 900).unwrap();
        assert!(ring.same_keys(&keys, 2100, 900));
        // The retired key's publication window ends: the published set changes.
        assert!(!ring.same_keys(&keys, 2000 + 900 + 61, 900));
        // A rotation (a newer active key) changes the signing key.
        let mut rotated = keys.clone();
        rotated[1].retired_at = Some(2200);
        rotated.push(generate(2200).unwrap());
        assert!(!ring.same_keys(&rotated, 2200, 900));
        // No active key at all.
        let mut none = keys.clone();
        none[1].retired_at = Some(2200);
        assert!(!ring.same_keys(&none, 2200, 900));
        // A key removed from storage.
        assert!(!ring.same_keys(&keys[1..], 2100, 900));
    }

    #[test]
    fn no_active_key_is_an_error() {
        let mut k = generate(1).unwrap();
        k.retired_at = Some(2);
        assert!(matches!(
            KeyRing::from_stored(&[k], 3, 900),
            Err(KeyError::NoActiveKey)
        ));
    }
}
