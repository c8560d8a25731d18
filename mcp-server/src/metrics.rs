//! The server's Prometheus metrics (on `shared::metrics`), served at `/metrics`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use shared::metrics::{
    exponential_buckets, method_label, CounterVec, Error, GaugeVec, HistogramVec, Registry,
};

use crate::AppState;

/// JSON-RPC methods counted by name; anything else is counted as `other` so that a
/// client cannot grow the label set.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "notifications/cancelled",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: CounterVec,
    pub mcp_messages: CounterVec,
    pub auth_failures: CounterVec,
    pub verify_latency: HistogramVec,
    pub sessions: GaugeVec,
    pub direct_answers: CounterVec,
    pub revocation_feed_polls: CounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, Error> {
        let registry = Registry::new();
        let http_requests = registry.counter(
            "mcp_server_http_requests_total",
            "HTTP requests by method and status.",
            &["method", "status"],
        )?;
        let mcp_messages = registry.counter(
            "mcp_server_jsonrpc_messages_total",
            "JSON-RPC messages received on the MCP endpoint, by method.",
            &["method"],
        )?;
        let auth_failures = registry.counter(
            "mcp_server_auth_failures_total",
            "Requests refused before reaching MCP, by reason.",
            &["reason"],
        )?;
        let verify_latency = registry.histogram(
            "mcp_server_token_verification_seconds",
            "Time to verify a bearer token, by outcome.",
            &["outcome"],
            &exponential_buckets(0.000_01, 4.0, 10)?,
        )?;
        let sessions = registry.gauge(
            "mcp_server_sessions",
            "Legacy MCP sessions bound to a subject.",
            &[],
        )?;
        let direct_answers = registry.counter(
            "mcp_server_direct_tool_calls_total",
            "tools/call requests the bridge answered itself (transport.direct_tool_calls), by tool.",
            &["tool"],
        )?;
        let revocation_feed_polls = registry.counter(
            "mcp_server_revocation_feed_polls_total",
            "Polls of the AS's revocation feed, by outcome (ok, failed).",
            &["outcome"],
        )?;
        Ok(Self {
            revocation_feed_polls,
            direct_answers,
            registry,
            http_requests,
            mcp_messages,
            auth_failures,
            verify_latency,
            sessions,
        })
    }

    pub fn count_method(&self, method: &str) {
        let label = if KNOWN_METHODS.contains(&method) {
            method
        } else {
            "other"
        };
        self.mcp_messages.inc(&[label]);
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }
}

/// Counts every HTTP request by method and status.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().clone();
    let res = next.call(req).await;
    if let Some(state) = state {
        let status = match &res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        state
            .metrics
            .http_requests
            .inc(&[method_label(&method), status.as_str()]);
    }
    res
}
