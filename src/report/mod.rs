//! Reports of `swarmctl test` and `validate`: the results folder's contract (`TestRun`, written
//! as results.json) and everything rendered from it alone, without I/O: SUMMARY.txt,
//! FINAL_REPORT.md, report.html with SVG charts, and the comparison of two runs.

mod compare;
mod context;
mod html;
mod svg;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exit::{Code, Verdict};
use crate::load::RunResult;

pub use compare::{compare, Comparison, Delta};
pub use context::{masked, MachineContext, NodeContext, RunContext, StackContext};
pub use html::html;
pub use text::{markdown, summary};

/// The version of the test results contract (docs/testing.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A test run: what `test` and `validate` write as results.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TestRun {
    /// The contract's version.
    pub schema_version: u32,
    /// `baseline`, `stress`, `full` or `validate`.
    pub kind: String,
    /// The stack's name.
    pub stack: String,
    /// swarmctl's version.
    pub version: String,
    /// What it ran on (absent in results written before swarmctl recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<RunContext>,
    /// When the run began and ended (Unix ms).
    pub started_ms: u64,
    /// See `started_ms`.
    pub finished_ms: u64,
    /// `pass` (every phase met its SLO), `fail`, `interrupted` (Ctrl-C: the phases up to
    /// then) or `error` (the run could not go on; `error` says why).
    pub verdict: Verdict,
    /// Why the run stopped, when it did not finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The objectives the verdicts are judged against.
    pub slo: Slo,
    /// Pre-flight findings and anything the run adjusted (a stage capped, a step skipped).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The phases, in the order they ran.
    pub phases: Vec<Phase>,
    /// Swarm actions and what the engine reported back, in time order.
    #[serde(default)]
    pub events: Vec<Event>,
    /// One point per second of load, over all phases.
    #[serde(default)]
    pub timeline: Vec<Point>,
    /// CPU and memory of each server replica, sampled through the Engine API.
    #[serde(default)]
    pub resources: Vec<ResourceSample>,
    /// Each replica's requests/s and open sessions, as its server counted them (Prometheus;
    /// empty without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_series: Vec<ReplicaPoint>,
    /// Replicas whose resources could not be sampled (on another node than the engine's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmeasured: Vec<Unmeasured>,
}

/// One replica at one moment, from its own metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplicaPoint {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The replica's slot.
    pub slot: i64,
    /// Requests per second it served over the 30 s before.
    pub requests_per_s: f64,
    /// Sessions it held open.
    pub sessions: f64,
}

/// A replica the sampler could not read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Unmeasured {
    /// Its slot.
    pub slot: i64,
    /// The node it ran on (its ID).
    pub node: String,
    /// What the engine answered.
    pub reason: String,
}

/// The objectives, as judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Slo {
    /// Minimum share of successful requests in load phases.
    pub success_ratio: f64,
    /// Maximum p99 latency, ms.
    pub p99_ms: f64,
    /// Maximum client-visible recovery after a kill, s.
    pub failover_recovery_s: f64,
    /// Minimum share of successful requests over the failover phase.
    pub failover_success_ratio: f64,
}

/// One phase and its verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Phase {
    /// `baseline`, `stress`, `failover`, `scaling`, `incremental`.
    pub name: String,
    /// `pass`, `fail`, `interrupted` or `error`.
    pub verdict: Verdict,
    /// The measured facts behind the verdict, one sentence each.
    pub reasons: Vec<String>,
    /// When it began and ended (Unix ms).
    pub started_ms: u64,
    /// See `started_ms`.
    pub finished_ms: u64,
    /// The load engine's results over the whole phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<RunResult>,
    /// Failover details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Scaling details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Hang details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang: Option<Hang>,
    /// Update, rollback or drain details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    /// Network impairment details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Incremental stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// The load engine's count of requests against the servers' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<Reconciliation>,
}

