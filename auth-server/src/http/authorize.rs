//! The browser flow: `GET /authorize` → login page (`POST /login`) → consent page
//! (`POST /consent`) → redirect with `code`, `state` and `iss`. An unknown client or
//! redirect URI gets an HTML error page, never a redirect.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared::ScopeSet;

use crate::domain::scope_policy::{self, Role, ScopeError};
use crate::domain::{now, passwords, pkce, redirect_uri};
use crate::error::{AppError, AppResult};
use crate::http::pages::{self, ConsentPage, LoginPage};
use crate::state::AppState;
use crate::storage::{AuthCodeRecord, ClientRecord, SessionRecord, UserRecord};

pub const SESSION_COOKIE: &str = "as_session";
pub const CSRF_COOKIE: &str = "as_csrf";

/// The authorization request parameters (RFC 6749 §4.1.1, RFC 7636, RFC 8707, OIDC).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub response_mode: Option<String>,
}

impl AuthorizeParams {
    /// The hidden fields that carry the request through the login and consent forms.
    fn hidden_fields(&self) -> Vec<(String, String)> {
        let fields = [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("resource", &self.resource),
            ("nonce", &self.nonce),
            ("response_mode", &self.response_mode),
            ("prompt", &self.prompt),
        ];
        fields
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
            .collect()
    }

    /// The same authorization request with `prompt=login`: "not you? sign in as someone
    /// else" on the consent page. Relative, like the form actions.
    fn switch_account_url(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.hidden_fields() {
            if name != "prompt" {
                query.append_pair(&name, &value);
            }
        }
        query.append_pair("prompt", "login");
        format!("authorize?{}", query.finish())
    }
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub username: Option<String>,
    pub password: Option<String>,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    #[serde(flatten)]
    pub params: AuthorizeParams,
    pub decision: Option<String>,
    pub csrf_token: Option<String>,
}

/// A request that passed every check that does not need the user.
struct Validated {
    client: ClientRecord,
    redirect_uri: String,
    scope: ScopeSet,
    resource: String,
    code_challenge: String,
    state: Option<String>,
    nonce: Option<String>,
}

/// Why a request cannot proceed: either an HTML page (no trustworthy redirect) or an
/// error redirect to the client.
enum Failure {
    Page(AppError),
    Redirect(HttpResponse),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::Page(e)
    }
}

impl From<crate::storage::StoreError> for Failure {
    fn from(e: crate::storage::StoreError) -> Self {
        Failure::Page(e.into())
    }
}

/// The browser flow's answer: anything that is not a redirect is an HTML page,
/// including storage failures (never a JSON body in front of a user).
fn finish(result: Result<HttpResponse, Failure>) -> AppResult<HttpResponse> {
    match result {
        Ok(r) | Err(Failure::Redirect(r)) => Ok(r),
        Err(Failure::Page(e)) => Err(as_page(e)),
    }
}

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
        other => AppError::page("Invalid request", other.to_string()),
    }
}

/// Builds the redirect back to the client with `params`, plus `state` and `iss`.
fn redirect_to(
    state: &AppState,
    redirect: &str,
    params: &[(&str, &str)],
    client_state: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let location = match url::Url::parse(redirect) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
                if let Some(s) = client_state {
                    q.append_pair("state", s);
                }
                q.append_pair("iss", &state.issuer);
            }
            url.to_string()
        }
        Err(_) => redirect.to_string(),
    };
    let mut b = HttpResponse::build(status);
    b.insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    b.finish()
}

fn error_redirect(
    state: &AppState,
    v_redirect: &str,
    client_state: Option<&str>,
    error: &str,
    description: &str,
    status: StatusCode,
) -> Failure {
    Failure::Redirect(redirect_to(
        state,
        v_redirect,
        &[("error", error), ("error_description", description)],
        client_state,
        status,
    ))
}

