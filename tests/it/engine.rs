//! Against a real Docker Engine (`scripts/dev-env` starts one; `scripts/test` runs it first).
//! These tests fail, loudly, when no engine answers: the features they cover cannot be
//! trusted without one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use bollard::Docker;
use swarmctl::config::BUILTIN_STACKS;
use swarmctl::convert::{convert_stack, Namespace, LABEL_NAMESPACE};
use swarmctl::render;

use crate::util::{fixed_inputs, render_builtin};

async fn engine() -> Docker {
    swarmctl::engine::connect().await.unwrap_or_else(|e| panic!("{e}")).client().clone()
}

fn docker_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the docker CLI is on PATH (scripts/dev-env installs it)")
}

#[tokio::test]
async fn engine_answers_through_bollard() {
    let docker = engine().await;
    let version = docker.version().await.expect("version");
    let api: f64 = version.api_version.as_deref().unwrap_or("0").parse().unwrap_or(0.0);
    assert!(api >= 1.41, "engine API {api}: swarmctl needs 1.41 or later");
    assert_eq!(docker.ping().await.expect("ping"), "OK");
    let info = docker.info().await.expect("info");
    assert!(info.ncpu.unwrap_or(0) >= 1);
}

#[tokio::test]
async fn unreachable_engine_fails_fast_and_says_where_it_looked() {
    // A socket path nobody listens on; the error must name it and say what to do.
    let started = std::time::Instant::now();
    let err = tokio::task::spawn_blocking(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmctl")).args(["render", "--stack", "ci"]).output().unwrap();
        out
    })
    .await
    .unwrap();
    assert!(err.status.success(), "render needs no engine");
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let result = swarmctl::engine::connect().await;
    std::env::remove_var("DOCKER_HOST");
    let msg = result.expect_err("nothing listens there").to_string();
    assert!(msg.contains("unix:///nonexistent/docker.sock"), "{msg}");
    assert!(msg.contains("scripts/dev-env"), "{msg}");
    assert!(started.elapsed().as_secs() < 10, "fails fast");
}

#[test]
fn docker_stack_config_accepts_every_rendered_stack() {
    for (stack, _) in BUILTIN_STACKS {
        let (config, rendered) = render_builtin(stack);
        let dir = tempfile::tempdir().unwrap();
        render::write_to(&rendered, dir.path()).unwrap();
        let out = docker_cli(dir.path(), &["stack", "config", "-c", "stack.yml"]);
        assert!(
            out.status.success(),
            "{stack}: `docker stack config` refused the rendered stack (a docker CLI of 20.10 has no `stack config`; scripts/dev-env checks): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let normalized: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
        let services = normalized["services"].as_mapping().unwrap();
        assert!(services.contains_key("server") && services.contains_key("lb"), "{stack}");
        assert_eq!(services.contains_key("grafana"), config.grafana.enabled, "{stack}");
        assert_eq!(
            normalized["services"]["server"]["deploy"]["replicas"].as_u64(),
            Some(u64::from(config.server.replicas)),
            "{stack}"
        );
    }
}

/// Removes the stack with the docker CLI when dropped, so a failed assertion leaves nothing.
struct StackGuard<'a> {
    name: String,
    dir: &'a Path,
}

impl Drop for StackGuard<'_> {
    fn drop(&mut self) {
        let _ = docker_cli(self.dir, &["stack", "rm", &self.name]);
        // `stack rm` gives up on networks whose endpoints are still detaching: retry, bounded.
        let filter = format!("label={LABEL_NAMESPACE}={}", self.name);
        for _ in 0..30 {
            let out = docker_cli(self.dir, &["network", "ls", "-q", "--filter", &filter]);
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if ids.is_empty() {
                return;
            }
            let mut args = vec!["network", "rm"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker_cli(self.dir, &args);
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        eprintln!("warning: networks of test stack {} are still there after 30 s", self.name);
    }
}

async fn ensure_swarm(docker: &Docker) {
    if docker.inspect_swarm().await.is_ok() {
        return;
    }
    let req = bollard::models::SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: Some("127.0.0.1".into()),
        ..Default::default()
    };
    if let Err(e) = docker.init_swarm(req).await {
        // Another test may have won the race; only a still-inactive swarm is a failure.
        docker.inspect_swarm().await.unwrap_or_else(|_| panic!("swarm init failed: {e}"));
    }
}

/// The alternative path: `docker stack deploy` of the rendered folder creates services whose
/// specs match what swarmctl's own converter produces, field by field, for every built-in stack.
#[tokio::test]
async fn docker_stack_deploy_creates_what_swarmctl_converts() {
    let _swarm = crate::util::exclusive().await;
    let docker = engine().await;
    ensure_swarm(&docker).await;
    for (i, (stack, _)) in BUILTIN_STACKS.iter().enumerate() {
        deploy_and_compare(&docker, stack, &format!("swit{}x{i}", std::process::id())).await;
    }
}

