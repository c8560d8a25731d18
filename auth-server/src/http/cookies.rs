//! The browser's session, CSRF and device cookies, sealed with the cookie crate's
//! private jar (authenticated encryption bound to the cookie's name).

use actix_web::cookie::{Cookie, CookieJar, SameSite};
use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use crate::error::{AppError, AppResult};
use crate::service::{login, AppState, ServiceResult};
use crate::storage::UserRecord;

pub const SESSION_COOKIE: &str = "as_session";
pub const CSRF_COOKIE: &str = "as_csrf";
pub const DEVICE_COOKIE: &str = "as_device";
/// Binds sign-ins at identity providers to this browser (see `service::federation`).
pub const IDP_COOKIE: &str = "as_idp";

/// How long a browser stays a known device after its last successful login.
const DEVICE_COOKIE_MAX_AGE_SECS: i64 = 180 * 24 * 3600;

/// The cookie's name. With an https issuer the `__Host-` prefix makes browsers
/// refuse a same-named cookie planted by a sibling subdomain or over plain http
/// (cookie tossing against the CSRF and session cookies).
pub fn cookie_name(state: &AppState, base: &'static str) -> &'static str {
    match (state.cookie_secure, base) {
        (true, SESSION_COOKIE) => "__Host-as_session",
        (true, CSRF_COOKIE) => "__Host-as_csrf",
        (true, DEVICE_COOKIE) => "__Host-as_device",
        (true, IDP_COOKIE) => "__Host-as_idp",
        _ => base,
    }
}

/// The opened value of one of our cookies, if the request has a genuine one.
fn opened(state: &AppState, req: &HttpRequest, base: &'static str) -> Option<String> {
    let cookie = req.cookie(cookie_name(state, base))?;
    let jar = CookieJar::new();
    let opened = jar
        .private(&state.cookie_key)
        .decrypt(cookie.into_owned())?;
    Some(opened.value().to_string())
}

/// A sealed cookie with the flags every cookie of ours carries.
fn sealed(state: &AppState, base: &'static str, value: String, max_age: i64) -> Cookie<'static> {
    let cookie = Cookie::build(cookie_name(state, base), value)
        .path("/")
        .http_only(true)
        .secure(state.cookie_secure)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age))
        .finish();
    let mut jar = CookieJar::new();
    jar.private_mut(&state.cookie_key).add(cookie.clone());
    jar.get(cookie.name()).cloned().unwrap_or(cookie)
}

pub fn session_cookie(state: &AppState, session: &login::Session) -> Cookie<'static> {
    sealed(state, SESSION_COOKIE, session.id.clone(), session.ttl_secs)
}

/// The device cookie for a browser that just signed in (see `service::limits::LoginOrigin`).
pub fn device_cookie(state: &AppState, device: &login::Device) -> Cookie<'static> {
    sealed(
        state,
        DEVICE_COOKIE,
        device.encode(),
        DEVICE_COOKIE_MAX_AGE_SECS,
    )
}

/// The identity-provider binding of this browser, if it has a genuine cookie.
pub fn idp_binding(state: &AppState, req: &HttpRequest) -> Option<String> {
    opened(state, req, IDP_COOKIE)
}

/// The binding cookie, alive as long as a sign-in at a provider may take. `Lax`
/// so that the provider's redirect back (a top-level GET) carries it.
pub fn idp_binding_cookie(state: &AppState, binding: &str) -> Cookie<'static> {
    sealed(
        state,
        IDP_COOKIE,
        binding.to_string(),
        crate::service::federation::PENDING_TTL_SECS,
    )
}

/// The session id in this browser's genuine session cookie.
pub fn session_id(state: &AppState, req: &HttpRequest) -> Option<String> {
    opened(state, req, SESSION_COOKIE)
}

/// A cookie that removes this browser's session cookie.
pub fn expired_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = Cookie::build(cookie_name(state, SESSION_COOKIE), "")
        .path("/")
        .http_only(true)
        .secure(state.cookie_secure)
        .same_site(SameSite::Lax)
        .finish();
    c.make_removal();
    c
}

/// The device this browser's genuine device cookie names, if it has one.
pub fn device(state: &AppState, req: &HttpRequest) -> Option<login::Device> {
    login::Device::decode(&opened(state, req, DEVICE_COOKIE)?)
}

/// The logged-in user of this browser and when they authenticated.
pub async fn session_user(
    state: &AppState,
    req: &HttpRequest,
) -> ServiceResult<Option<(UserRecord, i64)>> {
    match opened(state, req, SESSION_COOKIE) {
        Some(session_id) => login::session_user(state, &session_id).await,
        None => Ok(None),
    }
}

/// The form token of this browser and, when it had none yet, the CSRF cookie to set.
/// The token is the value sealed in the cookie, which nobody without the cookie
/// key can forge.
pub fn csrf_token(state: &AppState, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    match opened(state, req, CSRF_COOKIE).filter(|v| v.len() >= 32) {
        Some(token) => (token, None),
        None => {
            let token = shared::secret::random_token(32);
            let cookie = sealed(state, CSRF_COOKIE, token.clone(), 3600);
            (token, Some(cookie))
        }
    }
}

/// The login and consent forms must echo the token of this browser's CSRF cookie.
pub fn require_csrf(
    state: &AppState,
    req: &HttpRequest,
    form_token: Option<&str>,
) -> AppResult<()> {
    let expected = opened(state, req, CSRF_COOKIE).filter(|v| v.len() >= 32);
    if let (Some(expected), Some(presented)) = (expected, form_token) {
        if shared::secret::constant_time_eq(&expected, presented) {
            return Ok(());
        }
    }
    Err(AppError::Page {
        status: StatusCode::FORBIDDEN,
        title: "Session expired".into(),
        message: "This form has expired or was not sent from this site. Go back to the application and start signing in again.".into(),
    })
}
