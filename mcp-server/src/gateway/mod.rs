//! Gateway mode: this server in front of another MCP server (the upstream), a stdio
//! command started once per MCP session or a Streamable HTTP endpoint.
//!
//! Everything in front stays as it is (PRM, challenges, token verification, sessions
//! bound to their subject, Host/Origin checks, the scope policy in the bridge). Behind
//! it, each downstream MCP session gets its own upstream connection, opened when the
//! client sends `initialize`: [`ProxyHandler`] is rmcp's server handler in front,
//! [`UpstreamClient`] rmcp's client handler behind. Messages are understood, not
//! copied: requests are re-issued upstream with the gateway's own ids (rmcp's), and
//! progress tokens, cancellations and the upstream's requests to the client
//! (sampling, elicitation, roots) are mapped back.
//!
//! No token passthrough: the client's `Authorization` header and cookies stop at the
//! bridge; an HTTP upstream gets the configured static headers and, only with
//! `upstream.forward_identity`, the caller's identity headers.

// Sampling, roots, logging and resources/subscribe are deprecated by SEP-2577 for the
// newest protocol version; clients and upstreams on earlier versions use them, and
// the gateway forwards what they use.
#![allow(deprecated)]

pub mod direct;
mod http_client;
pub mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rmcp::model::*;
use rmcp::service::{
    NotificationContext, OriginatingRequestId, Peer, PeerRequestOptions, RequestContext,
    RunningService, ServiceError,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, RoleServer, ServerHandler, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::caller::Caller;
use crate::policy::{Decision, Kind, Policy};
pub use settings::{Target, UpstreamSettings};

/// Identity headers an HTTP upstream gets with `upstream.forward_identity = true`.
pub const SUBJECT_HEADER: &str = "x-mcp-subject";
pub const USERNAME_HEADER: &str = "x-mcp-username";
pub const SCOPES_HEADER: &str = "x-mcp-scopes";
pub const CLIENT_ID_HEADER: &str = "x-mcp-client-id";

/// How the gateway names itself to the upstream, on rmcp's path and the direct one.
const GATEWAY_USER_AGENT: &str = concat!("mcp-server-gateway/", env!("CARGO_PKG_VERSION"));

const UNKNOWN: u8 = 0;
const REACHABLE: u8 = 1;
const UNREACHABLE: u8 = 2;

/// How long one `/readyz` probe of an HTTP upstream answers for.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// The upstream and what every session's connection to it shares.
pub struct Gateway {
    target: Target,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    forward_identity: bool,
    timeout: Duration,
    max_sessions: usize,
    open: AtomicUsize,
    reachable: AtomicU8,
    last_error: Mutex<Option<String>>,
    /// The last `/readyz` probe of an HTTP upstream and when it ran: `/readyz` is
    /// public, so probes are shared (at most one per [`PROBE_REUSE`]) rather than
    /// one upstream request per caller.
    last_probe: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    http: reqwest::Client,
    /// Plain calls to an HTTP upstream that answers in JSON skip rmcp on both sides
    /// (`transport.direct_tool_calls`; see [`direct`]), through this client.
    direct_http: Option<direct::UpstreamHttp>,
    pub policy: Arc<Policy>,
}

/// What the bridge learns about the upstream connection an `initialize` opened: put
/// (empty) into that request's extensions by the bridge, filled by the handler.
#[derive(Clone, Default)]
pub struct UpstreamSlot(Arc<Mutex<Option<UpstreamWatch>>>);

/// Cancelled when the upstream connection of a session ends (crash, upstream 404,
/// stop); `label` names the session in the upstream's log lines.
#[derive(Clone)]
pub struct UpstreamWatch {
    pub closed: CancellationToken,
    pub label: Arc<OnceLock<String>>,
    /// The session's direct route for plain calls, when its upstream allows one.
    pub direct: Option<Arc<direct::DirectRoute>>,
}

impl UpstreamSlot {
    pub fn take(&self) -> Option<UpstreamWatch> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, watch: UpstreamWatch) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(watch);
    }
}

