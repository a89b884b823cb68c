//! Monitoring, proven: promtool accepts the rendered configuration and makes every alert rule
//! fire and stay quiet (tests/monitoring/alerts.test.yml); against the real stack, Prometheus
//! keeps exactly one healthy target per replica (also after a kill), and every PromQL
//! expression of every dashboard panel and every alert returns data.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use swarmctl::phase::prom::Prometheus;

use crate::util::{swarmctl, text};

fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (Debian package `prometheus`; scripts/offline-images installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Renders a stack's files into `dir` (as `swarmctl render -o` does).
fn render(dir: &Path, sets: &[&str]) {
    let state = tempfile::tempdir().unwrap();
    let mut args = vec!["render", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(sets);
    let out = swarmctl(&args, state.path());
    assert!(out.status.success(), "{}", text(&out).1);
}

#[test]
fn promtool_accepts_the_rendered_files_and_every_alert_fires_and_stays_quiet() {
    check_rules(&["--stack", "ci"], "alerts.test.yml", 6);
    // A server without metrics: its error and latency rules read Traefik's series instead.
    check_rules(&["--stack", "python-sdk"], "alerts-via-lb.test.yml", 3);
    // Or HAProxy's.
    let haproxy = ["--set", "lb.kind=haproxy", "--set", "lb.image=swarmctl/haproxy:local"];
    check_rules(&[&["--stack", "python-sdk"][..], &haproxy].concat(), "alerts-via-haproxy.test.yml", 3);
}

/// promtool accepts the configuration rendered with `sets` and its `rules` alert rules, and the
/// unit tests in tests/monitoring/`test_file` make every one of them fire and stay quiet.
fn check_rules(sets: &[&str], test_file: &str, rules: usize) {
    let stack = sets.join(" ");
    let dir = tempfile::tempdir().unwrap();
    render(dir.path(), sets);
    // The rule file is mounted at /etc/prometheus in the stack; here it lies beside.
    let config = std::fs::read_to_string(dir.path().join("prometheus.yml")).unwrap();
    assert!(config.contains("/etc/prometheus/alerts.yml"), "{config}");
    std::fs::write(dir.path().join("prometheus.yml"), config.replace("/etc/prometheus/alerts.yml", "alerts.yml"))
        .unwrap();
    let (ok, out) = promtool(dir.path(), &["check", "config", "prometheus.yml"]);
    assert!(ok, "promtool check config: {out}");
    let (ok, out) = promtool(dir.path(), &["check", "rules", "alerts.yml"]);
    assert!(ok && out.contains(&format!("{rules} rules found")), "promtool check rules ({stack}): {out}");

    let tests =
        std::fs::read_to_string(format!("{}/tests/monitoring/{test_file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    std::fs::write(dir.path().join("alerts.test.yml"), &tests).unwrap();
    let (ok, out) = promtool(dir.path(), &["test", "rules", "alerts.test.yml"]);
    assert!(ok, "promtool test rules ({stack}): {out}");

    // Every rule is tested both ways: firing (an expected alert) and quiet (none expected).
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("alerts.yml")).unwrap()).unwrap();
    let names: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter().map(|r| r["alert"].as_str().unwrap().to_string()))
        .collect();
    let t: serde_yaml::Value = serde_yaml::from_str(&tests).unwrap();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in t["tests"].as_sequence().unwrap().iter().flat_map(|g| g["alert_rule_test"].as_sequence().unwrap()) {
        let name = case["alertname"].as_str().unwrap().to_string();
        if case["exp_alerts"].as_sequence().map_or(true, |a| a.is_empty()) {
            quiet.insert(name);
        } else {
            fires.insert(name);
        }
    }
    assert_eq!(fires, names, "{stack}: every rule is made to fire");
    assert_eq!(quiet, names, "{stack}: every rule is shown quiet");
}

/// The part of an alert expression that must return data on a healthy, loaded stack: the
/// operand before the threshold comparison, without `absent(…)`.
pub(crate) fn alert_operand(expr: &str) -> String {
    let e = expr.split(" or ").next().unwrap().trim();
    let e = e.strip_prefix("absent(").and_then(|x| x.strip_suffix(')')).unwrap_or(e);
    let mut depth = 0i32;
    let bytes = e.as_bytes();
    for (i, c) in e.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            '=' | '>' | '<' if depth == 0 && i > 0 && bytes[i - 1] == b' ' => return e[..i].trim().to_string(),
            _ => {}
        }
    }
    e.to_string()
}

