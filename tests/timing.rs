//! Timing accuracy, in a test binary of its own: cargo runs test binaries one after another,
//! so nothing else runs beside this measurement on the 2-core machine (inside the `it` binary
//! the serve and CLI tests run in parallel with whatever holds the heavy-test lock).

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use clap::Parser;
use swarmctl::cli::{Cli, Command};
use swarmctl::load;

/// The machine's CPU ticks since boot: (all, idle + iowait).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    (v.iter().sum(), v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0))
}

/// This process's CPU ticks (user + system; the server under test runs in it too).
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses: utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
}

/// Waits (at most 60 s) until the machine's CPUs have been at least 90 % idle for 2 s in a row.
/// This binary runs right after the engine tests, and whatever still works beside it (the
/// engine tidying up after their stacks, say) shows in the tail: CI runs measured p99 25.3
/// and 27.0 ms. The bound below is the generator's accuracy, not the neighbours'.
fn wait_for_a_quiet_machine() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut quiet = 0;
    while quiet < 4 && std::time::Instant::now() < deadline {
        let (t0, i0) = machine_ticks();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let (t1, i1) = machine_ticks();
        quiet = if t1 > t0 && (i1 - i0) as f64 / (t1 - t0) as f64 >= 0.9 { quiet + 1 } else { 0 };
    }
}

/// A fixed 20 ms at a constant rate measures as 20 ms: p50 within 20–22 ms, p99 within
/// 20–25 ms, corrected (from when each request was due). The bound holds for a run during
/// which other processes used at most a tenth of the machine; a run they disturbed more is
/// measured again (three runs at most; the last is judged whatever it was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_latency_measures_as_itself() {
    let s = util::start_server(&["--latency", "20ms"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let args =
        ["swarmctl", "load", "--url", &url, "--sessions", "20", "--ramp", "200", "--duration", "5s", "--rate", "200"];
    let Command::Load(args) = Cli::try_parse_from(args).unwrap().command else { unreachable!("parsed as load") };
    for attempt in 1..=3 {
        wait_for_a_quiet_machine();
        let ((m0, i0), o0) = (machine_ticks(), own_ticks());
        let out = load::run(
            &args.plan().unwrap(),
            None,
            tokio_util::sync::CancellationToken::new(),
            &swarmctl::progress::Quiet,
        )
        .await
        .unwrap();
        let ((m1, i1), o1) = (machine_ticks(), own_ticks());
        let others = ((m1 - m0) - (i1 - i0)).saturating_sub(o1 - o0) as f64 / (m1 - m0).max(1) as f64;
        let r = &out.result;
        let l = &r.summary.latency_ms;
        if others > 0.10 && attempt < 3 {
            eprintln!(
                "other processes used {:.0} % of the machine during run {attempt} (p99 {} ms): measuring again",
                others * 100.0,
                l.p99
            );
            continue;
        }
        let context = format!("{l:?}; other processes used {:.0} % of the machine during the run", others * 100.0);
        assert!(r.summary.requests_total >= 900 && r.summary.success_ratio == 1.0, "{:?}", r.summary);
        assert!((20.0..=22.0).contains(&l.p50), "p50 {} ms: {context}", l.p50);
        assert!((20.0..=25.0).contains(&l.p99), "p99 {} ms: {context}", l.p99);
        assert!(l.min >= 20.0, "never faster than the injected latency: {context}");
        return;
    }
}
