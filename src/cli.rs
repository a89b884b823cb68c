//! The command line (clap derive): global flags and one argument struct per command. The doc
//! comments here are the `--help` text.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Deploy an MCP server fleet to Docker Swarm and prove, with measured numbers, how it holds up.
///
/// swarmctl renders a stack (MCP server replicas behind Traefik or HAProxy, with Prometheus and Grafana)
/// from a typed stack file, and talks to the Docker Engine API directly. Every number it
/// prints is measured.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version = crate::VERSION, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Stacks: a built-in one (listed under --stack) or a path to your own stack \
file (layered on `default`). Configuration reference: docs/configuration.md.\n\
Exit codes: 0 ok, 1 error, 2 usage or configuration error, 3 a threshold or SLO failed, 4 the load \
generator could not keep its schedule, 130 interrupted.")]
pub struct Cli {
    /// Stack: a built-in name or a path to a stack file.
    #[arg(long, global = true, env = "SWARMCTL_STACK", value_name = "NAME|FILE", value_parser = StackName)]
    #[arg(help_heading = "Global options")]
    pub stack: Option<String>,

    /// Override one key of the stack, e.g. `--set server.replicas=3` (repeatable; the value is
    /// read as YAML, `null` removes the key).
    #[arg(long = "set", global = true, help_heading = "Global options", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,

    /// Use the templates in DIR instead of the embedded ones with the same relative names
    /// (stack.yml, traefik.yml, haproxy.cfg, prometheus.yml, alerts.yml, grafana/…).
    #[arg(long, global = true, help_heading = "Global options", value_name = "DIR")]
    pub templates: Option<PathBuf>,

