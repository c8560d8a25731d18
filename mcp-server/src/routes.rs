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
/// An unreachable AS is `"status": "degraded"` but still ready: cached keys and
/// answers keep verifying, and taking this server out of rotation would refuse
/// those callers too. An unreachable revocation feed does not make the server
/// unready either (it keeps serving with the revocations it knows); it shows in
/// `revocation_feed`.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    state.verifier.check_upstream();
    let mut ready = state.verifier.is_ready();
    let upstream = state.verifier.upstream();
    let status = match (ready, upstream.reachable) {
        (false, _) => "unavailable",
        (true, Some(false)) => "degraded",
        (true, _) => "ok",
    };
    let mut body = json!({
        "ready": ready,
        "status": status,
        "verification_mode": state.verifier.mode(),
        "key_count": state.verifier.key_ids().len(),
        "authorization_server": upstream,
    });
    if let Some(feed) = &state.revocation_feed {
        body["revocation_feed"] = json!(feed.status());
    }
    // Gateway mode: an upstream that cannot be reached makes this server useless.
    if let Some(gateway) = &state.gateway {
        let upstream = gateway.check().await;
        if upstream["reachable"] != json!(true) {
            ready = false;
            body["ready"] = json!(false);
            body["status"] = json!("unavailable");
        }
        body["upstream"] = upstream;
    }
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}