impl Gateway {
    pub fn new(
        settings: &UpstreamSettings,
        policy: Arc<Policy>,
        direct_calls: bool,
    ) -> Result<Gateway, String> {
        let target = settings
            .target()?
            .ok_or_else(|| "no upstream configured".to_string())?;
        let connect_timeout = Duration::from_secs(settings.timeout_secs.clamp(1, 10));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .user_agent(GATEWAY_USER_AGENT)
            .build()
            .map_err(|e| format!("building the upstream HTTP client: {e}"))?;
        let direct_http = match (&target, direct_calls) {
            (Target::Http(_), true) if proxy_configured(|name| std::env::var_os(name)) => {
                log::info!(
                    "a proxy is configured in the environment: every call to the upstream goes \
                     through rmcp's client, which honours it (no direct route)"
                );
                None
            }
            (Target::Http(_), true) => Some(direct::upstream_http(connect_timeout)?),
            _ => None,
        };
        Ok(Gateway {
            target,
            headers: settings.header_pairs()?,
            env: settings
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: settings.cwd.clone(),
            forward_identity: settings.forward_identity,
            timeout: Duration::from_secs(settings.timeout_secs.max(1)),
            max_sessions: settings.max_sessions.max(1),
            open: AtomicUsize::new(0),
            reachable: AtomicU8::new(UNKNOWN),
            last_error: Mutex::new(None),
            last_probe: tokio::sync::Mutex::new(None),
            http,
            direct_http,
            policy,
        })
    }

