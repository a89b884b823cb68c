//! The WebSocket transport: one JSON-RPC message per text frame, the `mcp` subprotocol when
//! the client offers it, and optionally erlmcp's framing (every message ends with `\n`, and
//! a frame without one is buffered until the newline arrives).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::mcp::{self, Answer, Era, Mcp, Message};
use super::metrics::Transport;
use super::Body;

/// WebSocket settings.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// URL path.
    pub path: String,
    /// erlmcp framing: messages end with `\n`.
    pub newline: bool,
    /// Largest message accepted.
    pub max_message: usize,
}

/// Answers the upgrade request and hands the connection to [`serve`].
pub fn upgrade(
    mcp: Arc<Mcp>,
    closing: CancellationToken,
    opts: WsOptions,
    req: &mut Request<Incoming>,
) -> Response<Body> {
    // Holding the accepting connection's slot keeps --max-connections true after the upgrade.
    let slot = req.extensions_mut().remove::<super::ConnSlot>();
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get("sec-websocket-key").cloned();
    let (true, Some(key)) = (is_upgrade, key) else {
        let mut res = Response::new(
            Full::new(Bytes::from_static(b"this path speaks WebSocket: send an Upgrade request\n")).boxed(),
        );
        *res.status_mut() = StatusCode::UPGRADE_REQUIRED;
        res.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return res;
    };
    let offers_mcp = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mcp");
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Small buffers: an idle session should cost kilobytes, not the 128 KiB default.
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = 4096;
        config.write_buffer_size = 0;
        config.max_message_size = Some(opts.max_message);
        config.max_frame_size = Some(opts.max_message);
        let stream = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        serve(mcp, closing, stream, opts.newline).await;
        drop(slot);
    });
    let mut res = Response::new(Full::new(Bytes::new()).boxed());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header"),
    );
    if offers_mcp {
        h.insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
    }
    res
}

/// Reads messages and answers them in order until the client leaves or the server drains.
pub async fn serve<S>(mcp: Arc<Mcp>, closing: CancellationToken, mut ws: WebSocketStream<S>, newline: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    mcp.metrics.connection(Transport::Ws, 1);
    let mut pending = String::new();
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = closing.cancelled() => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "server draining".into() })).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Binary(_))) => {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Unsupported,
                        reason: "MCP messages are text frames".into(),
                    }))
                    .await;
                break;
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue, // ping/pong are answered by tungstenite
        };
        let messages: Vec<String> = if newline {
            pending.push_str(text.as_str());
            let mut complete = Vec::new();
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                if !line.trim().is_empty() {
                    complete.push(line);
                }
            }
            complete
        } else {
            vec![text.as_str().to_owned()]
        };
        for msg in messages {
            match answer_on(&mcp, msg.as_bytes(), Transport::Ws).await {
                Reply::None => {}
                Reply::Send(notes, body) => {
                    for mut frame in notes.into_iter().chain(std::iter::once(body)) {
                        if newline {
                            frame.push(b'\n');
                        }
                        let text = String::from_utf8(frame).expect("JSON is UTF-8");
                        if ws.send(WsMessage::Text(text.into())).await.is_err() {
                            mcp.metrics.connection(Transport::Ws, -1);
                            return;
                        }
                    }
                }
                Reply::Drop => {
                    mcp.metrics.connection(Transport::Ws, -1);
                    return; // dropping the stream closes the socket without a close frame
                }
            }
        }
    }
    mcp.metrics.connection(Transport::Ws, -1);
}

/// What a message-oriented transport (WebSocket, TCP) sends back for one message.
pub(crate) enum Reply {
    /// Nothing (a notification).
    None,
    /// Notifications sent while the request ran, then the response.
    Send(Vec<Vec<u8>>, Vec<u8>),
    /// Close the connection (fault injection).
    Drop,
}

/// Answers one message on a message-oriented transport (a session is the connection itself).
pub(crate) async fn answer_on(mcp: &Mcp, bytes: &[u8], transport: Transport) -> Reply {
    match mcp::parse(bytes) {
        Err(rejected) => Reply::Send(vec![], rejected.body),
        Ok(Message::Notification { method }) => {
            mcp.notify(&method, transport);
            Reply::None
        }
        Ok(Message::Response) => Reply::None,
        Ok(Message::Request { id, method, params }) => {
            match mcp.call(transport, Era::Handshake, id, &method, params).await {
                Answer::Reply { notes, body, .. } => Reply::Send(notes, body),
                Answer::Drop => Reply::Drop,
            }
        }
    }
}