/// Client-side and server-side views of one phase's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reconciliation {
    /// Requests the load engine sent (every method but `initialize`).
    pub client_sent: u64,
    /// Of those, answered by a server (a result, a JSON-RPC error or a tool error): these
    /// certainly reached one.
    pub client_answered: u64,
    /// The increase of the replicas' `mcp_requests_total` (every method but `initialize` and
    /// `notifications/initialized`) over the phase, from Prometheus.
    pub server_received: Option<f64>,
    /// The replicas' count when the phase began: what they had served before it (earlier
    /// phases or runs, whose leftovers are then in their memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_before: Option<f64>,
    /// `client_answered ≤ server_received ≤ client_sent`: what a server counted is what
    /// clients sent, less what was lost before reaching a server.
    pub holds: bool,
    /// How it was measured, or why it could not be.
    pub note: String,
}

/// What the failover phase measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Failover {
    /// The service whose tasks were killed.
    pub service: String,
    /// Each killed task and its replacement.
    pub kills: Vec<Kill>,
    /// When the kill was sent (Unix ms).
    pub kill_ms: u64,
    /// Client-visible recovery: from the kill to the first of `consecutive_ok` successes in a
    /// row after the last failure, s; 0 when clients saw no failure; `None` when they never
    /// recovered within the phase.
    pub recovery_s: Option<f64>,
    /// The `consecutive_ok` used.
    pub consecutive_ok: u64,
    /// Failures from the kill to the end of the phase, by class.
    pub errors: BTreeMap<String, u64>,
    /// First and last failure after the kill (Unix ms).
    pub first_error_ms: Option<u64>,
    /// See `first_error_ms`.
    pub last_error_ms: Option<u64>,
    /// Sessions that lost their connection or server-side session after the kill.
    pub sessions_dropped: u64,
    /// Of those, re-established.
    pub sessions_reestablished: u64,
    /// Worst per-second corrected p99 from the kill until recovery, ms.
    pub p99_during_recovery_ms: f64,
    /// Success ratio over the whole phase.
    pub success_ratio: f64,
}

/// What the hang phase measured: one replica stopped (SIGSTOP: it neither answers nor dies,
/// its connections stay open) and resumed (SIGCONT).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hang {
    /// The service.
    pub service: String,
    /// The stopped replica's slot, task, container and node.
    pub slot: i64,
    /// See `slot`.
    pub task: String,
    /// See `slot`.
    pub container: String,
    /// See `slot`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// When its node's engine stopped it (Unix ms).
    pub stopped_ms: u64,
    /// When it was resumed (Unix ms); `None` when it could not be (`resume_error` says why,
    /// e.g. the swarm had replaced it for failing its healthcheck).
    pub resumed_ms: Option<u64>,
    /// Why it could not be resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_error: Option<String>,
    /// Failures from the stop to the end of the phase, by class.
    pub errors: BTreeMap<String, u64>,
    /// First and last failure after the stop (Unix ms).
    pub first_error_ms: Option<u64>,
    /// See `first_error_ms`.
    pub last_error_ms: Option<u64>,
    /// Client-visible recovery: from the stop to the first of `consecutive_ok` successes in a
    /// row after the last failure, s; 0 when clients saw no failure; `None` when they never
    /// recovered within the phase.
    pub recovery_s: Option<f64>,
    /// The `consecutive_ok` used.
    pub consecutive_ok: u64,
    /// Worst per-second corrected p99 while it was stopped, ms: the requests it held.
    pub p99_while_stopped_ms: f64,
    /// Sessions that lost their connection or server-side session after the stop.
    pub sessions_dropped: u64,
    /// Of those, re-established.
    pub sessions_reestablished: u64,
    /// Success ratio over the whole phase.
    pub success_ratio: f64,
}

