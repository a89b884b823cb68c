//! The load engine against the reference server over real loopback sockets: exact accounting,
//! coordinated-omission correction, thresholds and exit codes, Ctrl-C.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use swarmctl::cli::{Cli, Command as Sub};
use swarmctl::exit::Code;
use swarmctl::load;

use crate::util::start_server;

/// `swarmctl load ARGS`, parsed.
fn load_args(args: &[&str]) -> swarmctl::cli::LoadArgs {
    let cli = Cli::try_parse_from(["swarmctl", "load"].into_iter().chain(args.iter().copied())).unwrap();
    let Sub::Load(args) = cli.command else { unreachable!("parsed as load") };
    *args
}

/// Runs `swarmctl load ARGS` in this process.
async fn run(args: &[&str]) -> load::Outcome {
    let args = load_args(args);
    load::run(
        &args.plan().unwrap(),
        args.out.as_deref(),
        tokio_util::sync::CancellationToken::new(),
        &swarmctl::progress::Quiet,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_exchange_answers_on_every_transport_and_says_why_not() {
    // A stack without a health route is ready when an MCP session opens and answers ping, over
    // whatever transport it has: erlmcp's stacks have only legacy SSE and WebSocket.
    let s = start_server(&["--sse", "127.0.0.1:0", "--sse-path", "/mcp/sse"]).await;
    let wire = std::sync::Arc::new(swarmctl::load::stream::Wire::default());
    for url in [
        format!("http://{}/mcp", s.addr("--http")),
        format!("ws://{}/mcp/ws", s.addr("--ws")),
        format!("tcp://{}", s.addr("--tcp")),
        format!("sse://{}/mcp/sse", s.addr("--sse")),
    ] {
        let target = swarmctl::load::Target::parse(&url, false, false).unwrap();
        let answered = swarmctl::load::probe::answers(&target, wire.clone(), Duration::from_secs(5)).await;
        assert_eq!(answered, Ok(()), "{url}");
    }
    let nobody = swarmctl::load::Target::parse("http://127.0.0.1:1/mcp", false, false).unwrap();
    let refused = swarmctl::load::probe::answers(&nobody, wire, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(refused.class, swarmctl::load::stats::ErrorClass::Connect, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_is_exact_for_every_transport() {
    let _heavy = crate::util::exclusive().await;
    // Legacy SSE twice: the 2024-11-05 way (/sse) and erlmcp's (/mcp/sse on its own port).
    let s = start_server(&["--sse", "127.0.0.1:0", "--sse-path", "/mcp/sse"]).await;
    let urls = [
        format!("http://{}/mcp", s.addr("--http")),
        format!("ws://{}/mcp/ws", s.addr("--ws")),
        format!("tcp://{}", s.addr("--tcp")),
        format!("sse://{}/mcp/sse", s.addr("--sse")),
    ];
    let mut sent_calls = 0;
    let mut sent_pings = 0;
    for url in &urls {
        let out = run(&[
            "--url",
            url,
            "--sessions",
            "8",
            "--ramp",
            "200",
            "--duration",
            "2s",
            "--think",
            "0",
            "--mix",
            "ping=1,tools/call:echo=3",
        ])
        .await;
        let r = &out.result;
        assert_eq!(out.exit_code, Code::Ok, "{url}: {r:?}");
        assert_eq!(r.summary.requests_ok, r.summary.requests_total, "{url}: {:?}", r.summary.errors);
        assert!(r.summary.requests_total > 100, "{url}: {}", r.summary.requests_total);
        sent_calls += r.by_method["tools/call:echo"].count;
        sent_pings += r.by_method["ping"].count;
        assert_eq!(r.by_method["initialize"].count, 8, "{url}");
        // The hold: second 2 only (the ramp ends within the first, the run at 2.035 s).
        let hold = r.hold.as_ref().unwrap_or_else(|| panic!("{url}: no hold"));
        assert_eq!(hold.seconds, 1, "{url}: {hold:?}");
        assert!(hold.requests > 0 && hold.requests < r.summary.requests_total, "{url}: {hold:?}");
        let memory = r.client_memory.as_ref().unwrap_or_else(|| panic!("{url}: no client memory"));
        assert_eq!((memory.processes, memory.sessions), (1, 8), "{url}: {memory:?}");
        assert!(memory.rss_before_kib > 0 && memory.rss_peak_kib >= memory.rss_kib, "{url}: {memory:?}");
        // The ramp as it happened: 8 sessions scheduled over 35 ms, opened no sooner.
        let g = &r.generator;
        assert_eq!(g.sessions_opened, 8, "{url}: {g:?}");
        assert!(g.ramp_s >= 0.035 && g.ramp_rate > 0.0 && g.ramp_rate <= 200.0 * 1.05, "{url}: {g:?}");
    }
    // What the engine counts as sent is exactly what the server counts as received.
    assert_eq!(s.metrics.requests_total("tools/call"), sent_calls);
    assert_eq!(s.metrics.requests_total("ping"), sent_pings);
    assert_eq!(s.metrics.requests_total("initialize"), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinated_omission_is_corrected() {
    let _heavy = crate::util::exclusive().await;
    // 200 requests/s for 5 s; the server answers nothing from 1.5 s to 2.5 s.
    let s = start_server(&["--stateless", "--stall", "1s/60s@1500ms"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let out = run(&["--url", &url, "--sessions", "4", "--ramp", "1000", "--duration", "5s", "--rate", "200"]).await;
    let r = &out.result;
    assert!(r.summary.requests_total >= 900, "{}", r.summary.requests_total);
    assert!(r.summary.latency_ms.p99 >= 500.0, "the corrected histogram shows the stall: {:?}", r.summary.latency_ms);
    assert!(
        r.summary.latency_uncorrected_ms.p99 < 500.0,
        "the raw one does not: {:?}",
        r.summary.latency_uncorrected_ms
    );
    assert!(r.generator.kept_schedule, "the stall is the target's, not the generator's: {:?}", r.generator);
}

/// Open-model stages: after the ramp, the rate rises 0 → 200/s over 2 s, holds 2 s, falls
/// over 1 s: exactly the schedule's 700 requests are sent, the server counts as many, and the
/// seconds follow the stages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_shape_the_rate() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "--url",
        &url,
        "--sessions",
        "20",
        "--ramp",
        "400",
        "--stages",
        "2s:0->200,2s:200,1s:200->0",
        "--out",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let r = &out.result;
    assert_eq!((r.config.model.as_str(), r.config.stages.as_deref()), ("staged", Some("2s:0->200,2s:200,1s:200->0")));
    assert_eq!((r.summary.requests_total, r.summary.requests_ok), (700, 700), "{:?}", r.summary);
    assert_eq!(s.metrics.requests_total("tools/call"), 700);
    assert!(r.generator.kept_schedule, "{:?}", r.generator);
    let per_second: Vec<u64> = std::fs::read_to_string(dir.path().join("timeline.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["requests"].as_u64().unwrap())
        .collect();
    // The ramp takes 50 ms, so seconds 1–2 carry the rise (about 45 then 145), 3–4 the
    // plateau, 5 the fall (about 105).
    assert!(per_second.len() >= 5, "{per_second:?}");
    assert!(per_second[0] < 70 && (120..=170).contains(&per_second[1]), "rising: {per_second:?}");
    assert!((190..=210).contains(&per_second[2]) && (190..=210).contains(&per_second[3]), "plateau: {per_second:?}");
    assert!((80..=130).contains(&per_second[4]), "falling: {per_second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&["--stateless", "--error-ratio", "0.2"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let out = run(&[
        "--url",
        &url,
        "--sessions",
        "4",
        "--duration",
        "1s",
        "--think",
        "0",
        "--mix",
        "tools/call:echo=1,tools/call:fail=1",
    ])
    .await;
    let e = &out.result.summary.errors;
    assert!(e["tool_error"] > 0, "{e:?}");
    assert!(e["jsonrpc"] > 0, "{e:?}");
    let refused = run(&["--url", "http://127.0.0.1:1/mcp", "--sessions", "2", "--duration", "1s"]).await;
    assert!(refused.result.summary.errors["connect"] >= 2, "{:?}", refused.result.summary.errors);
}

fn serve_child(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["serve", "--http", "127.0.0.1:0", "--stateless"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().nth(2).unwrap().to_string();
    (child, format!("http://{addr}/mcp"))
}

#[test]
fn failed_thresholds_exit_3_and_the_results_folder_is_complete() {
    let _heavy = crate::util::exclusive_blocking();
    let (mut server, url) = serve_child(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = crate::util::swarmctl(
        &[
            "load",
            "--url",
            &url,
            "--sessions",
            "4",
            "--duration",
            "2s",
            "--think",
            "10ms",
            "--threshold",
            "p50<1us",
            "--threshold",
            "success>=99%",
            "--out",
            dir.path().to_str().unwrap(),
        ],
        state.path(),
    );
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = crate::util::read_results(&dir.path().join("results.json"));
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["thresholds"][0]["pass"], false);
    assert_eq!(r["thresholds"][1]["pass"], true);
    for key in ["requests_total", "requests_ok", "success_ratio", "throughput_rps", "sessions_peak"] {
        assert!(r["summary"][key].is_number(), "{key}");
    }
    for key in ["min", "p50", "p90", "p95", "p99", "p999", "max", "mean"] {
        assert!(r["summary"]["latency_ms"][key].is_number(), "{key}");
        assert!(r["summary"]["latency_uncorrected_ms"][key].is_number(), "{key}");
    }
    let timeline = std::fs::read_to_string(dir.path().join("timeline.jsonl")).unwrap();
    assert!(timeline.lines().count() >= 2, "{timeline}");
    let summary = std::fs::read_to_string(dir.path().join("SUMMARY.txt")).unwrap();
    assert!(summary.contains("threshold p50<1us: FAIL"), "{summary}");
}

#[test]
fn ctrl_c_stops_drains_and_writes_an_interrupted_report() {
    let _heavy = crate::util::exclusive_blocking();
    let (mut server, url) = serve_child(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut load = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args([
            "load",
            "--url",
            &url,
            "--sessions",
            "4",
            "--duration",
            "60s",
            "--think",
            "10ms",
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let _ = Command::new("kill").args(["-INT", &load.id().to_string()]).status();
    let status = load.wait().unwrap();
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(10), "drains quickly");
    let r: Value = crate::util::read_results(&dir.path().join("results.json"));
    assert_eq!(r["verdict"], "interrupted");
    assert!(r["summary"]["requests_total"].as_u64().unwrap() > 10);
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let state = tempfile::tempdir().unwrap();
    let plan = state.path().join("plan.json");
    std::fs::write(&plan, r#"{"sessions": 5}"#).unwrap();
    let plan = plan.to_str().unwrap();
    // Usage errors (2): the flag or file named, with what would be valid.
    for (args, want) in [
        (vec!["load", "--url", "localhost:8080"], "invalid --url"),
        (vec!["load", "--url", "ftp://127.0.0.1:1/mcp"], "invalid --url"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--insecure"], "--ca-cert/--insecure"),
        (
            vec!["load", "--url", "https://127.0.0.1:1/mcp", "--ca-cert", "/nonexistent.pem"],
            "--ca-cert /nonexistent.pem",
        ),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--header", "Authorization"], "--header"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--header", "Bad Name: x"], "--header"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--mix", "nope=1"], "--mix"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--threshold", "p99<5"], "invalid threshold"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--threshold", "p99<fast"], "invalid threshold"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--sessions", "0"], "--sessions"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--ramp", "0"], "--ramp"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--rate", "0"], "--rate"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--stages", "10s"], "--stages"),
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--source-ips", "127.0.0.9-127.0.0.2"], "--source-ips"),
        (vec!["load", "--plan", plan], "is not a load plan"),
        (vec!["load", "--plan", "/nonexistent/plan.json"], "cannot read the load plan"),
        (vec!["report", "compare", ".", ".", "--tolerance=-1"], "--tolerance"),
        (vec!["test", "baseline", "--stack", "ci", "--sessions", "0"], "--sessions: must be at least 1"),
        (vec!["test", "baseline", "--stack", "ci", "--ramp", "0"], "--ramp"),
    ] {
        let out = crate::util::swarmctl(&args, state.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // What this machine cannot hold (1): said before anything is started.
    for (args, want) in [
        (
            vec![
                "load",
                "--url",
                "http://127.0.0.1:1/mcp",
                "--sessions",
                "5000000",
                "--source-ips",
                "127.0.0.2-127.0.0.250",
            ],
            "open files",
        ),
        // Toward one non-loopback destination (nothing is sent: the pre-flight refuses first),
        // 100,000 sessions need four source addresses' worth of ephemeral ports.
        (
            vec!["load", "--url", "http://10.255.255.1:1/mcp", "--sessions", "100000"],
            "--source-ips with at least 4 addresses",
        ),
        // Toward loopback the engine spreads them over 127.0.0.2+ itself; what remains is the
        // open-file limit of one process.
        (vec!["load", "--url", "http://127.0.0.1:1/mcp", "--sessions", "100000"], "open files"),
    ] {
        let out = crate::util::swarmctl(&args, state.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// A run's plan.json, given back with --plan, runs the same plan: what a load container and a
/// worker process are handed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_plan_runs_again_as_it_was() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let url = format!("ws://{}/mcp/ws", s.addr("--ws"));
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let args = [
        "--url",
        &url,
        "--ws-subprotocol",
        "--no-close",
        "--sessions",
        "4",
        "--stages",
        "1s:40",
        "--mix",
        "ping=1,tools/list=1",
        "--threshold",
        "success>=99%",
        "--out",
        first.to_str().unwrap(),
    ];
    let out = run(&args).await;
    assert_eq!(out.exit_code, Code::Ok, "{:?}", out.result);
    let saved = first.join("plan.json");
    let plan = load_args(&args).plan().unwrap();
    let again = load_args(&["--plan", saved.to_str().unwrap()]).plan().unwrap();
    assert_eq!(again, plan, "every flag is in the plan, the stages and the subprotocol too");
    let second = run(&["--plan", saved.to_str().unwrap()]).await;
    assert_eq!(second.result.config, out.result.config);
    assert_eq!(second.result.summary.requests_total, 40, "the stages' 40 requests, as the first run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_connect_from_the_source_addresses_given() {
    let _heavy = crate::util::exclusive().await;
    // A bare listener that notes who connects and hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let seen = peers.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            seen.lock().unwrap().insert(peer.ip().to_string());
            drop(stream);
        }
    });
    let url = format!("tcp://{addr}");
    let out = run(&[
        "--url",
        &url,
        "--sessions",
        "6",
        "--ramp",
        "100",
        "--duration",
        "1s",
        "--source-ips",
        "127.0.0.2-127.0.0.4",
    ])
    .await;
    assert!(out.result.by_method["initialize"].count >= 6);
    let peers: Vec<String> = peers.lock().unwrap().iter().cloned().collect();
    assert_eq!(peers, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    assert_eq!(load::plan::parse_sources("127.0.0.2-127.0.0.4,10.1.1.1").unwrap().len(), 4);
    assert!(load::plan::parse_sources("127.0.0.9-127.0.0.2").is_err());
}

#[test]
fn workers_split_the_sessions_and_merge_exactly() {
    let _heavy = crate::util::exclusive_blocking();
    let (mut server, url) = serve_child(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args = [
        "load",
        "--url",
        &url,
        "--sessions",
        "30",
        "--ramp",
        "200",
        "--duration",
        "2s",
        "--think",
        "20ms",
        "--workers",
        "3",
        "--json",
        "--out",
        dir.path().to_str().unwrap(),
    ];
    // Twice into the same folder: the second run must not read the first one's worker files.
    let first = crate::util::swarmctl(&args, state.path());
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let out = crate::util::swarmctl(&args, state.path());
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["by_method"]["initialize"]["count"], 30, "every worker's sessions are counted once");
    assert_eq!(r["summary"]["sessions_peak"], 30);
    let sent = r["summary"]["requests_total"].as_u64().unwrap();
    assert!(sent > 500, "{sent}");
    // The merged timeline accounts for every request exactly once.
    let timeline = std::fs::read_to_string(dir.path().join("timeline.jsonl")).unwrap();
    let per_second: u64 =
        timeline.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["requests"].as_u64().unwrap()).sum();
    assert_eq!(per_second, sent);
    // The hold, merged from the workers' histograms, is exactly the timeline's seconds after
    // the ramp (0.145 s) once all 30 were open, up to 2.145 s: second 2.
    let seconds: Vec<Value> = timeline.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(seconds[0]["sessions"], 30, "all open within the first second: {:?}", seconds[0]);
    assert_eq!(r["hold"]["seconds"], 1, "{}", r["hold"]);
    assert_eq!(r["hold"]["requests"], seconds[1]["requests"], "{}", r["hold"]);
    assert_eq!(r["client_memory"]["processes"], 4, "3 workers and their parent: {}", r["client_memory"]);
    assert_eq!(r["client_memory"]["sessions"], 30);
    // The ramp over the workers: 30 opened, the last no sooner than 29 intervals of 1/200 s
    // after the first was due.
    assert_eq!(r["generator"]["sessions_opened"], 30, "{}", r["generator"]);
    assert!(r["generator"]["ramp_s"].as_f64().unwrap() >= 0.145, "{}", r["generator"]);
    assert!(r["client_memory"]["rss_before_kib"].as_u64().unwrap() > 4 * 1024, "{}", r["client_memory"]);
    for k in 0..3 {
        assert!(dir.path().join(format!("workers/worker-{k}/report.json")).is_file());
    }
}

/// A worker killed part-way is named with the end of its log; what its seconds carried is
/// counted, and the run says the planned load was not all sent (exit 4).
#[test]
fn a_worker_killed_part_way_is_named_and_its_seconds_counted() {
    let _heavy = crate::util::exclusive_blocking();
    let (mut server, url) = serve_child(&[]);
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let args =
        ["load", "--url", &url, "--sessions", "20", "--duration", "20s", "--think", "50ms", "--workers", "2", "--json"];
    let mut command = crate::util::swarmctl_command(state.path());
    command.args(args).args(["--out", dir.path().to_str().unwrap()]).stdout(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let seconds = dir.path().join("workers/worker-1/seconds.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&seconds).unwrap_or_default().lines().count() < 2 {
        assert!(std::time::Instant::now() < deadline, "worker 1 sent no seconds within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Worker 1 by its PID: the child of the load process whose command line names its folder.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let worker = children
        .split_whitespace()
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default().ends_with(b"worker-1\0"))
        .unwrap_or_else(|| panic!("no worker-1 among {children}"));
    let sigkill = nix::sys::signal::Signal::SIGKILL;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker.parse().unwrap()), sigkill).unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost = r["workers_lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    let lost = lost[0].as_str().unwrap();
    assert!(lost.starts_with("load worker 1 ended (signal: 9 (SIGKILL)) without a report"), "{lost}");
    assert!(lost.contains("counted up to its last second"), "{lost}");
    // Its 10 sessions were open at its last second: not missing from the count.
    assert_eq!(r["generator"]["sessions_opened"], 20, "{}", r["generator"]);
    let timeline = std::fs::read_to_string(dir.path().join("timeline.jsonl")).unwrap();
    let per_second: u64 =
        timeline.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["requests"].as_u64().unwrap()).sum();
    assert_eq!(r["summary"]["requests_total"], per_second, "the totals are the seconds' sum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_held_until_the_end_even_with_a_long_think_time() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let started = Instant::now();
    let out = run(&["--url", &url, "--sessions", "5", "--ramp", "100", "--duration", "2s", "--think", "60s"]).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "the run lasts its duration: {:?}", started.elapsed());
    assert_eq!(out.result.summary.sessions_peak, 5);
    assert_eq!(out.result.summary.requests_total, 5, "one request each: the next would be due after the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_notice_their_server_go_and_move_to_another() {
    let _heavy = crate::util::exclusive().await;
    for (transport, flag, path) in [("ws", "--ws", "/mcp/ws"), ("tcp", "--tcp", "")] {
        let (a, b) = (start_server(&[]).await, start_server(&[]).await);
        let urls = [a.addr(flag), b.addr(flag)].map(|addr| format!("{transport}://{addr}{path}"));
        // One request each at the start, the next due long after the end: only a session that
        // watches its idle connection can know that server `a` went away.
        let stop_a = a.stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop_a.cancel();
        });
        let out = run(&[
            "--url",
            &urls[0],
            "--url",
            &urls[1],
            "--sessions",
            "10",
            "--ramp",
            "100",
            "--duration",
            "4s",
            "--think",
            "60s",
        ])
        .await;
        let s = &out.result.summary;
        assert_eq!((s.requests_total, s.requests_ok), (10, 10), "{transport}: {s:?}");
        assert_eq!(s.sessions_dropped, 5, "{transport}: the 5 sessions of `a` saw it go: {s:?}");
        assert_eq!(s.sessions_reestablished, 5, "{transport}: {s:?}");
        // They came back on `b` (within a second and a refused try at `a`): `b` initialized its
        // own 5 and those 5.
        assert_eq!(b.metrics.requests_total("initialize"), 10, "{transport}");
        assert_eq!(a.metrics.requests_total("initialize"), 5, "{transport}");
    }
}

/// A loopback address that relays each connection to the server `upstream()` names when the
/// connection comes, or hangs up on it when that is `None`.
async fn door(upstream: impl Fn() -> Option<std::net::SocketAddr> + Send + 'static) -> std::net::SocketAddr {
    let door = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = door.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = door.accept().await {
            let Some(to) = upstream() else { continue };
            tokio::spawn(async move {
                let mut upstream = tokio::net::TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_trying_to_get_in_until_the_server_lets_them() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let server = s.addr("--tcp");
    // A door that hangs up on everyone for the first 1.5 s, then lets them through to the
    // server: every session's first attempts fail, on the same (only) target.
    let opened_at = Instant::now() + Duration::from_millis(1500);
    let url = format!("tcp://{}", door(move || (Instant::now() >= opened_at).then_some(server)).await);
    let out = run(&["--url", &url, "--sessions", "4", "--ramp", "100", "--duration", "4s", "--think", "500ms"]).await;
    let init = &out.result.by_method["initialize"];
    assert_eq!(out.result.generator.sessions_opened, 4, "all got in, late: {:?}", out.result.generator);
    assert_eq!(init.ok, 4, "{init:?}");
    // 1.5 s of refusals take more than the three tries (0.7 s) clients used to give up after.
    assert!(init.count - init.ok >= 12, "each kept trying: {init:?}");
    assert_eq!(out.result.summary.sessions_reestablished, 0, "first opens are not re-establishments");
    assert!(out.result.summary.requests_ok > 0 && out.result.summary.requests_ok == out.result.summary.requests_total);
    assert_eq!(s.metrics.requests_total("initialize"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_session_outlives_its_timed_out_requests() {
    let _heavy = crate::util::exclusive().await;
    // The server answers nothing from 1 s to 2 s; requests give up after 300 ms.
    let s = start_server(&["--stall", "1s/60s@1s"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let out = run(&[
        "--url",
        &url,
        "--sessions",
        "4",
        "--ramp",
        "1000",
        "--duration",
        "3500ms",
        "--rate",
        "40",
        "--timeout",
        "300ms",
    ])
    .await;
    let r = &out.result.summary;
    assert!(r.errors.get("timeout").copied().unwrap_or(0) >= 4, "the stall timed requests out: {r:?}");
    // The sessions stayed: their next requests dialled again under the same session id, and
    // went on after the stall; no session was initialized twice.
    assert_eq!((r.sessions_dropped, r.sessions_reestablished), (0, 0), "{r:?}");
    assert_eq!(s.metrics.requests_total("initialize"), 4);
    assert!(r.requests_ok >= 40, "answered after the stall too: {r:?}");
    assert_eq!(r.requests_total - r.requests_ok, r.errors.values().sum::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_session_the_server_forgot_initializes_again_and_is_counted() {
    let _heavy = crate::util::exclusive().await;
    // One address, behind which server `a` is replaced by server `b` at 1.5 s: `b` has never
    // heard of the sessions `a` made, as after a replica's restart.
    let (a, b) = (start_server(&[]).await, start_server(&[]).await);
    let (to_a, to_b) = (a.addr("--http"), b.addr("--http"));
    let switch_at = Instant::now() + Duration::from_millis(1500);
    let stop_a = a.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep_until(switch_at.into()).await;
        stop_a.cancel();
    });
    let url = format!("http://{}/mcp", door(move || Some(if Instant::now() < switch_at { to_a } else { to_b })).await);
    let out =
        run(&["--url", &url, "--sessions", "4", "--ramp", "100", "--duration", "3500ms", "--think", "300ms"]).await;
    let r = &out.result.summary;
    // Each session lost its connection with `a`, dialled again under its session id, got 404
    // from `b`, and initialized again there, on that connection.
    assert_eq!(r.errors.get("session_expired"), Some(&4), "{r:?}");
    assert_eq!((r.sessions_dropped, r.sessions_reestablished), (4, 4), "{r:?}");
    let init = &out.result.by_method["initialize"];
    assert_eq!((init.count, init.ok), (8, 8), "the second initialize is counted too: {init:?}");
    assert_eq!((a.metrics.requests_total("initialize"), b.metrics.requests_total("initialize")), (4, 4));
    assert!(r.requests_ok > 4 * 3, "calls went on with `b`: {r:?}");
    assert_eq!(r.requests_total - r.requests_ok, 4, "only the four forgotten requests failed: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_session_dials_again_when_the_server_closes_after_each_answer() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let upstream = s.addr("--http");
    // A front that answers every request with `Connection: close` (hyper without keep-alive),
    // passing it on to the server: each next request needs a new connection.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", front.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        while let Ok((stream, _)) = front.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                let (parts, body) = req.into_parts();
                let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
                let headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .filter(|(k, _)| *k != "host" && *k != "content-length")
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let (status, h, body) =
                    crate::util::http(upstream, parts.method.as_str(), parts.uri.path(), &headers, &body).await;
                let mut res = hyper::Response::builder().status(status);
                for (k, v) in h.iter().filter(|(k, _)| *k != "content-length" && *k != "transfer-encoding") {
                    res = res.header(k, v);
                }
                Ok::<_, std::convert::Infallible>(
                    res.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap(),
                )
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    let out = run(&["--url", &url, "--sessions", "2", "--ramp", "100", "--duration", "2s", "--rate", "20"]).await;
    let r = &out.result.summary;
    assert!(r.requests_total >= 20 && r.requests_ok == r.requests_total, "{r:?}");
    assert_eq!((r.sessions_dropped, r.sessions_reestablished), (0, 0), "a close after an answer is not a loss: {r:?}");
    assert_eq!(s.metrics.requests_total("initialize"), 2, "each session kept its MCP session");
    // initialize, notifications/initialized and every call each on a connection of its own.
    let dialled = connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dialled >= r.requests_total + 4, "{dialled} connections for {} requests", r.requests_total);
}

/// A one-trick HTTP server: answers every request on every connection with `reply` (or never,
/// when it is empty), until the test ends.
async fn canned(reply: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !reply.is_empty() && conn.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// `swarmctl ARGV` as a process, waited for off the runtime (the servers it loads run on it).
async fn swarmctl_beside(argv: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let state = tempfile::tempdir().unwrap();
        crate::util::swarmctl(&argv.iter().map(String::as_str).collect::<Vec<_>>(), state.path())
    })
    .await
    .unwrap()
}

/// `swarmctl load ARGS --out DIR` as a process: (exit code, results.json, SUMMARY.txt, took).
async fn load_cli(args: &[&str]) -> (Option<i32>, Value, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut argv: Vec<String> = ["load"].iter().chain(args).map(|s| s.to_string()).collect();
    argv.extend(["--out".to_string(), dir.path().display().to_string()]);
    let started = Instant::now();
    let out = swarmctl_beside(argv).await;
    let took = started.elapsed();
    assert!(dir.path().join("results.json").exists(), "no results.json: {}", String::from_utf8_lossy(&out.stderr));
    let results = crate::util::read_results(&dir.path().join("results.json"));
    let summary = std::fs::read_to_string(dir.path().join("SUMMARY.txt")).unwrap();
    // The same report page as a test's: every second of the run drawn.
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.contains("aria-label=\"Latency, corrected") || page.contains("No load was measured"), "{page}");
    (out.status.code(), results, summary, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_fails_says_how_and_a_run_with_failures_cannot_pass_unjudged() {
    let _heavy = crate::util::exclusive().await;
    // Nobody there: the run gives up within seconds of trying, with the OS's word for it.
    let (code, r, summary, took) =
        load_cli(&["--url", "http://127.0.0.1:1/mcp", "--sessions", "5", "--duration", "60s"]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(r["verdict"], "error");
    let error = r["error"].as_str().unwrap();
    assert_eq!(error, "no session could open: connect: 127.0.0.1:1: Connection refused (os error 111)");
    assert!(summary.contains(error), "{summary}");
    assert!(took < Duration::from_secs(20), "gave up early, not after 60 s: {took:?}");

    // Not an MCP server: which status, and what its body said.
    let broken = canned("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 20\r\n\r\nboom: database down\n").await;
    let url = format!("http://{broken}/mcp");
    let (code, r, summary, _) = load_cli(&["--url", &url, "--sessions", "3", "--duration", "60s"]).await;
    assert_eq!(code, Some(1), "{summary}");
    assert_eq!(r["error"], "no session could open: http_status: HTTP 500: boom: database down", "{summary}");
    assert_eq!(r["summary"]["error_samples"]["http_status"][0], "HTTP 500: boom: database down");

    // A server that takes the request and never answers: a timeout, said as one.
    let silent = canned("").await;
    let url = format!("http://{silent}/mcp");
    let (code, r, _, _) = load_cli(&["--url", &url, "--sessions", "2", "--duration", "60s", "--timeout", "1s"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(r["error"], "no session could open: timeout: no answer to initialize within 1s");

    // Sessions that get in and then fail a fifth of their requests: with no --threshold, the
    // stack's SLO (success 95 %) judges, and the failures are shown as the server sent them.
    let s = start_server(&["--stateless", "--error-ratio", "0.2"]).await;
    let url = format!("http://{}/mcp", s.addr("--http"));
    let (code, r, summary, _) =
        load_cli(&["--url", &url, "--sessions", "4", "--duration", "2s", "--think", "10ms"]).await;
    assert_eq!(code, Some(3), "{summary}");
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["thresholds"][0]["expr"], "success>=95%");
    let jsonrpc = r["summary"]["error_samples"]["jsonrpc"][0].as_str().unwrap();
    assert!(jsonrpc.starts_with("JSON-RPC error -32"), "{jsonrpc}");
    assert!(summary.contains("threshold success>=95%: FAIL") && summary.contains(&format!("  jsonrpc: {jsonrpc}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_calling_a_tool_the_server_does_not_have_is_refused_before_the_run() {
    let _heavy = crate::util::exclusive().await;
    let s = start_server(&[]).await;
    let urls = [
        format!("http://{}/mcp", s.addr("--http")),
        format!("ws://{}/mcp/ws", s.addr("--ws")),
        format!("tcp://{}", s.addr("--tcp")),
    ];
    for url in urls {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("r").to_string_lossy().into_owned();
        let args = [
            "load",
            "--url",
            &url,
            "--sessions",
            "2",
            "--duration",
            "30s",
            "--mix",
            "tools/call:nope=1,ping=1",
            "--out",
            &out_dir,
        ];
        let started = Instant::now();
        let out = swarmctl_beside(args.iter().map(|a| a.to_string()).collect()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("calls `nope`, which the server at") && stderr.contains("`echo`"), "{url}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "refused before the run: {:?}", started.elapsed());
        // The results folder says so too, with nothing measured.
        let r: serde_json::Value = crate::util::read_results(&dir.path().join("r/results.json"));
        assert_eq!(r["verdict"], "error", "{url}");
        assert!(r["error"].as_str().unwrap().contains("calls `nope`"), "{url}: {r}");
        assert_eq!(r["summary"]["requests_total"], 0);
        let summary = std::fs::read_to_string(dir.path().join("r/SUMMARY.txt")).unwrap();
        assert!(summary.contains("calls `nope`"), "{summary}");
    }
    // A tool it has passes the check, and the run goes on.
    let url = format!("http://{}/mcp", s.addr("--http"));
    let (code, r, summary, _) =
        load_cli(&["--url", &url, "--sessions", "2", "--duration", "1s", "--mix", "tools/call:add=1"]).await;
    assert_eq!(code, Some(0), "{summary}");
    assert!(r["summary"]["requests_ok"].as_u64().unwrap() > 0, "{summary}");
}

/// A TLS endpoint in front of `upstream` (the reference server), as a load balancer or the
/// server itself would terminate it, with a certificate made for 127.0.0.1 by openssl. It
/// counts the connections whose first bytes carried `header`.
struct TlsFront {
    addr: std::net::SocketAddr,
    with_header: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A test CA (ca.pem) and a certificate it signed for 127.0.0.1 with its key (cert.pem,
/// key.pem), in `dir`.
fn self_signed(dir: &std::path::Path) {
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    for args in [
        "req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=swarmctl-test-ca -keyout ca-key.pem -out ca.pem",
        "req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr",
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile leaf.ext -out cert.pem",
    ] {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn tls_front(dir: &std::path::Path, upstream: std::net::SocketAddr, header: &'static str) -> TlsFront {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let certs: Vec<_> =
        rustls_pki_types::CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let with_header = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = with_header.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut first = vec![0u8; 16 * 1024];
                let Ok(n) = tls.read(&mut first).await else { return };
                if String::from_utf8_lossy(&first[..n]).contains(header) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                if up.write_all(&first[..n]).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    TlsFront { addr, with_header }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_headers_and_what_a_failed_handshake_says() {
    let _heavy = crate::util::exclusive().await;
    let certs = tempfile::tempdir().unwrap();
    self_signed(certs.path());
    let ca = certs.path().join("ca.pem");
    let s = start_server(&[]).await;
    const AUTH: &str = "Authorization: Bearer t0ken";
    let http = tls_front(certs.path(), s.addr("--http"), AUTH).await;
    let ws = tls_front(certs.path(), s.addr("--ws"), AUTH).await;

    // https, the certificate checked against its CA, a header on every request: every reply
    // checked and counted on both sides.
    let url = format!("https://127.0.0.1:{}/mcp", http.addr.port());
    let before = s.metrics.requests_total("tools/call");
    let (code, r, summary, _) = load_cli(&[
        "--url",
        &url,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--header",
        AUTH,
        "--sessions",
        "8",
        "--duration",
        "2s",
        "--think",
        "20ms",
    ])
    .await;
    assert_eq!(code, Some(0), "{summary}");
    let total = r["summary"]["requests_total"].as_u64().unwrap();
    assert!(total > 100 && r["summary"]["requests_ok"] == total, "{summary}");
    assert_eq!(s.metrics.requests_total("tools/call") - before, total, "the server saw each one");
    let http_conns = http.with_header.load(std::sync::atomic::Ordering::Relaxed);
    assert!(http_conns >= 8, "every connection's first request carried the header: {http_conns}");

    // wss with --insecure (the self-signed certificate taken as it is), the header on the
    // handshake.
    let url = format!("wss://127.0.0.1:{}/mcp/ws", ws.addr.port());
    let args =
        ["--url", &url, "--insecure", "--header", AUTH, "--sessions", "4", "--duration", "2s", "--think", "20ms"];
    let (code, r, summary, _) = load_cli(&args).await;
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(r["summary"]["requests_ok"], r["summary"]["requests_total"], "{summary}");
    let handshakes = ws.with_header.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(handshakes, 5, "the four sessions' handshakes and the tool probe's carried the header");

    // The same certificate against the system's roots: the handshake fails, and says why.
    let url = format!("https://127.0.0.1:{}/mcp", http.addr.port());
    let (code, r, _, _) = load_cli(&["--url", &url, "--sessions", "2", "--duration", "30s"]).await;
    assert_eq!(code, Some(1));
    let error = r["error"].as_str().unwrap();
    assert!(
        error.starts_with("no session could open: connect: ") && error.contains("TLS: invalid peer certificate"),
        "{error}"
    );
    // TLS to a port that speaks plain HTTP.
    let url = format!("https://{}/mcp", s.addr("--http"));
    let (code, r, _, _) = load_cli(&["--url", &url, "--insecure", "--sessions", "2", "--duration", "30s"]).await;
    assert_eq!(code, Some(1));
    assert!(r["error"].as_str().unwrap().contains("TLS: "), "{}", r["error"]);
}
