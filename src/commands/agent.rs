//! `swarmctl agent` and `swarmctl netem`, the commands that run on a swarm's nodes for a run.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::agent::serve::{serve, Agent};
use crate::cli::{AgentArgs, NetemArgs};

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
    let agent = Agent { engine, stack: args.stack.clone(), node: args.node.clone(), token, image: args.image.clone() };
    writeln!(std::io::stdout().lock(), "agent for stack {} on node {} at {}", args.stack, args.node, args.listen)
        .context("cannot write to stdout")?;
    serve(Arc::new(agent), listener, stop).await;
    Ok(ExitCode::SUCCESS)
}

/// Applies or clears netem here; one JSON line says what is left.
pub fn netem(args: &NetemArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be a share from 0 to 1, e.g. 0.01 for 1 % (got {})", args.loss);
    }
    let outcome = if args.probe {
        crate::netem::probe()
    } else if args.clear {
        crate::netem::clear()
    } else {
        crate::netem::apply(&crate::netem::Impairment {
            delay_ms: args.delay.0.as_millis() as u64,
            jitter_ms: args.jitter.0.as_millis() as u64,
            loss: args.loss,
        })
    }
    .map_err(|e| match e {
        crate::netem::NetemError::Refused { errno: nix::Error::EPERM, .. } => {
            anyhow::anyhow!("{e} (netem needs NET_ADMIN in the network namespace)")
        }
        e => anyhow::anyhow!(e),
    })?;
    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&outcome)?).context("cannot write to stdout")?;
    if args.clear && !outcome.netem.is_empty() {
        bail!("netem is still on {} after the clear", outcome.netem.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
