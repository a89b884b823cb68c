//! What the virtual clients do: the request mix, the pacing model, the thresholds. Parsed
//! from flags once; pure, table-tested.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

/// One kind of request in the mix, with its pre-built JSON-RPC text around the id.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The method (`tools/call`, `ping`, …).
    pub method: String,
    /// For reports: `tools/call:echo` or the method.
    pub label: String,
    /// The request up to the id: `{"jsonrpc":"2.0","id":`.
    pub prefix: String,
    /// The request after the id.
    pub suffix: String,
    /// Relative weight.
    pub weight: u32,
}

impl Call {
    /// The request bytes for `id`: only the id is spliced in at run time.
    pub fn bytes(&self, id: u64) -> Vec<u8> {
        use std::io::Write as _;
        let mut out = Vec::with_capacity(self.prefix.len() + 20 + self.suffix.len());
        out.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(out, "{id}"); // into a Vec: cannot fail
        out.extend_from_slice(self.suffix.as_bytes());
        out
    }
}

/// The weighted request mix: `ping=1,tools/list=1,tools/call:echo=8`. A `tools/call:NAME`
/// entry calls tool NAME with the arguments the reference server's tools take (echo: a short
/// message; add: two numbers; sleep: `tools/call:sleep(ms=50)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// The calls, in the order given.
    pub calls: Vec<Call>,
    total: u32,
    /// As given.
    spec: String,
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.spec)
    }
}

crate::units::text_serde!(Mix);
crate::units::text_serde!(Stages);
crate::units::text_serde!(Threshold);

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

impl Mix {
    /// Picks a call for the `n`-th request of a session deterministically (round-robin over the
    /// weights, offset per session), so every run with the same flags sends the same requests.
    pub fn pick(&self, n: u64) -> &Call {
        let mut slot = (n % u64::from(self.total)) as u32;
        for c in &self.calls {
            if slot < c.weight {
                return c;
            }
            slot -= c.weight;
        }
        &self.calls[0]
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut calls = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (spec, weight) =
                part.rsplit_once('=').ok_or_else(|| format!("`{part}` needs a weight: e.g. ping=1"))?;
            let weight: u32 = weight.parse().map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
            if weight == 0 {
                continue;
            }
            let (method, params) = if let Some(tool) = spec.strip_prefix("tools/call:") {
                let (name, args) = match tool.split_once('(') {
                    Some((name, rest)) => {
                        (name, parse_args(rest.strip_suffix(')').ok_or_else(|| format!("`{part}`: missing `)`"))?)?)
                    }
                    None => (tool, default_args(tool)),
                };
                ("tools/call".to_string(), Some(serde_json::json!({"name": name, "arguments": args})))
            } else {
                let known = ["ping", "tools/list", "resources/list", "prompts/list"];
                if !known.contains(&spec) && !spec.starts_with("resources/read:") {
                    return Err(format!("`{spec}` is not a request the mix can send: use ping, tools/list, resources/list, prompts/list, resources/read:URI or tools/call:TOOL"));
                }
                match spec.strip_prefix("resources/read:") {
                    Some(uri) => ("resources/read".to_string(), Some(serde_json::json!({"uri": uri}))),
                    None => (spec.to_string(), None),
                }
            };
            let label = if method == "tools/call" {
                spec.split('(').next().unwrap_or(spec).to_string()
            } else {
                method.clone()
            };
            let params = params.map(|p| format!(",\"params\":{p}")).unwrap_or_default();
            calls.push(Call {
                prefix: "{\"jsonrpc\":\"2.0\",\"id\":".into(),
                suffix: format!(",\"method\":\"{method}\"{params}}}"),
                method,
                label,
                weight,
            });
        }
        if calls.is_empty() {
            return Err("the mix is empty: give at least one request with a weight above 0".into());
        }
        let total = calls.iter().map(|c| c.weight).sum();
        Ok(Mix { calls, total, spec: s.trim().to_string() })
    }
}

fn default_args(tool: &str) -> Value {
    match tool {
        "echo" => serde_json::json!({"message": "swarmctl"}),
        "add" => serde_json::json!({"a": 1, "b": 2}),
        "sleep" => serde_json::json!({"ms": 10}),
        "blob" => serde_json::json!({"bytes": 1024}),
        _ => serde_json::json!({}),
    }
}

/// `key=value;key=value` → a JSON object; numbers stay numbers.
fn parse_args(s: &str) -> Result<Value, String> {
    let mut map = serde_json::Map::new();
    for kv in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("argument `{kv}` needs KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(Value::Object(map))
}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Each session waits this long after an answer before its next request (0: back to back).
    Closed {
        /// Think time.
        #[serde(with = "crate::units::std_duration")]
        think: Duration,
    },
    /// Requests are due at a fixed total rate, spread evenly over the sessions, whatever the
    /// answers do; latency counts from when a request was due (coordinated omission corrected).
    Open {
        /// Requests per second, all sessions together.
        rate: f64,
    },
    /// The open model with a rate that changes by stages, after every session has started.
    Staged(Stages),
}