async fn validate(
    state: &AppState,
    p: &AuthorizeParams,
    status: StatusCode,
) -> Result<Validated, Failure> {
    let Some(client_id) = p.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return Err(AppError::page("Invalid request", "The request has no client_id.").into());
    };
    let client = match state.find_client(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(AppError::page(
                "Unknown application",
                "The application that sent you here is not registered with this server. It may have been removed; ask it to register again.",
            )
            .into())
        }
        Err(AppError::Internal(e)) => return Err(AppError::Internal(e).into()),
        Err(e) => return Err(AppError::page("Application not available", e.to_string()).into()),
    };
    let Some(redirect) =
        redirect_uri::resolve(&client.metadata.redirect_uris, p.redirect_uri.as_deref())
    else {
        return Err(AppError::page(
            "Invalid redirect",
            "The redirect address in this request is not registered for the application, so you cannot be sent back to it.",
        )
        .into());
    };
    let redirect = redirect.to_string();
    let st = p.state.as_deref();
    let fail = |error: &str, description: &str| {
        error_redirect(state, &redirect, st, error, description, status)
    };

    if p.response_type.as_deref() != Some("code") {
        return Err(fail(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if let Some(mode) = p.response_mode.as_deref() {
        if mode != "query" {
            return Err(fail(
                "invalid_request",
                "only response_mode=query is supported",
            ));
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(fail(
            "unauthorized_client",
            "the client is not registered for the authorization_code grant",
        ));
    }
    let code_challenge = pkce::validate_challenge(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )
    .map_err(|e| fail("invalid_request", &e.to_string()))?;
    // Only operator-configured clients are limited to their registered scope. A
    // self-registered (DCR/CIMD) `scope` is a hint: MCP clients register with the
    // scope of their first challenge and must still be able to step up later.
    let client_scope = if client.source == "config" {
        ScopeSet::parse(&client.metadata.scope).unwrap_or_default()
    } else {
        ScopeSet::new()
    };
    let scope = scope_policy::resolve_authorization_scope(
        p.scope.as_deref(),
        &state.settings.oauth.default_scopes,
        &client_scope,
    )
    .map_err(|e: ScopeError| fail("invalid_scope", &e.to_string()))?;
    let resource = state
        .resolve_resource(p.resource.as_deref())
        .map_err(|e| fail("invalid_target", &e))?;
    if p.nonce.as_ref().is_some_and(|n| n.len() > 512)
        || p.state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(fail("invalid_request", "state or nonce is too long"));
    }
    Ok(Validated {
        client,
        redirect_uri: redirect,
        scope,
        resource,
        code_challenge,
        state: p.state.clone(),
        nonce: p.nonce.clone(),
    })
}

/// The cookie's name. With an https issuer the `__Host-` prefix makes browsers
/// refuse a same-named cookie planted by a sibling subdomain or over plain http
/// (cookie tossing against the CSRF and session cookies).
pub fn cookie_name(state: &AppState, base: &'static str) -> &'static str {
    match (state.cookie_secure, base) {
        (true, SESSION_COOKIE) => "__Host-as_session",
        (true, CSRF_COOKIE) => "__Host-as_csrf",
        _ => base,
    }
}

fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name).map(|c| c.value().to_string())
}

/// The CSRF cookie value, creating one when the browser has none.
fn csrf_cookie(state: &AppState, req: &HttpRequest) -> (String, bool) {
    match cookie_value(req, cookie_name(state, CSRF_COOKIE)).filter(|v| v.len() >= 32) {
        Some(v) => (v, false),
        None => (shared::secret::random_token(32), true),
    }
}

fn build_cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age: i64,
) -> Cookie<'static> {
    Cookie::build(cookie_name(state, name), value)
        .path("/")
        .http_only(true)
        .secure(state.cookie_secure)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(max_age))
        .finish()
}

/// The logged-in user of this browser, if the signed session cookie is valid.
async fn session_user(state: &AppState, req: &HttpRequest) -> AppResult<Option<(UserRecord, i64)>> {
    let Some(raw) = cookie_value(req, cookie_name(state, SESSION_COOKIE)) else {
        return Ok(None);
    };
    let Some(sid) = state.verify_cookie("session", &raw) else {
        return Ok(None);
    };
    let Some(session) = state
        .store
        .find_session(&shared::secret::sha256_b64url(&sid), now())
        .await?
    else {
        return Ok(None);
    };
    match state.store.find_user_by_id(&session.user_id).await? {
        Some(u) if !u.disabled => Ok(Some((u, session.auth_time))),
        _ => Ok(None),
    }
}