/// What the update and rollback phases measured: a release of the server rolled out under load,
/// and what swarm and the clients made of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Update {
    /// The service.
    pub service: String,
    /// `restart`: every task replaced by one of the same spec (a new release of a working
    /// image); `broken`: a release whose tasks cannot start, which swarm must roll back.
    pub release: String,
    /// The policy swarm rolled it out with, as the stack sets it.
    pub policy: String,
    /// When the release was handed to swarm (Unix ms).
    pub released_ms: u64,
    /// When swarm said the update completed or the rollback did (Unix ms); `None` when it had
    /// not within the phase.
    pub finished_ms: Option<u64>,
    /// `completed`, `rolled back`, `paused`, `rollback paused`, or `unfinished`.
    pub outcome: String,
    /// Swarm's message about the update, when it gave one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// New tasks that came to run during the phase.
    pub tasks_started: u64,
    /// New tasks that failed or were rejected, with the first reason.
    pub tasks_failed: u64,
    /// See `tasks_failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_task_error: String,
    /// Failures from the release to the end of the phase, by class.
    pub errors: BTreeMap<String, u64>,
    /// Of those, the requests that failed for another reason than the server forgetting their
    /// session: what the rolling-update policy, the server's drain and the load balancer decide.
    pub failed_requests: u64,
    /// Requests answered "session unknown" (HTTP 404) because the replica that held their
    /// session was replaced: MCP sessions live in one replica, and the protocol asks the client
    /// to initialize again.
    pub sessions_moved: u64,
    /// First and last failure after the release (Unix ms).
    pub first_error_ms: Option<u64>,
    /// See `first_error_ms`.
    pub last_error_ms: Option<u64>,
    /// Client-visible recovery from the release, s (as in failover); 0 when clients saw no
    /// failure.
    pub recovery_s: Option<f64>,
    /// The `consecutive_ok` used.
    pub consecutive_ok: u64,
    /// Worst per-second corrected p99 from the release to its end, ms.
    pub p99_during_ms: f64,
    /// Sessions that lost their connection or server-side session after the release.
    pub sessions_dropped: u64,
    /// Of those, re-established.
    pub sessions_reestablished: u64,
    /// Success ratio over the whole phase.
    pub success_ratio: f64,
    /// Afterwards, the service ran the stack's own spec with all its replicas.
    pub restored: bool,
}

/// What the network phase measured: one replica's network impaired (netem) and restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Network {
    /// The service.
    pub service: String,
    /// The impaired replica's slot, task, container and node.
    pub slot: i64,
    /// See `slot`.
    pub task: String,
    /// See `slot`.
    pub container: String,
    /// See `slot`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// What was added to every packet it sent.
    pub impairment: crate::netem::Impairment,
    /// The interfaces it was set on.
    pub interfaces: Vec<String>,
    /// When it was set and removed (Unix ms); `cleared_ms` is `None` when it could not be.
    pub applied_ms: u64,
    /// See `applied_ms`.
    pub cleared_ms: Option<u64>,
    /// Why it could not be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_error: Option<String>,
    /// Interfaces still with netem after the removal (empty: proven gone).
    pub netem_left: Vec<String>,
    /// Failures from the moment it was set to the end of the phase, by class.
    pub errors: BTreeMap<String, u64>,
    /// First and last of them (Unix ms).
    pub first_error_ms: Option<u64>,
    /// See `first_error_ms`.
    pub last_error_ms: Option<u64>,
    /// Client-visible recovery, as in failover, from the moment it was set.
    pub recovery_s: Option<f64>,
    /// The `consecutive_ok` used.
    pub consecutive_ok: u64,
    /// Worst per-second corrected p99 in the seconds before it was set, ms.
    pub p99_before_ms: f64,
    /// Worst per-second corrected p99 while it was on, ms.
    pub p99_during_ms: f64,
    /// Sessions that lost their connection or server-side session after it was set.
    pub sessions_dropped: u64,
    /// Of those, re-established.
    pub sessions_reestablished: u64,
    /// Success ratio over the whole phase.
    pub success_ratio: f64,
}

/// One killed task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Kill {
    /// Its slot.
    pub slot: i64,
    /// Task and container killed.
    pub task: String,
    /// See `task`.
    pub container: String,
    /// The node it ran on (its ID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// When the engine of its node had killed it (Unix ms; an agent's time moved onto this
    /// machine's clock by the offset seen around the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_ms: Option<u64>,
    /// The node its replacement was scheduled on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub replacement_node: String,
    /// When the engine created the replacement task (its own timestamp, Unix ms).
    pub replacement_created_ms: Option<u64>,
    /// When the replacement reached `running` (healthy, where a healthcheck exists; Unix ms).
    pub replacement_running_ms: Option<u64>,
}

/// What the scaling phase measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scaling {
    /// The service scaled.
    pub service: String,
    /// Each replica count visited, in order.
    pub steps: Vec<ScaleStep>,
    /// Throughput at the largest count relative to a perfect multiple of the first step's
    /// (1.0: linear).
    pub linearity: Option<f64>,
    /// The service is back at its configured count.
    pub restored: bool,
}

