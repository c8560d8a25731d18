//! Wiring (`Application::build`): validates the settings, opens storage, runs the
//! bootstrap, builds the state, starts the background tasks, and serves the routes on
//! the actix server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;

use shared::metrics_listener::{self, MetricsListener};

use crate::domain::{keys, now};
use crate::error::AppError;
use crate::http;
use crate::service::bootstrap::{bootstrap, retire_demo_leftovers};
use crate::service::keys_at_rest;
use crate::service::AppState;
use crate::settings::Settings;

pub struct Application {
    port: u16,
    local_addr: std::net::SocketAddr,
    server: Server,
    metrics: Option<MetricsListener>,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let key_encryption = keys_at_rest::key_encryption(&settings.secrets)?;
        let database = settings.database_url();
        let store = crate::storage::open(&database, settings.database.max_connections)
            .await
            .with_context(|| {
                format!(
                    "opening the database {}",
                    crate::storage::redact_url(&database)
                )
            })?;
        log::info!("database: {}", crate::storage::redact_url(&database));
        // Before anything is generated: a wrong key-encryption key stops here.
        keys_at_rest::seal_plaintext_secrets(store.as_ref(), &key_encryption).await?;
        bootstrap(&settings, store.as_ref(), &key_encryption).await?;
        if !settings.demo.enabled {
            retire_demo_leftovers(store.as_ref()).await?;
        }
        if !crate::domain::signing::install() {
            log::warn!(
                "another jsonwebtoken CryptoProvider is installed; ES256 keys are re-parsed for every token"
            );
        }
        let ring = keys::KeyRing::from_stored(
            &keys_at_rest::open_keys(&key_encryption, &store.list_keys().await?)?,
            now(),
            settings.key_publication_secs(),
        )?;
        let cookie_secret = keys_at_rest::cookie_secret(store.as_ref(), &key_encryption).await?;
        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("binding {}", settings.server.listen))?;
        let local_addr = listener.local_addr()?;
        let workers = settings.server.workers;
        let state = web::Data::new(AppState::new(
            settings,
            store,
            ring,
            key_encryption,
            cookie_secret.expose().as_bytes(),
        )?);
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
        let metrics = state.metrics.clone();
        let metrics_listen = &state.settings.server.metrics_listen;
        let metrics = MetricsListener::bind(metrics_listen, move || metrics.render())
            .with_context(|| {
                format!(
                    "binding server.metrics_listen {metrics_listen} (another address, or \"off\")"
                )
            })?;
        spawn_maintenance(
            Arc::downgrade(&state.clone().into_inner()),
            Duration::from_secs(state.settings.keys.refresh_secs),
        );
        if state.limits.is_shared() {
            spawn_limits_probe(Arc::downgrade(&state.clone().into_inner()));
        }
        Ok(Application {
            port: local_addr.port(),
            local_addr,
            server,
            metrics,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served (`server.metrics_listen`); `None` when off.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// A handle to stop the server and its metrics listener (`handle.stop(true).await`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The server future (public port and metrics listener), to `tokio::spawn` it.
    pub fn server(self) -> impl std::future::Future<Output = std::io::Result<()>> {
        metrics_listener::run_alongside(self.server, self.metrics)
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server().await
    }
}

/// How often expired rows are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Periodic maintenance: pick up keys rotated by another replica or the CLI (every
/// `keys.refresh_secs`), purge expired rows (at the first tick, then every
/// [`PURGE_EVERY`]; with several replicas each purges, which is harmless). Stops
/// when the application state is dropped.
fn spawn_maintenance(state: std::sync::Weak<AppState>, refresh: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last_purge: Option<Instant> = None;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            if let Err(e) = state.reload_keys().await {
                log::warn!("key reload failed: {e}");
            }
            if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                last_purge = Some(Instant::now());
                match state.store.purge_expired(now()).await {
                    Ok(n) if n > 0 => log::info!("purged {n} expired rows"),
                    Ok(_) => {}
                    Err(e) => log::warn!("purge failed: {e}"),
                }
            }
        }
    });
}

/// While the rate limits are shared: asks Redis once a second, so that an outage shows
/// in `/readyz` and in the log even without traffic, and its end is noticed (decisions
/// skip Redis during an outage). Stops when the application state is dropped.
fn spawn_limits_probe(state: std::sync::Weak<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            state.limits.probe().await;
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
        state
            .metrics
            .http_request(&route, method, &status, start.elapsed());
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
            // A JSON body must say so: `text/plain` (or no type) is a "simple"
            // request that any web page can send cross-site without a CORS
            // preflight, so accepting it would let pages register clients or
            // drive the admin API from a victim's browser.
            .content_type_required(true)
            .error_handler(|err, _| {
                let overflow = matches!(
                    err,
                    JsonPayloadError::Overflow { .. }
                        | JsonPayloadError::OverflowKnownLength { .. }
                );
                match &err {
                    JsonPayloadError::ContentType => {
                        AppError::OAuth {
                            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            error: "invalid_request",
                            description:
                                "the request body must be sent as Content-Type: application/json"
                                    .into(),
                        }
                        .into()
                    }
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
    let path = http::metadata::issuer_path(&state.issuer);
    if !path.is_empty() {
        cfg.service(web::scope(&path).configure(|c| endpoints(c, limit)));
    }
    cfg.default_service(web::to(not_found));
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
        page_resource("/idp/{id}/login")
            .app_data(page_form_config(limit))
            .route(web::post().to(http::idp::start)),
    )
    .service(page_resource("/idp/{id}/callback").route(web::get().to(http::idp::callback)))
    .service(
        page_resource("/logout")
            .app_data(page_form_config(limit))
            .route(web::get().to(http::idp::logout))
            .route(web::post().to(http::idp::logout)),
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
    .service(api_resource("/revocations").route(web::get().to(http::revocations::revocations)))
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
    .service(api_resource("/readyz").route(web::get().to(http::health::readyz)))
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
