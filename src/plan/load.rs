//! Can the nodes run the load tasks? What each task needs (open files, ports toward each
//! replica) against what one container and one source address can have, and how many tasks
//! land on each node beside its cores and memory: said before the load service is created.

use crate::config::Placement;
use crate::plan::topology::{satisfies, NodeInfo};

/// The ports a task's one address has toward one replica: the range its service sets
/// (`net.ipv4.ip_local_port_range` 1024–65535).
pub const PORTS_PER_ADDRESS: u64 = 64_512;
/// The most open files a container may be given: the kernel's default `fs.nr_open`.
pub const MAX_OPEN_FILES: u64 = 1_048_576;
/// Client memory per open session, with room over the 5.6 KiB measured at 100,000 sessions
/// (docs/performance.md): only for the note that a node may be short of memory.
const BYTES_PER_SESSION: u64 = 8 << 10;

/// What the load tasks need, and where they may go.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPlan {
    /// Tasks.
    pub tasks: usize,
    /// Sessions of the largest share.
    pub sessions_per_task: usize,
    /// Open files each task is given (its sockets and what the process needs besides).
    pub open_files: u64,
    /// Ports the largest share uses toward one replica, of [`PORTS_PER_ADDRESS`].
    pub ports_per_replica: u64,
    /// The nodes that may run tasks: hostname, tasks at most, CPUs, memory bytes.
    pub nodes: Vec<(String, usize, f64, i64)>,
    /// What may not go well, though it may be tried.
    pub notes: Vec<String>,
}

/// Plans `tasks` load tasks for `sessions` sessions of `sockets` sockets each, spread over
/// `replicas` replicas, on the `nodes` that `placement` allows; why not, when they cannot run.
pub fn load_tasks(
    tasks: usize,
    sessions: usize,
    sockets: usize,
    replicas: usize,
    placement: &Placement,
    nodes: &[NodeInfo],
) -> Result<TaskPlan, String> {
    let tasks = tasks.max(1);
    let per_task = sessions.div_ceil(tasks);
    let spare = crate::load::preflight::SPARE_FILES;
    let open_files = (per_task * sockets) as u64 + spare;
    let fix = |needed: u64| format!("give at least {needed} tasks (the profile's workers), or fewer sessions");
    if open_files > MAX_OPEN_FILES {
        let needed = ((sessions * sockets) as u64).div_ceil(MAX_OPEN_FILES - spare);
        return Err(format!(
            "{per_task} sessions per task need {open_files} open files, more than a container may be given ({MAX_OPEN_FILES}): {}",
            fix(needed)
        ));
    }
    let replicas = replicas.max(1);
    let ports_per_replica = (per_task.div_ceil(replicas) * sockets) as u64;
    if ports_per_replica > PORTS_PER_ADDRESS {
        let needed = ((sessions * sockets) as u64).div_ceil(PORTS_PER_ADDRESS * replicas as u64);
        return Err(format!(
            "{per_task} sessions per task over {replicas} replicas need {ports_per_replica} ports from the task's address toward each, more than its {PORTS_PER_ADDRESS}: {}",
            fix(needed)
        ));
    }
    let eligible: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.availability == "active" && n.state == "ready")
        .filter(|n| placement.constraints.iter().all(|c| satisfies(n, c).unwrap_or(true)))
        .collect();
    if eligible.is_empty() {
        return Err(format!(
            "no active and ready node satisfies test.load_tasks.constraints {:?}",
            placement.constraints
        ));
    }
    // Swarm spreads a service's tasks evenly over the nodes it may use.
    let even = tasks.div_ceil(eligible.len());
    let at_most = placement.max_replicas_per_node.map_or(even, |m| even.min(m as usize).max(1));
    if at_most * eligible.len() < tasks {
        return Err(format!(
            "{tasks} tasks at most {at_most} per node need {} nodes, {} may run them",
            tasks.div_ceil(at_most),
            eligible.len()
        ));
    }
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for n in eligible {
        let cpus = n.nano_cpus as f64 / 1e9;
        let need = at_most as u64 * per_task as u64 * BYTES_PER_SESSION;
        if n.memory_bytes > 0 && need > n.memory_bytes as u64 {
            notes.push(format!(
                "{} has {} MiB; {at_most} task(s) of {per_task} sessions may need about {} MiB",
                n.hostname,
                n.memory_bytes >> 20,
                need >> 20
            ));
        }
        out.push((n.hostname.clone(), at_most, cpus, n.memory_bytes));
    }
    if at_most > 1 {
        notes.push(format!(
            "up to {at_most} tasks share a node's cores: each uses every core it is given, so fewer tasks with more sessions each load the nodes as well"
        ));
    }
    Ok(TaskPlan { tasks, sessions_per_task: per_task, open_files, ports_per_replica, nodes: out, notes })
}

