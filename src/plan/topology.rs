//! Can the swarm hold the stack? Placement constraints, reservations and per-node caps
//! checked against the nodes, before anything is deployed.

use serde::Serialize;

use bollard::models::{ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfigOrderEnum};

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
    /// Its Docker Engine's version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub engine: String,
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
        // A replica runs on one node: what it reserves must fit there, next to the others the
        // node holds. Summed over the nodes, 4 replicas of 2 CPUs "fit" three nodes of 3.
        let reserved = resources.reservations.unwrap_or_default();
        let per_cpu = reserved.nano_cpus.filter(|c| *c > 0);
        let per_mem = reserved.memory_bytes.filter(|m| *m > 0);
        let max = placement.max_replicas.filter(|m| *m > 0);
        let by_resources = |n: &NodeInfo| -> i64 {
            let cpu = per_cpu.map_or(i64::MAX, |per| n.nano_cpus / per);
            let mem = per_mem.map_or(i64::MAX, |per| n.memory_bytes / per);
            cpu.min(mem)
        };
        let fit: i64 =
            eligible.iter().map(|n| by_resources(n).min(max.unwrap_or(i64::MAX))).fold(0, i64::saturating_add);
        if fit >= replicas {
            // A start-first update (or rollback) runs each batch of new tasks beside the old
            // ones: without room for them, swarm waits for a node forever.
            let update = (spec.update_config.as_ref())
                .filter(|u| u.order == Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST))
                .map(|u| u.parallelism);
            let rollback = (spec.rollback_config.as_ref())
                .filter(|u| u.order == Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST))
                .map(|u| u.parallelism);
            let start_first =
                [update, rollback].into_iter().flatten().map(|p| p.filter(|p| *p > 0).unwrap_or(replicas)).max();
            if let Some(batch) = start_first.filter(|b| fit < replicas + b) {
                problems.push(format!(
                    "service {name}: a start-first update runs {batch} new task(s) beside the ones they replace, but the eligible nodes hold only {fit} of its tasks{}: swarm would wait for room forever. Raise the per-node cap (placement.max_replicas_per_node) or add nodes, or set update.order and rollback.order to stop-first",
                    max.map(|m| format!(" (at most {m} per node)")).unwrap_or_default()
                ));
            }
            continue;
        }
        let unbounded: i64 = eligible.iter().map(|n| by_resources(n)).fold(0, i64::saturating_add);
        if unbounded >= replicas {
            let max = max.unwrap_or(0);
            problems.push(format!(
                "service {name}: {replicas} replicas at most {max} per node need {} nodes, {} are eligible",
                (replicas + max - 1) / max.max(1),
                eligible.len()
            ));
            continue;
        }
        let each =
            [per_cpu.map(|c| format!("{:.1} CPUs", c as f64 / 1e9)), per_mem.map(|m| format!("{} MiB", m >> 20))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ");
        let duplicate = |n: &NodeInfo| eligible.iter().filter(|o| o.hostname == n.hostname).count() > 1;
        let per_node: Vec<String> = eligible
            .iter()
            .map(|n| {
                let label = if duplicate(n) {
                    format!("{} {}", n.hostname, &n.id[..n.id.len().min(12)])
                } else {
                    n.hostname.clone()
                };
                format!(
                    "{label} ({:.1} CPUs, {} MiB): {}",
                    n.nano_cpus as f64 / 1e9,
                    n.memory_bytes >> 20,
                    by_resources(n).min(max.unwrap_or(i64::MAX))
                )
            })
            .collect();
        problems.push(format!(
            "service {name}: {replicas} replicas reserving {each} each, and only {fit} fit on the eligible nodes ({}): lower the reservations or the replicas, or add nodes",
            per_node.join(", ")
        ));
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
            engine: String::new(),
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
    fn reservations_are_checked_against_the_eligible_nodes() {
        let nodes = [node("m", "manager", 2, 24), node("w1", "worker", 16, 64), node("w2", "worker", 16, 64)];
        assert!(check(&stack(&["node.role == worker"], 12, Some(2.0), Some(1)), &nodes).is_empty());
        let problems = check(&stack(&["node.role == worker"], 12, Some(4.0), Some(1)), &nodes);
        assert_eq!(
            problems,
            ["service st_server: 12 replicas reserving 4.0 CPUs and 1024 MiB each, and only 8 fit on the eligible nodes (w1 (16.0 CPUs, 65536 MiB): 4, w2 (16.0 CPUs, 65536 MiB): 4): lower the reservations or the replicas, or add nodes"]
        );
        assert!(
            check(&stack(&[], 12, None, None), &[node("vm", "manager", 2, 24)]).is_empty(),
            "the default stack fits one node"
        );
    }

    #[test]
    fn each_replica_must_fit_on_one_node_not_on_their_sum() {
        // 9 CPUs in all, 8 reserved: yet a node of 3 holds one replica of 2.
        let nodes = [node("a", "worker", 3, 8), node("b", "worker", 3, 8), node("c", "worker", 3, 8)];
        let problems = check(&stack(&[], 4, Some(2.0), None), &nodes);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("only 3 fit on the eligible nodes (a (3.0 CPUs, 8192 MiB): 1, b"), "{problems:?}");
        assert!(check(&stack(&[], 3, Some(2.0), None), &nodes).is_empty());
        // Memory decides as well, and a per-node cap is said as such.
        assert!(check(&stack(&[], 3, None, Some(5)), &nodes).is_empty(), "one of 5 GiB on each 8 GiB node");
        let problems = check(&stack(&[], 4, None, Some(5)), &nodes);
        assert!(problems[0].contains("reserving 5120 MiB each, and only 3 fit"), "{problems:?}");
        let mut capped = stack(&[], 4, None, None);
        capped.services[0].task_template.as_mut().unwrap().placement.as_mut().unwrap().max_replicas = Some(1);
        assert_eq!(
            check(&capped, &nodes),
            ["service st_server: 4 replicas at most 1 per node need 4 nodes, 3 are eligible"]
        );
    }

    #[test]
    fn a_start_first_update_needs_room_beside_the_old_tasks() {
        let nodes = [node("a", "manager", 2, 8), node("b", "worker", 2, 8), node("c", "worker", 2, 8)];
        let mut s = stack(&[], 6, None, None);
        s.services[0].task_template.as_mut().unwrap().placement.as_mut().unwrap().max_replicas = Some(2);
        s.services[0].update_config = Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            ..Default::default()
        });
        assert_eq!(
            check(&s, &nodes),
            ["service st_server: a start-first update runs 1 new task(s) beside the ones they replace, but the eligible nodes hold only 6 of its tasks (at most 2 per node): swarm would wait for room forever. Raise the per-node cap (placement.max_replicas_per_node) or add nodes, or set update.order and rollback.order to stop-first"]
        );
        // Room for one more: fine; stop-first needs none.
        s.services[0].task_template.as_mut().unwrap().placement.as_mut().unwrap().max_replicas = Some(3);
        assert!(check(&s, &nodes).is_empty());
        s.services[0].task_template.as_mut().unwrap().placement.as_mut().unwrap().max_replicas = Some(2);
        s.services[0].update_config.as_mut().unwrap().order = Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST);
        assert!(check(&s, &nodes).is_empty());
        // The rollback's order counts too.
        s.services[0].rollback_config = Some(ServiceSpecRollbackConfig {
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
            ..Default::default()
        });
        assert_eq!(check(&s, &nodes).len(), 1);
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
