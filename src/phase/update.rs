//! Update, rollback and drain: under constant load through the load balancer, swarm is asked
//! to move the server's tasks. `update` replaces every task by one of the same spec under the
//! stack's `update` policy (as a new release of a working image would); `rollback` rolls out a
//! release whose tasks cannot start, which swarm must roll back by itself; `drain` drains the
//! worker node with the most replicas, as for maintenance, and makes it active again. Measured:
//! what clients saw (failed requests apart from the sessions that had to move, p99, recovery),
//! how long swarm took, and that the stack is as it was afterwards (its own spec, all its
//! replicas, the node active), put back if swarm did not.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{failover, run_load, Ctx};
use crate::engine::{stack, UpdateState};
use crate::exit::Verdict;
use crate::load::engine::Live;
use crate::report::{Phase, Update};
use crate::units::unix_now_ms;

/// How often swarm's progress is read.
const POLL: Duration = Duration::from_millis(250);

/// Which release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Every task replaced by one of the same spec.
    Restart,
    /// Tasks that cannot start: swarm must roll back.
    Broken,
    /// A worker node drained, its tasks moved to the others.
    Drain,
}

impl Release {
    fn name(self) -> &'static str {
        match self {
            Release::Restart => "restart",
            Release::Broken => "broken",
            Release::Drain => "drain",
        }
    }

    fn phase(self) -> &'static str {
        match self {
            Release::Restart => "update",
            Release::Broken => "rollback",
            Release::Drain => "drain",
        }
    }

    /// The outcome this release should end in.
    fn expected(self) -> &'static str {
        match self {
            Release::Restart => "completed",
            Release::Broken => "rolled back",
            Release::Drain => "moved",
        }
    }
}

/// What swarm's update state says, as the report names it; `None` while it goes on.
pub fn outcome(state: Option<&UpdateState>) -> Option<(&'static str, String)> {
    match state? {
        UpdateState::Updating | UpdateState::RollingBack(_) => None,
        UpdateState::Completed => Some(("completed", String::new())),
        UpdateState::Paused(m) => Some(("paused", m.clone())),
        UpdateState::RolledBack(m) => Some(("rolled back", m.clone())),
        UpdateState::RollbackPaused(m) => Some(("rollback paused", m.clone())),
    }
}

/// The stack's update policy in one line, as the report shows it.
fn policy(ctx: &Ctx) -> String {
    let u = &ctx.config.server.update;
    let order = serde_yaml::to_string(&u.order).unwrap_or_default();
    let action = serde_yaml::to_string(&u.failure_action).unwrap_or_default();
    format!(
        "{}, {} at a time, {} between batches, each watched {}, on failure {}",
        order.trim(),
        u.parallelism,
        u.delay,
        u.monitor,
        action.trim()
    )
}

