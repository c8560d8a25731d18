//! Start-up (`Application::build`): settings validation, storage, key bootstrap,
//! demo and configured clients, the actix server and its routes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context as _;
use shared::metrics::{CounterVec, HistogramVec, Registry};

use crate::cimd::{CimdResolver, ClientMetadataDocument};
use crate::domain::registration_policy::ClientMetadata;
use crate::domain::scope_policy::Role;
use crate::domain::{keys, now, passwords};
use crate::error::{AppError, AppResult};
use crate::http;
use crate::ratelimit::{Bucket, RateLimiter, RetryAfter, TrustedProxy};
use crate::settings::{ClientConfig, Settings};
use crate::state::{client_record, AppState};
use crate::storage::{Store, StoreError, UserRecord};

/// The optional collaborators of the state: CIMD resolver, rate limiter, trusted
/// proxies and metrics.
pub struct Extensions {
    cimd: Option<CimdResolver>,
    limiter: RateLimiter,
    trusted: Vec<TrustedProxy>,
    registry: Registry,
    http_requests: CounterVec,
    http_latency: HistogramVec,
    logins: CounterVec,
    tokens: CounterVec,
    rate_limited: CounterVec,
}

fn rate_limited(r: RetryAfter) -> AppError {
    AppError::RateLimited {
        retry_after_secs: r.0.max(1),
    }
}

