//! The fixtures the official MCP conformance suite (`@modelcontextprotocol/conformance`) calls
//! for: content-type tools, logging and progress during a call, static and templated
//! resources, prompts, completion. They sit beside the load-test tools so that one reference
//! server is both the load target and a spec-conformant peer.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// A 1×1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// A 10 ms silent mono 8 kHz 8-bit WAV, base64.
fn wav() -> &'static str {
    static WAV: OnceLock<String> = OnceLock::new();
    WAV.get_or_init(|| {
        let samples = [128u8; 80];
        let mut b = Vec::with_capacity(44 + samples.len());
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // PCM
        b.extend_from_slice(&1u16.to_le_bytes()); // mono
        b.extend_from_slice(&8000u32.to_le_bytes());
        b.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
        b.extend_from_slice(&1u16.to_le_bytes()); // block align
        b.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        b.extend_from_slice(&samples);
        base64::engine::general_purpose::STANDARD.encode(b)
    })
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

/// Tool definitions.
pub fn tools() -> Vec<Value> {
    let simple =
        |name: &str, description: &str| json!({"name": name, "description": description, "inputSchema": no_args()});
    vec![
        simple("test_simple_text", "Conformance: returns a fixed text."),
        simple("test_image_content", "Conformance: returns a PNG image."),
        simple("test_audio_content", "Conformance: returns a WAV sound."),
        simple("test_embedded_resource", "Conformance: returns an embedded resource."),
        simple("test_multiple_content_types", "Conformance: returns text, image and resource."),
        simple("test_error_handling", "Conformance: always a tool error."),
        simple("test_tool_with_logging", "Conformance: logs three messages while it runs."),
        simple("test_tool_with_progress", "Conformance: reports progress while it runs."),
        json!({
            "name": "json_schema_2020_12_tool",
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "additionalProperties": false
            }
        }),
    ]
}

/// What a fixture tool produced: the result and the notifications sent while it ran.
pub struct ToolRun {
    /// The `tools/call` result.
    pub result: Value,
    /// Notifications, in order, sent before the result.
    pub notifications: Vec<Value>,
}

/// Runs a fixture tool, or `None` if `name` is not one. `progress_token` is the request's
/// `_meta.progressToken`; `log_at_info` says whether info-level logs pass the current level.
pub async fn call(name: &str, progress_token: Option<Value>, log_at_info: bool) -> Option<ToolRun> {
    let text = |t: &str| json!({"content": [{"type": "text", "text": t}], "isError": false});
    let done = |result: Value| Some(ToolRun { result, notifications: vec![] });
    match name {
        "test_simple_text" => done(text("This is a simple text response for testing.")),
        "test_image_content" => {
            done(json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}], "isError": false}))
        }
        "test_audio_content" => {
            done(json!({"content": [{"type": "audio", "data": wav(), "mimeType": "audio/wav"}], "isError": false}))
        }
        "test_embedded_resource" => done(
            json!({"content": [{"type": "resource", "resource": {"uri": "test://embedded-resource", "mimeType": "text/plain", "text": "This is an embedded resource content."}}], "isError": false}),
        ),
        "test_multiple_content_types" => done(json!({"content": [
            {"type": "text", "text": "Multiple content types test:"},
            {"type": "image", "data": PNG, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "test://mixed-content-resource", "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
        ], "isError": false})),
        "test_error_handling" => done(
            json!({"content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}], "isError": true}),
        ),
        "test_tool_with_logging" => {
            let mut notifications = Vec::new();
            for (i, message) in
                ["Tool execution started", "Tool processing data", "Tool execution completed"].iter().enumerate()
            {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if log_at_info {
                    notifications.push(json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "logger": "swarmctl", "data": message}}));
                }
            }
            Some(ToolRun { result: text("Tool with logging executed successfully"), notifications })
        }
        "test_tool_with_progress" => {
            let mut notifications = Vec::new();
            for (i, progress) in [0, 50, 100].iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Some(token) = &progress_token {
                    notifications.push(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": progress, "total": 100}}));
                }
            }
            Some(ToolRun { result: text("Tool with progress executed successfully"), notifications })
        }
        "json_schema_2020_12_tool" => done(text("json_schema_2020_12_tool executed")),
        _ => None,
    }
}

