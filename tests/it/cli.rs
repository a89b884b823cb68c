//! The real binary: what a user sees and the exit codes scripts rely on.

use crate::util::{swarmctl, text};

#[test]
fn render_writes_a_deployable_folder() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("rendered");
    let res = swarmctl(&["render", "--stack", "default", "-o", dir.to_str().unwrap()], state.path());
    let (stdout, stderr) = text(&res);
    assert!(res.status.success(), "{stderr}");
    for file in [
        "stack.yml",
        "traefik.yml",
        "prometheus.yml",
        "alerts.yml",
        "grafana/datasource.yml",
        "grafana/dashboards.yml",
        "grafana/mcp-overview.json",
        "grafana/load-balancer.json",
        "secrets/grafana_admin_password",
    ] {
        let path = dir.join(file);
        assert!(path.is_file(), "{file} missing");
        assert!(stdout.contains(path.to_str().unwrap()), "{file} not listed on stdout: {stdout}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("secrets/grafana_admin_password")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The password is generated once and kept: a second render gives the same secret name.
    let first = std::fs::read_to_string(dir.join("stack.yml")).unwrap();
    let res = swarmctl(&["render", "--stack", "default"], state.path());
    assert!(res.status.success());
    assert_eq!(text(&res).0, first, "stdout render equals the written stack.yml");
    let password = std::fs::read_to_string(dir.join("secrets/grafana_admin_password")).unwrap();
    assert!(password.len() >= 20 && password != "admin", "{password}");
}

#[test]
fn bad_configuration_exits_2_naming_the_problem() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("server:\n  replica: 3\n", ":2:3: server.replica: unknown key `replica`"),
        ("server:\n  replicas: many\n", ":2:13: server.replicas: invalid type"),
        ("server:\n  replicas: 0\n", "server.replicas: must be at least 1"),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let res = swarmctl(&["render", "--stack", file.to_str().unwrap()], state.path());
        let (stdout, stderr) = text(&res);
        assert_eq!(res.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains(want), "{yaml}: wanted `{want}` in: {stderr}");
        assert!(stderr.contains(file.to_str().unwrap()), "names the file: {stderr}");
        assert!(stdout.is_empty(), "nothing half-rendered on stdout");
    }
    let res = swarmctl(&["render", "--set", "lb.ports.web=nine"], state.path());
    assert_eq!(res.status.code(), Some(2));
    assert!(text(&res).1.contains("--set lb.ports.web=nine: lb.ports.web: invalid type"), "{}", text(&res).1);
    let res = swarmctl(&["render", "--stack", "nosuchstack"], state.path());
    assert_eq!(res.status.code(), Some(2));
    let res = swarmctl(&["render", "--bogus-flag"], state.path());
    assert_eq!(res.status.code(), Some(2), "clap usage errors are 2 too");
}

#[test]
fn template_overrides_replace_by_name_and_reject_unknown_files() {
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let traefik = swarmctl::render::TEMPLATES.iter().find(|(n, _)| *n == "traefik.yml").unwrap().1;
    std::fs::write(dir.path().join("traefik.yml"), traefik.replace("level: INFO", "level: DEBUG")).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let res = swarmctl(
        &["render", "--stack", "ci", "--templates", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()],
        state.path(),
    );
    assert!(res.status.success(), "{}", text(&res).1);
    assert!(std::fs::read_to_string(out.join("traefik.yml")).unwrap().contains("level: DEBUG"));

    std::fs::write(dir.path().join("stak.yml"), "x").unwrap();
    let res = swarmctl(&["render", "--stack", "ci", "--templates", dir.path().to_str().unwrap()], state.path());
    assert_eq!(res.status.code(), Some(2));
    assert!(text(&res).1.contains("stak.yml: not a swarmctl template"), "{}", text(&res).1);

    // A template that renders a compose key swarmctl cannot deploy is refused, with the key.
    std::fs::remove_file(dir.path().join("stak.yml")).unwrap();
    let stack = swarmctl::render::TEMPLATES.iter().find(|(n, _)| *n == "stack.yml").unwrap().1;
    std::fs::write(
        dir.path().join("stack.yml"),
        stack.replacen("    stop_grace_period:", "    privileged: true\n    stop_grace_period:", 1),
    )
    .unwrap();
    let res = swarmctl(&["render", "--stack", "ci", "--templates", dir.path().to_str().unwrap()], state.path());
    assert_eq!(res.status.code(), Some(2));
    assert!(text(&res).1.contains("services.server.privileged"), "{}", text(&res).1);
}

