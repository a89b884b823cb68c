//! Failover: under constant load through the load balancer, kill tasks (server replicas, or a
//! load-balancer task) and measure what clients saw: failures, sessions lost and
//! re-established, and the time until `consecutive_ok` requests in a row succeeded after the
//! last failure; beside it, the engine's own timestamps of the replacement tasks.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{run_load, Ctx};
use crate::agent::reach::Reach;
use crate::config::{FailoverTarget, KillCount};
use crate::engine::Task;
use crate::exit::Verdict;
use crate::load::engine::Live;
use crate::report::{Failover, Kill, Phase};
use crate::units::unix_now_ms;

/// What to kill, from flags or the stack file.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How many.
    pub kill: KillCount,
    /// Which service.
    pub target: FailoverTarget,
}

/// When clients recovered: the first moment `streak_needed` successes in a row followed the
/// last failure. Pure, for tests: `failures` are (ms) after the kill, `recovered_at` is when
/// the streak was first seen complete after the last of them (polled).
pub fn recovery_s(kill_ms: u64, failures: &[u64], recovered_at_ms: Option<u64>) -> Option<f64> {
    match (failures.iter().max(), recovered_at_ms) {
        (None, _) => Some(0.0),
        (Some(&last), Some(at)) if at >= last => Some(at.saturating_sub(kill_ms) as f64 / 1000.0),
        _ => None,
    }
}

/// The one server replica a single-replica fault (hang, network) acts on, chosen as failover
/// chooses its kills; `what` the fault does, for the error when none runs.
pub async fn one_victim(ctx: &Ctx, what: &str) -> anyhow::Result<Task> {
    let service = ctx.server_service();
    let tasks = ctx.engine.tasks(&service, false).await?;
    if !tasks.iter().any(|t| t.is_running() && t.container.is_some()) {
        anyhow::bail!("{service} has no running task to {what}: is the stack up (`swarmctl up`)?");
    }
    Ok(victims(&tasks, 1, &ctx.reach).map_err(|e| anyhow::anyhow!("{service}: {e}"))?.remove(0))
}

/// CPU time so far of every running replica of the server within reach, by task ID: what
/// [`busiest`] compares once some load has run.
pub async fn cpu_by_task(ctx: &Ctx) -> std::collections::HashMap<String, u64> {
    let mut cpu = std::collections::HashMap::new();
    let Ok(tasks) = ctx.engine.tasks(&ctx.server_service(), false).await else { return cpu };
    for t in tasks.iter().filter(|t| t.is_running() && ctx.reach.why_not(&t.node).is_none()) {
        if let Ok(u) = ctx.reach.usage(t).await {
            cpu.insert(t.id.clone(), u.cpu_ns);
        }
    }
    cpu
}

/// The running replica within reach that used the most CPU since `before` was read: the one
/// the load reached most. A fault on a replica the load balancer sent nothing to would
/// measure nothing (one not yet in its pool, or one it still holds as failed). When nothing
/// could be read, [`one_victim`]'s choice.
pub async fn busiest(ctx: &Ctx, before: &std::collections::HashMap<String, u64>, what: &str) -> anyhow::Result<Task> {
    let tasks = ctx.engine.tasks(&ctx.server_service(), false).await?;
    let mut best: Option<(u64, &Task)> = None;
    for t in tasks.iter().filter(|t| t.is_running() && t.container.is_some()) {
        let (Some(was), Ok(now)) = (before.get(&t.id), ctx.reach.usage(t).await) else { continue };
        let used = now.cpu_ns.saturating_sub(*was);
        if best.map_or(true, |(b, _)| used > b) {
            best = Some((used, t));
        }
    }
    match best {
        Some((_, t)) => Ok(t.clone()),
        None => one_victim(ctx, what).await,
    }
}

