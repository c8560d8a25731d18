//! What the fuzz targets share: the invariants of the redirect URI, resource URL and
//! authorization request rules, checked wherever fuzzed input reaches them (the
//! registration, token, authorize and login targets all do). Every check is a
//! property the product relies on; a failed one panics, and libFuzzer keeps the
//! input as a crash artefact.

use auth_server::domain::{pkce, redirect_uri, scope_policy};
use auth_server::service::authorization::AuthorizeParams;
use redirect_uri::RedirectKind;
use shared::{Audience, ScopeSet};

/// The redirect URIs of the client the form targets pretend to be: one https URL, one
/// loopback URL (whose port may vary) and one native-app scheme.
pub const REGISTERED_REDIRECTS: [&str; 3] = [
    "https://client.example.com/callback",
    "http://127.0.0.1:8765/callback",
    "com.example.app:/oauth/callback",
];

/// The default scope of the authorization server the form targets pretend to be.
pub const DEFAULT_SCOPE: &str = "mcp:read";

/// Splits `data` at its first `\n`: the first line and the rest (`None` without one).
pub fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == b'\n')?;
    Some((&data[..at], &data[at + 1..]))
}

/// A registrable redirect URI: short enough to store, without fragment or
/// credentials, of the scheme its kind says, accepted again in its parsed form, and
/// matched by itself.
pub fn check_registrable_redirect(uri: &str) {
    let Ok(kind) = redirect_uri::validate_registered(uri) else {
        return;
    };
    assert!(uri.len() <= redirect_uri::MAX_REDIRECT_URI_BYTES);
    assert!(!uri.contains('#'), "accepted a fragment: {uri:?}");
    let parsed = url::Url::parse(uri).expect("an accepted redirect URI parses");
    assert!(parsed.username().is_empty() && parsed.password().is_none());
    match kind {
        RedirectKind::Https => assert_eq!(parsed.scheme(), "https"),
        RedirectKind::Loopback => {
            assert_eq!(parsed.scheme(), "http");
            assert!(parsed.host().is_some_and(redirect_uri::is_loopback_host));
        }
        RedirectKind::PrivateUse => {
            assert!(!matches!(parsed.scheme(), "http" | "https"));
            assert!(parsed.scheme().contains('.'));
        }
    }
    // The form a client library would send after parsing it is as acceptable.
    let normal = parsed.as_str();
    if normal.len() <= redirect_uri::MAX_REDIRECT_URI_BYTES {
        assert_eq!(
            redirect_uri::validate_registered(normal),
            Ok(kind),
            "{uri:?} accepted, its parsed form {normal:?} not alike"
        );
    }
    assert!(redirect_uri::matches(uri, uri));
    let registered = [uri.to_string()];
    assert_eq!(redirect_uri::resolve(&registered, None), Some(uri));
    assert_eq!(redirect_uri::resolve(&registered, Some(uri)), Some(uri));
    let _ = redirect_uri::display_host(uri);
}

/// A requested redirect URI that matches a registered one is that URI, or (loopback,
/// RFC 8252 §7.3) the same http URL on the same loopback host with another port:
/// never another host, scheme, path, userinfo or fragment.
pub fn check_redirect_match(registered: &str, requested: &str) {
    if !redirect_uri::matches(registered, requested) || registered == requested {
        return;
    }
    let reg = url::Url::parse(registered).expect("a matched registered URI parses");
    let req = url::Url::parse(requested).expect("a matched requested URI parses");
    assert_eq!(reg.scheme(), "http");
    assert_eq!(req.scheme(), "http");
    assert!(reg.host().is_some_and(redirect_uri::is_loopback_host));
    assert!(req.host().is_some_and(redirect_uri::is_loopback_host));
    assert!(reg
        .host_str()
        .zip(req.host_str())
        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b)));
    assert_eq!(reg.path(), req.path());
    assert_eq!(reg.query(), req.query());
    assert!(req.fragment().is_none() && !requested.contains('#'));
    assert!(req.username().is_empty() && req.password().is_none());
}

/// A canonical resource URL is canonical again, names an http(s) origin, and is the
/// audience the resource server accepts for the URL it was made from.
pub fn check_resource(raw: &str) {
    let canonical = match shared::resource::canonical_url(raw) {
        Ok(canonical) => canonical,
        Err(_) => {
            assert!(shared::resource::protected_resource_metadata_url(raw).is_err());
            return;
        }
    };
    assert_eq!(
        shared::resource::canonical_url(&canonical).as_deref(),
        Ok(canonical.as_str()),
        "canonical form of {raw:?} is not stable"
    );
    assert!(canonical.starts_with("https://") || canonical.starts_with("http://"));
    assert!(!canonical.contains('#'));
    assert!(!canonical.ends_with('/'));
    let prm = shared::resource::protected_resource_metadata_url(raw)
        .expect("a canonical resource has a metadata URL");
    assert!(prm.contains("/.well-known/oauth-protected-resource"));
    // A token minted for the canonical URL is accepted by a server configured with
    // the URL as written, and the other way round.
    let accepted = [raw.to_string()];
    assert!(shared::resource::audience_matches(
        &Audience::One(canonical.clone()),
        &accepted
    ));
    assert!(shared::resource::audience_matches(
        &Audience::Many(vec![raw.to_string()]),
        &[canonical]
    ));
}

/// The rules an authorization request goes through before any client is looked up,
/// as `/authorize`, `/login` and `/consent` apply them to the same parameters.
pub fn check_authorize_params(p: &AuthorizeParams) {
    // The login and consent pages carry the request through their forms; what the
    // browser posts back must be the request it was shown.
    let encoded = serde_urlencoded::to_string(p).expect("authorization parameters serialise");
    let again: AuthorizeParams =
        serde_urlencoded::from_str(&encoded).expect("serialised parameters parse again");
    assert_eq!(
        serde_urlencoded::to_string(&again).as_deref(),
        Ok(encoded.as_str()),
        "the parameters do not survive the forms"
    );

    if let Ok(challenge) = pkce::validate_challenge(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    ) {
        assert_eq!(challenge.len(), 43);
        assert!(challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    let defaults = vec![DEFAULT_SCOPE.to_string()];
    let offered = scope_policy::known_user_scopes();
    if let Ok(scope) =
        scope_policy::resolve_authorization_scope(p.scope.as_deref(), &defaults, &ScopeSet::new())
    {
        assert!(
            scope
                .iter()
                .all(|s| offered.contains_literal(s) || s == DEFAULT_SCOPE),
            "a scope no user may hold was granted: {scope}"
        );
    }
    let client_scope = ScopeSet::from_iter([DEFAULT_SCOPE]);
    if let Ok(scope) =
        scope_policy::resolve_authorization_scope(p.scope.as_deref(), &defaults, &client_scope)
    {
        assert!(
            scope.is_subset_of(&client_scope),
            "beyond the client's scope: {scope}"
        );
    }

    let registered: Vec<String> = REGISTERED_REDIRECTS.iter().map(|s| s.to_string()).collect();
    if let Some(requested) = p.redirect_uri.as_deref() {
        for registered in REGISTERED_REDIRECTS {
            check_redirect_match(registered, requested);
        }
        check_registrable_redirect(requested);
        if let Some(resolved) = redirect_uri::resolve(&registered, Some(requested)) {
            assert_eq!(resolved, requested);
        }
    }

    if let Some(resource) = p.resource.as_deref().filter(|r| !r.is_empty()) {
        check_resource(resource);
    }
}
