//! Plain `tools/call` requests forwarded by the bridge itself, on the upstream session
//! rmcp's client opened, to a Streamable HTTP upstream that answers in JSON.
//!
//! Why: behind the gateway a proxied call crosses rmcp twice (its server transport in
//! front: per-session worker, channels, a request-wise SSE stream; its client
//! transport behind: another worker and channels), and that machinery, not the
//! network, was most of the gateway's CPU per call (docs/benchmarks.md). For a plain
//! call none of it is observable: the bridge has already checked Host/Origin, the
//! token, the session's subject, the body and the scope policy.
//!
//! The boundary (everything else stays with rmcp, so the protocol rules stay there):
//! - the downstream request is what [`crate::direct::DirectCall`] accepts (no `_meta`,
//!   no progress token, no task) with headers [`crate::direct::headers_allow`]
//!   accepts, on a protocol version equal to the one the upstream negotiated and
//!   older than 2026-07-28 (whose per-request headers rmcp's client writes);
//! - the upstream answered `initialize` with JSON, so its answers to requests come as
//!   JSON, and what it sends outside an answer (requests to the client, list
//!   changes, log messages) comes on the standalone stream rmcp's client holds open.
//!
//! The upstream's answer is read with rmcp's model types and written with the same
//! framing as the demo tools' direct answers; the differential test
//! `tests/it/gateway.rs` compares it with rmcp's path for results and errors. An
//! upstream that answers a call with a stream anyway gets that call served here
//! (the stream's notifications go to the client, its requests are refused) and its
//! later calls go through rmcp.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use rmcp::model::{
    CallToolResponse, CancelledNotificationParam, ErrorCode, ErrorData, JsonObject, JsonRpcMessage,
    NumberOrString, ProtocolVersion, RequestId, ServerJsonRpcMessage,
};
use rmcp::service::Peer;
use rmcp::RoleServer;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{answer_timed_out, call_tool_response, session_ended, unreachable_upstream};

/// The most the gateway reads of one answer (rmcp's client limit for JSON answers).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// One downstream session's direct route to its upstream session.
pub struct DirectRoute {
    http: reqwest::Client,
    url: reqwest::Url,
    /// The configured static headers, the identity headers when forwarded, the
    /// upstream session id and the negotiated protocol version.
    headers: HeaderMap,
    protocol_version: ProtocolVersion,
    timeout: Duration,
    /// Ids of the gateway's own direct requests upstream: strings, apart from rmcp's
    /// numbers on the same upstream session.
    next_id: AtomicU64,
    /// Downstream request id → the upstream id and the cancellation of the call.
    inflight: Mutex<HashMap<RequestId, (RequestId, CancellationToken)>>,
    /// Cleared when the upstream answers a call with a stream: later calls go
    /// through rmcp, which relays streams in full.
    json_answers: AtomicBool,
    /// The session's upstream connection: cancelled, it ends (and so does the route).
    link_stop: CancellationToken,
    /// Cancelled when that connection has ended by itself.
    link_closed: CancellationToken,
    /// The downstream client, for what an unexpected stream carries besides the answer.
    downstream: Peer<RoleServer>,
    describe: Arc<str>,
}

impl std::fmt::Debug for DirectRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectRoute")
            .field("url", &self.url.as_str())
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

/// What a [`DirectRoute`] is made of.
pub struct RouteSpec {
    pub http: reqwest::Client,
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    pub session_id: Option<Arc<str>>,
    pub protocol_version: ProtocolVersion,
    pub timeout: Duration,
    pub link_stop: CancellationToken,
    pub link_closed: CancellationToken,
    pub downstream: Peer<RoleServer>,
    pub describe: Arc<str>,
}

