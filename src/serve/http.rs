//! HTTP transports: Streamable HTTP (POST one JSON-RPC message, JSON or SSE reply, sessions),
//! the legacy HTTP+SSE transport (GET stream + POSTed messages), the WebSocket upgrade, and
//! the operational endpoints (`/health`, `/metrics`).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mcp::{self, Answer, Era, Mcp, Message, HANDSHAKE_VERSIONS, MODERN};
use super::metrics::Transport;
use super::ws;
use crate::mix::{splitmix64, GOLDEN};

/// Response body: a full buffer or an event stream.
pub use super::Body;

/// Returned instead of a response to make hyper close the connection (fault injection).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose (--drop-ratio)")
    }
}

impl std::error::Error for Dropped {}

/// How Streamable HTTP behaves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// No sessions: no `Mcp-Session-Id`, no `initialize` required, DELETE → 405.
    pub stateless: bool,
    /// Answer requests as an SSE stream instead of one JSON body.
    pub sse_replies: bool,
    /// Largest request body accepted (413 beyond).
    pub max_body: usize,
    /// Browser origins allowed besides loopback ones (`Origin` header; DNS-rebinding defence).
    pub allowed_origins: Vec<String>,
}

/// What one HTTP listener serves.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Streamable HTTP endpoint path.
    pub http: Option<String>,
    /// Legacy HTTP+SSE path (GET stream, POST messages).
    pub sse: Option<String>,
    /// WebSocket path and framing.
    pub ws: Option<ws::WsOptions>,
    /// Health path (served by every HTTP listener).
    pub health: String,
    /// Serve `/metrics` here.
    pub metrics: bool,
}

/// State shared by every HTTP connection of the process.
pub struct App {
    /// The MCP core.
    pub mcp: Arc<Mcp>,
    opts: HttpOptions,
    sessions: Mutex<HashSet<String>>,
    streams: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    draining: AtomicBool,
    /// Cancelled when the server drains: streams and WebSocket loops end.
    pub closing: CancellationToken,
    ids: AtomicU64,
}

impl App {
    /// Shared state; `seed` makes session ids unpredictable.
    pub fn new(mcp: Arc<Mcp>, opts: HttpOptions, closing: CancellationToken, seed: u64) -> Self {
        App {
            mcp,
            opts,
            sessions: Mutex::new(HashSet::new()),
            streams: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            closing,
            ids: AtomicU64::new(seed),
        }
    }

    /// From now on `/health` answers 503.
    pub fn start_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    fn new_session_id(&self) -> String {
        let a = splitmix64(self.ids.fetch_add(GOLDEN, Relaxed));
        let b = splitmix64(self.ids.fetch_add(GOLDEN, Relaxed));
        format!("{a:016x}{b:016x}")
    }
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()).boxed());
    *res.status_mut() = status;
    if !content_type.is_empty() {
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    res
}

fn json_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    full(status, "application/json", mcp::error_body(None, code, message, None))
}

/// One SSE `message` event (WHATWG format; our JSON never contains a raw newline).
fn sse_event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.into()
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Routes one request.
pub async fn handle(app: Arc<App>, routes: Arc<Routes>, mut req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path();
    if routes.metrics && path == "/metrics" {
        return Ok(full(StatusCode::OK, "text/plain; version=0.0.4", app.mcp.metrics.render()));
    }
    if path == routes.health {
        return Ok(health(&app));
    }
    if routes.ws.as_ref().is_some_and(|w| w.path == path) {
        let ws = routes.ws.clone().expect("checked");
        return Ok(ws::upgrade(app.mcp.clone(), app.closing.clone(), ws, &mut req));
    }
    if routes.http.as_deref() == Some(path) {
        return streamable(app, req).await;
    }
    if routes.sse.as_deref() == Some(path) {
        return legacy_sse(app, req).await;
    }
    Ok(full(StatusCode::NOT_FOUND, "text/plain", "not found\n"))
}

fn health(app: &App) -> Response<Body> {
    let id = app.mcp.identity();
    let (status, state) = if app.draining.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if app.mcp.faults.starting() {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    } else {
        (StatusCode::OK, "serving")
    };
    let body = serde_json::json!({ "status": state, "hostname": id.hostname, "slot": id.slot }).to_string();
    full(status, "application/json", body)
}

