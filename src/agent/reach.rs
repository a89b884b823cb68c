//! Acting on any task of the stack: on this engine's node through the Engine API, on every
//! other node through the agent deployed there for the run. A node whose agent could not start
//! keeps its reason, so that what could not be done there is named, not silently skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bollard::models::SecretSpec;
use tokio_util::sync::CancellationToken;

use super::client::{AgentError, Client};
use super::{service_name, Sent, LABEL};
use crate::engine::{Engine, EngineError, Handle, NodeInfo, Object, Task, Usage};
use crate::units::unix_now_ms;

/// Why swarmctl could not act on a task.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// This engine refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The node's agent refused or did not answer.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The node has no agent.
    #[error("no agent on node {node}: {reason}")]
    NoAgent {
        /// The node's ID.
        node: String,
        /// Why.
        reason: String,
    },
}

impl ReachError {
    /// The container is not there any more (on this engine, or on the agent's): it ended.
    pub fn is_gone(&self) -> bool {
        match self {
            ReachError::Engine(e) => e.is_not_found(),
            ReachError::Agent(AgentError::Refused { status, .. }) => *status == 404,
            _ => false,
        }
    }
}

/// How the agents are deployed. (No `Debug`: it holds the run's token and a registry login.)
#[derive(Clone)]
pub struct Setup {
    /// The stack they act on.
    pub stack: String,
    /// Their image (the builtin image, pullable on every node).
    pub image: String,
    /// Their host-mode port.
    pub port: u16,
    /// The run's token (`agent::token`).
    pub token: String,
    /// How long to wait for them to answer.
    pub wait: Duration,
    /// The credentials of the image's registry, when the stack hands them to the swarm.
    pub auth: Option<crate::engine::Credentials>,
}

/// Hands on every node of the run.
pub struct Reach {
    engine: Handle,
    local: String,
    agents: BTreeMap<String, Client>,
    missing: BTreeMap<String, String>,
    /// The stack whose agent service and secret exist for this run.
    deployed: Option<String>,
    /// The builtin image, for helper containers on this engine's node (the agents use theirs).
    image: Option<String>,
}

/// The nodes other than this engine's that can run tasks (ready, not drained): where a run
/// needs agents.
pub async fn other_nodes(engine: &dyn Engine) -> Result<(String, Vec<NodeInfo>), EngineError> {
    let local = engine.membership().await?.node_id;
    let nodes = engine.nodes().await?;
    let others =
        nodes.into_iter().filter(|n| n.id != local && n.state == "ready" && n.availability != "drain").collect();
    Ok((local, others))
}

/// Removes a stack's agent service and token secret (left by a run that was stopped hard); true
/// when there was something to remove.
pub async fn remove(engine: &dyn Engine, stack: &str) -> Result<bool, EngineError> {
    let name = service_name(stack);
    let service = engine.remove(Object::Service, &name).await?;
    // The engine refuses to remove a secret while a service still names it; removing the
    // service frees it, though not always at once.
    let mut secret = Ok(false);
    for _ in 0..40 {
        secret = engine.remove(Object::Secret, &name).await;
        if secret.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(service | secret?)
}

/// Whether an image reference names a registry host (Docker's rule: a first path component
/// with a dot or a port, or `localhost`).
fn has_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((host, _)) => host.contains('.') || host.contains(':') || host == "localhost",
        None => false,
    }
}

impl Reach {
    /// This engine's node only: a one-node swarm needs no agent.
    pub fn local(engine: Handle, node: impl Into<String>) -> Reach {
        Reach {
            engine,
            local: node.into(),
            agents: BTreeMap::new(),
            missing: BTreeMap::new(),
            deployed: None,
            image: None,
        }
    }

    /// With the builtin image for helper containers on this engine's node (netem).
    pub fn with_image(mut self, image: Option<String>) -> Reach {
        self.image = image;
        self
    }

    /// As if agents answered on `nodes`, for tests of what acts through a `Reach` (the agents
    /// themselves are tested against real sockets below).
    #[cfg(test)]
    pub fn with_agents(engine: Handle, local: &str, nodes: &[&str]) -> Reach {
        let mut reach = Reach::local(engine, local);
        reach.agents = nodes.iter().map(|n| (n.to_string(), Client::new("127.0.0.1:1", "-"))).collect();
        reach
    }

