//! report.html: one self-contained, printable file (no script, no external asset) whose charts
//! answer what a platform engineer asks of a run: how latency stood against the SLO while load
//! ramped and held, where the latency distribution bends, what each replica carried, what the
//! kill cost and how throughput grew with replicas. A chart with nothing to show is one line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::svg::{esc, num, Band, Bar, Chart, Line, Mark, Rule, Scale};
use super::{text, Phase, Point, TestRun};
use crate::load::stats::LatencyMs;

/// Colours the tests look for in screenshots: keep them apart from each other.
const P50: &str = "#2980b9";
const P99: &str = "#e67e22";
const THROUGHPUT: &str = "#16a085";
const SLO: &str = "#d81b60";
const ERRORS: &str = "#c0392b";
const SESSIONS: &str = "#2c3e50";
const REPLICAS: &str = "#8e44ad";
const RECOVERED: &str = "#27ae60";
const RAMP: &str = "#e8f0fb";
const HOLD: &str = "#edf7ee";
const OTHER: &str = "#f3f3f3";
const METHOD_COLOURS: [&str; 6] = ["#2980b9", "#e67e22", "#16a085", "#8e44ad", "#7f8c8d", "#c0392b"];

const W: f64 = 900.0;
const H: f64 = 220.0;

/// Seconds since the run began, for an instant.
struct Clock(u64);

impl Clock {
    fn at(&self, ms: u64) -> f64 {
        ms as f64 / 1000.0 - self.0 as f64 / 1000.0
    }
}

/// The seconds the load ran: every time chart spans these and no more.
fn window(r: &TestRun, c: &Clock) -> Option<Scale> {
    let first = r.timeline.first()?;
    let last = r.timeline.last()?;
    Some(Scale::span(c.at(first.at_ms) - 1.0, c.at(last.at_ms)))
}

/// The load behind a stretch of the timeline: a phase's, or an incremental stage's
/// (`incremental-300`).
fn load_of<'a>(r: &'a TestRun, label: &str) -> Option<&'a crate::load::RunResult> {
    r.phases.iter().find_map(|p| {
        if p.name == label {
            return p.load.as_ref();
        }
        // Named by the sessions run, which the pre-flight may have capped below those asked.
        let sessions: u64 = label.strip_prefix(&p.name)?.strip_prefix('-')?.parse().ok()?;
        p.stages.iter().find(|s| s.sessions_run == sessions).map(|s| &s.load)
    })
}

/// Each stretch of load's ramp and hold as shaded bands, named at the ramp's start.
fn bands(r: &TestRun, c: &Clock) -> Vec<Band> {
    let mut out = Vec::new();
    let mut rest = &r.timeline[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|t| t.phase == first.phase).count();
        let last = &rest[n - 1];
        rest = &rest[n..];
        let (start, end) = (c.at(first.at_ms) - 1.0, c.at(last.at_ms));
        let ramp = load_of(r, &first.phase).map_or(0.0, |l| {
            if l.generator.ramp_s > 0.0 {
                l.generator.ramp_s
            } else if l.config.ramp > 0.0 {
                l.config.sessions as f64 / l.config.ramp
            } else {
                0.0
            }
        });
        let label = first.phase.clone();
        if ramp > 0.0 {
            // A run stopped during its ramp is all ramp.
            let ramp_end = (start + ramp).min(end);
            out.push(Band { x0: start, x1: ramp_end, fill: RAMP, label });
            if ramp_end < end {
                out.push(Band { x0: ramp_end, x1: end, fill: HOLD, label: String::new() });
            }
        } else {
            out.push(Band { x0: start, x1: end, fill: OTHER, label });
        }
    }
    out
}

fn marks(r: &TestRun, c: &Clock) -> Vec<Mark> {
    r.events
        .iter()
        .filter_map(|e| {
            let color = match e.kind.as_str() {
                "kill" | "hang" | "release" | "netem" => ERRORS,
                "recovered" => RECOVERED,
                "scale" | "resume" => REPLICAS,
                _ => return None,
            };
            Some(Mark { x: c.at(e.at_ms), color, label: e.kind.clone() })
        })
        .collect()
}

/// When every value is the same, the sentence that replaces the chart.
fn flat(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut it = values.into_iter();
    let first = it.next()?;
    it.all(|v| v == first).then_some(first)
}