async fn read_body(app: &App, req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), app.opts.max_body).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            mcp::code::INVALID_REQUEST,
            &format!("request body larger than {} bytes", app.opts.max_body),
        )),
        Err(e) => {
            Err(json_error(StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST, &format!("cannot read the body: {e}")))
        }
    }
}

/// MCP servers must validate `Origin` (a browser's DNS-rebinding attack carries a foreign
/// one). Clients that are not browsers send none, so this never gets in a load test's way.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    let host = host.split('/').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn is_json_content_type(req: &Request<Incoming>) -> bool {
    header_str(req, "content-type")
        .map(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

fn accepts(req: &Request<Incoming>, media: &str) -> bool {
    header_str(req, "accept")
        .map(|a| {
            a.split(',').any(|part| {
                let t = part.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case(media) || t == "*/*"
            })
        })
        .unwrap_or(false)
}

/// Streamable HTTP: POST messages, DELETE sessions; no standalone GET stream (405, which the
/// spec allows).
async fn streamable(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    if let Some(origin) = header_str(&req, "origin") {
        if !origin_allowed(origin, &app.opts.allowed_origins) {
            return Ok(json_error(
                StatusCode::FORBIDDEN,
                mcp::code::INVALID_REQUEST,
                &format!("Origin {origin} is not allowed (only loopback origins and --allowed-origin)"),
            ));
        }
    }
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return Ok(delete_session(&app, &req)),
        _ => {
            let mut res = full(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "this server offers no GET stream; POST JSON-RPC messages here\n",
            );
            res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return Ok(res);
        }
    }
    if !is_json_content_type(&req) {
        return Ok(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            mcp::code::INVALID_REQUEST,
            "Content-Type must be application/json",
        ));
    }
    let wants = if app.opts.sse_replies { "text/event-stream" } else { "application/json" };
    let takes_sse = accepts(&req, "text/event-stream");
    if !accepts(&req, wants) {
        return Ok(json_error(
            StatusCode::NOT_ACCEPTABLE,
            mcp::code::INVALID_REQUEST,
            "Accept must list application/json and text/event-stream",
        ));
    }
    let version = header_str(&req, "mcp-protocol-version").map(str::to_owned);
    if let Some(v) = &version {
        if !HANDSHAKE_VERSIONS.contains(&v.as_str()) && v != MODERN {
            let mut body = mcp::error_body(
                None,
                mcp::code::INVALID_REQUEST,
                &format!("unsupported MCP-Protocol-Version {v}"),
                None,
            );
            if v.as_str() > MODERN {
                body = mcp::error_body(
                    None,
                    mcp::code::UNSUPPORTED_VERSION,
                    &format!("unsupported MCP-Protocol-Version {v}"),
                    Some(serde_json::json!({"supported": [MODERN]})),
                );
            }
            return Ok(full(StatusCode::BAD_REQUEST, "application/json", body));
        }
    }
    let session_header = header_str(&req, "mcp-session-id").map(str::to_owned);
    let mcp_method_header = header_str(&req, "mcp-method").map(str::to_owned);
    let body = match read_body(&app, req).await {
        Ok(b) => b,
        Err(res) => return Ok(res),
    };
    let msg = match mcp::parse(&body) {
        Ok(m) => m,
        Err(rejected) => return Ok(full(StatusCode::BAD_REQUEST, "application/json", rejected.body)),
    };

    let modern = version.as_deref() == Some(MODERN);
    if modern {
        return modern_request(&app, msg, mcp_method_header.as_deref(), takes_sse).await;
    }

    let (id, method, params) = match msg {
        Message::Request { id, method, params } => (id, method, params),
        Message::Notification { method } => {
            if !app.opts.stateless {
                if let Some(res) = session_problem(&app, session_header.as_deref()) {
                    return Ok(res);
                }
            }
            app.mcp.notify(&method, Transport::Http);
            return Ok(full(StatusCode::ACCEPTED, "", Bytes::new()));
        }
        Message::Response => {
            app.mcp.notify("other", Transport::Http);
            return Ok(full(StatusCode::ACCEPTED, "", Bytes::new()));
        }
    };

    let initializing = method.as_ref() == "initialize";
    if !app.opts.stateless && !initializing {
        if let Some(res) = session_problem(&app, session_header.as_deref()) {
            return Ok(res);
        }
    }
    let (notes, body, status) = match app.mcp.call(Transport::Http, Era::Handshake, id, &method, params).await {
        Answer::Drop => return Err(Dropped),
        Answer::Reply { notes, body, http_status, .. } => (notes, body, http_status),
    };
    let mut res = reply(&app, notes, body, status, takes_sse);
    if initializing && !app.opts.stateless {
        let sid = app.new_session_id();
        app.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(sid.clone());
        app.mcp.metrics.session(1);
        res.headers_mut().insert("mcp-session-id", HeaderValue::from_str(&sid).expect("hex is a valid header"));
    }
    Ok(res)
}

