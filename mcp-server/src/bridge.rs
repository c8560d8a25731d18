//! The MCP endpoint: everything that must happen before rmcp sees a request (Host and
//! Origin checks, bearer-token verification, session binding, body limit, the scope
//! policy for `tools/call`), then a thin bridge into rmcp's `StreamableHttpService`
//! (method, URI and headers copied, `Authorization` dropped, the body streamed back so
//! that SSE events reach the client as they are produced).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager as _};
use shared::bearer::{bearer_credentials, bearer_token, Presented};
use shared::ScopeSet;

use crate::auth::{Principal, VerifyError};
use crate::caller::Caller;
use crate::direct::{self, DirectCall};
use crate::error::{jsonrpc_error_body, ApiError};
use crate::gateway::UpstreamSlot;
use crate::inspection::{Arguments, Body, Message, Params};
use crate::policy::{self, Decision};
use crate::sessions::Binding;
use crate::AppState;

pub const SESSION_HEADER: &str = "mcp-session-id";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// A cached principal for the request's token. The syntax scan of the ~1 KB token is
/// skipped: a cached token passed `bearer_token`'s checks when it was verified.
fn cached_principal(req: &HttpRequest, state: &AppState) -> Option<Arc<Principal>> {
    match bearer_credentials(req.headers()) {
        Presented::Token(token) => state.verifier.cached(token),
        _ => None,
    }
}

fn base_scope() -> ScopeSet {
    ScopeSet::from_iter([policy::BASE_SCOPE])
}

async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<Arc<Principal>>, ApiError> {
    let started = Instant::now();
    if let Some(principal) = cached_principal(req, state) {
        state
            .metrics
            .verify_latency
            .observe_duration(&["cached"], started.elapsed());
        return Ok(Some(principal));
    }
    match bearer_token(req.headers()) {
        Presented::Missing if state.allow_anonymous => Ok(None),
        Presented::Missing => Err(ApiError::Unauthenticated {
            challenge: state.challenge.clone(),
            scope: base_scope(),
        }),
        Presented::Malformed => Err(ApiError::InvalidToken {
            challenge: state.challenge.clone(),
            scope: base_scope(),
            error: VerifyError::Malformed,
        }),
        Presented::Token(token) => {
            let result = state.verifier.verify(token).await;
            let outcome = if result.is_ok() { "valid" } else { "invalid" };
            state
                .metrics
                .verify_latency
                .observe_duration(&[outcome], started.elapsed());
            match result {
                Ok(p) => Ok(Some(Arc::new(p))),
                Err(VerifyError::Unavailable(m)) => Err(ApiError::VerifierUnavailable(m)),
                Err(error) => Err(ApiError::InvalidToken {
                    challenge: state.challenge.clone(),
                    scope: base_scope(),
                    error,
                }),
            }
        }
    }
}

fn check_host_and_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    // As rmcp: the Host header, else the request target's authority (HTTP/1.0 may
    // send neither; such a request is refused, not let past the DNS-rebinding check).
    let host = match req.headers().get(header::HOST) {
        Some(host) => host.to_str().unwrap_or(""),
        None => match req.uri().authority() {
            Some(authority) => authority.as_str(),
            None => return Err(ApiError::BadRequest("the Host header is required".into())),
        },
    };
    if !state.host_allow.allows(host) {
        return Err(ApiError::HostNotAllowed(host.chars().take(100).collect()));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.origin_allow.allows(origin) {
            return Err(ApiError::OriginNotAllowed(
                origin.chars().take(100).collect(),
            ));
        }
    }
    Ok(())
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The scopes a `tools/call` of `name` lacks, if any. Built-in tools this server
/// does not serve (admin_panel without an admin API) are not challenged: rmcp answers
/// "tool not found", so a hidden tool never starts an OAuth flow or a step-up. An
/// upstream's tools are not known here: the policy decides every name.
fn denied_scopes(
    state: &AppState,
    name: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    granted: Option<&ScopeSet>,
) -> Option<ScopeSet> {
    if state.gateway.is_none() && !state.served_tools.iter().any(|t| t == name) {
        return None;
    }
    needed_of(state.policy.decide_tool(name, arguments, granted))
}

fn needed_of(decision: Decision) -> Option<ScopeSet> {
    match decision {
        Decision::Allow => None,
        Decision::Unauthenticated { scope } | Decision::InsufficientScope { needed: scope, .. } => {
            Some(scope)
        }
    }
}

