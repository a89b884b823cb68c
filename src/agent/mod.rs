//! The agent: swarmctl's hands on the nodes the Engine API cannot reach. Swarm has no container
//! calls across nodes, so a test run deploys the builtin image (this binary) as a global
//! service, `swarmctl agent`, with each node's engine socket mounted, for as long as the run
//! lasts; swarmctl reaches it at each node's address on a host-mode port, with a per-run token
//! held in a swarm secret. It kills (or signals) a container of the stack on its node, saying
//! when its engine acted, and reads the CPU and memory of the stack's containers there.
//!
//! - `serve`: the agent itself (`swarmctl agent`).
//! - `client`: swarmctl's side of the wire.
//! - `reach`: one way to act on any task of the stack, on this engine's node directly and on
//!   the others through their agent; deploys the agents and removes them.

pub mod client;
pub mod clock;
pub mod reach;
pub mod serve;

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, Mount,
    MountType, ServiceSpec, ServiceSpecMode, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use serde::{Deserialize, Serialize};

pub use reach::Reach;

/// The host-mode port every agent listens on, on its node.
pub const PORT: u16 = 28470;

/// Label on the agent's service and secret, with the stack's name (`down` removes them).
pub const LABEL: &str = "swarmctl.agent";

/// Where the token is mounted in the agent's container.
pub const TOKEN_FILE: &str = "/run/secrets/swarmctl-agent-token";

/// Signals the agent sends; anything else is refused.
pub const SIGNALS: &[&str] = &["SIGKILL", "SIGTERM", "SIGSTOP", "SIGCONT"];

/// The label swarm puts on every task's container: the service it belongs to.
pub const LABEL_SERVICE: &str = "com.docker.swarm.service.name";

/// The agent service's name for a stack (and its token secret's: one of each per stack, so
/// that `down` and the next run find what a crashed run left).
pub fn service_name(stack: &str) -> String {
    format!("swarmctl-agent-{stack}")
}

/// What an agent says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Its node's ID.
    pub node: String,
    /// The stack whose containers it acts on.
    pub stack: String,
    /// Its swarmctl version.
    pub version: String,
    /// Its node's clock when it answered, Unix microseconds (0 from an agent that predates it).
    #[serde(default)]
    pub clock_us: u64,
}

/// A signal to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The container (ID or name).
    pub container: String,
    /// `SIGKILL`, `SIGTERM`, `SIGSTOP` or `SIGCONT`.
    pub signal: String,
}

/// A signal sent, with the node's clock around the engine's call (`Reach` moves the times onto
/// the caller's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Where.
    pub node: String,
    /// Which container.
    pub container: String,
    /// When the engine was asked (Unix ms).
    pub asked_ms: u64,
    /// When the engine answered that it was done (Unix ms).
    pub done_ms: u64,
}

/// What to do to a container's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Netem {
    /// The container (ID or name).
    pub container: String,
    /// Probe, apply or clear.
    pub order: crate::netem::Order,
}

/// Netem set or cleared, with the node's clock around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetemDone {
    /// Where.
    pub node: String,
    /// The interfaces, and those with netem afterwards.
    pub outcome: crate::netem::Outcome,
    /// When the helper was asked for (Unix ms).
    pub asked_ms: u64,
    /// When it had finished (Unix ms).
    pub done_ms: u64,
}

/// Runs `swarmctl netem` in `container`'s network namespace (a helper container of `image`,
/// with NET_ADMIN, removed afterwards) on this engine, and reads what it says it left.
pub async fn netem_in(
    engine: &dyn crate::engine::Engine,
    container: &str,
    image: &str,
    order: &crate::netem::Order,
) -> Result<crate::netem::Outcome, crate::engine::EngineError> {
    let (code, output) = engine.run_in_netns(container, image, order.args()).await?;
    let said = output.lines().rev().find_map(|l| serde_json::from_str::<crate::netem::Outcome>(l.trim()).ok());
    match (code, said) {
        (0, Some(outcome)) => Ok(outcome),
        _ => Err(crate::engine::EngineError::refused(
            format!("netem in container {container}"),
            format!("the helper exited {code}: {}", output.trim()),
        )),
    }
}

/// The agent's global service: the builtin image on every node but this engine's
/// (`except_node`), the engine socket mounted, the token secret, a host-mode port. Pure, so
/// that it is pinned by a snapshot.
pub fn spec(stack: &str, image: &str, port: u16, secret: (&str, &str), except_node: &str) -> ServiceSpec {
    let labels = HashMap::from([(LABEL.to_string(), stack.to_string())]);
    let (secret_id, secret_name) = secret;
    ServiceSpec {
        name: Some(service_name(stack)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                args: Some(vec![
                    "agent".into(),
                    "--stack".into(),
                    stack.into(),
                    "--listen".into(),
                    format!("0.0.0.0:{port}"),
                    "--token-file".into(),
                    TOKEN_FILE.into(),
                    "--image".into(),
                    image.into(),
                ]),
                // Swarm fills in the node at each task's start: the agent needs no API call to
                // know where it is.
                env: Some(vec!["SWARMCTL_AGENT_NODE={{.Node.ID}}".into()]),
                labels: Some(labels),
                mounts: Some(vec![Mount {
                    target: Some("/var/run/docker.sock".into()),
                    source: Some("/var/run/docker.sock".into()),
                    typ: Some(MountType::BIND),
                    ..Default::default()
                }]),
                secrets: Some(vec![TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(TOKEN_FILE.trim_start_matches("/run/secrets/").into()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o400),
                    }),
                    secret_id: Some(secret_id.into()),
                    secret_name: Some(secret_name.into()),
                }]),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id!={except_node}")]),
                ..Default::default()
            }),
            // Small and bounded: it answers a few calls a second.
            resources: Some(TaskSpecResources {
                limits: Some(bollard::models::Limit { memory_bytes: Some(64 << 20), ..Default::default() }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(1_000_000_000),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode { global: Some(Default::default()), ..Default::default() }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(vec![EndpointPortConfig {
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(port)),
                published_port: Some(i64::from(port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A fresh token: 32 bytes from the kernel's random source, as hex.
pub fn token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_service_is_global_with_the_socket_the_secret_and_a_host_port() {
        let spec = spec("ci", "10.99.0.1:5000/swarmctl/mcp-server:0.1.0", PORT, ("sec1", "swarmctl-agent-ci"), "node0");
        insta::assert_yaml_snapshot!(spec);
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
