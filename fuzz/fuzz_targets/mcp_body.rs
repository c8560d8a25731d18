//! A POST body at the MCP endpoint as the bridge reads it before rmcp does
//! (`inspection::Body`), the scope policy's reading of it, and the direct-call parser
//! that decides whether the bridge answers a `tools/call` itself.
//!
//! The bridge must read every message the way a generic JSON value reads it (the
//! policy and rmcp must agree on method, tool and arguments, duplicates included), so
//! each field is compared with `serde_json::Value`'s reading of the same body.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use mcp_server::direct::DirectCall;
use mcp_server::inspection::{Arguments, Body, Message, Params};
use mcp_server::policy::{self, Decision};
use serde_json::Value;
use shared::scopes::{MCP_ADMIN, MCP_READ};
use shared::ScopeSet;

fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

/// `message` says what `value` (the same JSON, read generically) says.
fn check_message(message: &Message<'_>, value: &Value) {
    let Some(object) = value.as_object() else {
        assert!(message.jsonrpc.is_none() && message.method.is_none() && message.id.is_none());
        assert!(matches!(message.params, Params::Absent));
        return;
    };
    assert_eq!(message.jsonrpc.as_deref(), text(object.get("jsonrpc")));
    assert_eq!(message.method.as_deref(), text(object.get("method")));
    assert_eq!(message.id.as_ref(), object.get("id"));
    if message.plain {
        assert!(object
            .keys()
            .all(|k| matches!(k.as_str(), "jsonrpc" | "id" | "method" | "params")));
    }
    match (&message.params, object.get("params")) {
        (Params::Absent, None) | (Params::Null, Some(Value::Null)) => {}
        (Params::NotObject, Some(v)) => assert!(!v.is_object() && !v.is_null()),
        (Params::Object(params), Some(Value::Object(p))) => {
            assert_eq!(params.name.as_deref(), text(p.get("name")));
            match (&params.arguments, p.get("arguments")) {
                (Arguments::Absent, None | Some(Value::Null)) => {}
                (Arguments::Object(a), Some(Value::Object(b))) => assert_eq!(a, b),
                (Arguments::NotObject, Some(v)) => assert!(!v.is_object() && !v.is_null()),
                (ours, theirs) => panic!("arguments read as {ours:?}, JSON says {theirs:?}"),
            }
        }
        (ours, theirs) => panic!("params read as {ours:?}, JSON says {theirs:?}"),
    }
}

/// The scope policy on the call: a tool that needs no scope is open to anyone, and
/// a caller holding every scope is never refused.
fn check_policy(message: &Message<'_>) {
    if message.method.as_deref() != Some("tools/call") {
        return;
    }
    let Params::Object(params) = &message.params else {
        return;
    };
    let arguments = match &params.arguments {
        Arguments::Object(arguments) => Some(arguments),
        _ => None,
    };
    let tool = params.name.as_deref().unwrap_or_default();
    let category = policy::category_argument(arguments);
    let anonymous = policy::decide_call(tool, category, None);
    let everything = ScopeSet::from_iter([policy::BASE_SCOPE, MCP_READ, MCP_ADMIN]);
    let full = policy::decide_call(tool, category, Some(&everything));
    assert_eq!(
        full,
        Decision::Allow,
        "{tool:?} refused to a caller holding every scope"
    );
    if anonymous == Decision::Allow {
        let none = ScopeSet::new();
        assert_eq!(
            policy::decide_call(tool, category, Some(&none)),
            Decision::Allow
        );
    }
    assert_eq!(policy::decide(tool, arguments, None), anonymous);
}

fuzz_target!(|data: &[u8]| {
    let generic = serde_json::from_slice::<Value>(data);
    let body = match Body::parse(data) {
        Ok(body) => body,
        Err(_) => {
            // Only JSON syntax errors fail: anything a JSON value reads, the bridge reads.
            assert!(generic.is_err(), "valid JSON refused by the bridge");
            return;
        }
    };
    if let Ok(value) = &generic {
        match (&body, value) {
            (Body::Batch(messages), Value::Array(items)) => {
                assert_eq!(messages.len(), items.len());
                for (message, item) in messages.iter().zip(items) {
                    check_message(message, item);
                }
            }
            (Body::Single(message), value) if !value.is_array() => check_message(message, value),
            _ => panic!("a batch and a single message confused"),
        }
    }
    for message in body.messages() {
        check_policy(message);
    }
    let Body::Single(message) = body else {
        return;
    };
    let jsonrpc = message.jsonrpc.clone().map(Cow::into_owned);
    let method = message.method.clone().map(Cow::into_owned);
    let plain = message.plain;
    let name = match &message.params {
        Params::Object(params) => params.name.as_deref().map(str::to_owned),
        _ => None,
    };
    if let Some(call) = DirectCall::from_message(message) {
        // Only a plain JSON-RPC 2.0 `tools/call` with a name is answered directly.
        assert!(plain);
        assert_eq!(jsonrpc.as_deref(), Some("2.0"));
        assert_eq!(method.as_deref(), Some("tools/call"));
        assert_eq!(name.as_deref(), Some(call.name));
        if let Ok(Value::Object(object)) = &generic {
            let id = object.get("id").expect("a direct call has an id");
            assert!(id.is_string() || id.is_number(), "direct call with id {id}");
        }
    }
});
