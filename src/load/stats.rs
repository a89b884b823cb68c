//! Measurement: HDR histograms (microseconds) per method, corrected and raw, outcome counters
//! by error class, kept in shards that sessions record into and a collector folds once a
//! second into the timeline and, at the end, into the totals. No I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The connection could not be opened.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// An HTTP status other than 200/202.
    HttpStatus,
    /// A JSON-RPC error answer.
    Jsonrpc,
    /// A tool result with `isError: true`.
    ToolError,
    /// An answer that is not valid JSON-RPC, or whose id does not match.
    Protocol,
    /// The server no longer knew the session (HTTP 404): the session was re-initialized.
    SessionExpired,
    /// The connection closed under a request.
    Disconnect,
}

impl ErrorClass {
    /// All classes, in report order.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::HttpStatus,
        ErrorClass::Jsonrpc,
        ErrorClass::ToolError,
        ErrorClass::Protocol,
        ErrorClass::SessionExpired,
        ErrorClass::Disconnect,
    ];

    /// The name used in results.json.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::HttpStatus => "http_status",
            ErrorClass::Jsonrpc => "jsonrpc",
            ErrorClass::ToolError => "tool_error",
            ErrorClass::Protocol => "protocol",
            ErrorClass::SessionExpired => "session_expired",
            ErrorClass::Disconnect => "disconnect",
        }
    }
}

/// A request, or an attempt to get in, that did not succeed: the class it counts under and
/// what was seen (the OS error, the HTTP status and the start of the body, the JSON-RPC
/// error), kept for the first few of each class so that a report says how a target failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What it counts as.
    pub class: ErrorClass,
    /// What was seen; empty when the class says it all.
    pub detail: String,
}

impl Failure {
    /// A failure of `class` with what was seen.
    pub fn new(class: ErrorClass, detail: impl Into<String>) -> Failure {
        Failure { class, detail: detail.into() }
    }

    /// An HTTP answer with an unexpected status: the status and the start of the body.
    pub fn status(status: u16, body: &[u8]) -> Failure {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Failure::new(
            ErrorClass::HttpStatus,
            if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") },
        )
    }
}

impl From<ErrorClass> for Failure {
    fn from(class: ErrorClass) -> Failure {
        Failure { class, detail: String::new() }
    }
}

/// Samples kept per error class.
pub const SAMPLES: usize = 3;

fn histogram() -> Histogram<u64> {
    // From 1 µs at 3 significant digits, the counts growing with the largest value recorded.
    // A fixed range up to an hour held 24 k counters each, which the collector allocated,
    // folded and sent for every shard and method every second: 20-55 ms a second in a debug
    // build. Requests of milliseconds need a fifth of that.
    let mut h = Histogram::new(3).expect("valid precision");
    h.auto(true);
    h
}

/// Records `us` (at least 1 µs, at most an hour) into `h`, growing it as needed.
fn put(h: &mut Histogram<u64>, us: u64) {
    // `saturating_record` would clamp to the current size rather than grow it.
    h.record(us.clamp(1, 3_600_000_000)).expect("an auto-resizing histogram takes an hour");
}

/// Counts and latencies of one method.
#[derive(Debug, Clone)]
pub struct MethodStats {
    /// Requests sent.
    pub count: u64,
    /// Requests answered successfully.
    pub ok: u64,
    /// Latency from when the request was due (coordinated omission corrected), µs.
    pub corrected: Histogram<u64>,
    /// Latency from when it was actually sent, µs.
    pub raw: Histogram<u64>,
}

impl Default for MethodStats {
    fn default() -> Self {
        MethodStats { count: 0, ok: 0, corrected: histogram(), raw: histogram() }
    }
}

/// Everything measured over some span of time.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// By method label (`initialize`, `ping`, `tools/call:echo`, …).
    pub methods: BTreeMap<String, MethodStats>,
    /// Failures by class.
    pub errors: BTreeMap<ErrorClass, u64>,
    /// How late requests were sent after they were due, µs.
    pub send_lag: Option<Histogram<u64>>,
    /// How late sessions started after they were due, µs.
    pub start_lag: Option<Histogram<u64>>,
    /// The first few distinct details of each class's failures.
    pub samples: BTreeMap<ErrorClass, Vec<String>>,
}

impl Stats {
    /// Records one request.
    pub fn record(
        &mut self,
        label: &str,
        outcome: Result<(), ErrorClass>,
        corrected_us: u64,
        raw_us: u64,
        lag_us: u64,
    ) {
        let m = match self.methods.get_mut(label) {
            Some(m) => m,
            None => self.methods.entry(label.to_string()).or_default(),
        };
        m.count += 1;
        match outcome {
            Ok(()) => m.ok += 1,
            Err(class) => *self.errors.entry(class).or_default() += 1,
        }
        if outcome != Err(ErrorClass::Connect) {
            put(&mut m.corrected, corrected_us);
            put(&mut m.raw, raw_us);
        }
        put(self.send_lag.get_or_insert_with(histogram), lag_us);
    }

