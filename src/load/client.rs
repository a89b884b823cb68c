//! Client transports: one connection per virtual client, speaking Streamable HTTP (JSON or SSE
//! replies, sessions, sticky cookies, DELETE at the end), WebSocket (one message per text
//! frame) or newline-delimited TCP. Only `id`, `error.code` and `result.isError` of a reply
//! are decoded.

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use std::sync::Arc;

use super::http1::{self, WireError};
use super::stats::{ErrorClass, Failure};
use super::stream::{Stream, Wire};
use super::ws1;

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum Target {
    /// Streamable HTTP endpoint.
    Http {
        /// `host:port`.
        authority: String,
        /// Path (and query).
        path: String,
        /// `https://`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls: bool,
    },
    /// WebSocket endpoint.
    Ws {
        /// `host:port`.
        authority: String,
        /// Path (and query).
        path: String,
        /// Offer the `mcp` subprotocol.
        subprotocol: bool,
        /// End every message with `\n` (erlmcp).
        newline: bool,
        /// `wss://`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls: bool,
    },
    /// Newline-delimited TCP.
    Tcp {
        /// `host:port`.
        authority: String,
    },
    /// Legacy HTTP+SSE (2024-11-05, and erlmcp's `/mcp/sse`): GET the event stream at `path`,
    /// POST messages to the endpoint it announces (or to `path` with the session header),
    /// answers arrive as events.
    Sse {
        /// `host:port`.
        authority: String,
        /// The stream's path.
        path: String,
    },
}

impl Target {
    /// `http[s]://…`, `ws[s]://…`, `tcp://host:port` or `sse://…`; without a port, http and
    /// ws go to 80, https and wss to 443.
    pub fn parse(url: &str, subprotocol: bool, newline: bool) -> Result<Target, String> {
        let bad = |why: &str| {
            format!("invalid --url `{url}`: {why}; use http[s]://host[:port]/mcp, ws[s]://host[:port]/mcp/ws, tcp://host:port or sse://host:port/sse (legacy HTTP+SSE)")
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        // A port is what follows the last colon, unless that colon is inside an IPv6 literal.
        let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
        let with_port = |default: u16| if has_port { authority.to_string() } else { format!("{authority}:{default}") };
        let needs_port = || if has_port { Ok(authority.to_string()) } else { Err(bad("give host:port")) };
        let path = path.to_string();
        match scheme {
            "http" => Ok(Target::Http { authority: with_port(80), path, tls: false }),
            "https" => Ok(Target::Http { authority: with_port(443), path, tls: true }),
            "ws" => Ok(Target::Ws { authority: with_port(80), path, subprotocol, newline, tls: false }),
            "wss" => Ok(Target::Ws { authority: with_port(443), path, subprotocol, newline, tls: true }),
            "tcp" => Ok(Target::Tcp { authority: needs_port()? }),
            "sse" => Ok(Target::Sse { authority: needs_port()?, path }),
            _ => Err(bad("unknown scheme")),
        }
    }

    /// The URL `parse` reads this from.
    pub fn url(&self) -> String {
        let path = match self {
            Target::Http { path, .. } | Target::Ws { path, .. } | Target::Sse { path, .. } => path.as_str(),
            Target::Tcp { .. } => "",
        };
        let s = if self.tls() { "s" } else { "" };
        format!("{}{s}://{}{path}", self.transport(), self.authority())
    }

    /// Over TLS (`https://`, `wss://`).
    pub fn tls(&self) -> bool {
        matches!(self, Target::Http { tls: true, .. } | Target::Ws { tls: true, .. })
    }

    /// The host, without port (the name TLS checks the certificate against).
    pub fn host(&self) -> &str {
        let a = self.authority();
        let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `http`, `ws`, `tcp` or `sse`.
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Http { .. } => "http",
            Target::Ws { .. } => "ws",
            Target::Tcp { .. } => "tcp",
            Target::Sse { .. } => "sse",
        }
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        match self {
            Target::Http { authority, .. }
            | Target::Ws { authority, .. }
            | Target::Tcp { authority }
            | Target::Sse { authority, .. } => authority,
        }
    }

