//! What the run's seconds add up to besides the totals: the hold apart from the ramp (exact, from
//! the seconds' own histograms) and the client processes' memory per open session.

use serde::{Deserialize, Serialize};

use super::engine::Second;
use super::plan::LoadPlan;
use super::stats::{LatencyMs, Stats};

/// The hold: whole seconds after the ramp's scheduled end and after every session was open,
/// up to the scheduled end of the run (seconds in which nothing completed included). A ramp the machine cannot keep up with should not hide
/// what the stack does once the sessions are open, nor the other way round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hold {
    /// Whole seconds counted.
    pub seconds: u64,
    /// Fewest sessions open at the end of any of them.
    pub sessions_min: u64,
    /// Requests completed in them (all methods but `initialize`).
    pub requests: u64,
    /// Of which successful.
    pub ok: u64,
    /// `ok / requests`.
    pub success_ratio: f64,
    /// Their corrected latency, exactly (histograms added, not percentiles).
    pub latency_ms: LatencyMs,
    /// p99 of how late the generator sent their requests: whether it kept its schedule here,
    /// whatever it did during the ramp.
    #[serde(default)]
    pub send_lag_p99_ms: Option<f64>,
}

/// The load processes' resident memory (all of them: workers and their parent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClientMemory {
    /// Processes counted.
    pub processes: u64,
    /// Before the first session was due, KiB.
    pub rss_before_kib: u64,
    /// At the last second with the most sessions open, KiB.
    pub rss_kib: u64,
    /// Sessions open then.
    pub sessions: u64,
    /// `(rss_kib - rss_before_kib) / sessions`.
    pub kib_per_session: f64,
    /// The most at any second, KiB.
    pub rss_peak_kib: u64,
}

/// Resident memory of this process, KiB (0 where /proc does not say).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Folds the run's seconds, in order, as they are emitted.
pub struct Tally {
    sessions: u64,
    /// First and last second (1-based; second t covers (t - 1, t]) the hold may have.
    from: u64,
    to: u64,
    all_open: bool,
    hold: Option<(Hold, Stats)>,
    memory: ClientMemory,
}

impl Tally {
    /// For `plan`, with the processes' memory before any session (`rss_before_kib`).
    pub fn new(plan: &LoadPlan, processes: u64, rss_before_kib: u64) -> Tally {
        let ramp_s = plan.ramp_time().as_secs_f64();
        Tally {
            sessions: plan.sessions as u64,
            from: ramp_s.ceil() as u64 + 1,
            to: (ramp_s + plan.hold.as_secs_f64()).floor() as u64,
            all_open: false,
            hold: None,
            memory: ClientMemory { processes, rss_before_kib, ..Default::default() },
        }
    }

    /// Adds a process's memory before its first session (a worker's, from its report).
    pub fn before(&mut self, kib: u64) {
        self.memory.rss_before_kib += kib;
    }

    /// One second, its measurements, and the processes' memory at its end (KiB).
    pub fn second(&mut self, s: &Second, stats: &Stats, rss_kib: u64) {
        let m = &mut self.memory;
        if s.sessions >= m.sessions && s.sessions > 0 {
            (m.sessions, m.rss_kib) = (s.sessions, rss_kib);
        }
        m.rss_peak_kib = m.rss_peak_kib.max(rss_kib);
        // The hold begins the second after the one in which the last session opened.
        // A second with nothing completed is still a second of the hold (sessions between turns).
        let counted = self.all_open && s.t >= self.from && s.t <= self.to;
        self.all_open |= s.sessions >= self.sessions;
        if !counted {
            return;
        }
        let (hold, merged) =
            self.hold.get_or_insert_with(|| (Hold { sessions_min: u64::MAX, ..Default::default() }, Stats::default()));
        merged.merge(stats);
        let (requests, ok) = stats.totals();
        hold.seconds += 1;
        hold.sessions_min = hold.sessions_min.min(s.sessions);
        hold.requests += requests;
        hold.ok += ok;
    }