/// In gateway mode, the scopes a `prompts/get`, `resources/read` or
/// `resources/subscribe` lacks, if any (the prompt's name or the resource's URI is
/// read from the raw body: those requests are not on any hot path).
fn denied_other(
    state: &AppState,
    method: &str,
    raw: &[u8],
    granted: Option<&ScopeSet>,
) -> Option<ScopeSet> {
    state.gateway.as_ref()?;
    let (kind, key) = match method {
        "prompts/get" => (policy::Kind::Prompt, "name"),
        "resources/read" | "resources/subscribe" => (policy::Kind::Resource, "uri"),
        _ => return None,
    };
    let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let name = value.get("params")?.get(key)?.as_str()?;
    needed_of(state.policy.decide_with(kind, name, |_| None, granted))
}

/// The 401/403 challenge for a call lacking `needed`.
fn refusal(state: &AppState, needed: ScopeSet, granted: Option<&ScopeSet>) -> ApiError {
    match granted {
        None => ApiError::Unauthenticated {
            challenge: state.challenge.clone(),
            scope: needed,
        },
        Some(granted) => ApiError::InsufficientScope {
            challenge: state.challenge.clone(),
            scope: needed.union(granted),
            needed,
        },
    }
}

fn invalid_params(message: &Message, text: &str) -> ApiError {
    ApiError::InvalidParams {
        id: message.error_id(),
        message: text.into(),
    }
}

/// Applies the scope policy to every `tools/call` in the body (single message or
/// batch) and counts the methods; `Ok(true)` for an `initialize`.
fn check_policy(
    body: &Body,
    raw: &[u8],
    granted: Option<&ScopeSet>,
    state: &AppState,
) -> Result<bool, ApiError> {
    let mut is_initialize = false;
    let mut denied: Option<ScopeSet> = None;
    for message in body.messages() {
        let Some(method) = message.method.as_deref() else {
            continue;
        };
        state.metrics.count_method(method);
        match method {
            "initialize" => is_initialize = true,
            "tools/call" => {
                let (name, arguments) = match &message.params {
                    Params::Absent => (None, None),
                    Params::Null | Params::NotObject => {
                        return Err(invalid_params(
                            message,
                            "tools/call: params must be an object with `name` and `arguments`",
                        ))
                    }
                    Params::Object(params) => match &params.arguments {
                        Arguments::Absent => (params.name.as_deref(), None),
                        Arguments::Object(arguments) => (params.name.as_deref(), Some(arguments)),
                        Arguments::NotObject => {
                            return Err(invalid_params(
                                message,
                                "tools/call: params.arguments must be a JSON object",
                            ))
                        }
                    },
                };
                if let Some(scope) =
                    denied_scopes(state, name.unwrap_or_default(), arguments, granted)
                {
                    denied = Some(match denied {
                        Some(d) => d.union(&scope),
                        None => scope,
                    });
                }
            }
            other => {
                if let Some(scope) = denied_other(state, other, raw, granted) {
                    denied = Some(match denied {
                        Some(d) => d.union(&scope),
                        None => scope,
                    });
                }
            }
        }
    }
    match denied {
        Some(needed) => Err(refusal(state, needed, granted)),
        // rmcp speaks single messages only (MCP 2025-06-18 removed JSON-RPC batching).
        None if matches!(body, Body::Batch(_)) => Err(ApiError::BadRequest(
            "JSON-RPC batches are not supported; send one message per request".into(),
        )),
        None => Ok(is_initialize),
    }
}