    /// Sockets one session holds (legacy SSE: the stream and the POSTs).
    pub fn sockets(&self) -> usize {
        if matches!(self, Target::Sse { .. }) {
            2
        } else {
            1
        }
    }
}

/// What the server did on an idle session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stir {
    /// It ended the connection.
    Closed,
    /// It sent something unasked (a notification, a ping, a close frame).
    Data,
}

enum Conn {
    /// `None`: closed (timed out, or ended by the server); dialled again before the next
    /// request, so that a session waiting for its next turn holds no socket.
    Http(Option<http1::Conn>),
    Sse {
        events: EventStream,
        /// Where POSTs go; `None` as for `Http`.
        post: Option<http1::Conn>,
        /// Where to POST (path and query), once known.
        endpoint: Option<String>,
    },
    Ws(ws1::Conn),
    Tcp(BufReader<TcpStream>),
}

/// One virtual client's connection and MCP session.
pub struct Session {
    target: Target,
    conn: Conn,
    source: Option<std::net::IpAddr>,
    /// The run's TLS settings and extra headers.
    wire: Arc<Wire>,
    session_id: Option<String>,
    cookie: Option<String>,
    /// The server forgot the session (HTTP 404): initialize again before the next request.
    pub expired: bool,
    /// The Streamable HTTP GET stream, held open when asked for (`--get-stream`).
    listen: Option<EventStream>,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ReplyError>,
    #[serde(default)]
    result: Option<ReplyResult>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ReplyError {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ReplyResult {
    #[serde(rename = "isError", default)]
    is_error: Option<bool>,
}

/// Classifies one JSON-RPC message: `None` if it is not the answer to `id` (a notification or
/// a server request to skip), else the outcome.
fn classify(text: &[u8], id: u64) -> Option<Result<(), Failure>> {
    let Ok(reply) = serde_json::from_slice::<Reply>(text) else { return Some(Err(not_an_answer(text))) };
    if reply.method.is_some() {
        return None; // a notification or request from the server
    }
    let protocol = |what: String| Some(Err(Failure::new(ErrorClass::Protocol, what)));
    let Some(got) = reply.id else { return protocol(format!("an answer without an id to request {id}")) };
    if got.get().parse::<u64>().ok() != Some(id) || got.get().starts_with('"') {
        return protocol(format!("the answer's id is {}, the request's {id}", got.get()));
    }
    Some(match (reply.error, reply.result) {
        (Some(e), _) => Err(Failure::new(ErrorClass::Jsonrpc, format!("JSON-RPC error {}: {}", e.code, e.message))),
        (None, Some(r)) if r.is_error == Some(true) => {
            Err(Failure::new(ErrorClass::ToolError, "the tool's result has isError: true"))
        }
        (None, Some(_)) => Ok(()),
        (None, None) => protocol(format!("answer {id} has neither result nor error")).expect("some"),
    })
}

/// A reply that is not the JSON-RPC answer it should be: the start of what came instead.
fn not_an_answer(text: &[u8]) -> Failure {
    let start = String::from_utf8_lossy(&text[..text.len().min(120)]).split_whitespace().collect::<Vec<_>>().join(" ");
    Failure::new(ErrorClass::Protocol, format!("not a JSON-RPC answer: {start:?}"))
}

/// Finds the answer to `id` in an SSE body (WHATWG format: any line ending, comments, events
/// dispatched on a blank line, `data` lines joined): what `pick` makes of it.
fn answer_in_sse<T>(body: &[u8], id: u64, pick: impl FnMut(&[u8]) -> Option<Result<T, Failure>>) -> Result<T, Failure> {
    in_sse(body, pick).unwrap_or_else(|| {
        Err(Failure::new(ErrorClass::Protocol, format!("no answer to request {id} in the event stream")))
    })
}

/// The first message event of an SSE body that `pick` knows.
fn in_sse<T>(body: &[u8], mut pick: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    // CRLF is one line ending, not a line end followed by an empty line.
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n").replace('\r', "\n");
    let mut data = String::new();
    let mut kind = String::new();
    for line in text.split('\n').chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() && (kind.is_empty() || kind == "message") {
                if let Some(found) = pick(data.as_bytes()) {
                    return Some(found);
                }
            }
            data.clear();
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) =
            line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
        match field {
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "event" => kind = value.to_string(),
            _ => {}
        }
    }
    None
}

