//! The browser flow's answers: the login and consent pages, redirects back to the
//! client, and HTML pages for every error that cannot be redirected.

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use shared::ScopeSet;

use crate::domain::redirect_uri;
use crate::error::{AppError, AppResult};
use crate::http::cookies;
use crate::http::pages::{self, ConsentPage, LoginPage};
use crate::service::authorization::{
    AuthorizationError, AuthorizationRequest, AuthorizeParams, ClientRedirect,
};
use crate::service::consent::{self, ConsentStep};
use crate::service::{login, AppState};
use crate::storage::{ClientSource, UserRecord};

/// The hidden fields that carry the request through the login and consent forms.
fn hidden_fields(p: &AuthorizeParams) -> Vec<(String, String)> {
    let fields = [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
        ("resource", &p.resource),
        ("nonce", &p.nonce),
        ("response_mode", &p.response_mode),
        ("prompt", &p.prompt),
    ];
    fields
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
        .collect()
}

/// The same authorization request with `prompt=login`: "not you? sign in as someone
/// else" on the consent page. Relative, like the form actions.
fn switch_account_url(p: &AuthorizeParams) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in hidden_fields(p) {
        if name != "prompt" {
            query.append_pair(&name, &value);
        }
    }
    query.append_pair("prompt", "login");
    format!("authorize?{}", query.finish())
}

/// Anything the browser flow shows that is not a redirect is an HTML page,
/// including storage failures (never a JSON body in front of a user).
fn as_page(e: AppError) -> AppError {
    match e {
        AppError::Page { .. } => e,
        AppError::Internal(detail) => {
            log::error!("internal error in the browser flow: {detail}");
            AppError::Page {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                title: "Something went wrong".into(),
                message: "The sign-in service had a problem. Please try again in a moment.".into(),
            }
        }
        AppError::RateLimited { .. } => AppError::Page {
            status: StatusCode::TOO_MANY_REQUESTS,
            title: "Too many requests".into(),
            message: "Please wait a minute, then try again.".into(),
        },
        AppError::Unavailable { .. } => AppError::Page {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Temporarily unavailable".into(),
            message: "Signing in is not possible right now. Please try again in a moment.".into(),
        },
        other => AppError::page("Invalid request", other.to_string()),
    }
}

/// One browser request: `/authorize` answers with 302, the forms with 303.
pub struct Browser<'a> {
    state: &'a AppState,
    req: &'a HttpRequest,
    params: &'a AuthorizeParams,
    status: StatusCode,
    /// Prefix of our relative form actions and links: `""` for pages served at the
    /// issuer's top level, `"../../"` for pages served at `/idp/{id}/callback`.
    base: &'static str,
}

impl<'a> Browser<'a> {
    pub fn new(
        state: &'a AppState,
        req: &'a HttpRequest,
        params: &'a AuthorizeParams,
        status: StatusCode,
    ) -> Self {
        Browser {
            state,
            req,
            params,
            status,
            base: "",
        }
    }

    /// The same, for a page served two levels down (`/idp/{id}/callback`).
    pub fn nested(mut self) -> Self {
        self.base = "../../";
        self
    }

    /// A login or consent form submission, once its CSRF token checks out.
    pub fn form(
        state: &'a AppState,
        req: &'a HttpRequest,
        params: &'a AuthorizeParams,
        csrf_token: Option<&str>,
    ) -> AppResult<Self> {
        cookies::require_csrf(state, req, csrf_token)?;
        Ok(Browser::new(state, req, params, StatusCode::SEE_OTHER))
    }

    /// The answer to the browser: an error goes back to the client when its
    /// redirect URI is trusted, else it is an HTML page.
    pub fn finish(
        &self,
        result: Result<HttpResponse, AuthorizationError>,
    ) -> AppResult<HttpResponse> {
        match result {
            Ok(r) => Ok(r),
            Err(AuthorizationError::Redirect(to, e)) => {
                let description = e.to_string();
                let params = [
                    ("error", e.oauth_code()),
                    ("error_description", &description),
                ];
                Ok(self.redirect(&to, &params))
            }
            Err(AuthorizationError::Untrusted(e)) => Err(as_page(e.into())),
        }
    }

