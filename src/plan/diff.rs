//! The diff: what `up` must do, as a pure comparison of the desired stack (from `convert`)
//! against what the engine has (observed, by the stack's namespace label).
//!
//! Services are compared by a hash of their desired spec, stored in the service label
//! `swarmctl.spec-hash` when swarmctl writes it: the engine normalizes specs on the way in
//! (and bollard reads some fields back under other names), so field-by-field comparison of
//! what comes back would see changes that are not there.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::ServiceSpec;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::convert::DesiredStack;

/// Service label holding the hash of the spec swarmctl last wrote.
pub const LABEL_SPEC_HASH: &str = "swarmctl.spec-hash";

/// A stack object the engine already has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedObject {
    /// Name.
    pub name: String,
    /// Engine ID.
    pub id: String,
}

/// A service the engine already has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedService {
    /// Name.
    pub name: String,
    /// Engine ID.
    pub id: String,
    /// `version.index`, needed to update it.
    pub version: u64,
    /// The `swarmctl.spec-hash` label, if swarmctl wrote this service.
    pub spec_hash: Option<String>,
    /// Replicas it runs now (a `docker service scale` or a scaling phase leaves the label as it
    /// was, so the hash alone would miss it).
    pub replicas: Option<u64>,
}

/// Everything of the stack the engine has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Networks.
    pub networks: Vec<ObservedObject>,
    /// Configs.
    pub configs: Vec<ObservedObject>,
    /// Secrets.
    pub secrets: Vec<ObservedObject>,
    /// Services.
    pub services: Vec<ObservedService>,
}

/// The kind of a stack object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Overlay network.
    Network,
    /// Swarm config.
    Config,
    /// Swarm secret.
    Secret,
    /// Service.
    Service,
}

/// What to do with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It exists with another spec.
    Update,
    /// It exists and matches.
    Unchanged,
    /// It exists and the stack no longer has it.
    Remove,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Object kind.
    pub kind: Kind,
    /// Object name.
    pub name: String,
    /// What to do.
    pub action: Action,
    /// Why, when it is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The ordered steps: networks, configs and secrets, services, then removals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Plan {
    /// Steps in execution order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// Nothing to create, update or remove.
    pub fn is_noop(&self) -> bool {
        self.steps.iter().all(|s| s.action == Action::Unchanged)
    }

    /// Names of the steps with `action`, as `kind/name`.
    pub fn names(&self, action: Action) -> Vec<String> {
        self.steps.iter().filter(|s| s.action == action).map(|s| format!("{}/{}", kind_name(s.kind), s.name)).collect()
    }

    /// `{"create":[…],"update":[…],"remove":[…],"unchanged":[…]}`.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "create": self.names(Action::Create),
            "update": self.names(Action::Update),
            "remove": self.names(Action::Remove),
            "unchanged": self.names(Action::Unchanged),
        })
    }

    /// One line per step, for people: `+` create, `~` update, `-` remove, `=` unchanged.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let sign = match s.action {
                Action::Create => "+",
                Action::Update => "~",
                Action::Remove => "-",
                Action::Unchanged => "=",
            };
            let note = s.note.as_ref().map(|n| format!("  ({n})")).unwrap_or_default();
            out.push_str(&format!("{sign} {:<8} {}{note}\n", kind_name(s.kind), s.name));
        }
        out
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Network => "network",
        Kind::Config => "config",
        Kind::Secret => "secret",
        Kind::Service => "service",
    }
}

/// Replicas of a replicated service spec.
pub fn replicas(spec: &ServiceSpec) -> Option<u64> {
    spec.mode.as_ref()?.replicated.as_ref()?.replicas.map(|r| r.max(0) as u64)
}