impl Extensions {
    pub fn new(settings: &Settings) -> anyhow::Result<Extensions> {
        let cimd = if settings.cimd.enabled {
            Some(CimdResolver::new(&settings.cimd).map_err(|e| anyhow::anyhow!("cimd: {e}"))?)
        } else {
            None
        };
        let trusted = TrustedProxy::parse_list(&settings.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?;
        let registry = Registry::new();
        Ok(Extensions {
            cimd,
            limiter: RateLimiter::new(&settings.rate_limit),
            trusted,
            http_requests: registry.counter(
                "auth_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            )?,
            http_latency: registry.histogram(
                "auth_http_request_duration_seconds",
                "HTTP request latency by route.",
                &["route"],
                shared::metrics::DEFAULT_LATENCY_BUCKETS,
            )?,
            logins: registry.counter(
                "auth_logins_total",
                "Login attempts by outcome.",
                &["outcome"],
            )?,
            tokens: registry.counter(
                "auth_token_requests_total",
                "Token endpoint requests by grant type and outcome.",
                &["grant_type", "outcome"],
            )?,
            rate_limited: registry.counter(
                "auth_rate_limited_total",
                "Requests refused by a rate limit, by bucket.",
                &["bucket"],
            )?,
            registry,
        })
    }

    pub async fn resolve_cimd(
        &self,
        client_id: &str,
    ) -> AppResult<Option<crate::storage::ClientRecord>> {
        let Some(resolver) = &self.cimd else {
            return Ok(None);
        };
        if !resolver.is_cimd_client_id(client_id) {
            return Ok(None);
        }
        match resolver.resolve(client_id).await {
            Ok(doc) => Ok(Some(cimd_client(doc))),
            Err(e) => Err(AppError::page("Application not available", e.to_string())),
        }
    }

    pub fn client_ip(&self, req: &HttpRequest) -> std::net::IpAddr {
        crate::ratelimit::client_ip(req, &self.trusted)
    }

    fn check(&self, bucket: Bucket, key: &str) -> AppResult<()> {
        self.limiter.check(bucket, key).map_err(|r| {
            self.rate_limited.inc(&[bucket.as_str()]);
            rate_limited(r)
        })
    }

    /// Before a login attempt: every attempt counts against the client IP; the
    /// per-username budget is only checked here (it is charged by
    /// [`Self::charge_failed_login`]), so successful logins never lock a user out.
    pub fn check_login(&self, ip: std::net::IpAddr, username: &str) -> AppResult<()> {
        self.check(Bucket::LoginIp, &crate::ratelimit::ip_key(ip))?;
        if !username.is_empty() {
            self.limiter
                .peek(Bucket::LoginUser, &username.to_lowercase())
                .map_err(|r| {
                    self.rate_limited.inc(&[Bucket::LoginUser.as_str()]);
                    rate_limited(r)
                })?;
        }
        Ok(())
    }

    /// After a failed login: counts against the username's budget.
    pub fn charge_failed_login(&self, username: &str) {
        if !username.is_empty() {
            // A refusal here only means the budget is already spent; the next
            // attempt is refused by `check_login`.
            let _ = self
                .limiter
                .check(Bucket::LoginUser, &username.to_lowercase());
        }
    }

    pub fn check_register(&self, ip: std::net::IpAddr) -> AppResult<()> {
        self.check(Bucket::RegisterIp, &crate::ratelimit::ip_key(ip))
    }

    pub fn check_token_ip(&self, ip: std::net::IpAddr) -> AppResult<()> {
        self.check(Bucket::TokenIp, &crate::ratelimit::ip_key(ip))
    }

    pub fn check_token_client(&self, client_id: &str) -> AppResult<()> {
        self.check(Bucket::TokenClient, client_id)
    }

    pub fn metric_login(&self, ok: bool) {
        self.logins.inc(&[if ok { "success" } else { "failure" }]);
    }

    pub fn metric_token(&self, grant_type: &str, ok: bool) {
        self.tokens
            .inc(&[grant_type, if ok { "success" } else { "error" }]);
    }

    pub fn render_metrics(&self) -> String {
        self.registry.render()
    }
}

/// A metadata-document client as a (public) client record.
fn cimd_client(doc: ClientMetadataDocument) -> crate::storage::ClientRecord {
    let metadata = ClientMetadata {
        redirect_uris: doc.redirect_uris,
        token_endpoint_auth_method: "none".into(),
        grant_types: if doc.grant_types.is_empty() {
            vec!["authorization_code".into(), "refresh_token".into()]
        } else {
            doc.grant_types
        },
        response_types: if doc.response_types.is_empty() {
            vec!["code".into()]
        } else {
            doc.response_types
        },
        client_name: Some(doc.client_name.clone()),
        client_uri: doc.client_uri,
        logo_uri: doc.logo_uri,
        scope: doc.scope.unwrap_or_default(),
        contacts: Vec::new(),
        tos_uri: None,
        policy_uri: None,
        software_id: None,
        software_version: None,
        application_type: "native".into(),
    };
    client_record(
        &doc.client_id,
        Some(doc.client_name),
        None,
        metadata,
        "cimd",
        false,
    )
}

/// The demo accounts with their published passwords.
const DEMO_USERS: [(&str, &str, Role, &str); 3] = [
    ("inspector", "inspector123", Role::Admin, "MCP Inspector"),
    ("admin", "admin123", Role::Admin, "Admin User"),
    ("demo", "demo123", Role::User, "Demo User"),
];

/// Server start without demo mode on a database that once ran with `--demo`: the
/// demo client's secret and the demo passwords are public, so the client is removed
/// and demo accounts that still have their published password are disabled.
pub async fn retire_demo_leftovers(store: &dyn Store) -> anyhow::Result<()> {
    if let Some(client) = store.find_client("mcp-server").await? {
        if client.source == "demo" {
            store.delete_client(&client.client_id, now()).await?;
            log::warn!(
                "demo mode is off: removed the demo client mcp-server (its secret is public); configure a client in [[clients]] instead"
            );
        }
    }
    for (username, password, _, _) in DEMO_USERS {
        let Some(user) = store.find_user_by_name(username).await? else {
            continue;
        };
        if user.disabled {
            continue;
        }
        let hash = user.password_hash.clone();
        let still_public =
            tokio::task::spawn_blocking(move || passwords::verify(password, &hash)).await?;
        if still_public {
            store.set_disabled(username, true, now()).await?;
            log::warn!(
                "demo mode is off: disabled the account {username}, which still has its published demo password (set a new one with `auth-server user passwd {username}`, then `auth-server user enable {username}`)"
            );
        }
    }
    Ok(())
}

/// Creates the first signing key, configured clients and (with `demo.enabled`) the
/// demo users and mcp-server's client. Idempotent.
pub async fn bootstrap(settings: &Settings, store: &dyn Store) -> anyhow::Result<()> {
    if store
        .list_keys()
        .await?
        .iter()
        .all(|k| k.retired_at.is_some())
    {
        let key = keys::generate(now()).context("generating the signing key")?;
        if store.insert_first_key(&key).await? {
            log::info!("generated signing key {}", key.kid);
        }
    }
    for c in &settings.clients {
        store.upsert_client(&configured_client(c)).await?;
    }
    if settings.demo.enabled {
        for (username, password, role, name) in DEMO_USERS {
            if store.find_user_by_name(username).await?.is_some() {
                continue;
            }
            let password = password.to_string();
            let hash = tokio::task::spawn_blocking(move || passwords::hash(&password)).await??;
            let user = new_user(
                username,
                &hash,
                role,
                Some(format!("{username}@example.com")),
                Some(name.to_string()),
            );
            match store.create_user(&user).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let demo_client = ClientConfig {
            client_id: "mcp-server".into(),
            client_name: "MCP server (resource server)".into(),
            client_secret: settings.demo.mcp_server_client_secret.clone(),
            grant_types: vec!["client_credentials".into()],
            scope: format!(
                "{} {}",
                shared::scopes::AUTH_ADMIN,
                shared::scopes::AUTH_INTROSPECT
            ),
            can_introspect: true,
            ..Default::default()
        };
        let mut record = configured_client(&demo_client);
        record.source = "demo".into();
        store.upsert_client(&record).await?;
    }
    Ok(())
}

pub fn new_user(
    username: &str,
    hash: &str,
    role: Role,
    email: Option<String>,
    name: Option<String>,
) -> UserRecord {
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        password_hash: hash.to_string(),
        role: role.as_str().to_string(),
        email,
        name,
        disabled: false,
        created_at: now(),
    }
}

fn configured_client(c: &ClientConfig) -> crate::storage::ClientRecord {
    let secret_hash = if !c.client_secret_sha256.is_empty() {
        Some(c.client_secret_sha256.clone())
    } else if !c.client_secret.is_empty() {
        Some(shared::secret::sha256_b64url(c.client_secret.expose()))
    } else {
        None
    };
    let grant_types = if c.grant_types.is_empty() {
        if c.redirect_uris.is_empty() {
            vec!["client_credentials".into()]
        } else {
            vec!["authorization_code".into(), "refresh_token".into()]
        }
    } else {
        c.grant_types.clone()
    };
    let uses_code = grant_types.iter().any(|g| g == "authorization_code");
    let method = if secret_hash.is_some() {
        "client_secret_basic"
    } else {
        "none"
    };
    let name = (!c.client_name.is_empty()).then(|| c.client_name.clone());
    let metadata = ClientMetadata {
        redirect_uris: c.redirect_uris.clone(),
        token_endpoint_auth_method: method.into(),
        grant_types,
        response_types: if uses_code {
            vec!["code".into()]
        } else {
            Vec::new()
        },
        client_name: name.clone(),
        client_uri: None,
        logo_uri: None,
        scope: shared::ScopeSet::parse(&c.scope)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        contacts: Vec::new(),
        tos_uri: None,
        policy_uri: None,
        software_id: None,
        software_version: None,
        application_type: "web".into(),
    };
    client_record(
        &c.client_id,
        name,
        secret_hash,
        metadata,
        "config",
        c.can_introspect,
    )
}

pub struct Application {
    port: u16,
    local_addr: std::net::SocketAddr,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let store =
            crate::storage::open(&settings.database_url(), settings.database.max_connections)
                .await
                .with_context(|| format!("opening the database {}", settings.database_url()))?;
        bootstrap(&settings, store.as_ref()).await?;
        if !settings.demo.enabled {
            retire_demo_leftovers(store.as_ref()).await?;
        }
        if !crate::domain::signing::install() {
            log::warn!(
                "another jsonwebtoken CryptoProvider is installed; ES256 keys are re-parsed for every token"
            );
        }
        let ring = keys::KeyRing::from_stored(
            &store.list_keys().await?,
            now(),
            settings
                .oauth
                .access_token_ttl_secs
                .max(settings.oauth.id_token_ttl_secs),
        )?;
        let cookie_secret = store
            .get_or_init_kv("cookie_key", &shared::secret::random_token(32))
            .await?;
        let extensions = Extensions::new(&settings)?;
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let local_addr = listener.local_addr()?;
        let workers = settings.server.workers;
        let state = web::Data::new(AppState::new(
            settings,
            store,
            ring,
            cookie_secret.as_bytes(),
            extensions,
        ));
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(|cfg| routes(cfg, &app_state))
                .wrap(from_fn(track))
                // The request-id middleware sits inside the access logger so the
                // logger sees the `x-request-id` response header it sets.
                .wrap(from_fn(shared::telemetry::request_id))
                .wrap(shared::telemetry::access_logger_if_enabled())
        })
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(5);
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        spawn_maintenance(Arc::downgrade(&state.clone().into_inner()));
        Ok(Application {
            port: local_addr.port(),
            local_addr,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// A handle to stop the server (`handle.stop(true).await`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The actix server future, to `tokio::spawn` it.
    pub fn server(self) -> Server {
        self.server
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Periodic maintenance: purge expired rows, pick up keys rotated by the CLI.
/// Stops when the application state is dropped.
fn spawn_maintenance(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            if let Err(e) = state.reload_keys().await {
                log::warn!("key reload failed: {e}");
            }
            if rounds.is_multiple_of(10) {
                match state.store.purge_expired(now()).await {
                    Ok(n) if n > 0 => log::info!("purged {n} expired rows"),
                    Ok(_) => {}
                    Err(e) => log::warn!("purge failed: {e}"),
                }
            }
            rounds += 1;
        }
    });
}

async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = shared::metrics::method_label(req.method());
    let res = next.call(req).await?;
    if let Some(state) = state {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let status = res.status().as_u16().to_string();
        let ext = &state.extensions;
        ext.http_requests.inc(&[&route, method, &status]);
        ext.http_latency
            .observe_duration(&[&route], start.elapsed());
    }
    Ok(res)
}

