//! The admin API for the resource server's `admin_panel` tool: a client_credentials
//! token with `auth:admin` and `aud` = the issuer.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use shared::scopes;

use crate::domain::now;
use crate::error::{no_store, AppError, AppResult};
use crate::http::bearer;
use crate::state::AppState;

async fn authorize_admin(
    req: &HttpRequest,
    state: &AppState,
) -> AppResult<shared::AccessTokenClaims> {
    let token = bearer(req).ok_or_else(|| AppError::Bearer {
        status: StatusCode::UNAUTHORIZED,
        error: None,
        description: "a bearer token is required".into(),
        scope: Some(scopes::AUTH_ADMIN.into()),
    })?;
    let claims = state.verify_access_token(token).await?;
    if !shared::resource::audience_matches(&claims.aud, std::slice::from_ref(&state.issuer)) {
        return Err(AppError::unauthorized(
            "the token's audience is not this authorization server",
        ));
    }
    let scope = shared::ScopeSet::parse(&claims.scope).unwrap_or_default();
    if !scope.grants(scopes::AUTH_ADMIN) {
        return Err(AppError::insufficient_scope(scopes::AUTH_ADMIN));
    }
    Ok(claims)
}

fn ok(body: serde_json::Value) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    b.json(body)
}

pub async fn list_grants(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    authorize_admin(&req, &state).await?;
    let grants = state.store.active_grants(now()).await?;
    let items: Vec<_> = grants
        .into_iter()
        .map(|g| {
            json!({
                "id": g.grant.id,
                "username": g.username,
                "client_id": g.grant.client_id,
                "client_name": g.client_name,
                "scope": g.grant.scope,
                "created_at": g.grant.created_at,
                "expires_at": g.grant.expires_at,
                "token_ids": g.token_ids,
            })
        })
        .collect();
    Ok(ok(json!({ "grants": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub grant_id: Option<String>,
    pub token_id_prefix: Option<String>,
}

pub async fn revoke_grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RevokeRequest>,
) -> AppResult<HttpResponse> {
    let admin = authorize_admin(&req, &state).await?;
    let body = body.into_inner();
    let now = now();
    let grants = state.store.active_grants(now).await?;
    let target = match (body.grant_id.as_deref(), body.token_id_prefix.as_deref()) {
        (Some(id), None) => grants.into_iter().find(|g| g.grant.id == id),
        (None, Some(prefix)) => {
            if prefix.len() < 6 {
                return Err(AppError::invalid_request(
                    "token_id_prefix must have at least 6 characters",
                ));
            }
            let mut matching: Vec<_> = grants
                .into_iter()
                .filter(|g| g.token_ids.iter().any(|t| t.starts_with(prefix)))
                .collect();
            if matching.len() > 1 {
                return Err(AppError::invalid_request(
                    "token_id_prefix matches more than one grant; use a longer prefix",
                ));
            }
            matching.pop()
        }
        _ => {
            return Err(AppError::invalid_request(
                "give exactly one of grant_id or token_id_prefix",
            ))
        }
    };
    let Some(target) = target else {
        return Err(AppError::NotFound("no active grant matches".into()));
    };
    state
        .store
        .revoke_grant(&target.grant.id, now, true)
        .await?;
    state
        .audit(
            "revoke",
            Some(&target.username),
            Some(&target.grant.client_id),
            None,
            &format!(
                "admin API by {}; grant {}",
                admin.client_id, target.grant.id
            ),
        )
        .await;
    Ok(ok(json!({
        "revoked": [{
            "grant_id": target.grant.id,
            "username": target.username,
            "client_id": target.grant.client_id,
            "token_ids": target.token_ids,
            "expires_at": target.grant.expires_at,
        }]
    })))
}

pub async fn user_stats(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    authorize_admin(&req, &state).await?;
    let stats = state.store.user_stats(now()).await?;
    let users: Vec<_> = stats
        .into_iter()
        .map(|s| json!({"username": s.username, "role": s.role, "disabled": s.disabled, "active_grants": s.active_grants}))
        .collect();
    Ok(ok(json!({ "users": users })))
}
