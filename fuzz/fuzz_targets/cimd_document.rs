//! Client ID Metadata Documents as fetched from a URL client id. The input is the
//! document; or, when its first line is a client id the resolver would fetch, that
//! URL, a newline and the document.
#![no_main]

use auth_server::cimd;
use auth_server::domain::metadata_document::{self, redirect_uri_acceptable};
use auth_server::domain::registration_policy;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_registrable_redirect, split_line};

/// The client id of the seed documents.
const CLIENT_ID: &str = "https://app.example.com/oauth/client.json";

fuzz_target!(|data: &[u8]| {
    let (client_id, body) = match split_line(data) {
        Some((line, rest)) => match std::str::from_utf8(line) {
            Ok(url) if cimd::is_cimd_client_id_with(url, true) => (url, rest),
            _ => (CLIENT_ID, data),
        },
        None => (CLIENT_ID, data),
    };
    let Ok(document) = metadata_document::validate_document(client_id, body) else {
        return;
    };
    assert_eq!(document.client_id, client_id);
    let metadata = &document.metadata;
    assert_eq!(metadata.token_endpoint_auth_method, "none");
    assert!(!metadata.is_confidential());
    assert!(metadata
        .client_name
        .as_deref()
        .is_some_and(|n| !n.trim().is_empty()));
    assert!(!metadata.redirect_uris.is_empty());
    for uri in &metadata.redirect_uris {
        assert!(redirect_uri_acceptable(uri), "{uri:?}");
        check_registrable_redirect(uri);
    }
    for uri in [&metadata.client_uri, &metadata.logo_uri]
        .into_iter()
        .flatten()
    {
        assert!(
            registration_policy::parse_web_uri(uri).is_some_and(|u| u.scheme() == "https"),
            "{uri:?}"
        );
    }
    assert!(metadata
        .grant_types
        .iter()
        .any(|g| g == "authorization_code"));
});
