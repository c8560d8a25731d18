//! Direct answers to `tools/call` for the tools that need nothing from an MCP session
//! (the self-contained tools of [`crate::tools::McpTools`]).
//!
//! Why: rmcp's Streamable HTTP transport hands every message to a per-session worker
//! task through channels, opens a request-wise SSE channel, primes it and frames the
//! answer; profiling (docs/benchmarks.md) put about 60 % of a request's CPU there.
//! For a plain call of a self-contained tool none of that machinery is observable, so
//! the bridge answers it itself, with what a client would get from rmcp: the same
//! status, content type and JSON-RPC message (rmcp's model types, legacy shape), as
//! one SSE event (session mode, stateless SSE) or as JSON (stateless
//! `json_response`). In session mode rmcp also primes its per-request stream and
//! gives its events ids (for `Last-Event-ID` resumption); a direct answer is
//! complete in one event, so it has nothing to resume and carries neither.
//!
//! Only requests rmcp would accept without any further check take this path; anything
//! else (other methods, `_meta`, task augmentation, 2026-07-28 per-request metadata or
//! SEP-2243 headers, unusual `Accept` values, unknown ids or arguments that don't
//! deserialize) goes to rmcp unchanged, so the protocol rules stay in one place. The
//! tools themselves run through rmcp's own tool dispatch (the routes `#[tool_router]`
//! generated), so argument parsing and results are rmcp's too. The differential test
//! `tests/it/direct.rs` compares both paths; rmcp is pinned to an exact version so
//! that an upgrade is a deliberate change that re-runs it.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpResponse;
use rmcp::model::{
    CallToolResponse, ErrorData, JsonObject, ProtocolVersion, RequestId, ServerResult,
};
use rmcp::service::{Peer, RequestContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::RoleServer;
use serde::{Deserialize, Serialize};

use crate::caller::Caller;
use crate::inspection::{Arguments, Message, Params};
use crate::tools::McpTools;

/// A single JSON-RPC `tools/call` request with nothing but an id, a name and
/// arguments, spelled without escapes: a request rmcp reads exactly as the bridge
/// does. Anything else (`_meta`, `task`, other keys, duplicate keys, a `null` or
/// fractional id, ...) is rmcp's to handle.
pub struct DirectCall<'a> {
    pub id: RequestId,
    pub name: &'a str,
    pub arguments: Option<JsonObject>,
}

impl<'a> DirectCall<'a> {
    /// The call in `message`, when it is one the bridge may answer itself.
    pub fn from_message(message: Message<'a>) -> Option<DirectCall<'a>> {
        let Message {
            jsonrpc: Some(Cow::Borrowed("2.0")),
            id: Some(id),
            method: Some(Cow::Borrowed("tools/call")),
            params: Params::Object(params),
            plain: true,
        } = message
        else {
            return None;
        };
        let (Some(Cow::Borrowed(name)), true) = (params.name, params.plain) else {
            return None;
        };
        let arguments = match params.arguments {
            Arguments::Absent => None,
            Arguments::Object(arguments) => Some(arguments),
            Arguments::NotObject => return None,
        };
        Some(DirectCall {
            id: RequestId::deserialize(id).ok()?,
            name,
            arguments,
        })
    }
}

/// The self-contained tools (see `McpTools::call_self_contained`) and what rmcp's
/// tool dispatch needs to run them outside a session.
pub struct DirectTools {
    tools: McpTools,
    /// A peer with no client behind it: rmcp's `RequestContext` needs one, and a
    /// self-contained tool never uses it.
    peer: Peer<RoleServer>,
}

impl DirectTools {
    /// Must run inside the Tokio runtime (rmcp starts the peer's service task, which
    /// ends at once: its transport has nothing to read).
    pub fn new(tools: McpTools) -> Self {
        let service = rmcp::service::serve_directly::<RoleServer, _, _, _, _>(
            tools.clone(),
            (
                futures::sink::drain::<TxJsonRpcMessage<RoleServer>>(),
                futures::stream::empty::<RxJsonRpcMessage<RoleServer>>(),
            ),
            None,
        );
        let peer = service.peer().clone();
        DirectTools { tools, peer }
    }

