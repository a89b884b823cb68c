//! Test phases: the load engine and swarm actions (kill, scale) coordinated on one timeline,
//! every verdict derived from what was measured. The load engine never sees the Docker
//! Engine; this module is where the two meet.
//!
//! - `PhaseKind` and `run`: every phase goes through one runner that records its start,
//!   measures, and keeps what it measured with its verdict (an error is the phase's verdict,
//!   never the end of the run).
//! - `load_phase`: a profile's load (baseline, stress).
//! - `failover`, `scaling`, `incremental`, `hang`, `update` (and rollback): the `validate`
//!   phases.
//! - `Recorder`: the run's timeline and events, appended to timeline.jsonl as they happen.
//! - `sampler`: CPU and memory of every replica through the Engine API.
//! - `prom`: the stack's Prometheus API.
//! - `direct`: load straight to the replicas, from a container on the stack's network.

mod direct;
pub mod failover;
pub mod hang;
pub mod incremental;
pub mod network;
pub mod prom;
pub mod ready;
pub mod sampler;
pub mod scaling;
pub mod swarm;
pub mod update;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{ClientTransport, Config, Profile};
use crate::engine::{fleet, Handle};
use crate::exit::Verdict;
use crate::load::{self, engine::Live, workload::Model, LoadPlan, RunResult, Target};
use crate::report::{Event, Phase, Point};
use crate::units::unix_now_ms;

/// Client processes a single-machine run may start (each holds ~19K sessions here).
pub const MAX_WORKERS: u64 = 8;

/// The phases `test` and `validate` run, in results.json by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// The `baseline` profile's load.
    Baseline,
    /// The `stress` profile's load.
    Stress,
    /// Session counts held one after another.
    Incremental,
    /// Tasks killed under load.
    Failover,
    /// Replicas scaled under load.
    Scaling,
    /// A replica stopped and resumed under load.
    Hang,
    /// A release rolled out under load.
    Update,
    /// A release that cannot start, rolled back by swarm under load.
    Rollback,
    /// A worker node drained under load.
    Drain,
    /// One replica's network impaired under load.
    Network,
}

impl PhaseKind {
    /// What `validate --phase all` runs, and `test full` after the two loads.
    pub const VALIDATE_ALL: [PhaseKind; 8] = [
        PhaseKind::Incremental,
        PhaseKind::Failover,
        PhaseKind::Scaling,
        PhaseKind::Hang,
        PhaseKind::Update,
        PhaseKind::Rollback,
        PhaseKind::Network,
        PhaseKind::Drain,
    ];

    /// Why this swarm cannot run the phase, when it cannot (`--phase all` and `test full` then
    /// skip it and say why; asked for alone, it is an error with the same reason).
    pub async fn cannot_run(self, ctx: &Ctx) -> Option<String> {
        match self {
            PhaseKind::Drain => update::cannot_drain(ctx).await,
            PhaseKind::Network => network::cannot_run(ctx).await,
            _ => None,
        }
    }

    /// Its name in results.json and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Baseline => "baseline",
            PhaseKind::Stress => "stress",
            PhaseKind::Incremental => "incremental",
            PhaseKind::Failover => "failover",
            PhaseKind::Scaling => "scaling",
            PhaseKind::Hang => "hang",
            PhaseKind::Update => "update",
            PhaseKind::Rollback => "rollback",
            PhaseKind::Drain => "drain",
            PhaseKind::Network => "network",
        }
    }

    /// The test profile it runs, for the load phases.
    pub fn profile(self) -> Option<&'static str> {
        matches!(self, PhaseKind::Baseline | PhaseKind::Stress).then(|| self.as_str())
    }
}

/// Runs one phase: records its start, measures, and keeps the outcome. A phase that could not
/// go on is reported with verdict `error` (`interrupted` after Ctrl-C) and the reason.
pub async fn run(ctx: &Ctx, kind: PhaseKind, notes: &mut Vec<String>) -> Phase {
    let name = kind.as_str();
    let started_ms = ctx.rec.event("phase", name);
    let measured = match kind {
        PhaseKind::Baseline | PhaseKind::Stress => load_phase(ctx, kind).await,
        PhaseKind::Incremental => incremental::measure(ctx, notes).await,
        PhaseKind::Failover => failover::measure(ctx).await,
        PhaseKind::Scaling => scaling::measure(ctx).await,
        PhaseKind::Hang => hang::measure(ctx).await,
        PhaseKind::Update => update::measure(ctx, update::Release::Restart).await,
        PhaseKind::Rollback => update::measure(ctx, update::Release::Broken).await,
        PhaseKind::Drain => update::measure(ctx, update::Release::Drain).await,
        PhaseKind::Network => network::measure(ctx).await,
    };
    let mut phase = measured.unwrap_or_else(|e| Phase {
        verdict: if ctx.cancel.is_cancelled() { Verdict::Interrupted } else { Verdict::Error },
        reasons: vec![crate::error_text(&e)],
        ..Default::default()
    });
    phase.name = name.into();
    phase.started_ms = started_ms;
    phase.finished_ms = unix_now_ms();
    phase
}

