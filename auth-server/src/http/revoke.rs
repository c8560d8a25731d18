//! `POST /revoke` (RFC 7009). Answers 200 for unknown tokens too; a refresh token
//! revokes its whole grant, an access token only itself.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::domain::{now, tokens};
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RevokeForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let client = state
        .authenticate_client(
            &req,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        )
        .await?;
    let token = form
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::invalid_request("token is required"))?;
    let _ = form.token_type_hint;
    let now = now();
    let ip = state.client_ip(&req).to_string();
    if tokens::looks_like_jwt(token) {
        if let Ok(claims) = tokens::verify_access_token(&state.ring(), token, &state.issuer) {
            if claims.client_id == client.client_id
                && state.store.revoke_access_token(&claims.jti, now).await?
            {
                state
                    .audit(
                        "revoke",
                        claims.preferred_username.as_deref(),
                        Some(&client.client_id),
                        Some(ip),
                        "access token",
                    )
                    .await;
            }
        }
    } else if let Some(rec) = state
        .store
        .find_refresh(&shared::secret::sha256_b64url(token))
        .await?
    {
        if let Some(grant) = state.store.find_grant(&rec.grant_id).await? {
            if grant.client_id == client.client_id
                && state.store.revoke_grant(&grant.id, now, false).await?
            {
                state
                    .audit(
                        "revoke",
                        None,
                        Some(&client.client_id),
                        Some(ip),
                        &format!("refresh token; grant {}", grant.id),
                    )
                    .await;
            }
        }
    }
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    Ok(b.finish())
}
