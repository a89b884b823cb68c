//! Waiting until a stack has converged: for every service, a running task of the current
//! spec in every slot (swarm reports `running` only once a healthcheck passed), stable for a
//! monitor window. It fails fast with the scheduler's own reason when tasks cannot be placed
//! or keep failing, and reports a paused or rolled-back update, instead of timing out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, UpdateState};

/// Where one service stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    /// Service name.
    pub name: String,
    /// Replicas wanted.
    pub desired: u64,
    /// Slots with a running task of the current spec.
    pub running: u64,
    /// Tasks asked to stop that still run (a scale-down draining): until they are gone the
    /// service runs more than it was asked to.
    #[serde(skip_serializing_if = "is_zero")]
    pub stopping: u64,
    /// The latest scheduler or task message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ServiceState {
    /// Exactly what was asked: every slot running, nothing surplus still running.
    pub fn converged(&self) -> bool {
        self.running >= self.desired && self.stopping == 0
    }
}

/// Why the wait ended without convergence.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The engine failed a call.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Tasks cannot be placed or keep failing; the message is the scheduler's or the task's.
    #[error("service {service} cannot converge: {reason}{hint}")]
    Stuck {
        /// The service.
        service: String,
        /// The engine's reason.
        reason: String,
        /// What to do about it.
        hint: String,
    },
    /// The update was paused or rolled back.
    #[error("service {service}: update {state}: {message}")]
    UpdateFailed {
        /// The service.
        service: String,
        /// `paused`, `rolled back`, …
        state: String,
        /// The engine's message.
        message: String,
    },
    /// Time ran out.
    #[error("not converged after {seconds}s: {}", .states.iter().map(|s| format!("{} {}/{}{}", s.name, s.running, s.desired, s.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())).collect::<Vec<_>>().join(", "))]
    Timeout {
        /// The wait.
        seconds: u64,
        /// Where each service stood.
        states: Vec<ServiceState>,
    },
    /// Ctrl-C.
    #[error("interrupted while waiting for the stack to converge")]
    Interrupted,
}

fn hint(reason: &str) -> String {
    let r = reason.to_ascii_lowercase();
    // What the node could not find, when the engine names it; in a registry, the pull failed.
    let registry = r
        .split_once("no such image: ")
        .map(|(_, image)| super::credentials::registry_of(image.split_whitespace().next().unwrap_or("")))
        .filter(|registry| *registry != "docker.io");
    if let Some(registry) = registry {
        return format!("; the node could not pull it from {registry}: does every node reach that registry and trust it (insecure-registries, or TLS), and if it needs a login, is `docker login {registry}` done here and the stack key `with_registry_auth` set?");
    }
    let h = if r.contains("no such image") || r.contains("not found") && r.contains("image") {
        "; the image is not on the node: build it there (`swarmctl image pack`, scripts/offline-images) or push it to a registry the nodes can reach"
    } else if r.contains("insufficient resources") {
        "; lower the reservations (server.resources.reservations) or add nodes"
    } else if r.contains("host-mode port already in use") {
        "; another process or task holds that port on the node: free it or change the port in the stack"
    } else if r.contains("scheduling constraints") || r.contains("no suitable node") {
        "; check the placement constraints against `swarmctl init`'s node list"
    } else if r.contains("non-zero exit") {
        "; the container keeps exiting: see its logs with `docker service logs`"
    } else {
        ""
    };
    h.to_string()
}

/// Waits until every service in `services` has converged and stayed so for `monitor`.
/// `on_change` hears the states each time one changes.
pub async fn wait(
    engine: &dyn Engine,
    services: &[String],
    timeout: Duration,
    monitor: Duration,
    cancel: &CancellationToken,
    on_change: &mut dyn FnMut(&[ServiceState]),
) -> Result<Vec<ServiceState>, ConvergeError> {
    let started = Instant::now();
    // Failures from before this wait are history (the engine keeps a few dead tasks per slot:
    // a replica killed by an earlier test, say), not a reason to give up now. A little slack
    // for an engine whose clock is not quite ours.
    let since_ms = crate::units::unix_now_ms().saturating_sub(2_000);
    let mut stable_since: Option<Instant> = None;
    let mut last: Vec<ServiceState> = Vec::new();
    let mut pending_since: HashMap<String, Instant> = HashMap::new();
    loop {
        let mut states = Vec::with_capacity(services.len());
        for name in services {
            states.push(service_state(engine, name, &mut pending_since, since_ms).await?);
        }
        if states != last {
            on_change(&states);
            last = states.clone();
        }
        if states.iter().all(ServiceState::converged) {
            let since = *stable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= monitor {
                return Ok(states);
            }
        } else {
            stable_since = None;
        }
        if started.elapsed() > timeout {
            return Err(ConvergeError::Timeout { seconds: timeout.as_secs(), states });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => return Err(ConvergeError::Interrupted),
        }
    }
}

