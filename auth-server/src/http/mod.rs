//! HTTP handlers: parse, call the domain and storage, map the outcome. One module
//! per endpoint family.

pub mod admin;
pub mod authorize;
pub mod health;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod pages;
pub mod register;
pub mod revoke;
pub mod token;
pub mod userinfo;

use actix_web::http::header;
use actix_web::HttpRequest;

/// The bearer token of a request, if it has one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
