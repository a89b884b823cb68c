//! Opens N MCP sessions against a server and holds them idle: the client half of
//! `scripts/bench-server`'s memory-per-connection measurement.
//!
//! Usage: `hold_connections URL COUNT HOLD_SECS` where URL is `ws://host:port/path`
//! (WebSocket: handshake + initialize per connection) or `http://host:port/path` (Streamable
//! HTTP: initialize + notifications/initialized on one keep-alive connection each). Prints
//! `held N` once every session is open, then holds them for HOLD_SECS and exits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hold","version":"1"}}}"#;

enum Held {
    Ws(#[allow(dead_code)] Box<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>),
    Http(#[allow(dead_code)] hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

async fn open(url: &str) -> Result<Held, Box<dyn std::error::Error>> {
    if url.starts_with("ws://") {
        let req = url.into_client_request()?;
        let tcp = tokio::net::TcpStream::connect(req.uri().authority().unwrap().as_str()).await?;
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
        ws.send(Message::Text(INITIALIZE.into())).await?;
        ws.next().await.ok_or("closed before the initialize reply")??;
        return Ok(Held::Ws(Box::new(ws)));
    }
    let uri: hyper::Uri = url.parse()?;
    let authority = uri.authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(&authority).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let post = |body: &'static str, sid: Option<String>| {
        let mut req = hyper::Request::post(uri.path())
            .header("host", &authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(sid) = sid {
            req = req.header("mcp-session-id", sid).header("mcp-protocol-version", "2025-11-25");
        }
        req.body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
    };
    let res = send.send_request(post(INITIALIZE, None)).await?;
    let sid = res.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_string());
    res.into_body().collect().await?;
    let res = send.send_request(post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, sid)).await?;
    res.into_body().collect().await?;
    Ok(Held::Http(send))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, count, hold] = args.as_slice() else {
        eprintln!("usage: hold_connections URL COUNT HOLD_SECS");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let hold: u64 = hold.parse().expect("HOLD_SECS is a number");
    let started = Instant::now();
    let mut held = Vec::with_capacity(count);
    let mut failures = 0;
    // Open in waves so the server's accept queue never overflows.
    while held.len() + failures < count {
        let wave = (count - held.len() - failures).min(500);
        let results = futures_util::future::join_all((0..wave).map(|_| open(url))).await;
        for r in results {
            match r {
                Ok(h) => held.push(h),
                Err(e) => {
                    failures += 1;
                    if failures <= 5 {
                        eprintln!("session failed: {e}");
                    }
                }
            }
        }
    }
    println!("held {} ({} failed) in {:.1}s", held.len(), failures, started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
}
