//! A stack's objects in the engine, found by the `com.docker.stack.namespace` label: observing
//! them, applying a plan to them, and removing them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::models::ServiceSpec;

use super::{credentials, Credentials, Engine, EngineError, Object};
use crate::convert::DesiredStack;
use crate::plan::{spec_hash, Action, Kind, Observed, ObservedObject, Plan, LABEL_SPEC_HASH};

/// Creates the stack's named volumes that do not exist yet (nodes would create them at task
/// start, but without the stack's labels `down --volumes` could not find them).
pub async fn ensure_volumes(engine: &dyn Engine, desired: &DesiredStack) -> Result<Vec<String>, EngineError> {
    let mut created = Vec::new();
    for v in &desired.volumes {
        if engine.volume_exists(&v.name).await? {
            continue;
        }
        engine.create_volume(v).await?;
        created.push(v.name.clone());
    }
    Ok(created)
}

/// Executes `plan`: networks, configs and secrets, services (with their config and secret IDs
/// filled in and their spec hash labelled, and the credentials of their image's registry when
/// `auths` has them), then removals. `report` hears each step done; returns warnings
/// (removals the engine refused, engine warnings on updates).
pub async fn apply(
    engine: &dyn Engine,
    desired: &DesiredStack,
    plan: &Plan,
    auths: &BTreeMap<String, Credentials>,
    report: &mut dyn FnMut(&str),
) -> Result<Vec<String>, EngineError> {
    let mut warnings = Vec::new();
    let todo = |kind: Kind, action: Action| {
        plan.steps.iter().filter(move |s| s.kind == kind && s.action == action).map(|s| s.name.clone())
    };

    for name in todo(Kind::Network, Action::Create) {
        let req = desired.networks.iter().find(|n| n.name == name).cloned().expect("planned from desired");
        engine.create_network(req).await?;
        report(&format!("created network {name}"));
    }
    for name in todo(Kind::Config, Action::Create) {
        let spec = desired.configs.iter().find(|c| c.name.as_deref() == Some(&name)).cloned().expect("planned");
        engine.create_config(spec).await?;
        report(&format!("created config {name}"));
    }
    for name in todo(Kind::Secret, Action::Create) {
        let spec = desired.secrets.iter().find(|c| c.name.as_deref() == Some(&name)).cloned().expect("planned");
        engine.create_secret(spec).await?;
        report(&format!("created secret {name}"));
    }

    let observed = engine.observe(&desired.namespace).await?;
    let ready = |spec: &ServiceSpec| ready(spec, &observed);

    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        let Some(step) = plan.steps.iter().find(|s| s.kind == Kind::Service && s.name == name) else { continue };
        let auth = auths.get(credentials::registry_of(image_of(spec))).cloned();
        match step.action {
            Action::Create => {
                warnings.extend(engine.create_service(ready(spec)?, auth).await?);
                report(&format!("created service {name}"));
            }
            Action::Update => {
                warnings.extend(engine.update_service(&name, ready(spec)?, auth).await?);
                report(&format!("updated service {name}"));
            }
            _ => {}
        }
    }

    for name in todo(Kind::Service, Action::Remove) {
        engine.remove(Object::Service, &name).await?;
        report(&format!("removed service {name}"));
    }
    for (kind, objs) in [(Kind::Config, &observed.configs), (Kind::Secret, &observed.secrets)] {
        let (object, what) = if kind == Kind::Config { (Object::Config, "config") } else { (Object::Secret, "secret") };
        for name in todo(kind, Action::Remove) {
            let Some(id) = objs.iter().find(|o| o.name == name).map(|o| o.id.clone()) else { continue };
            // Tasks of the old spec may still hold it; the next `up` removes it then.
            match engine.remove(object, &id).await {
                Ok(_) => report(&format!("removed old {what} {name}")),
                Err(e) => warnings.push(format!("could not remove {name} yet: {e}")),
            }
        }
    }
    Ok(warnings)
}

