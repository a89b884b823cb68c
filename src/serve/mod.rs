//! `swarmctl serve`: the reference MCP server. Streamable HTTP, legacy HTTP+SSE, WebSocket and
//! TCP listeners in one process, `/health` and `/metrics`, fault injection, and a bounded
//! drain on SIGTERM.
//!
//! Every listener is plain tokio + hyper: the transports share one [`mcp::Mcp`] core, so a
//! request costs the same whichever way it arrives.

pub mod faults;
mod fixtures;
pub mod http;
pub mod mcp;
pub mod metrics;
mod tcp;
pub mod ws;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::units::{ByteSize, Duration as Dur};
use faults::{Faults, Latency, Stall};
use http::{App, HttpOptions, Routes};
use metrics::{Metrics, Transport};

/// The body of every HTTP response the server writes (Streamable HTTP, the WebSocket upgrade,
/// health and metrics).
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// Everything `swarmctl serve` can be told (flags, or the environment variables named).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// Streamable HTTP listen address.
    #[arg(long, value_name = "ADDR", env = "SWARMCTL_SERVE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Streamable HTTP path.
    #[arg(long, default_value = "/mcp", value_name = "PATH")]
    pub http_path: String,
    /// Legacy HTTP+SSE listen address (may equal --http).
    #[arg(long, value_name = "ADDR", env = "SWARMCTL_SERVE_SSE")]
    pub sse: Option<SocketAddr>,
    /// Legacy HTTP+SSE path: GET opens the stream, POSTs go to PATH?session_id=….
    #[arg(long, default_value = "/sse", value_name = "PATH")]
    pub sse_path: String,
    /// WebSocket listen address (may equal --http).
    #[arg(long, value_name = "ADDR", env = "SWARMCTL_SERVE_WS")]
    pub ws: Option<SocketAddr>,
    /// WebSocket path.
    #[arg(long, default_value = "/mcp/ws", value_name = "PATH")]
    pub ws_path: String,
    /// erlmcp framing on WebSocket: every message ends with a newline.
    #[arg(long, env = "SWARMCTL_SERVE_WS_NEWLINE")]
    pub ws_newline: bool,
    /// Newline-delimited JSON-RPC over TCP listen address.
    #[arg(long, value_name = "ADDR", env = "SWARMCTL_SERVE_TCP")]
    pub tcp: Option<SocketAddr>,
    /// Listen address for /metrics (Prometheus text) and /health.
    #[arg(long, value_name = "ADDR", env = "SWARMCTL_SERVE_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Health path, on every HTTP listener.
    #[arg(long, default_value = "/health", value_name = "PATH")]
    pub health_path: String,
    /// No sessions: no Mcp-Session-Id, initialize not required, DELETE answers 405.
    #[arg(long, env = "SWARMCTL_SERVE_STATELESS")]
    pub stateless: bool,
    /// Answer Streamable HTTP requests as SSE streams instead of JSON bodies.
    #[arg(long, env = "SWARMCTL_SERVE_SSE_REPLIES")]
    pub sse_replies: bool,
    /// Also accept requests whose Origin header is this (repeatable); loopback origins always
    /// are, and requests without Origin (every non-browser client) always are.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Largest request body or message.
    #[arg(long, default_value = "4M", value_name = "SIZE")]
    pub max_body: ByteSize,
    /// Added latency per request: 20ms, uniform:10ms..50ms or lognormal:20ms,0.5.
    #[arg(long, value_name = "SPEC", env = "SWARMCTL_SERVE_LATENCY", value_parser = |s: &str| s.parse::<Latency>())]
    pub latency: Option<Latency>,
    /// Share of requests answered with an injected error (-32603), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", env = "SWARMCTL_SERVE_ERROR_RATIO", value_parser = ratio)]
    pub error_ratio: f64,
    /// Share of requests whose connection is closed instead of answered, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", env = "SWARMCTL_SERVE_DROP_RATIO", value_parser = ratio)]
    pub drop_ratio: f64,
    /// Stop answering for LENGTH every PERIOD, from OFFSET after start: e.g. 1s/60s@2s.
    #[arg(long, value_name = "LENGTH/PERIOD[@OFFSET]", env = "SWARMCTL_SERVE_STALL", value_parser = |s: &str| s.parse::<Stall>())]
    pub stall: Option<Stall>,
    /// Report unhealthy (503) for this long after start.
    #[arg(long, default_value = "0s", value_name = "DURATION", env = "SWARMCTL_SERVE_SLOW_START")]
    pub slow_start: Dur,
    /// Refuse connections beyond this many open ones.
    #[arg(long, value_name = "N", env = "SWARMCTL_SERVE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seed for the random choices of fault injection (default: random).
    #[arg(long, value_name = "N", env = "SWARMCTL_SERVE_FAULT_SEED")]
    pub fault_seed: Option<u64>,
    /// On SIGTERM, how long in-flight requests may take before the process exits anyway.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub drain_timeout: Dur,
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio from 0 to 1")),
    }
}

