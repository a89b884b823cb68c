//! `test full` and `validate` against the real engine, the real Traefik and Prometheus, at a
//! small scale: the results must be measured (recovery, errors in the kill window, throughput
//! per replica count, the stack restored), the HTML report must draw in a real browser, and a
//! killed Traefik task must be reported, not hung on.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{read_test_run as read, swarmctl, text};

const SETS: &[&str] = &[
    "--stack",
    "ci",
    "--set",
    "name=swit-ph",
    "--set",
    "lb.ports={web: 28380, websocket: 28381, metrics: 28382, tcp: 28383}",
    "--set",
    "prometheus.port=28390",
];

fn run(args: &[&str], state: &Path) -> std::process::Output {
    crate::util::swarmctl_with(args, SETS, state)
}

/// The screenshot of `html` has drawn charts: a good share of non-white pixels, and pixels of
/// the p99 line's colour (#e67e22), the throughput line's (#16a085) and the SLO line's
/// (#d81b60); the page's charts are the ones each part of the run calls for.
fn assert_renders(html: &Path, png: &Path) {
    let page = std::fs::read_to_string(html).unwrap();
    for chart in [
        "Latency, corrected, each second (log scale)",
        "Throughput",
        "Latency distribution, baseline",
        "Latency distribution, failover",
        "failover: failed requests each second around the kill",
        "failover: p99 each second around the kill (log)",
        "scaling: throughput by replica count",
    ] {
        assert!(page.contains(&format!("aria-label=\"{chart}")), "report.html draws {chart}");
    }
    assert!(page.contains("<h3>requests/s by replica</h3>") && page.contains("<h3>CPU by replica</h3>"));
    assert!(!page.contains("<pre>"), "the full report is HTML");
    let out = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,3000"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs (Debian package `chromium`; scripts/test installs it)");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let non_white = pixels.iter().filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240).count();
    let near = |p: &[u8], c: [u8; 3]| (0..3).all(|i| p[i].abs_diff(c[i]) < 40);
    let orange = pixels.iter().filter(|p| near(p, [0xe6, 0x7e, 0x22])).count();
    let teal = pixels.iter().filter(|p| near(p, [0x16, 0xa0, 0x85])).count();
    let slo = pixels.iter().filter(|p| near(p, [0xd8, 0x1b, 0x60])).count();
    assert!(slo > 100, "the SLO line is drawn on the latency chart at the top: {slo} pixels");
    assert!(non_white * 100 > pixels.len() * 3, "the page is nearly blank: {non_white} of {} pixels", pixels.len());
    assert!(
        orange > 100 && teal > 100,
        "the latency and throughput lines are drawn: {orange} orange, {teal} teal pixels"
    );
}

/// The network phase of `test full`: with netem in the kernel, one replica's link slowed
/// (100 ms ± 20 ms, 1 % loss) for 6 s, its requests slower by about that much, and no netem
/// left on it, as the helper said and as the kernel says from inside the container's network
/// namespace. Without netem (the kernels here), the phase skipped with the reason the real
/// kernel gave the helper, and the helper's netlink code checked in a replica's namespace.
async fn network_phase_or_its_reason(docker: &swarmctl::engine::Bollard, r: &swarmctl::report::TestRun, state: &Path) {
    let server = swarmctl::engine::Engine::tasks(docker, "swit-ph_server", true)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.is_running())
        .and_then(|t| t.container)
        .unwrap();
    if crate::util::kernel_has_netem() {
        let p = r.phases.iter().find(|p| p.name == "network").unwrap();
        let n = p.network.as_ref().unwrap_or_else(|| panic!("{p:?}"));
        assert!(!n.interfaces.is_empty() && n.netem_left.is_empty() && n.clear_error.is_none(), "{n:?}");
        let held = n.cleared_ms.unwrap() - n.applied_ms;
        assert!((5_500..9_000).contains(&held), "impaired for the 6 s asked: {held} ms");
        assert!(n.p99_during_ms > 80.0, "the delay reached the clients: {n:?}");
        assert!(r.events.iter().any(|e| e.kind == "netem") && r.events.iter().any(|e| e.kind == "netem cleared"));
    } else {
        let note =
            r.notes.iter().find(|n| n.starts_with("network: skipped: ")).unwrap_or_else(|| panic!("{:?}", r.notes));
        assert!(note.contains("has no netem qdisc (CONFIG_NET_SCH_NETEM is not set)"), "{note}");
        // The helper in a replica's namespace, straight: it lists the interfaces and finds no
        // netem to clear; asked for netem, it says what the kernel refused.
        let pid = docker.client().inspect_container(&server, None).await.unwrap().state.unwrap().pid.unwrap();
        let helper = |args: &[&str]| {
            std::process::Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-n", env!("CARGO_BIN_EXE_swarmctl"), "netem"])
                .args(args)
                .env("SWARMCTL_STATE_DIR", state)
                .output()
                .unwrap()
        };
        let out = helper(&["--clear"]);
        assert!(out.status.success(), "{}", text(&out).1);
        let outcome: Value = serde_json::from_str(text(&out).0.trim()).unwrap();
        assert!(outcome["interfaces"].as_array().unwrap().iter().any(|i| i == "eth0"), "{outcome}");
        assert_eq!(outcome["netem"], serde_json::json!([]), "{outcome}");
        let out = helper(&["--probe"]);
        assert_eq!(serde_json::from_str::<Value>(text(&out).0.trim()).unwrap()["supported"], false);
        let out = helper(&["--delay", "100ms"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out).1.contains("this kernel has no netem qdisc"), "{}", text(&out).1);
    }
    // Either way, the kernel says no netem is on the replica, and no helper container is left.
    let pid = docker.client().inspect_container(&server, None).await.unwrap().state.unwrap().pid.unwrap();
    let qdiscs = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "tc", "qdisc", "show"])
        .output()
        .unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout).into_owned();
    assert!(qdiscs.contains("qdisc") && !qdiscs.contains("netem"), "{qdiscs}");
    let all = bollard::query_parameters::ListContainersOptions { all: true, ..Default::default() };
    let helpers = docker.client().list_containers(Some(all)).await.unwrap();
    assert!(
        !helpers.iter().any(|c| c.labels.as_ref().and_then(|l| l.get("swarmctl.oneoff")).is_some_and(|v| v == "netem")),
        "no helper container left"
    );
}

