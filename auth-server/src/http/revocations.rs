//! `GET /revocations?since=<cursor>`: the revocation feed for resource servers,
//! authenticated with their client credentials (HTTP Basic).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::AppResult;
use crate::http::{client_credentials, no_store_json};
use crate::service::{revocation_feed, AppState};

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    pub since: Option<String>,
}

pub async fn revocations(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<FeedQuery>,
) -> AppResult<HttpResponse> {
    let credentials = client_credentials(&req, None, None);
    let page = revocation_feed::read(&state, &credentials, query.since.as_deref()).await?;
    Ok(no_store_json(page))
}
