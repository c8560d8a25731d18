//! Minting and checking what the token endpoint hands out: JWT access tokens, ID
//! tokens, refresh tokens and the token response, and which user claims a scope
//! discloses.

use shared::claims::{AccessTokenClaims, Audience};
use shared::scopes::{self, ScopeSet};

use crate::domain::now;
use crate::domain::tokens::{self, TokenResponse};
use crate::storage::{AccessTokenRecord, ClientRecord, RefreshRecord, UserRecord};

use super::{AppState, ServiceError, ServiceResult};

/// The user claims a scope discloses: `profile` the names, `email` the address.
pub struct DisclosedClaims {
    pub profile: bool,
    pub email: bool,
    pub name: Option<String>,
    pub email_address: Option<String>,
}

impl DisclosedClaims {
    pub fn of(user: &UserRecord, scope: &ScopeSet) -> DisclosedClaims {
        let profile = scope.contains_literal(scopes::PROFILE);
        let email = scope.contains_literal(scopes::EMAIL);
        DisclosedClaims {
            profile,
            email,
            name: user.name.clone().filter(|_| profile),
            email_address: user.email.clone().filter(|_| email),
        }
    }
}

fn signing_failed(e: tokens::TokenError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// Mints an access token and the row that tracks it.
pub fn mint_access(
    state: &AppState,
    client_id: &str,
    user: Option<&UserRecord>,
    scope: &ScopeSet,
    audience: &str,
    grant_id: Option<&str>,
) -> ServiceResult<(String, AccessTokenRecord)> {
    let now = now();
    let exp = now + state.settings.oauth.access_token_ttl_secs;
    let jti = shared::secret::random_token(16);
    let (sub, preferred_username, name, email, roles) = match user {
        Some(u) => {
            let disclosed = DisclosedClaims::of(u, scope);
            (
                u.id.clone(),
                Some(u.username.clone()),
                disclosed.name,
                disclosed.email_address,
                Some(u.role.claim()),
            )
        }
        None => (client_id.to_string(), None, None, None, None),
    };
    let claims = AccessTokenClaims {
        iss: state.issuer.clone(),
        sub,
        aud: Audience::One(audience.to_string()),
        exp,
        iat: now,
        nbf: Some(now),
        jti: jti.clone(),
        sid: grant_id.map(str::to_owned),
        client_id: client_id.to_string(),
        scope: scope.to_string(),
        preferred_username,
        name,
        email,
        roles,
    };
    let token = tokens::mint_access_token(&state.ring(), &claims).map_err(signing_failed)?;
    let record = AccessTokenRecord {
        jti,
        grant_id: grant_id.map(str::to_owned),
        client_id: client_id.to_string(),
        user_id: user.map(|u| u.id.clone()),
        scope: scope.to_string(),
        audience: audience.to_string(),
        issued_at: now,
        expires_at: exp,
        revoked_at: None,
    };
    Ok((token, record))
}

/// An ID token when the scope holds `openid`, else none.
pub fn id_token_for(
    state: &AppState,
    client_id: &str,
    user: &UserRecord,
    scope: &ScopeSet,
    auth_time: i64,
    nonce: Option<String>,
) -> ServiceResult<Option<String>> {
    if !scope.contains_literal(scopes::OPENID) {
        return Ok(None);
    }
    let now = now();
    let disclosed = DisclosedClaims::of(user, scope);
    let claims = tokens::IdTokenClaims {
        iss: state.issuer.clone(),
        sub: user.id.clone(),
        aud: client_id.to_string(),
        exp: now + state.settings.oauth.id_token_ttl_secs,
        iat: now,
        auth_time,
        nonce,
        preferred_username: disclosed.profile.then(|| user.username.clone()),
        name: disclosed.name,
        email_verified: disclosed.email_address.as_ref().map(|_| true),
        email: disclosed.email_address,
        azp: client_id.to_string(),
    };
    tokens::mint_id_token(&state.ring(), &claims)
        .map(Some)
        .map_err(signing_failed)
}

/// Whether a grant gets a refresh token: asked for with `offline_access`, or (when
/// configured) any client registered for the refresh_token grant.
pub fn wants_refresh(state: &AppState, client: &ClientRecord, scope: &ScopeSet) -> bool {
    scope.contains_literal(scopes::OFFLINE_ACCESS)
        || (state.settings.oauth.refresh_for_refresh_grant_clients
            && client.allows_grant("refresh_token"))
}

/// The first refresh token of `grant_id`'s family and the row that stores its hash.
pub fn new_refresh(state: &AppState, grant_id: &str, scope: &ScopeSet) -> (String, RefreshRecord) {
    let token = shared::secret::random_token(32);
    let record = refresh_record(state, &token, grant_id, scope);
    (token, record)
}

/// The row that stores `token` (by its hash) in `grant_id`'s family.
pub fn refresh_record(
    state: &AppState,
    token: &str,
    grant_id: &str,
    scope: &ScopeSet,
) -> RefreshRecord {
    let now = now();
    RefreshRecord {
        token_hash: shared::secret::sha256_b64url(token),
        grant_id: grant_id.to_string(),
        scope: scope.to_string(),
        created_at: now,
        expires_at: now + state.settings.oauth.refresh_token_ttl_secs,
        rotated_at: None,
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
pub fn token_response(
    state: &AppState,
    access_token: String,
    scope: &ScopeSet,
    refresh_token: Option<String>,
    id_token: Option<String>,
) -> TokenResponse {
    TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.settings.oauth.access_token_ttl_secs,
        scope: scope.to_string(),
        refresh_token,
        id_token,
    }
}

/// Verifies one of our access tokens, including revocation. Reloads the keys
/// once on an unknown `kid` (a rotation by another process).
pub async fn verify_access_token(
    state: &AppState,
    token: &str,
) -> ServiceResult<AccessTokenClaims> {
    let invalid = |e: tokens::TokenError| ServiceError::InvalidToken(e.to_string());
    let claims = match tokens::verify_access_token(&state.ring(), token, &state.issuer) {
        Ok(c) => c,
        Err(tokens::TokenError::Invalid) if unknown_kid(state, token) => {
            let ring = state.reload_keys().await?;
            tokens::verify_access_token(&ring, token, &state.issuer).map_err(invalid)?
        }
        Err(e) => return Err(invalid(e)),
    };
    match state.store.find_access_token(&claims.jti).await? {
        Some(rec) if rec.revoked_at.is_none() => Ok(claims),
        Some(_) => Err(ServiceError::InvalidToken("token has been revoked".into())),
        None => Err(ServiceError::InvalidToken("token is unknown".into())),
    }
}

fn unknown_kid(state: &AppState, token: &str) -> bool {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| h.kid)
        .is_some_and(|kid| !state.ring().verifying.contains_key(&kid))
}