/// Runs `validate --phase PHASE` on the test's stack, sends it SIGINT once its timeline has an
/// event of `kind`, and checks it exits 130 with its results written: those, and the folder.
fn interrupted(
    phase: &str,
    kind: &str,
    results: &Path,
    state: &Path,
) -> (swarmctl::report::TestRun, std::path::PathBuf) {
    let int = results.join(format!("interrupted-{phase}"));
    let mut all = vec!["validate", "--phase", phase, "--out", int.to_str().unwrap()];
    all.extend_from_slice(SETS);
    let mut command = crate::util::swarmctl_command(state);
    command.args(&all);
    let out = crate::util::ctrl_c_at(command, &int, kind);
    (read(&int, &out), int)
}

/// `test baseline --via swarm` of 40 sessions from 2 load tasks, held `hold`, into `out`.
fn swarm_baseline(out: &Path, hold: &str, state: &Path) -> std::process::Command {
    let profile = format!(
        "test.profiles.baseline={{sessions: 40, ramp: 40, hold: {hold}, think: 200ms, transport: http, workers: 2}}"
    );
    let mut command = crate::util::swarmctl_command(state);
    command.args([
        "test",
        "baseline",
        "--no-deploy",
        "--via",
        "swarm",
        "--out",
        out.to_str().unwrap(),
        "--set",
        &profile,
    ]);
    command.args(SETS).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    command
}