    /// Runs the call of tool `name` for `caller`; `None` leaves it to rmcp (not a
    /// self-contained tool, or arguments that do not deserialize: rmcp words that
    /// answer).
    pub async fn call(
        &self,
        id: RequestId,
        name: &str,
        arguments: Option<JsonObject>,
        caller: Caller,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let mut context = RequestContext::new(id, self.peer.clone());
        context.extensions.insert(caller);
        self.tools
            .call_self_contained(name, arguments, context)
            .await
    }
}

/// The media-type essences of `Accept`, or `None` when a parameter (a `q` weight in
/// particular) makes the header worth rmcp's full parser.
fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let mut json = false;
    let mut sse = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for item in value.split(',') {
            let item = item.trim();
            if item.contains(';') {
                return false;
            }
            json |= item.eq_ignore_ascii_case("application/json");
            sse |= item.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

/// Whether the headers are ones rmcp accepts for a call without further checks, from
/// a peer on a protocol version before 2026-07-28: the client accepts both JSON and
/// SSE, and `MCP-Protocol-Version` is a known version older than 2026-07-28 (whose
/// per-request metadata and SEP-2243 headers stay with rmcp). In session mode the
/// header is required, as the negotiated version is otherwise unknown here; a
/// stateless request without it is a 2025-03-26 request for rmcp too.
pub fn headers_allow(headers: &HeaderMap, session_mode: bool) -> bool {
    if !accepts_json_and_sse(headers) {
        return false;
    }
    let mut versions = headers.get_all("mcp-protocol-version");
    match (versions.next(), versions.next()) {
        (None, _) => !session_mode,
        (Some(v), None) => v.to_str().is_ok_and(|v| {
            v < ProtocolVersion::STANDARD_HEADERS.as_str()
                && ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .any(|known| known.as_str() == v)
        }),
        (Some(_), Some(_)) => false,
    }
}

/// The JSON-RPC message answering `id`, as rmcp writes it for a peer on a protocol
/// version before 2026-07-28 (the only peers [`headers_allow`] lets through): the
/// result in the shape those versions define (rmcp's own legacy down-conversion).
pub fn message(id: &RequestId, outcome: Result<CallToolResponse, ErrorData>) -> Option<String> {
    #[derive(Serialize)]
    struct Message<'a> {
        jsonrpc: &'static str,
        id: &'a RequestId,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<ServerResult>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<ErrorData>,
    }
    let (result, error) = match outcome {
        Ok(response) => {
            let mut result = ServerResult::from(response);
            result.strip_result_type_for_legacy_peer();
            result.strip_non_object_output_for_legacy_peer();
            (Some(result), None)
        }
        Err(error) => (None, Some(error)),
    };
    serde_json::to_string(&Message {
        jsonrpc: "2.0",
        id,
        result,
        error,
    })
    .ok()
}

/// The HTTP answer: one SSE event (what rmcp sends on a request-wise stream, minus
/// the priming event: the answer is complete, there is nothing to resume) or JSON.
pub fn response(message: String, json: bool) -> HttpResponse {
    if json {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(message);
    }
    let mut event = String::with_capacity(message.len() + 8);
    event.push_str("data: ");
    event.push_str(&message);
    event.push_str("\n\n");
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .body(event)
}

/// The answer to a request the client cancelled: its stream ends with no message.
pub fn end_without_answer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspection::Body;
    use actix_web::http::header::HeaderValue;
    use rmcp::model::CallToolResult;
    use serde_json::Value;

    fn parse(body: &[u8]) -> Option<DirectCall<'_>> {
        match Body::parse(body).ok()? {
            Body::Single(message) => DirectCall::from_message(message),
            Body::Batch(_) => None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            );
        }
        h
    }

    #[test]
    fn only_plain_calls_are_answered_directly() {
        let call = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin"}}}"#,
        );
        let Some(call) = call else {
            panic!("a plain call must parse");
        };
        assert_eq!(call.name, "protected_data");
        assert_eq!(
            crate::policy::category_argument(call.arguments.as_ref()),
            Some("admin")
        );
        assert_eq!(call.id, RequestId::Number(7));
        assert!(parse(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"hello_world"}}"#
        )
        .is_some());
        for body in [
            // per-request metadata, progress tokens, task augmentation: rmcp
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","_meta":{"progressToken":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","task":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"hello_world"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"hello_world"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"hello_world"}}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"hello_world"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world"},"x":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world","name":"user_profile"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"user_\u0070rofile"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello_world"}}]"#,
        ] {
            assert!(parse(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn headers_rmcp_would_look_at_closer_go_to_rmcp() {
        let both = ("accept", "application/json, text/event-stream");
        assert!(headers_allow(&headers(&[both]), false));
        assert!(
            !headers_allow(&headers(&[both]), true),
            "session mode: version unknown"
        );
        for session_mode in [true, false] {
            assert!(headers_allow(
                &headers(&[both, ("mcp-protocol-version", "2025-06-18")]),
                session_mode
            ));
            assert!(headers_allow(
                &headers(&[
                    ("accept", "application/json"),
                    ("accept", "text/event-stream"),
                    ("mcp-protocol-version", "2025-11-25"),
                ]),
                session_mode
            ));
        }
        for h in [
            headers(&[("accept", "application/json")]),
            headers(&[("accept", "application/json, text/event-stream;q=0")]),
            headers(&[both, ("mcp-protocol-version", "2026-07-28")]),
            headers(&[both, ("mcp-protocol-version", "1999-01-01")]),
            headers(&[
                both,
                ("mcp-protocol-version", "2025-06-18"),
                ("mcp-protocol-version", "2025-06-18"),
            ]),
            headers(&[]),
        ] {
            assert!(!headers_allow(&h, false), "{h:?}");
        }
    }

    #[test]
    fn answers_are_framed_as_rmcp_frames_them() {
        let ok = Ok(CallToolResult::success(vec![rmcp::model::ContentBlock::text("hi")]).into());
        let Some(text) = message(&RequestId::Number(3), ok) else {
            panic!("serializable");
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["id"], 3);
        assert_eq!(value["result"]["content"][0]["text"], "hi");
        assert_eq!(value["result"]["isError"], false);
        assert!(
            value["result"].get("resultType").is_none(),
            "legacy shape: {value}"
        );
        let err: Result<CallToolResponse, ErrorData> = Err(ErrorData::invalid_params("nope", None));
        let Some(text) = message(&RequestId::String("x".into()), err) else {
            panic!("serializable");
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["id"], "x");
        assert_eq!(value["error"]["code"], -32602);
    }
}
