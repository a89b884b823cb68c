//! The MCP core every transport shares: JSON-RPC parsing, method dispatch, the tools,
//! resources and prompts of the reference server, error codes, metrics and fault injection.
//!
//! Transports hand in one message's bytes and get back what to send (or that nothing is to be
//! sent). The hot path (`tools/call` echo, `ping`) decodes only what it needs and writes its
//! reply straight into a buffer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::faults::{Faults, Verdict};
use super::fixtures;
use super::metrics::{method_index, Metrics, Transport};

/// Protocol versions of the handshake era, oldest first.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The newest handshake-era version (answered to unknown requested versions).
pub const LATEST: &str = "2025-11-25";
/// The stateless era: no `initialize`, `_meta` on every request.
pub const MODERN: &str = "2026-07-28";

/// JSON-RPC error codes used here.
pub mod code {
    /// Malformed JSON.
    pub const PARSE: i64 = -32700;
    /// Not a valid JSON-RPC request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters (also: unknown tool or prompt).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal (and injected) errors.
    pub const INTERNAL: i64 = -32603;
    /// Session not found (as the TypeScript SDK uses it).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// Unknown resource (handshake era).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    /// 2026-07-28: a header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// Who this replica is, as it tells clients.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Container hostname (swarm sets `<service>-<slot>` through the stack's template).
    pub hostname: String,
    /// Swarm task slot (`SWARMCTL_TASK_SLOT`), or empty.
    pub slot: String,
    /// Swarm node (`SWARMCTL_NODE`), or empty.
    pub node: String,
}

impl Identity {
    /// From the environment swarm gives each task.
    pub fn from_env() -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
            .unwrap_or_default();
        Identity {
            hostname,
            slot: std::env::var("SWARMCTL_TASK_SLOT").unwrap_or_default(),
            node: std::env::var("SWARMCTL_NODE").unwrap_or_default(),
        }
    }
}

/// One decoded JSON-RPC message, borrowing from the bytes it came in.
#[derive(Debug)]
pub enum Message<'a> {
    /// A request: expects an answer.
    Request {
        /// The id, verbatim.
        id: &'a RawValue,
        /// The method.
        method: Cow<'a, str>,
        /// The params, undecoded.
        params: Option<&'a RawValue>,
    },
    /// A notification: no answer.
    Notification {
        /// The method.
        method: Cow<'a, str>,
    },
    /// A response to something the server asked (it asks nothing, so it is only counted).
    Response,
}

/// Why bytes are not a JSON-RPC message; carries the error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The JSON-RPC error response to send.
    pub body: Vec<u8>,
    /// Its code.
    pub code: i64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// Decodes one message. Batches (arrays) are refused: no handshake-era version after
/// 2025-03-26 allows them, and the SDK servers refuse them too.
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, Rejected> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(reject(
            None,
            code::INVALID_REQUEST,
            "JSON-RPC batches are not supported: send one message per request",
        ));
    }
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            reject(None, code::INVALID_REQUEST, &format!("not a JSON-RPC message: {e}"))
        } else {
            reject(None, code::PARSE, &format!("parse error: {e}"))
        }
    })?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(reject(env.id, code::INVALID_REQUEST, "`jsonrpc` must be \"2.0\""));
    }
    match (env.method, env.id) {
        (Some(method), Some(id)) => {
            let first = id.get().as_bytes().first().copied();
            if !matches!(first, Some(b'"' | b'-' | b'0'..=b'9')) {
                return Err(reject(None, code::INVALID_REQUEST, "`id` must be a string or an integer"));
            }
            if let Some(p) = env.params {
                if !p.get().starts_with(['{', '[']) {
                    return Err(reject(Some(id), code::INVALID_REQUEST, "`params` must be an object"));
                }
            }
            Ok(Message::Request { id, method, params: env.params })
        }
        (Some(method), None) => Ok(Message::Notification { method }),
        (None, _) if env.result.is_some() || env.error.is_some() => Ok(Message::Response),
        (None, id) => Err(reject(id, code::INVALID_REQUEST, "a request needs a `method`")),
    }
}

fn reject(id: Option<&RawValue>, code: i64, message: &str) -> Rejected {
    Rejected { body: error_body(id, code, message, None), code }
}

