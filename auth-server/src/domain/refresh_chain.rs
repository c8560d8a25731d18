//! Refresh token rotation with one live token per family.
//!
//! A refresh token is rotated on use. Clients retry, and several requests of one
//! client can race with the same token, so a rotated token presented again within
//! a short grace window must not count as theft; but answering each duplicate with
//! a token of its own would split the family into independent live chains (and a
//! thief replaying a stolen token inside the window would get one). So every
//! presentation of a token gets the *same* successor: the successor is derived
//! from the presented token, `base64url(HMAC-SHA256(K, token))`, rather than
//! drawn at random.
//!
//! Why this design:
//! - nothing new is stored: the database keeps only SHA-256 hashes of refresh
//!   tokens, and the successor can be recomputed only by someone who holds both
//!   the presented token and `K`;
//! - `K` is derived with HKDF-SHA256 from the server's stored master secret (the
//!   one the cookie keys come from) under its own label, so it is independent of
//!   every other key from that secret and is protected wherever that secret is;
//! - HMAC-SHA256 is a PRF: without `K` a successor is as unpredictable as a random
//!   256-bit token, and successors of distinct tokens never meet;
//! - the first token of a family is random, so no two families share a chain.

use aws_lc_rs::{hkdf, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The HKDF `info` that separates this key from the other keys of the secret.
const KEY_LABEL: &[u8] = b"auth-server refresh-token successor v1";

/// The key successors are derived with.
pub struct SuccessorKey(hmac::Key);

impl SuccessorKey {
    /// Derives the key from the server's master secret. `None` only if HKDF
    /// refuses the output length, which it does not for one SHA-256 block.
    pub fn derive(master_secret: &[u8]) -> Option<SuccessorKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(master_secret);
        let okm = prk.expand(&[KEY_LABEL], hmac::HMAC_SHA256).ok()?;
        Some(SuccessorKey(hmac::Key::from(okm)))
    }

    /// The refresh token that replaces `presented` (same shape as a random one).
    pub fn successor(&self, presented: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.0, presented.as_bytes()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn successors_are_stable_per_token_and_key() {
        let key = SuccessorKey::derive(b"master secret of at least 32 bytes!!").unwrap();
        let a = key.successor("token-a");
        assert_eq!(a, key.successor("token-a"));
        assert_ne!(a, key.successor("token-b"));
        assert_eq!(a.len(), 43);
        let other = SuccessorKey::derive(b"another master secret of 32 bytes!!!").unwrap();
        assert_ne!(a, other.successor("token-a"));
        // The chain moves on: a successor's successor is another token.
        assert_ne!(key.successor(&a), a);
    }
}
