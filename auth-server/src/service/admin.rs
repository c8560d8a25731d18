//! The admin API for the resource server's `admin_panel` tool: a client_credentials
//! token with `auth:admin` whose audience is this server.

use shared::claims::AccessTokenClaims;
use shared::scopes;

use crate::domain::now;
use crate::storage::{GrantSummary, UserStat};

use super::{issuance, AppState, ServiceError, ServiceResult};

/// Which grant to revoke.
pub enum RevokeTarget {
    Grant(String),
    /// The grant holding the access token whose `jti` starts so (at least 6 characters).
    TokenIdPrefix(String),
}

/// The claims of an admin token.
pub async fn authorize(state: &AppState, token: Option<&str>) -> ServiceResult<AccessTokenClaims> {
    let token = token.ok_or(ServiceError::TokenRequired {
        description: "a bearer token is required",
        scope: Some(scopes::AUTH_ADMIN),
    })?;
    let claims = issuance::verify_access_token(state, token).await?;
    if !shared::resource::audience_matches(&claims.aud, std::slice::from_ref(&state.issuer)) {
        return Err(ServiceError::InvalidToken(
            "the token's audience is not this authorization server".into(),
        ));
    }
    let scope = shared::ScopeSet::parse(&claims.scope).unwrap_or_default();
    if !scope.grants(scopes::AUTH_ADMIN) {
        return Err(ServiceError::InsufficientScope(scopes::AUTH_ADMIN));
    }
    Ok(claims)
}

pub async fn active_grants(state: &AppState) -> ServiceResult<Vec<GrantSummary>> {
    Ok(state.store.active_grants(now()).await?)
}

pub async fn user_stats(state: &AppState) -> ServiceResult<Vec<UserStat>> {
    Ok(state.store.user_stats(now()).await?)
}

fn find_target(grants: Vec<GrantSummary>, target: &RevokeTarget) -> ServiceResult<GrantSummary> {
    let invalid = |d: &str| Err(ServiceError::InvalidRequest(d.into()));
    let found = match target {
        RevokeTarget::Grant(id) => grants.into_iter().find(|g| &g.grant.id == id),
        RevokeTarget::TokenIdPrefix(prefix) => {
            if prefix.len() < 6 {
                return invalid("token_id_prefix must have at least 6 characters");
            }
            let mut matching: Vec<_> = grants
                .into_iter()
                .filter(|g| g.token_ids.iter().any(|t| t.starts_with(prefix.as_str())))
                .collect();
            if matching.len() > 1 {
                return invalid("token_id_prefix matches more than one grant; use a longer prefix");
            }
            matching.pop()
        }
    };
    found.ok_or_else(|| ServiceError::NotFound("no active grant matches".into()))
}

/// Revokes an active grant (and the user's consent for its client).
pub async fn revoke(
    state: &AppState,
    admin: &AccessTokenClaims,
    target: RevokeTarget,
) -> ServiceResult<GrantSummary> {
    let now = now();
    let target = find_target(state.store.active_grants(now).await?, &target)?;
    state
        .store
        .revoke_grant(&target.grant.id, now, true)
        .await?;
    let detail = format!(
        "admin API by {}; grant {}",
        admin.client_id, target.grant.id
    );
    state
        .audit(
            "revoke",
            Some(&target.username),
            Some(&target.grant.client_id),
            None,
            &detail,
        )
        .await;
    Ok(target)
}