fn to_http_request(
    req: &HttpRequest,
    body: Bytes,
    caller: Caller,
    slot: Option<UpstreamSlot>,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let method = http::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::BadRequest("unsupported method".into()))?;
    let mut builder = http::Request::builder()
        .method(method)
        .uri(req.uri().to_string());
    for (name, value) in req.headers() {
        // The client's token never travels further than this bridge.
        if name == header::AUTHORIZATION || name == header::COOKIE {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let mut request = builder
        .body(Full::new(body))
        .map_err(|e| ApiError::Internal(format!("building the MCP request: {e}")))?;
    request.extensions_mut().insert(caller);
    if let Some(slot) = slot {
        request.extensions_mut().insert(slot);
    }
    Ok(request)
}

fn jsonrpc_code_for(status: StatusCode) -> i64 {
    match status {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => crate::error::JSONRPC_UNAUTHORIZED,
        s if s.is_server_error() => crate::error::JSONRPC_INTERNAL,
        _ => crate::error::JSONRPC_INVALID_REQUEST,
    }
}

/// rmcp's response as an actix response: headers copied, sized bodies sent whole,
/// streams (SSE) forwarded chunk by chunk, until `stream_deadline` (unix seconds)
/// when one is given. rmcp's plain-text transport errors are
/// wrapped in a JSON-RPC error object (same status).
async fn to_actix_response(
    response: http::Response<BoxBody<Bytes, Infallible>>,
    stream_deadline: Option<i64>,
) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let status =
        StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let wrap_error = (status.is_client_error() || status.is_server_error()) && !is_json;
    for (name, value) in parts.headers.iter() {
        if wrap_error
            && (name == http::header::CONTENT_TYPE || name == http::header::CONTENT_LENGTH)
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder.append_header((n, v));
        }
    }
    if body.size_hint().exact().is_some() {
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        if wrap_error {
            let text = String::from_utf8_lossy(&bytes);
            let message = if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.trim().to_string()
            };
            return builder.json(jsonrpc_error_body(jsonrpc_code_for(status), &message));
        }
        builder.body(bytes)
    } else {
        let stream = body.into_data_stream();
        match stream_deadline {
            // A stream opened with a token ends when the token does: the client must
            // come back with a fresh one (every request re-verifies).
            Some(exp) => {
                let remaining = u64::try_from(exp - crate::auth::unix_now()).unwrap_or(0);
                let deadline = tokio::time::sleep(std::time::Duration::from_secs(remaining));
                builder.streaming(stream.take_until(deadline))
            }
            None => builder.streaming(stream),
        }
    }
}

/// Forgets bindings of sessions rmcp no longer has (expired), at most once a minute.
async fn prune_sessions(state: &AppState) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = state.last_prune.load(std::sync::atomic::Ordering::Relaxed);
    if now.saturating_sub(last) < 60 {
        return;
    }
    state
        .last_prune
        .store(now, std::sync::atomic::Ordering::Relaxed);
    let live: std::collections::HashSet<String> = state
        .session_manager
        .local()
        .sessions
        .read()
        .await
        .keys()
        .map(|k| k.to_string())
        .collect();
    state.sessions.retain(|id| live.contains(id));
    state.metrics.sessions.set(&[], state.sessions.len() as f64);
}

/// Answers a plain `tools/call` of a self-contained tool without rmcp (see
/// [`crate::direct`]); the scope policy has allowed it. `None` hands the request to
/// rmcp unchanged.
async fn answer_directly(
    req: &HttpRequest,
    body: Body<'_>,
    principal: Option<&Arc<Principal>>,
    session_id: Option<&SessionId>,
    state: &AppState,
) -> Result<Option<HttpResponse>, ApiError> {
    if state.direct_tools.is_none() && state.gateway.is_none() {
        return Ok(None);
    }
    if !direct::headers_allow(req.headers(), !state.stateless) {
        return Ok(None);
    }
    let Body::Single(message) = body else {
        return Ok(None);
    };
    let Some(call) = DirectCall::from_message(message) else {
        return Ok(None);
    };
    // Gateway mode: the session's direct route to its upstream session, when the
    // upstream and the client's protocol version allow one.
    let route = match (&state.gateway, session_id) {
        (None, _) => None,
        (Some(_), None) => return Ok(None),
        (Some(_), Some(id)) => {
            let version = req
                .headers()
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            match state.sessions.route(id) {
                Some(route) if route.usable(version) => Some(route),
                _ => return Ok(None),
            }
        }
    };
    if !state.stateless {
        // rmcp answers a call without a session (400) or on a session it no longer
        // has (404); the bridge only answers on a live one.
        let Some(id) = session_id else {
            return Ok(None);
        };
        if !matches!(state.session_manager.has_session(id).await, Ok(true)) {
            return Ok(None);
        }
        // rmcp closes a session whose worker saw nothing for `session_idle_secs`;
        // calls answered here must still count as activity.
        if state
            .sessions
            .touch_due(id, Instant::now(), state.session_touch_every)
        {
            actix_web::rt::spawn(keep_session_alive(
                state.session_manager.clone(),
                id.clone(),
            ));
        }
    }
    let outcome = match (route, &state.direct_tools) {
        (Some(route), _) => {
            // One label for all upstream tools: a client may call any name.
            state.metrics.direct_answers.inc(&["(upstream)"]);
            match route.call(&call.id, call.name, call.arguments).await {
                Some(outcome) => outcome,
                // Cancelled by the client: its stream ends without an answer.
                None => return Ok(Some(direct::end_without_answer())),
            }
        }
        (None, Some(tools)) => {
            let caller = Caller(principal.cloned());
            let Some(outcome) = tools
                .call(call.id.clone(), call.name, call.arguments, caller)
                .await
            else {
                return Ok(None);
            };
            state.metrics.direct_answers.inc(&[call.name]);
            outcome
        }
        (None, None) => return Ok(None),
    };
    let message = direct::message(&call.id, outcome)
        .ok_or_else(|| ApiError::Internal("serializing a tool result failed".into()))?;
    Ok(Some(direct::response(message, state.direct_json)))
}

