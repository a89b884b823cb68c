//! The typed stack configuration: every key a stack file may set, with its meaning.
//!
//! These structs mirror the YAML exactly (`deny_unknown_fields`, so a typo is an error, not a
//! silently ignored key). Every struct also has `#[serde(default)]` so that a stack file may
//! set only what it changes; the real defaults live in the embedded `stacks/default.yaml`, which
//! every stack file is layered on. `docs/configuration.md` documents each key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Cpus, Duration};

/// A whole stack: what `up` deploys and what `test` runs against it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Stack namespace: every swarm object is named `<name>_<object>` and labelled with it.
    pub name: String,
    /// A registry every node pulls swarmctl's own images from (`host:port`): the builtin
    /// server image is pushed there and deployed by that reference. Empty: the image stays on
    /// the engine it was packed on, which is enough for one node.
    pub registry: String,
    /// Hand the swarm the login `docker login` keeps for each image's registry, so that every
    /// node can pull from a registry that requires one (`docker stack deploy
    /// --with-registry-auth`). The swarm keeps it with the service, in its Raft store.
    pub with_registry_auth: bool,
    /// The MCP server fleet.
    pub server: Server,
    /// The load balancer (Traefik v3) in front of the fleet.
    pub lb: LoadBalancer,
    /// Prometheus, discovering every replica through the swarm API.
    pub prometheus: Prometheus,
    /// Grafana with provisioned datasource and dashboards.
    pub grafana: Grafana,
    /// The stack's overlay networks.
    pub networks: Networks,
    /// Load profiles for `swarmctl test`.
    pub test: Test,
    /// Service-level objectives that verdicts are judged against.
    pub slo: Slo,
}

/// The MCP server service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// `builtin` (the reference server packed from this swarmctl binary) or an image reference.
    pub image: String,
    /// Number of replicas (tasks).
    pub replicas: u32,
    /// Arguments passed to the image's entrypoint; empty means the image's own default
    /// (for `builtin`, swarmctl derives `serve …` from `transports`).
    pub command: Vec<String>,
    /// `vip` (the swarm default; needs IPVS) or `dnsrr` (DNS round-robin, no VIP).
    pub endpoint_mode: EndpointMode,
    /// Where tasks may run.
    pub placement: Placement,
    /// CPU and memory limits and reservations per replica.
    pub resources: Resources,
    /// Environment variables (a `null` value removes a key inherited from the default stack).
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// The transports the server listens on; a transport set to `null` is disabled.
    pub transports: Transports,
    /// Port of the Prometheus `/metrics` endpoint; `null`: the server exports no metrics, and
    /// Prometheus watches it through Traefik only.
    pub metrics_port: Option<u16>,
    /// Path of the HTTP health endpoint, served on the Streamable HTTP port; `null`: the server
    /// has none, and readiness is an MCP `initialize` and `ping` through the load balancer.
    pub health_path: Option<String>,
    /// Container healthcheck; an empty `test` keeps the image's own.
    pub healthcheck: Healthcheck,
    /// Restart policy; `delay: 0s` makes failover as fast as the scheduler allows.
    pub restart: RestartPolicy,
    /// Rolling-update policy.
    pub update: UpdatePolicy,
    /// Rollback policy.
    pub rollback: UpdatePolicy,
    /// Grace period between SIGTERM and SIGKILL.
    pub stop_grace_period: Duration,
    /// Resource limits (`nofile`, `nproc`, …) as `name: limit` (soft = hard).
    pub ulimits: BTreeMap<String, u64>,
    /// Namespaced kernel parameters (`net.*`).
    #[serde(deserialize_with = "scalar_map")]
    pub sysctls: BTreeMap<String, String>,
    /// Named volumes: `volume name: mount path in the container`.
    pub volumes: BTreeMap<String, String>,
    /// Extra service labels (`deploy.labels`).
    #[serde(deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
}

