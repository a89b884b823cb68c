//! HAProxy in front of the replicas (`lb.kind: haproxy`, its image built from Debian's package
//! by `scripts/offline-images`): HAProxy itself accepts the rendered configuration; deployed,
//! the stack answers through it; 1,000 Streamable HTTP sessions spread over 3 replicas keep
//! every follow-up on the replica that issued the session (none had to initialize again, and
//! the servers counted exactly what was sent); WebSocket goes through it; a replica killed
//! under load leaves the pool and its sessions open again elsewhere; Prometheus scrapes
//! HAProxy, and every alert expression and dashboard panel returns data.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmctl::phase::prom::Prometheus;

use crate::util::{read_test_run as read, text};

const SETS: &[&str] = &[
    "--stack",
    "ci",
    "--set",
    "name=swit-hp",
    "--set",
    "lb.kind=haproxy",
    "--set",
    "lb.image=swarmctl/haproxy:local",
    "--set",
    "lb.ports={web: 28580, websocket: 28581, metrics: 28582, tcp: 28583}",
    "--set",
    "prometheus.port=28590",
];

fn run(args: &[&str], state: &Path) -> std::process::Output {
    crate::util::swarmctl_with(args, SETS, state)
}

/// `test baseline --no-deploy` with `profile` into `out`.
fn baseline(profile: &str, out: &Path, state: &Path) -> swarmctl::report::TestRun {
    let profile = format!("test.profiles.baseline={profile}");
    let o = run(&["test", "baseline", "--no-deploy", "--out", out.to_str().unwrap(), "--set", &profile], state);
    let (stdout, stderr) = text(&o);
    let r = read(out, &o);
    assert_eq!(r.verdict.as_str(), "pass", "{stdout}\n{stderr}\n{:?}", r.phases.first().map(|p| &p.reasons));
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_keeps_every_mcp_session_on_its_replica_and_fails_over() {
    let _swarm = crate::util::exclusive().await;
    let state = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();

    // HAProxy's own check of what swarmctl renders (Debian's binary, as in the image).
    let rendered = tempfile::tempdir().unwrap();
    let out = run(&["render", "-o", rendered.path().to_str().unwrap(), "--set", "grafana.enabled=true"], state.path());
    assert!(out.status.success(), "render: {}", text(&out).1);
    let cfg = rendered.path().join("haproxy.cfg");
    let check = Command::new("/usr/sbin/haproxy").arg("-c").arg("-f").arg(&cfg).output().expect("haproxy -c runs");
    assert!(check.status.success(), "haproxy -c: {}", text(&check).1);
    assert!(!rendered.path().join("traefik.yml").exists(), "no Traefik configuration beside it");

    let out = run(&["down", "--volumes"], state.path());
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(&["up", "--timeout", "3m"], state.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "up:\n{stdout}\n{stderr}");
    assert!(format!("{stdout}{stderr}").contains("routed"), "{stdout}\n{stderr}");

    // 1,000 sessions over 3 replicas, round-robin on initialize: two in three follow-ups would
    // reach a replica that never issued their session (404, and the client initializes again)
    // if HAProxy did not pin them by Mcp-Session-Id.
    let sticky = results.path().join("sticky");
    let r = baseline("{sessions: 1000, ramp: 250, hold: 8s, think: 1s, transport: http}", &sticky, state.path());
    let load = r.phases[0].load.as_ref().unwrap();
    assert_eq!(load.generator.sessions_opened, 1000, "{:?}", load.generator);
    assert_eq!(load.by_method["initialize"].count, 1000, "no session initialized twice: {:?}", load.by_method);
    assert_eq!(load.summary.requests_ok, load.summary.requests_total, "{:?}", load.summary.error_samples);
    assert!(r.phases[0].reconciliation.as_ref().unwrap().holds, "{:?}", r.phases[0].reconciliation);

    // Every replica took its share, as HAProxy counted it per server slot.
    let prom = Prometheus::new("127.0.0.1", 28590);
    let per_server = r#"sum by (server) (haproxy_server_http_responses_total{job="haproxy",proxy="http"}) > 100"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    let serving = loop {
        let n = prom.query(per_server).await.map(|v| v.len()).unwrap_or(0);
        if n == 3 || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(serving, 3, "sessions spread over the 3 replicas");
    // The exporter leaves out the empty slots: 3 servers, not 64 (all of them ran Prometheus
    // out of memory at 12 tasks).
    let slots = prom.query(r#"count by (server) (haproxy_server_weight{job="haproxy",proxy="http"})"#).await.unwrap();
    assert_eq!(slots.len(), 3, "{slots:?}");

    // Every phase of `test full` through HAProxy (WebSocket in stress, scaling with no reload,
    // a 4 s stall ridden out, a rolling update), each passing its SLO.
    let full = results.path().join("full");
    let out = run(&["test", "full", "--no-deploy", "--out", full.to_str().unwrap()], state.path());
    let (stdout, stderr) = text(&out);
    let r = read(&full, &out);
    let verdicts: Vec<(&str, &str)> = r.phases.iter().map(|p| (p.name.as_str(), p.verdict.as_str())).collect();
    for p in &r.phases {
        // The failures by kind say which path failed (a request cut, a 404, a timeout).
        let errors = p.load.as_ref().map(|l| &l.summary.errors);
        assert_eq!(
            p.verdict.as_str(),
            "pass",
            "{verdicts:?}\n{}: {:?}\nerrors {errors:?}\n{stdout}\n{stderr}",
            p.name,
            p.reasons
        );
    }
    let names: Vec<&str> = verdicts.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["baseline", "stress", "incremental", "failover", "scaling", "hang", "update", "rollback"]);
    assert_eq!(out.status.code(), Some(0), "{verdicts:?}\n{stderr}");
    // HAProxy's pool memory is written; no CPU figure, which HAProxy does not count.
    assert!(full.join("metrics/lb_memory_bytes.json").exists());
    assert!(!full.join("metrics/lb_cpu_cores.json").exists(), "no CPU figure made up for HAProxy");
    // A replica killed under load: out of DNS and its connections closed, HAProxy re-routes
    // its sessions at once, and each opens again elsewhere (measured here: 0.6 s; 2.6 s when
    // its address swallows the SYNs sent after the kill, as it did once in CI).
    // Each of its sessions fails once, with the 404 of the replica it lands on; only a request
    // in flight at the kill is cut (under one at this rate). Cutting the requests still
    // connecting to it when HAProxy takes it out would cost each session a second failure and
    // the phase its SLO (CI, before `timeout connect` was per attempt and short: 56 cut).
    let p = r.phases.iter().find(|p| p.name == "failover").unwrap();
    let fo = p.failover.as_ref().unwrap_or_else(|| panic!("no failover figures: {:?}", p.reasons));
    assert_eq!(fo.kills.len(), 1, "{fo:?}");
    let recovery = fo.recovery_s.unwrap_or_else(|| panic!("clients recovered: {fo:?}"));
    assert!((0.0..5.0).contains(&recovery), "recovery {recovery} s: {fo:?}");
    assert!(fo.sessions_dropped > 0 && fo.sessions_dropped == fo.sessions_reestablished, "{fo:?}");
    let other: u64 = fo.errors.iter().filter(|(kind, _)| *kind != "session_expired").map(|(_, n)| n).sum();
    assert!(other <= 5, "requests cut or timed out beside the 404s: {fo:?}");

    // HAProxy itself killed: reported, restarted by swarm, its clients reconnect.
    let lb = results.path().join("lb");
    let out = run(&["validate", "--phase", "failover", "--target", "lb", "--out", lb.to_str().unwrap()], state.path());
    let r = read(&lb, &out);
    let fo = r.phases[0].failover.as_ref().unwrap_or_else(|| panic!("{:?}\n{}", r.phases[0].reasons, text(&out).1));
    assert_eq!(fo.service, "swit-hp_lb");
    assert!(fo.kills[0].replacement_running_ms.is_some(), "the engine restarted HAProxy: {fo:?}");
    assert!(fo.errors.keys().any(|c| c == "connect" || c == "disconnect"), "clients saw it go: {fo:?}");

    // Prometheus scrapes HAProxy; every alert and dashboard expression returns data.
    let targets = prom.targets().await.unwrap_or_default();
    let up: BTreeSet<&str> = targets
        .iter()
        .filter(|(job, _, _, h)| job == "haproxy" && h == "up")
        .map(|(_, slot, _, _)| slot.as_str())
        .collect();
    assert_eq!(up, BTreeSet::from(["1"]), "{targets:?}");
    let mut exprs: Vec<(String, String)> = Vec::new();
    let board = rendered.path().join("grafana/load-balancer-haproxy.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&board).unwrap()).unwrap();
    for panel in d["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push((format!("panel {}", panel["title"]), t["expr"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(exprs.len(), 5, "{exprs:?}");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(rendered.path().join("alerts.yml")).unwrap()).unwrap();
    for g in rules["groups"].as_sequence().unwrap() {
        for rule in g["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            if expr.contains("haproxy") {
                let operand = crate::monitoring::alert_operand(expr);
                exprs.push((format!("alert {}", rule["alert"].as_str().unwrap()), operand));
            }
        }
    }
    // The error and latency rules read HAProxy only for a server without metrics (promtool
    // proves them: tests/monitoring/alerts-via-haproxy.test.yml); this stack's is its job's.
    assert_eq!(exprs.len(), 6, "the panels and LoadBalancerDown: {exprs:?}");
    let mut empty = Vec::new();
    for (what, expr) in &exprs {
        match prom.query(expr).await {
            Ok(v) if v.iter().any(|(_, x)| x.is_finite()) => {}
            Ok(_) => empty.push(format!("{what}: `{expr}` returned no data")),
            Err(e) => empty.push(format!("{what}: `{expr}`: {e:#}")),
        }
    }
    assert!(empty.is_empty(), "{}", empty.join("\n"));

    let out = run(&["down", "--volumes"], state.path());
    assert!(out.status.success(), "down: {:?}", text(&out));
}
