//! The body of `POST /register` and `PUT /register/{id}` (RFC 7591/7592): read as the
//! endpoint reads it (an object with unique member names, then the request type) and
//! validated by the registration rules, as dynamic registration and, with the
//! stricter redirect policy, client metadata documents apply them.
#![no_main]

use auth_server::domain::redirect_uri;
use auth_server::domain::registration_policy::{
    self, ClientMetadata, RedirectPolicy, AUTH_METHODS,
};
use auth_server::http::register::{self, StrictObject};
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::check_registrable_redirect;

/// `registration.max_redirect_uris` by default.
const MAX_REDIRECT_URIS: usize = 10;

fn check_accepted(metadata: &ClientMetadata, policy: RedirectPolicy) {
    assert!(!metadata.redirect_uris.is_empty());
    assert!(metadata.redirect_uris.len() <= MAX_REDIRECT_URIS);
    for uri in &metadata.redirect_uris {
        let kind =
            redirect_uri::validate_registered(uri).expect("a stored redirect URI is registrable");
        if metadata.application_type == "web" || policy == RedirectPolicy::HttpUrlsOnly {
            assert!(kind.is_http_url(), "{uri:?} for a web client");
        }
        check_registrable_redirect(uri);
    }
    assert!(matches!(
        metadata.application_type.as_str(),
        "web" | "native"
    ));
    assert!(AUTH_METHODS.contains(&metadata.token_endpoint_auth_method.as_str()));
    assert!(metadata
        .grant_types
        .iter()
        .any(|g| g == "authorization_code"));
    assert!(metadata
        .grant_types
        .iter()
        .all(|g| g == "authorization_code" || g == "refresh_token"));
    assert!(!metadata.response_types.is_empty());
    assert!(metadata.response_types.iter().all(|r| r == "code"));
    assert!(metadata.contacts.len() <= 10);
    for uri in [
        &metadata.client_uri,
        &metadata.logo_uri,
        &metadata.tos_uri,
        &metadata.policy_uri,
    ]
    .into_iter()
    .flatten()
    {
        assert!(registration_policy::parse_web_uri(uri).is_some(), "{uri:?}");
    }
    for text in [
        &metadata.client_name,
        &metadata.software_id,
        &metadata.software_version,
    ]
    .into_iter()
    .flatten()
    {
        assert!(!text.is_empty() && text.trim() == text);
        assert!(!text
            .chars()
            .any(|c| c.is_control() || registration_policy::is_bidi_control(c)));
    }

    // Stored as JSON and read back alike.
    let stored = serde_json::to_vec(metadata).expect("metadata serialises");
    let loaded: ClientMetadata = serde_json::from_slice(&stored).expect("stored metadata loads");
    assert_eq!(&loaded, metadata);

    // RFC 7592: a client that reads its registration and sends it back unchanged
    // gets the same registration.
    let echoed: StrictObject = serde_json::from_slice(&stored).expect("an object");
    let request = register::parse(echoed).expect("echoed metadata is a request");
    let again = registration_policy::validate(request, MAX_REDIRECT_URIS, policy)
        .expect("echoed metadata is valid again");
    assert_eq!(&again, metadata);
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<StrictObject>(data) else {
        return;
    };
    let Ok(request) = register::parse(body) else {
        return;
    };
    for policy in [RedirectPolicy::AnyRegistrable, RedirectPolicy::HttpUrlsOnly] {
        if let Ok(metadata) =
            registration_policy::validate(request.clone(), MAX_REDIRECT_URIS, policy)
        {
            check_accepted(&metadata, policy);
        }
    }
});
