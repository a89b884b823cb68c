//! `swarmctl load`: the MCP load engine, usable against any MCP endpoint without a swarm.
//!
//! workload (mix, pacing, thresholds) → engine (scheduled sessions and requests) → stats (HDR
//! histograms, error classes, per-second timeline) → results (`results.json`, the contract,
//! and `SUMMARY.txt` rendered from it). The load engine never touches the Docker Engine.

pub mod client;
pub mod engine;
mod http1;
pub mod stats;
pub mod tally;
mod workers;
pub mod workload;
mod ws1;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::units::Duration as Dur;
use client::Target;
use stats::{LatencyMs, Stats};
use workload::{Metric, Mix, Model, Threshold};

/// Everything `swarmctl load` can be told.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadOptions {
    /// Target endpoint (repeatable; sessions go round-robin): http://host:port/mcp (Streamable
    /// HTTP), ws://host:port/mcp/ws (WebSocket), tcp://host:port (newline-delimited) or
    /// sse://host:port/sse (legacy HTTP+SSE: GET the stream, POST to the endpoint it announces;
    /// erlmcp serves it at /mcp/sse).
    #[arg(long = "url", required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Concurrent MCP sessions (one connection each).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub sessions: usize,
    /// New sessions per second during the ramp.
    #[arg(long, default_value_t = 100.0, value_name = "PER_SECOND")]
    pub ramp: f64,
    /// How long the run goes on after the last session started.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: Dur,
    /// Closed model: each session pauses this long after an answer (0: back to back).
    #[arg(long, default_value = "1s", value_name = "DURATION", conflicts_with = "rate")]
    pub think: Dur,
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
    /// resources/read:URI, tools/call:TOOL or tools/call:TOOL(key=value;…).
    #[arg(long, default_value = "tools/call:echo=1", value_name = "SPEC")]
    pub mix: String,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: Dur,
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
    /// Split the sessions over N processes of this binary (each process may hold at most
    /// ~19,900 sockets here); their histograms are merged exactly, not averaged.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Internal: run as one worker of a parent `load`, reporting into DIR.
    #[arg(long, hide = true, value_name = "DIR")]
    pub worker_report: Option<PathBuf>,
    /// Internal: when the first session is due, in milliseconds since the Unix epoch.
    #[arg(long, hide = true, value_name = "EPOCH_MS")]
    pub start_at: Option<u64>,
    /// Internal: note when N successes in a row follow the last failure (the failover
    /// phase's recovery), in each worker.
    #[arg(long, hide = true, default_value_t = 0, value_name = "N")]
    pub streak_goal: u64,
    /// Write results.json, timeline.jsonl (as the run goes) and SUMMARY.txt into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print results.json on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

impl LoadOptions {
    /// The command line's defaults, toward `urls` (for callers other than the command line).
    pub fn toward(urls: Vec<String>) -> Self {
        LoadOptions {
            urls,
            sessions: 10,
            ramp: 100.0,
            duration: Dur::from_secs(10),
            think: Dur::from_secs(1),
            rate: None,
            stages: None,
            mix: "tools/call:echo=1".into(),
            timeout: Dur::from_secs(10),
            thresholds: Vec::new(),
            source_ips: None,
            ws_subprotocol: false,
            ws_newline: false,
            no_close: false,
            get_stream: false,
            workers: 1,
            worker_report: None,
            start_at: None,
            streak_goal: 0,
            out: None,
            json: false,
        }
    }
}

/// The version of the results.json contract (docs/results.md).
pub const SCHEMA_VERSION: u32 = 1;

/// `results.json`: everything else is rendered from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The contract's version.
    pub schema_version: u32,
    /// `pass`, `fail` (a threshold failed) or `interrupted`.
    pub verdict: String,
    /// What was run.
    pub config: RunConfig,
    /// Figures over all methods but `initialize`.
    pub summary: Summary,
    /// By method label.
    pub by_method: BTreeMap<String, MethodSummary>,
    /// The thresholds and their outcome.
    pub thresholds: Vec<ThresholdResult>,
    /// Whether the generator kept its schedule.
    pub generator: Generator,
    /// The hold apart from the ramp, when a whole second of it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<tally::Hold>,
    /// The load processes' memory per open session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_memory: Option<tally::ClientMemory>,
}

