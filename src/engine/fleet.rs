//! A deployed service's replicas, as the test phases act on them: tasks with their containers
//! and the engine's own timestamps, killing a replica's container, resource samples and logs.
//! (Scaling writes the stack's own spec: `stack::scale`.)

use std::collections::HashMap;

use bollard::models::TaskState;
use bollard::query_parameters::{KillContainerOptions, ListTasksOptions, LogsOptions, StatsOptions};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Docker, EngineError};
use crate::config::{Config, Entry};

/// One task of a service, with what the engine says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Task ID.
    pub id: String,
    /// Slot (replicated services).
    pub slot: i64,
    /// The task's container, once it has one.
    pub container: Option<String>,
    /// Current state (`running`, `failed`, …).
    pub state: String,
    /// True when the orchestrator wants it running.
    pub desired_running: bool,
    /// When the engine created the task (Unix ms).
    pub created_ms: Option<u64>,
    /// When it reached its current state (Unix ms).
    pub state_since_ms: Option<u64>,
    /// The task's message or error.
    pub message: String,
    /// Host-mode ports the engine published for this task: (container port, host port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<(u16, u16)>,
}

impl Task {
    /// Runs now and is meant to.
    pub fn is_running(&self) -> bool {
        self.desired_running && self.state == TaskState::RUNNING.to_string()
    }
}

/// The load balancer's entries: its fixed ports, or (`lb.ports_per_task`) every running
/// Traefik task's own, as the engine published them.
pub async fn lb_entries(docker: &Docker, config: &Config) -> Result<Vec<Entry>, EngineError> {
    if !config.lb.ports_per_task {
        return Ok(vec![config.lb_entry()]);
    }
    let service = format!("{}_lb", config.name);
    let entries: Vec<Entry> = tasks(docker, &service)
        .await?
        .iter()
        .filter(|t| t.is_running())
        .filter_map(|t| Config::lb_entry_published(&t.ports))
        .collect();
    if entries.is_empty() {
        return Err(EngineError::Missing(format!(
            "no running task of {service} has host ports: is the stack up (`swarmctl status`)?"
        )));
    }
    Ok(entries)
}

/// Every task of `service` (the engine keeps a few dead ones per slot as history).
pub async fn tasks(docker: &Docker, service: &str) -> Result<Vec<Task>, EngineError> {
    let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
    let list = docker
        .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
        .await
        .map_err(|e| EngineError::api(format!("list tasks of {service}"), e))?;
    let mut out: Vec<Task> = list
        .into_iter()
        .map(|t| {
            let status = t.status.unwrap_or_default();
            Task {
                id: t.id.unwrap_or_default(),
                slot: t.slot.unwrap_or(0),
                container: status.container_status.and_then(|c| c.container_id).filter(|c| !c.is_empty()),
                state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                desired_running: t.desired_state == Some(TaskState::RUNNING),
                created_ms: t.created_at.as_deref().and_then(unix_ms),
                state_since_ms: status.timestamp.as_deref().and_then(unix_ms),
                message: status.err.filter(|e| !e.is_empty()).or(status.message).unwrap_or_default(),
                ports: status
                    .port_status
                    .and_then(|p| p.ports)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| Some((u16::try_from(p.target_port?).ok()?, u16::try_from(p.published_port?).ok()?)))
                    .collect(),
            }
        })
        .collect();
    out.sort_by_key(|t| (t.slot, t.created_ms));
    Ok(out)
}

/// Kills a container with SIGKILL: a crash, not a graceful stop.
pub async fn kill(docker: &Docker, container: &str) -> Result<(), EngineError> {
    docker
        .kill_container(container, Some(KillContainerOptions { signal: "SIGKILL".into() }))
        .await
        .map_err(|e| EngineError::api(format!("kill container {}", short(container)), e))
}

/// Replicas `service` is set to.
pub async fn replicas(docker: &Docker, service: &str) -> Result<u64, EngineError> {
    let svc =
        docker.inspect_service(service, None).await.map_err(|e| EngineError::api(format!("inspect {service}"), e))?;
    Ok(svc.spec.as_ref().and_then(crate::plan::replicas).unwrap_or(0))
}

/// A container's cumulative CPU time and current memory, as one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// When sampled (Unix ms).
    pub at_ms: u64,
    /// CPU time used since the container started, ns.
    pub cpu_ns: u64,
    /// Memory in use, without reclaimable page cache, bytes.
    pub memory_bytes: u64,
}

/// One sample of a container's usage (the engine answers at once with `one-shot`).
pub async fn usage(docker: &Docker, container: &str) -> Result<Usage, EngineError> {
    let mut stream = docker.stats(container, Some(StatsOptions { stream: false, one_shot: true }));
    let Some(item) = stream.next().await else {
        return Err(EngineError::Api { action: format!("stats of {}", short(container)), message: "no answer".into() });
    };
    let s = item.map_err(|e| EngineError::api(format!("stats of {}", short(container)), e))?;
    let cpu_ns = s.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
    let mem = s.memory_stats.unwrap_or_default();
    // What `docker stats` shows: usage less the inactive page cache (cgroup v2, then v1 name).
    let cache = mem
        .stats
        .as_ref()
        .and_then(|st| st.get("inactive_file").or_else(|| st.get("total_inactive_file")).copied())
        .unwrap_or(0);
    let memory_bytes = mem.usage.unwrap_or(0).saturating_sub(cache);
    Ok(Usage { at_ms: crate::units::unix_now_ms(), cpu_ns, memory_bytes })
}

/// The logs of a service's tasks (stdout and stderr, with timestamps), at most `tail` lines,
/// and whether they came whole: the engine (20.10 seen here) may never end a service's log
/// stream once one of its tasks' containers is gone, so the stream is given `limit`, and what
/// came by then is kept.
pub async fn logs(
    docker: &Docker,
    service: &str,
    tail: usize,
    limit: std::time::Duration,
) -> Result<(String, bool), EngineError> {
    let opts =
        LogsOptions { stdout: true, stderr: true, timestamps: true, tail: tail.to_string(), ..Default::default() };
    let mut stream = docker.service_logs(service, Some(opts));
    let mut out = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(item)) => {
                let chunk = item.map_err(|e| EngineError::api(format!("logs of {service}"), e))?;
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            Ok(None) => return Ok((out, true)),
            Err(_) => return Ok((out, false)),
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// RFC 3339 as the engine writes it (`2026-11-27T06:10:48.123456789Z`, or with an offset) to
/// Unix milliseconds.
pub fn unix_ms(s: &str) -> Option<u64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, offset_s) = match rest.find(['Z', '+', '-']) {
        Some(i) if &rest[i..i + 1] == "Z" => (&rest[..i], 0i64),
        Some(i) => {
            let sign = if &rest[i..i + 1] == "-" { -1 } else { 1 };
            let (oh, om) = rest[i + 1..].split_once(':')?;
            (&rest[..i], sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60))
        }
        None => return None,
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let ms = frac.chars().chain("000".chars()).take(3).collect::<String>().parse::<i64>().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::unix_ms;

    #[test]
    fn engine_timestamps_parse_to_unix_ms() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ms("2026-11-27T06:10:48.123456789Z"), Some(1_795_759_848_123));
        assert_eq!(unix_ms("2026-11-27T07:10:48.1+01:00"), Some(1_795_759_848_100));
        assert_eq!(unix_ms("2000-02-29T12:00:00Z"), Some(951_825_600_000));
        assert_eq!(unix_ms("0001-01-01T00:00:00Z"), None, "the engine's zero time is no time");
        assert_eq!(unix_ms("yesterday"), None);
    }
}
