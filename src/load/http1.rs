//! The load engine's HTTP/1.1 client connection: one request at a time on a keep-alive
//! socket, owned by its session. No connection task and no buffers kept while the session is
//! idle (a hyper client connection keeps a task and about 16 KiB of buffers per connection,
//! which at 100,000 sessions is the difference between fitting and not). Responses are read
//! with `httparse`; bodies framed by Content-Length, chunked encoding or the connection's end.

use super::stream::Stream;
use tokio::io::AsyncReadExt;

/// What went wrong on the wire.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed under the request.
    #[error("the connection failed or was closed")]
    Io,
    /// The answer is not HTTP/1.1 as the client reads it.
    #[error("the answer is not HTTP/1.1 (or not a WebSocket frame) as expected")]
    Malformed,
    /// A WebSocket upgrade answered with another status than 101: which one tells a load
    /// balancer's refusal (503: no replica) from a replica's.
    #[error("the upgrade was answered with HTTP {0}, not 101")]
    Refused(u16),
}

/// The parts of a response the load engine uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Mcp-Session-Id`.
    pub session_id: Option<String>,
    /// The `name=value` part of every `Set-Cookie`.
    pub cookies: Vec<String>,
    /// `Content-Type: text/event-stream`.
    pub sse: bool,
    /// The server will close the connection after this response.
    pub close: bool,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// One keep-alive connection.
pub struct Conn {
    stream: Stream,
}

impl Conn {
    /// Over an open socket.
    pub fn new(stream: Stream) -> Self {
        Conn { stream }
    }

    /// Sends `request` (head and body, whole) and reads the whole response.
    pub async fn request(&mut self, request: Vec<u8>) -> Result<Response, WireError> {
        self.stream.send(&request).await.map_err(|_| WireError::Io)?;
        drop(request);
        read_response(&mut self.stream).await
    }

    /// Resolves when the server sends something (`false`) or closes the connection (`true`)
    /// between requests; reads nothing (cancel-safe). Either way the connection is spent: a
    /// server says nothing unasked on HTTP/1.1 except before it closes.
    pub async fn stirred(&self) -> bool {
        matches!(self.stream.tcp().peek(&mut [0u8; 1]).await, Ok(0) | Err(_))
    }
}

async fn fill(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<usize, WireError> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buf.capacity().max(4096));
    }
    let n = stream.read_buf(buf).await.map_err(|_| WireError::Io)?;
    Ok(n)
}

async fn read_response(stream: &mut Stream) -> Result<Response, WireError> {
    // Most answers fit in 1 KiB, which the allocator serves from its per-thread cache; a
    // larger one grows the buffer.
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let (mut res, head_len, framing) = loop {
        if fill(stream, &mut buf).await? == 0 {
            return Err(WireError::Io);
        }
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(WireError::Malformed);
        }
    };
    let mut rest = buf.split_off(head_len);
    drop(buf);
    res.body = match framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => {
            if n > MAX_BODY {
                return Err(WireError::Malformed);
            }
            while rest.len() < n {
                rest.reserve(n - rest.len());
                if fill(stream, &mut rest).await? == 0 {
                    return Err(WireError::Io);
                }
            }
            rest.truncate(n);
            rest
        }
        Framing::Chunked => loop {
            match dechunk(&rest)? {
                Some(body) => break body,
                None if rest.len() > MAX_BODY => return Err(WireError::Malformed),
                None => {
                    if fill(stream, &mut rest).await? == 0 {
                        return Err(WireError::Io);
                    }
                }
            }
        },
        Framing::UntilClose => {
            while fill(stream, &mut rest).await? > 0 {
                if rest.len() > MAX_BODY {
                    return Err(WireError::Malformed);
                }
            }
            res.close = true;
            rest
        }
    };
    Ok(res)
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The response head, when complete: the response without its body, the head's length, and
/// how the body is framed.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(Response, usize, Framing)>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(WireError::Malformed),
    };
    let status = r.code.ok_or(WireError::Malformed)?;
    let mut res = Response { status, close: r.version == Some(0), ..Default::default() };
    let (mut length, mut chunked) = (None, false);
    for h in r.headers.iter() {
        let v = h.value;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<usize>().ok());
            length = Some(n.ok_or(WireError::Malformed)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("mcp-session-id") {
            res.session_id = std::str::from_utf8(v).ok().map(str::to_owned);
        } else if h.name.eq_ignore_ascii_case("set-cookie") {
            if let Some(pair) = std::str::from_utf8(v).ok().and_then(|c| c.split(';').next()) {
                res.cookies.push(pair.trim().to_string());
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            res.sse = v.trim_ascii_start().starts_with(b"text/event-stream");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.eq_ignore_ascii_case(b"close") {
                res.close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                res.close = false;
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::UntilClose
    };
    Ok(Some((res, len, framing)))
}

/// A complete chunked body, de-chunked; `None` while more is needed.
fn dechunk(data: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&data[at..]) else { return Ok(None) };
        let line = std::str::from_utf8(&data[at..at + eol]).map_err(|_| WireError::Malformed)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| WireError::Malformed)?;
        at += eol + 2;
        if size == 0 {
            // Trailers (ignored), up to the blank line.
            loop {
                let Some(eol) = find_crlf(&data[at..]) else { return Ok(None) };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(body));
                }
            }
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[at..at + size]);
        if &data[at + size..at + size + 2] != b"\r\n" {
            return Err(WireError::Malformed);
        }
        at += size + 2;
    }
}

