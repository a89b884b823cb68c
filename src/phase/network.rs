//! Network: under constant load through the load balancer, one server replica's network gets
//! latency, jitter and loss (netem, set from inside its network namespace on its own node) for
//! `test.network.duration`, then they are removed, and the removal is proven (no netem qdisc
//! left on any of its interfaces). Measured: p99 and errors before, during and after, as
//! clients see a slow or lossy link to one replica. The impairment is removed whatever happens.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{failover, run_load, Ctx};
use crate::engine::Task;
use crate::exit::Verdict;
use crate::load::engine::Live;
use crate::netem::{Impairment, Order};
use crate::report::{Network, Phase};
use crate::units::unix_now_ms;

/// Impairs one replica's network under load, removes it, and measures what clients saw.
pub async fn measure(ctx: &Ctx) -> anyhow::Result<Phase> {
    let cfg = &ctx.config.test.network;
    let imp = Impairment {
        delay_ms: cfg.delay.0.as_millis() as u64,
        jitter_ms: cfg.jitter.0.as_millis() as u64,
        loss: cfg.loss,
    };
    let profile = ctx.phase_profile();
    let service = ctx.server_service();
    let victim = failover::one_victim(ctx, "impair").await?;
    if let Some(why) = cannot_impair(ctx, &victim).await {
        anyhow::bail!("{why}");
    }

    let mut load_plan = ctx.load_plan(&profile).await?;
    load_plan.hold = cfg.warmup.0 + cfg.duration.0 + cfg.observe.0;
    load_plan.streak_goal = cfg.consecutive_ok;
    ctx.say(format!(
        "[network] {} sessions through the load balancer; after {} of load, {} on {service} slot {} for {}, then watch {}",
        load_plan.sessions,
        cfg.warmup,
        imp.describe(),
        victim.slot,
        cfg.duration,
        cfg.observe
    ));
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let ramp = load_plan.ramp_time();
    let started_ms = unix_now_ms();
    let load = run_load(ctx, "network", &load_plan, live.clone(), stop.clone());
    tokio::pin!(load);

    super::warm_up(load.as_mut(), ramp + cfg.warmup.0, "the impairment").await?;
    let before_ms = unix_now_ms();
    let dropped_before = live.sessions_dropped.load(Relaxed);
    let reestablished_before = live.sessions_reestablished.load(Relaxed);
    let (applied, applied_ms) = match ctx.reach.netem(&victim, Order::Apply(imp)).await {
        Ok(done) => done,
        Err(e) => {
            // Whatever the helper managed before it failed is removed too.
            let _ = ctx.reach.netem(&victim, Order::Clear).await;
            stop.cancel();
            let _ = (&mut load).await;
            anyhow::bail!("cannot impair slot {} on node {}: {e}", victim.slot, ctx.reach.node_of(&victim));
        }
    };
    let on = if victim.node.is_empty() { String::new() } else { format!(" on node {}", victim.node) };
    ctx.rec.event_at(
        applied_ms,
        "netem",
        format!("{service} slot {}: {} on {}{on}", victim.slot, imp.describe(), applied.netem.join(", ")),
    );
    ctx.say(format!("[network] slot {}: {} on {}{on}", victim.slot, imp.describe(), applied.netem.join(", ")));

    let mut ended = None;
    tokio::select! {
        _ = tokio::time::sleep(cfg.duration.0) => {}
        _ = ctx.cancel.cancelled() => {}
        r = &mut load => ended = Some(r),
    }
    // Removed before anything else, and proven gone: the helper lists what is left.
    let (cleared_ms, left, clear_error) = match ctx.reach.netem(&victim, Order::Clear).await {
        Ok((outcome, at)) => {
            ctx.rec.event_at(
                at,
                "netem cleared",
                format!("slot {}: no netem left on {}", victim.slot, outcome.interfaces.join(", ")),
            );
            ctx.say(format!("[network] slot {}: impairment removed", victim.slot));
            (Some(at), outcome.netem, None)
        }
        Err(e) => {
            let why = format!("could not remove the impairment of slot {}: {e}", victim.slot);
            ctx.say(format!("[network] {why}"));
            (None, applied.netem.clone(), Some(why))
        }
    };
    let result = match ended {
        Some(r) => r?,
        None => (&mut load).await?,
    };

    let until = cleared_ms.unwrap_or_else(unix_now_ms);
    let recovered_at = Some(live.streak_reached_ms.load(Relaxed)).filter(|at| *at > 0);
    let (times, errors) = super::failures_since(&live, applied_ms);
    let network = Network {
        service,
        slot: victim.slot,
        task: victim.id.clone(),
        container: victim.container.clone().unwrap_or_default(),
        node: victim.node.clone(),
        impairment: imp,
        interfaces: applied.netem,
        applied_ms,
        cleared_ms,
        clear_error,
        netem_left: left,
        errors,
        first_error_ms: times.iter().min().copied(),
        last_error_ms: times.iter().max().copied(),
        recovery_s: failover::recovery_s(applied_ms, &times, recovered_at),
        consecutive_ok: cfg.consecutive_ok,
        p99_before_ms: super::worst_p99(ctx, "network", started_ms.max(before_ms.saturating_sub(10_000)), before_ms),
        p99_during_ms: super::worst_p99(ctx, "network", applied_ms + 1000, until),
        sessions_dropped: live.sessions_dropped.load(Relaxed) - dropped_before,
        sessions_reestablished: live.sessions_reestablished.load(Relaxed) - reestablished_before,
        success_ratio: result.summary.success_ratio,
    };
    let (verdict, reasons) = judge(ctx, &result, &network);
    Ok(Phase { verdict, reasons, load: Some(result), network: Some(network), ..Default::default() })
}

