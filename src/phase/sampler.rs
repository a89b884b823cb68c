//! CPU and memory of every running server replica, on every node, sampled every few seconds
//! while the phases run: through the Engine API on this engine's node, through the run's agent
//! on the others (`agent::Reach`). CPU is the container's CPU time between two samples over
//! the wall time between them. A replica that cannot be read (a node whose agent could not
//! start) is named with the reason, never counted as 0.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::Reach;
use crate::engine::Usage;
use crate::report::{ResourceSample, Unmeasured};

/// What the sampler saw.
#[derive(Debug, Default)]
pub struct Sampled {
    /// The samples, baseline first.
    pub samples: Vec<ResourceSample>,
    /// Replicas never read, by slot, with the node they ran on and the engine's reason.
    pub unread: BTreeMap<i64, Unmeasured>,
    /// Replicas read at first that could not be read any more (their node left, its agent
    /// stopped answering): by container, when the first reading failed and why.
    pub lost: BTreeMap<String, (u64, Unmeasured)>,
}

impl Sampled {
    /// A line for each replica whose samples stop before the run did.
    pub fn losses(&self, service: &str, started_ms: u64) -> Vec<String> {
        self.lost
            .values()
            .map(|(at, u)| {
                format!(
                    "resources of {service}: slot {} (node {}) could not be read from +{:.1} s on: {}",
                    u.slot,
                    u.node,
                    at.saturating_sub(started_ms) as f64 / 1000.0,
                    u.reason
                )
            })
            .collect()
    }

    /// A line for the report when some replicas could not be read.
    pub fn gap(&self, service: &str) -> Option<String> {
        if self.unread.is_empty() {
            return None;
        }
        let read: std::collections::BTreeSet<i64> = self.samples.iter().map(|s| s.slot).collect();
        let nodes: std::collections::BTreeSet<&str> = self.unread.values().map(|u| u.node.as_str()).collect();
        let reason = self.unread.values().next().map(|u| u.reason.as_str()).unwrap_or_default();
        Some(format!(
            "resources of {service}: {} replica(s) not measured (slots {}, on node(s) {}: {reason}); the replica table's figures cover the {} measured, its per-session figures share the sessions over every replica",
            self.unread.len(),
            self.unread.keys().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            nodes.into_iter().collect::<Vec<_>>().join(", "),
            read.len()
        ))
    }
}

/// Reads every running replica once (the baseline, before any load), then samples every
/// `every` until `stop`; the task returns what it saw, baseline first.
pub async fn start(
    reach: Arc<Reach>,
    service: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Sampled> {
    let mut out = Sampled::default();
    let mut last: HashMap<String, Usage> = HashMap::new();
    round(&reach, &service, &mut last, &mut out, true).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick is now: the baseline was just read
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            round(&reach, &service, &mut last, &mut out, false).await;
        }
        // A slot read at some point was measured, whatever its replacement did.
        let read: std::collections::BTreeSet<i64> = out.samples.iter().map(|s| s.slot).collect();
        out.unread.retain(|slot, _| !read.contains(slot));
        out
    })
}

