//! Scaling: under saturating load (sessions sending back to back), the server is scaled from
//! its configured count through each step and back; at each count, the time to converge and
//! the throughput measured over a window after it. The configured count is restored whatever
//! happens (an error, Ctrl-C).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{run_load, Ctx};
use crate::engine::{converge, stack};
use crate::exit::Verdict;
use crate::load::engine::Live;
use crate::load::workload::Model;
use crate::report::{Phase, ScaleStep, Scaling};
use crate::units::unix_now_ms;

/// Settling time after convergence: Traefik polls the swarm every `lb.refresh` (1 s), so a
/// new task gets traffic only after the next poll.
const SETTLE: Duration = Duration::from_secs(2);

/// Throughput at the most replicas over a perfect multiple of the first count's.
pub fn linearity(steps: &[ScaleStep]) -> Option<f64> {
    let first = steps.first()?;
    let top = steps.iter().max_by_key(|s| s.replicas)?;
    if top.replicas == first.replicas || first.rps <= 0.0 {
        return None;
    }
    Some((top.rps / first.rps) / (top.replicas as f64 / first.replicas as f64))
}

/// Scales through the steps under load and back, and restores the configured count whatever
/// happened (its outcome is in the phase, also when a step failed).
pub async fn measure(ctx: &Ctx) -> anyhow::Result<Phase> {
    let mut phase = Phase::default();
    let service = ctx.server_service();
    let base = ctx.config.server.replicas as u64;
    let mut scaling = Scaling { service: service.clone(), ..Default::default() };
    let outcome = steps(ctx, &mut scaling).await;
    // Restore, whatever happened: a scaling test must never leave the stack scaled.
    scaling.restored = restore(ctx, &service, base).await;
    scaling.linearity = linearity(&scaling.steps);
    match outcome {
        Ok(load) => {
            let slo = &ctx.config.slo;
            let ok = load.summary.success_ratio >= slo.success_ratio && load.summary.requests_total > 0;
            let mut reasons: Vec<String> = scaling
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{} replicas: converged in {:.1} s, {:.1} req/s ({:.1} per replica), p99 {:.2} ms",
                        s.replicas, s.converge_s, s.rps, s.rps_per_replica, s.p99_ms
                    )
                })
                .collect();
            if let Some(l) = scaling.linearity {
                reasons.push(format!("linearity {l:.2} (1.00: throughput grows in proportion to replicas)"));
            }
            reasons.push(format!(
                "success {:.3} % over the phase {} the SLO of {:.2} %",
                load.summary.success_ratio * 100.0,
                if ok { "meets" } else { "misses" },
                slo.success_ratio * 100.0
            ));
            reasons.push(if scaling.restored {
                format!("restored to {base} replicas")
            } else {
                format!("NOT restored to {base} replicas: run `swarmctl up` to restore the stack")
            });
            phase.verdict = Verdict::judged(ctx.cancel.is_cancelled(), ok && scaling.restored);
            phase.reasons = reasons;
            phase.load = Some(load);
        }
        Err(e) => {
            phase.verdict = if ctx.cancel.is_cancelled() { Verdict::Interrupted } else { Verdict::Error };
            phase.reasons = vec![
                crate::error_text(&e),
                if scaling.restored {
                    format!("restored to {base} replicas")
                } else {
                    format!("NOT restored to {base} replicas: run `swarmctl up` to restore the stack")
                },
            ];
        }
    }
    phase.scaling = Some(scaling);
    Ok(phase)
}

/// Puts `service` back at `base` replicas when it is not, and waits until it runs them. Not
/// the user's token: the first Ctrl-C must not stop the restore (the second one exits).
async fn restore(ctx: &Ctx, service: &str, base: u64) -> bool {
    let now = match ctx.engine.service(service).await.map(|s| s.replicas) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read the replicas of {service}: {e}");
            return false;
        }
    };
    if now != base {
        ctx.say(format!("[scaling] restoring {service} to {base} replicas"));
        ctx.rec.event("scale", format!("{now} → {base} (restore)"));
    }
    ctx.rec.set_replicas(base);
    let timeout = ctx.config.test.scaling.converge_timeout.0;
    match scale_to(ctx.engine.as_ref(), &ctx.desired, service, base, timeout, &CancellationToken::new()).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("{}", crate::error_text(&e));
            false
        }
    }
}

