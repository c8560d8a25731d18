//! Token formats: RFC 9068 JWT access tokens (`typ: at+jwt`), OIDC ID tokens, and
//! the token endpoint's JSON answer. Refresh tokens and codes are opaque random
//! strings stored only as SHA-256.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::claims::{AccessTokenClaims, ACCESS_TOKEN_TYP};

use super::keys::KeyRing;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token signing failed")]
    Sign,
    #[error("token is not a valid access token")]
    Invalid,
    #[error("token has expired")]
    Expired,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    /// With every `email`: we hold only addresses the provider verified (or an
    /// administrator set).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email_verified: Option<bool>,
    pub azp: String,
}

/// The successful token endpoint answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub fn mint_access_token(ring: &KeyRing, claims: &AccessTokenClaims) -> Result<String, TokenError> {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(ACCESS_TOKEN_TYP.into());
    header.kid = Some(ring.active.kid.clone());
    jsonwebtoken::encode(&header, claims, &ring.active.encoding).map_err(|_| TokenError::Sign)
}

pub fn mint_id_token(ring: &KeyRing, claims: &IdTokenClaims) -> Result<String, TokenError> {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(ring.active.kid.clone());
    jsonwebtoken::encode(&header, claims, &ring.active.encoding).map_err(|_| TokenError::Sign)
}

/// Whether a string has the shape of a JWS compact serialisation.
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() < 8192 && token.split('.').count() == 3
}

/// The clock skew resource servers forgive at `exp`. The issuer itself does not:
/// it knows the exact time.
pub const RESOURCE_SERVER_LEEWAY_SECS: u64 = 30;

/// Verifies one of our access tokens for the issuer's own decisions
/// (introspection, userinfo, the admin API): `typ`, a known `kid`, the ES256
/// signature, `iss`, `nbf`, and `exp` with no leeway, so a token is inactive from
/// the second of its `exp` on. The audience is checked by the caller.
pub fn verify_access_token(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
) -> Result<AccessTokenClaims, TokenError> {
    verify_access_token_with_leeway(ring, token, issuer, 0)
}

/// [`verify_access_token`], forgiving `leeway_secs` past `exp` (and before `nbf`):
/// for acting on a token that resource servers may still accept.
pub fn verify_access_token_with_leeway(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    leeway_secs: u64,
) -> Result<AccessTokenClaims, TokenError> {
    if !looks_like_jwt(token) {
        return Err(TokenError::Invalid);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) || header.alg != Algorithm::ES256 {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let key = ring.verifying.get(&kid).ok_or(TokenError::Invalid)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = leeway_secs;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let claims = match jsonwebtoken::decode::<AccessTokenClaims>(token, key, &validation) {
        Ok(data) => data.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            return Err(TokenError::Expired)
        }
        Err(_) => return Err(TokenError::Invalid),
    };
    // The library still accepts a token in the very second of its `exp`
    // (`exp < now - leeway` is its test); RFC 7519 §4.1.4 says from `exp` on it
    // must not be accepted.
    let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
    if claims.exp.saturating_add(leeway) <= super::now() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Verifies an `id_token_hint` (OIDC RP-Initiated Logout): one of our ID tokens
/// (a known `kid`, ES256, not an access token), issued by us. Its `exp` is not
/// checked: a client signs its user out after the ID token's short life, and the
/// specification asks to accept it then.
pub fn verify_id_token_hint(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
) -> Result<IdTokenClaims, TokenError> {
    if !looks_like_jwt(token) {
        return Err(TokenError::Invalid);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    if header.typ.as_deref() == Some(ACCESS_TOKEN_TYP) || header.alg != Algorithm::ES256 {
        return Err(TokenError::Invalid);
    }
    let kid = header.kid.ok_or(TokenError::Invalid)?;
    let key = ring.verifying.get(&kid).ok_or(TokenError::Invalid)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    jsonwebtoken::decode::<IdTokenClaims>(token, key, &validation)
        .map(|d| d.claims)
        .map_err(|_| TokenError::Invalid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::domain::keys;
    use shared::claims::Audience;

    fn claims(exp: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://as".into(),
            sub: "u1".into(),
            aud: Audience::One("http://rs/mcp".into()),
            exp,
            iat: exp - 900,
            nbf: Some(exp - 900),
            jti: "j1".into(),
            sid: None,
            client_id: "c".into(),
            scope: "mcp:read".into(),
            preferred_username: Some("demo".into()),
            name: None,
            email: None,
            roles: Some(vec!["user".into()]),
        }
    }

    #[test]
    fn mint_and_verify() {
        let now = crate::domain::now();
        let ring = keys::KeyRing::from_stored(&[keys::generate(now).unwrap()], now, 900).unwrap();
        let token = mint_access_token(&ring, &claims(now + 900)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(ring.active.kid.as_str()));
        let got = verify_access_token(&ring, &token, "http://as").unwrap();
        assert_eq!(got.sub, "u1");
        assert_eq!(
            verify_access_token(&ring, &token, "http://other"),
            Err(TokenError::Invalid)
        );
        // No leeway at the issuer: dead at `exp`; with a resource server's leeway,
        // still readable for a while.
        let at_exp = mint_access_token(&ring, &claims(now)).unwrap();
        assert_eq!(
            verify_access_token(&ring, &at_exp, "http://as"),
            Err(TokenError::Expired)
        );
        assert!(verify_access_token_with_leeway(&ring, &at_exp, "http://as", 30).is_ok());
        let expired = mint_access_token(&ring, &claims(now - 120)).unwrap();
        assert_eq!(
            verify_access_token(&ring, &expired, "http://as"),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_access_token(&ring, "a.b.c", "http://as"),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn id_tokens_are_not_access_tokens() {
        let now = crate::domain::now();
        let ring = keys::KeyRing::from_stored(&[keys::generate(now).unwrap()], now, 900).unwrap();
        let id = mint_id_token(
            &ring,
            &IdTokenClaims {
                iss: "http://as".into(),
                sub: "u1".into(),
                aud: "c".into(),
                exp: now + 900,
                iat: now,
                auth_time: now,
                nonce: None,
                preferred_username: None,
                name: None,
                email: None,
                email_verified: None,
                azp: "c".into(),
            },
        )
        .unwrap();
        assert_eq!(
            verify_access_token(&ring, &id, "http://as"),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify_id_token_hint(&ring, &id, "http://as").unwrap().aud,
            "c"
        );
        assert!(verify_id_token_hint(&ring, &id, "http://other").is_err());
        // An access token is no ID token hint.
        let at = mint_access_token(&ring, &claims(now + 900)).unwrap();
        assert!(verify_id_token_hint(&ring, &at, "http://as").is_err());
    }
}
