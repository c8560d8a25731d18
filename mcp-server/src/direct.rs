//! Direct answers to `tools/call` for the tools that need nothing from an MCP session
//! (see [`crate::tools::McpTools::call_direct`]).
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
//! deserialize) goes to rmcp unchanged, so the protocol rules stay in one place.

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpResponse;
use rmcp::model::{
    CallToolResult, ErrorData, JsonObject, ProtocolVersion, RequestId, ServerResult,
};
use serde::{Deserialize, Serialize};

/// A single JSON-RPC `tools/call` request with nothing but a name and arguments.
/// Unknown fields (`_meta`, `task`, ...) make the parse fail: rmcp handles those.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectCall<'a> {
    #[serde(borrow)]
    jsonrpc: &'a str,
    pub id: RequestId,
    #[serde(borrow)]
    method: &'a str,
    pub params: DirectParams<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectParams<'a> {
    #[serde(borrow)]
    pub name: &'a str,
    #[serde(default)]
    pub arguments: Option<JsonObject>,
}

impl<'a> DirectCall<'a> {
    /// The call in `body`, when it is one the bridge may answer itself.
    pub fn parse(body: &'a [u8]) -> Option<DirectCall<'a>> {
        let call: DirectCall = serde_json::from_slice(body).ok()?;
        (call.jsonrpc == "2.0" && call.method == "tools/call").then_some(call)
    }

    /// The `category` argument the scope policy looks at.
    pub fn category(&self) -> Option<&str> {
        crate::policy::category_argument(self.params.arguments.as_ref())
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
pub fn message(id: &RequestId, outcome: Result<CallToolResult, ErrorData>) -> Option<String> {
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
        Ok(result) => {
            let mut result = ServerResult::CallToolResult(result);
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use serde_json::Value;

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
        let call = DirectCall::parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"protected_data","arguments":{"category":"admin"}}}"#,
        );
        let Some(call) = call else {
            panic!("a plain call must parse");
        };
        assert_eq!(call.params.name, "protected_data");
        assert_eq!(call.category(), Some("admin"));
        assert_eq!(call.id, RequestId::Number(7));
        assert!(DirectCall::parse(
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
            assert!(DirectCall::parse(body.as_bytes()).is_none(), "{body}");
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
        let ok = Ok(CallToolResult::success(vec![
            rmcp::model::ContentBlock::text("hi"),
        ]));
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
        let err: Result<CallToolResult, ErrorData> = Err(ErrorData::invalid_params("nope", None));
        let Some(text) = message(&RequestId::String("x".into()), err) else {
            panic!("serializable");
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(value["id"], "x");
        assert_eq!(value["error"]["code"], -32602);
    }
}
