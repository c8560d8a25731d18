//! `GET /healthz` and `GET /readyz` (metrics are served on their own listener,
//! `server.metrics_listen`).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::service::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"status": "ok"})),
        Err(e) => {
            log::error!("health check failed: {e}");
            HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable"}))
        }
    }
}

/// `GET /readyz`: ready when the database answers. Shared rate limits that cannot reach
/// Redis make it `"status": "degraded"` with the reason, but still ready: logins and
/// token requests are answered as `rate_limit.redis_failure` says, and taking every
/// replica out of rotation over a Redis outage would refuse everything instead.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await;
    let limits = state.limits.status();
    let mut reasons = Vec::new();
    if let Err(e) = &database {
        log::error!("readiness check: the database does not answer: {e}");
        reasons.push("database: unreachable".to_string());
    }
    reasons.extend(limits.degraded());
    let ready = database.is_ok();
    let status = match (ready, reasons.is_empty()) {
        (false, _) => "unavailable",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let mut body = json!({
        "ready": ready,
        "status": status,
        "database": if ready { "ok" } else { "unavailable" },
        "rate_limits": limits,
    });
    if !reasons.is_empty() {
        body["reasons"] = json!(reasons);
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
