//! Incremental: session counts held one after another (1K → 10K → 50K → 100K by default),
//! each a load run of its own with a verdict; a stage larger than this machine can open is
//! capped at what the pre-flight found feasible, and the report says so.

use super::{judge_load, Ctx, MAX_WORKERS};
use crate::exit::Verdict;
use crate::report::{Phase, Stage};

/// Sessions one stage can open from this machine: per process × processes we allow (the
/// client side of a single-machine test shares the machine with the stack).
pub fn feasible_sessions(per_process: u64, max_workers: u64) -> u64 {
    per_process.saturating_mul(max_workers)
}

/// Runs the stages in turn; `notes` hears what was capped.
pub async fn measure(ctx: &Ctx, notes: &mut Vec<String>) -> anyhow::Result<Phase> {
    let mut phase = Phase::default();
    let mut error = false;
    let cfg = &ctx.config.test.incremental;
    let profile = ctx.phase_profile();
    let per_process = (crate::load::sessions_per_process() as f64 * 0.95) as u64;
    let feasible = feasible_sessions(per_process, MAX_WORKERS);
    let mut failed = false;
    for &asked in &cfg.stages {
        if ctx.cancel.is_cancelled() {
            break;
        }
        let run_n = asked.min(feasible);
        if run_n < asked {
            notes.push(format!(
                "incremental stage {asked} capped at {run_n} sessions: {MAX_WORKERS} client processes × {per_process} open files each"
            ));
        }
        let label = format!("incremental-{run_n}");
        ctx.rec.event("stage", &label);
        let mut p = profile.clone();
        p.sessions = run_n;
        p.hold = cfg.hold;
        let result = async {
            let plan = ctx.load_plan(&p).await?;
            ctx.say(format!("[incremental] {run_n} sessions ({} processes), held {}", plan.workers, cfg.hold));
            super::run_via(ctx, &label, &plan, p.transport).await
        }
        .await;
        match result {
            Ok(load) => {
                let (verdict, reasons) = judge_load(&ctx.config.slo, &load);
                failed |= !verdict.passed();
                phase.reasons.push(format!("{run_n} sessions: {verdict}: {}", reasons.join("; ")));
                phase.stages.push(Stage { sessions: asked, sessions_run: run_n, verdict, load });
            }
            Err(e) => {
                // The stages run so far stay in the report.
                error = true;
                phase.reasons.push(format!("{run_n} sessions: {}", crate::error_text(&e)));
                break;
            }
        }
    }
    let interrupted = ctx.cancel.is_cancelled() || phase.stages.iter().any(|s| s.verdict == Verdict::Interrupted);
    phase.verdict = if error && !interrupted {
        Verdict::Error
    } else {
        Verdict::judged(interrupted, !failed && !phase.stages.is_empty())
    };
    Ok(phase)
}