/// The HTTP answer to a request: JSON, or SSE when the server is set to SSE replies or when
/// notifications came before the response (they need a stream; the client said it takes one).
fn reply(app: &App, notes: Vec<Vec<u8>>, body: Vec<u8>, status: u16, takes_sse: bool) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if !notes.is_empty() && takes_sse {
        let mut events: Vec<u8> = Vec::new();
        for note in notes.iter().chain(std::iter::once(&body)) {
            events.extend_from_slice(&sse_event(note));
        }
        let mut res = full(status, "text/event-stream", events);
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return res;
    }
    if app.opts.sse_replies {
        let mut res = full(status, "text/event-stream", sse_event(&body));
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    } else {
        full(status, "application/json", body)
    }
}

/// 2026-07-28: no session; `_meta` carries the version; `Mcp-Method` must match.
async fn modern_request(
    app: &App,
    msg: Message<'_>,
    mcp_method: Option<&str>,
    takes_sse: bool,
) -> Result<Response<Body>, Dropped> {
    let Message::Request { id, method, params } = msg else {
        return Ok(full(StatusCode::ACCEPTED, "", Bytes::new()));
    };
    if mcp_method != Some(method.as_ref()) {
        let body = mcp::error_body(
            Some(id),
            mcp::code::HEADER_MISMATCH,
            "the Mcp-Method header does not match the request body's method",
            None,
        );
        return Ok(full(StatusCode::BAD_REQUEST, "application/json", body));
    }
    let meta_version = params.and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok()).and_then(|v| {
        v.pointer("/_meta/io.modelcontextprotocol~1protocolVersion").and_then(|x| x.as_str()).map(String::from)
    });
    if meta_version.as_deref() != Some(MODERN) {
        let body = mcp::error_body(
            Some(id),
            mcp::code::INVALID_PARAMS,
            "params._meta[\"io.modelcontextprotocol/protocolVersion\"] must be 2026-07-28",
            None,
        );
        return Ok(full(StatusCode::BAD_REQUEST, "application/json", body));
    }
    match app.mcp.call(Transport::Http, Era::Modern, id, &method, params).await {
        Answer::Drop => Err(Dropped),
        Answer::Reply { notes, body, http_status, .. } => Ok(reply(app, notes, body, http_status, takes_sse)),
    }
}

/// The answer that refuses a request whose session is missing or unknown; `None` if it is fine.
fn session_problem(app: &App, sid: Option<&str>) -> Option<Response<Body>> {
    let Some(sid) = sid else {
        return Some(json_error(
            StatusCode::BAD_REQUEST,
            mcp::code::INVALID_REQUEST,
            "missing Mcp-Session-Id: send initialize first",
        ));
    };
    if app.sessions.lock().unwrap_or_else(|e| e.into_inner()).contains(sid) {
        None
    } else {
        Some(json_error(StatusCode::NOT_FOUND, mcp::code::SESSION_NOT_FOUND, "session not found: initialize a new one"))
    }
}

fn delete_session(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if app.opts.stateless {
        return full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "stateless server: there is no session to delete\n");
    }
    let Some(sid) = header_str(req, "mcp-session-id") else {
        return json_error(StatusCode::BAD_REQUEST, mcp::code::INVALID_REQUEST, "missing Mcp-Session-Id");
    };
    if app.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(sid) {
        app.mcp.metrics.session(-1);
        full(StatusCode::OK, "", Bytes::new())
    } else {
        json_error(StatusCode::NOT_FOUND, mcp::code::SESSION_NOT_FOUND, "session not found")
    }
}