    /// Deploys the agents on `nodes` (every node but this engine's `local` one) and waits, at
    /// most `setup.wait`, until each answers or has said why it cannot run. A node without an
    /// agent is kept with its reason; only an engine that refuses the service is an error.
    pub async fn start(
        engine: Handle,
        local: &str,
        nodes: &[NodeInfo],
        setup: &Setup,
        cancel: &CancellationToken,
    ) -> Result<Reach, EngineError> {
        let name = service_name(&setup.stack);
        remove(engine.as_ref(), &setup.stack).await?;
        let labels = std::collections::HashMap::from([(LABEL.to_string(), setup.stack.clone())]);
        let secret_id = engine
            .create_secret(SecretSpec {
                name: Some(name.clone()),
                labels: Some(labels),
                data: Some(base64::engine::general_purpose::STANDARD.encode(&setup.token)),
                ..Default::default()
            })
            .await?;
        let spec = super::spec(&setup.stack, &setup.image, setup.port, (&secret_id, &name), local);
        let mut reach = Reach {
            engine: engine.clone(),
            local: local.into(),
            agents: BTreeMap::new(),
            missing: BTreeMap::new(),
            deployed: Some(setup.stack.clone()),
            image: Some(setup.image.clone()),
        };
        if let Err(e) = engine.create_service(spec, setup.auth.clone()).await {
            let _ = remove(engine.as_ref(), &setup.stack).await;
            return Err(e);
        }

        let deadline = tokio::time::Instant::now() + setup.wait;
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let tasks = match engine.tasks(&name, false).await {
                Ok(tasks) => tasks,
                Err(e) => {
                    let _ = remove(engine.as_ref(), &setup.stack).await;
                    return Err(e);
                }
            };
            for node in nodes {
                if reach.agents.contains_key(&node.id) || reach.missing.contains_key(&node.id) {
                    continue;
                }
                if node.addr.is_empty() || node.addr == "0.0.0.0" {
                    reach.missing.insert(node.id.clone(), "the swarm knows no address for this node".into());
                    continue;
                }
                let Some(task) = tasks.iter().filter(|t| t.node == node.id).max_by_key(|t| t.created_ms) else {
                    last.insert(node.id.clone(), "no agent task was scheduled there".into());
                    continue;
                };
                if task.is_running() {
                    // Asked again every round until the wait ends: a short bound each time keeps
                    // the wait near `setup.wait` however many nodes do not answer.
                    let client = Client::new(format!("{}:{}", node.addr, setup.port), &setup.token);
                    match client.clone().with_timeout(Duration::from_secs(1)).hello().await {
                        Ok(h) if h.node == node.id && h.stack == setup.stack => {
                            reach.agents.insert(node.id.clone(), client);
                        }
                        Ok(h) => {
                            reach.missing.insert(
                                node.id.clone(),
                                format!(
                                    "{} answers as node {} of stack {}: the node's address leads elsewhere",
                                    client.addr(),
                                    h.node,
                                    h.stack
                                ),
                            );
                        }
                        Err(e) => {
                            last.insert(node.id.clone(), e.to_string());
                        }
                    }
                } else if matches!(task.state.as_str(), "failed" | "rejected") {
                    reach.missing.insert(node.id.clone(), format!("its agent task {}: {}", task.state, task.reason()));
                } else {
                    last.insert(node.id.clone(), format!("its agent task is {}", task.state));
                }
            }
            let open = nodes.iter().any(|n| !reach.agents.contains_key(&n.id) && !reach.missing.contains_key(&n.id));
            if !open || cancel.is_cancelled() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for node in nodes {
            if !reach.agents.contains_key(&node.id) && !reach.missing.contains_key(&node.id) {
                let why = last.remove(&node.id).unwrap_or_else(|| "no answer".into());
                reach.missing.insert(
                    node.id.clone(),
                    format!("no agent answered within {} s ({why})", setup.wait.as_secs_f64()),
                );
            }
        }
        if !has_registry(&setup.image) {
            for why in reach.missing.values_mut() {
                why.push_str(&format!(
                    "; its image {} names no registry, so a node has it only if it was copied there by hand: set the stack key `registry` (docs/multi-node.md)",
                    setup.image
                ));
            }
        }
        Ok(reach)
    }

    /// The engine swarmctl talks to.
    pub fn engine(&self) -> &Handle {
        &self.engine
    }

