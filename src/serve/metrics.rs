//! The reference server's own counters, rendered in the Prometheus text format at `/metrics`.
//!
//! Hot-path updates are relaxed atomics in fixed tables (method × transport, method × latency
//! bucket); only the rare error path takes a lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Transports, as metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP.
    Http = 0,
    /// Legacy HTTP+SSE.
    Sse = 1,
    /// WebSocket.
    Ws = 2,
    /// Newline-delimited TCP.
    Tcp = 3,
}

const TRANSPORTS: [&str; 4] = ["http", "sse", "ws", "tcp"];

/// Methods with their own label value; anything else counts as `other`.
pub const METHODS: [&str; 11] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "server/discover",
    "notifications/initialized",
    "other",
];

/// Index of a method in [`METHODS`].
pub fn method_index(method: &str) -> usize {
    METHODS.iter().position(|m| *m == method).unwrap_or(METHODS.len() - 1)
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// All counters of one server process.
pub struct Metrics {
    requests: [[AtomicU64; 4]; METHODS.len()],
    buckets: [[AtomicU64; BUCKETS.len()]; METHODS.len()],
    duration_count: [AtomicU64; METHODS.len()],
    duration_sum_ns: [AtomicU64; METHODS.len()],
    errors: Mutex<BTreeMap<(usize, String), u64>>,
    connections_active: [AtomicI64; 4],
    connections_total: [AtomicU64; 4],
    connections_refused: AtomicU64,
    connections_dropped: AtomicU64,
    sessions_active: AtomicI64,
    info: String,
}

impl Metrics {
    /// Counters for a server that identifies itself with these labels.
    pub fn new(hostname: &str, slot: &str, version: &str) -> Self {
        Metrics {
            requests: Default::default(),
            buckets: Default::default(),
            duration_count: Default::default(),
            duration_sum_ns: Default::default(),
            errors: Mutex::new(BTreeMap::new()),
            connections_active: Default::default(),
            connections_total: Default::default(),
            connections_refused: AtomicU64::new(0),
            connections_dropped: AtomicU64::new(0),
            sessions_active: AtomicI64::new(0),
            info: format!(
                "mcp_server_info{{hostname=\"{}\",slot=\"{}\",version=\"{}\"}} 1\n",
                escape(hostname),
                escape(slot),
                escape(version)
            ),
        }
    }

    /// One request (or notification) received.
    pub fn request(&self, method: usize, transport: Transport) {
        self.requests[method][transport as usize].fetch_add(1, Relaxed);
    }

    /// How long a request took to answer.
    pub fn duration(&self, method: usize, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[method][i].fetch_add(1, Relaxed);
        }
        self.duration_count[method].fetch_add(1, Relaxed);
        self.duration_sum_ns[method].fetch_add(elapsed.as_nanos() as u64, Relaxed);
    }

    /// An error answer: a JSON-RPC code, or `tool_error` for `isError: true`.
    pub fn error(&self, method: usize, code: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry((method, code.to_string())).or_default() += 1;
    }

    /// A connection opened (+1) or closed (-1).
    pub fn connection(&self, transport: Transport, delta: i64) {
        self.connections_active[transport as usize].fetch_add(delta, Relaxed);
        if delta > 0 {
            self.connections_total[transport as usize].fetch_add(1, Relaxed);
        }
    }

    /// A connection refused by `--max-connections`.
    pub fn refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// A connection dropped on purpose (`--drop-ratio`).
    pub fn dropped(&self) {
        self.connections_dropped.fetch_add(1, Relaxed);
    }

    /// A session opened (+1) or ended (-1).
    pub fn session(&self, delta: i64) {
        self.sessions_active.fetch_add(delta, Relaxed);
    }

    /// Requests counted so far for `method` over all transports (for tests).
    pub fn requests_total(&self, method: &str) -> u64 {
        self.requests[method_index(method)].iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP mcp_server_info Identity of this replica.\n# TYPE mcp_server_info gauge\n");
        out.push_str(&self.info);

        out.push_str("# HELP mcp_requests_total JSON-RPC messages received, by method and transport.\n# TYPE mcp_requests_total counter\n");
        for (m, method) in METHODS.iter().enumerate() {
            for (t, transport) in TRANSPORTS.iter().enumerate() {
                let v = self.requests[m][t].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(out, "mcp_requests_total{{method=\"{method}\",transport=\"{transport}\"}} {v}");
                }
            }
        }

        out.push_str("# HELP mcp_request_errors_total Error answers, by method and JSON-RPC code (tool_error: a tool result with isError).\n# TYPE mcp_request_errors_total counter\n");
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        for ((m, code), v) in errors.iter() {
            let _ =
                writeln!(out, "mcp_request_errors_total{{method=\"{}\",code=\"{}\"}} {v}", METHODS[*m], escape(code));
        }
        drop(errors);

        out.push_str("# HELP mcp_request_duration_seconds Time from receiving a request to its answer being ready.\n# TYPE mcp_request_duration_seconds histogram\n");
        for (m, method) in METHODS.iter().enumerate() {
            let count = self.duration_count[m].load(Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += self.buckets[m][i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "mcp_request_duration_seconds_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "mcp_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {count}");
            let sum = self.duration_sum_ns[m].load(Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "mcp_request_duration_seconds_sum{{method=\"{method}\"}} {sum}");
            let _ = writeln!(out, "mcp_request_duration_seconds_count{{method=\"{method}\"}} {count}");
        }

        out.push_str("# HELP mcp_connections_active Open client connections (SSE: open event streams), by transport.\n# TYPE mcp_connections_active gauge\n");
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mcp_connections_active{{transport=\"{transport}\"}} {}",
                self.connections_active[t].load(Relaxed)
            );
        }
        out.push_str("# HELP mcp_connections_total Client connections accepted, by transport.\n# TYPE mcp_connections_total counter\n");
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mcp_connections_total{{transport=\"{transport}\"}} {}",
                self.connections_total[t].load(Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP mcp_connections_refused_total Connections refused over --max-connections.\n# TYPE mcp_connections_refused_total counter\nmcp_connections_refused_total {}\n\
             # HELP mcp_connections_dropped_total Connections dropped on purpose by --drop-ratio.\n# TYPE mcp_connections_dropped_total counter\nmcp_connections_dropped_total {}\n\
             # HELP mcp_sessions_active Open MCP sessions (Streamable HTTP and legacy SSE).\n# TYPE mcp_sessions_active gauge\nmcp_sessions_active {}\n",
            self.connections_refused.load(Relaxed),
            self.connections_dropped.load(Relaxed),
            self.sessions_active.load(Relaxed),
        );
        if let Some(rss) = resident_memory_bytes() {
            let _ = write!(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n");
        }
        out
    }
}

/// This process's resident set size, from /proc.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_identity() {
        let m = Metrics::new("host-1", "3", "0.1.0");
        m.request(method_index("tools/call"), Transport::Http);
        m.request(method_index("tools/call"), Transport::Ws);
        m.request(method_index("no/such"), Transport::Tcp);
        m.duration(method_index("tools/call"), Duration::from_millis(20));
        m.error(method_index("tools/call"), "tool_error");
        m.connection(Transport::Ws, 1);
        m.session(1);
        let text = m.render();
        for line in [
            "mcp_server_info{hostname=\"host-1\",slot=\"3\",version=\"0.1.0\"} 1",
            "mcp_requests_total{method=\"tools/call\",transport=\"http\"} 1",
            "mcp_requests_total{method=\"tools/call\",transport=\"ws\"} 1",
            "mcp_requests_total{method=\"other\",transport=\"tcp\"} 1",
            "mcp_request_errors_total{method=\"tools/call\",code=\"tool_error\"} 1",
            "mcp_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.01\"} 0",
            "mcp_request_duration_seconds_bucket{method=\"tools/call\",le=\"0.025\"} 1",
            "mcp_request_duration_seconds_bucket{method=\"tools/call\",le=\"+Inf\"} 1",
            "mcp_request_duration_seconds_count{method=\"tools/call\"} 1",
            "mcp_connections_active{transport=\"ws\"} 1",
            "mcp_connections_total{transport=\"ws\"} 1",
            "mcp_sessions_active 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        assert_eq!(m.requests_total("tools/call"), 2);
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
