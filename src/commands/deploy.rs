//! `swarmctl init`, `up`, `status` and `down`: the stages (render, convert, plan, engine)
//! glued together, with progress on stderr and data on stdout.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bollard::models::{EndpointPortConfigPublishModeEnum, TaskState};
use bollard::query_parameters::ListTasksOptions;
use serde::Serialize;

use crate::cli::{Cli, DownArgs, InitArgs, StatusArgs, UpArgs};
use crate::config::{ClientTransport, Config, Entry};
use crate::convert::{convert_stack, DesiredStack, Namespace};
use crate::engine::converge::{self, ServiceState};
use crate::engine::{self, fleet, images, stack, swarm, Docker};
use crate::phase::prom;
use crate::plan::{self, topology, Action, Plan};
use crate::render::{self, Inputs};
use crate::{image, state};

/// One way into the deployed stack.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// What it is.
    pub name: String,
    /// Where.
    pub url: String,
}

/// The host the stack's host-mode ports are reached at: DOCKER_HOST's host for a remote
/// engine, else loopback.
pub(crate) fn public_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("tcp://").map(|rest| rest.split(':').next().unwrap_or("").to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The endpoints of a stack, from its configuration and its load balancer's entries (one
/// set per Traefik task when each has ports of its own).
pub fn endpoints(c: &Config, host: &str, entries: &[Entry]) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut add = |name: &str, url: String| out.push(Endpoint { name: name.into(), url });
    for (k, entry) in entries.iter().enumerate() {
        let which = if entries.len() > 1 { format!(" lb {}/{}", k + 1, entries.len()) } else { String::new() };
        for (name, transport) in [
            ("Streamable HTTP", ClientTransport::Http),
            ("HTTP+SSE", ClientTransport::Sse),
            ("WebSocket", ClientTransport::Ws),
            ("TCP", ClientTransport::Tcp),
        ] {
            if let Ok(url) = c.client_url(transport, host, *entry) {
                // Users paste these into MCP clients, which speak http:// to legacy SSE servers.
                add(&format!("mcp ({name}){which}"), url.replace("sse://", "http://"));
            }
        }
        if let Entry::Lb { web, metrics, .. } = entry {
            if c.server.transports.http.is_some() {
                add(&format!("health{which}"), format!("http://{host}:{web}{}", c.server.health_path));
            }
            add(&format!("traefik metrics{which}"), format!("http://{host}:{metrics}/metrics"));
        }
    }
    if c.prometheus.enabled {
        add("prometheus", format!("http://{host}:{}", c.prometheus.port));
    }
    if c.grafana.enabled {
        add("grafana (user admin)", format!("http://{host}:{}", c.grafana.port));
    }
    out
}

fn print_endpoints(list: &[Endpoint]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let width = list.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in list {
        writeln!(out, "{:<width$}  {}", e.name, e.url)?;
    }
    Ok(())
}

/// Config, rendered files and desired specs for the selected stack.
pub(crate) fn prepare(cli: &Cli, builtin_image: Option<String>) -> anyhow::Result<(Config, DesiredStack)> {
    let config = super::load_config(cli)?;
    let templates = super::load_templates(cli)?;
    let grafana_admin_password =
        if config.grafana.enabled { Some(state::grafana_admin_password(&config.name)?) } else { None };
    let inputs = Inputs { version: env!("CARGO_PKG_VERSION").into(), grafana_admin_password, builtin_image };
    let rendered = render::render(&config, &templates, &inputs)?;
    let files: std::collections::BTreeMap<String, String> =
        rendered.files.iter().map(|(k, v)| (k.clone(), v.content.clone())).collect();
    let desired = convert_stack(&Namespace(config.name.clone()), &rendered.compose, &files)?;
    Ok((config, desired))
}