    /// Where the stack's published ports answer, for the endpoints and the load: by default
    /// the host of DOCKER_HOST (tcp://, https://, ssh://), else 127.0.0.1. Set it when the
    /// cluster is reached through a load balancer or another address than its engine's.
    #[arg(long, global = true, help_heading = "Global options", env = "SWARMCTL_HOST", value_name = "HOST")]
    pub host: Option<String>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, help_heading = "Global options", action = ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true, help_heading = "Global options", conflicts_with = "verbose")]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--stack`: any name or path; the built-in names are its possible values, so that `--help`
/// and shell completion list them from the one list there is (`config::BUILTIN_STACKS`).
#[derive(Debug, Clone, Copy)]
struct StackName;

impl clap::builder::TypedValueParser for StackName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(crate::config::BUILTIN_STACKS.iter().map(|(name, _)| clap::builder::PossibleValue::new(*name))))
    }
}

impl Cli {
    /// Where the stack's published ports answer: `--host`, else the engine's host.
    pub fn public_host(&self) -> String {
        self.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(crate::deploy::public_host)
    }

    /// The stack the global flags select.
    pub fn source(&self) -> crate::deploy::Source {
        crate::deploy::Source { stack: self.stack.clone(), sets: self.sets.clone(), templates: self.templates.clone() }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make this engine a swarm manager and check that the stack can be placed: swarm init when
    /// inactive, the stack's overlay networks and named volumes, and a topology check of
    /// managers, workers, placement constraints, reservations and host ports.
    Init(InitArgs),

    /// Deploy the stack and wait until it runs: render, plan, apply, wait for convergence,
    /// print the endpoints.
    ///
    /// The plan lists every network, config, secret and service as created (+), updated (~),
    /// unchanged (=) or removed (-); a second `up` with the same input changes nothing. The
    /// wait ends when every replica of every service runs (healthy, where a healthcheck
    /// exists) and stays so for a few seconds; it fails fast with the scheduler's own reason
    /// when tasks cannot be placed or keep failing. Runs `init` first when the engine is in
    /// no swarm, and packs the builtin server image when it is missing.
    Up(UpArgs),

    /// Show the stack: services with desired and running replicas, tasks per slot with node,
    /// state and error, and the endpoints.
    Status(StatusArgs),

    /// Remove the stack: services, then (once their containers are gone) configs, secrets and
    /// networks; volumes with --volumes; leave the swarm with --leave-swarm. Running it twice
    /// is fine.
    Down(DownArgs),

    /// Build images through the Engine API, without a registry.
    #[command(subcommand)]
    Image(ImageCommand),

    /// Render the stack: the compose file and the config files it references.
    ///
    /// Without -o, prints the compose file to stdout. With -o DIR, writes DIR/stack.yml and
    /// every file beside it (Traefik or HAProxy, Prometheus, alert rules, Grafana provisioning, the Grafana
    /// password as a 0600 file), so that `docker stack deploy -c DIR/stack.yml NAME` deploys the
    /// same stack as `swarmctl up`. The output is checked before it is written: parsed back and
    /// converted to swarm specs.
    Render(RenderArgs),

    /// Run the reference MCP server: Streamable HTTP, legacy SSE, WebSocket and TCP listeners,
    /// /health and /metrics, fault injection. The `builtin` image runs this.
    ///
    /// Prints one line, `serving --http ADDR …`, once every listener is bound. SIGTERM drains:
    /// /health answers 503, listeners close, in-flight requests finish (within
    /// --drain-timeout), then the process exits.
    Serve(Box<crate::serve::ServeOptions>),

    /// Put MCP load on any endpoint and measure it: sessions ramped in, requests scheduled in
    /// advance, latency from when each request was due (coordinated omission corrected) and
    /// from when it was sent, HDR histograms, error classes (with the first few of each as
    /// seen), thresholds. Without --threshold, the stack's slo.success_ratio judges (95 % in the
    /// default stack), so a run with failures cannot pass unjudged.
    ///
    /// Exit codes: 0 pass, 1 no session could open (the cause is said), 3 a threshold failed,
    /// 4 the generator could not keep its schedule, 130 interrupted (Ctrl-C stops scheduling,
    /// drains, and still writes the results).
    Load(Box<LoadArgs>),

    /// Internal: one worker process of a `load` split over processes (its share of the plan is
    /// DIR/plan.json; it reports into DIR). Without DIR, the task of a load service: the
    /// whole plan in SWARMCTL_LOAD_PLAN, its share by SWARMCTL_LOAD_SLOT, reporting on stdout.
    #[command(hide = true)]
    LoadWorker {
        /// The worker's folder.
        dir: Option<PathBuf>,
    },

    /// Deploy if needed, run a load profile through the load balancer and write a results
    /// folder: `baseline` and `stress` run their profile; `full` runs pre-flight, up, baseline,
    /// stress, every validate phase and the report, and leaves the stack as configured.
    ///
    /// Results go to test-results/<kind>-<UTC time>/ (or --out): results.json (the source of
    /// everything else), FINAL_REPORT.md, SUMMARY.txt, report.html, timeline.jsonl (written as
    /// the run goes), logs/, metrics/, phases/. Exit codes: 0 every phase met its SLO, 3 one
    /// did not, 1 the run could not go on, 130 interrupted (the report is still written).
    Test(TestArgs),

    /// Run phases under load against the deployed stack, each with a verdict measured against
    /// the stack's SLO: `failover` (kill tasks, measure client-visible recovery), `scaling`
    /// (scale through steps and back, throughput per replica count), `incremental` (session
    /// counts held in turn), or `all`. Writes a results folder like `test`; same exit codes.
    Validate(ValidateArgs),

    /// Read, re-render or compare results folders.
    #[command(subcommand)]
    Report(ReportCommand),

    /// GET an http:// URL and exit 0 on a 2xx answer (the `builtin` image's healthcheck).
    Probe(ProbeArgs),

    /// Act on this node's containers of one stack for a remote swarmctl: what `test` and
    /// `validate` deploy on every other node of a swarm, as a global service of the builtin
    /// image with the engine socket mounted, for the length of a run.
    ///
    /// Swarm has no container calls across nodes; the agent sends a signal to a container of
    /// the stack (kill, and the time its engine acted) and reads its CPU and memory. Every call
    /// needs the run's token (a swarm secret); containers of other services are refused.
    /// See docs/multi-node.md.
    Agent(AgentArgs),

    /// Add latency, jitter and loss to every interface (but loopback) of the network namespace
    /// it runs in, or remove them (`--clear`), through rtnetlink; prints one JSON line: the
    /// interfaces, and those with netem afterwards.
    ///
    /// What `validate --phase network` runs in a helper container that shares one replica's
    /// network namespace (with NET_ADMIN), on the replica's node. `--clear` exits 1 when a
    /// netem qdisc is still there afterwards.
    Netem(NetemArgs),

    /// Print a shell completion script, e.g. `swarmctl completions bash > /etc/bash_completion.d/swarmctl`.
    Completions(CompletionsArgs),

    /// Print the manual page (roff, made from this help), e.g.
    /// `swarmctl man > /usr/local/share/man/man1/swarmctl.1`.
    Man,
}

/// `swarmctl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write into this folder (created if missing) instead of printing stack.yml.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `swarmctl init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Address other nodes reach this manager at (default: the engine's choice, else 127.0.0.1).
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `swarmctl up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove services of the stack that the stack file no longer has.
    #[arg(long)]
    pub prune: bool,
    /// Give up waiting for convergence after this long.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub timeout: crate::units::Duration,
    /// Print the plan (with --dry-run) or the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarmctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `swarmctl down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also remove the stack's named volumes (data is lost).
    #[arg(long)]
    pub volumes: bool,
    /// Then leave the swarm (forcefully, as the last manager must).
    #[arg(long)]
    pub leave_swarm: bool,
    /// Give up after this long.
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    pub timeout: crate::units::Duration,
}

