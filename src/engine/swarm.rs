//! Swarm state: is this node a manager, swarm init, the nodes and what they can hold.

use super::{Docker, EngineError};
pub use crate::plan::topology::NodeInfo;
use bollard::models::{NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, SwarmInitRequest};

/// Whether this engine is a swarm manager; `Err(NotManager)` says what to do if not.
pub async fn require_manager(docker: &Docker) -> Result<(), EngineError> {
    let info = docker.info().await.map_err(|e| EngineError::api("read engine info", e))?;
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default();
    if state != "active" {
        return Err(EngineError::NotManager(format!(
            "this Docker Engine is not part of a swarm (state: {}); run `swarmctl init` first",
            if state.is_empty() { "inactive" } else { &state }
        )));
    }
    if swarm.control_available != Some(true) {
        return Err(EngineError::NotManager(
            "this node is a swarm worker; run swarmctl against a manager (DOCKER_HOST=… of a manager node)".into(),
        ));
    }
    Ok(())
}

/// Initializes a swarm when the engine is in none. Returns `Some(node id)` when it did, `None`
/// when a swarm was already active. Without `advertise`, the engine picks the address; where
/// it cannot (several interfaces), 127.0.0.1 is used, which is right for a one-node swarm.
pub async fn init(docker: &Docker, advertise: Option<&str>) -> Result<Option<String>, EngineError> {
    let info = docker.info().await.map_err(|e| EngineError::api("read engine info", e))?;
    let state = info.swarm.and_then(|s| s.local_node_state).map(|s| s.to_string()).unwrap_or_default();
    if state == "active" {
        return Ok(None);
    }
    let request = |addr: Option<&str>| SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: addr.map(String::from),
        ..Default::default()
    };
    match docker.init_swarm(request(advertise)).await {
        Ok(id) => Ok(Some(id)),
        Err(e) if advertise.is_none() && super::message(&e).contains("advertise") => {
            tracing::warn!("the engine could not choose an address to advertise; using 127.0.0.1 (one-node swarm; give --advertise-addr for more nodes)");
            docker
                .init_swarm(request(Some("127.0.0.1")))
                .await
                .map(Some)
                .map_err(|e| EngineError::api("swarm init --advertise-addr 127.0.0.1", e))
        }
        Err(e) => Err(EngineError::api("swarm init", e)),
    }
}

/// Leaves the swarm (forcefully: a last manager cannot leave otherwise).
pub async fn leave(docker: &Docker) -> Result<(), EngineError> {
    let opts = bollard::query_parameters::LeaveSwarmOptions { force: true };
    docker.leave_swarm(Some(opts)).await.map_err(|e| EngineError::api("leave the swarm", e))
}

/// Every node of the swarm.
pub async fn nodes(docker: &Docker) -> Result<Vec<NodeInfo>, EngineError> {
    let list = docker.list_nodes(None).await.map_err(|e| EngineError::api("list nodes", e))?;
    Ok(list
        .into_iter()
        .map(|n| {
            let spec = n.spec.unwrap_or_default();
            let desc = n.description.unwrap_or_default();
            let res = desc.resources.unwrap_or_default();
            NodeInfo {
                id: n.id.unwrap_or_default(),
                hostname: desc.hostname.unwrap_or_default(),
                role: match spec.role {
                    Some(NodeSpecRoleEnum::MANAGER) => "manager".into(),
                    _ => "worker".into(),
                },
                availability: match spec.availability {
                    Some(NodeSpecAvailabilityEnum::DRAIN) => "drain".into(),
                    Some(NodeSpecAvailabilityEnum::PAUSE) => "pause".into(),
                    _ => "active".into(),
                },
                state: match n.status.and_then(|s| s.state) {
                    Some(NodeState::READY) => "ready".into(),
                    Some(other) => other.to_string(),
                    None => "unknown".into(),
                },
                nano_cpus: res.nano_cpus.unwrap_or(0),
                memory_bytes: res.memory_bytes.unwrap_or(0),
            }
        })
        .collect())
}