#[test]
fn alert_operands_drop_the_threshold() {
    assert_eq!(alert_operand(r#"up{job="mcp"} == 0"#), r#"up{job="mcp"}"#);
    assert_eq!(alert_operand(r#"absent(up{job="mcp"} == 1)"#), r#"up{job="mcp"}"#);
    assert_eq!(alert_operand("sum(rate(a[1m])) / sum(rate(b[1m])) > 0.05"), "sum(rate(a[1m])) / sum(rate(b[1m]))");
    assert_eq!(alert_operand(r#"up{job="traefik"} == 0 or absent(up{job="traefik"})"#), r#"up{job="traefik"}"#);
}

const SETS: &[&str] = &[
    "--stack",
    "ci",
    "--set",
    "name=swit-mon",
    "--set",
    "lb.ports={web: 28480, websocket: 28481, metrics: 28482, tcp: 28483}",
    "--set",
    "prometheus.port=28490",
];

/// Active scrape targets of `job`: (instance, slot) of the healthy ones, and how many there are.
async fn healthy(p: &Prometheus, job: &str) -> (BTreeSet<String>, usize) {
    let targets = p.targets().await.unwrap_or_default();
    let of_job: Vec<_> = targets.iter().filter(|(j, _, _, _)| j == job).collect();
    (of_job.iter().filter(|(_, _, _, h)| h == "up").map(|(_, slot, _, _)| slot.clone()).collect(), of_job.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_follows_every_replica_and_every_panel_and_alert_returns_data() {
    let _swarm = crate::util::exclusive().await;
    let docker = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    let state = tempfile::tempdir().unwrap();
    // A clean slate: series an earlier run left in the Prometheus volume would answer queries.
    let mut args = vec!["down", "--volumes"];
    args.extend_from_slice(SETS);
    assert!(swarmctl(&args, state.path()).status.success());
    let mut args = vec!["up", "--timeout", "3m"];
    args.extend_from_slice(SETS);
    let out = swarmctl(&args, state.path());
    assert!(out.status.success(), "up: {}", text(&out).1);

    // Load with a tool error in the mix, so that error series exist too.
    let mut load = vec![
        "load",
        "--url",
        "http://127.0.0.1:28480/mcp",
        "--sessions",
        "30",
        "--duration",
        "8s",
        "--think",
        "50ms",
        "--mix",
        "tools/call:echo=8,tools/call:fail=1,ping=1",
        // `fail` fails by design (for the alert rules); everything else must succeed.
        "--threshold",
        "tools/call:echo:success>=100%",
        "--threshold",
        "ping:success>=100%",
    ];
    load.extend_from_slice(&SETS[..2]);
    let out = swarmctl(&load, state.path());
    assert!(out.status.success(), "load: {}", text(&out).0);

    let p = Prometheus::new("127.0.0.1", 28490);
    // Exactly one healthy target per replica, labelled with its slot; Traefik's too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (slots, n) = loop {
        let (slots, n) = healthy(&p, "mcp").await;
        if (slots.len(), n) == (3, 3) || Instant::now() > deadline {
            break (slots, n);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!((n, slots.clone()), (3, ["1", "2", "3"].iter().map(|s| s.to_string()).collect()), "mcp targets");
    assert_eq!(healthy(&p, "traefik").await, (["1".to_string()].into_iter().collect(), 1), "traefik target");

    // Every dashboard panel's and every alert's expression returns data.
    let dir = tempfile::tempdir().unwrap();
    let mut sets = SETS.to_vec();
    sets.extend(["--set", "grafana.enabled=true"]);
    render(dir.path(), &sets);
    let mut exprs: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for panel in d["panels"].as_array().unwrap() {
                for t in panel["targets"].as_array().into_iter().flatten() {
                    exprs.push((
                        format!("{} / {}", path.file_name().unwrap().to_string_lossy(), panel["title"]),
                        t["expr"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    assert!(exprs.len() >= 13, "the dashboards' panels were found: {exprs:?}");
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.path().join("alerts.yml")).unwrap()).unwrap();
    for g in rules["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            exprs.push((format!("alert {}", r["alert"].as_str().unwrap()), alert_operand(r["expr"].as_str().unwrap())));
        }
    }
    // rate() over 1m needs a few scrapes: give the series time to fill (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty: Vec<String> = Vec::new();
    loop {
        empty.clear();
        for (what, expr) in &exprs {
            match p.query(expr).await {
                Ok(v) if v.iter().any(|(_, x)| x.is_finite()) => {}
                Ok(_) => empty.push(format!("{what}: `{expr}` returned no data")),
                Err(e) => empty.push(format!("{what}: `{expr}`: {e:#}")),
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(empty.is_empty(), "{}", empty.join("\n"));

    // A replica killed: the target set follows within the discovery refresh (2 s here) and a
    // scrape (1 s) of the replacement running.
    let tasks = swarmctl::engine::Engine::tasks(&docker, "swit-mon_server", false).await.unwrap();
    let victim = tasks.iter().find(|t| t.is_running() && t.slot == 2).expect("slot 2 runs").clone();
    let targets = p.targets().await.unwrap();
    let old_instance = targets.iter().find(|t| t.0 == "mcp" && t.1 == "2").expect("slot 2 is a target").2.clone();
    swarmctl::engine::Engine::kill(&docker, victim.container.as_deref().unwrap(), "SIGKILL").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let running_at = loop {
        let tasks = swarmctl::engine::Engine::tasks(&docker, "swit-mon_server", false).await.unwrap();
        if let Some(t) = tasks.iter().find(|t| t.slot == 2 && t.id != victim.id && t.is_running()) {
            break Instant::now()
                - Duration::from_millis(swarmctl::units::unix_now_ms().saturating_sub(t.state_since_ms.unwrap_or(0)));
        }
        assert!(Instant::now() < deadline, "no replacement for slot 2 within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let followed = loop {
        let targets = p.targets().await.unwrap_or_default();
        let mcp: Vec<_> = targets.iter().filter(|t| t.0 == "mcp").collect();
        let replaced = mcp.iter().any(|t| t.1 == "2" && t.2 != old_instance);
        if mcp.len() == 3 && mcp.iter().all(|t| t.3 == "up") && replaced {
            break running_at.elapsed();
        }
        assert!(
            running_at.elapsed() < Duration::from_secs(30),
            "targets after the kill: {mcp:?} (slot 2 was {old_instance})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{} expressions returned data; Prometheus followed the killed replica's replacement {followed:?} after it ran",
        exprs.len()
    );
    assert!(
        followed < Duration::from_secs(6),
        "Prometheus followed the replacement in {followed:?} (refresh 2 s + scrape 1 s)"
    );

    let mut args = vec!["down", "--volumes"];
    args.extend_from_slice(SETS);
    let out = swarmctl(&args, state.path());
    assert!(out.status.success(), "{}", text(&out).1);
}