/// Swarm endpoint mode of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// A virtual IP load-balanced by IPVS (the swarm default).
    #[default]
    Vip,
    /// DNS round-robin over the task IPs.
    Dnsrr,
}

/// Placement of a service's tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// Swarm constraints such as `node.role == worker`.
    pub constraints: Vec<String>,
    /// At most this many tasks of the service per node.
    pub max_replicas_per_node: Option<u32>,
    /// Spread the tasks evenly over the values of these node labels, in order
    /// (`node.labels.zone`): swarm's placement preferences.
    pub spread: Vec<String>,
}

/// Limits and reservations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Hard caps per task.
    pub limits: ResourceAmount,
    /// Guaranteed amounts per task; the scheduler leaves a task pending if no node has them.
    pub reservations: ResourceAmount,
}

/// An amount of CPU and memory; either may be left unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceAmount {
    /// CPUs, fractional allowed.
    pub cpus: Option<Cpus>,
    /// Memory, e.g. `2GiB`.
    pub memory: Option<ByteSize>,
}

/// The server's listeners.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Transports {
    /// Streamable HTTP (POST JSON-RPC, JSON or SSE replies).
    pub http: Option<HttpTransport>,
    /// Legacy HTTP+SSE (2024-11-05): GET opens the stream, POSTs go to the announced endpoint.
    pub sse: Option<HttpTransport>,
    /// WebSocket, one JSON-RPC message per text frame.
    pub ws: Option<WsTransport>,
    /// Newline-delimited JSON-RPC over TCP.
    pub tcp: Option<TcpTransport>,
}

/// An HTTP-based transport.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTransport {
    /// Container port.
    pub port: u16,
    /// URL path.
    pub path: String,
}

/// The WebSocket transport.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsTransport {
    /// Container port.
    pub port: u16,
    /// URL path.
    pub path: String,
    /// Every frame ends with `\n` (erlmcp requires it).
    pub newline: bool,
}

/// The TCP transport.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpTransport {
    /// Container port.
    pub port: u16,
}

/// A container healthcheck.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Healthcheck {
    /// Command in exec form (`["CMD", …]`); empty: derived for `builtin`, else the image's own.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
    /// Failures during this start-up window do not count.
    pub start_period: Duration,
}

/// When and how fast swarm restarts a failed task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    pub condition: RestartCondition,
    /// Wait before restarting (swarm's own default is 5 s, which dominates failover time).
    pub delay: Duration,
    /// Give up after this many restarts within `window` (unset: never give up).
    pub max_attempts: Option<u32>,
    /// Window in which `max_attempts` is counted.
    pub window: Option<Duration>,
}

/// Restart condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never restart.
    None,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Always restart.
    #[default]
    Any,
}

/// Rolling update (or rollback) policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Tasks updated at once.
    pub parallelism: u32,
    /// Wait between batches.
    pub delay: Duration,
    /// `pause`, `continue` or `rollback` (rollback policies cannot roll back).
    pub failure_action: FailureAction,
    /// How long a new task is watched for failure.
    pub monitor: Duration,
    /// Tolerated failure ratio, 0 to 1.
    pub max_failure_ratio: f64,
    /// `stop-first` or `start-first`.
    pub order: UpdateOrder,
}

/// What swarm does when an update fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Pause the update.
    #[default]
    Pause,
    /// Carry on.
    Continue,
    /// Roll back to the previous spec.
    Rollback,
}

/// Update order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one.
    #[default]
    StopFirst,
    /// Start the new task first (not possible with host-mode ports on one node).
    StartFirst,
}

/// Which load balancer fronts the replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbKind {
    /// Traefik v3: routes from the server's labels, through the swarm API.
    #[default]
    Traefik,
    /// HAProxy: the replicas from swarm's DNS (`tasks.<service>`), MCP sessions pinned by
    /// their `Mcp-Session-Id`, active health checks; event-driven C for many connections.
    Haproxy,
}

