//! An engine in memory, for unit tests of what sits on the seam (apply, the convergence wait,
//! the phases' swarm actions) without a daemon. It keeps objects by name, schedules a service's
//! replicas at once on its nodes round-robin, replaces a killed task in the same slot, and can
//! be told to leave new tasks pending or failing with a reason. Every write is logged in
//! `calls`, in order. The real engine is exercised by the integration tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};

use super::{
    oneoff, Credentials, Engine, EngineError, Membership, NodeInfo, Object, Observed, ServiceInfo, Task, UpdateState,
    Usage,
};
use crate::plan::{ObservedObject, ObservedService, LABEL_SPEC_HASH};

/// How a call that carried registry credentials is recorded: the server they are for.
fn with(auth: &Option<Credentials>) -> String {
    auth.as_ref()
        .map(|a| format!(" with credentials for {}", a.serveraddress.as_deref().unwrap_or("?")))
        .unwrap_or_default()
}

/// What new tasks of a service do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Run.
    Run,
    /// Stay pending with the scheduler's reason.
    Pending(String),
    /// Fail with this error.
    Fail(String),
    /// Stay starting (no error, never running).
    Starting,
}

#[derive(Debug, Clone)]
struct Service {
    id: String,
    spec: ServiceSpec,
    version: u64,
    update: Option<(UpdateState, u64)>,
}

#[derive(Debug, Default)]
struct State {
    membership: Membership,
    /// The next `swarm init` loses a race: someone else made the swarm first.
    init_raced: bool,
    nodes: Vec<NodeInfo>,
    networks: BTreeMap<String, (String, Option<String>)>,
    configs: BTreeMap<String, (String, Option<String>)>,
    secrets: BTreeMap<String, (String, Option<String>)>,
    services: BTreeMap<String, Service>,
    tasks: Vec<(String, Task)>,
    fates: BTreeMap<String, Fate>,
    /// Fates of a service's new tasks on one node, before `fates`.
    node_fates: BTreeMap<(String, String), Fate>,
    images: BTreeSet<String>,
    /// The node whose containers this engine can act on; `None`: every node's.
    local: Option<String>,
    volumes: BTreeMap<String, Option<String>>,
    next: u64,
    calls: Vec<String>,
}

/// The engine in memory.
#[derive(Debug, Default)]
pub struct Fake {
    state: Mutex<State>,
}

fn namespace(labels: &Option<std::collections::HashMap<String, String>>) -> Option<String> {
    labels.as_ref().and_then(|l| l.get(crate::convert::LABEL_NAMESPACE).cloned())
}

impl Fake {
    /// A one-manager swarm with `workers` more nodes.
    pub fn swarm(workers: usize) -> Fake {
        let fake = Fake::default();
        {
            let mut s = fake.lock();
            s.membership = Membership { state: "active".into(), manager: true, node_id: "node0".into() };
            for i in 0..=workers {
                s.nodes.push(NodeInfo {
                    id: format!("node{i}"),
                    hostname: if i == 0 { "manager".into() } else { format!("worker{i}") },
                    role: if i == 0 { "manager" } else { "worker" }.into(),
                    availability: "active".into(),
                    state: "ready".into(),
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 8 << 30,
                    addr: format!("127.0.0.{}", 11 + i),
                    engine: "20.10.24".into(),
                });
            }
        }
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `swarm init` finds the engine made a manager by someone else in the meantime.
    pub fn race_init(&self) {
        self.lock().init_raced = true;
    }

    /// From now on this engine acts only on containers of `node`, as a real manager's does.
    pub fn local_node(&self, node: &str) {
        self.lock().local = Some(node.into());
    }

    /// What new tasks of `service` do from now on.
    pub fn set_fate(&self, service: &str, fate: Fate) {
        self.lock().fates.insert(service.into(), fate);
    }

    /// What new tasks of `service` do on `node` from now on.
    pub fn set_node_fate(&self, service: &str, node: &str, fate: Fate) {
        self.lock().node_fates.insert((service.into(), node.into()), fate);
    }

    /// Marks `service`'s latest update so, as of `at_ms` (Unix milliseconds).
    pub fn set_update(&self, service: &str, update: UpdateState, at_ms: u64) {
        if let Some(s) = self.lock().services.get_mut(service) {
            s.update = Some((update, at_ms));
        }
    }

    /// Writes so far, in order (`create service st_server`, `kill c3 SIGKILL`, …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The spec the engine holds for a service.
    pub fn spec(&self, service: &str) -> Option<ServiceSpec> {
        self.lock().services.get(service).map(|s| s.spec.clone())
    }

    /// Adds an image to this node.
    pub fn add_image(&self, tag: &str) {
        self.lock().images.insert(tag.into());
    }

    fn refused(action: String, message: &str) -> EngineError {
        EngineError::refused(action, message)
    }
}

/// The `ci` stack with `sets`, applied to a fake swarm of a manager and `workers` workers: the
/// engine and the stack's desired specs.
pub async fn with_stack(workers: usize, sets: &[&str]) -> (Fake, crate::convert::DesiredStack) {
    let source = crate::deploy::Source {
        stack: Some("ci".into()),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        templates: None,
    };
    let (_, desired) = source.prepare(Some("swarmctl/mcp-server:test".into())).expect("the ci stack renders");
    let fake = Fake::swarm(workers);
    let observed = fake.observe(&desired.namespace).await.expect("observe");
    let plan = crate::plan::diff(&desired, &observed, false);
    super::stack::ensure_volumes(&fake, &desired).await.expect("volumes");
    super::stack::apply(&fake, &desired, &plan, &Default::default(), &mut |_| {}).await.expect("applied");
    (fake, desired)
}

impl State {
    /// Networks, configs or secrets: by name, with their ID and stack.
    fn objects(&mut self, kind: Object) -> &mut BTreeMap<String, (String, Option<String>)> {
        match kind {
            Object::Network => &mut self.networks,
            Object::Config => &mut self.configs,
            Object::Secret => &mut self.secrets,
            Object::Service | Object::Volume => unreachable!("kept apart"),
        }
    }

