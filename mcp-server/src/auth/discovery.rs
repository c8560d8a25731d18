//! AS metadata discovery (RFC 8414, falling back to OIDC discovery) with the issuer
//! check, plus the bounded HTTP helpers the verifiers use to talk to the AS.

use std::time::Duration;

use shared::metadata::AuthorizationServerMetadata;

use super::settings::AuthSettings;
use super::AuthSetupError;

/// Timeout of every request the RS makes to the AS.
pub const AS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of a metadata/JWKS/introspection document.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(format!("response larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading body: {e}"))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("response larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GET `url` and parse a JSON document (timeout, size cap, 2xx only).
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    send_for_json(http.get(url), MAX_DOCUMENT_BYTES).await
}

/// Sends a request to the authorization server and parses its JSON answer, the same
/// way for every document the resource server reads from it: a timeout, at most
/// `limit` bytes, 2xx only.
pub(crate) async fn send_for_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    limit: usize,
) -> Result<T, String> {
    let response = request
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(AS_REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| describe_reqwest_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let body = read_limited(response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| format!("invalid JSON: {e}"))
}

/// A short, token-free description of a transport error.
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // reqwest errors carry the URL (never a body), which is fine to log.
        e.to_string()
    }
}

/// Whether the metadata `issuer` is the configured one: byte-identical after
/// canonicalisation (RFC 8414 §3.3 requires identity; we forgive a trailing slash
/// or host case in the configuration).
pub fn issuer_matches(configured: &str, found: &str) -> bool {
    if configured == found {
        return true;
    }
    match (
        shared::resource::canonical_url(configured),
        shared::resource::canonical_url(found),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The URLs to try, in order: the override alone, or the RFC 8414 / OIDC candidates.
pub fn candidate_urls(settings: &AuthSettings) -> Vec<String> {
    match &settings.discovery_url {
        Some(url) => vec![url.clone()],
        None => shared::metadata::discovery_urls(&settings.issuer),
    }
}

/// One pass over the candidate URLs. An issuer mismatch is final (a configuration
/// error, not a start-order problem); anything else falls through to the next URL.
async fn fetch_once(
    http: &reqwest::Client,
    issuer: &str,
    urls: &[String],
) -> Result<AuthorizationServerMetadata, AuthSetupError> {
    let mut failures = Vec::new();
    for url in urls {
        match get_json::<AuthorizationServerMetadata>(http, url).await {
            Ok(metadata) if issuer_matches(issuer, &metadata.issuer) => return Ok(metadata),
            Ok(metadata) => {
                return Err(AuthSetupError::IssuerMismatch {
                    url: url.clone(),
                    configured: issuer.to_string(),
                    found: metadata.issuer,
                })
            }
            Err(reason) => failures.push(format!("{url}: {reason}")),
        }
    }
    Err(AuthSetupError::Metadata {
        urls: urls.join(", "),
        reason: failures.join("; "),
    })
}

/// Longest pause between two startup attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Exponential backoff for startup attempt `attempt` (1-based): `base`, `2·base`,
/// `4·base`, ... capped at 10 s (or at `base` when that is larger).
pub(crate) fn retry_delay(base_ms: u64, attempt: u32) -> Duration {
    let base = Duration::from_millis(base_ms);
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY.max(base))
}

/// Fetches the AS metadata, retrying `startup_retries` times with exponential
/// backoff from `startup_retry_delay_ms`.
pub async fn discover(
    http: &reqwest::Client,
    settings: &AuthSettings,
) -> Result<AuthorizationServerMetadata, AuthSetupError> {
    discover_with_retries(http, settings, settings.startup_retries).await
}

pub(crate) async fn discover_with_retries(
    http: &reqwest::Client,
    settings: &AuthSettings,
    retries: u32,
) -> Result<AuthorizationServerMetadata, AuthSetupError> {
    let urls = candidate_urls(settings);
    if urls.is_empty() {
        return Err(AuthSetupError::Invalid(format!(
            "auth.issuer {:?} is not a URL",
            settings.issuer
        )));
    }
    let mut attempt = 0;
    loop {
        match fetch_once(http, &settings.issuer, &urls).await {
            Ok(metadata) => return Ok(metadata),
            Err(e @ AuthSetupError::IssuerMismatch { .. }) => return Err(e),
            Err(e) if attempt >= retries => return Err(e),
            Err(e) => {
                attempt += 1;
                log::warn!(
                    "AS metadata not available yet (attempt {attempt}/{}): {e}",
                    retries + 1
                );
                tokio::time::sleep(retry_delay(settings.startup_retry_delay_ms, attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_retries_back_off_exponentially_with_a_cap() {
        assert_eq!(retry_delay(500, 1), Duration::from_millis(500));
        assert_eq!(retry_delay(500, 2), Duration::from_millis(1000));
        assert_eq!(retry_delay(500, 4), Duration::from_millis(4000));
        assert_eq!(retry_delay(500, 6), Duration::from_secs(10));
        assert_eq!(retry_delay(500, u32::MAX), Duration::from_secs(10));
        assert_eq!(retry_delay(30_000, 3), Duration::from_secs(30));
        assert_eq!(retry_delay(0, 3), Duration::ZERO);
    }

    #[test]
    fn issuer_comparison() {
        assert!(issuer_matches(
            "http://localhost:3001",
            "http://localhost:3001"
        ));
        assert!(issuer_matches(
            "http://localhost:3001/",
            "http://localhost:3001"
        ));
        assert!(issuer_matches(
            "https://x.auth0.com/",
            "https://X.auth0.com/"
        ));
        assert!(!issuer_matches(
            "http://localhost:3001",
            "http://localhost:3002"
        ));
        assert!(!issuer_matches(
            "https://kc/realms/a",
            "https://kc/realms/b"
        ));
    }

    #[test]
    fn candidates_follow_override_or_issuer() {
        let s = AuthSettings {
            issuer: "https://kc.example/realms/mcp".into(),
            ..Default::default()
        };
        assert_eq!(candidate_urls(&s).len(), 3);
        let s = AuthSettings {
            discovery_url: Some(
                "https://login.example/v2.0/.well-known/openid-configuration".into(),
            ),
            ..s
        };
        assert_eq!(
            candidate_urls(&s),
            vec!["https://login.example/v2.0/.well-known/openid-configuration"]
        );
    }
}