/// `swarmctl image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a local binary: a static one goes into `FROM scratch` alone, a
    /// dynamic one brings its ELF interpreter and libraries. Prints the image ID.
    Pack(PackArgs),
}

/// `swarmctl image pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The binary (not with --self).
    #[arg(required_unless_present = "self_")]
    pub binary: Option<std::path::PathBuf>,
    /// Pack this swarmctl binary as the builtin reference-server image
    /// (swarmctl/mcp-server:<version>-<content hash>, also tagged <version>).
    #[arg(long = "self", conflicts_with = "binary")]
    pub self_: bool,
    /// Image tag (repeatable); required unless --self.
    #[arg(long = "tag", short = 't', value_name = "NAME:TAG", required_unless_present = "self_")]
    pub tags: Vec<String>,
    /// Name of the binary inside the image (default: its file name); the entrypoint is /NAME.
    #[arg(long, value_name = "NAME")]
    pub entrypoint: Option<String>,
    /// A file or folder to copy in whole, at the same path or at IMAGE_PATH (repeatable): an
    /// interpreter's standard library, a program and its packages. The libraries their ELF
    /// files need come along.
    #[arg(long = "add", value_name = "HOST_PATH[:IMAGE_PATH]", conflicts_with = "self_")]
    pub add: Vec<crate::image::Added>,
    /// Push the image to its registry afterwards: every --tag as given
    /// (`registry:5000/name:tag`), or with --self the stack's `registry` (`--set
    /// registry=HOST:PORT`), from which every node of a cluster pulls it.
    #[arg(long)]
    pub push: bool,
}

/// `swarmctl test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Which run.
    #[arg(value_enum)]
    pub kind: TestKind,
    /// Use the stack as it is deployed (do not run `up` first).
    #[arg(long)]
    pub no_deploy: bool,
    /// Override the profile's concurrent sessions.
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,
    /// Override the profile's ramp (new sessions per second).
    #[arg(long, value_name = "PER_SECOND")]
    pub ramp: Option<u64>,
    /// Override how long the profile holds its sessions.
    #[arg(long, value_name = "DURATION")]
    pub hold: Option<crate::units::Duration>,
    /// Override the profile's think time between a session's requests (and its `period`: the
    /// sessions then wait for each answer).
    #[arg(long, value_name = "DURATION")]
    pub think: Option<crate::units::Duration>,
    /// Override the profile's client transport.
    #[arg(long, value_enum)]
    pub transport: Option<crate::config::ClientTransport>,
    /// Results folder (default: test-results/<kind>-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How the baseline, stress and incremental loads reach the servers: through the load
    /// balancer, or straight to every replica (from a load container on the stack's network),
    /// or straight to every replica from the tasks of a load service spread over the swarm's
    /// nodes (swarm: one task per worker of the profile; load from more than one machine).
    #[arg(long, value_enum, default_value = "lb")]
    pub via: crate::phase::Via,
}

/// The `test` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestKind {
    /// The `baseline` profile.
    Baseline,
    /// The `stress` profile.
    Stress,
    /// Everything: pre-flight, up, baseline, stress, validate all, report.
    Full,
}

