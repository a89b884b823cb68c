//! Command glue: from parsed arguments to the stages, with `anyhow` context for the user.

mod deploy;
mod image;
mod load;
mod render;
mod serve;
mod test;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::render::Templates;

/// Runs one command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => deploy::init(&cli, args).await,
        Command::Up(args) => deploy::up(&cli, args).await,
        Command::Status(args) => deploy::status(&cli, args).await,
        Command::Down(args) => deploy::down(&cli, args).await,
        Command::Image(cmd) => image::run(cmd).await,
        Command::Render(args) => render::run(&cli, args),
        Command::Serve(opts) => serve::run(opts).await,
        Command::Test(args) => test::test(&cli, args).await,
        Command::Validate(args) => test::validate(&cli, args).await,
        Command::Report(cmd) => test::report(cmd),
        Command::Probe(args) => serve::probe(args).await,
        Command::Load(args) => load::run(&cli, args).await,
        Command::LoadWorker { dir } => load::worker(dir).await,
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "swarmctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The stack configuration the global flags select.
pub(crate) fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let config = config::load(cli.stack.as_deref(), &cli.sets)?;
    tracing::info!(stack = %config.name, "configuration loaded");
    Ok(config)
}

/// The templates the global flags select.
pub(crate) fn load_templates(cli: &Cli) -> anyhow::Result<Templates> {
    match &cli.templates {
        Some(dir) => {
            Templates::with_overrides(dir).with_context(|| format!("cannot use the templates in {}", dir.display()))
        }
        None => Ok(Templates::embedded()?),
    }
}