/// Sets `service` to `n` replicas (when it is not already) and waits until exactly that many
/// run: a scale-down has converged only once the surplus tasks have really stopped (drained,
/// within their grace period). The seconds it took.
pub async fn scale_to(
    engine: &dyn crate::engine::Engine,
    desired: &crate::convert::DesiredStack,
    service: &str,
    n: u64,
    timeout: Duration,
    cancel: &CancellationToken,
) -> anyhow::Result<f64> {
    let asked = Instant::now();
    if engine.service(service).await?.replicas != n {
        stack::scale(engine, desired, service, n).await?;
    }
    for attempt in 0..3 {
        converge::wait(engine, &[service.to_string()], timeout, Duration::ZERO, cancel, &mut |_| {}).await?;
        // Swarm can lose a scale-down that comes while the tasks of the scale-up before it are
        // still being created: they start after the count went down, and stay (seen here with
        // Ctrl-C right after a step). Written again, the count is reconciled.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let wanted = engine.tasks(service, true).await?.iter().filter(|t| t.desired_running).count() as u64;
        if wanted <= n || attempt == 2 {
            break;
        }
        tracing::warn!("{service}: {wanted} tasks meant to run at {n} replicas; writing the count again");
        stack::scale(engine, desired, service, n).await?;
    }
    Ok(asked.elapsed().as_secs_f64())
}

async fn steps(ctx: &Ctx, scaling: &mut Scaling) -> anyhow::Result<crate::load::RunResult> {
    let cfg = &ctx.config.test.scaling;
    let profile = ctx.phase_profile();
    let service = scaling.service.clone();
    let base = ctx.config.server.replicas as u64;
    let current = ctx.engine.service(&service).await?.replicas;
    if current != base {
        anyhow::bail!("{service} runs {current} replicas, the stack says {base}: run `swarmctl up` first");
    }
    let mut counts = vec![base];
    counts.extend(cfg.steps.iter().copied());
    counts.push(base);

    let mut o = ctx.load_plan(&profile).await?;
    o.sessions = cfg.sessions as usize;
    o.model = Model::Closed { think: Duration::ZERO };
    o.workers = 1;
    o.ramp = o.ramp.max(o.sessions as f64);
    // Long enough for every step at its slowest; stopped as soon as the last one is measured.
    let per_step = cfg.converge_timeout.0 + SETTLE + cfg.hold.0 + Duration::from_secs(5);
    o.hold = per_step * counts.len() as u32 + Duration::from_secs(10);
    ctx.say(format!(
        "[scaling] {} sessions back to back; replicas {}",
        o.sessions,
        counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" → ")
    ));
    let stop = CancellationToken::new();
    // Steps measured so far, kept when a later one fails.
    let measured = std::sync::Mutex::new(Vec::new());
    let load = run_load(ctx, "scaling", &o, Arc::new(Live::default()), stop.clone());
    tokio::pin!(load);
    let steps = async {
        // Let the sessions open and the rate settle before the first window.
        tokio::time::sleep(Duration::from_secs_f64(o.sessions as f64 / o.ramp) + SETTLE).await;
        let mut now = base;
        let mut windows = Vec::new();
        for &n in &counts {
            if ctx.cancel.is_cancelled() {
                anyhow::bail!("interrupted");
            }
            let mut converge_s = 0.0;
            if n != now {
                ctx.rec.event("scale", format!("{now} → {n}"));
                ctx.rec.set_replicas(n);
                converge_s =
                    scale_to(ctx.engine.as_ref(), &ctx.desired, &service, n, cfg.converge_timeout.0, &ctx.cancel)
                        .await?;
                ctx.rec.event("converged", format!("{n} replicas in {converge_s:.1} s"));
                now = n;
                tokio::time::sleep(SETTLE).await;
            }
            let from = unix_now_ms();
            tokio::time::sleep(cfg.hold.0).await;
            let to = unix_now_ms();
            let points: Vec<_> =
                ctx.rec.points_since(from).into_iter().filter(|p| p.at_ms <= to && p.phase == "scaling").collect();
            let secs = points.len().max(1) as f64;
            let requests: u64 = points.iter().map(|p| p.requests).sum();
            let ok: u64 = points.iter().map(|p| p.ok).sum();
            let rps = requests as f64 / secs;
            let step = ScaleStep {
                replicas: n,
                converge_s,
                rps,
                rps_per_replica: rps / n as f64,
                success_ratio: if requests == 0 { 0.0 } else { ok as f64 / requests as f64 },
                p99_ms: points.iter().map(|p| p.p99_ms).fold(0.0, f64::max),
                ..Default::default()
            };
            windows.push((from, to));
            ctx.say(format!(
                "[scaling] {n} replicas: converged in {converge_s:.1} s, {rps:.0} req/s ({:.0} per replica)",
                step.rps_per_replica
            ));
            measured.lock().unwrap_or_else(|p| p.into_inner()).push(step);
        }
        anyhow::Ok(windows)
    };
    tokio::pin!(steps);
    let stepped = tokio::select! {
        r = &mut steps => r,
        r = &mut load => {
            let r = r?;
            if ctx.cancel.is_cancelled() {
                anyhow::bail!("interrupted during the scaling steps: {}", super::ended_early(&r));
            }
            anyhow::bail!("the load ended before the scaling steps did: {}", super::ended_early(&r));
        }
    };
    stop.cancel();
    scaling.steps = measured.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let result = load.await?;
    let windows = stepped?;
    // Prometheus sees each window a scrape (and a discovery) later: ask about them afterwards,
    // each evaluated at its own end.
    if let Some(p) = ctx.prometheus() {
        tokio::time::sleep(ctx.config.prometheus.scrape_interval.0 * 2).await;
        for (step, (from, to)) in scaling.steps.iter_mut().zip(windows) {
            let (rps, sessions) = by_slot(&p, from, to, profile.transport).await;
            step.rps_by_slot = rps;
            step.sessions_by_slot = sessions;
        }
    }
    Ok(result)
}