/// What every phase needs.
pub struct Ctx {
    /// The engine.
    pub engine: Handle,
    /// The stack.
    pub config: Config,
    /// Its specs, as `up` deploys them (scaling writes these, with another count).
    pub desired: crate::convert::DesiredStack,
    /// Cancelled by the first Ctrl-C: phases stop, restore what they changed, and report.
    pub cancel: CancellationToken,
    /// Timeline and events.
    pub rec: Recorder,
    /// The results folder.
    pub out: PathBuf,
    /// Where the stack's host-mode ports answer.
    pub host: String,
    /// Where progress goes (bars, lines or nothing).
    pub progress: crate::progress::Reporter,
    /// How load phases reach the replicas.
    pub via: Via,
    /// The image a direct load runs in (the builtin image: the swarmctl binary).
    pub client_image: Option<String>,
    /// What the failover phase kills.
    pub failover: failover::Plan,
    /// Hands on every node's containers (this engine's directly, the others' through agents).
    pub reach: std::sync::Arc<crate::agent::Reach>,
    /// The mix of profiles without one, once [`Ctx::fit_mixes`] asked the server (`None`:
    /// the load engine's default, `tools/call:echo`).
    pub default_mix: Option<load::workload::Mix>,
}

/// How the baseline, stress and incremental loads reach the servers. Failover and scaling
/// always go through the load balancer: their subject is what clients of the stack see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Through Traefik, as clients would.
    #[default]
    Lb,
    /// Straight to every replica's address on the stack's network, bypassing Traefik.
    Direct,
    /// As direct, from the tasks of a load service that swarm spreads over its nodes (as many
    /// as the profile has `workers`), each with its share: load from more than one machine.
    Swarm,
}

impl Ctx {
    /// Where a phase's load writes its plan and results.
    pub fn phase_dir(&self, phase: &str) -> PathBuf {
        self.out.join("phases").join(phase)
    }

    /// The server service's swarm name.
    pub fn server_service(&self) -> String {
        self.config.service("server")
    }

    /// The load balancer's swarm name.
    pub fn lb_service(&self) -> String {
        self.config.service("lb")
    }

    /// A progress line.
    pub fn say(&self, line: impl AsRef<str>) {
        self.progress.say(line.as_ref());
    }

    /// The stack's Prometheus, when it has one.
    pub fn prometheus(&self) -> Option<prom::Prometheus> {
        self.config.prometheus.enabled.then(|| prom::Prometheus::new(&self.host, self.config.prometheus.port))
    }

    /// The load balancer's URLs for a transport, one per entry.
    pub async fn lb_urls(&self, transport: ClientTransport) -> anyhow::Result<Vec<String>> {
        let entries = fleet::lb_entries(self.engine.as_ref(), &self.config).await?;
        entries
            .into_iter()
            .map(|e| {
                self.config
                    .client_url(transport, &self.host, e)
                    .map_err(|e| anyhow::anyhow!("the profile's transport: {e}"))
            })
            .collect()
    }

