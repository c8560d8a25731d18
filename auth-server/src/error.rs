//! The crate's one error type and its single mapping to HTTP: RFC 6749 error JSON
//! (always `Cache-Control: no-store`), RFC 6750 `WWW-Authenticate` for bearer
//! endpoints, an HTML error page for the browser flow, 429 (and 503) with `Retry-After`.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use shared::bearer::BearerChallenge;

use crate::service::federation::FederationError;
use crate::service::ServiceError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An OAuth error answered as JSON (`error`, `error_description`).
    #[error("{error}: {description}")]
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
    },
    /// `invalid_client` (401); `basic` adds `WWW-Authenticate: Basic`.
    #[error("invalid_client: {description}")]
    InvalidClient { description: String, basic: bool },
    /// Bearer-protected endpoints (RFC 6750 §3).
    #[error("bearer: {description}")]
    Bearer {
        status: StatusCode,
        error: Option<&'static str>,
        description: String,
        scope: Option<String>,
    },
    /// The browser flow when redirecting is unsafe: an HTML page.
    #[error("page: {title}")]
    Page {
        status: StatusCode,
        title: String,
        message: String,
    },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// 503 `temporarily_unavailable` with `Retry-After`.
    #[error("temporarily unavailable")]
    Unavailable { retry_after_secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn oauth(error: &'static str, description: impl Into<String>) -> Self {
        AppError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::oauth("invalid_request", description)
    }
    pub fn page(title: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Page {
            status: StatusCode::BAD_REQUEST,
            title: title.into(),
            message: message.into(),
        }
    }
    pub fn unauthorized(description: impl Into<String>) -> Self {
        AppError::Bearer {
            status: StatusCode::UNAUTHORIZED,
            error: Some("invalid_token"),
            description: description.into(),
            scope: None,
        }
    }
    pub fn insufficient_scope(scope: &str) -> Self {
        AppError::Bearer {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: format!("this endpoint needs scope {scope}"),
            scope: Some(scope.to_string()),
        }
    }
}

/// A failed sign-in at an upstream identity provider: always our HTML page.
impl From<FederationError> for AppError {
    fn from(e: FederationError) -> Self {
        let (status, title) = match &e {
            FederationError::UnknownProvider(_) => {
                (StatusCode::NOT_FOUND, "Unknown sign-in method")
            }
            FederationError::Unreachable { .. } => {
                (StatusCode::BAD_GATEWAY, "Identity provider unavailable")
            }
            FederationError::Upstream { .. } => {
                (StatusCode::FORBIDDEN, "Sign-in was not completed")
            }
            FederationError::Invalid(_) | FederationError::UnknownSignIn(_) => {
                (StatusCode::BAD_REQUEST, "Sign-in failed")
            }
            FederationError::Refused(_) => (StatusCode::FORBIDDEN, "Access denied"),
            FederationError::Throttled => (StatusCode::TOO_MANY_REQUESTS, "Too many requests"),
            FederationError::Internal(detail) => {
                log::error!("upstream sign-in: {detail}");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
            }
        };
        AppError::Page {
            status,
            title: title.into(),
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        AppError::Internal(e.to_string())
    }
}

/// Every flow outcome's HTTP answer: RFC 6749 §5.2 JSON, RFC 6750 bearer
/// challenges, or (for the browser flow, when no redirect can be trusted) a page.
impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidClient { description, basic } => {
                AppError::InvalidClient { description, basic }
            }
            ServiceError::NotAResourceServer(_) => AppError::OAuth {
                status: StatusCode::FORBIDDEN,
                error: e.oauth_code(),
                description: e.to_string(),
            },
            ServiceError::InvalidToken(description) => AppError::unauthorized(description),
            ServiceError::TokenRequired { description, scope } => AppError::Bearer {
                status: StatusCode::UNAUTHORIZED,
                error: None,
                description: description.into(),
                scope: scope.map(str::to_owned),
            },
            ServiceError::InsufficientScope(scope) => AppError::insufficient_scope(scope),
            ServiceError::MissingClientId => AppError::page("Invalid request", "The request has no client_id."),
            ServiceError::UnknownClient => AppError::page(
                "Unknown application",
                "The application that sent you here is not registered with this server. It may have been removed; ask it to register again.",
            ),
            ServiceError::UnregisteredRedirect => AppError::page(
                "Invalid redirect",
                "The redirect address in this request is not registered for the application, so you cannot be sent back to it.",
            ),
            ServiceError::ClientUnavailable(detail) => AppError::page("Application not available", detail),
            ServiceError::NoDecision => AppError::page("Invalid request", "Choose Allow or Deny."),
            ServiceError::NotFound(what) => AppError::NotFound(what),
            ServiceError::RateLimited { retry_after_secs } => {
                AppError::RateLimited { retry_after_secs }
            }
            ServiceError::TemporarilyUnavailable { retry_after_secs } => {
                AppError::Unavailable { retry_after_secs }
            }
            ServiceError::Store(e) => e.into(),
            ServiceError::Internal(detail) => AppError::Internal(detail),
            other => AppError::oauth(other.oauth_code(), other.to_string()),
        }
    }
}

/// The RFC 6750 §3 `WWW-Authenticate` challenge.
fn bearer_challenge(
    error: Option<&str>,
    description: &str,
    scope: Option<&str>,
) -> BearerChallenge {
    let mut challenge = BearerChallenge::new().param("realm", "auth-server");
    if let Some(e) = error {
        challenge = challenge
            .param("error", e)
            .param("error_description", description);
    }
    if let Some(s) = scope {
        challenge = challenge.param("scope", s);
    }
    challenge
}

/// The `Cache-Control`/`Pragma` pair that every token-bearing or OAuth error answer carries.
pub fn no_store(builder: &mut actix_web::HttpResponseBuilder) {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::OAuth { status, .. } => *status,
            AppError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            AppError::Bearer { status, .. } => *status,
            AppError::Page { status, .. } => *status,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status_code());
        match self {
            AppError::OAuth {
                error, description, ..
            } => {
                no_store(&mut b);
                b.json(json!({"error": error, "error_description": description}))
            }
            AppError::InvalidClient { description, basic } => {
                no_store(&mut b);
                if *basic {
                    b.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"auth-server\""));
                }
                b.json(json!({"error": "invalid_client", "error_description": description}))
            }
            AppError::Bearer {
                error,
                description,
                scope,
                ..
            } => {
                let challenge = bearer_challenge(*error, description, scope.as_deref());
                if let Ok(v) = challenge.header_value() {
                    b.insert_header((header::WWW_AUTHENTICATE, v));
                }
                no_store(&mut b);
                b.json(json!({"error": error.unwrap_or("invalid_request"), "error_description": description}))
            }
            AppError::Page { title, message, .. } => {
                crate::http::pages::error_page(b, title, message)
            }
            AppError::NotFound(what) => {
                b.json(json!({"error": "not_found", "error_description": what}))
            }
            AppError::RateLimited { retry_after_secs } => {
                no_store(&mut b);
                b.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                b.json(json!({"error": "rate_limited", "error_description": "too many requests, retry later"}))
            }
            AppError::Unavailable { retry_after_secs } => {
                no_store(&mut b);
                b.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                b.json(json!({"error": "temporarily_unavailable", "error_description": "requests cannot be admitted right now, retry later"}))
            }
            AppError::Internal(detail) => {
                log::error!("internal error: {detail}");
                no_store(&mut b);
                b.json(json!({"error": "server_error", "error_description": "internal error"}))
            }
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
