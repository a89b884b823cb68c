//! The load plan: the whole input of a load run, wherever it runs (in this process, a worker
//! process, a load container). Built once from the command line or from a phase, validated,
//! and handed to other processes as JSON, never as re-written arguments.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::Target;
pub use super::stream::Trust;
use super::stream::Wire;
use super::workload::{Mix, Model, Threshold};
use crate::exit::UsageError;

/// Everything a load run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPlan {
    /// Targets; sessions are spread over them round-robin.
    pub targets: Vec<Target>,
    /// Sessions to open.
    pub sessions: usize,
    /// Sessions started per second.
    pub ramp: f64,
    /// How long after the last session started the run goes on.
    #[serde(with = "crate::units::std_duration")]
    pub hold: Duration,
    /// Pacing.
    pub model: Model,
    /// What each session sends.
    pub mix: Mix,
    /// Per-request timeout.
    #[serde(with = "crate::units::std_duration")]
    pub timeout: Duration,
    /// DELETE / close sessions at the end.
    pub close: bool,
    /// Streamable HTTP sessions also hold their GET stream open.
    pub get_stream: bool,
    /// Source addresses; sessions use them round-robin (empty: the kernel's choice).
    #[serde(default)]
    pub sources: Vec<IpAddr>,
    /// When the first session is due (Unix ms), so that several processes share one schedule;
    /// `None`: right away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at_ms: Option<u64>,
    /// Pass/fail conditions on the results.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// Processes the sessions are split over (each may hold only so many sockets).
    #[serde(default = "one")]
    pub workers: usize,
    /// Note when this many successes in a row follow the last failure (the failover phase's
    /// recovery); 0: not watched.
    #[serde(default)]
    pub streak_goal: u64,
    /// Extra headers on every request and handshake (`--header`): `Authorization`, say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// How TLS targets' certificates are checked.
    #[serde(default)]
    pub trust: Trust,
}

fn one() -> usize {
    1
}

/// Why `name: value` cannot be sent as a header, if it cannot.
pub fn header_problem(name: &str, value: &str) -> Option<String> {
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    (!token || value.contains(['\r', '\n']))
        .then(|| format!("`{name}: {value}` is not a header: write 'Name: value' on one line"))
}

impl LoadPlan {
    /// `swarmctl load`'s defaults toward `targets`: 10 sessions at 100/s, held 10 s, a think
    /// time of 1 s, `tools/call:echo`, a 10 s timeout.
    pub fn toward(targets: Vec<Target>) -> LoadPlan {
        LoadPlan {
            targets,
            sessions: 10,
            ramp: 100.0,
            hold: Duration::from_secs(10),
            model: Model::Closed { think: Duration::from_secs(1) },
            mix: "tools/call:echo=1".parse().expect("the default mix parses"),
            timeout: Duration::from_secs(10),
            close: true,
            get_stream: false,
            sources: Vec::new(),
            start_at_ms: None,
            thresholds: Vec::new(),
            workers: 1,
            streak_goal: 0,
            headers: Vec::new(),
            trust: Trust::System,
        }
    }

    /// What every session opens its connections with: TLS when a target needs it, and the
    /// extra headers.
    pub fn wire(&self) -> Result<Wire, UsageError> {
        Wire::new(self.targets.iter().any(Target::tls), &self.trust, &self.headers).map_err(UsageError)
    }