fn render_login(
    state: &AppState,
    req: &HttpRequest,
    p: &AuthorizeParams,
    v: &Validated,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (csrf, fresh) = csrf_cookie(state, req);
    let token = state.csrf_token(&csrf);
    let hidden = p.hidden_fields();
    let redirect_host = redirect_uri::display_host(&v.redirect_uri);
    let page = LoginPage {
        css: pages::css(),
        action: "login",
        client_name: v.client.display_name(),
        redirect_host: &redirect_host,
        hidden: &hidden,
        csrf_token: &token,
        username,
        error,
        demo: state.settings.demo.enabled,
    };
    let mut b = HttpResponse::build(status);
    if fresh {
        b.cookie(build_cookie(state, CSRF_COOKIE, csrf, 3600));
    }
    pages::render(b, &page)
}

fn render_consent(
    state: &AppState,
    req: &HttpRequest,
    p: &AuthorizeParams,
    v: &Validated,
    user: &UserRecord,
    (scope, withheld): (&ScopeSet, &ScopeSet),
    extra_cookie: Option<Cookie<'static>>,
) -> HttpResponse {
    let (csrf, fresh) = csrf_cookie(state, req);
    let withheld: Vec<String> = withheld.iter().map(str::to_string).collect();
    let switch_account_url = p.switch_account_url();
    let token = state.csrf_token(&csrf);
    let hidden = p.hidden_fields();
    let redirect_host = redirect_uri::display_host(&v.redirect_uri);
    let client_host =
        (v.client.source == "cimd").then(|| redirect_uri::display_host(&v.client.client_id));
    let scopes: Vec<(String, &'static str)> = scope
        .iter()
        .map(|s| (s.to_string(), pages::describe_scope(s)))
        .collect();
    let page = ConsentPage {
        css: pages::css(),
        action: "consent",
        client_name: v.client.display_name(),
        client_host: client_host.as_deref(),
        redirect_host: &redirect_host,
        username: &user.username,
        resource: &v.resource,
        scopes: &scopes,
        withheld: &withheld,
        switch_account_url: &switch_account_url,
        hidden: &hidden,
        csrf_token: &token,
    };
    let mut b = HttpResponse::Ok();
    if fresh {
        b.cookie(build_cookie(state, CSRF_COOKIE, csrf, 3600));
    }
    if let Some(c) = extra_cookie {
        b.cookie(c);
    }
    pages::render(b, &page)
}

/// Issues a code and redirects to the client.
async fn issue_code(
    state: &AppState,
    v: &Validated,
    user: &UserRecord,
    scope: &ScopeSet,
    auth_time: i64,
    status: StatusCode,
    extra_cookie: Option<Cookie<'static>>,
) -> AppResult<HttpResponse> {
    let code = shared::secret::random_token(32);
    let now = now();
    if v.client.source == "cimd" {
        // Remember the metadata-document client so grants show its name.
        state.store.upsert_client(&v.client).await?;
    }
    state
        .store
        .insert_code(&AuthCodeRecord {
            code_hash: shared::secret::sha256_b64url(&code),
            client_id: v.client.client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: v.redirect_uri.clone(),
            scope: scope.to_string(),
            resource: v.resource.clone(),
            code_challenge: v.code_challenge.clone(),
            nonce: v.nonce.clone(),
            auth_time,
            created_at: now,
            expires_at: now + state.settings.oauth.authorization_code_ttl_secs,
            grant_id: None,
        })
        .await?;
    let mut resp = redirect_to(
        state,
        &v.redirect_uri,
        &[("code", &code)],
        v.state.as_deref(),
        status,
    );
    if let Some(c) = extra_cookie {
        let _ = resp.add_cookie(&c);
    }
    Ok(resp)
}

/// After authentication: skip consent if remembered, else show the consent page.
async fn consent_step(
    state: &AppState,
    req: &HttpRequest,
    p: &AuthorizeParams,
    v: &Validated,
    (user, auth_time): (&UserRecord, i64),
    status: StatusCode,
    extra_cookie: Option<Cookie<'static>>,
) -> AppResult<HttpResponse> {
    let role = Role::parse(&user.role).unwrap_or(Role::User);
    let scope = scope_policy::cut_to_role(&v.scope, role);
    // Scopes the user asked for but cannot hold: never skip the page then, so the user
    // sees why and can sign in with another account instead of getting a silent downgrade.
    let withheld = scope_policy::withheld_from_role(&v.scope, role);
    let remembered = state
        .store
        .find_consent(&user.id, &v.client.client_id)
        .await?
        .and_then(|s| ScopeSet::parse(&s).ok());
    let force_consent = p
        .prompt
        .as_deref()
        .is_some_and(|pr| pr.split(' ').any(|x| x == "consent"));
    if !force_consent && withheld.is_empty() && remembered.is_some_and(|r| scope.is_subset_of(&r)) {
        return issue_code(state, v, user, &scope, auth_time, status, extra_cookie).await;
    }
    if p.prompt.as_deref() == Some("none") {
        return Ok(redirect_to(
            state,
            &v.redirect_uri,
            &[
                ("error", "consent_required"),
                ("error_description", "consent is required"),
            ],
            v.state.as_deref(),
            status,
        ));
    }
    Ok(render_consent(
        state,
        req,
        p,
        v,
        user,
        (&scope, &withheld),
        extra_cookie,
    ))
}

pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuthorizeParams>,
) -> AppResult<HttpResponse> {
    let p = query.into_inner();
    let result = async {
        let v = validate(&state, &p, StatusCode::FOUND).await?;
        let prompt = p.prompt.as_deref().unwrap_or("");
        let session = if prompt.split(' ').any(|x| x == "login") {
            None
        } else {
            session_user(&state, &req).await?
        };
        match session {
            Some((user, auth_time)) => Ok(consent_step(
                &state,
                &req,
                &p,
                &v,
                (&user, auth_time),
                StatusCode::FOUND,
                None,
            )
            .await?),
            None if prompt == "none" => Err(error_redirect(
                &state,
                &v.redirect_uri,
                v.state.as_deref(),
                "login_required",
                "the user is not signed in",
                StatusCode::FOUND,
            )),
            None => Ok(render_login(&state, &req, &p, &v, "", None, StatusCode::OK)),
        }
    }
    .await;
    finish(result)
}

