//! A deployed stack as the phases see it: its load balancer's entries (fixed ports, or every
//! Traefik task's own) and its services' names.

use super::{Engine, EngineError};
use crate::config::{Config, Entry};

/// The load balancer's entries: its fixed ports, or (`lb.ports_per_task`) every running
/// Traefik task's own, as the engine published them.
pub async fn lb_entries(engine: &dyn Engine, config: &Config) -> Result<Vec<Entry>, EngineError> {
    if !config.lb.ports_per_task {
        return Ok(vec![config.lb_entry()]);
    }
    let service = config.service("lb");
    let entries: Vec<Entry> = engine
        .tasks(&service, false)
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
