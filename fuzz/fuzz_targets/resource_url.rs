//! `resource` values (RFC 8707) and issuer/resource URLs as both servers canonicalise
//! them: the `resource` of `/authorize` and `/token`, a token's `aud`, the
//! configured resource and issuer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::check_resource;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        check_resource(raw);
        let _ = shared::resource::normalize_audience(raw);
    }
});