/// Hash of a service spec in a canonical form (maps sorted), without its own hash label.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let mut spec = spec.clone();
    if let Some(labels) = spec.labels.as_mut() {
        labels.remove(LABEL_SPEC_HASH);
    }
    // serde_json's map is sorted, so going through Value makes HashMap order irrelevant.
    let canonical = serde_json::to_value(&spec).expect("a spec serializes").to_string();
    Sha256::digest(canonical.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The plan that takes `observed` to `desired`. Stack services missing from the desired
/// stack are removed only with `prune`; configs and secrets the stack no longer uses are
/// always removed (their names are content hashes, so they are stale versions).
pub fn diff(desired: &DesiredStack, observed: &Observed, prune: bool) -> Plan {
    let mut steps = Vec::new();
    let have = |objs: &[ObservedObject]| -> BTreeSet<String> { objs.iter().map(|o| o.name.clone()).collect() };

    let networks = have(&observed.networks);
    for n in &desired.networks {
        let action = if networks.contains(&n.name) { Action::Unchanged } else { Action::Create };
        steps.push(Step { kind: Kind::Network, name: n.name.clone(), action, note: None });
    }
    let configs = have(&observed.configs);
    let desired_configs: BTreeSet<String> = desired.configs.iter().filter_map(|c| c.name.clone()).collect();
    for name in &desired_configs {
        let action = if configs.contains(name) { Action::Unchanged } else { Action::Create };
        steps.push(Step { kind: Kind::Config, name: name.clone(), action, note: None });
    }
    let secrets = have(&observed.secrets);
    let desired_secrets: BTreeSet<String> = desired.secrets.iter().filter_map(|c| c.name.clone()).collect();
    for name in &desired_secrets {
        let action = if secrets.contains(name) { Action::Unchanged } else { Action::Create };
        steps.push(Step { kind: Kind::Secret, name: name.clone(), action, note: None });
    }

    let services: BTreeMap<&str, &ObservedService> = observed.services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut desired_services = BTreeSet::new();
    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        desired_services.insert(name.clone());
        let (action, note) = match services.get(name.as_str()) {
            None => (Action::Create, None),
            Some(o) if o.spec_hash.as_deref() == Some(spec_hash(spec).as_str()) => {
                let want = replicas(spec);
                match (o.replicas, want) {
                    (Some(now), Some(want)) if now != want => {
                        (Action::Update, Some(format!("scaled to {now} replicas; the stack says {want}")))
                    }
                    _ => (Action::Unchanged, None),
                }
            }
            Some(o) if o.spec_hash.is_none() => (Action::Update, Some("not written by swarmctl".to_string())),
            Some(_) => (Action::Update, None),
        };
        steps.push(Step { kind: Kind::Service, name, action, note });
    }
    for o in &observed.services {
        if !desired_services.contains(&o.name) {
            let (action, note) = if prune {
                (Action::Remove, None)
            } else {
                (Action::Unchanged, Some("not in the stack; --prune removes it".into()))
            };
            steps.push(Step { kind: Kind::Service, name: o.name.clone(), action, note });
        }
    }
    for (kind, objs, keep) in
        [(Kind::Config, &observed.configs, &desired_configs), (Kind::Secret, &observed.secrets, &desired_secrets)]
    {
        for o in objs.iter().filter(|o| !keep.contains(&o.name)) {
            steps.push(Step {
                kind,
                name: o.name.clone(),
                action: Action::Remove,
                note: Some("an older version".into()),
            });
        }
    }
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ConfigSpec, NetworkCreateRequest};

    use super::*;

    fn desired() -> DesiredStack {
        DesiredStack {
            namespace: "st".into(),
            networks: vec![NetworkCreateRequest { name: "st_mcp".into(), ..Default::default() }],
            volumes: vec![],
            configs: vec![ConfigSpec { name: Some("st_cfg_aaa".into()), ..Default::default() }],
            secrets: vec![],
            services: vec![ServiceSpec {
                name: Some("st_server".into()),
                labels: Some(HashMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())])),
                ..Default::default()
            }],
        }
    }

    fn obj(name: &str) -> ObservedObject {
        ObservedObject { name: name.into(), id: format!("id-{name}") }
    }

    #[test]
    fn empty_engine_creates_everything_in_order() {
        let plan = diff(&desired(), &Observed::default(), false);
        assert_eq!(plan.names(Action::Create), ["network/st_mcp", "config/st_cfg_aaa", "service/st_server"]);
        assert!(!plan.is_noop());
    }

    #[test]
    fn same_spec_is_unchanged_whatever_the_map_order() {
        let mut d = desired();
        d.services[0].mode = Some(bollard::models::ServiceSpecMode {
            replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(3) }),
            ..Default::default()
        });
        let hash = spec_hash(&d.services[0]);
        let mut other = d.services[0].clone();
        other.labels = Some(HashMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]));
        assert_eq!(spec_hash(&other), hash);
        let observed = Observed {
            networks: vec![obj("st_mcp")],
            configs: vec![obj("st_cfg_aaa")],
            secrets: vec![],
            services: vec![ObservedService {
                name: "st_server".into(),
                id: "s1".into(),
                version: 7,
                spec_hash: Some(hash),
                replicas: replicas(&d.services[0]),
            }],
        };
        let plan = diff(&d, &observed, false);
        assert!(plan.is_noop(), "{}", plan.render());
        assert_eq!(plan.summary()["unchanged"].as_array().unwrap().len(), 3);

        // Scaled by hand (or by a scaling phase that did not finish): same label, other count.
        let mut scaled = observed.clone();
        scaled.services[0].replicas = Some(9);
        let plan = diff(&d, &scaled, false);
        assert_eq!(plan.names(Action::Update), ["service/st_server"]);
        assert!(plan.render().contains("scaled to 9 replicas; the stack says 3"), "{}", plan.render());
    }

    #[test]
    fn changed_spec_updates_only_that_service_and_stale_configs_go() {
        let mut d = desired();
        let old_hash = spec_hash(&d.services[0]);
        d.services[0].labels.as_mut().unwrap().insert("c".into(), "3".into());
        d.configs[0].name = Some("st_cfg_bbb".into());
        let observed = Observed {
            networks: vec![obj("st_mcp")],
            configs: vec![obj("st_cfg_aaa")],
            secrets: vec![obj("st_pw_old")],
            services: vec![
                ObservedService {
                    name: "st_server".into(),
                    id: "s1".into(),
                    version: 7,
                    spec_hash: Some(old_hash),
                    replicas: None,
                },
                ObservedService { name: "st_gone".into(), id: "s2".into(), version: 3, ..Default::default() },
            ],
        };
        let plan = diff(&d, &observed, false);
        assert_eq!(plan.names(Action::Update), ["service/st_server"]);
        assert_eq!(plan.names(Action::Create), ["config/st_cfg_bbb"]);
        assert_eq!(plan.names(Action::Remove), ["config/st_cfg_aaa", "secret/st_pw_old"]);
        assert!(plan.names(Action::Unchanged).contains(&"service/st_gone".to_string()), "kept without --prune");
        let pruned = diff(&d, &observed, true);
        assert!(pruned.names(Action::Remove).contains(&"service/st_gone".to_string()));
        let last_kept = plan.steps.iter().rposition(|s| s.action != Action::Remove).unwrap();
        assert!(plan.steps[..last_kept].iter().all(|s| s.action != Action::Remove), "removals come last");
    }

    #[test]
    fn a_service_not_written_by_swarmctl_is_updated_with_a_note() {
        let observed = Observed {
            services: vec![ObservedService {
                name: "st_server".into(),
                id: "s1".into(),
                version: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let plan = diff(&desired(), &observed, false);
        let step = plan.steps.iter().find(|s| s.kind == Kind::Service).unwrap();
        assert_eq!((step.action, step.note.as_deref()), (Action::Update, Some("not written by swarmctl")));
        assert!(plan.render().contains("~ service  st_server  (not written by swarmctl)"), "{}", plan.render());
    }
}