    /// Nodes with an agent, by ID.
    pub fn agents(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// Nodes swarmctl cannot act on, with the reason.
    pub fn missing(&self) -> &BTreeMap<String, String> {
        &self.missing
    }

    /// The nodes it can act on, those across the network first: a replica on another node is
    /// the case one engine alone could never test.
    pub fn nodes(&self) -> Vec<String> {
        self.agents.keys().cloned().chain(std::iter::once(self.local.clone())).collect()
    }

    /// The node a task runs on (a task the engine placed nowhere yet counts as this engine's).
    pub fn node_of<'a>(&'a self, task: &'a Task) -> &'a str {
        if task.node.is_empty() {
            &self.local
        } else {
            &task.node
        }
    }

    /// Why `node` is out of reach, when it is.
    pub fn why_not(&self, node: &str) -> Option<String> {
        if node == self.local || self.agents.contains_key(node) {
            return None;
        }
        Some(self.missing.get(node).cloned().unwrap_or_else(|| {
            if self.deployed.is_some() {
                "the node was not ready when the run deployed its agents".into()
            } else {
                "this engine acts only on its own node's containers, and the run has no agent (a one-node swarm when it started, or the run's notes say why)".into()
            }
        }))
    }

    /// Sends `signal` to `task`'s container, on whichever node it runs.
    pub async fn signal(&self, task: &Task, signal: &str) -> Result<Sent, ReachError> {
        let container = task.container.clone().unwrap_or_default();
        if self.node_of(task) == self.local {
            let asked_ms = unix_now_ms();
            self.engine.kill(&container, signal).await?;
            return Ok(Sent { node: self.local.clone(), container, asked_ms, done_ms: unix_now_ms() });
        }
        let Some(agent) = self.agents.get(&task.node) else { return Err(self.no_agent(&task.node)) };
        // The agent's times are its node's clock: moved onto this one by the offset seen around
        // the call (half the round trip of uncertainty), so that they sit on the run's timeline.
        let sent_ms = unix_now_ms();
        let mut sent = agent.signal(&container, signal).await?;
        let back_ms = unix_now_ms();
        let offset = (sent.asked_ms + sent.done_ms) as i64 / 2 - (sent_ms + back_ms) as i64 / 2;
        let local = |at: u64| (at as i64 - offset).clamp(sent_ms as i64, back_ms as i64) as u64;
        sent.asked_ms = local(sent.asked_ms);
        sent.done_ms = local(sent.done_ms);
        Ok(sent)
    }

    /// Probes, sets or clears netem on `task`'s network, on whichever node it runs: what the
    /// helper left, with the time it had finished on this machine's clock.
    pub async fn netem(
        &self,
        task: &Task,
        order: crate::netem::Order,
    ) -> Result<(crate::netem::Outcome, u64), ReachError> {
        let container = task.container.clone().unwrap_or_default();
        if self.node_of(task) == self.local {
            let Some(image) = &self.image else {
                return Err(ReachError::Engine(EngineError::refused(
                    format!("netem in container {container}"),
                    "the run has no builtin image to run the helper in",
                )));
            };
            let outcome = super::netem_in(self.engine.as_ref(), &container, image, &order).await?;
            return Ok((outcome, unix_now_ms()));
        }
        let Some(agent) = self.agents.get(&task.node) else { return Err(self.no_agent(&task.node)) };
        let done = agent.netem(&container, order).await?;
        // The agent's clock is not this one: the answer's arrival is when it was done here.
        Ok((done.outcome, unix_now_ms()))
    }

    /// One sample of `task`'s container, on whichever node it runs.
    pub async fn usage(&self, task: &Task) -> Result<Usage, ReachError> {
        let container = task.container.clone().unwrap_or_default();
        if self.node_of(task) == self.local {
            return Ok(self.engine.usage(&container).await?);
        }
        match self.agents.get(&task.node) {
            Some(agent) => Ok(agent.usage(&container).await?),
            None => Err(self.no_agent(&task.node)),
        }
    }

    /// How far `node`'s clock is from this machine's: this engine's node through the engine,
    /// another through its agent; a few round trips, the shortest kept (`clock::estimate`).
    pub async fn clock(&self, node: &str) -> Result<super::clock::Offset, ReachError> {
        use super::clock::{estimate, now_ms, Sample};
        const TRIPS: usize = 5;
        let mut samples = Vec::with_capacity(TRIPS);
        for _ in 0..TRIPS {
            let sent_ms = now_ms();
            let (remote_ms, resolution_ms) = if node == self.local {
                (self.engine.clock_ms().await? as f64, 1.0)
            } else {
                let Some(agent) = self.agents.get(node) else { return Err(self.no_agent(node)) };
                let hello = agent.hello().await?;
                if hello.clock_us == 0 {
                    return Err(ReachError::NoAgent {
                        node: node.into(),
                        reason: "its agent does not tell its clock (an older swarmctl)".into(),
                    });
                }
                (hello.clock_us as f64 / 1000.0, 0.001)
            };
            samples.push(Sample { sent_ms, remote_ms, back_ms: now_ms(), resolution_ms });
        }
        estimate(&samples).ok_or_else(|| {
            ReachError::Engine(EngineError::refused(
                format!("measure the clock of node {node}"),
                "this machine's clock went back during every round trip",
            ))
        })
    }

    fn no_agent(&self, node: &str) -> ReachError {
        ReachError::NoAgent { node: node.into(), reason: self.why_not(node).unwrap_or_default() }
    }

    /// Removes the run's agents (their service and token secret); what could not be removed,
    /// said so that it is not left unnoticed.
    pub async fn stop(&self) -> Option<String> {
        let stack = self.deployed.as_ref()?;
        match remove(self.engine.as_ref(), stack).await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the run's agent ({}) could not be removed: {e}; `swarmctl down` removes it",
                service_name(stack)
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::agent::serve::{serve, Agent};
    use crate::engine::fake::{with_stack, Fake, Fate};

    const STACK: &str = "swarmctl-ci";
    const SERVICE: &str = "swarmctl-ci_server";

    /// Agents for `nodes` of a fake swarm, each on its node's loopback address and one port
    /// (the port; each agent's stop, in order).
    pub(crate) async fn agents(fake: &Arc<Fake>, nodes: &[&str], token: &str) -> (u16, Vec<CancellationToken>) {
        let all = fake.nodes().await.unwrap();
        let (mut port, mut stops) = (0, Vec::new());
        for id in nodes {
            let addr = &all.iter().find(|n| n.id == *id).unwrap().addr;
            let listener = tokio::net::TcpListener::bind((addr.as_str(), port)).await.unwrap();
            port = listener.local_addr().unwrap().port();
            let agent = Agent {
                engine: fake.clone(),
                stack: STACK.into(),
                node: id.to_string(),
                token: token.into(),
                image: "swarmctl/mcp-server:test".into(),
            };
            let stop = CancellationToken::new();
            tokio::spawn(serve(Arc::new(agent), listener, stop.clone()));
            stops.push(stop);
        }
        (port, stops)
    }

    /// How the tests deploy agents: a short wait.
    pub(crate) fn setup(port: u16) -> Setup {
        Setup {
            stack: STACK.into(),
            image: "swarmctl/mcp-server:test".into(),
            port,
            token: "t0ken".into(),
            wait: Duration::from_secs(3),
            auth: None,
        }
    }

    #[tokio::test]
    async fn agents_act_on_every_node_and_only_on_the_stacks_containers() {
        let (fake, _) = with_stack(2, &["server.replicas=6"]).await;
        let fake = Arc::new(fake);
        let stop = CancellationToken::new();
        let (port, _agents) = agents(&fake, &["node1", "node2"], "t0ken").await;
        let (local, others) = other_nodes(fake.as_ref()).await.unwrap();
        assert_eq!(local, "node0");
        let reach = Reach::start(fake.clone(), &local, &others, &setup(port), &stop).await.unwrap();
        assert_eq!(reach.agents().collect::<Vec<_>>(), ["node1", "node2"], "{:?}", reach.missing());
        assert_eq!(reach.nodes(), ["node1", "node2", "node0"], "other nodes first");
        let spec = fake.spec("swarmctl-agent-swarmctl-ci").expect("the agent service");
        assert!(spec.mode.unwrap().global.is_some());

        let tasks = fake.tasks(SERVICE, false).await.unwrap();
        for t in &tasks {
            let u = reach.usage(t).await.unwrap();
            assert!(u.memory_bytes > 0, "{t:?}");
        }
        for t in tasks.iter().filter(|t| t.slot <= 3) {
            let sent = reach.signal(t, "SIGKILL").await.unwrap();
            assert_eq!(sent.node, t.node, "acted on by the task's own node");
            assert!(sent.asked_ms <= sent.done_ms);
        }
        // One machine, one clock: every node's offset is 0 to within its bound, and the bound
        // is what a loopback round trip leaves (well under a second).
        for node in reach.nodes() {
            let o = reach.clock(&node).await.unwrap();
            assert!(o.offset_ms.abs() <= o.within_ms && o.within_ms < 500.0, "node {node}: {o:?}");
        }
        let err = reach.clock("node9").await.unwrap_err().to_string();
        assert!(err.contains("no agent on node node9"), "{err}");
        let killed = fake.calls().iter().filter(|c| c.starts_with("kill ")).count();
        assert_eq!(killed, 3, "one per node: the manager's through the engine, the others' through their agents");

        // Without the token, or for a container of something else, the agent does nothing.
        let addr = format!("127.0.0.12:{port}");
        let err = Client::new(&addr, "guess").usage("container1").await.unwrap_err().to_string();
        assert!(err.contains("(401)"), "{err}");
        let agent_task = &fake.tasks("swarmctl-agent-swarmctl-ci", false).await.unwrap()[0];
        let own = agent_task.container.clone().unwrap();
        let err = Client::new(&addr, "t0ken").signal(&own, "SIGKILL").await.unwrap_err().to_string();
        assert!(err.contains("(403)") && err.contains("not a task of stack swarmctl-ci"), "{err}");
        let err = Client::new(&addr, "t0ken").signal(&own, "SIGHUP").await.unwrap_err().to_string();
        assert!(err.contains("(400)"), "{err}");

        assert!(reach.stop().await.is_none());
        let calls = fake.calls();
        assert!(calls.contains(&"remove service swarmctl-agent-swarmctl-ci".to_string()), "{calls:?}");
        assert!(calls.contains(&"remove secret swarmctl-agent-swarmctl-ci".to_string()), "{calls:?}");
        assert!(fake.spec("swarmctl-agent-swarmctl-ci").is_none());
        stop.cancel();
    }

    #[tokio::test]
    async fn a_node_whose_agent_cannot_start_is_named_and_the_others_still_act() {
        let (fake, _) = with_stack(2, &["server.replicas=6"]).await;
        let fake = Arc::new(fake);
        fake.set_node_fate(
            "swarmctl-agent-swarmctl-ci",
            "node2",
            Fate::Fail("No such image: swarmctl/mcp-server:test".into()),
        );
        let stop = CancellationToken::new();
        let (port, _agents) = agents(&fake, &["node1"], "t0ken").await;
        let (local, others) = other_nodes(fake.as_ref()).await.unwrap();
        let started = tokio::time::Instant::now();
        let reach = Reach::start(fake.clone(), &local, &others, &setup(port), &stop).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "a failed agent task is not waited for");
        assert_eq!(reach.agents().collect::<Vec<_>>(), ["node1"]);
        let why = reach.why_not("node2").unwrap();
        assert!(why.contains("failed") && why.contains("No such image"), "{why}");
        assert!(why.contains("names no registry") && why.contains("set the stack key `registry`"), "{why}");
        let task = fake.tasks(SERVICE, false).await.unwrap().into_iter().find(|t| t.node == "node2").unwrap();
        let err = reach.usage(&task).await.unwrap_err().to_string();
        assert!(err.starts_with("no agent on node node2: its agent task failed: No such image"), "{err}");
        reach.stop().await;
        stop.cancel();
    }

    #[test]
    fn registry_hosts_are_told_from_repositories() {
        assert!(has_registry("10.99.0.1:5000/swarmctl/mcp-server:1"));
        assert!(has_registry("registry.example.com/x"));
        assert!(has_registry("localhost/x:1"));
        assert!(!has_registry("swarmctl/mcp-server:0.1.0"));
        assert!(!has_registry("busybox"));
    }

    #[tokio::test]
    async fn an_agent_that_never_answers_is_given_up_on_in_time() {
        let (fake, _) = with_stack(1, &[]).await;
        let fake = Arc::new(fake);
        let stop = CancellationToken::new();
        let (local, others) = other_nodes(fake.as_ref()).await.unwrap();
        // Something listens on node1's address and never answers (a hung agent, a firewall
        // that swallows packets would do the same): each call gives up after its own bound.
        let silent = tokio::net::TcpListener::bind("127.0.0.12:0").await.unwrap();
        let mut s = setup(silent.local_addr().unwrap().port());
        s.wait = Duration::from_millis(1500);
        let started = tokio::time::Instant::now();
        let reach = Reach::start(fake.clone(), &local, &others, &s, &stop).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(3500), "the wait stays near its bound: {took:?}");
        let why = reach.why_not("node1").unwrap();
        assert!(why.starts_with("no agent answered within 1.5 s") && why.contains("no answer within 1 s"), "{why}");
        reach.stop().await;
        drop(silent);
    }
}