/// Connects from `source` when given: bound with `IP_BIND_ADDRESS_NO_PORT`, so the port is
/// chosen at connect time per destination and each source address adds a full ephemeral
/// port range (the ~28K ports to one destination are the limit without it).
async fn dial(authority: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(authority).await };
    let addr = tokio::net::lookup_host(authority)
        .await?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address of the source's family"))?;
    let socket = if source.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    if source.is_ipv4() {
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
            .map_err(std::io::Error::from)?;
    }
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// A new connection to `target` from `source`, through TLS when the target asks for it.
async fn open_stream(target: &Target, source: Option<std::net::IpAddr>, wire: &Wire) -> Result<Stream, Failure> {
    let authority = target.authority();
    let failed = |e: std::io::Error| Failure::new(ErrorClass::Connect, format!("{authority}: {e}"));
    let tcp = dial(authority, source).await.map_err(failed)?;
    let _ = tcp.set_nodelay(true);
    wire.open(tcp, target.tls(), target.host()).await.map_err(failed)
}

impl Session {
    /// Opens the connection (nothing MCP yet), from `source` when given, with the run's TLS
    /// settings and headers.
    pub async fn connect(
        target: &Target,
        source: Option<std::net::IpAddr>,
        wire: Arc<Wire>,
    ) -> Result<Session, Failure> {
        let authority = target.authority();
        let mut session = Session {
            target: target.clone(),
            conn: Conn::Http(None),
            source,
            wire,
            session_id: None,
            cookie: None,
            expired: false,
            listen: None,
        };
        session.conn = match target {
            Target::Http { .. } => {
                Conn::Http(Some(http1::Conn::new(open_stream(target, source, &session.wire).await?)))
            }
            Target::Ws { path, subprotocol, .. } => {
                let stream = open_stream(target, source, &session.wire).await?;
                Conn::Ws(
                    ws1::Conn::handshake(stream, authority, path, *subprotocol, &session.wire.headers).await.map_err(
                        |e| Failure::new(ErrorClass::Connect, format!("WebSocket handshake with {authority}: {e}")),
                    )?,
                )
            }
            Target::Tcp { .. } => {
                let tcp = dial(authority, source)
                    .await
                    .map_err(|e| Failure::new(ErrorClass::Connect, format!("{authority}: {e}")))?;
                let _ = tcp.set_nodelay(true);
                Conn::Tcp(BufReader::with_capacity(4096, tcp))
            }
            Target::Sse { path, .. } => {
                let stream = open_stream(target, source, &session.wire).await?;
                let (events, sid) = EventStream::open(stream, authority, path, &session.wire.headers).await?;
                let post = open_stream(target, source, &session.wire).await?;
                session.session_id = sid;
                Conn::Sse { events, post: Some(http1::Conn::new(post)), endpoint: None }
            }
        };
        Ok(session)
    }

    /// `initialize` (id `id`) then `notifications/initialized`.
    pub async fn initialize(&mut self, id: u64) -> Result<(), Failure> {
        if !matches!(self.conn, Conn::Sse { .. }) {
            self.session_id = None;
        }
        self.expired = false;
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"swarmctl-load","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        self.call(init.into_bytes(), id).await?;
        self.notify(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()).await
    }

    async fn notify(&mut self, bytes: Vec<u8>) -> Result<(), Failure> {
        match &mut self.conn {
            Conn::Http(_) | Conn::Sse { .. } => {
                let res = self.post(bytes).await?;
                if res.0 != 202 && res.0 != 200 {
                    return Err(Failure::status(res.0, &res.2));
                }
                Ok(())
            }
            Conn::Ws(ws) => ws
                .send_text(&frame(bytes, &self.target))
                .await
                .map_err(|e| Failure::new(ErrorClass::Disconnect, e.to_string())),
            Conn::Tcp(stream) => {
                let mut b = bytes;
                b.push(b'\n');
                stream.get_mut().write_all(&b).await.map_err(|e| Failure::new(ErrorClass::Disconnect, e.to_string()))
            }
        }
    }

