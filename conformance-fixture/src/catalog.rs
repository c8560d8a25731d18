//! What the fixture lists: the tool names the conformance scenarios call, their input
//! schemas and descriptions, the elicitation schemas and the test media.

use serde_json::{json, Map, Value};

/// 1x1 red PNG.
pub const TEST_IMAGE_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file (header plus one silent sample).
pub const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// Every tool this pack lists (the dynamic tool comes and goes, see
/// `test_trigger_tool_change`).
pub const TOOL_NAMES: &[&str] = &[
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_tool_with_logging",
    "test_tool_with_progress",
    "test_error_handling",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
    "json_schema_2020_12_tool",
    "test_reconnection",
    "test_missing_capability",
    "test_streaming_elicitation",
    "test_logging_tool",
    "test_trigger_tool_change",
    "test_trigger_prompt_change",
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
    "test_custom_headers",
    // SEP-2663 tasks extension (io.modelcontextprotocol/tasks)
    "greet",
    "slow_compute",
    "failing_job",
    "protocol_error_job",
    "confirm_delete",
    "multi_input",
    "test_tool_with_task",
];

/// Tool listed only after `test_trigger_tool_change` flipped it on.
pub const DYNAMIC_TOOL: &str = "test_dynamic_tool";
/// Prompt listed only after `test_trigger_prompt_change` flipped it on.
pub const DYNAMIC_PROMPT: &str = "test_dynamic_prompt";

pub(crate) fn empty_schema() -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), json!({}));
    schema
}

pub(crate) fn tool_schema(name: &str) -> Map<String, Value> {
    let schema = match name {
        "test_sampling" => json!({
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
            "required": ["prompt"]
        }),
        "test_elicitation" => json!({
            "type": "object",
            "properties": {"message": {"type": "string", "description": "The message to show the user"}},
            "required": ["message"]
        }),
        "greet" => json!({
            "type": "object",
            "properties": {"name": {"type": "string", "description": "Who to greet"}}
        }),
        "slow_compute" => json!({
            "type": "object",
            "properties": {
                "seconds": {"type": "number", "description": "How long to work (0 to 30)"},
                "label": {"type": "string", "description": "A label echoed in the result"}
            }
        }),
        "confirm_delete" => json!({
            "type": "object",
            "properties": {"filename": {"type": "string", "description": "The file to delete"}}
        }),
        // SEP-2243: `region` is mirrored into the `Mcp-Param-Region` request header.
        "test_custom_headers" => json!({
            "type": "object",
            "properties": {
                "region": {
                    "type": "string",
                    "description": "Deployment region (also sent as Mcp-Param-Region)",
                    "x-mcp-header": "Region"
                }
            },
            "required": ["region"]
        }),
        // SEP-1613 / SEP-2106: published exactly as written, 2020-12 keywords included
        // ($schema, $defs with $anchor, $ref, allOf/anyOf, if/then/else,
        // additionalProperties).
        "json_schema_2020_12_tool" => json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "$anchor": "addressDef",
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                }
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"}
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {
                "properties": {"contactMethod": {"const": "phone"}},
                "required": ["contactMethod"]
            },
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false
        }),
        _ => return empty_schema(),
    };
    match schema {
        Value::Object(map) => map,
        _ => empty_schema(),
    }
}

