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
/// Where dev-cluster keeps the registry's login, as `docker login` would (DOCKER_CONFIG).
const LOGIN: &str = "/run/swarmctl-cluster/docker";

/// swarmctl with `docker_config` as the docker CLI's config folder (its registry logins).
fn swarmctl_as(docker_config: &str, args: &[&str], state: &std::path::Path) -> std::process::Output {
    crate::util::swarmctl_command(state).env("DOCKER_CONFIG", docker_config).args(args).output().expect("run swarmctl")
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No load service is left on the swarm once a run has ended.
async fn assert_no_load(engine: &swarmctl::engine::Bollard) {
    let services = engine.client().list_services(None::<bollard::query_parameters::ListServicesOptions>).await.unwrap();
    let names: Vec<String> = services.into_iter().filter_map(|s| s.spec?.name).collect();
    assert!(!names.iter().any(|n| n.contains("load")), "{names:?}");
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

/// The run's agent service and its token secret are gone.
async fn assert_no_agent(engine: &swarmctl::engine::Bollard) {
    let gone = engine.service("swarmctl-agent-swit-mn").await.map(|s| s.id).unwrap_err().to_string();
    assert!(gone.contains("(HTTP 404)"), "the agent service is removed after the run: {gone}");
    let removed = engine.remove(swarmctl::engine::Object::Secret, "swarmctl-agent-swit-mn").await.unwrap();
    assert!(!removed, "the agent's token secret is removed after the run");
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
            // Two per node on three nodes hold the six exactly: no room to start a new task
            // beside the old one, so updates stop one first (`up` refuses start-first here).
            "--set",
            "server.update.order=stop-first",
            "--set",
            "server.rollback.order=stop-first",
            "--set",
            "lb.ports={web: 28680, websocket: 28681, metrics: 28682, tcp: 28683}",
            "--set",
            "prometheus.port=28690",
        ];
        v.extend_from_slice(extra);
        v
    };

    // Start-first updates with no room beside the old tasks would wait forever: refused before
    // anything is deployed, saying what to change.
    let mut args = vec!["up", "--timeout", "2m"];
    args.extend(stack(&["--set", "server.update.order=start-first"]));
    let out = swarmctl(&args, state.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a start-first update runs 1 new task(s) beside the ones they replace")
            && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(engine.service("swit-mn_server").await.is_err(), "nothing deployed");

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

    // The registry requires a login. Without one kept here, the push is refused, and the
    // error says how to log in; nothing is changed.
    let nobody = tempfile::tempdir().unwrap();
    let mut args = vec!["up", "--timeout", "2m"];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000"]));
    let started = std::time::Instant::now();
    let out = swarmctl_as(nobody.path().to_str().unwrap(), &args, state.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot push the builtin image") && stderr.contains("`docker login 10.99.0.1:5000`"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "failed fast: {:?}", started.elapsed());

    // With the login kept here the push goes through, but the workers, not handed it, cannot
    // pull: `up` says so at once, and what to set.
    let started = std::time::Instant::now();
    let out = swarmctl_as(LOGIN, &args, state.path());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not pull it from 10.99.0.1:5000") && stderr.contains("with_registry_auth"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(100), "failed fast: {:?}", started.elapsed());

    // Through the registry, the login handed to the swarm: packed, pushed, pulled by every node.
    let mut args = vec!["up", "--timeout", "3m"];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000", "--set", "with_registry_auth=true"]));
    let out = swarmctl_as(LOGIN, &args, state.path());
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
    let spec = engine.service("swit-mn_server").await.unwrap();
    assert_eq!(spec.replicas, 6);
    let catalog = run(
        "python3",
        &[
            "-c",
            &format!(
                "import json, urllib.request as u; a = json.load(open('{LOGIN}/config.json'))['auths']['{REGISTRY}']['auth']; \
                 print(u.urlopen(u.Request('http://{REGISTRY}/v2/_catalog', headers={{'Authorization': 'Basic ' + a}})).read().decode())"
            ),
        ],
    );
    let catalog: Value = serde_json::from_str(catalog.trim()).unwrap();
    assert!(catalog["repositories"].as_array().unwrap().iter().any(|r| r == "swarmctl/mcp-server"), "{catalog}");

    // `test full` across the three nodes. Clients through Traefik on the manager reach the
    // replicas on the workers over the overlay; the run's agents (one per worker) kill replicas
    // there and read every replica's CPU and memory; scaling moves tasks between nodes.
    let results = state.path().join("full");
    let mut args = vec![
        "test",
        "full",
        "--no-deploy",
        "--out",
        results.to_str().unwrap(),
        "--set",
        "test.profiles.baseline={sessions: 60, ramp: 100, hold: 5s, think: 200ms, transport: http}",
        "--set",
        "test.profiles.stress={sessions: 200, ramp: 200, hold: 5s, think: 500ms, transport: ws}",
        "--set",
        "test.failover.kill=2",
    ];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000", "--set", "with_registry_auth=true"]));
    let out = swarmctl_as(LOGIN, &args, state.path());
    let stderr = text(&out).1;
    assert!(results.join("results.json").exists(), "no results.json:\n{stderr}");
    let r: Value = crate::util::read_results(&results.join("results.json"));
    let phases = r["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut expected = vec!["baseline", "stress", "incremental", "failover", "scaling", "hang", "update", "rollback"];
    if crate::util::kernel_has_netem() {
        expected.push("network");
    }
    assert_eq!(names, expected, "{stderr}");
    // Two per node at most: the two nodes a drain leaves cannot hold the six, and the run says so.
    let skipped = "drain: skipped: the 2 node(s) left after a drain cannot hold the 6 replicas at server.placement.max_replicas_per_node 2";
    assert!(r["notes"].as_array().unwrap().iter().any(|n| n == skipped), "{}", r["notes"]);
    // Verdicts are measurements against the SLO on 2 cores shared by three engines: pass or
    // fail, with the exit code that says which; never an error.
    for p in phases {
        assert!(matches!(p["verdict"].as_str(), Some("pass" | "fail")), "{}: {}\n{stderr}", p["name"], p["reasons"]);
    }
    let verdict = r["verdict"].as_str().unwrap();
    assert_eq!(out.status.code(), Some(if verdict == "pass" { 0 } else { 3 }), "{verdict}\n{stderr}");
    let baseline = &phases[0];
    assert_eq!(baseline["reconciliation"]["holds"], true, "{}", baseline["reconciliation"]);
    assert!(
        baseline["reconciliation"]["note"].as_str().unwrap().contains("the 6 replicas"),
        "{}",
        baseline["reconciliation"]
    );

    // The kills: two, one on each worker (the agents'), each replaced.
    let manager = engine.membership().await.unwrap().node_id;
    let workers: BTreeSet<String> = nodes.iter().filter(|n| n.id != manager).map(|n| n.id.clone()).collect();
    let kills = phases[3]["failover"]["kills"].as_array().unwrap();
    let killed_on: BTreeSet<String> = kills.iter().map(|k| k["node"].as_str().unwrap().to_string()).collect();
    assert_eq!(killed_on, workers, "one kill on each worker: {kills:?}");
    for k in kills {
        let (killed, running) = (k["killed_ms"].as_u64().unwrap(), k["replacement_running_ms"].as_u64());
        assert!(running.is_some_and(|r| r >= killed), "replaced after the kill: {k}");
    }
    let events = r["events"].as_array().unwrap();
    for w in &workers {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "kill" && e["detail"].as_str().unwrap().ends_with(&format!("on node {w}"))),
            "{events:?}"
        );
    }
    // Scaling 6 → 5 → 2 → 6 and back as configured.
    assert_eq!(phases[4]["scaling"]["restored"], true, "{}", phases[4]["scaling"]);
    // A rolling update across the nodes fails no request; a broken release is rolled back.
    let update = &phases[6]["update"];
    assert_eq!(update["outcome"], "completed", "{update}");
    assert_eq!(update["failed_requests"], 0, "{update}");
    assert_eq!(update["restored"], true, "{update}");
    let rollback = &phases[7]["update"];
    assert_eq!(rollback["outcome"], "rolled back", "{rollback}");
    assert_eq!(rollback["restored"], true, "{rollback}");
    // A replica's link slowed on whichever node it runs (through that node's agent there), and
    // the impairment proven gone; on a kernel without netem (the nodes here share this
    // machine's), the phase skipped with the reason the helper got from a node's kernel.
    if crate::util::kernel_has_netem() {
        let network = &phases[8]["network"];
        assert!(network["cleared_ms"].as_u64().is_some(), "{network}");
        assert_eq!(network["netem_left"], serde_json::json!([]), "{network}");
        assert!(!network["interfaces"].as_array().unwrap().is_empty(), "{network}");
    } else {
        let notes = r["notes"].as_array().unwrap();
        assert!(
            notes.iter().any(|n| n.as_str().unwrap().starts_with("network: skipped: the kernel of node ")
                && n.as_str().unwrap().contains("has no netem qdisc")),
            "{notes:?}"
        );
    }

    // Resources: every replica read before the load, on every node; nothing unmeasured.
    let resources = r["resources"].as_array().unwrap();
    let baseline_slots: BTreeSet<i64> =
        resources.iter().filter(|s| s["baseline"] == true).map(|s| s["slot"].as_i64().unwrap()).collect();
    assert_eq!(baseline_slots, (1..=6).collect(), "every replica read before the load: {resources:?}");
    let sampled_nodes: BTreeSet<&str> = resources.iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(sampled_nodes.len(), 3, "samples from every node: {sampled_nodes:?}");
    assert!(resources.iter().any(|s| s["baseline"] != true && s["node"] != manager.as_str()), "under load too");
    assert!(r["unmeasured"].as_array().map_or(true, |u| u.is_empty()), "{}", r["unmeasured"]);
    let report = std::fs::read_to_string(results.join("FINAL_REPORT.md")).unwrap();
    assert!(report.contains("| slot | node | samples |"), "each replica with its node: {report}");
    assert!(!report.contains(" not measured: "), "{report}");
    assert_no_agent(&engine).await;

    // A node that leaves mid-run (its link cut: a partition, a power loss). The run ends on
    // its own, names the replicas whose samples stop from then on, and once the node is back
    // swarm has the stack whole again.
    let lost = nodes.iter().find(|n| n.addr == "10.99.0.3").expect("swnode3's node").id.clone();
    let results = state.path().join("node-lost");
    let mut args = vec![
        "test",
        "baseline",
        "--no-deploy",
        "--sessions",
        "60",
        "--ramp",
        "100",
        "--hold",
        "40s",
        "--think",
        "200ms",
        "--out",
        results.to_str().unwrap(),
    ];
    args.extend(stack(&["--set", "registry=10.99.0.1:5000", "--set", "with_registry_auth=true"]));
    let mut child = crate::util::swarmctl_command(state.path())
        .args(&args)
        .env("DOCKER_CONFIG", LOGIN)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(state.path().join("node-lost.stderr")).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(results.join("timeline.jsonl")).unwrap_or_default().contains("\"kind\":\"phase\"") {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the baseline did not start within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(10));
    run("ip", &["link", "set", "sw3h", "down"]);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(240) {
            let _ = child.kill();
            run("ip", &["link", "set", "sw3h", "up"]);
            panic!("the run did not end within 240 s of its start with a node gone");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    run("ip", &["link", "set", "sw3h", "up"]);
    let stderr = std::fs::read_to_string(state.path().join("node-lost.stderr")).unwrap_or_default();
    assert!(matches!(status.code(), Some(0 | 3)), "a verdict, not an error: {status}\n{stderr}");
    let r: Value = crate::util::read_results(&results.join("results.json"));
    let notes: Vec<&str> = r["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let stopped: Vec<&&str> =
        notes.iter().filter(|n| n.contains(&format!("(node {lost}) could not be read from +"))).collect();
    assert_eq!(stopped.len(), 2, "its two replicas, named: {notes:?}");
    assert!(stopped.iter().all(|n| n.contains("does not answer")), "{notes:?}");
    // Back on the network, the node rejoins and every replica runs again (nothing to redeploy).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let ready = engine.nodes().await.unwrap().iter().any(|n| n.id == lost && n.state == "ready");
        let running = engine.tasks("swit-mn_server", true).await.unwrap().iter().filter(|t| t.is_running()).count();
        if ready && running == 6 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not whole again 120 s after the node came back: {running} running"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert_no_agent(&engine).await;

    // An agent that cannot start: without the registry the workers have no builtin image. The
    // run says so per node (within the agents' 60 s wait), its kills and samples stay within
    // reach, and asking for more kills than that is refused with the reason.
    let results = state.path().join("no-agent");
    let mut args = vec!["validate", "--phase", "failover", "--kill", "3", "--out", results.to_str().unwrap()];
    args.extend(stack(&[]));
    let started = std::time::Instant::now();
    let out = swarmctl(&args, state.path());
    let stderr = text(&out).1;
    assert!(started.elapsed() < std::time::Duration::from_secs(150), "not hung on: {:?}", started.elapsed());
    assert!(results.join("results.json").exists(), "no results.json:\n{stderr}");
    let r: Value = crate::util::read_results(&results.join("results.json"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(r["phases"][0]["verdict"], "error");
    let reason = r["phases"][0]["reasons"][0].as_str().unwrap();
    assert!(reason.contains("2 of the 6 running tasks are on nodes swarmctl can act on; kill at most 2"), "{reason}");
    // The workers either rejected the task ("No such image") or were still trying to pull it
    // when the wait ended, depending on how fast the pull fails here; either way, what to do.
    assert!(reason.contains("set the stack key `registry`"), "{reason}");
    let notes = r["notes"].as_array().unwrap();
    for w in &workers {
        assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with(&format!("no agent on node {w}: "))), "{notes:?}");
    }
    let unmeasured = r["unmeasured"].as_array().unwrap();
    assert_eq!(unmeasured.len(), 4, "the workers' replicas, named: {unmeasured:?}");
    assert!(unmeasured.iter().all(|u| workers.contains(u["node"].as_str().unwrap())), "{unmeasured:?}");
    assert_no_agent(&engine).await;

    // A drain, with room for the replicas on the two nodes it leaves: the worker with the most
    // replicas drained under load, its replicas ran on the others, then the node was active
    // again and the replicas spread over all three.
    let roomy = ["--set", "registry=10.99.0.1:5000", "--set", "with_registry_auth=true"];
    let mut args = vec!["up", "--timeout", "3m"];
    args.extend(stack(&roomy));
    args.extend(["--set", "server.placement.max_replicas_per_node=3"]);
    let out = swarmctl_as(LOGIN, &args, state.path());
    assert!(out.status.success(), "up with room for a drain:\n{}", text(&out).1);
    let results = state.path().join("drain");
    let mut args = vec!["validate", "--phase", "drain", "--out", results.to_str().unwrap()];
    args.extend(stack(&roomy));
    args.extend(["--set", "server.placement.max_replicas_per_node=3"]);
    let out = swarmctl_as(LOGIN, &args, state.path());
    let stderr = text(&out).1;
    let r: Value = crate::util::read_results(&results.join("results.json"));
    assert_eq!(r["phases"][0]["name"], "drain", "{stderr}");
    let drain = &r["phases"][0]["update"];
    assert!(matches!(out.status.code(), Some(0 | 3)), "a verdict, not an error: {drain}\n{stderr}");
    assert_eq!(drain["outcome"], "moved", "{drain}");
    assert_eq!(drain["restored"], true, "{drain}");
    assert!(drain["tasks_started"].as_u64().unwrap() >= 1, "{drain}");
    let drained =
        drain["policy"].as_str().unwrap().split_whitespace().nth(1).unwrap().trim_end_matches(',').to_string();
    assert!(workers.contains(&drained), "a worker was drained, not {drained}: {drain}");
    let events = r["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "active"), "{events:?}");
    let nodes_after = engine.nodes().await.unwrap();
    assert!(nodes_after.iter().all(|n| n.availability == "active"), "no node left drained: {nodes_after:?}");
    let spread = engine.tasks("swit-mn_server", true).await.unwrap().into_iter().filter(|t| t.is_running()).fold(
        BTreeMap::<String, usize>::new(),
        |mut m, t| {
            *m.entry(t.node).or_default() += 1;
            m
        },
    );
    assert_eq!(spread.len(), 3, "replicas on every node again: {spread:?}");
    assert_eq!(spread.values().sum::<usize>(), 6, "{spread:?}");
    assert_no_agent(&engine).await;

    // Ctrl-C once the node is drained: the node is active again, the replicas run on every
    // node, and the report says interrupted.
    let results = state.path().join("drain-interrupted");
    let mut args = vec!["validate", "--phase", "drain", "--out", results.to_str().unwrap()];
    args.extend(stack(&roomy));
    args.extend(["--set", "server.placement.max_replicas_per_node=3"]);
    let mut command = crate::util::swarmctl_command(state.path());
    command.env("DOCKER_CONFIG", LOGIN).args(&args);
    let out = crate::util::ctrl_c_at(command, &results, "release");
    let r: Value = crate::util::read_results(&results.join("results.json"));
    let drain = &r["phases"][0]["update"];
    assert_eq!(r["phases"][0]["verdict"], "interrupted", "{drain}\n{}", text(&out).1);
    assert_eq!(drain["restored"], true, "{drain}");
    assert!(r["events"].as_array().unwrap().iter().any(|e| e["kind"] == "active"), "{}", r["events"]);
    let nodes_after = engine.nodes().await.unwrap();
    assert!(nodes_after.iter().all(|n| n.availability == "active"), "no node left drained: {nodes_after:?}");
    let running: Vec<_> =
        engine.tasks("swit-mn_server", true).await.unwrap().into_iter().filter(|t| t.is_running()).collect();
    assert_eq!(running.len(), 6, "{running:?}");
    assert_eq!(running.iter().map(|t| &t.node).collect::<BTreeSet<_>>().len(), 3, "spread again: {running:?}");
    assert!(results.join("report.html").exists(), "a usable partial report");
    assert_no_agent(&engine).await;

    // Load from every node: 3 tasks of the load service, one per node, straight to the 6
    // replicas; their seconds come back through the service's logs, and the servers counted
    // exactly the requests the merged tasks sent. Each call sleeps 1 s in the server: the
    // latency the two paths must agree on is then the server's, not this machine's scheduling
    // noise. That noise is tens of milliseconds in absolute terms, whatever the call: 2 cores
    // under three engines and three load processes put the 3 tasks' p99 57 ms over their p50
    // (p999 75 ms) in CI, where one process's p99 was 19 ms over, with the medians 0.3 ms
    // apart; 10 % of a 200 ms sleep was less than that, 10 % of 1 s is 100 ms. (At 1 ms
    // medians, repeats of one path differ by half.)
    let load = |out: &std::path::Path, via: &'static str, workers: u64| -> Command {
        let profile = format!(
            "test.profiles.baseline={{sessions: 60, ramp: 100, hold: 10s, think: 200ms, transport: http, \
             mix: 'tools/call:sleep(ms=1000)=1', workers: {workers}}}"
        );
        let mut args = vec!["test", "baseline", "--no-deploy", "--via", via, "--out", out.to_str().unwrap()];
        args.extend(stack(&roomy));
        args.extend(["--set", "server.placement.max_replicas_per_node=3", "--set", &profile]);
        let mut command = crate::util::swarmctl_command(state.path());
        command.env("DOCKER_CONFIG", LOGIN).args(args);
        command
    };
    let swarm_load = |out: &std::path::Path| load(out, "swarm", 3);
    let results = state.path().join("swarm-load");
    let out = swarm_load(&results).output().unwrap();
    let stderr = text(&out).1;
    let r: Value = crate::util::read_results(&results.join("results.json"));
    let phase = &r["phases"][0];
    assert!(matches!(out.status.code(), Some(0 | 3)), "a verdict, not an error: {}\n{stderr}", phase["reasons"]);
    assert_eq!(phase["load"]["generator"]["sessions_opened"], 60, "{}", phase["load"]["generator"]);
    assert!(phase["load"]["workers_lost"].is_null(), "{}", phase["load"]["workers_lost"]);
    assert_eq!(phase["reconciliation"]["holds"], true, "{}", phase["reconciliation"]);
    // Every node's clock measured before the start (through its agent, or the engine for the
    // manager); the three share this machine's kernel, so each offset is 0 within its bound.
    let clocks = phase["load"]["clocks"].as_array().cloned().unwrap_or_default();
    assert_eq!(clocks.len(), 3, "{clocks:?}");
    for c in &clocks {
        let (offset, within) = (c["measured"]["offset_ms"].as_f64(), c["measured"]["within_ms"].as_f64());
        let (offset, within) = (offset.unwrap_or_else(|| panic!("{c}")), within.unwrap());
        assert!(offset.abs() <= within && within < 1000.0, "{c}");
    }
    let placed = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "load" && e["detail"].as_str().is_some_and(|d| d.starts_with("load tasks running")));
    let placed = placed.expect("where the tasks ran");
    let on: BTreeSet<&str> =
        placed["detail"].as_str().unwrap().split(", ").filter_map(|p| p.split(" on ").nth(1)).collect();
    assert_eq!(on.len(), 3, "one task per node: {placed}");
    // Merged exactly: the phase's figures are those of the three tasks' own histograms, as
    // each sent them through its service's logs, not an average of their percentiles.
    let mut of_tasks = swarmctl::load::stats::Stats::default();
    let tasks: Vec<_> = std::fs::read_dir(results.join("phases/baseline/workers")).unwrap().collect();
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    for task in tasks {
        let report: Value = serde_json::from_slice(&std::fs::read(task.unwrap().path().join("report.json")).unwrap())
            .expect("a task's report");
        let wire: swarmctl::load::stats::WireStats = serde_json::from_value(report["stats"].clone()).unwrap();
        of_tasks.merge(&swarmctl::load::stats::Stats::try_from(&wire).unwrap());
    }
    let exact = serde_json::to_value(swarmctl::load::stats::LatencyMs::of(&of_tasks.latency().0)).unwrap();
    assert_eq!(phase["load"]["summary"]["latency_ms"], exact, "the merge of the tasks' own reports");
    assert_no_load(&engine).await;
    // The same load from one process on the manager: the merged median and p99 within 10 %.
    let single = state.path().join("direct-load");
    let out = load(&single, "direct", 1).output().unwrap();
    let one: Value = crate::util::read_results(&single.join("results.json"));
    assert_eq!(one["phases"][0]["reconciliation"]["holds"], true, "{}\n{}", one["phases"][0], text(&out).1);
    let (merged, one) = (&phase["load"]["hold"]["latency_ms"], &one["phases"][0]["load"]["hold"]["latency_ms"]);
    for q in ["p50", "p99"] {
        let (m, o) = (merged[q].as_f64().unwrap(), one[q].as_f64().unwrap());
        assert!(m >= 1000.0 && o >= 1000.0, "{q}: every call slept 1 s: {merged} / {one}");
        assert!((m - o).abs() <= 0.1 * o, "{q}: 3 tasks {m} ms, one process {o} ms: {merged} / {one}");
    }

    // A load task on a worker killed through that worker's own engine: named with its node,
    // and what it had sent counted.
    let results = state.path().join("swarm-load-killed");
    let child =
        swarm_load(&results).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let worker = nodes.iter().find(|n| n.addr == "10.99.0.2").expect("swnode2's node").id.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let task = loop {
        let tasks = engine.tasks("swit-mn-load", false).await.unwrap_or_default();
        let on_worker = tasks.into_iter().find(|t| t.node == worker && t.is_running());
        let slot_sent = |slot: i64| {
            let seconds = results.join(format!("phases/baseline/workers/task-{slot}/seconds.jsonl"));
            std::fs::read_to_string(seconds).unwrap_or_default().lines().count()
        };
        match on_worker {
            Some(t) if slot_sent(t.slot) >= 3 => break t,
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "no load task on {worker} sent 3 seconds within 90 s");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let remote =
        bollard::Docker::connect_with_unix("/run/docker-swnode2.sock", 60, bollard::API_DEFAULT_VERSION).unwrap();
    let kill = bollard::query_parameters::KillContainerOptions { signal: "SIGKILL".into() };
    remote.kill_container(task.container.as_deref().unwrap(), Some(kill)).await.unwrap();
    let out = child.wait_with_output().unwrap();
    let r: Value = crate::util::read_results(&results.join("results.json"));
    let lost = r["phases"][0]["load"]["workers_lost"].as_array().cloned().unwrap_or_default();
    assert_eq!(lost.len(), 1, "{lost:?}\n{}", text(&out).1);
    let named = format!("load task {} (node {worker}) ended failed", task.slot);
    assert!(lost[0].as_str().unwrap().starts_with(&named), "{lost:?}");
    assert_eq!(out.status.code(), Some(3), "the phase fails: {}", r["phases"][0]["reasons"]);
    assert_no_load(&engine).await;

    // A bare load from the nodes: one task per node (the default), on the stack's network,
    // every node's clock measured through the agents it deploys for the run and removes.
    let results = state.path().join("bare-on-swarm");
    let mut args = vec!["load", "--on-swarm", "--network", "swit-mn_mcp-network", "--out", results.to_str().unwrap()];
    args.extend(["--url", "http://swit-mn_server:8080/mcp", "--sessions", "30", "--ramp", "30", "--duration", "5s"]);
    args.extend(stack(&roomy));
    let out = swarmctl_as(LOGIN, &args, state.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let r: Value = crate::util::read_results(&results.join("results.json"));
    assert_eq!(r["generator"]["sessions_opened"], 30, "{}", r["generator"]);
    let clocks = r["clocks"].as_array().cloned().unwrap_or_default();
    let measured = clocks.iter().filter(|c| c["measured"]["within_ms"].as_f64().is_some_and(|w| w < 1000.0)).count();
    assert_eq!(measured, 3, "every node's clock: {clocks:?}");
    assert!(text(&out).1.contains("load tasks running: 1 on"), "{}", text(&out).1);
    assert_no_load(&engine).await;
    assert_no_agent(&engine).await;

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