/// Rolls out `release` under load and measures what clients saw.
pub async fn measure(ctx: &Ctx, release: Release) -> anyhow::Result<Phase> {
    let cfg = match release {
        Release::Drain => &ctx.config.test.drain,
        _ => &ctx.config.test.update,
    };
    let name = release.phase();
    let service = ctx.server_service();
    let base = ctx.config.server.replicas as u64;
    // A phase just before may have left swarm finishing a change: wait for it (1 min at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = ctx.engine.tasks(&service, true).await?;
        let running = tasks.iter().filter(|t| t.is_running()).count() as u64;
        let wanted = tasks.iter().filter(|t| t.desired_running).count() as u64;
        if running == base && wanted == base {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{service} runs {running} of its {base} replicas ({wanted} meant to run): run `swarmctl up` and wait until it is whole"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (node, policy) = match release {
        Release::Drain => {
            let (node, on_it) = drain_target(ctx).await?;
            let policy = format!("node {node}, {on_it} of the {base} replicas on it");
            (Some(node), policy)
        }
        _ => (None, policy(ctx)),
    };
    let profile = ctx.phase_profile();
    let mut load_plan = ctx.load_plan(&profile).await?;
    // Long enough for swarm at its slowest; stopped once the outcome has been watched.
    load_plan.hold = cfg.warmup.0 + cfg.timeout.0 + cfg.observe.0 + Duration::from_secs(5);
    load_plan.streak_goal = cfg.consecutive_ok;
    ctx.say(match release {
        Release::Drain => format!(
            "[{name}] {} sessions through the load balancer; after {} of load, drain {policy}",
            load_plan.sessions, cfg.warmup
        ),
        _ => format!(
            "[{name}] {} sessions through the load balancer; after {} of load, roll out a {} release of {service} ({policy})",
            load_plan.sessions,
            cfg.warmup,
            release.name(),
        ),
    });
    let live = Arc::new(Live::default());
    let stop = CancellationToken::new();
    let ramp = load_plan.ramp_time();
    let load = run_load(ctx, name, &load_plan, live.clone(), stop.clone());
    tokio::pin!(load);
    super::warm_up(load.as_mut(), ramp + cfg.warmup.0, "the release").await?;

    let dropped_before = live.sessions_dropped.load(Relaxed);
    let reestablished_before = live.sessions_reestablished.load(Relaxed);
    let released_ms = unix_now_ms();
    let written = match (release, &node) {
        (Release::Restart, _) => stack::restart(ctx.engine.as_ref(), &ctx.desired, &service).await,
        (Release::Broken, _) => stack::release_broken(ctx.engine.as_ref(), &ctx.desired, &service).await,
        (Release::Drain, Some(node)) => ctx.engine.set_availability(node, "drain").await,
        (Release::Drain, None) => unreachable!("a drain has its node"),
    };
    if let Err(e) = written {
        stop.cancel();
        let _ = (&mut load).await;
        if let Some(node) = &node {
            reactivate(ctx, node).await;
        }
        // The engine may have taken the write though its answer was lost: put it back.
        restore(ctx, &service, base).await;
        return Err(e.into());
    }
    let what = match &node {
        Some(node) => format!("node {node} drained"),
        None => format!("{} release of {service} handed to swarm", release.name()),
    };
    ctx.rec.event_at(released_ms, "release", &what);
    ctx.say(format!("[{name}] {what}"));

    let mut u = Update {
        service: service.clone(),
        release: release.name().into(),
        policy,
        released_ms,
        consecutive_ok: cfg.consecutive_ok,
        outcome: "unfinished".into(),
        ..Default::default()
    };
    let watched = watch(ctx, release, &mut u, node.as_deref(), base, cfg.timeout.0, load.as_mut()).await;
    if u.finished_ms.is_some() && watched.is_ok() {
        tokio::select! {
            _ = tokio::time::sleep(cfg.observe.0) => {}
            _ = ctx.cancel.cancelled() => {}
            _ = &mut load => {}
        }
    }
    stop.cancel();
    let result = load.await;
    // Whatever happened: the node active, the stack's own spec, all its replicas, before
    // anything else runs.
    let active = match &node {
        Some(node) => reactivate(ctx, node).await && rebalance(ctx, &service).await,
        None => true,
    };
    u.restored = restore(ctx, &service, base).await && active;
    let result = result?;
    if let Err(e) = watched {
        // Cut short (Ctrl-C, the load gone): what was measured and restored is still reported.
        let verdict = if ctx.cancel.is_cancelled() { Verdict::Interrupted } else { Verdict::Error };
        let reasons = vec![crate::error_text(&e), restored(release, &u)];
        return Ok(Phase { verdict, reasons, load: Some(result), update: Some(u), ..Default::default() });
    }

    let recovered_at = Some(live.streak_reached_ms.load(Relaxed)).filter(|at| *at > 0);
    let (times, errors) = super::failures_since(&live, released_ms);
    u.recovery_s = failover::recovery_s(released_ms, &times, recovered_at);
    u.sessions_moved = errors.get("session_expired").copied().unwrap_or(0);
    u.failed_requests = errors.values().sum::<u64>() - u.sessions_moved;
    u.errors = errors;
    u.first_error_ms = times.iter().min().copied();
    u.last_error_ms = times.iter().max().copied();
    u.p99_during_ms = super::worst_p99(ctx, name, released_ms, u.finished_ms.unwrap_or_else(unix_now_ms));
    u.sessions_dropped = live.sessions_dropped.load(Relaxed) - dropped_before;
    u.sessions_reestablished = live.sessions_reestablished.load(Relaxed) - reestablished_before;
    u.success_ratio = result.summary.success_ratio;
    let (verdict, reasons) = judge(ctx, release, &result, &u);
    Ok(Phase { verdict, reasons, load: Some(result), update: Some(u), ..Default::default() })
}

