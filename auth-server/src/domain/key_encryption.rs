//! Secrets at rest: the signing keys' private PKCS#8 and the cookie key are stored
//! sealed under a key-encryption key (KEK) from the configuration, so that a copy
//! of the database (a backup, a stolen volume) cannot mint tokens or forge cookies.
//!
//! A sealed value is the envelope `v1:<kek-id>:<nonce>:<ciphertext>` (nonce and
//! ciphertext-with-tag in unpadded base64url): AES-256-GCM from aws-lc-rs with a
//! random nonce per value, and the row the value belongs to (plus the envelope's
//! version and KEK id) as associated data, so that a sealed value copied to another
//! row does not open. The KEK id is a keyed fingerprint of the KEK: a wrong key is
//! named before anything is decrypted. Databases written without a KEK hold the
//! plain base64 text, which never contains a `:`.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use shared::Secret;

/// The envelope format written today.
const VERSION: &str = "v1";
/// Length of a KEK in bytes (AES-256).
pub const KEK_LEN: usize = 32;

/// The stored secret a value belongs to: its seal's associated data, and how
/// messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSlot {
    /// `signing_keys.private_pkcs8` of the key with this `kid`.
    SigningKey(String),
    /// `kv.value` under this key (the cookie key).
    Setting(String),
}

impl SecretSlot {
    fn associated_data(&self, kek_id: &str) -> String {
        match self {
            SecretSlot::SigningKey(kid) => {
                format!("{VERSION}:{kek_id}:signing_keys.private_pkcs8:{kid}")
            }
            SecretSlot::Setting(key) => format!("{VERSION}:{kek_id}:kv.value:{key}"),
        }
    }
}

impl std::fmt::Display for SecretSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSlot::SigningKey(kid) => write!(f, "the private part of signing key {kid}"),
            SecretSlot::Setting(key) => write!(f, "the stored {key}"),
        }
    }
}

/// Why a stored secret could not be sealed or opened. The messages name the
/// settings an operator has to look at.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be base64 of exactly {KEK_LEN} random bytes (e.g. `openssl rand -base64 32`)")]
    InvalidKek,
    #[error(
        "{slot} is encrypted with key-encryption key {kek_id}, but no key is configured: \
         set secrets.key_file (or AUTH__SECRETS__KEY_FILE) to the key it was written with"
    )]
    NoKekConfigured { slot: SecretSlot, kek_id: String },
    #[error(
        "{slot} is encrypted with key-encryption key {kek_id}, which is not configured \
         (configured: {configured}): set secrets.key_file to the key it was written with, \
         or list that key in secrets.previous_key_files"
    )]
    UnknownKek {
        slot: SecretSlot,
        kek_id: String,
        configured: String,
    },
    #[error(
        "{slot} does not decrypt with key-encryption key {kek_id} (secrets.key_file): \
         the stored value was altered or copied from another row"
    )]
    Undecryptable { slot: SecretSlot, kek_id: String },
    #[error(
        "{slot} is not a readable sealed value (expected {VERSION}:<kek-id>:<nonce>:<ciphertext>)"
    )]
    Malformed { slot: SecretSlot },
    #[error("encrypting {slot} failed")]
    Seal { slot: SecretSlot },
}

/// One key-encryption key. Its `Debug` shows the id only.
pub struct KeyEncryptionKey {
    id: String,
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyEncryptionKey, SealError> {
        if bytes.len() != KEK_LEN {
            return Err(SealError::InvalidKek);
        }
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::InvalidKek)?;
        // A keyed fingerprint: it identifies the KEK without revealing anything a
        // guess at the key could be checked against more cheaply than by decrypting.
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"auth-server key-encryption-key id",
        );
        let id = URL_SAFE_NO_PAD.encode(&tag.as_ref()[..6]);
        Ok(KeyEncryptionKey { id, key })
    }

    /// Reads the standard base64 (or base64url) text of a KEK; surrounding
    /// whitespace, as in a file written by `openssl rand -base64 32`, is ignored.
    pub fn from_base64(text: &str) -> Result<KeyEncryptionKey, SealError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| SealError::InvalidKek)?;
        Self::from_bytes(&bytes)
    }

    /// The short fingerprint written into every envelope sealed with this key.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a stored value was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtRest {
    /// Written without a KEK.
    Plaintext,
    /// Sealed under the current KEK.
    Current,
    /// Sealed under a previous KEK (with this id): `keys rewrap` re-seals it.
    Previous(String),
}

