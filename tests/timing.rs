//! Timing accuracy, in a test binary of its own: cargo runs test binaries one after another,
//! so nothing else runs beside this measurement on the 2-core machine (inside the `it` binary
//! the serve and CLI tests run in parallel with whatever holds the heavy-test lock).

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use clap::Parser;
use swarmctl::cli::{Cli, Command};
use swarmctl::load;

/// The machine's CPU ticks since boot, from the first line of /proc/stat.
#[derive(Clone, Copy, Default)]
struct Ticks {
    /// user + nice + system: processes, this one among them.
    busy: u64,
    /// idle + iowait.
    idle: u64,
    /// irq + softirq: the kernel's network work lands here, loopback included.
    irq: u64,
    /// What the hypervisor ran instead of this machine while it wanted to run.
    steal: u64,
}

impl Ticks {
    fn now() -> Ticks {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let v: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        let f = |i: usize| v.get(i).copied().unwrap_or(0);
        // guest and guest_nice (8, 9) are already counted in user and nice.
        Ticks { busy: f(0) + f(1) + f(2), idle: f(3) + f(4), irq: f(5) + f(6), steal: f(7) }
    }

    fn since(self, t0: Ticks) -> Ticks {
        Ticks {
            busy: self.busy - t0.busy,
            idle: self.idle - t0.idle,
            irq: self.irq - t0.irq,
            steal: self.steal - t0.steal,
        }
    }

    fn all(self) -> u64 {
        self.busy + self.idle + self.irq + self.steal
    }
}

/// This process's CPU ticks (user + system; the server under test runs in it too).
fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name in parentheses, utime and stime are the 12th and 13th fields.
    // Counted by position, not parsed first: tpgid is -1 without a terminal (under CI), and
    // dropping what does not parse as a count read stime and cutime as this process's time,
    // so its own work was taken for other processes' (CI runs "disturbed" at 16-22 %).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Waits (at most 60 s) until the machine's CPUs have been at least 90 % idle for 2 s in a row.
/// This binary runs right after the engine tests, and whatever still works beside it (the
/// engine tidying up after their stacks, say) would show in the tail. The bound below is the
/// generator's accuracy, not the neighbours'. (CI's p99 of 25-37 ms was the generator's own
/// fault, not theirs: its collector spent 20-55 ms a second folding hour-wide histograms.)
fn wait_for_a_quiet_machine() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut quiet = 0;
    while quiet < 4 && std::time::Instant::now() < deadline {
        let t0 = Ticks::now();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let d = Ticks::now().since(t0);
        quiet = if d.all() > 0 && d.idle as f64 / d.all() as f64 >= 0.9 { quiet + 1 } else { 0 };
    }
}

/// A fixed 20 ms at a constant rate measures as 20 ms: p50 within 20–22 ms, p99 within
/// 20–25 ms, corrected (from when each request was due). The bound holds for a run during
/// which other processes took at most a tenth of the machine and the hypervisor at most 2 %:
/// what it steals comes in slices of tens of milliseconds, and 9 % of it put a run's p99 at
/// 40 ms here. A disturbed run is measured again, five runs at most; if none was quiet, the
/// least disturbed is judged, with who took what printed beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_latency_measures_as_itself() {
    let s = util::start_server(&["--latency", "20ms"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let args =
        ["swarmctl", "load", "--url", &url, "--sessions", "20", "--ramp", "200", "--duration", "5s", "--rate", "200"];
    let Command::Load(args) = Cli::try_parse_from(args).unwrap().command else { unreachable!("parsed as load") };
    let mut runs = Vec::new();
    for attempt in 1..=5 {
        wait_for_a_quiet_machine();
        let (m0, o0) = (Ticks::now(), own_ticks());
        let out = load::run(
            &args.plan().unwrap(),
            None,
            tokio_util::sync::CancellationToken::new(),
            &swarmctl::progress::Quiet,
        )
        .await
        .unwrap();
        let (d, own) = (Ticks::now().since(m0), own_ticks() - o0);
        let share = |t: u64| t as f64 / d.all().max(1) as f64 * 100.0;
        let others = d.busy.saturating_sub(own);
        let seen = format!(
            "this test {:.0} %, other processes {:.0} %, interrupts {:.0} %, stolen by the hypervisor {:.0} % of the machine",
            share(own),
            share(others),
            share(d.irq),
            share(d.steal)
        );
        let l = &out.result.summary.latency_ms;
        eprintln!("run {attempt}: p50 {} ms, p99 {} ms; {seen}", l.p50, l.p99);
        // How far past what a run may be disturbed by (0: quiet).
        let excess = (share(others) - 10.0).max(0.0) + (share(d.steal) - 2.0).max(0.0);
        let quiet = excess == 0.0;
        runs.push((excess, out.result, seen));
        if quiet {
            break;
        }
        eprintln!("run {attempt} was disturbed: measuring again");
    }
    let (_, r, seen) = runs.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("at least one run");
    let l = &r.summary.latency_ms;
    let context = format!("{l:?}; during the run: {seen}");
    assert!(r.summary.requests_total >= 900 && r.summary.success_ratio == 1.0, "{:?}", r.summary);
    assert!((20.0..=22.0).contains(&l.p50), "p50 {} ms: {context}", l.p50);
    assert!((20.0..=25.0).contains(&l.p99), "p99 {} ms: {context}", l.p99);
    assert!(l.min >= 20.0, "never faster than the injected latency: {context}");
}
