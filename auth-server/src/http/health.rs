//! `GET /healthz` (metrics are served on their own listener, `server.metrics_listen`).

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
