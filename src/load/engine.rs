//! The run: one task per virtual client, each started at its scheduled time, every request
//! scheduled before it is sent; a collector that folds the shards into the timeline once a
//! second. Stops by itself at the end of the run, or early on cancellation (then it drains:
//! requests in flight are answered or time out, sessions close).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::client::Session;
use super::plan::LoadPlan;
use super::stats::{ErrorClass, Failure, Shards, Stats};
use super::stream::Wire;
use super::workload::Model;

/// Live counters the progress display and the test phases read (relaxed: neither needs
/// ordering between counters).
#[derive(Debug, Default)]
pub struct Live {
    /// Sessions open now.
    pub sessions_open: AtomicU64,
    /// Most sessions open at once.
    pub sessions_peak: AtomicU64,
    /// Successful requests since the last failed one (any session): the failover phase's
    /// "N consecutive successes".
    pub ok_streak: AtomicU64,
    /// Sessions that lost their connection or their server-side session.
    pub sessions_dropped: AtomicU64,
    /// Of those, re-established (reconnected and initialized again).
    pub sessions_reestablished: AtomicU64,
    /// Failures of any kind (failed requests and failed connection attempts).
    pub failures_total: AtomicU64,
    /// When each failure happened (Unix ms) and its class, the first `MAX_FAILURE_EVENTS`:
    /// a failover timeline needs the exact moments, not per-second counts.
    pub failures: std::sync::Mutex<Vec<(u64, ErrorClass)>>,
    /// The streak that counts as recovered (0: none is watched).
    pub streak_goal: AtomicU64,
    /// When the streak reached `streak_goal` (Unix ms); 0 until it does, and again after any
    /// failure. Across worker processes: when the last of them reached it.
    pub streak_reached_ms: AtomicU64,
    /// When the first session was due (Unix ms).
    pub first_due_ms: AtomicU64,
    /// Sessions opened for the first time (re-established ones are not counted again).
    pub sessions_opened: AtomicU64,
    /// When the latest of those opened (Unix ms): the ramp's real end.
    pub last_opened_ms: AtomicU64,
    /// Sessions that have made their first attempt to get in, whatever came of it.
    pub first_attempts: AtomicU64,
}

/// A run none of whose first this-many sessions could get in, in `GIVE_UP_AFTER_S` seconds of
/// trying, stops there: the target is not there, or not an MCP server, and more attempts
/// would only say so again. (A server that comes up within them is waited for.)
pub const GIVE_UP_AFTER: usize = 100;
/// See `GIVE_UP_AFTER`.
pub const GIVE_UP_AFTER_S: u64 = 5;

/// Failures kept with their time; beyond this only counts are kept.
pub const MAX_FAILURE_EVENTS: usize = 200_000;

impl Live {
    fn record(&self, outcome: Result<(), ErrorClass>) {
        match outcome {
            Ok(()) => {
                let streak = self.ok_streak.fetch_add(1, Relaxed) + 1;
                if streak == self.streak_goal.load(Relaxed) {
                    self.streak_reached_ms.store(crate::units::unix_now_ms(), Relaxed);
                }
            }
            Err(class) => self.failed(class),
        }
    }

    /// A failure of any kind (a request, or a connection attempt): it ends the streak.
    fn failed(&self, class: ErrorClass) {
        self.ok_streak.store(0, Relaxed);
        self.streak_reached_ms.store(0, Relaxed);
        self.failures_total.fetch_add(1, Relaxed);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() < MAX_FAILURE_EVENTS {
            f.push((crate::units::unix_now_ms(), class));
        }
    }
}

/// What every session of a run shares: the plan, and what connections are opened with.
struct Run {
    plan: Arc<LoadPlan>,
    wire: Arc<Wire>,
}

/// One second of the run, as timeline.jsonl records it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Sessions open at the end of the second.
    pub sessions: u64,
    /// Requests completed in the second.
    pub requests: u64,
    /// Of which successful.
    pub ok: u64,
    /// Errors by class.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Corrected latency of the second's requests, ms.
    pub p50_ms: f64,
    /// Corrected p99 of the second's requests, ms.
    pub p99_ms: f64,
}

