//! SUMMARY.txt and FINAL_REPORT.md, from a `TestRun` alone.

use std::fmt::Write;

use super::{Phase, TestRun};

fn secs(ms: u64, from: u64) -> f64 {
    ms.saturating_sub(from) as f64 / 1000.0
}

fn opt_s(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "not recovered".into())
}

/// One line per phase headline figure, as the terminal shows it at the end of a run.
pub fn summary(r: &TestRun) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "swarmctl {} {} on stack {}: {} ({:.0} s)",
        r.version,
        r.kind,
        r.stack,
        r.verdict.upper(),
        secs(r.finished_ms, r.started_ms)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(out, "stopped: {e}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for p in &r.phases {
        let _ = writeln!(out, "{:<12} {:<11} {}", p.name, p.verdict.upper(), headline(p));
        for reason in &p.reasons {
            let _ = writeln!(out, "             - {reason}");
        }
    }
    out
}

/// The phase's key figures in one line.
fn headline(p: &Phase) -> String {
    if let Some(n) = &p.network {
        return format!(
            "slot {}: {}: p99 {:.0} ms during (before {:.0} ms), {} errors, {}",
            n.slot,
            n.impairment.describe(),
            n.p99_during_ms,
            n.p99_before_ms,
            n.errors.values().sum::<u64>(),
            if n.cleared_ms.is_some() && n.netem_left.is_empty() { "removed" } else { "NOT removed" }
        );
    }
    if let Some(u) = &p.update {
        return format!(
            "{} {}{}: {} failed requests, {} sessions moved, p99 {:.0} ms at worst",
            if u.release == "drain" { "drain:".to_string() } else { format!("{} release", u.release) },
            u.outcome,
            u.finished_ms.map(|f| format!(" after {:.1} s", secs(f, u.released_ms))).unwrap_or_default(),
            u.failed_requests,
            u.sessions_moved,
            u.p99_during_ms
        );
    }
    if let Some(h) = &p.hang {
        return format!(
            "slot {} stopped: p99 {:.0} ms while stopped, {} errors, recovery {}",
            h.slot,
            h.p99_while_stopped_ms,
            h.errors.values().sum::<u64>(),
            opt_s(h.recovery_s)
        );
    }
    if let Some(f) = &p.failover {
        return format!(
            "recovery {}, {} errors after the kill, sessions dropped {} / re-established {}",
            opt_s(f.recovery_s),
            f.errors.values().sum::<u64>(),
            f.sessions_dropped,
            f.sessions_reestablished
        );
    }
    if let Some(s) = &p.scaling {
        let steps: Vec<String> =
            s.steps.iter().map(|st| format!("{}→{:.0} req/s ({:.1} s)", st.replicas, st.rps, st.converge_s)).collect();
        return format!(
            "{}; linearity {}",
            steps.join(", "),
            s.linearity.map(|l| format!("{l:.2}")).unwrap_or_else(|| "n/a".into())
        );
    }
    if !p.stages.is_empty() {
        let st: Vec<String> = p
            .stages
            .iter()
            .map(|s| format!("{}: {} p99 {:.1} ms", s.sessions_run, s.verdict, s.load.summary.latency_ms.p99))
            .collect();
        return st.join(", ");
    }
    match &p.load {
        Some(l) => format!(
            "{} requests, {:.3} % ok, {:.1} req/s, p99 {:.2} ms, sessions peak {}",
            l.summary.requests_total,
            l.summary.success_ratio * 100.0,
            l.summary.throughput_rps,
            l.summary.latency_ms.p99,
            l.summary.sessions_peak
        ),
        None => String::new(),
    }
}

