//! `swarmctl agent`: a small HTTP/1.1 server on one node that acts on that node's containers of
//! one stack, for the swarmctl that holds its token.
//!
//! - `GET /v1/hello`: its node, stack and version.
//! - `POST /v1/signal` `{"container", "signal"}`: sends the signal; when the engine was asked
//!   and when it answered, by this node's clock.
//! - `GET /v1/usage/<container>`: one sample of the container's CPU time and memory.
//!
//! Every call needs `Authorization: Bearer <token>`; a container that is not a task of the
//! stack's services is refused (403) whatever the token: the socket it holds could do anything
//! on the node, the agent does only this.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::{Hello, Netem, NetemDone, Sent, Signal, LABEL_SERVICE, SIGNALS};
use crate::engine::{EngineError, Handle};
use crate::units::unix_now_ms;

/// One node's agent.
pub struct Agent {
    /// This node's engine.
    pub engine: Handle,
    /// The stack it acts on.
    pub stack: String,
    /// This node's ID.
    pub node: String,
    /// The token callers must present.
    pub token: String,
    /// The image helper containers run in (its own).
    pub image: String,
}

/// Serves on `listener` until `stop`.
pub async fn serve(agent: Arc<Agent>, listener: tokio::net::TcpListener, stop: CancellationToken) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("agent: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let agent = agent.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| {
                let agent = agent.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&agent, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())));
    *res.status_mut() = status;
    res.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    res
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, &serde_json::json!({ "error": message.into() }))
}

/// Equal without an early exit, so that timing does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(agent: &Agent, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(presented.as_bytes(), agent.token.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "a valid token is needed (Authorization: Bearer …)");
    }
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/hello") => reply(
            StatusCode::OK,
            &Hello {
                node: agent.node.clone(),
                stack: agent.stack.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                clock_us: (super::clock::now_ms() * 1000.0) as u64,
            },
        ),
        (Method::POST, "/v1/signal") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the request: {e}")),
            };
            let order: Signal = match serde_json::from_slice(&body) {
                Ok(o) => o,
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, format!("expected {{\"container\", \"signal\"}}: {e}"))
                }
            };
            if !SIGNALS.contains(&order.signal.as_str()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("signal {} is not one the agent sends ({})", order.signal, SIGNALS.join(", ")),
                );
            }
            if let Err(res) = of_the_stack(agent, &order.container).await {
                return res;
            }
            let asked_ms = unix_now_ms();
            match agent.engine.kill(&order.container, &order.signal).await {
                Ok(()) => reply(
                    StatusCode::OK,
                    &Sent { node: agent.node.clone(), container: order.container, asked_ms, done_ms: unix_now_ms() },
                ),
                Err(e) => engine_error(e),
            }
        }
        (Method::POST, "/v1/netem") => {
            let body = match Limited::new(req.into_body(), 4096).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the request: {e}")),
            };
            let order: Netem = match serde_json::from_slice(&body) {
                Ok(o) => o,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"container\", \"order\"}}: {e}")),
            };
            if let Err(res) = of_the_stack(agent, &order.container).await {
                return res;
            }
            if agent.image.is_empty() {
                return error(StatusCode::CONFLICT, "this agent was started without --image: it cannot run netem");
            }
            let asked_ms = unix_now_ms();
            match crate::agent::netem_in(agent.engine.as_ref(), &order.container, &agent.image, &order.order).await {
                Ok(outcome) => reply(
                    StatusCode::OK,
                    &NetemDone { node: agent.node.clone(), outcome, asked_ms, done_ms: unix_now_ms() },
                ),
                Err(e) => engine_error(e),
            }
        }
        (Method::GET, p) if p.starts_with("/v1/usage/") => {
            let container = &p["/v1/usage/".len()..];
            if let Err(res) = of_the_stack(agent, container).await {
                return res;
            }
            match agent.engine.usage(container).await {
                Ok(u) => reply(StatusCode::OK, &u),
                Err(e) => engine_error(e),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "the agent answers GET /v1/hello, POST /v1/signal, POST /v1/netem, GET /v1/usage/<container>",
        ),
    }
}

fn engine_error(e: EngineError) -> Response<Full<Bytes>> {
    let status = if e.is_not_found() { StatusCode::NOT_FOUND } else { StatusCode::BAD_GATEWAY };
    error(status, e.to_string())
}

/// A container ID or name as the engine makes them: nothing that could change the Engine API
/// path it is put into.
fn plausible_id(container: &str) -> bool {
    container.len() <= 128
        && container.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && container.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The container is a swarm task of the stack (its namespace label is the stack's, exactly:
/// a service-name prefix would also match stack `demo_prod` for stack `demo`), on this node.
async fn of_the_stack(agent: &Agent, container: &str) -> Result<(), Response<Full<Bytes>>> {
    if !plausible_id(container) {
        return Err(error(StatusCode::BAD_REQUEST, format!("`{container}` is not a container ID or name")));
    }
    let labels = agent.engine.container_labels(container).await.map_err(engine_error)?;
    let stack = labels.get(crate::convert::LABEL_NAMESPACE).map(String::as_str).unwrap_or("");
    let service = labels.get(LABEL_SERVICE).map(String::as_str).unwrap_or("");
    if stack == agent.stack && !service.is_empty() {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "container {container} is not a task of stack {} (stack `{stack}`, service `{service}`): the agent acts on nothing else",
                agent.stack
            ),
        ))
    }
}
