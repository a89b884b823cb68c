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

/// Where a worker writes its seconds and its report.
#[derive(Debug)]
pub enum Sink {
    /// Files in its folder (`seconds.jsonl`, `report.json`), which its parent process reads.
    Dir(PathBuf),
    /// Lines on stdout (`swarmctl-load <slot> second|report <json>`): the task of a load
    /// service, read through the service's logs ([`demux`]).
    Stdout {
        /// Its task's slot.
        slot: u64,
    },
}

/// What starts every line a load task writes for its controller.
const WIRE: &str = "swarmctl-load";
/// Failure events one second's line carries at most: a line stays well under the 16 KiB at
/// which the engine splits log messages.
const MAX_FAILURES_PER_LINE: usize = 200;

/// A line of a load task's output into its folder under `base` (`task-<slot>/`), as a local
/// worker would have written it; other lines are not the task's measurements and are left.
/// The slot it came from.
pub fn demux(line: &str, base: &Path) -> anyhow::Result<Option<u64>> {
    let mut parts = line.splitn(4, ' ');
    if parts.next() != Some(WIRE) {
        return Ok(None);
    }
    let (Some(slot), Some(kind), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("a load task wrote a line cut short: {line:.80}");
    };
    let slot: u64 = slot.parse().with_context(|| format!("a load task wrote a line without its slot: {line:.80}"))?;
    let dir = base.join(format!("task-{slot}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    match kind {
        "second" => {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("seconds.jsonl"))?;
            writeln!(f, "{json}")?;
        }
        "report" => {
            let tmp = dir.join("report.json.tmp");
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, dir.join("report.json"))?;
        }
        other => bail!("a load task wrote a line of an unknown kind `{other}`"),
    }
    Ok(Some(slot))
}