impl std::fmt::Display for TaskPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(host, n, cpus, mem)| {
                format!("{host} (up to {n}; {cpus:.0} cores, {:.1} GiB)", *mem as f64 / (1u64 << 30) as f64)
            })
            .collect();
        write!(
            f,
            "{} load task(s) of up to {} sessions: {} open files each, {} of {PORTS_PER_ADDRESS} ports per replica; on {}",
            self.tasks,
            self.sessions_per_task,
            self.open_files,
            self.ports_per_replica,
            nodes.join(", ")
        )?;
        for note in &self.notes {
            write!(f, "; note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, role: &str, cpus: i64, gib: i64) -> NodeInfo {
        NodeInfo {
            id: format!("id-{host}"),
            hostname: host.into(),
            role: role.into(),
            availability: "active".into(),
            state: "ready".into(),
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes: gib << 30,
            addr: String::new(),
            engine: String::new(),
        }
    }

    fn three() -> Vec<NodeInfo> {
        vec![node("swnode1", "manager", 2, 4), node("swnode2", "worker", 2, 4), node("swnode3", "worker", 2, 4)]
    }

    #[test]
    fn a_feasible_plan_says_what_each_task_needs_and_where_they_go() {
        let plan = load_tasks(3, 100_000, 1, 6, &Placement::default(), &three()).unwrap();
        insta::assert_snapshot!(plan.to_string(), @"3 load task(s) of up to 33334 sessions: 33398 open files each, 5556 of 64512 ports per replica; on swnode1 (up to 1; 2 cores, 4.0 GiB), swnode2 (up to 1; 2 cores, 4.0 GiB), swnode3 (up to 1; 2 cores, 4.0 GiB)");
        // Eight tasks on three nodes share cores; small nodes are said to be short of memory.
        let small = vec![node("a", "manager", 2, 1), node("b", "worker", 2, 1)];
        let plan = load_tasks(8, 400_000, 1, 12, &Placement::default(), &small).unwrap();
        assert_eq!(plan.nodes.iter().map(|n| n.1).collect::<Vec<_>>(), [4, 4]);
        assert_eq!(plan.notes.len(), 3, "{:?}", plan.notes);
        assert!(
            plan.notes[0].starts_with("a has 1024 MiB; 4 task(s) of 50000 sessions may need about 1562 MiB"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn what_cannot_run_is_refused_with_how_many_tasks_would_do() {
        // Legacy SSE holds two sockets a session: 600,000 sessions from one task.
        let err = load_tasks(1, 600_000, 2, 12, &Placement::default(), &three()).unwrap_err();
        assert!(err.contains("more than a container may be given (1048576): give at least 2 tasks"), "{err}");
        // 200,000 sessions toward one replica from one address: 4 tasks at least.
        let err = load_tasks(1, 200_000, 1, 1, &Placement::default(), &three()).unwrap_err();
        assert!(
            err.contains(
                "need 200000 ports from the task's address toward each, more than its 64512: give at least 4 tasks"
            ),
            "{err}"
        );
        assert!(load_tasks(4, 200_000, 1, 1, &Placement::default(), &three()).is_ok());
        // Workers only, one per node: two nodes for three tasks.
        let workers = Placement {
            constraints: vec!["node.role == worker".into()],
            max_replicas_per_node: Some(1),
            spread: Vec::new(),
        };
        let err = load_tasks(3, 3_000, 1, 6, &workers, &three()).unwrap_err();
        assert_eq!(err, "3 tasks at most 1 per node need 3 nodes, 2 may run them");
        let plan = load_tasks(2, 3_000, 1, 6, &workers, &three()).unwrap();
        assert_eq!(plan.nodes.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(), ["swnode2", "swnode3"]);
        let labelled = Placement { constraints: vec!["node.hostname == swnode9".into()], ..Default::default() };
        let err = load_tasks(1, 10, 1, 6, &labelled, &three()).unwrap_err();
        assert!(err.starts_with("no active and ready node satisfies"), "{err}");
    }
}