/// Gateway mode: a client's `notifications/cancelled` for a call the bridge forwarded
/// directly (rmcp does not know those requests) reaches the upstream through the
/// session's direct route; rmcp still gets the notification.
fn cancel_direct_calls(body: &Body, raw: &[u8], session_id: &SessionId, state: &AppState) {
    let cancels = body
        .messages()
        .iter()
        .any(|m| m.method.as_deref() == Some("notifications/cancelled"));
    if !cancels {
        return;
    }
    let Some(route) = state.sessions.route(session_id) else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return;
    };
    let messages = match value {
        serde_json::Value::Array(messages) => messages,
        single => vec![single],
    };
    for message in messages {
        if message["method"] != "notifications/cancelled" {
            continue;
        }
        if let Ok(id) =
            serde_json::from_value::<rmcp::model::RequestId>(message["params"]["requestId"].clone())
        {
            route.cancel(&id);
        }
    }
}

/// Resets rmcp's idle timer of a session: an empty request-wise channel, opened and
/// closed, is an event for the session worker and nothing for the client.
async fn keep_session_alive(
    manager: Arc<crate::session_manager::RoutedSessionManager>,
    session_id: SessionId,
) {
    let handle = manager
        .local()
        .sessions
        .read()
        .await
        .get(&session_id)
        .cloned();
    let Some(handle) = handle else {
        return;
    };
    if let Ok(receiver) = handle.establish_request_wise_channel().await {
        if let Some(http_request_id) = receiver.http_request_id {
            let _ = handle.close_request_wise_channel(http_request_id).await;
        }
    }
}

/// `/mcp` (the resource URL's path), every method.
pub async fn mcp_endpoint(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = handle(&req, payload, &state).await;
    if let Err(e) = &result {
        if let Some(reason) = e.auth_failure_reason() {
            state.metrics.auth_failures.inc(&[reason]);
        }
        match e {
            ApiError::Internal(detail) => log::error!("MCP bridge failure: {detail}"),
            // The client only sees "temporarily unavailable"; the operator needs why.
            ApiError::VerifierUnavailable(detail) => {
                log::warn!("token verification unavailable (answered 503): {detail}")
            }
            _ => {}
        }
    }
    result
}

