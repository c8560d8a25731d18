//! The body of `POST /token`, parsed as the endpoint parses it (actix's `Form` is
//! `serde_urlencoded`), with the client authentication and the rules of each grant
//! that need no database. When the input has a newline, the first line is the
//! `Authorization` header.
#![no_main]

use auth_server::domain::{client_auth, pkce, scope_policy};
use auth_server::http::token::TokenForm;
use auth_server::service::token::Grant;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_redirect_match, check_resource, split_line, REGISTERED_REDIRECTS};
use shared::ScopeSet;

/// The S256 challenge of the verifier `dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk`
/// (RFC 7636 appendix B).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn check_client_authentication(authorization: Option<&str>, form: &TokenForm) {
    let Ok(presented) = client_auth::presented(
        authorization,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    ) else {
        return;
    };
    assert!(!presented.client_id.is_empty());
    assert!(presented.secret.as_deref() != Some(""));
    let basic = authorization
        .and_then(client_auth::basic_credentials)
        .is_some();
    assert_eq!(presented.via_basic, basic);
    if presented.via_basic {
        // Basic and a form secret at once is refused; a form client_id must agree.
        assert!(form.client_secret.as_deref().is_none_or(str::is_empty));
        if let Some(id) = form.client_id.as_deref() {
            assert_eq!(id, presented.client_id);
        }
    }
    // A public client that presents no secret is authenticated as such; any secret
    // is checked against the stored hash.
    if presented.secret.is_none() {
        assert!(client_auth::verify(&presented, None).is_ok());
    }
    assert!(client_auth::verify(&presented, Some("not-a-hash")).is_err());
}

fuzz_target!(|data: &[u8]| {
    let (authorization, body) = match split_line(data) {
        Some((line, rest)) => match std::str::from_utf8(line) {
            Ok(header) => (Some(header), rest),
            Err(_) => return,
        },
        None => (None, data),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(body) else {
        return;
    };
    check_client_authentication(authorization, &form);
    let Ok(grant) = form.grant() else {
        return;
    };
    let granted = ScopeSet::from_iter(["mcp:read", "profile", "offline_access"]);
    match grant {
        Grant::AuthorizationCode(exchange) => {
            if pkce::verify(exchange.code_verifier.as_deref(), CHALLENGE).is_ok() {
                assert_eq!(
                    exchange.code_verifier.as_deref(),
                    Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
                );
            }
            if let Some(requested) = exchange.redirect_uri.as_deref() {
                for registered in REGISTERED_REDIRECTS {
                    check_redirect_match(registered, requested);
                }
            }
            if let Some(resource) = exchange.resource.as_deref() {
                check_resource(resource);
            }
        }
        Grant::RefreshToken(refresh) => {
            if let Ok(scope) = scope_policy::narrow_on_refresh(refresh.scope.as_deref(), &granted) {
                assert!(granted.grants_all(&scope), "a refresh widened to {scope}");
            }
            if let Some(resource) = refresh.resource.as_deref() {
                check_resource(resource);
            }
        }
        Grant::ClientCredentials(request) => {
            if let Ok(scope) =
                scope_policy::resolve_client_credentials_scope(request.scope.as_deref(), &granted)
            {
                assert!(
                    scope.is_subset_of(&granted),
                    "beyond the client's scope: {scope}"
                );
            }
            if let Some(resource) = request.resource.as_deref() {
                check_resource(resource);
            }
        }
    }
});