/// Kills `ctx.failover`'s tasks under load and measures what clients saw.
pub async fn measure(ctx: &Ctx) -> anyhow::Result<Phase> {
    let plan = ctx.failover;
    let cfg = &ctx.config.test.failover;
    let profile = ctx.phase_profile();
    let service = match plan.target {
        FailoverTarget::Server => ctx.server_service(),
        FailoverTarget::Lb => ctx.lb_service(),
    };
    let before = ctx.engine.tasks(&service, false).await?;
    let running: Vec<&Task> = before.iter().filter(|t| t.is_running() && t.container.is_some()).collect();
    if running.is_empty() {
        anyhow::bail!("{service} has no running task to kill: is the stack up (`swarmctl up`)?");
    }
    let k = plan.kill.of(running.len() as u64) as usize;
    let victims = victims(&before, k, &ctx.reach).map_err(|e| anyhow::anyhow!("--kill {k} of {service}: {e}"))?;
    let out_of_reach = running.iter().filter(|t| ctx.reach.why_not(&t.node).is_some()).count();
    if out_of_reach > 0 {
        ctx.say(format!(
            "[failover] {out_of_reach} of {} running {service} tasks are on nodes swarmctl cannot act on ({}); the kills are chosen among the others",
            running.len(),
            ctx.reach.missing().iter().map(|(n, why)| format!("{n}: {why}")).collect::<Vec<_>>().join("; ")
        ));
    }

    let mut load_plan = ctx.load_plan(&profile).await?;
    load_plan.hold = cfg.warmup.0 + cfg.observe.0;
    load_plan.streak_goal = cfg.consecutive_ok;
    ctx.say(format!(
        "[failover] {} sessions through the load balancer; after {} of load, kill {k} of {} {service} tasks, then watch {}",
        load_plan.sessions,
        cfg.warmup,
        running.len(),
        cfg.observe
    ));
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let ramp = load_plan.ramp_time();
    let load = run_load(ctx, "failover", &load_plan, live.clone(), stop.clone());
    tokio::pin!(load);

    super::warm_up(load.as_mut(), ramp + cfg.warmup.0, "the kill").await?;
    let dropped_before = live.sessions_dropped.load(Relaxed);
    let reestablished_before = live.sessions_reestablished.load(Relaxed);
    let kill_ms = unix_now_ms();
    let (mut kills, failed) = kill(&ctx.reach, &victims).await;
    if kills.is_empty() {
        // Nothing was killed: the load goes on for nothing; stop it and say why.
        stop.cancel();
        let _ = (&mut load).await;
        anyhow::bail!("no kill succeeded: {}", failed.join("; "));
    }
    for (v, k) in victims.iter().zip(&kills) {
        let on = if k.node.is_empty() { String::new() } else { format!(" on node {}", k.node) };
        ctx.rec.event_at(
            k.killed_ms.unwrap_or(kill_ms),
            "kill",
            format!("{service} slot {} (task {}){on}", v.slot, &v.id[..v.id.len().min(12)]),
        );
    }
    ctx.say(format!("[failover] killed {k} task(s) of {service}"));

    // Watch, while the load goes on: replacements through the engine, recovery through the
    // live counters (the streak resets on every failure).
    let victim_ids: BTreeSet<String> = victims.iter().map(|v| v.id.clone()).collect();
    let known: BTreeSet<String> = before.iter().map(|t| t.id.clone()).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            r = &mut load => break r?,
            _ = tick.tick() => {}
        }
        if kills.iter().any(|k| k.replacement_running_ms.is_none()) {
            if let Ok(tasks) = ctx.engine.tasks(&service, false).await {
                note_replacements(&mut kills, &tasks, &known, &victim_ids, kill_ms);
            }
        }
    };
    // The streak goal, as of the load's end, was reached after the last failure (a failure
    // resets it).
    let recovered_at = Some(live.streak_reached_ms.load(Relaxed)).filter(|at| *at > 0);
    // The replacement may come after the load ended: wait for it a while, so the stack is whole
    // again and its timing known (bounded; a replacement that never runs is reported so).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while kills.iter().any(|k| k.replacement_running_ms.is_none()) && tokio::time::Instant::now() < deadline {
        if ctx.cancel.is_cancelled() {
            break;
        }
        let tasks = ctx.engine.tasks(&service, false).await?;
        note_replacements(&mut kills, &tasks, &known, &victim_ids, kill_ms);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for k in &kills {
        if let Some(at) = k.replacement_created_ms {
            ctx.rec.event_at(at, "replacement_created", format!("slot {}", k.slot));
        }
        if let Some(at) = k.replacement_running_ms {
            ctx.rec.event_at(at, "replacement_running", format!("slot {}", k.slot));
        }
    }

    let (times, errors) = super::failures_since(&live, kill_ms);
    let recovery = recovery_s(kill_ms, &times, recovered_at);
    if let Some(r) = recovery {
        ctx.rec.event_at(
            kill_ms + (r * 1000.0) as u64,
            "recovered",
            format!("{} successes in a row after the last failure", cfg.consecutive_ok),
        );
    }
    let until = recovered_at.unwrap_or(u64::MAX).max(kill_ms + 1000);
    let p99_during = super::worst_p99(ctx, "failover", kill_ms, until);
    let failover = Failover {
        service: service.clone(),
        kills,
        kill_ms,
        recovery_s: recovery,
        consecutive_ok: cfg.consecutive_ok,
        errors,
        first_error_ms: times.iter().min().copied(),
        last_error_ms: times.iter().max().copied(),
        sessions_dropped: live.sessions_dropped.load(Relaxed) - dropped_before,
        sessions_reestablished: live.sessions_reestablished.load(Relaxed) - reestablished_before,
        p99_during_recovery_ms: p99_during,
        success_ratio: result.summary.success_ratio,
    };
    let (verdict, mut reasons) = judge(ctx, &result, &failover);
    reasons.extend(failed.into_iter().map(|f| format!("not killed, so not measured: {f}")));
    Ok(Phase { verdict, reasons, load: Some(result), failover: Some(failover), ..Default::default() })
}