/// One replica count under load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScaleStep {
    /// Replicas.
    pub replicas: u64,
    /// From the scale request to every replica running, s.
    pub converge_s: f64,
    /// Client-side requests/s over the measurement window.
    pub rps: f64,
    /// `rps / replicas`.
    pub rps_per_replica: f64,
    /// Success ratio over the window.
    pub success_ratio: f64,
    /// Corrected p99 over the window, ms.
    pub p99_ms: f64,
    /// Requests/s each replica served over the window, by slot (Prometheus; empty without).
    #[serde(default)]
    pub rps_by_slot: BTreeMap<String, f64>,
    /// Sessions open on each replica at the end of the window, by slot (Prometheus).
    #[serde(default)]
    pub sessions_by_slot: BTreeMap<String, f64>,
}

/// One incremental stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stage {
    /// Sessions asked for.
    pub sessions: u64,
    /// Sessions run (fewer when the pre-flight capped the stage).
    pub sessions_run: u64,
    /// `pass`, `fail` or `interrupted`.
    pub verdict: Verdict,
    /// The stage's load results.
    pub load: RunResult,
}

/// Something done to the swarm, or seen happen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    /// When (Unix ms).
    pub at_ms: u64,
    /// `phase`, `kill`, `replacement_created`, `replacement_running`, `recovered`, `scale`,
    /// `converged`, `hang`, `resume`, `release`, `replaced`, `task failed`, `update`,
    /// `restore`, `load` (load tasks: their plan, the nodes' clocks, where they ran).
    pub kind: String,
    /// Human detail.
    pub detail: String,
}

/// One second of load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Point {
    /// End of the second (Unix ms).
    pub at_ms: u64,
    /// The phase it belongs to.
    pub phase: String,
    /// Sessions open.
    pub sessions: u64,
    /// Requests completed in the second.
    pub requests: u64,
    /// Of which successful.
    pub ok: u64,
    /// Failed, by class.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Corrected latency of the second's requests, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// Server replicas the swarm was set to.
    pub replicas: u64,
}

/// One replica's usage at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceSample {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The replica's slot.
    pub slot: i64,
    /// CPU cores in use since the previous sample of this container (0 in a baseline).
    pub cpu_cores: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Read before the phases began: the replica's memory without load (no CPU figure yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub baseline: bool,
    /// The node the replica ran on (its ID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// The JSON Schema of every results.json, a test's or a load's: docs/results.schema.json is
/// this, checked in (a unit test keeps the two the same), and `swarmctl report schema` prints it.
pub fn json_schema() -> serde_json::Value {
    /// results.json: one of the two documents.
    #[derive(schemars::JsonSchema)]
    #[schemars(untagged)]
    #[allow(dead_code)]
    enum ResultsJson {
        /// `swarmctl test` or `validate`.
        Test(Box<TestRun>),
        /// `swarmctl load --out`.
        Load(Box<RunResult>),
    }
    let mut schema = serde_json::to_value(schemars::schema_for!(ResultsJson)).expect("a schema serializes");
    schema["title"] = format!("swarmctl results.json, schema_version {SCHEMA_VERSION}").into();
    schema
}

/// A results folder's results.json: a test's or validation's, or a bare `load`'s.
#[derive(Debug, Clone, PartialEq)]
pub enum Results {
    /// `test` or `validate`.
    Test(Box<TestRun>),
    /// `load --out`.
    Load(Box<RunResult>),
}

impl Results {
    /// Reads either kind; the error says which fields the text lacks.
    pub fn parse(text: &str) -> Result<Results, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let version = v["schema_version"].as_u64();
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(match version {
                Some(n) => format!("schema_version {n} (this swarmctl reads {SCHEMA_VERSION})"),
                None => "no schema_version: not swarmctl's results".into(),
            });
        }
        if v.get("kind").is_some() {
            serde_json::from_value(v).map(|r| Results::Test(Box::new(r))).map_err(|e| format!("test results: {e}"))
        } else if v.get("summary").is_some() {
            serde_json::from_value(v).map(|r| Results::Load(Box::new(r))).map_err(|e| format!("load results: {e}"))
        } else {
            Err("neither `kind` (test, validate) nor `summary` (load): not swarmctl's results".into())
        }
    }

    /// As a test run, which every report is drawn from: a load is a run of one phase, `load`,
    /// over the seconds of its timeline.jsonl.
    pub fn into_test_run(self, timeline: &[Point]) -> TestRun {
        match self {
            Results::Test(r) => *r,
            Results::Load(l) => of_load(*l, timeline),
        }
    }
}