/// Host-mode ports this node must still be able to bind: those of services not deployed yet.
fn busy_ports(desired: &DesiredStack, plan: &Plan) -> Vec<String> {
    let mut problems = Vec::new();
    for spec in &desired.services {
        let name = spec.name.clone().unwrap_or_default();
        let creating = plan.steps.iter().any(|s| s.name == name && s.action == Action::Create);
        if !creating {
            continue;
        }
        for p in spec.endpoint_spec.iter().flat_map(|e| e.ports.iter().flatten()) {
            if p.publish_mode != Some(EndpointPortConfigPublishModeEnum::HOST) {
                continue;
            }
            let Some(port) = p.published_port else { continue };
            if std::net::TcpListener::bind(("0.0.0.0", port as u16)).is_err() {
                problems.push(format!(
                    "service {name}: host port {port} is already in use on this node; free it or change the port in the stack"
                ));
            }
        }
    }
    problems
}

async fn connect_manager(advertise: Option<&str>, init_if_needed: bool) -> anyhow::Result<Docker> {
    let docker = engine::connect().await?;
    if init_if_needed {
        if let Some(id) = swarm::init(&docker, advertise).await? {
            eprintln!("swarm initialized on this engine (node {id})");
        }
    }
    swarm::require_manager(&docker).await?;
    Ok(docker)
}

/// `swarmctl init`.
pub async fn init(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let docker = connect_manager(args.advertise_addr.as_deref(), true).await?;
    let (config, desired) = prepare(cli, None)?;
    let observed = stack::observe(&docker, &config.name).await?;
    let plan = plan::diff(&desired, &observed, false);
    let mut created = Vec::new();
    for n in desired.networks.iter().filter(|n| !observed.networks.iter().any(|o| o.name == n.name)) {
        docker
            .create_network(n.clone())
            .await
            .map_err(|e| engine::EngineError::api(format!("create network {}", n.name), e))?;
        created.push(n.name.clone());
    }
    created.extend(stack::ensure_volumes(&docker, &desired).await?);
    let nodes = swarm::nodes(&docker).await?;
    let mut problems = topology::check(&desired, &nodes);
    problems.extend(busy_ports(&desired, &plan));
    if args.json {
        let report =
            serde_json::json!({ "stack": config.name, "nodes": nodes, "created": created, "problems": problems });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "stack {}: {} nodes", config.name, nodes.len())?;
        for n in &nodes {
            writeln!(
                out,
                "  {:<24} {:<8} {:<7} {:<6} {:.1} CPUs  {} MiB",
                n.hostname,
                n.role,
                n.availability,
                n.state,
                n.nano_cpus as f64 / 1e9,
                n.memory_bytes >> 20
            )?;
        }
        for c in &created {
            writeln!(out, "created {c}")?;
        }
        for p in &problems {
            writeln!(out, "problem: {p}")?;
        }
        if problems.is_empty() {
            writeln!(out, "the stack can be placed on this swarm")?;
        }
    }
    if problems.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("the stack cannot be placed as configured ({} problems above)", problems.len())
    }
}

/// Shows service convergence on stderr: bars on a terminal, lines otherwise.
struct Progress {
    bars: Option<(indicatif::MultiProgress, HashMap<String, indicatif::ProgressBar>)>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bars =
            (!quiet && std::io::stderr().is_terminal()).then(|| (indicatif::MultiProgress::new(), HashMap::new()));
        Progress { bars }
    }

    fn update(&mut self, states: &[ServiceState], quiet: bool) {
        match &mut self.bars {
            Some((multi, bars)) => {
                for s in states {
                    let bar = bars.entry(s.name.clone()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(s.desired));
                        b.set_style(
                            indicatif::ProgressStyle::with_template("{prefix:24} [{bar:20}] {pos}/{len} {msg}")
                                .expect("valid template"),
                        );
                        b.set_prefix(s.name.clone());
                        b
                    });
                    bar.set_length(s.desired);
                    bar.set_position(s.running.min(s.desired));
                    bar.set_message(s.note.clone().unwrap_or_default());
                }
            }
            None if !quiet => {
                let line: Vec<String> =
                    states.iter().map(|s| format!("{} {}/{}", s.name, s.running, s.desired)).collect();
                eprintln!("waiting: {}", line.join(", "));
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars.values() {
                b.finish();
            }
        }
    }
}

