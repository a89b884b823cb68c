//! Is the stack reachable through its load balancer? Every Traefik entry must answer the
//! server's health route, or, for a server without one (`server.health_path: null`), an MCP
//! exchange (`initialize`, `ping`, close) over Streamable HTTP: readiness through MCP itself.

use std::time::Duration;

use crate::config::{Config, Entry};
use crate::http::get;
use crate::load::{probe, Target};

/// What "answers" means for a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `GET path` answers 200.
    Health(String),
    /// An MCP session opens and answers `ping` at this Streamable HTTP path.
    Mcp(String),
}

impl Check {
    /// The stack's check; `None` when it has no Streamable HTTP transport to ask through.
    pub fn of(c: &Config) -> Option<Check> {
        let http = c.server.transports.http.as_ref()?;
        Some(match &c.server.health_path {
            Some(path) => Check::Health(path.clone()),
            None => Check::Mcp(http.path.clone()),
        })
    }

    /// The URL it asks at one entry.
    pub fn url(&self, host: &str, web: u16) -> String {
        match self {
            Check::Health(path) | Check::Mcp(path) => format!("http://{host}:{web}{path}"),
        }
    }

    /// Asks once; the reason when it did not answer.
    pub async fn ask(&self, host: &str, web: u16) -> Result<(), String> {
        let timeout = Duration::from_secs(2);
        match self {
            Check::Health(path) => match get(host, web, path, timeout).await {
                Ok((200, _)) => Ok(()),
                Ok((status, _)) => Err(format!("HTTP {status}")),
                Err(e) => Err(format!("{e:#}")),
            },
            Check::Mcp(_) => {
                let target = Target::parse(&self.url(host, web), false, false)?;
                probe::answers(&target, timeout).await.map_err(|f| format!("{}: {}", f.class.name(), f.detail))
            }
        }
    }
}

/// Waits until every load-balancer entry answers `check` `streak` times in a row (all probed
/// at once), for at most `within`; otherwise the URL of the first that did not, with its last
/// reason.
pub async fn lb_answers(
    host: &str,
    entries: &[Entry],
    check: &Check,
    streak: u32,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut probes = tokio::task::JoinSet::new();
    for entry in entries {
        let Entry::Lb { web, .. } = *entry else { continue };
        let (host, check) = (host.to_string(), check.clone());
        probes.spawn(async move {
            let mut ok = 0;
            let mut last = String::new();
            while ok < streak {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{} ({last})", check.url(&host, web)));
                }
                ok = match check.ask(&host, web).await {
                    Ok(()) => ok + 1,
                    Err(why) => {
                        last = why;
                        0
                    }
                };
                if ok < streak {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Ok(())
        });
    }
    while let Some(done) = probes.join_next().await {
        done.map_err(|e| format!("a probe failed: {e}"))??;
    }
    Ok(())
}
