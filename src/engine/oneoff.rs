//! Containers swarmctl starts for itself: a load client inside the stack's overlay network
//! (the host cannot route to task addresses), and where the replicas are on that network.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    CreateContainerOptions, InspectNetworkOptions, KillContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{Docker, EngineError};

/// Label on every container swarmctl starts, with the stack's name.
pub const LABEL: &str = "swarmctl.oneoff";

/// The addresses of `service`'s running tasks on `network`, by slot (from the network's
/// verbose view, which a manager has for every node).
pub async fn task_addresses(docker: &Docker, network: &str, service: &str) -> Result<Vec<(i64, String)>, EngineError> {
    let net = docker
        .inspect_network(network, Some(InspectNetworkOptions { verbose: true, scope: Some("swarm".into()) }))
        .await
        .map_err(|e| EngineError::api(format!("inspect network {network}"), e))?;
    let mut out = Vec::new();
    let tasks = net.services.as_ref().and_then(|s| s.get(service)).and_then(|s| s["Tasks"].as_array().cloned());
    for t in tasks.into_iter().flatten() {
        let (Some(name), Some(ip)) = (t["Name"].as_str(), t["EndpointIP"].as_str()) else { continue };
        // `<service>.<slot>.<task id>`
        let slot = name.strip_prefix(service).and_then(|r| r.split('.').nth(1)).and_then(|s| s.parse().ok());
        if let Some(slot) = slot {
            out.push((slot, ip.split('/').next().unwrap_or(ip).to_string()));
        }
    }
    out.sort();
    Ok(out)
}

/// A container to run once.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Image (its entrypoint runs).
    pub image: String,
    /// Arguments after the entrypoint.
    pub args: Vec<String>,
    /// The network it joins (attachable overlay).
    pub network: String,
    /// Host folder mounted at `/out`.
    pub out_dir: std::path::PathBuf,
    /// Open-file limit (soft and hard).
    pub nofile: i64,
    /// The stack it belongs to (labelled, so that it can be found and removed).
    pub stack: String,
}

/// Creates and starts it; its ID.
pub async fn start(docker: &Docker, spec: &Spec) -> Result<String, EngineError> {
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.args.clone()),
        labels: Some(HashMap::from([(LABEL.to_string(), spec.stack.clone())])),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/out", spec.out_dir.display())]),
            network_mode: Some(spec.network.clone()),
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(spec.nofile),
                hard: Some(spec.nofile),
            }]),
            // One container address reaches each replica from at most the ephemeral range's
            // ports; the widest range lets 100,000 sessions to 12 replicas find free ones
            // quickly (the search slows as the range fills).
            sysctls: Some([("net.ipv4.ip_local_port_range".to_string(), "1024 65535".to_string())].into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(CreateContainerOptions { name: None, platform: String::new() }), body)
        .await
        .map_err(|e| EngineError::api(format!("create a {} container", spec.image), e))?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .map_err(|e| EngineError::api("start the load container", e))?;
    Ok(created.id)
}

/// Waits until it exits; its exit code.
pub async fn wait(docker: &Docker, id: &str) -> Result<i64, EngineError> {
    let mut s = docker.wait_container(id, Some(WaitContainerOptions { condition: "not-running".into() }));
    match s.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(EngineError::api("wait for the load container", e)),
        None => Err(EngineError::Api { action: "wait for the load container".into(), message: "no answer".into() }),
    }
}

/// Sends a signal (SIGINT: the load drains and reports; SIGKILL: gone).
pub async fn signal(docker: &Docker, id: &str, signal: &str) -> Result<(), EngineError> {
    docker
        .kill_container(id, Some(KillContainerOptions { signal: signal.into() }))
        .await
        .map_err(|e| EngineError::api(format!("send {signal} to the load container"), e))
}

/// Its last `tail` lines of output.
pub async fn logs(docker: &Docker, id: &str, tail: usize) -> String {
    let opts = LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
    let mut s = docker.logs(id, Some(opts));
    let mut out = String::new();
    while let Some(Ok(chunk)) = s.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    out
}

/// Removes it (forcefully: it may still run after an error).
pub async fn remove(docker: &Docker, id: &str) -> Result<(), EngineError> {
    docker
        .remove_container(id, Some(RemoveContainerOptions { force: true, v: true, link: false }))
        .await
        .map_err(|e| EngineError::api("remove the load container", e))
}
