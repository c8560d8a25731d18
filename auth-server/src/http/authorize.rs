//! The browser flow: `GET /authorize` → login page (`POST /login`) → consent page
//! (`POST /consent`) → redirect with `code`, `state` and `iss`. An unknown client or
//! redirect URI gets an HTML error page, never a redirect.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::{AppError, AppResult};
use crate::http::browser::Browser;
use crate::http::{client_ip, cookies, idp};
use crate::service::authorization::{
    self, AuthorizationError, AuthorizationRequest, AuthorizeParams,
};
use crate::service::consent::{self, Decision};
use crate::service::login::{self, LoginAttempt, LoginOutcome};
use crate::service::{AppState, ServiceError};

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub username: Option<String>,
    pub password: Option<String>,
    pub csrf_token: Option<String>,
}

impl LoginForm {
    /// The sign-in attempt the form makes: the username trimmed, an absent field
    /// empty.
    pub fn attempt(
        &self,
        ip: std::net::IpAddr,
        client_id: &str,
        device: Option<login::Device>,
    ) -> LoginAttempt {
        LoginAttempt {
            username: self
                .username
                .as_deref()
                .unwrap_or_default()
                .trim()
                .to_string(),
            password: self.password.clone().unwrap_or_default(),
            ip,
            client_id: client_id.to_string(),
            device,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub decision: Option<String>,
    pub csrf_token: Option<String>,
}

/// What `/authorize` does for a request that passed validation.
enum Next {
    Answer(HttpResponse),
    /// Password login off and one identity provider: straight there.
    Upstream(String, Box<AuthorizationRequest>),
}

pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuthorizeParams>,
) -> AppResult<HttpResponse> {
    let params = query.into_inner();
    let browser = Browser::new(&state, &req, &params, StatusCode::FOUND);
    let result = async {
        let v = authorization::validate(&state, &params).await?;
        let session = match v.forces_login() {
            true => None,
            false => cookies::session_user(&state, &req).await?,
        };
        match session {
            Some((user, auth_time)) => browser
                .after_login(&v, (&user, auth_time), Vec::new())
                .await
                .map(Next::Answer),
            None if v.silent() => Err(AuthorizationError::redirect(
                &v,
                ServiceError::LoginRequired,
            )),
            None => match state.federation.sole_provider(&state.settings) {
                Some(p) => Ok(Next::Upstream(p.config.id.clone(), Box::new(v))),
                None => Ok(Next::Answer(browser.login_page(
                    &v,
                    "",
                    None,
                    StatusCode::OK,
                ))),
            },
        }
    };
    match result.await {
        Ok(Next::Answer(resp)) => Ok(resp),
        Ok(Next::Upstream(idp, v)) => {
            idp::redirect_upstream(&state, &req, &idp, &v, &params, StatusCode::FOUND).await
        }
        Err(e) => browser.finish(Err(e)),
    }
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    if !state.settings.login.password {
        return Err(AppError::Page {
            status: StatusCode::FORBIDDEN,
            title: "Password sign-in is off".into(),
            message: "This service signs you in through your identity provider only. Go back and choose it on the sign-in page.".into(),
        });
    }
    let browser = Browser::form(&state, &req, &form.params, form.csrf_token.as_deref())?;
    let result = async {
        let v = authorization::validate(&state, &form.params).await?;
        let device = cookies::device(&state, &req);
        let attempt = form.attempt(client_ip(&state, &req), &v.client.client_id, device);
        let username = attempt.username.clone();
        match login::login(&state, attempt).await? {
            LoginOutcome::SignedIn(session) => {
                let cookies = vec![
                    cookies::session_cookie(&state, &session),
                    cookies::device_cookie(&state, &session.device),
                ];
                let user = (&session.user, session.auth_time);
                browser.after_login(&v, user, cookies).await
            }
            refused => Ok(browser.login_refused(&v, &username, &refused)),
        }
    };
    browser.finish(result.await)
}

pub async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let browser = Browser::form(&state, &req, &form.params, form.csrf_token.as_deref())?;
    let result = async {
        let v = authorization::validate(&state, &form.params).await?;
        let Some((user, auth_time)) = cookies::session_user(&state, &req).await? else {
            let expired = Some("Your session has expired. Sign in again.");
            return Ok(browser.login_page(&v, "", expired, StatusCode::UNAUTHORIZED));
        };
        let decision = Decision::parse(form.decision.as_deref())?;
        let ip = client_ip(&state, &req);
        let code = consent::decide(&state, &v, (&user, auth_time), decision, ip).await?;
        Ok(browser.code_redirect(&v, &code, Vec::new()))
    };
    browser.finish(result.await)
}
