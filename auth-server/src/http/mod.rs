//! HTTP handlers: parse the request, call a flow in `crate::service`, render the
//! outcome. One module per endpoint family.

pub mod admin;
pub mod authorize;
pub mod browser;
pub mod cookies;
pub mod health;
pub mod idp;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod pages;
pub mod register;
pub mod revocations;
pub mod revoke;
pub mod token;
pub mod userinfo;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use crate::error::no_store;
use crate::service::clients::ClientCredentials;
use crate::service::AppState;

/// The bearer token of a request, if it carries exactly one well-formed one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    match shared::bearer::bearer_token(req.headers()) {
        shared::bearer::Presented::Token(token) => Some(token),
        _ => None,
    }
}

/// The client IP, honouring `X-Forwarded-For` only from trusted proxies.
pub fn client_ip(state: &AppState, req: &HttpRequest) -> std::net::IpAddr {
    crate::ratelimit::client_ip(req, &state.trusted_proxies)
}

/// The client credentials of a token, revocation or introspection request.
pub fn client_credentials(
    req: &HttpRequest,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> ClientCredentials {
    ClientCredentials {
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client_id,
        client_secret,
    }
}

/// A `200` JSON answer that must not be cached (tokens, client secrets, grants).
pub fn no_store_json(body: impl serde::Serialize) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    b.json(body)
}