/// Starts `command` and waits until load task `slot` has sent 3 seconds into `out`.
async fn sending(mut command: std::process::Command, out: &Path, slot: u64) -> std::process::Child {
    let child = command.spawn().unwrap();
    let seconds = out.join(format!("phases/baseline/workers/task-{slot}/seconds.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::fs::read_to_string(&seconds).unwrap_or_default().lines().count() < 3 {
        assert!(Instant::now() < deadline, "task {slot} sent no seconds within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child
}

/// No load service is left when the run has ended, and its containers are gone within 30 s
/// (swarm removes a removed service's containers on its own time).
async fn assert_no_load_left(docker: &swarmctl::engine::Bollard) {
    let services = docker.client().list_services(None::<bollard::query_parameters::ListServicesOptions>).await.unwrap();
    let names: Vec<String> = services.into_iter().filter_map(|s| s.spec?.name).collect();
    assert!(!names.iter().any(|n| n.contains("load")), "{names:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = bollard::query_parameters::ListContainersOptions { all: true, ..Default::default() };
        let containers = docker.client().list_containers(Some(all)).await.unwrap();
        let left: Vec<_> =
            containers.into_iter().flat_map(|c| c.names.unwrap_or_default()).filter(|n| n.contains("load")).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "load containers left 30 s after the run: {left:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Server tasks running now.
async fn running_tasks(engine: &swarmctl::engine::Bollard) -> usize {
    swarmctl::engine::Engine::tasks(engine, "swit-ph_server", false)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.is_running())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_full_measures_every_phase_and_validate_reports_a_killed_load_balancer() {
    let _swarm = crate::util::exclusive().await;
    let docker = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    let state = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();
    let full = results.path().join("full");

    // 1. test full deploys, runs every phase and writes the folder.
    let started = Instant::now();
    let out = run(
        &[
            "test",
            "full",
            "--out",
            full.to_str().unwrap(),
            "--set",
            "test.profiles.stress={sessions: 400, ramp: 200, hold: 10s, think: 1s, transport: ws}",
        ],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    let r = read(&full, &out);
    assert_eq!(
        out.status.code(),
        Some(i32::from(r.exit_code().number())),
        "the exit code follows the verdict {}:\n{stdout}\n{stderr}",
        r.verdict
    );
    assert!(started.elapsed() < Duration::from_secs(600), "took {:?}", started.elapsed());
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    let mut expected = vec!["baseline", "stress", "incremental", "failover", "scaling", "hang", "update", "rollback"];
    if crate::util::kernel_has_netem() {
        expected.push("network");
    }
    assert_eq!(names, expected, "{stdout}\n{stderr}");
    assert!(
        r.notes
            .iter()
            .any(|n| n == "drain: skipped: a one-node swarm cannot drain: its tasks would have nowhere to go"),
        "{:?}",
        r.notes
    );
    for p in &r.phases {
        assert!(matches!(p.verdict.as_str(), "pass" | "fail"), "{}: {} {:?}", p.name, p.verdict, p.reasons);
        assert!(!p.reasons.is_empty() && p.finished_ms > p.started_ms, "{}", p.name);
    }
    let baseline = r.phases[0].load.as_ref().unwrap();
    assert_eq!(baseline.summary.sessions_peak, 200);
    assert!(baseline.summary.requests_total > 1000, "{:?}", baseline.summary);
    assert_eq!(r.phases[1].load.as_ref().unwrap().summary.sessions_peak, 400);
    // Client and server views agree: what the replicas counted (Prometheus) lies between what
    // was answered and what was sent.
    for p in &r.phases[..2] {
        let rec = p.reconciliation.as_ref().unwrap_or_else(|| panic!("{}: no reconciliation", p.name));
        assert!(rec.holds && rec.server_received.is_some(), "{}: {rec:?}", p.name);
        assert_eq!(rec.client_sent, p.load.as_ref().unwrap().summary.requests_total);
    }
    let stages: Vec<u64> = r.phases[2].stages.iter().map(|s| s.sessions_run).collect();
    assert_eq!(stages, [100, 300]);

    // Failover: one kill, its replacement timed by the engine, recovery measured, and the
    // failures after the kill are the ones the load engine counted.
    let fo = r.phases[3].failover.as_ref().unwrap();
    let fo_load = r.phases[3].load.as_ref().unwrap();
    assert_eq!(fo.kills.len(), 1, "{fo:?}");
    let k = &fo.kills[0];
    let created = k.replacement_created_ms.expect("replacement created");
    let running = k.replacement_running_ms.expect("replacement running");
    assert!(fo.kill_ms <= created && created <= running && running < fo.kill_ms + 60_000, "{fo:?}");
    let recovery = fo.recovery_s.expect("clients recovered");
    assert!((0.0..30.0).contains(&recovery), "recovery {recovery} s");
    let after_kill: u64 = fo.errors.values().sum();
    let initialize_failures = fo_load.by_method.get("initialize").map(|m| m.count - m.ok).unwrap_or(0);
    let request_failures: u64 = fo_load.summary.errors.values().sum();
    assert_eq!(fo_load.summary.requests_total - fo_load.summary.requests_ok, request_failures);
    assert!(after_kill <= request_failures + initialize_failures, "{fo:?} vs {:?}", fo_load.summary.errors);
    if after_kill > 0 {
        let (first, last) = (fo.first_error_ms.unwrap(), fo.last_error_ms.unwrap());
        assert!(fo.kill_ms <= first && first <= last, "{fo:?}");
        assert!(recovery >= (last - fo.kill_ms) as f64 / 1000.0, "recovery comes after the last failure: {fo:?}");
    }
    assert_eq!(fo.sessions_dropped, fo.sessions_reestablished, "every dropped session came back: {fo:?}");
    // The timeline carries the same failures as the summary.
    let timeline_errors: u64 =
        r.timeline.iter().filter(|p| p.phase == "failover").map(|p| p.errors.values().sum::<u64>()).sum();
    assert_eq!(timeline_errors, request_failures);
    for kind in ["kill", "replacement_created", "replacement_running", "recovered"] {
        assert!(r.events.iter().any(|e| e.kind == kind), "event {kind}: {:?}", r.events);
    }

    // Scaling: 3 → 5 → 2 → 3, throughput per count, per replica from Prometheus, restored.
    let sc = r.phases[4].scaling.as_ref().unwrap();
    let counts: Vec<u64> = sc.steps.iter().map(|s| s.replicas).collect();
    assert_eq!(counts, [3, 5, 2, 3]);
    for (i, s) in sc.steps.iter().enumerate() {
        assert!(s.rps > 0.0 && (s.rps_per_replica - s.rps / s.replicas as f64).abs() < 1e-6, "{s:?}");
        if i > 0 {
            assert!(s.converge_s > 0.0 && s.converge_s < 90.0, "{s:?}");
        }
        assert!(!s.rps_by_slot.is_empty(), "Prometheus saw the replicas serve: {s:?}");
        let slots: Vec<u64> = s.rps_by_slot.keys().map(|k| k.parse().unwrap()).collect();
        assert!(slots.iter().all(|slot| (1..=5).contains(slot)), "{s:?}");
    }
    assert!(sc.restored && sc.linearity.is_some(), "{sc:?}");
    assert_eq!(running_tasks(&docker).await, 3, "the stack is back to its 3 replicas");
    let points_per_replica_count: std::collections::BTreeSet<u64> =
        r.timeline.iter().filter(|p| p.phase == "scaling").map(|p| p.replicas).collect();
    assert_eq!(points_per_replica_count, [2, 3, 5].into_iter().collect());

    // A hung replica: stopped (SIGSTOP) under load for 4 s (stacks/ci.yaml), the requests it
    // held waited, then it was resumed, and no process of it is left stopped.
    let h = r.phases[5].hang.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[5]));
    assert_eq!(h.resume_error, None, "{h:?}");
    let held = h.resumed_ms.unwrap() - h.stopped_ms;
    assert!((3_900..6_000).contains(&held), "stopped for the 4 s asked: {held} ms");
    assert!(
        h.p99_while_stopped_ms > 1000.0,
        "requests to the stopped replica waited: {h:?}\n{:?}\n{:?}",
        r.phases[5].reasons,
        r.events.iter().filter(|e| e.at_ms + 60_000 > h.stopped_ms).collect::<Vec<_>>()
    );
    assert!(r.events.iter().any(|e| e.kind == "hang") && r.events.iter().any(|e| e.kind == "resume"));
    // The rolling update that follows replaced it; whichever containers run the replicas now,
    // none of their processes is left stopped.
    let mut containers: Vec<String> = swarmctl::engine::Engine::tasks(&docker, "swit-ph_server", true)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.is_running())
        .filter_map(|t| t.container)
        .collect();
    containers.push(h.container.clone());
    for c in containers {
        let pid = docker.client().inspect_container(&c, None).await.ok().and_then(|c| c.state?.pid);
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let process_state = stat.rsplit(')').next().unwrap().split_whitespace().next().unwrap();
            assert_ne!(process_state, "T", "no replica's process is left stopped: {stat}");
        }
    }

    // A rolling update of the reference server through Traefik under the stack's policy
    // (start-first, one at a time): every task replaced, no request failed; the sessions of
    // the replaced replicas moved (HTTP 404, initialized again), every one came back.
    let u = r.phases[6].update.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[6]));
    assert_eq!((u.release.as_str(), u.outcome.as_str()), ("restart", "completed"), "{u:?}");
    assert!(u.tasks_started >= 3 && u.tasks_failed == 0, "{u:?}");
    assert_eq!(u.failed_requests, 0, "a rolling update fails no request: {u:?}");
    assert_eq!(u.sessions_dropped, u.sessions_reestablished, "{u:?}");
    assert!(u.restored, "{u:?}");
    assert_eq!(r.phases[6].verdict.as_str(), "pass", "{:?}", r.phases[6].reasons);
    // A release that cannot start: swarm rolled it back by itself, clients saw nothing.
    let rb = r.phases[7].update.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[7]));
    assert_eq!((rb.release.as_str(), rb.outcome.as_str()), ("broken", "rolled back"), "{rb:?}");
    assert!(rb.tasks_failed >= 1 && rb.first_task_error.contains("swarmctl-release-that-cannot-start"), "{rb:?}");
    assert_eq!(rb.failed_requests, 0, "{rb:?}");
    assert!(rb.restored, "{rb:?}");
    assert!(r.phases[7].reasons[0].contains("rolled the release back by itself"), "{:?}", r.phases[7].reasons);
    network_phase_or_its_reason(&docker, &r, state.path()).await;

    // Nothing changed is left: the stack's own spec, its 3 replicas running.
    let spec = docker.client().inspect_service("swit-ph_server", None).await.unwrap().spec.unwrap();
    let command = spec.task_template.unwrap().container_spec.unwrap().command.unwrap_or_default();
    assert!(!command.iter().any(|c| c.contains("cannot-start")), "{command:?}");
    assert_ne!(spec.labels.unwrap()["swarmctl.spec-hash"], "broken-release");
    assert_eq!(running_tasks(&docker).await, 3);

    // The rest of the folder.
    assert!(!r.resources.is_empty(), "Engine API stats were sampled");
    let baselines: Vec<i64> = r.resources.iter().filter(|s| s.baseline).map(|s| s.slot).collect();
    assert_eq!(baselines.len(), 3, "every replica read once before the phases: {baselines:?}");
    let first_phase = r.phases[0].started_ms;
    assert!(r.resources.iter().filter(|s| s.baseline).all(|s| s.at_ms <= first_phase), "{:?}", r.resources);
    for f in ["SUMMARY.txt", "FINAL_REPORT.md", "report.html", "timeline.jsonl", "metrics/docker-stats.json"] {
        assert!(full.join(f).metadata().map(|m| m.len() > 0).unwrap_or(false), "{f} is written");
    }
    let series: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("metrics/requests_per_second_by_slot.json")).unwrap())
            .unwrap();
    assert!(!series["answer"]["data"]["result"].as_array().unwrap().is_empty(), "a Prometheus range was saved");
    let lb: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("metrics/lb_memory_bytes.json")).unwrap()).unwrap();
    assert!(!lb["answer"]["data"]["result"].as_array().unwrap().is_empty(), "Traefik's memory was saved: {lb}");
    let log = std::fs::read_to_string(full.join("logs/swit-ph_server.log")).unwrap();
    assert!(log.contains("serving"), "the replicas' logs: {}", &log[..log.len().min(300)]);
    assert!(std::fs::read_to_string(full.join("timeline.jsonl")).unwrap().lines().count() > 60);
    let slots: std::collections::BTreeSet<i64> = r.replica_series.iter().map(|p| p.slot).collect();
    assert!(slots.len() >= 3, "each replica's requests and sessions, from Prometheus: {slots:?}");
    assert_renders(&full.join("report.html"), &results.path().join("report.png"));
    let page = std::fs::read_to_string(full.join("report.html")).unwrap();
    assert!(page.contains("hang: p99 each second around the stop") && page.contains(">resumed<"), "the stop zoomed");
    assert!(page.contains("update: failed requests each second around the release"), "the release zoomed");
    if crate::util::kernel_has_netem() {
        assert!(page.contains("network: p99 each second around the impairment"), "the impairment zoomed");
    }

    // 2. report render rebuilds the same files from results.json; compare flags regressions.
    let before = std::fs::read_to_string(full.join("FINAL_REPORT.md")).unwrap();
    std::fs::remove_file(full.join("FINAL_REPORT.md")).unwrap();
    let out = swarmctl(&["report", "render", full.to_str().unwrap()], state.path());
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(std::fs::read_to_string(full.join("FINAL_REPORT.md")).unwrap(), before);
    let out = swarmctl(&["report", "compare", full.to_str().unwrap(), full.to_str().unwrap()], state.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
    let worse = results.path().join("worse");
    std::fs::create_dir_all(&worse).unwrap();
    let mut w = r.clone();
    w.phases[3].failover.as_mut().unwrap().recovery_s = None;
    std::fs::write(worse.join("results.json"), serde_json::to_string(&w).unwrap()).unwrap();
    let out = swarmctl(&["report", "compare", full.to_str().unwrap(), worse.to_str().unwrap()], state.path());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).0);
    assert!(text(&out).0.contains("failover.recovery_s"), "{}", text(&out).0);

    // 3. A killed Traefik task: clients lose the load balancer, the phase ends on time and says so.
    let lb_dir = results.path().join("lb");
    let started = Instant::now();
    let out =
        run(&["validate", "--phase", "failover", "--target", "lb", "--out", lb_dir.to_str().unwrap()], state.path());
    let (stdout, stderr) = text(&out);
    assert!(started.elapsed() < Duration::from_secs(150), "not hung on: {:?}", started.elapsed());
    let r = read(&lb_dir, &out);
    assert_eq!(out.status.code(), Some(i32::from(r.exit_code().number())), "{stdout}\n{stderr}");
    let fo = r.phases[0].failover.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0]));
    assert_eq!(fo.service, "swit-ph_lb");
    assert!(fo.kills[0].replacement_running_ms.is_some(), "the engine restarted Traefik: {fo:?}");
    assert!(fo.errors.keys().any(|c| c == "connect" || c == "disconnect"), "clients saw the LB go: {fo:?}");
    assert!(fo.sessions_dropped > 0, "{fo:?}");

    // 4. --via direct: the load goes to the replicas' own addresses, from a container on the
    // stack's network that is gone afterwards; the replicas counted exactly what was sent.
    let direct = results.path().join("direct");
    let out = run(
        &["test", "baseline", "--no-deploy", "--via", "direct", "--hold", "4s", "--out", direct.to_str().unwrap()],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    let r = read(&direct, &out);
    assert_eq!(out.status.code(), Some(i32::from(r.exit_code().number())), "{stdout}\n{stderr}");
    let load = r.phases[0].load.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0]));
    assert_eq!(load.config.urls.len(), 3, "one URL per replica: {:?}", load.config.urls);
    assert!(
        load.config.urls.iter().all(|u| u.starts_with("http://10.") && u.ends_with(":8080/mcp")),
        "{:?}",
        load.config.urls
    );
    assert_eq!(load.summary.sessions_peak, 200);
    let rec = r.phases[0].reconciliation.as_ref().unwrap();
    assert!(rec.holds && rec.server_received == Some(load.summary.requests_total as f64), "{rec:?}");
    let filters = std::collections::HashMap::from([("label".to_string(), vec!["swarmctl.oneoff".to_string()])]);
    let left = docker
        .client()
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty(), "the load container was removed: {left:?}");

    // 5. The 100K path, small: 5,000 WebSocket sessions over 4 client processes, direct to the
    // 3 replicas from the load container, each sending every 5 s (the open model: the 100K
    // profile's `period`); every session open at once, the counts reconciled.
    let small = results.path().join("small");
    let out = run(
        &[
            "test",
            "stress",
            "--no-deploy",
            "--via",
            "direct",
            "--out",
            small.to_str().unwrap(),
            "--set",
            "test.profiles.stress={sessions: 5000, ramp: 1000, hold: 10s, period: 5s, transport: ws, workers: 4}",
        ],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    let r = read(&small, &out);
    assert_eq!(out.status.code(), Some(i32::from(r.exit_code().number())), "{stdout}\n{stderr}");
    let load = r.phases[0].load.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0]));
    assert_eq!(load.summary.sessions_peak, 5000, "{:?}", load.summary);
    assert!(load.summary.success_ratio >= 0.999, "{:?}", load.summary);
    assert!(std::fs::read_dir(small.join("phases/stress/workers")).unwrap().count() == 4, "4 client processes");
    // The hold apart from the ramp (5 s), and the memory of the 4 workers and their parent.
    let hold = load.hold.as_ref().unwrap_or_else(|| panic!("no hold: {:?}", r.phases[0].reasons));
    assert!(hold.seconds >= 5 && hold.sessions_min == 5000 && hold.requests > 0, "{hold:?}");
    let memory = load.client_memory.as_ref().unwrap_or_else(|| panic!("no client memory: {load:?}"));
    assert_eq!((memory.processes, memory.sessions), (5, 5000), "{memory:?}");
    assert_eq!(load.generator.sessions_opened, 5000, "{:?}", load.generator);
    assert!(load.generator.ramp_s >= 4.999, "5,000 at 1,000/s: {:?}", load.generator);
    assert!(r.phases[0].reasons.iter().any(|l| l.starts_with("hold (")), "{:?}", r.phases[0].reasons);
    assert!(r.phases[0].reconciliation.as_ref().unwrap().holds, "{:?}", r.phases[0].reconciliation);

    // 5b. Load from swarm tasks: 2 tasks of a load service, each with its share, their
    // seconds back through the service's logs and merged; every request the servers counted.
    let swarm = results.path().join("swarm");
    let out = swarm_baseline(&swarm, "6s", state.path()).output().unwrap();
    let (stdout, stderr) = text(&out);
    let r = read(&swarm, &out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}\n{:?}", r.phases[0].reasons);
    let load = r.phases[0].load.as_ref().unwrap();
    assert_eq!((load.summary.sessions_peak, load.generator.sessions_opened), (40, 40), "{:?}", load.summary);
    assert!(load.workers_lost.is_empty(), "{:?}", load.workers_lost);
    // The engine's clock was measured before the start; on one machine it is this one's.
    assert_eq!(load.clocks.len(), 1, "{:?}", load.clocks);
    let clock = load.clocks[0].measured.unwrap_or_else(|| panic!("{:?}", load.clocks));
    assert!(clock.offset_ms.abs() <= clock.within_ms && clock.within_ms < 1000.0, "{clock:?}");
    let planned = r.events.iter().find(|e| e.kind == "load").map(|e| e.detail.as_str()).unwrap_or_default();
    assert!(planned.starts_with("2 load task(s) of up to 20 sessions: 84 open files each"), "{:?}", r.events);
    for slot in [1, 2] {
        let task = swarm.join(format!("phases/baseline/workers/task-{slot}"));
        assert!(task.join("report.json").exists(), "task {slot} reported through the logs");
    }
    assert!(r.phases[0].reconciliation.as_ref().unwrap().holds, "{:?}", r.phases[0].reconciliation);
    assert_no_load_left(&docker).await;

    // 5c. A load task killed mid-run is named, and what it had sent is counted.
    let killed = results.path().join("swarm-killed");
    let child = sending(swarm_baseline(&killed, "15s", state.path()), &killed, 1).await;
    let task = swarmctl::engine::Engine::tasks(&docker, "swit-ph-load", false)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.slot == 1 && t.is_running())
        .expect("task 1 runs");
    swarmctl::engine::Engine::kill(&docker, &task.container.unwrap(), "SIGKILL").await.unwrap();
    let out = child.wait_with_output().unwrap();
    let r = read(&killed, &out);
    let load = r.phases[0].load.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0].reasons));
    assert_eq!(load.workers_lost.len(), 1, "{:?}", load.workers_lost);
    assert!(load.workers_lost[0].starts_with("load task 1 (node "), "{:?}", load.workers_lost);
    assert_eq!(out.status.code(), Some(3), "the phase fails: {:?}", r.phases[0].reasons);
    assert!(r.phases[0].reasons.contains(&load.workers_lost[0]), "and says why: {:?}", r.phases[0].reasons);
    assert_eq!(load.generator.sessions_opened, 40, "the lost task's sessions are not missing: {:?}", load.generator);
    assert!(load.summary.requests_total > 0, "its seconds are in the totals: {:?}", load.summary);
    assert_no_load_left(&docker).await;

    // 5d. Ctrl-C while the tasks send: swarm stops them with SIGINT, each drains and reports,
    // the merged counts still match the servers', and the service is gone.
    let stopped = results.path().join("swarm-interrupted");
    let child = sending(swarm_baseline(&stopped, "60s", state.path()), &stopped, 2).await;
    let sigint = nix::sys::signal::Signal::SIGINT;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sigint).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = read(&stopped, &out);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out).1);
    let load = r.phases[0].load.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0].reasons));
    assert!(load.workers_lost.is_empty(), "every task reported: {:?}", load.workers_lost);
    assert!(r.phases[0].reconciliation.as_ref().unwrap().holds, "{:?}", r.phases[0].reconciliation);
    assert!(r.events.iter().any(|e| e.kind == "load"), "where the tasks ran: {:?}", r.events);
    assert_no_load_left(&docker).await;

    // 5e. Tasks no node may run are refused before the service is created, saying why.
    let nowhere = results.path().join("swarm-nowhere");
    let mut command = swarm_baseline(&nowhere, "5s", state.path());
    let out = command.args(["--set", "test.load_tasks.constraints=[\"node.role == worker\"]"]).output().unwrap();
    let r = read(&nowhere, &out);
    assert_eq!(out.status.code(), Some(1), "{:?}", r.phases[0].reasons);
    let why = &r.phases[0].reasons[0];
    assert!(why.contains("no active and ready node satisfies test.load_tasks.constraints"), "{why}");
    assert_no_load_left(&docker).await;

    // 5f. A bare load from swarm tasks: 2 tasks on the stack's network, toward the servers by
    // their service name; merged, written as a local load's folder, nothing left behind.
    let bare = results.path().join("bare-on-swarm");
    let mut command = crate::util::swarmctl_command(state.path());
    command.args(["load", "--on-swarm", "--tasks", "2", "--network", "swit-ph_mcp-network"]);
    command.args(["--url", "http://swit-ph_server:8080/mcp", "--sessions", "30", "--ramp", "30", "--duration", "4s"]);
    command.args(["--think", "200ms", "--out", bare.to_str().unwrap()]).args(SETS);
    let out = command.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r: swarmctl::load::RunResult =
        serde_json::from_value(crate::util::read_results(&bare.join("results.json"))).unwrap();
    assert_eq!(r.generator.sessions_opened, 30, "{:?}", r.generator);
    assert!(r.summary.requests_total >= 30 && r.summary.success_ratio == 1.0, "{:?}", r.summary);
    assert_eq!(r.clocks.len(), 1, "{:?}", r.clocks);
    for slot in [1, 2] {
        assert!(bare.join(format!("workers/task-{slot}/report.json")).exists(), "task {slot} reported");
    }
    assert!(bare.join("timeline.jsonl").exists() && bare.join("SUMMARY.txt").exists());
    assert!(stdout.contains("node clocks against this machine's"), "{stdout}");
    assert!(stderr.contains("the mix is ping=1,tools/list=1"), "not reachable from here, so said: {stderr}");
    assert_no_load_left(&docker).await;
    // Loopback inside a task is the task: refused before anything is created.
    let mut command = crate::util::swarmctl_command(state.path());
    let out = command.args(["load", "--on-swarm", "--url", "http://127.0.0.1:28380/mcp"]).args(SETS).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", text(&out).1);
    assert!(text(&out).1.contains("inside a load task is the task itself"), "{}", text(&out).1);

    // 6. Ctrl-C in the middle of scaling: the phase stops, the replicas are restored, the report
    // is written and says interrupted, exit 130.
    let (r, int) = interrupted("scaling", "scale", results.path(), state.path());
    assert_eq!((r.verdict.as_str(), r.phases[0].verdict.as_str()), ("interrupted", "interrupted"), "{:?}", r.phases);
    assert!(r.phases[0].scaling.as_ref().unwrap().restored, "{:?}", r.phases[0]);
    assert_eq!(running_tasks(&docker).await, 3, "restored to 3 replicas after Ctrl-C");
    assert!(int.join("report.html").exists() && int.join("FINAL_REPORT.md").exists());

    // 6b. Ctrl-C while swarm rolls out a release that cannot start: whether swarm had rolled it
    // back yet or not, the stack's own spec runs on its 3 replicas afterwards, and the report
    // says so.
    let (r, _) = interrupted("rollback", "release", results.path(), state.path());
    assert_eq!(r.phases[0].verdict.as_str(), "interrupted", "{:?}", r.phases[0].reasons);
    let u = r.phases[0].update.as_ref().unwrap_or_else(|| panic!("{:?}", r.phases[0]));
    assert!(u.restored, "{u:?}");
    let spec = docker.client().inspect_service("swit-ph_server", None).await.unwrap().spec.unwrap();
    let command = spec.task_template.unwrap().container_spec.unwrap().command.unwrap_or_default();
    assert!(!command.iter().any(|c| c.contains("cannot-start")), "{command:?}");
    assert_ne!(spec.labels.unwrap()["swarmctl.spec-hash"], "broken-release");
    assert_eq!(running_tasks(&docker).await, 3, "3 replicas of the stack's spec after Ctrl-C");

    // 6c. Ctrl-C while a replica is stopped (SIGSTOP): it is resumed before the run ends.
    let (r, _) = interrupted("hang", "hang", results.path(), state.path());
    assert_eq!(r.phases[0].verdict.as_str(), "interrupted", "{:?}", r.phases[0].reasons);
    assert!(r.events.iter().any(|e| e.kind == "resume"), "{:?}", r.events);
    let stopped = r.events.iter().find(|e| e.kind == "hang").unwrap();
    let slot: i64 = stopped.detail.split("slot ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let task = swarmctl::engine::Engine::tasks(&docker, "swit-ph_server", true)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.slot == slot && t.is_running())
        .unwrap_or_else(|| panic!("slot {slot} runs"));
    let pid = docker.client().inspect_container(&task.container.unwrap(), None).await.unwrap().state.unwrap().pid;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.unwrap())).unwrap();
    assert_ne!(stat.rsplit(')').next().unwrap().split_whitespace().next().unwrap(), "T", "resumed: {stat}");

    // 7. The agent (what every other node of a swarm runs for the length of a run) on this real
    // engine: it reads and kills the stack's replicas for the run's token, and nothing else.
    agent_acts_on_the_stack_only(&docker).await;

    let out = run(&["down", "--volumes"], state.path());
    assert!(out.status.success(), "{}", text(&out).1);
}