/// Resource definitions.
pub fn resources() -> Vec<Value> {
    vec![
        json!({"uri": "test://static-text", "name": "static-text", "mimeType": "text/plain"}),
        json!({"uri": "test://static-binary", "name": "static-binary", "mimeType": "image/png"}),
    ]
}

/// Resource templates.
pub fn resource_templates() -> Vec<Value> {
    vec![json!({"uriTemplate": "test://template/{id}/data", "name": "template-data", "mimeType": "application/json"})]
}

/// Reads a fixture resource, or `None` if `uri` is not one.
pub fn read(uri: &str) -> Option<Value> {
    match uri {
        "test://static-text" => Some(
            json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."}]}),
        ),
        "test://static-binary" => Some(json!({"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG}]})),
        _ => {
            let id = uri.strip_prefix("test://template/")?.strip_suffix("/data")?;
            if id.is_empty() || id.contains('/') {
                return None;
            }
            let text = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")}).to_string();
            Some(json!({"contents": [{"uri": uri, "mimeType": "application/json", "text": text}]}))
        }
    }
}

/// Prompt definitions.
pub fn prompts() -> Vec<Value> {
    vec![
        json!({"name": "test_simple_prompt", "description": "Conformance: a simple prompt."}),
        json!({"name": "test_prompt_with_arguments", "description": "Conformance: a prompt with arguments.", "arguments": [
            {"name": "arg1", "description": "First test argument", "required": true},
            {"name": "arg2", "description": "Second test argument", "required": true}
        ]}),
        json!({"name": "test_prompt_with_embedded_resource", "description": "Conformance: embeds a resource.", "arguments": [
            {"name": "resourceUri", "description": "URI of the resource to embed", "required": true}
        ]}),
        json!({"name": "test_prompt_with_image", "description": "Conformance: includes an image."}),
    ]
}

/// Gets a fixture prompt: `None` if `name` is not one, `Some(Err)` for missing arguments.
pub fn prompt(name: &str, args: &Value) -> Option<Result<Value, String>> {
    let arg = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_owned);
    let user = |content: Value| json!({"role": "user", "content": content});
    Some(Ok(match name {
        "test_simple_prompt" => {
            json!({"messages": [user(json!({"type": "text", "text": "This is a simple prompt for testing."}))]})
        }
        "test_prompt_with_arguments" => {
            let (Some(a), Some(b)) = (arg("arg1"), arg("arg2")) else {
                return Some(Err("test_prompt_with_arguments needs arg1 and arg2".into()));
            };
            json!({"messages": [user(json!({"type": "text", "text": format!("Prompt with arguments: arg1='{a}', arg2='{b}'")}))]})
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = arg("resourceUri") else {
                return Some(Err("test_prompt_with_embedded_resource needs resourceUri".into()));
            };
            json!({"messages": [
                user(json!({"type": "resource", "resource": {"uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}})),
                user(json!({"type": "text", "text": "Please process the embedded resource above."}))
            ]})
        }
        "test_prompt_with_image" => json!({"messages": [
            user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
            user(json!({"type": "text", "text": "Please analyze the image above."}))
        ]}),
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wav_is_a_valid_riff_file() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(wav()).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize, bytes.len() - 8);
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
    }

    #[test]
    fn templates_substitute_and_reject_other_uris() {
        let v = read("test://template/123/data").unwrap();
        assert!(v["contents"][0]["text"].as_str().unwrap().contains("Data for ID: 123"));
        assert!(read("test://template//data").is_none());
        assert!(read("test://other").is_none());
    }

    #[tokio::test]
    async fn progress_and_logging_emit_in_order() {
        let run = call("test_tool_with_progress", Some(json!("tok")), true).await.unwrap();
        let progress: Vec<i64> = run.notifications.iter().map(|n| n["params"]["progress"].as_i64().unwrap()).collect();
        assert_eq!(progress, [0, 50, 100]);
        assert_eq!(call("test_tool_with_progress", None, true).await.unwrap().notifications.len(), 0);
        assert_eq!(call("test_tool_with_logging", None, true).await.unwrap().notifications.len(), 3);
        assert_eq!(call("test_tool_with_logging", None, false).await.unwrap().notifications.len(), 0);
    }
}
