//! Is the stack reachable through its load balancer? Every Traefik entry must answer the
//! server's health route, or, for a server without one (`server.health_path: null`) or without
//! a Streamable HTTP transport to route it on, an MCP exchange (`initialize`, `ping`, close)
//! over the first transport it has: readiness through MCP itself.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{ClientTransport, Config, Entry};
use crate::http::get;
use crate::load::{probe, stream::Wire};

/// What "answers" means for a stack.
#[derive(Clone)]
pub enum Check {
    /// `GET path` on the web entry point answers 200.
    Health(String),
    /// An MCP session opens and answers `ping` over this transport, with these extra headers
    /// (the phase profile's: a server behind a token wants it on every request).
    Mcp(ClientTransport, Arc<Wire>),
}

impl Check {
    /// The stack's check; `None` when it has no transport at all (validation refuses that).
    pub fn of(c: &Config) -> Option<Check> {
        let t = &c.server.transports;
        if let (Some(_), Some(path)) = (&t.http, &c.server.health_path) {
            return Some(Check::Health(path.clone()));
        }
        let transport = [
            (t.http.is_some(), ClientTransport::Http),
            (t.sse.is_some(), ClientTransport::Sse),
            (t.ws.is_some(), ClientTransport::Ws),
            (t.tcp.is_some(), ClientTransport::Tcp),
        ]
        .into_iter()
        .find_map(|(on, t)| on.then_some(t))?;
        let headers = c.test.profiles.get(&c.test.phase_profile).map(|p| p.header_list()).unwrap_or_default();
        // Plain TCP only: the stack's own Traefik entry points do not terminate TLS.
        let wire = Wire::new(false, &Default::default(), &headers).unwrap_or_default();
        Some(Check::Mcp(transport, Arc::new(wire)))
    }

    /// What it asks, for people.
    pub fn describe(&self) -> String {
        match self {
            Check::Health(path) => format!("GET {path} answers 200"),
            Check::Mcp(t, _) => format!(
                "an MCP session opens and answers ping over {}",
                serde_yaml::to_string(t).unwrap_or_default().trim()
            ),
        }
    }

    /// The URL it asks at one entry.
    pub fn url(&self, c: &Config, host: &str, entry: Entry) -> Result<String, String> {
        match self {
            Check::Health(path) => match entry {
                Entry::Lb { web, .. } => Ok(format!("http://{host}:{web}{path}")),
                _ => Err("the health route is on the load balancer's web entry point".into()),
            },
            Check::Mcp(transport, _) => c.client_url(*transport, host, entry).map_err(|e| e.to_string()),
        }
    }

    /// Asks once at one entry (whose URL is `url`); the reason when it did not answer.
    pub async fn ask(&self, c: &Config, host: &str, entry: Entry, url: &str) -> Result<(), String> {
        let timeout = Duration::from_secs(2);
        match self {
            Check::Health(path) => {
                let Entry::Lb { web, .. } = entry else { return Err("not a load-balancer entry".into()) };
                match get(host, web, path, timeout).await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, _)) => Err(format!("HTTP {status}")),
                    Err(e) => Err(crate::error_text(&e)),
                }
            }
            Check::Mcp(_, wire) => {
                let target = super::target(c, url)?;
                probe::answers(&target, wire.clone(), timeout)
                    .await
                    .map_err(|f| format!("{}: {}", f.class.name(), f.detail))
            }
        }
    }
}

/// Waits until every load-balancer entry answers `check` `streak` times in a row (all probed
/// at once), for at most `within`; otherwise the URL of the first that did not, with its last
/// reason.
pub async fn lb_answers(
    c: &Config,
    host: &str,
    entries: &[Entry],
    check: &Check,
    streak: u32,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut probes = tokio::task::JoinSet::new();
    for entry in entries {
        let url = check.url(c, host, *entry)?;
        let (c, check, host, entry) = (c.clone(), check.clone(), host.to_string(), *entry);
        probes.spawn(async move {
            let mut ok = 0;
            let mut last = String::new();
            while ok < streak {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{url} ({last})"));
                }
                ok = match check.ask(&c, &host, entry, &url).await {
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
