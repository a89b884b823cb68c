//! Rendered files and converted swarm specs of every built-in stack, pinned: a change to a
//! template, a default or the converter shows up as a reviewable diff (`cargo insta review`).

use std::collections::BTreeMap;

use swarmctl::config::BUILTIN_STACKS;
use swarmctl::convert::{convert_stack, Namespace};

use crate::util::render_builtin;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_sort_maps(true);
    s
}

#[test]
fn rendered_files_of_every_stack() {
    for (stack, _) in BUILTIN_STACKS {
        let (_, rendered) = render_builtin(stack);
        settings().bind(|| {
            insta::assert_snapshot!(format!("{stack}__stack.yml"), rendered.stack_yml);
            for (name, file) in &rendered.files {
                let key = format!("{stack}__{}", name.replace('/', "__"));
                insta::assert_snapshot!(key, file.content);
            }
        });
    }
}

#[test]
fn swarm_specs_of_every_stack() {
    for (stack, _) in BUILTIN_STACKS {
        let (config, rendered) = render_builtin(stack);
        let files: BTreeMap<String, String> =
            rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
        let desired = convert_stack(&Namespace(config.name.clone()), &rendered.compose, &files)
            .unwrap_or_else(|e| panic!("{stack}: {e}"));
        // Config data is the rendered files above, base64-encoded; pinned there, not twice.
        settings().bind(|| {
            insta::assert_yaml_snapshot!(format!("{stack}__specs"), desired, {
                ".configs[].Data" => "[base64 of the rendered file]",
                ".secrets[].Data" => "[base64 of the secret]",
            });
        });
    }
}

#[test]
fn rendering_is_deterministic() {
    for (stack, _) in BUILTIN_STACKS {
        let (_, a) = render_builtin(stack);
        let (_, b) = render_builtin(stack);
        assert_eq!(a.stack_yml, b.stack_yml, "{stack}");
        assert_eq!(a.files, b.files, "{stack}");
    }
}

#[test]
fn config_names_change_with_content_only() {
    let (config, a) = render_builtin("ci");
    let mut changed = config.clone();
    changed.prometheus.scrape_interval = "7s".parse().unwrap();
    let b = swarmctl::render::render(
        &changed,
        &swarmctl::render::Templates::embedded().unwrap(),
        &crate::util::fixed_inputs(),
    )
    .unwrap();
    let names = |r: &swarmctl::render::Rendered| -> BTreeMap<String, String> {
        r.compose.configs.iter().map(|(k, v)| (k.clone(), v.name.clone().unwrap())).collect()
    };
    let (na, nb) = (names(&a), names(&b));
    assert_ne!(na["prometheus_yml"], nb["prometheus_yml"], "changed content, new name");
    assert_eq!(na["traefik_yml"], nb["traefik_yml"], "unchanged content, same name");
    assert!(na["traefik_yml"].starts_with("swarmctl-ci_traefik_yml_"));
}

#[test]
fn lb_environment_reaches_the_traefik_tasks() {
    let config = swarmctl::config::load(Some("ci"), &["lb.environment.GOMAXPROCS=1".into()]).unwrap();
    let rendered = swarmctl::render::render(
        &config,
        &swarmctl::render::Templates::embedded().unwrap(),
        &crate::util::fixed_inputs(),
    )
    .unwrap();
    let files: BTreeMap<String, String> = rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
    let desired = convert_stack(&Namespace(config.name.clone()), &rendered.compose, &files).unwrap();
    let env = |service: &str| -> Vec<String> {
        let spec = desired.services.iter().find(|s| s.name.as_deref() == Some(service)).expect(service);
        spec.task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    };
    assert_eq!(env("swarmctl-ci_lb"), ["GOMAXPROCS=1"]);
    assert!(!env("swarmctl-ci_server").iter().any(|e| e.starts_with("GOMAXPROCS")), "Traefik's alone");
}

#[test]
fn haproxy_in_place_of_traefik() {
    let sets = ["lb.kind=haproxy".to_string(), "lb.image=swarmctl/haproxy:local".to_string()];
    // ci: a health route and metrics; python-sdk: neither (its checks go through MCP).
    for stack in ["ci", "python-sdk"] {
        let config = swarmctl::config::load(Some(stack), &sets).unwrap_or_else(|e| panic!("{stack}: {e}"));
        let rendered = swarmctl::render::render(
            &config,
            &swarmctl::render::Templates::embedded().unwrap(),
            &crate::util::fixed_inputs(),
        )
        .unwrap();
        assert!(!rendered.files.contains_key("traefik.yml") && !rendered.stack_yml.contains("traefik."), "{stack}");
        let lb = rendered.stack_yml.split("\n  lb:\n").nth(1).unwrap().split("\n\n").next().unwrap();
        assert!(!lb.contains("docker.sock"), "{stack}: HAProxy needs no swarm API: {lb}");
        settings().bind(|| {
            insta::assert_snapshot!(format!("{stack}-haproxy__haproxy.cfg"), rendered.files["haproxy.cfg"].content);
            insta::assert_snapshot!(format!("{stack}-haproxy__alerts.yml"), rendered.files["alerts.yml"].content);
            insta::assert_snapshot!(format!("{stack}-haproxy__lb"), lb);
        });
    }
    let err = swarmctl::config::load(Some("ci"), &["lb.kind=haproxy".to_string()]).unwrap_err().to_string();
    assert!(err.contains("lb.image") && err.contains("is Traefik, and lb.kind is haproxy"), "{err}");
}