    /// Waits (at most 30 s) until the load balancer answers the readiness check 10 times in
    /// a row: right after a deploy, Traefik may still route to tasks that are gone for up to
    /// its refresh interval, and a phase started then would measure the deploy, not the stack.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let Some(check) = ready::Check::of(&self.config) else { return Ok(()) };
        let entries = fleet::lb_entries(self.engine.as_ref(), &self.config).await?;
        if let Err(url) =
            ready::lb_answers(&self.config, &self.host, &entries, &check, 10, std::time::Duration::from_secs(30)).await
        {
            anyhow::bail!(
                "the load balancer at {url} does not answer steadily (30 s): is the stack up and healthy (`swarmctl status`)?"
            );
        }
        Ok(())
    }

    /// The load plan of `profile` through the load balancer, with the process count its
    /// sessions need here.
    pub async fn load_plan(&self, profile: &Profile) -> anyhow::Result<LoadPlan> {
        let mut plan = LoadPlan::toward(self.targets(&self.lb_urls(profile.transport).await?)?);
        plan.sessions = profile.sessions as usize;
        plan.ramp = profile.ramp as f64;
        plan.hold = profile.hold.0;
        plan.model = match profile.period {
            Some(p) => Model::Open { rate: profile.sessions as f64 / p.0.as_secs_f64() },
            None => Model::Closed { think: profile.think.0 },
        };
        plan.workers = if profile.workers > 0 { profile.workers as usize } else { workers_for(profile.sessions) };
        if !profile.mix.is_empty() {
            // Checked with the stack file (test.profiles.*.mix).
            plan.mix = profile.mix.parse().map_err(|e| anyhow::anyhow!("the profile's mix: {e}"))?;
        } else if let Some(mix) = &self.default_mix {
            plan.mix = mix.clone();
        }
        plan.headers = profile.header_list();
        Ok(plan)
    }

    /// Load targets for URLs of this stack (its WebSocket framing included).
    pub fn targets(&self, urls: &[String]) -> anyhow::Result<Vec<Target>> {
        urls.iter().map(|u| target(&self.config, u).map_err(anyhow::Error::msg)).collect()
    }

    /// Asks the server, through the load balancer, which tools it has, before any phase (and
    /// so before any counter is read): a profile's mix calling a tool it lacks is refused (a
    /// usage error), and profiles without a mix call `echo` only where the server has it.
    /// Returns what it decided, for the notes.
    pub async fn fit_mixes(&mut self, kinds: &[PhaseKind]) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for kind in kinds {
            let name = kind.profile().unwrap_or(&self.config.test.phase_profile).to_string();
            if !seen.insert(name.clone()) {
                continue;
            }
            let profile = self.config.test.profiles.get(&name).cloned().unwrap_or_default();
            let mut plan = self.load_plan(&profile).await?;
            let chosen = !profile.mix.is_empty();
            if let Some(note) =
                load::probe::fit_mix(&mut plan, chosen).await.with_context(|| format!("test.profiles.{name}.mix"))?
            {
                self.default_mix = Some(plan.mix.clone());
                notes.push(note);
            }
        }
        Ok(notes)
    }

    /// The phase profile (`test.phase_profile`), which failover, scaling and incremental load
    /// with.
    pub fn phase_profile(&self) -> Profile {
        self.config.test.profiles.get(&self.config.test.phase_profile).cloned().unwrap_or_default()
    }
}

/// A load target for a URL of stack `c`, with the stack's WebSocket framing.
pub fn target(c: &Config, url: &str) -> Result<Target, String> {
    let newline = c.server.transports.ws.as_ref().is_some_and(|w| w.newline);
    Target::parse(url, false, newline)
}

/// Processes needed for `sessions` under this machine's open-file limit (with 5 % spare).
pub fn workers_for(sessions: u64) -> usize {
    let per = (load::sessions_per_process() as f64 * 0.95) as u64;
    sessions.div_ceil(per.max(1)).max(1) as usize
}

#[derive(Default)]
struct RecState {
    timeline: Vec<Point>,
    events: Vec<Event>,
    file: Option<std::fs::File>,
}

/// The run's timeline and events, shared by the phases, the load hooks and the sampler.
/// Every second is also appended to `timeline.jsonl` at once, so a hard kill leaves data.
#[derive(Clone, Default)]
pub struct Recorder {
    state: Arc<Mutex<RecState>>,
    replicas: Arc<AtomicU64>,
}