impl LbKind {
    /// Its name in stack files, templates and Prometheus jobs.
    pub fn name(self) -> &'static str {
        match self {
            LbKind::Traefik => "traefik",
            LbKind::Haproxy => "haproxy",
        }
    }
}

impl LoadBalancer {
    /// How long one attempt to connect to a replica may take: `transport.dial_timeout`, or
    /// else Traefik's own default (30 s) or HAProxy's here (2 s). A killed replica's address
    /// swallows SYNs, nothing refuses them: HAProxy redispatches a request pinned to it only
    /// once its attempt times out, so the attempt must end well before a client gives up; 2 s
    /// still lets a connect ride out one lost SYN (retransmitted after 1 s).
    pub fn dial_timeout(&self) -> Duration {
        self.transport.dial_timeout.unwrap_or(match self.kind {
            LbKind::Traefik => Duration::from_secs(30),
            LbKind::Haproxy => Duration::from_secs(2),
        })
    }
}

/// The load balancer: Traefik v3 with the swarm provider, or HAProxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadBalancer {
    /// `traefik` or `haproxy`.
    pub kind: LbKind,
    /// Image reference.
    pub image: String,
    /// Number of Traefik tasks.
    pub replicas: u32,
    /// Host-mode published ports.
    pub ports: LbPorts,
    /// Let the engine give each Traefik task host ports of its own (`ports` are then unused),
    /// so that several tasks run on one node: one Traefik proxies at most about half the
    /// open-file limit in sessions. The load engine finds the tasks' ports through the Engine
    /// API and spreads its sessions over them.
    pub ports_per_task: bool,
    /// How often Traefik polls the swarm API (its default, 15 s, hides failover for 15 s).
    pub refresh: Duration,
    /// Retry middleware attempts (0 disables it).
    pub retry_attempts: u32,
    /// Passive health check: failures within `failure_window` that take a replica out.
    pub max_failed_attempts: u32,
    /// Passive health check window.
    pub failure_window: Duration,
    /// Environment variables of every Traefik task, e.g. the Go runtime's `GOMAXPROCS` and
    /// `GOGC` (a `null` value removes a key inherited from the default stack).
    #[serde(deserialize_with = "scalar_map")]
    pub environment: BTreeMap<String, String>,
    /// Connection handling on both sides of Traefik: keep-alive, idle timeouts, backlog.
    pub transport: LbTransport,
    /// Where Traefik runs (it needs the swarm API, so on a manager).
    pub placement: Placement,
    /// Limits and reservations.
    pub resources: Resources,
}

/// Traefik's connection handling (its static configuration), toward clients on the `web` and
/// `websocket` entry points and toward the replicas. The default stack states Traefik's own
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbTransport {
    /// How long an idle client connection (keep-alive, no request in flight) stays open.
    pub idle_timeout: Duration,
    /// How long a client may take to send a whole request (0s: no limit).
    pub read_timeout: Duration,
    /// Requests a client connection may carry before Traefik closes it (0: no limit).
    pub keep_alive_max_requests: u64,
    /// How long a client connection may live before Traefik closes it (0s: no limit).
    pub keep_alive_max_time: Duration,
    /// Idle connections Traefik keeps open to each replica for reuse.
    pub max_idle_conns_per_host: u32,
    /// How long an idle connection to a replica stays open.
    pub server_idle_timeout: Duration,
    /// How long to wait for a replica to accept a connection; `null`: the load balancer's
    /// own (`LoadBalancer::dial_timeout`).
    pub dial_timeout: Option<Duration>,
    /// How long Traefik waits for a replica's response headers (0s: no limit). A replica
    /// killed with its network gone answers nothing, not even a reset: without a limit, a
    /// request sent to it on a kept-alive connection waits for the client's own timeout.
    pub response_header_timeout: Duration,
    /// The listen backlog of Traefik's sockets (`net.core.somaxconn` in its container);
    /// `null`: the kernel's (4096 on recent kernels).
    pub backlog: Option<u32>,
}

