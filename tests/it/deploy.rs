//! `up`, `status` and `down` against the real engine, with the real Traefik and Prometheus
//! images `scripts/offline-images` builds (scripts/test builds them first). One test walks the
//! whole life of a stack, so that its steps never race each other for the swarm.

use std::collections::{BTreeSet, HashMap};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{swarmctl, text, MCP_HEADERS};

const NAME: &str = "swit-up";

fn up(state: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "up",
        "--stack",
        "ci",
        "--set",
        "name=swit-up",
        "--set",
        "lb.ports={web: 28280, websocket: 28281, metrics: 28282, tcp: 28283}",
        "--set",
        "prometheus.port=28290",
        "--timeout",
        "3m",
    ];
    args.extend_from_slice(extra);
    swarmctl(&args, state)
}

async fn versions(docker: &bollard::Docker) -> HashMap<String, u64> {
    let filters = swarmctl::engine::stack_filter(NAME);
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions { filters: Some(filters), status: None }))
        .await
        .unwrap();
    services
        .into_iter()
        .map(|s| (s.spec.and_then(|sp| sp.name).unwrap_or_default(), s.version.and_then(|v| v.index).unwrap_or(0)))
        .collect()
}

async fn leftovers(docker: &bollard::Docker) -> Vec<String> {
    let f = || Some(swarmctl::engine::stack_filter(NAME));
    let mut left = Vec::new();
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions { filters: f(), status: None }))
        .await
        .unwrap();
    left.extend(services.into_iter().map(|s| format!("service {:?}", s.spec.and_then(|x| x.name))));
    let networks =
        docker.list_networks(Some(bollard::query_parameters::ListNetworksOptions { filters: f() })).await.unwrap();
    left.extend(networks.into_iter().map(|n| format!("network {:?}", n.name)));
    let configs =
        docker.list_configs(Some(bollard::query_parameters::ListConfigsOptions { filters: f() })).await.unwrap();
    left.extend(configs.into_iter().map(|c| format!("config {:?}", c.spec.and_then(|s| s.name))));
    let secrets =
        docker.list_secrets(Some(bollard::query_parameters::ListSecretsOptions { filters: f() })).await.unwrap();
    left.extend(secrets.into_iter().map(|c| format!("secret {:?}", c.spec.and_then(|s| s.name))));
    let opts = bollard::query_parameters::ListContainersOptions { all: true, filters: f(), ..Default::default() };
    left.extend(
        docker.list_containers(Some(opts)).await.unwrap().into_iter().map(|c| format!("container {:?}", c.names)),
    );
    left
}