impl Recorder {
    /// Appends to `file` as well.
    pub fn to_file(file: std::fs::File, replicas: u64) -> Self {
        let r = Recorder::default();
        r.lock().file = Some(file);
        r.replicas.store(replicas, Relaxed);
        r
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an event now.
    pub fn event(&self, kind: &str, detail: impl Into<String>) -> u64 {
        self.event_at(unix_now_ms(), kind, detail)
    }

    /// Records an event at a time the engine reported.
    pub fn event_at(&self, at_ms: u64, kind: &str, detail: impl Into<String>) -> u64 {
        let e = Event { at_ms, kind: kind.into(), detail: detail.into() };
        let mut s = self.lock();
        if let Some(f) = s.file.as_mut() {
            let _ = writeln!(f, "{}", serde_json::json!({ "event": &e }));
        }
        s.events.push(e);
        at_ms
    }

    /// The replica count the server is set to, for the timeline.
    pub fn set_replicas(&self, n: u64) {
        self.replicas.store(n, Relaxed);
    }

    /// Records a second of load.
    pub fn second(&self, phase: &str, s: &load::engine::Second) -> Point {
        let p = Point {
            at_ms: unix_now_ms(),
            phase: phase.into(),
            sessions: s.sessions,
            requests: s.requests,
            ok: s.ok,
            errors: s.errors.clone(),
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
            replicas: self.replicas.load(Relaxed),
        };
        let mut st = self.lock();
        if let Some(f) = st.file.as_mut() {
            let _ = writeln!(f, "{}", serde_json::to_string(&p).unwrap_or_default());
            let _ = f.flush();
        }
        st.timeline.push(p.clone());
        p
    }

    /// The points recorded so far, from `from_ms` on.
    pub fn points_since(&self, from_ms: u64) -> Vec<Point> {
        self.lock().timeline.iter().filter(|p| p.at_ms >= from_ms).cloned().collect()
    }

    /// Everything recorded.
    pub fn take(&self) -> (Vec<Point>, Vec<Event>) {
        let s = self.lock();
        let mut events = s.events.clone();
        events.sort_by_key(|e| e.at_ms);
        (s.timeline.clone(), events)
    }
}

/// A phase's load begins: a bar over its scheduled seconds.
pub(crate) fn begin_load(progress: &dyn crate::progress::Progress, phase: &str, plan: &LoadPlan) {
    let label = format!("[{phase}] {} sessions", plan.sessions);
    progress.begin(phase, &label, plan.run_time().as_secs().max(1), "s");
}

/// A second of a phase's load on its bar; as a line every 5 s, and every second with errors:
/// enough to follow, not a flood.
pub(crate) fn show_point(progress: &dyn crate::progress::Progress, phase: &str, t: u64, p: &Point) {
    let errors: u64 = p.errors.values().sum();
    progress.set(
        phase,
        t,
        &format!("sessions {}  req/s {}  p99 {:.1} ms  errors {errors}", p.sessions, p.requests, p.p99_ms),
    );
    if t % 5 == 0 || p.requests != p.ok {
        progress.tick(&progress_line(phase, p));
    }
}

/// The per-second progress line of a phase.
pub(crate) fn progress_line(phase: &str, p: &Point) -> String {
    let errors: u64 = p.errors.values().sum();
    format!(
        "[{phase}] sessions {:>6}  req/s {:>7}  p50 {:>7.2} ms  p99 {:>8.2} ms  errors {errors}  replicas {}",
        p.sessions, p.requests, p.p50_ms, p.p99_ms, p.replicas
    )
}

/// Runs load for a phase, recording each second, results into `phases/<phase>/`; `stop` ends
/// it early without it counting as an interruption (the user's Ctrl-C is `ctx.cancel`, which
/// stops it too).
pub async fn run_load(
    ctx: &Ctx,
    phase: &str,
    plan: &LoadPlan,
    live: Arc<Live>,
    stop: CancellationToken,
) -> anyhow::Result<RunResult> {
    let rec = ctx.rec.clone();
    let token = stop.clone();
    let user = ctx.cancel.clone();
    let link = tokio::spawn(async move {
        user.cancelled().await;
        token.cancel();
    });
    let plan = plan.clone().with_default_sources();
    let out = ctx.phase_dir(phase);
    let progress = ctx.progress.clone();
    begin_load(progress.as_ref(), phase, &plan);
    let outcome = load::run_observed(&plan, Some(&out), stop, live, |s, _| {
        let p = rec.second(phase, s);
        show_point(progress.as_ref(), phase, s.t, &p);
    })
    .await;
    progress.end(phase, "");
    link.abort();
    let mut result = outcome?.result;
    // A deliberate stop is the end of the phase, not an interruption.
    if result.verdict == Verdict::Interrupted && !ctx.cancel.is_cancelled() {
        result.verdict = Verdict::judged(false, result.thresholds.iter().all(|t| t.pass));
    }
    Ok(result)
}

/// Lets the load ramp up and warm for `ramp_and_warmup`; an error when it ended before, `what`
/// (the fault) still to come.
pub(crate) async fn warm_up(
    mut load: std::pin::Pin<&mut impl std::future::Future<Output = anyhow::Result<RunResult>>>,
    ramp_and_warmup: std::time::Duration,
    what: &str,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(ramp_and_warmup + std::time::Duration::from_millis(50)) => Ok(()),
        r = &mut load => {
            let r = r?;
            anyhow::bail!("the load ended before {what}: {}", ended_early(&r));
        }
    }
}