/// Why `task`'s network cannot be impaired, when it cannot: its node's kernel lacks netem (the
/// helper sets one that adds nothing on the container's loopback and removes it), or the
/// helper cannot run there.
async fn cannot_impair(ctx: &Ctx, task: &Task) -> Option<String> {
    let node = ctx.reach.node_of(task).to_string();
    match ctx.reach.netem(task, Order::Probe).await {
        Ok((outcome, _)) if outcome.supported => None,
        Ok(_) => Some(format!(
            "the kernel of node {node} has no netem qdisc (CONFIG_NET_SCH_NETEM is not set): latency and loss cannot be added there"
        )),
        Err(e) => Some(format!("cannot run the netem helper on node {node}: {e}")),
    }
}

/// Why this run cannot impair a replica's network, when it cannot (`--phase all` and `test
/// full` then skip the phase).
pub async fn cannot_run(ctx: &Ctx) -> Option<String> {
    match failover::one_victim(ctx, "impair").await {
        Ok(victim) => cannot_impair(ctx, &victim).await,
        Err(e) => Some(crate::error_text(&e)),
    }
}

/// Judged by the failover SLO's success ratio, with the impairment gone afterwards: a slow link
/// to one replica should cost its clients latency, not failures.
fn judge(ctx: &Ctx, r: &crate::load::RunResult, n: &Network) -> (Verdict, Vec<String>) {
    let failed: u64 = n.errors.values().sum();
    let mut reasons = vec![format!(
        "{} on slot {} ({}): worst per-second p99 {:.0} ms, against {:.0} ms before",
        n.impairment.describe(),
        n.slot,
        n.interfaces.join(", "),
        n.p99_during_ms,
        n.p99_before_ms
    )];
    if failed > 0 {
        reasons.push(format!(
            "{failed} failures after it was set ({})",
            n.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        ));
    }
    let (ok, said) = failover::success(ctx, r);
    reasons.push(said);
    let gone = n.cleared_ms.is_some() && n.netem_left.is_empty();
    reasons.push(match (&n.clear_error, gone) {
        (None, true) => format!("removed: no netem qdisc left on slot {}", n.slot),
        (None, false) => format!("NOT removed: netem still on {}", n.netem_left.join(", ")),
        (Some(e), _) => e.clone(),
    });
    let interrupted = r.verdict == Verdict::Interrupted || ctx.cancel.is_cancelled();
    (Verdict::judged(interrupted, ok && gone), reasons)
}
