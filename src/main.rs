//! The swarmctl binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = swarmctl::Cli::parse();
    swarmctl::init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return swarmctl::exit::Code::Error.into();
        }
    };
    match runtime.block_on(swarmctl::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", swarmctl::error_text(&err));
            swarmctl::exit_code_for(&err).into()
        }
    }
}
