//! A stack's objects in the engine, found by the `com.docker.stack.namespace` label: observing
//! them, applying a plan to them, and removing them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::ServiceSpec;
use bollard::query_parameters::{
    ListConfigsOptions, ListContainersOptions, ListNetworksOptions, ListSecretsOptions, ListServicesOptions,
    ListVolumesOptions, RemoveVolumeOptions, UpdateServiceOptions,
};

use super::{stack_filter, Docker, EngineError};
use crate::convert::DesiredStack;
use crate::plan::{spec_hash, Action, Kind, Observed, ObservedObject, ObservedService, Plan, LABEL_SPEC_HASH};

/// What the engine has of `stack`.
pub async fn observe(docker: &Docker, stack: &str) -> Result<Observed, EngineError> {
    let f = || Some(stack_filter(stack));
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: f() }))
        .await
        .map_err(|e| EngineError::api("list networks", e))?
        .into_iter()
        .map(|n| ObservedObject { name: n.name.unwrap_or_default(), id: n.id.unwrap_or_default() })
        .collect();
    let configs = docker
        .list_configs(Some(ListConfigsOptions { filters: f() }))
        .await
        .map_err(|e| EngineError::api("list configs", e))?
        .into_iter()
        .map(|c| ObservedObject { name: c.spec.and_then(|s| s.name).unwrap_or_default(), id: c.id.unwrap_or_default() })
        .collect();
    let secrets = docker
        .list_secrets(Some(ListSecretsOptions { filters: f() }))
        .await
        .map_err(|e| EngineError::api("list secrets", e))?
        .into_iter()
        .map(|c| ObservedObject { name: c.spec.and_then(|s| s.name).unwrap_or_default(), id: c.id.unwrap_or_default() })
        .collect();
    let services = docker
        .list_services(Some(ListServicesOptions { filters: f(), status: None }))
        .await
        .map_err(|e| EngineError::api("list services", e))?
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

