//! PKCE (RFC 7636), S256 only: `plain` and a missing challenge are refused.

use shared::secret::{constant_time_eq, sha256_b64url};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge is malformed")]
    MalformedChallenge,
    #[error("code_verifier is required")]
    MissingVerifier,
    #[error("code_verifier is malformed")]
    MalformedVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Validates the authorization request's challenge. A missing method means `plain`
/// (RFC 7636 §4.3), which we refuse.
pub fn validate_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<String, PkceError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or(PkceError::MissingChallenge)?;
    if method != Some("S256") {
        return Err(PkceError::UnsupportedMethod);
    }
    // base64url(SHA-256) is exactly 43 characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(PkceError::MalformedChallenge);
    }
    Ok(challenge.to_string())
}

/// Checks a token request's verifier against the stored S256 challenge.
pub fn verify(verifier: Option<&str>, challenge: &str) -> Result<(), PkceError> {
    let verifier = verifier
        .filter(|v| !v.is_empty())
        .ok_or(PkceError::MissingVerifier)?;
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
        return Err(PkceError::MalformedVerifier);
    }
    if constant_time_eq(&sha256_b64url(verifier), challenge) {
        Ok(())
    } else {
        Err(PkceError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_round_trip() {
        assert_eq!(
            validate_challenge(Some(CHALLENGE), Some("S256")),
            Ok(CHALLENGE.to_string())
        );
        assert_eq!(verify(Some(VERIFIER), CHALLENGE), Ok(()));
    }

    #[test]
    fn plain_and_missing_are_refused() {
        assert_eq!(
            validate_challenge(Some(CHALLENGE), Some("plain")),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            validate_challenge(Some(CHALLENGE), None),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            validate_challenge(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
        assert_eq!(
            validate_challenge(Some("short"), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn wrong_or_malformed_verifier() {
        let other = "x".repeat(43);
        assert_eq!(verify(Some(&other), CHALLENGE), Err(PkceError::Mismatch));
        assert_eq!(verify(None, CHALLENGE), Err(PkceError::MissingVerifier));
        assert_eq!(
            verify(Some("short"), CHALLENGE),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            verify(Some(&format!("{}!", &VERIFIER[..43])), CHALLENGE),
            Err(PkceError::MalformedVerifier)
        );
    }
}
