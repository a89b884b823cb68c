//! Hang: under constant load through the load balancer, one server replica is stopped with
//! SIGSTOP for `test.hang.duration`, then resumed with SIGCONT, on whichever node it runs. A
//! stopped process neither answers nor dies, and the kernel still accepts connections for it,
//! as with a deadlocked or swapping server. Measured: what clients saw (slow answers or
//! timeouts, not refusals), its worst p99 and their recovery. The replica is resumed whatever
//! happens: an error, the load ending, Ctrl-C.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{failover, run_load, Ctx};
use crate::exit::Verdict;
use crate::load::engine::Live;
use crate::report::{Hang, Phase};
use crate::units::unix_now_ms;

/// Stops one replica under load, resumes it, and measures what clients saw.
pub async fn measure(ctx: &Ctx) -> anyhow::Result<Phase> {
    let cfg = &ctx.config.test.hang;
    let profile = ctx.phase_profile();
    let service = ctx.server_service();
    // Refused before any load when there is nothing to stop.
    failover::one_victim(ctx, "stop").await?;
    let cpu_before = failover::cpu_by_task(ctx).await;

    let mut load_plan = ctx.load_plan(&profile).await?;
    load_plan.hold = cfg.warmup.0 + cfg.duration.0 + cfg.observe.0;
    load_plan.streak_goal = cfg.consecutive_ok;
    ctx.say(format!(
        "[hang] {} sessions through the load balancer; after {} of load, stop the {service} replica they reach most for {}, then watch {}",
        load_plan.sessions, cfg.warmup, cfg.duration, cfg.observe
    ));
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let ramp = load_plan.ramp_time();
    let load = run_load(ctx, "hang", &load_plan, live.clone(), stop.clone());
    tokio::pin!(load);

    super::warm_up(load.as_mut(), ramp + cfg.warmup.0, "the stop").await?;
    let victim = match failover::busiest(ctx, &cpu_before, "stop").await {
        Ok(victim) => victim,
        Err(e) => {
            stop.cancel();
            let _ = (&mut load).await;
            return Err(e);
        }
    };
    let dropped_before = live.sessions_dropped.load(Relaxed);
    let reestablished_before = live.sessions_reestablished.load(Relaxed);
    let sent = match ctx.reach.signal(&victim, "SIGSTOP").await {
        Ok(sent) => sent,
        Err(e) => {
            stop.cancel();
            let _ = (&mut load).await;
            anyhow::bail!("cannot stop slot {} on node {}: {e}", victim.slot, ctx.reach.node_of(&victim));
        }
    };
    let stopped_ms = sent.done_ms;
    let on = if victim.node.is_empty() { String::new() } else { format!(" on node {}", victim.node) };
    ctx.rec.event_at(stopped_ms, "hang", format!("{service} slot {} stopped (SIGSTOP){on}", victim.slot));
    ctx.say(format!("[hang] stopped slot {}{on}", victim.slot));

    // Held stopped for the duration; the load ending early or Ctrl-C cut it short, and the
    // replica is resumed before anything else.
    let mut ended = None;
    tokio::select! {
        _ = tokio::time::sleep(cfg.duration.0) => {}
        _ = ctx.cancel.cancelled() => {}
        r = &mut load => ended = Some(r),
    }
    let (resumed_ms, resume_error) = match ctx.reach.signal(&victim, "SIGCONT").await {
        Ok(sent) => {
            ctx.rec.event_at(sent.done_ms, "resume", format!("slot {} resumed (SIGCONT)", victim.slot));
            ctx.say(format!("[hang] resumed slot {}", victim.slot));
            (Some(sent.done_ms), None)
        }
        Err(e) => {
            // Most likely the swarm replaced it for failing its healthcheck: said, not hidden.
            let why = format!("could not resume slot {}: {e}", victim.slot);
            ctx.say(format!("[hang] {why}"));
            (None, Some(why))
        }
    };
    let result = match ended {
        Some(r) => r?,
        None => (&mut load).await?,
    };

    let recovered_at = Some(live.streak_reached_ms.load(Relaxed)).filter(|at| *at > 0);
    let (times, errors) = super::failures_since(&live, stopped_ms);
    let recovery = failover::recovery_s(stopped_ms, &times, recovered_at);
    if let (Some(r), false) = (recovery, times.is_empty()) {
        ctx.rec.event_at(
            stopped_ms + (r * 1000.0) as u64,
            "recovered",
            format!("{} successes in a row after the last failure", cfg.consecutive_ok),
        );
    }
    let until = resumed_ms.unwrap_or_else(unix_now_ms);
    let p99_while_stopped = super::worst_p99(ctx, "hang", stopped_ms, until);
    let hang = Hang {
        service,
        slot: victim.slot,
        task: victim.id.clone(),
        container: sent.container,
        node: victim.node.clone(),
        stopped_ms,
        resumed_ms,
        resume_error,
        errors,
        first_error_ms: times.iter().min().copied(),
        last_error_ms: times.iter().max().copied(),
        recovery_s: recovery,
        consecutive_ok: cfg.consecutive_ok,
        p99_while_stopped_ms: p99_while_stopped,
        sessions_dropped: live.sessions_dropped.load(Relaxed) - dropped_before,
        sessions_reestablished: live.sessions_reestablished.load(Relaxed) - reestablished_before,
        success_ratio: result.summary.success_ratio,
    };
    let (verdict, reasons) = judge(ctx, &result, &hang);
    Ok(Phase { verdict, reasons, load: Some(result), hang: Some(hang), ..Default::default() })
}

/// Judged by the failover SLO: a hung replica is a lost replica that clients cannot see go.
fn judge(ctx: &Ctx, r: &crate::load::RunResult, h: &Hang) -> (Verdict, Vec<String>) {
    let slo = &ctx.config.slo;
    let limit = slo.failover_recovery.0.as_secs_f64();
    let failed: u64 = h.errors.values().sum();
    let mut reasons = vec![format!(
        "while slot {} was stopped, the slowest second's p99 was {:.0} ms",
        h.slot, h.p99_while_stopped_ms
    )];
    let recovered = matches!(h.recovery_s, Some(s) if s <= limit);
    reasons.push(match h.recovery_s {
        Some(_) if failed == 0 => "clients saw no failure: requests to it waited, then were answered".to_string(),
        Some(s) => format!(
            "{failed} failures ({}); clients recovered {s:.2} s after the stop, {} the SLO of {limit} s",
            h.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            if recovered { "within" } else { "beyond" }
        ),
        None => format!(
            "clients never saw {} successes in a row after the last failure before the phase ended",
            h.consecutive_ok
        ),
    });
    let (ok, said) = failover::success(ctx, r);
    reasons.push(said);
    reasons.push(match &h.resume_error {
        None => format!("slot {} resumed", h.slot),
        Some(e) => e.clone(),
    });
    let interrupted = r.verdict == Verdict::Interrupted || ctx.cancel.is_cancelled();
    (Verdict::judged(interrupted, recovered && ok), reasons)
}