    /// For logs and the banner.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Http(url) => format!("Streamable HTTP upstream {url}"),
            Target::Command(argv) => format!("stdio upstream `{}`", argv.join(" ")),
        }
    }

    /// Upstream connections open now.
    pub fn open_sessions(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn record(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.reachable.store(REACHABLE, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(e) => {
                self.reachable.store(UNREACHABLE, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
    }

    /// Whether the upstream can be reached now, for `/readyz`: an HTTP upstream must
    /// answer HTTP at all (any status) within the timeout; a command must exist.
    pub async fn check(&self) -> serde_json::Value {
        let outcome = match &self.target {
            Target::Http(url) => {
                // Concurrent callers wait for the probe under way and share it.
                let mut last = self.last_probe.lock().await;
                match &*last {
                    Some((at, outcome)) if at.elapsed() < PROBE_REUSE => outcome.clone(),
                    _ => {
                        let outcome = self.probe(url).await;
                        *last = Some((std::time::Instant::now(), outcome.clone()));
                        outcome
                    }
                }
            }
            Target::Command(argv) => {
                if program_exists(&argv[0], self.cwd.as_deref()) {
                    // A child that could not start (or crashed on start) last time
                    // stays red until one starts.
                    match self.reachable.load(Ordering::Relaxed) {
                        UNREACHABLE => Err(self
                            .last_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                            .unwrap_or_default()),
                        _ => Ok(()),
                    }
                } else {
                    Err(format!("{} is not an executable on PATH", argv[0]))
                }
            }
        };
        let reachable = outcome.is_ok();
        if let Err(e) = &outcome {
            // /readyz is public: the details (URLs, command lines) go to the log only,
            // once per change.
            if self.reachable.load(Ordering::Relaxed) != UNREACHABLE {
                log::warn!("{} is not usable: {e}", self.describe());
            }
        }
        if let Target::Http(_) = &self.target {
            self.record(outcome);
        }
        serde_json::json!({
            "transport": match &self.target {
                Target::Http(_) => "streamable-http",
                Target::Command(_) => "stdio",
            },
            "reachable": reachable,
            "open_sessions": self.open_sessions(),
        })
    }

    /// An HTTP upstream must answer HTTP at all (any status) within the timeout.
    async fn probe(&self, url: &url::Url) -> Result<(), String> {
        match tokio::time::timeout(self.timeout.min(Duration::from_secs(5)), async {
            self.http
                .get(url.clone())
                .header("accept", "text/event-stream")
                .send()
                .await
        })
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot reach {url}: {}", error_chain(&e))),
            Err(_) => Err(format!("{url} did not answer within the timeout")),
        }
    }

    fn acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut current = self.open.load(Ordering::Relaxed);
        loop {
            if current >= self.max_sessions {
                return None;
            }
            match self.open.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(self.clone())),
                Err(actual) => current = actual,
            }
        }
    }

    /// Opens the upstream connection of one downstream session.
    async fn connect(
        self: &Arc<Self>,
        client: UpstreamClient,
        caller: &Caller,
        label: Arc<OnceLock<String>>,
    ) -> Result<Connected, ConnectError> {
        let tap = Tap {
            downstream: client.downstream.clone(),
            shared: client.shared.clone(),
        };
        match &self.target {
            Target::Command(argv) => {
                let mut command = tokio::process::Command::new(&argv[0]);
                command.args(&argv[1..]);
                // This server's own configuration (secrets among it) is not the child's.
                for (name, _) in std::env::vars_os() {
                    let n = name.to_string_lossy();
                    if n.starts_with("MCP__") || n.starts_with("AUTH__") || n == "MCP_CONFIG" {
                        command.env_remove(&name);
                    }
                }
                command.envs(self.env.iter().map(|(k, v)| (k, v)));
                if self.forward_identity {
                    for (name, value) in identity(caller) {
                        command.env(name.replace('-', "_").to_ascii_uppercase(), value);
                    }
                }
                if let Some(cwd) = &self.cwd {
                    command.current_dir(cwd);
                }
                // Its own process group, so that a stop reaches what the command
                // started too (npx starts the server as its child).
                let mut wrapped = process_wrap::tokio::CommandWrap::from(command);
                wrapped
                    .wrap(process_wrap::tokio::ProcessGroup::leader())
                    .wrap(process_wrap::tokio::KillOnDrop);
                let (transport, stderr) = TokioChildProcess::builder(wrapped)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| {
                        ConnectError::Failed(format!("cannot start `{}`: {e}", argv.join(" ")))
                    })?;
                let pid = transport.id();
                if let Some(stderr) = stderr {
                    tokio::spawn(log_stderr(stderr, label.clone()));
                }
                log::info!(
                    "started upstream `{}` (pid {})",
                    argv.join(" "),
                    pid.map(|p| p.to_string()).unwrap_or_default()
                );
                let service = self
                    .handshake(
                        client,
                        Tapped {
                            inner: transport,
                            tap,
                        },
                    )
                    .await?;
                Ok(Connected {
                    service,
                    http: None,
                })
            }
            Target::Http(url) => {
                let mut headers: HashMap<http::HeaderName, http::HeaderValue> =
                    self.headers.iter().cloned().collect();
                if self.forward_identity {
                    for (name, value) in identity(caller) {
                        if let (Ok(n), Ok(v)) = (
                            http::HeaderName::from_bytes(name.as_bytes()),
                            http::HeaderValue::from_str(&value),
                        ) {
                            headers.insert(n, v);
                        }
                    }
                }
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                config.custom_headers = headers.clone();
                // An upstream that forgot our session ends the client's session (it
                // would otherwise silently continue on a fresh upstream session).
                config.reinit_on_expired_session = false;
                let recording = http_client::RecordingClient::new(self.http.clone());
                let initialize = recording.initialize_answer();
                let transport = StreamableHttpClientTransport::with_client(recording, config);
                let service = self
                    .handshake(
                        client,
                        Tapped {
                            inner: transport,
                            tap,
                        },
                    )
                    .await?;
                Ok(Connected {
                    service,
                    http: initialize.get().cloned().map(|answer| HttpConnection {
                        url: url.clone(),
                        headers: headers.into_iter().collect(),
                        answer,
                    }),
                })
            }
        }
    }

    async fn handshake<T, E, A>(
        &self,
        client: UpstreamClient,
        transport: T,
    ) -> Result<RunningService<RoleClient, UpstreamClient>, ConnectError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        match tokio::time::timeout(self.timeout, client.serve(transport)).await {
            Ok(Ok(service)) => Ok(service),
            Ok(Err(e)) => Err(ConnectError::Failed(format!(
                "the upstream MCP server refused to initialize: {e}"
            ))),
            Err(_) => Err(ConnectError::Timeout(self.timeout.as_secs())),
        }
    }
}

/// A session's open upstream connection.
struct Connected {
    service: RunningService<RoleClient, UpstreamClient>,
    /// For an HTTP upstream: what the direct route needs.
    http: Option<HttpConnection>,
}

struct HttpConnection {
    url: url::Url,
    /// The configured static headers and, when forwarded, the caller's identity.
    headers: http::HeaderMap,
    answer: http_client::InitializeAnswer,
}