/// Follows swarm's update until it completes, rolls back, pauses (or, for a drain, until `base`
/// replicas run and none on `drained`), or `timeout` passes; notes each new task that runs or
/// fails on the timeline.
async fn watch(
    ctx: &Ctx,
    release: Release,
    u: &mut Update,
    drained: Option<&str>,
    base: u64,
    timeout: Duration,
    mut load: std::pin::Pin<&mut impl std::future::Future<Output = anyhow::Result<crate::load::RunResult>>>,
) -> anyhow::Result<()> {
    let name = release.phase();
    let deadline = Instant::now() + timeout;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    loop {
        let svc = ctx.engine.service(&u.service).await?;
        let tasks = ctx.engine.tasks(&u.service, false).await?;
        for t in &tasks {
            if t.created_ms.map_or(true, |c| c < u.released_ms) || seen.contains(&t.id) {
                continue;
            }
            let on = if t.node.is_empty() { String::new() } else { format!(" on node {}", t.node) };
            if t.is_running() {
                seen.insert(t.id.clone());
                u.tasks_started += 1;
                let at = t.state_since_ms.unwrap_or_else(unix_now_ms);
                ctx.rec.event_at(at, "replaced", format!("slot {}: new task running{on}", t.slot));
            } else if matches!(t.state.as_str(), "failed" | "rejected") {
                seen.insert(t.id.clone());
                u.tasks_failed += 1;
                if u.first_task_error.is_empty() {
                    u.first_task_error = t.reason();
                }
                let at = t.state_since_ms.unwrap_or_else(unix_now_ms);
                ctx.rec.event_at(
                    at,
                    "task failed",
                    format!("slot {}: new task {}{on}: {}", t.slot, t.state, t.reason()),
                );
            }
        }
        let ended = match drained {
            None => outcome(svc.update.as_ref()),
            Some(node) => {
                let running = tasks.iter().filter(|t| t.is_running() && t.node != node).count() as u64;
                let left = tasks.iter().any(|t| t.node == node && t.desired_running);
                (running >= base && !left).then(|| ("moved", String::new()))
            }
        };
        if let Some((outcome, message)) = ended {
            let at = unix_now_ms();
            u.finished_ms = Some(at);
            u.outcome = outcome.into();
            u.message = message;
            let took = at.saturating_sub(u.released_ms) as f64 / 1000.0;
            ctx.rec.event_at(at, "update", format!("{outcome} after {took:.1} s"));
            ctx.say(format!("[{name}] swarm: {outcome} after {took:.1} s"));
            return Ok(());
        }
        if Instant::now() >= deadline {
            ctx.say(format!("[{name}] swarm had not finished after {}", crate::units::Duration(timeout)));
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = ctx.cancel.cancelled() => anyhow::bail!("interrupted while swarm rolled out the release"),
            r = &mut load => {
                let r = r?;
                anyhow::bail!("the load ended before swarm finished: {}", super::ended_early(&r));
            }
        }
    }
}

/// The worker node to drain: an active one with the most running replicas (this engine's node
/// runs Traefik and the monitoring, and is never drained), and how many run there.
async fn drain_target(ctx: &Ctx) -> anyhow::Result<(String, u64)> {
    if let Some(why) = cannot_drain(ctx).await {
        anyhow::bail!("{why}");
    }
    let here = ctx.engine.membership().await?.node_id;
    let nodes = ctx.engine.nodes().await?;
    let tasks = ctx.engine.tasks(&ctx.server_service(), true).await?;
    let on = |id: &str| tasks.iter().filter(|t| t.is_running() && t.node == id).count() as u64;
    nodes
        .iter()
        .filter(|n| n.id != here && n.state == "ready" && n.availability == "active")
        .map(|n| (n.id.clone(), on(&n.id)))
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(id, n)| (*n, std::cmp::Reverse(id.clone())))
        .ok_or_else(|| {
            anyhow::anyhow!("no worker node runs a replica of {}: a drain would move nothing", ctx.server_service())
        })
}

