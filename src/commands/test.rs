//! `swarmctl test`, `validate` and `report`: the phases run against the deployed stack, with
//! pre-flight, resource sampling, logs and Prometheus data collected, and the results folder
//! written from one `TestRun` (also when a phase fails or Ctrl-C stops the run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::agent::{self, reach, Reach};
use crate::cli::{Cli, KillTarget, PhaseName, ReportCommand, TestArgs, TestKind, ValidateArgs};
use crate::config::{Config, FailoverTarget};
use crate::deploy::{self, UpOptions};
use crate::engine::{self, swarm, Handle};
use crate::exit::{Code, UsageError, Verdict};
use crate::phase::{self, failover, sampler, Ctx, PhaseKind, Recorder, MAX_WORKERS};
use crate::report::{self, Phase, TestRun};
use crate::units::unix_now_ms;

/// `swarmctl test baseline|stress|full`.
pub async fn test(cli: &Cli, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let mut config = cli.source().config()?;
    // The overrides skip the stack file's checks: the same bounds, said with the flag.
    if args.sessions == Some(0) {
        return Err(UsageError::flag("--sessions", "must be at least 1").into());
    }
    if args.ramp == Some(0) {
        return Err(UsageError::flag("--ramp", "must be at least 1 session per second").into());
    }
    for name in ["baseline", "stress"] {
        if let Some(p) = config.test.profiles.get_mut(name) {
            if let Some(v) = args.sessions {
                p.sessions = v;
            }
            if let Some(v) = args.ramp {
                p.ramp = v;
            }
            if let Some(v) = args.hold {
                p.hold = v;
            }
            if let Some(v) = args.think {
                p.think = v;
                p.period = None;
            }
            if let Some(v) = args.transport {
                p.transport = v;
            }
        }
    }
    let (kind, names) = match args.kind {
        TestKind::Baseline => ("baseline", vec![PhaseKind::Baseline]),
        TestKind::Stress => ("stress", vec![PhaseKind::Stress]),
        TestKind::Full => {
            ("full", [PhaseKind::Baseline, PhaseKind::Stress].into_iter().chain(PhaseKind::VALIDATE_ALL).collect())
        }
    };
    let progress = crate::progress::stderr(cli.quiet);
    if !args.no_deploy {
        let engine = engine::connect().await?;
        let up = UpOptions { dry_run: false, prune: false, timeout: Duration::from_secs(300), host: cli.public_host() };
        let cancel = crate::shutdown::on_signals();
        deploy::up(&engine, &cli.source(), &up, progress.as_ref(), &cancel)
            .await
            .context("cannot deploy the stack for the test")?;
    }
    let plan = failover_plan(&config, None, None);
    let run_args = Run { kind, out: args.out.clone(), names: &names, failover: plan, via: args.via, progress };
    run(cli, config, run_args).await
}

/// `swarmctl validate --phase …`.
pub async fn validate(cli: &Cli, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let config = cli.source().config()?;
    let names = match args.phase {
        PhaseName::Incremental => vec![PhaseKind::Incremental],
        PhaseName::Failover => vec![PhaseKind::Failover],
        PhaseName::Scaling => vec![PhaseKind::Scaling],
        PhaseName::Hang => vec![PhaseKind::Hang],
        PhaseName::Update => vec![PhaseKind::Update],
        PhaseName::Rollback => vec![PhaseKind::Rollback],
        PhaseName::Drain => vec![PhaseKind::Drain],
        PhaseName::Network => vec![PhaseKind::Network],
        PhaseName::All => PhaseKind::VALIDATE_ALL.to_vec(),
    };
    let plan = failover_plan(&config, args.kill, args.target);
    let progress = crate::progress::stderr(cli.quiet);
    let run_args =
        Run { kind: "validate", out: args.out.clone(), names: &names, failover: plan, via: args.via, progress };
    run(cli, config, run_args).await
}

fn failover_plan(c: &Config, kill: Option<crate::config::KillCount>, target: Option<KillTarget>) -> failover::Plan {
    failover::Plan {
        kill: kill.unwrap_or(c.test.failover.kill),
        target: match target {
            Some(KillTarget::Server) => FailoverTarget::Server,
            Some(KillTarget::Lb) => FailoverTarget::Lb,
            None => c.test.failover.target,
        },
    }
}