/// The run's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Targets.
    pub urls: Vec<String>,
    /// Sessions.
    pub sessions: usize,
    /// Ramp, sessions per second.
    pub ramp: f64,
    /// Hold after the ramp, seconds.
    pub hold_s: f64,
    /// `closed` or `open`.
    pub model: String,
    /// Think time (closed), seconds.
    pub think_s: Option<f64>,
    /// Rate (open), requests per second.
    pub rate: Option<f64>,
    /// Stages (staged open model), as given; rates in requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<String>,
    /// The mix as given.
    pub mix: String,
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests sent (all methods but initialize).
    pub requests_total: u64,
    /// Of which successful.
    pub requests_ok: u64,
    /// `requests_ok / requests_total`.
    pub success_ratio: f64,
    /// Completed requests per second over the run.
    pub throughput_rps: f64,
    /// Most sessions open at once.
    pub sessions_peak: u64,
    /// Sessions that lost their connection or their server-side session during the run.
    #[serde(default)]
    pub sessions_dropped: u64,
    /// Of those, re-established (connected and initialized again).
    #[serde(default)]
    pub sessions_reestablished: u64,
    /// Run time, seconds.
    pub duration_s: f64,
    /// Latency from when each request was due.
    pub latency_ms: LatencyMs,
    /// Latency from when each request was sent.
    pub latency_uncorrected_ms: LatencyMs,
    /// Failures by class.
    pub errors: BTreeMap<String, u64>,
}

/// One method's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// Sent.
    pub count: u64,
    /// Successful.
    pub ok: u64,
    /// Corrected latency.
    pub latency_ms: LatencyMs,
    /// Raw latency.
    pub latency_uncorrected_ms: LatencyMs,
}

/// One threshold's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// As given.
    pub expr: String,
    /// The measured value (ms, or a ratio).
    pub actual: f64,
    /// Whether it held.
    pub pass: bool,
}

/// Schedule keeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    /// Sessions opened (first time; not the re-established).
    #[serde(default)]
    pub sessions_opened: u64,
    /// Seconds from the first session's due time to the last one's opening (handshake and
    /// `initialize` done).
    #[serde(default)]
    pub ramp_s: f64,
    /// The ramp's real rate: `(sessions_opened - 1) / ramp_s` (the schedule's is `config.ramp`).
    #[serde(default)]
    pub ramp_rate: f64,
    /// p99 of how late requests were sent after they were due, ms.
    pub send_lag_p99_ms: f64,
    /// p99 of how late sessions started after they were due, ms.
    pub start_lag_p99_ms: f64,
    /// False when the generator could not keep its schedule (exit code 4).
    pub kept_schedule: bool,
}

/// A validated run: the engine's plan plus thresholds.
pub(crate) fn resolve(o: &LoadOptions) -> anyhow::Result<(engine::Plan, Vec<Threshold>)> {
    let targets = o
        .urls
        .iter()
        .map(|u| Target::parse(u, o.ws_subprotocol, o.ws_newline))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    if o.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    if o.ramp.is_nan() || o.ramp <= 0.0 {
        bail!("--ramp must be above 0 sessions per second");
    }
    let model = match (o.rate, &o.stages) {
        (_, Some(spec)) => Model::Staged(spec.parse().map_err(|e: String| anyhow::anyhow!("--stages: {e}"))?),
        (Some(r), None) if r > 0.0 => Model::Open { rate: r },
        (Some(_), None) => bail!("--rate must be above 0 requests per second"),
        (None, None) => Model::Closed { think: o.think.0 },
    };
    let hold = match &model {
        Model::Staged(stages) => stages.total(),
        _ => o.duration.0,
    };
    let mix: Mix = o.mix.parse().map_err(|e: String| anyhow::anyhow!("--mix: {e}"))?;
    let thresholds =
        o.thresholds.iter().map(|t| t.parse()).collect::<Result<Vec<Threshold>, _>>().map_err(anyhow::Error::msg)?;
    let sources = match &o.source_ips {
        Some(spec) => parse_sources(spec).map_err(|e| anyhow::anyhow!("--source-ips: {e}"))?,
        None => auto_sources(&targets, o.sessions),
    };
    let plan = engine::Plan {
        start_at: o.start_at.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms)),
        sources,
        targets,
        sessions: o.sessions,
        ramp: o.ramp,
        hold,
        model,
        mix,
        timeout: o.timeout.0,
        close: !o.no_close,
        get_stream: o.get_stream,
    };
    Ok((plan, thresholds))
}