/// Ports the load balancer publishes on every node it runs on (host mode).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbPorts {
    /// HTTP entry point: Streamable HTTP, legacy SSE and `/health`.
    pub web: u16,
    /// WebSocket entry point.
    pub websocket: u16,
    /// TCP entry point (only when the server has a TCP transport).
    pub tcp: u16,
    /// Traefik's own `/metrics` and `/ping`.
    pub metrics: u16,
}

/// The ports Traefik listens on inside its container (the templates' entry points, named only
/// here); the engine publishes them on the host, at `lb.ports` or, with `lb.ports_per_task`, at
/// ports of its choosing.
pub const TRAEFIK_LISTENS: LbPorts = LbPorts { web: 80, websocket: 5555, tcp: 7070, metrics: 8082 };

/// Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prometheus {
    /// Deploy it.
    pub enabled: bool,
    /// Image reference.
    pub image: String,
    /// Host-mode published port.
    pub port: u16,
    /// Scrape interval.
    pub scrape_interval: Duration,
    /// How often swarm service discovery refreshes.
    pub discovery_refresh: Duration,
    /// How long samples are kept.
    pub retention: Duration,
    /// Limits and reservations.
    pub resources: Resources,
}

/// Grafana.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grafana {
    /// Deploy it (it needs Prometheus).
    pub enabled: bool,
    /// Image reference.
    pub image: String,
    /// Host-mode published port.
    pub port: u16,
    /// Limits and reservations.
    pub resources: Resources,
}

/// The stack's networks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Networks {
    /// Clients, load balancer and servers.
    pub mcp: Network,
    /// Prometheus, Grafana and the scraped services.
    pub monitoring: Network,
}

/// One overlay network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Name inside the stack (swarm name: `<stack>_<name>`).
    pub name: String,
    /// Encrypt VXLAN traffic between nodes (IPsec).
    pub encrypted: bool,
    /// Let standalone containers (`docker run --network`) attach.
    pub attachable: bool,
}

/// `swarmctl test` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Test {
    /// Named load profiles; `baseline` and `stress` must exist.
    pub profiles: BTreeMap<String, Profile>,
    /// The load profile the `validate` phases run under (by name).
    pub phase_profile: String,
    /// The failover phase.
    pub failover: Failover,
    /// The scaling phase.
    pub scaling: Scaling,
    /// The incremental phase.
    pub incremental: Incremental,
    /// The hang phase.
    pub hang: Hang,
    /// The update and rollback phases.
    pub update: Update,
    /// The drain phase (`timeout`: the wait for the replicas to run elsewhere).
    pub drain: Update,
    /// The network phase.
    pub network: Impair,
    /// Where the tasks of the load service may run (`--via swarm`), as a service's placement.
    pub load_tasks: Placement,
}

/// Network: one replica's network impaired (netem) under load for a while, then restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Impair {
    /// Load before the impairment.
    pub warmup: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// Load after it is removed.
    pub observe: Duration,
    /// Latency added to every packet the replica sends.
    pub delay: Duration,
    /// Its variation (uniform, ±).
    pub jitter: Duration,
    /// Share of packets dropped, 0 to 1.
    pub loss: f64,
    /// Successes in a row after the last error that count as recovered.
    pub consecutive_ok: u64,
}

/// Update and rollback: a release of the server rolled out under load (every task replaced),
/// and one whose tasks cannot start, which swarm must roll back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Update {
    /// Load before the release.
    pub warmup: Duration,
    /// Load after swarm says the update (or the rollback) is done.
    pub observe: Duration,
    /// Successes in a row after the last error that count as recovered.
    pub consecutive_ok: u64,
    /// Longest wait for swarm to finish the update or the rollback.
    pub timeout: Duration,
}

/// Hang: one replica stopped (SIGSTOP) under load for a while, then resumed: what clients see
/// of a replica that neither answers nor dies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hang {
    /// Load before the replica stops.
    pub warmup: Duration,
    /// How long it stays stopped.
    pub duration: Duration,
    /// Load after it resumes, while recovery is watched.
    pub observe: Duration,
    /// Successes in a row after the last error that count as recovered.
    pub consecutive_ok: u64,
}