/// What this machine allows, said before anything runs: open files of clients, Traefik tasks
/// and replicas, ephemeral ports, memory and connection tracking for each profile, and what
/// swarmctl sets itself.
fn preflight(config: &Config, names: &[PhaseKind], via: phase::Via) -> Vec<String> {
    let per_process = crate::load::sessions_per_process();
    let mut notes = vec![format!(
        "this machine: {per_process} sessions per client process (open-file limit; swarmctl raises the soft limit to it), at most {MAX_WORKERS} client processes"
    )];
    let ports = crate::load::local_port_range();
    match via {
        phase::Via::Lb => notes.push(format!(
            "ephemeral ports: {ports} per source address and destination; over 4,000 sessions to loopback the clients spread over 127.0.0.2 and up (one address per 1,000 sessions)"
        )),
        phase::Via::Direct | phase::Via::Swarm => notes.push(format!(
            "ephemeral ports: the range of the load {} is set to 1024-65535 (64,512 per replica from its one address)",
            if via == phase::Via::Direct { "container" } else { "tasks" }
        )),
    }
    let nofile = config.server.ulimits.get("nofile").copied().unwrap_or(per_process);
    let available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    let conntrack_max = crate::kernel::conntrack_max();
    for name in names.iter().filter_map(|k| k.profile()) {
        let Some(p) = config.test.profiles.get(name) else { continue };
        let workers = phase::workers_for(p.sessions) as u64;
        if workers > 1 {
            notes.push(format!("{name}: {} sessions need {workers} client processes", p.sessions));
        }
        let per_replica = p.sessions.div_ceil(u64::from(config.server.replicas.max(1)));
        if per_replica + 100 > nofile {
            notes.push(format!(
                "{name}: {per_replica} sessions per replica, and a replica may open {nofile} files (server.ulimits.nofile): add replicas or raise it"
            ));
        }
        // Traefik holds two sockets per session (client and replica) under the same limit.
        let per_lb = p.sessions.div_ceil(u64::from(config.lb.replicas.max(1)));
        if via == phase::Via::Lb && 2 * per_lb + 100 > per_process {
            notes.push(format!(
                "{name}: {per_lb} sessions per Traefik task need {} open files and a process may have {per_process}: run more Traefik tasks (lb.replicas, with lb.ports_per_task on one node)",
                2 * per_lb
            ));
        }
        // Measured per idle session (docs/performance.md): client 4-5 KiB, reference server
        // 8 KiB; twice that leaves room for what is not idle.
        let need_kib = p.sessions * 2 * (5 + 8);
        if let Some(avail) = available_kib.filter(|a| need_kib > *a) {
            notes.push(format!(
                "{name}: {} sessions may need about {} MiB of memory for clients and servers here, and {} MiB are available",
                p.sessions,
                need_kib / 1024,
                avail / 1024
            ));
        }
        // Through the load balancer every session is two tracked connections (client to
        // Traefik's published port, Traefik to a replica).
        if let Some(max) = conntrack_max.filter(|m| p.sessions * 2 > *m) {
            notes.push(format!(
                "{name}: {} sessions need about {} connection-tracking entries and net.netfilter.nf_conntrack_max is {max}: raise it (sysctl -w net.netfilter.nf_conntrack_max=…) or expect dropped connections",
                p.sessions,
                p.sessions * 2
            ));
        }
    }
    notes
}

/// A note when fewer than `replicas` of `service` run after the run (a node left, tasks that
/// cannot be placed), with the scheduler's reasons.
async fn short_of(engine: &dyn engine::Engine, service: &str, replicas: u64) -> Option<String> {
    let tasks = engine.tasks(service, true).await.ok()?;
    let running = tasks.iter().filter(|t| t.is_running()).count() as u64;
    if running >= replicas {
        return None;
    }
    let waiting: Vec<String> = tasks
        .iter()
        .filter(|t| t.desired_running && !t.is_running())
        .map(|t| format!("slot {} {}: {}", t.slot, t.state, t.reason()))
        .collect();
    Some(format!(
        "{service}: {running} of {replicas} replicas run after the run{}",
        if waiting.is_empty() { String::new() } else { format!(" ({})", waiting.join("; ")) }
    ))
}