/// Moves every complete chunk at the start of `raw` into `out` (for a body read as it streams,
/// such as an event stream); true once the last chunk has come.
pub(super) fn take_chunks(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, WireError> {
    let mut at = 0;
    let ended = loop {
        let Some(eol) = find_crlf(&raw[at..]) else { break false };
        let line = std::str::from_utf8(&raw[at..at + eol]).map_err(|_| WireError::Malformed)?;
        let size =
            usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| WireError::Malformed)?;
        if size == 0 {
            break true;
        }
        let start = at + eol + 2;
        if raw.len() < start + size + 2 {
            break false;
        }
        out.extend_from_slice(&raw[start..start + size]);
        at = start + size + 2;
    };
    raw.drain(..at);
    Ok(ended)
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_session_cookies_and_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: abc\r\n\
Set-Cookie: lb=s1; Path=/; HttpOnly\r\nset-cookie: other=2\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let (r, len, framing) = parse_head(raw).unwrap().unwrap();
        assert_eq!(&raw[len..], b"rest");
        assert_eq!(framing, Framing::Chunked);
        assert_eq!((r.status, r.sse, r.close), (200, true, false));
        assert_eq!(r.session_id.as_deref(), Some("abc"));
        assert_eq!(r.cookies, ["lb=s1", "other=2"]);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap(), None);
        let (_, _, f) = parse_head(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert_eq!(f, Framing::Empty);
        let (r, _, f) = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert_eq!((f, r.close), (Framing::UntilClose, true));
        let (r, _, f) = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!((f, r.close), (Framing::Length(5), true), "HTTP/1.0 closes unless kept alive");
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(WireError::Malformed));
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(WireError::Malformed));
    }

    #[test]
    fn streamed_chunks_are_taken_as_they_complete() {
        let (mut raw, mut out) = (b"5\r\nhello\r\n3\r\nab".to_vec(), Vec::new());
        assert_eq!(take_chunks(&mut raw, &mut out), Ok(false));
        assert_eq!((out.as_slice(), raw.as_slice()), (&b"hello"[..], &b"3\r\nab"[..]));
        raw.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert_eq!(take_chunks(&mut raw, &mut out), Ok(true));
        assert_eq!(out, b"helloabc");
    }

    #[test]
    fn chunked_bodies_are_joined_when_complete() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n").unwrap(), Some(b"hello world".to_vec()));
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\nTrailer: t\r\n\r\n").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(dechunk(b"5\r\nhel").unwrap(), None);
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\n").unwrap(), None, "the final blank line is still to come");
        assert_eq!(dechunk(b"z\r\n"), Err(WireError::Malformed));
        assert_eq!(dechunk(b"2\r\nabXX"), Err(WireError::Malformed));
    }
}
