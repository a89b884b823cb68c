//! `swarmctl load`.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::load::{self, LoadOptions};

/// Runs the load; prints the summary (or results.json with --json) on stdout.
pub async fn run(cli: &Cli, opts: &LoadOptions) -> anyhow::Result<ExitCode> {
    let cancel = crate::shutdown::on_signals();
    let progress = !cli.quiet && (std::io::stderr().is_terminal() || cli.verbose > 0 || !opts.json);
    if let Some(dir) = &opts.worker_report {
        return Ok(ExitCode::from(load::run_worker(opts, dir, cancel).await?));
    }
    let outcome = load::run(opts, cancel, progress).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&outcome.result)?);
    } else {
        print!("{}", load::summary_text(&outcome.result));
    }
    Ok(ExitCode::from(outcome.exit_code))
}