    /// Records a failure that belongs to no request (a session that could not start).
    pub fn fail(&mut self, class: ErrorClass) {
        *self.errors.entry(class).or_default() += 1;
    }

    /// Keeps what `f` saw, if its class has fewer than `SAMPLES` distinct ones yet.
    pub fn sample(&mut self, f: &Failure) {
        self.keep(f.class, &f.detail);
    }

    fn keep(&mut self, class: ErrorClass, detail: &str) {
        let kept = self.samples.entry(class).or_default();
        if !detail.is_empty() && kept.len() < SAMPLES && !kept.iter().any(|k| k == detail) {
            kept.push(detail.to_string());
        }
    }

    /// Records how late a session started.
    pub fn session_started(&mut self, lag_us: u64) {
        put(self.start_lag.get_or_insert_with(histogram), lag_us);
    }

    /// Adds `other` (exactly: histograms are added bucket by bucket).
    pub fn merge(&mut self, other: &Stats) {
        for (label, m) in &other.methods {
            let mine = self.methods.entry(label.clone()).or_default();
            mine.count += m.count;
            mine.ok += m.ok;
            mine.corrected.add(&m.corrected).expect("same bounds");
            mine.raw.add(&m.raw).expect("same bounds");
        }
        for (class, n) in &other.errors {
            *self.errors.entry(*class).or_default() += n;
        }
        for (class, details) in &other.samples {
            for d in details {
                self.keep(*class, d);
            }
        }
        for (mine, theirs) in [(&mut self.send_lag, &other.send_lag), (&mut self.start_lag, &other.start_lag)] {
            if let Some(h) = theirs {
                mine.get_or_insert_with(histogram).add(h).expect("same bounds");
            }
        }
    }

    /// Requests and successes over all methods but `initialize` (reported on its own).
    pub fn totals(&self) -> (u64, u64) {
        self.methods.iter().filter(|(l, _)| *l != "initialize").fold((0, 0), |(c, o), (_, m)| (c + m.count, o + m.ok))
    }

    /// Corrected and raw latency over all methods but `initialize`.
    pub fn latency(&self) -> (Histogram<u64>, Histogram<u64>) {
        let (mut c, mut r) = (histogram(), histogram());
        for (_, m) in self.methods.iter().filter(|(l, _)| *l != "initialize") {
            c.add(&m.corrected).expect("same bounds");
            r.add(&m.raw).expect("same bounds");
        }
        (c, r)
    }
}

/// Latency figures in milliseconds, as results.json reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LatencyMs {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyMs {
    /// From a µs histogram (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencyMs::default();
        }
        let ms = |us: u64| (us as f64 / 1e3 * 1000.0).round() / 1000.0;
        LatencyMs {
            min: ms(h.min()),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: (h.mean() / 1e3 * 1000.0).round() / 1000.0,
        }
    }

    /// The value at a percentile, ms.
    pub fn at(h: &Histogram<u64>, pct: f64) -> f64 {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(pct / 100.0) as f64 / 1e3
        }
    }
}

/// Where sessions record: a few locked shards, so that recording never contends much and the
/// collector can take a second's worth at a time.
pub struct Shards {
    shards: Vec<Mutex<Stats>>,
    total: Mutex<Stats>,
}

impl Shards {
    /// `n` shards (a few per core).
    pub fn new(n: usize) -> Self {
        Shards {
            shards: (0..n.max(1)).map(|_| Mutex::new(Stats::default())).collect(),
            total: Mutex::new(Stats::default()),
        }
    }

