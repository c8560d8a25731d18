//! `POST /token`: authorization_code, refresh_token and client_credentials (the
//! flows live in `crate::service`). Every answer is `no-store`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::AppResult;
use crate::http::{client_credentials, client_ip, no_store_json};
use crate::service::client_credentials::ClientCredentialsRequest;
use crate::service::code_exchange::CodeExchange;
use crate::service::refresh::RefreshRequest;
use crate::service::token::{self, Grant};
use crate::service::{AppState, ServiceError, ServiceResult};

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

impl TokenForm {
    /// The grant the form asks for, by `grant_type` (client credentials are read
    /// separately, with the `Authorization` header).
    pub fn grant(self) -> ServiceResult<Grant> {
        let Some(grant_type) = self.grant_type else {
            return Err(ServiceError::InvalidRequest(
                "grant_type is required".into(),
            ));
        };
        Ok(match grant_type.as_str() {
            "authorization_code" => Grant::AuthorizationCode(CodeExchange {
                code: self.code,
                redirect_uri: self.redirect_uri,
                code_verifier: self.code_verifier,
                resource: self.resource,
            }),
            "refresh_token" => Grant::RefreshToken(RefreshRequest {
                refresh_token: self.refresh_token,
                scope: self.scope,
                resource: self.resource,
            }),
            "client_credentials" => Grant::ClientCredentials(ClientCredentialsRequest {
                scope: self.scope,
                resource: self.resource,
            }),
            _ => {
                return Err(ServiceError::UnsupportedGrantType(format!(
                    "grant_type {grant_type:?} is not supported"
                )))
            }
        })
    }
}

pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> AppResult<HttpResponse> {
    let mut form = form.into_inner();
    let ip = client_ip(&state, &req);
    state.limits.check_token_ip(ip).await?;
    let credentials = client_credentials(&req, form.client_id.take(), form.client_secret.take());
    let grant = form.grant()?;
    let body = token::issue(&state, &credentials, grant, ip).await?;
    Ok(no_store_json(&body))
}