/// Initializes sessions through Traefik until every replica has answered one; each session is
/// then used for a tools/call, which only works if Traefik's sticky cookie brings it back to
/// the replica that holds the session.
async fn sessions_reach_every_replica(replicas: usize) {
    let addr: std::net::SocketAddr = "127.0.0.1:28280".parse().unwrap();
    let mut slots = BTreeSet::new();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;
    for i in 0..(replicas * 10) {
        let (status, headers, body) = crate::util::http(addr, "POST", "/mcp", &MCP_HEADERS, init).await;
        assert_eq!(status, 200, "initialize through Traefik: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        slots.insert(v["result"]["_meta"]["swarmctl/replica"]["slot"].as_str().unwrap().to_string());
        let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
        let cookie = headers
            .get("set-cookie")
            .expect("Traefik sets the sticky cookie")
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut h = MCP_HEADERS.to_vec();
        h.push(("mcp-session-id", &sid));
        h.push(("cookie", &cookie));
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{i}"}}}}}}"#
        );
        let (status, _, body) = crate::util::http(addr, "POST", "/mcp", &h, &call).await;
        assert_eq!(status, 200, "tools/call on the session's replica: {body}");
        assert!(body.contains(&format!("\"m{i}\"")), "{body}");
    }
    assert_eq!(slots.len(), replicas, "every replica answered: {slots:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_converges_is_idempotent_updates_one_service_fails_fast_and_down_cleans_up() {
    let _swarm = crate::util::exclusive().await;
    let engine = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    let docker = engine.client().clone();
    for image in ["swarmctl/traefik:local", "swarmctl/prometheus:local"] {
        assert!(
            swarmctl::engine::Engine::image_exists(&engine, image).await.unwrap(),
            "{image} is missing: run scripts/offline-images (scripts/test does)"
        );
    }
    let state = tempfile::tempdir().unwrap();
    // Start clean, whatever an earlier run left.
    let out = swarmctl(&["down", "--stack", "ci", "--set", "name=swit-up"], state.path());
    assert!(out.status.success(), "{}", text(&out).1);

    // 1. A fresh up converges and prints the endpoints.
    let out = up(state.path(), &["--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "up failed:\n{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["plan"]["create"].as_array().unwrap().len(), 8, "{}", result["plan"]);
    let urls: Vec<&str> = result["endpoints"].as_array().unwrap().iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert!(urls.contains(&"http://127.0.0.1:28280/mcp"), "{urls:?}");
    sessions_reach_every_replica(3).await;

    // 2. A second up plans nothing and bumps no version.
    let before = versions(&docker).await;
    let out = up(state.path(), &["--json"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let result: Value = serde_json::from_str(&text(&out).0).unwrap();
    for action in ["create", "update", "remove"] {
        assert_eq!(result["plan"][action], Value::Array(vec![]), "second up: {}", result["plan"]);
    }
    assert_eq!(versions(&docker).await, before, "no service version changed");

    // 3. Changing the replica count updates only the server.
    let out = up(state.path(), &["--set", "server.replicas=4", "--dry-run", "--json"]);
    let plan: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(plan["update"], serde_json::json!(["service/swit-up_server"]), "{plan}");
    let out = up(state.path(), &["--set", "server.replicas=4"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let after = versions(&docker).await;
    for (name, v) in &after {
        assert_eq!(*v != before[name], name == "swit-up_server", "{name}: {} -> {v}", before[name]);
    }

    // 4. A task that can never be scheduled fails within seconds, with the scheduler's reason.
    let started = Instant::now();
    let out = up(
        state.path(),
        &["--set", "server.replicas=4", "--set", "server.placement.constraints=[\"node.labels.swarmctl-none==yes\"]"],
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no suitable node"), "the scheduler's reason: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "failed fast: {:?}", started.elapsed());

    // 5. status shows the stack.
    let out = swarmctl(&["status", "--stack", "ci", "--set", "name=swit-up", "--json"], state.path());
    let status: Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(status["services"].as_array().unwrap().len(), 3);

    // 6. down leaves nothing labelled; up → down → up works without waiting in between.
    let out = swarmctl(&["down", "--stack", "ci", "--set", "name=swit-up"], state.path());
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(leftovers(&docker).await, Vec::<String>::new());
    let out = up(state.path(), &[]);
    assert!(out.status.success(), "up right after down: {}", text(&out).1);
    let out = swarmctl(&["down", "--stack", "ci", "--set", "name=swit-up"], state.path());
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(leftovers(&docker).await, Vec::<String>::new());
    let out = swarmctl(&["down", "--stack", "ci", "--set", "name=swit-up"], state.path());
    assert!(out.status.success(), "down twice is fine: {}", text(&out).1);
    // A stack that is not deployed: status says so and exits 1 (scripts test for it).
    let out = swarmctl(&["status", "--stack", "ci", "--set", "name=swit-up"], state.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    assert!(text(&out).0.contains("stack swit-up is not deployed (swarmctl up deploys it)"), "{}", text(&out).0);
}

/// Several Traefik tasks on one node (`lb.ports_per_task`): the engine gives each its own host
/// ports, `up` lists them all, and a test's load reaches every one of them.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_fans_out_with_ports_per_task_and_the_load_reaches_every_instance() {
    let _swarm = crate::util::exclusive().await;
    let engine = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
    let docker = engine.client().clone();
    let state = tempfile::tempdir().unwrap();
    let stack = [
        "--stack",
        "ci",
        "--set",
        "name=swit-fan",
        "--set",
        "lb.replicas=3",
        "--set",
        "lb.ports_per_task=true",
        "--set",
        "prometheus.enabled=false",
    ];
    fn with<'a>(args: &[&'a str], stack: &[&'a str]) -> Vec<&'a str> {
        [args, stack].concat()
    }
    let out = swarmctl(&with(&["up", "--json", "--timeout", "3m"], &stack), state.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "up failed:\n{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let endpoints = result["endpoints"].as_array().unwrap();
    let url_of = |name: &str| -> Vec<String> {
        endpoints
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with(name))
            .map(|e| e["url"].as_str().unwrap().to_string())
            .collect()
    };
    let (web, metrics) = (url_of("mcp (Streamable HTTP) lb "), url_of("traefik metrics lb "));
    assert_eq!(web.len(), 3, "one Streamable HTTP URL per Traefik task: {endpoints:?}");
    assert_eq!(web.iter().collect::<BTreeSet<_>>().len(), 3, "each task has ports of its own: {web:?}");
    let port = |url: &str| -> u16 { url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap() };
    let post_count = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("traefik_entrypoint_requests_total{") && l.contains("method=\"POST\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let mut before = Vec::new();
    for m in &metrics {
        let (status, body) = swarmctl::phase::prom::get("127.0.0.1", port(m), "/metrics", Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(status, 200, "{m}");
        before.push(post_count(&String::from_utf8_lossy(&body)));
    }

    let results = state.path().join("results");
    let out = swarmctl(
        &with(
            &[
                "test",
                "baseline",
                "--no-deploy",
                "--sessions",
                "60",
                "--ramp",
                "200",
                "--hold",
                "3s",
                "--think",
                "200ms",
                "--out",
                results.to_str().unwrap(),
            ],
            &stack,
        ),
        state.path(),
    );
    let stderr = text(&out).1;
    assert!(out.status.success(), "baseline through 3 Traefik tasks:\n{stderr}");
    for (m, b) in metrics.iter().zip(&before) {
        let (_, body) =
            swarmctl::phase::prom::get("127.0.0.1", port(m), "/metrics", Duration::from_secs(5)).await.unwrap();
        let posts = post_count(&String::from_utf8_lossy(&body)) - b;
        // 60 sessions spread over 3 tasks: 20 each, every one POSTing initialize and calls.
        assert!(posts >= 40.0, "Traefik at {m} proxied {posts} POSTs of the load: not spread over every task");
    }

    let out = swarmctl(&with(&["down"], &stack), state.path());
    assert!(out.status.success(), "{}", text(&out).1);
    let filters = swarmctl::engine::stack_filter("swit-fan");
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions { filters: Some(filters), status: None }))
        .await
        .unwrap();
    assert!(services.is_empty(), "down removed the fan-out stack");
}

#[test]
fn init_reports_the_topology_and_refuses_what_cannot_be_placed() {
    let state = tempfile::tempdir().unwrap();
    let out = swarmctl(
        &[
            "init",
            "--stack",
            "ci",
            "--set",
            "name=swit-init",
            "--set",
            "lb.ports={web: 28380, websocket: 28381, metrics: 28382, tcp: 28383}",
            "--set",
            "prometheus.port=28390",
            "--json",
        ],
        state.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let nodes = report["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["role"] == "manager"), "{report}");
    assert_eq!(report["problems"], Value::Array(vec![]));
    // The original erlmcp topology wants workers only; this swarm has one manager.
    let out = swarmctl(&["init", "--stack", "erlmcp-100k", "--set", "name=swit-init2"], state.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("no node satisfies its placement constraints [\"node.role == worker\"]"), "{stdout}");
    for name in ["swit-init", "swit-init2"] {
        let out = swarmctl(&["down", "--stack", "ci", "--set", &format!("name={name}"), "--volumes"], state.path());
        assert!(out.status.success(), "{}", text(&out).1);
    }
}

#[test]
fn an_unreachable_registry_stops_up_before_anything_is_deployed() {
    let state = tempfile::tempdir().unwrap();
    // Nothing listens on this port: the push is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let registry = format!("registry=127.0.0.1:{port}");
    let started = Instant::now();
    let out = swarmctl(&["up", "--stack", "ci", "--set", "name=swit-reg", "--set", &registry], state.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot push the builtin image to the registry 127.0.0.1:{port} (stack key `registry`)"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(120), "failed fast: {:?}", started.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let left = rt.block_on(async {
        let engine = swarmctl::engine::connect().await.unwrap();
        swarmctl::engine::Engine::observe(&engine, "swit-reg").await.unwrap()
    });
    assert_eq!(left, swarmctl::engine::Observed::default(), "nothing of the stack was made");
}
