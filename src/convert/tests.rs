use std::collections::BTreeMap;

use bollard::models::*;

use super::service::*;
use super::*;
use crate::compose;

fn ns() -> Namespace {
    Namespace("st".into())
}

fn dur(s: &str) -> Option<crate::units::Duration> {
    Some(s.parse().unwrap())
}

#[test]
fn mode_table() {
    type Row<'a> = (Option<&'a str>, Option<u64>, Result<ServiceSpecMode, &'a str>);
    let rows: &[Row] = &[
        (
            None,
            None,
            Ok(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
        ),
        (
            Some("replicated"),
            Some(12),
            Ok(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(12) }),
                ..Default::default()
            }),
        ),
        (Some("global"), None, Ok(ServiceSpecMode { global: Some(Default::default()), ..Default::default() })),
        (Some("global"), Some(2), Err("`replicas` cannot be used with mode global")),
        (Some("daemonset"), None, Err("unknown mode `daemonset`: use replicated or global")),
    ];
    for (mode, replicas, want) in rows {
        let got = convert_mode(*mode, *replicas, "at").map_err(|e| e.message);
        assert_eq!(got, want.clone().map_err(String::from), "{mode:?} {replicas:?}");
    }
}

#[test]
fn resources_table() {
    let limits = |cpus: &str, mem: &str| compose::ResourceLimits {
        cpus: Some(cpus.parse().unwrap()),
        memory: Some(mem.parse().unwrap()),
        pids: None,
    };
    let rows = [
        (compose::DeployResources::default(), None),
        (
            compose::DeployResources { limits: Some(limits("4", "2G")), reservations: None },
            Some(TaskSpecResources {
                limits: Some(Limit { nano_cpus: Some(4_000_000_000), memory_bytes: Some(2 << 30), pids: None }),
                ..Default::default()
            }),
        ),
        (
            compose::DeployResources { limits: None, reservations: Some(limits("0.25", "512M")) },
            Some(TaskSpecResources {
                reservations: Some(ResourceObject {
                    nano_cpus: Some(250_000_000),
                    memory_bytes: Some(512 << 20),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ),
    ];
    for (input, want) in rows {
        assert_eq!(convert_resources(&input), want, "{input:?}");
    }
}

#[test]
fn restart_policy_table() {
    let rows = [
        (
            compose::RestartPolicy {
                condition: Some("any".into()),
                delay: dur("0s"),
                max_attempts: None,
                window: None,
            },
            Ok(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(0),
                max_attempts: Some(0),
                window: None,
            }),
        ),
        (
            compose::RestartPolicy {
                condition: Some("on-failure".into()),
                delay: dur("5s"),
                max_attempts: Some(3),
                window: dur("2m"),
            },
            Ok(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(5_000_000_000),
                max_attempts: Some(3),
                window: Some(120_000_000_000),
            }),
        ),
        (
            compose::RestartPolicy { condition: Some("always".into()), ..Default::default() },
            Err("at.condition: unknown restart condition `always`: use none, on-failure or any".to_string()),
        ),
    ];
    for (input, want) in rows {
        assert_eq!(convert_restart_policy(&input, "at").map_err(|e| e.to_string()), want);
    }
}

#[test]
fn update_config_table() {
    let got = convert_update_config(&compose::UpdateConfig::default(), "at").unwrap();
    assert_eq!(got.parallelism, Some(1), "a present block defaults parallelism to 1, as compose does");
    assert_eq!(
        got.failure_action,
        Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
        "the engine's default, written out"
    );
    assert_eq!((got.delay, got.monitor, got.max_failure_ratio), (None, None, Some(0.0)));
    let got = convert_update_config(
        &compose::UpdateConfig {
            parallelism: Some(3),
            delay: dur("15s"),
            failure_action: Some("rollback".into()),
            monitor: dur("5s"),
            max_failure_ratio: Some(0.1),
            order: Some("start-first".into()),
        },
        "at",
    )
    .unwrap();
    assert_eq!(
        got,
        ServiceSpecUpdateConfig {
            parallelism: Some(3),
            delay: Some(15_000_000_000),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(5_000_000_000),
            max_failure_ratio: Some(0.1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        }
    );
    for (bad, key) in [
        (compose::UpdateConfig { failure_action: Some("retry".into()), ..Default::default() }, "at.failure_action"),
        (compose::UpdateConfig { order: Some("random".into()), ..Default::default() }, "at.order"),
        (compose::UpdateConfig { max_failure_ratio: Some(2.0), ..Default::default() }, "at.max_failure_ratio"),
    ] {
        assert_eq!(convert_update_config(&bad, "at").unwrap_err().location, key);
    }
}

#[test]
fn healthcheck_table() {
    let h = compose::Healthcheck {
        test: Some(vec!["CMD".into(), "probe".into()]),
        interval: dur("2s"),
        timeout: dur("1s"),
        retries: Some(3),
        start_period: dur("5s"),
        start_interval: None,
        disable: false,
    };
    assert_eq!(
        convert_healthcheck(&h),
        HealthConfig {
            test: Some(vec!["CMD".into(), "probe".into()]),
            interval: Some(2_000_000_000),
            timeout: Some(1_000_000_000),
            retries: Some(3),
            start_period: Some(5_000_000_000),
            start_interval: None,
        }
    );
    let off = compose::Healthcheck { disable: true, ..h };
    assert_eq!(convert_healthcheck(&off).test, Some(vec!["NONE".to_string()]));
}

#[test]
fn placement_table() {
    let p = compose::Placement {
        constraints: vec!["node.role == worker".into()],
        preferences: vec![compose::Preference { spread: "node.labels.zone".into() }],
        max_replicas_per_node: Some(2),
    };
    let got = convert_placement(&p);
    assert_eq!(got.constraints, Some(vec!["node.role == worker".to_string()]));
    assert_eq!(got.max_replicas, Some(2));
    assert_eq!(
        got.preferences.unwrap()[0].spread.as_ref().unwrap().spread_descriptor.as_deref(),
        Some("node.labels.zone")
    );
    assert_eq!(convert_placement(&compose::Placement::default()), TaskSpecPlacement::default());
}

#[test]
fn endpoint_table() {
    let port =
        |target, published, mode: &str| compose::Port { target, published, protocol: "tcp".into(), mode: mode.into() };
    let got = convert_endpoint(
        Some("vip"),
        &[port(5555, Some(5555), "host"), port(80, Some(80), "ingress")],
        "s.deploy.endpoint_mode",
    )
    .unwrap();
    assert_eq!(got.mode, Some(EndpointSpecModeEnum::VIP));
    let ports = got.ports.unwrap();
    assert_eq!(ports.iter().map(|p| p.published_port).collect::<Vec<_>>(), vec![Some(80), Some(5555)], "sorted");
    assert_eq!(ports[1].publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
    assert_eq!(ports[0].publish_mode, Some(EndpointPortConfigPublishModeEnum::INGRESS));

    let got = convert_endpoint(Some("dnsrr"), &[port(80, Some(80), "host")], "at").unwrap();
    assert_eq!(got.mode, Some(EndpointSpecModeEnum::DNSRR));
    let err = convert_endpoint(Some("dnsrr"), &[port(80, Some(80), "ingress")], "s.deploy.endpoint_mode").unwrap_err();
    assert_eq!(err.location, "s.ports");
    assert!(err.message.contains("use mode: host"));
    assert!(convert_endpoint(Some("round-robin"), &[], "at").is_err());
    assert_eq!(
        convert_endpoint(None, &[], "at").unwrap(),
        EndpointSpec { mode: Some(EndpointSpecModeEnum::VIP), ports: None }
    );
}

#[test]
fn ulimits_are_sorted_and_single_values_set_both() {
    let u: BTreeMap<String, compose::Ulimit> = [
        ("nproc".to_string(), compose::Ulimit::Pair { soft: 10, hard: 20 }),
        ("nofile".to_string(), compose::Ulimit::Single(20000)),
    ]
    .into();
    let got = convert_ulimits(&u);
    assert_eq!(
        got,
        vec![
            ResourcesUlimits { name: Some("nofile".into()), soft: Some(20000), hard: Some(20000) },
            ResourcesUlimits { name: Some("nproc".into()), soft: Some(10), hard: Some(20) },
        ]
    );
}

fn names() -> Names {
    Names {
        networks: [("mcp".to_string(), "st_mcp".to_string()), ("default".to_string(), "st_default".to_string())].into(),
        volumes: [("data".to_string(), "st_data".to_string())].into(),
        configs: [("cfg".to_string(), "st_cfg_abc".to_string())].into(),
        secrets: [("pw".to_string(), "st_pw_def".to_string())].into(),
    }
}

#[test]
fn networks_get_the_service_alias_and_default() {
    let svc = compose::Service {
        networks: Some([("mcp".to_string(), compose::ServiceNetwork { aliases: vec!["api".into()] })].into()),
        ..Default::default()
    };
    let got = convert_networks("server", &svc, &names(), "at").unwrap();
    assert_eq!(got[0].target.as_deref(), Some("st_mcp"));
    assert_eq!(got[0].aliases, Some(vec!["server".to_string(), "api".to_string()]));
    let got = convert_networks("server", &compose::Service::default(), &names(), "at").unwrap();
    assert_eq!(got[0].target.as_deref(), Some("st_default"));
    let svc =
        compose::Service { networks: Some([("nope".to_string(), Default::default())].into()), ..Default::default() };
    assert!(convert_networks("server", &svc, &names(), "at").unwrap_err().message.contains("`nope`"));
}

#[test]
fn mounts_table() {
    let svc = compose::Service {
        volumes: vec![
            compose::VolumeMount {
                kind: "volume".into(),
                source: Some("data".into()),
                target: "/data".into(),
                nocopy: true,
                ..Default::default()
            },
            compose::VolumeMount {
                kind: "bind".into(),
                source: Some("/var/run/docker.sock".into()),
                target: "/var/run/docker.sock".into(),
                read_only: true,
                ..Default::default()
            },
            compose::VolumeMount {
                kind: "tmpfs".into(),
                target: "/tmp".into(),
                tmpfs_size: Some("64M".parse().unwrap()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let got = convert_mounts(&ns(), &svc, &names(), "at").unwrap();
    assert_eq!(got[0].typ, Some(MountType::VOLUME));
    assert_eq!(got[0].source.as_deref(), Some("st_data"), "stack-prefixed");
    let vo = got[0].volume_options.as_ref().unwrap();
    assert_eq!(vo.no_copy, Some(true));
    assert_eq!(vo.labels.as_ref().unwrap().get(LABEL_NAMESPACE).map(String::as_str), Some("st"));
    assert_eq!((got[1].typ, got[1].read_only), (Some(MountType::BIND), Some(true)));
    assert_eq!(got[2].tmpfs_options.as_ref().unwrap().size_bytes, Some(64 << 20));
    let bad = compose::Service {
        volumes: vec![compose::VolumeMount {
            kind: "volume".into(),
            source: Some("undeclared".into()),
            target: "/x".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(convert_mounts(&ns(), &bad, &names(), "at").unwrap_err().message.contains("`undeclared`"));
}

#[test]
fn configs_and_secrets_reference_hashed_names_with_defaults() {
    let svc = compose::Service {
        configs: vec![compose::FileRef {
            source: "cfg".into(),
            target: Some("/etc/x.yml".into()),
            ..Default::default()
        }],
        secrets: vec![compose::FileRef { source: "pw".into(), ..Default::default() }],
        ..Default::default()
    };
    let c = &convert_configs(&svc, &names(), "at").unwrap()[0];
    assert_eq!(c.config_name.as_deref(), Some("st_cfg_abc"));
    assert_eq!(c.config_id, None, "IDs are filled in at deploy");
    let f = c.file.as_ref().unwrap();
    assert_eq!(
        (f.name.as_deref(), f.uid.as_deref(), f.gid.as_deref(), f.mode),
        (Some("/etc/x.yml"), Some("0"), Some("0"), Some(0o444))
    );
    let s = &convert_secrets(&svc, &names(), "at").unwrap()[0];
    assert_eq!(s.secret_name.as_deref(), Some("st_pw_def"));
    assert_eq!(s.file.as_ref().unwrap().name.as_deref(), Some("pw"));
    let bad = compose::Service {
        configs: vec![compose::FileRef { source: "missing".into(), ..Default::default() }],
        ..Default::default()
    };
    assert!(convert_configs(&bad, &names(), "at").is_err());
}

#[test]
fn labels_split_between_service_and_container() {
    let text = r#"
services:
  web:
    image: nginx:1
    labels: { container.only: "c" }
    environment: [B=2, A=1, FLAG]
    deploy:
      labels: { traefik.enable: "true" }
"#;
    let compose = compose::parse(text).unwrap();
    let stack = convert_stack(&ns(), &compose, &BTreeMap::new()).unwrap();
    let svc = &stack.services[0];
    assert_eq!(svc.name.as_deref(), Some("st_web"));
    let labels = svc.labels.as_ref().unwrap();
    assert_eq!(labels.get("traefik.enable").map(String::as_str), Some("true"));
    assert_eq!(labels.get(LABEL_IMAGE).map(String::as_str), Some("nginx:1"));
    assert_eq!(labels.get(LABEL_NAMESPACE).map(String::as_str), Some("st"));
    assert!(!labels.contains_key("container.only"));
    let container = svc.task_template.as_ref().unwrap().container_spec.as_ref().unwrap();
    let clabels = container.labels.as_ref().unwrap();
    assert_eq!(clabels.get("container.only").map(String::as_str), Some("c"));
    assert_eq!(clabels.get(LABEL_NAMESPACE).map(String::as_str), Some("st"));
    assert!(!clabels.contains_key("traefik.enable"));
    assert_eq!(container.env, Some(vec!["A=1".to_string(), "B=2".to_string(), "FLAG".to_string()]), "sorted");
    // No networks named: the stack's `default` network is created and attached.
    assert_eq!(stack.networks.len(), 1);
    assert_eq!(stack.networks[0].name, "st_default");
}

#[test]
fn unsupported_compose_fields_are_reported_not_dropped() {
    let text = "services:\n  web:\n    image: nginx\n    privileged: true\n";
    let err = compose::parse(text).unwrap_err();
    assert_eq!(err.key, "services.web.privileged");
    assert_eq!(err.line, Some(4));
    assert!(err.message.contains("does not support"), "{err}");

    let text =
        "services:\n  web:\n    image: nginx\n    deploy:\n      resources:\n        limits: { cpus: 1, gpus: 1 }\n";
    let err = compose::parse(text).unwrap_err();
    assert_eq!(err.key, "services.web.deploy.resources.limits.gpus");
}

#[test]
fn configs_need_their_rendered_file() {
    let text = "services:\n  web:\n    image: nginx\n    configs: [cfg]\nconfigs:\n  cfg: { file: ./missing.yml }\n";
    let compose = compose::parse(text).unwrap();
    let err = convert_stack(&ns(), &compose, &BTreeMap::new()).unwrap_err();
    assert_eq!(err.location, "configs.cfg");
    let files = [("missing.yml".to_string(), "a: 1\n".to_string())].into();
    let stack = convert_stack(&ns(), &compose, &files).unwrap();
    assert_eq!(stack.configs[0].data.as_deref(), Some("YTogMQo="), "base64 of the content");
}

#[test]
fn short_syntax_forms_parse() {
    let text = r#"
services:
  web:
    image: nginx
    command: serve --name "two words" 'x y'
    ports: ["8080:80", "9000/udp", 7000]
    volumes: ["data:/data:ro", "./conf:/conf"]
    healthcheck: { test: "curl -f localhost" }
    networks: { mcp: { aliases: [api] } }
volumes:
  data:
networks:
  mcp:
"#;
    let c = compose::parse(text).unwrap();
    let web = &c.services["web"];
    assert_eq!(web.command.as_deref().unwrap(), ["serve", "--name", "two words", "x y"]);
    assert_eq!(
        web.ports[0],
        compose::Port { target: 80, published: Some(8080), protocol: "tcp".into(), mode: "ingress".into() }
    );
    assert_eq!(web.ports[1].protocol, "udp");
    assert_eq!(web.ports[2].target, 7000);
    assert_eq!((web.volumes[0].kind.as_str(), web.volumes[0].read_only), ("volume", true));
    assert_eq!(web.volumes[1].kind, "bind");
    assert_eq!(web.healthcheck.as_ref().unwrap().test.as_deref().unwrap(), ["CMD-SHELL", "curl -f localhost"]);
    let stack = convert_stack(&ns(), &c, &BTreeMap::new()).unwrap();
    assert_eq!(stack.volumes[0].name, "st_data");
}
