//! Load from the tasks of a swarm service (`--via swarm`, and `swarmctl load --on-swarm`):
//! one load worker per task, spread over the nodes by swarm, each running its share of the
//! plan from one start time (a phase's straight to the replicas on the stack's network).
//! Their seconds and reports come back through the service's logs (the manager gathers them
//! from every node, so no shared disk), into the folders local workers would write, and are
//! merged exactly as theirs are.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::models::{
    NetworkAttachmentConfig, ResourcesUlimits, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::Ctx;
use crate::config::ClientTransport;
use crate::engine::{oneoff, Handle, Object, Task};
use crate::load::workers::{self, Fleet};
use crate::load::{LoadPlan, NodeClock, RunResult};
use crate::plan::load::TaskPlan;

/// From the service's creation to the tasks' common start: enough for swarm to place them
/// and for their nodes to start a container of an image they have. A task that starts later
/// still runs its share, late, and the generator's start lag says so.
const LEAD: Duration = Duration::from_secs(10);
/// How long a task's end may come before its last lines do (the logs go through the manager).
const LOG_LAG: Duration = Duration::from_secs(5);
/// What a task gets after SIGINT to drain what is in flight and report.
const GRACE: Duration = Duration::from_secs(60);

/// The load service's name for a stack.
pub fn service_name(stack: &str) -> String {
    format!("{stack}-load")
}