/// FINAL_REPORT.md: verdicts, the figures behind them, and how each was measured.
pub fn markdown(r: &TestRun) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# swarmctl {}: {}\n", r.kind, r.verdict.upper());
    let _ = writeln!(
        md,
        "Stack `{}`, swarmctl {}, {:.0} s. Every figure below was measured during this run; \
         `results.json` holds them all, and `swarmctl report render` rebuilds this file from it.\n",
        r.stack,
        r.version,
        secs(r.finished_ms, r.started_ms)
    );
    if let Some(e) = &r.error {
        let _ = writeln!(md, "**The run stopped early:** {e}\n");
    }
    if let Some(c) = &r.context {
        let _ = writeln!(md, "| ran on | |\n|---|---|");
        for (what, value) in c.rows() {
            let _ = writeln!(md, "| {what} | {} |", value.replace('|', "\\|"));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Objectives: success ≥ {:.2} %, p99 ≤ {} ms; failover: recovery ≤ {} s and success ≥ {:.2} %.\n",
        r.slo.success_ratio * 100.0,
        r.slo.p99_ms,
        r.slo.failover_recovery_s,
        r.slo.failover_success_ratio * 100.0
    );
    for n in &r.notes {
        let _ = writeln!(md, "- note: {n}");
    }
    if !r.notes.is_empty() {
        md.push('\n');
    }
    let _ = writeln!(md, "| phase | verdict | figures |\n|---|---|---|");
    for p in &r.phases {
        let _ = writeln!(md, "| {} | {} | {} |", p.name, p.verdict.upper(), headline(p));
    }
    for p in &r.phases {
        let _ = writeln!(md, "\n## {} — {}\n", p.name, p.verdict.upper());
        for reason in &p.reasons {
            let _ = writeln!(md, "- {reason}");
        }
        if let Some(l) = &p.load {
            let s = &l.summary;
            let _ = writeln!(
                md,
                "\n| requests | ok | success | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | sessions peak |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {:.3} % | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                s.requests_total,
                s.requests_ok,
                s.success_ratio * 100.0,
                s.throughput_rps,
                s.latency_ms.p50,
                s.latency_ms.p90,
                s.latency_ms.p99,
                s.latency_ms.p999,
                s.latency_ms.max,
                s.sessions_peak
            );
            if !s.errors.is_empty() {
                let e: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
                let _ = writeln!(md, "\nErrors: {}.", e.join(", "));
            }
            if let Some(rec) = &p.reconciliation {
                let _ = writeln!(
                    md,
                    "\nClient and server views: {} (sent {}, answered {}, servers counted {}).",
                    rec.note,
                    rec.client_sent,
                    rec.client_answered,
                    rec.server_received.map(|v| format!("{v:.0}")).unwrap_or("—".into())
                );
            }
        }
        if let Some(u) = &p.update {
            let at = |ms: Option<u64>| ms.map(|m| format!("+{:.2} s", secs(m, u.released_ms))).unwrap_or("—".into());
            let _ = writeln!(
                md,
                "\n| release | policy | swarm | new tasks running / failed | failed requests | sessions moved | first / last failure | sessions dropped / re-established |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {} {} | {} / {} | {} | {} | {} / {} | {} / {} |",
                u.release,
                u.policy,
                u.outcome,
                at(u.finished_ms),
                u.tasks_started,
                u.tasks_failed,
                u.failed_requests,
                u.sessions_moved,
                at(u.first_error_ms),
                at(u.last_error_ms),
                u.sessions_dropped,
                u.sessions_reestablished
            );
        }
        if let Some(n) = &p.network {
            let at = |ms: Option<u64>| ms.map(|m| format!("+{:.2} s", secs(m, n.applied_ms))).unwrap_or("—".into());
            let _ = writeln!(
                md,
                "\n| slot | node | impairment | interfaces | removed | netem left | p99 before / during | sessions dropped / re-established |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {:.0} / {:.0} ms | {} / {} |",
                n.slot,
                if n.node.is_empty() { "—".to_string() } else { n.node.chars().take(12).collect() },
                n.impairment.describe(),
                n.interfaces.join(", "),
                n.clear_error.clone().unwrap_or_else(|| at(n.cleared_ms)),
                if n.netem_left.is_empty() { "none".to_string() } else { n.netem_left.join(", ") },
                n.p99_before_ms,
                n.p99_during_ms,
                n.sessions_dropped,
                n.sessions_reestablished
            );
        }
        if let Some(h) = &p.hang {
            let at = |ms: Option<u64>| ms.map(|m| format!("+{:.2} s", secs(m, h.stopped_ms))).unwrap_or("—".into());
            let _ = writeln!(
                md,
                "\n| slot | task stopped | node | resumed | first failure | last failure | sessions dropped / re-established |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} / {} |",
                h.slot,
                h.task.chars().take(12).collect::<String>(),
                if h.node.is_empty() { "—".to_string() } else { h.node.chars().take(12).collect() },
                h.resume_error.clone().unwrap_or_else(|| at(h.resumed_ms)),
                at(h.first_error_ms),
                at(h.last_error_ms),
                h.sessions_dropped,
                h.sessions_reestablished
            );
        }
        if let Some(f) = &p.failover {
            // On several nodes, where each kill and its replacement ran; with the agent's clock,
            // when the node's engine had done the kill.
            let nodes: std::collections::BTreeSet<&str> = f
                .kills
                .iter()
                .flat_map(|k| [k.node.as_str(), k.replacement_node.as_str()])
                .filter(|n| !n.is_empty())
                .collect();
            let several = nodes.len() > 1;
            let timed = f.kills.iter().any(|k| k.killed_ms.is_some());
            let short = |n: &str| if n.is_empty() { "—".to_string() } else { n[..n.len().min(12)].to_string() };
            let _ = writeln!(
                md,
                "\n| slot | task killed |{}{} replacement created | replacement running |{}\n|---|---|{}{}---|---|{}",
                if several { " node |" } else { "" },
                if timed { " killed |" } else { "" },
                if several { " replacement node |" } else { "" },
                if several { "---|" } else { "" },
                if timed { "---|" } else { "" },
                if several { "---|" } else { "" },
            );
            for k in &f.kills {
                let at = |v: Option<u64>| v.map(|ms| format!("+{:.2} s", secs(ms, f.kill_ms))).unwrap_or("—".into());
                let _ = writeln!(
                    md,
                    "| {} | {} |{}{} {} | {} |{}",
                    k.slot,
                    &k.task[..k.task.len().min(12)],
                    if several { format!(" {} |", short(&k.node)) } else { String::new() },
                    if timed { format!(" {} |", at(k.killed_ms)) } else { String::new() },
                    at(k.replacement_created_ms),
                    at(k.replacement_running_ms),
                    if several { format!(" {} |", short(&k.replacement_node)) } else { String::new() },
                );
            }
            let _ = writeln!(
                md,
                "\nClient-visible recovery: **{}** (first of {} successes in a row after the last failure). \
                 First failure {}, last {}; failures by class: {}. Sessions dropped {}, re-established {}. \
                 Worst per-second p99 until recovery: {:.1} ms. Success over the phase: {:.3} %.",
                opt_s(f.recovery_s),
                f.consecutive_ok,
                f.first_error_ms.map(|m| format!("+{:.2} s", secs(m, f.kill_ms))).unwrap_or("none".into()),
                f.last_error_ms.map(|m| format!("+{:.2} s", secs(m, f.kill_ms))).unwrap_or("none".into()),
                if f.errors.is_empty() {
                    "none".to_string()
                } else {
                    f.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
                },
                f.sessions_dropped,
                f.sessions_reestablished,
                f.p99_during_recovery_ms,
                f.success_ratio * 100.0
            );
        }
        if let Some(s) = &p.scaling {
            let _ = writeln!(
                md,
                "\n| replicas | converged in | req/s | req/s per replica | success | p99 ms | req/s by slot | sessions by slot |\n|---|---|---|---|---|---|---|---|"
            );
            for st in &s.steps {
                let by = |m: &std::collections::BTreeMap<String, f64>| {
                    if m.is_empty() {
                        "—".to_string()
                    } else {
                        m.iter().map(|(k, v)| format!("{k}: {v:.0}")).collect::<Vec<_>>().join(", ")
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {:.1} s | {:.1} | {:.1} | {:.3} % | {:.2} | {} | {} |",
                    st.replicas,
                    st.converge_s,
                    st.rps,
                    st.rps_per_replica,
                    st.success_ratio * 100.0,
                    st.p99_ms,
                    by(&st.rps_by_slot),
                    by(&st.sessions_by_slot)
                );
            }
            let _ = writeln!(
                md,
                "\nLinearity (throughput at the most replicas ÷ a perfect multiple of the first step's): {}. Restored to the configured count: {}.",
                s.linearity.map(|l| format!("{l:.2}")).unwrap_or("n/a".into()),
                if s.restored { "yes" } else { "**no**" }
            );
        }
        if !p.stages.is_empty() {
            let _ = writeln!(
                md,
                "\n| sessions | run | verdict | success | req/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|"
            );
            for st in &p.stages {
                let s = &st.load.summary;
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.3} % | {:.1} | {:.2} | {:.2} |",
                    st.sessions,
                    st.sessions_run,
                    st.verdict.upper(),
                    s.success_ratio * 100.0,
                    s.throughput_rps,
                    s.latency_ms.p50,
                    s.latency_ms.p99
                );
            }
        }
    }
    if !r.events.is_empty() {
        let _ = writeln!(md, "\n## Events\n\n| at | event | detail |\n|---|---|---|");
        for e in &r.events {
            let _ = writeln!(md, "| +{:.2} s | {} | {} |", secs(e.at_ms, r.started_ms), e.kind, e.detail);
        }
    }
    if !r.resources.is_empty() {
        let mut slots: std::collections::BTreeMap<i64, Vec<&super::ResourceSample>> = Default::default();
        for s in &r.resources {
            slots.entry(s.slot).or_default().push(s);
        }
        // The most sessions any load phase held, spread evenly over the replicas (round robin
        // direct, Traefik's balancing otherwise).
        // Replicas that could not be read held their share of the sessions all the same.
        let peak = r.phases.iter().filter_map(|p| p.load.as_ref()).map(|l| l.summary.sessions_peak).max().unwrap_or(0);
        let replicas = slots.len() + r.unmeasured.iter().filter(|u| !slots.contains_key(&u.slot)).count();
        let per_replica = peak as f64 / replicas as f64;
        // On several nodes each row says which one (short node IDs: nodes may share a hostname).
        let nodes: std::collections::BTreeSet<&str> =
            r.resources.iter().map(|s| s.node.as_str()).chain(r.unmeasured.iter().map(|u| u.node.as_str())).collect();
        let several = nodes.len() > 1;
        let node_of = |n: &str| if several { format!(" {} |", &n[..n.len().min(12)]) } else { String::new() };
        let _ = writeln!(
            md,
            "\n## Replica resources (Engine API)\n\nMemory first: read before the phases began. Per session: (largest − first) over {per_replica:.0} sessions, the {peak} the run held at most shared by the {replicas} replica(s).\n\n| slot |{} samples | CPU mean | CPU max | memory first | memory max | per session |\n|---|{}---|---|---|---|---|---|",
            if several { " node |" } else { "" },
            if several { "---|" } else { "" },
        );
        for (slot, v) in slots {
            let loaded: Vec<&&super::ResourceSample> = v.iter().filter(|s| !s.baseline).collect();
            let mean = loaded.iter().map(|s| s.cpu_cores).sum::<f64>() / loaded.len().max(1) as f64;
            let max = loaded.iter().map(|s| s.cpu_cores).fold(0.0, f64::max);
            // The baseline, read before the phases; results from before it had one: the earliest.
            let first = v.iter().min_by_key(|s| (!s.baseline, s.at_ms)).map_or(0, |s| s.memory_bytes);
            let mem = v.iter().map(|s| s.memory_bytes).max().unwrap_or(0);
            let per_session = if per_replica >= 1.0 {
                format!("{:.1} KiB", mem.saturating_sub(first) as f64 / 1024.0 / per_replica)
            } else {
                "—".into()
            };
            let _ = writeln!(
                md,
                "| {slot} |{} {} | {mean:.2} cores | {max:.2} cores | {:.1} MiB | {:.1} MiB | {per_session} |",
                node_of(&v[0].node),
                loaded.len(),
                first as f64 / 1048576.0,
                mem as f64 / 1048576.0
            );
        }
        for u in &r.unmeasured {
            let _ = writeln!(md, "| {} |{} not measured: {} | | | | | |", u.slot, node_of(&u.node), u.reason);
        }
        // A replica keeps what earlier load left in its memory (the allocator's free lists),
        // and the sessions of this run reuse it: their growth then understates what a session
        // costs a fresh replica.
        let served_before = r.phases.first().and_then(|p| p.reconciliation.as_ref()?.server_before).unwrap_or(0.0);
        if served_before > 0.0 {
            let _ = writeln!(
                md,
                "\nThe replicas had served {served_before:.0} requests before this run: what that load left in their memory is in the first reading, so the per-session figures are the growth over it and may be less than a session costs a fresh replica (`swarmctl down`, then `up`, for fresh replicas)."
            );
        }
    }
    let _ = writeln!(
        md,
        "\n---\nLatency is corrected for coordinated omission (measured from when each request was due). \
         See docs/testing.md for how each phase and figure is measured."
    );
    md
}