/// Sessions per loopback source address when none are given: the kernel searches the
/// ephemeral ports for a free one on every connect, and past a few thousand connections from
/// one address to one destination that search costs more than the rest of the connect (19,000
/// sessions at 5,000/s from one address spent 8 s of kernel time and started 3 s late; from
/// 20 addresses, 3.4 s and 15 ms).
const SESSIONS_PER_LOOPBACK_SOURCE: usize = 1000;

/// Loopback source addresses for a run toward loopback only, when it opens more sessions than
/// one address serves well (127.0.0.2 up); none otherwise.
fn auto_sources(targets: &[Target], sessions: usize) -> Vec<std::net::IpAddr> {
    let loopback = targets.iter().all(|t| {
        t.authority()
            .rsplit_once(':')
            .and_then(|(h, _)| h.parse::<std::net::Ipv4Addr>().ok())
            .is_some_and(|ip| ip.is_loopback())
    });
    if !loopback || sessions <= 4 * SESSIONS_PER_LOOPBACK_SOURCE {
        return Vec::new();
    }
    let n = sessions.div_ceil(SESSIONS_PER_LOOPBACK_SOURCE).min(253);
    tracing::info!("spreading {sessions} sessions over {n} loopback source addresses (127.0.0.2 on)");
    (0..n).map(|i| std::net::IpAddr::from([127, 0, 0, 2 + i as u8])).collect()
}

/// `127.0.0.2-127.0.0.40` or `10.0.0.5,10.0.0.6`.
pub fn parse_sources(spec: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (Ipv4Addr, Ipv4Addr) = (
                    a.trim().parse().map_err(|_| format!("`{a}` is not an IPv4 address"))?,
                    b.trim().parse().map_err(|_| format!("`{b}` is not an IPv4 address"))?,
                );
                let (a, b) = (u32::from(a), u32::from(b));
                if b < a || b - a > 65_535 {
                    return Err(format!("`{part}` is not a range of at most 65536 addresses, low to high"));
                }
                out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
            }
            None => out.push(part.parse().map_err(|_| format!("`{part}` is not an IP address"))?),
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// Open files a process needs besides its sessions' sockets (runtime, stdio, output files).
const SPARE_FILES: u64 = 64;

/// Sessions one process can hold: its hard open-file limit less what it needs besides.
pub fn sessions_per_process() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    hard.saturating_sub(SPARE_FILES)
}

/// Pre-flight: one socket per session must fit under the open-file limit. Raises the soft
/// limit to the hard one when that is enough; otherwise says what is feasible, before
/// anything is started.
pub fn check_open_files(sessions: usize) -> anyhow::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let need = sessions as u64 + SPARE_FILES;
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current.unwrap_or(u64::MAX), limit.maximum.unwrap_or(u64::MAX));
    if need <= soft {
        return Ok(soft);
    }
    if need <= hard {
        setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: limit.maximum })
            .context("cannot raise the open-file limit")?;
        return Ok(hard);
    }
    bail!(
        "{sessions} sessions need {need} open files, and this process may open at most {hard} (hard limit): \
         run at most {} sessions per process (split the load over several `swarmctl load` processes), or raise the hard limit",
        hard.saturating_sub(SPARE_FILES)
    )
}

/// The kernel's ephemeral port range size (`net.ipv4.ip_local_port_range`; 28,232 by default).
pub fn local_port_range() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
            Some(it.next()?.abs_diff(it.next()?) + 1)
        })
        .unwrap_or(28_232)
}

/// Pre-flight: connections to one destination from one source address are limited by the
/// ephemeral port range; say so before starting, with what would work.
pub fn check_ports(plan: &engine::Plan, port_range: u64) -> anyhow::Result<()> {
    let mut per_destination: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..plan.sessions {
        let target = &plan.targets[i % plan.targets.len()];
        *per_destination.entry(target.authority().to_string()).or_default() +=
            (target.sockets() + usize::from(plan.get_stream)) as u64;
    }
    let sources = plan.sources.len().max(1) as u64;
    for (dest, n) in per_destination {
        if n > port_range * sources {
            let needed = n.div_ceil(port_range);
            bail!(
                "{n} sessions to {dest} need more than the {port_range} ephemeral ports one source address has{}: give --source-ips with at least {needed} addresses (e.g. 127.0.0.2-127.0.0.{})",
                if sources > 1 { format!(" ({sources} addresses give {})", port_range * sources) } else { String::new() },
                needed + 1
            );
        }
    }
    Ok(())
}

