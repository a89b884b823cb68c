//! The engine seam over bollard: the one place swarmctl's requests become Engine API calls and
//! the engine's answers become swarmctl's types.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ConfigSpec, ContainerCreateBody, HostConfig, NetworkCreateRequest, NodeSpecAvailabilityEnum, NodeSpecRoleEnum,
    NodeState, ResourcesUlimits, SecretSpec, ServiceSpec, ServiceUpdateStatusStateEnum, SwarmInitRequest, TaskState,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions, KillContainerOptions, ListConfigsOptions,
    ListContainersOptions, ListNetworksOptions, ListSecretsOptions, ListServicesOptions, ListTasksOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StatsOptions,
    UpdateServiceOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::{
    endpoint, oneoff, stack_filter, Credentials, Engine, EngineError, Membership, NodeInfo, Object, Observed,
    ServiceInfo, Task, UpdateState, Usage,
};
use crate::plan::{ObservedObject, ObservedService, LABEL_SPEC_HASH};

/// A Docker Engine reached through bollard.
#[derive(Debug, Clone)]
pub struct Bollard {
    docker: Docker,
}

impl Bollard {
    /// Creates a container of swarmctl's own (unnamed).
    async fn create(
        &self,
        body: ContainerCreateBody,
        action: &str,
    ) -> Result<bollard::models::ContainerCreateResponse, EngineError> {
        self.docker
            .create_container(Some(CreateContainerOptions { name: None, platform: String::new() }), body)
            .await
            .map_err(|e| api(action, e))
    }

    /// Connects and pings, failing within a few seconds when nothing answers.
    pub async fn connect() -> Result<Bollard, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable { place: endpoint(), reason };
        if let Some(port) = std::env::var("DOCKER_HOST").ok().as_deref().and_then(ssh_port) {
            // bollard hands `user@host:port` to the ssh client, which takes it all as a host name.
            return Err(unreachable(format!(
                "the ssh transport cannot pass a port (:{port}) on to the ssh client: name the host in ~/.ssh/config (Host NAME, HostName …, Port {port}) and use ssh://USER@NAME"
            )));
        }
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
            Ok(Ok(_)) => Ok(Bollard { docker }),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable("no answer within 5 s".into())),
        }
    }

    /// The bollard client, for tests that check what the engine holds on their own.
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

/// The port of an `ssh://[user@]host:port` URL.
fn ssh_port(url: &str) -> Option<&str> {
    super::remote_host(url).filter(|(scheme, _, _)| *scheme == "ssh").and_then(|(_, _, port)| port)
}

/// Wraps a bollard error with what was being done.
fn api(action: impl Into<String>, err: bollard::errors::Error) -> EngineError {
    EngineError::Api { action: action.into(), message: message(&err) }
}

/// The engine's own message from a bollard error, without bollard's framing.
fn message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, status_code } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// True for a 404 from the engine.
fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[async_trait]
impl Engine for Bollard {
    async fn membership(&self) -> Result<Membership, EngineError> {
        let info = self.docker.info().await.map_err(|e| api("read engine info", e))?;
        let swarm = info.swarm.unwrap_or_default();
        Ok(Membership {
            state: swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default(),
            manager: swarm.control_available == Some(true),
            node_id: swarm.node_id.unwrap_or_default(),
        })
    }

