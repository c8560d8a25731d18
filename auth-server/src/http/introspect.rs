//! `POST /introspect` (RFC 7662). Inactive tokens get `{"active": false}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::AppResult;
use crate::http::{client_credentials, no_store_json};
use crate::service::introspection::{self, Introspection};
use crate::service::AppState;

#[derive(Debug, Deserialize)]
pub struct IntrospectForm {
    pub token: Option<String>,
    /// Accepted and ignored: both token kinds are recognised by their shape.
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The RFC 7662 answer; members without a value are left out rather than sent as
/// `null` (e.g. `username` of a client_credentials token).
fn answer(state: &AppState, found: Introspection) -> HttpResponse {
    let mut body = match found {
        Introspection::Inactive => json!({"active": false}),
        Introspection::Access(claims) => json!({
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
        }),
        Introspection::Refresh(active) => json!({
            "active": true,
            "sub": active.grant.user_id,
            "client_id": active.grant.client_id,
            "scope": active.record.scope,
            "aud": active.grant.resource,
            "iss": state.issuer,
            "exp": active.record.expires_at,
            "iat": active.record.created_at,
            "nbf": active.record.created_at,
            "username": active.user.map(|u| u.username),
            "token_type": "refresh_token",
        }),
    };
    if let Some(members) = body.as_object_mut() {
        members.retain(|_, v: &mut Value| !v.is_null());
    }
    no_store_json(body)
}

pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<IntrospectForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let credentials = client_credentials(&req, form.client_id, form.client_secret);
    let found = introspection::introspect(&state, &credentials, form.token.as_deref()).await?;
    Ok(answer(&state, found))
}
