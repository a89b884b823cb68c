//! swarmctl deploys an MCP server fleet to Docker Swarm and measures how it holds up.
//!
//! The data flow, one module per stage:
//!
//! ```text
//! stacks/*.yaml + --set ─► config (typed, validated) ─► render (tera) ─► compose (parsed back)
//!                            │                                └─► convert (pure) ─► desired swarm specs
//!                            │                                        └─► plan (pure diff) ─► deploy (apply, converge)
//!                            ├─► load: LoadPlan (data) ─► engine ─► stats ─► results
//!                            └─► phase: load + swarm actions on one timeline ─► report (pure)
//! ```
//!
//! `engine` is the one seam to the Docker Engine (a trait: bollard behind it, a fake for unit
//! tests). `exit` holds verdicts and exit codes, `progress` the reporters long work talks to.
//! `commands` holds the glue from the command line to the stages; `main.rs` only parses
//! arguments and maps errors to exit codes.

#![deny(missing_docs)]

/// The version `--version` prints and every results.json records: the package's, and the git
/// commit it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SWARMCTL_COMMIT"), ")");

pub mod agent;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod config;
pub mod context;
pub mod convert;
pub mod deploy;
pub mod engine;
pub mod exit;
pub mod http;
pub mod image;
pub mod kernel;
pub mod load;
pub mod mix;
pub mod netem;
pub mod phase;
pub mod plan;
pub mod progress;
pub mod render;
pub mod report;
pub mod serve;
pub mod shutdown;
pub mod state;
pub mod timer;
pub mod units;
mod yaml;

use std::process::ExitCode;

pub use cli::Cli;

/// Runs a parsed command line; the binary's `main` and the tests both call this.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    commands::dispatch(cli).await
}

/// An error and its causes on one line, each cause said once: an error that already quotes its
/// source (`cannot read X: No such file…`) is not followed by that source again.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let m = cause.to_string();
        // Only a repeat of what was just said: a short cause ("EOF") said earlier in other
        // words is still news.
        if m.is_empty() || text == m || text.ends_with(&format!(": {m}")) || text.ends_with(&format!(" {m}")) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&m);
    }
    text
}

/// The exit code for an error: usage, configuration and template problems are usage errors
/// (2), everything else is 1.
pub fn exit_code_for(err: &anyhow::Error) -> exit::Code {
    let usage = err.chain().any(|e| {
        e.is::<exit::UsageError>()
            || e.is::<config::ConfigError>()
            || e.is::<render::RenderError>()
            || e.is::<convert::ConvertError>()
    });
    if usage {
        exit::Code::Usage
    } else {
        exit::Code::Error
    }
}

/// Sets up tracing to stderr: `RUST_LOG` if set, else warnings (`-v` info, `-vv` debug,
/// `-vvv` trace; `-q` errors only). Colour only on a terminal and without `NO_COLOR`.
pub fn init_logging(cli: &Cli) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("swarmctl={level},{}", if level == "trace" { "debug" } else { "warn" }))
    });
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod error_tests {
    #[test]
    fn every_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read stack file x.yaml: {0}")]
        struct Quoting(#[source] std::io::Error);
        let err = anyhow::Error::new(Quoting(io)).context("cannot deploy");
        assert_eq!(
            super::error_text(&err),
            "cannot deploy: cannot read stack file x.yaml: No such file or directory (os error 2)"
        );
        let plain = anyhow::anyhow!("refused").context("cannot connect");
        assert_eq!(super::error_text(&plain), "cannot connect: refused");
        // A short cause said earlier in other words is still said.
        let eof = anyhow::anyhow!("EOF").context("no EOF marker in the answer: read failed");
        assert_eq!(super::error_text(&eof), "no EOF marker in the answer: read failed: EOF");
    }
}