    /// The plan read from a JSON file (`-`: standard input), checked as one from flags is.
    pub fn read(path: &Path) -> Result<LoadPlan, UsageError> {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| UsageError(format!("cannot read the load plan {}: {e}", path.display())))?;
        let plan: LoadPlan = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("{} is not a load plan: {e} (docs/load.md shows one)", path.display())))?;
        plan.check().map_err(|e| UsageError(format!("{}: {}", path.display(), e.0)))?;
        Ok(plan)
    }

    /// Writes the plan as JSON into `path`, readable by its owner only: the plans handed to
    /// worker processes and containers carry the header values (often tokens).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let json = serde_json::to_vec_pretty(self)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write the load plan {}", path.display()))?;
        file.write_all(&json).with_context(|| format!("cannot write the load plan {}", path.display()))
    }

    /// The plan as a results folder keeps it: header values left out (a folder is shared;
    /// `--plan` with `--header` gives them again).
    pub fn redacted(&self) -> LoadPlan {
        let headers = self.headers.iter().map(|(k, _)| (k.clone(), "<not kept: give it again with --header>".into()));
        LoadPlan { headers: headers.collect(), ..self.clone() }
    }

    /// What no run can do, said with the flag that sets it.
    pub fn check(&self) -> Result<(), UsageError> {
        if self.targets.is_empty() {
            return Err(UsageError::flag("--url", "give at least one target"));
        }
        for (name, value) in &self.headers {
            if let Some(why) = header_problem(name, value) {
                return Err(UsageError::flag("--header", why));
            }
        }
        if self.trust != Trust::System && !self.targets.iter().any(Target::tls) {
            return Err(UsageError::flag("--ca-cert/--insecure", "apply to https:// and wss:// targets, and none is"));
        }
        self.wire()?;
        if self.sessions == 0 {
            return Err(UsageError::flag("--sessions", "must be at least 1"));
        }
        if !(self.ramp.is_finite() && self.ramp > 0.0) {
            return Err(UsageError::flag("--ramp", "must be above 0 sessions per second"));
        }
        if let Model::Open { rate } = self.model {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(UsageError::flag("--rate", "must be above 0 requests per second"));
            }
        }
        if self.workers == 0 {
            return Err(UsageError::flag("--workers", "must be at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(UsageError::flag("--timeout", "must be above 0"));
        }
        Ok(())
    }

    /// When the last session is due, after the start.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64((self.sessions.saturating_sub(1)) as f64 / self.ramp)
    }

    /// The whole run.
    pub fn run_time(&self) -> Duration {
        self.ramp_time() + self.hold
    }

    /// Sockets one session holds at most (the pre-flight's unit).
    pub fn sockets_per_session(&self) -> usize {
        self.targets.iter().map(|t| t.sockets()).max().unwrap_or(1) + usize::from(self.get_stream)
    }

    /// When the first session is due, on the wall clock.
    pub fn start_at(&self) -> Option<std::time::SystemTime> {
        self.start_at_ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// The targets as URLs, for reports.
    pub fn urls(&self) -> Vec<String> {
        self.targets.iter().map(Target::url).collect()
    }

    /// Loopback source addresses for a run toward loopback only, when it opens more sessions
    /// than one address serves well and none were given.
    pub fn with_default_sources(mut self) -> LoadPlan {
        if self.sources.is_empty() {
            self.sources = loopback_sources(&self.targets, self.sessions);
        }
        self
    }

    /// Worker `k`'s share of `n` (sessions, ramp and rate split evenly), on one schedule that
    /// starts at `t0_ms`: worker k's sessions are due at t0 + (k + j·n) / ramp.
    pub fn share(&self, k: usize, n: usize, t0_ms: u64) -> LoadPlan {
        let sessions = self.sessions / n + usize::from(k < self.sessions % n);
        let part = sessions as f64 / self.sessions as f64;
        let model = match &self.model {
            Model::Closed { think } => Model::Closed { think: *think },
            Model::Open { rate } => Model::Open { rate: rate * part },
            Model::Staged(stages) => Model::Staged(stages.scaled(part)),
        };
        LoadPlan {
            sessions,
            ramp: self.ramp / n as f64,
            model,
            start_at_ms: Some(t0_ms + (k as f64 * 1000.0 / self.ramp) as u64),
            workers: 1,
            ..self.clone()
        }
    }
}

/// Sessions per loopback source address when none are given: the kernel searches the
/// ephemeral ports for a free one on every connect, and past a few thousand connections from
/// one address to one destination that search costs more than the rest of the connect (19,000
/// sessions at 5,000/s from one address spent 8 s of kernel time and started 3 s late; from
/// 20 addresses, 3.4 s and 15 ms).
const SESSIONS_PER_LOOPBACK_SOURCE: usize = 1000;

/// 127.0.0.2 up, one per 1,000 sessions, for a run toward loopback only that opens more than
/// 4,000 sessions; none otherwise.
fn loopback_sources(targets: &[Target], sessions: usize) -> Vec<IpAddr> {
    let loopback = targets.iter().all(|t| {
        t.authority().rsplit_once(':').and_then(|(h, _)| h.parse::<Ipv4Addr>().ok()).is_some_and(|ip| ip.is_loopback())
    });
    if !loopback || sessions <= 4 * SESSIONS_PER_LOOPBACK_SOURCE {
        return Vec::new();
    }
    let n = sessions.div_ceil(SESSIONS_PER_LOOPBACK_SOURCE).min(253);
    tracing::info!("spreading {sessions} sessions over {n} loopback source addresses (127.0.0.2 on)");
    (0..n).map(|i| IpAddr::from([127, 0, 0, 2 + i as u8])).collect()
}

