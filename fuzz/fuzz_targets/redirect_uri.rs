//! Redirect URIs as a client registers them (DCR, CIMD, configuration) and as an
//! authorization request names them. The input is one URI, or a registered URI, a
//! newline and a requested one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::{check_redirect_match, check_registrable_redirect, split_line};

fuzz_target!(|data: &[u8]| {
    match split_line(data) {
        Some((registered, requested)) => {
            let (Ok(registered), Ok(requested)) = (
                std::str::from_utf8(registered),
                std::str::from_utf8(requested),
            ) else {
                return;
            };
            check_registrable_redirect(registered);
            check_registrable_redirect(requested);
            check_redirect_match(registered, requested);
        }
        None => {
            if let Ok(uri) = std::str::from_utf8(data) {
                check_registrable_redirect(uri);
            }
        }
    }
});