/// Ends the MCP session `id` when its upstream connection ends by itself (crashed
/// child, upstream session gone): the client gets 404 and starts a new session.
async fn end_with_upstream(
    state: web::Data<AppState>,
    id: String,
    closed: tokio_util::sync::CancellationToken,
) {
    closed.cancelled().await;
    // The requests that were waiting on the upstream have their JSON-RPC errors on
    // their way; they are delivered before the session (and its streams) closes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let session: SessionId = id.clone().into();
    if matches!(state.session_manager.has_session(&session).await, Ok(true)) {
        log::info!("session {id} ends with its upstream connection");
        let _ = state.session_manager.close_session(&session).await;
    }
    state.sessions.forget(&id);
    state.metrics.sessions.set(&[], state.sessions.len() as f64);
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if req.method() == Method::OPTIONS {
        return Ok(HttpResponse::NoContent()
            .insert_header((header::ALLOW, ALLOW_METHODS))
            .finish());
    }
    check_host_and_origin(req, state)?;
    let principal = authenticate(req, state).await?;
    // Only the long-lived GET stream is tied to the token's lifetime (POST answers are
    // delivered in full: the request was authorized). A token already past `exp` (but
    // inside the leeway) cannot open one: 401, so the client refreshes right away.
    let stream_deadline = match principal.as_deref() {
        Some(p) if req.method() == Method::GET => {
            if p.expires_at <= crate::auth::unix_now() {
                return Err(ApiError::InvalidToken {
                    challenge: state.challenge.clone(),
                    scope: base_scope(),
                    error: VerifyError::Expired,
                });
            }
            Some(p.expires_at)
        }
        _ => None,
    };

    let session_id = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(SessionId::from);
    if !state.stateless {
        prune_sessions(state).await;
        if let Some(id) = &session_id {
            match state.sessions.check(id, principal.as_deref()) {
                Binding::Allowed => {}
                Binding::Unknown => return Err(ApiError::SessionNotFound),
                Binding::NeedsAuthentication => {
                    return Err(ApiError::Unauthenticated {
                        challenge: state.challenge.clone(),
                        scope: base_scope(),
                    })
                }
                Binding::OtherSubject => return Err(ApiError::SessionOwnedByOther),
            }
        }
    }

    let mut is_initialize = false;
    let mut json_content = false;
    let body = if req.method() == Method::POST {
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > state.max_body_bytes {
                return Err(ApiError::PayloadTooLarge {
                    limit: state.max_body_bytes,
                });
            }
        }
        let body = read_body(payload, state.max_body_bytes).await?;
        json_content = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // The media type's essence, as rmcp compares it (no allocation).
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        match Body::parse(&body) {
            Ok(parsed) => {
                let granted = principal.as_deref().map(|p| &p.scopes);
                is_initialize = check_policy(&parsed, &body, granted, state)?;
                if let (Some(id), Some(_)) = (&session_id, &state.gateway) {
                    cancel_direct_calls(&parsed, &body, id, state);
                }
                if json_content {
                    if let Some(answer) =
                        answer_directly(req, parsed, principal.as_ref(), session_id.as_ref(), state)
                            .await?
                    {
                        return Ok(answer);
                    }
                }
            }
            // Not JSON at all: rmcp decides (it checks the media type first).
            Err(_) if !json_content => {}
            Err(e) => {
                return Err(ApiError::ParseError(format!(
                    "the body is not valid JSON: {e}"
                )))
            }
        }
        body
    } else {
        Bytes::new()
    };

    // Gateway mode: the handler reports the upstream connection an `initialize`
    // opens, so that its end also ends the session.
    let slot = (state.gateway.is_some() && is_initialize).then(UpstreamSlot::default);
    let request = to_http_request(req, body, Caller(principal.clone()), slot.clone())?;
    let mut response = state.mcp.handle(request).await;
    if json_content && response.status() == http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // The media type was right: rmcp could not read the JSON as a JSON-RPC
        // message (`42`, `{}`, `"jsonrpc": "1.0"`, ...). That is an invalid request.
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    let status = response.status();

    if !state.stateless {
        if is_initialize && status.is_success() {
            if let Some(id) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                let evicted =
                    state
                        .sessions
                        .record(id, principal.as_deref(), state.max_sessions_per_subject);
                for old in evicted {
                    let old: rmcp::transport::streamable_http_server::session::SessionId =
                        old.into();
                    if let Err(e) = state.session_manager.close_session(&old).await {
                        log::warn!("closing an evicted session failed: {e}");
                    }
                }
                state.metrics.sessions.set(&[], state.sessions.len() as f64);
                if let Some(watch) = slot.as_ref().and_then(UpstreamSlot::take) {
                    let _ = watch.label.set(id.to_string());
                    if let Some(route) = watch.direct {
                        state.sessions.attach_route(id, route);
                    }
                    actix_web::rt::spawn(end_with_upstream(
                        state.clone(),
                        id.to_string(),
                        watch.closed,
                    ));
                }
            }
        }
        if let Some(id) = &session_id {
            let ended = (req.method() == Method::DELETE && status.is_success())
                || status == http::StatusCode::NOT_FOUND;
            if ended {
                state.sessions.forget(id);
                state.metrics.sessions.set(&[], state.sessions.len() as f64);
            }
        }
    }
    Ok(to_actix_response(response, stream_deadline).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_and_cookies_never_reach_rmcp() {
        let req = actix_web::test::TestRequest::post()
            .uri("/mcp?x=1")
            .insert_header(("Host", "127.0.0.1:3000"))
            .insert_header(("Authorization", "Bearer secret-token"))
            .insert_header(("Cookie", "session=secret-cookie"))
            .insert_header(("Mcp-Session-Id", "s1"))
            .insert_header(("Content-Type", "application/json"))
            .to_http_request();
        let Ok(forwarded) =
            to_http_request(&req, Bytes::from_static(b"{}"), Caller::anonymous(), None)
        else {
            panic!("the request could not be bridged");
        };
        assert!(forwarded.headers().get("authorization").is_none());
        assert!(forwarded.headers().get("cookie").is_none());
        assert_eq!(forwarded.headers()["mcp-session-id"], "s1");
        assert_eq!(forwarded.headers()["host"], "127.0.0.1:3000");
        assert_eq!(forwarded.uri(), "/mcp?x=1");
        let dump = format!("{forwarded:?}");
        assert!(!dump.contains("secret-token") && !dump.contains("secret-cookie"));
    }
}
