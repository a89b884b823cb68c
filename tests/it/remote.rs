//! A remote engine, the ways the docker CLI reaches one: `tcp://` with mutual TLS
//! (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`) and `ssh://` (the ssh client, `docker system
//! dial-stdio` on the far side). The engine is this machine's; in front of its socket the test
//! starts a TLS endpoint (tlsproxy.py: Python's TLS server with certificates made here, client
//! certificates required, as `dockerd --tlsverify` serves) or an sshd of its own on loopback,
//! and ends both by PID.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::text;

/// Ends a process this test started.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(cmd: &str, args: &[&str], dir: &Path) {
    let out = Command::new(cmd).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port} after 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `swarmctl up --dry-run --json` with `env`: it reads the swarm through the engine it is
/// pointed at (membership, the stack's objects) and plans, changing nothing.
fn plan(env: &[(&str, &str)], state: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    cmd.args(["up", "--dry-run", "--json", "--stack", "ci", "--set", "name=swit-remote"])
        .env("SWARMCTL_STATE_DIR", state);
    for var in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "SWARMCTL_HOST"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run swarmctl")
}

fn assert_reads_the_swarm(out: &std::process::Output, how: &str) {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "{how}: {stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{how}: {e}: {stdout}"));
    let create = plan["create"].as_array().unwrap();
    assert!(create.iter().any(|c| c == "service/swit-remote_server"), "{how}: the plan, made through it: {plan}");
}

/// The local engine is a swarm manager (the plan needs one; another test may not have made
/// it one yet).
fn swarm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}"));
        swarmctl::engine::swarm::init(&engine, None).await.unwrap();
    });
}

#[test]
fn a_remote_engine_over_mutual_tls() {
    swarm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |args: &[&str]| sh("openssl", args, d);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=it-ca",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
    // DOCKER_CERT_PATH holds the client's side under the docker CLI's names.
    let certs = d.join("client");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(d.join("ca.pem"), certs.join("ca.pem")).unwrap();
    std::fs::copy(d.join("client.pem"), certs.join("cert.pem")).unwrap();
    std::fs::copy(d.join("client-key.pem"), certs.join("key.pem")).unwrap();

    let port = free_port();
    let proxy = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/tlsproxy.py");
    let _tls = Started(
        Command::new("python3")
            .args([proxy, &port.to_string(), d.to_str().unwrap(), "/var/run/docker.sock"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("tlsproxy.log")).unwrap())
            .spawn()
            .expect("python3"),
    );
    wait_for(port);
    let host = format!("tcp://127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let certs = certs.to_str().unwrap();

    let out =
        plan(&[("DOCKER_HOST", host.as_str()), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", certs)], state.path());
    assert_reads_the_swarm(&out, "over TLS");

    // Plain HTTP to a TLS endpoint, or certificates that are not there: an error that says where
    // it looked and with what, within seconds.
    let started = Instant::now();
    let out = plan(&[("DOCKER_HOST", host.as_str())], state.path());
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach the Docker Engine at {host} (from DOCKER_HOST)")), "{stderr}");
    let missing = d.join("nowhere");
    let out = plan(
        &[("DOCKER_HOST", host.as_str()), ("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", missing.to_str().unwrap())],
        state.path(),
    );
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("from {} (DOCKER_CERT_PATH)", missing.display())), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn a_remote_engine_over_ssh() {
    swarm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", "host_key"], d);
    sh("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", "client_key"], d);
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    // sshd refuses keys in a folder others may write to.
    sh("chmod", &["700", "."], d);
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    let opt = |o: String| ["-o".to_string(), o];
    let mut args = vec!["-D".to_string(), "-e".into(), "-f".into(), "/dev/null".into(), "-p".into(), port.to_string()];
    for o in [
        "ListenAddress=127.0.0.1".to_string(),
        format!("HostKey={}/host_key", d.display()),
        format!("AuthorizedKeysFile={}/authorized_keys", d.display()),
        "PermitRootLogin=prohibit-password".into(),
        "PasswordAuthentication=no".into(),
        format!("PidFile={}/sshd.pid", d.display()),
        "StrictModes=no".into(),
    ] {
        args.extend(opt(o));
    }
    let _sshd = Started(
        Command::new("/usr/sbin/sshd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (Debian package openssh-server; scripts/test installs it)"),
    );
    wait_for(port);
    // The key reaches the ssh client through an agent of this test's own.
    let agent_sock = d.join("agent.sock");
    let _agent = Started(
        Command::new("ssh-agent").args(["-D", "-a"]).arg(&agent_sock).stdout(Stdio::null()).spawn().expect("ssh-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent_sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let add = Command::new("ssh-add").arg(d.join("client_key")).env("SSH_AUTH_SOCK", &agent_sock).output().unwrap();
    assert!(add.status.success(), "ssh-add: {}", String::from_utf8_lossy(&add.stderr));

    // bollard's ssh transport loses a port given in the URL: that is said, and the way that
    // works is a host named in ~/.ssh/config (this test's block, taken out again after).
    let state = tempfile::tempdir().unwrap();
    let with_port = format!("ssh://root@127.0.0.1:{port}");
    let out = plan(&[("DOCKER_HOST", with_port.as_str())], state.path());
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot pass a port (:{port})")) && stderr.contains("~/.ssh/config"), "{stderr}");

    let home = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let made_dir = !home.join(".ssh").exists();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let config = home.join(".ssh/config");
    let before = std::fs::read(&config).ok();
    let block = format!(
        "\n# swarmctl tests/it/remote.rs (removed when it ends)\nHost swit-remote\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  UserKnownHostsFile /dev/null\n"
    );
    let mut text_now = before.clone().unwrap_or_default();
    text_now.extend_from_slice(block.as_bytes());
    std::fs::write(&config, &text_now).unwrap();
    let env = [("DOCKER_HOST", "ssh://swit-remote"), ("SSH_AUTH_SOCK", agent_sock.to_str().unwrap())];
    let out = plan(&env, state.path());
    // The endpoints use the address the alias stands for, not the alias.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    cmd.args(["status", "--json", "--stack", "ci", "--set", "name=swit-remote"])
        .env("SWARMCTL_STATE_DIR", state.path());
    for var in ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "SWARMCTL_HOST"] {
        cmd.env_remove(var);
    }
    let status = cmd.envs(env).output().unwrap();
    match before {
        Some(bytes) => std::fs::write(&config, bytes).unwrap(),
        None => std::fs::remove_file(&config).unwrap(),
    }
    if made_dir {
        std::fs::remove_dir(home.join(".ssh")).unwrap();
    }
    let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
    assert!(out.status.success(), "over ssh: {}\nsshd: {log}", text(&out).1);
    assert_reads_the_swarm(&out, "over ssh");
    let (stdout, stderr) = text(&status);
    let status: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("status over ssh: {e}: {stderr}"));
    let urls: Vec<&str> = status["endpoints"].as_array().unwrap().iter().map(|e| e["url"].as_str().unwrap()).collect();
    assert!(!urls.is_empty() && urls.iter().all(|u| u.contains("://127.0.0.1:")), "{urls:?}");
}