/// Failover: replicas killed under load, recovery measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Failover {
    /// How many tasks to kill at once: a count (`1`) or a share of the replicas (`25%`).
    pub kill: KillCount,
    /// What to kill: `server` replicas or a load-balancer (`lb`) task.
    pub target: FailoverTarget,
    /// Load before the kill.
    pub warmup: Duration,
    /// Load after the kill, while recovery is watched.
    pub observe: Duration,
    /// Successes in a row after the last error that count as recovered.
    pub consecutive_ok: u64,
}

/// How many tasks the failover phase kills: a count, or a share of the replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KillCount {
    /// This many.
    Count(u64),
    /// This percentage of the replicas, rounded up, at least one.
    Percent(f64),
}

impl Default for KillCount {
    fn default() -> Self {
        KillCount::Count(1)
    }
}

impl KillCount {
    /// How many of `replicas` that is.
    pub fn of(&self, replicas: u64) -> u64 {
        match *self {
            KillCount::Count(n) => n.min(replicas),
            KillCount::Percent(p) => ((replicas as f64 * p / 100.0).ceil() as u64).clamp(1, replicas.max(1)),
        }
    }
}

impl std::fmt::Display for KillCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillCount::Count(n) => write!(f, "{n}"),
            KillCount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for KillCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is neither a count of tasks (1) nor a share of the replicas (25%)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(KillCount::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse::<u64>().map(KillCount::Count).map_err(|_| bad()),
        }
    }
}

impl Serialize for KillCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KillCount::Count(n) => s.serialize_u64(*n),
            KillCount::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for KillCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: String = crate::yaml::Scalar::deserialize(d)?.into();
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What the failover phase kills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverTarget {
    /// Server replicas.
    #[default]
    Server,
    /// A load-balancer task.
    Lb,
}

/// Scaling: the server scaled through each step and back, under saturating load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scaling {
    /// Replica counts to visit, in order; the configured count comes first and last.
    pub steps: Vec<u64>,
    /// Measured at each count after it converged.
    pub hold: Duration,
    /// Sessions sending back to back (closed model, no think time): throughput per replica
    /// count is only a capacity figure when the load saturates.
    pub sessions: u64,
    /// Give up on a step's convergence after this long.
    pub converge_timeout: Duration,
}

/// Incremental: session counts held one after another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Incremental {
    /// Concurrent sessions of each stage.
    pub stages: Vec<u64>,
    /// How long each stage is held after its ramp.
    pub hold: Duration,
}

/// A load profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Profile {
    /// Concurrent MCP sessions to open and hold.
    pub sessions: u64,
    /// New sessions per second during the ramp.
    pub ramp: u64,
    /// How long all sessions are held after the ramp.
    pub hold: Duration,
    /// Pause between a session's requests.
    pub think: Duration,
    /// Instead of `think`: each session sends a request every `period` on a fixed schedule,
    /// the sessions' turns spread evenly over it (the open model: a late answer does not delay
    /// the next request, and latency counts from when each was due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
    /// Client transport.
    pub transport: ClientTransport,
    /// The request mix (`swarmctl load --mix`); empty: `tools/call:echo=1` where the server
    /// has `echo` (the reference server), otherwise `ping=1,tools/list=1`.
    pub mix: String,
    /// Extra headers on every request and WebSocket handshake, e.g. `Authorization`.
    #[serde(deserialize_with = "scalar_map", skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Client processes; 0: as many as the open-file limit needs.
    pub workers: u64,
}

