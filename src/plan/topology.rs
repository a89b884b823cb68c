//! Can the swarm hold the stack? Placement constraints, reservations and per-node caps
//! checked against the nodes, before anything is deployed.

use serde::Serialize;

use crate::convert::DesiredStack;

/// One node, as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `ready`, `down`, …
    pub state: String,
    /// CPUs, in billionths.
    pub nano_cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// The address the node reports to the swarm (`Status.Addr`): where its host-mode ports
    /// answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub addr: String,
}

/// Whether `node` satisfies one constraint; `None` for a constraint this check cannot judge
/// (labels, engine properties), which is then assumed satisfiable.
pub(crate) fn satisfies(node: &NodeInfo, constraint: &str) -> Option<bool> {
    let (key, want, equal) = if let Some((k, v)) = constraint.split_once("!=") {
        (k, v, false)
    } else if let Some((k, v)) = constraint.split_once("==") {
        (k, v, true)
    } else {
        return None;
    };
    let actual = match key.trim() {
        "node.role" => &node.role,
        "node.hostname" => &node.hostname,
        "node.id" => &node.id,
        _ => return None,
    };
    Some((actual == want.trim()) == equal)
}

/// Every reason the stack cannot be placed on `nodes` (empty: it can, as far as known).
pub fn check(desired: &DesiredStack, nodes: &[NodeInfo]) -> Vec<String> {
    let usable: Vec<&NodeInfo> = nodes.iter().filter(|n| n.availability == "active" && n.state == "ready").collect();
    let mut problems = Vec::new();
    if usable.is_empty() {
        problems.push(format!("no node is active and ready ({} nodes in the swarm)", nodes.len()));
        return problems;
    }
    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        let task = spec.task_template.clone().unwrap_or_default();
        let placement = task.placement.unwrap_or_default();
        let constraints = placement.constraints.unwrap_or_default();
        let eligible: Vec<&&NodeInfo> =
            usable.iter().filter(|n| constraints.iter().all(|c| satisfies(n, c).unwrap_or(true))).collect();
        if eligible.is_empty() {
            let nodes: Vec<String> = usable.iter().map(|n| format!("{} ({})", n.hostname, n.role)).collect();
            problems.push(format!(
                "service {name}: no node satisfies its placement constraints {constraints:?}; nodes: {}",
                nodes.join(", ")
            ));
            continue;
        }
        let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(1);
        if let Some(max) = placement.max_replicas.filter(|m| *m > 0) {
            if replicas > max * eligible.len() as i64 {
                problems.push(format!(
                    "service {name}: {replicas} replicas at most {max} per node need {} nodes, {} are eligible",
                    (replicas + max - 1) / max,
                    eligible.len()
                ));
            }
        }
        let resources = task.resources.unwrap_or_default();
        let biggest = eligible.iter().map(|n| n.nano_cpus).max().unwrap_or(0);
        if let Some(limit) = resources.limits.as_ref().and_then(|l| l.nano_cpus).filter(|l| *l > biggest && biggest > 0)
        {
            problems.push(format!(
                "service {name}: its CPU limit ({:.1}) is more than any eligible node has ({:.1}); the engine refuses to start such a container: lower the limit",
                limit as f64 / 1e9,
                biggest as f64 / 1e9
            ));
        }
        let reserved = resources.reservations.unwrap_or_default();
        let cpus: i64 = eligible.iter().map(|n| n.nano_cpus).sum();
        let memory: i64 = eligible.iter().map(|n| n.memory_bytes).sum();
        if let Some(per) = reserved.nano_cpus.filter(|c| *c > 0) {
            if per * replicas > cpus {
                problems.push(format!(
                    "service {name}: {replicas} replicas reserve {:.1} CPUs, the eligible nodes have {:.1}",
                    (per * replicas) as f64 / 1e9,
                    cpus as f64 / 1e9
                ));
            }
        }
        if let Some(per) = reserved.memory_bytes.filter(|m| *m > 0) {
            if per * replicas > memory {
                problems.push(format!(
                    "service {name}: {replicas} replicas reserve {} MiB, the eligible nodes have {} MiB",
                    (per * replicas) >> 20,
                    memory >> 20
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use bollard::models::*;

    use super::*;

    fn node(host: &str, role: &str, cpus: i64, mem_gib: i64) -> NodeInfo {
        NodeInfo {
            id: host.into(),
            hostname: host.into(),
            role: role.into(),
            availability: "active".into(),
            state: "ready".into(),
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes: mem_gib << 30,
            addr: String::new(),
        }
    }

    fn stack(constraints: &[&str], replicas: i64, cpus: Option<f64>, mem_gib: Option<i64>) -> DesiredStack {
        DesiredStack {
            services: vec![ServiceSpec {
                name: Some("st_server".into()),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas) }),
                    ..Default::default()
                }),
                task_template: Some(TaskSpec {
                    placement: Some(TaskSpecPlacement {
                        constraints: Some(constraints.iter().map(|c| c.to_string()).collect()),
                        ..Default::default()
                    }),
                    resources: Some(TaskSpecResources {
                        reservations: Some(ResourceObject {
                            nano_cpus: cpus.map(|c| (c * 1e9) as i64),
                            memory_bytes: mem_gib.map(|m| m << 30),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_original_erlmcp_topology_cannot_run_on_one_manager() {
        let one = [node("vm", "manager", 2, 24)];
        let problems = check(&stack(&["node.role == worker"], 12, Some(2.0), Some(1)), &one);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("no node satisfies its placement constraints"), "{problems:?}");
        let problems = check(&stack(&["node.role != manager"], 12, None, None), &one);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn reservations_are_summed_over_eligible_nodes() {
        let nodes = [node("m", "manager", 2, 24), node("w1", "worker", 16, 64), node("w2", "worker", 16, 64)];
        assert!(check(&stack(&["node.role == worker"], 12, Some(2.0), Some(1)), &nodes).is_empty());
        let problems = check(&stack(&["node.role == worker"], 12, Some(4.0), Some(1)), &nodes);
        assert_eq!(problems, ["service st_server: 12 replicas reserve 48.0 CPUs, the eligible nodes have 32.0"]);
        assert!(
            check(&stack(&[], 12, None, None), &[node("vm", "manager", 2, 24)]).is_empty(),
            "the default stack fits one node"
        );
    }

    #[test]
    fn a_cpu_limit_above_every_node_is_refused_before_deploying() {
        let mut s = stack(&[], 2, None, None);
        let task = s.services[0].task_template.as_mut().unwrap();
        task.resources.as_mut().unwrap().limits = Some(Limit { nano_cpus: Some(4_000_000_000), ..Default::default() });
        let problems = check(&s, &[node("vm", "manager", 2, 24)]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("CPU limit (4.0) is more than any eligible node has (2.0)"), "{problems:?}");
        assert!(check(&s, &[node("big", "manager", 8, 24)]).is_empty());
    }

    #[test]
    fn drained_nodes_and_unknown_constraints() {
        let mut drained = node("w", "worker", 8, 8);
        drained.availability = "drain".into();
        let nodes = [node("m", "manager", 2, 4), drained];
        assert!(!check(&stack(&["node.role == worker"], 1, None, None), &nodes).is_empty());
        assert!(check(&stack(&["node.labels.zone == a"], 1, None, None), &nodes).is_empty(), "labels are not judged");
    }
}
