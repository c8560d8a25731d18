//! Sign-in through an upstream identity provider: `POST /idp/{id}/login` (the
//! "Continue with ..." button) sends the browser to the provider;
//! `GET /idp/{id}/callback` comes back, and continues with our consent page (or
//! the code, when consent is remembered). Every failure of the upstream leg is an
//! HTML page here, never a redirect to the MCP client. Also `/logout`.

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::{AppError, AppResult};
use crate::http::browser::Browser;
use crate::http::{client_ip, cookies, pages};
use crate::service::authorization::{self, AuthorizationRequest, AuthorizeParams};
use crate::service::federation::{self, Callback, FederationError};
use crate::service::{login, AppState};

#[derive(Debug, Deserialize)]
pub struct StartForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub csrf_token: Option<String>,
}

/// The redirect to the provider, with the browser-binding cookie.
pub async fn redirect_upstream(
    state: &AppState,
    req: &HttpRequest,
    idp_id: &str,
    v: &AuthorizationRequest,
    params: &AuthorizeParams,
    status: StatusCode,
) -> AppResult<HttpResponse> {
    let binding = cookies::idp_binding(state, req);
    let ip = client_ip(state, req);
    let started = federation::start(state, idp_id, params, v.forces_login(), binding.clone(), ip)
        .await
        .map_err(AppError::from)?;
    let binding = started.new_binding.or(binding).unwrap_or_default();
    Ok(HttpResponse::build(status)
        .insert_header((header::LOCATION, started.location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .cookie(cookies::idp_binding_cookie(state, &binding))
        .finish())
}

/// `POST /idp/{id}/login`: the MCP client's request is checked again (so a bad
/// client or redirect URI never leaves our origin), then off to the provider.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<StartForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let idp_id = path.into_inner();
    let browser = Browser::form(&state, &req, &form.params, form.csrf_token.as_deref())?;
    let v = match authorization::validate(&state, &form.params).await {
        Ok(v) => v,
        Err(e) => return browser.finish(Err(e)),
    };
    redirect_upstream(
        &state,
        &req,
        &idp_id,
        &v,
        &form.params,
        StatusCode::SEE_OTHER,
    )
    .await
}

/// `GET /idp/{id}/callback`: the provider's answer.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Callback>,
) -> AppResult<HttpResponse> {
    let idp_id = path.into_inner();
    let binding = cookies::idp_binding(&state, &req);
    let ip = client_ip(&state, &req);
    let completed =
        federation::complete(&state, &idp_id, query.into_inner(), binding.as_deref(), ip)
            .await
            .map_err(AppError::from)?;
    let session = login::start_session(&state, completed.user)
        .await
        .map_err(|e| AppError::from(FederationError::Internal(e.to_string())))?;
    let session_cookies: Vec<Cookie<'static>> = vec![cookies::session_cookie(&state, &session)];
    let params = completed.params;
    let browser = Browser::new(&state, &req, &params, StatusCode::FOUND).nested();
    let result = async {
        let v = authorization::validate(&state, &params).await?;
        browser
            .after_login(
                &v,
                (&session.user, session.auth_time),
                session_cookies.clone(),
            )
            .await
    };
    match result.await {
        Ok(resp) => Ok(resp),
        // The user is signed in; the client's request went bad meanwhile (client
        // deleted, ...): say so here, with the session kept.
        Err(e) => {
            let mut page = match browser.finish(Err(e)) {
                Ok(r) => r,
                Err(e) => actix_web::ResponseError::error_response(&e),
            };
            for c in &session_cookies {
                let _ = page.add_cookie(c);
            }
            Ok(page)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutParams {
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub id_token_hint: Option<String>,
    pub state: Option<String>,
}

/// `GET`/`POST /logout`: ends the auth-server session (not the one at an upstream
/// identity provider), then goes to a registered `post_logout_redirect_uri` when
/// an `id_token_hint` proves the client (see `login::logout`), else shows a page.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<LogoutParams>,
    form: Option<web::Form<LogoutParams>>,
) -> AppResult<HttpResponse> {
    let p = match form {
        Some(f) => f.into_inner(),
        None => query.into_inner(),
    };
    let session_id = cookies::session_id(&state, &req);
    let target = login::logout(
        &state,
        session_id.as_deref(),
        login::LogoutTarget {
            client_id: p.client_id.as_deref(),
            post_logout_redirect_uri: p.post_logout_redirect_uri.as_deref(),
            id_token_hint: p.id_token_hint.as_deref(),
        },
        client_ip(&state, &req),
    )
    .await
    .map_err(|e| AppError::page("Sign-out", e.to_string()))?;
    let removal = cookies::expired_session_cookie(&state);
    match target {
        Some(uri) => {
            let location = match (url::Url::parse(&uri), &p.state) {
                (Ok(mut url), Some(s)) => {
                    url.query_pairs_mut().append_pair("state", s);
                    url.to_string()
                }
                _ => uri,
            };
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .cookie(removal)
                .finish())
        }
        None => {
            let mut b = HttpResponse::Ok();
            b.cookie(removal);
            Ok(pages::info_page(
                b,
                "Signed out",
                "You are signed out of the sign-in service.",
            ))
        }
    }
}