/// Deploys the run's agents on the other nodes; a note for each node they could not start on.
pub(crate) async fn start_agents(
    engine: Handle,
    config: &Config,
    local: &str,
    others: &[engine::NodeInfo],
    image: String,
    progress: &dyn crate::progress::Progress,
    cancel: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<(Reach, Vec<String>)> {
    let setup = reach::Setup {
        stack: config.name.clone(),
        port: agent::PORT,
        token: agent::token().context("cannot make the agents' token (/dev/urandom)")?,
        wait: Duration::from_secs(60),
        auth: if config.with_registry_auth { deploy::login_for(&image).await? } else { None },
        image,
    };
    progress.begin("agent", &format!("starting the agent on {} other node(s)", others.len()), 0, "");
    let started = Reach::start(engine, local, others, &setup, cancel).await;
    progress.end("agent", "");
    let reach =
        started.with_context(|| format!("cannot deploy the run's agent ({})", agent::service_name(&config.name)))?;
    let notes = reach
        .missing()
        .iter()
        .map(|(node, why)| format!("no agent on node {node}: {why}; its replicas can be neither killed nor measured"))
        .collect();
    Ok((reach, notes))
}

/// What `test` and `validate` run, besides the stack.
struct Run<'a> {
    /// `baseline`, `stress`, `full` or `validate`: the results folder's prefix.
    kind: &'a str,
    /// `--out`.
    out: Option<PathBuf>,
    /// The phases, in order.
    names: &'a [PhaseKind],
    /// What the failover phase kills.
    failover: failover::Plan,
    /// How load phases reach the servers.
    via: phase::Via,
    /// Where progress goes.
    progress: crate::progress::Reporter,
}