async fn deploy_and_compare(docker: &Docker, stack: &str, name: &str) {
    let name = name.to_string();
    let mut config = swarmctl::config::load(Some(stack), &[]).unwrap();
    config.name = name.clone();
    let rendered = render::render(&config, &render::Templates::embedded().unwrap(), &fixed_inputs()).unwrap();
    let files: BTreeMap<String, String> = rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
    let desired = convert_stack(&Namespace(name.clone()), &rendered.compose, &files).unwrap();

    let dir = tempfile::tempdir().unwrap();
    render::write_to(&rendered, dir.path()).unwrap();
    let _guard = StackGuard { name: name.clone(), dir: dir.path() };
    let out = docker_cli(dir.path(), &["stack", "deploy", "--resolve-image", "never", "-c", "stack.yml", &name]);
    assert!(out.status.success(), "docker stack deploy: {}", String::from_utf8_lossy(&out.stderr));

    let networks: HashMap<String, String> = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name?)))
        .collect();

    // Collect every difference before failing, so one run shows them all.
    let mut diffs: Vec<String> = Vec::new();
    macro_rules! check {
        ($diffs:ident, $got:expr, $want:expr, $($what:tt)+) => {{
            let (got, want) = (&$got, &$want);
            if got != want {
                $diffs.push(format!("{}:\n  docker stack deploy: {:?}\n  swarmctl convert:    {:?}", format!($($what)+), got, want));
            }
        }};
    }
    for want in &desired.services {
        let svc_name = want.name.clone().unwrap();
        let got = docker
            .inspect_service(&svc_name, None::<bollard::query_parameters::InspectServiceOptions>)
            .await
            .unwrap_or_else(|e| panic!("{svc_name}: {e}"));
        let got = got.spec.unwrap();
        check!(diffs, got.labels, want.labels, "{svc_name}: service labels");
        check!(diffs, got.mode, want.mode, "{svc_name}: mode");
        check!(diffs, got.update_config, want.update_config, "{svc_name}: update_config");
        check!(diffs, got.rollback_config, want.rollback_config, "{svc_name}: rollback_config");
        let (gt, wt) = (got.task_template.unwrap(), want.task_template.clone().unwrap());
        check!(diffs, gt.resources, wt.resources, "{svc_name}: resources");
        check!(diffs, gt.restart_policy, wt.restart_policy, "{svc_name}: restart_policy");
        check!(
            diffs,
            gt.placement.clone().unwrap_or_default().constraints,
            wt.placement.clone().unwrap_or_default().constraints,
            "{svc_name}: constraints"
        );
        let got_nets: Vec<(Option<String>, Option<Vec<String>>)> = gt
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.target.and_then(|id| networks.get(&id).cloned()), n.aliases))
            .collect();
        let mut got_nets = got_nets;
        got_nets.sort();
        let want_nets: Vec<_> = wt.networks.unwrap().into_iter().map(|n| (n.target, n.aliases)).collect();
        check!(diffs, got_nets, want_nets, "{svc_name}: networks");
        let (gc, wc) = (gt.container_spec.unwrap(), wt.container_spec.unwrap());
        check!(diffs, gc.image, wc.image, "{svc_name}: image");
        check!(diffs, gc.labels, wc.labels, "{svc_name}: container labels");
        check!(diffs, gc.args, wc.args, "{svc_name}: args");
        check!(diffs, gc.command, wc.command, "{svc_name}: command");
        check!(diffs, gc.env, wc.env, "{svc_name}: env");
        check!(diffs, gc.hostname, wc.hostname, "{svc_name}: hostname");
        check!(diffs, gc.user, wc.user, "{svc_name}: user");
        // bollard's model names the field `HealthCheck`, the engine answers `Healthcheck`, so
        // bollard reads it back as None: compare through the docker CLI's JSON instead.
        let out = docker_cli(
            dir.path(),
            &["service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}", &svc_name],
        );
        let got_hc: Option<bollard::models::HealthConfig> = serde_json::from_slice(&out.stdout).ok().flatten();
        check!(diffs, got_hc, wc.health_check, "{svc_name}: healthcheck");
        check!(diffs, gc.stop_grace_period, wc.stop_grace_period, "{svc_name}: stop_grace_period");
        check!(diffs, gc.ulimits, wc.ulimits, "{svc_name}: ulimits");
        check!(diffs, gc.sysctls, wc.sysctls, "{svc_name}: sysctls");
        check!(diffs, gc.mounts, wc.mounts, "{svc_name}: mounts");
        let names =
            |v: Option<Vec<bollard::models::TaskSpecContainerSpecConfigs>>| -> Vec<(Option<String>, Option<String>)> {
                v.unwrap_or_default().into_iter().map(|c| (c.config_name, c.file.and_then(|f| f.name))).collect()
            };
        check!(diffs, names(gc.configs), names(wc.configs), "{svc_name}: configs");
        let (ge, we) = (got.endpoint_spec.unwrap_or_default(), want.endpoint_spec.clone().unwrap_or_default());
        check!(diffs, ge.mode, we.mode, "{svc_name}: endpoint mode");
        check!(diffs, ge.ports.unwrap_or_default(), we.ports.unwrap_or_default(), "{svc_name}: ports");
    }

    assert!(diffs.is_empty(), "{stack}: {} differences:\n{}", diffs.len(), diffs.join("\n"));

    // Every object the stack created carries the namespace label `swarmctl down` will use.
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("{LABEL_NAMESPACE}={name}")]);
    let configs = docker
        .list_configs(Some(bollard::query_parameters::ListConfigsOptions { filters: Some(filters.clone()) }))
        .await
        .unwrap();
    let mut got_configs: Vec<String> = configs.into_iter().filter_map(|c| c.spec?.name).collect();
    got_configs.sort();
    let mut want_configs: Vec<String> = desired.configs.iter().filter_map(|c| c.name.clone()).collect();
    want_configs.sort();
    assert_eq!(got_configs, want_configs, "{stack}: configs, with content-hashed names");
}
