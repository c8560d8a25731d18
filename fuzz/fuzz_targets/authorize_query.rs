//! The query of `GET /authorize` (actix's `Query` is `serde_urlencoded`) through the
//! rules an authorization request meets before its client is looked up: PKCE, scope,
//! redirect URI matching, `resource`, and the round trip through the login and
//! consent forms.
#![no_main]

use auth_server::service::authorization::AuthorizeParams;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::check_authorize_params;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = serde_urlencoded::from_bytes::<AuthorizeParams>(data) {
        check_authorize_params(&params);
    }
});
