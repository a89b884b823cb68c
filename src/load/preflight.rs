//! What this machine lets one load process do, checked before anything starts: open files
//! (one per socket) and ephemeral ports (per source address and destination).

use std::collections::BTreeMap;

use anyhow::{bail, Context};

use super::plan::LoadPlan;

/// Open files a process needs besides its sessions' sockets (runtime, stdio, output files).
pub(crate) const SPARE_FILES: u64 = 64;

/// Sessions one process can hold: its hard open-file limit less what it needs besides.
pub fn sessions_per_process() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    hard.saturating_sub(SPARE_FILES)
}

/// Pre-flight: one socket per session must fit under the open-file limit. Raises the soft
/// limit to the hard one when that is enough; otherwise says what is feasible, before
/// anything is started.
pub fn check_open_files(sessions: usize) -> anyhow::Result<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let need = sessions as u64 + SPARE_FILES;
    let limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current.unwrap_or(u64::MAX), limit.maximum.unwrap_or(u64::MAX));
    if need <= soft {
        return Ok(soft);
    }
    if need <= hard {
        setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: limit.maximum })
            .context("cannot raise the open-file limit")?;
        return Ok(hard);
    }
    bail!(
        "{sessions} sessions need {need} open files, and this process may open at most {hard} (hard limit): \
         run at most {} sessions per process (split the load over several `swarmctl load` processes), or raise the hard limit",
        hard.saturating_sub(SPARE_FILES)
    )
}

/// The kernel's ephemeral port range size (`net.ipv4.ip_local_port_range`; 28,232 by default).
pub fn local_port_range() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
            Some(it.next()?.abs_diff(it.next()?) + 1)
        })
        .unwrap_or(28_232)
}

/// Pre-flight: connections to one destination from one source address are limited by the
/// ephemeral port range; say so before starting, with what would work.
pub fn check_ports(plan: &LoadPlan, port_range: u64) -> anyhow::Result<()> {
    let mut per_destination: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..plan.sessions {
        let target = &plan.targets[i % plan.targets.len()];
        *per_destination.entry(target.authority().to_string()).or_default() +=
            (target.sockets() + usize::from(plan.get_stream)) as u64;
    }
    let sources = plan.sources.len().max(1) as u64;
    for (dest, n) in per_destination {
        if n > port_range * sources {
            let needed = n.div_ceil(port_range);
            bail!(
                "{n} sessions to {dest} need more than the {port_range} ephemeral ports one source address has{}: give --source-ips with at least {needed} addresses (e.g. 127.0.0.2-127.0.0.{})",
                if sources > 1 { format!(" ({sources} addresses give {})", port_range * sources) } else { String::new() },
                needed + 1
            );
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::client::Target;

    fn plan(sessions: usize, urls: &[&str], sources: usize) -> LoadPlan {
        let mut plan = LoadPlan::toward(urls.iter().map(|u| Target::parse(u, false, false).unwrap()).collect());
        plan.sessions = sessions;
        plan.sources = (0..sources).map(|i| std::net::IpAddr::from([127, 0, 0, 2 + i as u8])).collect();
        plan
    }

    #[test]
    fn port_preflight_counts_per_destination_and_source() {
        assert!(check_ports(&plan(20_000, &["http://127.0.0.1:1/mcp"], 0), 28_232).is_ok());
        let err = check_ports(&plan(100_000, &["http://127.0.0.1:1/mcp"], 0), 28_232).unwrap_err().to_string();
        assert!(err.contains("--source-ips with at least 4 addresses"), "{err}");
        assert!(check_ports(&plan(100_000, &["http://127.0.0.1:1/mcp"], 4), 28_232).is_ok());
        // Spread over 12 replicas' ports, one address is enough.
        let urls: Vec<String> = (0..12).map(|i| format!("http://127.0.0.1:{}/mcp", 20000 + i)).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        assert!(check_ports(&plan(100_000, &urls, 0), 28_232).is_ok());
    }
}
