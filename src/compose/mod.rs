//! The compose model: the part of the compose file format (v3, as `docker stack deploy` reads
//! it) that swarmctl deploys, parsed from the rendered `stack.yml`.
//!
//! Every struct denies unknown fields: a compose key swarmctl cannot convert (a template
//! override adding `privileged:`, say) is reported with its path and line instead of being
//! dropped silently, which is what `docker stack deploy` does with its "Ignoring unsupported
//! options" warning.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::units::{ByteSize, Cpus, Duration};

/// Why a compose file was rejected.
#[derive(Debug, thiserror::Error)]
#[error("{}{key}: {message}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ComposeError {
    /// Dotted path of the offending key.
    pub key: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Parses compose YAML into the typed model.
pub fn parse(text: &str) -> Result<Compose, ComposeError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|err| {
        let line = err.inner().location().map(|l| l.line());
        let mut message = crate::yaml::clean_message(&err.inner().to_string());
        if message.starts_with("unknown field") {
            message =
                format!("{message}; swarmctl does not support this compose key (it would be dropped, not deployed)");
        }
        ComposeError { key: err.path().to_string(), line, message }
    })
}

/// A compose file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// Format version (informational; swarmctl reads the v3 keys below).
    pub version: Option<String>,
    /// Services by short name.
    pub services: BTreeMap<String, Service>,
    /// Networks by short name (`net: {}` and `net:` both mean defaults).
    #[serde(default)]
    pub networks: BTreeMap<String, Option<NetworkDef>>,
    /// Named volumes by short name.
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeDef>>,
    /// Configs by short name.
    #[serde(default)]
    pub configs: BTreeMap<String, FileObject>,
    /// Secrets by short name.
    #[serde(default)]
    pub secrets: BTreeMap<String, FileObject>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    /// Driver (default `overlay`).
    pub driver: Option<String>,
    /// Driver options, e.g. `encrypted`.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// Standalone containers may attach.
    pub attachable: Option<bool>,
    /// No external connectivity.
    pub internal: Option<bool>,
    /// Created outside the stack; only referenced.
    #[serde(default)]
    pub external: bool,
    /// Full name instead of `<stack>_<key>`.
    pub name: Option<String>,
    /// Extra labels.
    #[serde(default, deserialize_with = "map_or_list")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    /// Driver (default `local`).
    pub driver: Option<String>,
    /// Driver options.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    /// Created outside the stack; only referenced.
    #[serde(default)]
    pub external: bool,
    /// Full name instead of `<stack>_<key>`.
    pub name: Option<String>,
    /// Extra labels.
    #[serde(default, deserialize_with = "map_or_list")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level config or secret, read from a file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObject {
    /// Path of the content, relative to the compose file.
    pub file: Option<String>,
    /// Full name instead of `<stack>_<key>`.
    pub name: Option<String>,
    /// Created outside the stack; only referenced.
    #[serde(default)]
    pub external: bool,
    /// Extra labels.
    #[serde(default, deserialize_with = "map_or_list")]
    pub labels: BTreeMap<String, String>,
}

/// A service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint (swarm `Command`).
    #[serde(default, deserialize_with = "opt_command")]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments (swarm `Args`).
    #[serde(default, deserialize_with = "opt_command")]
    pub command: Option<Vec<String>>,
    /// Environment; a key without value is passed as `KEY`.
    #[serde(default, deserialize_with = "env_map")]
    pub environment: BTreeMap<String, Option<String>>,
    /// Container labels.
    #[serde(default, deserialize_with = "map_or_list")]
    pub labels: BTreeMap<String, String>,
    /// Container hostname (swarm templates allowed).
    pub hostname: Option<String>,
    /// User to run as.
    pub user: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Run an init process as PID 1.
    pub init: Option<bool>,
    /// Read-only root filesystem.
    pub read_only: Option<bool>,
    /// Signal that stops the container.
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace_period: Option<Duration>,
    /// Healthcheck.
    pub healthcheck: Option<Healthcheck>,
    /// Resource limits.
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Namespaced kernel parameters.
    #[serde(default, deserialize_with = "map_or_list")]
    pub sysctls: BTreeMap<String, String>,
    /// Mounts.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Attached networks.
    #[serde(default, deserialize_with = "service_networks")]
    pub networks: Option<BTreeMap<String, ServiceNetwork>>,
    /// Configs mounted as files.
    #[serde(default)]
    pub configs: Vec<FileRef>,
    /// Secrets mounted as files.
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    /// Swarm scheduling.
    #[serde(default)]
    pub deploy: Deploy,
}