pub(crate) fn tool_description(name: &str) -> &'static str {
    match name {
        "test_simple_text" => "Tests simple text content response",
        "test_image_content" => "Tests image content response",
        "test_audio_content" => "Tests audio content response",
        "test_embedded_resource" => "Tests embedded resource content response",
        "test_multiple_content_types" => {
            "Tests response with multiple content types (text, image, resource)"
        }
        "test_tool_with_logging" => "Tests tool that emits log messages during execution",
        "test_tool_with_progress" => "Tests tool that reports progress notifications",
        "test_error_handling" => "Tests error response handling",
        "test_sampling" => "Tests server-initiated sampling (LLM completion request)",
        "test_elicitation" => "Tests server-initiated elicitation (user input request)",
        "test_elicitation_sep1034_defaults" => "Tests elicitation with default values per SEP-1034",
        "test_elicitation_sep1330_enums" => {
            "Tests elicitation with enum schema improvements per SEP-1330"
        }
        "json_schema_2020_12_tool" => {
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)"
        }
        "test_reconnection" => "Tests SSE stream disconnection and client reconnection (SEP-1699)",
        "test_missing_capability" => {
            "Requires the sampling client capability; undeclared clients get -32021 (SEP-2575)"
        }
        "test_streaming_elicitation" => {
            "Asks for input without ever sending an independent request on the response stream (SEP-2575)"
        }
        "test_logging_tool" => {
            "Emits a log message only when the request carries a log level (SEP-2575)"
        }
        "test_trigger_tool_change" => {
            "Adds or removes test_dynamic_tool and sends notifications/tools/list_changed"
        }
        "test_trigger_prompt_change" => {
            "Adds or removes test_dynamic_prompt and sends notifications/prompts/list_changed"
        }
        "test_input_required_result_elicitation" => "SEP-2322: asks for the user's name",
        "test_input_required_result_sampling" => "SEP-2322: asks the client's model a question",
        "test_input_required_result_list_roots" => "SEP-2322: asks for the client's roots",
        "test_input_required_result_request_state" => {
            "SEP-2322: round-trips an integrity-protected requestState"
        }
        "test_input_required_result_multiple_inputs" => {
            "SEP-2322: asks for elicitation, sampling and roots at once"
        }
        "test_input_required_result_multi_round" => "SEP-2322: two rounds of elicitation",
        "test_input_required_result_tampered_state" => {
            "SEP-2322: rejects a requestState that fails its HMAC check"
        }
        "test_input_required_result_capabilities" => {
            "SEP-2322: asks only through capabilities the client declared"
        }
        "test_custom_headers" => {
            "SEP-2243: an argument mirrored into an Mcp-Param-* header, validated against the body"
        }
        "greet" => "Sync-only: returns Hello, {name}!",
        "slow_compute" => "Task-supporting (SEP-2663): works for `seconds` seconds, cancellable",
        "failing_job" => "Task-required (SEP-2663): ends with a tool error after about 1 s",
        "protocol_error_job" => "Task-supporting (SEP-2663): ends with a protocol-level error",
        "confirm_delete" => "Task-supporting (SEP-2663): asks for a confirmation while running",
        "multi_input" => "Task-supporting (SEP-2663): asks two questions at once while running",
        "test_tool_with_task" => {
            "Task-required (SEP-2663): asks for a name via SEP-2322, then finishes as a task"
        }
        _ => "Conformance fixture tool",
    }
}

pub(crate) fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        },
        "required": []
    })
}

pub(crate) fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}
                    ]
                }
            }
        },
        "required": []
    })
}

pub(crate) fn name_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"]
    })
}

pub(crate) fn confirm_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"]
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rmcp::model::ElicitationSchema;

    #[test]
    fn the_2020_12_schema_is_published_unchanged() {
        let schema = Value::Object(tool_schema("json_schema_2020_12_tool"));
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["$defs"]["address"]["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["$defs"]["address"]["$anchor"], "addressDef");
        assert!(schema["allOf"][0]["anyOf"].is_array());
        assert_eq!(
            schema["if"]["properties"]["contactMethod"]["const"],
            "phone"
        );
        assert_eq!(schema["else"]["required"], json!(["email"]));
    }

    #[test]
    fn sep1034_defaults_survive_rmcp_elicitation_model() {
        let schema: ElicitationSchema = serde_json::from_value(sep1034_schema()).unwrap();
        let wire = serde_json::to_value(schema).unwrap();
        let props = &wire["properties"];
        assert_eq!(props["name"]["default"], json!("John Doe"));
        assert_eq!(props["age"]["type"], "integer");
        assert_eq!(props["age"]["default"], json!(30));
        assert!(props["age"]["default"].is_i64() || props["age"]["default"].is_u64());
        assert_eq!(props["score"]["default"], json!(95.5));
        assert_eq!(props["status"]["default"], json!("active"));
        assert_eq!(
            props["status"]["enum"],
            json!(["active", "inactive", "pending"])
        );
        assert_eq!(props["verified"]["default"], json!(true));
    }

    #[test]
    fn sep1330_enum_variants_survive_rmcp_elicitation_model() {
        let schema: ElicitationSchema = serde_json::from_value(sep1330_schema()).unwrap();
        let wire = serde_json::to_value(schema).unwrap();
        let props = &wire["properties"];
        assert_eq!(
            props["untitledSingle"]["enum"],
            json!(["option1", "option2", "option3"])
        );
        assert!(props["untitledSingle"].get("oneOf").is_none());
        assert_eq!(props["titledSingle"]["oneOf"][1]["const"], "value2");
        assert_eq!(props["titledSingle"]["oneOf"][1]["title"], "Second Option");
        assert_eq!(
            props["legacyEnum"]["enumNames"],
            json!(["Option One", "Option Two", "Option Three"])
        );
        assert_eq!(props["untitledMulti"]["type"], "array");
        assert_eq!(props["untitledMulti"]["items"]["enum"][0], "option1");
        assert_eq!(
            props["titledMulti"]["items"]["anyOf"][2]["title"],
            "Third Choice"
        );
    }
}