/// The failures the load engine saw from `since_ms` on: their times, and their count by class.
pub(crate) fn failures_since(live: &Live, since_ms: u64) -> (Vec<u64>, std::collections::BTreeMap<String, u64>) {
    let failures: Vec<(u64, load::stats::ErrorClass)> =
        live.failures.lock().map(|f| f.iter().filter(|(at, _)| *at >= since_ms).copied().collect()).unwrap_or_default();
    let mut by_class = std::collections::BTreeMap::new();
    for (_, class) in &failures {
        *by_class.entry(class.name().to_string()).or_default() += 1;
    }
    (failures.into_iter().map(|(at, _)| at).collect(), by_class)
}

/// The worst per-second corrected p99 of `phase` from `from_ms` to `until_ms` (a second is
/// recorded at its end, so up to a second later).
pub(crate) fn worst_p99(ctx: &Ctx, phase: &str, from_ms: u64, until_ms: u64) -> f64 {
    ctx.rec
        .points_since(from_ms)
        .iter()
        .filter(|p| p.phase == phase && p.at_ms <= until_ms.saturating_add(1000))
        .map(|p| p.p99_ms)
        .fold(0.0, f64::max)
}

/// Why a load run ended before its phase wanted it to, from its results.
pub fn ended_early(r: &RunResult) -> String {
    let init = r.by_method.get("initialize");
    let errors: Vec<String> = init
        .map(|m| m.count - m.ok)
        .filter(|n| *n > 0)
        .map(|n| format!("{n} initialize attempts failed"))
        .into_iter()
        .chain(r.summary.errors.iter().map(|(k, v)| format!("{k} {v}")))
        .collect();
    format!(
        "{} sessions opened, {} requests sent{}",
        r.summary.sessions_peak,
        r.summary.requests_total,
        if errors.is_empty() { String::new() } else { format!(" ({})", errors.join(", ")) }
    )
}

/// A profile's load the way `ctx.via` says: through the load balancer in this process, or
/// direct from a load container.
pub async fn run_via(ctx: &Ctx, phase: &str, plan: &LoadPlan, transport: ClientTransport) -> anyhow::Result<RunResult> {
    match ctx.via {
        Via::Lb => run_load(ctx, phase, plan, Arc::new(Live::default()), CancellationToken::new()).await,
        Via::Direct => direct::run(ctx, phase, plan, transport).await,
        Via::Swarm => swarm::run(ctx, phase, plan, transport).await,
    }
}