    /// The hold (if any whole second of it was measured) and the memory (if it was read).
    pub fn finish(self) -> (Option<Hold>, Option<ClientMemory>) {
        let hold = self.hold.map(|(mut h, merged)| {
            h.success_ratio = if h.requests == 0 { 0.0 } else { h.ok as f64 / h.requests as f64 };
            h.latency_ms = LatencyMs::of(&merged.latency().0);
            h.send_lag_p99_ms = merged.send_lag.as_ref().map(|lag| LatencyMs::at(lag, 99.0));
            h
        });
        let mut m = self.memory;
        let memory = (m.rss_kib > 0 && m.sessions > 0).then(|| {
            m.kib_per_session = m.rss_kib.saturating_sub(m.rss_before_kib) as f64 / m.sessions as f64;
            m
        });
        (hold, memory)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::stats::ErrorClass;

    fn plan() -> LoadPlan {
        // 10 sessions at 4/s: the ramp ends at 2.25 s; held 4 s: whole seconds 4 to 6.
        let mut plan = LoadPlan::toward(vec![]);
        plan.sessions = 10;
        plan.ramp = 4.0;
        plan.hold = Duration::from_secs(4);
        plan
    }

    fn second(t: u64, sessions: u64, latencies_ms: &[u64], failed: usize) -> (Second, Stats) {
        let mut st = Stats::default();
        for (i, ms) in latencies_ms.iter().enumerate() {
            let outcome = if i < failed { Err(ErrorClass::Timeout) } else { Ok(()) };
            st.record("ping", outcome, ms * 1000, ms * 1000, 0);
        }
        st.record("initialize", Ok(()), 5_000_000, 5_000_000, 0);
        (crate::load::engine::second_of(t, &st, sessions), st)
    }

    #[test]
    fn the_hold_is_its_whole_seconds_after_the_ramp_exactly() {
        let mut tally = Tally::new(&plan(), 1, 1000);
        let feed = [
            second(1, 4, &[900; 50], 0), // ramp
            second(2, 8, &[900; 50], 0),
            second(3, 10, &[900; 50], 0), // ramp end at 2.25 s: not whole
            second(4, 10, &[1; 98], 1),   // hold
            second(5, 10, &[], 0),        // nothing completed: a second of the hold all the same
            second(6, 10, &[2, 2, 400], 0),
            second(7, 10, &[999; 10], 0), // the drain after the hold
        ];
        for (i, (s, st)) in feed.iter().enumerate() {
            tally.second(s, st, 1000 + 10 * s.sessions + i as u64);
        }
        let (hold, memory) = tally.finish();
        let hold = hold.unwrap();
        assert_eq!((hold.seconds, hold.requests, hold.ok, hold.sessions_min), (3, 101, 100, 10));
        // Exact: 1 of 101 above 2 ms, so the p99 is 2 ms and the max 400 ms; initialize is not in it.
        assert!((hold.latency_ms.p99 - 2.0).abs() < 0.01, "{:?}", hold.latency_ms);
        assert!((hold.latency_ms.max - 400.0).abs() < 1.0, "{:?}", hold.latency_ms);
        assert_eq!(hold.send_lag_p99_ms.map(|l| l < 0.01), Some(true), "{hold:?}");
        let memory = memory.unwrap();
        assert_eq!((memory.sessions, memory.rss_kib, memory.rss_peak_kib), (10, 1106, 1106));
        assert!((memory.kib_per_session - 10.6).abs() < 1e-9);
    }

    #[test]
    fn a_late_ramp_starts_the_hold_once_every_session_is_open() {
        let mut tally = Tally::new(&plan(), 1, 0);
        for t in 1..=6 {
            let (s, st) = second(t, if t < 5 { 7 } else { 10 }, &[3; 10], 0);
            tally.second(&s, &st, 0);
        }
        let (hold, memory) = tally.finish();
        assert_eq!(hold.unwrap().seconds, 1, "second 6 only");
        assert!(memory.is_none(), "no memory read");
        let mut short = Tally::new(&plan(), 1, 0);
        let (s, st) = second(3, 10, &[3], 0);
        short.second(&s, &st, 0);
        assert!(short.finish().0.is_none(), "no whole second of hold");
    }
}