    /// The whole request: head for `method` with the session's headers, then `body`, in one
    /// buffer (one allocation per request).
    fn request_bytes(&self, method: &str, body: &[u8]) -> Vec<u8> {
        let path = match (&self.target, &self.conn) {
            (_, Conn::Sse { endpoint: Some(e), .. }) => e.as_str(),
            (Target::Http { path, .. } | Target::Sse { path, .. }, _) => path.as_str(),
            _ => unreachable!("HTTP only"),
        };
        let mut out = Vec::with_capacity(256 + path.len() + body.len());
        let mut put = |parts: &[&str]| parts.iter().for_each(|p| out.extend_from_slice(p.as_bytes()));
        put(&[method, " ", path, " HTTP/1.1\r\nHost: ", self.target.authority(), "\r\n"]);
        if method == "POST" {
            put(&["Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"]);
        }
        if let Some(sid) = &self.session_id {
            put(&["Mcp-Session-Id: ", sid, "\r\n"]);
            if matches!(self.conn, Conn::Http(_)) {
                put(&["MCP-Protocol-Version: 2025-11-25\r\n"]);
            }
        }
        if let Some(cookie) = &self.cookie {
            put(&["Cookie: ", cookie, "\r\n"]);
        }
        put(&[&self.wire.headers]);
        use std::io::Write as _;
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
        out
    }

    /// One request on the session's connection (dialled again first if the server closed it
    /// after its last answer); notes the session id and sticky cookies it gets.
    async fn exchange(&mut self, method: &str, bytes: &[u8]) -> Result<http1::Response, Failure> {
        let request = self.request_bytes(method, bytes);
        let (Conn::Http(slot) | Conn::Sse { post: slot, .. }) = &mut self.conn else { unreachable!("HTTP only") };
        let conn = match slot {
            Some(conn) => conn,
            None => slot.insert(http1::Conn::new(open_stream(&self.target, self.source, &self.wire).await?)),
        };
        let res = conn.request(request).await.map_err(|e| {
            let class = if e == WireError::Io { ErrorClass::Disconnect } else { ErrorClass::Protocol };
            Failure::new(class, format!("{}: {e}", self.target.authority()))
        })?;
        // Closing after its answer is HTTP, not a failure: the next request dials again.
        if res.close {
            *slot = None;
        }
        if let Some(sid) = &res.session_id {
            if self.session_id.as_ref() != Some(sid) {
                self.session_id = Some(sid.clone());
            }
        }
        // A load balancer's sticky cookie keeps the session on its replica.
        if !res.cookies.is_empty() {
            self.cookie = Some(res.cookies.join("; "));
        }
        Ok(res)
    }

    /// One POST; returns the status, whether the body is an SSE stream, and the body.
    async fn post(&mut self, bytes: Vec<u8>) -> Result<(u16, bool, Vec<u8>), Failure> {
        let res = self.exchange("POST", &bytes).await?;
        Ok((res.status, res.sse, res.body))
    }

    /// Sends request `bytes` (whose id is `id`) and waits for its answer.
    pub async fn call(&mut self, bytes: Vec<u8>, id: u64) -> Result<(), Failure> {
        if matches!(self.conn, Conn::Sse { .. }) {
            return self.call_sse(bytes, id).await;
        }
        self.answer(bytes, id, |t| classify(t, id)).await
    }

    /// Sends request `bytes` (whose id is `id`) and returns its answer's text, for the few
    /// questions asked before a run (`tools/list`); `None` on a legacy SSE session, which is
    /// not asked. `call` is the measured path and keeps nothing.
    pub async fn ask(&mut self, bytes: Vec<u8>, id: u64) -> Result<Option<String>, Failure> {
        if matches!(self.conn, Conn::Sse { .. }) {
            return Ok(None);
        }
        let text = |text: &[u8]| classify(text, id).map(|r| r.map(|()| String::from_utf8_lossy(text).into_owned()));
        self.answer(bytes, id, text).await.map(Some)
    }