/// Why this swarm cannot drain a node under the stack, if it cannot.
pub async fn cannot_drain(ctx: &Ctx) -> Option<String> {
    let here = match ctx.engine.membership().await {
        Ok(m) => m.node_id,
        Err(e) => return Some(format!("cannot read the swarm: {e}")),
    };
    let nodes = match ctx.engine.nodes().await {
        Ok(n) => n,
        Err(e) => return Some(format!("cannot list the swarm's nodes: {e}")),
    };
    if nodes.len() < 2 {
        return Some("a one-node swarm cannot drain: its tasks would have nowhere to go".into());
    }
    let workers = nodes.iter().filter(|n| n.id != here && n.state == "ready" && n.availability == "active").count();
    if workers == 0 {
        return Some(
            "no other node is ready and active: draining this one would take the load balancer with it".into(),
        );
    }
    // The replicas of the drained node must fit on the others its placement allows, or the
    // drain never ends.
    let service = ctx.server_service();
    let constraints: Vec<String> = (ctx.desired.services.iter())
        .find(|s| s.name.as_deref() == Some(service.as_str()))
        .and_then(|s| s.task_template.as_ref()?.placement.as_ref()?.constraints.clone())
        .unwrap_or_default();
    let eligible = (nodes.iter())
        .filter(|n| n.state == "ready" && n.availability == "active")
        .filter(|n| constraints.iter().all(|c| crate::plan::topology::satisfies(n, c).unwrap_or(true)))
        .count() as u64;
    let left = eligible.saturating_sub(1);
    let replicas = ctx.config.server.replicas as u64;
    if left == 0 {
        return Some(format!(
            "no other node satisfies the server's placement ({}): its replicas would have nowhere to go",
            constraints.join(", ")
        ));
    }
    match ctx.config.server.placement.max_replicas_per_node {
        Some(max) if u64::from(max) * left < replicas => Some(format!(
            "the {left} node(s) left after a drain cannot hold the {replicas} replicas at server.placement.max_replicas_per_node {max}"
        )),
        _ => None,
    }
}

/// Makes `node` active again, whatever happened; false when it could not.
async fn reactivate(ctx: &Ctx, node: &str) -> bool {
    for attempt in 0..5 {
        match ctx.engine.set_availability(node, "active").await {
            Ok(()) => {
                ctx.rec.event("active", format!("node {node} active again"));
                ctx.say(format!("[drain] node {node} active again"));
                return true;
            }
            Err(e) if attempt < 4 => {
                tracing::warn!("cannot make node {node} active again ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                ctx.say(format!(
                    "[drain] node {node} is still drained ({e}): `docker node update --availability active {node}`"
                ));
            }
        }
    }
    false
}

/// Spreads the replicas over every node again once the drained one is back: swarm does not move
/// tasks by itself, and the next phase or run would find the node empty. A forced update of the
/// stack's own spec, under its rolling-update policy, after the load.
async fn rebalance(ctx: &Ctx, service: &str) -> bool {
    ctx.rec.event("rebalance", format!("{service} rolled over to spread its replicas again"));
    ctx.say(format!("[drain] rolling {service} over to spread its replicas again"));
    match stack::restart(ctx.engine.as_ref(), &ctx.desired, service).await {
        Ok(()) => true,
        Err(e) => {
            ctx.say(format!("[drain] cannot spread {service} again: {e}"));
            false
        }
    }
}