/// Creates the stack's named volumes that do not exist yet (nodes would create them at task
/// start, but without the stack's labels `down --volumes` could not find them).
pub async fn ensure_volumes(docker: &Docker, desired: &DesiredStack) -> Result<Vec<String>, EngineError> {
    let mut created = Vec::new();
    for v in &desired.volumes {
        if docker.inspect_volume(&v.name).await.is_ok() {
            continue;
        }
        let req = bollard::models::VolumeCreateRequest {
            name: Some(v.name.clone()),
            driver: Some(v.driver.clone()),
            driver_opts: Some(v.driver_opts.clone().into_iter().collect()),
            labels: Some(v.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        docker.create_volume(req).await.map_err(|e| EngineError::api(format!("create volume {}", v.name), e))?;
        created.push(v.name.clone());
    }
    Ok(created)
}

/// Executes `plan`: networks, configs and secrets, services (with their config and secret IDs
/// filled in and their spec hash labelled), then removals. `report` hears each step done;
/// returns warnings (removals the engine refused, engine warnings on updates).
pub async fn apply(
    docker: &Docker,
    desired: &DesiredStack,
    plan: &Plan,
    report: &mut dyn FnMut(&str),
) -> Result<Vec<String>, EngineError> {
    let mut warnings = Vec::new();
    let todo = |kind: Kind, action: Action| {
        plan.steps.iter().filter(move |s| s.kind == kind && s.action == action).map(|s| s.name.clone())
    };

    for name in todo(Kind::Network, Action::Create) {
        let req = desired.networks.iter().find(|n| n.name == name).cloned().expect("planned from desired");
        docker.create_network(req).await.map_err(|e| EngineError::api(format!("create network {name}"), e))?;
        report(&format!("created network {name}"));
    }
    for name in todo(Kind::Config, Action::Create) {
        let spec = desired.configs.iter().find(|c| c.name.as_deref() == Some(&name)).cloned().expect("planned");
        docker.create_config(spec).await.map_err(|e| EngineError::api(format!("create config {name}"), e))?;
        report(&format!("created config {name}"));
    }
    for name in todo(Kind::Secret, Action::Create) {
        let spec = desired.secrets.iter().find(|c| c.name.as_deref() == Some(&name)).cloned().expect("planned");
        docker.create_secret(spec).await.map_err(|e| EngineError::api(format!("create secret {name}"), e))?;
        report(&format!("created secret {name}"));
    }

    let observed = observe(docker, &desired.namespace).await?;
    let ready = |spec: &ServiceSpec| ready(spec, &observed);

    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        let Some(step) = plan.steps.iter().find(|s| s.kind == Kind::Service && s.name == name) else { continue };
        match step.action {
            Action::Create => {
                let res = docker
                    .create_service(ready(spec)?, None)
                    .await
                    .map_err(|e| EngineError::api(format!("create service {name}"), e))?;
                warnings.extend(res.warnings.unwrap_or_default());
                report(&format!("created service {name}"));
            }
            Action::Update => {
                warnings.extend(update_service(docker, &name, ready(spec)?).await?);
                report(&format!("updated service {name}"));
            }
            _ => {}
        }
    }

    for name in todo(Kind::Service, Action::Remove) {
        docker.delete_service(&name).await.map_err(|e| EngineError::api(format!("remove service {name}"), e))?;
        report(&format!("removed service {name}"));
    }
    for (kind, objs) in [(Kind::Config, &observed.configs), (Kind::Secret, &observed.secrets)] {
        for name in todo(kind, Action::Remove) {
            let Some(id) = objs.iter().find(|o| o.name == name).map(|o| o.id.clone()) else { continue };
            let result =
                if kind == Kind::Config { docker.delete_config(&id).await } else { docker.delete_secret(&id).await };
            match result {
                Ok(()) => {
                    report(&format!("removed old {} {name}", if kind == Kind::Config { "config" } else { "secret" }))
                }
                Err(e) => warnings.push(format!("could not remove {name} yet: {}", super::message(&e))),
            }
        }
    }
    Ok(warnings)
}

/// A service spec as the engine takes it: the spec-hash label set, configs and secrets
/// referenced by the IDs the engine gave them.
fn ready(spec: &ServiceSpec, observed: &Observed) -> Result<ServiceSpec, EngineError> {
    let ids = |objs: &[ObservedObject]| -> HashMap<String, String> {
        objs.iter().map(|o| (o.name.clone(), o.id.clone())).collect()
    };
    let (config_ids, secret_ids) = (ids(&observed.configs), ids(&observed.secrets));
    let mut spec = spec.clone();
    let hash = spec_hash(&spec);
    spec.labels.get_or_insert_with(HashMap::new).insert(LABEL_SPEC_HASH.into(), hash);
    let name = spec.name.clone().unwrap_or_default();
    let container = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut());
    if let Some(c) = container {
        for r in c.configs.iter_mut().flatten() {
            let wanted = r.config_name.clone().unwrap_or_default();
            r.config_id = Some(config_ids.get(&wanted).cloned().ok_or_else(|| EngineError::Api {
                action: format!("deploy service {name}"),
                message: format!("config {wanted} does not exist"),
            })?);
        }
        for r in c.secrets.iter_mut().flatten() {
            let wanted = r.secret_name.clone().unwrap_or_default();
            r.secret_id = Some(secret_ids.get(&wanted).cloned().ok_or_else(|| EngineError::Api {
                action: format!("deploy service {name}"),
                message: format!("secret {wanted} does not exist"),
            })?);
        }
    }
    Ok(spec)
}

/// Sets a service of the deployed stack to `n` replicas by writing the stack's own spec for it
/// with only the count changed. Reading the spec back from the engine and writing it again
/// would drop what bollard cannot read back (the healthcheck, on this engine) and so restart
/// every task. The spec-hash label stays the configured spec's, so `up` sees the other count
/// and restores it. Refuses when the deployed service is not the stack's current spec.
pub async fn scale(docker: &Docker, desired: &DesiredStack, service: &str, n: u64) -> Result<(), EngineError> {
    let action = format!("scale {service} to {n}");
    let spec = desired
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some(service))
        .ok_or_else(|| EngineError::Api { action: action.clone(), message: "the stack has no such service".into() })?;
    let observed = observe(docker, &desired.namespace).await?;
    let deployed = observed.services.iter().find(|s| s.name == service);
    if deployed.and_then(|s| s.spec_hash.as_deref()) != Some(spec_hash(spec).as_str()) {
        return Err(EngineError::Api {
            action,
            message: "the deployed service is not the stack's current spec: run `swarmctl up` with the same stack and settings first".into(),
        });
    }
    let mut spec = ready(spec, &observed)?;
    spec.mode = Some(bollard::models::ServiceSpecMode {
        replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(n as i64) }),
        ..Default::default()
    });
    update_service(docker, service, spec).await.map(|_| ())
}

