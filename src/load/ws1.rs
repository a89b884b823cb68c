//! The load engine's WebSocket client connection (RFC 6455, client side): the upgrade, masked
//! text frames out, frames in. Like `http1`, the session owns its socket and nothing else while
//! idle: tungstenite keeps a boxed 4 KiB read chunk, buffers and a frame codec per connection
//! (9.4 KiB per idle session measured, against 4.8 for HTTP), which decides whether 100,000
//! sessions fit in 8 KiB each.

use super::stream::Stream;
use base64::Engine as _;
use sha1::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http1::WireError;
use crate::mix::{splitmix64, GOLDEN};

/// Largest message accepted (frames of one message together).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest upgrade response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A message the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (payload bytes, UTF-8 as the server sent them).
    Text(Vec<u8>),
    /// A binary message, which MCP does not use.
    Binary,
}

/// One upgraded connection.
pub struct Conn {
    stream: Stream,
    /// Bytes read past the last whole frame; empty (no allocation) between messages.
    pending: Vec<u8>,
    /// Masking keys: RFC 6455 asks for unpredictable keys to protect intermediaries from
    /// browser scripts; a load client has no scripts, so a fast generator does.
    rng: u64,
}

impl Conn {
    /// Upgrades `stream` to a WebSocket at `path` on `authority`, offering the `mcp`
    /// subprotocol when asked; checks the server's accept key.
    pub async fn handshake(
        mut stream: Stream,
        authority: &str,
        path: &str,
        subprotocol: bool,
        headers: &str,
    ) -> Result<Conn, WireError> {
        let mut rng = seed();
        let key = base64::engine::general_purpose::STANDARD
            .encode([next(&mut rng), next(&mut rng)].map(u64::to_le_bytes).concat());
        let proto = if subprotocol { "Sec-WebSocket-Protocol: mcp\r\n" } else { "" };
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{proto}{headers}\r\n"
        );
        stream.send(head.as_bytes()).await.map_err(|_| WireError::Io)?;
        let mut buf = Vec::with_capacity(1024);
        let len = loop {
            if stream.read_buf(&mut buf).await.map_err(|_| WireError::Io)? == 0 {
                return Err(WireError::Io);
            }
            if let Some(len) = check_upgrade(&buf, &key)? {
                break len;
            }
            if buf.len() > MAX_HEAD {
                return Err(WireError::Malformed);
            }
        };
        let pending = if buf.len() > len { buf.split_off(len) } else { Vec::new() };
        Ok(Conn { stream, pending, rng })
    }

    /// Sends one text message, in one frame.
    pub async fn send_text(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let frame = encode(0x1, payload, next(&mut self.rng) as u32);
        self.stream.send(&frame).await.map_err(|_| WireError::Io)
    }

    /// The next data message; answers pings on the way. A close frame or the end of the
    /// connection is `WireError::Io`.
    pub async fn recv(&mut self) -> Result<Message, WireError> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let Some(frame) = parse(&self.pending)? else {
                if self.pending.capacity() - self.pending.len() < 512 {
                    self.pending.reserve(2048);
                }
                if self.stream.read_buf(&mut self.pending).await.map_err(|_| WireError::Io)? == 0 {
                    return Err(WireError::Io);
                }
                continue;
            };
            let payload = self.pending[frame.start..frame.end].to_vec();
            self.pending.drain(..frame.end);
            if self.pending.is_empty() {
                // Idle sessions hold no buffer.
                self.pending = Vec::new();
            }
            match frame.opcode {
                0x8 => {
                    let _ = self.stream.send(&encode(0x8, &payload, next(&mut self.rng) as u32)).await;
                    return Err(WireError::Io);
                }
                0x9 => {
                    let pong = encode(0xA, &payload, next(&mut self.rng) as u32);
                    self.stream.send(&pong).await.map_err(|_| WireError::Io)?;
                }
                0xA => {}
                0x0 => {
                    let Some((_, data)) = message.as_mut() else { return Err(WireError::Malformed) };
                    data.extend_from_slice(&payload);
                    if data.len() > MAX_MESSAGE {
                        return Err(WireError::Malformed);
                    }
                }
                0x1 | 0x2 if message.is_none() => message = Some((frame.opcode, payload)),
                _ => return Err(WireError::Malformed),
            }
            if frame.fin && frame.opcode <= 0x2 {
                return match message.take() {
                    Some((0x1, data)) => Ok(Message::Text(data)),
                    Some(_) => Ok(Message::Binary),
                    None => Err(WireError::Malformed),
                };
            }
        }
    }

    /// Resolves when the server sends something (`false`) or ends the connection (`true`) while
    /// the session waits; reads nothing, so a timer may cancel it without losing a byte. An idle
    /// MCP client learns of a dead server this way at once, not at its next request.
    pub async fn stirred(&self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        matches!(self.stream.tcp().peek(&mut [0u8; 1]).await, Ok(0) | Err(_))
    }

    /// Sends a normal-closure close frame and ends the connection (the server's answer is not
    /// waited for: nothing more is read from this session).
    pub async fn close(&mut self) {
        let frame = encode(0x8, &1000u16.to_be_bytes(), next(&mut self.rng) as u32);
        let _ = self.stream.send(&frame).await;
        let _ = self.stream.shutdown().await;
    }
}

