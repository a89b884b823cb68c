//! A real three-node swarm on this machine (`scripts/dev-cluster`: two more engines in network
//! namespaces, joined over VXLAN, and a registry): images reach every node through the
//! registry, replicas run on every node and answer through Traefik on the manager, and the
//! cluster goes away leaving the machine as it was.
//!
//! It changes the host's network (a bridge, a route, firewall rules) and needs root, so it is
//! `#[ignore]`d in plain `cargo test`; `scripts/test` runs it (`-- --ignored cluster`).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;
use swarmctl::engine::Engine;

use crate::util::{swarmctl, text};

const REGISTRY: &str = "10.99.0.1:5000";

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cluster(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-cluster");
    let out = Command::new(script).args(args).output().expect("run scripts/dev-cluster");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "dev-cluster {args:?}:\n{stderr}");
    stderr
}

/// Takes the stack and then the cluster down however the test ends: a stack left behind holds
/// its host ports and its services for the next run.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let state = tempfile::tempdir().unwrap();
        let _ = swarmctl(&["down", "--stack", "ci", "--set", "name=swit-mn", "-q"], state.path());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-cluster");
        let _ = Command::new(script).arg("down").output();
    }
}

/// What the cluster may touch on the host: it must be the same before `up` and after `down`.
fn machine() -> BTreeMap<&'static str, String> {
    let lines = |s: String| {
        s.lines()
            .filter(|l| !l.contains("veth")) // task containers of other tests come and go
            .map(|l| l.trim().to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("\n")
    };
    let links = run("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim())
        .collect::<Vec<_>>()
        .join("\n");
    BTreeMap::from([
        ("namespaces", run("ip", &["netns", "list"])),
        ("links", lines(links)),
        ("routes", lines(run("ip", &["route"]))),
        ("forward rules", lines(run("iptables", &["-S", "FORWARD"]))),
        ("engines", run("pgrep", &["-c", "-x", "dockerd"]).trim().to_string()),
        ("nodes", lines(run("docker", &["node", "ls", "--format", "{{.ID}} {{.Status}}"]))),
        ("daemon.json", std::fs::read_to_string("/etc/docker/daemon.json").unwrap_or_default()),
    ])
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "changes the host's network and needs root: scripts/test runs it"]
async fn three_nodes_run_the_stack_and_leave_nothing_behind() {
    let _swarm = crate::util::exclusive().await;
    // Another engine's swarm is this machine's: make sure it exists before the baseline read.
    let engine = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    swarmctl::engine::swarm::init(&engine, None).await.unwrap();
    // A run killed before its guard could act may have left the stack: start without it.
    drop(Down);
    let before = machine();

    // Two workers; a second `up` changes nothing.
    let _down = Down;
    cluster(&["up", "2"]);
    let nodes = engine.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|n| n.state == "ready"), "{nodes:?}");
    cluster(&["up", "2"]);
    let again: BTreeSet<String> = engine.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(again, nodes.iter().map(|n| n.id.clone()).collect(), "the same nodes, none added");

    let state = tempfile::tempdir().unwrap();
    let stack = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "--stack",
            "ci",
            "--set",
            "name=swit-mn",
            "--set",
            "server.replicas=6",
            "--set",
            "server.placement.max_replicas_per_node=2",
            "--set",
            "lb.ports={web: 28680, websocket: 28681, metrics: 28682, tcp: 28683}",
            "--set",
            "prometheus.port=28690",
        ];
        v.extend_from_slice(extra);
        v
    };

    // Without a registry the builtin image is only on the manager: the workers' tasks are
    // rejected, and `up` says why at once instead of waiting out its timeout.
    let mut args = vec!["up", "--timeout", "2m"];
    args.extend(stack(&[]));
    let started = std::time::Instant::now();
    let out = swarmctl(&args, state.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No such image") || stderr.contains("no such image"), "{stderr}");
    assert!(stderr.contains("push it to a registry"), "with what to do: {stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(100), "failed fast: {:?}", started.elapsed());

    // Through the registry: packed, pushed, pulled by every node.
    let mut args = vec!["up", "--timeout", "3m"];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000"]));
    let out = swarmctl(&args, state.path());
    assert!(out.status.success(), "up through the registry:\n{}", text(&out).1);
    let tasks = engine.tasks("swit-mn_server", false).await.unwrap();
    let running: Vec<_> = tasks.iter().filter(|t| t.is_running()).collect();
    assert_eq!(running.len(), 6);
    let per_node = running.iter().fold(BTreeMap::<&str, usize>::new(), |mut m, t| {
        *m.entry(t.node.as_str()).or_default() += 1;
        m
    });
    assert_eq!(per_node.len(), 3, "replicas on every node: {per_node:?}");
    assert!(per_node.values().all(|n| *n == 2), "two per node: {per_node:?}");
    let engine_node = engine.membership().await.unwrap().node_id;
    let spec = engine.service("swit-mn_server").await.unwrap();
    assert_eq!(spec.replicas, 6);
    let catalog = run(
        "python3",
        &[
            "-c",
            &format!(
                "import urllib.request;print(urllib.request.urlopen('http://{REGISTRY}/v2/_catalog').read().decode())"
            ),
        ],
    );
    let catalog: Value = serde_json::from_str(catalog.trim()).unwrap();
    assert!(catalog["repositories"].as_array().unwrap().iter().any(|r| r == "swarmctl/mcp-server"), "{catalog}");

    // Clients through Traefik on the manager reach the replicas on the workers over the overlay:
    // every replica answers, and the servers' count matches the clients' to the request.
    let results = state.path().join("baseline");
    let mut args = vec![
        "test",
        "baseline",
        "--no-deploy",
        "--sessions",
        "60",
        "--ramp",
        "100",
        "--hold",
        "5s",
        "--think",
        "200ms",
        "--out",
        results.to_str().unwrap(),
    ];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000"]));
    let out = swarmctl(&args, state.path());
    let stderr = text(&out).1;
    assert!(out.status.success(), "baseline across three nodes:\n{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    let phase = &r["phases"][0];
    assert_eq!(phase["verdict"], "pass", "{phase}");
    assert_eq!(phase["reconciliation"]["holds"], true, "{}", phase["reconciliation"]);
    assert!(
        phase["reconciliation"]["note"].as_str().unwrap().contains("the 6 replicas"),
        "{}",
        phase["reconciliation"]
    );
    // The workers' replicas cannot be sampled through this engine: named, not read as 0, and
    // the per-session figures share the sessions over all six.
    let notes = r["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().contains("resources of swit-mn_server: 4 replica(s) not measured")),
        "{notes:?}"
    );
    let unmeasured = r["unmeasured"].as_array().unwrap();
    assert_eq!(unmeasured.len(), 4, "{unmeasured:?}");
    assert!(unmeasured.iter().all(|u| u["node"] != engine_node.as_str()), "none on this engine's node: {unmeasured:?}");
    let report = std::fs::read_to_string(results.join("FINAL_REPORT.md")).unwrap();
    assert!(report.contains("shared by the 6 replica(s)"), "per-session figures over every replica");
    assert!(report.contains("| slot | node | samples |"), "each replica with its node: {report}");
    assert_eq!(report.matches(" not measured: ").count(), 4, "{report}");

    // Failover: the kills are chosen among the replicas on this engine's node (the Engine API
    // has no container calls across nodes), and asking for more than it runs is said, not a 404.
    let results = state.path().join("failover");
    let mut args = vec!["validate", "--phase", "failover", "--kill", "2", "--out", results.to_str().unwrap()];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000"]));
    let out = swarmctl(&args, state.path());
    let stderr = text(&out).1;
    let r: Value = serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    // The verdict is a measurement against the SLO (99 % success) on 2 cores shared by three
    // engines: pass or fail, as in the phases test, with the exit code that says which; what
    // is asserted is that the kills happened where they could and the stack healed.
    let verdict = r["phases"][0]["verdict"].as_str().unwrap().to_string();
    assert!(matches!(verdict.as_str(), "pass" | "fail"), "failover on three nodes: {verdict}:\n{stderr}");
    assert_eq!(out.status.code(), Some(if verdict == "pass" { 0 } else { 3 }), "{stderr}");
    let manager = engine.membership().await.unwrap().node_id;
    let kills = r["phases"][0]["failover"]["kills"].as_array().unwrap();
    assert_eq!(kills.len(), 2);
    assert!(kills.iter().all(|k| k["node"] == manager.as_str()), "{kills:?}");
    assert!(kills.iter().all(|k| k["replacement_running_ms"].is_u64()), "{kills:?}");
    assert!(stderr.contains("4 of 6 running swit-mn_server tasks are on other nodes"), "{stderr}");
    let results = state.path().join("failover-3");
    let mut args = vec!["validate", "--phase", "failover", "--kill", "3", "--out", results.to_str().unwrap()];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000"]));
    let out = swarmctl(&args, state.path());
    let r: Value = serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert_eq!(r["phases"][0]["verdict"], "error");
    let reason = r["phases"][0]["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("2 of the 6 running tasks are on this engine's node") && reason.contains("kill at most 2"),
        "{reason}"
    );

    let mut args = vec!["down"];
    args.extend(stack(&[]));
    let out = swarmctl(&args, state.path());
    assert!(out.status.success(), "{}", text(&out).1);

    cluster(&["down"]);
    let after = machine();
    for (what, was) in &before {
        assert_eq!(&after[what], was, "{what} after dev-cluster down");
    }
    // Twice is fine.
    cluster(&["down"]);
}