async fn run(cli: &Cli, config: Config, run: Run<'_>) -> anyhow::Result<ExitCode> {
    let Run { kind, out, names, failover: plan, via, progress } = run;
    let started_ms = unix_now_ms();
    let out = out.unwrap_or_else(|| {
        PathBuf::from("test-results").join(format!("{kind}-{}", crate::units::utc_stamp(started_ms)))
    });
    for sub in ["", "logs", "metrics", "phases"] {
        std::fs::create_dir_all(out.join(sub)).with_context(|| format!("cannot create {}", out.join(sub).display()))?;
    }
    let engine: Handle = engine::handle().await?;
    swarm::require_manager(engine.as_ref()).await?;
    let server = config.service("server");
    let deployed = engine.service(&server).await.map(|s| s.replicas).map_err(|_| {
        anyhow::anyhow!("stack {} is not deployed (no service {server}): run `swarmctl up` first", config.name)
    })?;
    // Read before any phase changes the replicas: what the run was asked to run on.
    let context = crate::context::of_stack(engine.as_ref(), &config.name, &server).await;
    for name in names.iter().filter_map(|k| k.profile()) {
        if !config.test.profiles.contains_key(name) {
            bail!("the stack has no test.profiles.{name}");
        }
    }
    let mut notes = preflight(&config, names, via);
    for (name, p) in &config.test.profiles {
        if names.iter().any(|k| k.profile() == Some(name.as_str()))
            && phase::workers_for(p.sessions) as u64 > MAX_WORKERS
        {
            bail!(
                "profile {name}: {} sessions need {} client processes here, more than the {MAX_WORKERS} a single machine runs; lower test.profiles.{name}.sessions (or --sessions)",
                p.sessions,
                phase::workers_for(p.sessions)
            );
        }
    }
    let builtin =
        if config.server.image == "builtin" { Some(deploy::builtin_reference(&config.registry)?) } else { None };
    let (_, desired) = cli.source().prepare(builtin)?;
    let (local, others) = reach::other_nodes(engine.as_ref()).await?;
    // A direct load and the agents run in the builtin image (this binary), whatever the
    // servers run. A direct load cannot go without it; the agents can, and are then noted
    // missing on every other node.
    let image = match via {
        phase::Via::Direct | phase::Via::Swarm => {
            Some(deploy::builtin_image(engine.as_ref(), &config.registry, progress.as_ref()).await?)
        }
        phase::Via::Lb if others.is_empty() && !names.contains(&PhaseKind::Network) => None,
        phase::Via::Lb => match deploy::builtin_image(engine.as_ref(), &config.registry, progress.as_ref()).await {
            Ok(image) => Some(image),
            Err(e) if others.is_empty() => {
                notes.push(format!("no builtin image for the network phase's helper: {}", crate::error_text(&e)));
                None
            }
            Err(e) => {
                notes.push(format!(
                    "no agent on the {} other node(s): {}; their replicas can be neither killed nor measured",
                    others.len(),
                    crate::error_text(&e)
                ));
                None
            }
        },
    };
    let client_image = match via {
        phase::Via::Lb => None,
        phase::Via::Direct => {
            notes.push("baseline, stress and incremental loads go straight to the replicas (--via direct), from a load container on the stack's network; failover and scaling go through the load balancer".into());
            image.clone()
        }
        phase::Via::Swarm => {
            notes.push("baseline, stress and incremental loads go straight to the replicas (--via swarm), from the tasks of a load service spread over the nodes, one per worker of the profile; failover and scaling go through the load balancer".into());
            image.clone()
        }
    };
    let timeline = std::fs::File::create(out.join("timeline.jsonl")).context("cannot create timeline.jsonl")?;
    let cancel = crate::shutdown::on_signals();
    let reach = match image.clone().filter(|_| !others.is_empty()) {
        None => Reach::local(engine.clone(), local).with_image(image),
        Some(image) => {
            let (reach, missing) =
                start_agents(engine.clone(), &config, &local, &others, image, progress.as_ref(), &cancel).await?;
            notes.extend(missing);
            reach
        }
    };
    let mut ctx = Ctx {
        engine: engine.clone(),
        rec: Recorder::to_file(timeline, deployed),
        cancel,
        out: out.clone(),
        host: cli.public_host(),
        progress,
        config,
        desired,
        via,
        client_image,
        failover: plan,
        reach: Arc::new(reach),
        default_mix: None,
    };
    ctx.say(format!("results: {}", out.display()));
    for n in &notes {
        ctx.say(format!("pre-flight: {n}"));
    }
    let fitted = async {
        ctx.settle().await?;
        ctx.fit_mixes(names).await
    }
    .await;
    match fitted {
        Ok(fitted) => {
            for n in fitted {
                ctx.say(format!("pre-flight: {n}"));
                notes.push(n);
            }
        }
        Err(e) => {
            if let Some(problem) = ctx.reach.stop().await {
                ctx.say(&problem);
                notes.push(problem);
            }
            // Nothing ran, and the results folder says why (the command's error says it too).
            let result = TestRun {
                verdict: Verdict::Error,
                error: Some(crate::error_text(&e)),
                notes,
                ..begun(kind, &ctx.config, started_ms, &context)
            };
            if let Err(w) = write(&out, &result) {
                ctx.say(format!("warning: {}", crate::error_text(&w)));
            }
            return Err(e);
        }
    }
    let dropped_before = crate::kernel::Drops::read();
    let stop_sampler = tokio_util::sync::CancellationToken::new();
    let sampler = sampler::start(ctx.reach.clone(), server.clone(), Duration::from_secs(5), stop_sampler.clone()).await;

    let mut phases: Vec<Phase> = Vec::new();
    for &kind in names {
        if ctx.cancel.is_cancelled() {
            break;
        }
        if names.len() > 1 {
            if let Some(why) = kind.cannot_run(&ctx).await {
                ctx.say(format!("[{}] skipped: {why}", kind.as_str()));
                notes.push(format!("{}: skipped: {why}", kind.as_str()));
                continue;
            }
        }
        let p = phase::run(&ctx, kind, &mut notes).await;
        ctx.say(format!("[{}] {}: {}", p.name, p.verdict.upper(), p.reasons.join("; ")));
        phases.push(p);
    }
    stop_sampler.cancel();
    let sampled = sampler.await.unwrap_or_default();
    notes.extend(ctx.reach.stop().await);
    notes.extend(crate::kernel::notes(&dropped_before, &crate::kernel::Drops::read()));
    notes.extend(sampled.gap(&server));
    notes.extend(sampled.losses(&server, started_ms));
    let unmeasured = sampled.unread.into_values().collect();
    let resources = sampled.samples;

    // The stack as configured: a phase that failed half-way may have left it otherwise.
    let configured = ctx.config.server.replicas as u64;
    match engine.service(&server).await.map(|s| s.replicas) {
        Ok(n) if n != configured => notes
            .push(format!("{server} is left at {n} replicas, the stack says {configured}: `swarmctl up` restores it")),
        Ok(n) => notes.extend(short_of(engine.as_ref(), &server, n).await),
        Err(e) => notes.push(format!("cannot check {server} after the run: {e}")),
    }
    let replica_series = collect(&ctx, started_ms, &mut notes).await;

    let (timeline, events) = ctx.rec.take();
    let mut result = TestRun {
        verdict: if ctx.cancel.is_cancelled() { Verdict::Interrupted } else { Verdict::Pass },
        notes,
        phases,
        events,
        timeline,
        resources,
        unmeasured,
        replica_series,
        ..begun(kind, &ctx.config, started_ms, &context)
    };
    result.judge();
    write(&out, &result)?;
    print!("{}", report::summary(&result));
    println!("report: {}", out.join("report.html").display());
    Ok(result.exit_code().into())
}