/// Judges a load result against the SLO: success ratio, p99, and whether the generator kept
/// its schedule (otherwise the figures describe the generator, and the phase cannot pass).
pub fn judge_load(slo: &crate::config::Slo, r: &RunResult) -> (Verdict, Vec<String>) {
    // A load that could not get a single session in measured nothing to judge: its cause is
    // the finding.
    if let Some(e) = &r.error {
        return (Verdict::Error, vec![e.clone()]);
    }
    let s = &r.summary;
    let mut reasons = Vec::new();
    let mut pass = true;
    let ok = s.success_ratio >= slo.success_ratio;
    pass &= ok;
    reasons.push(format!(
        "success {:.3} % ({} of {}) {} the SLO of {:.2} %",
        s.success_ratio * 100.0,
        s.requests_ok,
        s.requests_total,
        if ok { "meets" } else { "misses" },
        slo.success_ratio * 100.0
    ));
    // Latency is judged once the sessions are open: the ramp is a burst of handshakes by
    // design, and its own figures stay in the report (the whole run's p99 beside it).
    let p99_limit = slo.p99.0.as_secs_f64() * 1000.0;
    let (p99, over) = match &r.hold {
        Some(h) => {
            (h.latency_ms.p99, format!(" over the hold (the whole run, ramp included: {:.2} ms)", s.latency_ms.p99))
        }
        None => (s.latency_ms.p99, String::new()),
    };
    let ok = s.requests_total > 0 && p99 <= p99_limit;
    pass &= ok;
    reasons.push(format!("p99 {p99:.2} ms{over} {} the SLO of {p99_limit} ms", if ok { "meets" } else { "misses" }));
    // Every session the profile asked for must have opened: the requests of the others are
    // not in the ratio above (their handshakes are counted under `initialize`).
    let g = &r.generator;
    if g.sessions_opened < r.config.sessions as u64 && r.verdict != Verdict::Interrupted {
        pass = false;
        reasons.push(format!(
            "{} of {} sessions opened: {} never did (initialize failed three times; see by_method.initialize)",
            g.sessions_opened,
            r.config.sessions,
            r.config.sessions as u64 - g.sessions_opened
        ));
    }
    // A worker lost part-way sent only part of its share: the stack was not given the load.
    for lost in &r.workers_lost {
        pass = false;
        reasons.push(lost.clone());
    }
    // Said, not failed: the tasks there kept one schedule on their node's clock.
    for c in r.clocks.iter().filter(|c| c.measured.is_none()) {
        reasons.push(format!("the clock of node {c}: its load tasks started by it, uncorrected"));
    }
    // The generator must have kept its schedule where latency is judged: over the hold when
    // there is one (a ramp that saturates the machine is reported, by its real rate).
    let whole = format!("send lag p99 {:.1} ms, start lag p99 {:.1} ms", g.send_lag_p99_ms, g.start_lag_p99_ms);
    match r.hold.as_ref().and_then(|h| h.send_lag_p99_ms) {
        Some(lag) if lag > 100.0 => {
            pass = false;
            reasons.push(format!(
                "the generator fell behind its schedule over the hold (send lag p99 {lag:.1} ms): the figures describe the generator, not the stack"
            ));
        }
        Some(lag) if !g.kept_schedule => reasons.push(format!(
            "the generator fell behind its schedule during the ramp ({whole} over the whole run) and kept it over the hold (send lag p99 {lag:.1} ms)"
        )),
        Some(_) => {}
        None if !g.kept_schedule => {
            pass = false;
            reasons.push(format!(
                "the generator fell behind its schedule ({whole}): the figures describe the generator, not the stack"
            ));
        }
        None => {}
    }
    (Verdict::judged(r.verdict == Verdict::Interrupted, pass), reasons)
}

/// What Prometheus says the replicas received (every method but the handshake's), with the
/// replicas counted, once the latest requests have surely been scraped; `None` when they
/// export no such counter (yet: the reference server's appear with their first request; a
/// server nobody here wrote may have none at all); `Err` says why not.
pub async fn server_count(ctx: &Ctx) -> Result<(Option<f64>, std::collections::BTreeSet<String>), String> {
    if ctx.config.server.metrics_port.is_none() {
        // Nothing to wait for: the stack says the server exports no metrics at all.
        return Ok((None, Default::default()));
    }
    let Some(p) = ctx.prometheus() else {
        return Err("the stack has no Prometheus (prometheus.enabled)".into());
    };
    let scrape = ctx.config.prometheus.scrape_interval.0;
    // Two scrapes: the last requests of what ran before are in the counters Prometheus holds.
    tokio::time::sleep(scrape * 2 + std::time::Duration::from_millis(500)).await;
    // Right after a deploy, Prometheus may not have found or scraped every replica yet (its
    // discovery polls the swarm): a count without them would not match the one after the
    // phase. (A server without metrics costs this wait, then is reported not reconciled.)
    let settled_by = tokio::time::Instant::now() + ctx.config.prometheus.discovery_refresh.0 + scrape * 2;
    let want = ctx.config.server.replicas as usize;
    loop {
        // Only targets scraped just now: a Prometheus restarted on its volume (`down` then `up`
        // within minutes) still answers with the last samples of the replicas before it.
        // (`timestamp` of a selector: of an expression it is the evaluation time.)
        let fresh = format!(
            r#"(time() - timestamp(up{{job="mcp"}})) < {} and on(instance) (up{{job="mcp"}} == 1)"#,
            (scrape * 3).as_secs_f64()
        );
        let up = p.query(&fresh).await.map_err(|e| format!("Prometheus: {}", crate::error_text(&e)))?;
        if up.len() < want && tokio::time::Instant::now() < settled_by {
            tokio::time::sleep(scrape).await;
            continue;
        }
        let total = p
            .query(&format!(
                r#"sum(mcp_requests_total{{job="mcp",method!~"initialize|notifications/initialized"}} and on(instance) ({fresh}))"#
            ))
            .await
            .map_err(|e| format!("Prometheus: {}", crate::error_text(&e)))?;
        let instances = up.into_iter().filter_map(|(l, _)| l.get("instance").cloned()).collect();
        return Ok((total.first().map(|(_, v)| *v), instances));
    }
}

