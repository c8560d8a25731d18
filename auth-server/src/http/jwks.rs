//! `GET /jwks.json`: the published verification keys (current and recently retired).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::error::AppResult;
use crate::service::AppState;

pub async fn jwks(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    // Re-read from storage so a `keys rotate` by the CLI shows up at once.
    let ring = state.reload_keys().await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .json(&ring.jwks))
}
