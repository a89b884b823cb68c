//! Command glue: from parsed arguments to the library's stages, with `anyhow` context for the
//! user. A command module never calls another: what two commands share lives in the library.

mod agent;
mod deploy;
mod image;
mod load;
mod render;
mod serve;
mod test;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs one command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => deploy::init(&cli, args).await,
        Command::Up(args) => deploy::up(&cli, args).await,
        Command::Status(args) => deploy::status(&cli, args).await,
        Command::Down(args) => deploy::down(&cli, args).await,
        Command::Image(cmd) => image::run(&cli, cmd).await,
        Command::Render(args) => render::run(&cli, args),
        Command::Serve(opts) => serve::run(opts).await,
        Command::Test(args) => test::test(&cli, args).await,
        Command::Validate(args) => test::validate(&cli, args).await,
        Command::Report(cmd) => test::report(cmd),
        Command::Probe(args) => serve::probe(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Netem(args) => agent::netem(args),
        Command::Load(args) => load::run(&cli, args).await,
        Command::LoadWorker { dir } => load::worker(dir.as_deref()).await,
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "swarmctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
            // Each command's own options after the overview, as `git help` pages have them.
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("swarmctl-{}", sub.get_name());
                let sub = sub.clone().bin_name(name.clone()).display_name(name.clone()).version(crate::VERSION);
                clap_mangen::Man::new(sub).title(name.to_uppercase()).render(&mut page)?;
            }
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