/// A stored secret, opened.
#[derive(Debug)]
pub struct Opened {
    pub value: Secret,
    pub at_rest: AtRest,
}

/// The configured KEKs: the current one seals, any of them opens.
#[derive(Debug, Default)]
pub struct KeyEncryption {
    current: Option<KeyEncryptionKey>,
    previous: Vec<KeyEncryptionKey>,
}

impl KeyEncryption {
    /// No KEK: values are stored as they are.
    pub fn plaintext() -> KeyEncryption {
        KeyEncryption::default()
    }

    pub fn new(current: KeyEncryptionKey, previous: Vec<KeyEncryptionKey>) -> KeyEncryption {
        KeyEncryption {
            current: Some(current),
            previous,
        }
    }

    /// The id of the KEK new values are sealed with; `None` when values are stored
    /// in plaintext.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(KeyEncryptionKey::id)
    }

    /// The value to store for `plaintext`: sealed under the current KEK, or the
    /// plaintext itself when none is configured.
    pub fn seal(&self, slot: &SecretSlot, plaintext: &str) -> Result<String, SealError> {
        let Some(kek) = &self.current else {
            return Ok(plaintext.to_string());
        };
        let mut in_out = plaintext.as_bytes().to_vec();
        let nonce = kek
            .key
            .seal_in_place_append_tag(Aad::from(slot.associated_data(&kek.id)), &mut in_out)
            .map_err(|_| SealError::Seal { slot: slot.clone() })?;
        Ok(format!(
            "{VERSION}:{}:{}:{}",
            kek.id,
            URL_SAFE_NO_PAD.encode(nonce.as_ref()),
            URL_SAFE_NO_PAD.encode(&in_out)
        ))
    }

    /// The plaintext of a stored value, and how it was stored.
    pub fn open(&self, slot: &SecretSlot, stored: &str) -> Result<Opened, SealError> {
        if !stored.contains(':') {
            return Ok(Opened {
                value: Secret::new(stored),
                at_rest: AtRest::Plaintext,
            });
        }
        let malformed = || SealError::Malformed { slot: slot.clone() };
        let mut parts = stored.splitn(4, ':');
        let (Some(VERSION), Some(kek_id), Some(nonce), Some(ciphertext)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let (kek, at_rest) = match &self.current {
            Some(current) if current.id == kek_id => (current, AtRest::Current),
            _ => match self.previous.iter().find(|k| k.id == kek_id) {
                Some(previous) => (previous, AtRest::Previous(previous.id.clone())),
                None => return Err(self.unknown_kek(slot, kek_id)),
            },
        };
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(malformed)?;
        let mut in_out = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| malformed())?;
        let undecryptable = || SealError::Undecryptable {
            slot: slot.clone(),
            kek_id: kek_id.to_string(),
        };
        let plaintext = kek
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(slot.associated_data(kek_id)),
                &mut in_out,
            )
            .map_err(|_| undecryptable())?;
        let value = std::str::from_utf8(plaintext).map_err(|_| undecryptable())?;
        Ok(Opened {
            value: Secret::new(value),
            at_rest,
        })
    }

    fn unknown_kek(&self, slot: &SecretSlot, kek_id: &str) -> SealError {
        let configured: Vec<&str> = self
            .current
            .iter()
            .chain(&self.previous)
            .map(KeyEncryptionKey::id)
            .collect();
        if configured.is_empty() {
            return SealError::NoKekConfigured {
                slot: slot.clone(),
                kek_id: kek_id.to_string(),
            };
        }
        SealError::UnknownKek {
            slot: slot.clone(),
            kek_id: kek_id.to_string(),
            configured: configured.join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_bytes(&[byte; KEK_LEN]).unwrap()
    }

    fn slot() -> SecretSlot {
        SecretSlot::SigningKey("kid-1".into())
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_in_their_row() {
        let enc = KeyEncryption::new(kek(1), Vec::new());
        let sealed = enc.seal(&slot(), "private-pkcs8").unwrap();
        assert!(sealed.starts_with(&format!("v1:{}:", kek(1).id())));
        assert!(!sealed.contains("private-pkcs8"));
        assert_ne!(
            sealed,
            enc.seal(&slot(), "private-pkcs8").unwrap(),
            "a fresh nonce per value"
        );
        let opened = enc.open(&slot(), &sealed).unwrap();
        assert_eq!(opened.value.expose(), "private-pkcs8");
        assert_eq!(opened.at_rest, AtRest::Current);

        let other_row = SecretSlot::SigningKey("kid-2".into());
        assert!(matches!(
            enc.open(&other_row, &sealed),
            Err(SealError::Undecryptable { .. })
        ));
        let cookie = SecretSlot::Setting("cookie_key".into());
        assert!(matches!(
            enc.open(&cookie, &sealed),
            Err(SealError::Undecryptable { .. })
        ));
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(matches!(
            enc.open(&slot(), &flipped),
            Err(SealError::Undecryptable { .. })
        ));
    }

    #[test]
    fn a_wrong_key_is_named_before_decrypting() {
        let sealed = KeyEncryption::new(kek(1), Vec::new())
            .seal(&slot(), "x")
            .unwrap();
        let wrong = KeyEncryption::new(kek(2), Vec::new());
        let err = wrong.open(&slot(), &sealed).unwrap_err();
        assert!(matches!(err, SealError::UnknownKek { .. }));
        let message = err.to_string();
        assert!(message.contains("secrets.key_file"), "{message}");
        assert!(message.contains(kek(1).id()) && message.contains(kek(2).id()));
        let none = KeyEncryption::plaintext().open(&slot(), &sealed);
        assert!(matches!(none, Err(SealError::NoKekConfigured { .. })));
    }

    #[test]
    fn previous_keys_open_and_plaintext_passes_through() {
        let old = KeyEncryption::new(kek(1), Vec::new());
        let sealed = old.seal(&slot(), "x").unwrap();
        let rotated = KeyEncryption::new(kek(2), vec![kek(1)]);
        let opened = rotated.open(&slot(), &sealed).unwrap();
        assert_eq!(opened.value.expose(), "x");
        assert_eq!(opened.at_rest, AtRest::Previous(kek(1).id().to_string()));

        let plain = rotated.open(&slot(), "QUJD+/==").unwrap();
        assert_eq!(
            (plain.value.expose(), plain.at_rest),
            ("QUJD+/==", AtRest::Plaintext)
        );
        assert_eq!(KeyEncryption::plaintext().seal(&slot(), "x").unwrap(), "x");
        assert!(matches!(
            rotated.open(&slot(), "v2:abc:def:ghi"),
            Err(SealError::Malformed { .. })
        ));
        assert!(matches!(
            rotated.open(&slot(), &format!("v1:{}:short:AAAA", kek(2).id())),
            Err(SealError::Malformed { .. })
        ));
    }

    #[test]
    fn kek_text_must_be_32_bytes_of_base64() {
        let text = STANDARD.encode([7u8; KEK_LEN]);
        let a = KeyEncryptionKey::from_base64(&format!("{text}\n")).unwrap();
        let b = KeyEncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; KEK_LEN])).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), kek(8).id());
        assert!(KeyEncryptionKey::from_base64(&STANDARD.encode([7u8; 16])).is_err());
        assert!(KeyEncryptionKey::from_base64("not base64!").is_err());
        assert!(!format!("{a:?}").contains(&text));
    }
}
