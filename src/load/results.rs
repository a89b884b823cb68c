//! The load run's results: `results.json` (the contract of `swarmctl load`, docs/results.md),
//! folded from what the run measured, and `SUMMARY.txt` rendered from it alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::engine::Live;
use super::plan::LoadPlan;
use super::stats::{LatencyMs, Stats};
use super::tally::{self, Tally};
use super::workload::{Metric, Model};
use crate::exit::{Code, Verdict};

/// The version of the results.json contract (docs/results.md).
pub const SCHEMA_VERSION: u32 = 1;

/// `results.json`: everything else is rendered from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunResult {
    /// The contract's version.
    pub schema_version: u32,
    /// `pass`, `fail` (a threshold failed), `interrupted`, or `error` (it could not run: see
    /// `error`).
    pub verdict: Verdict,
    /// Why the run could not go on, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it ran on (absent in results written before swarmctl recorded it, and in each
    /// phase of a test, whose run has its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<crate::report::RunContext>,
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
    /// Load workers (processes or swarm tasks) that ended without their report: why, and
    /// what their seconds had carried, which the figures include (exit code 4: part of the
    /// planned load was never sent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers_lost: Vec<String>,
    /// For load from swarm tasks: each node's clock against the controller's, measured before
    /// the start and taken off the start time of the tasks there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clocks: Vec<NodeClock>,
}

/// A node's clock against the controller's. The tasks share one start time; a task starts
/// when its node's clock reads that time plus the node's offset, so that all start together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeClock {
    /// The node's hostname.
    pub node: String,
    /// Its offset, when it could be measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<crate::agent::clock::Offset>,
    /// Why it could not be (its tasks then start by their own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
}

impl std::fmt::Display for NodeClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.measured, &self.unmeasured) {
            (Some(o), _) => write!(f, "{} {:+.1} ms (±{:.1})", self.node, o.offset_ms, o.within_ms),
            (None, why) => write!(f, "{} not measured ({})", self.node, why.as_deref().unwrap_or("no reason given")),
        }
    }
}

/// The run's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

impl RunConfig {
    /// The settings of `plan`.
    pub fn of(plan: &LoadPlan) -> RunConfig {
        let (model, think_s, rate, stages) = match &plan.model {
            Model::Closed { think } => ("closed", Some(think.as_secs_f64()), None, None),
            Model::Open { rate } => ("open", None, Some(*rate), None),
            Model::Staged(s) => ("staged", None, None, Some(s.to_string())),
        };
        RunConfig {
            urls: plan.urls(),
            sessions: plan.sessions,
            ramp: plan.ramp,
            hold_s: plan.hold.as_secs_f64(),
            model: model.into(),
            think_s,
            rate,
            stages,
            mix: plan.mix.to_string(),
        }
    }
}

/// Totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// What the first few distinct failures of each class were (the OS error, the HTTP
    /// status and the start of the body, the JSON-RPC error).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_samples: BTreeMap<String, Vec<String>>,
}

/// One method's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThresholdResult {
    /// As given.
    pub expr: String,
    /// The measured value (ms, or a ratio); `null` when there was nothing to measure (a
    /// threshold on a method that sent no request, which therefore fails).
    #[serde(deserialize_with = "nan_when_null")]
    #[schemars(with = "Option<f64>")]
    pub actual: f64,
    /// Whether it held.
    pub pass: bool,
}

/// JSON has no NaN: serde_json writes it as `null`, and reads `null` back as NaN here.
fn nan_when_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Schedule keeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// Session counts of a run, for the summary.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SessionCounts {
    pub(crate) peak: u64,
    pub(crate) dropped: u64,
    pub(crate) reestablished: u64,
    #[serde(default)]
    pub(crate) opened: u64,
    #[serde(default)]
    pub(crate) first_due_ms: u64,
    #[serde(default)]
    pub(crate) last_opened_ms: u64,
}