fn cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("mcp-protocol-version"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(3600)
}

fn body_error(status_overflow: bool, what: &str) -> actix_web::Error {
    if status_overflow {
        AppError::OAuth {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: "invalid_request",
            description: "the request body is too large".into(),
        }
        .into()
    } else {
        AppError::invalid_request(format!("malformed request body: {what}")).into()
    }
}

fn routes(cfg: &mut web::ServiceConfig, state: &web::Data<AppState>) {
    use actix_web::error::{JsonPayloadError, UrlencodedError};
    let limit = state.settings.server.max_body_bytes;
    cfg.app_data(
        web::FormConfig::default()
            .limit(limit)
            .error_handler(|err, _| {
                let overflow = matches!(err, UrlencodedError::Overflow { .. });
                body_error(overflow, &err.to_string())
            }),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(limit)
            .content_type_required(false)
            .error_handler(|err, _| {
                let overflow = matches!(
                    err,
                    JsonPayloadError::Overflow { .. }
                        | JsonPayloadError::OverflowKnownLength { .. }
                );
                match &err {
                    // The parser's message (position, "expected a JSON object",
                    // "duplicate member") helps a client developer; it never echoes
                    // more than a member name.
                    JsonPayloadError::Deserialize(e) => {
                        body_error(false, &format!("invalid JSON ({e})"))
                    }
                    _ => body_error(overflow, "invalid JSON"),
                }
            }),
    )
    .app_data(web::PayloadConfig::new(limit))
    .app_data(web::QueryConfig::default().error_handler(|err, _| {
        AppError::page(
            "Invalid request",
            format!("The request parameters are malformed: {err}"),
        )
        .into()
    }))
    .service(
        api_resource("/.well-known/oauth-authorization-server/{tail:.*}")
            .wrap(cors())
            .route(web::get().to(http::metadata::path_inserted)),
    )
    .service(
        api_resource("/.well-known/openid-configuration/{tail:.*}")
            .wrap(cors())
            .route(web::get().to(http::metadata::path_inserted)),
    )
    .configure(|c| endpoints(c, limit));
    // With a pathed issuer (https://host/auth) the endpoints are also served under
    // the path, so the advertised URLs work with or without a prefix-stripping proxy.
    let path = issuer_path(&state.issuer);
    if !path.is_empty() {
        cfg.service(web::scope(&path).configure(|c| endpoints(c, limit)));
    }
    cfg.default_service(web::to(not_found));
}