fn series(r: &TestRun, c: &Clock, name: &str, color: &'static str, f: impl Fn(&Point) -> f64) -> Line {
    Line { name: name.into(), color, dashed: false, points: r.timeline.iter().map(|p| (c.at(p.at_ms), f(p))).collect() }
}

/// A latency line: a second in which no request completed has no latency, and its 0 would
/// draw a dive to the axis; the line breaks there instead.
fn latency_series(r: &TestRun, c: &Clock, name: &str, color: &'static str, f: impl Fn(&Point) -> f64) -> Line {
    let points = r.timeline.iter().filter(|p| p.requests > 0).map(|p| (c.at(p.at_ms), f(p))).collect();
    Line { name: name.into(), color, dashed: false, points }
}

/// A time chart over the load's seconds, with the phases shaded and the events marked.
fn over_time(r: &TestRun, c: &Clock, x: Scale, title: &str, y: Scale, unit: &str, lines: Vec<Line>) -> Chart {
    let mut chart = Chart::new(title, W, H, x, y);
    chart.x_unit = " s".into();
    chart.y_unit = unit.into();
    chart.bands = bands(r, c);
    chart.marks = marks(r, c);
    chart.lines = lines;
    chart
}

/// Decades from the fastest to the slowest, the SLO included so that its line is always drawn.
fn latency_scale(values: impl Iterator<Item = f64> + Clone, slo: f64) -> Scale {
    let lo = values.clone().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let hi = values.fold(slo, f64::max);
    Scale::decades(if lo.is_finite() { lo } else { 1.0 }, hi)
}

fn slo_rule(r: &TestRun) -> Vec<Rule> {
    if r.slo.p99_ms > 0.0 {
        vec![Rule { y: r.slo.p99_ms, color: SLO, label: format!("SLO: p99 ≤ {} ms", num(r.slo.p99_ms)) }]
    } else {
        Vec::new()
    }
}

/// The charts over time, or sentences where a chart would be a flat line.
fn timeline(r: &TestRun, c: &Clock, out: &mut String) {
    let Some(x) = window(r, c) else {
        out.push_str("<p>No load was measured: there is nothing to chart over time.</p>");
        return;
    };
    let tl = &r.timeline;
    let seconds = tl.len();
    let lat = latency_scale(tl.iter().flat_map(|p| [p.p50_ms, p.p99_ms]), r.slo.p99_ms);
    let mut latency = over_time(
        r,
        c,
        x,
        "Latency, corrected, each second (log scale)",
        lat,
        " ms",
        vec![latency_series(r, c, "p50", P50, |p| p.p50_ms), latency_series(r, c, "p99", P99, |p| p.p99_ms)],
    );
    latency.rules = slo_rule(r);
    out.push_str(&latency.render());
    let rps = tl.iter().map(|p| p.requests as f64).fold(0.0, f64::max);
    out.push_str(
        &over_time(
            r,
            c,
            x,
            "Throughput",
            Scale::zero_to(rps),
            "/s",
            vec![series(r, c, "requests/s", THROUGHPUT, |p| p.requests as f64)],
        )
        .render(),
    );
    match flat(tl.iter().map(|p| p.sessions as f64)) {
        Some(v) => {
            let _ = write!(out, "<p class=\"flat\">Sessions open: {} throughout the {seconds} s of load.</p>", num(v));
        }
        None => {
            let peak = tl.iter().map(|p| p.sessions as f64).fold(0.0, f64::max);
            let sessions = series(r, c, "sessions", SESSIONS, |p| p.sessions as f64);
            out.push_str(&over_time(r, c, x, "Sessions open", Scale::zero_to(peak), "", vec![sessions]).render());
        }
    }
    let classes: BTreeSet<&String> = tl.iter().flat_map(|p| p.errors.keys()).collect();
    if classes.is_empty() {
        let _ = write!(out, "<p class=\"flat\">Errors: no request failed in the {seconds} s of load.</p>");
    } else {
        let palette = [ERRORS, "#b9770e", "#6c3483", "#1f618d", "#7b7d7d", "#117864"];
        let lines: Vec<Line> = classes
            .iter()
            .zip(palette.iter().cycle())
            .map(|(class, color)| series(r, c, class, color, |p| p.errors.get(*class).copied().unwrap_or(0) as f64))
            .collect();
        let top = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
        out.push_str(&over_time(r, c, x, "Errors by class", Scale::zero_to(top), "/s", lines).render());
    }
    match flat(tl.iter().map(|p| p.replicas as f64)) {
        // A bare load knows nothing of replicas.
        Some(0.0) => {}
        Some(v) => {
            let _ = write!(out, "<p class=\"flat\">Server replicas: {} throughout.</p>", num(v));
        }
        None => {
            let top = tl.iter().map(|p| p.replicas as f64).fold(0.0, f64::max);
            let replicas = series(r, c, "replicas", REPLICAS, |p| p.replicas as f64);
            out.push_str(&over_time(r, c, x, "Server replicas", Scale::zero_to(top), "", vec![replicas]).render());
        }
    }
}

