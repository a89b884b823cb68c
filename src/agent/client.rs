//! swarmctl's side of the agent's wire: one HTTP/1.1 call per connection, bounded in time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use serde::de::DeserializeOwned;

use super::{Hello, Sent, Signal};
use crate::engine::Usage;

/// Why a call to an agent did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// Nothing answered in time.
    #[error("the agent at {addr} does not answer: {reason}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered with an error.
    #[error("the agent at {addr} refused ({status}): {message}")]
    Refused {
        /// host:port.
        addr: String,
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

/// One agent, at its node's address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    token: String,
    timeout: Duration,
}

impl Client {
    /// The agent at `addr` (host:port), called with `token`.
    pub fn new(addr: impl Into<String>, token: impl Into<String>) -> Client {
        Client { addr: addr.into(), token: token.into(), timeout: Duration::from_secs(5) }
    }

    /// The same agent, each call given at most `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Where it is.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Who it is.
    pub async fn hello(&self) -> Result<Hello, AgentError> {
        self.call(Method::GET, "/v1/hello", None).await
    }

    /// Sends `signal` to `container`.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<Sent, AgentError> {
        let body = serde_json::to_vec(&Signal { container: container.into(), signal: signal.into() })
            .expect("a signal serializes");
        self.call(Method::POST, "/v1/signal", Some(body)).await
    }

    /// Probes, sets or clears netem on `container`'s network.
    pub async fn netem(&self, container: &str, order: crate::netem::Order) -> Result<super::NetemDone, AgentError> {
        let body =
            serde_json::to_vec(&super::Netem { container: container.into(), order }).expect("a netem order serializes");
        // A helper container is created, run (30 s at most) and removed on the node: the wait
        // outlasts the agent's, so that a clear never overtakes a set still running there.
        let patient = Client { addr: self.addr.clone(), token: self.token.clone(), timeout: Duration::from_secs(75) };
        patient.call(Method::POST, "/v1/netem", Some(body)).await
    }

    /// One sample of `container`'s CPU time and memory.
    pub async fn usage(&self, container: &str) -> Result<Usage, AgentError> {
        self.call(Method::GET, &format!("/v1/usage/{container}"), None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, AgentError> {
        let unreachable = |reason: String| AgentError::Unreachable { addr: self.addr.clone(), reason };
        let (host, port) = self
            .addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']'), p.parse::<u16>().ok()?)))
            .ok_or_else(|| unreachable("the address is no host:port".into()))?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(e.to_string()))?;
        let (status, bytes) = tokio::time::timeout(self.timeout, crate::http::exchange(host, port, req))
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(|e| unreachable(crate::error_text(&e)))?;
        if status != 200 {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(AgentError::Refused { addr: self.addr.clone(), status, message });
        }
        serde_json::from_slice(&bytes).map_err(|e| unreachable(format!("an answer that is not the agent's: {e}")))
    }
}