/// The worker side: runs its share, writing each second and then the totals to `sink`.
pub async fn serve_as_worker(plan: Arc<LoadPlan>, sink: Sink, cancel: CancellationToken) -> anyhow::Result<Code> {
    let mut seconds: Box<dyn Write + Send> = match &sink {
        Sink::Dir(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            Box::new(
                std::fs::File::create(dir.join("seconds.jsonl")).context("cannot create the worker's seconds file")?,
            )
        }
        Sink::Stdout { .. } => Box::new(std::io::stdout()),
    };
    let prefix = match &sink {
        Sink::Dir(_) => String::new(),
        Sink::Stdout { slot } => format!("{WIRE} {slot} second "),
    };
    let live = Arc::new(engine::Live::default());
    let mut failures_sent = 0;
    let watched = live.clone();
    let rss_before_kib = super::tally::rss_kib();
    let (stats, elapsed, interrupted) = engine::run(plan.clone(), cancel, live.clone(), |s, st| {
        let failures: Vec<(u64, ErrorClass)> = {
            let f = watched.failures.lock().unwrap_or_else(|p| p.into_inner());
            let from = failures_sent.min(f.len());
            let new = f[from..f.len().min(from + MAX_FAILURES_PER_LINE)].to_vec();
            failures_sent = from + new.len();
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
        let _ = writeln!(seconds, "{prefix}{}", serde_json::to_string(&line).unwrap_or_default());
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
    match &sink {
        Sink::Dir(dir) => {
            let tmp = dir.join("report.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&report)?).context("cannot write the worker report")?;
            std::fs::rename(&tmp, dir.join("report.json")).context("cannot write the worker report")?;
        }
        Sink::Stdout { slot } => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{WIRE} {slot} report {}", serde_json::to_string(&report)?)?;
            out.flush()?;
        }
    }
    Ok(if interrupted { Code::Interrupted } else { Code::Ok })
}

/// The worker processes of one run, wherever they run: child processes of this one
/// ([`run`]), or the tasks of a swarm service (`phase::swarm`). Each writes its seconds and
/// its report into its own folder, which [`merge`] reads.
#[async_trait::async_trait]
pub trait Fleet: Send {
    /// Each worker's folder.
    fn dirs(&self) -> Vec<PathBuf>;
    /// Whether each worker has ended (in the order of `dirs`).
    async fn ended(&mut self) -> anyhow::Result<Vec<bool>>;
    /// Asks every worker to stop, drain what is in flight and report (Ctrl-C).
    async fn interrupt(&mut self);
    /// Why worker `k` ended without its report, with where to look.
    async fn lost(&mut self, k: usize) -> String;
}

/// Child processes of this one, on this machine.
struct Local {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Local {
    /// A parent that gives up (an error, a panic) takes its workers with it; one that waited
    /// for them ends nothing (the exit status is already known).
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[async_trait::async_trait]
impl Fleet for Local {
    fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    async fn ended(&mut self) -> anyhow::Result<Vec<bool>> {
        self.children.iter_mut().map(|c| Ok(c.try_wait()?.is_some())).collect()
    }

    /// By their PIDs.
    async fn interrupt(&mut self) {
        for c in &self.children {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGINT);
        }
    }

    async fn lost(&mut self, k: usize) -> String {
        let status = self.children[k].wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let path = self.dirs[k].join("log.txt");
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!(
            "load worker {k} ended ({status}) without a report; its log ({}):\n{}",
            path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
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
    let mut fleet = Local { children: Vec::with_capacity(n), dirs: Vec::with_capacity(n) };
    for k in 0..n {
        let dir = base.join(format!("worker-{k}"));
        clear(&dir)?;
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
        fleet.children.push(child);
        fleet.dirs.push(dir);
    }
    let outcome = merge(plan, out, &mut fleet, cancel, live, on_second).await;
    if out.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    outcome
}

/// Removes an earlier run's folder of a worker: its files would be read as this run's.
pub fn clear(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot clear {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// One worker as the merge follows it.
struct Followed {
    dir: PathBuf,
    offset: u64,
    done: bool,
    last_t: u64,
    live: LiveWire,
}

/// Follows `fleet`'s workers until all have ended: merges each second into the timeline once
/// every worker still running has reported it, forwards Ctrl-C, and merges their totals
/// exactly. A worker that ends without its report is named in the results (`workers_lost`),
/// and what its seconds carried is counted.
pub async fn merge(
    plan: &LoadPlan,
    out: Option<&Path>,
    fleet: &mut dyn Fleet,
    cancel: CancellationToken,
    live: Arc<engine::Live>,
    on_second: &mut dyn FnMut(&engine::Second, &Stats),
) -> anyhow::Result<Outcome> {
    let mut workers: Vec<Followed> = fleet
        .dirs()
        .into_iter()
        .map(|dir| Followed { dir, offset: 0, done: false, last_t: 0, live: LiveWire::default() })
        .collect();
    // The parent's memory counts too: it is part of what the load costs.
    let mut tally = super::tally::Tally::new(plan, workers.len() as u64 + 1, super::tally::rss_kib());
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut peak = 0;
    let mut signalled = false;
    loop {
        if cancel.is_cancelled() && !signalled {
            signalled = true;
            fleet.interrupt().await;
        }
        let ended = fleet.ended().await?;
        for (w, ended) in workers.iter_mut().zip(ended) {
            read_seconds(w, &mut pending, &live)?;
            if !w.done && ended {
                w.done = true;
                read_seconds(w, &mut pending, &live)?;
            }
        }
        merge_live(&workers, &live);
        // A second is complete once every worker still running has reported it.
        let complete_up_to = workers.iter().filter(|w| !w.done).map(|w| w.last_t).min().unwrap_or(u64::MAX);
        while let Some((&t, _)) = pending.iter().next() {
            if t > complete_up_to {
                break;
            }
            let p = pending.remove(&t).expect("present");
            peak = peak.max(p.sessions);
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

    let mut total = Stats::default();
    let mut counts = SessionCounts::default();
    let mut lost = Vec::new();
    let (mut elapsed, mut interrupted) = (0f64, signalled);
    for (k, w) in workers.iter().enumerate() {
        let Ok(bytes) = std::fs::read(w.dir.join("report.json")) else {
            // Read again only here: the seconds' sum is its totals when it leaves no report.
            let (sent, sessions) = seconds_sum(&w.dir)?;
            total.merge(&sent);
            counts.peak = counts.peak.max(sessions);
            // It had opened at least those open at its last second.
            counts.opened += sessions;
            lost.push(format!(
                "{}; counted up to its last second: {} requests, {sessions} sessions open",
                fleet.lost(k).await,
                sent.totals().0
            ));
            continue;
        };
        let report: WorkerReport = serde_json::from_slice(&bytes).context("a worker report does not parse")?;
        total.merge(&Stats::try_from(&report.stats).map_err(anyhow::Error::msg)?);
        counts.add(report.sessions);
        tally.before(report.rss_before_kib);
        elapsed = elapsed.max(report.elapsed_s);
        interrupted |= report.interrupted;
    }
    counts.peak = counts.peak.max(peak);
    let elapsed = Duration::from_secs_f64(elapsed);
    finish(plan, out, Measured { stats: total, elapsed, sessions: counts, tally, interrupted, lost })
}

/// The workers' counters into the parent's `Live`: sums, and the streak goal reached once
/// every worker has reached it since its own last failure (when the last one did).
fn merge_live(workers: &[Followed], live: &engine::Live) {
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

fn parse_second(line: &str) -> anyhow::Result<(WorkerSecond, Stats)> {
    let s: WorkerSecond = serde_json::from_str(line.trim_end()).context("a worker's seconds file does not parse")?;
    let stats = Stats::try_from(&s.stats).map_err(anyhow::Error::msg)?;
    Ok((s, stats))
}

/// Everything a worker's seconds carried, and the sessions open at its last one.
fn seconds_sum(dir: &Path) -> anyhow::Result<(Stats, u64)> {
    let text = std::fs::read_to_string(dir.join("seconds.jsonl")).unwrap_or_default();
    let mut sum = (Stats::default(), 0);
    // A last line cut short (the worker died writing it) carries nothing.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let (s, stats) = parse_second(line)?;
        sum.0.merge(&stats);
        sum.1 = s.sessions;
    }
    Ok(sum)
}

fn read_seconds(w: &mut Followed, pending: &mut BTreeMap<u64, Pending>, live: &engine::Live) -> anyhow::Result<()> {
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
        let (s, stats) = parse_second(&line)?;
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
