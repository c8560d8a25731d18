//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): the
//! rules a fetched document must meet. The document is client metadata, so it is
//! validated by the registration rules ([`registration_policy::validate`]); this module
//! only adds what is specific to a document published at its own client id:
//! - a JSON object without `client_secret` / `client_secret_expires_at`;
//! - `client_id` equal, byte for byte, to the URL the document was fetched from;
//! - `client_name` required (registration makes it optional);
//! - `token_endpoint_auth_method` absent or `none`: such clients are public;
//! - redirect URIs are web URLs (https, or http on loopback): a private-use scheme is
//!   not tied to the publishing origin;
//! - `client_uri` and `logo_uri` are kept only when they are https URLs, and otherwise
//!   dropped rather than refused: they come from a third party and are informational;
//! - other registration members (contacts, policy and terms URIs, software id ...) are
//!   ignored.

use serde::Deserialize;
use shared::ScopeSet;

use super::registration_policy::{
    self, ClientMetadata, RedirectPolicy, RegistrationError, RegistrationRequest,
};

/// Most redirect URIs a document may list.
const MAX_REDIRECT_URIS: usize = 32;

/// A validated client metadata document: the URL it was fetched from (its client
/// id) and its metadata, as the registration rules and this module left it. A
/// public client (`token_endpoint_auth_method` is `none`) with a `client_name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadataDocument {
    pub client_id: String,
    pub metadata: ClientMetadata,
}

/// Why a document was refused. `Display` is safe to show to a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the client metadata document is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid client metadata document: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> DocumentError {
    DocumentError::Invalid(msg.into())
}

impl From<RegistrationError> for DocumentError {
    fn from(e: RegistrationError) -> Self {
        invalid(e.to_string())
    }
}

/// The document as published; the members we read, each optional so that a missing one
/// gets a clear message.
#[derive(Deserialize)]
struct RawDocument {
    client_id: Option<serde_json::Value>,
    client_name: Option<serde_json::Value>,
    redirect_uris: Option<serde_json::Value>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
}

/// Whether `uri` is an acceptable redirect URI for a CIMD client: a registrable redirect
/// URI that is https, or http on a loopback host (any port, RFC 8252).
pub fn redirect_uri_acceptable(uri: &str) -> bool {
    RedirectPolicy::HttpUrlsOnly.check(uri).is_ok()
}

fn https_only(uri: Option<String>) -> Option<String> {
    uri.filter(|u| registration_policy::parse_web_uri(u).is_some_and(|p| p.scheme() == "https"))
}

