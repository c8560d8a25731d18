//! The crate's one error type and its single mapping to HTTP: RFC 6750 Bearer
//! challenges for authentication and scope problems, JSON-RPC error bodies on the MCP
//! endpoint, and a small JSON body elsewhere.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use shared::bearer::BearerChallenge;
use shared::ScopeSet;

use crate::auth::VerifyError;

/// JSON-RPC error code used for authentication/authorization refusals at the HTTP level.
pub const JSONRPC_UNAUTHORIZED: i64 = -32001;
/// JSON-RPC "Invalid Request".
pub const JSONRPC_INVALID_REQUEST: i64 = -32600;
/// JSON-RPC "Parse error".
pub const JSONRPC_PARSE_ERROR: i64 = -32700;
/// JSON-RPC "Invalid params".
pub const JSONRPC_INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "Internal error".
pub const JSONRPC_INTERNAL: i64 = -32603;

/// What a Bearer challenge needs to point the client at: the path-suffixed PRM URL
/// and the scopes to ask for.
#[derive(Debug, Clone)]
pub struct ChallengeContext {
    pub resource_metadata: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No (usable) token where one is needed: 401 without an error code (RFC 6750 §3.1).
    #[error("authentication required")]
    Unauthenticated {
        challenge: ChallengeContext,
        scope: ScopeSet,
    },
    /// A token was presented and refused: 401 `invalid_token`.
    #[error("invalid token: {error}")]
    InvalidToken {
        challenge: ChallengeContext,
        scope: ScopeSet,
        error: VerifyError,
    },
    /// The AS could not be reached and no cached material could decide: 503.
    #[error("token verification unavailable: {0}")]
    VerifierUnavailable(String),
    /// A valid token without the scope this call needs: 403 `insufficient_scope`.
    #[error("insufficient scope: this call needs {needed}")]
    InsufficientScope {
        challenge: ChallengeContext,
        /// Union of what is needed and what is granted (the challenge's `scope`).
        scope: ScopeSet,
        needed: ScopeSet,
    },
    #[error("Origin {0:?} is not allowed")]
    OriginNotAllowed(String),
    #[error("Host {0:?} is not allowed")]
    HostNotAllowed(String),
    /// Another subject's token on a session: 403.
    #[error("this session belongs to another user")]
    SessionOwnedByOther,
    /// Unknown or terminated session: 404.
    #[error("session not found")]
    SessionNotFound,
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is not JSON: JSON-RPC "Parse error" (-32700), HTTP 400.
    #[error("parse error: {0}")]
    ParseError(String),
    /// A JSON-RPC request whose params cannot be right (e.g. `tools/call` arguments
    /// that are not an object): HTTP 400 with JSON-RPC "Invalid params" (-32602),
    /// echoing the request id.
    #[error("invalid params: {message}")]
    InvalidParams {
        id: serde_json::Value,
        message: String,
    },
    /// Unknown path (JSON body, not JSON-RPC).
    #[error("not found")]
    NotFound,
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Bearer resource_metadata="...", scope="..."` (+ `error`/`error_description`);
/// `insufficient_scope` leads with the error code.
pub fn bearer_challenge(
    challenge: &ChallengeContext,
    scope: &ScopeSet,
    error: Option<(&str, &str)>,
) -> String {
    let scope = scope.to_string();
    let built = match error {
        Some(("insufficient_scope", _)) => BearerChallenge::new()
            .param("error", "insufficient_scope")
            .param("scope", &scope)
            .param("resource_metadata", &challenge.resource_metadata),
        _ => {
            let built = BearerChallenge::new()
                .param("resource_metadata", &challenge.resource_metadata)
                .param("scope", &scope);
            match error {
                Some((code, description)) => built
                    .param("error", code)
                    .param("error_description", description),
                None => built,
            }
        }
    };
    built.into_string()
}

/// A JSON-RPC 2.0 error object with a null id (the HTTP layer answers before the
/// message is dispatched).
pub fn jsonrpc_error_body(code: i64, message: &str) -> serde_json::Value {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": code, "message": message }
    })
}

impl ApiError {
    fn www_authenticate(&self) -> Option<String> {
        match self {
            ApiError::Unauthenticated { challenge, scope } => {
                Some(bearer_challenge(challenge, scope, None))
            }
            ApiError::InvalidToken {
                challenge,
                scope,
                error,
            } => Some(bearer_challenge(
                challenge,
                scope,
                Some(("invalid_token", &error.to_string())),
            )),
            ApiError::InsufficientScope {
                challenge, scope, ..
            } => Some(bearer_challenge(
                challenge,
                scope,
                Some(("insufficient_scope", "")),
            )),
            _ => None,
        }
    }

    fn jsonrpc_code(&self) -> i64 {
        match self {
            ApiError::Unauthenticated { .. }
            | ApiError::InvalidToken { .. }
            | ApiError::InsufficientScope { .. }
            | ApiError::OriginNotAllowed(_)
            | ApiError::HostNotAllowed(_)
            | ApiError::SessionOwnedByOther => JSONRPC_UNAUTHORIZED,
            ApiError::VerifierUnavailable(_) | ApiError::Internal(_) => JSONRPC_INTERNAL,
            ApiError::ParseError(_) => JSONRPC_PARSE_ERROR,
            ApiError::InvalidParams { .. } => JSONRPC_INVALID_PARAMS,
            ApiError::SessionNotFound
            | ApiError::PayloadTooLarge { .. }
            | ApiError::BadRequest(_)
            | ApiError::NotFound => JSONRPC_INVALID_REQUEST,
        }
    }

    /// A short label for `mcp_auth_failures_total{reason=...}`, when this is one.
    pub fn auth_failure_reason(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthenticated { .. } => Some("missing_token"),
            ApiError::InvalidToken { error, .. } => Some(error.reason()),
            ApiError::VerifierUnavailable(_) => Some("unavailable"),
            ApiError::InsufficientScope { .. } => Some("insufficient_scope"),
            ApiError::OriginNotAllowed(_) => Some("origin_not_allowed"),
            ApiError::HostNotAllowed(_) => Some("host_not_allowed"),
            ApiError::SessionOwnedByOther => Some("session_subject_mismatch"),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated { .. } | ApiError::InvalidToken { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::VerifierUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientScope { .. }
            | ApiError::OriginNotAllowed(_)
            | ApiError::HostNotAllowed(_)
            | ApiError::SessionOwnedByOther => StatusCode::FORBIDDEN,
            ApiError::SessionNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) | ApiError::ParseError(_) | ApiError::InvalidParams { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self.www_authenticate() {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                builder.insert_header((header::WWW_AUTHENTICATE, value));
            }
        }
        if let ApiError::VerifierUnavailable(_) = self {
            builder.insert_header((header::RETRY_AFTER, "5"));
        }
        let body = match self {
            ApiError::NotFound => {
                json!({"error": "not_found", "error_description": "no such resource"})
            }
            // Internal details stay in the log.
            ApiError::Internal(_) => jsonrpc_error_body(self.jsonrpc_code(), "internal error"),
            ApiError::VerifierUnavailable(_) => jsonrpc_error_body(
                self.jsonrpc_code(),
                "token verification is temporarily unavailable",
            ),
            ApiError::InvalidParams { id, message } => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": self.jsonrpc_code(), "message": message }
            }),
            _ => jsonrpc_error_body(self.jsonrpc_code(), &self.to_string()),
        };
        builder.json(body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> ChallengeContext {
        ChallengeContext {
            resource_metadata: "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp"
                .into(),
        }
    }

    #[test]
    fn challenges_have_the_exact_rfc6750_shape() {
        let read = ScopeSet::parse("mcp:read").unwrap();
        assert_eq!(
            bearer_challenge(&ctx(), &read, None),
            "Bearer resource_metadata=\"http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read\""
        );
        assert_eq!(
            bearer_challenge(&ctx(), &read, Some(("invalid_token", "token has \"expired\"\n"))),
            "Bearer resource_metadata=\"http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:read\", error=\"invalid_token\", error_description=\"token has  expired  \""
        );
        let union = ScopeSet::parse("mcp:admin mcp:read").unwrap();
        assert_eq!(
            bearer_challenge(&ctx(), &union, Some(("insufficient_scope", ""))),
            "Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:read\", resource_metadata=\"http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn statuses() {
        let e = ApiError::InvalidToken {
            challenge: ctx(),
            scope: ScopeSet::new(),
            error: VerifyError::Expired,
        };
        assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.auth_failure_reason(), Some("expired"));
        assert_eq!(
            ApiError::PayloadTooLarge { limit: 1 }.status_code(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ApiError::SessionOwnedByOther.status_code(),
            StatusCode::FORBIDDEN
        );
    }
}
