//! `swarmctl load` (and its hidden worker processes).

use std::io::IsTerminal;

use anyhow::Context;
use std::process::ExitCode;

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
    let mut outcome = load::run(&plan, args.out.as_deref(), cancel, progress.as_ref()).await?;
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

/// One worker process of a split load.
pub async fn worker(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let cancel = crate::shutdown::on_signals();
    Ok(load::run_worker(dir, cancel).await?.into())
}
