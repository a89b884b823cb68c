use super::*;

fn file(text: &str) -> StackSource {
    StackSource { origin: Origin::File("test.yaml".into()), text: text.into() }
}

fn load_text(text: &str, sets: &[&str]) -> Result<Config, ConfigError> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_source(&file(text), &sets)
}

#[test]
fn every_builtin_stack_loads_and_validates() {
    for (name, _) in BUILTIN_STACKS {
        let c = load(Some(name), &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(c.server.replicas >= 1, "{name}");
    }
}

/// The built-in stacks are one list: docs/configuration.md's table and README's global flags
/// name each (and nothing else), as `--help` does from the list itself.
#[test]
fn the_documented_built_in_stacks_are_the_list() {
    let doc = include_str!("../../docs/configuration.md");
    let table: Vec<&str> = doc
        .split("| `--stack` | for |")
        .nth(1)
        .unwrap()
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| l.split('`').nth(1).unwrap())
        .collect();
    let names: Vec<&str> = BUILTIN_STACKS.iter().map(|(n, _)| *n).collect();
    let mut sorted = (table.clone(), names.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "docs/configuration.md's table of built-in stacks");
    let readme = include_str!("../../README.md");
    for name in names {
        assert!(readme.contains(&format!("`{name}`")), "README names the built-in stack {name}");
    }
}

#[test]
fn default_stack_has_the_documented_values() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c.name, "swarmctl");
    assert_eq!(c.server.image, "builtin");
    assert_eq!(c.server.replicas, 12);
    assert_eq!(c.server.resources.limits.cpus, Some(crate::units::Cpus(4.0)));
    assert_eq!(c.server.resources.limits.memory, Some(crate::units::ByteSize(2 << 30)));
    assert_eq!(c.server.resources.reservations, ResourceAmount::default());
    assert!(c.server.environment.is_empty(), "no image's variables by default: {:?}", c.server.environment);
    assert_eq!(c.test.profiles["baseline"].sessions, 1_000);
    let stress = &c.test.profiles["stress"];
    assert_eq!((stress.sessions, stress.ramp, stress.hold.to_string()), (100_000, 5_000, "5m".to_string()));
    assert_eq!(c.slo.success_ratio, 0.95);
    assert_eq!(c.slo.p99.to_string(), "500ms");
    assert_eq!(c.slo.failover_recovery.to_string(), "30s");
    assert!(c.grafana.enabled && c.prometheus.enabled);
}

#[test]
fn stack_files_layer_on_the_default() {
    let ci = load(Some("ci"), &[]).unwrap();
    assert_eq!(ci.server.replicas, 3);
    assert!(!ci.grafana.enabled);
    // Not set in ci.yaml: inherited.
    assert_eq!(ci.server.metrics_port, Some(9100));

    let erl = load(Some("erlmcp-100k"), &[]).unwrap();
    assert_eq!(erl.server.image, "erlmcp:latest");
    assert_eq!(erl.server.resources.reservations.cpus, Some(crate::units::Cpus(2.0)));
    assert_eq!(erl.server.placement.constraints, vec!["node.role == worker".to_string()]);
    assert!(erl.server.transports.http.is_none(), "null disables a transport");
    assert!(erl.server.transports.ws.as_ref().unwrap().newline);
    assert_eq!(erl.server.environment.get("ERL_MAX_PORTS").map(String::as_str), Some("262144"));
    assert_eq!(erl.server.environment.get("ERLMCP_ENV").map(String::as_str), Some("swarm"));
}