/// Per-replica requests/s over a window and sessions at its end, by slot, from Prometheus.
async fn by_slot(
    p: &super::prom::Prometheus,
    from_ms: u64,
    to_ms: u64,
    transport: crate::config::ClientTransport,
) -> (std::collections::BTreeMap<String, f64>, std::collections::BTreeMap<String, f64>) {
    let w = (to_ms.saturating_sub(from_ms) / 1000).max(2);
    let at = to_ms as f64 / 1000.0;
    let rps = p.by_at(&format!("sum by (slot) (rate(mcp_requests_total{{job=\"mcp\"}}[{w}s]))"), "slot", at).await;
    let sessions = match transport {
        crate::config::ClientTransport::Http => "sum by (slot) (mcp_sessions_active{job=\"mcp\"})",
        _ => "sum by (slot) (mcp_connections_active{job=\"mcp\",transport!=\"http\"})",
    };
    let sessions = p.by_at(sessions, "slot", at).await;
    (rps.unwrap_or_default(), sessions.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::with_stack;
    use crate::engine::Engine;

    const SERVER: &str = "swarmctl-ci_server";

    #[tokio::test(start_paused = true)]
    async fn each_step_converges_to_exactly_its_count_and_back() {
        let (fake, desired) = with_stack(2, &[]).await;
        let never = CancellationToken::new();
        for n in [5, 2, 3] {
            scale_to(&fake, &desired, SERVER, n, Duration::from_secs(90), &never).await.unwrap();
            assert_eq!(fake.service(SERVER).await.unwrap().replicas, n);
            let running = fake.tasks(SERVER, false).await.unwrap().iter().filter(|t| t.is_running()).count();
            assert_eq!(running as u64, n, "after scaling to {n}");
        }
        // The count is the only change: the tasks that ran at 2 replicas still run at 3.
        let updates = fake.calls().iter().filter(|c| *c == &format!("update service {SERVER}")).count();
        assert_eq!(updates, 3);
        let spec = fake.spec(SERVER).unwrap();
        assert_eq!(
            desired.services.iter().find(|s| s.name.as_deref() == Some(SERVER)).unwrap().task_template,
            spec.task_template
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stack_deployed_otherwise_is_not_scaled() {
        let (fake, _) = with_stack(0, &[]).await;
        let other = crate::deploy::Source {
            stack: Some("ci".into()),
            sets: vec!["server.resources.limits.cpus=0.25".into()],
            templates: None,
        };
        let (_, desired) = other.prepare(Some("swarmctl/mcp-server:test".into())).unwrap();
        let err =
            scale_to(&fake, &desired, SERVER, 5, Duration::from_secs(90), &CancellationToken::new()).await.unwrap_err();
        assert!(format!("{err:#}").contains("run `swarmctl up` with the same stack"), "{err:#}");
        assert_eq!(fake.service(SERVER).await.unwrap().replicas, 3, "nothing changed");
    }

    fn step(replicas: u64, rps: f64) -> ScaleStep {
        ScaleStep { replicas, rps, ..Default::default() }
    }

    #[test]
    fn linearity_compares_the_largest_count_with_the_first() {
        assert_eq!(linearity(&[step(3, 300.0), step(6, 600.0), step(2, 200.0), step(3, 300.0)]), Some(1.0));
        assert_eq!(linearity(&[step(3, 300.0), step(6, 330.0)]), Some(0.55));
        assert_eq!(linearity(&[step(3, 300.0)]), None, "one count says nothing about scaling");
        assert_eq!(linearity(&[]), None);
    }
}
