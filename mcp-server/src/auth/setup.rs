//! Startup: validate the `[auth]` settings, discover the AS, build the verifier the
//! configuration asks for.

use std::sync::Arc;
use std::time::Duration;

use shared::metadata::AuthorizationServerMetadata;

use super::claims::ClaimRules;
use super::discovery::{candidate_urls, discover, discover_with_retries, retry_delay};
use super::introspection::IntrospectionVerifier;
use super::jwks::{JwksOptions, JwksVerifier};
use super::settings::{AuthSettings, VerifierMode};
use super::TokenVerifier;

/// Why the verifier could not be built. Messages are meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("invalid auth settings: {0}")]
    Invalid(String),
    #[error(
        "cannot fetch AS metadata from {urls}: {reason} (is the authorization server running and \
         auth.issuer right? To wait for it at startup set auth.startup_retries, e.g. \
         MCP__AUTH__STARTUP_RETRIES=20; to start without its metadata set auth.jwks_uri)"
    )]
    Metadata { urls: String, reason: String },
    #[error(
        "metadata issuer mismatch: {url} says issuer {found:?} but auth.issuer is {configured:?} \
         (they must be identical; fix auth.issuer or auth.discovery_url)"
    )]
    IssuerMismatch {
        url: String,
        configured: String,
        found: String,
    },
    #[error("no jwks_uri: the AS metadata of {0} has none; set auth.jwks_uri")]
    NoJwksUri(String),
    #[error("no introspection endpoint: the AS metadata of {0} has none; set auth.introspection_endpoint")]
    NoIntrospectionEndpoint(String),
}

/// The verifier chosen by configuration, and the AS metadata when it was fetched
/// (for the `oauth_info` tool).
pub struct BuiltVerifier {
    pub verifier: Arc<dyn TokenVerifier>,
    pub metadata: Option<AuthorizationServerMetadata>,
}

/// Metadata is required unless the endpoint the mode needs is configured
/// explicitly; then it is fetched once, best effort, for `oauth_info`.
async fn metadata_for(
    settings: &AuthSettings,
    http: &reqwest::Client,
    explicit_endpoint: bool,
) -> Result<Option<AuthorizationServerMetadata>, AuthSetupError> {
    if !explicit_endpoint {
        return discover(http, settings).await.map(Some);
    }
    match discover_with_retries(http, settings, 0).await {
        Ok(m) => Ok(Some(m)),
        Err(e @ AuthSetupError::IssuerMismatch { .. }) => Err(e),
        Err(e) => {
            log::warn!("continuing without AS metadata (endpoint configured explicitly): {e}");
            Ok(None)
        }
    }
}

/// Builds the verifier for `resource` (the canonical MCP URL, the default audience).
/// Refuses when the metadata cannot be fetched and the endpoint the mode needs
/// (`jwks_uri` / `introspection_endpoint`) is not configured. In JWKS mode the keys
/// are loaded with the startup retries; if that still fails the verifier starts
/// without keys (`is_ready() == false`) and loads them on the first token.
pub async fn build_verifier(
    settings: &AuthSettings,
    resource: &str,
    http: reqwest::Client,
) -> Result<BuiltVerifier, AuthSetupError> {
    settings.validate().map_err(AuthSetupError::Invalid)?;
    let rules = ClaimRules::new(
        &settings.issuer,
        settings.effective_audiences(resource),
        settings.leeway_secs,
    );
    let source = || {
        candidate_urls(settings)
            .first()
            .cloned()
            .unwrap_or_else(|| settings.issuer.clone())
    };
    match settings.mode {
        VerifierMode::Jwks => {
            let metadata = metadata_for(settings, &http, settings.jwks_uri.is_some()).await?;
            let jwks_uri = match (
                &settings.jwks_uri,
                metadata.as_ref().and_then(|m| m.jwks_uri.clone()),
            ) {
                (Some(explicit), _) => explicit.clone(),
                (None, Some(discovered)) => discovered,
                (None, None) => return Err(AuthSetupError::NoJwksUri(source())),
            };
            let algorithms = settings
                .parsed_algorithms()
                .map_err(AuthSetupError::Invalid)?;
            let options = JwksOptions {
                algorithms,
                required_typ: settings.effective_required_typ(),
                min_refetch_interval: Duration::from_secs(settings.jwks_min_refetch_interval_secs),
                refresh_interval: match settings.jwks_refresh_interval_secs {
                    0 => None,
                    secs => Some(Duration::from_secs(secs)),
                },
                cache_max_entries: settings.token_cache_max_entries,
            };
            let verifier = JwksVerifier::new(jwks_uri, http, rules, options);
            let mut attempt = 0;
            loop {
                match verifier.load_keys().await {
                    Ok(n) => {
                        log::info!("loaded {n} signing key(s) from {}", verifier.jwks_uri());
                        break;
                    }
                    Err(e) if attempt >= settings.startup_retries => {
                        log::warn!(
                            "cannot load signing keys from {}: {e}; not ready until they load",
                            verifier.jwks_uri()
                        );
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        log::warn!("signing keys not available yet (attempt {attempt}): {e}");
                        tokio::time::sleep(retry_delay(settings.startup_retry_delay_ms, attempt))
                            .await;
                    }
                }
            }
            Ok(BuiltVerifier {
                verifier: Arc::new(verifier),
                metadata,
            })
        }
        VerifierMode::Introspection => {
            let metadata =
                metadata_for(settings, &http, settings.introspection_endpoint.is_some()).await?;
            let endpoint = match (
                &settings.introspection_endpoint,
                metadata
                    .as_ref()
                    .and_then(|m| m.introspection_endpoint.clone()),
            ) {
                (Some(explicit), _) => explicit.clone(),
                (None, Some(discovered)) => discovered,
                (None, None) => return Err(AuthSetupError::NoIntrospectionEndpoint(source())),
            };
            let verifier = IntrospectionVerifier::new(
                endpoint,
                http,
                &settings.client_id,
                &settings.client_secret,
                rules,
                settings.introspection_cache_max_ttl_secs,
                settings.token_cache_max_entries,
            )
            .map_err(AuthSetupError::Invalid)?;
            log::info!(
                "verifying tokens by introspection at {}",
                verifier.endpoint()
            );
            Ok(BuiltVerifier {
                verifier: Arc::new(verifier),
                metadata,
            })
        }
    }
}