/// `swarmctl up`.
pub async fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let config_only = super::load_config(cli)?;
    let docker = connect_manager(None, !args.dry_run).await?;
    let builtin = if config_only.server.image == "builtin" {
        let tag = image::builtin_tag()?;
        if !args.dry_run && !images::exists(&docker, &tag).await? {
            eprintln!("packing the builtin reference-server image {tag} from this swarmctl binary");
            pack_self(&docker, &tag).await?;
        }
        Some(tag)
    } else {
        None
    };
    let (config, desired) = prepare(cli, builtin)?;
    let observed = stack::observe(&docker, &config.name).await?;
    let plan = plan::diff(&desired, &observed, args.prune);

    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan.summary())?);
        } else {
            print!("{}", plan.render());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = swarm::nodes(&docker).await?;
    let mut problems = topology::check(&desired, &nodes);
    problems.extend(busy_ports(&desired, &plan));
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        bail!("the stack cannot be placed as configured; nothing was changed");
    }
    for spec in &desired.services {
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        if !images::exists(&docker, &image).await? {
            tracing::warn!("image {image} is not on this node; the nodes must pull it from a registry (for Traefik and Prometheus without one: scripts/offline-images)");
        }
    }
    if !cli.quiet && !args.json {
        eprint!("{}", plan.render());
    }
    stack::ensure_volumes(&docker, &desired).await?;
    let quiet = cli.quiet || args.json;
    let warnings = stack::apply(&docker, &desired, &plan, &mut |line| {
        if !quiet {
            eprintln!("{line}");
        }
    })
    .await
    .context("deploy stopped part-way; what was done is listed above, and `swarmctl up` again continues from there")?;
    for w in &warnings {
        tracing::warn!("{w}");
    }

    let names: Vec<String> = desired.services.iter().filter_map(|s| s.name.clone()).collect();
    let cancel = crate::shutdown::on_signals();
    let mut progress = Progress::new(quiet);
    let result =
        converge::wait(&docker, &names, args.timeout.0, std::time::Duration::from_secs(3), &cancel, &mut |states| {
            progress.update(states, quiet)
        })
        .await;
    progress.finish();
    let states = result.context("the stack was deployed but did not converge")?;
    let entries = fleet::lb_entries(&docker, &config).await?;
    // Running tasks are not yet routed ones: Traefik polls the swarm (every `lb.refresh`), so
    // for a moment after convergence the endpoints answer 404.
    if config.server.transports.http.is_some() {
        let path = &config.server.health_path;
        if let Err(url) =
            prom::routes_answer(&public_host(), &entries, path, 1, std::time::Duration::from_secs(30)).await
        {
            if !quiet {
                eprintln!("warning: the load balancer does not route {url} yet (30 s after the tasks converged)");
            }
        }
    }
    let list = endpoints(&config, &public_host(), &entries);
    if args.json {
        let out =
            serde_json::json!({ "stack": config.name, "plan": plan.summary(), "services": states, "endpoints": list });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if !cli.quiet {
            eprintln!(
                "stack {} converged: {}",
                config.name,
                states.iter().map(|s| format!("{} {}/{}", s.name, s.running, s.desired)).collect::<Vec<_>>().join(", ")
            );
        }
        print_endpoints(&list)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Packs this binary as the builtin image: `tag`, plus `swarmctl/mcp-server:<version>`.
pub(crate) async fn pack_self(docker: &Docker, tag: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find this swarmctl binary")?;
    let contents = image::inspect(&exe, "swarmctl")?;
    if !contents.is_static() {
        bail!("this swarmctl binary is not static ({} libraries); build it with the repository's .cargo/config.toml (+crt-static)", contents.libraries.len());
    }
    let tags = vec![tag.to_string(), format!("{}:{}", render::BUILTIN_IMAGE_REPO, env!("CARGO_PKG_VERSION"))];
    let labels = vec![("org.opencontainers.image.title".to_string(), "swarmctl reference MCP server".to_string())];
    Ok(images::build(docker, &contents, &tags, &labels).await?)
}

#[derive(Serialize)]
struct TaskRow {
    slot: i64,
    node: String,
    state: String,
    desired: String,
    error: String,
}

/// `swarmctl status`.
pub async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(cli)?;
    let docker = engine::connect().await?;
    swarm::require_manager(&docker).await?;
    let observed = stack::observe(&docker, &config.name).await?;
    let nodes: HashMap<String, String> = swarm::nodes(&docker).await?.into_iter().map(|n| (n.id, n.hostname)).collect();
    let mut services = Vec::new();
    for s in &observed.services {
        let svc = docker
            .inspect_service(&s.id, None)
            .await
            .map_err(|e| engine::EngineError::api(format!("inspect {}", s.name), e))?;
        let desired = svc.spec.and_then(|sp| sp.mode).and_then(|m| m.replicated).and_then(|r| r.replicas).unwrap_or(0);
        let filters = HashMap::from([
            ("service".to_string(), vec![s.id.clone()]),
            ("desired-state".to_string(), vec!["running".to_string()]),
        ]);
        let tasks = docker
            .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
            .await
            .map_err(|e| engine::EngineError::api("list tasks", e))?;
        let mut rows: Vec<TaskRow> = tasks
            .into_iter()
            .map(|t| {
                let st = t.status.unwrap_or_default();
                TaskRow {
                    slot: t.slot.unwrap_or(0),
                    node: t.node_id.and_then(|id| nodes.get(&id).cloned()).unwrap_or_default(),
                    state: st.state.map(|x| x.to_string()).unwrap_or_default(),
                    desired: t.desired_state.map(|x| x.to_string()).unwrap_or_default(),
                    error: st.err.unwrap_or_default(),
                }
            })
            .collect();
        rows.sort_by_key(|r| r.slot);
        let running = rows.iter().filter(|r| r.state == TaskState::RUNNING.to_string()).count();
        services.push(serde_json::json!({ "name": s.name, "desired": desired, "running": running, "tasks": rows }));
    }
    // A stack that is down has no tasks to read ports from: its configured ports then.
    let entries = fleet::lb_entries(&docker, &config).await.unwrap_or_else(|_| vec![config.lb_entry()]);
    let list = endpoints(&config, &public_host(), &entries);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "stack": config.name, "services": services, "endpoints": list })
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    if services.is_empty() {
        writeln!(out, "stack {} is not deployed (swarmctl up deploys it)", config.name)?;
        return Ok(ExitCode::SUCCESS);
    }
    for s in &services {
        writeln!(out, "{}  {}/{} running", s["name"].as_str().unwrap_or(""), s["running"], s["desired"])?;
        for t in s["tasks"].as_array().into_iter().flatten() {
            let err = t["error"].as_str().filter(|e| !e.is_empty()).map(|e| format!("  {e}")).unwrap_or_default();
            writeln!(
                out,
                "  slot {:<3} {:<20} {}{err}",
                t["slot"],
                t["node"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or("")
            )?;
        }
    }
    print_endpoints(&list)?;
    Ok(ExitCode::SUCCESS)
}

/// `swarmctl down`.
pub async fn down(cli: &Cli, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(cli)?;
    let docker = engine::connect().await?;
    let in_swarm = swarm::require_manager(&docker).await.is_ok();
    if in_swarm {
        let quiet = cli.quiet;
        let removed = stack::remove(&docker, &config.name, args.volumes, args.timeout.0, &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        })
        .await?;
        if removed.services.is_empty() && removed.networks.is_empty() && removed.configs_and_secrets.is_empty() {
            eprintln!("stack {}: nothing to remove", config.name);
        }
    } else {
        eprintln!("this engine is in no swarm: stack {} cannot be deployed here, nothing to remove", config.name);
    }
    if args.leave_swarm && in_swarm {
        swarm::leave(&docker).await?;
        eprintln!("left the swarm");
    }
    Ok(ExitCode::SUCCESS)
}
