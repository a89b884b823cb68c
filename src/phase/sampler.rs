//! CPU and memory of every running server replica, sampled through the Engine API every few
//! seconds while the phases run. CPU is the container's CPU time between two samples over
//! the wall time between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::{fleet, Docker};
use crate::report::ResourceSample;

/// Samples until `stop`; returns what it saw.
pub fn start(
    docker: Docker,
    service: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<ResourceSample>> {
    tokio::spawn(async move {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut last: HashMap<String, fleet::Usage> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let Ok(tasks) = fleet::tasks(&docker, &service).await else { continue };
            for t in tasks.iter().filter(|t| t.is_running()) {
                let Some(c) = &t.container else { continue };
                let Ok(u) = fleet::usage(&docker, c).await else { continue };
                if let Some(prev) = last.get(c) {
                    let wall_ns = u.at_ms.saturating_sub(prev.at_ms) as f64 * 1e6;
                    if wall_ns > 0.0 {
                        let cpu = u.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / wall_ns;
                        out.lock().unwrap_or_else(|p| p.into_inner()).push(ResourceSample {
                            at_ms: u.at_ms,
                            slot: t.slot,
                            cpu_cores: (cpu * 1000.0).round() / 1000.0,
                            memory_bytes: u.memory_bytes,
                        });
                    }
                }
                last.insert(c.clone(), u);
            }
        }
        let v = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v
    })
}