/// The load engine's count against the servers'. Holds when the servers counted at least
/// every request that was answered and at most every request that was sent; exact when
/// nothing failed.
pub fn reconcile(
    r: &RunResult,
    before: Result<(Option<f64>, std::collections::BTreeSet<String>), String>,
    after: Result<(Option<f64>, std::collections::BTreeSet<String>), String>,
) -> crate::report::Reconciliation {
    let s = &r.summary;
    let answered =
        s.requests_ok + ["jsonrpc", "tool_error"].iter().map(|c| s.errors.get(*c).copied().unwrap_or(0)).sum::<u64>();
    let mut rec = crate::report::Reconciliation {
        client_sent: s.requests_total,
        client_answered: answered,
        ..Default::default()
    };
    rec.server_before = before.as_ref().ok().and_then(|(c0, _)| *c0);
    match (before, after) {
        (Ok((_, i0)), Ok((_, i1))) if i0 != i1 => {
            rec.note = "not reconciled: the set of replicas changed during the phase (their counters with it)".into()
        }
        // None before nor after the load: the servers count nothing that could be checked.
        // Not a count of 0, which would read as every request lost.
        (Ok((None, _)), Ok((None, _))) => {
            rec.note = "not measured (the servers export no request counter, mcp_requests_total)".into()
        }
        (Ok(_), Ok((None, _))) => {
            rec.note = "not reconciled: the servers' request counter was gone after the phase".into()
        }
        (Ok((c0, _)), Ok((Some(c1), i1))) => {
            let c0 = c0.unwrap_or(0.0);
            let got = c1 - c0;
            rec.server_received = Some(got);
            rec.holds = answered as f64 <= got && got <= s.requests_total as f64;
            rec.note = format!(
                "the {} replicas counted {got:.0} requests; clients sent {} of which {answered} were answered: {}",
                i1.len(),
                s.requests_total,
                if rec.holds { "consistent" } else { "INCONSISTENT" }
            );
        }
        (Err(e), _) | (_, Err(e)) => rec.note = format!("not reconciled: {e}"),
    }
    rec
}

