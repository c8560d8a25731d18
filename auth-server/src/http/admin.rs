//! The admin API for the resource server's `admin_panel` tool (the rules live in
//! `crate::service::admin`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::error::AppResult;
use crate::http::{bearer, no_store_json};
use crate::service::admin::{self, RevokeTarget};
use crate::service::{AppState, ServiceError};

pub async fn list_grants(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    admin::authorize(&state, bearer(&req)).await?;
    let grants = admin::active_grants(&state).await?;
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
    Ok(no_store_json(json!({ "grants": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub grant_id: Option<String>,
    pub token_id_prefix: Option<String>,
}

impl RevokeRequest {
    fn target(self) -> Result<RevokeTarget, ServiceError> {
        match (self.grant_id, self.token_id_prefix) {
            (Some(id), None) => Ok(RevokeTarget::Grant(id)),
            (None, Some(prefix)) => Ok(RevokeTarget::TokenIdPrefix(prefix)),
            _ => Err(ServiceError::InvalidRequest(
                "give exactly one of grant_id or token_id_prefix".into(),
            )),
        }
    }
}

pub async fn revoke_grant(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RevokeRequest>,
) -> AppResult<HttpResponse> {
    let admin = admin::authorize(&state, bearer(&req)).await?;
    let target = body.into_inner().target()?;
    let revoked = admin::revoke(&state, &admin, target).await?;
    Ok(no_store_json(json!({
        "revoked": [{
            "grant_id": revoked.grant.id,
            "username": revoked.username,
            "client_id": revoked.grant.client_id,
            "token_ids": revoked.token_ids,
            "expires_at": revoked.grant.expires_at,
        }]
    })))
}

pub async fn user_stats(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    admin::authorize(&state, bearer(&req)).await?;
    let stats = admin::user_stats(&state).await?;
    let users: Vec<_> = stats
        .into_iter()
        .map(|s| json!({"username": s.username, "role": s.role, "disabled": s.disabled, "active_grants": s.active_grants}))
        .collect();
    Ok(no_store_json(json!({ "users": users })))
}
