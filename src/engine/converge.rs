//! Waiting until a stack has converged: for every service, a running task of the current
//! spec in every slot (swarm reports `running` only once a healthcheck passed), stable for a
//! monitor window. It fails fast with the scheduler's own reason when tasks cannot be placed
//! or keep failing, and reports a paused or rolled-back update, instead of timing out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{ServiceUpdateStatusStateEnum, TaskState};
use bollard::query_parameters::ListTasksOptions;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Docker, EngineError};

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
    docker: &Docker,
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
            states.push(service_state(docker, name, &mut pending_since, since_ms).await?);
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
    docker: &Docker,
    name: &str,
    pending_since: &mut HashMap<String, Instant>,
    since_ms: u64,
) -> Result<ServiceState, ConvergeError> {
    let svc =
        docker.inspect_service(name, None).await.map_err(|e| EngineError::api(format!("inspect service {name}"), e))?;
    let spec = svc.spec.clone().unwrap_or_default();
    let desired = spec.mode.and_then(|m| m.replicated).and_then(|r| r.replicas).unwrap_or(1).max(0) as u64;
    if let Some(status) = svc.update_status {
        let message = status.message.unwrap_or_default();
        match status.state {
            Some(ServiceUpdateStatusStateEnum::PAUSED) => {
                return Err(ConvergeError::UpdateFailed { service: name.into(), state: "paused".into(), message })
            }
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => {
                return Err(ConvergeError::UpdateFailed { service: name.into(), state: "rolled back".into(), message })
            }
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => {
                return Err(ConvergeError::UpdateFailed {
                    service: name.into(),
                    state: "rollback paused".into(),
                    message,
                })
            }
            _ => {}
        }
    }
    // `_up-to-date` keeps only tasks of the current spec (the docker CLI's own wait uses it).
    let filters = HashMap::from([
        ("service".to_string(), vec![name.to_string()]),
        ("_up-to-date".to_string(), vec!["true".to_string()]),
    ]);
    let tasks = docker
        .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
        .await
        .map_err(|e| EngineError::api(format!("list tasks of {name}"), e))?;
    let mut running: BTreeSet<i64> = BTreeSet::new();
    let mut stopping = 0;
    let mut failures: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut note = None;
    for t in &tasks {
        let status = t.status.clone().unwrap_or_default();
        let state = status.state;
        let err = status.err.clone().filter(|e| !e.is_empty());
        let id = t.id.clone().unwrap_or_default();
        let desired_running = t.desired_state == Some(TaskState::RUNNING);
        if state == Some(TaskState::RUNNING) {
            if desired_running {
                running.insert(t.slot.unwrap_or(0));
                pending_since.remove(&id);
            } else {
                stopping += 1;
            }
            continue;
        }
        match (state, err) {
            (Some(TaskState::PENDING), Some(e)) => {
                let since = *pending_since.entry(id).or_insert_with(Instant::now);
                let grace = if e.contains("port already in use") { PORT_GRACE } else { PENDING_GRACE };
                if since.elapsed() >= grace {
                    return Err(ConvergeError::Stuck { service: name.into(), hint: hint(&e), reason: e });
                }
                note = Some(e);
            }
            (Some(TaskState::FAILED | TaskState::REJECTED), Some(e)) => {
                let when = status.timestamp.as_deref().and_then(super::fleet::unix_ms);
                if when.map_or(true, |w| w >= since_ms) {
                    failures.insert(id, (t.slot.unwrap_or(0), e.clone()));
                    note = Some(e);
                }
            }
            (Some(s), _) if desired_running => note = note.or(Some(format!("a task is {s}"))),
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
    Ok(ServiceState { name: name.into(), desired, running: running.len() as u64, stopping, note })
}