/// A healthcheck.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]`, or a string (run by the shell).
    #[serde(default, deserialize_with = "opt_health_test")]
    pub test: Option<Vec<String>>,
    /// Between checks.
    pub interval: Option<Duration>,
    /// Per check.
    pub timeout: Option<Duration>,
    /// Failures before unhealthy.
    pub retries: Option<u64>,
    /// Grace period after start.
    pub start_period: Option<Duration>,
    /// Interval during the start period (engine API 1.44+).
    pub start_interval: Option<Duration>,
    /// Turn off the image's healthcheck.
    #[serde(default)]
    pub disable: bool,
}

/// A ulimit: one value (soft = hard) or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Ulimit {
    /// Soft and hard alike.
    Single(i64),
    /// Separate soft and hard limits.
    Pair {
        /// Soft limit.
        soft: i64,
        /// Hard limit.
        hard: i64,
    },
}

/// A mount: `source:target[:ro]` or the long form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeMount {
    /// `volume`, `bind` or `tmpfs`.
    pub kind: String,
    /// Volume name or host path (empty for tmpfs).
    pub source: Option<String>,
    /// Path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// Do not copy image content into a new volume.
    pub nocopy: bool,
    /// tmpfs size.
    pub tmpfs_size: Option<ByteSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeMountLong {
    #[serde(rename = "type")]
    kind: String,
    source: Option<String>,
    target: String,
    #[serde(default)]
    read_only: bool,
    volume: Option<VolumeOpts>,
    tmpfs: Option<TmpfsOpts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeOpts {
    #[serde(default)]
    nocopy: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TmpfsOpts {
    size: Option<ByteSize>,
}

impl<'de> Deserialize<'de> for VolumeMount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Short(String),
            Long(VolumeMountLong),
        }
        match Raw::deserialize(d)? {
            Raw::Short(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [t] => (None, *t, ""),
                    [s, t] => (Some(*s), *t, ""),
                    [s, t, m] => (Some(*s), *t, *m),
                    _ => return Err(serde::de::Error::custom(format!("invalid volume `{s}`: use source:target[:ro]"))),
                };
                let kind = match source {
                    Some(src) if src.starts_with('/') || src.starts_with('.') || src.starts_with('~') => "bind",
                    _ => "volume",
                };
                Ok(VolumeMount {
                    kind: kind.into(),
                    source: source.map(String::from),
                    target: target.into(),
                    read_only: mode.split(',').any(|m| m == "ro"),
                    ..Default::default()
                })
            }
            Raw::Long(l) => Ok(VolumeMount {
                kind: l.kind,
                source: l.source,
                target: l.target,
                read_only: l.read_only,
                nocopy: l.volume.map(|v| v.nocopy).unwrap_or(false),
                tmpfs_size: l.tmpfs.and_then(|t| t.size),
            }),
        }
    }
}

/// A published port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Port {
    /// Container port.
    pub target: u16,
    /// Published port (none: swarm picks one).
    pub published: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// `ingress` (routing mesh) or `host`.
    pub mode: String,
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            target: u16,
            published: Option<u16>,
            protocol: Option<String>,
            mode: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u16),
            Short(String),
            Long(Long),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!("invalid port `{s}`: use [published:]target[/protocol] or the long form"))
        };
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Port { target: n, published: None, protocol: "tcp".into(), mode: "ingress".into() }),
            Raw::Short(s) => {
                let (ports, protocol) = s.split_once('/').unwrap_or((&s, "tcp"));
                let (published, target) = match ports.split_once(':') {
                    Some((p, t)) => (Some(p.parse().map_err(|_| bad(&s))?), t.parse().map_err(|_| bad(&s))?),
                    None => (None, ports.parse().map_err(|_| bad(&s))?),
                };
                Ok(Port { target, published, protocol: protocol.into(), mode: "ingress".into() })
            }
            Raw::Long(l) => Ok(Port {
                target: l.target,
                published: l.published,
                protocol: l.protocol.unwrap_or_else(|| "tcp".into()),
                mode: l.mode.unwrap_or_else(|| "ingress".into()),
            }),
        }
    }
}