/// `127.0.0.2-127.0.0.40` or `10.0.0.5,10.0.0.6`.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_stay_out_of_the_results_folder_and_plans_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let mut plan = LoadPlan::toward(vec![target("https://127.0.0.1:8443/mcp")]);
        plan.headers = vec![("Authorization".into(), "Bearer s3cret".into())];
        let dir = tempfile::tempdir().unwrap();
        let (kept, handed) = (dir.path().join("kept.json"), dir.path().join("handed.json"));
        plan.redacted().write(&kept).unwrap();
        plan.write(&handed).unwrap();
        let kept = std::fs::read_to_string(&kept).unwrap();
        assert!(kept.contains("Authorization") && !kept.contains("s3cret"), "{kept}");
        assert!(std::fs::read_to_string(&handed).unwrap().contains("s3cret"), "a worker needs the value");
        assert_eq!(std::fs::metadata(&handed).unwrap().permissions().mode() & 0o777, 0o600);
    }

    fn target(url: &str) -> Target {
        Target::parse(url, false, false).unwrap()
    }

    #[test]
    fn a_plan_survives_json_whole() {
        let mut plan = LoadPlan::toward(vec![
            Target::parse("ws://127.0.0.1:5555/mcp/ws", true, true).unwrap(),
            target("http://127.0.0.1:8080/mcp"),
            target("sse://127.0.0.1:8081/mcp/sse"),
            target("tcp://127.0.0.1:9000"),
        ]);
        plan.sessions = 12_345;
        plan.ramp = 333.5;
        plan.hold = Duration::from_millis(1500);
        plan.mix = "ping=1,tools/call:sleep(ms=5)=3,resources/read:file:///a=1".parse().unwrap();
        plan.thresholds = vec!["p99<500ms".parse().unwrap(), "tools/call:echo:success>=99.9%".parse().unwrap()];
        plan.sources = parse_sources("127.0.0.2-127.0.0.4").unwrap();
        plan.start_at_ms = Some(1_795_759_848_123);
        plan.get_stream = true;
        plan.close = false;
        plan.streak_goal = 50;
        plan.workers = 3;
        for model in [
            Model::Closed { think: Duration::from_micros(2500) },
            Model::Open { rate: 3333.3 },
            Model::Staged("30s:0->1000,2m:1000,30s:1000->0".parse().unwrap()),
        ] {
            plan.model = model;
            let json = serde_json::to_string_pretty(&plan).unwrap();
            let back: LoadPlan = serde_json::from_str(&json).unwrap();
            assert_eq!(back, plan, "{json}");
        }
    }

    #[test]
    fn a_plan_file_is_checked_like_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let mut plan = LoadPlan::toward(vec![target("http://127.0.0.1:1/mcp")]);
        plan.write(&path).unwrap();
        assert_eq!(LoadPlan::read(&path).unwrap(), plan);
        plan.sessions = 0;
        plan.write(&path).unwrap();
        let err = LoadPlan::read(&path).unwrap_err().to_string();
        assert!(err.contains("--sessions: must be at least 1"), "{err}");
        std::fs::write(&path, r#"{"targets": []}"#).unwrap();
        let err = LoadPlan::read(&path).unwrap_err().to_string();
        assert!(err.contains("is not a load plan") && err.contains("missing field"), "{err}");
        std::fs::write(&path, r#"{"sessions": 1, "mix": "frobnicate=1"}"#).unwrap();
        let err = LoadPlan::read(&path).unwrap_err().to_string();
        assert!(err.contains("frobnicate"), "the mix's own error: {err}");
    }

    #[test]
    fn shares_split_sessions_and_pace_on_one_schedule() {
        let mut plan = LoadPlan::toward(vec![target("http://127.0.0.1:1/mcp")]);
        plan.sessions = 10;
        plan.ramp = 100.0;
        plan.workers = 3;
        plan.model = Model::Open { rate: 1000.0 };
        let shares: Vec<LoadPlan> = (0..3).map(|k| plan.share(k, 3, 5_000)).collect();
        assert_eq!(shares.iter().map(|s| s.sessions).collect::<Vec<_>>(), [4, 3, 3]);
        assert_eq!(shares.iter().map(|s| s.start_at_ms.unwrap()).collect::<Vec<_>>(), [5_000, 5_010, 5_020]);
        assert!(shares.iter().all(|s| s.workers == 1 && (s.ramp - 100.0 / 3.0).abs() < 1e-9));
        let rates: f64 = shares.iter().map(|s| if let Model::Open { rate } = s.model { rate } else { 0.0 }).sum();
        assert!((rates - 1000.0).abs() < 1e-9, "the shares' rates add up to the plan's: {rates}");
        plan.model = Model::Staged("10s:0->100".parse().unwrap());
        let Model::Staged(s) = plan.share(0, 2, 0).model else { panic!("staged stays staged") };
        assert_eq!(s.to_string(), "10s:0->50");
        assert_eq!(shares[0].targets, plan.targets, "everything else is the plan's");
    }

    #[test]
    fn many_loopback_sessions_get_loopback_sources() {
        let local = [target("http://127.0.0.1:1/mcp")];
        assert!(loopback_sources(&local, 4000).is_empty());
        let s = loopback_sources(&local, 19_000);
        assert_eq!((s.len(), s[0], s[18]), (19, "127.0.0.2".parse().unwrap(), "127.0.0.20".parse().unwrap()));
        assert_eq!(loopback_sources(&local, 1_000_000).len(), 253, "127.0.0.2 to 127.0.0.254");
        let remote = [target("http://10.0.0.5:80/mcp")];
        assert!(loopback_sources(&remote, 19_000).is_empty(), "only loopback is known to accept any 127/8 source");
        let mut given = LoadPlan::toward(local.to_vec());
        given.sessions = 19_000;
        given.sources = vec!["127.0.0.9".parse().unwrap()];
        assert_eq!(given.clone().with_default_sources().sources, given.sources, "given sources stay");
    }
}