#[test]
fn help_lists_only_working_commands_and_completions_work() {
    let state = tempfile::tempdir().unwrap();
    let res = swarmctl(&["--help"], state.path());
    let help = text(&res).0;
    assert!(help.contains("render") && help.contains("completions"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let res = swarmctl(&["completions", shell], state.path());
        assert!(res.status.success());
        assert!(text(&res).0.contains("render"), "{shell}");
    }
}

#[test]
fn logs_go_to_stderr_never_into_data() {
    let state = tempfile::tempdir().unwrap();
    let res = swarmctl(&["-vv", "render", "--stack", "ci"], state.path());
    let (stdout, stderr) = text(&res);
    assert!(stderr.contains("configuration loaded"), "{stderr}");
    assert!(!stdout.contains("configuration loaded"));
    serde_yaml::from_str::<serde_yaml::Value>(&stdout).expect("stdout is pure YAML");
}

#[test]
fn the_agent_refuses_to_start_without_a_usable_token() {
    let state = tempfile::tempdir().unwrap();
    let missing = state.path().join("nope");
    let res = swarmctl(
        &[
            "agent",
            "--stack",
            "st",
            "--node",
            "n1",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            missing.to_str().unwrap(),
        ],
        state.path(),
    );
    assert_eq!(res.status.code(), Some(1));
    let stderr = text(&res).1;
    assert!(stderr.contains(&format!("cannot read the token file {} (--token-file)", missing.display())), "{stderr}");
    let short = state.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let res = swarmctl(
        &["agent", "--stack", "st", "--node", "n1", "--listen", "127.0.0.1:0", "--token-file", short.to_str().unwrap()],
        state.path(),
    );
    assert_eq!(res.status.code(), Some(1));
    assert!(text(&res).1.contains("too short to protect anything"), "{}", text(&res).1);
}

#[test]
fn version_names_the_commit_and_help_lists_every_built_in_stack() {
    let state = tempfile::tempdir().unwrap();
    let version = text(&swarmctl(&["--version"], state.path())).0;
    let commit =
        version.split("(commit ").nth(1).and_then(|c| c.strip_suffix(")\n")).unwrap_or_else(|| panic!("{version}"));
    assert!(commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{version}");
    let help = text(&swarmctl(&["up", "--help"], state.path())).0;
    let (own, global) = help.split_once("Global options:").unwrap_or_else(|| panic!("a heading of their own: {help}"));
    assert!(global.contains("--stack") && global.contains("--set") && !own.contains("--stack"), "{help}");
    let bash = text(&swarmctl(&["completions", "bash"], state.path())).0;
    for (name, _) in swarmctl::config::BUILTIN_STACKS {
        assert!(global.contains(name), "--help lists the built-in stack {name}: {global}");
        assert!(bash.contains(name), "bash completes the built-in stack {name}");
    }
    let man = swarmctl(&["man"], state.path());
    let page = text(&man).0;
    assert!(man.status.success() && page.contains(".TH swarmctl"), "{page}");
    assert!(page.contains(".TH SWARMCTL-UP") && page.contains(".TH SWARMCTL-VALIDATE"), "a section per command");
}

/// Every error a user can reach without an engine says each cause once: an error that quotes
/// its source is not followed by the same source again.
#[test]
fn errors_say_each_cause_once() {
    let state = tempfile::tempdir().unwrap();
    let bad_yaml = state.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "name: [").unwrap();
    let not_results = state.path().join("other");
    std::fs::create_dir_all(&not_results).unwrap();
    std::fs::write(not_results.join("results.json"), "{\"schema_version\": 1}").unwrap();
    let cases: &[&[&str]] = &[
        &["--stack", "/nonexistent/stack.yaml", "render"],
        &["--stack", "no-such-stack", "render"],
        &["--stack", bad_yaml.to_str().unwrap(), "render"],
        &["--templates", "/nonexistent", "render"],
        &["--set", "server.replicas=many", "render"],
        &["report", "show", "/nonexistent"],
        &["report", "show", not_results.to_str().unwrap()],
        &["report", "compare", "/nonexistent", "/nonexistent"],
        &["load", "--url", "http://127.0.0.1:9/mcp", "--plan", "/nonexistent/plan.json"],
        &["load", "--url", "ftp://127.0.0.1:9/", "--sessions", "1"],
        &["image", "pack", "--add", "/nonexistent/python3"],
    ];
    for args in cases {
        let res = swarmctl(args, state.path());
        let (_, stderr) = text(&res);
        assert!(!res.status.success(), "{args:?} fails");
        let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{args:?}: {stderr}"));
        let parts: Vec<&str> = line.trim_start_matches("error: ").split(": ").filter(|p| p.len() > 8).collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(p), "{args:?} says `{p}` twice: {line}");
        }
    }
}