/// A JSON-RPC error response.
pub fn error_body(id: Option<&RawValue>, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let id = id.map(RawValue::get).unwrap_or("null");
    let mut err = json!({ "code": code, "message": message });
    if let Some(data) = data {
        err["data"] = data;
    }
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{err}}}").into_bytes()
}

/// The `tools/call` echo result, written directly.
fn echo_body(id: &RawValue, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + 2 * message.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"result\":{\"content\":[{\"type\":\"text\",\"text\":");
    serde_json::to_writer(&mut out, message).expect("a str always serializes");
    out.extend_from_slice(b"}],\"structuredContent\":{\"result\":");
    serde_json::to_writer(&mut out, message).expect("a str always serializes");
    out.extend_from_slice(b"},\"isError\":false}}");
    out
}

fn result_body(id: &RawValue, result: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"result\":");
    serde_json::to_writer(&mut out, result).expect("a Value always serializes");
    out.push(b'}');
    out
}

/// The answer to one request.
#[derive(Debug)]
pub enum Answer {
    /// Send this JSON-RPC response.
    Reply {
        /// Notifications sent while the request ran, to deliver before the response where the
        /// transport can (SSE, WebSocket, TCP).
        notes: Vec<Vec<u8>>,
        /// The response bytes.
        body: Vec<u8>,
        /// 2026-07-28 only: answer with this HTTP status (404 for an unknown method).
        http_status: u16,
    },
    /// Close the connection without answering (fault injection).
    Drop,
}

/// What dispatch produced for one request.
struct Out {
    body: Vec<u8>,
    status: u16,
    error_code: Option<String>,
    notes: Vec<Vec<u8>>,
}

impl Out {
    fn ok(body: Vec<u8>) -> Self {
        Out { body, status: 200, error_code: None, notes: vec![] }
    }

    fn error(id: &RawValue, code: i64, message: &str, data: Option<Value>) -> Self {
        Out { error_code: Some(code.to_string()), ..Out::ok(error_body(Some(id), code, message, data)) }
    }
}

/// How the request reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Handshake era: `initialize` first, sessions.
    Handshake,
    /// 2026-07-28: stateless, `_meta` on every request.
    Modern,
}

/// The reference server's MCP logic, shared by every transport and connection.
pub struct Mcp {
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Fault injection.
    pub faults: Arc<Faults>,
    identity: Identity,
    version: String,
    tools: Value,
    resources: Value,
    prompts: Value,
    /// `logging/setLevel`: index into [`LOG_LEVELS`]; logs below it are not sent.
    log_level: AtomicUsize,
    subscriptions: Mutex<HashSet<String>>,
}

/// MCP log levels, least severe first.
const LOG_LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Longest `sleep` the tool accepts, so no request can hold a connection for ever.
const MAX_SLEEP_MS: u64 = 60_000;
/// Largest `blob` the tool produces.
const MAX_BLOB: u64 = 16 << 20;

