//! Load straight to the replicas, bypassing the load balancer (`--via direct`): task addresses
//! live on the stack's overlay network, which the host cannot route to, so the load engine
//! runs there, in a container of the builtin image (the swarmctl binary) that swarmctl starts
//! with the phase's load plan (as plan.json in the folder it shares), follows through the
//! results it writes there, and removes.

use std::io::{BufRead, Seek, SeekFrom};
use std::time::Duration;

use anyhow::{bail, Context};

use super::Ctx;
use crate::config::{ClientTransport, Entry};
use crate::engine::oneoff;
use crate::exit::Code;
use crate::load::{LoadPlan, RunResult};

/// Rewrites `o`'s targets to every running replica's address on the stack's network.
async fn replica_urls(ctx: &Ctx, transport: ClientTransport) -> anyhow::Result<Vec<String>> {
    let net = ctx.config.mcp_network();
    let addrs = ctx.engine.task_addresses(&net, &ctx.server_service()).await?;
    if addrs.is_empty() {
        bail!("no running replica of {} on network {net}: is the stack up?", ctx.server_service());
    }
    addrs
        .iter()
        .map(|(_, ip)| ctx.config.client_url(transport, ip, Entry::Replica).map_err(anyhow::Error::msg))
        .collect()
}

/// `plan` aimed at every running replica's address on the stack's network (the source
/// addresses are the load's own, wherever it runs), and how many replicas that is.
pub(super) async fn toward_replicas(
    ctx: &Ctx,
    plan: &LoadPlan,
    transport: ClientTransport,
) -> anyhow::Result<(LoadPlan, usize)> {
    let urls = replica_urls(ctx, transport).await?;
    Ok((LoadPlan { targets: ctx.targets(&urls)?, sources: Vec::new(), ..plan.clone() }, urls.len()))
}

/// The load container's command: the plan it finds in the folder it shares with us.
fn container_args() -> Vec<String> {
    ["-q", "load", "--plan", "/out/plan.json", "--out", "/out"].map(String::from).to_vec()
}

/// Runs `plan` against the replicas directly (its targets become the replicas' addresses);
/// each second goes into the run's timeline as the container writes it. Ctrl-C is passed on
/// (SIGINT: the load drains and reports).
pub async fn run(ctx: &Ctx, phase: &str, plan: &LoadPlan, transport: ClientTransport) -> anyhow::Result<RunResult> {
    let image = ctx.client_image.clone().context("no image to run the load client in (the builtin image)")?;
    let (plan, replicas) = toward_replicas(ctx, plan, transport).await?;
    let plan = LoadPlan { start_at_ms: None, ..plan };
    let dir = ctx.phase_dir(phase);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let _ = std::fs::remove_file(dir.join("results.json"));
    plan.write(&dir.join("plan.json"))?;
    ctx.say(format!("[{phase}] direct to {replicas} replicas, from a load container on the stack's network"));
    let spec = oneoff::Spec {
        image,
        args: container_args(),
        network: ctx.config.mcp_network(),
        out_dir: dir.clone(),
        nofile: 20_000,
        // One container address reaches each replica from at most the ephemeral range's ports;
        // the widest range lets 100,000 sessions to 12 replicas find free ones quickly (the
        // search slows as the range fills).
        sysctls: [("net.ipv4.ip_local_port_range".to_string(), "1024 65535".to_string())].into(),
        stack: ctx.config.name.clone(),
    };
    let id = ctx.engine.start_container(&spec).await?;
    super::begin_load(ctx.progress.as_ref(), phase, &plan);
    let outcome = follow(ctx, phase, &plan, &id, &dir).await;
    ctx.progress.end(phase, "");
    let logs = ctx.engine.container_logs(&id, 20).await;
    if let Err(e) = ctx.engine.remove_container(&id).await {
        tracing::warn!("{e}");
    }
    let code = outcome?;
    let Ok(text) = std::fs::read_to_string(dir.join("results.json")) else {
        anyhow::bail!(
            "the load container ended (exit {code}{}) without results; its last output:\n{}",
            if Code::of_number(code) == Code::Usage { ": it did not accept its load plan" } else { "" },
            logs.trim_end()
        );
    };
    serde_json::from_str(&text).context("the load container's results.json does not parse")
}

/// Follows the container's timeline until it exits; its exit code.
async fn follow(ctx: &Ctx, phase: &str, plan: &LoadPlan, id: &str, dir: &std::path::Path) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + plan.run_time() + Duration::from_secs(120);
    let wait = ctx.engine.wait_container(id);
    tokio::pin!(wait);
    let mut offset = 0u64;
    let mut interrupted = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            code = &mut wait => {
                read_seconds(ctx, phase, dir, &mut offset);
                return Ok(code?);
            }
            _ = tick.tick() => read_seconds(ctx, phase, dir, &mut offset),
            _ = ctx.cancel.cancelled(), if !interrupted => {
                interrupted = true;
                ctx.engine.kill(id, "SIGINT").await?;
            }
        }
        if tokio::time::Instant::now() > deadline {
            ctx.engine.kill(id, "SIGKILL").await?;
            bail!("the load container ran past its schedule by 2 minutes and was killed");
        }
    }
}

fn read_seconds(ctx: &Ctx, phase: &str, dir: &std::path::Path, offset: &mut u64) {
    let Ok(mut f) = std::fs::File::open(dir.join("timeline.jsonl")) else { return };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return;
    }
    let mut reader = std::io::BufReader::new(f);
    let mut line = String::new();
    while let Ok(len) = reader.read_line(&mut line) {
        if len == 0 || !line.ends_with('\n') {
            break; // a line still being written is read next time
        }
        *offset += len as u64;
        if let Ok(s) = serde_json::from_str::<crate::load::engine::Second>(line.trim_end()) {
            let p = ctx.rec.second(phase, &s);
            super::show_point(ctx.progress.as_ref(), phase, s.t, &p);
        }
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_load_container_runs_the_plan_it_is_given() {
        let argv = std::iter::once("swarmctl".to_string()).chain(super::container_args());
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Load(args) = cli.command else { panic!("not `load`") };
        assert_eq!(args.plan.as_deref(), Some(std::path::Path::new("/out/plan.json")));
        assert_eq!(args.out.as_deref(), Some(std::path::Path::new("/out")));
    }
}
