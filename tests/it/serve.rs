//! The reference server over real loopback sockets: every transport and method, malformed
//! input, sessions, faults, metrics and the drain.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::util::{http, start_server, INITIALIZE, MCP_HEADERS};

async fn session(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = http(addr, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).await;
    assert_eq!(status, 200, "{body}");
    headers["mcp-session-id"].to_str().unwrap().to_string()
}

fn with_session(sid: &str) -> Vec<(&str, &str)> {
    let mut h = MCP_HEADERS.to_vec();
    h.push(("mcp-session-id", sid));
    h.push(("mcp-protocol-version", "2025-11-25"));
    h
}

#[tokio::test]
async fn streamable_http_session_lifecycle() {
    let s = start_server(&[]).await;
    let addr = s.addr("--http");
    let (status, headers, body) = http(addr, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert!(sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()), "{sid}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25");

    let h = with_session(&sid);
    let (status, _, body) =
        http(addr, "POST", "/mcp", &h, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    assert_eq!((status, body.as_str()), (202, ""));
    let (status, _, body) = http(
        addr,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["id"].clone(), v["result"]["content"][0]["text"].clone()), (json!(2), json!("hello")));

    // Missing and unknown sessions, then DELETE and the 404 that follows it.
    let (status, _, _) = http(addr, "POST", "/mcp", &MCP_HEADERS, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#).await;
    assert_eq!(status, 400);
    let bogus = with_session("00000000000000000000000000000000");
    let (status, _, body) = http(addr, "POST", "/mcp", &bogus, r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = http(addr, "DELETE", "/mcp", &h, "").await;
    assert_eq!(status, 200);
    let (status, _, _) = http(addr, "POST", "/mcp", &h, r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#).await;
    assert_eq!(status, 404, "a deleted session is gone");
    let (status, headers, _) = http(addr, "GET", "/mcp", &[("accept", "text/event-stream")], "").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST, DELETE");
    s.stop.cancel();
    s.done.await.unwrap().unwrap();
}

#[tokio::test]
async fn streamable_http_rejects_bad_requests_clearly() {
    let s = start_server(&["--max-body", "1k"]).await;
    let addr = s.addr("--http");
    let sid = session(addr).await;
    let h = with_session(&sid);
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, Option<i64>);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("content-type", "text/plain"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-session-id", &sid),
            ],
            INITIALIZE.into(),
            415,
            Some(-32600),
        ),
        (
            vec![("content-type", "application/json"), ("accept", "text/html"), ("mcp-session-id", &sid)],
            INITIALIZE.into(),
            406,
            Some(-32600),
        ),
        (h.clone(), "{not json".into(), 400, Some(-32700)),
        (h.clone(), r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.into(), 400, Some(-32600)),
        (h.clone(), r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into(), 400, Some(-32600)),
        (
            h.clone(),
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
                "x".repeat(2000)
            ),
            413,
            Some(-32600),
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-session-id", &sid),
                ("mcp-protocol-version", "1999-01-01"),
            ],
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into(),
            400,
            Some(-32600),
        ),
    ];
    for (headers, body, want_status, want_code) in cases {
        let (status, _, text) = http(addr, "POST", "/mcp", &headers, &body).await;
        assert_eq!(status, want_status, "{body:.60}: {text}");
        if let Some(code) = want_code {
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON-RPC error body expected: {text}"));
            assert_eq!(v["error"]["code"], code, "{text}");
        }
    }
    // Errors inside a valid request come back as JSON-RPC errors with the request's id.
    let (status, _, text) = http(addr, "POST", "/mcp", &h, r#"{"jsonrpc":"2.0","id":"x","method":"nope"}"#).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!("x"), json!(-32601)));
    // The connection survives all of it: the same session still answers.
    let (status, _, _) = http(addr, "POST", "/mcp", &h, r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sse_replies_follow_the_whatwg_format() {
    let s = start_server(&["--sse-replies"]).await;
    let addr = s.addr("--http");
    let (status, headers, body) = http(addr, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(body.starts_with("event: message\ndata: {"), "{body}");
    assert!(body.ends_with("}\n\n"), "{body:?}");
    let data = body.trim_end().strip_prefix("event: message\ndata: ").unwrap();
    assert!(!data.contains('\n'));
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["id"], 1);
}

#[tokio::test]
async fn stateless_mode_needs_no_session() {
    let s = start_server(&["--stateless"]).await;
    let addr = s.addr("--http");
    let (status, headers, _) = http(addr, "POST", "/mcp", &MCP_HEADERS, INITIALIZE).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("mcp-session-id"));
    let (status, _, body) =
        http(addr, "POST", "/mcp", &MCP_HEADERS, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http(addr, "DELETE", "/mcp", &[("mcp-session-id", "x")], "").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn modern_era_requests_are_answered_statelessly() {
    let s = start_server(&[]).await;
    let addr = s.addr("--http");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let mut h = MCP_HEADERS.to_vec();
    h.push(("mcp-protocol-version", "2026-07-28"));
    let (status, _, text) = http(addr, "POST", "/mcp", &h, body).await;
    assert_eq!(status, 400, "Mcp-Method is required: {text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"]["code"], -32020);
    h.push(("mcp-method", "tools/call"));
    let (status, _, text) = http(addr, "POST", "/mcp", &h, body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["content"][0]["text"], "hi");
}

#[tokio::test]
async fn legacy_sse_announces_the_endpoint_and_replies_on_the_stream() {
    let s = start_server(&["--sse", "127.0.0.1:0"]).await;
    let addr = s.addr("--sse");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(format!("GET /sse HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reader = BufReader::new(&mut read);
    let mut endpoint = None;
    let mut line = String::new();
    while endpoint.is_none() {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            endpoint = Some(d.to_string());
        }
    }
    let endpoint = endpoint.unwrap();
    assert!(endpoint.starts_with("/sse?session_id="), "{endpoint}");
    let (status, _, body) = http(
        addr,
        "POST",
        &endpoint,
        &[("content-type", "application/json")],
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#,
    )
    .await;
    assert_eq!((status, body.as_str()), (202, "Accepted"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        line.clear();
        tokio::time::timeout_at(deadline.into(), reader.read_line(&mut line))
            .await
            .expect("reply on the stream")
            .unwrap();
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            assert_eq!(v["id"], 5);
            assert_eq!(v["result"]["structuredContent"]["result"], 3.0);
            break;
        }
    }
    let (status, _, _) = http(
        addr,
        "POST",
        "/sse?session_id=nope",
        &[("content-type", "application/json")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 404);
}

async fn ws_connect(
    url: &str,
    subprotocol: Option<&str>,
) -> (tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Option<String>) {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut().insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let host = req.uri().authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let (ws, res) = tokio_tungstenite::client_async(req, tcp).await.expect("websocket handshake");
    let proto = res.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    (ws, proto)
}

#[tokio::test]
async fn websocket_speaks_one_message_per_frame() {
    let s = start_server(&[]).await;
    let url = format!("ws://{}/mcp/ws", s.addr("--ws"));
    let (mut ws, proto) = ws_connect(&url, Some("mcp")).await;
    assert_eq!(proto.as_deref(), Some("mcp"), "the mcp subprotocol is echoed");
    ws.send(WsMessage::Text(INITIALIZE.into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap()["id"], 1);
    ws.send(WsMessage::Text(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into())).await.unwrap();
    ws.send(WsMessage::Text("{broken".into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap()["error"]["code"],
        -32700,
        "no reply to the notification, an error for the garbage"
    );
    ws.send(WsMessage::Text(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#.into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(serde_json::from_str::<Value>(&reply).unwrap(), json!({"jsonrpc":"2.0","id":2,"result":{}}));
    ws.send(WsMessage::Binary(vec![1u8, 2].into())).await.unwrap();
    match ws.next().await {
        Some(Ok(WsMessage::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("binary frames close with 1003, got {other:?}"),
    }
    let (_ws, proto) = ws_connect(&url, None).await;
    assert_eq!(proto, None, "no subprotocol when none is offered");
}

#[tokio::test]
async fn websocket_newline_framing_like_erlmcp() {
    let s = start_server(&["--ws-newline"]).await;
    let url = format!("ws://{}/mcp/ws", s.addr("--ws"));
    let (mut ws, _) = ws_connect(&url, None).await;
    // A message split over two frames is answered once its newline arrives.
    ws.send(WsMessage::Text(r#"{"jsonrpc":"2.0","id":1,"#.into())).await.unwrap();
    ws.send(WsMessage::Text("\"method\":\"ping\"}\n".into())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(reply.ends_with("}\n"), "{reply:?}");
    assert_eq!(serde_json::from_str::<Value>(reply.trim_end()).unwrap()["id"], 1);
}

#[tokio::test]
async fn tcp_is_newline_delimited() {
    let s = start_server(&[]).await;
    let stream = tokio::net::TcpStream::connect(s.addr("--tcp")).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(format!("{INITIALIZE}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"message\":\"tcp\"}}}}}}\n").as_bytes()).await.unwrap();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["id"], 1);
    let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(second["result"]["content"][0]["text"], "tcp");
}

#[tokio::test]
async fn metrics_count_exactly_what_was_sent() {
    let s = start_server(&[]).await;
    let addr = s.addr("--http");
    let sid = session(addr).await;
    let h = with_session(&sid);
    for i in 0..25 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"fail"}}}}"#);
        http(addr, "POST", "/mcp", &h, &body).await;
    }
    let (status, headers, text) = http(s.addr("--metrics"), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    for line in [
        "mcp_requests_total{method=\"initialize\",transport=\"http\"} 1",
        "mcp_requests_total{method=\"tools/call\",transport=\"http\"} 25",
        "mcp_request_errors_total{method=\"tools/call\",code=\"tool_error\"} 25",
        "mcp_request_duration_seconds_count{method=\"tools/call\"} 25",
        "mcp_sessions_active 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
    }
    assert_eq!(s.metrics.requests_total("tools/call"), 25);
    let (status, _, body) = http(s.addr("--metrics"), "GET", "/health", &[], "").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn faults_latency_errors_drops_and_caps() {
    let s = start_server(&["--stateless", "--latency", "30ms", "--error-ratio", "0.5"]).await;
    let addr = s.addr("--http");
    let (mut errors, started) = (0, Instant::now());
    for i in 0..40 {
        let (_, _, text) =
            http(addr, "POST", "/mcp", &MCP_HEADERS, &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#)).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["error"]["code"] == -32603 {
            errors += 1;
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(40 * 30), "latency is added");
    assert!((8..=32).contains(&errors), "about half are injected errors: {errors}");

    let s = start_server(&["--stateless", "--drop-ratio", "1"]).await;
    let stream = tokio::net::TcpStream::connect(s.addr("--http")).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Full<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)))
        .unwrap();
    assert!(send.send_request(req).await.is_err(), "the connection is closed instead of answered");

    let s = start_server(&["--max-connections", "2"]).await;
    let a = tokio::net::TcpStream::connect(s.addr("--tcp")).await.unwrap();
    let b = tokio::net::TcpStream::connect(s.addr("--tcp")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(s.addr("--tcp")).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), tokio::io::AsyncReadExt::read(&mut c, &mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed at once");
    drop((a, b));
    let (_, _, text) = http(s.addr("--metrics"), "GET", "/metrics", &[], "").await;
    assert!(text.contains("mcp_connections_refused_total 1"), "{text}");

    let s = start_server(&["--slow-start", "2s"]).await;
    let (status, _, body) = http(s.addr("--http"), "GET", "/health", &[], "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"));
}

#[tokio::test]
async fn drain_finishes_in_flight_requests_then_stops() {
    let s = start_server(&["--stateless", "--drain-timeout", "5s"]).await;
    let addr = s.addr("--http");
    let slow = tokio::spawn(async move {
        http(
            addr,
            "POST",
            "/mcp",
            &MCP_HEADERS,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":700}}}"#,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s.stop.cancel();
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request is answered: {body}");
    assert!(body.contains("slept 700 ms"));
    tokio::time::timeout(Duration::from_secs(5), s.done).await.expect("exits after draining").unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listeners are closed");
}

#[test]
fn sigterm_drains_the_real_process() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["serve", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("serving --http 127.0.0.1:"), "{line}");
    let started = Instant::now();
    // SAFETY-free: kill(1) with the child's own PID, which this test started.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn serve_refuses_nonsense_with_a_clear_message() {
    let state = tempfile::tempdir().unwrap();
    let out = crate::util::swarmctl(&["serve"], state.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to serve"));
    let out = crate::util::swarmctl(&["serve", "--http", "127.0.0.1:0", "--error-ratio", "2"], state.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ratio from 0 to 1"));
    let out = crate::util::swarmctl(&["serve", "--http", "127.0.0.1:0", "--latency", "soon"], state.path());
    assert_eq!(out.status.code(), Some(2));
}

/// The `builtin` image runs the command the stack renders: it must be a valid `serve` command
/// line, with the healthcheck probing a path that serve really answers.
#[test]
fn rendered_builtin_command_is_a_valid_serve_command_line() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(subcommand)]
        cmd: swarmctl::cli::Command,
    }
    for (stack, _) in swarmctl::config::BUILTIN_STACKS {
        let (config, rendered) = crate::util::render_builtin(stack);
        if config.server.image != "builtin" {
            continue;
        }
        let server = &rendered.compose.services["server"];
        let args = server.command.clone().expect("builtin gets a command");
        let parsed = Wrap::try_parse_from(std::iter::once("swarmctl".to_string()).chain(args.clone()))
            .unwrap_or_else(|e| panic!("{stack}: {args:?}: {e}"));
        let swarmctl::cli::Command::Serve(opts) = parsed.cmd else { panic!("{stack}: not a serve command") };
        assert_eq!(opts.http.map(|a| a.port()), Some(8080), "{stack}");
        assert_eq!(opts.metrics.map(|a| a.port()), config.server.metrics_port, "{stack}");
        let test = server.healthcheck.as_ref().and_then(|h| h.test.clone()).unwrap();
        assert_eq!(test[..3], ["CMD", "/swarmctl", "probe"], "{stack}");
        let metrics = config.server.metrics_port.unwrap();
        assert_eq!(test[3], format!("http://127.0.0.1:{metrics}{}", opts.health_path), "{stack}");
        assert_eq!(Some(&opts.health_path), config.server.health_path.as_ref(), "{stack}");
    }
}