    /// Sends request `bytes` (whose id is `id`) on a Streamable HTTP, WebSocket or TCP session
    /// and reads until `pick` knows the answer (what the server started meanwhile is skipped).
    async fn answer<T>(
        &mut self,
        bytes: Vec<u8>,
        id: u64,
        mut pick: impl FnMut(&[u8]) -> Option<Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let lost = |e: String| Failure::new(ErrorClass::Disconnect, e);
        match &mut self.conn {
            Conn::Http(_) => {
                let had_session = self.session_id.is_some();
                let (status, sse, body) = self.post(bytes).await?;
                match status {
                    200 => {}
                    404 if had_session => {
                        self.expired = true;
                        return Err(ErrorClass::SessionExpired.into());
                    }
                    _ => return Err(Failure::status(status, &body)),
                }
                if sse {
                    answer_in_sse(&body, id, pick)
                } else {
                    pick(&body).unwrap_or_else(|| Err(not_an_answer(&body)))
                }
            }
            Conn::Ws(ws) => {
                ws.send_text(&frame(bytes, &self.target)).await.map_err(|e| lost(e.to_string()))?;
                loop {
                    match ws.recv().await {
                        Ok(ws1::Message::Text(t)) => {
                            if let Some(found) = pick(t.trim_ascii_end()) {
                                return found;
                            }
                        }
                        Ok(ws1::Message::Binary) => {
                            return Err(Failure::new(ErrorClass::Protocol, "a binary WebSocket frame"))
                        }
                        Err(e) => return Err(lost(e.to_string())),
                    }
                }
            }
            Conn::Tcp(stream) => {
                let mut b = bytes;
                b.push(b'\n');
                stream.get_mut().write_all(&b).await.map_err(|e| lost(e.to_string()))?;
                let mut line = String::new();
                loop {
                    line.clear();
                    match stream.read_line(&mut line).await {
                        Ok(0) => return Err(lost("the connection closed under the request".into())),
                        Err(e) => return Err(lost(e.to_string())),
                        Ok(_) => {
                            if let Some(found) = pick(line.trim_end().as_bytes()) {
                                return found;
                            }
                        }
                    }
                }
            }
            Conn::Sse { .. } => unreachable!("legacy SSE answers on its stream: call_sse"),
        }
    }

    /// After the connection is lost (a request timed out or broke, or the server closed it
    /// while idle): whether the MCP session survives it.
    /// A Streamable HTTP session lives on the server under its id, so the next request just
    /// dials again, as an HTTP client would; initializing a new one instead would leave the
    /// old one behind on the server and, under overload, add two requests for every one that
    /// timed out. A WebSocket, TCP or legacy SSE session is gone with its connection.
    pub fn survives_lost_connection(&mut self) -> bool {
        let Conn::Http(conn) = &mut self.conn else { return false };
        *conn = None;
        true
    }

    /// Resolves when the server stirs the idle session's connection; never where there is
    /// nothing to watch (legacy SSE; an HTTP connection already known to be spent). Reads
    /// nothing, so the session's timer may cancel it.
    pub async fn stirred(&self) -> Stir {
        let closed = match &self.conn {
            Conn::Http(Some(conn)) => conn.stirred().await,
            Conn::Ws(ws) => ws.stirred().await,
            Conn::Tcp(stream) if !stream.buffer().is_empty() => false,
            Conn::Tcp(stream) => matches!(stream.get_ref().peek(&mut [0u8; 1]).await, Ok(0) | Err(_)),
            Conn::Http(_) | Conn::Sse { .. } => return std::future::pending().await,
        };
        if closed {
            Stir::Closed
        } else {
            Stir::Data
        }
    }

