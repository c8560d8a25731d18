//! The Remote MCP server: Streamable HTTP (rmcp) inside actix-web, protected by OAuth 2.1
//! bearer tokens from any authorization server (RFC 9728 metadata, RFC 6750 challenges,
//! JWKS or introspection verification, scope-gated tools).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let settings = mcp_server::settings::Settings::load(None)?;
//! let app = mcp_server::Application::build(settings).await?;
//! println!("listening on http://{}", app.local_addr());
//! app.run_until_stopped().await?;
//! # Ok(()) }
//! ```

pub mod admin_client;
pub mod auth;
pub mod bridge;
pub mod caller;
pub mod cli;
pub mod data;
pub mod direct;
pub mod error;
pub mod gateway;
pub mod inspection;
pub mod metrics;
pub mod policy;
pub mod routes;
pub mod security;
pub mod session_manager;
pub mod sessions;
pub mod settings;
pub mod tools;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use futures::future::LocalBoxFuture;
use http_body_util::{combinators::BoxBody, Full};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use shared::metadata::ProtectedResourceMetadata;
use shared::metrics_listener::{self, MetricsListener};
use tokio_util::sync::CancellationToken;

use crate::admin_client::AdminClient;
use crate::auth::revocation_feed::{self, FeedCheckedVerifier, RevocationFeed};
use crate::auth::TokenVerifier;
use crate::error::ChallengeContext;
use crate::metrics::Metrics;
use crate::session_manager::RoutedSessionManager;
use crate::sessions::SessionOwners;
use crate::settings::Settings;
use crate::tools::{McpTools, ToolContext};

pub use crate::caller::Caller;

/// The rmcp service behind the MCP endpoint, whichever handler it serves: the
/// product's tools ([`Application::build`]) or another one
/// ([`Application::build_with_service`]).
pub trait McpEndpoint: Send + Sync {
    fn handle(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> LocalBoxFuture<'_, http::Response<BoxBody<Bytes, std::convert::Infallible>>>;
}

impl<S> McpEndpoint for StreamableHttpService<S, RoutedSessionManager>
where
    S: rmcp::ServerHandler + Send + 'static,
{
    fn handle(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> LocalBoxFuture<'_, http::Response<BoxBody<Bytes, std::convert::Infallible>>> {
        Box::pin(StreamableHttpService::handle(self, request))
    }
}

/// State shared by every worker.
pub struct AppState {
    pub verifier: Arc<dyn TokenVerifier>,
    pub challenge: ChallengeContext,
    pub allow_anonymous: bool,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    /// The same lists, parsed once (checked on every request without allocating).
    pub host_allow: security::HostAllowList,
    pub origin_allow: Arc<security::OriginAllowList>,
    pub max_body_bytes: usize,
    pub stateless: bool,
    /// Names of the tools this server serves: the scope policy only challenges calls
    /// of tools that exist (a hidden `admin_panel` must not trigger a step-up).
    pub served_tools: Vec<String>,
    pub max_sessions_per_subject: usize,
    pub sessions: SessionOwners,
    pub session_manager: Arc<RoutedSessionManager>,
    pub mcp: Box<dyn McpEndpoint>,
    pub metrics: Metrics,
    pub prm: ProtectedResourceMetadata,
    pub last_prune: AtomicU64,
    /// The handler the bridge answers plain `tools/call`s with (see `direct`); `None`
    /// when another rmcp handler is served or `transport.direct_tool_calls = false`.
    pub direct_tools: Option<direct::DirectTools>,
    /// Direct answers as JSON (stateless `json_response`) rather than one SSE event.
    pub direct_json: bool,
    /// How often a session used only through direct answers resets rmcp's idle timer.
    pub session_touch_every: Duration,
    /// The AS's revocation feed this server follows, if any (`/readyz` shows it).
    pub revocation_feed: Option<Arc<RevocationFeed>>,
    /// Which scope each tool, prompt and resource needs (`[policy]`).
    pub policy: Arc<policy::Policy>,
    /// The upstream MCP server in gateway mode (`[upstream]`); `None` serves the
    /// built-in tools.
    pub gateway: Option<Arc<gateway::Gateway>>,
}

/// A bound, configured server. `build` binds the listener, so `port()` is known before
/// the server runs (port 0 in tests).
pub struct Application {
    upstream: Option<String>,
    local_addr: SocketAddr,
    resource: String,
    tools: Vec<String>,
    server: Server,
    metrics: Option<MetricsListener>,
    cancel: CancellationToken,
}

/// Replaces a port of 0 in the resource URL with the bound port.
fn resolve_resource(configured: &str, port: u16) -> anyhow::Result<String> {
    let canonical =
        shared::resource::canonical_url(configured).map_err(|e| anyhow!("server.resource: {e}"))?;
    let mut url = url::Url::parse(&canonical).map_err(|e| anyhow!("server.resource: {e}"))?;
    if url.port() == Some(0) {
        url.set_port(Some(port))
            .map_err(|_| anyhow!("server.resource: cannot set the port"))?;
    }
    shared::resource::canonical_url(url.as_str()).map_err(|e| anyhow!("server.resource: {e}"))
}

fn mcp_path(resource: &str) -> String {
    let path = url::Url::parse(resource)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    if path.is_empty() {
        "/".to_string()
    } else {
        path
    }
}

fn well_known_cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allowed_methods(["GET", "OPTIONS"])
        .allow_any_header()
        .max_age(86_400)
}