/// Legacy HTTP+SSE (2024-11-05), also in erlmcp's flavour: GET opens the event stream and
/// announces where to POST (`<path>?session_id=…`, the id is also in `Mcp-Session-Id`);
/// POSTs answer 202 and the reply arrives on the stream.
async fn legacy_sse(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    match *req.method() {
        Method::GET => Ok(open_stream(app, &req)),
        Method::POST => {
            let sid = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("session_id=")))
                .map(str::to_owned)
                .or_else(|| header_str(&req, "mcp-session-id").map(str::to_owned));
            let Some(sid) = sid else {
                return Ok(json_error(
                    StatusCode::BAD_REQUEST,
                    mcp::code::INVALID_REQUEST,
                    "missing session_id: GET the stream first",
                ));
            };
            let Some(tx) = app.streams.lock().unwrap_or_else(|e| e.into_inner()).get(&sid).cloned() else {
                return Ok(json_error(
                    StatusCode::NOT_FOUND,
                    mcp::code::SESSION_NOT_FOUND,
                    "session not found: its stream is closed",
                ));
            };
            let body = match read_body(&app, req).await {
                Ok(b) => b,
                Err(res) => return Ok(res),
            };
            match mcp::parse(&body) {
                Err(rejected) => Ok(full(StatusCode::BAD_REQUEST, "application/json", rejected.body)),
                Ok(Message::Notification { method }) => {
                    app.mcp.notify(&method, Transport::Sse);
                    Ok(full(StatusCode::ACCEPTED, "text/plain", "Accepted"))
                }
                Ok(Message::Response) => Ok(full(StatusCode::ACCEPTED, "text/plain", "Accepted")),
                Ok(Message::Request { .. }) => {
                    let app2 = app.clone();
                    tokio::spawn(async move {
                        let Ok(Message::Request { id, method, params }) = mcp::parse(&body) else {
                            return;
                        };
                        match app2.mcp.call(Transport::Sse, Era::Handshake, id, &method, params).await {
                            Answer::Reply { notes, body, .. } => {
                                for note in notes {
                                    let _ = tx.send(sse_event(&note)).await;
                                }
                                let _ = tx.send(sse_event(&body)).await;
                            }
                            Answer::Drop => {
                                // Dropping the sender table entry ends the client's stream.
                                app2.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&sid);
                            }
                        }
                    });
                    Ok(full(StatusCode::ACCEPTED, "text/plain", "Accepted"))
                }
            }
        }
        _ => Ok(full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET the stream, POST messages\n")),
    }
}

/// Keeps the stream's bookkeeping right however it ends.
struct StreamGuard {
    app: Arc<App>,
    sid: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.app.streams.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.sid);
        self.app.mcp.metrics.session(-1);
        self.app.mcp.metrics.connection(Transport::Sse, -1);
    }
}

fn open_stream(app: Arc<App>, req: &Request<Incoming>) -> Response<Body> {
    if !accepts(req, "text/event-stream") {
        return json_error(
            StatusCode::NOT_ACCEPTABLE,
            mcp::code::INVALID_REQUEST,
            "Accept must list text/event-stream",
        );
    }
    let sid = app.new_session_id();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    app.streams.lock().unwrap_or_else(|e| e.into_inner()).insert(sid.clone(), tx);
    app.mcp.metrics.session(1);
    app.mcp.metrics.connection(Transport::Sse, 1);
    let endpoint = format!("event: endpoint\ndata: {}?session_id={sid}\n\n", req.uri().path());
    let guard = StreamGuard { app: app.clone(), sid: sid.clone() };
    let closing = app.closing.clone();
    struct State {
        rx: mpsc::Receiver<Bytes>,
        first: Option<Bytes>,
        keepalive: tokio::time::Interval,
        closing: CancellationToken,
        _guard: StreamGuard,
    }
    let mut keepalive = tokio::time::interval(Duration::from_secs(15));
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State { rx, first: Some(Bytes::from(endpoint)), keepalive, closing, _guard: guard };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            s.keepalive.reset();
            return Some((Ok::<_, Infallible>(Frame::data(first)), s));
        }
        tokio::select! {
            msg = s.rx.recv() => msg.map(|m| (Ok(Frame::data(m)), s)),
            _ = s.keepalive.tick() => Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), s)),
            _ = s.closing.cancelled() => None,
        }
    });
    let mut res = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("mcp-session-id", HeaderValue::from_str(&sid).expect("hex is a valid header"));
    res
}