/// What every results.json of a run says, however far the run got: what ran, on which stack,
/// when, and the SLO it is judged by.
fn begun(kind: &str, config: &Config, started_ms: u64, context: &report::RunContext) -> TestRun {
    let slo = &config.slo;
    TestRun {
        schema_version: report::SCHEMA_VERSION,
        kind: kind.into(),
        stack: config.name.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        context: Some(context.clone()),
        started_ms,
        finished_ms: unix_now_ms(),
        slo: report::Slo {
            success_ratio: slo.success_ratio,
            p99_ms: slo.p99.0.as_secs_f64() * 1000.0,
            failover_recovery_s: slo.failover_recovery.0.as_secs_f64(),
            failover_success_ratio: slo.failover_success_ratio,
        },
        ..Default::default()
    }
}

/// Service logs and Prometheus series of the run, into logs/ and metrics/, and each replica's
/// requests/s and sessions for the report (best effort: what cannot be had is noted, never
/// fatal).
async fn collect(ctx: &Ctx, started_ms: u64, notes: &mut Vec<String>) -> Vec<report::ReplicaPoint> {
    for svc in [ctx.server_service(), ctx.lb_service()] {
        match ctx.engine.service_logs(&svc, 5000, std::time::Duration::from_secs(30)).await {
            Ok((text, whole)) => {
                let _ = std::fs::write(ctx.out.join("logs").join(format!("{svc}.log")), text);
                if !whole {
                    notes.push(format!(
                        "logs of {svc} may be incomplete: the engine was still streaming them after 30 s"
                    ));
                }
            }
            Err(e) => notes.push(format!("no logs of {svc}: {e}")),
        }
    }
    let Some(p) = ctx.prometheus() else { return Vec::new() };
    let mut by_slot: BTreeMap<(i64, u64), report::ReplicaPoint> = BTreeMap::new();
    let end = unix_now_ms();
    // Traefik exports the Go runtime's process series. HAProxy exports its pools for memory
    // and no CPU counter: its threads' busy share (100 - idle %) counts the time they wait for
    // a core too (12 idle tasks on 2 cores read 1.9 "cores"; the same run later read 0.2 and
    // 18.6), so no CPU file is written for it; scripts/cpu-by-program measures it from /proc.
    let (lb_memory, lb_cpu) = match ctx.config.lb.kind {
        crate::config::LbKind::Traefik => (
            "sum(process_resident_memory_bytes{job=\"traefik\"})",
            Some("sum(rate(process_cpu_seconds_total{job=\"traefik\"}[30s]))"),
        ),
        crate::config::LbKind::Haproxy => ("sum(haproxy_process_pool_allocated_bytes{job=\"haproxy\"})", None),
    };
    let queries = [
        ("requests_per_second_by_slot", "sum by (slot) (rate(mcp_requests_total{job=\"mcp\"}[30s]))"),
        ("errors_per_second_by_slot", "sum by (slot) (rate(mcp_request_errors_total{job=\"mcp\"}[30s]))"),
        (
            "server_p99_seconds",
            "histogram_quantile(0.99, sum by (le) (rate(mcp_request_duration_seconds_bucket{job=\"mcp\"}[30s])))",
        ),
        ("sessions_by_slot", "sum by (slot) (mcp_sessions_active{job=\"mcp\"})"),
        ("connections_by_slot", "sum by (slot) (mcp_connections_active{job=\"mcp\"})"),
        ("memory_bytes_by_slot", "sum by (slot) (process_resident_memory_bytes{job=\"mcp\"})"),
        // The load balancer's cost: at 100,000 sessions Traefik holds more than the replicas.
        ("lb_memory_bytes", lb_memory),
        ("targets_up", "up"),
    ];
    for (file, expr) in queries.into_iter().chain(lb_cpu.map(|expr| ("lb_cpu_cores", expr))) {
        match p.range(expr, started_ms, end, 5).await {
            Ok(v) => {
                if matches!(file, "requests_per_second_by_slot" | "sessions_by_slot") {
                    for (slot, points) in phase::prom::Prometheus::matrix(&v, "slot") {
                        let Ok(slot) = slot.parse::<i64>() else { continue };
                        for (at_ms, value) in points {
                            let point = by_slot.entry((slot, at_ms)).or_insert(report::ReplicaPoint {
                                at_ms,
                                slot,
                                ..Default::default()
                            });
                            match file {
                                "sessions_by_slot" => point.sessions = value,
                                _ => point.requests_per_s = value,
                            }
                        }
                    }
                }
                let doc = serde_json::json!({ "query": expr, "start_ms": started_ms, "end_ms": end, "step_s": 5, "answer": v });
                let _ = std::fs::write(
                    ctx.out.join("metrics").join(format!("{file}.json")),
                    serde_json::to_string_pretty(&doc).unwrap_or_default(),
                );
            }
            Err(e) => {
                notes.push(format!("Prometheus query {file} failed: {}", crate::error_text(&e)));
                break;
            }
        }
    }
    by_slot.into_values().collect()
}