fn mcp_cors(allowed_origins: Arc<security::OriginAllowList>) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin.to_str().is_ok_and(|o| allowed_origins.allows(o))
        })
        .allowed_methods(["GET", "POST", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("mcp-protocol-version"),
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("mcp-method"),
            header::HeaderName::from_static("mcp-name"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("mcp-protocol-version"),
        ])
        .max_age(3_600)
}

async fn admin_client(
    settings: &Settings,
    metadata: Option<&shared::metadata::AuthorizationServerMetadata>,
    http: &reqwest::Client,
) -> anyhow::Result<Option<Arc<AdminClient>>> {
    let enabled = settings.admin_api.enabled;
    if enabled == Some(false) {
        return Ok(None);
    }
    let base = settings
        .admin_api
        .base_url
        .clone()
        .unwrap_or_else(|| settings.auth.issuer.clone());
    let token_endpoint = settings
        .admin_api
        .token_endpoint
        .clone()
        .or_else(|| metadata.and_then(|m| m.token_endpoint.clone()));
    let has_credentials =
        !settings.auth.client_id.trim().is_empty() && !settings.auth.client_secret.is_empty();
    let make = |token_endpoint: &str| {
        Arc::new(AdminClient::new(
            http.clone(),
            &base,
            token_endpoint,
            &settings.auth.client_id,
            settings.auth.client_secret.clone(),
        ))
    };
    match (enabled, token_endpoint) {
        (Some(true), _) if !has_credentials => bail!(
            "admin_api.enabled is true but auth.client_id/auth.client_secret are not set (the admin API is called with mcp-server's own credentials; --demo sets the demo client)"
        ),
        (Some(true), None) => bail!(
            "admin_api.enabled is true but no token endpoint is known; set admin_api.token_endpoint"
        ),
        (Some(true), Some(te)) => Ok(Some(make(&te))),
        (_, Some(te)) if has_credentials => {
            if admin_client::probe(http, &base).await {
                log::info!("admin API found at {base}; the admin_panel tool is enabled");
                Ok(Some(make(&te)))
            } else {
                log::info!("no admin API at {base}; the admin_panel tool is not offered");
                Ok(None)
            }
        }
        _ => {
            log::info!("admin_panel tool not offered (no client credentials or token endpoint)");
            Ok(None)
        }
    }
}

/// What one MCP service serves: the built-in tools, another rmcp handler, or an
/// upstream (gateway mode).
struct Served {
    tool_names: Vec<String>,
    direct_tools: Option<direct::DirectTools>,
    policy: Arc<policy::Policy>,
    gateway: Option<Arc<gateway::Gateway>>,
}

/// What every MCP service is mounted behind: the bound listener, the canonical resource
/// and token verification against the authorization server.
struct Foundation {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    resource: String,
    resource_metadata_url: String,
    http: reqwest::Client,
    verifier: Arc<dyn TokenVerifier>,
    metadata: Option<shared::metadata::AuthorizationServerMetadata>,
    issuer: String,
    metrics: Metrics,
    revocation_feed: Option<Arc<RevocationFeed>>,
}

