//! The well-known documents: RFC 8414 authorization-server metadata (also read from
//! OIDC discovery) and RFC 9728 protected-resource metadata. The AS serialises the
//! first, the RS serialises the second and deserialises the first; unknown fields are
//! kept in `extra` so that external IdPs' documents round-trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// Our extension: where resource servers read revoked grants and tokens
    /// (`GET ?since=<cursor>`, with their client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_feed_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_documentation: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Candidate discovery URLs for an issuer, in the order RFC 8414 §3.1 and the MCP
/// spec prescribe: path-inserted OAuth metadata, path-inserted OIDC, then OIDC
/// appended to the issuer path (what Keycloak and Entra serve).
pub fn discovery_urls(issuer: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(issuer) else {
        return Vec::new();
    };
    let origin = parsed.origin().ascii_serialization();
    let path = parsed.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_for_root_and_pathed_issuers() {
        assert_eq!(
            discovery_urls("http://127.0.0.1:3001"),
            vec![
                "http://127.0.0.1:3001/.well-known/oauth-authorization-server",
                "http://127.0.0.1:3001/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            discovery_urls("https://kc.example/realms/mcp")[2],
            "https://kc.example/realms/mcp/.well-known/openid-configuration"
        );
    }

    #[test]
    fn unknown_fields_round_trip() {
        let doc: AuthorizationServerMetadata =
            serde_json::from_str(r#"{"issuer":"https://a","x_custom":1}"#).unwrap();
        assert_eq!(doc.extra.get("x_custom"), Some(&Value::from(1)));
    }
}