/// `swarmctl validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Which phase.
    #[arg(long, value_enum, default_value = "all")]
    pub phase: PhaseName,
    /// Failover: tasks to kill at once, a count (1) or a share of the replicas (25%)
    /// (default: test.failover.kill).
    #[arg(long, value_name = "N|PCT")]
    pub kill: Option<crate::config::KillCount>,
    /// Failover: kill server replicas or a load-balancer task (default: test.failover.target).
    #[arg(long, value_enum)]
    pub target: Option<KillTarget>,
    /// Results folder (default: test-results/validate-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// How the incremental stages reach the servers: through the load balancer, or straight
    /// to every replica (failover and scaling always go through the load balancer).
    #[arg(long, value_enum, default_value = "lb")]
    pub via: crate::phase::Via,
}

/// The `validate` phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PhaseName {
    /// Session counts held in turn.
    Incremental,
    /// Tasks killed under load.
    Failover,
    /// Replicas scaled under load.
    Scaling,
    /// One replica stopped (SIGSTOP) under load, then resumed: a replica that hangs.
    Hang,
    /// A release of the server rolled out under load (every task replaced, under the stack's
    /// `server.update` policy).
    Update,
    /// A release whose tasks cannot start, rolled out under load: swarm must roll it back.
    Rollback,
    /// The worker node with the most replicas drained under load, then made active again
    /// (a swarm of several nodes).
    Drain,
    /// One replica's network slowed and made lossy (netem: `test.network`) under load, then
    /// restored.
    Network,
    /// incremental, failover, scaling, hang, update, rollback, network, and drain where the
    /// swarm has a worker node (skipped with the reason otherwise).
    All,
}

/// What the failover phase kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KillTarget {
    /// Server replicas.
    Server,
    /// A load-balancer task (Traefik or HAProxy).
    Lb,
}

/// `swarmctl report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Print a results folder's summary (of `test`, `validate` or `load --out`).
    Show {
        /// The results folder (or its results.json).
        dir: PathBuf,
    },
    /// Write the reports again from results.json: SUMMARY.txt and report.html, and
    /// FINAL_REPORT.md for a test (a load's report.html also draws its timeline.jsonl).
    Render {
        /// The results folder.
        dir: PathBuf,
    },
    /// Compare run B with run A (tests or loads): what they ran on that differs first, then the
    /// figures both have, regressions flagged; exit 3 when one got worse beyond the tolerance.
    Compare {
        /// The earlier run.
        a: PathBuf,
        /// The later run.
        b: PathBuf,
        /// Relative change tolerated in latency, throughput and recovery, in percent (success
        /// ratios may not drop by more than 0.1 point whatever this says).
        #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
        tolerance: f64,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema every results.json follows (docs/results.schema.json).
    Schema,
}

/// `swarmctl probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL, e.g. http://127.0.0.1:9100/health.
    pub url: String,
    /// Give up after this long.
    #[arg(long, default_value = "2s")]
    pub timeout: crate::units::Duration,
}

/// `swarmctl agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The stack whose containers it acts on.
    #[arg(long)]
    pub stack: String,
    /// Where to listen.
    #[arg(long, default_value = "0.0.0.0:28470", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The file holding the token callers must present.
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// This node's swarm ID (swarm sets it in the agent's service).
    #[arg(long, env = "SWARMCTL_AGENT_NODE")]
    pub node: String,
    /// The image helper containers run in (`swarmctl netem` in a replica's network
    /// namespace): the agent's own.
    #[arg(long, value_name = "IMAGE", default_value = "")]
    pub image: String,
}

/// `swarmctl netem`.
#[derive(Debug, Args)]
pub struct NetemArgs {
    /// Latency added to every packet sent.
    #[arg(long, default_value = "100ms", conflicts_with = "clear")]
    pub delay: crate::units::Duration,
    /// Its variation (uniform, ±).
    #[arg(long, default_value = "0s", conflicts_with = "clear")]
    pub jitter: crate::units::Duration,
    /// Share of packets dropped, 0 to 1.
    #[arg(long, default_value = "0", conflicts_with = "clear")]
    pub loss: f64,
    /// Remove the impairment instead (the interfaces' default qdisc comes back).
    #[arg(long)]
    pub clear: bool,
    /// Only say whether the kernel has netem (a netem that adds nothing, set on loopback and
    /// removed at once).
    #[arg(long, conflicts_with_all = ["clear", "delay", "jitter", "loss"])]
    pub probe: bool,
}