/// What a finished run produced, with its exit code.
pub struct Outcome {
    /// The results.
    pub result: RunResult,
    /// 0 pass, 3 thresholds failed, 4 schedule not kept, 130 interrupted.
    pub exit_code: u8,
}

/// Runs the load; writes the timeline as it goes when `--out` is given.
pub async fn run(
    o: &LoadOptions,
    cancel: tokio_util::sync::CancellationToken,
    progress: bool,
) -> anyhow::Result<Outcome> {
    let mut timeline = match &o.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("timeline.jsonl");
            Some(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => None,
    };
    run_observed(o, cancel, Arc::new(engine::Live::default()), |s, _| show_second(s, timeline.as_mut(), progress)).await
}

/// Runs the load (in this process, or over `--workers` processes), handing each second and
/// its measurements to the caller: the test phases fold them into their own timeline and
/// watch failures as they happen through `live` (from the workers' reports when there are
/// several processes, a second late). Writes results.json
/// and SUMMARY.txt into `--out`, but no timeline.
pub async fn run_observed(
    o: &LoadOptions,
    cancel: tokio_util::sync::CancellationToken,
    live: Arc<engine::Live>,
    mut on_second: impl FnMut(&engine::Second, &Stats),
) -> anyhow::Result<Outcome> {
    let (plan, thresholds) = resolve(o)?;
    check_ports(&plan, local_port_range())?;
    if let Some(dir) = &o.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if o.workers > 1 {
        return workers::run(o, &plan, &thresholds, cancel, live, &mut on_second).await;
    }
    check_open_files(plan.sessions * plan.sockets_per_session())?;
    let plan = Arc::new(plan);
    let mut tally = tally::Tally::new(&plan, 1, tally::rss_kib());
    let (stats, elapsed, interrupted) = engine::run(plan.clone(), cancel, live.clone(), |s, st| {
        tally.second(&s, st, tally::rss_kib());
        on_second(&s, st)
    })
    .await;
    let sessions = SessionCounts::of(&live);
    finish(o, &plan, &thresholds, Measured { stats, elapsed, sessions, tally, interrupted })
}

/// Session counts of a run, for the summary.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SessionCounts {
    peak: u64,
    dropped: u64,
    reestablished: u64,
    #[serde(default)]
    opened: u64,
    #[serde(default)]
    first_due_ms: u64,
    #[serde(default)]
    last_opened_ms: u64,
}

impl SessionCounts {
    fn of(live: &engine::Live) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        SessionCounts {
            peak: live.sessions_peak.load(Relaxed),
            dropped: live.sessions_dropped.load(Relaxed),
            reestablished: live.sessions_reestablished.load(Relaxed),
            opened: live.sessions_opened.load(Relaxed),
            first_due_ms: live.first_due_ms.load(Relaxed),
            last_opened_ms: live.last_opened_ms.load(Relaxed),
        }
    }

    fn add(&mut self, other: SessionCounts) {
        self.peak = self.peak.max(other.peak);
        self.dropped += other.dropped;
        self.reestablished += other.reestablished;
        self.opened += other.opened;
        self.first_due_ms = match (self.first_due_ms, other.first_due_ms) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_opened_ms = self.last_opened_ms.max(other.last_opened_ms);
    }

    /// Seconds from the first session's due time to the last one's opening, and the rate that
    /// makes (the schedule's own: n sessions span n - 1 intervals).
    fn ramp(&self) -> (f64, f64) {
        let span = self.last_opened_ms.saturating_sub(self.first_due_ms) as f64 / 1000.0;
        let rate = if self.opened > 1 && span > 0.0 { (self.opened - 1) as f64 / span } else { 0.0 };
        (span, rate)
    }
}