/// The login and consent forms must echo the token bound to this browser's CSRF cookie.
fn require_form_csrf(state: &AppState, req: &HttpRequest, token: Option<&str>) -> AppResult<()> {
    let cookie = cookie_value(req, cookie_name(state, CSRF_COOKIE));
    if state.check_csrf(cookie.as_deref(), token.unwrap_or("")) {
        return Ok(());
    }
    Err(AppError::Page {
        status: StatusCode::FORBIDDEN,
        title: "Session expired".into(),
        message: "This form has expired or was not sent from this site. Go back to the application and start signing in again.".into(),
    })
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    require_form_csrf(&state, &req, form.csrf_token.as_deref())?;
    let p = form.params;
    let result = async {
        let v = validate(&state, &p, StatusCode::SEE_OTHER).await?;
        let username = form.username.unwrap_or_default().trim().to_string();
        let password = form.password.unwrap_or_default();
        let ip = state.client_ip(&req);
        match state.extensions.check_login(ip, &username) {
            Ok(()) => {}
            Err(AppError::RateLimited { retry_after_secs }) => {
                let mut page = render_login(
                    &state,
                    &req,
                    &p,
                    &v,
                    &username,
                    Some("Too many sign-in attempts. Wait a minute, then try again."),
                    StatusCode::TOO_MANY_REQUESTS,
                );
                if let Ok(value) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                    page.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return Ok(page);
            }
            Err(e) => return Err(e.into()),
        }
        if username.is_empty()
            || password.is_empty()
            || username.len() > 128
            || password.len() > 1024
        {
            return Ok(render_login(
                &state,
                &req,
                &p,
                &v,
                &username,
                Some("Enter your username and password."),
                StatusCode::UNAUTHORIZED,
            ));
        }
        let user = state.store.find_user_by_name(&username).await?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| passwords::dummy_hash().to_string());
        let ok = web::block(move || passwords::verify(&password, &hash))
            .await
            .map_err(AppError::from)?;
        let user = match user {
            Some(u) if ok && !u.disabled => u,
            _ => {
                state.extensions.metric_login(false);
                state.extensions.charge_failed_login(&username);
                state
                    .audit(
                        "login_failure",
                        Some(&username),
                        Some(&v.client.client_id),
                        Some(ip.to_string()),
                        "invalid credentials or disabled account",
                    )
                    .await;
                return Ok(render_login(
                    &state,
                    &req,
                    &p,
                    &v,
                    &username,
                    Some("Invalid username or password."),
                    StatusCode::UNAUTHORIZED,
                ));
            }
        };
        state.extensions.metric_login(true);
        state
            .audit(
                "login_success",
                Some(&user.username),
                Some(&v.client.client_id),
                Some(ip.to_string()),
                "",
            )
            .await;
        let sid = shared::secret::random_token(32);
        let now = now();
        let ttl = state.settings.server.session_ttl_secs;
        state
            .store
            .create_session(&SessionRecord {
                id_hash: shared::secret::sha256_b64url(&sid),
                user_id: user.id.clone(),
                auth_time: now,
                expires_at: now + ttl,
            })
            .await?;
        let cookie = build_cookie(
            &state,
            SESSION_COOKIE,
            state.sign_cookie("session", &sid),
            ttl,
        );
        Ok(consent_step(
            &state,
            &req,
            &p,
            &v,
            (&user, now),
            StatusCode::SEE_OTHER,
            Some(cookie),
        )
        .await?)
    }
    .await;
    finish(result)
}

