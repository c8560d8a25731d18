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
//! The upstream's answer is read with rmcp's model types (see [`answer_in`] for the
//! shortcut a plain result takes) and written with the same framing as the demo
//! tools' direct answers; the differential test `tests/it/gateway_direct.rs` compares
//! it with rmcp's path for results and errors. The HTTP client is hyper's pooled
//! client with rustls and the platform's trust store, as reqwest (rmcp's client)
//! builds it, without reqwest's per-request layers (redirects, proxies, URL parsing),
//! which were a tenth of the route's CPU. An
//! upstream that answers a call with a stream anyway gets that call served here
//! (the stream's notifications go to the client, its requests are refused) and its
//! later calls go through rmcp.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rmcp::model::{
    CallToolResponse, CallToolResult, CancelledNotificationParam, ErrorCode, ErrorData, JsonObject,
    JsonRpcMessage, JsonRpcVersion2_0, NumberOrString, ProtocolVersion, RequestId,
    ServerJsonRpcMessage,
};
use rmcp::service::Peer;
use rmcp::RoleServer;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    answer_timed_out, call_tool_response, session_ended, unreachable_upstream, GATEWAY_USER_AGENT,
};

/// The most the gateway reads of one answer (rmcp's client limit for JSON answers).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The direct routes' HTTP client, one per gateway (its connection pool is shared by
/// every session's route to the upstream).
pub type UpstreamHttp =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for `http://` and `https://` upstreams: HTTP/1.1, or HTTP/2 where TLS
/// negotiates it (as reqwest offers both), TCP_NODELAY (one write per request, answered
/// at once), `connect_timeout`, idle connections closed after 90 s.
pub fn upstream_http(connect_timeout: Duration) -> Result<UpstreamHttp, String> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    // As reqwest's client: a dead peer is noticed on idle pooled connections.
    tcp.set_keepalive(Some(Duration::from_secs(15)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("setting up TLS for the upstream: {e}"))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector),
    )
}