/// How long a task may stay unschedulable before the scheduler's reason is final.
const PENDING_GRACE: Duration = Duration::from_secs(3);
/// The same for a host port still held: during a stop-first update of a service with host-mode
/// ports (the load balancer), the new task waits while the old one drains its connections
/// (Traefik takes up to its 10 s grace time), and the scheduler says "port already in use"
/// meanwhile. Only a port held for longer than that is someone else's.
const PORT_GRACE: Duration = Duration::from_secs(30);
/// Failed or rejected tasks of the current spec tolerated before giving up.
const MAX_FAILURES: usize = 3;

async fn service_state(
    engine: &dyn Engine,
    name: &str,
    pending_since: &mut HashMap<String, Instant>,
    since_ms: u64,
) -> Result<ServiceState, ConvergeError> {
    let svc = engine.service(name).await?;
    let update_failed = |state: &str, message: &str| ConvergeError::UpdateFailed {
        service: name.into(),
        state: state.into(),
        message: message.into(),
    };
    let (state, message) = match &svc.update {
        Some(UpdateState::Paused(m)) => ("paused", m),
        // A rollback that ended before this wait leaves the previous spec running, as stable
        // as any: swarm keeps reporting it until the next update (a scale, say).
        Some(UpdateState::RolledBack(_)) if svc.update_at_ms.is_some_and(|at| at < since_ms) => ("", &String::new()),
        Some(UpdateState::RollingBack(m) | UpdateState::RolledBack(m)) => ("rolled back", m),
        Some(UpdateState::RollbackPaused(m)) => ("rollback paused", m),
        Some(UpdateState::Updating | UpdateState::Completed) | None => ("", &String::new()),
    };
    if !state.is_empty() {
        // Swarm's message names a task, not why it failed: the tasks of the spec that was
        // tried (another image than the one restored) say that.
        let tried = engine.tasks(name, false).await?;
        let why = tried
            .iter()
            .filter(|t| t.image != svc.image && t.state_since_ms.map_or(true, |w| w >= since_ms))
            .filter_map(|t| t.error.as_deref().filter(|_| matches!(t.state.as_str(), "failed" | "rejected")))
            .next_back();
        let message = match why {
            Some(e) => format!("{message}; its new tasks failed with: {e}{}", hint(e)),
            None => message.clone(),
        };
        return Err(update_failed(state, &message));
    }
    let tasks = engine.tasks(name, true).await?;
    let mut running: BTreeSet<i64> = BTreeSet::new();
    let mut stopping = 0;
    let mut failures: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut note = None;
    for t in &tasks {
        if t.state == "running" {
            if t.desired_running {
                running.insert(t.slot);
                pending_since.remove(&t.id);
            } else {
                stopping += 1;
            }
            continue;
        }
        match (t.state.as_str(), &t.error) {
            ("pending", Some(e)) => {
                let since = *pending_since.entry(t.id.clone()).or_insert_with(Instant::now);
                let grace = if e.contains("port already in use") { PORT_GRACE } else { PENDING_GRACE };
                if since.elapsed() >= grace {
                    return Err(ConvergeError::Stuck { service: name.into(), hint: hint(e), reason: e.clone() });
                }
                note = Some(e.clone());
            }
            // Failures from before this wait are history.
            ("failed" | "rejected", Some(e)) if t.state_since_ms.map_or(true, |w| w >= since_ms) => {
                failures.insert(t.id.clone(), (t.slot, e.clone()));
                note = Some(e.clone());
            }
            (s, _) if t.desired_running && !s.is_empty() => note = note.or(Some(format!("a task is {s}"))),
            _ => {}
        }
    }
    // A slot that runs now has recovered: its earlier failures are history.
    failures.retain(|_, (slot, _)| !running.contains(slot));
    if failures.len() >= MAX_FAILURES {
        let reason = failures.values().last().map(|(_, e)| e.clone()).unwrap_or_default();
        return Err(ConvergeError::Stuck {
            service: name.into(),
            hint: hint(&reason),
            reason: format!("{} tasks failed, the last with: {reason}", failures.len()),
        });
    }
    if stopping > 0 && note.is_none() {
        note = Some(format!("{stopping} stopping"));
    }
    Ok(ServiceState { name: name.into(), desired: svc.replicas, running: running.len() as u64, stopping, note })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::{with_stack, Fate};

    #[test]
    fn an_image_missing_from_a_registry_is_a_failed_pull_not_a_missing_build() {
        let pulled = hint("No such image: 10.99.0.1:5000/swarmctl/mcp-server:0.1.0-3f2a");
        assert!(pulled.contains("could not pull it from 10.99.0.1:5000") && pulled.contains("with_registry_auth"));
        let local = hint("No such image: swarmctl/mcp-server:0.1.0-3f2a");
        assert!(local.contains("swarmctl image pack") && local.contains("push it to a registry"), "{local}");
    }
    use crate::engine::UpdateState;

    const SERVER: &str = "swarmctl-ci_server";

    async fn wait_for(fake: &dyn Engine, timeout: Duration) -> Result<Vec<ServiceState>, ConvergeError> {
        wait(fake, &[SERVER.into()], timeout, Duration::from_secs(3), &CancellationToken::new(), &mut |_| {}).await
    }

    /// The server of a stack on `workers` + 1 nodes scaled to `n`, its new tasks meeting
    /// `fate`; the wait's error and how long it took to give it.
    async fn scaled_into(workers: usize, fate: Fate, n: u64, timeout: Duration) -> (String, Duration) {
        let (fake, desired) = with_stack(workers, &[]).await;
        fake.set_fate(SERVER, fate);
        crate::engine::stack::scale(&fake, &desired, SERVER, n).await.unwrap();
        let started = Instant::now();
        let err = wait_for(&fake, timeout).await.unwrap_err().to_string();
        (err, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn every_slot_running_and_stable_is_converged() {
        let (fake, _) = with_stack(2, &[]).await;
        let started = Instant::now();
        let states = wait_for(&fake, Duration::from_secs(60)).await.unwrap();
        assert_eq!((states[0].running, states[0].desired, states[0].stopping), (3, 3, 0));
        assert!(started.elapsed() >= Duration::from_secs(3), "stable for the monitor window first");
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_tasks_fail_fast_with_the_schedulers_reason() {
        let pending = Fate::Pending("no suitable node (insufficient resources on 1 node)".into());
        let (text, took) = scaled_into(0, pending, 5, Duration::from_secs(300)).await;
        assert!(text.contains("cannot converge: no suitable node (insufficient resources"), "{text}");
        assert!(text.contains("lower the reservations"), "with what to do: {text}");
        assert!(took >= PENDING_GRACE && took < PENDING_GRACE + Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_port_still_held_gets_the_longer_grace() {
        let pending = Fate::Pending("host-mode port already in use on 1 node".into());
        let (err, took) = scaled_into(0, pending, 4, Duration::from_secs(300)).await;
        assert!(err.contains("free it or change the port"), "{err}");
        assert!(took >= PORT_GRACE, "an old task draining its connections is waited for");
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_keep_failing_end_the_wait() {
        let (err, _) = scaled_into(2, Fate::Fail("task: non-zero exit (1)".into()), 6, Duration::from_secs(300)).await;
        assert!(err.contains("3 tasks failed, the last with: task: non-zero exit (1)"), "{err}");
        assert!(err.contains("the container keeps exiting"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolled_back_update_is_said_at_once() {
        let (fake, _) = with_stack(0, &[]).await;
        let now = crate::units::unix_now_ms();
        fake.set_update(SERVER, UpdateState::RolledBack("update out of sequence".into()), now);
        let err = wait_for(&fake, Duration::from_secs(300)).await.unwrap_err().to_string();
        assert_eq!(err, format!("service {SERVER}: update rolled back: update out of sequence"));
    }

    /// Swarm reports a rollback until the next update: one that ended before the wait (an
    /// earlier rollback phase, say) must not fail `up` or a restore ever after.
    #[tokio::test(start_paused = true)]
    async fn a_rollback_that_ended_before_the_wait_is_history() {
        let (fake, _) = with_stack(0, &[]).await;
        let earlier = crate::units::unix_now_ms() - 60_000;
        fake.set_update(SERVER, UpdateState::RolledBack("rollback completed".into()), earlier);
        let states = wait_for(&fake, Duration::from_secs(300)).await.unwrap();
        assert!(states[0].converged(), "{states:?}");
        // A pause is not history: the update waits for someone to act.
        fake.set_update(SERVER, UpdateState::Paused("update paused".into()), earlier);
        let err = wait_for(&fake, Duration::from_secs(300)).await.unwrap_err().to_string();
        assert!(err.contains("update paused"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn time_runs_out_with_where_each_service_stood() {
        let (err, _) = scaled_into(0, Fate::Starting, 5, Duration::from_secs(20)).await;
        assert_eq!(err, format!("not converged after 20s: {SERVER} 3/5 (a task is starting)"));
    }

    #[tokio::test(start_paused = true)]
    async fn ctrl_c_ends_the_wait() {
        let (fake, desired) = with_stack(0, &[]).await;
        fake.set_fate(SERVER, Fate::Starting);
        crate::engine::stack::scale(&fake, &desired, SERVER, 5).await.unwrap();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.cancel();
        });
        let r = wait(&fake, &[SERVER.into()], Duration::from_secs(60), Duration::ZERO, &cancel, &mut |_| {}).await;
        assert!(matches!(r, Err(ConvergeError::Interrupted)), "{r:?}");
    }
}
