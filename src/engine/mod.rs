//! The Docker Engine: one seam (`Engine`) for everything swarmctl asks of a swarm, in its own
//! types. `docker` implements it with bollard (the only place bollard's client is used);
//! `fake` implements it in memory for unit tests of apply, convergence and the phases' actions.
//!
//! - `swarm`: swarm membership, init, nodes.
//! - `stack`: a stack's objects, found by their namespace label; create, update, remove.
//! - `converge`: waiting until services really run, failing fast with the scheduler's reason.
//! - `credentials`: registry logins as the docker CLI keeps them, for pushes and pulls.
//! - `fleet`: a deployed stack's tasks as the phases see them (the load balancer's entries).
//! - `oneoff`: containers swarmctl runs itself (a load client inside the stack's network).

pub mod converge;
pub mod credentials;
pub mod docker;
#[cfg(test)]
pub(crate) mod fake;
pub mod fleet;
pub mod oneoff;
pub mod stack;
pub mod swarm;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use bollard::auth::DockerCredentials as Credentials;
use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use serde::{Deserialize, Serialize};

pub use crate::plan::topology::NodeInfo;
pub use crate::plan::Observed;
pub use docker::Bollard;

/// A shared handle on an engine: what commands and phases hold.
pub type Handle = Arc<dyn Engine>;

/// What swarmctl asks of a swarm. Spec types are the Engine API's own (the desired stack is
/// made of them); everything read back is swarmctl's.
#[async_trait]
pub trait Engine: Send + Sync {
    /// This engine's place in a swarm.
    async fn membership(&self) -> Result<Membership, EngineError>;
    /// `swarm init` listening on 0.0.0.0:2377, advertising `advertise` (the engine's choice
    /// when `None`); the new node's ID.
    async fn init_swarm(&self, advertise: Option<&str>) -> Result<String, EngineError>;
    /// Leaves the swarm (forcefully: a last manager cannot leave otherwise).
    async fn leave_swarm(&self) -> Result<(), EngineError>;
    /// The engine's wall clock, Unix milliseconds (its `SystemTime`, to the millisecond).
    async fn clock_ms(&self) -> Result<u64, EngineError>;
    /// Every node of the swarm.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError>;
    /// Sets a node's availability: `active`, `pause` or `drain` (its tasks move elsewhere).
    async fn set_availability(&self, node: &str, availability: &str) -> Result<(), EngineError>;

    /// Everything labelled with stack `stack`.
    async fn observe(&self, stack: &str) -> Result<Observed, EngineError>;
    /// Creates a network.
    async fn create_network(&self, spec: NetworkCreateRequest) -> Result<(), EngineError>;
    /// Creates a config.
    async fn create_config(&self, spec: ConfigSpec) -> Result<(), EngineError>;
    /// Creates a secret; its ID.
    async fn create_secret(&self, spec: SecretSpec) -> Result<String, EngineError>;
    /// Creates a service; the engine's warnings. `auth`, when given, goes with it to the
    /// swarm, which hands it to the nodes that pull the service's image.
    async fn create_service(&self, spec: ServiceSpec, auth: Option<Credentials>) -> Result<Vec<String>, EngineError>;
    /// Replaces a service's spec (at its current version, keeping its force-update counter,
    /// unless the spec sets one: then the counter moves on and every task is replaced); the
    /// engine's warnings. Without `auth`, the service keeps the credentials it has.
    async fn update_service(
        &self,
        name: &str,
        spec: ServiceSpec,
        auth: Option<Credentials>,
    ) -> Result<Vec<String>, EngineError>;
    /// Removes an object by ID or name; `Ok(false)` when it was not there.
    async fn remove(&self, kind: Object, id: &str) -> Result<bool, EngineError>;
    /// Containers of the stack still on this node, running or not.
    async fn stack_containers(&self, stack: &str) -> Result<usize, EngineError>;
    /// True when a volume of this name exists.
    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError>;
    /// Creates a named volume.
    async fn create_volume(&self, spec: &crate::convert::VolumeSpec) -> Result<(), EngineError>;
    /// Names of the volumes labelled with stack `stack`.
    async fn stack_volumes(&self, stack: &str) -> Result<Vec<String>, EngineError>;