/// Why a session's upstream connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    Timeout(u64),
    /// Details for the log (command lines, URLs, transport errors): not for clients.
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout(secs) => write!(
                f,
                "the upstream MCP server did not initialize within {secs} s"
            ),
            ConnectError::Failed(detail) => f.write_str(detail),
        }
    }
}

impl ConnectError {
    fn client_message(&self) -> String {
        match self {
            ConnectError::Timeout(_) => self.to_string(),
            ConnectError::Failed(_) => {
                "the upstream MCP server is unavailable; try again later".into()
            }
        }
    }
}

/// A slot among `upstream.max_sessions`, given back when the connection ends.
struct Permit(Arc<Gateway>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn program_exists(program: &str, cwd: Option<&str>) -> bool {
    let path = std::path::Path::new(program);
    if path.components().count() > 1 {
        let full = match cwd {
            Some(cwd) if path.is_relative() => std::path::Path::new(cwd).join(path),
            _ => path.to_path_buf(),
        };
        return full.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The identity the upstream may get (`upstream.forward_identity`), as header names.
fn identity(caller: &Caller) -> Vec<(&'static str, String)> {
    let Some(p) = caller.principal() else {
        return Vec::new();
    };
    let mut pairs = vec![
        (SUBJECT_HEADER, p.subject.clone()),
        (SCOPES_HEADER, p.scopes.to_string()),
    ];
    if let Some(username) = &p.username {
        pairs.push((USERNAME_HEADER, username.clone()));
    }
    if let Some(client_id) = &p.client_id {
        pairs.push((CLIENT_ID_HEADER, client_id.clone()));
    }
    pairs
}

/// The longest piece of a child's stderr logged as one line: a child that writes
/// without newlines must not make the gateway buffer without limit.
const MAX_LOG_LINE: usize = 8 * 1024;

async fn log_stderr(stderr: tokio::process::ChildStderr, label: Arc<OnceLock<String>>) {
    read_lines(stderr, |line| {
        let session = label.get().map(String::as_str).unwrap_or("(initializing)");
        let text = String::from_utf8_lossy(line);
        log::info!(target: "mcp_server::upstream", "[session {session}] {}", text.trim_end_matches('\r'));
    })
    .await;
}

/// Hands each line of `input` (without its newline) to `emit`, in pieces of at most
/// [`MAX_LOG_LINE`] bytes.
async fn read_lines(input: impl tokio::io::AsyncRead + Unpin, mut emit: impl FnMut(&[u8])) {
    let mut reader = tokio::io::BufReader::new(input);
    let mut line = Vec::new();
    loop {
        let buffered = match reader.fill_buf().await {
            Ok(buffered) if !buffered.is_empty() => buffered,
            _ => break,
        };
        let (piece, ends_line) = match buffered.iter().position(|b| *b == b'\n') {
            Some(end) => (&buffered[..end], true),
            None => (buffered, false),
        };
        let taken = piece.len().min(MAX_LOG_LINE - line.len());
        line.extend_from_slice(&piece[..taken]);
        let complete = ends_line && taken == piece.len();
        reader.consume(if complete { taken + 1 } else { taken });
        if complete || line.len() >= MAX_LOG_LINE {
            emit(&line);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}

/// State shared by the two halves of one session's proxy.
#[derive(Default)]
struct Shared {
    /// Upstream progress token (rmcp's, per request) → the client's own token.
    progress: Mutex<HashMap<ProgressToken, ProgressToken>>,
    /// Downstream requests being forwarded, newest last: an upstream request to the
    /// client (sampling, ...) rides the stream of the newest one.
    inflight: Mutex<Vec<RequestId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// rmcp's client handler behind the gateway: the upstream's notifications and
/// requests go to the downstream client.
pub struct UpstreamClient {
    downstream: Peer<RoleServer>,
    info: ClientConfig,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl UpstreamClient {
    /// Sends a request to the downstream client on the stream of the newest
    /// in-flight request (outside this task: rmcp would otherwise mark it as
    /// originating from the upstream's request id, which means nothing downstream).
    async fn ask_downstream(
        &self,
        mut request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if let Some(origin) = lock(&self.shared.inflight).last().cloned() {
            request
                .extensions_mut()
                .insert(OriginatingRequestId(origin));
        }
        let peer = self.downstream.clone();
        let options = PeerRequestOptions::with_timeout(self.timeout.max(Duration::from_secs(300)));
        let handle =
            tokio::spawn(async move { peer.send_request_with_option(request, options).await })
                .await
                .map_err(|e| ErrorData::internal_error(format!("gateway task failed: {e}"), None))?
                .map_err(|e| downstream_error(&e))?;
        let id = handle.id.clone();
        let peer = handle.peer.clone();
        tokio::select! {
            result = handle.await_response() => result.map_err(|e| downstream_error(&e)),
            _ = context.ct.cancelled() => {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(Some(id), Some("cancelled by the upstream".into())))
                    .await;
                Err(ErrorData::internal_error("cancelled", None))
            }
        }
    }
}

fn downstream_error(e: &ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e.clone(),
        other => ErrorData::internal_error(format!("the MCP client did not answer: {other}"), None),
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.ask_downstream(request, &context).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(ErrorData::internal_error(
                "unexpected answer to sampling/createMessage",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.ask_downstream(request, &context).await? {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "unexpected answer to roots/list",
                None,
            )),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.ask_downstream(request, &context).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(ErrorData::internal_error(
                "unexpected answer to elicitation/create",
                None,
            )),
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.downstream.notify_logging_message(params).await;
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.downstream.notify_resource_updated(params).await;
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.downstream.notify_resource_list_changed().await;
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.downstream.notify_tool_list_changed().await;
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self
            .downstream
            .send_notification(ServerNotification::CustomNotification(notification))
            .await;
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.downstream.notify_prompt_list_changed().await;
    }
}

/// What the upstream transport forwards itself, in order: progress notifications.
/// rmcp hands each notification to a task of its own, so a progress notification the
/// upstream sent just before its response could reach the client after it (when its
/// request's stream is closed); forwarded from the receive loop, it cannot.
struct Tap {
    downstream: Peer<RoleServer>,
    shared: Arc<Shared>,
}

/// The upstream transport with the [`Tap`] on its receiving side.
struct Tapped<T> {
    inner: T,
    tap: Tap,
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Tapped<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ServerNotification::ProgressNotification(n),
            ..
        }) = &message
        {
            let mapped = lock(&self.tap.shared.progress)
                .get(&n.params.progress_token)
                .cloned();
            log::debug!(
                "upstream progress {:?} for the client's {mapped:?}",
                n.params.progress_token
            );
            if let Some(token) = mapped {
                let mut params = n.params.clone();
                params.progress_token = token;
                // Bounded: a client that stops reading must not stall the upstream.
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.tap.downstream.notify_progress(params),
                )
                .await;
            }
        }
        // rmcp still sees it (a request's timeout restarts on its progress).
        Some(message)
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// One session's open upstream connection.
struct Link {
    peer: Peer<RoleClient>,
    info: ServerConfig,
    shared: Arc<Shared>,
    /// Ends the connection when the session's handler goes (DELETE, idle, eviction,
    /// shutdown).
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Link {
    fn end(&self) {
        self.stop.cancel();
    }
}

/// rmcp's server handler in front: one per downstream MCP session.
pub struct ProxyHandler {
    gateway: Arc<Gateway>,
    link: OnceLock<Arc<Link>>,
}

impl ProxyHandler {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        ProxyHandler {
            gateway,
            link: OnceLock::new(),
        }
    }

    /// The session's upstream connection; a request of the stateless era (no
    /// `initialize`, the client's info and capabilities in its `_meta`) opens one for
    /// itself, which ends with the request.
    async fn ensure_link(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<&Arc<Link>, ErrorData> {
        if let Some(link) = self.link.get() {
            return Ok(link);
        }
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
        if let Some(client_info) = context.client_info() {
            info.client_info = client_info;
        }
        if let Some(capabilities) = context.client_capabilities() {
            info.capabilities = capabilities;
        }
        self.open_link(info, context).await
    }

    /// Opens the upstream connection of this session (once), announcing `request` (the
    /// client's own initialize parameters) to the upstream.
    async fn open_link(
        &self,
        request: ClientConfig,
        context: &RequestContext<RoleServer>,
    ) -> Result<&Arc<Link>, ErrorData> {
        if let Some(link) = self.link.get() {
            return Ok(link);
        }
        let caller = Caller::from_request_context(context);
        let slot = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<UpstreamSlot>())
            .cloned();
        let Some(permit) = self.gateway.acquire() else {
            return Err(ErrorData::internal_error(
                format!(
                    "too many upstream sessions open ({}); try again later",
                    self.gateway.max_sessions
                ),
                None,
            ));
        };
        let shared = Arc::new(Shared::default());
        let client = UpstreamClient {
            downstream: context.peer.clone(),
            info: request,
            shared: shared.clone(),
            timeout: self.gateway.timeout,
        };
        let label = Arc::new(OnceLock::new());
        let Connected { service, http } =
            match self.gateway.connect(client, &caller, label.clone()).await {
                Ok(connected) => {
                    self.gateway.record(Ok(()));
                    connected
                }
                Err(e) => {
                    log::warn!("{}: {e}", self.gateway.describe());
                    self.gateway.record(Err(e.to_string()));
                    return Err(ErrorData::internal_error(e.client_message(), None));
                }
            };
        let peer = service.peer().clone();
        let info = match peer.peer_info() {
            Some(upstream) => {
                let mut result = InitializeResult::new(upstream.capabilities.clone());
                result.protocol_version = upstream.protocol_version.clone();
                if let Some(server_info) = &upstream.server_info {
                    result.server_info = server_info.clone();
                }
                result.instructions = upstream.instructions.clone();
                result
            }
            None => return Err(unexpected("initialize")),
        };
        let stop = CancellationToken::new();
        let closed = CancellationToken::new();
        let direct = http
            .zip(self.gateway.direct_http.clone())
            .filter(|(h, _)| {
                h.answer.json && info.protocol_version < ProtocolVersion::STANDARD_HEADERS
            })
            .and_then(|(h, client)| {
                direct::DirectRoute::new(direct::RouteSpec {
                    http: client,
                    url: h.url,
                    headers: h.headers,
                    session_id: h.answer.session_id,
                    protocol_version: info.protocol_version.clone(),
                    timeout: self.gateway.timeout,
                    link_stop: stop.clone(),
                    link_closed: closed.clone(),
                    downstream: context.peer.clone(),
                    describe: self.gateway.describe().into(),
                })
            })
            .map(Arc::new);
        tokio::spawn(supervise(service, stop.clone(), closed.clone(), permit));
        if let Some(slot) = slot {
            slot.put(UpstreamWatch {
                closed,
                label,
                direct,
            });
        }
        let link = Arc::new(Link {
            peer,
            info,
            shared,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        });
        // Only one request of a session opens its connection (`initialize`, or the
        // single request of a stateless-era handler).
        let _ = self.link.set(link);
        self.link.get().ok_or_else(|| {
            ErrorData::internal_error("the upstream MCP server is not connected", None)
        })
    }

    /// Sends `request` upstream on behalf of the downstream request `context`, with
    /// its progress token mapped and its cancellation followed.
    async fn forward(
        &self,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let link = self.ensure_link(context).await?;
        let options =
            PeerRequestOptions::with_timeout(self.gateway.timeout).reset_timeout_on_progress();
        let handle = link
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.upstream_error(link, &e))?;
        let upstream_token = handle.progress_token.clone();
        let client_token = context.meta.get_progress_token();
        if let Some(token) = &client_token {
            lock(&link.shared.progress).insert(upstream_token.clone(), token.clone());
        }
        lock(&link.shared.inflight).push(context.id.clone());
        let id = handle.id.clone();
        let result = tokio::select! {
            result = handle.await_response() => result.map_err(|e| self.upstream_error(link, &e)),
            _ = context.ct.cancelled() => {
                let _ = link
                    .peer
                    .notify_cancelled(CancelledNotificationParam::new(Some(id), Some("cancelled by the client".into())))
                    .await;
                Err(ErrorData::internal_error("cancelled by the client", None))
            }
        };
        lock(&link.shared.inflight).retain(|r| *r != context.id);
        if client_token.is_some() {
            lock(&link.shared.progress).remove(&upstream_token);
        }
        result
    }

    fn upstream_error(&self, link: &Link, e: &ServiceError) -> ErrorData {
        match e {
            ServiceError::McpError(e) => e.clone(),
            ServiceError::Timeout { timeout } => answer_timed_out(*timeout),
            other => {
                let text = other.to_string();
                if text.contains("Session expired")
                    || matches!(other, ServiceError::TransportClosed)
                {
                    // The upstream session is gone: so is ours.
                    link.end();
                    session_ended()
                } else {
                    log::warn!("{}: {text}", self.gateway.describe());
                    unreachable_upstream()
                }
            }
        }
    }
}

// What the client is told when the upstream fails it (rmcp's path and the direct
// one word it alike).

fn answer_timed_out(timeout: Duration) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the upstream MCP server did not answer within {} s",
            timeout.as_secs()
        ),
        None,
    )
}