/// One worker's share of a `--workers` run: reports through files in `--worker-report DIR`
/// (its parent prints and judges); returns the exit code (0, or 130 when interrupted).
pub async fn run_worker(
    o: &LoadOptions,
    dir: &Path,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u8> {
    let (plan, _) = resolve(o)?;
    check_open_files(plan.sessions * plan.sockets_per_session())?;
    workers::serve_as_worker(Arc::new(plan), o.streak_goal, dir, cancel).await
}

/// Appends a second to the timeline file and prints the progress line.
pub(crate) fn show_second(s: &engine::Second, timeline: Option<&mut std::fs::File>, progress: bool) {
    if let Some(f) = timeline {
        let _ = writeln!(f, "{}", serde_json::to_string(s).unwrap_or_default());
        let _ = f.flush();
    }
    if progress {
        let errors: u64 = s.errors.values().sum();
        eprintln!(
            "t={:>4}s  sessions {:>6}  req/s {:>8}  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {errors}",
            s.t, s.sessions, s.requests, s.p50_ms, s.p99_ms
        );
    }
}

/// What a run measured, in one process or merged from its workers.
pub(crate) struct Measured {
    stats: Stats,
    elapsed: Duration,
    sessions: SessionCounts,
    tally: tally::Tally,
    interrupted: bool,
}

/// Results, exit code, results folder.
fn finish(o: &LoadOptions, plan: &engine::Plan, thresholds: &[Threshold], m: Measured) -> anyhow::Result<Outcome> {
    let interrupted = m.interrupted;
    let mut result = summarize(o, plan, thresholds, &m.stats, m.elapsed, m.sessions, interrupted);
    (result.hold, result.client_memory) = m.tally.finish();
    let exit_code = if interrupted {
        130
    } else if result.thresholds.iter().any(|t| !t.pass) {
        3
    } else if !result.generator.kept_schedule {
        4
    } else {
        0
    };
    if let Some(dir) = &o.out {
        write_results(dir, &result)?;
    }
    Ok(Outcome { result, exit_code })
}

fn summarize(
    o: &LoadOptions,
    plan: &engine::Plan,
    thresholds: &[Threshold],
    stats: &Stats,
    elapsed: Duration,
    sessions: SessionCounts,
    interrupted: bool,
) -> RunResult {
    let (total, ok) = stats.totals();
    let (corrected, raw) = stats.latency();
    let by_method: BTreeMap<String, MethodSummary> = stats
        .methods
        .iter()
        .map(|(l, m)| {
            (
                l.clone(),
                MethodSummary {
                    count: m.count,
                    ok: m.ok,
                    latency_ms: LatencyMs::of(&m.corrected),
                    latency_uncorrected_ms: LatencyMs::of(&m.raw),
                },
            )
        })
        .collect();
    let success_ratio = if total == 0 { 0.0 } else { ok as f64 / total as f64 };
    let mut judged: Vec<ThresholdResult> = thresholds
        .iter()
        .map(|t| {
            let actual = match (&t.method, t.metric) {
                (None, Metric::Success) => success_ratio,
                (None, Metric::Percentile(p)) => LatencyMs::at(&corrected, p),
                (Some(m), metric) => {
                    let found = stats.methods.iter().filter(|(l, _)| *l == m || l.starts_with(&format!("{m}:"))).fold(
                        None::<(u64, u64, hdrhistogram::Histogram<u64>)>,
                        |acc, (_, s)| {
                            let mut acc = acc.unwrap_or_else(|| (0, 0, s.corrected.clone()));
                            if acc.0 > 0 {
                                acc.2.add(&s.corrected).expect("same bounds");
                            }
                            acc.0 += s.count;
                            acc.1 += s.ok;
                            Some(acc)
                        },
                    );
                    match (found, metric) {
                        (None, _) => f64::NAN,
                        (Some((c, k, _)), Metric::Success) => {
                            if c == 0 {
                                0.0
                            } else {
                                k as f64 / c as f64
                            }
                        }
                        (Some((_, _, h)), Metric::Percentile(p)) => LatencyMs::at(&h, p),
                    }
                }
            };
            ThresholdResult { expr: t.expr.clone(), actual, pass: !actual.is_nan() && t.holds(actual) }
        })
        .collect();
    // A run that sent nothing measured nothing: it cannot pass, whatever was asked.
    if total == 0 && !interrupted {
        judged.push(ThresholdResult { expr: "requests>0".into(), actual: 0.0, pass: false });
    }
    let lag = |h: &Option<hdrhistogram::Histogram<u64>>| h.as_ref().map(|h| LatencyMs::at(h, 99.0)).unwrap_or(0.0);
    let (send_lag, start_lag) = (lag(&stats.send_lag), lag(&stats.start_lag));
    let (model, think_s, rate, stages) = match &plan.model {
        Model::Closed { think } => ("closed", Some(think.as_secs_f64()), None, None),
        Model::Open { rate } => ("open", None, Some(*rate), None),
        Model::Staged(s) => ("staged", None, None, Some(s.to_string())),
    };
    RunResult {
        schema_version: SCHEMA_VERSION,
        verdict: if interrupted {
            "interrupted"
        } else if judged.iter().all(|t| t.pass) {
            "pass"
        } else {
            "fail"
        }
        .into(),
        config: RunConfig {
            urls: o.urls.clone(),
            sessions: plan.sessions,
            ramp: plan.ramp,
            hold_s: plan.hold.as_secs_f64(),
            model: model.into(),
            think_s,
            rate,
            stages,
            mix: o.mix.clone(),
        },
        summary: Summary {
            requests_total: total,
            requests_ok: ok,
            success_ratio,
            throughput_rps: if elapsed.is_zero() { 0.0 } else { total as f64 / elapsed.as_secs_f64() },
            sessions_peak: sessions.peak,
            sessions_dropped: sessions.dropped,
            sessions_reestablished: sessions.reestablished,
            duration_s: elapsed.as_secs_f64(),
            latency_ms: LatencyMs::of(&corrected),
            latency_uncorrected_ms: LatencyMs::of(&raw),
            errors: stats.errors.iter().map(|(k, v)| (k.name().to_string(), *v)).collect(),
        },
        by_method,
        thresholds: judged,
        // Late by more than 100 ms at p99 (sends) or 1 s (session starts): the figures would
        // describe the generator, not the target.
        generator: Generator {
            sessions_opened: sessions.opened,
            ramp_s: sessions.ramp().0,
            ramp_rate: sessions.ramp().1,
            send_lag_p99_ms: send_lag,
            start_lag_p99_ms: start_lag,
            kept_schedule: send_lag <= 100.0 && start_lag <= 1000.0,
        },
        hold: None,
        client_memory: None,
    }
}

/// The ramp's real rate, the hold's own figures and the client's memory, as reasons' lines.
pub fn detail_lines(r: &RunResult) -> Vec<String> {
    let mut lines = Vec::new();
    let g = &r.generator;
    if g.sessions_opened > 1 {
        lines.push(format!(
            "ramp: {} sessions opened {:.2} s after the first was due: {:.0}/s (scheduled {}/s, {:+.1} %)",
            g.sessions_opened,
            g.ramp_s,
            g.ramp_rate,
            r.config.ramp,
            (g.ramp_rate / r.config.ramp - 1.0) * 100.0
        ));
    }
    if let Some(h) = &r.hold {
        lines.push(format!(
            "hold ({} s after the ramp, at least {} sessions open): success {:.3} % ({} of {}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            h.seconds,
            h.sessions_min,
            h.success_ratio * 100.0,
            h.ok,
            h.requests,
            h.latency_ms.p50,
            h.latency_ms.p99,
            h.latency_ms.max
        ));
    }
    if let Some(m) = &r.client_memory {
        lines.push(format!(
            "client memory: {:.1} KiB per session ({} MiB resident over {} process(es) with {} sessions open, {} MiB before the first)",
            m.kib_per_session,
            m.rss_kib / 1024,
            m.processes,
            m.sessions,
            m.rss_before_kib / 1024
        ));
    }
    lines
}

/// The human summary, rendered from the results alone.
pub fn summary_text(r: &RunResult) -> String {
    let s = &r.summary;
    let l = &s.latency_ms;
    let u = &s.latency_uncorrected_ms;
    let mut out = format!(
        "verdict: {}\nrequests: {} sent, {} ok ({:.3} %), {:.1} req/s over {:.1} s; sessions peak {}\n\
         latency (ms, from when due):  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n\
         latency (ms, from when sent): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
        r.verdict,
        s.requests_total,
        s.requests_ok,
        s.success_ratio * 100.0,
        s.throughput_rps,
        s.duration_s,
        s.sessions_peak,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
        u.p50,
        u.p90,
        u.p99,
        u.p999,
        u.max
    );
    for line in detail_lines(r) {
        out.push_str(&line);
        out.push('\n');
    }
    if s.sessions_dropped > 0 {
        out.push_str(&format!(
            "sessions dropped {} (connection or server-side session lost), re-established {}\n",
            s.sessions_dropped, s.sessions_reestablished
        ));
    }
    if !s.errors.is_empty() {
        out.push_str(&format!(
            "errors: {}\n",
            s.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        ));
    }
    for (m, ms) in &r.by_method {
        out.push_str(&format!(
            "  {m:<24} {:>9} sent {:>9} ok  p50 {:.3} ms  p99 {:.3} ms\n",
            ms.count, ms.ok, ms.latency_ms.p50, ms.latency_ms.p99
        ));
    }
    for t in &r.thresholds {
        out.push_str(&format!(
            "threshold {}: {} (actual {:.3})\n",
            t.expr,
            if t.pass { "pass" } else { "FAIL" },
            t.actual
        ));
    }
    if !r.generator.kept_schedule {
        out.push_str(&format!(
            "the generator fell behind its schedule (send lag p99 {:.1} ms, start lag p99 {:.1} ms): these figures describe the generator, not the target\n",
            r.generator.send_lag_p99_ms, r.generator.start_lag_p99_ms
        ));
    }
    out
}

fn write_results(dir: &Path, r: &RunResult) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(r)?;
    std::fs::write(dir.join("results.json"), json)
        .with_context(|| format!("cannot write {}/results.json", dir.display()))?;
    std::fs::write(dir.join("SUMMARY.txt"), summary_text(r))
        .with_context(|| format!("cannot write {}/SUMMARY.txt", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sessions: usize, urls: &[&str], sources: usize) -> engine::Plan {
        engine::Plan {
            targets: urls.iter().map(|u| Target::parse(u, false, false).unwrap()).collect(),
            sessions,
            ramp: 1.0,
            hold: Duration::ZERO,
            model: Model::Closed { think: Duration::ZERO },
            mix: "ping=1".parse().unwrap(),
            timeout: Duration::from_secs(1),
            close: true,
            get_stream: false,
            sources: (0..sources).map(|i| std::net::IpAddr::from([127, 0, 0, 2 + i as u8])).collect(),
            start_at: None,
        }
    }

    #[test]
    fn the_ramp_spans_the_first_due_to_the_last_opened_over_every_process() {
        let worker = |opened, first_due_ms, last_opened_ms| SessionCounts {
            opened,
            first_due_ms,
            last_opened_ms,
            ..Default::default()
        };
        let mut all = SessionCounts::default();
        for w in [worker(50_001, 1_000_200, 1_021_000), worker(49_999, 1_000_000, 1_020_900), worker(0, 0, 0)] {
            all.add(w);
        }
        let (span, rate) = all.ramp();
        assert_eq!(all.opened, 100_000);
        assert!((span - 21.0).abs() < 1e-9, "first due at the earliest worker's start: {span}");
        assert!((rate - 99_999.0 / 21.0).abs() < 1e-6, "{rate}");
        assert_eq!(SessionCounts::default().ramp(), (0.0, 0.0), "nothing opened");
    }

    #[test]
    fn many_loopback_sessions_get_loopback_sources() {
        let local = [Target::parse("http://127.0.0.1:1/mcp", false, false).unwrap()];
        assert!(auto_sources(&local, 4000).is_empty());
        let s = auto_sources(&local, 19_000);
        assert_eq!((s.len(), s[0], s[18]), (19, "127.0.0.2".parse().unwrap(), "127.0.0.20".parse().unwrap()));
        assert_eq!(auto_sources(&local, 1_000_000).len(), 253, "127.0.0.2 to 127.0.0.254");
        let remote = [Target::parse("http://10.0.0.5:80/mcp", false, false).unwrap()];
        assert!(auto_sources(&remote, 19_000).is_empty(), "only loopback is known to accept any 127/8 source");
    }

    #[test]
    fn port_preflight_counts_per_destination_and_source() {
        assert!(check_ports(&plan(20_000, &["http://127.0.0.1:1/mcp"], 0), 28_232).is_ok());
        let err = check_ports(&plan(100_000, &["http://127.0.0.1:1/mcp"], 0), 28_232).unwrap_err().to_string();
        assert!(err.contains("--source-ips with at least 4 addresses"), "{err}");
        assert!(check_ports(&plan(100_000, &["http://127.0.0.1:1/mcp"], 4), 28_232).is_ok());
        // Spread over 12 replicas' ports, one address is enough.
        let urls: Vec<String> = (0..12).map(|i| format!("http://127.0.0.1:{}/mcp", 20000 + i)).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        assert!(check_ports(&plan(100_000, &urls, 0), 28_232).is_ok());
    }
}
