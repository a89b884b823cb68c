//! `swarmctl load`: the MCP load engine, usable against any MCP endpoint without a swarm.
//!
//! plan (the whole input, as data) → pre-flight (open files, ports) → probe (the target has
//! the tools the mix calls) → engine (scheduled sessions and requests, in this process or
//! split over worker processes) → stats (HDR histograms, error classes, per-second timeline)
//! → results (`results.json`, the contract, and `SUMMARY.txt` rendered from it). The load
//! engine never touches the Docker Engine.

pub mod client;
pub mod engine;
mod http1;
pub mod plan;
pub mod preflight;
pub mod probe;
pub mod results;
pub mod stats;
pub mod stream;
pub mod tally;
pub mod workers;
pub mod workload;
mod ws1;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

pub use client::Target;
pub use plan::LoadPlan;
pub use preflight::{check_open_files, check_ports, local_port_range, sessions_per_process};
pub use results::{
    detail_lines, summary_text, write_folder, write_refused, Generator, MethodSummary, NodeClock, Outcome, RunConfig,
    RunResult, Summary, ThresholdResult, SCHEMA_VERSION,
};
use results::{Measured, SessionCounts};
use stats::Stats;

/// Runs the load; writes the plan, and the timeline as it goes, into `out` when given; each
/// second goes to `progress`.
pub async fn run(
    plan: &LoadPlan,
    out: Option<&Path>,
    cancel: tokio_util::sync::CancellationToken,
    progress: &dyn crate::progress::Progress,
) -> anyhow::Result<Outcome> {
    let mut timeline = match out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            plan.redacted().write(&dir.join("plan.json"))?;
            let path = dir.join("timeline.jsonl");
            Some(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => None,
    };
    let label = format!("load: {} sessions", plan.sessions);
    progress.begin("load", &label, plan.run_time().as_secs().max(1), "s");
    let outcome = run_observed(plan, out, cancel, Arc::new(engine::Live::default()), |s, _| {
        show_second(s, timeline.as_mut(), progress)
    })
    .await;
    progress.end("load", "");
    outcome
}

/// Runs the load (in this process, or over `plan.workers` processes), handing each second and
/// its measurements to the caller: the test phases fold them into their own timeline and
/// watch failures as they happen through `live` (from the workers' reports when there are
/// several processes, a second late). Writes results.json and SUMMARY.txt into `out`, but no
/// timeline.
pub async fn run_observed(
    plan: &LoadPlan,
    out: Option<&Path>,
    cancel: tokio_util::sync::CancellationToken,
    live: Arc<engine::Live>,
    mut on_second: impl FnMut(&engine::Second, &Stats),
) -> anyhow::Result<Outcome> {
    plan.check()?;
    check_ports(plan, local_port_range())?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if plan.workers > 1 {
        return workers::run(plan, out, cancel, live, &mut on_second).await;
    }
    check_open_files(plan.sessions * plan.sockets_per_session())?;
    let shared = Arc::new(plan.clone());
    let mut tally = tally::Tally::new(plan, 1, tally::rss_kib());
    let (stats, elapsed, interrupted) = engine::run(shared, cancel, live.clone(), |s, st| {
        tally.second(&s, st, tally::rss_kib());
        on_second(&s, st)
    })
    .await;
    let sessions = SessionCounts::of(&live);
    results::finish(plan, out, Measured { stats, elapsed, sessions, tally, interrupted, lost: Vec::new() })
}