/// Open-model stages: `30s:0->1000,2m:1000,30s:1000->0`, each a duration and a constant rate
/// or a linear change from one rate to another (requests per second, all sessions together).
#[derive(Debug, Clone, PartialEq)]
pub struct Stages(pub Vec<Stage>);

/// One stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long.
    pub duration: Duration,
    /// Rate at its start.
    pub from: f64,
    /// Rate at its end.
    pub to: f64,
}

impl FromStr for Stages {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| {
                format!("stage `{part}`: {why}; write DURATION:RATE or DURATION:FROM->TO, e.g. 30s:0->1000,2m:1000")
            };
            let (d, r) = part.split_once(':').ok_or_else(|| bad("no `:`"))?;
            let duration: crate::units::Duration =
                d.trim().parse().map_err(|e: crate::units::UnitError| bad(&e.to_string()))?;
            if duration.0.is_zero() {
                return Err(bad("a stage lasts longer than 0s"));
            }
            let rate = |x: &str| match x.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(bad(&format!("`{}` is not a rate of at least 0 requests per second", x.trim()))),
            };
            let (from, to) = match r.split_once("->") {
                Some((a, b)) => (rate(a)?, rate(b)?),
                None => (rate(r)?, rate(r)?),
            };
            out.push(Stage { duration: duration.0, from, to });
        }
        if out.is_empty() {
            return Err("no stage given, e.g. 30s:0->1000,2m:1000,30s:1000->0".into());
        }
        if out.iter().all(|s| s.from == 0.0 && s.to == 0.0) {
            return Err("every stage has rate 0: nothing would be sent".into());
        }
        Ok(Stages(out))
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|s| {
                let d = crate::units::Duration(s.duration);
                if s.from == s.to {
                    format!("{d}:{}", s.from)
                } else {
                    format!("{d}:{}->{}", s.from, s.to)
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Stages {
    /// All stages together.
    pub fn total(&self) -> Duration {
        self.0.iter().map(|s| s.duration).sum()
    }

    /// Requests the whole schedule sends.
    pub fn requests(&self) -> f64 {
        self.0.iter().map(|s| (s.from + s.to) / 2.0 * s.duration.as_secs_f64()).sum()
    }

    /// Every rate multiplied by `k` (a worker's share).
    pub fn scaled(&self, k: f64) -> Stages {
        Stages(self.0.iter().map(|s| Stage { duration: s.duration, from: s.from * k, to: s.to * k }).collect())
    }

    /// When (seconds after the schedule starts) the `k`-th request is due: the moment the
    /// integral of the rate reaches `k`. `None` past the end.
    pub fn time_of(&self, k: f64) -> Option<f64> {
        let mut start = 0.0;
        let mut done = 0.0;
        for s in &self.0 {
            let d = s.duration.as_secs_f64();
            let here = (s.from + s.to) / 2.0 * d;
            if k < done + here {
                let need = k - done;
                // ∫ rate = from·τ + (to − from)/(2d)·τ² = need
                let slope = (s.to - s.from) / d;
                let tau = if slope.abs() < 1e-12 {
                    need / s.from
                } else {
                    (-s.from + (s.from * s.from + 2.0 * slope * need).max(0.0).sqrt()) / slope
                };
                return Some(start + tau.clamp(0.0, d));
            }
            done += here;
            start += d;
        }
        None
    }
}

/// A pass/fail condition on the results: `p99<500ms`, `success>=99.9%`, `tools/call:p95<50ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written.
    pub expr: String,
    /// Method label, or `None` for all methods but initialize.
    pub method: Option<String>,
    /// What is compared.
    pub metric: Metric,
    /// `<`, `<=`, `>`, `>=`.
    pub op: String,
    /// The bound (milliseconds for latencies, a ratio for success).
    pub bound: f64,
}

/// What a threshold compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (corrected), e.g. 99.0.
    Percentile(f64),
    /// Share of successful requests.
    Success,
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid threshold `{s}`: {why}; e.g. p99<500ms, p50<=20ms, success>=99.9%, tools/call:p95<50ms")
        };
        let (method, rest) = match s.rsplit_once(':') {
            Some((m, r)) if !m.is_empty() => (Some(m.to_string()), r),
            _ => (None, s),
        };
        let pos = rest.find(['<', '>']).ok_or_else(|| bad("no comparison"))?;
        let (name, cmp) = rest.split_at(pos);
        let op_len = if cmp[1..].starts_with('=') { 2 } else { 1 };
        let (op, value) = cmp.split_at(op_len);
        let metric = match name.trim() {
            "success" => Metric::Success,
            p if p.starts_with('p') => {
                let digits = &p[1..];
                // p99 → 99, p999 → 99.9, p9999 → 99.99, p50 → 50
                let pct = if digits.len() > 2 && digits.starts_with("99") {
                    format!("99.{}", &digits[2..]).parse::<f64>()
                } else {
                    digits.parse::<f64>()
                }
                .map_err(|_| bad("unknown percentile"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(bad("a percentile is from p0 to p100"));
                }
                Metric::Percentile(pct)
            }
            _ => return Err(bad("compare pNN or success")),
        };
        let value = value.trim();
        let bound = match metric {
            Metric::Success => {
                // Rounded, so that 99.9 % is 0.999 and a run at exactly 99.9 % passes `>=`.
                let v = value
                    .strip_suffix('%')
                    .map(|p| p.parse::<f64>().map(|x| (x / 100.0 * 1e9).round() / 1e9))
                    .unwrap_or_else(|| value.parse());
                v.map_err(|_| bad("success needs a ratio or a percentage"))?
            }
            Metric::Percentile(_) => {
                let d: crate::units::Duration = value.parse().map_err(|_| bad("a latency bound needs a unit"))?;
                d.0.as_secs_f64() * 1e3
            }
        };
        Ok(Threshold { expr: s.to_string(), method, metric, op: op.to_string(), bound })
    }
}