#[test]
fn set_beats_file_beats_default() {
    let c = load_text("server:\n  replicas: 5\n", &[]).unwrap();
    assert_eq!(c.server.replicas, 5);
    let c = load_text("server:\n  replicas: 5\n", &["server.replicas=7"]).unwrap();
    assert_eq!(c.server.replicas, 7);
    let file = "server:\n  environment:\n    KEPT: 1\n    DROPPED: 2\n";
    let c = load_text(file, &["server.environment.EXTRA=1", "server.environment.DROPPED=null"]).unwrap();
    assert_eq!(c.server.environment.get("EXTRA").map(String::as_str), Some("1"));
    assert_eq!(c.server.environment.get("KEPT").map(String::as_str), Some("1"));
    assert!(!c.server.environment.contains_key("DROPPED"), "null removes a key");
    let c = load_text("", &["server.placement.constraints=[\"node.role == worker\"]"]).unwrap();
    assert_eq!(c.server.placement.constraints, vec!["node.role == worker".to_string()]);
}

#[test]
fn unknown_key_names_file_line_and_suggests() {
    let err = load_text("server:\n  replica: 3\n", &[]).unwrap_err();
    match &err {
        ConfigError::Parse(p) => {
            assert_eq!(p.origin, Origin::File("test.yaml".into()));
            assert_eq!(p.line, Some(2));
            assert_eq!(p.key, "server.replica");
            assert_eq!(p.suggestion.as_deref(), Some("server.replicas"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("test.yaml:2:3: server.replica: unknown key `replica`"), "{text}");
    assert!(text.contains("did you mean `server.replicas`?"), "{text}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let err = load_text("name: x\nserver:\n  replicas: lots\n", &[]).unwrap_err().to_string();
    assert_eq!(err, "test.yaml:3:13: server.replicas: invalid type: string \"lots\", expected a whole number");
    let err = load_text("slo:\n  p99: 500\n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.yaml:2:8: slo.p99: a bare number is ambiguous here"), "{err}");
    let err = load_text("server:\n  resources:\n    limits: { memory: 2 gigs }\n", &[]).unwrap_err().to_string();
    assert!(err.contains("server.resources.limits.memory: invalid size `2 gigs`"), "{err}");
}

#[test]
fn malformed_yaml_names_the_line() {
    let err = load_text("server:\n  replicas: [1,\n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.yaml:"), "{err}");
    let err = load_text("- a list\n", &[]).unwrap_err().to_string();
    assert!(err.starts_with("test.yaml:1:1"), "{err}");
}

#[test]
fn set_errors_name_the_flag() {
    let err = load_text("", &["server.replica=3"]).unwrap_err().to_string();
    assert!(err.starts_with("--set server.replica=3: server.replica: unknown key"), "{err}");
    assert!(err.contains("did you mean `server.replicas`?"), "{err}");
    let err = load_text("", &["server.endpoint_mode=vipp"]).unwrap_err().to_string();
    assert!(err.contains("unknown variant `vipp`") && err.contains("did you mean `vip`?"), "{err}");
    assert!(matches!(load_text("", &["replicas"]), Err(ConfigError::SetSyntax { .. })));
    assert!(matches!(load_text("", &["server..replicas=1"]), Err(ConfigError::SetSyntax { .. })));
}

#[test]
fn semantic_errors_name_key_origin_and_what_is_valid() {
    let err = load_text("server:\n  replicas: 0\n", &[]).unwrap_err();
    let ConfigError::Invalid { problems } = &err else { panic!("{err:?}") };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "server.replicas");
    assert_eq!(problems[0].origin, Origin::File("test.yaml".into()));
    assert!(problems[0].message.contains("at least 1"));

    // Every problem is reported, each at the key the user set.
    let err =
        load_text("", &["lb.ports.web=9090", "slo.success_ratio=1.5", "server.transports.tcp.port=9100"]).unwrap_err();
    let ConfigError::Invalid { problems } = &err else { panic!("{err:?}") };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"lb.ports.web"), "{keys:?}");
    assert!(keys.contains(&"slo.success_ratio"), "{keys:?}");
    assert!(keys.contains(&"server.transports.tcp.port"), "{keys:?}");
    assert!(problems.iter().all(|p| matches!(p.origin, Origin::Set(_))), "{problems:?}");
}

