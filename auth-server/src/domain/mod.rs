//! Pure OAuth rules, one per module, each unit-tested. Nothing here knows about HTTP
//! or SQL.

pub mod client_auth;
pub mod key_encryption;
pub mod keys;
pub mod metadata_document;
pub mod passwords;
pub mod pkce;
pub mod redirect_uri;
pub mod refresh_chain;
pub mod registration_policy;
pub mod scope_policy;
pub mod signing;
pub mod tokens;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
