//! Types and rules that both services must agree on byte for byte: scope names and their
//! hierarchy, bearer tokens on the wire (RFC 6750), access-token claims, canonical resource URLs and audience matching, the
//! well-known metadata documents, secret handling, layered configuration and logging.

pub mod bearer;
pub mod claims;
pub mod healthcheck;
pub mod jwk;
pub mod metadata;
pub mod metrics;
pub mod metrics_listener;
pub mod resource;
pub mod scopes;
pub mod secret;
pub mod settings;
pub mod telemetry;

pub use claims::{AccessTokenClaims, Audience};
pub use scopes::ScopeSet;
pub use secret::Secret;