    /// Records into the shard of `session` (the running second; the collector folds each
    /// second into the total, so a request is recorded once, not twice).
    pub fn with<R>(&self, session: usize, f: impl FnOnce(&mut Stats) -> R) -> R {
        let mut guard = self.shards[session % self.shards.len()].lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Takes the second's worth from every shard (for the timeline) and adds it to the total.
    pub fn take_second(&self) -> Stats {
        let mut out = Stats::default();
        for s in &self.shards {
            let second = std::mem::take(&mut *s.lock().unwrap_or_else(|e| e.into_inner()));
            out.merge(&second);
        }
        self.total.lock().unwrap_or_else(|e| e.into_inner()).merge(&out);
        out
    }

    /// Everything so far, merged (the running second included).
    pub fn total(&self) -> Stats {
        let mut out = self.total.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for s in &self.shards {
            out.merge(&s.lock().unwrap_or_else(|e| e.into_inner()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_is_exact_not_an_average_of_percentiles() {
        let (mut a, mut b) = (Stats::default(), Stats::default());
        for _ in 0..990 {
            a.record("ping", Ok(()), 1_000, 1_000, 0);
        }
        for _ in 0..10 {
            b.record("ping", Err(ErrorClass::Timeout), 1_000_000, 1_000_000, 0);
        }
        a.merge(&b);
        let (c, _) = a.latency();
        assert_eq!(c.len(), 1000);
        // 1 % of requests took 1 s: p99 is still 1 ms, p99.9 is the 1 s tail.
        assert!((LatencyMs::at(&c, 99.0) - 1.0).abs() < 0.01);
        assert!(LatencyMs::at(&c, 99.9) > 990.0);
        assert_eq!(a.totals(), (1000, 990));
        assert_eq!(a.errors[&ErrorClass::Timeout], 10);
    }

    #[test]
    fn histograms_grow_to_what_they_hold_and_merge_across_sizes() {
        let (mut short, mut long) = (Stats::default(), Stats::default());
        short.record("ping", Ok(()), 0, 0, 0);
        long.record("ping", Ok(()), 20_000, 20_000, 0);
        long.record("ping", Err(ErrorClass::Timeout), 7_200_000_000, 7_200_000_000, 0);
        assert!(short.methods["ping"].corrected.len() == 1 && short.methods["ping"].corrected.min() == 1);
        short.merge(&long);
        let c = LatencyMs::of(&short.latency().0);
        // At 3 significant digits a value reads back within 0.1 %.
        assert!(c.min == 0.001 && (20.0..=20.02).contains(&c.p50), "{c:?}");
        assert!((3_600_000.0..=3_603_600.0).contains(&c.max), "clamped to an hour: {c:?}");
        let wire = WireStats::from(&short);
        assert_eq!(Stats::try_from(&wire).unwrap().latency().0, short.latency().0, "crosses processes whole");
    }

    #[test]
    fn initialize_is_kept_apart_and_shards_take_seconds() {
        let shards = Shards::new(4);
        for s in 0..8 {
            shards.with(s, |st| st.record("initialize", Ok(()), 5_000, 5_000, 0));
            shards.with(s, |st| st.record("tools/call:echo", Ok(()), 2_000, 1_500, 500));
        }
        let second = shards.take_second();
        assert_eq!(second.totals(), (8, 8));
        assert_eq!(shards.take_second().totals(), (0, 0), "a second is taken once");
        let total = shards.total();
        assert_eq!(total.methods["initialize"].count, 8);
        let (c, r) = total.latency();
        assert_eq!((LatencyMs::of(&c).p50, LatencyMs::of(&r).p50), (2.0, 1.5));
    }
}

/// `Stats` in a form that crosses process boundaries losslessly: histograms in HdrHistogram's
/// V2 compressed encoding (base64), so that worker processes merge exactly.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct WireStats {
    methods: BTreeMap<String, (u64, u64, String, String)>,
    errors: BTreeMap<ErrorClass, u64>,
    send_lag: Option<String>,
    start_lag: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    samples: BTreeMap<ErrorClass, Vec<String>>,
}

fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    let mut buf = Vec::new();
    hdrhistogram::serialization::Serializer::serialize(
        &mut hdrhistogram::serialization::V2DeflateSerializer::new(),
        h,
        &mut buf,
    )
    .expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

fn decode(s: &str) -> Result<Histogram<u64>, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| e.to_string())?;
    let h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{e:?}"))?;
    let mut out = histogram();
    out.add(&h).map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

impl From<&Stats> for WireStats {
    fn from(s: &Stats) -> Self {
        WireStats {
            methods: s
                .methods
                .iter()
                .map(|(l, m)| (l.clone(), (m.count, m.ok, encode(&m.corrected), encode(&m.raw))))
                .collect(),
            errors: s.errors.clone(),
            send_lag: s.send_lag.as_ref().map(encode),
            start_lag: s.start_lag.as_ref().map(encode),
            samples: s.samples.clone(),
        }
    }
}

impl TryFrom<&WireStats> for Stats {
    type Error = String;

    fn try_from(w: &WireStats) -> Result<Self, String> {
        let mut s = Stats { errors: w.errors.clone(), samples: w.samples.clone(), ..Default::default() };
        for (label, (count, ok, c, r)) in &w.methods {
            s.methods
                .insert(label.clone(), MethodStats { count: *count, ok: *ok, corrected: decode(c)?, raw: decode(r)? });
        }
        s.send_lag = w.send_lag.as_deref().map(decode).transpose()?;
        s.start_lag = w.start_lag.as_deref().map(decode).transpose()?;
        Ok(s)
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn stats_survive_the_wire_exactly() {
        let mut s = Stats::default();
        for i in 1..=1000u64 {
            s.record(
                "tools/call:echo",
                if i % 10 == 0 { Err(ErrorClass::Jsonrpc) } else { Ok(()) },
                i * 100,
                i * 90,
                i,
            );
        }
        s.session_started(1500);
        let json = serde_json::to_string(&WireStats::from(&s)).unwrap();
        let back = Stats::try_from(&serde_json::from_str::<WireStats>(&json).unwrap()).unwrap();
        assert_eq!(back.totals(), s.totals());
        assert_eq!(back.errors, s.errors);
        let ((c1, r1), (c2, r2)) = (s.latency(), back.latency());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(c1.value_at_quantile(q), c2.value_at_quantile(q));
            assert_eq!(r1.value_at_quantile(q), r2.value_at_quantile(q));
        }
        assert_eq!(back.start_lag.unwrap().len(), 1);
    }
}