fn us(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Runs `plan`; `on_second` hears each second (for the timeline file and the progress line).
/// Returns the merged measurements, and whether the run was cut short by `cancel`.
pub async fn run(
    plan: Arc<LoadPlan>,
    cancel: CancellationToken,
    live: Arc<Live>,
    mut on_second: impl FnMut(Second, &Stats),
) -> (Stats, Duration, bool) {
    let shards = Arc::new(Shards::new(16));
    // One start, on the wall clock (shared with other worker processes) and on this one.
    let start_at = plan.start_at().unwrap_or_else(|| std::time::SystemTime::now() + Duration::from_millis(50));
    let start = Instant::now() + start_at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    let end = start + plan.run_time();
    live.first_due_ms
        .store(start_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64, Relaxed);
    live.streak_goal.store(plan.streak_goal, Relaxed);
    let mut tasks = tokio::task::JoinSet::new();
    // The sessions' own stop: the user's, or this run giving up.
    let stop = cancel.child_token();
    let give_up_after = plan.sessions.min(GIVE_UP_AFTER) as u64;
    // Checked with the plan; a failure here leaves TLS targets to fail their handshakes.
    let run = Arc::new(Run { wire: Arc::new(plan.wire().unwrap_or_default()), plan: plan.clone() });
    for i in 0..plan.sessions {
        let due = start + Duration::from_secs_f64(i as f64 / plan.ramp);
        let (run, shards, live, cancel) = (run.clone(), shards.clone(), live.clone(), stop.clone());
        tasks.spawn(session(i, due, end, run, shards, live, cancel));
    }
    let mut tick = tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut t = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                t += 1;
                let s = shards.take_second();
                on_second(second(t, &s, &live), &s);
                let nobody_in = live.sessions_opened.load(Relaxed) == 0;
                if nobody_in && t >= GIVE_UP_AFTER_S && live.first_attempts.load(Relaxed) >= give_up_after {
                    stop.cancel();
                }
            }
            done = tasks.join_next() => {
                if done.is_none() {
                    break;
                }
            }
        }
    }
    let s = shards.take_second();
    if s.totals().0 > 0 {
        on_second(second(t + 1, &s, &live), &s);
    }
    let elapsed = start.elapsed();
    (shards.total(), elapsed, cancel.is_cancelled())
}

fn second(t: u64, s: &Stats, live: &Live) -> Second {
    second_of(t, s, live.sessions_open.load(Relaxed))
}

/// The timeline entry of second `t` from its measurements.
pub fn second_of(t: u64, s: &Stats, sessions: u64) -> Second {
    let (requests, ok) = s.totals();
    let (c, _) = s.latency();
    Second {
        t,
        sessions,
        requests,
        ok,
        errors: s.errors.iter().map(|(k, v)| (k.name().to_string(), *v)).collect(),
        p50_ms: super::stats::LatencyMs::at(&c, 50.0),
        p99_ms: super::stats::LatencyMs::at(&c, 99.0),
    }
}

/// When a session tries to get in again: after a random delay, as real clients do, so that
/// the sessions a dead replica or load balancer held do not all come back in the same
/// millisecond. "Full jitter": uniform in `[0, window)`, the window 1 s after a loss and
/// doubling (from 200 ms, up to 5 s) with each failed attempt in a row. The draw is a hash of
/// the session and the attempt: the same run spreads its reconnections the same way.
fn retry_delay(session: usize, failed: u32) -> Duration {
    let window = if failed == 0 {
        Duration::from_secs(1)
    } else {
        (Duration::from_millis(100) * 2u32.saturating_pow(failed.min(6))).min(Duration::from_secs(5))
    };
    window.mul_f64(crate::mix::unit(((session as u64) << 8) | u64::from(failed.min(255))))
}

/// One attempt to get in: connect (to target `i + shift`) and initialize, and open the GET
/// stream if asked, within the timeout, counted as an `initialize` request. A session the
/// server forgot (HTTP 404) initializes again on the connection it still has.
async fn open(
    plan: &LoadPlan,
    wire: &Arc<Wire>,
    shards: &Shards,
    live: &Live,
    i: usize,
    shift: usize,
    forgotten: Option<Session>,
) -> Result<Session, Failure> {
    let source = (!plan.sources.is_empty()).then(|| plan.sources[i % plan.sources.len()]);
    let target = &plan.targets[(i + shift) % plan.targets.len()];
    let started = Instant::now();
    let attempt = async {
        let mut s = match forgotten {
            Some(s) => s,
            None => Session::connect(target, source, wire.clone()).await?,
        };
        s.initialize(1).await?;
        if plan.get_stream {
            s.listen().await?;
        }
        Ok::<_, Failure>(s)
    };
    let outcome = match tokio::time::timeout(plan.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(timed_out(plan, "initialize")),
    };
    let took = us(started.elapsed());
    shards.with(i, |st| {
        st.record("initialize", outcome.as_ref().map(|_| ()).map_err(|f| f.class), took, took, 0);
        if let Err(f) = &outcome {
            st.sample(f);
        }
    });
    if let Err(f) = &outcome {
        // A client cannot get in: that is a failure the user sees, like a failed call.
        live.failed(f.class);
    }
    outcome
}