    /// A service's replica count and update state.
    async fn service(&self, name: &str) -> Result<ServiceInfo, EngineError>;
    /// The tasks of `service`, with the engine's timestamps (dead ones too: the engine keeps a
    /// few per slot); only those of its current spec when `current_only`.
    async fn tasks(&self, service: &str, current_only: bool) -> Result<Vec<Task>, EngineError>;
    /// Sends a signal to a container (SIGKILL: a crash, not a stop).
    async fn kill(&self, container: &str, signal: &str) -> Result<(), EngineError>;
    /// A container's labels (swarm labels a task's container with its stack and service).
    async fn container_labels(&self, container: &str) -> Result<HashMap<String, String>, EngineError>;
    /// One sample of a container's CPU time and memory.
    async fn usage(&self, container: &str) -> Result<Usage, EngineError>;
    /// The logs of a service's tasks, at most `tail` lines, and whether they came whole within
    /// `limit`.
    async fn service_logs(&self, service: &str, tail: usize, limit: Duration) -> Result<(String, bool), EngineError>;
    /// Follows the output of a service's tasks from their start, one line at a time (the
    /// manager gathers them from every node), until the service is removed or the receiver
    /// dropped.
    fn follow_service_logs(&self, service: &str) -> tokio::sync::mpsc::Receiver<Result<String, EngineError>>;

    /// True when an image with this tag is on this node.
    async fn image_exists(&self, tag: &str) -> Result<bool, EngineError> {
        Ok(self.image_id(tag).await?.is_some())
    }
    /// The ID (`sha256:…`) of the image with this tag on this node, if it is there.
    async fn image_id(&self, tag: &str) -> Result<Option<String>, EngineError>;
    /// Pushes an image (`registry/repository:tag`) to its registry, logged in with `auth`.
    async fn push_image(&self, reference: &str, auth: Option<Credentials>) -> Result<(), EngineError>;
    /// Builds `contents` as `tags[0]`, adds the other tags; the image ID.
    async fn build_image(
        &self,
        contents: &crate::image::Contents,
        tags: &[String],
        labels: &[(String, String)],
    ) -> Result<String, EngineError>;

    /// The addresses of `service`'s running tasks on `network`, by slot.
    async fn task_addresses(&self, network: &str, service: &str) -> Result<Vec<(i64, String)>, EngineError>;
    /// Creates and starts a container of swarmctl's own; its ID.
    async fn start_container(&self, spec: &oneoff::Spec) -> Result<String, EngineError>;
    /// Waits until a container exits; its exit code.
    async fn wait_container(&self, id: &str) -> Result<i64, EngineError>;
    /// A container's last `tail` lines of output.
    async fn container_logs(&self, id: &str, tail: usize) -> String;
    /// Removes a container, running or not.
    async fn remove_container(&self, id: &str) -> Result<(), EngineError>;
    /// Runs `image` with `args` to completion in `container`'s network namespace, with
    /// NET_ADMIN (and nothing else of its), then removes it: its exit code and output.
    async fn run_in_netns(&self, container: &str, image: &str, args: Vec<String>)
        -> Result<(i64, String), EngineError>;
}

/// This engine's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// `active`, `inactive`, `pending`, `error`, `locked`.
    pub state: String,
    /// It can manage the swarm.
    pub manager: bool,
    /// Its node's ID in the swarm (empty outside one).
    pub node_id: String,
}

/// Stack objects that are removed by ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A service.
    Service,
    /// A config.
    Config,
    /// A secret.
    Secret,
    /// A network.
    Network,
    /// A volume.
    Volume,
}

/// A service as the phases and the convergence wait read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    /// Service ID.
    pub id: String,
    /// Replicas it is set to (1 for a global service: one per node is its own count).
    pub replicas: u64,
    /// Where its latest update stands, when it had one.
    pub update: Option<UpdateState>,
    /// When that update reached its state (completed, rolled back, …; started while it runs),
    /// Unix milliseconds: a rollback that ended before a wait began is history to that wait.
    pub update_at_ms: Option<u64>,
    /// The image its current spec runs.
    pub image: String,
}