impl Profile {
    /// `headers` as the load plan carries them.
    pub fn header_list(&self) -> Vec<(String, String)> {
        self.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Which transport the load engine speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientTransport {
    /// Streamable HTTP.
    #[default]
    Http,
    /// Legacy HTTP+SSE.
    Sse,
    /// WebSocket.
    Ws,
    /// TCP.
    Tcp,
}

/// Service-level objectives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slo {
    /// Minimum share of successful requests, from 0 (exclusive) to 1.
    pub success_ratio: f64,
    /// Maximum p99 latency.
    pub p99: Duration,
    /// Maximum client-visible recovery time after a replica is killed.
    pub failover_recovery: Duration,
    /// Minimum share of successful requests over the failover phase, kill included.
    pub failover_success_ratio: f64,
}

/// A map whose values may be written as strings, numbers or booleans (as in compose:
/// `ERL_MAX_PORTS: 262144`), kept as strings.
fn scalar_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, crate::yaml::Scalar>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.into())).collect())
}

/// Where a client meets the MCP transports: a load-balancer instance's host ports, or a
/// replica's own container ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A Traefik instance's published ports.
    Lb {
        /// The `web` entry point (Streamable HTTP, legacy SSE, health).
        web: u16,
        /// The `websocket` entry point.
        websocket: u16,
        /// The `tcp` entry point.
        tcp: u16,
        /// Traefik's own metrics and ping.
        metrics: u16,
    },
    /// A replica, on the stack's network.
    Replica,
}

impl Config {
    /// The swarm name of the stack's service, network, config or secret `key` (`server`,
    /// `lb`, the mcp network's name…): `<stack>_<key>`, as `docker stack deploy` names them.
    pub fn service(&self, key: &str) -> String {
        crate::convert::Namespace(self.name.clone()).scope(key)
    }

    /// The swarm name of the stack's MCP overlay network.
    pub fn mcp_network(&self) -> String {
        self.service(&self.networks.mcp.name)
    }

    /// The configured load balancer's entry (its fixed host ports).
    pub fn lb_entry(&self) -> Entry {
        let p = &self.lb.ports;
        Entry::Lb { web: p.web, websocket: p.websocket, tcp: p.tcp, metrics: p.metrics }
    }

    /// One Traefik task's entry from its published ports (container port, host port); `None`
    /// until the engine has published the ones clients need.
    pub fn lb_entry_published(published: &[(u16, u16)]) -> Option<Entry> {
        let host = |target: u16| published.iter().find(|p| p.0 == target).map(|p| p.1);
        let t = &TRAEFIK_LISTENS;
        Some(Entry::Lb {
            web: host(t.web)?,
            websocket: host(t.websocket)?,
            tcp: host(t.tcp).unwrap_or(0),
            metrics: host(t.metrics)?,
        })
    }

    /// The URL a client of `transport` uses at `host` through `entry`; the error names the
    /// transport the stack does not serve.
    pub fn client_url(&self, transport: ClientTransport, host: &str, entry: Entry) -> Result<String, String> {
        let t = &self.server.transports;
        let off = |name: &str| format!("the stack does not serve {name} (server.transports.{name} is off)");
        let lb = |pick: fn(u16, u16, u16) -> u16, own: u16| match entry {
            Entry::Lb { web, websocket, tcp, .. } => pick(web, websocket, tcp),
            Entry::Replica => own,
        };
        Ok(match transport {
            ClientTransport::Http => {
                let h = t.http.as_ref().ok_or_else(|| off("http"))?;
                format!("http://{host}:{}{}", lb(|w, _, _| w, h.port), h.path)
            }
            ClientTransport::Sse => {
                let h = t.sse.as_ref().ok_or_else(|| off("sse"))?;
                format!("sse://{host}:{}{}", lb(|w, _, _| w, h.port), h.path)
            }
            ClientTransport::Ws => {
                let w = t.ws.as_ref().ok_or_else(|| off("ws"))?;
                format!("ws://{host}:{}{}", lb(|_, s, _| s, w.port), w.path)
            }
            ClientTransport::Tcp => {
                let c = t.tcp.as_ref().ok_or_else(|| off("tcp"))?;
                format!("tcp://{host}:{}", lb(|_, _, t| t, c.port))
            }
        })
    }
}
