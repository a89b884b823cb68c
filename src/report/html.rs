//! report.html: one self-contained file (no script, no external asset) with SVG charts drawn
//! from the timeline, swarm events marked on every chart, and the verdict table.

use std::fmt::Write;

use super::{text, TestRun};

const W: f64 = 900.0;
const H: f64 = 220.0;
const PAD_L: f64 = 64.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 28.0;
const PAD_B: f64 = 32.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart over seconds since the start, with vertical markers.
fn chart(title: &str, unit: &str, series: &[Series], markers: &[(f64, String, &str)], t_max: f64) -> String {
    let y_max = nice_max(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max));
    let t_max = t_max.max(1.0);
    let x = |t: f64| PAD_L + (t / t_max) * (W - PAD_L - PAD_R);
    let y = |v: f64| H - PAD_B - (v / y_max) * (H - PAD_T - PAD_B);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><rect width="{W}" height="{H}" fill="#fff"/><text x="{PAD_L}" y="18" font-size="13" font-weight="bold">{t}</text>"##,
        t = esc(title)
    );
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{} {}</text>"##,
            W - PAD_R,
            PAD_L - 4.0,
            yy + 3.0,
            fmt_num(v),
            esc(unit)
        );
    }
    for i in 0..=6 {
        let t = t_max * i as f64 / 6.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{:.0} s</text>"##,
            x(t),
            H - PAD_B + 14.0,
            t
        );
    }
    for (t, label, color) in markers {
        let xx = x(*t);
        let _ = write!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{PAD_T}" y2="{}" stroke="{color}" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" font-size="9" fill="{color}">{}</text>"##,
            H - PAD_B,
            xx + 2.0,
            PAD_T + 8.0,
            esc(label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        // A gap of more than two seconds (between phases) breaks the line: nothing was
        // measured there, and a line would suggest otherwise.
        let mut runs: Vec<Vec<String>> = Vec::new();
        let mut last_t = f64::NEG_INFINITY;
        for (t, v) in &s.points {
            if *t - last_t > 2.5 || runs.is_empty() {
                runs.push(Vec::new());
            }
            runs.last_mut().expect("pushed").push(format!("{:.1},{:.1}", x(*t), y(*v)));
            last_t = *t;
        }
        for pts in runs {
            let _ = write!(
                svg,
                r##"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"##,
                s.color,
                pts.join(" ")
            );
        }
        let lx = W - PAD_R - 150.0 * (series.len() - i) as f64;
        let _ = write!(
            svg,
            r##"<rect x="{lx:.0}" y="8" width="10" height="10" fill="{}"/><text x="{:.0}" y="17" font-size="11">{}</text>"##,
            s.color,
            lx + 14.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn fmt_num(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The whole report page.
pub fn html(r: &TestRun) -> String {
    let t0 = r.started_ms;
    let at = |ms: u64| ms.saturating_sub(t0) as f64 / 1000.0;
    let t_max = at(r.finished_ms.max(r.timeline.last().map(|p| p.at_ms).unwrap_or(0)));
    let series = |name: &'static str, color: &'static str, f: &dyn Fn(&super::Point) -> f64| Series {
        name,
        color,
        points: r.timeline.iter().map(|p| (at(p.at_ms), f(p))).collect(),
    };
    let markers: Vec<(f64, String, &str)> = r
        .events
        .iter()
        .filter_map(|e| {
            let color = match e.kind.as_str() {
                "kill" => "#c0392b",
                "recovered" => "#27ae60",
                "scale" => "#8e44ad",
                "phase" => "#7f8c8d",
                _ => return None,
            };
            let label = match e.kind.as_str() {
                "phase" => e.detail.clone(),
                k => k.to_string(),
            };
            Some((at(e.at_ms), label, color))
        })
        .collect();
    let charts = [
        chart(
            "Latency (corrected, per second)",
            "ms",
            &[series("p50", "#2980b9", &|p| p.p50_ms), series("p99", "#e67e22", &|p| p.p99_ms)],
            &markers,
            t_max,
        ),
        chart("Throughput", "req/s", &[series("requests/s", "#16a085", &|p| p.requests as f64)], &markers, t_max),
        chart("Sessions open", "", &[series("sessions", "#2c3e50", &|p| p.sessions as f64)], &markers, t_max),
        chart(
            "Errors",
            "/s",
            &[series("errors/s", "#c0392b", &|p| p.errors.values().sum::<u64>() as f64)],
            &markers,
            t_max,
        ),
        chart("Server replicas", "", &[series("replicas", "#8e44ad", &|p| p.replicas as f64)], &markers, t_max),
    ];
    let mut h = String::new();
    let _ = write!(
        h,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>swarmctl {kind}: {verdict}</title><style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:960px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}}
.pass{{color:#1e8449;font-weight:bold}}.fail,.error{{color:#c0392b;font-weight:bold}}.interrupted{{color:#b9770e;font-weight:bold}}
svg{{display:block;margin:12px 0;border:1px solid #eee}}pre{{background:#f6f6f6;padding:8px;font-size:12px;white-space:pre-wrap}}
</style></head><body><h1>swarmctl {kind} on <code>{stack}</code>: <span class="{vclass}">{verdict}</span></h1>"##,
        kind = esc(&r.kind),
        stack = esc(&r.stack),
        verdict = esc(r.verdict.upper()),
        vclass = esc(r.verdict.as_str())
    );
    if let Some(e) = &r.error {
        let _ = write!(h, "<p class=\"error\">The run stopped early: {}</p>", esc(e));
    }
    let _ = write!(h, "<table><tr><th>phase</th><th>verdict</th><th>measured</th></tr>");
    for p in &r.phases {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&p.name),
            esc(p.verdict.as_str()),
            esc(p.verdict.upper()),
            p.reasons.iter().map(|x| esc(x)).collect::<Vec<_>>().join("<br>")
        );
    }
    h.push_str("</table>");
    for c in &charts {
        h.push_str(c);
    }
    let _ = writeln!(h, "<h2>Full report</h2><pre>{}</pre></body></html>", esc(&text::markdown(r)));
    h
}

#[cfg(test)]
mod tests {
    use super::nice_max;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(2100.0), 2500.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }
}