/// A service's attachment to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    /// Extra DNS names on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A config or secret mounted into a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRef {
    /// Key in the top-level `configs`/`secrets`.
    pub source: String,
    /// Path (configs) or name under /run/secrets (secrets); default: the source.
    pub target: Option<String>,
    /// Owner uid.
    pub uid: Option<String>,
    /// Owner gid.
    pub gid: Option<String>,
    /// File mode.
    pub mode: Option<u32>,
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            source: String,
            target: Option<String>,
            uid: Option<String>,
            gid: Option<String>,
            mode: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Short(String),
            Long(Long),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Short(source) => FileRef { source, ..Default::default() },
            Raw::Long(l) => FileRef { source: l.source, target: l.target, uid: l.uid, gid: l.gid, mode: l.mode },
        })
    }
}

/// `deploy:` — swarm scheduling.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// `replicated` (default) or `global`.
    pub mode: Option<String>,
    /// Replica count (replicated mode).
    pub replicas: Option<u64>,
    /// `vip` or `dnsrr`.
    pub endpoint_mode: Option<String>,
    /// Service labels (read by Traefik and Prometheus).
    #[serde(default, deserialize_with = "map_or_list")]
    pub labels: BTreeMap<String, String>,
    /// Limits and reservations.
    #[serde(default)]
    pub resources: DeployResources,
    /// Restart policy.
    pub restart_policy: Option<RestartPolicy>,
    /// Rolling update.
    pub update_config: Option<UpdateConfig>,
    /// Rollback.
    pub rollback_config: Option<UpdateConfig>,
    /// Placement.
    pub placement: Option<Placement>,
}

/// `deploy.resources`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployResources {
    /// Hard caps.
    pub limits: Option<ResourceLimits>,
    /// Guaranteed amounts.
    pub reservations: Option<ResourceLimits>,
}

/// CPU, memory and pids amounts.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPUs.
    pub cpus: Option<Cpus>,
    /// Memory.
    pub memory: Option<ByteSize>,
    /// Maximum processes (limits only).
    pub pids: Option<i64>,
}

/// `deploy.restart_policy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    pub condition: Option<String>,
    /// Wait before a restart.
    pub delay: Option<Duration>,
    /// Restarts allowed within `window`.
    pub max_attempts: Option<u64>,
    /// Window for `max_attempts`.
    pub window: Option<Duration>,
}

/// `deploy.update_config` / `deploy.rollback_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Tasks at once (compose default 1).
    pub parallelism: Option<u64>,
    /// Between batches.
    pub delay: Option<Duration>,
    /// `continue`, `pause` or `rollback`.
    pub failure_action: Option<String>,
    /// Watch time per task.
    pub monitor: Option<Duration>,
    /// Tolerated failure ratio.
    pub max_failure_ratio: Option<f64>,
    /// `stop-first` or `start-first`.
    pub order: Option<String>,
}

/// `deploy.placement`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Constraints.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Spread preferences.
    #[serde(default)]
    pub preferences: Vec<Preference>,
    /// Tasks per node.
    pub max_replicas_per_node: Option<u64>,
}

/// A placement preference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// Spread over the values of this node attribute.
    pub spread: String,
}

/// `KEY: value` map or `["KEY=value"]` list → map.
fn map_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(env_map(d)?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
}

fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Map(BTreeMap<String, Option<crate::yaml::Scalar>>),
        List(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Map(m) => m.into_iter().map(|(k, v)| (k, v.map(String::from))).collect(),
        Raw::List(l) => l
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (item, None),
            })
            .collect(),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    S(String),
    L(Vec<String>),
}

fn opt_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<StringOrList>::deserialize(d)?.map(|v| match v {
        StringOrList::S(s) => split_words(&s),
        StringOrList::L(l) => l,
    }))
}

fn opt_health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<StringOrList>::deserialize(d)?.map(|v| match v {
        StringOrList::S(s) => vec!["CMD-SHELL".to_string(), s],
        StringOrList::L(l) => l,
    }))
}

fn service_networks<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, ServiceNetwork>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Map(BTreeMap<String, Option<ServiceNetwork>>),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::List(l) => l.into_iter().map(|n| (n, ServiceNetwork::default())).collect(),
        Raw::Map(m) => m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect(),
    }))
}

/// Splits a command string the way a POSIX shell would split plain words and quotes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}