fn session_ended() -> ErrorData {
    ErrorData::internal_error(
        "the upstream MCP server ended this session; start a new one",
        None,
    )
}

fn unreachable_upstream() -> ErrorData {
    ErrorData::internal_error("the upstream MCP server could not be reached", None)
}

/// The upstream's answer to a `tools/call`, as the client gets it (rmcp's path and
/// the direct one alike).
fn call_tool_response(result: ServerResult) -> Result<CallToolResponse, ErrorData> {
    match result {
        ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
        ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
        ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
        _ => Err(unexpected("tools/call")),
    }
}

fn unexpected(method: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("the upstream MCP server answered {method} with another result type"),
        None,
    )
}

impl ServerHandler for ProxyHandler {
    fn get_info(&self) -> ServerConfig {
        match self.link.get() {
            Some(link) => link.info.clone(),
            None => ServerConfig::default(),
        }
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        Ok(self.open_link(request, &context).await?.info.clone())
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        let link = self.ensure_link(&context).await?;
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            link.info.clone(),
        ))
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        match self
            .forward(
                ClientRequest::CompleteRequest(CompleteRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::CompleteResult(r) => Ok(r),
            _ => Err(unexpected("completion/complete")),
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(
            ClientRequest::SetLevelRequest(SetLevelRequest::new(request)),
            &context,
        )
        .await
        .map(|_| ())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let caller = Caller::from_request_context(&context);
        Decision::into_handler_result(self.gateway.policy.decide_with(
            Kind::Prompt,
            &request.name,
            |_| None,
            caller.scopes(),
        ))?;
        match self
            .forward(
                ClientRequest::GetPromptRequest(GetPromptRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::GetPromptResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            _ => Err(unexpected("prompts/get")),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let caller = Caller::from_request_context(&context);
        let request = ListPromptsRequest {
            method: Default::default(),
            params: request,
            extensions: Default::default(),
        };
        match self
            .forward(ClientRequest::ListPromptsRequest(request), &context)
            .await?
        {
            ServerResult::ListPromptsResult(mut r) => {
                r.prompts.retain(|p| {
                    self.gateway
                        .policy
                        .may_list(Kind::Prompt, &p.name, caller.scopes())
                });
                Ok(r)
            }
            _ => Err(unexpected("prompts/list")),
        }
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = Caller::from_request_context(&context);
        let request = ListResourcesRequest {
            method: Default::default(),
            params: request,
            extensions: Default::default(),
        };
        match self
            .forward(ClientRequest::ListResourcesRequest(request), &context)
            .await?
        {
            ServerResult::ListResourcesResult(mut r) => {
                r.resources.retain(|res| {
                    self.gateway
                        .policy
                        .may_list(Kind::Resource, &res.uri, caller.scopes())
                });
                Ok(r)
            }
            _ => Err(unexpected("resources/list")),
        }
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let caller = Caller::from_request_context(&context);
        let request = ListResourceTemplatesRequest {
            method: Default::default(),
            params: request,
            extensions: Default::default(),
        };
        match self
            .forward(
                ClientRequest::ListResourceTemplatesRequest(request),
                &context,
            )
            .await?
        {
            ServerResult::ListResourceTemplatesResult(mut r) => {
                r.resource_templates.retain(|t| {
                    self.gateway
                        .policy
                        .may_list(Kind::Resource, &t.uri_template, caller.scopes())
                });
                Ok(r)
            }
            _ => Err(unexpected("resources/templates/list")),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = Caller::from_request_context(&context);
        Decision::into_handler_result(self.gateway.policy.decide_with(
            Kind::Resource,
            &request.uri,
            |_| None,
            caller.scopes(),
        ))?;
        match self
            .forward(
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            _ => Err(unexpected("resources/read")),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = Caller::from_request_context(&context);
        Decision::into_handler_result(self.gateway.policy.decide_with(
            Kind::Resource,
            &request.uri,
            |_| None,
            caller.scopes(),
        ))?;
        self.forward(
            ClientRequest::SubscribeRequest(SubscribeRequest::new(request)),
            &context,
        )
        .await
        .map(|_| ())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(
            ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request)),
            &context,
        )
        .await
        .map(|_| ())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Caller::from_request_context(&context);
        Decision::into_handler_result(self.gateway.policy.decide_tool(
            &request.name,
            request.arguments.as_ref(),
            caller.scopes(),
        ))?;
        call_tool_response(
            self.forward(
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                &context,
            )
            .await?,
        )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = Caller::from_request_context(&context);
        let request = ListToolsRequest {
            method: Default::default(),
            params: request,
            extensions: Default::default(),
        };
        match self
            .forward(ClientRequest::ListToolsRequest(request), &context)
            .await?
        {
            ServerResult::ListToolsResult(mut r) => {
                r.tools.retain(|t| {
                    self.gateway
                        .policy
                        .may_list(Kind::Tool, &t.name, caller.scopes())
                });
                Ok(r)
            }
            _ => Err(unexpected("tools/list")),
        }
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        match self
            .forward(ClientRequest::CustomRequest(request), &context)
            .await?
        {
            ServerResult::CustomResult(r) => Ok(r),
            _ => Err(unexpected("a custom request")),
        }
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        if let Some(link) = self.link.get() {
            let _ = link
                .peer
                .send_notification(ClientNotification::CustomNotification(notification))
                .await;
        }
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        if let Some(link) = self.link.get() {
            let _ = link.peer.notify_roots_list_changed().await;
        }
    }
}

/// Runs one upstream connection until it ends by itself (child exit, upstream gone)
/// or the session stops it; then says so (`closed`) and frees its permit.
async fn supervise(
    service: RunningService<RoleClient, UpstreamClient>,
    stop: CancellationToken,
    closed: CancellationToken,
    permit: Permit,
) {
    let cancel = service.cancellation_token();
    let mut waiting = Box::pin(service.waiting());
    tokio::select! {
        reason = &mut waiting => {
            log::info!("{} ended the session's connection ({reason:?})", permit.0.describe());
        }
        _ = stop.cancelled() => {
            cancel.cancel();
            // rmcp closes stdin, waits, then SIGTERM and SIGKILL; dropping the future
            // past this bound drops the child, which kills its process group.
            let _ = tokio::time::timeout(Duration::from_secs(8), &mut waiting).await;
        }
    }
    drop(waiting);
    closed.cancel();
    drop(permit);
}

/// Whether reqwest (rmcp's client) would look for a proxy to reach the upstream. The
/// direct route's client does not read these variables, so with any of them set the
/// upstream is reached by rmcp's client alone, the way the operator configured.
fn proxy_configured(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .any(|name| env(name).is_some_and(|value| !value.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_in_the_environment_keeps_calls_on_rmcps_client() {
        let env = |set: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(!proxy_configured(env(vec![])));
        assert!(!proxy_configured(env(vec![
            ("HTTPS_PROXY", ""),
            ("NO_PROXY", "*")
        ])));
        for name in ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            assert!(
                proxy_configured(env(vec![(name, "http://proxy:3128")])),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn child_output_is_logged_in_bounded_lines() {
        let mut input = b"first\nsecond\r\n\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LOG_LINE * 2 + 10));
        input.extend_from_slice(b"\nlast without newline");
        let mut lines: Vec<Vec<u8>> = Vec::new();
        read_lines(input.as_slice(), |line| lines.push(line.to_vec())).await;
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(
            lengths,
            [5, 7, 0, MAX_LOG_LINE, MAX_LOG_LINE, 10, 20],
            "{:?}",
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(&l[..l.len().min(12)]).into_owned())
                .collect::<Vec<_>>()
        );
        assert_eq!(lines[0], b"first");
        assert_eq!(lines[6], b"last without newline");
    }
}
