//! OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document), as
//! MCP 2025-11-25 uses them: a client whose `client_id` is an https URL publishes its
//! metadata as a JSON document at that URL, and the authorization server fetches it.
//!
//! Fetching a URL chosen by an unauthenticated party is a server-side request forgery
//! risk, so every fetch is guarded:
//! - https only (http only on a loopback host, and only with `allow_insecure_cimd_for_tests`);
//! - the host is resolved by us and every address must be public (no loopback, RFC 1918,
//!   link-local, CGNAT, ULA, multicast, documentation ... ranges, including IPv4-mapped and
//!   other IPv4-embedding IPv6 forms); the connection goes to exactly the vetted addresses
//!   because the HTTP client's resolver is the vetting resolver itself, so DNS rebinding
//!   between check and connect is impossible; proxies from the environment are ignored;
//! - no redirects (a 3xx is an error), a timeout on the whole fetch, a byte cap enforced while
//!   streaming the body;
//! - the document is validated ([`validate_document`], in `domain::metadata_document`, on top
//!   of the registration rules) before anything else sees it.
//!
//! The guard lives in `address`, the fetching and caching in `resolver`. Results are cached
//! per `Cache-Control` in a bounded LRU, and concurrent resolutions of the same URL share
//! one fetch.

mod address;
mod cache_control;
mod resolver;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::domain::redirect_uri::is_loopback_host;

pub use crate::domain::metadata_document::{
    redirect_uri_acceptable, validate_document, ClientMetadataDocument, DocumentError,
};
pub use address::{classify_ip, ip_allowed, AddressClass};
pub use cache_control::cache_lifetime;
pub use resolver::CimdResolver;

/// Settings of the CIMD resolver (`[cimd]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CimdSettings {
    /// Accept URL client ids at all.
    pub enabled: bool,
    /// Tests only: allow http on loopback hosts and fetching from loopback and private
    /// addresses. Never enable in production: it opens the server to SSRF.
    pub allow_insecure_cimd_for_tests: bool,
    /// Timeout of one whole fetch (connect, headers and body).
    pub timeout_ms: u64,
    /// Largest accepted document.
    pub max_document_bytes: usize,
    /// Number of documents kept in the cache (0 disables caching).
    pub max_cache_entries: usize,
    /// Cache lifetime when the response carries no `Cache-Control: max-age`.
    pub default_cache_secs: u64,
    /// Upper bound for any cache lifetime.
    pub max_cache_secs: u64,
}

impl Default for CimdSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_insecure_cimd_for_tests: false,
            timeout_ms: 5000,
            max_document_bytes: 65536,
            max_cache_entries: 1000,
            default_cache_secs: 300,
            max_cache_secs: 86400,
        }
    }
}

/// Why a client id URL could not be resolved. `Display` is safe to show to a user: it never
/// contains resolved addresses or internal error details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    #[error("client metadata documents are not enabled on this server")]
    Disabled,
    #[error("client_id is not a valid client metadata document URL (https, with a path, no fragment, no credentials)")]
    InvalidClientId,
    #[error("the client metadata host {0} does not resolve to a public address")]
    ForbiddenAddress(String),
    #[error("the client metadata host {0} could not be resolved")]
    Dns(String),
    #[error("fetching the client metadata document timed out")]
    Timeout,
    #[error("the client metadata document could not be fetched: {0}")]
    Fetch(String),
    #[error(
        "the client metadata document URL answered with a redirect; redirects are not followed"
    )]
    Redirect,
    #[error("the client metadata document URL answered with HTTP status {0}")]
    HttpStatus(u16),
    #[error("the client metadata document is larger than {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("client metadata resolver configuration: {0}")]
    Config(String),
}

/// Whether `s` is written as an http(s) URL, i.e. can only be meant as the address of a
/// metadata document (stored clients are looked up before this matters).
pub fn looks_like_url_client_id(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Whether `s` is a client id that must be resolved as a metadata document: an https URL in
/// canonical form with a non-root path, no fragment and no user info. Use
/// [`CimdResolver::is_cimd_client_id`] (or [`is_cimd_client_id_with`]) to honour the test
/// switch that also accepts http on loopback hosts.
pub fn is_cimd_client_id(s: &str) -> bool {
    is_cimd_client_id_with(s, false)
}

/// [`is_cimd_client_id`], and with `allow_insecure` also `http://` URLs whose host is
/// `localhost` or a loopback address.
pub fn is_cimd_client_id_with(s: &str, allow_insecure: bool) -> bool {
    parse_client_id(s, allow_insecure).is_some()
}

fn parse_client_id(s: &str, allow_insecure: bool) -> Option<Url> {
    if !(s.starts_with("https://") || s.starts_with("http://")) || s.len() > 2048 {
        return None;
    }
    let url = Url::parse(s).ok()?;
    // Canonical form only: the document must repeat the id byte for byte anyway, and this
    // rules out dot segments, default ports, upper-case hosts and odd encodings.
    if url.as_str() != s {
        return None;
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure && url.host().is_some_and(is_loopback_host) => {}
        _ => return None,
    }
    if url.host().is_none()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() == "/"
        || url.path().is_empty()
    {
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_urls() {
        assert!(is_cimd_client_id("https://app.example.com/client.json"));
        assert!(is_cimd_client_id(
            "https://app.example.com:8443/oauth/client-metadata.json"
        ));
        assert!(is_cimd_client_id("https://app.example.com/c?v=1"));
        assert!(!is_cimd_client_id("https://app.example.com/"));
        assert!(!is_cimd_client_id("https://app.example.com"));
        assert!(!is_cimd_client_id("https://app.example.com/c#frag"));
        assert!(!is_cimd_client_id("https://user:pw@app.example.com/c"));
        assert!(!is_cimd_client_id("https://app.example.com/a/../c"));
        assert!(!is_cimd_client_id("https://APP.example.com/c"));
        assert!(!is_cimd_client_id("http://app.example.com/c"));
        assert!(!is_cimd_client_id("http://127.0.0.1:8080/c"));
        assert!(!is_cimd_client_id("my-client"));
        assert!(!is_cimd_client_id("9b2c9e0a-2d5c-4bd4-9a3f-1f3f3f3f3f3f"));
        assert!(!is_cimd_client_id("urn:example:client"));
        // With the test switch, http on loopback only.
        assert!(is_cimd_client_id_with("http://127.0.0.1:8080/c", true));
        assert!(is_cimd_client_id_with("http://localhost:8080/c", true));
        assert!(is_cimd_client_id_with("http://[::1]:8080/c", true));
        assert!(!is_cimd_client_id_with("http://app.example.com/c", true));
        assert!(!is_cimd_client_id_with("http://10.0.0.1/c", true));
    }
}
