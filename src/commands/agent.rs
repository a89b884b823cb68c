//! `swarmctl agent`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::agent::serve::{serve, Agent};
use crate::cli::AgentArgs;

/// Reads the token, binds, says where it listens (one line on stdout), serves until a signal.
pub async fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {} (--token-file)", args.token_file.display()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        bail!("the token in {} is too short to protect anything (at least 16 characters)", args.token_file.display());
    }
    if args.node.is_empty() {
        bail!("--node (or SWARMCTL_AGENT_NODE) must name this node's swarm ID");
    }
    let engine = crate::engine::handle().await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let stop = crate::shutdown::on_signals();
    let agent = Agent { engine, stack: args.stack.clone(), node: args.node.clone(), token };
    writeln!(std::io::stdout().lock(), "agent for stack {} on node {} at {}", args.stack, args.node, args.listen)
        .context("cannot write to stdout")?;
    serve(Arc::new(agent), listener, stop).await;
    Ok(ExitCode::SUCCESS)
}