/// The image a service runs.
pub fn image_of(spec: &ServiceSpec) -> &str {
    spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref()).and_then(|c| c.image.as_deref()).unwrap_or("")
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
            r.config_id = Some(config_ids.get(&wanted).cloned().ok_or_else(|| {
                EngineError::refused(format!("deploy service {name}"), format!("config {wanted} does not exist"))
            })?);
        }
        for r in c.secrets.iter_mut().flatten() {
            let wanted = r.secret_name.clone().unwrap_or_default();
            r.secret_id = Some(secret_ids.get(&wanted).cloned().ok_or_else(|| {
                EngineError::refused(format!("deploy service {name}"), format!("secret {wanted} does not exist"))
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
pub async fn scale(engine: &dyn Engine, desired: &DesiredStack, service: &str, n: u64) -> Result<(), EngineError> {
    rewrite(engine, desired, service, &format!("scale {service} to {n}"), |spec| {
        spec.mode = Some(bollard::models::ServiceSpecMode {
            replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(n as i64) }),
            ..Default::default()
        });
    })
    .await
}

/// Replaces every task of a service of the deployed stack by a new one of the same spec, under
/// its rolling-update policy, as `docker service update --force` does: what a release of a
/// new image looks like to clients, and the spec left behind is the stack's own.
pub async fn restart(engine: &dyn Engine, desired: &DesiredStack, service: &str) -> Result<(), EngineError> {
    rewrite(engine, desired, service, &format!("restart the tasks of {service}"), |spec| {
        if let Some(t) = spec.task_template.as_mut() {
            t.force_update = Some(1);
        }
    })
    .await
}

/// Command of a release that cannot start ([`release_broken`]).
pub const BROKEN_COMMAND: &str = "/swarmctl-release-that-cannot-start";

/// Rolls out a release of a service whose tasks cannot start (their command does not exist),
/// as a broken image would: under a `rollback` failure action swarm puts the previous spec
/// back by itself. Its spec-hash label is not the stack's, so that `up` repairs the service if
/// nothing else does.
pub async fn release_broken(engine: &dyn Engine, desired: &DesiredStack, service: &str) -> Result<(), EngineError> {
    rewrite(engine, desired, service, &format!("roll out a broken release of {service}"), |spec| {
        if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
            c.command = Some(vec![BROKEN_COMMAND.into()]);
            c.args = None;
        }
        spec.labels.get_or_insert_with(HashMap::new).insert(LABEL_SPEC_HASH.into(), "broken-release".into());
    })
    .await
}

/// Writes the stack's own spec for `service` back, whatever the engine has: what a phase that
/// changed it does when swarm did not put it back.
pub async fn reset(engine: &dyn Engine, desired: &DesiredStack, service: &str) -> Result<(), EngineError> {
    let spec = desired
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some(service))
        .ok_or_else(|| EngineError::refused(format!("reset {service}"), "the stack has no such service"))?;
    let observed = engine.observe(&desired.namespace).await?;
    engine.update_service(service, ready(spec, &observed)?, None).await.map(|_| ())
}

/// Whether the engine runs the stack's own spec for `service`, at its configured count.
pub async fn is_current(engine: &dyn Engine, desired: &DesiredStack, service: &str) -> Result<bool, EngineError> {
    let Some(spec) = desired.services.iter().find(|s| s.name.as_deref() == Some(service)) else {
        return Ok(false);
    };
    let want = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).map(|n| n as u64);
    let observed = engine.observe(&desired.namespace).await?;
    Ok(observed
        .services
        .iter()
        .any(|s| s.name == service && s.spec_hash.as_deref() == Some(spec_hash(spec).as_str()) && s.replicas == want))
}