/// The tasks to kill: `k` running ones that have a container, spread over the nodes swarmctl
/// can act on (one per node in turn, in `reach`'s order, highest slots first on each), so that
/// a kill of several replicas is a loss on several nodes, as a real one would be. Fewer than
/// `k` within reach is an error that says why the others are not.
pub fn victims(tasks: &[Task], k: usize, reach: &Reach) -> Result<Vec<Task>, String> {
    let running: Vec<&Task> = tasks.iter().filter(|t| t.is_running() && t.container.is_some()).collect();
    let mut queues: Vec<Vec<&Task>> = reach
        .nodes()
        .iter()
        .map(|n| running.iter().rev().filter(|t| reach.node_of(t) == n).copied().collect())
        .collect();
    let mut chosen: Vec<Task> = Vec::with_capacity(k);
    while chosen.len() < k && queues.iter().any(|q| !q.is_empty()) {
        for q in queues.iter_mut().filter(|q| !q.is_empty()) {
            if chosen.len() < k {
                chosen.push(q.remove(0).clone());
            }
        }
    }
    if chosen.len() < k {
        let out: BTreeSet<String> = running
            .iter()
            .filter_map(|t| reach.why_not(&t.node).map(|why| format!("node {}: {why}", t.node)))
            .collect();
        return Err(format!(
            "{} of the {} running tasks are on nodes swarmctl can act on; kill at most {0}{}",
            chosen.len(),
            running.len(),
            if out.is_empty() {
                String::new()
            } else {
                format!(" ({})", out.into_iter().collect::<Vec<_>>().join("; "))
            }
        ));
    }
    Ok(chosen)
}

