//! Convert: the compose model → the Engine API objects a stack consists of (networks, volumes,
//! configs, secrets, services), exactly as `docker stack deploy` would build them.
//!
//! Pure and deterministic: no I/O, maps sorted, so the same input gives byte-identical specs
//! (which is what makes a second `up` plan nothing). Config and secret references carry names
//! only; their IDs exist once they are created, and the deploy step fills them in.

mod service;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use serde::Serialize;

use crate::compose::Compose;

pub use service::{convert_placement, convert_service};

/// Label that makes an object part of a stack (the only thing that makes a "stack" in swarm).
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
/// Label recording the image as written in the compose file.
pub const LABEL_IMAGE: &str = "com.docker.stack.image";

/// Why a compose model cannot be converted; names the service and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConvertError {
    /// `services.server.deploy.restart_policy.condition`, `configs.traefik_yml`, …
    pub location: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl ConvertError {
    pub(crate) fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError { location: location.into(), message: message.into() }
    }
}

/// Stack naming: `<stack>_<name>` for everything the stack owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(pub String);

impl Namespace {
    /// The swarm name of a stack object.
    pub fn scope(&self, name: &str) -> String {
        format!("{}_{name}", self.0)
    }

    /// The stack's labels plus `extra`, sorted into the map type bollard uses.
    pub fn labels(&self, extra: &BTreeMap<String, String>) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = extra.clone().into_iter().collect();
        labels.insert(LABEL_NAMESPACE.into(), self.0.clone());
        labels
    }
}

/// A named volume the stack owns (created by the node at task start, or by `init`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    /// Swarm name.
    pub name: String,
    /// Driver.
    pub driver: String,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Labels, with the namespace.
    pub labels: BTreeMap<String, String>,
}

/// Everything a stack consists of, in the order it must be created.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DesiredStack {
    /// The stack name.
    pub namespace: String,
    /// Networks to create (external ones are only referenced, not listed).
    pub networks: Vec<NetworkCreateRequest>,
    /// Named volumes.
    pub volumes: Vec<VolumeSpec>,
    /// Configs (data base64-encoded, as the API wants it).
    pub configs: Vec<ConfigSpec>,
    /// Secrets (data base64-encoded).
    pub secrets: Vec<SecretSpec>,
    /// Services, sorted by name.
    pub services: Vec<ServiceSpec>,
}

/// Resolved names of the stack's top-level objects, by compose key.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Network key → swarm name.
    pub networks: BTreeMap<String, String>,
    /// Volume key → swarm name.
    pub volumes: BTreeMap<String, String>,
    /// Config key → swarm name.
    pub configs: BTreeMap<String, String>,
    /// Secret key → swarm name.
    pub secrets: BTreeMap<String, String>,
}

/// Converts a compose model. `files` maps each `file:` path (relative, without `./`) to the
/// content rendered for it.
pub fn convert_stack(
    ns: &Namespace,
    compose: &Compose,
    files: &BTreeMap<String, String>,
) -> Result<DesiredStack, ConvertError> {
    let mut names = Names::default();
    let mut stack = DesiredStack { namespace: ns.0.clone(), ..Default::default() };

    // Networks: only those some service uses, as the CLI does; `default` when a service
    // names none.
    let mut used: BTreeSet<String> = BTreeSet::new();
    for svc in compose.services.values() {
        match &svc.networks {
            Some(nets) if !nets.is_empty() => used.extend(nets.keys().cloned()),
            _ => {
                used.insert("default".into());
            }
        }
    }
    for key in &used {
        let def = match compose.networks.get(key) {
            Some(def) => def.clone().unwrap_or_default(),
            None if key == "default" => Default::default(),
            None => {
                return Err(ConvertError::new(
                    format!("networks.{key}"),
                    "a service uses this network but the top-level `networks:` does not define it",
                ))
            }
        };
        let name = def.name.clone().unwrap_or_else(|| ns.scope(key));
        names.networks.insert(key.clone(), name.clone());
        if def.external {
            continue;
        }
        let driver = def.driver.clone().unwrap_or_else(|| "overlay".into());
        stack.networks.push(NetworkCreateRequest {
            name,
            driver: Some(driver),
            scope: Some("swarm".into()),
            attachable: def.attachable,
            internal: def.internal,
            options: Some(def.driver_opts.clone().into_iter().collect()),
            labels: Some(ns.labels(&def.labels)),
            ..Default::default()
        });
    }

    for (key, def) in &compose.volumes {
        let def = def.clone().unwrap_or_default();
        let name = def.name.clone().unwrap_or_else(|| ns.scope(key));
        names.volumes.insert(key.clone(), name.clone());
        if def.external {
            continue;
        }
        let mut labels = def.labels.clone();
        labels.insert(LABEL_NAMESPACE.into(), ns.0.clone());
        stack.volumes.push(VolumeSpec {
            name,
            driver: def.driver.clone().unwrap_or_else(|| "local".into()),
            driver_opts: def.driver_opts.clone(),
            labels,
        });
    }

    let b64 = base64::engine::general_purpose::STANDARD;
    for (kind, objects, names_out) in
        [("configs", &compose.configs, &mut names.configs), ("secrets", &compose.secrets, &mut names.secrets)]
    {
        for (key, obj) in objects {
            let name = obj.name.clone().unwrap_or_else(|| ns.scope(key));
            names_out.insert(key.clone(), name.clone());
            if obj.external {
                continue;
            }
            let location = format!("{kind}.{key}");
            let file = obj
                .file
                .as_deref()
                .ok_or_else(|| ConvertError::new(&location, "needs `file:` (or `external: true`)"))?;
            let rel = file.trim_start_matches("./");
            let content = files.get(rel).ok_or_else(|| {
                ConvertError::new(&location, format!("file `{file}` was not rendered: nothing to read it from"))
            })?;
            let data = Some(b64.encode(content.as_bytes()));
            let labels = Some(ns.labels(&obj.labels));
            if kind == "configs" {
                stack.configs.push(ConfigSpec { name: Some(name), labels, data, ..Default::default() });
            } else {
                stack.secrets.push(SecretSpec { name: Some(name), labels, data, ..Default::default() });
            }
        }
    }

    for (key, svc) in &compose.services {
        stack.services.push(convert_service(ns, key, svc, &names)?);
    }
    Ok(stack)
}

#[cfg(test)]
mod tests;
