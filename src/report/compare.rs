//! Two runs side by side: the same figures of the phases both have, with regressions flagged.

use serde::Serialize;

use super::TestRun;

/// One figure in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delta {
    /// `phase.figure`, e.g. `baseline.p99_ms`.
    pub figure: String,
    /// In the first run.
    pub a: f64,
    /// In the second run.
    pub b: f64,
    /// `(b - a) / a`, when `a` is not 0.
    pub change: Option<f64>,
    /// Worse beyond the tolerance.
    pub regression: bool,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// What the runs ran on that differs, what most changes the figures first.
    pub context: Vec<String>,
    /// Relative tolerance used for latencies, throughput and recovery.
    pub tolerance: f64,
    /// Every figure both runs have.
    pub deltas: Vec<Delta>,
    /// Phases only one run has.
    pub unmatched: Vec<String>,
}

impl Comparison {
    /// True when any figure got worse beyond the tolerance.
    pub fn regressed(&self) -> bool {
        self.deltas.iter().any(|d| d.regression)
    }

    /// A table for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.context.is_empty() {
            out.push_str("the runs differ in what they ran on (A → B):\n");
            for c in &self.context {
                out.push_str(&format!("  {c}\n"));
            }
            out.push('\n');
        }
        out.push_str(&format!("{:<34} {:>12} {:>12} {:>9}\n", "figure", "A", "B", "change"));
        for d in &self.deltas {
            out.push_str(&format!(
                "{:<34} {:>12.3} {:>12.3} {:>9} {}\n",
                d.figure,
                d.a,
                d.b,
                d.change.map(|c| format!("{:+.1} %", c * 100.0)).unwrap_or_else(|| "—".into()),
                if d.regression { "REGRESSION" } else { "" }
            ));
        }
        for u in &self.unmatched {
            out.push_str(&format!("only in one run: {u}\n"));
        }
        out
    }
}

/// Higher is worse (latency, recovery) or lower is worse (throughput, success).
#[derive(Clone, Copy)]
enum Worse {
    Higher,
    Lower,
}

/// A success ratio that drops by more than this (absolute) is a regression, whatever the
/// relative tolerance: 99.9 % → 99.7 % matters even though it is a 0.2 % change.
const SUCCESS_DROP: f64 = 0.001;

/// Compares run `b` against run `a`.
pub fn compare(a: &TestRun, b: &TestRun, tolerance: f64) -> Comparison {
    let mut deltas = Vec::new();
    let mut unmatched = Vec::new();
    let push = |deltas: &mut Vec<Delta>, figure: String, va: f64, vb: f64, worse: Worse, success: bool| {
        let change = (va != 0.0).then(|| (vb - va) / va.abs());
        let regression = if success {
            vb < va - SUCCESS_DROP
        } else {
            match (worse, change) {
                (Worse::Higher, Some(c)) => c > tolerance,
                (Worse::Lower, Some(c)) => c < -tolerance,
                (Worse::Higher, None) => vb > 0.0,
                (Worse::Lower, None) => false,
            }
        };
        deltas.push(Delta { figure, a: va, b: vb, change, regression });
    };
    for pa in &a.phases {
        let Some(pb) = b.phases.iter().find(|p| p.name == pa.name) else {
            unmatched.push(format!("{} (A)", pa.name));
            continue;
        };
        let n = &pa.name;
        if let (Some(la), Some(lb)) = (&pa.load, &pb.load) {
            let (sa, sb) = (&la.summary, &lb.summary);
            push(&mut deltas, format!("{n}.success_ratio"), sa.success_ratio, sb.success_ratio, Worse::Lower, true);
            push(&mut deltas, format!("{n}.throughput_rps"), sa.throughput_rps, sb.throughput_rps, Worse::Lower, false);
            push(&mut deltas, format!("{n}.p50_ms"), sa.latency_ms.p50, sb.latency_ms.p50, Worse::Higher, false);
            push(&mut deltas, format!("{n}.p99_ms"), sa.latency_ms.p99, sb.latency_ms.p99, Worse::Higher, false);
        }
        if let (Some(fa), Some(fb)) = (&pa.failover, &pb.failover) {
            // Not recovering at all is the worst recovery there is.
            let r = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
            let (ra, rb) = (r(fa.recovery_s), r(fb.recovery_s));
            if ra.is_finite() && rb.is_finite() {
                push(&mut deltas, format!("{n}.recovery_s"), ra, rb, Worse::Higher, false);
            } else if ra.is_finite() != rb.is_finite() {
                deltas.push(Delta {
                    figure: format!("{n}.recovery_s"),
                    a: ra,
                    b: rb,
                    change: None,
                    regression: rb.is_infinite(),
                });
            }
        }
        if let (Some(sa), Some(sb)) = (&pa.scaling, &pb.scaling) {
            if let (Some(la), Some(lb)) = (sa.linearity, sb.linearity) {
                push(&mut deltas, format!("{n}.linearity"), la, lb, Worse::Lower, false);
            }
        }
    }
    for pb in &b.phases {
        if !a.phases.iter().any(|p| p.name == pb.name) {
            unmatched.push(format!("{} (B)", pb.name));
        }
    }
    let context = match (&a.context, &b.context) {
        (Some(ca), Some(cb)) => ca.differences(cb),
        (None, None) => Vec::new(),
        _ => vec!["one run records what it ran on, the other (older) does not".into()],
    };
    Comparison { context, tolerance, deltas, unmatched }
}