/// Writes the stack's own spec for `service`, changed by `edit`. Refuses when the deployed
/// service is not the stack's current spec: the change would also undo another deploy.
async fn rewrite(
    engine: &dyn Engine,
    desired: &DesiredStack,
    service: &str,
    action: &str,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Result<(), EngineError> {
    let action = action.to_string();
    let spec = desired
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some(service))
        .ok_or_else(|| EngineError::refused(&action, "the stack has no such service"))?;
    let observed = engine.observe(&desired.namespace).await?;
    let deployed = observed.services.iter().find(|s| s.name == service);
    if deployed.and_then(|s| s.spec_hash.as_deref()) != Some(spec_hash(spec).as_str()) {
        return Err(EngineError::Api {
            action,
            message: "the deployed service is not the stack's current spec: run `swarmctl up` with the same stack and settings first".into(),
        });
    }
    let mut spec = ready(spec, &observed)?;
    edit(&mut spec);
    // Without credentials: the service keeps those it was deployed with.
    engine.update_service(service, spec, None).await.map(|_| ())
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
    engine: &dyn Engine,
    stack: &str,
    volumes: bool,
    timeout: Duration,
    report: &mut dyn FnMut(&str),
) -> Result<Removed, EngineError> {
    let mut removed = Removed::default();
    let deadline = Instant::now() + timeout;
    let observed = engine.observe(stack).await?;
    for s in &observed.services {
        engine.remove(Object::Service, &s.id).await?;
        report(&format!("removed service {}", s.name));
        removed.services.push(s.name.clone());
    }
    loop {
        let left = engine.stack_containers(stack).await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(EngineError::refused(
                format!("remove stack {stack}"),
                format!("{left} containers of the stack are still there after {}s", timeout.as_secs()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (object, list) in [(Object::Config, &observed.configs), (Object::Secret, &observed.secrets)] {
        for c in list {
            if engine.remove(object, &c.id).await? {
                removed.configs_and_secrets.push(c.name.clone());
            }
        }
    }
    if !removed.configs_and_secrets.is_empty() {
        report(&format!("removed {} configs and secrets", removed.configs_and_secrets.len()));
    }
    for n in &observed.networks {
        // Endpoints of just-removed tasks detach asynchronously ("has active endpoints").
        until_removed(engine, Object::Network, &n.id, &n.name, deadline).await?;
        report(&format!("removed network {}", n.name));
        removed.networks.push(n.name.clone());
    }
    if volumes {
        for v in engine.stack_volumes(stack).await? {
            // A volume stays in use until its containers are gone on every node.
            until_removed(engine, Object::Volume, &v, &v, deadline).await?;
            report(&format!("removed volume {v}"));
            removed.volumes.push(v);
        }
    }
    Ok(removed)
}

/// Removes an object that the engine may refuse for a while (still in use), retrying until
/// `deadline`.
async fn until_removed(
    engine: &dyn Engine,
    object: Object,
    id: &str,
    name: &str,
    deadline: Instant,
) -> Result<(), EngineError> {
    loop {
        match engine.remove(object, id).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{name} not removable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::with_stack;

    #[tokio::test(start_paused = true)]
    async fn down_removes_services_before_what_they_use_and_twice_is_fine() {
        let (fake, desired) = with_stack(1, &[]).await;
        let mut lines = Vec::new();
        let removed =
            remove(&fake, &desired.namespace, true, Duration::from_secs(60), &mut |l| lines.push(l.to_string()))
                .await
                .unwrap();
        assert_eq!(removed.services.len(), desired.services.len());
        assert_eq!(removed.networks.len(), desired.networks.len());
        assert_eq!(removed.configs_and_secrets.len(), desired.configs.len() + desired.secrets.len());
        assert_eq!(removed.volumes.len(), desired.volumes.len());
        let calls = fake.calls();
        let last_service = calls.iter().rposition(|c| c.starts_with("remove service")).unwrap();
        let first_other = calls.iter().position(|c| c.starts_with("remove config") || c.starts_with("remove network"));
        assert!(first_other.is_some_and(|i| i > last_service), "{calls:?}");
        assert_eq!(fake.observe(&desired.namespace).await.unwrap(), Observed::default(), "nothing left");
        let again = remove(&fake, &desired.namespace, true, Duration::from_secs(60), &mut |_| {}).await.unwrap();
        assert!(again.services.is_empty() && again.networks.is_empty(), "{again:?}");
    }
}