/// `swarmctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `swarmctl load`: the flags that make a load plan, or a plan file.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Target endpoint (repeatable; sessions go round-robin): http[s]://host[:port]/mcp
    /// (Streamable HTTP), ws[s]://host[:port]/mcp/ws (WebSocket; TLS for https and wss, port
    /// 443 or 80 when none is given), tcp://host:port (newline-delimited) or
    /// sse://host:port/sse (legacy HTTP+SSE: GET the stream, POST to the endpoint it announces;
    /// erlmcp serves it at /mcp/sse).
    #[arg(long = "url", required_unless_present = "plan", value_name = "URL")]
    pub urls: Vec<String>,
    /// Run this load plan (JSON, as written into every results folder as plan.json; `-` reads
    /// standard input) instead of one made from the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "urls", "sessions", "ramp", "duration", "think", "rate", "stages", "mix", "timeout",
        "thresholds", "source_ips", "ws_subprotocol", "ws_newline", "no_close", "get_stream", "workers",
        "ca_cert", "insecure",
    ])]
    pub plan: Option<PathBuf>,
    /// Concurrent MCP sessions (one connection each).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub sessions: usize,
    /// New sessions per second during the ramp.
    #[arg(long, default_value_t = 100.0, value_name = "PER_SECOND")]
    pub ramp: f64,
    /// How long the run goes on after the last session started.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: crate::units::Duration,
    /// Closed model: each session pauses this long after an answer (0: back to back).
    #[arg(long, default_value = "1s", value_name = "DURATION", conflicts_with = "rate")]
    pub think: crate::units::Duration,
    /// Open model: requests per second over all sessions, whatever the answers do; latency
    /// counts from when each request was due (coordinated omission corrected).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Open model with a changing rate, after every session has started (instead of --rate
    /// and --duration): stages of DURATION:RATE or DURATION:FROM->TO, e.g.
    /// '30s:0->1000,2m:1000,30s:1000->0'. Each request is due when the integral of the rate
    /// reaches it; latency counts from then.
    #[arg(long, value_name = "STAGES", conflicts_with_all = ["rate", "think", "duration"])]
    pub stages: Option<String>,
    /// Weighted request mix: ping, tools/list, resources/list, prompts/list,
    /// resources/read:URI, tools/call:TOOL or tools/call:TOOL(key=value;…). Without it:
    /// tools/call:echo=1 where the server has `echo` (the reference server), otherwise
    /// ping=1,tools/list=1. A tool the server does not list is refused before the run.
    #[arg(long, value_name = "SPEC")]
    pub mix: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: crate::units::Duration,
    /// Pass/fail condition (repeatable): p99<500ms, success>=99.9%, tools/call:echo:p95<50ms.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,
    /// Source addresses to connect from, round-robin: a range (127.0.0.2-127.0.0.40) or a
    /// comma list. Each adds a full ephemeral port range toward every destination.
    #[arg(long, value_name = "ADDRS")]
    pub source_ips: Option<String>,
    /// Offer the `mcp` WebSocket subprotocol.
    #[arg(long)]
    pub ws_subprotocol: bool,
    /// End every WebSocket message with a newline (erlmcp).
    #[arg(long)]
    pub ws_newline: bool,
    /// Leave sessions open at the end (no DELETE, no close frame).
    #[arg(long)]
    pub no_close: bool,
    /// Streamable HTTP: every session also opens its GET stream (for messages the server
    /// starts) and holds it: one more connection per session, as clients that listen have.
    #[arg(long)]
    pub get_stream: bool,
    /// An extra header on every request and WebSocket handshake (repeatable), e.g.
    /// 'Authorization: Bearer …'. Its value is not written into --out's plan.json; with
    /// --plan, give it again.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// https:// and wss://: check the server's certificate against the CA certificates in this
    /// PEM file instead of the system's.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_cert: Option<PathBuf>,
    /// https:// and wss://: take any certificate (a test server's self-signed one). The
    /// traffic is still encrypted, but to whoever answers.
    #[arg(long)]
    pub insecure: bool,
    /// Split the sessions over N processes of this binary (each process may hold at most
    /// ~19,900 sockets here); their histograms are merged exactly, not averaged.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Send the load from the nodes of the swarm instead of this machine: the tasks of a load
    /// service (`<stack>-load`) of the builtin image, spread over the nodes (where the stack's
    /// `test.load_tasks` allows), each with its share from one start time corrected by its
    /// node's clock. Their seconds come back through the service's logs and are merged
    /// exactly; the service is removed however the run ends. The URLs must be reachable from
    /// the nodes: a node's address and a published port, or a service name on --network.
    /// Without --mix and a server this machine can ask, the mix is ping=1,tools/list=1. A
    /// --header's value is in the service's environment while it runs.
    #[arg(long, conflicts_with_all = ["workers", "source_ips"])]
    pub on_swarm: bool,
    /// With --on-swarm: how many load tasks (default: one per active node).
    #[arg(long, value_name = "N", requires = "on_swarm", value_parser = clap::value_parser!(u16).range(1..))]
    pub tasks: Option<u16>,
    /// With --on-swarm: an overlay network for the tasks to join (a stack's
    /// `<stack>_mcp-network`), so that the URLs may name its services
    /// (http://<stack>_server:8080/mcp).
    #[arg(long, value_name = "NAME", requires = "on_swarm")]
    pub network: Option<String>,
    /// Write plan.json, results.json, timeline.jsonl (as the run goes) and SUMMARY.txt into
    /// DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print results.json on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// The load plan these flags describe (or the plan file's), checked; a flag that cannot
    /// work is a usage error naming it. (Checked here, not only when it runs: the progress
    /// display already divides by the ramp.)
    pub fn plan(&self) -> Result<crate::load::LoadPlan, crate::exit::UsageError> {
        use crate::exit::UsageError;
        use crate::load::{plan, workload::Model, LoadPlan, Target};
        let headers = self
            .headers
            .iter()
            .map(|h| match h.split_once(':') {
                Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
                None => Err(UsageError::flag("--header", format!("`{h}` has no colon: write 'Name: value'"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(path) = &self.plan {
            // A results folder's plan.json keeps header names, not values: given again here.
            let mut plan = LoadPlan::read(path)?;
            if !headers.is_empty() {
                plan.headers = headers;
                plan.check()?;
            }
            return Ok(plan);
        }
        let targets = self
            .urls
            .iter()
            .map(|u| Target::parse(u, self.ws_subprotocol, self.ws_newline))
            .collect::<Result<Vec<_>, _>>()
            .map_err(UsageError)?;
        let model = match (self.rate, &self.stages) {
            (_, Some(spec)) => Model::Staged(spec.parse().map_err(|e| UsageError::flag("--stages", e))?),
            (Some(rate), None) => Model::Open { rate },
            (None, None) => Model::Closed { think: self.think.0 },
        };
        let hold = match &model {
            Model::Staged(stages) => stages.total(),
            _ => self.duration.0,
        };
        let plan = LoadPlan {
            sources: match &self.source_ips {
                Some(spec) => plan::parse_sources(spec).map_err(|e| UsageError::flag("--source-ips", e))?,
                None => Vec::new(),
            },
            sessions: self.sessions,
            ramp: self.ramp,
            hold,
            model,
            mix: match &self.mix {
                Some(spec) => spec.parse().map_err(|e| UsageError::flag("--mix", e))?,
                None => LoadPlan::toward(Vec::new()).mix,
            },
            timeout: self.timeout.0,
            close: !self.no_close,
            get_stream: self.get_stream,
            thresholds: self.thresholds.iter().map(|t| t.parse()).collect::<Result<_, _>>().map_err(UsageError)?,
            workers: self.workers,
            headers,
            trust: match (&self.ca_cert, self.insecure) {
                (Some(pem), _) => plan::Trust::CaFile(pem.clone()),
                (None, true) => plan::Trust::Nobody,
                (None, false) => plan::Trust::System,
            },
            ..LoadPlan::toward(targets)
        }
        .with_default_sources();
        plan.check()?;
        Ok(plan)
    }
}
