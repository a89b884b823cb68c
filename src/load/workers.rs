//! Several processes in one run: each process may hold only so many sockets (20,000 open
//! files here), so a plan with N workers runs N copies of this binary on one shared schedule,
//! each given its share of the plan as `plan.json` in its own folder; the parent reads their
//! per-second measurements as they come, and merges their HDR histograms exactly.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::engine;
use super::plan::LoadPlan;
use super::results::{finish, Measured, Outcome, SessionCounts};
use super::stats::{ErrorClass, Stats, WireStats};
use crate::exit::Code;

#[derive(Serialize, Deserialize)]
struct WorkerSecond {
    t: u64,
    sessions: u64,
    stats: WireStats,
    live: LiveWire,
    /// The worker's resident memory at the second's end, KiB.
    #[serde(default)]
    rss_kib: u64,
}

/// A worker's live counters as of a second, for the parent's `Live` (what the failover
/// phase watches).
#[derive(Serialize, Deserialize, Default, Clone)]
struct LiveWire {
    dropped: u64,
    reestablished: u64,
    failures_total: u64,
    streak_reached_ms: u64,
    /// Failures since the previous second, with their times.
    failures: Vec<(u64, ErrorClass)>,
}

#[derive(Serialize, Deserialize)]
struct WorkerReport {
    stats: WireStats,
    sessions: SessionCounts,
    elapsed_s: f64,
    interrupted: bool,
    /// Its resident memory before its first session, KiB.
    #[serde(default)]
    rss_before_kib: u64,
}

/// The worker side: runs its share, writing each second and then the totals into `dir`.
pub async fn serve_as_worker(plan: Arc<LoadPlan>, dir: &Path, cancel: CancellationToken) -> anyhow::Result<Code> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut seconds =
        std::fs::File::create(dir.join("seconds.jsonl")).context("cannot create the worker's seconds file")?;
    let live = Arc::new(engine::Live::default());
    let mut failures_sent = 0;
    let watched = live.clone();
    let rss_before_kib = super::tally::rss_kib();
    let (stats, elapsed, interrupted) = engine::run(plan.clone(), cancel, live.clone(), |s, st| {
        let failures: Vec<(u64, ErrorClass)> = {
            let f = watched.failures.lock().unwrap_or_else(|p| p.into_inner());
            let new = f[failures_sent.min(f.len())..].to_vec();
            failures_sent = f.len();
            new
        };
        let live = LiveWire {
            dropped: watched.sessions_dropped.load(Relaxed),
            reestablished: watched.sessions_reestablished.load(Relaxed),
            failures_total: watched.failures_total.load(Relaxed),
            streak_reached_ms: watched.streak_reached_ms.load(Relaxed),
            failures,
        };
        let line = WorkerSecond {
            t: s.t,
            sessions: s.sessions,
            stats: WireStats::from(st),
            live,
            rss_kib: super::tally::rss_kib(),
        };
        let _ = writeln!(seconds, "{}", serde_json::to_string(&line).unwrap_or_default());
        let _ = seconds.flush();
    })
    .await;
    let report = WorkerReport {
        stats: WireStats::from(&stats),
        sessions: SessionCounts::of(&live),
        elapsed_s: elapsed.as_secs_f64(),
        interrupted,
        rss_before_kib,
    };
    let tmp = dir.join("report.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&report)?).context("cannot write the worker report")?;
    std::fs::rename(&tmp, dir.join("report.json")).context("cannot write the worker report")?;
    Ok(if interrupted { Code::Interrupted } else { Code::Ok })
}

struct Worker {
    child: Child,
    dir: PathBuf,
    offset: u64,
    done: bool,
    last_t: u64,
    live: LiveWire,
}

