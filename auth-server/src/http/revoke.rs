//! `POST /revoke` (RFC 7009). Answers 200 for unknown tokens too.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::{no_store, AppResult};
use crate::http::{client_credentials, client_ip};
use crate::service::{revocation, AppState};

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    pub token: Option<String>,
    /// Accepted and ignored: both token kinds are recognised by their shape.
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
    let credentials = client_credentials(&req, form.client_id, form.client_secret);
    let ip = client_ip(&state, &req);
    revocation::revoke(&state, &credentials, form.token.as_deref(), ip).await?;
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    Ok(b.finish())
}
