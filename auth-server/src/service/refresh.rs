//! The refresh_token grant: rotation on every use, a short grace window in which
//! duplicates get the same successor, family revocation when a rotated token
//! comes back after it, narrowing only, and the audience the grant is bound to.

use std::net::IpAddr;

use shared::ScopeSet;

use crate::domain::tokens::TokenResponse;
use crate::domain::{now, scope_policy};
use crate::storage::{ClientRecord, GrantRecord, Issued, RefreshRecord, UserRecord};

use super::token::active_user;
use super::{issuance, AppState, ServiceError, ServiceResult};

#[derive(Debug, Default)]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A refresh token that may be used, with its grant and user.
struct Presented {
    hash: String,
    record: RefreshRecord,
    grant: GrantRecord,
    user: UserRecord,
    /// Already rotated, but within the grace window.
    in_grace: bool,
}

pub async fn refresh(
    state: &AppState,
    client: &ClientRecord,
    request: RefreshRequest,
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    let presented = request
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ServiceError::InvalidRequest("refresh_token is required".into()))?;
    let p = find_usable(state, client, presented, ip).await?;
    let family_scope =
        ScopeSet::parse(&p.record.scope).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let scope = scope_policy::narrow_on_refresh(request.scope.as_deref(), &family_scope)?;
    state.ensure_bound_resource(
        request.resource.as_deref(),
        &p.grant.resource,
        "the original grant",
    )?;
    let scope = scope_policy::cut_to_role(&scope, p.user.role);
    let family_scope = scope_policy::cut_to_role(&family_scope, p.user.role);
    rotate(state, client, presented, &p, (&scope, &family_scope), ip).await
}

/// Finds the token's record, grant and user. A rotated token outside the grace
/// window is a theft signal: the whole family is revoked.
async fn find_usable(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
    ip: IpAddr,
) -> ServiceResult<Presented> {
    let invalid = |d: &str| ServiceError::InvalidGrant(d.into());
    let hash = shared::secret::sha256_b64url(token);
    let now = now();
    let record = state.store.find_refresh(&hash).await?;
    let record = record.ok_or_else(|| invalid("the refresh token is invalid"))?;
    let grant = state.store.find_grant(&record.grant_id).await?;
    let grant = grant.ok_or_else(|| invalid("the refresh token is invalid"))?;
    if grant.client_id != client.client_id {
        return Err(invalid("the refresh token was issued to another client"));
    }
    if grant.revoked_at.is_some() || record.expires_at <= now {
        return Err(invalid("the refresh token is no longer valid"));
    }
    let user = active_user(state, grant.user_id.as_deref()).await?;
    let in_grace = match record.rotated_at {
        None => false,
        Some(rotated_at) if now - rotated_at < state.settings.oauth.refresh_grace_secs => true,
        Some(_) => {
            state.store.revoke_grant(&grant.id, now, false).await?;
            let detail = "rotated refresh token reused; family revoked";
            let ip = Some(ip.to_string());
            state
                .audit(
                    "refresh_reuse",
                    Some(&user.username),
                    Some(&client.client_id),
                    ip,
                    detail,
                )
                .await;
            return Err(invalid("the refresh token was already used"));
        }
    };
    Ok(Presented {
        hash,
        record,
        grant,
        user,
        in_grace,
    })
}

/// Mints a new access token and rotates the presented refresh token to its
/// successor. The successor is derived from the presented token
/// (`domain::refresh_chain`), so a duplicate within the grace window, or a request
/// that lost the race to rotate, answers with the very successor the first one
/// stored: one family, one live refresh token.
async fn rotate(
    state: &AppState,
    client: &ClientRecord,
    presented: &str,
    p: &Presented,
    (scope, family_scope): (&ScopeSet, &ScopeSet),
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    let client_id = client.client_id.as_str();
    let (access_token, access) = issuance::mint_access(
        state,
        client_id,
        Some(&p.user),
        scope,
        &p.grant.resource,
        Some(&p.grant.id),
    )?;
    let refresh_token = state.refresh_successors.successor(presented);
    let successor = issuance::refresh_record(state, &refresh_token, &p.grant.id, family_scope);
    let successor_hash = successor.token_hash.clone();
    let issued = Issued {
        access,
        refresh: Some(successor),
    };
    let rotated = !p.in_grace && state.store.rotate_refresh(&p.hash, now(), &issued).await?;
    if !rotated {
        // Already rotated by a concurrent or repeated request: the successor it
        // stored is the answer; only the access token is new. No successor means
        // the family was revoked (or the successor expired) meanwhile.
        if state.store.find_refresh(&successor_hash).await?.is_none() {
            return Err(ServiceError::InvalidGrant(
                "the refresh token was already used".into(),
            ));
        }
        let access_only = Issued {
            access: issued.access,
            refresh: None,
        };
        if !state.store.add_tokens(&access_only).await? {
            // The family was revoked meanwhile (reuse seen by another request).
            return Err(ServiceError::InvalidGrant(
                "the refresh token is no longer valid".into(),
            ));
        }
    }
    let id_token =
        issuance::id_token_for(state, client_id, &p.user, scope, p.grant.auth_time, None)?;
    let detail = if rotated { "rotated" } else { "grace window" };
    let ip = Some(ip.to_string());
    state
        .audit(
            "token_refreshed",
            Some(&p.user.username),
            Some(client_id),
            ip,
            detail,
        )
        .await;
    Ok(issuance::token_response(
        state,
        access_token,
        scope,
        Some(refresh_token),
        id_token,
    ))
}