impl Foundation {
    /// Validates the settings, binds the listener, discovers the AS and loads its keys
    /// (the verifier builder retries as configured).
    async fn resolve(settings: &Settings) -> anyhow::Result<Foundation> {
        settings
            .validate()
            .map_err(|e| anyhow!("invalid configuration: {e}"))?;
        let listener = std::net::TcpListener::bind(settings.server.listen.trim())
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let local_addr = listener.local_addr()?;
        let resource = resolve_resource(&settings.server.resource, local_addr.port())?;
        let resource_metadata_url = shared::resource::protected_resource_metadata_url(&resource)
            .map_err(|e| anyhow!("server.resource: {e}"))?;

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("mcp-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;

        let built = auth::build_verifier(&settings.auth, &resource, http.clone())
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot set up token verification against the authorization server {}: {e}",
                    settings.auth.issuer
                )
            })?;
        let metrics = Metrics::new().context("registering metrics")?;
        let revocation_feed =
            follow_revocation_feed(settings, built.metadata.as_ref(), &http, &metrics)?;
        // The feed's revocations in front of the verifier, cached tokens included.
        let verifier: Arc<dyn TokenVerifier> = match &revocation_feed {
            Some(feed) => Arc::new(FeedCheckedVerifier::new(built.verifier, feed.clone())),
            None => built.verifier,
        };
        // Byte-identical to what the AS calls itself when its metadata was fetched.
        let issuer = built
            .metadata
            .as_ref()
            .map(|m| m.issuer.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| settings.auth.issuer.clone());
        Ok(Foundation {
            listener,
            local_addr,
            resource,
            resource_metadata_url,
            http,
            verifier,
            metadata: built.metadata,
            issuer,
            metrics,
            revocation_feed,
        })
    }
}

/// Starts following the AS's revocation feed, when the AS offers one (or it is
/// configured) and this server may read it.
fn follow_revocation_feed(
    settings: &Settings,
    metadata: Option<&shared::metadata::AuthorizationServerMetadata>,
    http: &reqwest::Client,
    metrics: &Metrics,
) -> anyhow::Result<Option<Arc<RevocationFeed>>> {
    let Some(endpoint) = revocation_feed::endpoint(&settings.auth, metadata)
        .map_err(|e| anyhow!("invalid configuration: {e}"))?
    else {
        return Ok(None);
    };
    let feed = Arc::new(
        RevocationFeed::new(
            endpoint,
            http.clone(),
            &settings.auth,
            metrics.revocation_feed_polls.clone(),
        )
        .map_err(|e| anyhow!("invalid configuration: {e}"))?,
    );
    log::info!(
        "following the revocation feed at {} every {} s",
        feed.endpoint(),
        settings.auth.revocation_poll_secs
    );
    feed.spawn();
    Ok(Some(feed))
}

