//! `GET|POST /userinfo` (OIDC Core §5.3) for a user access token.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::error::AppResult;
use crate::http::{bearer, no_store_json};
use crate::service::issuance::DisclosedClaims;
use crate::service::{userinfo, AppState};

pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let (user, scope) = userinfo::userinfo(&state, bearer(&req)).await?;
    let disclosed = DisclosedClaims::of(&user, &scope);
    let mut body = json!({
        "sub": user.id,
        "preferred_username": user.username,
        "roles": user.role.claim(),
    });
    if disclosed.profile {
        body["name"] = json!(disclosed.name);
    }
    if disclosed.email {
        if disclosed.email_address.is_some() {
            // We hold only verified addresses (see `federation::email_verified`).
            body["email_verified"] = json!(true);
        }
        body["email"] = json!(disclosed.email_address);
    }
    Ok(no_store_json(body))
}