    /// Creates a network, config or secret; a name taken is refused, as the engine does.
    fn create(&mut self, kind: Object, name: String, namespace: Option<String>) -> Result<String, EngineError> {
        let what = format!("{kind:?}").to_lowercase();
        if self.objects(kind).contains_key(&name) {
            return Err(Fake::refused(format!("create {what} {name}"), "name already exists (HTTP 409)"));
        }
        let id = self.id(match kind {
            Object::Network => "net",
            Object::Config => "cfg",
            _ => "sec",
        });
        self.calls.push(format!("create {what} {name}"));
        self.objects(kind).insert(name, (id.clone(), namespace));
        Ok(id)
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn now(&mut self) -> u64 {
        crate::units::unix_now_ms()
    }

    /// A new task for `slot` of `service` on `node`, doing what the service's fate says.
    fn start_task(&mut self, service: &str, slot: i64, node: String) {
        let fate = self
            .node_fates
            .get(&(service.to_string(), node.clone()))
            .or_else(|| self.fates.get(service))
            .cloned()
            .unwrap_or(Fate::Run);
        let id = self.id("task");
        let now = self.now();
        let (state, error, container) = match fate {
            Fate::Run => ("running", None, Some(self.id("container"))),
            Fate::Pending(e) => ("pending", Some(e), None),
            Fate::Fail(e) => ("failed", Some(e), Some(self.id("container"))),
            Fate::Starting => ("starting", None, Some(self.id("container"))),
        };
        let desired_running = state != "failed";
        let task = Task {
            id,
            slot,
            node,
            container,
            state: state.into(),
            desired_running,
            created_ms: Some(now),
            state_since_ms: Some(now),
            message: error.clone().unwrap_or_default(),
            error,
            image: self.services.get(service).map(|s| super::stack::image_of(&s.spec).to_string()).unwrap_or_default(),
            ports: Vec::new(),
        };
        self.tasks.push((service.into(), task));
    }

    /// Brings `service`'s running tasks to its replica count (slots spread over the nodes
    /// round-robin), or a global service's to one on each node its constraints allow: new ones
    /// started, surplus ones shut down. Tasks of an earlier spec are replaced when `respec`.
    fn reconcile(&mut self, service: &str, respec: bool) {
        let Some(spec) = self.services.get(service).map(|s| s.spec.clone()) else { return };
        if respec {
            for (_, t) in self.tasks.iter_mut().filter(|(s, t)| s == service && t.desired_running) {
                t.desired_running = false;
                t.state = "shutdown".into();
            }
        }
        if spec.mode.as_ref().is_some_and(|m| m.global.is_some()) {
            let constraints =
                spec.task_template.and_then(|t| t.placement).and_then(|p| p.constraints).unwrap_or_default();
            let nodes: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| constraints.iter().all(|c| crate::plan::topology::satisfies(n, c) != Some(false)))
                .map(|n| n.id.clone())
                .collect();
            for node in nodes {
                let alive = self.tasks.iter().any(|(s, t)| s == service && t.node == node && t.desired_running);
                if !alive {
                    self.start_task(service, 0, node);
                }
            }
            return;
        }
        let replicas = crate::plan::replicas(&spec).unwrap_or(1);
        for slot in 1..=replicas as i64 {
            let alive = self.tasks.iter().any(|(s, t)| s == service && t.slot == slot && t.desired_running);
            if !alive {
                let node = self.nodes.get((slot as usize).saturating_sub(1) % self.nodes.len().max(1));
                let node = node.map(|n| n.id.clone()).unwrap_or_default();
                self.start_task(service, slot, node);
            }
        }
        for (_, t) in self.tasks.iter_mut().filter(|(s, t)| s == service && t.slot > replicas as i64) {
            t.desired_running = false;
            t.state = "shutdown".into();
        }
    }
}

#[async_trait]
impl Engine for Fake {
    async fn membership(&self) -> Result<Membership, EngineError> {
        Ok(self.lock().membership.clone())
    }

