//! Token introspection (RFC 7662) for confidential clients holding
//! `auth:introspect` (or marked as resource servers).

use shared::claims::AccessTokenClaims;

use crate::domain::{now, tokens};
use crate::storage::{GrantRecord, RefreshRecord, UserRecord};

use super::clients::{self, ClientCredentials};
use super::{issuance, AppState, ServiceError, ServiceResult};

/// What introspection found out about a token.
pub enum Introspection {
    Inactive,
    Access(Box<AccessTokenClaims>),
    Refresh(Box<ActiveRefresh>),
}

/// An active refresh token with its grant and (for user grants) its user.
pub struct ActiveRefresh {
    pub record: RefreshRecord,
    pub grant: GrantRecord,
    pub user: Option<UserRecord>,
}

pub async fn introspect(
    state: &AppState,
    credentials: &ClientCredentials,
    token: Option<&str>,
) -> ServiceResult<Introspection> {
    let client = clients::authenticate(state, credentials).await?;
    if !clients::is_resource_server(&client) {
        return Err(ServiceError::NotAResourceServer("introspect tokens"));
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ServiceError::InvalidRequest("token is required".into()))?;
    if tokens::looks_like_jwt(token) {
        return Ok(match issuance::verify_access_token(state, token).await {
            Ok(claims) => Introspection::Access(Box::new(claims)),
            Err(_) => Introspection::Inactive,
        });
    }
    refresh_token(state, token).await
}

async fn refresh_token(state: &AppState, token: &str) -> ServiceResult<Introspection> {
    let hash = shared::secret::sha256_b64url(token);
    let Some(record) = state.store.find_refresh(&hash).await? else {
        return Ok(Introspection::Inactive);
    };
    if record.rotated_at.is_some() || record.expires_at <= now() {
        return Ok(Introspection::Inactive);
    }
    let Some(grant) = state.store.find_grant(&record.grant_id).await? else {
        return Ok(Introspection::Inactive);
    };
    if grant.revoked_at.is_some() {
        return Ok(Introspection::Inactive);
    }
    let user = match grant.user_id.as_deref() {
        Some(id) => state.store.find_user_by_id(id).await?,
        None => None,
    };
    if user.as_ref().is_some_and(|u| u.disabled) {
        return Ok(Introspection::Inactive);
    }
    Ok(Introspection::Refresh(Box::new(ActiveRefresh {
        record,
        grant,
        user,
    })))
}