/// One reading of every running replica: the baseline (memory only), or a sample against
/// the container's previous reading (a container first seen now gets none yet).
async fn round(reach: &Reach, service: &str, last: &mut HashMap<String, Usage>, out: &mut Sampled, baseline: bool) {
    let Ok(tasks) = reach.engine().tasks(service, false).await else { return };
    // All at once: a node that does not answer costs one agent timeout a round, not one per
    // replica it held.
    let running: Vec<&crate::engine::Task> = tasks.iter().filter(|t| t.is_running() && t.container.is_some()).collect();
    let reads = futures_util::future::join_all(running.iter().map(|t| reach.usage(t))).await;
    for (t, read) in running.into_iter().zip(reads) {
        let Some(c) = &t.container else { continue };
        let u = match read {
            Ok(u) => {
                out.lost.remove(c);
                u
            }
            Err(e) => {
                // A container read before and gone now ended between the task list and the
                // read (a failover kill, a scale-down): its replacement is read in its turn.
                let gap = Unmeasured { slot: t.slot, node: t.node.clone(), reason: e.to_string() };
                match (last.contains_key(c), e.is_gone()) {
                    (false, _) => {
                        out.unread.entry(t.slot).or_insert(gap);
                    }
                    (true, false) => {
                        out.lost.entry(c.clone()).or_insert_with(|| (crate::units::unix_now_ms(), gap));
                    }
                    (true, true) => {}
                }
                continue;
            }
        };
        let sample = |cpu_cores| ResourceSample {
            at_ms: u.at_ms,
            slot: t.slot,
            cpu_cores,
            memory_bytes: u.memory_bytes,
            baseline,
            node: t.node.clone(),
        };
        if baseline {
            out.samples.push(sample(0.0));
        } else if let Some(prev) = last.get(c) {
            let wall_ns = u.at_ms.saturating_sub(prev.at_ms) as f64 * 1e6;
            if wall_ns > 0.0 {
                let cpu = u.cpu_ns.saturating_sub(prev.cpu_ns) as f64 / wall_ns;
                out.samples.push(sample((cpu * 1000.0).round() / 1000.0));
            }
        }
        last.insert(c.clone(), u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::with_stack;

    #[tokio::test]
    async fn a_node_that_stops_answering_is_named_with_when() {
        use crate::agent::reach::other_nodes;
        use crate::agent::reach::tests::{agents, setup};
        let (fake, _) = with_stack(2, &["server.replicas=6"]).await;
        let fake = Arc::new(fake);
        let (port, stops) = agents(&fake, &["node1", "node2"], "t0ken").await;
        let gone = stops[1].clone();
        let (local, others) = other_nodes(fake.as_ref()).await.unwrap();
        let setup = setup(port);
        let reach =
            Arc::new(Reach::start(fake.clone(), &local, &others, &setup, &CancellationToken::new()).await.unwrap());
        let started = crate::units::unix_now_ms();
        let stop = CancellationToken::new();
        let task = start(reach.clone(), "swarmctl-ci_server".into(), Duration::from_millis(50), stop.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        gone.cancel(); // node2's agent: the node left the network
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.cancel();
        let sampled = task.await.unwrap();
        assert!(sampled.unread.is_empty(), "every replica was read at first: {:?}", sampled.unread);
        let lines = sampled.losses("swarmctl-ci_server", started);
        assert_eq!(lines.len(), 2, "node2's two replicas: {lines:?}");
        for l in &lines {
            assert!(l.contains("(node node2) could not be read from +0.") && l.contains("does not answer"), "{l}");
        }
        reach.stop().await;
    }

    #[tokio::test]
    async fn replicas_the_engine_cannot_read_are_named_not_counted() {
        let (fake, _) = with_stack(2, &["server.replicas=6"]).await;
        // The engine this swarmctl talks to sees only its own node's containers.
        fake.local_node("node0");
        let service = "swarmctl-ci_server";
        let stop = CancellationToken::new();
        // A run that deployed no agent (or whose agents could not start).
        let reach = Arc::new(Reach::local(Arc::new(fake), "node0"));
        let task = start(reach, service.into(), Duration::from_millis(20), stop.clone()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.cancel();
        let sampled = task.await.unwrap();
        let read: std::collections::BTreeSet<i64> = sampled.samples.iter().map(|s| s.slot).collect();
        assert_eq!(read, [1, 4].into(), "the manager's two replicas");
        assert!(sampled.samples.iter().any(|s| !s.baseline), "sampled under way too");
        assert_eq!(sampled.unread.keys().copied().collect::<Vec<_>>(), [2, 3, 5, 6]);
        let gap = sampled.gap(service).unwrap();
        assert!(gap.contains("4 replica(s) not measured (slots 2, 3, 5, 6, on node(s) node1, node2"), "{gap}");
        assert!(gap.contains("no agent on node node1: ") && gap.contains("cover the 2 measured"), "{gap}");
    }
}