    async fn init_swarm(&self, advertise: Option<&str>) -> Result<String, EngineError> {
        let mut s = self.lock();
        if std::mem::take(&mut s.init_raced) {
            s.membership = Membership { state: "active".into(), manager: true, node_id: "node0".into() };
            return Err(Fake::refused("swarm init".into(), "This node is already part of a swarm. (HTTP 503)"));
        }
        s.calls.push(format!("swarm init {}", advertise.unwrap_or("-")));
        s.membership = Membership { state: "active".into(), manager: true, node_id: "node0".into() };
        Ok("node0".into())
    }

    async fn leave_swarm(&self) -> Result<(), EngineError> {
        let mut s = self.lock();
        s.calls.push("swarm leave".into());
        s.membership = Membership::default();
        Ok(())
    }

    async fn clock_ms(&self) -> Result<u64, EngineError> {
        Ok(crate::units::unix_now_ms())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        Ok(self.lock().nodes.clone())
    }

    async fn set_availability(&self, node: &str, availability: &str) -> Result<(), EngineError> {
        let mut s = self.lock();
        s.calls.push(format!("set node {node} {availability}"));
        match s.nodes.iter_mut().find(|n| n.id == node) {
            Some(n) => {
                n.availability = availability.into();
                Ok(())
            }
            None => Err(Fake::refused(format!("set node {node} to {availability}"), "node not found (HTTP 404)")),
        }
    }

    async fn observe(&self, stack: &str) -> Result<Observed, EngineError> {
        let s = self.lock();
        let objects = |m: &BTreeMap<String, (String, Option<String>)>| -> Vec<ObservedObject> {
            m.iter()
                .filter(|(_, (_, ns))| ns.as_deref() == Some(stack))
                .map(|(name, (id, _))| ObservedObject { name: name.clone(), id: id.clone() })
                .collect()
        };
        let services = s
            .services
            .iter()
            .filter(|(_, svc)| namespace(&svc.spec.labels).as_deref() == Some(stack))
            .map(|(name, svc)| ObservedService {
                name: name.clone(),
                id: svc.id.clone(),
                version: svc.version,
                spec_hash: svc.spec.labels.as_ref().and_then(|l| l.get(LABEL_SPEC_HASH).cloned()),
                replicas: crate::plan::replicas(&svc.spec),
            })
            .collect();
        Ok(Observed {
            networks: objects(&s.networks),
            configs: objects(&s.configs),
            secrets: objects(&s.secrets),
            services,
        })
    }

    async fn create_network(&self, spec: NetworkCreateRequest) -> Result<(), EngineError> {
        let ns = namespace(&spec.labels);
        self.lock().create(Object::Network, spec.name, ns).map(drop)
    }

    async fn create_config(&self, spec: ConfigSpec) -> Result<(), EngineError> {
        self.lock().create(Object::Config, spec.name.clone().unwrap_or_default(), namespace(&spec.labels)).map(drop)
    }

    async fn create_secret(&self, spec: SecretSpec) -> Result<String, EngineError> {
        self.lock().create(Object::Secret, spec.name.clone().unwrap_or_default(), namespace(&spec.labels))
    }

    async fn create_service(&self, spec: ServiceSpec, auth: Option<Credentials>) -> Result<Vec<String>, EngineError> {
        let mut s = self.lock();
        let name = spec.name.clone().unwrap_or_default();
        if s.services.contains_key(&name) {
            return Err(Fake::refused(format!("create service {name}"), "name conflicts (HTTP 409)"));
        }
        let id = s.id("svc");
        s.calls.push(format!("create service {name}{}", with(&auth)));
        s.services.insert(name.clone(), Service { id, spec, version: 1, update: None });
        s.reconcile(&name, false);
        Ok(Vec::new())
    }

