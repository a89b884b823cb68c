//! swarmctl's own plain HTTP/1.1 calls: one request per connection, to Prometheus, health
//! routes (the builtin image's healthcheck) and the agents. The load engine has its own client
//! (`load::http1`): these calls are few and need none of its bookkeeping.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Sends `req` to `host:port` on a connection of its own; the status and the body. No time
/// bound: the caller gives one, with its own words for it.
pub async fn exchange<B>(host: &str, port: u16, req: hyper::Request<B>) -> anyhow::Result<(u16, Bytes)>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// GETs `path` (with its query) from `host:port`; the status and the body.
pub async fn get(host: &str, port: u16, path: &str, timeout: Duration) -> anyhow::Result<(u16, Bytes)> {
    let req =
        hyper::Request::get(path).header(hyper::header::HOST, format!("{host}:{port}")).body(Empty::<Bytes>::new())?;
    tokio::time::timeout(timeout, exchange(host, port, req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {host}:{port}{path}"))?
}