/// One worker's share of a run split over processes: reads its plan from `dir/plan.json`,
/// reports through files in `dir` (its parent prints and judges); returns Ok, or Interrupted.
/// Without `dir`, the task of a load service ([`TASK_PLAN`], [`TASK_SLOT`]), reporting on
/// stdout.
pub async fn run_worker(
    dir: Option<&Path>,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<crate::exit::Code> {
    let (plan, sink) = match dir {
        Some(dir) => (LoadPlan::read(&dir.join("plan.json"))?, workers::Sink::Dir(dir.to_path_buf())),
        None => task_share(|name| std::env::var(name).ok())?,
    };
    check_open_files(plan.sessions * plan.sockets_per_session())?;
    workers::serve_as_worker(Arc::new(plan), sink, cancel).await
}

/// The environment variable that gives a load task the whole plan (JSON), its `workers` the
/// number of tasks and its `start_at_ms` their common start.
pub const TASK_PLAN: &str = "SWARMCTL_LOAD_PLAN";
/// The one that gives a load task its slot (1 to the number of tasks): which share is its.
pub const TASK_SLOT: &str = "SWARMCTL_LOAD_SLOT";
/// The one that gives a load task its node's ID.
pub const TASK_NODE: &str = "SWARMCTL_LOAD_NODE";
/// The one that gives every node's clock offset from the controller's (JSON, node ID to
/// milliseconds): a task starts when its clock reads the common start plus its node's.
pub const TASK_CLOCKS: &str = "SWARMCTL_LOAD_CLOCKS";

/// A load task's share, from its environment (`env`).
fn task_share(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<(LoadPlan, workers::Sink)> {
    let var = |name: &str| env(name).with_context(|| format!("no {name}: DIR or the task's environment"));
    let plan: LoadPlan =
        serde_json::from_str(&var(TASK_PLAN)?).with_context(|| format!("{TASK_PLAN} does not parse"))?;
    let slot: u64 = var(TASK_SLOT)?.parse().with_context(|| format!("{TASK_SLOT} is not a number"))?;
    let n = plan.workers;
    if slot == 0 || slot as usize > n {
        anyhow::bail!("{TASK_SLOT} {slot} is not within 1 to {n}, the number of tasks");
    }
    let t0 = plan.start_at_ms.context("the plan of a load task has no start time")?;
    let offsets: std::collections::BTreeMap<String, i64> = match env(TASK_CLOCKS) {
        Some(json) => serde_json::from_str(&json).with_context(|| format!("{TASK_CLOCKS} does not parse"))?,
        None => Default::default(),
    };
    let offset = env(TASK_NODE).and_then(|node| offsets.get(&node).copied()).unwrap_or(0);
    Ok((plan.share(slot as usize - 1, n, t0.saturating_add_signed(offset)), workers::Sink::Stdout { slot }))
}

/// Appends a second to the timeline file and shows it.
pub(crate) fn show_second(
    s: &engine::Second,
    timeline: Option<&mut std::fs::File>,
    progress: &dyn crate::progress::Progress,
) {
    if let Some(f) = timeline {
        let _ = writeln!(f, "{}", serde_json::to_string(s).unwrap_or_default());
        let _ = f.flush();
    }
    let errors: u64 = s.errors.values().sum();
    progress.set(
        "load",
        s.t,
        &format!("sessions {}  req/s {}  p99 {:.1} ms  errors {errors}", s.sessions, s.requests, s.p99_ms),
    );
    progress.tick(&format!(
        "t={:>4}s  sessions {:>6}  req/s {:>8}  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {errors}",
        s.t, s.sessions, s.requests, s.p50_ms, s.p99_ms
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_starts_its_share_when_its_nodes_clock_reads_the_common_start_plus_its_offset() {
        let target = client::Target::parse("http://10.0.1.5:8080/mcp", false, false).unwrap();
        let mut plan = LoadPlan::toward(vec![target]);
        (plan.sessions, plan.ramp, plan.workers, plan.start_at_ms) = (30, 30.0, 3, Some(1_000_000));
        let json = serde_json::to_string(&plan).unwrap();
        let env = |node: &'static str, slot: &'static str| {
            let json = json.clone();
            move |name: &str| match name {
                TASK_PLAN => Some(json.clone()),
                TASK_SLOT => Some(slot.to_string()),
                TASK_NODE => Some(node.to_string()),
                TASK_CLOCKS => Some(r#"{"ahead":250,"behind":-40}"#.to_string()),
                _ => None,
            }
        };
        let start = |node, slot| task_share(env(node, slot)).unwrap().0.start_at_ms.unwrap();
        // Slot 2's sessions are due 1/30 s after slot 1's, on the node's own clock.
        assert_eq!(start("ahead", "1"), 1_000_250);
        assert_eq!(start("behind", "2"), 999_960 + 33);
        assert_eq!(start("unmeasured", "3"), 1_000_066, "a node not measured starts by its own clock");
        let (share, sink) = task_share(env("ahead", "3")).unwrap();
        assert_eq!((share.sessions, share.workers), (10, 1));
        assert!(matches!(sink, workers::Sink::Stdout { slot: 3 }));
        let err = task_share(env("ahead", "4")).unwrap_err().to_string();
        assert_eq!(err, "SWARMCTL_LOAD_SLOT 4 is not within 1 to 3, the number of tasks");
    }
}