/// `baseline` or `stress`: a profile's load (through the load balancer, or direct), judged
/// against the SLO and reconciled with the servers' own count.
async fn load_phase(ctx: &Ctx, kind: PhaseKind) -> anyhow::Result<Phase> {
    let name = kind.as_str();
    let Some(profile) = kind.profile().and_then(|p| ctx.config.test.profiles.get(p)) else {
        anyhow::bail!("the stack has no test.profiles.{name}");
    };
    let pace = match profile.period {
        Some(p) => format!("a request every {p} each"),
        None => format!("think {}", profile.think),
    };
    ctx.say(format!(
        "[{name}] {} sessions over {} at {}/s, held {}, {pace}",
        profile.sessions,
        serde_yaml::to_string(&profile.transport).unwrap_or_default().trim(),
        profile.ramp,
        profile.hold,
    ));
    let before = server_count(ctx).await;
    let plan = ctx.load_plan(profile).await?;
    let r = run_via(ctx, name, &plan, profile.transport).await?;
    let (verdict, mut reasons) = judge_load(&ctx.config.slo, &r);
    reasons.extend(load::detail_lines(&r));
    let rec = reconcile(&r, before, server_count(ctx).await);
    reasons.push(format!("reconciliation: {}", rec.note));
    Ok(Phase { verdict, reasons, load: Some(r), reconciliation: Some(rec), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::reconcile;
    use crate::exit::Verdict;
    use crate::load::{RunResult, Summary};

    fn run(sent: u64, ok: u64, errors: &[(&str, u64)]) -> RunResult {
        RunResult {
            summary: Summary {
                requests_total: sent,
                requests_ok: ok,
                errors: errors.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn seen(count: f64, replicas: &[&str]) -> Result<(Option<f64>, BTreeSet<String>), String> {
        Ok((Some(count), replicas.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn latency_is_judged_over_the_hold_and_every_session_must_open() {
        let slo = crate::config::Slo {
            success_ratio: 0.999,
            p99: crate::units::Duration::from_millis(100),
            ..Default::default()
        };
        let mut r = run(1000, 1000, &[]);
        r.summary.success_ratio = 1.0;
        r.verdict = Verdict::Pass;
        r.config.sessions = 100;
        r.generator.kept_schedule = true;
        r.generator.sessions_opened = 100;
        r.summary.latency_ms.p99 = 900.0; // the ramp's
        let mut hold = crate::load::tally::Hold::default();
        hold.latency_ms.p99 = 40.0;
        r.hold = Some(hold);
        let (verdict, reasons) = super::judge_load(&slo, &r);
        assert_eq!(verdict, Verdict::Pass, "{reasons:?}");
        assert!(
            reasons[1].starts_with("p99 40.00 ms over the hold (the whole run, ramp included: 900.00 ms)"),
            "{reasons:?}"
        );
        // A generator late in the ramp but on time in the hold: said, and no failure.
        r.generator.kept_schedule = false;
        r.hold.as_mut().unwrap().send_lag_p99_ms = Some(3.0);
        let (verdict, reasons) = super::judge_load(&slo, &r);
        assert_eq!(verdict, Verdict::Pass, "{reasons:?}");
        assert!(
            reasons.iter().any(|l| l.contains("during the ramp") && l.contains("kept it over the hold")),
            "{reasons:?}"
        );
        r.hold.as_mut().unwrap().send_lag_p99_ms = Some(300.0);
        assert_eq!(super::judge_load(&slo, &r).0, Verdict::Fail, "late in the hold");
        r.generator.kept_schedule = true;
        // No whole second of hold: the whole run is judged.
        r.hold = None;
        assert_eq!(super::judge_load(&slo, &r).0, Verdict::Fail);
        // Sessions that never opened fail the phase, whatever the requests did.
        r.summary.latency_ms.p99 = 40.0;
        r.generator.sessions_opened = 99;
        let (verdict, reasons) = super::judge_load(&slo, &r);
        assert_eq!(verdict, Verdict::Fail);
        assert!(reasons.iter().any(|l| l.starts_with("99 of 100 sessions opened: 1 never did")), "{reasons:?}");
    }

    #[test]
    fn servers_must_count_what_was_answered_and_no_more_than_was_sent() {
        let r = run(1000, 990, &[("tool_error", 5), ("connect", 5)]);
        let ok = reconcile(&r, seen(100.0, &["a", "b"]), seen(1097.0, &["a", "b"]));
        assert!(ok.holds && ok.server_received == Some(997.0), "{ok:?}");
        assert_eq!(ok.server_before, Some(100.0), "served before the phase: the report's memory caveat");
        assert_eq!(ok.client_answered, 995);
        // Fewer than were answered: the servers lost count (or Prometheus missed a scrape).
        assert!(!reconcile(&r, seen(100.0, &["a", "b"]), seen(1090.0, &["a", "b"])).holds);
        // More than were sent: someone else sent load, or the client lost count.
        assert!(!reconcile(&r, seen(100.0, &["a", "b"]), seen(1101.0, &["a", "b"])).holds);
        // A replica gone (its counter with it): no claim either way.
        let changed = reconcile(&r, seen(100.0, &["a", "b"]), seen(1097.0, &["a", "c"]));
        assert!(!changed.holds && changed.server_received.is_none() && changed.note.contains("changed"));
        assert_eq!(changed.server_before, Some(100.0), "still known");
        let none = reconcile(&r, Err("no Prometheus".into()), seen(1.0, &[]));
        assert!(!none.holds && none.note.contains("no Prometheus"));
        // Fresh replicas have no counter until their first request: counted from 0.
        let fresh = reconcile(&r, Ok((None, ["a", "b"].map(String::from).into())), seen(997.0, &["a", "b"]));
        assert!(fresh.holds && fresh.server_received == Some(997.0), "{fresh:?}");
        // A server that exports no counter at all: not measured, not "INCONSISTENT" with a 0.
        let absent = ["a", "b"].map(String::from);
        let unmeasured = reconcile(&r, Ok((None, absent.clone().into())), Ok((None, absent.into())));
        assert!(!unmeasured.holds && unmeasured.server_received.is_none(), "{unmeasured:?}");
        assert_eq!(unmeasured.note, "not measured (the servers export no request counter, mcp_requests_total)");
        let gone = reconcile(&r, seen(100.0, &["a", "b"]), Ok((None, ["a", "b"].map(String::from).into())));
        assert!(!gone.holds && gone.note.contains("gone after the phase"), "{gone:?}");
    }
}