/// results.json, then everything rendered from it.
fn write(dir: &Path, r: &TestRun) -> anyhow::Result<()> {
    let put = |name: &str, body: String| {
        std::fs::write(dir.join(name), body).with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    put("results.json", serde_json::to_string_pretty(r)?)?;
    put("SUMMARY.txt", report::summary(r))?;
    put("FINAL_REPORT.md", report::markdown(r))?;
    put("report.html", report::html(r))?;
    let stats = serde_json::to_string_pretty(&r.resources)?;
    put("metrics/docker-stats.json", stats)?;
    Ok(())
}

/// A results folder (or its results.json): a test's, a validation's or a bare load's.
fn read(path: &Path) -> anyhow::Result<(report::Results, Vec<report::Point>)> {
    let file = if path.is_dir() { path.join("results.json") } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {} (a results folder holds results.json)", file.display()))?;
    let results = report::Results::parse(&text).map_err(|why| {
        anyhow::anyhow!(
            "{} is not the results of `swarmctl test`, `validate` or `load` (schema {}): {why}",
            file.display(),
            report::SCHEMA_VERSION
        )
    })?;
    let timeline = file.parent().map(|d| d.join("timeline.jsonl")).and_then(|t| std::fs::read_to_string(t).ok());
    let timeline = match (&results, timeline) {
        (report::Results::Load(_), Some(t)) => report::load_timeline(&t),
        _ => Vec::new(),
    };
    Ok((results, timeline))
}

/// Any results as a test run, which every report is drawn from.
fn read_run(path: &Path) -> anyhow::Result<TestRun> {
    let (results, timeline) = read(path)?;
    Ok(results.into_test_run(&timeline))
}

/// `swarmctl report …`.
pub fn report(cmd: &ReportCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCommand::Show { dir } => {
            match read(dir)?.0 {
                report::Results::Test(r) => print!("{}", report::summary(&r)),
                report::Results::Load(r) => print!("{}", crate::load::summary_text(&r)),
            }
            Ok(ExitCode::SUCCESS)
        }
        ReportCommand::Render { dir } => match read(dir)?.0 {
            report::Results::Test(r) => {
                std::fs::create_dir_all(dir.join("metrics"))?;
                write(dir, &r)?;
                println!("rendered {}/{{SUMMARY.txt,FINAL_REPORT.md,report.html}} from results.json", dir.display());
                Ok(ExitCode::SUCCESS)
            }
            report::Results::Load(r) => {
                crate::load::write_folder(dir, &r)?;
                println!("rendered {}/{{SUMMARY.txt,report.html}} from results.json and timeline.jsonl", dir.display());
                Ok(ExitCode::SUCCESS)
            }
        },
        ReportCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&report::json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        ReportCommand::Compare { a, b, tolerance, json } => {
            if !(tolerance.is_finite() && *tolerance >= 0.0) {
                return Err(UsageError::flag(
                    "--tolerance",
                    format!("must be a percentage of at least 0 (got {tolerance})"),
                )
                .into());
            }
            let c = report::compare(&read_run(a)?, &read_run(b)?, tolerance / 100.0);
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", c.render());
            }
            Ok(if c.regressed() { Code::Failed } else { Code::Ok }.into())
        }
    }
}