async fn agent_acts_on_the_stack_only(docker: &swarmctl::engine::Bollard) {
    use std::sync::Arc;
    use swarmctl::agent::client::Client;
    use swarmctl::agent::serve::{serve, Agent};

    let engine: swarmctl::engine::Handle = Arc::new(swarmctl::engine::connect().await.unwrap());
    let node = engine.membership().await.unwrap().node_id;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = tokio_util::sync::CancellationToken::new();
    let token = "it-token-0123456789abcdef";
    // The image the replicas run (the builtin one, packed by `up` from the swarmctl binary).
    let server = docker.client().inspect_service("swit-ph_server", None).await.unwrap();
    let image = server.spec.and_then(|s| s.task_template?.container_spec?.image).expect("the server's image");
    let agent = Agent {
        engine: engine.clone(),
        stack: "swit-ph".into(),
        node: node.clone(),
        token: token.into(),
        image: image.clone(),
    };
    let served = tokio::spawn(serve(Arc::new(agent), listener, stop.clone()));
    let client = Client::new(&addr, token);
    assert_eq!(client.hello().await.unwrap().node, node);

    let tasks = engine.tasks("swit-ph_server", false).await.unwrap();
    let victim = tasks.iter().find(|t| t.is_running()).expect("a running replica").clone();
    let container = victim.container.clone().unwrap();
    let u = client.usage(&container).await.unwrap();
    assert!(u.memory_bytes > 1 << 20 && u.cpu_ns > 0, "{u:?}");
    let err = Client::new(&addr, "guess").signal(&container, "SIGKILL").await.unwrap_err().to_string();
    assert!(err.contains("(401)"), "{err}");

    // netem through the agent: its helper container in the replica's network namespace answers
    // with the kernel's word on netem, lists the interfaces, and leaves none.
    let probe = client.netem(&container, swarmctl::netem::Order::Probe).await.unwrap();
    assert_eq!(probe.outcome.supported, crate::util::kernel_has_netem(), "{probe:?}");
    let cleared = client.netem(&container, swarmctl::netem::Order::Clear).await.unwrap();
    assert!(cleared.outcome.netem.is_empty() && cleared.outcome.interfaces.iter().any(|i| i == "eth0"), "{cleared:?}");

    // A container that is no task of the stack: refused whatever the token.
    let outsider = docker
        .client()
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some("swit-ph-outsider".into()),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody { image: Some(image), ..Default::default() },
        )
        .await
        .unwrap()
        .id;
    let refused = client.signal(&outsider, "SIGKILL").await;
    let impair = client.netem(&outsider, swarmctl::netem::Order::Clear).await;
    docker
        .client()
        .remove_container(&outsider, None::<bollard::query_parameters::RemoveContainerOptions>)
        .await
        .unwrap();
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("(403)") && err.contains("not a task of stack swit-ph"), "{err}");
    assert!(impair.unwrap_err().to_string().contains("(403)"));

    // The kill, timed by this node's clock; swarm replaces the replica.
    let before = swarmctl::units::unix_now_ms();
    let sent = client.signal(&container, "SIGKILL").await.unwrap();
    assert!(before <= sent.asked_ms && sent.asked_ms <= sent.done_ms && sent.node == node, "{sent:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = engine.tasks("swit-ph_server", false).await.unwrap();
        let dead = tasks.iter().any(|t| t.id == victim.id && !t.is_running());
        if dead && tasks.iter().filter(|t| t.is_running()).count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the killed replica was not replaced within 60 s: {tasks:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    served.await.unwrap();
}