/// The seconds of a load's timeline.jsonl, as points of its one phase, `load`; lines that are
/// not seconds (a line cut by a killed run) are skipped.
pub fn load_timeline(text: &str) -> Vec<Point> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<crate::load::engine::Second>(l).ok())
        .map(|s| Point {
            at_ms: s.t * 1000,
            phase: "load".into(),
            sessions: s.sessions,
            requests: s.requests,
            ok: s.ok,
            errors: s.errors,
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
            replicas: 0,
        })
        .collect()
}

/// A bare load as a test run of one phase: its thresholds are the verdict's reasons, and its
/// overall `p99<…` and `success>…` thresholds are drawn as the SLO.
fn of_load(l: RunResult, timeline: &[Point]) -> TestRun {
    use crate::load::workload::{Metric, Threshold};
    let parsed: Vec<Option<Threshold>> = l.thresholds.iter().map(|t| t.expr.parse().ok()).collect();
    let overall = |want: fn(&Metric) -> bool| {
        parsed.iter().flatten().find(|t| t.method.is_none() && want(&t.metric)).map(|t| t.bound)
    };
    let p99 = overall(|m| matches!(m, Metric::Percentile(p) if *p == 99.0));
    let success = overall(|m| matches!(m, Metric::Success));
    let finished_ms = (l.summary.duration_s * 1000.0) as u64;
    let reasons = l
        .thresholds
        .iter()
        .zip(&parsed)
        .map(|(t, parsed)| {
            let measured = match (parsed.as_ref().map(|p| &p.metric), t.actual.is_finite()) {
                (_, false) => "nothing".to_string(),
                (Some(Metric::Success), true) => format!("{:.3} %", t.actual * 100.0),
                (Some(Metric::Percentile(_)), true) => format!("{:.2} ms", t.actual),
                (None, true) => format!("{}", t.actual),
            };
            format!("{}: {} (measured {measured})", t.expr, if t.pass { "held" } else { "failed" })
        })
        .chain(l.error.clone())
        .collect();
    TestRun {
        schema_version: SCHEMA_VERSION,
        kind: "load".into(),
        stack: l.config.urls.join(", "),
        version: l.context.as_ref().map_or_else(|| "(not recorded)".into(), |c| c.swarmctl.clone()),
        context: l.context.clone(),
        started_ms: 0,
        finished_ms,
        verdict: l.verdict,
        error: l.error.clone(),
        slo: Slo { p99_ms: p99.unwrap_or(0.0), success_ratio: success.unwrap_or(0.0), ..Default::default() },
        phases: vec![Phase {
            name: "load".into(),
            verdict: l.verdict,
            reasons,
            started_ms: 0,
            finished_ms,
            load: Some(l),
            ..Default::default()
        }],
        timeline: timeline.to_vec(),
        ..Default::default()
    }
}

impl TestRun {
    /// The verdict from the phases: any error or interruption wins, then any failure.
    pub fn judge(&mut self) {
        if matches!(self.verdict, Verdict::Error | Verdict::Interrupted) {
            return;
        }
        let any = |v: Verdict| self.phases.iter().any(|p| p.verdict == v);
        self.verdict = if any(Verdict::Interrupted) {
            Verdict::Interrupted
        } else if any(Verdict::Error) || self.error.is_some() {
            Verdict::Error
        } else {
            Verdict::judged(false, !self.phases.is_empty() && self.phases.iter().all(|p| p.verdict.passed()))
        };
    }

    /// The process exit code DESIGN.md gives this verdict.
    pub fn exit_code(&self) -> Code {
        self.verdict.code()
    }
}

#[cfg(test)]
pub(crate) mod tests;