#[test]
fn semantic_checks_cover_units_ranges_and_references() {
    let cases: &[(&str, &str)] = &[
        (
            "server:\n  resources:\n    limits: { cpus: 1 }\n    reservations: { cpus: 2 }\n",
            "server.resources.reservations.cpus",
        ),
        ("server:\n  resources:\n    limits: { memory: 1M }\n", "server.resources.limits.memory"),
        ("server:\n  ulimits: { nofiles: 10 }\n", "server.ulimits.nofiles"),
        ("server:\n  sysctls: { vm.swappiness: \"1\" }\n", "server.sysctls.vm.swappiness"),
        ("server:\n  volumes: { data: relative/path }\n", "server.volumes.data"),
        ("server:\n  transports: { http: { port: 0, path: /mcp } }\n", "server.transports.http.port"),
        ("server:\n  transports: { http: { port: 8080, path: mcp } }\n", "server.transports.http.path"),
        ("server:\n  transports: { ws: { port: 9100, path: /ws } }\n", "server.transports.ws.port"),
        ("server:\n  transports: { http: null, sse: null, ws: null }\n", "server.transports"),
        ("server:\n  rollback: { failure_action: rollback }\n", "server.rollback.failure_action"),
        ("lb:\n  refresh: 500ms\n", "lb.refresh"),
        ("prometheus:\n  enabled: false\n", "grafana.enabled"),
        ("networks:\n  monitoring: { name: mcp-network }\n", "networks.monitoring.name"),
        ("name: Bad Name\n", "name"),
        ("registry: http://10.99.0.1:5000\n", "registry"),
        ("registry: \"10.99.0.1:0\"\n", "registry"),
        ("registry: registry.example.com/team\n", "registry"),
        ("test:\n  profiles:\n    baseline: { sessions: 0 }\n", "test.profiles.baseline.sessions"),
        ("test:\n  profiles:\n    soak: { sessions: 10, ramp: 1, transport: tcp }\n", "test.profiles.soak.transport"),
        ("slo:\n  p99: 0s\n", "slo.p99"),
        ("slo:\n  failover_success_ratio: 2\n", "slo.failover_success_ratio"),
        ("test:\n  profiles:\n    baseline: { mix: \"nope=1\" }\n", "test.profiles.baseline.mix"),
        ("test:\n  phase_profile: soak\n", "test.phase_profile"),
        ("test:\n  failover: { kill: 0 }\n", "test.failover.kill"),
        ("test:\n  failover: { observe: 1s }\n", "test.failover.observe"),
        ("test:\n  hang: { duration: 0s }\n", "test.hang.duration"),
        ("test:\n  scaling: { steps: [0] }\n", "test.scaling.steps[0]"),
        ("test:\n  incremental: { stages: [] }\n", "test.incremental.stages"),
    ];
    for (text, key) in cases {
        match load_text(text, &[]) {
            Err(ConfigError::Invalid { problems }) => {
                assert!(problems.iter().any(|p| p.key == *key), "{key}: got {problems:?}")
            }
            other => panic!("{key}: expected a validation error, got {other:?}"),
        }
    }
}

