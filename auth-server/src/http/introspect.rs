//! `POST /introspect` (RFC 7662): authenticated clients holding `auth:introspect`
//! (or marked as resource servers) only. Inactive tokens get `{"active": false}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::scopes;

use crate::domain::{now, tokens};
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct IntrospectForm {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The RFC 7662 answer; members without a value are left out rather than sent as
/// `null` (e.g. `username` of a client_credentials token).
fn answer(mut body: Value) -> HttpResponse {
    if let Some(members) = body.as_object_mut() {
        members.retain(|_, v| !v.is_null());
    }
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    b.json(body)
}

pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<IntrospectForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let client = state
        .authenticate_client(
            &req,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        )
        .await?;
    let allowed = client.can_introspect
        || shared::ScopeSet::parse(&client.metadata.scope)
            .is_ok_and(|s| s.contains_literal(scopes::AUTH_INTROSPECT));
    if client.secret_hash.is_none() || !allowed {
        return Err(AppError::OAuth {
            status: StatusCode::FORBIDDEN,
            error: "unauthorized_client",
            description: "this client may not introspect tokens".into(),
        });
    }
    let token = form
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::invalid_request("token is required"))?;
    let _ = form.token_type_hint;
    let inactive = || answer(json!({"active": false}));

    if tokens::looks_like_jwt(token) {
        let Ok(claims) = state.verify_access_token(token).await else {
            return Ok(inactive());
        };
        return Ok(answer(json!({
            "active": true,
            "sub": claims.sub,
            "client_id": claims.client_id,
            "scope": claims.scope,
            "aud": claims.aud,
            "iss": claims.iss,
            "exp": claims.exp,
            "iat": claims.iat,
            "nbf": claims.nbf,
            "jti": claims.jti,
            "username": claims.preferred_username,
            "token_type": "access_token",
        })));
    }

    let now = now();
    let Some(rec) = state
        .store
        .find_refresh(&shared::secret::sha256_b64url(token))
        .await?
    else {
        return Ok(inactive());
    };
    if rec.rotated_at.is_some() || rec.expires_at <= now {
        return Ok(inactive());
    }
    let Some(grant) = state.store.find_grant(&rec.grant_id).await? else {
        return Ok(inactive());
    };
    if grant.revoked_at.is_some() {
        return Ok(inactive());
    }
    let user = match grant.user_id.as_deref() {
        Some(id) => state.store.find_user_by_id(id).await?,
        None => None,
    };
    if user.as_ref().is_some_and(|u| u.disabled) {
        return Ok(inactive());
    }
    Ok(answer(json!({
        "active": true,
        "sub": grant.user_id,
        "client_id": grant.client_id,
        "scope": rec.scope,
        "aud": grant.resource,
        "iss": state.issuer,
        "exp": rec.expires_at,
        "iat": rec.created_at,
        "nbf": rec.created_at,
        "username": user.map(|u| u.username),
        "token_type": "refresh_token",
    })))
}