/// One downstream session's direct route to its upstream session.
pub struct DirectRoute {
    http: UpstreamHttp,
    uri: Uri,
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
            .field("uri", &self.uri)
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

/// What a [`DirectRoute`] is made of.
pub struct RouteSpec {
    pub http: UpstreamHttp,
    pub url: url::Url,
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
        let uri: Uri = spec.url.as_str().parse().ok()?;
        let mut headers = spec.headers;
        // A user agent of the configured headers wins, as it does on rmcp's path.
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(GATEWAY_USER_AGENT));
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
            uri,
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
        let sent = tokio::time::timeout(
            self.timeout,
            self.post(&Notification {
                jsonrpc: "2.0",
                method: "notifications/cancelled",
                params: CancelledNotificationParam::new(Some(upstream_id), Some(reason.into())),
            }),
        );
        let describe = self.describe.clone();
        // Outlives the call it cancels (which may be over by now).
        tokio::spawn(async move {
            match sent.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    log::debug!("{describe}: telling the upstream of a cancellation: {e}")
                }
                Err(_) => {
                    log::debug!("{describe}: telling the upstream of a cancellation timed out")
                }
            }
        });
    }

    /// A POST of `message` to the upstream session.
    fn post<T: Serialize>(&self, message: &T) -> hyper_util::client::legacy::ResponseFuture {
        let body = serde_json::to_vec(message).unwrap_or_default();
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        self.http.request(request)
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
        if status == StatusCode::NOT_FOUND && self.headers.contains_key("mcp-session-id") {
            // The upstream session is gone: so is ours.
            self.link_stop.cancel();
            return Err(session_ended());
        }
        // As rmcp's client reads them: the upstream refusing the gateway's own
        // credentials, rate limiting it or accepting a request without an answer is a
        // failure of the connection, whatever the body says.
        if matches!(
            status,
            StatusCode::UNAUTHORIZED
                | StatusCode::FORBIDDEN
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::ACCEPTED
                | StatusCode::NO_CONTENT
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
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES);
        match media_type.as_str() {
            "application/json" => {
                let body = body
                    .collect()
                    .await
                    .map_err(|e| self.failed(&format!("reading the answer: {e}")))?
                    .to_bytes();
                answer_in(&body, upstream_id)
                    .map_err(|e| self.failed(&format!("HTTP {status}, unreadable answer: {e}")))?
                    .unwrap_or_else(|| {
                        Err(self.failed(&format!("HTTP {status} without the answer")))
                    })
            }
            "text/event-stream" if status.is_success() => {
                self.json_answers.store(false, Ordering::Relaxed);
                log::info!(
                    "{}: answered a call with a stream; this session's calls now go through rmcp",
                    self.describe
                );
                self.read_stream(body, upstream_id).await
            }
            _ => Err(self.failed(&format!("HTTP {status}"))),
        }
    }

    /// Reads an answer that came as a stream: notifications go to the client (on its
    /// session's stream), requests are refused (they cannot be relayed from here),
    /// the answer ends it.
    ///
    /// Bounded like a JSON answer: a stream that never ends its event must not grow
    /// without limit.
    async fn read_stream(
        &self,
        body: Limited<hyper::body::Incoming>,
        upstream_id: &RequestId,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut events = sse_stream::SseStream::new(body.map_err(std::io::Error::other));
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
                    // Its answer is not read (an upstream could make it endless): a body
                    // left unread closes that pooled connection.
                    let _ = self.post(&refusal).await;
                }
                other => {
                    if let Some(answer) = answer_of(other, upstream_id) {
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

/// The answer to the call `upstream_id` in an upstream's JSON `body`: `Ok(None)` when
/// the body is some other message, `Err` when it is not a JSON-RPC message at all.
///
/// Most answers are a plain result: exactly `jsonrpc`, `id` and a `result` whose
/// members are all `CallToolResult`'s. Such an answer is read straight into a
/// `CallToolResult`; rmcp's untagged `ServerJsonRpcMessage` would try four message
/// shapes and then fifteen result types before it, which cost as much CPU as the rest
/// of the route together, and reach the same value: no result type before it is made of
/// those members alone, except a `subscriptions/listen` result (`resultType` and
/// `_meta`), which is left to rmcp; `plain_results_read_as_rmcp_reads_them` checks it.
/// Every other answer, and a plain one `CallToolResult` refuses, is read by rmcp's types.
pub(crate) fn answer_in(
    body: &[u8],
    upstream_id: &RequestId,
) -> Result<Option<Result<CallToolResponse, ErrorData>>, serde_json::Error> {
    if let Some(result) = plain_result(body, upstream_id) {
        return Ok(Some(Ok(CallToolResponse::Complete(result))));
    }
    answer_by_rmcp(body, upstream_id)
}

fn plain_result(body: &[u8], upstream_id: &RequestId) -> Option<CallToolResult> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PlainAnswer {
        #[serde(rename = "jsonrpc")]
        _jsonrpc: JsonRpcVersion2_0,
        id: RequestId,
        result: CallToolResultMembers,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CallToolResultMembers {
        #[serde(rename = "content")]
        _content: Option<IgnoredAny>,
        #[serde(rename = "structuredContent")]
        _structured_content: Option<IgnoredAny>,
        #[serde(rename = "isError")]
        _is_error: Option<IgnoredAny>,
        #[serde(rename = "resultType")]
        result_type: Option<IgnoredAny>,
        #[serde(rename = "_meta")]
        meta: Option<IgnoredAny>,
    }
    /// The result itself, read from the whole document as rmcp reads it (serde_json's
    /// nesting limit counts from the document).
    #[derive(Deserialize)]
    struct ResultOf {
        result: CallToolResult,
    }
    // rmcp reads messages from objects only; a derived struct would also take an array.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let answer: PlainAnswer = serde_json::from_slice(body).ok()?;
    // `resultType` with `_meta` may be a `subscriptions/listen` result, which rmcp's
    // untagged union tries before `CallToolResult`.
    if answer.id != *upstream_id
        || (answer.result.result_type.is_some() && answer.result.meta.is_some())
    {
        return None;
    }
    serde_json::from_slice::<ResultOf>(body)
        .ok()
        .map(|r| r.result)
}

/// [`answer_in`] as rmcp's client reads an answer.
fn answer_by_rmcp(
    body: &[u8],
    upstream_id: &RequestId,
) -> Result<Option<Result<CallToolResponse, ErrorData>>, serde_json::Error> {
    let message: ServerJsonRpcMessage = serde_json::from_slice(body)?;
    Ok(answer_of(message, upstream_id))
}

/// The answer to `upstream_id` in `message`, if it is one.
fn answer_of(
    message: ServerJsonRpcMessage,
    upstream_id: &RequestId,
) -> Option<Result<CallToolResponse, ErrorData>> {
    match message {
        JsonRpcMessage::Response(r) if r.id == *upstream_id => Some(call_tool_response(r.result)),
        JsonRpcMessage::Error(e) if e.id.as_ref().is_none_or(|id| id == upstream_id) => {
            Some(Err(e.error))
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(outcome: Option<Result<CallToolResponse, ErrorData>>) -> Option<String> {
        outcome.and_then(|outcome| crate::direct::message(&RequestId::Number(1), outcome))
    }

    /// Both readings agree around serde_json's nesting limit, which counts from the
    /// whole document.
    #[test]
    fn deep_results_read_as_rmcp_reads_them() {
        let id = RequestId::String("gw-7".into());
        for depth in 120..=130 {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":"gw-7","result":{{"content":[],"structuredContent":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            match (
                answer_in(body.as_bytes(), &id),
                answer_by_rmcp(body.as_bytes(), &id),
            ) {
                (Ok(ours), Ok(theirs)) => assert_eq!(framed(ours), framed(theirs), "{depth}"),
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{depth}: {ours:?} against rmcp's {theirs:?}"),
            }
        }
    }

    /// The shortcut of [`answer_in`] against rmcp's own reading, for answers that
    /// take it and answers that must not.
    #[test]
    fn plain_results_read_as_rmcp_reads_them() {
        let id = RequestId::String("gw-7".into());
        let plain = [
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[{"type":"text","text":"hi"}],"isError":false}}"#,
            r#"{"result":{"isError":true,"content":[]},"id":"gw-7","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"structuredContent":{"n":1}}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"structuredContent":null}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"structuredContent":[1,2]}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"isError":true}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"_meta":{"k":"v"}}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"resultType":"complete"}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[{"type":"image","data":"AAAA","mimeType":"image/png"},{"type":"resource_link","uri":"file:///a","name":"a"},{"type":"resource","resource":{"uri":"file:///b","text":"b"}},{"type":"text","text":"t","annotations":{"priority":0.5}}]}}"#,
            "{ \"jsonrpc\" : \"2.0\",\n \"id\" : \"gw-7\", \"result\" : { \"content\" : [ ] } }",
        ];
        let other = [
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"_meta":{}}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"extra":1}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"resultType":"input_required"}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"task":{"taskId":"t","status":"working","createdAt":"2026-01-01T00:00:00Z","lastUpdatedAt":"2026-01-01T00:00:00Z","ttl":null}}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[{"type":"nope"}]}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"isError":"yes"}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[]},"x":1}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","id":"gw-7","result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-8","result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"1.0","id":"gw-7","result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","error":{"code":-32602,"message":"bad"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"down"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"_meta":{"k":"v"},"resultType":"complete"}}"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":{"content":[],"resultType":"complete","_meta":{"io.modelcontextprotocol/subscriptionId":"s"}}}"#,
            r#"["2.0","gw-7",{"content":[]}]"#,
            r#"{"jsonrpc":"2.0","id":"gw-7","result":[[],null,false]}"#,
            r#"[]"#,
            "not json",
        ];
        for (body, shortcut) in plain
            .iter()
            .map(|b| (b, true))
            .chain(other.iter().map(|b| (b, false)))
        {
            assert_eq!(
                plain_result(body.as_bytes(), &id).is_some(),
                shortcut,
                "shortcut taken: {body}"
            );
            match (
                answer_in(body.as_bytes(), &id),
                answer_by_rmcp(body.as_bytes(), &id),
            ) {
                (Ok(ours), Ok(theirs)) => {
                    let (ours, theirs) = (framed(ours), framed(theirs));
                    assert_eq!(ours, theirs, "{body}");
                    if shortcut {
                        assert!(ours.is_some_and(|m| m.contains("\"result\"")), "{body}");
                    }
                }
                (Err(_), Err(_)) => assert!(!shortcut, "{body}"),
                (ours, theirs) => panic!("{body}: {ours:?} against rmcp's {theirs:?}"),
            }
        }
    }
}