    async fn update_service(
        &self,
        name: &str,
        spec: ServiceSpec,
        auth: Option<Credentials>,
    ) -> Result<Vec<String>, EngineError> {
        let mut s = self.lock();
        let Some(svc) = s.services.get_mut(name) else {
            return Err(Fake::refused(format!("update service {name}"), "service not found (HTTP 404)"));
        };
        let mut spec = spec;
        let force = svc.spec.task_template.as_ref().and_then(|t| t.force_update);
        if let Some(t) = spec.task_template.as_mut() {
            t.force_update = t.force_update.map(|_| force.unwrap_or(0) + 1).or(force);
        }
        // Only a change of the task template replaces the tasks, as in swarm.
        let respec = svc.spec.task_template != spec.task_template;
        svc.spec = spec;
        svc.version += 1;
        svc.update = Some((UpdateState::Completed, crate::units::unix_now_ms()));
        s.calls.push(format!("update service {name}{}", with(&auth)));
        s.reconcile(name, respec);
        Ok(Vec::new())
    }

    async fn remove(&self, kind: Object, id: &str) -> Result<bool, EngineError> {
        let mut s = self.lock();
        let mut by_id = |kind| {
            let m = s.objects(kind);
            let name = m.iter().find(|(n, (i, _))| i == id || *n == id).map(|(n, _)| n.clone());
            name.is_some_and(|n| m.remove(&n).is_some())
        };
        let removed = match kind {
            Object::Service => {
                let name = s.services.iter().find(|(n, svc)| svc.id == id || *n == id).map(|(n, _)| n.clone());
                match name {
                    Some(n) => {
                        s.services.remove(&n);
                        s.tasks.retain(|(svc, _)| *svc != n);
                        true
                    }
                    None => false,
                }
            }
            kind @ (Object::Config | Object::Secret | Object::Network) => by_id(kind),
            Object::Volume => s.volumes.remove(id).is_some(),
        };
        if removed {
            s.calls.push(format!("remove {kind:?} {id}").to_lowercase());
        }
        Ok(removed)
    }

    async fn stack_containers(&self, stack: &str) -> Result<usize, EngineError> {
        let s = self.lock();
        let prefix = format!("{stack}_");
        Ok(s.tasks.iter().filter(|(svc, t)| svc.starts_with(&prefix) && t.state == "running").count())
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.lock().volumes.contains_key(name))
    }

    async fn create_volume(&self, spec: &crate::convert::VolumeSpec) -> Result<(), EngineError> {
        let mut s = self.lock();
        s.calls.push(format!("create volume {}", spec.name));
        s.volumes.insert(spec.name.clone(), spec.labels.get(crate::convert::LABEL_NAMESPACE).cloned());
        Ok(())
    }

    async fn stack_volumes(&self, stack: &str) -> Result<Vec<String>, EngineError> {
        let s = self.lock();
        Ok(s.volumes.iter().filter(|(_, ns)| ns.as_deref() == Some(stack)).map(|(n, _)| n.clone()).collect())
    }

    async fn service(&self, name: &str) -> Result<ServiceInfo, EngineError> {
        let s = self.lock();
        let svc = s
            .services
            .get(name)
            .ok_or_else(|| Fake::refused(format!("inspect service {name}"), "service not found (HTTP 404)"))?;
        Ok(ServiceInfo {
            id: svc.id.clone(),
            replicas: crate::plan::replicas(&svc.spec).unwrap_or(1),
            update: svc.update.as_ref().map(|(u, _)| u.clone()),
            update_at_ms: svc.update.as_ref().map(|(_, at)| *at),
            image: super::stack::image_of(&svc.spec).to_string(),
        })
    }

    async fn tasks(&self, service: &str, current_only: bool) -> Result<Vec<Task>, EngineError> {
        let s = self.lock();
        let mut out: Vec<Task> = s
            .tasks
            .iter()
            .filter(|(svc, t)| svc == service && (!current_only || t.state != "shutdown"))
            .map(|(_, t)| t.clone())
            .collect();
        out.sort_by_key(|t| (t.slot, t.created_ms));
        Ok(out)
    }

