//! Bearer-token verification. The transport layer only sees [`TokenVerifier`] and
//! [`Principal`]; which AS issued the token and how it is checked (local JWKS or
//! RFC 7662 introspection) is chosen by configuration.

pub mod cache;
pub mod claims;
pub mod discovery;
pub mod introspection;
pub mod jwks;
pub mod revocation_feed;
pub mod settings;
mod setup;
pub mod upstream;

use std::sync::Arc;

use futures::future::BoxFuture;
use shared::ScopeSet;

pub use settings::{AuthSettings, VerifierMode};
pub use setup::{build_verifier, AuthSetupError, BuiltVerifier};
pub use upstream::UpstreamStatus;

/// Longest bearer token we look at; anything longer is `Malformed` before hashing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Current time in unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Who is calling, as established from a verified access token. Holds no token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// `sub`: the user (or, for client_credentials tokens, the client).
    pub subject: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub client_id: Option<String>,
    pub scopes: ScopeSet,
    pub audience: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// `jti`, when the AS sets one.
    pub token_id: Option<String>,
    /// `sid`: the grant the token belongs to, when the AS sets one (the revocation
    /// feed names revoked grants by it).
    pub grant_id: Option<String>,
}

/// Why a token was refused. Every variant maps to HTTP 401 with
/// `error="invalid_token"`, except `Unavailable`, which maps to 503 only when no
/// cached material could decide (never 500).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token uses a disallowed algorithm")]
    DisallowedAlgorithm,
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token was minted for another resource")]
    WrongAudience,
    #[error("token has the wrong type")]
    WrongType,
    #[error("token is not active")]
    Inactive,
    /// The AS's revocation feed lists the token or its grant.
    #[error("token has been revoked")]
    Revoked,
    #[error("authorization server unavailable: {0}")]
    Unavailable(String),
}

impl VerifyError {
    /// Short label for metrics (`auth_failures_total{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed => "malformed",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::DisallowedAlgorithm => "disallowed_alg",
            VerifyError::UnknownKey => "unknown_kid",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::WrongIssuer => "wrong_issuer",
            VerifyError::WrongAudience => "wrong_audience",
            VerifyError::WrongType => "wrong_type",
            VerifyError::Inactive => "inactive",
            VerifyError::Revoked => "revoked",
            VerifyError::Unavailable(_) => "unavailable",
        }
    }
}

/// Verifies bearer tokens. Implementations cache: a token seen before must be
/// answered in microseconds without a signature check or a network call.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>>;
    /// `"jwks"` or `"introspection"`, shown by the `auth_status` and `oauth_info` tools.
    fn mode(&self) -> &'static str;
    /// Key ids currently cached (empty for introspection).
    fn key_ids(&self) -> Vec<String>;
    /// Whether the verifier has what it needs to verify (keys loaded); drives `/readyz`.
    fn is_ready(&self) -> bool;
    /// Refuse tokens with this `jti` from now on (until `expires_at`, unix seconds) and
    /// drop them from every cache: called after the admin tool revokes a grant, since a
    /// JWT verified locally would otherwise stay valid until it expires.
    fn deny_token_id(&self, token_id: &str, expires_at: i64);
    /// Synchronous fast path: the principal of a token verified before and still
    /// valid, from the verified-token cache. No I/O, no signature check, no
    /// allocation beyond the `Arc` clone. `None` means "call [`verify`](Self::verify)".
    /// Provided so that other implementations (test fakes) need not care.
    fn cached(&self, _token: &str) -> Option<Arc<Principal>> {
        None
    }
    /// Whether the AS answered the verifier's latest request (`/readyz`).
    fn upstream(&self) -> UpstreamStatus {
        UpstreamStatus::default()
    }
    /// Asks the AS again in the background if nobody has lately, so that
    /// `/readyz` notices an outage, and its end, while every token is cached.
    /// Never waits.
    fn check_upstream(&self) {}
}