/// A full-spec update at the service's current version, keeping its `ForceUpdate` counter;
/// retried when another writer got in between ("update out of sequence").
async fn update_service(docker: &Docker, name: &str, mut spec: ServiceSpec) -> Result<Vec<String>, EngineError> {
    let action = format!("update service {name}");
    for attempt in 0..5 {
        let current = docker.inspect_service(name, None).await.map_err(|e| EngineError::api(&action, e))?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let force = current.spec.and_then(|s| s.task_template).and_then(|t| t.force_update);
        if let Some(t) = spec.task_template.as_mut() {
            t.force_update = force;
        }
        let opts = UpdateServiceOptions { version: version as i32, registry_auth_from: "spec".into(), rollback: None };
        match docker.update_service(name, spec.clone(), opts, None).await {
            Ok(res) => return Ok(res.warnings.unwrap_or_default()),
            Err(e) if super::message(&e).contains("out of sequence") && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
            Err(e) => return Err(EngineError::api(action, e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// What `down` removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Removed {
    /// Services.
    pub services: Vec<String>,
    /// Configs and secrets.
    pub configs_and_secrets: Vec<String>,
    /// Networks.
    pub networks: Vec<String>,
    /// Volumes (with `--volumes`).
    pub volumes: Vec<String>,
}

/// Removes everything labelled with `stack`, in order: services; wait until their containers
/// are gone; configs and secrets; networks (retried while endpoints detach); volumes when
/// asked. Running it on a stack that does not exist removes nothing and succeeds.
pub async fn remove(
    docker: &Docker,
    stack: &str,
    volumes: bool,
    timeout: Duration,
    report: &mut dyn FnMut(&str),
) -> Result<Removed, EngineError> {
    let mut removed = Removed::default();
    let deadline = Instant::now() + timeout;
    let observed = observe(docker, stack).await?;
    for s in &observed.services {
        match docker.delete_service(&s.id).await {
            Ok(()) => {}
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(EngineError::api(format!("remove service {}", s.name), e)),
        }
        report(&format!("removed service {}", s.name));
        removed.services.push(s.name.clone());
    }
    loop {
        let opts = ListContainersOptions { all: true, filters: Some(stack_filter(stack)), ..Default::default() };
        let left = docker.list_containers(Some(opts)).await.map_err(|e| EngineError::api("list containers", e))?;
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(EngineError::Api {
                action: format!("remove stack {stack}"),
                message: format!("{} containers of the stack are still there after {}s", left.len(), timeout.as_secs()),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for c in &observed.configs {
        match docker.delete_config(&c.id).await {
            Ok(()) => removed.configs_and_secrets.push(c.name.clone()),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(EngineError::api(format!("remove config {}", c.name), e)),
        }
    }
    for c in &observed.secrets {
        match docker.delete_secret(&c.id).await {
            Ok(()) => removed.configs_and_secrets.push(c.name.clone()),
            Err(e) if super::is_not_found(&e) => {}
            Err(e) => return Err(EngineError::api(format!("remove secret {}", c.name), e)),
        }
    }
    if !removed.configs_and_secrets.is_empty() {
        report(&format!("removed {} configs and secrets", removed.configs_and_secrets.len()));
    }
    for n in &observed.networks {
        // Endpoints of just-removed tasks detach asynchronously ("has active endpoints").
        loop {
            match docker.remove_network(&n.id).await {
                Ok(()) => break,
                Err(e) if super::is_not_found(&e) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("network {} not removable yet: {}", n.name, super::message(&e));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(EngineError::api(format!("remove network {}", n.name), e)),
            }
        }
        report(&format!("removed network {}", n.name));
        removed.networks.push(n.name.clone());
    }
    if volumes {
        let list = docker
            .list_volumes(Some(ListVolumesOptions { filters: Some(stack_filter(stack)) }))
            .await
            .map_err(|e| EngineError::api("list volumes", e))?;
        for v in list.volumes.unwrap_or_default() {
            loop {
                match docker.remove_volume(&v.name, Some(RemoveVolumeOptions { force: false })).await {
                    Ok(()) => break,
                    Err(e) if super::is_not_found(&e) => break,
                    Err(e) if Instant::now() < deadline => {
                        tracing::debug!("volume {} not removable yet: {}", v.name, super::message(&e));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(EngineError::api(format!("remove volume {}", v.name), e)),
                }
            }
            report(&format!("removed volume {}", v.name));
            removed.volumes.push(v.name);
        }
    }
    Ok(removed)
}