fn seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut s = nanos ^ COUNTER.fetch_add(GOLDEN, Ordering::Relaxed);
    next(&mut s) | 1
}

/// The next splitmix64 output of `state`.
fn next(state: &mut u64) -> u64 {
    let z = splitmix64(*state);
    *state = state.wrapping_add(GOLDEN);
    z
}

/// The length of the upgrade response head once it is whole and says yes; an error if it says
/// anything else.
fn check_upgrade(buf: &[u8], key: &str) -> Result<Option<usize>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WireError::Malformed),
    };
    match r.code {
        Some(101) => {}
        Some(status) => return Err(WireError::Refused(status)),
        None => return Err(WireError::Malformed),
    }
    let mut sha = sha1::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let expected = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let accepted = r
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value.trim_ascii() == expected.as_bytes());
    if !accepted {
        return Err(WireError::Malformed);
    }
    Ok(Some(len))
}

/// A client frame: always masked, FIN set.
fn encode(opcode: u8, payload: &[u8], mask: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = mask.to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    start: usize,
    end: usize,
}

/// The first whole frame in `buf`, a server's frame (never masked).
fn parse(buf: &[u8]) -> Result<Option<Frame>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0F);
    if buf[0] & 0x70 != 0 || buf[1] & 0x80 != 0 {
        // No extension was negotiated, and servers must not mask.
        return Err(WireError::Malformed);
    }
    let (len, at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize, 10),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_MESSAGE {
        return Err(WireError::Malformed);
    }
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some(Frame { fin, opcode, start: at, end: at + len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_masked_with_the_right_length_forms() {
        let f = encode(0x1, b"hi", 0x01020304);
        assert_eq!(f, [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        assert_eq!(&encode(0x1, &[0; 300], 0)[..4], &[0x81, 0x80 | 126, 1, 44]);
        assert_eq!(&encode(0x2, &[0; 70_000], 0)[..10], &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn server_frames_parse_when_whole() {
        assert_eq!(parse(&[0x81, 2, b'o']).unwrap(), None);
        assert_eq!(parse(&[0x81, 2, b'o', b'k']).unwrap(), Some(Frame { fin: true, opcode: 1, start: 2, end: 4 }));
        assert_eq!(parse(&[0x01, 126, 0]).unwrap(), None);
        let mut long = vec![0x01, 126, 1, 0];
        long.extend([b'x'; 256]);
        assert_eq!(parse(&long).unwrap(), Some(Frame { fin: false, opcode: 1, start: 4, end: 260 }));
        assert_eq!(parse(&[0x81, 0x82, 0, 0, 0, 0, 1, 2]), Err(WireError::Malformed), "servers do not mask");
        assert_eq!(parse(&[0xC1, 0]), Err(WireError::Malformed), "no extension was agreed");
    }

    #[test]
    fn the_upgrade_needs_101_and_the_key_answer() {
        // The RFC 6455 §1.3 example pair.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_upgrade(ok, key), Ok(Some(ok.len())));
        assert_eq!(check_upgrade(&ok[..40], key), Ok(None));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(check_upgrade(wrong, key), Err(WireError::Malformed));
        assert_eq!(check_upgrade(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", key), Err(WireError::Refused(503)));
    }
}
