//! The stack's Prometheus, through its HTTP API on the host-mode port: instant queries for
//! per-replica figures and range queries saved with the results.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};

pub use crate::http::get;

/// A Prometheus reached at `host:port`.
#[derive(Debug, Clone)]
pub struct Prometheus {
    host: String,
    port: u16,
}

/// `application/x-www-form-urlencoded` for a query-string value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Prometheus {
    /// The stack's Prometheus at `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Prometheus { host: host.into(), port }
    }

    async fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = get(&self.host, self.port, path, Duration::from_secs(10)).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("Prometheus answered {status} with something else than JSON"))?;
        if v["status"] != "success" {
            bail!("Prometheus: {} ({})", v["error"].as_str().unwrap_or("error"), v["errorType"].as_str().unwrap_or(""));
        }
        Ok(v)
    }

    /// An instant query: each series' labels and value.
    pub async fn query(&self, expr: &str) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        self.query_at(expr, None).await
    }

    /// An instant query evaluated at `at` (Unix seconds), or now.
    pub async fn query_at(&self, expr: &str, at: Option<f64>) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
        let time = at.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        let v = self.api(&format!("/api/v1/query?query={}{time}", encode(expr))).await?;
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().into_iter().flatten() {
            let labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let value = s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()).unwrap_or(f64::NAN);
            out.push((labels, value));
        }
        Ok(out)
    }

    /// `expr` at `at` (Unix seconds), by one label, as `label value → value`.
    pub async fn by_at(&self, expr: &str, label: &str, at: f64) -> anyhow::Result<BTreeMap<String, f64>> {
        Ok(self
            .query_at(expr, Some(at))
            .await?
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v))
            .collect())
    }

    /// A range query's whole answer (JSON), `start`..`end` in Unix ms.
    pub async fn range(
        &self,
        expr: &str,
        start_ms: u64,
        end_ms: u64,
        step_s: u64,
    ) -> anyhow::Result<serde_json::Value> {
        self.api(&format!(
            "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step={step_s}",
            encode(expr),
            start_ms as f64 / 1000.0,
            end_ms as f64 / 1000.0
        ))
        .await
    }

    /// A range query's series by the value of `label`: (Unix ms, value) each, finite values only.
    pub fn matrix(answer: &serde_json::Value, label: &str) -> BTreeMap<String, Vec<(u64, f64)>> {
        let mut out = BTreeMap::new();
        for s in answer["data"]["result"].as_array().into_iter().flatten() {
            let key = s["metric"][label].as_str().unwrap_or_default().to_string();
            let points = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let at = p[0].as_f64()?;
                    let v: f64 = p[1].as_str()?.parse().ok()?;
                    v.is_finite().then_some(((at * 1000.0).round() as u64, v))
                })
                .collect();
            out.insert(key, points);
        }
        out
    }

    /// The active scrape targets: (job, slot, instance, health).
    pub async fn targets(&self) -> anyhow::Result<Vec<(String, String, String, String)>> {
        let v = self.api("/api/v1/targets?state=active").await?;
        Ok(v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let l = &t["labels"];
                (
                    l["job"].as_str().unwrap_or("").to_string(),
                    l["slot"].as_str().unwrap_or("").to_string(),
                    l["instance"].as_str().unwrap_or("").to_string(),
                    t["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_encoded_for_the_url() {
        assert_eq!(super::encode("sum by (slot) (rate(x[30s]))"), "sum%20by%20%28slot%29%20%28rate%28x%5B30s%5D%29%29");
    }

    #[test]
    fn a_range_answer_becomes_series_by_label() {
        let answer = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"slot": "1"}, "values": [[1700000000.5, "12.5"], [1700000005.5, "NaN"], [1700000010.5, "13"]]},
            {"metric": {"slot": "2"}, "values": [[1700000000.5, "7"]]}
        ]}});
        let m = super::Prometheus::matrix(&answer, "slot");
        assert_eq!(m["1"], [(1_700_000_000_500, 12.5), (1_700_000_010_500, 13.0)]);
        assert_eq!(m["2"], [(1_700_000_000_500, 7.0)]);
        assert!(super::Prometheus::matrix(&serde_json::json!({"status": "error"}), "slot").is_empty());
    }
}