/// The path of the issuer URL without a trailing slash ("" for a root issuer).
pub(crate) fn issuer_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

/// The form extractor of the browser endpoints (`/login`, `/consent`): a bad body
/// gets the HTML error page, like every other failure a user sees there.
fn page_form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default()
        .limit(limit)
        .error_handler(|err, _| {
            let status = if matches!(err, actix_web::error::UrlencodedError::Overflow { .. }) {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            AppError::Page {
                status,
                title: "Invalid request".into(),
                message: "This form could not be read. Go back to the application and start signing in again.".into(),
            }
            .into()
        })
}

/// Every endpoint below the issuer (also the OIDC-appended well-known documents).
fn endpoints(cfg: &mut web::ServiceConfig, limit: usize) {
    cfg.service(
        api_resource("/.well-known/oauth-authorization-server")
            .wrap(cors())
            .route(web::get().to(http::metadata::oauth_metadata)),
    )
    .service(
        api_resource("/.well-known/openid-configuration")
            .wrap(cors())
            .route(web::get().to(http::metadata::oauth_metadata)),
    )
    .service(page_resource("/authorize").route(web::get().to(http::authorize::authorize)))
    .service(
        page_resource("/login")
            .app_data(page_form_config(limit))
            .route(web::post().to(http::authorize::login)),
    )
    .service(
        page_resource("/consent")
            .app_data(page_form_config(limit))
            .route(web::post().to(http::authorize::consent)),
    )
    .service(
        api_resource("/token")
            .wrap(cors())
            .route(web::post().to(http::token::token)),
    )
    .service(
        api_resource("/register")
            .wrap(cors())
            .route(web::post().to(http::register::register)),
    )
    .service(
        api_resource("/register/{client_id}")
            .wrap(cors())
            .route(web::get().to(http::register::read))
            .route(web::put().to(http::register::update))
            .route(web::delete().to(http::register::delete)),
    )
    .service(
        api_resource("/revoke")
            .wrap(cors())
            .route(web::post().to(http::revoke::revoke)),
    )
    .service(api_resource("/introspect").route(web::post().to(http::introspect::introspect)))
    .service(
        api_resource("/userinfo")
            .wrap(cors())
            .route(web::get().to(http::userinfo::userinfo))
            .route(web::post().to(http::userinfo::userinfo)),
    )
    .service(
        api_resource("/jwks.json")
            .wrap(cors())
            .route(web::get().to(http::jwks::jwks)),
    )
    .service(api_resource("/healthz").route(web::get().to(http::health::healthz)))
    .service(api_resource("/metrics").route(web::get().to(http::health::metrics)))
    .service(api_resource("/admin/grants").route(web::get().to(http::admin::list_grants)))
    .service(api_resource("/admin/grants/revoke").route(web::post().to(http::admin::revoke_grant)))
    .service(api_resource("/admin/stats/users").route(web::get().to(http::admin::user_stats)));
}