impl Mcp {
    /// The server core.
    pub fn new(identity: Identity, metrics: Arc<Metrics>, faults: Arc<Faults>) -> Self {
        let mut tools = vec![
            json!({
                "name": "echo",
                "description": "Returns the message it was given.",
                "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
            }),
            json!({
                "name": "add",
                "description": "Adds two numbers.",
                "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}
            }),
            json!({
                "name": "sleep",
                "description": "Waits `ms` milliseconds (at most 60000), then answers.",
                "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS}}, "required": ["ms"]}
            }),
            json!({
                "name": "fail",
                "description": "Always fails, as a tool error (isError: true).",
                "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}}
            }),
            json!({
                "name": "blob",
                "description": "Returns a text of `bytes` bytes (at most 16 MiB).",
                "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer", "minimum": 0, "maximum": MAX_BLOB}}, "required": ["bytes"]}
            }),
        ];
        tools.extend(fixtures::tools());
        let mut resources = vec![
            json!({"uri": "swarmctl://replica", "name": "replica", "description": "Which replica answered.", "mimeType": "application/json"}),
            json!({"uri": "swarmctl://static/text", "name": "static-text", "description": "A fixed text.", "mimeType": "text/plain"}),
        ];
        resources.extend(fixtures::resources());
        let mut prompts = vec![json!({
            "name": "greeting",
            "description": "Greets someone.",
            "arguments": [{"name": "name", "description": "Who to greet.", "required": true}]
        })];
        prompts.extend(fixtures::prompts());
        Mcp {
            metrics,
            faults,
            identity,
            version: env!("CARGO_PKG_VERSION").into(),
            tools: Value::Array(tools),
            resources: Value::Array(resources),
            prompts: Value::Array(prompts),
            log_level: AtomicUsize::new(1),
            subscriptions: Mutex::new(HashSet::new()),
        }
    }

    /// The replica's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Counts a notification or client response (nothing is answered).
    pub fn notify(&self, method: &str, transport: Transport) {
        self.metrics.request(method_index(method), transport);
    }

    /// Answers one request: counts it, applies faults, dispatches, times it.
    pub async fn call(
        &self,
        transport: Transport,
        era: Era,
        id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
    ) -> Answer {
        let started = Instant::now();
        let m = method_index(method);
        self.metrics.request(m, transport);
        let (delay, inject_error) = match self.faults.verdict() {
            Verdict::Drop => {
                self.metrics.dropped();
                return Answer::Drop;
            }
            Verdict::Answer(d) => (d, false),
            Verdict::Error(d) => (d, true),
        };
        if !delay.is_zero() {
            // From arrival, to the tens of microseconds: a fixed latency must measure as itself.
            crate::timer::sleep_until(started + delay).await;
        }
        let out = if inject_error {
            Out::error(id, code::INTERNAL, "injected error (--error-ratio)", None)
        } else {
            self.dispatch(era, id, method, params).await
        };
        if let Some(c) = &out.error_code {
            self.metrics.error(m, c);
        }
        self.metrics.duration(m, started.elapsed());
        Answer::Reply { notes: out.notes, body: out.body, http_status: out.status }
    }

    async fn dispatch(&self, era: Era, id: &RawValue, method: &str, params: Option<&RawValue>) -> Out {
        let ok = |mut result: Value| {
            if era == Era::Modern {
                result["resultType"] = json!("complete");
            }
            Out::ok(result_body(id, &result))
        };
        if method == "tools/call" {
            return self.call_tool(era, id, params).await;
        }
        if method == "ping" && era == Era::Handshake {
            return Out::ok(result_body(id, &json!({})));
        }
        let p: Value = params.and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(Value::Null);
        match method {
            "initialize" => {
                let requested = p.get("protocolVersion").and_then(Value::as_str);
                let negotiated = HANDSHAKE_VERSIONS.iter().find(|v| Some(**v) == requested).copied().unwrap_or(LATEST);
                let result = json!({
                    "protocolVersion": negotiated,
                    "capabilities": {
                        "tools": {"listChanged": false},
                        "resources": {"subscribe": true, "listChanged": false},
                        "prompts": {"listChanged": false},
                        "logging": {},
                        "completions": {}
                    },
                    "serverInfo": self.server_info(),
                    "instructions": "swarmctl's reference MCP server: tools echo, add, sleep, fail and blob.",
                    "_meta": {"swarmctl/replica": self.replica()}
                });
                Out::ok(result_body(id, &result))
            }
            "server/discover" => ok(json!({
                "supportedVersions": [MODERN],
                "capabilities": {"tools": {"listChanged": false}, "resources": {}, "prompts": {}},
                "instructions": "swarmctl's reference MCP server",
                "_meta": {"io.modelcontextprotocol/serverInfo": self.server_info(), "swarmctl/replica": self.replica()}
            })),
            "tools/list" => ok(json!({ "tools": self.tools })),
            "resources/list" => ok(json!({ "resources": self.resources })),
            "resources/templates/list" => ok(json!({ "resourceTemplates": fixtures::resource_templates() })),
            "resources/read" => match p.get("uri").and_then(Value::as_str) {
                Some("swarmctl://replica") => ok(
                    json!({"contents": [{"uri": "swarmctl://replica", "mimeType": "application/json", "text": self.replica().to_string()}]}),
                ),
                Some("swarmctl://static/text") => ok(
                    json!({"contents": [{"uri": "swarmctl://static/text", "mimeType": "text/plain", "text": "This is swarmctl's static text resource."}]}),
                ),
                Some(uri) => match fixtures::read(uri) {
                    Some(result) => ok(result),
                    None => {
                        let code = if era == Era::Modern { code::INVALID_PARAMS } else { code::RESOURCE_NOT_FOUND };
                        Out::error(id, code, &format!("resource not found: {uri}"), Some(json!({ "uri": uri })))
                    }
                },
                None => Out::error(id, code::INVALID_PARAMS, "resources/read needs params.uri", None),
            },
            "resources/subscribe" | "resources/unsubscribe" => match p.get("uri").and_then(Value::as_str) {
                Some(uri) => {
                    let mut subs = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
                    if method == "resources/subscribe" {
                        subs.insert(uri.to_string());
                    } else {
                        subs.remove(uri);
                    }
                    ok(json!({}))
                }
                None => Out::error(id, code::INVALID_PARAMS, &format!("{method} needs params.uri"), None),
            },
            "prompts/list" => ok(json!({ "prompts": self.prompts })),
            "prompts/get" => {
                let name = p.get("name").and_then(Value::as_str);
                let args = p.get("arguments").unwrap_or(&Value::Null);
                match (name, name.and_then(|n| fixtures::prompt(n, args))) {
                    (_, Some(Ok(result))) => ok(result),
                    (_, Some(Err(message))) => Out::error(id, code::INVALID_PARAMS, &message, None),
                    (Some("greeting"), None) => match args.get("name").and_then(Value::as_str) {
                        Some(who) => ok(json!({
                            "description": "Greets someone.",
                            "messages": [{"role": "user", "content": {"type": "text", "text": format!("Please greet {who}.")}}]
                        })),
                        None => {
                            Out::error(id, code::INVALID_PARAMS, "prompt `greeting` needs the argument `name`", None)
                        }
                    },
                    (Some(other), None) => {
                        Out::error(id, code::INVALID_PARAMS, &format!("unknown prompt `{other}`"), None)
                    }
                    (None, None) => Out::error(id, code::INVALID_PARAMS, "prompts/get needs params.name", None),
                }
            }
            "logging/setLevel" => {
                match p.get("level").and_then(Value::as_str).and_then(|l| LOG_LEVELS.iter().position(|x| *x == l)) {
                    Some(level) => {
                        self.log_level.store(level, Relaxed);
                        ok(json!({}))
                    }
                    None => Out::error(
                        id,
                        code::INVALID_PARAMS,
                        &format!("params.level must be one of {}", LOG_LEVELS.join(", ")),
                        None,
                    ),
                }
            }
            "completion/complete" => {
                let typed = p.pointer("/argument/value").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> =
                    ["paris", "park", "party"].into_iter().filter(|v| v.starts_with(typed)).collect();
                ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
            }
            other => {
                // 2026-07-28 answers unknown methods (ping included) with HTTP 404.
                let message = if other == "ping" {
                    "ping does not exist in protocol version 2026-07-28".to_string()
                } else {
                    format!("method not found: {other}")
                };
                Out {
                    status: if era == Era::Modern { 404 } else { 200 },
                    ..Out::error(id, code::METHOD_NOT_FOUND, &message, None)
                }
            }
        }
    }

    async fn call_tool(&self, era: Era, id: &RawValue, params: Option<&RawValue>) -> Out {
        #[derive(Deserialize)]
        struct Call<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
            #[serde(borrow, default)]
            arguments: Option<&'a RawValue>,
        }
        let invalid = |message: String| Out::error(id, code::INVALID_PARAMS, &message, None);
        let Some(call) = params.and_then(|p| serde_json::from_str::<Call>(p.get()).ok()) else {
            return invalid("tools/call needs params.name (and params.arguments)".into());
        };
        // The load-test hot path: echo without building a JSON tree either way.
        if call.name == "echo" && era == Era::Handshake {
            #[derive(Deserialize)]
            struct Echo<'a> {
                #[serde(borrow)]
                message: Cow<'a, str>,
            }
            if let Some(echo) = call.arguments.and_then(|a| serde_json::from_str::<Echo>(a.get()).ok()) {
                return Out::ok(echo_body(id, &echo.message));
            }
        }
        let args: Value = match call.arguments.map(|a| serde_json::from_str(a.get())) {
            None => Value::Object(Default::default()),
            Some(Ok(v @ Value::Object(_))) => v,
            Some(_) => return invalid("params.arguments must be an object".into()),
        };
        let text = |t: String| -> Value {
            json!({"content": [{"type": "text", "text": t}], "structuredContent": {"result": t}, "isError": false})
        };
        let mut notes = Vec::new();
        let mut result = match call.name.as_ref() {
            "echo" => match args.get("message").and_then(Value::as_str) {
                Some(m) => text(m.to_string()),
                None => return invalid("echo needs the string argument `message`".into()),
            },
            "add" => match (args.get("a").and_then(Value::as_f64), args.get("b").and_then(Value::as_f64)) {
                (Some(a), Some(b)) => {
                    let sum = a + b;
                    json!({"content": [{"type": "text", "text": sum.to_string()}], "structuredContent": {"result": sum}, "isError": false})
                }
                _ => return invalid("add needs the numbers `a` and `b`".into()),
            },
            "sleep" => match args.get("ms").and_then(Value::as_u64) {
                Some(ms) if ms <= MAX_SLEEP_MS => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    text(format!("slept {ms} ms"))
                }
                _ => return invalid(format!("sleep needs the integer `ms`, from 0 to {MAX_SLEEP_MS}")),
            },
            "fail" => {
                let message = args.get("message").and_then(Value::as_str).unwrap_or("the fail tool always fails");
                json!({"content": [{"type": "text", "text": message}], "isError": true})
            }
            "blob" => match args.get("bytes").and_then(Value::as_u64) {
                Some(n) if n <= MAX_BLOB => {
                    json!({"content": [{"type": "text", "text": "x".repeat(n as usize)}], "isError": false})
                }
                _ => return invalid(format!("blob needs the integer `bytes`, from 0 to {MAX_BLOB}")),
            },
            other => {
                let token = params
                    .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                    .and_then(|v| v.pointer("/_meta/progressToken").cloned());
                let log_at_info = self.log_level.load(Relaxed) <= 1;
                let Some(run) = fixtures::call(other, token, log_at_info).await else {
                    return invalid(format!("unknown tool `{other}`: see tools/list"));
                };
                notes = run.notifications.iter().map(|n| n.to_string().into_bytes()).collect();
                run.result
            }
        };
        if era == Era::Modern {
            result["resultType"] = json!("complete");
        }
        let error_code = (result["isError"] == true).then(|| "tool_error".to_string());
        Out { notes, error_code, ..Out::ok(result_body(id, &result)) }
    }

    fn server_info(&self) -> Value {
        let mut title = "swarmctl reference MCP server".to_string();
        if !self.identity.hostname.is_empty() {
            title.push_str(&format!(" ({})", self.identity.hostname));
        }
        json!({ "name": "swarmctl-reference", "title": title, "version": self.version })
    }

    fn replica(&self) -> Value {
        json!({ "hostname": self.identity.hostname, "slot": self.identity.slot, "node": self.identity.node })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp() -> Mcp {
        let id = Identity { hostname: "h1".into(), slot: "2".into(), node: "n".into() };
        Mcp::new(id, Arc::new(Metrics::new("h1", "2", "t")), Arc::new(Faults::none()))
    }

    async fn ask(m: &Mcp, era: Era, text: &str) -> Value {
        let Message::Request { id, method, params } = parse(text.as_bytes()).unwrap() else {
            panic!("not a request: {text}")
        };
        match m.call(Transport::Http, era, id, &method, params).await {
            Answer::Reply { body, .. } => serde_json::from_slice(&body).unwrap(),
            Answer::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn parse_classifies_and_rejects() {
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), Ok(Message::Request { .. })));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#), Ok(Message::Response)));
        let cases: [(&[u8], i64); 7] = [
            (b"{not json", code::PARSE),
            (b"", code::PARSE),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, code::INVALID_REQUEST),
            (br#"{"id":1,"method":"ping"}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":5}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
        ];
        for (bytes, want) in cases {
            let err = parse(bytes).unwrap_err();
            assert_eq!(err.code, want, "{}", String::from_utf8_lossy(bytes));
            let v: Value = serde_json::from_slice(&err.body).unwrap();
            assert_eq!(v["error"]["code"], want);
        }
    }

    #[tokio::test]
    async fn initialize_negotiates_and_identifies_the_replica() {
        let m = mcp();
        for (asked, got) in [("2025-06-18", "2025-06-18"), ("2024-11-05", "2024-11-05"), ("2099-01-01", LATEST)] {
            let v = ask(&m, Era::Handshake, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{asked}","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#)).await;
            assert_eq!(v["result"]["protocolVersion"], got);
            assert_eq!(v["result"]["_meta"]["swarmctl/replica"]["slot"], "2");
            assert!(v["result"]["serverInfo"]["title"].as_str().unwrap().contains("h1"));
        }
    }

    #[tokio::test]
    async fn tools_answer_and_fail_the_right_way() {
        let m = mcp();
        let v = ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi \"there\""}}}"#).await;
        assert_eq!(v["id"], "a\"b", "the id comes back verbatim");
        assert_eq!(v["result"]["content"][0]["text"], "hi \"there\"");
        assert_eq!(v["result"]["isError"], false);
        let v = ask(
            &m,
            Era::Handshake,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3.5}}}"#,
        )
        .await;
        assert_eq!(v["result"]["structuredContent"]["result"], 5.5);
        let v =
            ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fail"}}"#).await;
        assert_eq!(v["result"]["isError"], true);
        let v = ask(
            &m,
            Era::Handshake,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"blob","arguments":{"bytes":1000}}}"#,
        )
        .await;
        assert_eq!(v["result"]["content"][0]["text"].as_str().unwrap().len(), 1000);
        let started = Instant::now();
        let v = ask(
            &m,
            Era::Handshake,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":50}}}"#,
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(v["result"]["content"][0]["text"], "slept 50 ms");
        for bad in [
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope"}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":999999}}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call"}"#,
        ] {
            let v = ask(&m, Era::Handshake, bad).await;
            assert_eq!(v["error"]["code"], code::INVALID_PARAMS, "{bad}");
            assert_eq!(v["id"], 6);
        }
        assert_eq!(m.metrics.requests_total("tools/call"), 10);
    }

    #[tokio::test]
    async fn lists_resources_prompts_and_errors() {
        let m = mcp();
        let v = ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
        let names: Vec<&str> =
            v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names[..5], ["echo", "add", "sleep", "fail", "blob"]);
        let v = ask(
            &m,
            Era::Handshake,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"swarmctl://replica"}}"#,
        )
        .await;
        assert!(v["result"]["contents"][0]["text"].as_str().unwrap().contains("\"slot\":\"2\""));
        let v = ask(
            &m,
            Era::Handshake,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"nope://x"}}"#,
        )
        .await;
        assert_eq!(v["error"]["code"], code::RESOURCE_NOT_FOUND);
        let v = ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greeting","arguments":{"name":"Ada"}}}"#).await;
        assert_eq!(v["result"]["messages"][0]["content"]["text"], "Please greet Ada.");
        let v =
            ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greeting"}}"#)
                .await;
        assert_eq!(v["error"]["code"], code::INVALID_PARAMS);
        let v = ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":1,"method":"no/such"}"#).await;
        assert_eq!(v["error"]["code"], code::METHOD_NOT_FOUND);
        let v = ask(&m, Era::Handshake, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).await;
        assert_eq!(v["result"], json!({}));
    }

    #[tokio::test]
    async fn modern_era_marks_results_and_drops_ping() {
        let m = mcp();
        let v = ask(&m, Era::Modern, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
        assert_eq!(v["result"]["resultType"], "complete");
        let Message::Request { id, method, params } = parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap()
        else {
            panic!()
        };
        match m.call(Transport::Http, Era::Modern, id, &method, params).await {
            Answer::Reply { http_status, .. } => assert_eq!(http_status, 404),
            Answer::Drop => panic!(),
        }
    }
}