    /// Deals with what `stirred` saw, within `timeout`; `false` if the MCP session is gone
    /// with its connection (WebSocket, TCP). A Streamable HTTP session outlives its
    /// connection: it is dialled again before the next request, as any HTTP client would.
    pub async fn take_stir(&mut self, stir: Stir, timeout: std::time::Duration) -> bool {
        if self.survives_lost_connection() {
            return true;
        }
        let read = async {
            match &mut self.conn {
                // A message the server started (a notification): skipped, as `call` does.
                Conn::Ws(ws) => stir == Stir::Data && matches!(ws.recv().await, Ok(ws1::Message::Text(_))),
                Conn::Tcp(stream) => {
                    stir == Stir::Data && matches!(stream.read_line(&mut String::new()).await, Ok(n) if n > 0)
                }
                Conn::Http(_) | Conn::Sse { .. } => true,
            }
        };
        tokio::time::timeout(timeout, read).await.unwrap_or(false)
    }

    /// Ends the session politely: DELETE for Streamable HTTP sessions, a close frame for
    /// WebSocket.
    pub async fn close(mut self) {
        match &mut self.conn {
            Conn::Http(_) => {
                // With the sticky cookie: through a load balancer a DELETE without it reaches a
                // replica that does not know the session, which would then stay open there.
                if self.session_id.is_some() {
                    let _ = self.exchange("DELETE", b"").await;
                }
            }
            Conn::Ws(ws) => ws.close().await,
            Conn::Tcp(_) | Conn::Sse { .. } => {}
        }
    }

    /// Streamable HTTP: opens the session's GET stream (for messages the server starts) and
    /// holds it; a server that offers none (405) is fine.
    pub async fn listen(&mut self) -> Result<(), Failure> {
        let (Target::Http { authority, path, .. }, Some(sid)) = (&self.target, &self.session_id) else { return Ok(()) };
        let tcp = open_stream(&self.target, self.source, &self.wire).await?;
        let mut extra = format!("Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-11-25\r\n{}", self.wire.headers);
        if let Some(cookie) = &self.cookie {
            extra.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        match EventStream::open(tcp, authority, path, &extra).await {
            Ok((stream, _)) => self.listen = Some(stream),
            Err(f) if f.class == ErrorClass::HttpStatus => {} // 405: no stream offered, which the spec allows
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Legacy SSE: POST (to the announced endpoint, learnt first), then read the stream
    /// until the answer to `id` comes.
    async fn call_sse(&mut self, bytes: Vec<u8>, id: u64) -> Result<(), Failure> {
        let wait_endpoint = matches!(&self.conn, Conn::Sse { endpoint: None, .. });
        if wait_endpoint {
            let Conn::Sse { events, endpoint, .. } = &mut self.conn else { unreachable!("SSE") };
            let Target::Sse { path, .. } = &self.target else { unreachable!("SSE") };
            *endpoint = Some(if self.session_id.is_some() {
                // erlmcp's flavour: the stream's session header, POSTs to the same path.
                path.clone()
            } else {
                loop {
                    let (kind, data) =
                        events.next_event().await.map_err(|e| Failure::new(ErrorClass::Disconnect, e.to_string()))?;
                    if kind == "endpoint" {
                        break endpoint_path(&data);
                    }
                }
            });
        }
        let res = self.exchange("POST", &bytes).await?;
        match res.status {
            200 | 202 => {}
            404 => {
                self.expired = true;
                return Err(ErrorClass::SessionExpired.into());
            }
            _ => return Err(Failure::status(res.status, &res.body)),
        }
        // Some servers answer on the POST itself.
        if res.status == 200 && !res.body.is_empty() {
            if let Some(outcome) = classify(&res.body, id) {
                return outcome;
            }
        }
        let Conn::Sse { events, .. } = &mut self.conn else { unreachable!("SSE") };
        loop {
            let (kind, data) =
                events.next_event().await.map_err(|e| Failure::new(ErrorClass::Disconnect, e.to_string()))?;
            if kind.is_empty() || kind == "message" {
                if let Some(outcome) = classify(data.as_bytes(), id) {
                    return outcome;
                }
            }
        }
    }
}

/// The path (and query) of an `endpoint` event's URL, absolute or relative.
fn endpoint_path(data: &str) -> String {
    let d = data.trim();
    match d.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into()),
        None => d.to_string(),
    }
}

/// A legacy SSE stream, read as it comes: bytes off the socket, de-chunked, split into events.
/// Both buffers are given back to the allocator whenever they run empty, so an idle stream
/// holds next to nothing.
struct EventStream {
    tcp: Stream,
    chunked: bool,
    raw: Vec<u8>,
    text: Vec<u8>,
    ended: bool,
}

impl EventStream {
    /// GETs the stream; the session id, when the server sends it as a header.
    async fn open(
        mut tcp: Stream,
        authority: &str,
        path: &str,
        extra_headers: &str,
    ) -> Result<(EventStream, Option<String>), Failure> {
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n{extra_headers}\r\n");
        tcp.send(head.as_bytes()).await.map_err(|e| Failure::new(ErrorClass::Connect, e.to_string()))?;
        let mut buf = Vec::with_capacity(2048);
        let (res, len, framing) = loop {
            let n = tokio::io::AsyncReadExt::read_buf(&mut tcp, &mut buf)
                .await
                .map_err(|e| Failure::new(ErrorClass::Connect, e.to_string()))?;
            if n == 0 {
                return Err(Failure::new(
                    ErrorClass::Connect,
                    format!("{authority} closed the event stream before answering"),
                ));
            }
            match http1::parse_head(&buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) if buf.len() < 64 * 1024 => {
                    if buf.capacity() == buf.len() {
                        buf.reserve(2048);
                    }
                }
                _ => {
                    return Err(Failure::new(
                        ErrorClass::Protocol,
                        format!("{authority} answered the GET with no HTTP head"),
                    ))
                }
            }
        };
        if res.status != 200 {
            return Err(Failure::status(res.status, &buf[len..]));
        }
        if !res.sse {
            return Err(Failure::new(ErrorClass::Protocol, "the GET's answer is not text/event-stream"));
        }
        let mut s = EventStream {
            tcp,
            chunked: framing == http1::Framing::Chunked,
            raw: buf.split_off(len),
            text: Vec::new(),
            ended: false,
        };
        s.decode().map_err(|e| Failure::new(ErrorClass::Protocol, e.to_string()))?;
        Ok((s, res.session_id))
    }