/// Where a service's latest update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateState {
    /// In progress.
    Updating,
    /// Completed: every task runs the new spec.
    Completed,
    /// Paused (its failure action).
    Paused(String),
    /// Being rolled back (its failure action).
    RollingBack(String),
    /// Rolled back: every task runs the previous spec again.
    RolledBack(String),
    /// The rollback itself paused.
    RollbackPaused(String),
}

/// One task of a service, with what the engine says about it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Task {
    /// Task ID.
    pub id: String,
    /// Slot (replicated services).
    pub slot: i64,
    /// The node it was scheduled on (its ID).
    #[serde(default)]
    pub node: String,
    /// The task's container, once it has one.
    pub container: Option<String>,
    /// Current state (`running`, `pending`, `failed`, …).
    pub state: String,
    /// True when the orchestrator wants it running.
    pub desired_running: bool,
    /// When the engine created the task (Unix ms).
    pub created_ms: Option<u64>,
    /// When it reached its current state (Unix ms).
    pub state_since_ms: Option<u64>,
    /// The task's error (the scheduler's reason while pending, the exit for a failed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The task's message or error.
    pub message: String,
    /// The image the task runs (its spec's, as swarm pinned it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Host-mode ports the engine published for this task: (container port, host port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<(u16, u16)>,
}

impl Task {
    /// Runs now and is meant to.
    pub fn is_running(&self) -> bool {
        self.desired_running && self.state == "running"
    }

    /// Why it is in its state, as the engine says: its error, else its message.
    pub fn reason(&self) -> String {
        self.error.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| self.message.clone())
    }
}

/// A container's cumulative CPU time and current memory, as one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// When sampled (Unix ms).
    pub at_ms: u64,
    /// CPU time used since the container started, ns.
    pub cpu_ns: u64,
    /// Memory in use, without reclaimable page cache, bytes.
    pub memory_bytes: u64,
}

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
    /// The engine answered 404: the object (a container, a service) is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::Api { message, .. } if message.ends_with("(HTTP 404)"))
    }

    /// A refusal with the engine's message.
    pub fn refused(action: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Api { action: action.into(), message: message.into() }
    }
}

/// The scheme, host and port of a DOCKER_HOST URL that names a remote engine (`tcp://`,
/// `http://`, `https://`, `ssh://[user@]host[:port]`, IPv6 hosts in brackets).
pub fn remote_host(url: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "tcp" | "http" | "https" | "ssh") {
        return None;
    }
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    (!host.is_empty()).then_some((scheme, host, port.filter(|p| !p.is_empty())))
}

/// Where a connection will look, for messages.
pub fn endpoint() -> String {
    let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
    let certs = std::env::var("DOCKER_CERT_PATH").unwrap_or_else(|_| "~/.docker".into());
    match std::env::var("DOCKER_HOST").ok().filter(|v| !v.is_empty()) {
        Some(h) if tls && (h.starts_with("tcp://") || h.starts_with("https://")) => format!(
            "{h} (from DOCKER_HOST, over TLS with ca.pem, cert.pem and key.pem from {certs} (DOCKER_CERT_PATH))"
        ),
        Some(h) if h.starts_with("https://") => {
            format!("{h} (from DOCKER_HOST, over TLS with the certificates in {certs} (DOCKER_CERT_PATH))")
        }
        Some(h) if h.starts_with("ssh://") => {
            format!("{h} (from DOCKER_HOST, through the ssh client: its keys and ~/.ssh/config apply)")
        }
        Some(h) => format!("{h} (from DOCKER_HOST)"),
        None => "unix:///var/run/docker.sock".into(),
    }
}

/// Connects to the engine DOCKER_HOST (or the local socket) names and pings it, failing within
/// a few seconds when nothing answers.
pub async fn connect() -> Result<Bollard, EngineError> {
    Bollard::connect().await
}

/// The same, as the handle commands and phases share.
pub async fn handle() -> Result<Handle, EngineError> {
    Ok(Arc::new(connect().await?))
}

/// `{"label": ["com.docker.stack.namespace=<stack>"]}`, the filter that finds a stack.
pub fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{}={stack}", crate::convert::LABEL_NAMESPACE)])])
}
