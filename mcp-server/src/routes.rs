//! Small HTTP handlers: RFC 9728 metadata, health, readiness, 404s (metrics are served
//! on their own listener, `server.metrics_listen`).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// `GET /.well-known/oauth-protected-resource[/<mcp-path>]`: the same document on both.
pub async fn protected_resource_metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(&state.prm)
}

/// Any other `/.well-known/*` path, and every unknown path.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"status": "ok"}))
}

/// Ready when the verifier can verify (keys loaded / introspection configured).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.verifier.is_ready();
    let body = json!({
        "ready": ready,
        "verification_mode": state.verifier.mode(),
        "key_count": state.verifier.key_ids().len(),
    });
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
