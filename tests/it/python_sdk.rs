//! A server nobody here wrote, in the swarm: the official MCP Python SDK's FastMCP
//! (stacks/python-sdk.yaml, its image built by `scripts/offline-images`) deployed, tested and
//! failed over through Traefik. It has no health route (readiness through MCP), no metrics
//! (reconciliation "not measured"), no `echo` (the mix fits the server) and stateful sessions
//! (a killed replica's sessions open again elsewhere).

use std::path::Path;

use crate::util::{read_test_run as read, text};

const SETS: &[&str] = &[
    "--stack",
    "python-sdk",
    "--set",
    "name=swit-py",
    "--set",
    "lb.ports={web: 28480, websocket: 28481, metrics: 28482, tcp: 28483}",
    "--set",
    "prometheus.port=28490",
];

fn run(args: &[&str], state: &Path) -> std::process::Output {
    crate::util::swarmctl_with(args, SETS, state)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_server_deploys_passes_baseline_and_fails_over_through_traefik() {
    let _swarm = crate::util::exclusive().await;
    let state = tempfile::tempdir().unwrap();
    let results = tempfile::tempdir().unwrap();

    // Up: converged on the container healthcheck (an MCP initialize from inside), routed once
    // an MCP exchange through Traefik answers; no health endpoint is offered.
    let out = run(&["up"], state.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "up:\n{stdout}\n{stderr}");
    assert!(stdout.contains("swit-py_server 3/3") || stderr.contains("swit-py_server 3/3"), "{stdout}\n{stderr}");
    let said = format!("{stdout}{stderr}");
    assert!(
        said.contains("routed: through the load balancer, an MCP session opens and answers ping over http")
            && !said.contains("does not route"),
        "readiness through MCP: {said}"
    );
    assert!(!stdout.contains("health"), "the server has no health route to list: {stdout}");

    // A mix naming a tool the server lacks: refused before any load, exit 2.
    let refused = results.path().join("refused");
    let out = run(
        &[
            "test",
            "baseline",
            "--no-deploy",
            "--out",
            refused.to_str().unwrap(),
            "--set",
            "test.profiles.baseline.mix=tools/call:echo=1",
        ],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("calls `echo`") && stderr.contains("`add`, `word_count`"), "{stderr}");
    // Nothing ran, and the results folder says why.
    let r = read(&refused, &out);
    assert_eq!(r.verdict.as_str(), "error");
    assert!(r.error.as_deref().unwrap_or_default().contains("calls `echo`"), "{:?}", r.error);
    assert!(r.phases.is_empty());

    // Baseline with a real tool of its own, by name and arguments.
    let baseline = results.path().join("baseline");
    let out = run(
        &[
            "test",
            "baseline",
            "--no-deploy",
            "--out",
            baseline.to_str().unwrap(),
            "--set",
            "test.profiles.baseline.mix=tools/call:add(a=2;b=3)=1,ping=1",
        ],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    let r = read(&baseline, &out);
    assert_eq!(r.verdict.as_str(), "pass", "{stdout}\n{stderr}");
    let p = &r.phases[0];
    let load = p.load.as_ref().unwrap();
    assert_eq!(load.summary.sessions_peak, 60);
    // Every call answered: the stack has the server reply with JSON, which Traefik forwards
    // whole (its SSE streams lose about one in a thousand: docs/your-server.md).
    let s = &load.summary;
    assert_eq!(s.requests_ok, s.requests_total, "{:?} {:?}", s.errors, s.error_samples);
    assert!(load.by_method["tools/call:add"].ok > 100, "{:?}", load.by_method.keys());
    let rec = p.reconciliation.as_ref().unwrap();
    assert_eq!(rec.note, "not measured (the servers export no request counter, mcp_requests_total)");
    assert_eq!(rec.server_received, None, "not a count of 0: {rec:?}");

    // Failover with the default mix, which fits a server without `echo`.
    let failover = results.path().join("failover");
    let out = run(&["validate", "--phase", "failover", "--out", failover.to_str().unwrap()], state.path());
    let (stdout, stderr) = text(&out);
    let r = read(&failover, &out);
    assert!(
        r.notes.iter().any(|n| n.contains("has no `echo` tool") && n.contains("ping=1,tools/list=1")),
        "{:?}",
        r.notes
    );
    let p = &r.phases[0];
    assert_eq!(p.load.as_ref().unwrap().config.mix, "ping=1,tools/list=1");
    let f = p.failover.as_ref().unwrap_or_else(|| panic!("no failover figures:\n{stdout}\n{stderr}"));
    assert_eq!(f.kills.len(), 1, "{f:?}");
    // Its sessions were on the killed replica: they were lost, and every one opened again.
    assert!(f.sessions_dropped > 0 && f.sessions_reestablished == f.sessions_dropped, "{f:?}");
    assert_eq!(p.verdict.as_str(), "pass", "{:?}\n{stdout}\n{stderr}", p.reasons);

    let out = run(&["down"], state.path());
    assert!(out.status.success(), "down: {:?}", text(&out));
}