    /// The redirect back to the client with `params`, plus `state` and `iss`.
    pub fn redirect(&self, to: &ClientRedirect, params: &[(&str, &str)]) -> HttpResponse {
        let location = match url::Url::parse(&to.redirect_uri) {
            Ok(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in params {
                        q.append_pair(k, v);
                    }
                    if let Some(s) = &to.state {
                        q.append_pair("state", s);
                    }
                    q.append_pair("iss", &self.state.issuer);
                }
                url.to_string()
            }
            Err(_) => to.redirect_uri.clone(),
        };
        HttpResponse::build(self.status)
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .finish()
    }

    /// The redirect that hands the client its code.
    pub fn code_redirect(
        &self,
        v: &AuthorizationRequest,
        code: &str,
        cookies: Vec<Cookie<'static>>,
    ) -> HttpResponse {
        let mut resp = self.redirect(&v.redirect, &[("code", code)]);
        for c in &cookies {
            let _ = resp.add_cookie(c);
        }
        resp
    }

    pub fn login_page(
        &self,
        v: &AuthorizationRequest,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> HttpResponse {
        let (csrf_token, csrf_cookie) = cookies::csrf_token(self.state, self.req);
        let hidden = hidden_fields(self.params);
        let redirect_host = redirect_uri::display_host(&v.redirect.redirect_uri);
        let action = format!("{}login", self.base);
        let providers: Vec<(String, String)> = self
            .state
            .federation
            .providers
            .iter()
            .map(|p| {
                (
                    format!("{}idp/{}/login", self.base, p.config.id),
                    p.config.display_name.clone(),
                )
            })
            .collect();
        let page = LoginPage {
            css: pages::css(),
            action: &action,
            client_name: v.client.display_name(),
            redirect_host: &redirect_host,
            hidden: &hidden,
            csrf_token: &csrf_token,
            username,
            error,
            demo: self.state.settings.demo.enabled,
            password: self.state.settings.login.password,
            providers: &providers,
        };
        let mut b = HttpResponse::build(status);
        if let Some(c) = csrf_cookie {
            b.cookie(c);
        }
        pages::render(b, &page)
    }

    /// The login page again after a refused attempt.
    pub fn login_refused(
        &self,
        v: &AuthorizationRequest,
        username: &str,
        outcome: &login::LoginOutcome,
    ) -> HttpResponse {
        let (message, status) = match outcome {
            login::LoginOutcome::TooManyAttempts { .. } => (
                "Too many sign-in attempts. Wait a minute, then try again.",
                StatusCode::TOO_MANY_REQUESTS,
            ),
            login::LoginOutcome::Unavailable { .. } => (
                "Signing in is not possible right now. Please try again in a moment.",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            login::LoginOutcome::MissingCredentials => (
                "Enter your username and password.",
                StatusCode::UNAUTHORIZED,
            ),
            _ => ("Invalid username or password.", StatusCode::UNAUTHORIZED),
        };
        let mut page = self.login_page(v, username, Some(message), status);
        if let login::LoginOutcome::TooManyAttempts { retry_after_secs }
        | login::LoginOutcome::Unavailable { retry_after_secs } = outcome
        {
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        page
    }

    pub fn consent_page(
        &self,
        v: &AuthorizationRequest,
        user: &UserRecord,
        (scope, withheld): (&ScopeSet, &ScopeSet),
        cookies: Vec<Cookie<'static>>,
    ) -> HttpResponse {
        let (csrf_token, csrf_cookie) = cookies::csrf_token(self.state, self.req);
        let withheld: Vec<String> = withheld.iter().map(str::to_string).collect();
        let switch_account_url = format!("{}{}", self.base, switch_account_url(self.params));
        let action = format!("{}consent", self.base);
        let hidden = hidden_fields(self.params);
        let redirect_host = redirect_uri::display_host(&v.redirect.redirect_uri);
        let client_host = (v.client.source == ClientSource::Cimd)
            .then(|| redirect_uri::display_host(&v.client.client_id));
        let scopes: Vec<(String, &'static str)> = scope
            .iter()
            .map(|s| (s.to_string(), pages::describe_scope(s)))
            .collect();
        let page = ConsentPage {
            css: pages::css(),
            action: &action,
            client_name: v.client.display_name(),
            client_host: client_host.as_deref(),
            redirect_host: &redirect_host,
            username: &user.username,
            resource: &v.resource,
            scopes: &scopes,
            withheld: &withheld,
            switch_account_url: &switch_account_url,
            hidden: &hidden,
            csrf_token: &csrf_token,
        };
        let mut b = HttpResponse::Ok();
        for c in csrf_cookie.into_iter().chain(cookies) {
            b.cookie(c);
        }
        pages::render(b, &page)
    }

    /// After authentication: the code when consent is remembered, else the consent page.
    pub async fn after_login(
        &self,
        v: &AuthorizationRequest,
        (user, auth_time): (&UserRecord, i64),
        cookies: Vec<Cookie<'static>>,
    ) -> Result<HttpResponse, AuthorizationError> {
        match consent::next_step(self.state, v, user, auth_time).await? {
            ConsentStep::Issued { code } => Ok(self.code_redirect(v, &code, cookies)),
            ConsentStep::Ask { scope, withheld } => {
                Ok(self.consent_page(v, user, (&scope, &withheld), cookies))
            }
        }
    }
}