impl Threshold {
    /// Whether `actual` satisfies the threshold.
    pub fn holds(&self, actual: f64) -> bool {
        match self.op.as_str() {
            "<" => actual < self.bound,
            "<=" => actual <= self.bound,
            ">" => actual > self.bound,
            _ => actual >= self.bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_and_place_each_request_where_the_rate_integral_reaches_it() {
        let s: Stages = "2s:0->100,1s:100,2s:100->0".parse().unwrap();
        assert_eq!(s.to_string(), "2s:0->100,1s:100,2s:100->0");
        assert_eq!(s.total(), Duration::from_secs(5));
        assert_eq!(s.requests(), 300.0);
        // Ramp 0 → 100 over 2 s: ∫ = 25 t², so request 25 is due at 1 s, request 100 at 2 s.
        assert!((s.time_of(25.0).unwrap() - 1.0).abs() < 1e-9);
        assert!((s.time_of(100.0).unwrap() - 2.0).abs() < 1e-9);
        // Constant 100/s: request 150 at 2.5 s.
        assert!((s.time_of(150.0).unwrap() - 2.5).abs() < 1e-9);
        // Ramp down 100 → 0 over 2 s: ∫ = 100 τ − 25 τ²; 75 more requests at τ = 1 s.
        assert!((s.time_of(275.0).unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(s.time_of(300.0), None, "past the end");
        // Requests at each whole second, counted from the times: what the rate says.
        let due: Vec<f64> = (0..300).filter_map(|k| s.time_of(k as f64 + 0.5)).collect();
        let per_second: Vec<usize> =
            (0..5).map(|sec| due.iter().filter(|t| t.floor() as usize == sec).count()).collect();
        assert_eq!(per_second, [25, 75, 100, 75, 25]);
        // A pause at rate 0 sends nothing and skips ahead.
        let p: Stages = "1s:10,1s:0,1s:10".parse().unwrap();
        assert!((p.time_of(10.5).unwrap() - 2.05).abs() < 1e-9);
        assert_eq!(s.scaled(0.5).requests(), 150.0);
        for bad in ["", "10s", "10s:x", "0s:10", "1s:-5", "1s:0,2s:0->0", "1s:1->"] {
            assert!(bad.parse::<Stages>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mixes_build_requests_with_only_the_id_left() {
        let mix: Mix = "ping=1,tools/list=1,tools/call:echo=8".parse().unwrap();
        assert_eq!(mix.calls.len(), 3);
        let echo = &mix.calls[2];
        assert_eq!(echo.label, "tools/call:echo");
        let req: Value = serde_json::from_slice(&echo.bytes(42)).unwrap();
        assert_eq!(req["id"], 42);
        assert_eq!(req["params"]["arguments"]["message"], "swarmctl");
        let picks: Vec<&str> = (0..10).map(|n| mix.pick(n).label.as_str()).collect();
        assert_eq!(picks.iter().filter(|p| **p == "tools/call:echo").count(), 8);
        let sleep: Mix = "tools/call:sleep(ms=50)=1".parse().unwrap();
        let req: Value = serde_json::from_slice(&sleep.calls[0].bytes(1)).unwrap();
        assert_eq!(req["params"]["arguments"]["ms"], 50);
        for bad in ["", "ping", "ping=x", "nope=1", "ping=0"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn thresholds_parse_and_judge() {
        let t: Threshold = "p99<500ms".parse().unwrap();
        assert_eq!((t.metric, t.op.as_str(), t.bound, t.method.clone()), (Metric::Percentile(99.0), "<", 500.0, None));
        assert!(t.holds(499.0) && !t.holds(500.0));
        let t: Threshold = "success>=99.9%".parse().unwrap();
        assert_eq!((t.metric, t.bound), (Metric::Success, 0.999));
        let t: Threshold = "tools/call:p999<=1s".parse().unwrap();
        assert_eq!((t.metric, t.bound, t.method.as_deref()), (Metric::Percentile(99.9), 1000.0, Some("tools/call")));
        for bad in ["p99", "p99<500", "latency<1s", "success>=lots", "p101<1s"] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }
}
