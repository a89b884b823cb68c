//! The Docker Engine: the one module that talks to it (through bollard). Connection honours
//! `DOCKER_HOST` (unix:// or tcp://), else the local socket.

use std::time::Duration;

use bollard::Docker;

/// Why the engine cannot be used.
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