impl DirectRoute {
    /// `None` when a header value cannot be sent (a session id or version the
    /// upstream made up with bytes HTTP forbids): rmcp's path serves the session.
    pub fn new(spec: RouteSpec) -> Option<DirectRoute> {
        let mut headers = spec.headers;
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(spec.protocol_version.as_str()).ok()?,
        );
        if let Some(session) = &spec.session_id {
            headers.insert("mcp-session-id", HeaderValue::from_str(session).ok()?);
        }
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(DirectRoute {
            http: spec.http,
            url: spec.url,
            headers,
            protocol_version: spec.protocol_version,
            timeout: spec.timeout,
            next_id: AtomicU64::new(1),
            inflight: Mutex::new(HashMap::new()),
            json_answers: AtomicBool::new(true),
            link_stop: spec.link_stop,
            link_closed: spec.link_closed,
            downstream: spec.downstream,
            describe: spec.describe,
        })
    }

    /// Whether a call from a client on `protocol_version` may take this route.
    pub fn usable(&self, protocol_version: &str) -> bool {
        !self.link_stop.is_cancelled()
            && !self.link_closed.is_cancelled()
            && self.json_answers.load(Ordering::Relaxed)
            && self.protocol_version.as_str() == protocol_version
    }

    fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RequestId, (RequestId, CancellationToken)>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls tool `name` upstream for the downstream request `id`: the upstream's
    /// result or error, or an error of the gateway's own, worded as rmcp's path
    /// words it; `None` when the client cancelled the request (rmcp's path sends
    /// no answer to a cancelled request either).
    pub async fn call(
        &self,
        id: &RequestId,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let upstream_id = RequestId::String(
            format!("gw-{}", self.next_id.fetch_add(1, Ordering::Relaxed)).into(),
        );
        let cancelled = CancellationToken::new();
        self.inflight()
            .insert(id.clone(), (upstream_id.clone(), cancelled.clone()));
        // Removes the entry however the call ends (the client may go away, and the
        // bridge's future with it), unless a later call reused the client's id.
        let _inflight = InflightEntry {
            route: self,
            id,
            upstream_id: &upstream_id,
        };
        tokio::select! {
            outcome = tokio::time::timeout(self.timeout, self.exchange(&upstream_id, name, arguments)) => {
                Some(outcome.unwrap_or_else(|_| {
                    // As rmcp's client does on a timeout: the upstream may stop working on it.
                    self.tell_cancelled(upstream_id.clone(), "timed out in the gateway");
                    Err(answer_timed_out(self.timeout))
                }))
            }
            _ = cancelled.cancelled() => None,
            _ = self.link_stop.cancelled() => Some(Err(session_ended())),
            _ = self.link_closed.cancelled() => Some(Err(session_ended())),
        }
    }

    /// The client cancelled its request `id`: when it is one of this route's calls,
    /// the upstream is told (as rmcp's path tells it) and the call ends.
    pub fn cancel(&self, id: &RequestId) {
        let Some((upstream_id, cancelled)) = self.inflight().get(id).cloned() else {
            return;
        };
        cancelled.cancel();
        self.tell_cancelled(upstream_id, "cancelled by the client");
    }

    fn tell_cancelled(&self, upstream_id: RequestId, reason: &str) {
        let request = self.request(&Notification {
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: CancelledNotificationParam::new(Some(upstream_id), Some(reason.into())),
        });
        let describe = self.describe.clone();
        // Outlives the call it cancels (which may be over by now).
        tokio::spawn(async move {
            if let Err(e) = request.send().await {
                log::debug!("{describe}: telling the upstream of a cancellation: {e}");
            }
        });
    }

    /// A POST of `message` to the upstream session.
    fn request<T: Serialize>(&self, message: &T) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(message).unwrap_or_default();
        self.http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
    }

    async fn post<T: Serialize>(&self, message: &T) -> Result<reqwest::Response, reqwest::Error> {
        self.request(message).send().await
    }

    async fn exchange(
        &self,
        upstream_id: &RequestId,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResponse, ErrorData> {
        let request = Request {
            jsonrpc: "2.0",
            id: upstream_id,
            method: "tools/call",
            params: CallParams { name, arguments },
        };
        let response = self.post(&request).await.map_err(|e| self.failed(&e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND && self.headers.contains_key("mcp-session-id") {
            // The upstream session is gone: so is ours.
            self.link_stop.cancel();
            return Err(session_ended());
        }
        // As rmcp's client reads them: the upstream refusing the gateway's own
        // credentials, rate limiting it or accepting a request without an answer is a
        // failure of the connection, whatever the body says.
        if matches!(
            status,
            reqwest::StatusCode::UNAUTHORIZED
                | reqwest::StatusCode::FORBIDDEN
                | reqwest::StatusCode::TOO_MANY_REQUESTS
                | reqwest::StatusCode::ACCEPTED
                | reqwest::StatusCode::NO_CONTENT
        ) {
            return Err(self.failed(&format!("HTTP {status}")));
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match media_type.as_str() {
            "application/json" => {
                let body = read_bounded(response).await.map_err(|e| self.failed(&e))?;
                let message: ServerJsonRpcMessage = serde_json::from_slice(&body)
                    .map_err(|e| self.failed(&format!("HTTP {status}, unreadable answer: {e}")))?;
                self.answer_of(message, upstream_id).unwrap_or_else(|| {
                    Err(self.failed(&format!("HTTP {status} without the answer")))
                })
            }
            "text/event-stream" if status.is_success() => {
                self.json_answers.store(false, Ordering::Relaxed);
                log::info!(
                    "{}: answered a call with a stream; this session's calls now go through rmcp",
                    self.describe
                );
                self.read_stream(response, upstream_id).await
            }
            _ => Err(self.failed(&format!("HTTP {status}"))),
        }
    }

    /// The answer to `upstream_id` in `message`, if it is one.
    fn answer_of(
        &self,
        message: ServerJsonRpcMessage,
        upstream_id: &RequestId,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        match message {
            JsonRpcMessage::Response(r) if r.id == *upstream_id => {
                Some(call_tool_response(r.result))
            }
            JsonRpcMessage::Error(e) if e.id.as_ref().is_none_or(|id| id == upstream_id) => {
                Some(Err(e.error))
            }
            _ => None,
        }
    }

    /// Reads an answer that came as a stream: notifications go to the client (on its
    /// session's stream), requests are refused (they cannot be relayed from here),
    /// the answer ends it.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        upstream_id: &RequestId,
    ) -> Result<CallToolResponse, ErrorData> {
        // Bounded like a JSON answer: a stream that never ends its event must not grow
        // without limit.
        let mut read = 0usize;
        let bytes = response.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            read += chunk.len();
            if read > MAX_ANSWER_BYTES {
                return Err(std::io::Error::other("the answer is larger than the limit"));
            }
            Ok(chunk)
        });
        let mut events = sse_stream::SseStream::from_byte_stream(bytes);
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| self.failed(&e))?;
            let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<ServerJsonRpcMessage>(&data) else {
                log::warn!("{}: skipped an unreadable event", self.describe);
                continue;
            };
            match message {
                JsonRpcMessage::Notification(n) => {
                    let _ = self.downstream.send_notification(n.notification).await;
                }
                JsonRpcMessage::Request(r) => {
                    let refusal = ErrorReply {
                        jsonrpc: "2.0",
                        id: &r.id,
                        error: ErrorData::new(
                            ErrorCode::METHOD_NOT_FOUND,
                            "the gateway cannot relay a request sent on this answer's stream",
                            None,
                        ),
                    };
                    let _ = self.post(&refusal).await;
                }
                other => {
                    if let Some(answer) = self.answer_of(other, upstream_id) {
                        return answer;
                    }
                }
            }
        }
        Err(self.failed(&"the stream ended without the answer"))
    }

    fn failed(&self, e: &dyn std::fmt::Display) -> ErrorData {
        log::warn!("{}: {e}", self.describe);
        unreachable_upstream()
    }
}

/// A call's entry in [`DirectRoute::inflight`], removed when the call ends.
struct InflightEntry<'a> {
    route: &'a DirectRoute,
    id: &'a RequestId,
    upstream_id: &'a RequestId,
}

impl Drop for InflightEntry<'_> {
    fn drop(&mut self) {
        let mut inflight = self.route.inflight();
        if inflight
            .get(self.id)
            .is_some_and(|(upstream, _)| upstream == self.upstream_id)
        {
            inflight.remove(self.id);
        }
    }
}

async fn read_bounded(response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err("the answer is larger than the limit".into());
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err("the answer is larger than the limit".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: &'a RequestId,
    method: &'static str,
    params: CallParams<'a>,
}

#[derive(Serialize)]
struct CallParams<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<JsonObject>,
}

#[derive(Serialize)]
struct Notification<P> {
    jsonrpc: &'static str,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    jsonrpc: &'static str,
    id: &'a NumberOrString,
    error: ErrorData,
}