    fn decode(&mut self) -> Result<(), WireError> {
        if self.chunked {
            self.ended |= http1::take_chunks(&mut self.raw, &mut self.text)?;
        } else {
            self.text.append(&mut self.raw);
        }
        if self.raw.is_empty() {
            self.raw = Vec::new();
        }
        Ok(())
    }

    /// The next event's type (empty when unnamed) and data.
    async fn next_event(&mut self) -> Result<(String, String), WireError> {
        loop {
            if let Some(ev) = self.split_event() {
                return Ok(ev);
            }
            if self.ended {
                return Err(WireError::Io);
            }
            self.raw.reserve(2048);
            let n = tokio::io::AsyncReadExt::read_buf(&mut self.tcp, &mut self.raw).await.map_err(|_| WireError::Io)?;
            if n == 0 {
                self.ended = true;
            }
            self.decode()?;
        }
    }

    /// Takes one complete event (up to a blank line) off the text read so far; comments and
    /// empty events are skipped.
    fn split_event(&mut self) -> Option<(String, String)> {
        loop {
            let end = blank_line(&self.text)?;
            let block: Vec<u8> = self.text.drain(..end.1).collect();
            if self.text.is_empty() {
                self.text = Vec::new();
            }
            let block = String::from_utf8_lossy(&block[..end.0]);
            let (mut kind, mut data) = (String::new(), String::new());
            for line in block.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) =
                    line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
                match field {
                    "event" => kind = value.to_string(),
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
            }
            if !data.is_empty() || !kind.is_empty() {
                return Some((kind, data));
            }
        }
    }
}

/// The first blank line in `t`: (where the event ends, where the next begins).
fn blank_line(t: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < t.len() {
        if t[i] == b'\n' {
            let next = i + 1;
            if t.get(next) == Some(&b'\n') {
                return Some((i, next + 1));
            }
            if t.get(next) == Some(&b'\r') && t.get(next + 1) == Some(&b'\n') {
                return Some((i, next + 2));
            }
        }
        i += 1;
    }
    None
}

