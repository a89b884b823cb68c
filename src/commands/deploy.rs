//! `swarmctl init`, `up`, `status` and `down`: the library's deploy, engine and plan stages
//! behind the command line, progress on stderr and data on stdout.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::cli::{Cli, DownArgs, InitArgs, StatusArgs, UpArgs};
use crate::deploy::{self, Endpoint, Up, UpOptions};
use crate::engine::{self, fleet, stack, swarm, Engine};
use crate::exit::Code;
use crate::plan::{self, topology};

fn print_endpoints(list: &[Endpoint]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let width = list.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in list {
        writeln!(out, "{:<width$}  {}", e.name, e.url)?;
    }
    Ok(())
}

/// `swarmctl init`.
pub async fn init(cli: &Cli, args: &InitArgs) -> anyhow::Result<ExitCode> {
    let engine = engine::connect().await?;
    let progress = crate::progress::stderr(cli.quiet || args.json);
    deploy::require_manager(&engine, args.advertise_addr.as_deref(), true, progress.as_ref()).await?;
    let (config, desired) = cli.source().prepare(None)?;
    let observed = engine.observe(&config.name).await?;
    let plan = plan::diff(&desired, &observed, false);
    let mut created = Vec::new();
    for n in desired.networks.iter().filter(|n| !observed.networks.iter().any(|o| o.name == n.name)) {
        engine.create_network(n.clone()).await?;
        created.push(n.name.clone());
    }
    created.extend(stack::ensure_volumes(&engine, &desired).await?);
    let nodes = engine.nodes().await?;
    let mut problems = topology::check(&desired, &nodes);
    problems.extend(deploy::busy_ports(&desired, &plan));
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

/// `swarmctl up`.
pub async fn up(cli: &Cli, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let engine = engine::connect().await?;
    let progress = crate::progress::stderr(cli.quiet || args.json);
    let opts = UpOptions { dry_run: args.dry_run, prune: args.prune, timeout: args.timeout.0, host: cli.public_host() };
    let cancel = crate::shutdown::on_signals();
    match deploy::up(&engine, &cli.source(), &opts, progress.as_ref(), &cancel).await? {
        Up::Planned(plan) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&plan.summary())?);
            } else {
                print!("{}", plan.render());
            }
        }
        Up::Deployed { config, plan, states, endpoints } => {
            if args.json {
                let out = serde_json::json!({ "stack": config.name, "plan": plan.summary(), "services": states, "endpoints": endpoints });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_endpoints(&endpoints)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct TaskRow {
    slot: i64,
    node: String,
    state: String,
    desired: String,
    error: String,
}

#[derive(serde::Serialize)]
struct ServiceRow {
    name: String,
    desired: u64,
    running: usize,
    tasks: Vec<TaskRow>,
}

/// `swarmctl status`: exits 1 when the stack is not deployed.
pub async fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = cli.source().config()?;
    let engine = engine::connect().await?;
    swarm::require_manager(&engine).await?;
    let observed = engine.observe(&config.name).await?;
    let nodes: HashMap<String, String> = engine.nodes().await?.into_iter().map(|n| (n.id, n.hostname)).collect();
    let mut services = Vec::new();
    for s in &observed.services {
        let desired = engine.service(&s.id).await?.replicas;
        let mut rows: Vec<TaskRow> = engine
            .tasks(&s.id, false)
            .await?
            .into_iter()
            .filter(|t| t.desired_running)
            .map(|t| TaskRow {
                slot: t.slot,
                node: nodes.get(&t.node).cloned().unwrap_or(t.node),
                state: t.state,
                desired: "running".into(),
                error: t.error.unwrap_or_default(),
            })
            .collect();
        rows.sort_by_key(|r| r.slot);
        let running = rows.iter().filter(|r| r.state == "running").count();
        services.push(ServiceRow { name: s.name.clone(), desired, running, tasks: rows });
    }
    // A stack that is down has no tasks to read ports from: its configured ports then.
    let entries = fleet::lb_entries(&engine, &config).await.unwrap_or_else(|_| vec![config.lb_entry()]);
    let list = deploy::endpoints(&config, &cli.public_host(), &entries);
    let deployed = !services.is_empty();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "stack": config.name, "deployed": deployed, "services": services, "endpoints": list })
            )?
        );
    } else if !deployed {
        println!("stack {} is not deployed (swarmctl up deploys it)", config.name);
    } else {
        let mut out = std::io::stdout().lock();
        for s in &services {
            writeln!(out, "{}  {}/{} running", s.name, s.running, s.desired)?;
            for t in &s.tasks {
                let err = if t.error.is_empty() { String::new() } else { format!("  {}", t.error) };
                writeln!(out, "  slot {:<3} {:<20} {}{err}", t.slot, t.node, t.state)?;
            }
        }
        print_endpoints(&list)?;
    }
    Ok(if deployed { Code::Ok } else { Code::Error }.into())
}

/// `swarmctl down`.
pub async fn down(cli: &Cli, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let config = cli.source().config()?;
    let engine = engine::connect().await?;
    let progress = crate::progress::stderr(cli.quiet);
    let in_swarm = swarm::require_manager(&engine).await.is_ok();
    if in_swarm {
        // A run stopped hard (a second Ctrl-C, a killed process) leaves its agent behind.
        let agent = crate::agent::service_name(&config.name);
        match crate::agent::reach::remove(&engine, &config.name).await {
            Ok(true) => progress.say(&format!("removed {agent}, left by a run that did not end")),
            Ok(false) => {}
            Err(e) => progress.say(&format!("warning: cannot remove {agent}, left by a run that did not end: {e}")),
        }
        progress.begin("down", &format!("removing stack {}", config.name), 0, "");
        let removed = stack::remove(&engine, &config.name, args.volumes, args.timeout.0, &mut |line| {
            progress.set("down", 0, line);
            progress.tick(line);
        })
        .await;
        progress.end("down", "");
        let removed = removed.context("the stack is partly removed; `swarmctl down` again continues")?;
        if removed.services.is_empty() && removed.networks.is_empty() && removed.configs_and_secrets.is_empty() {
            progress.say(&format!("stack {}: nothing to remove", config.name));
        } else {
            progress.say(&format!(
                "stack {} removed: {} services, {} configs and secrets, {} networks{}",
                config.name,
                removed.services.len(),
                removed.configs_and_secrets.len(),
                removed.networks.len(),
                if args.volumes { format!(", {} volumes", removed.volumes.len()) } else { String::new() }
            ));
        }
    } else {
        progress.say(&format!(
            "this engine is in no swarm: stack {} cannot be deployed here, nothing to remove",
            config.name
        ));
    }
    if args.leave_swarm && in_swarm {
        engine.leave_swarm().await?;
        progress.say("left the swarm");
    }
    Ok(ExitCode::SUCCESS)
}
