//! The bodies of `POST /login` and `POST /consent` (the authorization request carried
//! as hidden fields, plus the credentials or the decision), parsed as actix's `Form`
//! parses them, with the sign-in attempt the login form makes and the rules the
//! carried request meets again.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use auth_server::http::authorize::{ConsentForm, LoginForm};
use auth_server::service::consent::Decision;
use libfuzzer_sys::fuzz_target;
use mcp_oauth_fuzz::check_authorize_params;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(data) {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let attempt = form.attempt(ip, "client", None);
        assert_eq!(attempt.username, attempt.username.trim());
        assert_eq!(
            attempt.password,
            form.password.clone().unwrap_or_default(),
            "the password reaches the check as typed"
        );
        check_authorize_params(&form.params);
    }
    if let Ok(form) = serde_urlencoded::from_bytes::<ConsentForm>(data) {
        match Decision::parse(form.decision.as_deref()) {
            Ok(Decision::Approve) => assert_eq!(form.decision.as_deref(), Some("approve")),
            Ok(Decision::Deny) => assert_eq!(form.decision.as_deref(), Some("deny")),
            Err(_) => {}
        }
        check_authorize_params(&form.params);
    }
});