/// Validates a fetched document against the URL it was fetched from. Pure.
pub fn validate_document(
    client_id_url: &str,
    body: &[u8],
) -> Result<ClientMetadataDocument, DocumentError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| DocumentError::InvalidJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("the document must be a JSON object"))?;
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(invalid(
            "a client metadata document must not contain a client_secret",
        ));
    }
    let raw: RawDocument = serde_json::from_value(value)
        .map_err(|e| invalid(format!("unexpected field type: {e}")))?;

    match raw.client_id {
        Some(serde_json::Value::String(id)) if id == client_id_url => {}
        Some(serde_json::Value::String(_)) => {
            return Err(invalid(
                "client_id in the document does not match the URL it was fetched from",
            ))
        }
        Some(_) => return Err(invalid("client_id must be a string")),
        None => return Err(invalid("client_id is missing")),
    }
    let client_name = match raw.client_name {
        Some(serde_json::Value::String(n)) => n,
        Some(_) => return Err(invalid("client_name must be a string")),
        None => return Err(invalid("client_name is missing")),
    };
    let redirect_uris: Option<Vec<String>> = match raw.redirect_uris {
        Some(serde_json::Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(invalid("redirect_uris must be an array of strings")),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(invalid("redirect_uris must be an array of strings")),
        None => None,
    };
    let auth_method = raw
        .token_endpoint_auth_method
        .unwrap_or_else(|| "none".to_owned());
    if auth_method != "none" {
        return Err(invalid(format!(
            "token_endpoint_auth_method {auth_method:?} is not supported for client metadata documents; use \"none\""
        )));
    }
    // The scope only hints at what the client will ask for: one we cannot read is
    // ignored rather than a reason to refuse the client.
    let scope = raw.scope.filter(|s| ScopeSet::parse(s).is_ok());

    let metadata = registration_policy::validate(
        RegistrationRequest {
            redirect_uris,
            token_endpoint_auth_method: Some(auth_method),
            grant_types: raw.grant_types,
            response_types: raw.response_types,
            client_name: Some(client_name),
            client_uri: https_only(raw.client_uri),
            logo_uri: https_only(raw.logo_uri),
            scope,
            // Kept on the client record: a document client is public (it has no
            // secret), as a native app is; `web` would suggest a confidential one.
            application_type: Some("native".to_owned()),
            ..RegistrationRequest::default()
        },
        MAX_REDIRECT_URIS,
        RedirectPolicy::HttpUrlsOnly,
    )?;
    if metadata.client_name.is_none() {
        return Err(invalid("client_name is empty"));
    }
    Ok(ClientMetadataDocument {
        client_id: client_id_url.to_owned(),
        metadata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example.com/client.json";

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut base = serde_json::json!({
            "client_id": ID,
            "client_name": "Example App",
            "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    fn err_of(body: &[u8]) -> String {
        validate_document(ID, body).unwrap_err().to_string()
    }

    #[test]
    fn valid_document_gets_defaults() {
        let d = validate_document(ID, &doc(serde_json::json!({"client_uri": "https://app.example.com", "logo_uri": "javascript:alert(1)"}))).unwrap();
        assert_eq!(d.client_id, ID);
        assert_eq!(d.metadata.client_name.as_deref(), Some("Example App"));
        assert_eq!(d.metadata.grant_types, vec!["authorization_code"]);
        assert_eq!(d.metadata.response_types, vec!["code"]);
        assert_eq!(d.metadata.token_endpoint_auth_method, "none");
        assert_eq!(
            d.metadata.client_uri.as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(d.metadata.logo_uri, None);
        let d = validate_document(ID, &doc(serde_json::json!({"grant_types": ["authorization_code", "refresh_token"], "scope": "mcp:read"}))).unwrap();
        assert_eq!(d.metadata.grant_types.len(), 2);
        assert_eq!(d.metadata.scope, "mcp:read");
    }

    #[test]
    fn invalid_documents_are_rejected_with_clear_messages() {
        assert!(err_of(&doc(
            serde_json::json!({"client_id": "https://evil.example.com/client.json"})
        ))
        .contains("does not match"));
        // Trailing slash or case difference is a mismatch too.
        assert!(
            err_of(&doc(serde_json::json!({"client_id": format!("{ID}/")})))
                .contains("does not match")
        );
        assert!(
            err_of(&doc(serde_json::json!({"client_id": null}))).contains("client_id is missing")
        );
        assert!(err_of(&doc(serde_json::json!({"client_name": null})))
            .contains("client_name is missing"));
        assert!(
            err_of(&doc(serde_json::json!({"client_name": "  "}))).contains("client_name is empty")
        );
        assert!(err_of(&doc(serde_json::json!({"client_name": "a\u{7}b"}))).contains("control"));
        assert!(err_of(&doc(
            serde_json::json!({"client_name": "Trusted\u{202E}lixE"})
        ))
        .contains("control"));
        assert!(err_of(&doc(serde_json::json!({"redirect_uris": null})))
            .contains("redirect_uris is missing"));
        assert!(err_of(&doc(serde_json::json!({"redirect_uris": []})))
            .contains("redirect_uris is empty"));
        assert!(
            err_of(&doc(serde_json::json!({"redirect_uris": "https://a/cb"}))).contains("array")
        );
        assert!(err_of(&doc(
            serde_json::json!({"redirect_uris": ["http://app.example.com/cb"]})
        ))
        .contains("not allowed"));
        assert!(
            err_of(&doc(serde_json::json!({"redirect_uris": ["/relative"]})))
                .contains("not allowed")
        );
        assert!(err_of(&doc(
            serde_json::json!({"redirect_uris": ["https://a.example/cb#x"]})
        ))
        .contains("not allowed"));
        assert!(err_of(&doc(
            serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"})
        ))
        .contains("not supported"));
        assert!(err_of(&doc(
            serde_json::json!({"token_endpoint_auth_method": "client_secret_post"})
        ))
        .contains("not supported"));
        assert!(
            err_of(&doc(serde_json::json!({"client_secret": "s3cr3t"}))).contains("client_secret")
        );
        assert!(err_of(&doc(
            serde_json::json!({"grant_types": ["client_credentials"]})
        ))
        .contains("not supported"));
        assert!(
            err_of(&doc(serde_json::json!({"grant_types": ["refresh_token"]})))
                .contains("authorization_code")
        );
        assert!(
            err_of(&doc(serde_json::json!({"response_types": ["token"]})))
                .contains("response_types")
        );
        assert!(err_of(b"[1,2]").contains("JSON object"));
        assert!(err_of(b"<html>").contains("not valid JSON"));
    }

    #[test]
    fn registration_rules_apply_to_documents() {
        // Scopes we do not offer are dropped, as for a registration.
        let d = validate_document(
            ID,
            &doc(serde_json::json!({"scope": "mcp:read auth:admin other"})),
        )
        .unwrap();
        assert_eq!(d.metadata.scope, "mcp:read");
        assert_eq!(
            validate_document(ID, &doc(serde_json::json!({})))
                .unwrap()
                .metadata
                .scope,
            ""
        );
        let long_name = "日".repeat(256);
        assert_eq!(
            validate_document(ID, &doc(serde_json::json!({ "client_name": long_name })))
                .unwrap()
                .metadata
                .client_name,
            Some(long_name)
        );
        assert!(
            err_of(&doc(serde_json::json!({"client_name": "n".repeat(257)})))
                .contains("longer than 256 characters")
        );
        // The count is checked before any URI.
        let mut many: Vec<String> = (0..32).map(|i| format!("https://a.example/{i}")).collect();
        many.push("com.example.app:/oauth".into());
        assert!(err_of(&doc(serde_json::json!({ "redirect_uris": many }))).contains("at most 32"));
    }

    #[test]
    fn a_scope_that_does_not_parse_is_ignored() {
        for scope in ["mcp:read \"quoted\"", "back\\slash", "tab\tseparated"] {
            let d = validate_document(ID, &doc(serde_json::json!({ "scope": scope })))
                .unwrap_or_else(|e| panic!("{scope:?}: {e}"));
            assert_eq!(d.metadata.scope, "", "{scope:?}");
        }
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(redirect_uri_acceptable("https://app.example.com/cb"));
        assert!(redirect_uri_acceptable("http://localhost/callback"));
        assert!(redirect_uri_acceptable("http://127.0.0.1:33418/"));
        assert!(redirect_uri_acceptable("http://[::1]:8080/cb"));
        assert!(!redirect_uri_acceptable("http://example.com/cb"));
        assert!(!redirect_uri_acceptable("javascript:alert(1)"));
        assert!(!redirect_uri_acceptable("https://user@app.example.com/cb"));
        // Registrable for a native app, but not published by a web origin.
        assert!(!redirect_uri_acceptable("com.example.app:/oauth"));
    }
}