/// Kills every victim's container with SIGKILL, all at once, each by its own node: a crash,
/// not a stop. What was killed, where and when its node's engine did it, for the report; and
/// each kill that failed, said (the others happened all the same).
pub async fn kill(reach: &Reach, victims: &[Task]) -> (Vec<Kill>, Vec<String>) {
    let sent = futures_util::future::join_all(victims.iter().map(|v| reach.signal(v, "SIGKILL"))).await;
    let (mut kills, mut failed) = (Vec::with_capacity(victims.len()), Vec::new());
    for (v, sent) in victims.iter().zip(sent) {
        match sent {
            Ok(sent) => kills.push(Kill {
                slot: v.slot,
                task: v.id.clone(),
                container: sent.container,
                node: v.node.clone(),
                killed_ms: Some(sent.done_ms),
                ..Default::default()
            }),
            Err(e) => failed.push(format!("slot {} on node {}: {e}", v.slot, reach.node_of(v))),
        }
    }
    (kills, failed)
}

/// Finds each killed task's replacement (a new task in its slot) and notes the engine's
/// timestamps: created, and running (healthy, where the service has a healthcheck).
fn note_replacements(
    kills: &mut [Kill],
    tasks: &[Task],
    known: &BTreeSet<String>,
    victims: &BTreeSet<String>,
    kill_ms: u64,
) {
    for k in kills.iter_mut() {
        let replacement = tasks
            .iter()
            .filter(|t| t.slot == k.slot && !known.contains(&t.id) && !victims.contains(&t.id) && t.desired_running)
            .max_by_key(|t| t.created_ms);
        if let Some(t) = replacement {
            k.replacement_node = t.node.clone();
            k.replacement_created_ms = t.created_ms.map(|c| c.max(kill_ms));
            if t.is_running() {
                k.replacement_running_ms = t.state_since_ms;
            }
        }
    }
}

/// Whether the phase's success ratio meets `slo.failover_success_ratio`, and the sentence that
/// says so (a phase that sent nothing does not).
pub(super) fn success(ctx: &Ctx, r: &crate::load::RunResult) -> (bool, String) {
    let slo = &ctx.config.slo;
    let ok = r.summary.success_ratio >= slo.failover_success_ratio && r.summary.requests_total > 0;
    let said = format!(
        "success {:.3} % over the phase {} the SLO of {:.2} %",
        r.summary.success_ratio * 100.0,
        if ok { "meets" } else { "misses" },
        slo.failover_success_ratio * 100.0
    );
    (ok, said)
}