/// A request that got no answer within the plan's timeout.
fn timed_out(plan: &LoadPlan, what: &str) -> Failure {
    Failure::new(ErrorClass::Timeout, format!("no answer to {what} within {:?}", plan.timeout))
}

/// Virtual client `i`: gets in at `due`, then sends its requests on schedule until `end`.
/// Whenever it has no working session (not yet, lost, forgotten by the server) it tries to get
/// one, on and on until the run ends, each failed attempt moving it on to the next target for
/// good, as a client with several addresses would: the sessions of a replica (or a
/// load-balancer instance) that died reconnect to the others.
async fn session(
    i: usize,
    due: Instant,
    end: Instant,
    run: Arc<Run>,
    shards: Arc<Shards>,
    live: Arc<Live>,
    cancel: CancellationToken,
) {
    let plan: &LoadPlan = &run.plan;
    tokio::select! {
        _ = crate::timer::sleep_until(due) => {}
        _ = cancel.cancelled() => return,
    }
    shards.with(i, |st| st.session_started(us(due.elapsed())));

    // Staged: the schedule starts once every session has (the stages fill the hold), and the
    // sessions take the schedule's requests in turn: this one the n-th of every `sessions`.
    let stages_start = end.checked_sub(plan.hold).unwrap_or(end);
    let staged_due = |n: u64| match &plan.model {
        Model::Staged(stages) => stages
            .time_of((n * plan.sessions as u64 + i as u64) as f64 + 0.5)
            .map_or(end, |t| stages_start + Duration::from_secs_f64(t)),
        _ => end,
    };
    let interval = match &plan.model {
        Model::Open { rate } => Some(Duration::from_secs_f64(plan.sessions as f64 / rate)),
        _ => None,
    };
    // Set when the session first gets in.
    let mut next_due = end;
    let mut opened = false;
    let mut session: Option<Session> = None;
    let mut shift = 0;
    let mut failed = 0;
    let mut reopen_at = due;
    let mut n: u64 = 0;
    let mut free_since = Instant::now();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let ready = matches!(&session, Some(s) if !s.expired);
        // Held open until the run ends, even when the next request would fall after it.
        // Requests that fall due while the session is down wait for it (late, and measured so).
        let wake = if ready { next_due } else { reopen_at }.min(end);
        // A request already due goes out at once: a timer, even one in the past, costs a
        // trip through the timer wheel (up to a millisecond).
        if wake > Instant::now() {
            // While it waits, the session watches its connection: one the server ends is
            // known lost now, not at the next request (up to a period later).
            let watch = async {
                match &session {
                    Some(s) if ready => Some(s.stirred().await),
                    _ => std::future::pending().await,
                }
            };
            let stir = tokio::select! {
                _ = crate::timer::sleep_until(wake) => None,
                stir = watch => stir,
                _ = cancel.cancelled() => break,
            };
            if let (Some(stir), Some(s)) = (stir, session.as_mut()) {
                if !s.take_stir(stir, plan.timeout).await {
                    live.sessions_dropped.fetch_add(1, Relaxed);
                    session = None;
                    reopen_at = Instant::now() + retry_delay(i, 0);
                }
                continue;
            }
        }
        if wake >= end {
            break;
        }
        if !ready {
            let got_in = open(plan, &run.wire, &shards, &live, i, shift, session.take()).await;
            if !opened && failed == 0 {
                live.first_attempts.fetch_add(1, Relaxed);
            }
            match got_in {
                Ok(s) => session = Some(s),
                Err(_) => {
                    shift += 1;
                    failed += 1;
                    reopen_at = Instant::now() + retry_delay(i, failed);
                    continue;
                }
            }
            failed = 0;
            if opened {
                live.sessions_reestablished.fetch_add(1, Relaxed);
                continue;
            }
            opened = true;
            live.sessions_opened.fetch_add(1, Relaxed);
            live.last_opened_ms.fetch_max(crate::units::unix_now_ms(), Relaxed);
            let open_now = live.sessions_open.fetch_add(1, Relaxed) + 1;
            live.sessions_peak.fetch_max(open_now, Relaxed);
            let now = Instant::now();
            next_due = match (&plan.model, interval) {
                // Open model: this session's share of the rate, its first request offset so
                // that the sessions' requests interleave evenly.
                (Model::Open { .. }, Some(iv)) => now + iv.mul_f64((i as f64 * 0.618_033_988_75).fract()),
                (Model::Staged(_), _) => staged_due(0),
                _ => now,
            };
            free_since = now;
            continue;
        }
        let s = session.as_mut().expect("ready");
        let call = plan.mix.pick(n + i as u64);
        let id = n + 2;
        let sent = Instant::now();
        let failure = match tokio::time::timeout(plan.timeout, s.call(call.bytes(id), id)).await {
            Ok(r) => r.err(),
            Err(_) => Some(timed_out(plan, &call.label)),
        };
        let outcome = failure.as_ref().map_or(Ok(()), |f| Err(f.class));
        let done = Instant::now();
        // Lag is the generator's own lateness: from when the request was due, or, if the
        // session was still waiting for its previous answer (or for its session) then, from
        // when that came (a slow target makes requests late too, but that is the target's,
        // and corrected latency already carries it).
        let lag = sent.saturating_duration_since(next_due.max(free_since));
        let (corrected, raw, lag) = (us(done - next_due.min(sent)), us(done - sent), us(lag));
        free_since = done;
        shards.with(i, |st| {
            st.record(&call.label, outcome, corrected, raw, lag);
            if let Some(f) = &failure {
                st.sample(f);
            }
        });
        live.record(outcome);
        if s.expired {
            live.sessions_dropped.fetch_add(1, Relaxed);
            reopen_at = done + retry_delay(i, 0);
        }
        let lost = match outcome {
            // The connection's state is unknown: a new one, and a new session unless it
            // outlives its connection.
            Err(ErrorClass::Timeout | ErrorClass::Disconnect) => !s.survives_lost_connection(),
            // Dialled again, it would not come up: the target is gone, and the session with it.
            Err(ErrorClass::Connect) => true,
            _ => false,
        };
        if lost {
            live.sessions_dropped.fetch_add(1, Relaxed);
            session = None;
            reopen_at = done + retry_delay(i, 0);
        }
        n += 1;
        next_due = match (&plan.model, interval) {
            (Model::Open { .. }, Some(iv)) => next_due + iv,
            (Model::Staged(_), _) => staged_due(n),
            (Model::Closed { think }, _) => Instant::now() + *think,
            _ => unreachable!("open has an interval"),
        };
    }
    if let (true, Some(session)) = (plan.close, session) {
        let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
    }
    if opened {
        live.sessions_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_spread_within_their_window_and_repeat() {
        let first: Vec<Duration> = (0..10_000).map(|i| retry_delay(i, 0)).collect();
        assert!(first.iter().all(|d| *d < Duration::from_secs(1)));
        // Spread evenly: each tenth of the window gets about a tenth of the sessions.
        for k in 0..10 {
            let (lo, hi) = (Duration::from_millis(100 * k), Duration::from_millis(100 * (k + 1)));
            let in_bin = first.iter().filter(|d| **d >= lo && **d < hi).count();
            assert!((900..1100).contains(&in_bin), "bin {k}: {in_bin}");
        }
        assert_eq!(first, (0..10_000).map(|i| retry_delay(i, 0)).collect::<Vec<_>>(), "reproducible");
        // Failed attempts widen the window, to 5 s at most.
        let max = |failed| (0..10_000).map(|i| retry_delay(i, failed)).max().unwrap();
        assert!(max(1) < Duration::from_millis(200) && max(1) > Duration::from_millis(190));
        assert!(max(3) < Duration::from_millis(800) && max(3) > Duration::from_millis(790));
        assert!(max(40) < Duration::from_secs(5) && max(40) > Duration::from_millis(4950));
    }
}
