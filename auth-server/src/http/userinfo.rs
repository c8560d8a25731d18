//! `GET|POST /userinfo` (OIDC Core §5.3) for a user access token.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use shared::scopes;

use crate::error::{no_store, AppError, AppResult};
use crate::http::bearer;
use crate::state::AppState;

pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let token = bearer(&req).ok_or_else(|| AppError::Bearer {
        status: actix_web::http::StatusCode::UNAUTHORIZED,
        error: None,
        description: "a bearer token is required".into(),
        scope: None,
    })?;
    let claims = state.verify_access_token(token).await?;
    let scope = shared::ScopeSet::parse(&claims.scope).unwrap_or_default();
    let Some(user) = state
        .store
        .find_user_by_id(&claims.sub)
        .await?
        .filter(|u| !u.disabled)
    else {
        return Err(AppError::unauthorized(
            "the token does not belong to an active user",
        ));
    };
    let mut body = json!({
        "sub": user.id,
        "preferred_username": user.username,
        "roles": crate::domain::scope_policy::Role::parse(&user.role).unwrap_or(crate::domain::scope_policy::Role::User).claim(),
    });
    if scope.contains_literal(scopes::PROFILE) {
        body["name"] = json!(user.name);
    }
    if scope.contains_literal(scopes::EMAIL) {
        body["email"] = json!(user.email);
    }
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    Ok(b.json(body))
}