/// A JSON API resource: other methods get a 405 OAuth-style JSON error.
fn api_resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<HttpResponse, _>(AppError::OAuth {
            status: StatusCode::METHOD_NOT_ALLOWED,
            error: "invalid_request",
            description: "this HTTP method is not allowed on this endpoint".into(),
        })
    }))
}

/// A browser resource: other methods get a 405 HTML error page.
fn page_resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        Err::<HttpResponse, _>(AppError::Page {
            status: StatusCode::METHOD_NOT_ALLOWED,
            title: "Invalid request".into(),
            message: "This page cannot be opened this way. Go back to the application and start signing in again.".into(),
        })
    }))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"}))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let mut settings = Settings::default();
        settings.rate_limit.register_per_ip_per_minute = 1;
        settings.cimd.enabled = false;
        let ext = Extensions::new(&settings).unwrap();
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(ext.check_register(a).is_ok());
        // Rotating addresses inside the same /64 does not buy a new budget.
        assert!(matches!(
            ext.check_register(b),
            Err(AppError::RateLimited { .. })
        ));
        assert!(ext.check_register(other).is_ok());
    }

    #[test]
    fn successful_logins_do_not_spend_the_username_budget() {
        let mut settings = Settings::default();
        settings.rate_limit.login_per_user_per_minute = 2;
        settings.cimd.enabled = false;
        let ext = Extensions::new(&settings).unwrap();
        let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(ext.check_login(ip, "alice").is_ok());
        }
        ext.charge_failed_login("Alice");
        ext.charge_failed_login("alice");
        assert!(matches!(
            ext.check_login(ip, "ALICE"),
            Err(AppError::RateLimited { .. })
        ));
        assert!(ext.check_login(ip, "bob").is_ok());
    }
}
