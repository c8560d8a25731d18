//! The `[auth]` section of the mcp-server configuration: which AS to trust and how
//! to verify its tokens. Presets for external IdPs are just values of these keys
//! (issuer, discovery/JWKS overrides, accepted audiences).

use serde::{Deserialize, Serialize};
use shared::Secret;

/// How bearer tokens are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifierMode {
    /// Local signature check with keys from the AS's JWKS (no per-request AS call).
    #[default]
    Jwks,
    /// RFC 7662 introspection with the RS's own client credentials, cached.
    Introspection,
}

impl VerifierMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifierMode::Jwks => "jwks",
            VerifierMode::Introspection => "introspection",
        }
    }
}

/// Algorithms accepted by default: what our AS and the common IdPs sign with.
pub const DEFAULT_ALGORITHMS: [&str; 3] = ["ES256", "RS256", "EdDSA"];

/// Asymmetric JWS algorithms that may be put in `algorithms`. `none` and `HS*` are
/// never accepted: an RS holding only public keys cannot verify a MAC, and allowing
/// it opens the key-confusion attack.
pub const SUPPORTED_ALGORITHMS: [&str; 9] = [
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// The AS issuer identifier; the `iss` of every accepted token.
    pub issuer: String,
    pub mode: VerifierMode,
    /// Metadata URL override; otherwise `shared::metadata::discovery_urls(issuer)` in order.
    pub discovery_url: Option<String>,
    /// JWKS URL override; with it (JWKS mode) the server starts even when the
    /// metadata cannot be fetched.
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values; empty means the server's canonical resource URL.
    pub audiences: Vec<String>,
    /// Required JOSE `typ`, compared case-insensitively with an optional
    /// `application/` prefix. Unset: `at+jwt` while `require_at_jwt_typ` holds.
    pub required_typ: Option<String>,
    /// Refuse JWT access tokens whose header `typ` is not `at+jwt` (RFC 9068 §4), so
    /// that an ID token or another JWT of the same issuer is never taken for an
    /// access token. Providers that do not set it (Auth0 without the RFC 9068
    /// profile, Okta, Entra, Keycloak) turn it off in their preset.
    pub require_at_jwt_typ: bool,
    /// Follow the AS's revocation feed (`revocation_feed_endpoint`) so that revoked
    /// grants and tokens are refused before they expire. Unset: on when the AS
    /// advertises the endpoint (or `revocation_feed_endpoint` is set) and client
    /// credentials are configured.
    pub revocation_feed: Option<bool>,
    /// Revocation feed URL override; otherwise from the AS metadata.
    pub revocation_feed_endpoint: Option<String>,
    /// How often the revocation feed is polled.
    pub revocation_poll_secs: u64,
    /// Clock-skew allowance for `exp`/`nbf`.
    pub leeway_secs: u64,
    /// An unknown `kid` triggers at most one JWKS refetch per this interval.
    pub jwks_min_refetch_interval_secs: u64,
    /// Keys older than this are reloaded in the background on the next uncached
    /// token, so a key the AS withdrew stops being trusted. 0: only on unknown kids.
    pub jwks_refresh_interval_secs: u64,
    /// Introspection endpoint override; otherwise from the AS metadata.
    pub introspection_endpoint: Option<String>,
    /// The RS's own client credentials (introspection, admin API).
    pub client_id: String,
    pub client_secret: Secret,
    /// Bound of the verified-token cache (entries) and of the jti deny-list.
    pub token_cache_max_entries: usize,
    /// Introspection results are cached until min(exp, now + this). 0 disables the
    /// introspection cache.
    pub introspection_cache_max_ttl_secs: u64,
    /// Extra attempts to fetch the AS metadata/JWKS at startup (compose start order),
    /// with exponential backoff from `startup_retry_delay_ms` (capped at 10 s).
    pub startup_retries: u32,
    pub startup_retry_delay_ms: u64,
    /// Public tools work without a token (read by the transport only).
    pub allow_anonymous: bool,
    /// Accepted JWS algorithms (subset of [`SUPPORTED_ALGORITHMS`]).
    pub algorithms: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: "http://localhost:3001".into(),
            mode: VerifierMode::Jwks,
            discovery_url: None,
            jwks_uri: None,
            audiences: Vec::new(),
            required_typ: None,
            require_at_jwt_typ: true,
            revocation_feed: None,
            revocation_feed_endpoint: None,
            revocation_poll_secs: 5,
            leeway_secs: 60,
            jwks_min_refetch_interval_secs: 30,
            jwks_refresh_interval_secs: 900,
            introspection_endpoint: None,
            client_id: String::new(),
            client_secret: Secret::default(),
            token_cache_max_entries: 10_000,
            introspection_cache_max_ttl_secs: 300,
            startup_retries: 0,
            startup_retry_delay_ms: 500,
            allow_anonymous: false,
            algorithms: DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

fn check_url(key: &str, value: &str) -> Result<(), String> {
    shared::resource::canonical_url(value)
        .map(|_| ())
        .map_err(|e| format!("auth.{key}: {e}"))
}

/// Parses one configured algorithm name, refusing `none`, `HS*` and unknown names.
pub fn parse_algorithm(name: &str) -> Result<jsonwebtoken::Algorithm, String> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("none") || trimmed.to_ascii_uppercase().starts_with("HS") {
        return Err(format!(
            "auth.algorithms: {trimmed:?} is refused (only asymmetric algorithms: {})",
            SUPPORTED_ALGORITHMS.join(", ")
        ));
    }
    if !SUPPORTED_ALGORITHMS.contains(&trimmed) {
        return Err(format!(
            "auth.algorithms: unknown algorithm {trimmed:?} (supported: {})",
            SUPPORTED_ALGORITHMS.join(", ")
        ));
    }
    trimmed
        .parse()
        .map_err(|_| format!("auth.algorithms: unknown algorithm {trimmed:?}"))
}

