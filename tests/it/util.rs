//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

use swarmctl::config;
use swarmctl::render::{self, Inputs, Rendered, Templates};

/// Fixed inputs so that rendered output (and the hashes in config names) is reproducible.
pub fn fixed_inputs() -> Inputs {
    Inputs { version: "0.0.0-test".into(), grafana_admin_password: Some("test-password".into()), builtin_image: None }
}

/// Renders a built-in stack with fixed inputs.
pub fn render_builtin(stack: &str) -> (config::Config, Rendered) {
    let config = config::load(Some(stack), &[]).unwrap_or_else(|e| panic!("{stack}: {e}"));
    let rendered = render::render(&config, &Templates::embedded().unwrap(), &fixed_inputs())
        .unwrap_or_else(|e| panic!("{stack}: {e}"));
    (config, rendered)
}

/// Runs the swarmctl binary with a private state folder.
pub fn swarmctl(args: &[&str], state: &Path) -> Output {
    swarmctl_command(state).args(args).output().expect("run swarmctl")
}

/// `swarmctl ARGS… SETS…`: a command on a test's own stack (its `--stack` and `--set`s).
pub fn swarmctl_with(args: &[&str], sets: &[&str], state: &Path) -> Output {
    let all: Vec<&str> = args.iter().chain(sets).copied().collect();
    swarmctl(&all, state)
}

/// The swarmctl binary with `state` as its state folder and none of the caller's stack or log
/// settings: for a test that adds more (an environment variable, a spawned child).
pub fn swarmctl_command(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    c.env("SWARMCTL_STATE_DIR", state).env_remove("SWARMCTL_STACK").env_remove("RUST_LOG");
    c
}

/// Runs `command` (a swarmctl run writing its results to `out`) and sends it SIGINT, as Ctrl-C
/// does, once its timeline has an event of `kind`; waits until it exits, which must be with
/// 130. Its stderr is printed, so that whatever assertion of the caller fails says why.
pub fn ctrl_c_at(mut command: Command, out: &Path, kind: &str) -> Output {
    use std::time::{Duration, Instant};
    let stderr_file = out.with_extension("stderr");
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .spawn()
        .expect("run swarmctl");
    let stderr = || std::fs::read_to_string(&stderr_file).unwrap_or_default();
    let marker = format!("\"kind\":\"{kind}\"");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(out.join("timeline.jsonl")).unwrap_or_default().contains(&marker) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {kind} event within 90 s:\n{}", stderr());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop within 240 s of Ctrl-C at {kind}:\n{}", stderr());
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("stopped by Ctrl-C at {kind}, stderr:\n{}", stderr());
    assert_eq!(status.code(), Some(130), "Ctrl-C at {kind}:\n{}", stderr());
    Output { status, stdout: Vec::new(), stderr: stderr().into_bytes() }
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A started in-process reference server and the token that stops it.
pub struct TestServer {
    pub addrs: std::collections::BTreeMap<&'static str, std::net::SocketAddr>,
    pub metrics: std::sync::Arc<swarmctl::serve::metrics::Metrics>,
    pub stop: tokio_util::sync::CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub fn addr(&self, flag: &str) -> std::net::SocketAddr {
        self.addrs[flag]
    }
}

/// Starts `swarmctl serve` in-process on loopback ports picked by the kernel; `extra` are more
/// serve flags.
pub async fn start_server(extra: &[&str]) -> TestServer {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        opts: swarmctl::serve::ServeOptions,
    }
    let mut args = vec![
        "serve",
        "--http",
        "127.0.0.1:0",
        "--ws",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--fault-seed",
        "1",
    ];
    args.extend_from_slice(extra);
    let opts = Wrap::try_parse_from(args).unwrap().opts;
    let server = swarmctl::serve::Server::bind(&opts).await.unwrap();
    let addrs = server.addrs().clone();
    let metrics = server.metrics();
    let stop = tokio_util::sync::CancellationToken::new();
    let done = tokio::spawn(server.run(stop.clone()));
    TestServer { addrs, metrics, stop, done }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, headers, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.to_string()))).unwrap();
    let res = send.send_request(req).await.expect("response");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// The headers every Streamable HTTP POST carries.
pub const MCP_HEADERS: [(&str, &str); 2] =
    [("content-type", "application/json"), ("accept", "application/json, text/event-stream")];

/// A well-formed initialize request.
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}}"#;

/// Held by every test that deploys a stack or puts real load on the machine, and by tests that
/// measure timing: one swarm and two cores are shared, and a deploy's timing, a phase's
/// figures or a measured latency must not depend on what another heavy test does meanwhile.
/// (An async mutex: the guard is held across awaits, and a failed test does not poison it.)
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// `exclusive` for tests without a runtime.
pub fn exclusive_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.blocking_lock()
}

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `test`/`validate` run's results.json; when there is none, the command's own output says
/// why.
pub fn read_test_run(dir: &Path, out: &Output) -> swarmctl::report::TestRun {
    if !dir.join("results.json").exists() {
        let (stdout, stderr) = text(out);
        panic!("no {}/results.json ({}):\n{stdout}\n{stderr}", dir.display(), out.status);
    }
    serde_json::from_value(read_results(&dir.join("results.json")))
        .unwrap_or_else(|e| panic!("results.json does not parse: {e}"))
}

/// A results.json of `test`, `validate` or `load`, valid against docs/results.schema.json:
/// every one the tests read is checked.
pub fn read_results(file: &Path) -> serde_json::Value {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        let text = include_str!("../../docs/results.schema.json");
        jsonschema::validator_for(&serde_json::from_str(text).unwrap()).expect("docs/results.schema.json is a schema")
    });
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
    let errors: Vec<String> =
        schema.iter_errors(&value).take(5).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{} does not follow docs/results.schema.json: {errors:?}", file.display());
    value
}

/// Whether this machine's kernel has the netem qdisc: set on the loopback of a network
/// namespace made for the question, then the namespace removed.
pub fn kernel_has_netem() -> bool {
    let ns = format!("swit-netem-{}", std::process::id());
    let ip = |args: &[&str]| std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(ip(&["netns", "add", &ns]).status.success(), "ip netns add");
    let added = ip(&["netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]);
    assert!(ip(&["netns", "del", &ns]).status.success(), "ip netns del");
    let said = String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success() || said.contains("qdisc kind is unknown"), "tc: {said}");
    added.status.success()
}
