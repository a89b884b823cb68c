//! `swarmctl load` (and its hidden worker processes).

use std::io::IsTerminal;

use anyhow::Context;
use std::process::ExitCode;

use crate::agent;
use crate::cli::{Cli, LoadArgs};
use crate::load;

/// Runs the load; prints the summary (or results.json with --json) on stdout.
pub async fn run(cli: &Cli, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let mut plan = args.plan()?;
    if plan.thresholds.is_empty() {
        // A run with failures must not pass for want of a threshold: the stack's SLO judges it.
        let slo = cli.source().config().context("no --threshold given, so the stack's slo.success_ratio judges")?.slo;
        let expr = format!("success>={}%", slo.success_ratio * 100.0);
        plan.thresholds.push(expr.parse().map_err(|e| anyhow::anyhow!("slo.success_ratio: {e}"))?);
    }
    // With --json on a pipe, stdout is the data and stderr stays quiet unless asked.
    let quiet = cli.quiet || (args.json && !std::io::stderr().is_terminal() && cli.verbose == 0);
    if args.on_swarm {
        return on_swarm(cli, args, plan, quiet).await;
    }
    // A plan file runs as it is: the phases hand theirs to a container (`--via direct`) and
    // reconcile every request the servers count, which a probe's would spoil.
    if args.plan.is_none() {
        match load::probe::fit_mix(&mut plan, args.mix.is_some()).await {
            Ok(Some(note)) if !quiet => eprintln!("note: {note}"),
            Ok(_) => {}
            Err(e) => {
                // Refused before the run, and said where the results would have been too (a
                // folder that cannot be written is said, not put in the refusal's place).
                if let Some(dir) = &args.out {
                    if let Err(w) = load::write_refused(dir, &plan, &crate::error_text(&e), crate::context::local()) {
                        eprintln!("warning: {}", crate::error_text(&w));
                    }
                }
                return Err(e);
            }
        }
    }
    let cancel = crate::shutdown::on_signals();
    let progress = crate::progress::stderr(quiet);
    let outcome = load::run(&plan, args.out.as_deref(), cancel, progress.as_ref()).await?;
    finish(args, outcome)
}

/// Writes the results folder (with --out) and prints the summary or results.json.
fn finish(args: &LoadArgs, mut outcome: load::Outcome) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.out {
        outcome.result.context = Some(crate::context::local());
        load::write_folder(dir, &outcome.result)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.result)?);
    } else {
        print!("{}", load::summary_text(&outcome.result));
    }
    Ok(outcome.exit_code.into())
}

/// `load --on-swarm`: the load from the tasks of a load service, spread over the nodes.
async fn on_swarm(cli: &Cli, args: &LoadArgs, mut plan: load::LoadPlan, quiet: bool) -> anyhow::Result<ExitCode> {
    // Each task connects from its own container, where loopback is the task itself.
    if let Some(url) = plan.targets.iter().find(|t| is_loopback(t.host())).map(|t| t.url()) {
        return Err(crate::exit::UsageError::flag(
            "--url",
            format!("{url} is loopback, which inside a load task is the task itself: with --on-swarm, give an address the nodes reach (a node's address and a published port), or a service name on --network"),
        )
        .into());
    }
    let config = cli.source().config()?;
    if args.plan.is_none() {
        if let Some(note) = load::probe::fit_mix_from_afar(&mut plan, args.mix.is_some()).await? {
            if !quiet {
                eprintln!("note: {note}");
            }
        }
    }
    let engine = crate::engine::handle().await?;
    let progress = crate::progress::stderr(quiet);
    let image = crate::deploy::builtin_image(engine.as_ref(), &config.registry, progress.as_ref()).await?;
    let (local, others) = agent::reach::other_nodes(engine.as_ref()).await?;
    plan.workers = args.tasks.map_or(1 + others.iter().filter(|n| n.availability == "active").count(), usize::from);
    let cancel = crate::shutdown::on_signals();
    // The agents on the other nodes tell their clocks.
    let reach = if others.is_empty() {
        agent::Reach::local(engine.clone(), local)
    } else {
        let (reach, _) = super::test::start_agents(
            engine.clone(),
            &config,
            &local,
            &others,
            image.clone(),
            progress.as_ref(),
            &cancel,
        )
        .await?;
        for (node, why) in reach.missing() {
            if !quiet {
                eprintln!("note: no agent on node {node}: {why}; its clock cannot be measured");
            }
        }
        reach
    };
    // The tasks' folders go under --out, or a scratch folder removed at the end.
    let scratch =
        args.out.is_none().then(|| std::env::temp_dir().join(format!("swarmctl-load-{}", std::process::id())));
    let dir = args.out.clone().or_else(|| scratch.clone()).expect("one of the two");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut timeline = match &args.out {
        Some(out) => {
            let path = out.join("timeline.jsonl");
            Some(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
        }
        None => None,
    };
    let destinations = plan.targets.iter().map(|t| t.authority()).collect::<std::collections::BTreeSet<_>>().len();
    let launch = crate::phase::swarm::Launch {
        engine,
        reach: std::sync::Arc::new(reach),
        image,
        stack: config.name.clone(),
        network: args.network.clone(),
        placement: config.test.load_tasks.clone(),
        dir: dir.clone(),
        cancel,
        event: std::sync::Arc::new(move |detail| {
            if !quiet {
                eprintln!("note: {detail}");
            }
        }),
    };
    let outcome = launch
        .run(
            plan,
            destinations,
            &mut |plan, name| {
                let label = format!("load: {} sessions from {} task(s) of {name}", plan.sessions, plan.workers);
                progress.begin("load", &label, plan.run_time().as_secs().max(1), "s");
            },
            &mut |s, _| load::show_second(s, timeline.as_mut(), progress.as_ref()),
        )
        .await;
    progress.end("load", "");
    if let Some(problem) = launch.reach.stop().await {
        eprintln!("warning: {problem}");
    }
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    finish(args, outcome?)
}

/// Whether a target's host is this machine's loopback.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One worker process of a split load.
pub async fn worker(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let cancel = crate::shutdown::on_signals();
    Ok(load::run_worker(dir, cancel).await?.into())
}