    /// A killed task fails; swarm starts a new one in its slot (it runs at once here).
    async fn kill(&self, container: &str, signal: &str) -> Result<(), EngineError> {
        let mut s = self.lock();
        let now = s.now();
        let local = s.local.clone();
        let Some((service, task)) = s.tasks.iter_mut().find(|(_, t)| {
            t.container.as_deref() == Some(container)
                && t.state == "running"
                && local.as_ref().map_or(true, |n| *n == t.node)
        }) else {
            return Err(Fake::refused(format!("kill container {container}"), "No such container (HTTP 404)"));
        };
        task.state = "failed".into();
        task.desired_running = false;
        task.error = Some("task: non-zero exit (137)".into());
        task.state_since_ms = Some(now);
        let service = service.clone();
        s.calls.push(format!("kill {container} {signal}"));
        s.reconcile(&service, false);
        Ok(())
    }

    async fn container_labels(
        &self,
        container: &str,
    ) -> Result<std::collections::HashMap<String, String>, EngineError> {
        let s = self.lock();
        let Some((service, _)) = s.tasks.iter().find(|(_, t)| t.container.as_deref() == Some(container)) else {
            return Err(Fake::refused(format!("inspect container {container}"), "No such container (HTTP 404)"));
        };
        let mut labels = s.services.get(service).and_then(|svc| svc.spec.labels.clone()).unwrap_or_default();
        labels.insert("com.docker.swarm.service.name".into(), service.clone());
        Ok(labels)
    }

    async fn usage(&self, container: &str) -> Result<Usage, EngineError> {
        let s = self.lock();
        let known = s.tasks.iter().any(|(_, t)| {
            t.container.as_deref() == Some(container)
                && t.state == "running"
                && s.local.as_ref().map_or(true, |n| *n == t.node)
        });
        if !known {
            return Err(Fake::refused(format!("stats of {container}"), "No such container (HTTP 404)"));
        }
        Ok(Usage { at_ms: crate::units::unix_now_ms(), cpu_ns: 1_000_000, memory_bytes: 10 << 20 })
    }

    async fn service_logs(&self, service: &str, _tail: usize, _limit: Duration) -> Result<(String, bool), EngineError> {
        Ok((format!("{service} log\n"), true))
    }

    fn follow_service_logs(&self, service: &str) -> tokio::sync::mpsc::Receiver<Result<String, EngineError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(Ok(format!("{service} log")));
        rx
    }

    async fn image_id(&self, tag: &str) -> Result<Option<String>, EngineError> {
        Ok(self.lock().images.contains(tag).then(|| format!("sha256:{:0>64}", tag.len())))
    }

    async fn push_image(&self, reference: &str, auth: Option<Credentials>) -> Result<(), EngineError> {
        let mut s = self.lock();
        if !s.images.contains(reference) {
            return Err(Fake::refused(format!("push {reference}"), "An image does not exist locally with the tag"));
        }
        s.calls.push(format!("push {reference}{}", with(&auth)));
        Ok(())
    }

    async fn build_image(
        &self,
        _contents: &crate::image::Contents,
        tags: &[String],
        _labels: &[(String, String)],
    ) -> Result<String, EngineError> {
        let mut s = self.lock();
        s.calls.push(format!("build image {}", tags.join(", ")));
        s.images.extend(tags.iter().cloned());
        Ok(s.id("sha256:"))
    }

    async fn task_addresses(&self, _network: &str, service: &str) -> Result<Vec<(i64, String)>, EngineError> {
        let s = self.lock();
        Ok(s.tasks
            .iter()
            .filter(|(svc, t)| svc == service && t.is_running())
            .map(|(_, t)| (t.slot, format!("10.0.1.{}", t.slot + 1)))
            .collect())
    }

    async fn start_container(&self, spec: &oneoff::Spec) -> Result<String, EngineError> {
        let mut s = self.lock();
        s.calls.push(format!("start container {}", spec.image));
        Ok(s.id("oneoff"))
    }

    async fn wait_container(&self, _id: &str) -> Result<i64, EngineError> {
        Ok(0)
    }

    async fn container_logs(&self, _id: &str, _tail: usize) -> String {
        String::new()
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.lock().calls.push(format!("remove container {id}"));
        Ok(())
    }

    /// Answers as `swarmctl netem` would in a container with one interface, `eth0`.
    async fn run_in_netns(
        &self,
        container: &str,
        image: &str,
        args: Vec<String>,
    ) -> Result<(i64, String), EngineError> {
        self.lock().calls.push(format!("netns {container} {image} {}", args.join(" ")));
        let netem = if args.iter().any(|a| a == "--clear") { "" } else { "\"eth0\"" };
        Ok((0, format!("{{\"interfaces\":[\"eth0\"],\"netem\":[{netem}]}}\n")))
    }
}