impl Drop for Worker {
    /// A parent that gives up (an error, a panic) takes its workers with it; one that waited
    /// for them ends nothing (the exit status is already known).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parent side: starts the workers, merges their seconds into the timeline as they come,
/// forwards Ctrl-C to them (by their PIDs), and merges their totals at the end.
pub async fn run(
    plan: &LoadPlan,
    out: Option<&Path>,
    cancel: CancellationToken,
    live: Arc<engine::Live>,
    on_second: &mut dyn FnMut(&engine::Second, &Stats),
) -> anyhow::Result<Outcome> {
    let n = plan.workers.min(plan.sessions);
    // Each worker must hold its share; say so now rather than as a worker's failure.
    super::check_open_files(plan.sessions.div_ceil(n) * plan.sockets_per_session()).context("per worker")?;
    let exe = std::env::current_exe().context("cannot find this swarmctl binary to start workers")?;
    let base = match out {
        Some(dir) => dir.join("workers"),
        None => std::env::temp_dir().join(format!("swarmctl-load-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    // One schedule for all (`LoadPlan::share`).
    let t0 = SystemTime::now() + Duration::from_millis(1500);
    let t0_ms = t0.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    // The workers are the parallelism: each one's runtime gets its share of the cores, not all
    // of them (more threads than cores only add wake-ups and switches between them). A
    // TOKIO_WORKER_THREADS the user set wins.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = std::env::var("TOKIO_WORKER_THREADS").unwrap_or_else(|_| (cores / n).max(1).to_string());
    let mut workers = Vec::with_capacity(n);
    for k in 0..n {
        let dir = base.join(format!("worker-{k}"));
        // An earlier run's files in the same --out would be read as this run's.
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot clear {}", dir.display()))
            }
            _ => {}
        }
        std::fs::create_dir_all(&dir)?;
        plan.share(k, n, t0_ms).write(&dir.join("plan.json"))?;
        let log = std::fs::File::create(dir.join("log.txt"))?;
        let child = Command::new(&exe)
            .args(["-q", "load-worker"])
            .arg(&dir)
            .env("TOKIO_WORKER_THREADS", &threads)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start a load worker")?;
        workers.push(Worker { child, dir, offset: 0, done: false, last_t: 0, live: LiveWire::default() });
    }

    // The parent's memory counts too: it is part of what the load costs.
    let mut tally = super::tally::Tally::new(plan, n as u64 + 1, super::tally::rss_kib());
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut peak = 0;
    let mut emitted = 0;
    let mut signalled = false;
    loop {
        if cancel.is_cancelled() && !signalled {
            signalled = true;
            for w in &workers {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(w.child.id() as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
        }
        for w in workers.iter_mut() {
            read_seconds(w, &mut pending, &live)?;
            if !w.done {
                w.done = w.child.try_wait()?.is_some();
                if w.done {
                    read_seconds(w, &mut pending, &live)?;
                }
            }
        }
        merge_live(&workers, &live);
        // A second is complete once every worker still running has reported it.
        let running: Vec<u64> = workers.iter().filter(|w| !w.done).map(|w| w.last_t).collect();
        let complete_up_to = running.iter().min().copied().unwrap_or(u64::MAX);
        while let Some((&t, _)) = pending.iter().next() {
            if t > complete_up_to {
                break;
            }
            let p = pending.remove(&t).expect("present");
            peak = peak.max(p.sessions);
            emitted = t;
            let second = engine::second_of(t, &p.stats, p.sessions);
            tally.second(&second, &p.stats, p.rss_kib + super::tally::rss_kib());
            on_second(&second, &p.stats);
        }
        if workers.iter().all(|w| w.done) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled(), if !signalled => {}
        }
    }
    let _ = emitted;

    let mut total = Stats::default();
    let mut counts = SessionCounts::default();
    let (mut elapsed, mut interrupted) = (0f64, signalled);
    for w in &mut workers {
        let status = w.child.wait()?;
        let report_path = w.dir.join("report.json");
        let Ok(bytes) = std::fs::read(&report_path) else {
            let log = std::fs::read_to_string(w.dir.join("log.txt")).unwrap_or_default();
            bail!(
                "a load worker ended ({status}) without a report; its log ({}):\n{}",
                w.dir.join("log.txt").display(),
                log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        };
        let report: WorkerReport = serde_json::from_slice(&bytes).context("a worker report does not parse")?;
        total.merge(&Stats::try_from(&report.stats).map_err(anyhow::Error::msg)?);
        counts.add(report.sessions);
        tally.before(report.rss_before_kib);
        elapsed = elapsed.max(report.elapsed_s);
        interrupted |= report.interrupted;
    }
    if out.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    counts.peak = counts.peak.max(peak);
    let elapsed = Duration::from_secs_f64(elapsed);
    finish(plan, out, Measured { stats: total, elapsed, sessions: counts, tally, interrupted })
}

/// The workers' counters into the parent's `Live`: sums, and the streak goal reached once
/// every worker has reached it since its own last failure (when the last one did).
fn merge_live(workers: &[Worker], live: &engine::Live) {
    let sum = |f: fn(&LiveWire) -> u64| workers.iter().map(|w| f(&w.live)).sum::<u64>();
    live.sessions_dropped.store(sum(|l| l.dropped), Relaxed);
    live.sessions_reestablished.store(sum(|l| l.reestablished), Relaxed);
    live.failures_total.store(sum(|l| l.failures_total), Relaxed);
    // 0 while any worker has not reached it.
    let all = workers
        .iter()
        .try_fold(0, |last, w| (w.live.streak_reached_ms > 0).then(|| last.max(w.live.streak_reached_ms)));
    live.streak_reached_ms.store(all.unwrap_or(0), Relaxed);
}

/// A second some workers have reported: sessions open, measurements and memory, summed.
#[derive(Default)]
struct Pending {
    sessions: u64,
    stats: Stats,
    rss_kib: u64,
}

fn read_seconds(w: &mut Worker, pending: &mut BTreeMap<u64, Pending>, live: &engine::Live) -> anyhow::Result<()> {
    let path = w.dir.join("seconds.jsonl");
    let Ok(mut f) = std::fs::File::open(&path) else { return Ok(()) };
    f.seek(SeekFrom::Start(w.offset))?;
    let mut reader = std::io::BufReader::new(f);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break; // a line still being written is read next time
        }
        w.offset += n as u64;
        let s: WorkerSecond =
            serde_json::from_str(line.trim_end()).context("a worker's seconds file does not parse")?;
        let stats = Stats::try_from(&s.stats).map_err(anyhow::Error::msg)?;
        let entry = pending.entry(s.t).or_default();
        entry.sessions += s.sessions;
        entry.stats.merge(&stats);
        entry.rss_kib += s.rss_kib;
        w.last_t = w.last_t.max(s.t);
        if !s.live.failures.is_empty() {
            let mut f = live.failures.lock().unwrap_or_else(|p| p.into_inner());
            let room = engine::MAX_FAILURE_EVENTS.saturating_sub(f.len());
            f.extend(s.live.failures.iter().take(room).copied());
        }
        w.live = LiveWire { failures: Vec::new(), ..s.live };
    }
    Ok(())
}
