//! User passwords: argon2id (PHC strings). Both functions are slow on purpose
//! (~30 ms); call them through `web::block`.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be between 8 and 256 characters")]
    Policy,
    #[error("password hashing failed")]
    Hash,
}

pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let len = password.chars().count();
    if (8..=256).contains(&len) {
        Ok(())
    } else {
        Err(PasswordError::Policy)
    }
}

pub fn hash(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Verifies a password against a stored PHC string; any malformed hash is a failure.
pub fn verify(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A fixed hash of a random password, verified against when the user does not
/// exist so that both failures take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&shared::secret::random_token(16)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("x", "not a hash"));
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
    }
}
