//! The TCP transport: newline-delimited JSON-RPC, one connection per session.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::http::App;
use super::metrics::Transport;
use super::ws::{answer_on, Reply};

/// Serves one TCP connection until the client leaves or the server drains.
pub async fn serve(app: Arc<App>, stream: TcpStream, max_message: usize) {
    app.mcp.metrics.connection(Transport::Tcp, 1);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(4096, read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::select! {
            r = read_line(&mut reader, &mut line, max_message) => r,
            _ = app.closing.cancelled() => break,
        };
        match n {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match answer_on(&app.mcp, &line, Transport::Tcp).await {
            Reply::None => {}
            Reply::Send(notes, body) => {
                let mut out = Vec::with_capacity(body.len() + 1);
                for msg in notes.iter().chain(std::iter::once(&body)) {
                    out.extend_from_slice(msg);
                    out.push(b'\n');
                }
                if write.write_all(&out).await.is_err() {
                    break;
                }
            }
            Reply::Drop => break,
        }
    }
    app.mcp.metrics.connection(Transport::Tcp, -1);
}

/// Reads one line, refusing lines longer than `max` (the connection is then closed).
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(buf.len());
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&available[..=i]);
                r.consume(i + 1);
                return Ok(buf.len());
            }
            None => {
                let n = available.len();
                buf.extend_from_slice(available);
                r.consume(n);
                if buf.len() > max {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
                }
            }
        }
    }
}