impl Application {
    /// Validates the settings, binds the listener, discovers the AS and loads its keys
    /// (the verifier builder retries as configured), then prepares the HTTP server that
    /// serves the product's tools.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        if settings.upstream.is_configured() {
            return Self::build_gateway(settings).await;
        }
        let base = Foundation::resolve(&settings).await?;
        let policy = Arc::new(
            policy::Policy::from_settings(&settings.policy, false)
                .map_err(|e| anyhow!("invalid configuration: {e}"))?,
        );
        let admin = admin_client(&settings, base.metadata.as_ref(), &base.http).await?;
        let data = data::ProtectedData::load(&settings.data.protected_data_file)?;
        let ctx = Arc::new(ToolContext {
            verifier: base.verifier.clone(),
            metadata: base.metadata.clone(),
            issuer: base.issuer.clone(),
            resource: base.resource.clone(),
            resource_metadata_url: base.resource_metadata_url.clone(),
            data,
            admin,
            policy: policy.clone(),
        });
        let prototype = McpTools::new(ctx);
        let direct_tools = settings
            .transport
            .direct_tool_calls
            .then(|| direct::DirectTools::new(prototype.clone()));
        let tool_names = prototype.tool_names();
        Self::mount(
            &settings,
            base,
            Served {
                tool_names,
                direct_tools,
                policy,
                gateway: None,
            },
            move || prototype.clone(),
        )
    }

    /// Gateway mode: serves the upstream MCP server of `[upstream]` behind the same
    /// bridge, scope policy, session limits and transport settings, instead of the
    /// built-in tools.
    pub async fn build_gateway(settings: Settings) -> anyhow::Result<Application> {
        let base = Foundation::resolve(&settings).await?;
        let policy = Arc::new(
            policy::Policy::from_settings(&settings.policy, true)
                .map_err(|e| anyhow!("invalid configuration: {e}"))?,
        );
        let gateway = Arc::new(
            gateway::Gateway::new(
                &settings.upstream,
                policy.clone(),
                settings.transport.direct_tool_calls,
            )
            .map_err(|e| anyhow!("invalid configuration: {e}"))?,
        );
        log::info!("gateway mode: in front of the {}", gateway.describe());
        let handler_gateway = gateway.clone();
        Self::mount(
            &settings,
            base,
            Served {
                tool_names: Vec::new(),
                direct_tools: None,
                policy,
                gateway: Some(gateway),
            },
            move || gateway::ProxyHandler::new(handler_gateway.clone()),
        )
    }

    /// Like [`Application::build`], but serves another rmcp handler at the MCP endpoint
    /// instead of the product's tools, behind the same bearer-token bridge, scope policy,
    /// session limits and transport settings (test fixtures use it). `new_handler` makes
    /// the handler of each MCP session; `tool_names` are the tools it serves (the scope
    /// policy challenges only calls of served tools). Every request goes through rmcp:
    /// the bridge answers no call directly.
    pub async fn build_with_service<S, F>(
        settings: Settings,
        tool_names: Vec<String>,
        new_handler: F,
    ) -> anyhow::Result<Application>
    where
        S: rmcp::ServerHandler + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let base = Foundation::resolve(&settings).await?;
        // Without a configured [policy], the tools of such a handler need any valid
        // token (they are not in the built-in tools' table), as they always did.
        let mut policy_settings = settings.policy.clone();
        if policy_settings == policy::PolicySettings::default() {
            policy_settings.default_scope = String::new();
        }
        let policy = Arc::new(
            policy::Policy::from_settings(&policy_settings, false)
                .map_err(|e| anyhow!("invalid configuration: {e}"))?,
        );
        Self::mount(
            &settings,
            base,
            Served {
                tool_names,
                direct_tools: None,
                policy,
                gateway: None,
            },
            new_handler,
        )
    }

    /// Mounts the rmcp service made of `new_handler` behind the bridge and prepares the
    /// HTTP server on the bound listener.
    fn mount<S, F>(
        settings: &Settings,
        base: Foundation,
        served: Served,
        new_handler: F,
    ) -> anyhow::Result<Application>
    where
        S: rmcp::ServerHandler + Send + 'static,
        F: Fn() -> S + Send + Sync + 'static,
    {
        let Foundation {
            listener,
            local_addr,
            resource,
            resource_metadata_url,
            verifier,
            issuer,
            metrics,
            revocation_feed,
            ..
        } = base;
        let Served {
            tool_names,
            direct_tools,
            policy,
            gateway,
        } = served;
        let upstream_description = gateway.as_ref().map(|g| g.describe());
        let allowed_hosts = settings.effective_allowed_hosts(&resource);
        let allowed_origins = settings.effective_allowed_origins(&resource);
        let stateless = settings.transport.stateless;
        let keep_alive = match settings.transport.sse_keep_alive_secs {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        let sse_retry = match settings.transport.sse_retry_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let config = StreamableHttpServerConfig::default()
            // Never empty: an empty list would switch rmcp's Host check off.
            .with_allowed_hosts(allowed_hosts.clone())
            .with_legacy_session_mode(!stateless)
            .with_json_response(settings.transport.json_response)
            .with_max_request_body_bytes(settings.server.max_body_bytes)
            .with_sse_keep_alive(keep_alive)
            .with_sse_retry(sse_retry);
        let cancel = config.cancellation_token.clone();
        let mut manager = LocalSessionManager::default();
        // Direct answers (see `direct`) reset rmcp's idle timer at most once per
        // `session_touch_every`; rmcp waits that much longer, so that
        // `session_idle_secs` stays a lower bound for every session.
        let session_touch_every =
            Duration::from_secs((settings.transport.session_idle_secs / 4).max(1));
        manager.session_config.keep_alive = Some(
            Duration::from_secs(settings.transport.session_idle_secs.max(1))
                + session_touch_every
                + Duration::from_secs(1),
        );
        manager.session_config.sse_retry = sse_retry;
        let session_manager = Arc::new(RoutedSessionManager::new(
            manager,
            Some(settings.transport.session_route.as_str()),
        ));
        // One handler per MCP session.
        let mcp =
            StreamableHttpService::new(move || Ok(new_handler()), session_manager.clone(), config);

        let prm = ProtectedResourceMetadata {
            resource: resource.clone(),
            authorization_servers: vec![issuer],
            scopes_supported: vec![policy::BASE_SCOPE.to_string()],
            bearer_methods_supported: vec!["header".to_string()],
            resource_name: Some(settings.server.resource_name.clone()),
            ..Default::default()
        };

        let origin_allow = Arc::new(security::OriginAllowList::new(&allowed_origins));
        let state = web::Data::new(AppState {
            verifier,
            challenge: ChallengeContext {
                resource_metadata: resource_metadata_url.into(),
            },
            allow_anonymous: settings.auth.allow_anonymous,
            host_allow: security::HostAllowList::new(&allowed_hosts),
            origin_allow: origin_allow.clone(),
            allowed_hosts,
            allowed_origins,
            max_body_bytes: settings.server.max_body_bytes,
            stateless,
            served_tools: tool_names.clone(),
            max_sessions_per_subject: settings.transport.max_sessions_per_subject,
            sessions: SessionOwners::with_anonymous_limit(
                settings.transport.max_anonymous_sessions,
            ),
            session_manager,
            mcp: Box::new(mcp),
            metrics,
            prm,
            last_prune: AtomicU64::new(0),
            direct_tools,
            direct_json: stateless && settings.transport.json_response,
            session_touch_every,
            revocation_feed,
            policy,
            gateway,
        });

        let metrics_state = state.clone();
        let metrics_listen = &settings.server.metrics_listen;
        let metrics = MetricsListener::bind(metrics_listen, move || metrics_state.metrics.render())
            .with_context(|| {
                format!(
                    "binding server.metrics_listen {metrics_listen} (another address, or \"off\")"
                )
            })?;
        let path = mcp_path(&resource);
        let server = HttpServer::new(move || {
            let mut well_known = web::scope("/.well-known").wrap(well_known_cors()).route(
                "/oauth-protected-resource",
                web::get().to(routes::protected_resource_metadata),
            );
            if path != "/" {
                well_known = well_known.route(
                    &format!("/oauth-protected-resource{path}"),
                    web::get().to(routes::protected_resource_metadata),
                );
            }
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(metrics::count_requests))
                .wrap(from_fn(shared::telemetry::request_id))
                .wrap(shared::telemetry::access_logger_if_enabled())
                .route("/healthz", web::get().to(routes::healthz))
                .route("/readyz", web::get().to(routes::readyz))
                .service(well_known.default_service(web::to(routes::not_found)))
                .service(
                    web::resource(path.as_str())
                        .wrap(mcp_cors(origin_allow.clone()))
                        .to(bridge::mcp_endpoint),
                )
                .default_service(web::to(routes::not_found))
        })
        .tcp_nodelay(true)
        .shutdown_timeout(5);
        let server = if settings.server.workers > 0 {
            server.workers(settings.server.workers)
        } else {
            server
        };
        let server = server.listen(listener)?.run();
        Ok(Application {
            upstream: upstream_description,
            local_addr,
            resource,
            tools: tool_names,
            server,
            metrics,
            cancel,
        })
    }

    /// The upstream this server fronts (gateway mode), described for people.
    pub fn upstream(&self) -> Option<&str> {
        self.upstream.as_deref()
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The canonical resource URL in force (port 0 replaced by the bound port).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Names of the tools this server offers (before per-caller filtering).
    pub fn tool_names(&self) -> &[String] {
        &self.tools
    }

    /// Where `GET /metrics` is served (`server.metrics_listen`); `None` when off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// A handle to stop the server and its metrics listener (`handle.stop(true).await`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The server future (public port and metrics listener), for callers that
    /// `tokio::spawn` it.
    pub fn server(self) -> impl std::future::Future<Output = std::io::Result<()>> {
        metrics_listener::run_alongside(self.server, self.metrics)
    }

    /// Runs until the server is stopped (signal or handle), then closes MCP sessions.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = metrics_listener::run_alongside(self.server, self.metrics).await;
        self.cancel.cancel();
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_in_the_resource_becomes_the_bound_port() {
        assert_eq!(
            resolve_resource("http://127.0.0.1:0/mcp", 4321).unwrap(),
            "http://127.0.0.1:4321/mcp"
        );
        assert_eq!(
            resolve_resource("https://MCP.example.com/mcp/", 4321).unwrap(),
            "https://mcp.example.com/mcp"
        );
    }

    #[test]
    fn the_mcp_path_is_the_resource_path() {
        assert_eq!(mcp_path("http://localhost:3000/mcp"), "/mcp");
        assert_eq!(mcp_path("https://x.example/a/b"), "/a/b");
        assert_eq!(mcp_path("https://x.example"), "/");
    }
}