/// A connection's claim on the `--max-connections` budget, released when dropped (it travels
/// with a WebSocket past the HTTP upgrade).
#[derive(Clone)]
pub(crate) struct ConnSlot(#[allow(dead_code)] Arc<SlotInner>);

struct SlotInner(Arc<AtomicUsize>);

impl Drop for SlotInner {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

enum Kind {
    Http(Arc<Routes>),
    Tcp,
}

/// A bound server, not yet serving.
pub struct Server {
    listeners: Vec<(TcpListener, Kind)>,
    addrs: BTreeMap<&'static str, SocketAddr>,
    app: Arc<App>,
    max_message: usize,
    drain_timeout: Duration,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b)
}

impl Server {
    /// Binds every listener the options name; fails with the flag and address that could not
    /// be bound.
    pub async fn bind(opts: &ServeOptions) -> anyhow::Result<Server> {
        if opts.http.is_none() && opts.sse.is_none() && opts.ws.is_none() && opts.tcp.is_none() {
            bail!("nothing to serve: give at least one of --http, --sse, --ws or --tcp (e.g. --http 127.0.0.1:8080)");
        }
        for (flag, path) in [
            ("--http-path", &opts.http_path),
            ("--sse-path", &opts.sse_path),
            ("--ws-path", &opts.ws_path),
            ("--health-path", &opts.health_path),
        ] {
            if !path.starts_with('/') {
                bail!("{flag} must start with `/` (got `{path}`)");
            }
        }
        let max_message = usize::try_from(opts.max_body.0).unwrap_or(usize::MAX);
        // Flags with the same address share a listener; port 0 ("any free port") never does.
        let mut http_routes: BTreeMap<(SocketAddr, usize), (Routes, Vec<&'static str>)> = BTreeMap::new();
        let mut ordinal = 0;
        let mut route = |addr: SocketAddr, flag: &'static str, f: &dyn Fn(&mut Routes)| {
            ordinal += 1;
            let key = (addr, if addr.port() == 0 { ordinal } else { 0 });
            let entry = http_routes
                .entry(key)
                .or_insert_with(|| (Routes { health: opts.health_path.clone(), ..Default::default() }, vec![]));
            f(&mut entry.0);
            entry.1.push(flag);
        };
        if let Some(a) = opts.http {
            route(a, "--http", &|r| r.http = Some(opts.http_path.clone()));
        }
        if let Some(a) = opts.sse {
            route(a, "--sse", &|r| r.sse = Some(opts.sse_path.clone()));
        }
        if let Some(a) = opts.ws {
            route(a, "--ws", &|r| {
                r.ws = Some(ws::WsOptions { path: opts.ws_path.clone(), newline: opts.ws_newline, max_message })
            });
        }
        if let Some(a) = opts.metrics {
            route(a, "--metrics", &|r| r.metrics = true);
        }
        for ((addr, _), (routes, flags)) in &http_routes {
            let paths: Vec<&String> =
                [&routes.http, &routes.sse].into_iter().flatten().chain(routes.ws.as_ref().map(|w| &w.path)).collect();
            for (i, p) in paths.iter().enumerate() {
                if paths[..i].contains(p) || **p == routes.health || (routes.metrics && p.as_str() == "/metrics") {
                    bail!(
                        "{} on {addr} would serve two things at path {p}: give them different paths",
                        flags.join(" and ")
                    );
                }
            }
        }
        if let Some(t) = opts.tcp {
            if t.port() != 0 && http_routes.contains_key(&(t, 0)) {
                bail!("--tcp {t} is also an HTTP listener: TCP needs a port of its own");
            }
        }

        let mut listeners = Vec::new();
        let mut addrs = BTreeMap::new();
        for ((addr, _), (routes, flags)) in http_routes {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} ({})", flags.join(", ")))?;
            let local = l.local_addr()?;
            for f in &flags {
                addrs.insert(*f, local);
            }
            listeners.push((l, Kind::Http(Arc::new(routes))));
        }
        if let Some(addr) = opts.tcp {
            let l = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (--tcp)"))?;
            addrs.insert("--tcp", l.local_addr()?);
            listeners.push((l, Kind::Tcp));
        }

        let identity = mcp::Identity::from_env();
        let metrics = Arc::new(Metrics::new(&identity.hostname, &identity.slot, env!("CARGO_PKG_VERSION")));
        let faults = Arc::new(Faults::new(
            opts.latency.unwrap_or_default(),
            opts.error_ratio,
            opts.drop_ratio,
            opts.stall,
            opts.slow_start.0,
            opts.max_connections,
            opts.fault_seed.unwrap_or_else(random_u64),
        ));
        let core = Arc::new(mcp::Mcp::new(identity, metrics, faults));
        let http_opts = HttpOptions {
            stateless: opts.stateless,
            sse_replies: opts.sse_replies,
            max_body: max_message,
            allowed_origins: opts.allowed_origins.clone(),
        };
        let app = Arc::new(App::new(core, http_opts, CancellationToken::new(), random_u64()));
        Ok(Server { listeners, addrs, app, max_message, drain_timeout: opts.drain_timeout.0 })
    }

    /// The address bound for a flag (`--http`, `--ws`, `--tcp`, `--metrics`, `--sse`).
    pub fn addr(&self, flag: &str) -> Option<SocketAddr> {
        self.addrs.get(flag).copied()
    }

    /// Every bound address, by flag.
    pub fn addrs(&self) -> &BTreeMap<&'static str, SocketAddr> {
        &self.addrs
    }

    /// The metrics of this server (for in-process tests).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.app.mcp.metrics.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains: `/health` turns 503, listeners
    /// close, in-flight requests finish (at most `--drain-timeout`), streams and sockets close.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server { listeners, app, max_message, drain_timeout, .. } = self;
        let tracker = TaskTracker::new();
        let stop_accepting = CancellationToken::new();
        let active = Arc::new(AtomicUsize::new(0));
        for (listener, kind) in listeners {
            let (app, tracker2, stop, active) = (app.clone(), tracker.clone(), stop_accepting.clone(), active.clone());
            tracker.spawn(accept_loop(listener, kind, app, tracker2, stop, active, max_message));
        }
        shutdown.cancelled().await;
        tracing::info!("draining: /health answers 503, listeners close, in-flight requests finish");
        app.start_draining();
        stop_accepting.cancel();
        app.closing.cancel();
        tracker.close();
        if tokio::time::timeout(drain_timeout, tracker.wait()).await.is_err() {
            tracing::warn!(
                "{} connections still open after the drain timeout ({}); exiting anyway",
                active.load(Relaxed),
                Dur(drain_timeout)
            );
        }
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: Kind,
    app: Arc<App>,
    tracker: TaskTracker,
    stop: CancellationToken,
    active: Arc<AtomicUsize>,
    max_message: usize,
) {
    let max = app.mcp.faults.max_connections;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if max.is_some_and(|m| active.load(Relaxed) >= m) {
            app.mcp.metrics.refused();
            drop(stream);
            continue;
        }
        active.fetch_add(1, Relaxed);
        let slot = ConnSlot(Arc::new(SlotInner(active.clone())));
        let _ = stream.set_nodelay(true);
        match &kind {
            Kind::Tcp => {
                let app = app.clone();
                tracker.spawn(async move {
                    tcp::serve(app, stream, max_message).await;
                    drop(slot);
                });
            }
            Kind::Http(routes) => {
                let (app, routes) = (app.clone(), routes.clone());
                tracker.spawn(serve_http(app, routes, stream, slot));
            }
        }
    }
}

async fn serve_http(app: Arc<App>, routes: Arc<Routes>, stream: tokio::net::TcpStream, slot: ConnSlot) {
    app.mcp.metrics.connection(Transport::Http, 1);
    let closing = app.closing.clone();
    let svc_app = app.clone();
    let svc = service_fn(move |mut req| {
        req.extensions_mut().insert(slot.clone());
        http::handle(svc_app.clone(), routes.clone(), req)
    });
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    app.mcp.metrics.connection(Transport::Http, -1);
}
