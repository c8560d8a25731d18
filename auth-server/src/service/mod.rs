//! The OAuth flows, one module per flow, between the HTTP handlers (which parse
//! requests and render answers) and the domain rules and storage. Every flow takes
//! typed inputs and returns a domain result or one [`ServiceError`], which
//! `crate::error` maps to its RFC 6749 / RFC 6750 answer in one place.

pub mod admin;
pub mod authorization;
pub mod bootstrap;
pub mod client_credentials;
pub mod clients;
pub mod code_exchange;
pub mod consent;
pub mod federation;
pub mod introspection;
pub mod issuance;
pub mod keys_at_rest;
pub mod limits;
pub mod login;
pub mod login_delay;
pub mod metrics;
pub mod refresh;
pub mod registration;
pub mod revocation;
pub mod revocation_feed;
pub mod state;
pub mod token;
pub mod userinfo;

pub use state::AppState;

use crate::domain::pkce::PkceError;
use crate::domain::registration_policy::RegistrationError;
use crate::domain::scope_policy::ScopeError;
use crate::storage::StoreError;

/// Why a flow did not succeed. The variants name the protocol outcome, not the
/// endpoint: the same error reads the same at every endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    UnsupportedResponseType(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    /// Only resource-server clients may introspect or read the revocation feed;
    /// the text names what was refused.
    #[error("this client may not {0}")]
    NotAResourceServer(&'static str),
    #[error("{0}")]
    InvalidGrant(String),
    /// RFC 8707: the resource is not served here, or not the one the grant is bound to.
    #[error("{0}")]
    InvalidTarget(String),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error(transparent)]
    Pkce(#[from] PkceError),
    #[error(transparent)]
    ClientMetadata(#[from] RegistrationError),
    /// `basic`: the client tried HTTP Basic, so the answer carries a Basic challenge.
    #[error("{description}")]
    InvalidClient { description: String, basic: bool },
    /// A bearer-protected endpoint got a token it cannot accept.
    #[error("{0}")]
    InvalidToken(String),
    /// A bearer-protected endpoint got no token at all (RFC 6750 §3.1: no error code).
    #[error("{description}")]
    TokenRequired {
        description: &'static str,
        scope: Option<&'static str>,
    },
    #[error("this endpoint needs scope {0}")]
    InsufficientScope(&'static str),
    #[error("the user is not signed in")]
    LoginRequired,
    #[error("consent is required")]
    ConsentRequired,
    #[error("the user denied the request")]
    AccessDenied,
    /// The consent form came back without a decision.
    #[error("no consent decision")]
    NoDecision,
    #[error("the request has no client_id")]
    MissingClientId,
    #[error("the client is not registered")]
    UnknownClient,
    #[error("the redirect URI is not registered for the client")]
    UnregisteredRedirect,
    /// The client's metadata document could not be used.
    #[error("{0}")]
    ClientUnavailable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// The request cannot be admitted now: the shared rate limits cannot be checked
    /// and `rate_limit.redis_failure` is `closed`.
    #[error("the service is temporarily unavailable; retry later")]
    TemporarilyUnavailable { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The RFC 6749 `error` code, for JSON answers and error redirects alike.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::UnsupportedGrantType(_) => "unsupported_grant_type",
            ServiceError::UnsupportedResponseType(_) => "unsupported_response_type",
            ServiceError::UnauthorizedClient(_) | ServiceError::NotAResourceServer(_) => {
                "unauthorized_client"
            }
            ServiceError::InvalidGrant(_) => "invalid_grant",
            ServiceError::InvalidTarget(_) => "invalid_target",
            ServiceError::Scope(_) => "invalid_scope",
            // A bad challenge is a malformed authorization request (RFC 7636 §4.4.1);
            // a bad verifier fails the grant (§4.6).
            ServiceError::Pkce(
                PkceError::MissingChallenge
                | PkceError::UnsupportedMethod
                | PkceError::MalformedChallenge,
            ) => "invalid_request",
            ServiceError::Pkce(_) => "invalid_grant",
            ServiceError::ClientMetadata(e) => e.code(),
            ServiceError::InvalidClient { .. } => "invalid_client",
            ServiceError::InvalidToken(_) => "invalid_token",
            ServiceError::InsufficientScope(_) => "insufficient_scope",
            ServiceError::LoginRequired => "login_required",
            ServiceError::ConsentRequired => "consent_required",
            ServiceError::AccessDenied => "access_denied",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::RateLimited { .. } => "rate_limited",
            ServiceError::TemporarilyUnavailable { .. } => "temporarily_unavailable",
            ServiceError::Store(_) | ServiceError::Internal(_) => "server_error",
            ServiceError::TokenRequired { .. }
            | ServiceError::NoDecision
            | ServiceError::MissingClientId
            | ServiceError::UnknownClient
            | ServiceError::UnregisteredRedirect
            | ServiceError::ClientUnavailable(_) => "invalid_request",
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_errors_read_by_the_side_that_failed() {
        let challenge = ServiceError::Pkce(PkceError::UnsupportedMethod);
        let verifier = ServiceError::Pkce(PkceError::Mismatch);
        assert_eq!(challenge.oauth_code(), "invalid_request");
        assert_eq!(verifier.oauth_code(), "invalid_grant");
        assert_eq!(
            ServiceError::Scope(ScopeError::Widening).oauth_code(),
            "invalid_scope"
        );
    }
}
