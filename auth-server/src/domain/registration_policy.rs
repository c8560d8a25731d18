//! Client metadata rules (RFC 7591): which metadata we accept, the defaults we fill
//! in, and the errors (`invalid_redirect_uri`, `invalid_client_metadata`) for
//! everything else. Dynamic registration uses them as they are; client metadata
//! documents layer their own rules on top (`metadata_document`).

use serde::{Deserialize, Serialize};
use shared::ScopeSet;

use super::redirect_uri::{self, RedirectKind};
use super::scope_policy::known_user_scopes;

pub const AUTH_METHODS: &[&str] = &["none", "client_secret_post", "client_secret_basic"];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error("{0}")]
    InvalidClientMetadata(String),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }
}

/// The registration request as sent. Unknown members are ignored (RFC 7591 §2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RegistrationRequest {
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub scope: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    pub application_type: Option<String>,
    /// RFC 7592 update requests carry the client_id (must match).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Validated metadata, as stored and as echoed back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// Always present (possibly empty) so clients see what they may request.
    pub scope: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub contacts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    pub application_type: String,
}

impl ClientMetadata {
    pub fn is_confidential(&self) -> bool {
        self.token_endpoint_auth_method != "none"
    }
}

/// Longest free-text member (software id and version), in bytes.
const MAX_TEXT_BYTES: usize = 256;
/// Longest client name, in characters: it is shown on the consent page, where a
/// name in a multibyte script must fit as well as an ASCII one.
const MAX_CLIENT_NAME_CHARS: usize = 256;
const MAX_URI: usize = 2048;

/// Unicode bidirectional formatting characters: in a client name shown on the
/// consent page they could make "Evil" read like a trusted name.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// How long a text member may be.
#[derive(Clone, Copy)]
enum Limit {
    Bytes(usize),
    Chars(usize),
}

impl Limit {
    fn exceeded_by(self, value: &str) -> bool {
        match self {
            Limit::Bytes(max) => value.len() > max,
            Limit::Chars(max) => value.chars().count() > max,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Bytes(max) => write!(f, "{max} bytes"),
            Limit::Chars(max) => write!(f, "{max} characters"),
        }
    }
}

/// A free-text member, trimmed (blank is absent), within `limit` and without
/// control characters.
fn text(
    field: &str,
    value: Option<String>,
    limit: Limit,
) -> Result<Option<String>, RegistrationError> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) if limit.exceeded_by(&v) => Err(RegistrationError::InvalidClientMetadata(format!(
            "{field} is longer than {limit}"
        ))),
        Some(v) if v.chars().any(|c| c.is_control() || is_bidi_control(c)) => {
            Err(RegistrationError::InvalidClientMetadata(format!(
                "{field} contains control characters"
            )))
        }
        other => Ok(other),
    }
}

/// `uri` parsed, when it is an http(s) URL with a host, short enough to store.
pub fn parse_web_uri(uri: &str) -> Option<url::Url> {
    if uri.len() > MAX_URI {
        return None;
    }
    url::Url::parse(uri)
        .ok()
        .filter(|u| (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some())
}

fn web_uri(field: &str, value: Option<String>) -> Result<Option<String>, RegistrationError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if parse_web_uri(&v).is_some() => Ok(Some(v)),
        Some(_) => Err(RegistrationError::InvalidClientMetadata(format!(
            "{field} must be an http(s) URL"
        ))),
    }
}

/// Which redirect URIs a client may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectPolicy {
    /// Dynamic registration: any registrable URI, a native app's private-use
    /// scheme included (RFC 8252 §7.1).
    AnyRegistrable,
    /// Client metadata documents: http(s) URLs only (https, or http on a loopback
    /// host), since a private-use scheme is not tied to the publishing origin.
    HttpUrlsOnly,
}