/// The load service: `tasks` tasks of `image`, each a load worker given the whole `plan`
/// (with its start time) and finding its share by its slot; on `network` (if any), never restarted
/// (a task that dies is reported, not replaced), stopped by SIGINT so that it reports.
pub fn service_spec(
    stack: &str,
    image: &str,
    network: Option<&str>,
    plan: &LoadPlan,
    needs: &TaskPlan,
    clocks: &BTreeMap<String, i64>,
    placement: &crate::config::Placement,
) -> anyhow::Result<ServiceSpec> {
    let placement = crate::compose::Placement {
        constraints: placement.constraints.clone(),
        preferences: placement.spread.iter().map(|s| crate::compose::Preference { spread: s.clone() }).collect(),
        max_replicas_per_node: placement.max_replicas_per_node.map(u64::from),
    };
    let labels = HashMap::from([(oneoff::LABEL.to_string(), stack.to_string())]);
    let env = vec![
        format!("{}={}", crate::load::TASK_PLAN, serde_json::to_string(plan)?),
        // Swarm's template: each task its own slot, 1 to the number of tasks.
        format!("{}={{{{.Task.Slot}}}}", crate::load::TASK_SLOT),
        format!("{}={{{{.Node.ID}}}}", crate::load::TASK_NODE),
        format!("{}={}", crate::load::TASK_CLOCKS, serde_json::to_string(clocks)?),
    ];
    // What its share needs, whatever the node's default: no more, since an engine may give a
    // container no more than its own limit (a task asking more fails to start, and says so).
    let files = needs.open_files as i64;
    let nofile = ResourcesUlimits { name: Some("nofile".into()), soft: Some(files), hard: Some(files) };
    Ok(ServiceSpec {
        name: Some(service_name(stack)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                args: Some(vec!["-q".into(), "load-worker".into()]),
                env: Some(env),
                labels: Some(labels),
                stop_signal: Some("SIGINT".into()),
                stop_grace_period: Some(GRACE.as_nanos() as i64),
                // One task address reaches each replica from at most the ephemeral range's
                // ports: the widest range.
                sysctls: Some(HashMap::from([("net.ipv4.ip_local_port_range".to_string(), "1024 65535".to_string())])),
                ulimits: Some(vec![nofile]),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(crate::convert::convert_placement(&placement)),
            networks: network
                .map(|n| vec![NetworkAttachmentConfig { target: Some(n.to_string()), ..Default::default() }]),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(plan.workers as i64) }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Runs `plan` from `plan.workers` swarm tasks against the replicas directly; each merged
/// second goes into the run's timeline.
pub async fn run(ctx: &Ctx, phase: &str, plan: &LoadPlan, transport: ClientTransport) -> anyhow::Result<RunResult> {
    let image = ctx.client_image.clone().context("no image to run the load tasks in (the builtin image)")?;
    let (plan, replicas) = super::direct::toward_replicas(ctx, plan, transport).await?;
    let rec = ctx.rec.clone();
    let launch = Launch {
        engine: ctx.engine.clone(),
        reach: ctx.reach.clone(),
        image,
        stack: ctx.config.name.clone(),
        network: Some(ctx.config.mcp_network()),
        placement: ctx.config.test.load_tasks.clone(),
        dir: ctx.phase_dir(phase),
        cancel: ctx.cancel.clone(),
        event: Arc::new(move |detail| {
            rec.event("load", detail);
        }),
    };
    let (rec, progress) = (ctx.rec.clone(), ctx.progress.clone());
    let outcome = launch
        .run(
            plan,
            replicas,
            &mut |plan, name| {
                ctx.say(format!(
                    "[{phase}] from {} load task(s) of service {name}, direct to {replicas} replicas",
                    plan.workers
                ));
                super::begin_load(ctx.progress.as_ref(), phase, plan);
            },
            &mut |s, _| {
                let p = rec.second(phase, s);
                super::show_point(progress.as_ref(), phase, s.t, &p);
            },
        )
        .await;
    ctx.progress.end(phase, "");
    Ok(outcome?.result)
}

/// A load service to run: where, in what, on which network, and where its tasks' output goes.
pub struct Launch {
    /// The engine of a manager.
    pub engine: Handle,
    /// The nodes' clocks are read through it.
    pub reach: Arc<crate::agent::Reach>,
    /// The builtin image (this binary), which every node can pull or has.
    pub image: String,
    /// Names the service (`<stack>-load`) and labels it, so that `down` finds one left behind.
    pub stack: String,
    /// The overlay network the tasks join; none: the targets are reached through the nodes'
    /// own networks (published ports).
    pub network: Option<String>,
    /// Where the tasks may run.
    pub placement: crate::config::Placement,
    /// Where plan.json and each task's folder (`workers/task-<slot>`) go.
    pub dir: PathBuf,
    /// Ctrl-C: the tasks are stopped with SIGINT, drain and report.
    pub cancel: tokio_util::sync::CancellationToken,
    /// What the run says about its tasks (their plan, the nodes' clocks, where they ran).
    pub event: Arc<dyn Fn(String) + Send + Sync>,
}

impl Launch {
    /// Runs `plan` from `plan.workers` tasks toward `destinations` addresses: checks what they
    /// need against the nodes, measures the nodes' clocks, creates the service, merges the
    /// tasks' seconds (`on_second`) and reports exactly as local workers', and removes the
    /// service however the run ends. `on_start` is told the plan and the service's name once
    /// it is created.
    pub async fn run(
        &self,
        plan: LoadPlan,
        destinations: usize,
        on_start: &mut dyn FnMut(&LoadPlan, &str),
        on_second: &mut dyn FnMut(&crate::load::engine::Second, &crate::load::stats::Stats),
    ) -> anyhow::Result<crate::load::Outcome> {
        let tasks = plan.workers.clamp(1, plan.sessions.max(1));
        let base = self.dir.join("workers");
        let dirs: Vec<PathBuf> = (1..=tasks).map(|slot| base.join(format!("task-{slot}"))).collect();
        for d in &dirs {
            workers::clear(d)?;
        }
        std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
        let start = crate::units::unix_now_ms() + LEAD.as_millis() as u64;
        let plan = LoadPlan { start_at_ms: Some(start), workers: tasks, ..plan };
        // Header values stay out of the folder (they are in the tasks' environment).
        plan.redacted().write(&self.dir.join("plan.json"))?;
        let name = service_name(&self.stack);
        // Tasks that cannot be placed, or cannot hold their share, would fail the run late:
        // said now, with what the nodes have.
        let nodes = self.engine.nodes().await?;
        let sockets = plan.sockets_per_session();
        let needs = crate::plan::load::load_tasks(tasks, plan.sessions, sockets, destinations, &self.placement, &nodes)
            .map_err(|why| {
                anyhow::anyhow!("the load tasks cannot run: {why}; change test.load_tasks or the number of tasks")
            })?;
        (self.event)(needs.to_string());
        let clocks = clocks(&self.reach, &nodes).await;
        let offsets: BTreeMap<String, i64> =
            clocks.iter().filter_map(|(id, c)| Some((id.clone(), c.measured?.offset_ms.round() as i64))).collect();
        let clocks: Vec<NodeClock> = clocks.into_values().collect();
        let shown: Vec<String> = clocks.iter().map(ToString::to_string).collect();
        (self.event)(format!(
            "node clocks against this machine's: {}; each task starts by its node's",
            shown.join(", ")
        ));
        let spec =
            service_spec(&self.stack, &self.image, self.network.as_deref(), &plan, &needs, &offsets, &self.placement)?;
        // One left by a run that could not remove it would hold the name.
        self.engine.remove(Object::Service, &name).await?;
        self.engine.create_service(spec.clone(), None).await?;
        on_start(&plan, &name);

        let mut logs = self.engine.follow_service_logs(&name);
        let demux_base = base.clone();
        let follower = tokio::spawn(async move {
            while let Some(line) = logs.recv().await {
                match line.map_err(anyhow::Error::from).and_then(|l| workers::demux(&l, &demux_base)) {
                    Ok(_) => {}
                    Err(e) => tracing::warn!("load task output: {}", crate::error_text(&e)),
                }
            }
        });
        let mut fleet = Tasks {
            event: self.event.clone(),
            placed: false,
            engine: self.engine.clone(),
            name: name.clone(),
            spec,
            dirs,
            open_files: needs.open_files,
            ended_at: HashMap::new(),
            deadline: Instant::now() + LEAD + plan.run_time() + GRACE + Duration::from_secs(60),
        };
        let live = Arc::new(crate::load::engine::Live::default());
        let outcome = workers::merge(&plan, Some(&self.dir), &mut fleet, self.cancel.clone(), live, on_second).await;
        follower.abort();
        remove(self.engine.as_ref(), &name).await;
        let mut outcome = outcome?;
        outcome.result.clocks = clocks;
        Ok(outcome)
    }
}

/// Each active node's clock against this machine's, by node ID: measured through this engine
/// or the node's agent, or why it could not be.
async fn clocks(reach: &crate::agent::Reach, nodes: &[crate::engine::NodeInfo]) -> BTreeMap<String, NodeClock> {
    let mut out = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.availability == "active" && n.state == "ready") {
        let (measured, unmeasured) = match reach.clock(&n.id).await {
            Ok(o) => (Some(o), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.insert(n.id.clone(), NodeClock { node: n.hostname.clone(), measured, unmeasured });
    }
    out
}

/// Removes the load service and waits (a minute at most) until its tasks have stopped.
async fn remove(engine: &dyn crate::engine::Engine, name: &str) {
    if let Err(e) = engine.remove(Object::Service, name).await {
        tracing::warn!("cannot remove the load service {name}: {e}");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match engine.tasks(name, false).await {
            Ok(t) if t.iter().any(|t| t.state == "running") => tokio::time::sleep(Duration::from_millis(500)).await,
            _ => return,
        }
    }
    tracing::warn!("the tasks of the load service {name} still run a minute after its removal");
}

/// The tasks of the load service, followed through the engine.
struct Tasks {
    event: Arc<dyn Fn(String) + Send + Sync>,
    /// Whether where the tasks run is in the timeline yet.
    placed: bool,
    engine: Handle,
    name: String,
    spec: ServiceSpec,
    dirs: Vec<PathBuf>,
    /// The open files each task was given.
    open_files: u64,
    /// When each slot's task was first seen ended.
    ended_at: HashMap<u64, Instant>,
    /// Past its schedule by a minute: every task counts as ended.
    deadline: Instant,
}

impl Tasks {
    /// The latest task of each slot.
    async fn by_slot(&self) -> anyhow::Result<HashMap<u64, Task>> {
        let mut latest: HashMap<u64, Task> = HashMap::new();
        for t in self.engine.tasks(&self.name, false).await? {
            let newer = latest.get(&(t.slot as u64)).map_or(true, |l| t.state_since_ms > l.state_since_ms);
            if newer {
                latest.insert(t.slot as u64, t);
            }
        }
        Ok(latest)
    }
}

fn finished(state: &str) -> bool {
    matches!(state, "complete" | "failed" | "shutdown" | "rejected" | "orphaned" | "remove")
}

#[async_trait::async_trait]
impl Fleet for Tasks {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    /// A task has ended once its report came, or once it has been over for a few seconds
    /// (its last lines may still be on their way), or when the run is a minute past its
    /// schedule (a task that never started).
    async fn ended(&mut self) -> anyhow::Result<Vec<bool>> {
        let late = Instant::now() > self.deadline;
        let tasks = self.by_slot().await?;
        let running = tasks.values().filter(|t| t.state == "running").count();
        if !self.placed && running == self.dirs.len() {
            self.placed = true;
            let mut on: Vec<(u64, &str)> = tasks.iter().map(|(slot, t)| (*slot, t.node.as_str())).collect();
            on.sort();
            let on: Vec<String> = on.iter().map(|(slot, node)| format!("{slot} on {node}")).collect();
            (self.event)(format!("load tasks running: {}", on.join(", ")));
        }
        let mut ended = Vec::with_capacity(self.dirs.len());
        for (k, dir) in self.dirs.iter().enumerate() {
            let slot = k as u64 + 1;
            let over = tasks.get(&slot).is_some_and(|t| finished(&t.state));
            let since = over.then(|| *self.ended_at.entry(slot).or_insert_with(Instant::now));
            ended.push(dir.join("report.json").exists() || late || since.is_some_and(|s| s.elapsed() >= LOG_LAG));
        }
        Ok(ended)
    }

    /// Scales the service to 0: swarm stops every task with its stop signal, SIGINT, on
    /// whichever node it runs.
    async fn interrupt(&mut self) {
        let mut spec = self.spec.clone();
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        });
        if let Err(e) = self.engine.update_service(&self.name, spec, None).await {
            tracing::warn!("cannot stop the load tasks: {e}");
        }
    }

    async fn lost(&mut self, k: usize) -> String {
        let slot = k as u64 + 1;
        match self.by_slot().await.ok().and_then(|mut t| t.remove(&slot)) {
            Some(t) => {
                let error = t.error.unwrap_or_default();
                // runc's words for a nofile limit above the engine's own (RLIMIT_NOFILE is 7).
                let hint = if error.contains("rlimit type 7") {
                    format!(
                        " (its node's engine cannot give a container {} open files: raise the engine's own limit, LimitNOFILE of docker.service, or give more tasks)",
                        self.open_files
                    )
                } else {
                    String::new()
                };
                let error = if error.is_empty() { String::new() } else { format!(": {error}") };
                format!("load task {slot} (node {}) ended {}{error}{hint} without a report", t.node, t.state)
            }
            None => format!("load task {slot} never started"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_task_is_given_the_whole_plan_and_finds_its_share_by_its_slot() {
        let target = crate::load::client::Target::parse("http://10.0.1.5:8080/mcp", false, false).unwrap();
        let mut plan = LoadPlan::toward(vec![target]);
        plan.workers = 3;
        plan.start_at_ms = Some(1_800_000_000_000);
        let placement = crate::config::Placement {
            constraints: vec!["node.labels.load == true".into()],
            max_replicas_per_node: Some(1),
            spread: Vec::new(),
        };
        let nodes = ["swnode1", "swnode2", "swnode3"].map(|host| crate::engine::NodeInfo {
            id: format!("id-{host}"),
            hostname: host.into(),
            role: "worker".into(),
            availability: "active".into(),
            state: "ready".into(),
            nano_cpus: 2_000_000_000,
            memory_bytes: 4 << 30,
            addr: String::new(),
            engine: String::new(),
        });
        let needs =
            crate::plan::load::load_tasks(3, 300_000, 1, 6, &crate::config::Placement::default(), &nodes).unwrap();
        let clocks = BTreeMap::from([("id-swnode2".to_string(), -42)]);
        let spec =
            service_spec("ci", "swarmctl/swarmctl:0.1.0", Some("ci_mcp-network"), &plan, &needs, &clocks, &placement)
                .unwrap();
        let c = spec.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
        let env = c.env.as_ref().unwrap();
        assert!(env.contains(&"SWARMCTL_LOAD_SLOT={{.Task.Slot}}".to_string()), "{env:?}");
        assert!(env.contains(&"SWARMCTL_LOAD_NODE={{.Node.ID}}".to_string()), "{env:?}");
        assert!(env.contains(&r#"SWARMCTL_LOAD_CLOCKS={"id-swnode2":-42}"#.to_string()), "{env:?}");
        let given = env[0].strip_prefix("SWARMCTL_LOAD_PLAN=").unwrap();
        let back: LoadPlan = serde_json::from_str(given).unwrap();
        assert_eq!((back.workers, back.start_at_ms, back.sessions), (3, plan.start_at_ms, plan.sessions));
        let mut pinned = spec.clone();
        pinned.task_template.as_mut().unwrap().container_spec.as_mut().unwrap().env = None;
        insta::assert_yaml_snapshot!(pinned);
    }
}