impl SessionCounts {
    pub(crate) fn of(live: &Live) -> Self {
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

    pub(crate) fn add(&mut self, other: SessionCounts) {
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
    pub(crate) fn ramp(&self) -> (f64, f64) {
        let span = self.last_opened_ms.saturating_sub(self.first_due_ms) as f64 / 1000.0;
        let rate = if self.opened > 1 && span > 0.0 { (self.opened - 1) as f64 / span } else { 0.0 };
        (span, rate)
    }
}

/// What a run measured, in one process or merged from its workers.
pub(crate) struct Measured {
    pub(crate) stats: Stats,
    pub(crate) elapsed: Duration,
    pub(crate) sessions: SessionCounts,
    pub(crate) tally: Tally,
    pub(crate) interrupted: bool,
    /// Workers that ended without their report, each with why and what it had sent.
    pub(crate) lost: Vec<String>,
}

/// What a finished run produced, with its exit code.
pub struct Outcome {
    /// The results.
    pub result: RunResult,
    /// Ok, Failed (a threshold), Generator (schedule not kept) or Interrupted.
    pub exit_code: Code,
}

/// Results, exit code, and the results folder when there is one.
pub(crate) fn finish(plan: &LoadPlan, out: Option<&Path>, m: Measured) -> anyhow::Result<Outcome> {
    let interrupted = m.interrupted;
    let mut result = summarize(plan, &m.stats, m.elapsed, m.sessions, interrupted);
    (result.hold, result.client_memory) = m.tally.finish();
    result.workers_lost = m.lost;
    if m.sessions.opened == 0 && plan.sessions > 0 && !interrupted {
        // The commonest failure, in the words of its first sample: one stray reset must not
        // stand for a hundred refusals.
        let commonest = m.stats.errors.iter().max_by_key(|(_, n)| **n).map(|(class, _)| *class);
        let cause =
            commonest.and_then(|class| Some(format!("{}: {}", class.name(), m.stats.samples.get(&class)?.first()?)));
        let counted = result.summary.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
        // Workers that never got to send say more than an empty count does.
        let lost = result.workers_lost.first().map(|first| {
            format!("{} load worker(s) ended without a report; the first: {first}", result.workers_lost.len())
        });
        let cause = cause.or(lost).unwrap_or(if counted.is_empty() { "nothing was sent".into() } else { counted });
        result.error = Some(format!("no session could open: {cause}"));
        result.verdict = Verdict::Error;
    }
    let exit_code = if result.error.is_some() {
        Code::Error
    } else if interrupted {
        Code::Interrupted
    } else if result.thresholds.iter().any(|t| !t.pass) {
        Code::Failed
    } else if !result.generator.kept_schedule || !result.workers_lost.is_empty() {
        // A lost worker's share after its last second was never sent: the generator's fault.
        Code::Generator
    } else {
        Code::Ok
    };
    if let Some(dir) = out {
        write_results(dir, &result)?;
    }
    Ok(Outcome { result, exit_code })
}

fn summarize(
    plan: &LoadPlan,
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
    let mut judged: Vec<ThresholdResult> = plan
        .thresholds
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
    RunResult {
        schema_version: SCHEMA_VERSION,
        verdict: Verdict::judged(interrupted, judged.iter().all(|t| t.pass)),
        error: None,
        context: None,
        config: RunConfig::of(plan),
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
            error_samples: stats
                .samples
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.name().to_string(), v.clone()))
                .collect(),
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
        workers_lost: Vec::new(),
        clocks: Vec::new(),
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
    let error = r.error.as_ref().map(|e| format!("error: {e}\n")).unwrap_or_default();
    let mut out = format!(
        "verdict: {}\n{error}requests: {} sent, {} ok ({:.3} %), {:.1} req/s over {:.1} s; sessions peak {}\n\
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
    for (class, seen) in &s.error_samples {
        for d in seen {
            out.push_str(&format!("  {class}: {d}\n"));
        }
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
    for lost in &r.workers_lost {
        out.push_str(&format!("{lost}\n"));
    }
    if !r.clocks.is_empty() {
        let clocks: Vec<String> = r.clocks.iter().map(ToString::to_string).collect();
        out.push_str(&format!("node clocks against this machine's: {}\n", clocks.join(", ")));
    }
    if !r.generator.kept_schedule {
        out.push_str(&format!(
            "the generator fell behind its schedule (send lag p99 {:.1} ms, start lag p99 {:.1} ms): these figures describe the generator, not the target\n",
            r.generator.send_lag_p99_ms, r.generator.start_lag_p99_ms
        ));
    }
    out
}

/// The results of a run refused before it began (`error` says why; nothing was measured),
/// with its plan beside them.
pub fn write_refused(dir: &Path, plan: &LoadPlan, why: &str, context: crate::report::RunContext) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    plan.redacted().write(&dir.join("plan.json"))?;
    let r = RunResult {
        schema_version: SCHEMA_VERSION,
        verdict: Verdict::Error,
        error: Some(why.to_string()),
        context: Some(context),
        config: RunConfig::of(plan),
        // Nothing was scheduled, so nothing fell behind.
        generator: Generator { kept_schedule: true, ..Default::default() },
        ..Default::default()
    };
    write_folder(dir, &r)
}

fn put(dir: &Path, name: &str, body: String) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), body).with_context(|| format!("cannot write {}/{name}", dir.display()))
}

/// results.json and SUMMARY.txt: what every run with a folder leaves, a phase's included.
pub(crate) fn write_results(dir: &Path, r: &RunResult) -> anyhow::Result<()> {
    put(dir, "results.json", serde_json::to_string_pretty(r)?)?;
    put(dir, "SUMMARY.txt", summary_text(r))
}

/// A bare load's folder as `swarmctl load` leaves it: results.json and SUMMARY.txt, and
/// report.html over the seconds of its timeline.jsonl (the page `test` and `validate` write).
/// The run wrote the first two when it ended; this writes them again with what the command
/// adds (the run's context), and draws the page once.
pub fn write_folder(dir: &Path, r: &RunResult) -> anyhow::Result<()> {
    write_results(dir, r)?;
    let timeline = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap_or_default();
    let view =
        crate::report::Results::Load(Box::new(r.clone())).into_test_run(&crate::report::load_timeline(&timeline));
    put(dir, "report.html", crate::report::html(&view))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