#[test]
fn a_registry_is_a_host_and_an_optional_port() {
    for ok in ["", "10.99.0.1:5000", "registry.example.com", "localhost:5000"] {
        let c = load_text(&format!("registry: \"{ok}\"\n"), &[]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(c.registry, ok);
    }
}

#[test]
fn kill_counts_are_a_number_or_a_share() {
    let c = load_text("test:\n  failover: { kill: 25% }\n", &[]).unwrap();
    assert_eq!(c.test.failover.kill, KillCount::Percent(25.0));
    assert_eq!((c.test.failover.kill.of(12), c.test.failover.kill.of(3), c.test.failover.kill.of(1)), (3, 1, 1));
    assert_eq!(KillCount::Count(5).of(3), 3, "never more than there are");
    match load_text("test:\n  failover: { kill: half }\n", &[]) {
        Err(e) => assert!(e.to_string().contains("25%"), "{e}"),
        Ok(c) => panic!("accepted {:?}", c.test.failover.kill),
    }
}

#[test]
fn http_transports_may_share_a_port_with_different_paths() {
    let c = load_text(
        "server:\n  transports: { http: { port: 8080, path: /mcp }, sse: { port: 8080, path: /sse } }\n",
        &[],
    );
    assert!(c.is_ok(), "{c:?}");
    let err = load_text("server:\n  transports: { sse: { port: 8080, path: /mcp } }\n", &[]).unwrap_err();
    assert!(err.to_string().contains("server.transports.sse.port"), "{err}");
}

#[test]
fn unknown_stack_lists_the_builtin_names() {
    let err = StackSource::resolve("nope").unwrap_err().to_string();
    assert!(err.contains("default, ci, erlmcp-100k"), "{err}");
    let err = StackSource::resolve("/no/such/file.yaml").unwrap_err().to_string();
    assert!(err.starts_with("cannot read stack file /no/such/file.yaml"), "{err}");
}

#[test]
fn client_urls_come_from_one_place_for_every_entry() {
    let c = load_text("", &["server.transports.tcp={port: 7000}"]).unwrap();
    let lb = c.lb_entry();
    assert_eq!(c.client_url(ClientTransport::Http, "h", lb).unwrap(), "http://h:80/mcp");
    assert_eq!(c.client_url(ClientTransport::Ws, "h", lb).unwrap(), "ws://h:5555/mcp/ws");
    assert_eq!(c.client_url(ClientTransport::Sse, "h", lb).unwrap(), "sse://h:80/sse");
    assert_eq!(c.client_url(ClientTransport::Tcp, "h", lb).unwrap(), "tcp://h:7070");
    let task = Entry::Lb { web: 30001, websocket: 30002, tcp: 0, metrics: 30003 };
    assert_eq!(c.client_url(ClientTransport::Ws, "h", task).unwrap(), "ws://h:30002/mcp/ws");
    assert_eq!(c.client_url(ClientTransport::Http, "10.0.1.5", Entry::Replica).unwrap(), "http://10.0.1.5:8080/mcp");
    assert_eq!(c.client_url(ClientTransport::Tcp, "10.0.1.5", Entry::Replica).unwrap(), "tcp://10.0.1.5:7000");
    let no_ws = load_text("", &["server.transports.ws=null", "test.profiles.stress.transport=http"]).unwrap();
    let e = no_ws.client_url(ClientTransport::Ws, "h", lb).unwrap_err();
    assert!(e.contains("server.transports.ws is off"), "{e}");
}

#[test]
fn ports_per_task_frees_the_fixed_lb_ports() {
    // Fixed host ports must differ; with ports per task they are not published at all.
    let clash = load_text("", &["lb.ports.web=9090"]).unwrap_err().to_string();
    assert!(clash.contains("lb.ports.web"), "{clash}");
    let c = load_text("", &["lb.ports.web=9090", "lb.ports_per_task=true", "lb.replicas=4"]).unwrap();
    assert!(c.lb.ports_per_task);
    // A task's entry from the ports the engine published for it (container port, host port).
    let published = [(8082, 30003), (80, 30001), (5555, 30002)];
    assert_eq!(
        Config::lb_entry_published(&published),
        Some(Entry::Lb { web: 30001, websocket: 30002, tcp: 0, metrics: 30003 })
    );
    assert_eq!(Config::lb_entry_published(&published[..2]), None, "not yet published: no entry");
}

#[test]
fn a_profile_may_pace_its_sessions_by_period() {
    let c = load_text("", &["test.profiles.stress.period=30s"]).unwrap();
    assert_eq!(c.test.profiles["stress"].period, Some(crate::units::Duration::from_secs(30)));
    let e = load_text("", &["test.profiles.stress.period=0s"]).unwrap_err().to_string();
    assert!(e.contains("test.profiles.stress.period") && e.contains("above 0"), "{e}");
}

#[test]
fn spread_preferences_name_node_or_engine_labels_and_reach_the_spec() {
    let c = load_text("", &["server.placement.spread=[node.labels.zone, node.labels.rack]"]).unwrap();
    assert_eq!(c.server.placement.spread, ["node.labels.zone", "node.labels.rack"]);
    let err = load_text("", &["lb.placement.spread=[zone]"]).unwrap_err().to_string();
    assert!(err.contains("lb.placement.spread[0]") && err.contains("use node.labels.NAME"), "{err}");

    let source = crate::deploy::Source {
        stack: Some("ci".into()),
        sets: vec!["server.placement.spread=[node.labels.zone, node.labels.rack]".into()],
        templates: None,
    };
    let (_, desired) = source.prepare(Some("swarmctl/mcp-server:test".into())).unwrap();
    let server = desired.services.iter().find(|s| s.name.as_deref() == Some("swarmctl-ci_server")).unwrap();
    let prefs = server.task_template.as_ref().unwrap().placement.as_ref().unwrap().preferences.as_ref().unwrap();
    let spread: Vec<&str> = prefs.iter().filter_map(|p| p.spread.as_ref()?.spread_descriptor.as_deref()).collect();
    assert_eq!(spread, ["node.labels.zone", "node.labels.rack"]);
}

#[test]
fn a_server_without_metrics_or_health_route_is_an_image_of_its_own() {
    // An image of its own may have neither; readiness then goes through MCP.
    let c = load_text("server:\n  image: me/mcp:1\n  metrics_port: null\n  health_path: null\n", &[]).unwrap();
    assert_eq!((c.server.metrics_port, c.server.health_path.as_deref()), (None, None));
    use crate::phase::ready::Check;
    assert!(matches!(Check::of(&c), Some(Check::Mcp(ClientTransport::Http, _))));
    let builtin = load_text("", &[]).unwrap();
    assert!(matches!(Check::of(&builtin), Some(Check::Health(p)) if p == "/health"));
    // Without Streamable HTTP there is no route for /health: MCP over what there is (erlmcp).
    let erl = load(Some("erlmcp-100k"), &[]).unwrap();
    assert!(matches!(Check::of(&erl), Some(Check::Mcp(ClientTransport::Sse, _))));
    let ws = load_text("server:\n  transports: { http: null, sse: null }\n", &["test.profiles.baseline.transport=ws"])
        .unwrap();
    assert!(matches!(Check::of(&ws), Some(Check::Mcp(ClientTransport::Ws, _))));
    // The builtin image serves both, and says so.
    let err = load_text("server:\n  metrics_port: null\n  health_path: null\n", &[]).unwrap_err().to_string();
    assert!(err.contains("server.metrics_port") && err.contains("server.health_path"), "{err}");
    // A profile's headers are checked as --header is.
    let err = load_text("test:\n  profiles:\n    baseline: { headers: { \"Bad Name\": x } }\n", &[]).unwrap_err();
    assert!(err.to_string().contains("test.profiles.baseline.headers"), "{err}");
    let ok = load_text("test:\n  profiles:\n    baseline: { headers: { Authorization: Bearer t0k } }\n", &[]).unwrap();
    assert_eq!(ok.test.profiles["baseline"].headers["Authorization"], "Bearer t0k");
}

#[test]
fn the_dial_timeout_is_the_load_balancers_own_unless_set() {
    let secs = |c: &Config| c.lb.dial_timeout().0.as_secs_f64();
    assert_eq!(secs(&load_text("", &[]).unwrap()), 30.0, "Traefik's own");
    let haproxy = ["lb.kind=haproxy", "lb.image=haproxy:2.6"];
    assert_eq!(secs(&load_text("", &haproxy).unwrap()), 2.0, "HAProxy: short, each retry elsewhere");
    let set = load_text("", &[haproxy[0], haproxy[1], "lb.transport.dial_timeout=5s"]).unwrap();
    assert_eq!(secs(&set), 5.0, "a stack's own value wins");
    assert_eq!(secs(&load(Some("python-sdk"), &[]).unwrap()), 2.0);
}