    async fn init_swarm(&self, advertise: Option<&str>) -> Result<String, EngineError> {
        let request = SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".into()),
            advertise_addr: advertise.map(String::from),
            ..Default::default()
        };
        let action = match advertise {
            Some(a) => format!("swarm init --advertise-addr {a}"),
            None => "swarm init".into(),
        };
        self.docker.init_swarm(request).await.map_err(|e| api(action, e))
    }

    async fn leave_swarm(&self) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::LeaveSwarmOptions { force: true };
        self.docker.leave_swarm(Some(opts)).await.map_err(|e| api("leave the swarm", e))
    }

    async fn set_availability(&self, node: &str, availability: &str) -> Result<(), EngineError> {
        let action = format!("set node {node} to {availability}");
        let wanted = match availability {
            "active" => NodeSpecAvailabilityEnum::ACTIVE,
            "pause" => NodeSpecAvailabilityEnum::PAUSE,
            "drain" => NodeSpecAvailabilityEnum::DRAIN,
            other => return Err(EngineError::refused(action, format!("`{other}` is not active, pause or drain"))),
        };
        for attempt in 0..5 {
            let current = self.docker.inspect_node(node).await.map_err(|e| api(&action, e))?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0) as i64;
            let mut spec = current.spec.unwrap_or_default();
            spec.availability = Some(wanted);
            let opts = bollard::query_parameters::UpdateNodeOptions { version };
            match self.docker.update_node(node, spec, opts).await {
                Ok(()) => return Ok(()),
                Err(e) if message(&e).contains("out of sequence") && attempt < 4 => {
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
                Err(e) => return Err(api(action, e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn clock_ms(&self) -> Result<u64, EngineError> {
        let info = self.docker.info().await.map_err(|e| api("read engine info", e))?;
        let time = info.system_time.unwrap_or_default();
        unix_ms(&time)
            .ok_or_else(|| EngineError::refused("read engine info", format!("its SystemTime {time:?} is no time")))
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let list = self.docker.list_nodes(None).await.map_err(|e| api("list nodes", e))?;
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
                    addr: n.status.as_ref().and_then(|s| s.addr.clone()).unwrap_or_default(),
                    state: match n.status.and_then(|s| s.state) {
                        Some(NodeState::READY) => "ready".into(),
                        Some(other) => other.to_string(),
                        None => "unknown".into(),
                    },
                    nano_cpus: res.nano_cpus.unwrap_or(0),
                    memory_bytes: res.memory_bytes.unwrap_or(0),
                    engine: desc.engine.and_then(|e| e.engine_version).unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn observe(&self, stack: &str) -> Result<Observed, EngineError> {
        let f = || Some(stack_filter(stack));
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions { filters: f() }))
            .await
            .map_err(|e| api("list networks", e))?
            .into_iter()
            .map(|n| ObservedObject { name: n.name.unwrap_or_default(), id: n.id.unwrap_or_default() })
            .collect();
        let configs = self
            .docker
            .list_configs(Some(ListConfigsOptions { filters: f() }))
            .await
            .map_err(|e| api("list configs", e))?
            .into_iter()
            .map(|c| ObservedObject {
                name: c.spec.and_then(|s| s.name).unwrap_or_default(),
                id: c.id.unwrap_or_default(),
            })
            .collect();
        let secrets = self
            .docker
            .list_secrets(Some(ListSecretsOptions { filters: f() }))
            .await
            .map_err(|e| api("list secrets", e))?
            .into_iter()
            .map(|c| ObservedObject {
                name: c.spec.and_then(|s| s.name).unwrap_or_default(),
                id: c.id.unwrap_or_default(),
            })
            .collect();
        let services = self
            .docker
            .list_services(Some(ListServicesOptions { filters: f(), status: None }))
            .await
            .map_err(|e| api("list services", e))?
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                ObservedService {
                    replicas: crate::plan::replicas(&spec),
                    name: spec.name.unwrap_or_default(),
                    id: s.id.unwrap_or_default(),
                    version: s.version.and_then(|v| v.index).unwrap_or(0),
                    spec_hash: spec.labels.and_then(|mut l| l.remove(LABEL_SPEC_HASH)),
                }
            })
            .collect();
        Ok(Observed { networks, configs, secrets, services })
    }

    async fn create_network(&self, spec: NetworkCreateRequest) -> Result<(), EngineError> {
        let name = spec.name.clone();
        self.docker.create_network(spec).await.map(|_| ()).map_err(|e| api(format!("create network {name}"), e))
    }

    async fn create_config(&self, spec: ConfigSpec) -> Result<(), EngineError> {
        let name = spec.name.clone().unwrap_or_default();
        self.docker.create_config(spec).await.map(|_| ()).map_err(|e| api(format!("create config {name}"), e))
    }

    async fn create_secret(&self, spec: SecretSpec) -> Result<String, EngineError> {
        let name = spec.name.clone().unwrap_or_default();
        self.docker.create_secret(spec).await.map(|r| r.id).map_err(|e| api(format!("create secret {name}"), e))
    }

    async fn create_service(&self, spec: ServiceSpec, auth: Option<Credentials>) -> Result<Vec<String>, EngineError> {
        let name = spec.name.clone().unwrap_or_default();
        let res = self.docker.create_service(spec, auth).await.map_err(|e| api(format!("create service {name}"), e))?;
        Ok(res.warnings.unwrap_or_default())
    }

    /// A full-spec update at the service's current version, keeping its `ForceUpdate` counter
    /// (a spec that sets one moves it on instead: every task is replaced, as `docker service
    /// update --force` does); retried when another writer got in between ("update out of
    /// sequence").
    async fn update_service(
        &self,
        name: &str,
        mut spec: ServiceSpec,
        auth: Option<Credentials>,
    ) -> Result<Vec<String>, EngineError> {
        let action = format!("update service {name}");
        // Decided once: a retry must not read the counter written by the attempt before it
        // as a request to replace every task.
        let bump = spec.task_template.as_ref().is_some_and(|t| t.force_update.is_some());
        for attempt in 0..5 {
            let current = self.docker.inspect_service(name, None).await.map_err(|e| api(&action, e))?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0);
            let force = current.spec.and_then(|s| s.task_template).and_then(|t| t.force_update);
            if let Some(t) = spec.task_template.as_mut() {
                t.force_update = if bump { Some(force.unwrap_or(0) + 1) } else { force };
            }
            let opts =
                UpdateServiceOptions { version: version as i32, registry_auth_from: "spec".into(), rollback: None };
            match self.docker.update_service(name, spec.clone(), opts, auth.clone()).await {
                Ok(res) => return Ok(res.warnings.unwrap_or_default()),
                Err(e) if message(&e).contains("out of sequence") && attempt < 4 => {
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
                Err(e) => return Err(api(action, e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn remove(&self, kind: Object, id: &str) -> Result<bool, EngineError> {
        let (what, result) = match kind {
            Object::Service => ("service", self.docker.delete_service(id).await),
            Object::Config => ("config", self.docker.delete_config(id).await),
            Object::Secret => ("secret", self.docker.delete_secret(id).await),
            Object::Network => ("network", self.docker.remove_network(id).await),
            Object::Volume => {
                ("volume", self.docker.remove_volume(id, Some(RemoveVolumeOptions { force: false })).await)
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api(format!("remove {what} {}", short(id)), e)),
        }
    }

    async fn stack_containers(&self, stack: &str) -> Result<usize, EngineError> {
        let opts = ListContainersOptions { all: true, filters: Some(stack_filter(stack)), ..Default::default() };
        Ok(self.docker.list_containers(Some(opts)).await.map_err(|e| api("list containers", e))?.len())
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api(format!("inspect volume {name}"), e)),
        }
    }

    async fn create_volume(&self, v: &crate::convert::VolumeSpec) -> Result<(), EngineError> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(v.name.clone()),
            driver: Some(v.driver.clone()),
            driver_opts: Some(v.driver_opts.clone().into_iter().collect()),
            labels: Some(v.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker.create_volume(req).await.map(|_| ()).map_err(|e| api(format!("create volume {}", v.name), e))
    }

    async fn stack_volumes(&self, stack: &str) -> Result<Vec<String>, EngineError> {
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions { filters: Some(stack_filter(stack)) }))
            .await
            .map_err(|e| api("list volumes", e))?;
        Ok(list.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    async fn service(&self, name: &str) -> Result<ServiceInfo, EngineError> {
        let svc =
            self.docker.inspect_service(name, None).await.map_err(|e| api(format!("inspect service {name}"), e))?;
        let spec = svc.spec.clone().unwrap_or_default();
        let image = crate::engine::stack::image_of(&spec).to_string();
        let replicas = spec.mode.and_then(|m| m.replicated).and_then(|r| r.replicas).unwrap_or(1).max(0) as u64;
        let update_at_ms = svc
            .update_status
            .as_ref()
            .and_then(|s| s.completed_at.as_deref().or(s.started_at.as_deref()))
            .and_then(unix_ms);
        let update = svc.update_status.map(|status| {
            let message = status.message.unwrap_or_default();
            match status.state {
                Some(ServiceUpdateStatusStateEnum::PAUSED) => UpdateState::Paused(message),
                // Swarm rolls back on its own the moment the update fails: the wait is over.
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => UpdateState::RollingBack(message),
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => UpdateState::RolledBack(message),
                Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => UpdateState::RollbackPaused(message),
                Some(ServiceUpdateStatusStateEnum::COMPLETED) => UpdateState::Completed,
                _ => UpdateState::Updating,
            }
        });
        Ok(ServiceInfo { id: svc.id.unwrap_or_default(), replicas, update, update_at_ms, image })
    }

    async fn tasks(&self, service: &str, current_only: bool) -> Result<Vec<Task>, EngineError> {
        let mut filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        if current_only {
            // What the docker CLI's own wait uses: tasks of the service's current spec.
            filters.insert("_up-to-date".to_string(), vec!["true".to_string()]);
        }
        let list = self
            .docker
            .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
            .await
            .map_err(|e| api(format!("list tasks of {service}"), e))?;
        let mut out: Vec<Task> = list
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                let error = status.err.clone().filter(|e| !e.is_empty());
                let image = t.spec.as_ref().and_then(|s| s.container_spec.as_ref()).and_then(|c| c.image.clone());
                Task {
                    image: image.unwrap_or_default(),
                    id: t.id.unwrap_or_default(),
                    slot: t.slot.unwrap_or(0),
                    node: t.node_id.unwrap_or_default(),
                    container: status.container_status.and_then(|c| c.container_id).filter(|c| !c.is_empty()),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    desired_running: t.desired_state == Some(TaskState::RUNNING),
                    created_ms: t.created_at.as_deref().and_then(unix_ms),
                    state_since_ms: status.timestamp.as_deref().and_then(unix_ms),
                    message: error.clone().or(status.message).unwrap_or_default(),
                    error,
                    ports: status
                        .port_status
                        .and_then(|p| p.ports)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|p| {
                            Some((u16::try_from(p.target_port?).ok()?, u16::try_from(p.published_port?).ok()?))
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by_key(|t| (t.slot, t.created_ms));
        Ok(out)
    }

    async fn kill(&self, container: &str, signal: &str) -> Result<(), EngineError> {
        self.docker
            .kill_container(container, Some(KillContainerOptions { signal: signal.into() }))
            .await
            .map_err(|e| api(format!("send {signal} to container {}", short(container)), e))
    }

    async fn container_labels(&self, container: &str) -> Result<HashMap<String, String>, EngineError> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api(format!("inspect container {}", short(container)), e))?;
        Ok(c.config.and_then(|c| c.labels).unwrap_or_default())
    }

    /// One sample (the engine answers at once with `one-shot`).
    async fn usage(&self, container: &str) -> Result<Usage, EngineError> {
        let mut stream = self.docker.stats(container, Some(StatsOptions { stream: false, one_shot: true }));
        let Some(item) = stream.next().await else {
            return Err(EngineError::refused(format!("stats of {}", short(container)), "no answer"));
        };
        let s = item.map_err(|e| api(format!("stats of {}", short(container)), e))?;
        let cpu_ns = s.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
        let mem = s.memory_stats.unwrap_or_default();
        // What `docker stats` shows: usage less the inactive page cache (cgroup v2, then v1 name).
        let cache = mem
            .stats
            .as_ref()
            .and_then(|st| st.get("inactive_file").or_else(|| st.get("total_inactive_file")).copied())
            .unwrap_or(0);
        let memory_bytes = mem.usage.unwrap_or(0).saturating_sub(cache);
        Ok(Usage { at_ms: crate::units::unix_now_ms(), cpu_ns, memory_bytes })
    }

    /// The engine (20.10 seen here) may never end a service's log stream once one of its
    /// tasks' containers is gone, so the stream is given `limit`, and what came by then is kept.
    async fn service_logs(&self, service: &str, tail: usize, limit: Duration) -> Result<(String, bool), EngineError> {
        let opts =
            LogsOptions { stdout: true, stderr: true, timestamps: true, tail: tail.to_string(), ..Default::default() };
        let mut stream = self.docker.service_logs(service, Some(opts));
        let mut out = String::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => {
                    let chunk = item.map_err(|e| api(format!("logs of {service}"), e))?;
                    out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                }
                Ok(None) => return Ok((out, true)),
                Err(_) => return Ok((out, false)),
            }
        }
    }

    fn follow_service_logs(&self, service: &str) -> tokio::sync::mpsc::Receiver<Result<String, EngineError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let opts = LogsOptions { stdout: true, stderr: false, follow: true, ..Default::default() };
        let mut stream = self.docker.service_logs(service, Some(opts));
        let action = format!("follow the logs of {service}");
        tokio::spawn(async move {
            // Each message is a line; one the engine split (over 16 KiB) is joined again.
            let mut line = Vec::new();
            while let Some(item) = stream.next().await {
                let chunk = match item {
                    Ok(chunk) => chunk.into_bytes(),
                    Err(e) => {
                        let _ = tx.send(Err(api(&action, e))).await;
                        return;
                    }
                };
                line.extend_from_slice(&chunk);
                while let Some(end) = line.iter().position(|b| *b == b'\n') {
                    let text = String::from_utf8_lossy(&line[..end]).into_owned();
                    line.drain(..=end);
                    if tx.send(Ok(text)).await.is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(tag).await {
            Ok(i) => Ok(Some(i.id.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api(format!("inspect image {tag}"), e)),
        }
    }

    async fn push_image(&self, reference: &str, auth: Option<Credentials>) -> Result<(), EngineError> {
        let action = format!("push {reference}");
        let (name, tag) = match reference.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (reference, "latest"),
        };
        let opts = bollard::query_parameters::PushImageOptions { tag: Some(tag.into()), platform: None };
        let mut stream = self.docker.push_image(name, Some(opts), auth);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| api(&action, e))?;
            if let Some(detail) = info.error_detail {
                return Err(EngineError::refused(action, detail.message.unwrap_or_default()));
            }
        }
        Ok(())
    }

    async fn build_image(
        &self,
        contents: &crate::image::Contents,
        tags: &[String],
        labels: &[(String, String)],
    ) -> Result<String, EngineError> {
        let action = format!("build image {}", tags.join(", "));
        let tar = crate::image::context(contents, labels).map_err(|e| EngineError::refused(&action, e.to_string()))?;
        let options = bollard::query_parameters::BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tags[0].clone()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(tar.into())));
        let mut id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(EngineError::refused(action, detail.message.unwrap_or_default()));
                    }
                    if let Some(aux) = info.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(e) => return Err(api(action, e)),
            }
        }
        for tag in &tags[1..] {
            let (repo, t) = tag.rsplit_once(':').unwrap_or((tag.as_str(), "latest"));
            let opts = bollard::query_parameters::TagImageOptions { repo: Some(repo.into()), tag: Some(t.into()) };
            self.docker.tag_image(&tags[0], Some(opts)).await.map_err(|e| api(format!("tag {tag}"), e))?;
        }
        match id {
            Some(id) => Ok(id),
            None => self
                .docker
                .inspect_image(&tags[0])
                .await
                .map(|i| i.id.unwrap_or_default())
                .map_err(|e| api(format!("inspect image {}", tags[0]), e)),
        }
    }

    /// From the network's verbose view, which a manager has for every node.
    async fn task_addresses(&self, network: &str, service: &str) -> Result<Vec<(i64, String)>, EngineError> {
        let net = self
            .docker
            .inspect_network(network, Some(InspectNetworkOptions { verbose: true, scope: Some("swarm".into()) }))
            .await
            .map_err(|e| api(format!("inspect network {network}"), e))?;
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

    async fn start_container(&self, spec: &oneoff::Spec) -> Result<String, EngineError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.args.clone()),
            labels: Some(HashMap::from([(oneoff::LABEL.to_string(), spec.stack.clone())])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/out", spec.out_dir.display())]),
                network_mode: Some(spec.network.clone()),
                ulimits: Some(vec![ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(spec.nofile),
                    hard: Some(spec.nofile),
                }]),
                sysctls: Some(spec.sysctls.clone().into_iter().collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.create(body, &format!("create a {} container", spec.image)).await?;
        self.docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| api("start the load container", e))?;
        Ok(created.id)
    }

    async fn wait_container(&self, id: &str) -> Result<i64, EngineError> {
        let mut s = self.docker.wait_container(id, Some(WaitContainerOptions { condition: "not-running".into() }));
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(api("wait for the load container", e)),
            None => Err(EngineError::refused("wait for the load container", "no answer")),
        }
    }

    async fn container_logs(&self, id: &str, tail: usize) -> String {
        let opts = LogsOptions { stdout: true, stderr: true, tail: tail.to_string(), ..Default::default() };
        let mut s = self.docker.logs(id, Some(opts));
        let mut out = String::new();
        while let Some(Ok(chunk)) = s.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out
    }

    async fn run_in_netns(
        &self,
        container: &str,
        image: &str,
        args: Vec<String>,
    ) -> Result<(i64, String), EngineError> {
        let action = format!("run a {image} helper in container {container}'s network namespace");
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(args),
            labels: Some(HashMap::from([(oneoff::LABEL.to_string(), "netem".to_string())])),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{container}")),
                cap_add: Some(vec!["NET_ADMIN".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.create(body, &action).await?;
        let ran = async {
            self.docker
                .start_container(&created.id, None::<StartContainerOptions>)
                .await
                .map_err(|e| api(&action, e))?;
            let code = tokio::time::timeout(Duration::from_secs(30), self.wait_container(&created.id))
                .await
                .map_err(|_| EngineError::refused(&action, "the helper did not finish within 30 s"))??;
            Ok((code, self.container_logs(&created.id, 50).await))
        }
        .await;
        let _ = self.remove_container(&created.id).await;
        ran
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .remove_container(id, Some(RemoveContainerOptions { force: true, v: true, link: false }))
            .await
            .map_err(|e| api("remove the load container", e))
    }
}

/// RFC 3339 as the engine writes it (`2026-11-27T06:10:48.123456789Z`, or with an offset) to
/// Unix milliseconds.
pub fn unix_ms(s: &str) -> Option<u64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, offset_s) = match rest.find(['Z', '+', '-']) {
        Some(i) if &rest[i..i + 1] == "Z" => (&rest[..i], 0i64),
        Some(i) => {
            let sign = if &rest[i..i + 1] == "-" { -1 } else { 1 };
            let (oh, om) = rest[i + 1..].split_once(':')?;
            (&rest[..i], sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
        }
        None => return None,
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms = frac.chars().chain("000".chars()).take(3).collect::<String>().parse::<i64>().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::{ssh_port, unix_ms};

    #[test]
    fn an_ssh_port_is_found_so_that_it_is_not_silently_lost() {
        assert_eq!(ssh_port("ssh://ops@10.0.0.5:2222"), Some("2222"));
        assert_eq!(ssh_port("ssh://10.0.0.5:2222"), Some("2222"));
        assert_eq!(ssh_port("ssh://ops@manager-1"), None);
        assert_eq!(ssh_port("tcp://10.0.0.5:2376"), None);
        assert_eq!(ssh_port("ssh://ops@[fd00::5]"), None, "an IPv6 host is no port");
        assert_eq!(ssh_port("ssh://ops@[fd00::5]:2222"), Some("2222"));
    }

    #[test]
    fn engine_timestamps_parse_to_unix_ms() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ms("2026-11-27T06:10:48.123456789Z"), Some(1_795_759_848_123));
        assert_eq!(unix_ms("2026-11-27T07:10:48.1+01:00"), Some(1_795_759_848_100));
        assert_eq!(unix_ms("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        assert_eq!(unix_ms("0001-01-01T00:00:00Z"), None, "the engine's zero time is no time");
        assert_eq!(unix_ms("yesterday"), None);
    }
}
