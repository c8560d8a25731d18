//! Canonical resource URLs (RFC 8707 / RFC 9728) and audience matching.
//!
//! Clients compare the PRM `resource` with the URL they connected to, and the RS
//! compares the token's `aud` with its own URL, so both sides must canonicalise alike:
//! lower-case scheme and host, no default port, no fragment, no trailing slash.

use crate::claims::Audience;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceUrlError {
    #[error("{0:?} is not an absolute URL")]
    NotAbsolute(String),
    #[error("{0:?} must use http or https")]
    BadScheme(String),
    #[error("{0:?} must not contain a fragment")]
    HasFragment(String),
}

/// Canonical form of a resource or issuer URL.
pub fn canonical_url(raw: &str) -> Result<String, ResourceUrlError> {
    let parsed =
        url::Url::parse(raw.trim()).map_err(|_| ResourceUrlError::NotAbsolute(raw.into()))?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(ResourceUrlError::BadScheme(raw.into()));
    }
    if parsed.fragment().is_some() {
        return Err(ResourceUrlError::HasFragment(raw.into()));
    }
    if parsed.host_str().is_none() {
        return Err(ResourceUrlError::NotAbsolute(raw.into()));
    }
    // url::Url already lower-cases scheme and host and drops default ports. The host is
    // there, so every trailing slash belongs to the path (or query), even after a `:`.
    let serialized = parsed.to_string();
    Ok(serialized.trim_end_matches('/').to_string())
}

/// Comparison form used for audience matching: canonical when parseable, otherwise
/// the raw value minus trailing slashes (audiences like `api://abc` are not URLs
/// for every IdP).
pub fn normalize_audience(raw: &str) -> String {
    canonical_url(raw).unwrap_or_else(|_| raw.trim_end_matches('/').to_string())
}

/// Whether any `aud` value equals any accepted audience, after normalisation.
pub fn audience_matches(aud: &Audience, accepted: &[String]) -> bool {
    aud.values().any(|a| {
        let a = normalize_audience(a);
        accepted.iter().any(|acc| normalize_audience(acc) == a)
    })
}

/// The RFC 9728 §3.1 well-known URL for a resource: the path of the resource is
/// appended after `/.well-known/oauth-protected-resource`.
pub fn protected_resource_metadata_url(resource: &str) -> Result<String, ResourceUrlError> {
    let canonical = canonical_url(resource)?;
    let parsed =
        url::Url::parse(&canonical).map_err(|_| ResourceUrlError::NotAbsolute(resource.into()))?;
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    Ok(format!(
        "{origin}/.well-known/oauth-protected-resource{path}"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_case_slash_and_default_port() {
        assert_eq!(
            canonical_url("HTTPS://MCP.Example.com:443/mcp/").unwrap(),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            canonical_url("http://127.0.0.1:3000/mcp").unwrap(),
            "http://127.0.0.1:3000/mcp"
        );
        assert_eq!(
            canonical_url("http://localhost:3001/").unwrap(),
            "http://localhost:3001"
        );
        // Found by fuzzing: a path ending in "://" kept its trailing slashes.
        assert_eq!(
            canonical_url("https:/hp/a\u{0}://").unwrap(),
            "https://hp/a%00:"
        );
        assert_eq!(canonical_url("https://x/mcp://").unwrap(), "https://x/mcp:");
        assert!(canonical_url("https://x/mcp#frag").is_err());
        assert!(canonical_url("ftp://x/").is_err());
        assert!(canonical_url("/mcp").is_err());
    }

    #[test]
    fn audience_string_or_array_with_trailing_slash() {
        let accepted = vec!["http://127.0.0.1:3000/mcp".to_string()];
        assert!(audience_matches(
            &Audience::One("http://127.0.0.1:3000/mcp/".into()),
            &accepted
        ));
        assert!(audience_matches(
            &Audience::Many(vec!["other".into(), "http://127.0.0.1:3000/mcp".into()]),
            &accepted
        ));
        assert!(!audience_matches(
            &Audience::One("http://127.0.0.1:3000/other".into()),
            &accepted
        ));
        assert!(audience_matches(
            &Audience::One("api://abc/".into()),
            &["api://abc".to_string()]
        ));
    }

    #[test]
    fn prm_url_inserts_path() {
        assert_eq!(
            protected_resource_metadata_url("http://127.0.0.1:3000/mcp").unwrap(),
            "http://127.0.0.1:3000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            protected_resource_metadata_url("https://x.example").unwrap(),
            "https://x.example/.well-known/oauth-protected-resource"
        );
    }
}