fn judge(ctx: &Ctx, r: &crate::load::RunResult, f: &Failover) -> (Verdict, Vec<String>) {
    let slo = &ctx.config.slo;
    let limit = slo.failover_recovery.0.as_secs_f64();
    let mut reasons = Vec::new();
    let recovered = matches!(f.recovery_s, Some(s) if s <= limit);
    reasons.push(match f.recovery_s {
        Some(_) if f.errors.is_empty() => {
            format!("clients saw no failure after the kill (SLO: recovery within {limit} s)")
        }
        Some(s) => format!(
            "clients recovered {s:.2} s after the kill ({} failures in between) {} the SLO of {limit} s",
            f.errors.values().sum::<u64>(),
            if recovered { "within" } else { "beyond" }
        ),
        None => format!(
            "clients never saw {} successes in a row after the last failure before the phase ended",
            f.consecutive_ok
        ),
    });
    let (ok, said) = success(ctx, r);
    reasons.push(said);
    let replaced = f.kills.iter().all(|k| k.replacement_running_ms.is_some());
    if !replaced {
        reasons.push("a killed task's replacement was not running within 60 s after the load ended".into());
    }
    let interrupted = r.verdict == Verdict::Interrupted || ctx.cancel.is_cancelled();
    (Verdict::judged(interrupted, recovered && ok && replaced), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::with_stack;
    use crate::engine::Engine;

    #[tokio::test]
    async fn kills_are_crashes_and_their_replacements_are_found_with_their_nodes() {
        let service = "swarmctl-ci_server";
        let (fake, _) = with_stack(0, &["server.replicas=6"]).await;
        let fake = Arc::new(fake);
        let reach = Reach::local(fake.clone(), "node0");
        let before = fake.tasks(service, false).await.unwrap();
        let victims = victims(&before, 2, &reach).unwrap();
        assert_eq!(victims.iter().map(|v| v.slot).collect::<Vec<_>>(), [6, 5], "the highest slots");
        let kill_ms = unix_now_ms();
        let (mut kills, failed) = kill(&reach, &victims).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert!(kills.iter().all(|k| k.node == "node0"), "where each ran: {kills:?}");
        assert!(kills.iter().all(|k| k.killed_ms.is_some_and(|at| at >= kill_ms)), "when: {kills:?}");
        let killed: Vec<String> = fake.calls().into_iter().filter(|c| c.starts_with("kill ")).collect();
        assert_eq!(killed.len(), 2);
        assert!(killed.iter().all(|c| c.ends_with(" SIGKILL")), "a crash, not a stop: {killed:?}");

        let known: BTreeSet<String> = before.iter().map(|t| t.id.clone()).collect();
        let ids: BTreeSet<String> = victims.iter().map(|t| t.id.clone()).collect();
        let after = fake.tasks(service, false).await.unwrap();
        note_replacements(&mut kills, &after, &known, &ids, kill_ms);
        for k in &kills {
            assert!(k.replacement_running_ms.is_some_and(|at| at >= kill_ms), "{k:?}");
            assert!(!k.replacement_node.is_empty(), "{k:?}");
        }
        assert_eq!(after.iter().filter(|t| t.is_running()).count(), 6, "every slot runs again");
        // A container that is gone cannot be killed twice: the engine's refusal is said per kill.
        let (again, failed) = kill(&reach, &victims).await;
        assert!(again.is_empty() && failed.len() == 2, "{failed:?}");
        assert!(
            failed[0].starts_with("slot 6 on node node0: ") && failed[0].contains("No such container"),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn kills_spread_over_the_nodes_in_reach_and_the_rest_are_said_with_their_reason() {
        let service = "swarmctl-ci_server";
        let (fake, _) = with_stack(2, &["server.replicas=6"]).await;
        let before = fake.tasks(service, false).await.unwrap();
        let fake = Arc::new(fake);
        // Slots 1 and 4 on node0, 2 and 5 on node1, 3 and 6 on node2. As if agents ran on both
        // workers: the fake's engine acts on every node.
        let everywhere = Reach::with_agents(fake.clone(), "node0", &["node1", "node2"]);
        let two = victims(&before, 2, &everywhere).unwrap();
        assert_eq!(two.iter().map(|v| (v.slot, v.node.as_str())).collect::<Vec<_>>(), [(5, "node1"), (6, "node2")]);
        let four = victims(&before, 4, &everywhere).unwrap();
        assert_eq!(four.iter().map(|v| v.slot).collect::<Vec<_>>(), [5, 6, 4, 2], "one per node in turn");

        fake.local_node("node0");
        let alone = Reach::local(fake.clone(), "node0");
        let mine = victims(&before, 2, &alone).unwrap();
        assert_eq!(mine.iter().map(|v| v.slot).collect::<Vec<_>>(), [4, 1], "the manager's two");
        assert!(kill(&alone, &mine).await.1.is_empty());
        let err = victims(&before, 5, &alone).unwrap_err();
        assert!(
            err.starts_with("2 of the 6 running tasks are on nodes swarmctl can act on; kill at most 2 (node node1: "),
            "{err}"
        );
        assert!(err.contains("node node2: ") && err.contains("the run has no agent"), "{err}");
    }

    #[test]
    fn recovery_is_measured_to_the_streak_after_the_last_failure() {
        assert_eq!(recovery_s(1000, &[], None), Some(0.0), "no failure: nothing to recover from");
        assert_eq!(recovery_s(1000, &[1100, 2400], Some(2600)), Some(1.6));
        assert_eq!(recovery_s(1000, &[1100, 2400], None), None, "the streak never came");
        assert_eq!(recovery_s(1000, &[1100, 2400], Some(2000)), None, "a streak before a later failure is no recovery");
    }
}