impl RedirectPolicy {
    /// Checks one redirect URI against [`redirect_uri::validate_registered`] and
    /// this policy, and says which kind of URI it is.
    pub fn check(self, uri: &str) -> Result<RedirectKind, RegistrationError> {
        let kind = redirect_uri::validate_registered(uri);
        match (self, kind) {
            (RedirectPolicy::AnyRegistrable, kind) => {
                kind.map_err(|e| RegistrationError::InvalidRedirectUri(e.to_string()))
            }
            (RedirectPolicy::HttpUrlsOnly, Ok(kind)) if kind.is_http_url() => Ok(kind),
            (RedirectPolicy::HttpUrlsOnly, _) => Err(RegistrationError::InvalidRedirectUri(format!(
                "redirect URI {uri:?} is not allowed (absolute https, or http on a loopback host, without fragment)"
            ))),
        }
    }
}

/// Validates client metadata, whether sent to the registration endpoint (RFC 7591,
/// RFC 7592 updates) or published as a client metadata document (which adds its
/// own rules on top, see [`super::metadata_document`]).
pub fn validate(
    req: RegistrationRequest,
    max_redirect_uris: usize,
    redirect_policy: RedirectPolicy,
) -> Result<ClientMetadata, RegistrationError> {
    let invalid = |m: &str| RegistrationError::InvalidClientMetadata(m.to_string());

    // The authorization code flow is the only way to obtain tokens as a registered
    // client, so every client uses it; refresh tokens are optional.
    let grant_types = req
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if let Some(bad) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(invalid(&format!("grant type {bad:?} is not supported")));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must include authorization_code"));
    }
    let response_types = req.response_types.unwrap_or_else(|| vec!["code".into()]);
    if let Some(bad) = response_types.iter().find(|r| *r != "code") {
        return Err(invalid(&format!(
            "response type {bad:?} is not supported (response_types must be [\"code\"])"
        )));
    }
    if response_types.is_empty() {
        return Err(invalid("response_types must be [\"code\"]"));
    }

    let method = req
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".into());
    if !AUTH_METHODS.contains(&method.as_str()) {
        return Err(invalid(&format!(
            "token_endpoint_auth_method must be one of {}",
            AUTH_METHODS.join(", ")
        )));
    }

    let application_type = req.application_type.unwrap_or_else(|| "web".into());
    if application_type != "web" && application_type != "native" {
        return Err(invalid("application_type must be \"web\" or \"native\""));
    }

    let redirect_uris = req
        .redirect_uris
        .ok_or_else(|| RegistrationError::InvalidRedirectUri("redirect_uris is missing".into()))?;
    if redirect_uris.is_empty() {
        return Err(RegistrationError::InvalidRedirectUri(
            "redirect_uris is empty".into(),
        ));
    }
    if redirect_uris.len() > max_redirect_uris {
        return Err(RegistrationError::InvalidRedirectUri(format!(
            "at most {max_redirect_uris} redirect_uris are allowed"
        )));
    }
    for uri in &redirect_uris {
        let kind = redirect_policy.check(uri)?;
        // A web application is a browser origin: only an http(s) URL it serves can
        // receive its codes. Private-use schemes are for native apps (RFC 8252).
        if application_type == "web" && !kind.is_http_url() {
            return Err(RegistrationError::InvalidRedirectUri(format!(
                "redirect URI {uri:?}: a web application may only use https, or http on a loopback host; a native app registers with application_type \"native\""
            )));
        }
    }

    // Accept `scope: ""`. Scopes we do not offer to users are dropped (RFC 7591 §2:
    // the server may replace requested values).
    let mut scope = ScopeSet::parse(req.scope.as_deref().unwrap_or(""))
        .map_err(|e| invalid(&format!("scope: {e}")))?;
    let known = known_user_scopes();
    scope.retain(|s| known.contains_literal(s));

    let mut contacts = req.contacts.unwrap_or_default();
    contacts.truncate(10);
    for c in &contacts {
        if c.len() > MAX_TEXT_BYTES || c.chars().any(char::is_control) {
            return Err(invalid("contacts entries must be short plain strings"));
        }
    }

    Ok(ClientMetadata {
        redirect_uris,
        token_endpoint_auth_method: method,
        grant_types,
        response_types,
        client_name: text(
            "client_name",
            req.client_name,
            Limit::Chars(MAX_CLIENT_NAME_CHARS),
        )?,
        client_uri: web_uri("client_uri", req.client_uri)?,
        logo_uri: web_uri("logo_uri", req.logo_uri)?,
        scope: scope.to_string(),
        contacts,
        tos_uri: web_uri("tos_uri", req.tos_uri)?,
        policy_uri: web_uri("policy_uri", req.policy_uri)?,
        software_id: text("software_id", req.software_id, Limit::Bytes(MAX_TEXT_BYTES))?,
        software_version: text(
            "software_version",
            req.software_version,
            Limit::Bytes(MAX_TEXT_BYTES),
        )?,
        application_type,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ANY: RedirectPolicy = RedirectPolicy::AnyRegistrable;

    fn req(uris: &[&str]) -> RegistrationRequest {
        RegistrationRequest {
            redirect_uris: Some(uris.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn inspector_native_registration_is_accepted() {
        let mut r = req(&["http://localhost:6274/oauth/callback"]);
        r.application_type = Some("native".into());
        r.token_endpoint_auth_method = Some("none".into());
        r.grant_types = Some(vec!["authorization_code".into(), "refresh_token".into()]);
        r.scope = Some(String::new());
        let m = validate(r, 10, ANY).unwrap();
        assert!(!m.is_confidential());
        assert_eq!(m.scope, "");
        assert_eq!(m.response_types, vec!["code"]);
    }

    #[test]
    fn redirect_kinds_follow_the_application_type() {
        let kind = |app: Option<&str>, uri: &str| {
            let mut r = req(&[uri]);
            r.application_type = app.map(str::to_owned);
            validate(r, 10, ANY).map_err(|e| e.code())
        };
        assert!(kind(None, "https://a.example/cb").is_ok());
        assert!(kind(Some("web"), "http://127.0.0.1/cb").is_ok());
        assert!(kind(Some("native"), "com.example.app:/cb").is_ok());
        for (app, uri) in [
            (None, "com.example.app:/cb"),
            (Some("web"), "mailto:a@example.com"),
            (Some("native"), "mailto:a@example.com"),
            (Some("native"), "myapp:/cb"),
        ] {
            assert_eq!(kind(app, uri).unwrap_err(), "invalid_redirect_uri", "{uri}");
        }
    }

    #[test]
    fn defaults_follow_rfc7591() {
        let m = validate(req(&["https://app.example/cb"]), 10, ANY).unwrap();
        assert_eq!(m.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(m.grant_types, vec!["authorization_code"]);
        assert_eq!(m.application_type, "web");
    }

    #[test]
    fn client_names_cannot_carry_bidi_or_control_characters() {
        for name in [
            "Trusted\u{202E}lixE",
            "a\u{2066}b",
            "line\nbreak",
            "x\u{200F}",
        ] {
            let mut r = req(&["http://localhost:1/cb"]);
            r.client_name = Some(name.into());
            assert!(validate(r, 10, ANY).is_err(), "{name:?}");
        }
        let mut r = req(&["http://localhost:1/cb"]);
        r.client_name = Some("Claude Code – 日本語 ✓".into());
        assert!(validate(r, 10, ANY).is_ok());
    }

    #[test]
    fn rejects_bad_metadata() {
        assert_eq!(
            validate(req(&[]), 10, ANY).unwrap_err().code(),
            "invalid_redirect_uri"
        );
        assert_eq!(
            validate(req(&["http://evil.example/cb"]), 10, ANY)
                .unwrap_err()
                .code(),
            "invalid_redirect_uri"
        );
        let mut r = req(&["https://a/cb"]);
        r.grant_types = Some(vec!["implicit".into()]);
        assert_eq!(
            validate(r, 10, ANY).unwrap_err().code(),
            "invalid_client_metadata"
        );
        let mut r = req(&["https://a/cb"]);
        r.token_endpoint_auth_method = Some("private_key_jwt".into());
        assert_eq!(
            validate(r, 10, ANY).unwrap_err().code(),
            "invalid_client_metadata"
        );
        let mut r = req(&["https://a/cb"]);
        r.application_type = Some("desktop".into());
        assert!(validate(r, 10, ANY).is_err());
        let mut r = req(&["https://a/cb"]);
        r.response_types = Some(vec!["token".into()]);
        assert!(validate(r, 10, ANY).is_err());
        assert!(validate(req(&["https://a/1", "https://a/2"]), 1, ANY).is_err());
    }

    #[test]
    fn every_client_uses_the_authorization_code_grant() {
        for grants in [vec![], vec!["refresh_token".to_string()]] {
            let mut r = req(&["https://a/cb"]);
            r.grant_types = Some(grants);
            r.response_types = Some(vec![]);
            let e = validate(r, 10, ANY).unwrap_err();
            assert_eq!(e.code(), "invalid_client_metadata");
            assert!(e.to_string().contains("authorization_code"), "{e}");
        }
        let mut r = req(&["https://a/cb"]);
        r.response_types = Some(vec![]);
        assert!(validate(r, 10, ANY)
            .unwrap_err()
            .to_string()
            .contains("response_types"));
        let mut r = req(&[]);
        r.redirect_uris = None;
        assert_eq!(
            validate(r, 10, ANY).unwrap_err(),
            RegistrationError::InvalidRedirectUri("redirect_uris is missing".into())
        );
    }

    #[test]
    fn text_fields_have_length_limits() {
        let mut r = req(&["https://a/cb"]);
        r.client_name = Some("n".repeat(256));
        assert!(validate(r, 10, ANY).is_ok());
        let mut r = req(&["https://a/cb"]);
        r.client_name = Some("n".repeat(257));
        assert_eq!(
            validate(r, 10, ANY).unwrap_err().to_string(),
            "client_name is longer than 256 characters"
        );
        // The client name is counted in characters: 256 of them in a multibyte
        // script (768 bytes) are accepted, one more is not.
        let mut r = req(&["https://a/cb"]);
        r.client_name = Some("日".repeat(256));
        assert!(validate(r, 10, ANY).is_ok());
        let mut r = req(&["https://a/cb"]);
        r.client_name = Some("日".repeat(257));
        assert!(validate(r, 10, ANY).is_err());
        // Other text members are counted in bytes.
        let mut r = req(&["https://a/cb"]);
        r.software_id = Some("日".repeat(86));
        assert_eq!(
            validate(r, 10, ANY).unwrap_err().to_string(),
            "software_id is longer than 256 bytes"
        );
        let mut r = req(&["https://a/cb"]);
        r.software_id = Some("s".repeat(257));
        assert!(validate(r, 10, ANY).is_err());
        let long_uri = format!("https://a/{}", "x".repeat(2048));
        assert_eq!(
            validate(req(&[&long_uri]), 10, ANY).unwrap_err(),
            RegistrationError::InvalidRedirectUri("redirect URI is too long".into())
        );
    }

    #[test]
    fn display_uris_must_be_web_urls() {
        let mut r = req(&["https://a/cb"]);
        r.logo_uri = Some("javascript:alert(1)".into());
        assert_eq!(
            validate(r, 10, ANY).unwrap_err().code(),
            "invalid_client_metadata"
        );
        let mut r = req(&["https://a/cb"]);
        r.client_uri = Some("http://app.example".into());
        assert_eq!(
            validate(r, 10, ANY).unwrap().client_uri.as_deref(),
            Some("http://app.example")
        );
    }

    #[test]
    fn unknown_scopes_are_dropped() {
        let mut r = req(&["https://a/cb"]);
        r.scope = Some("mcp:read auth:admin other".into());
        assert_eq!(validate(r, 10, ANY).unwrap().scope, "mcp:read");
    }
}
