//! CPU and memory of every running server replica, sampled through the Engine API every few
//! seconds while the phases run. CPU is the container's CPU time between two samples over
//! the wall time between them.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, Handle, Usage};
use crate::report::ResourceSample;

/// Reads every running replica once (the baseline, before any load), then samples every
/// `every` until `stop`; the task returns what it saw, baseline first.
pub async fn start(
    engine: Handle,
    service: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<ResourceSample>> {
    let mut out = Vec::new();
    let mut last: HashMap<String, Usage> = HashMap::new();
    round(engine.as_ref(), &service, &mut last, &mut out, true).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick is now: the baseline was just read
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            round(engine.as_ref(), &service, &mut last, &mut out, false).await;
        }
        out
    })
}

/// One reading of every running replica: the baseline (memory only), or a sample against
/// the container's previous reading (a container first seen now gets none yet).
async fn round(
    engine: &dyn Engine,
    service: &str,
    last: &mut HashMap<String, Usage>,
    out: &mut Vec<ResourceSample>,
    baseline: bool,
) {
    let Ok(tasks) = engine.tasks(service, false).await else { return };
    for t in tasks.iter().filter(|t| t.is_running()) {
        let Some(c) = &t.container else { continue };
        let Ok(u) = engine.usage(c).await else { continue };
        let sample = |cpu_cores| ResourceSample {
            at_ms: u.at_ms,
            slot: t.slot,
            cpu_cores,
            memory_bytes: u.memory_bytes,
            baseline,
        };
        if baseline {
            out.push(sample(0.0));
        } else if let Some(prev) = last.get(c) {
            let wall_ns = u.at_ms.saturating_sub(prev.at_ms) as f64 * 1e6;
            if wall_ns > 0.0 {
                let cpu = u.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / wall_ns;
                out.push(sample((cpu * 1000.0).round() / 1000.0));
            }
        }
        last.insert(c.clone(), u);
    }
}
