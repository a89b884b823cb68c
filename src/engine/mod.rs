//! The Docker Engine: the one module that talks to it (through bollard). Connection honours
//! `DOCKER_HOST` (unix:// or tcp://), else the local socket.
//!
//! - `swarm`: swarm state, init, nodes.
//! - `stack`: a stack's objects, found by their namespace label; create, update, remove.
//! - `converge`: waiting until services really run, failing fast with the scheduler's reason.
//! - `fleet`: a deployed service's replicas: tasks, kill, scale, usage, logs.
//! - `images`: building and finding images.
//! - `oneoff`: containers swarmctl runs itself (a load client inside the stack's network).

pub mod converge;
pub mod fleet;
pub mod images;
pub mod oneoff;
pub mod stack;
pub mod swarm;

use std::collections::HashMap;
use std::time::Duration;

pub use bollard::Docker;

/// Why the engine cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No engine answered.
    #[error("cannot reach the Docker Engine at {place}: {reason}. Start one (on Debian: `scripts/dev-env`), or point DOCKER_HOST at it")]
    Unreachable {
        /// Where we looked.
        place: String,
        /// What went wrong.
        reason: String,
    },
    /// The engine refused a call.
    #[error("{action}: {message}")]
    Api {
        /// What was being done, e.g. `create service mcp_server`.
        action: String,
        /// The engine's own message.
        message: String,
    },
    /// The node cannot run stacks.
    #[error("{0}")]
    NotManager(String),
    /// Something the stack should have is not there (the message says what to do).
    #[error("{0}")]
    Missing(String),
}

impl EngineError {
    /// Wraps a bollard error with what was being done.
    pub fn api(action: impl Into<String>, err: bollard::errors::Error) -> Self {
        EngineError::Api { action: action.into(), message: message(&err) }
    }
}

/// The engine's own message from a bollard error, without bollard's framing.
pub fn message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, status_code } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// True for a 404 from the engine.
pub fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Where a connection will look, for messages.
pub fn endpoint() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|h| format!("{h} (from DOCKER_HOST)"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Connects and pings, failing within a few seconds when nothing answers.
pub async fn connect() -> Result<Docker, EngineError> {
    let unreachable = |reason: String| EngineError::Unreachable { place: endpoint(), reason };
    let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no answer within 5 s".into())),
    }
}

/// `{"label": ["com.docker.stack.namespace=<stack>"]}`, the filter that finds a stack.
pub fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{}={stack}", crate::convert::LABEL_NAMESPACE)])])
}