/// Puts the stack's own spec back when the engine runs another (a rollback that did not
/// happen, Ctrl-C mid-release), and waits (at most 3 min) until all `base` replicas run it.
/// Not the user's token: the first Ctrl-C must not stop the restore (the second one exits).
async fn restore(ctx: &Ctx, service: &str, base: u64) -> bool {
    let engine = ctx.engine.as_ref();
    match stack::is_current(engine, &ctx.desired, service).await {
        Ok(true) => {}
        Ok(false) => {
            ctx.say(format!("[update] putting the stack's own spec of {service} back"));
            ctx.rec.event("restore", format!("the stack's own spec of {service} written back"));
            if let Err(e) = stack::reset(engine, &ctx.desired, service).await {
                tracing::warn!("cannot put the stack's spec of {service} back: {e}");
                return false;
            }
        }
        Err(e) => {
            tracing::warn!("cannot read {service}: {e}");
            return false;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let want = ctx.desired.services.iter().find(|s| s.name.as_deref() == Some(service)).map(stack::image_of);
    loop {
        let settled = async {
            let svc = engine.service(service).await?;
            let tasks = engine.tasks(service, true).await?;
            let running = tasks.iter().filter(|t| t.is_running()).count() as u64;
            let stopping = tasks.iter().any(|t| !t.desired_running && t.state == "running");
            let updating = matches!(svc.update, Some(UpdateState::Updating | UpdateState::RollingBack(_)));
            anyhow::Ok(running == base && !stopping && !updating && Some(svc.image.as_str()) == want)
        };
        match settled.await {
            Ok(true) => return stack::is_current(engine, &ctx.desired, service).await.unwrap_or(false),
            Ok(false) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(false) => {
                tracing::warn!("{service} did not run its {base} replicas of the stack's spec within 3 min");
                return false;
            }
            Err(e) => {
                tracing::warn!("cannot read {service}: {e}");
                return false;
            }
        }
    }
}

/// Whether the stack is as it was afterwards, in the phase's words.
fn restored(release: Release, u: &Update) -> String {
    let node_too = if release == Release::Drain { ", the node active again" } else { "" };
    if u.restored {
        format!("{} runs the stack's own spec on all its replicas{node_too}", u.service)
    } else {
        format!("{} does NOT run the stack's own spec on all its replicas{node_too}: run `swarmctl up`", u.service)
    }
}

/// Judged on what the policy, the drain and the load balancer decide: swarm ends where it
/// should, no request fails for another reason than its session having to move (within the
/// failover success ratio), every dropped session comes back, and the stack's spec runs after.
fn judge(ctx: &Ctx, release: Release, r: &crate::load::RunResult, u: &Update) -> (Verdict, Vec<String>) {
    let slo = &ctx.config.slo;
    let mut reasons = Vec::new();
    let took = u.finished_ms.map(|f| f.saturating_sub(u.released_ms) as f64 / 1000.0);
    let ended_well = u.outcome == release.expected();
    reasons.push(match (took, release) {
        (Some(s), Release::Restart) if ended_well => {
            format!("swarm replaced the {} tasks in {s:.1} s ({})", u.tasks_started, u.policy)
        }
        (Some(s), Release::Drain) if ended_well => format!(
            "swarm moved the replicas off the drained {} in {s:.1} s ({} new tasks running elsewhere)",
            u.policy, u.tasks_started
        ),
        (Some(s), Release::Broken) if ended_well => format!(
            "swarm rolled the release back by itself in {s:.1} s: {} new task(s) failed ({}), {} started",
            u.tasks_failed,
            if u.first_task_error.is_empty() { "no reason given" } else { &u.first_task_error },
            u.tasks_started
        ),
        (Some(s), _) => format!(
            "swarm's update ended {} after {s:.1} s, not {}{}",
            u.outcome,
            release.expected(),
            if u.message.is_empty() { String::new() } else { format!(": {}", u.message) }
        ),
        (None, Release::Drain) => format!("swarm had not moved the replicas within {}", ctx.config.test.drain.timeout),
        (None, _) => format!("swarm had not finished within {}", ctx.config.test.update.timeout),
    });
    let total = r.summary.requests_total.max(1);
    let ratio = 1.0 - u.failed_requests as f64 / total as f64;
    let clients_ok = ratio >= slo.failover_success_ratio && r.summary.requests_total > 0;
    reasons.push(format!(
        "{} failed requests{} after the release: success {:.3} % apart from moved sessions, {} the SLO of {:.2} %; p99 at worst {:.0} ms",
        u.failed_requests,
        if u.failed_requests == 0 {
            String::new()
        } else {
            format!(
                " ({})",
                u.errors
                    .iter()
                    .filter(|(k, _)| *k != "session_expired")
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        ratio * 100.0,
        if clients_ok { "meets" } else { "misses" },
        slo.failover_success_ratio * 100.0,
        u.p99_during_ms
    ));
    if u.sessions_moved > 0 || u.sessions_dropped > 0 {
        reasons.push(format!(
            "{} requests found their session gone with its replica (HTTP 404: the client must initialize again); sessions dropped {} / re-established {}",
            u.sessions_moved, u.sessions_dropped, u.sessions_reestablished
        ));
    }
    let sessions_back = u.sessions_reestablished >= u.sessions_dropped;
    reasons.push(restored(release, u));
    let interrupted = r.verdict == Verdict::Interrupted || ctx.cancel.is_cancelled();
    (Verdict::judged(interrupted, ended_well && clients_ok && sessions_back && u.restored), reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::with_stack;
    use crate::engine::Engine;

    const SERVER: &str = "swarmctl-ci_server";

    #[test]
    fn swarm_states_name_the_outcome_and_only_final_ones_end_the_watch() {
        assert_eq!(outcome(None), None);
        assert_eq!(outcome(Some(&UpdateState::Updating)), None);
        assert_eq!(outcome(Some(&UpdateState::RollingBack("x".into()))), None);
        assert_eq!(outcome(Some(&UpdateState::Completed)), Some(("completed", String::new())));
        assert_eq!(outcome(Some(&UpdateState::RolledBack("m".into()))), Some(("rolled back", "m".into())));
        assert_eq!(outcome(Some(&UpdateState::Paused("p".into()))), Some(("paused", "p".into())));
        assert_eq!(outcome(Some(&UpdateState::RollbackPaused("q".into()))), Some(("rollback paused", "q".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_replaces_every_task_and_leaves_the_stack_spec() {
        let (fake, desired) = with_stack(0, &[]).await;
        let before: BTreeSet<String> = fake.tasks(SERVER, true).await.unwrap().into_iter().map(|t| t.id).collect();
        stack::restart(&fake, &desired, SERVER).await.unwrap();
        let after: Vec<_> = fake.tasks(SERVER, true).await.unwrap().into_iter().filter(|t| t.is_running()).collect();
        assert_eq!(after.len(), 3);
        assert!(after.iter().all(|t| !before.contains(&t.id)), "every task new: {before:?} {after:?}");
        assert!(stack::is_current(&fake, &desired, SERVER).await.unwrap(), "the stack's own spec");
        // The next write without a release keeps the tasks (the counter is kept, not reset).
        stack::scale(&fake, &desired, SERVER, 3).await.unwrap();
        let kept: BTreeSet<String> = fake.tasks(SERVER, true).await.unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(kept, after.iter().map(|t| t.id.clone()).collect());
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_release_is_not_the_stack_spec_until_reset() {
        let (fake, desired) = with_stack(0, &[]).await;
        stack::release_broken(&fake, &desired, SERVER).await.unwrap();
        let spec = fake.spec(SERVER).unwrap();
        let command = spec.task_template.unwrap().container_spec.unwrap().command.unwrap();
        assert_eq!(command, [stack::BROKEN_COMMAND]);
        assert!(!stack::is_current(&fake, &desired, SERVER).await.unwrap(), "`up` would repair it");
        // A second release is refused: it would hide what the first left.
        assert!(stack::restart(&fake, &desired, SERVER).await.is_err());
        stack::reset(&fake, &desired, SERVER).await.unwrap();
        assert!(stack::is_current(&fake, &desired, SERVER).await.unwrap());
    }
}