fn frame(mut bytes: Vec<u8>, target: &Target) -> Vec<u8> {
    if matches!(target, Target::Ws { newline: true, .. }) {
        bytes.push(b'\n');
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The class and the detail of a classified failure.
    fn failed(outcome: Option<Result<(), Failure>>) -> (ErrorClass, String) {
        let f = outcome.expect("an answer").expect_err("a failure");
        (f.class, f.detail)
    }

    #[test]
    fn replies_are_classified_by_id_error_and_is_error() {
        assert_eq!(classify(br#"{"jsonrpc":"2.0","id":7,"result":{}}"#, 7), Some(Ok(())));
        assert_eq!(
            failed(classify(br#"{"jsonrpc":"2.0","id":7,"result":{"isError":true,"content":[]}}"#, 7)).0,
            ErrorClass::ToolError
        );
        assert_eq!(
            failed(classify(br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no tool x"}}"#, 7)),
            (ErrorClass::Jsonrpc, "JSON-RPC error -32601: no tool x".into())
        );
        assert_eq!(
            failed(classify(br#"{"jsonrpc":"2.0","id":8,"result":{}}"#, 7)),
            (ErrorClass::Protocol, "the answer's id is 8, the request's 7".into()),
            "wrong id"
        );
        assert_eq!(
            failed(classify(br#"{"jsonrpc":"2.0","id":"7","result":{}}"#, 7)).0,
            ErrorClass::Protocol,
            "a string id is another id"
        );
        assert_eq!(
            failed(classify(b"<html>\n  <body>Bad Gateway", 7)),
            (ErrorClass::Protocol, r#"not a JSON-RPC answer: "<html> <body>Bad Gateway""#.into())
        );
        assert_eq!(classify(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#, 7), None);
    }

    #[test]
    fn sse_bodies_in_every_line_ending_and_with_notifications() {
        let lf = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n";
        let classify_sse = |body: &[u8], id| answer_in_sse(body, id, |t| classify(t, id));
        assert_eq!(classify_sse(lf.as_bytes(), 3), Ok(()));
        let crlf = ": ping\r\nid: 1\r\ndata: \r\n\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\r\ndata: \"result\":{}}\r\n\r\n";
        assert_eq!(classify_sse(crlf.as_bytes(), 3), Ok(()), "priming event skipped, data lines joined");
        assert_eq!(classify_sse(b"event: keepalive\ndata: ping\n\n", 3).unwrap_err().class, ErrorClass::Protocol);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/mcp", false, false).unwrap(),
            Target::Http { authority: "127.0.0.1:8080".into(), path: "/mcp".into(), tls: false }
        );
        // Without a port: the scheme's own; TLS for https and wss; the host for the certificate.
        let https = Target::parse("https://mcp.example.com/mcp", false, false).unwrap();
        assert_eq!((https.authority(), https.tls(), https.host()), ("mcp.example.com:443", true, "mcp.example.com"));
        assert_eq!(https.url(), "https://mcp.example.com:443/mcp");
        let wss = Target::parse("wss://[::1]:8443/mcp/ws", false, false).unwrap();
        assert_eq!((wss.authority(), wss.tls(), wss.host()), ("[::1]:8443", true, "::1"));
        assert_eq!(Target::parse("ws://10.0.0.5/ws", false, false).unwrap().authority(), "10.0.0.5:80");
        assert!(matches!(
            Target::parse("ws://127.0.0.1:5555/mcp/ws", true, false).unwrap(),
            Target::Ws { subprotocol: true, .. }
        ));
        assert_eq!(Target::parse("tcp://127.0.0.1:7070", false, false).unwrap().transport(), "tcp");
        for bad in ["127.0.0.1:8080", "ftp://x:1/mcp", "http:///mcp", "tcp://host", "sse://host/sse"] {
            assert!(Target::parse(bad, false, false).is_err(), "{bad}");
        }
    }
}