pub async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ConsentForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    require_form_csrf(&state, &req, form.csrf_token.as_deref())?;
    let p = form.params;
    let result = async {
        let v = validate(&state, &p, StatusCode::SEE_OTHER).await?;
        let Some((user, auth_time)) = session_user(&state, &req).await? else {
            return Ok(render_login(
                &state,
                &req,
                &p,
                &v,
                "",
                Some("Your session has expired. Sign in again."),
                StatusCode::UNAUTHORIZED,
            ));
        };
        let ip = state.client_ip(&req).to_string();
        match form.decision.as_deref() {
            Some("approve") => {
                let role = Role::parse(&user.role).unwrap_or(Role::User);
                let scope = scope_policy::cut_to_role(&v.scope, role);
                let remembered = state
                    .store
                    .find_consent(&user.id, &v.client.client_id)
                    .await?
                    .and_then(|s| ScopeSet::parse(&s).ok())
                    .unwrap_or_default();
                state
                    .store
                    .save_consent(
                        &user.id,
                        &v.client.client_id,
                        &remembered.union(&scope).to_string(),
                        now(),
                    )
                    .await?;
                state
                    .audit(
                        "consent",
                        Some(&user.username),
                        Some(&v.client.client_id),
                        Some(ip),
                        &format!("scope={scope}"),
                    )
                    .await;
                Ok(issue_code(
                    &state,
                    &v,
                    &user,
                    &scope,
                    auth_time,
                    StatusCode::SEE_OTHER,
                    None,
                )
                .await?)
            }
            Some("deny") => {
                state
                    .audit(
                        "consent_denied",
                        Some(&user.username),
                        Some(&v.client.client_id),
                        Some(ip),
                        "",
                    )
                    .await;
                Err(error_redirect(
                    &state,
                    &v.redirect_uri,
                    v.state.as_deref(),
                    "access_denied",
                    "the user denied the request",
                    StatusCode::SEE_OTHER,
                ))
            }
            _ => Err(Failure::Page(AppError::page(
                "Invalid request",
                "Choose Allow or Deny.",
            ))),
        }
    }
    .await;
    finish(result)
}