/// Where each percentile of the spectrum lies: log10(1 / (1 − p)), the HDR histogram plot's axis
/// that gives the tail the room it deserves; the maximum is drawn at 99.99 %.
const SPECTRUM: [(f64, &str); 6] =
    [(0.0, "min"), (std::f64::consts::LOG10_2, "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "max")];

fn spectrum(l: &LatencyMs) -> Vec<(f64, f64)> {
    [
        (0.0, l.min),
        (std::f64::consts::LOG10_2, l.p50),
        (1.0, l.p90),
        (1.0 + std::f64::consts::LOG10_2, l.p95),
        (2.0, l.p99),
        (3.0, l.p999),
        (4.0, l.max),
    ]
    .into_iter()
    .collect()
}

/// The percentile spectrum of one phase's requests, corrected (solid) and raw (dashed), per
/// method.
fn distribution(r: &TestRun, p: &Phase) -> Option<String> {
    let load = p.load.as_ref()?;
    let all_methods = load.by_method.values().filter(|m| m.count > 0).count();
    let methods: Vec<(&String, &crate::load::MethodSummary)> =
        load.by_method.iter().filter(|(_, m)| m.count > 0).take(METHOD_COLOURS.len()).collect();
    if methods.is_empty() {
        return None;
    }
    let all = methods
        .iter()
        .flat_map(|(_, m)| spectrum(&m.latency_ms).into_iter().chain(spectrum(&m.latency_uncorrected_ms)).map(|p| p.1));
    let y = latency_scale(all.collect::<Vec<_>>().into_iter(), r.slo.p99_ms);
    let mut chart = Chart::new(
        match all_methods > methods.len() {
            true => format!(
                "Latency distribution, {}: the first {} of {all_methods} methods, corrected solid, raw dashed (log scales)",
                p.name,
                methods.len()
            ),
            false => format!("Latency distribution, {}: corrected solid, raw dashed (log scales)", p.name),
        },
        W,
        260.0,
        Scale::span(0.0, 4.0),
        y,
    );
    chart.x_labels = Some(SPECTRUM.iter().map(|(x, l)| (*x, l.to_string())).collect());
    chart.y_unit = " ms".into();
    chart.gap = f64::INFINITY;
    for ((name, m), color) in methods.iter().zip(METHOD_COLOURS) {
        chart.lines.push(Line { name: (*name).clone(), color, dashed: false, points: spectrum(&m.latency_ms) });
        chart.lines.push(Line {
            name: format!("{name} raw"),
            color,
            dashed: true,
            points: spectrum(&m.latency_uncorrected_ms),
        });
    }
    chart.rules = slo_rule(r);
    Some(chart.render())
}

/// The failover phase zoomed on the kill: errors each second and p99, with the kill, the
/// replacement running and the clients' recovery marked.
fn failover(r: &TestRun, c: &Clock, p: &Phase) -> Option<String> {
    let f = p.failover.as_ref()?;
    let kill = c.at(f.kill_ms);
    let mut marks = vec![Mark { x: kill, color: ERRORS, label: "kill".into() }];
    for k in &f.kills {
        if let Some(at) = k.replacement_running_ms {
            marks.push(Mark { x: c.at(at), color: REPLICAS, label: format!("slot {} running", k.slot) });
        }
    }
    if let Some(s) = f.recovery_s {
        marks.push(Mark { x: kill + s, color: RECOVERED, label: "recovered".into() });
    }
    zoom(r, c, p, "the kill", kill, f.last_error_ms.map(|at| c.at(at)), marks)
}

/// The hang phase zoomed on the stop: errors each second and p99, with the stop, the resume
/// and the clients' recovery marked.
fn hang(r: &TestRun, c: &Clock, p: &Phase) -> Option<String> {
    let h = p.hang.as_ref()?;
    let stopped = c.at(h.stopped_ms);
    let mut marks = vec![Mark { x: stopped, color: ERRORS, label: format!("slot {} stopped", h.slot) }];
    if let Some(at) = h.resumed_ms {
        marks.push(Mark { x: c.at(at), color: REPLICAS, label: "resumed".into() });
    }
    if let (Some(s), Some(_)) = (h.recovery_s, h.last_error_ms) {
        marks.push(Mark { x: stopped + s, color: RECOVERED, label: "recovered".into() });
    }
    zoom(r, c, p, "the stop", stopped, h.last_error_ms.map(|at| c.at(at)), marks)
}

/// The network phase zoomed on the impairment: errors each second and p99, with the moment it
/// was set and removed marked.
fn network(r: &TestRun, c: &Clock, p: &Phase) -> Option<String> {
    let n = p.network.as_ref()?;
    let applied = c.at(n.applied_ms);
    let mut marks = vec![Mark { x: applied, color: ERRORS, label: format!("slot {} impaired", n.slot) }];
    if let Some(at) = n.cleared_ms {
        marks.push(Mark { x: c.at(at), color: REPLICAS, label: "removed".into() });
    }
    zoom(r, c, p, "the impairment", applied, n.last_error_ms.map(|at| c.at(at)), marks)
}

/// The update and rollback phases zoomed on the release: errors each second and p99, with the
/// release, each new task running, swarm's outcome and the clients' recovery marked.
fn update(r: &TestRun, c: &Clock, p: &Phase) -> Option<String> {
    let u = p.update.as_ref()?;
    let released = c.at(u.released_ms);
    let label = if u.release == "drain" { "drained".to_string() } else { format!("{} release", u.release) };
    let mut marks = vec![Mark { x: released, color: ERRORS, label }];
    for e in r.events.iter().filter(|e| e.kind == "replaced" && e.at_ms >= u.released_ms) {
        marks.push(Mark { x: c.at(e.at_ms), color: REPLICAS, label: e.detail.split(':').next().unwrap_or("").into() });
    }
    if let Some(at) = u.finished_ms {
        marks.push(Mark { x: c.at(at), color: RECOVERED, label: u.outcome.clone() });
    }
    let what = if u.release == "drain" { "the drain" } else { "the release" };
    zoom(r, c, p, what, released, u.last_error_ms.map(|at| c.at(at)), marks)
}

/// Failed requests each second and p99, from a little before the event at `kill` to a little
/// after the last mark or failure.
fn zoom(
    r: &TestRun,
    c: &Clock,
    p: &Phase,
    what: &str,
    kill: f64,
    last_error: Option<f64>,
    marks: Vec<Mark>,
) -> Option<String> {
    let end = marks.iter().map(|m| m.x).chain(last_error).fold(kill + 5.0, f64::max);
    let points: Vec<&Point> = r
        .timeline
        .iter()
        .filter(|t| t.phase == p.name && c.at(t.at_ms) >= kill - 6.0 && c.at(t.at_ms) <= end + 10.0)
        .collect();
    let (first, last) = (points.first()?, points.last()?);
    let x = Scale::span(c.at(first.at_ms) - 1.0, c.at(last.at_ms));
    let errors: Vec<Bar> = points
        .iter()
        .map(|t| Bar {
            x: c.at(t.at_ms) - 0.5,
            width: 0.8,
            value: t.errors.values().sum::<u64>() as f64,
            color: ERRORS,
            label: None,
        })
        .collect();
    let top = errors.iter().map(|b| b.value).fold(0.0, f64::max);
    let mut e = Chart::new(
        format!("{}: failed requests each second around {what}", p.name),
        W / 2.0 - 4.0,
        H,
        x,
        Scale::zero_to(top),
    );
    e.x_unit = " s".into();
    e.y_unit = "/s".into();
    e.bars = errors;
    e.marks = marks.clone();
    let mut l = Chart::new(
        format!("{}: p99 each second around {what} (log)", p.name),
        W / 2.0 - 4.0,
        H,
        x,
        latency_scale(points.iter().map(|t| t.p99_ms), r.slo.p99_ms),
    );
    l.x_unit = " s".into();
    l.y_unit = " ms".into();
    l.lines = vec![Line {
        name: "p99".into(),
        color: P99,
        dashed: false,
        points: points.iter().map(|t| (c.at(t.at_ms), t.p99_ms)).collect(),
    }];
    l.rules = slo_rule(r);
    l.marks = marks;
    Some(format!("<div class=\"pair\">{}{}</div>", e.render(), l.render()))
}

/// Throughput at each replica count, against the linear growth of the first step.
fn scaling(p: &Phase) -> Option<String> {
    let s = p.scaling.as_ref()?;
    let first = s.steps.first()?;
    let n = s.steps.len() as f64;
    let linear: Vec<(f64, f64)> =
        s.steps.iter().enumerate().map(|(i, st)| (i as f64, first.rps_per_replica * st.replicas as f64)).collect();
    let top = s.steps.iter().map(|st| st.rps).chain(linear.iter().map(|p| p.1)).fold(0.0, f64::max);
    let mut chart = Chart::new(
        format!("{}: throughput by replica count, per replica above each bar", p.name),
        W,
        H,
        Scale::span(-0.5, n - 0.5),
        Scale::zero_to(top * 1.1),
    );
    chart.y_unit = "/s".into();
    chart.gap = f64::INFINITY;
    chart.x_labels =
        Some(s.steps.iter().enumerate().map(|(i, st)| (i as f64, format!("{} replicas", st.replicas))).collect());
    chart.bars = s
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| Bar {
            x: i as f64,
            width: 0.5,
            value: st.rps,
            color: THROUGHPUT,
            label: Some(format!("{}/s ({} per replica)", num(st.rps), num(st.rps_per_replica))),
        })
        .collect();
    chart.lines =
        vec![Line { name: "linear from the first step".into(), color: "#7f8c8d", dashed: true, points: linear }];
    Some(chart.render())
}

/// Points of a figure, by replica slot.
type BySlot = BTreeMap<i64, Vec<(f64, f64)>>;

/// One small chart per replica and figure, sharing each figure's scale: requests/s and
/// sessions (the servers' own, from Prometheus), CPU and memory (the engines').
fn replicas(r: &TestRun, c: &Clock) -> Option<String> {
    let x = window(r, c)?;
    let mut rows: Vec<(&str, &str, BySlot)> = vec![
        ("requests/s", "", BTreeMap::new()),
        ("sessions", "", BTreeMap::new()),
        ("CPU", " cores", BTreeMap::new()),
        ("memory", " MiB", BTreeMap::new()),
    ];
    for p in &r.replica_series {
        let t = c.at(p.at_ms);
        rows[0].2.entry(p.slot).or_default().push((t, p.requests_per_s));
        rows[1].2.entry(p.slot).or_default().push((t, p.sessions));
    }
    let mut nodes: BTreeMap<i64, &str> = BTreeMap::new();
    for s in r.resources.iter().filter(|s| !s.baseline) {
        let t = c.at(s.at_ms);
        rows[2].2.entry(s.slot).or_default().push((t, s.cpu_cores));
        rows[3].2.entry(s.slot).or_default().push((t, s.memory_bytes as f64 / (1 << 20) as f64));
        nodes.entry(s.slot).or_insert(&s.node);
    }
    let several_nodes = nodes.values().collect::<BTreeSet<_>>().len() > 1;
    let mut out = String::new();
    for (name, unit, by_slot) in rows {
        let by_slot: BySlot = by_slot
            .into_iter()
            .map(|(slot, pts)| (slot, pts.into_iter().filter(|(t, _)| *t >= x.lo && *t <= x.hi).collect::<Vec<_>>()))
            .filter(|(_, pts)| !pts.is_empty())
            .collect();
        if by_slot.is_empty() {
            continue;
        }
        let top = by_slot.values().flatten().map(|p| p.1).fold(0.0, f64::max);
        let _ = write!(out, "<div class=\"row\"><h3>{} by replica</h3>", esc(name));
        for (slot, pts) in by_slot {
            let title = match nodes.get(&slot) {
                Some(node) if several_nodes => {
                    format!("slot {slot} · node {}", node.chars().take(12).collect::<String>())
                }
                _ => format!("slot {slot}"),
            };
            let mut chart = Chart::new(title, 220.0, 130.0, x, Scale::zero_to(top));
            chart.x_labels = Some(vec![(x.lo, format!("{} s", num(x.lo))), (x.hi, format!("{} s", num(x.hi)))]);
            chart.y_unit = unit.into();
            chart.gap = 12.0;
            chart.lines = vec![Line { name: String::new(), color: THROUGHPUT, dashed: false, points: pts }];
            out.push_str(&chart.render());
        }
        out.push_str("</div>");
    }
    (!out.is_empty()).then_some(out)
}

/// Markdown of the full report as HTML: its tables and lists, not raw text in a box.
fn markdown_html(md: &str) -> String {
    use pulldown_cmark::Event;
    use pulldown_cmark::{Tag, TagEnd};
    // Error samples quote servers' answers: their markup stays text, and their links and images
    // stay words (a report must not fetch or open anything).
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES).filter_map(|e| match e {
        Event::Html(s) | Event::InlineHtml(s) => Some(Event::Text(s)),
        Event::Start(Tag::Link { .. } | Tag::Image { .. }) | Event::End(TagEnd::Link | TagEnd::Image) => None,
        e => Some(e),
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

/// The whole report page.
pub fn html(r: &TestRun) -> String {
    let c = Clock(r.started_ms);
    let mut h = String::new();
    let _ = write!(
        h,
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>swarmctl {kind}: {verdict}</title><style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:920px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left;vertical-align:top}}
.pass{{color:#1e8449;font-weight:bold}}.fail,.error{{color:#c0392b;font-weight:bold}}.interrupted{{color:#b9770e;font-weight:bold}}
svg{{display:inline-block;margin:6px 0;border:1px solid #eee}}.pair svg{{margin-right:4px}}.row h3{{font-size:13px;margin:10px 0 0}}
.flat{{color:#555;font-size:14px;margin:6px 0}}h2{{margin-top:28px}}code{{font-size:12px}}
@media print{{svg,table,.row{{break-inside:avoid}}body{{margin:0}}}}
</style></head><body><h1>swarmctl {kind} on <code>{stack}</code>: <span class="{vclass}">{verdict}</span></h1>"##,
        kind = esc(&r.kind),
        stack = esc(&r.stack),
        verdict = esc(r.verdict.upper()),
        vclass = esc(r.verdict.as_str())
    );
    if let Some(e) = &r.error {
        let _ = write!(h, "<p class=\"error\">The run stopped early: {}</p>", esc(e));
    }
    if let Some(ctx) = &r.context {
        h.push_str("<table class=\"context\">");
        for (what, value) in ctx.rows() {
            let _ = write!(h, "<tr><th>{what}</th><td>{}</td></tr>", esc(&value));
        }
        h.push_str("</table>");
    }
    h.push_str("<table><tr><th>phase</th><th>verdict</th><th>measured</th></tr>");
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
    h.push_str(
        "</table><h2>Over time</h2><p class=\"flat\">Each stretch of load is shaded from its start: blue while \
         sessions ramp up, green while they hold.</p>",
    );
    timeline(r, &c, &mut h);
    let spectra: Vec<String> = r.phases.iter().filter_map(|p| distribution(r, p)).collect();
    if !spectra.is_empty() {
        h.push_str("<h2>Latency distribution</h2>");
        spectra.iter().for_each(|s| h.push_str(s));
    }
    for p in &r.phases {
        if let Some(s) = failover(r, &c, p) {
            let _ = write!(h, "<h2>Failover</h2>{s}");
        }
        if let Some(s) = hang(r, &c, p) {
            let _ = write!(h, "<h2>Hang</h2>{s}");
        }
        if let Some(s) = network(r, &c, p) {
            let _ = write!(h, "<h2>Network</h2>{s}");
        }
        if let Some(s) = update(r, &c, p) {
            let title = match p.name.as_str() {
                "rollback" => "Rollback",
                "drain" => "Drain",
                _ => "Rolling update",
            };
            let _ = write!(h, "<h2>{title}</h2>{s}");
        }
        if let Some(s) = scaling(p) {
            let _ = write!(h, "<h2>Scaling</h2>{s}");
        }
    }
    if let Some(s) = replicas(r, &c) {
        let _ = write!(h, "<h2>Replicas</h2>{s}");
    }
    // Its first line is the page's own heading.
    let md = text::markdown(r);
    let body = md.split_once('\n').map(|(_, rest)| rest).unwrap_or(&md);
    let _ = writeln!(h, "<h2>Full report</h2>{}</body></html>", markdown_html(body));
    h
}