impl AuthSettings {
    /// Checks the section; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        check_url("issuer", &self.issuer)?;
        for (key, value) in [
            ("discovery_url", &self.discovery_url),
            ("jwks_uri", &self.jwks_uri),
            ("introspection_endpoint", &self.introspection_endpoint),
            ("revocation_feed_endpoint", &self.revocation_feed_endpoint),
        ] {
            if let Some(v) = value {
                check_url(key, v)?;
            }
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err("auth.audiences: empty audience value".into());
        }
        if let Some(typ) = &self.required_typ {
            if typ.trim().is_empty() {
                return Err("auth.required_typ: must not be empty when set".into());
            }
        }
        if self.revocation_poll_secs == 0 || self.revocation_poll_secs > 3600 {
            return Err("auth.revocation_poll_secs: between 1 and 3600 seconds".into());
        }
        if self.revocation_feed == Some(true)
            && (self.client_id.trim().is_empty() || self.client_secret.is_empty())
        {
            return Err("auth.revocation_feed: needs auth.client_id and auth.client_secret (the feed is read with this server's client credentials)".into());
        }
        if self.algorithms.is_empty() {
            return Err("auth.algorithms: at least one algorithm is required".into());
        }
        for alg in &self.algorithms {
            parse_algorithm(alg)?;
        }
        if self.leeway_secs > 600 {
            return Err("auth.leeway_secs: at most 600 seconds".into());
        }
        if self.token_cache_max_entries == 0 {
            return Err("auth.token_cache_max_entries: must be at least 1".into());
        }
        if self.mode == VerifierMode::Introspection {
            if self.client_id.trim().is_empty() {
                return Err("auth.client_id: required in introspection mode (the RS authenticates to the AS)".into());
            }
            if self.client_secret.is_empty() {
                return Err("auth.client_secret: required in introspection mode".into());
            }
        }
        Ok(())
    }

    /// The JOSE `typ` a JWT access token must carry, if any: the configured one, else
    /// `at+jwt` unless `require_at_jwt_typ` is off.
    pub fn effective_required_typ(&self) -> Option<String> {
        self.required_typ.clone().or_else(|| {
            self.require_at_jwt_typ
                .then(|| shared::claims::ACCESS_TOKEN_TYP.to_string())
        })
    }

    /// Whether this server holds client credentials for calls to the AS.
    pub fn has_client_credentials(&self) -> bool {
        !self.client_id.trim().is_empty() && !self.client_secret.is_empty()
    }

    /// The configured algorithms, parsed (call after [`validate`](Self::validate)).
    pub fn parsed_algorithms(&self) -> Result<Vec<jsonwebtoken::Algorithm>, String> {
        self.algorithms.iter().map(|a| parse_algorithm(a)).collect()
    }

    /// Accepted audiences: the configured list, or the canonical resource URL.
    pub fn effective_audiences(&self, resource: &str) -> Vec<String> {
        if self.audiences.is_empty() {
            vec![shared::resource::canonical_url(resource).unwrap_or_else(|_| resource.to_string())]
        } else {
            self.audiences.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let s = AuthSettings::default();
        assert_eq!(s.issuer, "http://localhost:3001");
        assert_eq!(s.mode, VerifierMode::Jwks);
        assert_eq!(s.leeway_secs, 60);
        assert_eq!(s.jwks_min_refetch_interval_secs, 30);
        assert_eq!(s.jwks_refresh_interval_secs, 900);
        assert_eq!(s.token_cache_max_entries, 10_000);
        assert_eq!(s.introspection_cache_max_ttl_secs, 300);
        assert_eq!(s.algorithms, vec!["ES256", "RS256", "EdDSA"]);
        assert!(!s.allow_anonymous);
        assert!(s.require_at_jwt_typ);
        assert_eq!(s.effective_required_typ().as_deref(), Some("at+jwt"));
        assert_eq!(s.revocation_feed, None);
        assert_eq!(s.revocation_poll_secs, 5);
        s.validate().unwrap();
    }

    #[test]
    fn the_access_token_typ_is_required_unless_switched_off() {
        let off = AuthSettings {
            require_at_jwt_typ: false,
            ..Default::default()
        };
        assert_eq!(off.effective_required_typ(), None);
        let explicit = AuthSettings {
            required_typ: Some("application/at+jwt".into()),
            require_at_jwt_typ: false,
            ..Default::default()
        };
        assert_eq!(
            explicit.effective_required_typ().as_deref(),
            Some("application/at+jwt")
        );
    }

    #[test]
    fn a_forced_revocation_feed_needs_credentials_and_a_sane_interval() {
        let mut s = AuthSettings {
            revocation_feed: Some(true),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("auth.revocation_feed"));
        s.client_id = "rs".into();
        s.client_secret = Secret::new("x");
        s.validate().unwrap();
        s.revocation_poll_secs = 0;
        assert!(s.validate().unwrap_err().contains("revocation_poll_secs"));
    }

    #[test]
    fn refuses_none_hs_and_unknown_algorithms() {
        for bad in ["none", "NONE", "HS256", "hs512", "XX1"] {
            let s = AuthSettings {
                algorithms: vec![bad.into()],
                ..Default::default()
            };
            let err = s.validate().unwrap_err();
            assert!(err.contains("auth.algorithms"), "{err}");
        }
        let s = AuthSettings {
            algorithms: vec![],
            ..Default::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn introspection_needs_credentials() {
        let mut s = AuthSettings {
            mode: VerifierMode::Introspection,
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("auth.client_id"));
        s.client_id = "rs".into();
        assert!(s.validate().unwrap_err().contains("auth.client_secret"));
        s.client_secret = Secret::new("x");
        s.validate().unwrap();
    }

    #[test]
    fn bad_urls_name_the_key() {
        let s = AuthSettings {
            issuer: "not a url".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().starts_with("auth.issuer"));
        let s = AuthSettings {
            jwks_uri: Some("ftp://x/jwks".into()),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().starts_with("auth.jwks_uri"));
    }

    #[test]
    fn mode_is_lower_case_in_config() {
        let s: AuthSettings = serde_json::from_str(r#"{"mode":"introspection"}"#).unwrap();
        assert_eq!(s.mode, VerifierMode::Introspection);
        assert_eq!(serde_json::to_value(VerifierMode::Jwks).unwrap(), "jwks");
        assert!(serde_json::from_str::<AuthSettings>(r#"{"mode":"JWKS"}"#).is_err());
    }

    #[test]
    fn loads_through_the_layered_loader() {
        let s: AuthSettings = shared::settings::load(None, "MCPAUTHSETTINGSTEST", &[]).unwrap();
        assert_eq!(s, AuthSettings::default());
    }

    #[test]
    fn audiences_default_to_the_canonical_resource() {
        let s = AuthSettings::default();
        assert_eq!(
            s.effective_audiences("http://LOCALHOST:3000/mcp/"),
            vec!["http://localhost:3000/mcp"]
        );
        let s = AuthSettings {
            audiences: vec!["api://abc".into()],
            ..Default::default()
        };
        assert_eq!(
            s.effective_audiences("http://localhost:3000/mcp"),
            vec!["api://abc"]
        );
    }
}
