//! Rendering and comparison of a fixed run: snapshots of the text reports, structure of the
//! HTML, verdicts and regressions.

use std::collections::BTreeMap;

use super::*;
use crate::exit::Verdict;
use crate::load::stats::LatencyMs;
use crate::load::{RunResult, Summary};

fn load(total: u64, ok: u64, rps: f64, p99: f64) -> RunResult {
    RunResult {
        schema_version: 1,
        verdict: Verdict::Pass,
        summary: Summary {
            requests_total: total,
            requests_ok: ok,
            success_ratio: ok as f64 / total as f64,
            throughput_rps: rps,
            sessions_peak: 200,
            duration_s: 30.0,
            latency_ms: LatencyMs { p50: 2.0, p90: 4.0, p99, p999: p99 * 2.0, max: p99 * 3.0, ..Default::default() },
            errors: if ok < total { BTreeMap::from([("http_status".into(), total - ok)]) } else { BTreeMap::new() },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A run as `validate --phase all` could leave it: t0 = 1,000,000 ms.
pub(crate) fn fixture() -> TestRun {
    let t0 = 1_000_000;
    let timeline = (1..=60)
        .map(|s| Point {
            at_ms: t0 + s * 1000,
            phase: if s <= 30 { "failover".into() } else { "scaling".into() },
            sessions: 200,
            requests: if s == 12 { 250 } else { 400 },
            ok: if s == 12 { 240 } else { 400 },
            errors: if s == 12 { BTreeMap::from([("http_status".into(), 10)]) } else { BTreeMap::new() },
            p50_ms: 2.0,
            p99_ms: if s == 12 { 180.0 } else { 9.0 },
            replicas: if s <= 40 {
                3
            } else if s <= 50 {
                5
            } else {
                2
            },
        })
        .collect();
    TestRun {
        schema_version: SCHEMA_VERSION,
        kind: "validate".into(),
        stack: "swarmctl-ci".into(),
        version: "0.1.0".into(),
        context: None,
        started_ms: t0,
        finished_ms: t0 + 61_000,
        verdict: Verdict::Pass,
        error: None,
        slo: Slo { success_ratio: 0.95, p99_ms: 500.0, failover_recovery_s: 30.0, failover_success_ratio: 0.99 },
        notes: vec!["incremental stage 100000 capped at 19936 sessions (open files)".into()],
        phases: vec![
            Phase {
                name: "failover".into(),
                verdict: Verdict::Pass,
                reasons: vec!["recovered in 1.80 s (SLO 30 s)".into(), "success 99.917 % (SLO 99 %)".into()],
                started_ms: t0,
                finished_ms: t0 + 30_000,
                load: Some(load(12_000, 11_990, 400.0, 9.5)),
                failover: Some(Failover {
                    service: "swarmctl-ci_server".into(),
                    kills: vec![Kill {
                        slot: 2,
                        task: "k1x7c0ffee00aa".into(),
                        container: "0123456789abcdef".into(),
                        replacement_created_ms: Some(t0 + 11_300),
                        replacement_running_ms: Some(t0 + 13_100),
                        ..Default::default()
                    }],
                    kill_ms: t0 + 11_000,
                    recovery_s: Some(1.8),
                    consecutive_ok: 20,
                    errors: BTreeMap::from([("http_status".into(), 10)]),
                    first_error_ms: Some(t0 + 11_050),
                    last_error_ms: Some(t0 + 12_700),
                    sessions_dropped: 66,
                    sessions_reestablished: 66,
                    p99_during_recovery_ms: 180.0,
                    success_ratio: 0.99917,
                }),
                ..Default::default()
            },
            Phase {
                name: "scaling".into(),
                verdict: Verdict::Pass,
                reasons: vec!["every step converged; restored to 3 replicas".into()],
                started_ms: t0 + 30_000,
                finished_ms: t0 + 60_000,
                load: Some(load(24_000, 24_000, 800.0, 12.0)),
                scaling: Some(Scaling {
                    service: "swarmctl-ci_server".into(),
                    steps: vec![
                        ScaleStep {
                            replicas: 3,
                            converge_s: 0.0,
                            rps: 800.0,
                            rps_per_replica: 266.7,
                            success_ratio: 1.0,
                            p99_ms: 12.0,
                            ..Default::default()
                        },
                        ScaleStep {
                            replicas: 5,
                            converge_s: 4.2,
                            rps: 900.0,
                            rps_per_replica: 180.0,
                            success_ratio: 1.0,
                            p99_ms: 11.0,
                            rps_by_slot: BTreeMap::from([("1".into(), 180.0), ("2".into(), 181.0)]),
                            sessions_by_slot: BTreeMap::from([("1".into(), 4.0), ("2".into(), 3.0)]),
                        },
                    ],
                    linearity: Some(0.675),
                    restored: true,
                }),
                ..Default::default()
            },
        ],
        events: vec![
            Event { at_ms: t0, kind: "phase".into(), detail: "failover".into() },
            Event { at_ms: t0 + 11_000, kind: "kill".into(), detail: "slot 2".into() },
            Event { at_ms: t0 + 12_800, kind: "recovered".into(), detail: "20 successes in a row".into() },
            Event { at_ms: t0 + 40_000, kind: "scale".into(), detail: "3 → 5".into() },
        ],
        timeline,
        resources: vec![
            ResourceSample {
                at_ms: t0 - 1000,
                slot: 1,
                cpu_cores: 0.0,
                memory_bytes: 2 << 20,
                baseline: true,
                ..Default::default()
            },
            ResourceSample {
                at_ms: t0 + 5000,
                slot: 1,
                cpu_cores: 0.25,
                memory_bytes: 20 << 20,
                baseline: false,
                ..Default::default()
            },
            ResourceSample {
                at_ms: t0 + 10_000,
                slot: 1,
                cpu_cores: 0.35,
                memory_bytes: 22 << 20,
                baseline: false,
                ..Default::default()
            },
        ],
        unmeasured: Vec::new(),
        replica_series: Vec::new(),
    }
}

/// On several nodes the sampler reads only its engine's node: the replicas it could not read
/// are listed as such, and the per-session figure shares the sessions over every replica, not
/// over the measured ones alone.
#[test]
fn replicas_not_measured_are_listed_and_still_hold_their_share() {
    let mut r = fixture();
    let one = markdown(&r);
    assert!(one.contains("over 200 sessions, the 200 the run held at most shared by the 1 replica(s)"), "{one}");
    r.unmeasured = vec![
        Unmeasured { slot: 2, node: "w1".into(), reason: "No such container (HTTP 404)".into() },
        Unmeasured { slot: 3, node: "w2".into(), reason: "No such container (HTTP 404)".into() },
    ];
    for sample in &mut r.resources {
        sample.node = "m0".into();
    }
    let md = markdown(&r);
    assert!(md.contains("over 67 sessions, the 200 the run held at most shared by the 3 replica(s)"), "{md}");
    assert!(md.contains("| slot | node | samples |"), "several nodes: each row says which: {md}");
    assert!(md.contains("| 1 | m0 | 2 |"), "{md}");
    assert!(md.contains("| 2 | w1 | not measured: No such container (HTTP 404) |"), "{md}");
    // 20 MiB of growth over the 66.7 sessions each replica held, not over the 200 of all three.
    assert!(one.contains("| 102.4 KiB |") && md.contains("| 307.2 KiB |"), "{md}");
}

#[test]
fn kills_on_several_nodes_say_where_and_when_each_node_acted() {
    let mut r = fixture();
    let one = markdown(&r);
    assert!(one.contains("| slot | task killed | replacement created | replacement running |"), "{one}");
    let f = r.phases.iter_mut().find_map(|p| p.failover.as_mut()).unwrap();
    let k = f.kills[0].clone();
    f.kills = vec![
        Kill {
            node: "w1node0000001".into(),
            replacement_node: "w2node0000002".into(),
            killed_ms: Some(f.kill_ms + 12),
            ..k.clone()
        },
        Kill {
            slot: 5,
            node: "w2node0000002".into(),
            replacement_node: "w1node0000001".into(),
            killed_ms: Some(f.kill_ms + 15),
            ..k
        },
    ];
    let md = markdown(&r);
    assert!(
        md.contains("| slot | task killed | node | killed | replacement created | replacement running | replacement node |\n|---|---|---|---|---|---|---|"),
        "{md}"
    );
    assert!(md.contains("| 2 | k1x7c0ffee00 | w1node000000 | +0.01 s | +0.30 s | +2.10 s | w2node000000 |"), "{md}");
    assert!(md.contains("| 5 | k1x7c0ffee00 | w2node000000 | +0.01 s |"), "{md}");
}

#[test]
fn verdict_follows_the_phases() {
    let mut r = fixture();
    r.judge();
    assert_eq!((r.verdict.as_str(), r.exit_code().number()), ("pass", 0));
    r.phases[1].verdict = Verdict::Fail;
    r.judge();
    assert_eq!((r.verdict.as_str(), r.exit_code().number()), ("fail", 3));
    r.phases[0].verdict = Verdict::Interrupted;
    r.judge();
    assert_eq!((r.verdict.as_str(), r.exit_code().number()), ("interrupted", 130));
    r.judge();
    assert_eq!(r.verdict, Verdict::Interrupted, "judged again, the same");
    let mut empty = TestRun::default();
    empty.judge();
    assert_eq!(empty.verdict, Verdict::Fail, "a run that measured nothing cannot pass");
}

#[test]
fn text_reports_are_rendered_from_the_results_alone() {
    let mut r = fixture();
    r.judge();
    insta::assert_snapshot!("summary", summary(&r));
    insta::assert_snapshot!("final_report", markdown(&r));
}

#[test]
fn html_is_self_contained_with_one_chart_per_figure() {
    let mut r = fixture();
    r.judge();
    let failover = r.phases[0].load.as_mut().unwrap();
    failover.config.sessions = 200;
    failover.config.ramp = 100.0;
    let method = crate::load::MethodSummary {
        count: 10,
        ok: 10,
        latency_ms: LatencyMs { min: 0.5, p50: 0.8, p90: 2.0, p95: 3.0, p99: 9.0, p999: 20.0, max: 40.0, mean: 1.0 },
        latency_uncorrected_ms: LatencyMs {
            min: 0.5,
            p50: 0.7,
            p90: 1.0,
            p95: 2.0,
            p99: 5.0,
            p999: 9.0,
            max: 30.0,
            mean: 1.0,
        },
    };
    failover.by_method = BTreeMap::from([("tools/call:echo".to_string(), method)]);
    r.replica_series = (1..=3)
        .flat_map(|slot| {
            (1..=12).map(move |i| ReplicaPoint {
                at_ms: 1_000_000 + i * 5000,
                slot,
                requests_per_s: 100.0 + slot as f64,
                sessions: 66.0,
            })
        })
        .collect();
    r.error = Some("HTTP 502: <html><b>Bad Gateway</b>".into());
    let page = html(&r);
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "no external asset");
    assert!(!page.contains("NaN") && !page.contains("=\"inf"), "every coordinate is a number");
    assert!(!page.contains("<b>Bad") && page.contains("&lt;b&gt;Bad"), "quoted answers stay text");
    let charts: Vec<&str> = page.split("<svg ").skip(1).collect();
    let titled = |t: &str| charts.iter().filter(|c| c.contains(&format!("aria-label=\"{t}"))).count();

    // Over time: latency on a log axis with the SLO, throughput, errors, replicas; the
    // sessions held 200 all along, which a sentence says better than a flat line.
    assert_eq!(titled("Latency, corrected"), 1);
    let latency = charts.iter().find(|c| c.contains("aria-label=\"Latency, corrected")).unwrap();
    for tick in [">1 ms<", ">10 ms<", ">100 ms<", ">1000 ms<"] {
        assert!(latency.contains(tick), "decades on the latency axis: {tick}");
    }
    assert!(latency.contains("SLO: p99 ≤ 500 ms") && latency.contains("stroke=\"#d81b60\""), "the SLO is a line");
    // The time axis spans the 60 s of load, not the whole run's 61 s.
    assert!(latency.contains(">0 s<") && latency.contains(">60 s<") && !latency.contains(">61 s<"));
    // The failover phase's ramp (200 sessions at 100/s) and hold are shaded; the kill marked.
    assert!(latency.contains(">failover<") && latency.contains(">scaling<"));
    let ramp_band = latency.split("fill=\"#e8f0fb\"").next().unwrap().rsplit("<rect").next().unwrap();
    assert!(ramp_band.contains("width=\"27.7\""), "2 s of ramp out of 60 s of 830 px: {ramp_band}");
    assert!(latency.contains("fill=\"#edf7ee\""), "then the hold");
    assert!(latency.contains(">kill<") && latency.contains(">scale<"));
    assert_eq!(titled("Throughput"), 1);
    assert_eq!(titled("Errors by class"), 1);
    assert_eq!(titled("Server replicas"), 1);
    assert_eq!(titled("Sessions open"), 0);
    assert!(page.contains("Sessions open: 200 throughout the 60 s of load."));
    // Each of the 60 seconds is a vertex of the p50 line.
    let first = latency.split("<polyline").nth(1).unwrap();
    let points = first.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(points.split(' ').count(), 60);

    // The distribution of the phase whose methods are known, corrected and raw.
    assert_eq!(titled("Latency distribution, failover"), 1);
    let spectrum = charts.iter().find(|c| c.contains("aria-label=\"Latency distribution")).unwrap();
    assert!(spectrum.contains(">99.9%<") && spectrum.contains(">tools/call:echo raw<"), "{spectrum}");
    assert_eq!(spectrum.matches("<polyline").count(), 2);
    // The kill zoomed, with the replacement and the recovery marked.
    assert_eq!(titled("failover: failed requests each second around the kill"), 1);
    assert_eq!(titled("failover: p99 each second around the kill"), 1);
    assert!(page.contains(">slot 2 running<") && page.contains(">recovered<"));
    // Throughput by replica count, with the per-replica figure.
    assert_eq!(titled("scaling: throughput by replica count"), 1);
    assert!(page.contains(">3 replicas<") && page.contains(">800/s (267 per replica)<"));
    // Small multiples: three replicas' requests and sessions, one replica's CPU and memory.
    assert_eq!(titled("slot "), 3 + 3 + 1 + 1);
    assert!(page.contains("<h3>requests/s by replica</h3>") && page.contains("<h3>memory by replica</h3>"));
    // The full report is HTML, not Markdown in a box.
    assert!(!page.contains("<pre>") && page.contains("<th>phase</th><th>verdict</th><th>figures</th>"));
}

#[test]
fn a_run_without_load_says_so_instead_of_drawing_empty_charts() {
    let mut r = fixture();
    r.timeline.clear();
    r.resources.clear();
    let page = html(&r);
    assert!(page.contains("No load was measured"));
    assert!(!page.contains("aria-label=\"Latency, corrected") && !page.contains("by replica</h3>"));
}

#[test]
fn comparison_flags_what_got_worse() {
    let a = fixture();
    let mut b = fixture();
    let same = compare(&a, &b, 0.10);
    assert!(!same.regressed(), "{}", same.render());
    assert_eq!(same.deltas.len(), 10, "{}", same.render());

    let fb = b.phases[0].failover.as_mut().unwrap();
    fb.recovery_s = Some(2.5);
    let lb = b.phases[1].load.as_mut().unwrap();
    lb.summary.latency_ms.p99 = 12.5; // +4 %: within tolerance
    lb.summary.success_ratio = 0.998; // −0.2 points: a regression whatever the tolerance
    let c = compare(&a, &b, 0.10);
    let flagged: Vec<&str> = c.deltas.iter().filter(|d| d.regression).map(|d| d.figure.as_str()).collect();
    assert_eq!(flagged, ["failover.recovery_s", "scaling.success_ratio"], "{}", c.render());

    b.phases[0].failover.as_mut().unwrap().recovery_s = None;
    b.phases.pop();
    let c = compare(&a, &b, 0.10);
    assert!(c.deltas.iter().any(|d| d.figure == "failover.recovery_s" && d.regression && d.b.is_infinite()));
    assert_eq!(c.unmatched, ["scaling (A)"]);
}

#[test]
fn results_round_trip_through_json() {
    let r = fixture();
    let back: TestRun = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn memory_per_session_is_flagged_when_the_replicas_had_served_load_before() {
    let mut r = fixture();
    let fresh = text::markdown(&r);
    assert!(fresh.contains("| 1 | 2 | 0.30 cores | 0.35 cores | 2.0 MiB | 22.0 MiB |"), "{fresh}");
    assert!(!fresh.contains("had served"), "no earlier load known: no caveat");
    r.phases[0].reconciliation = Some(Reconciliation { server_before: Some(0.0), ..Default::default() });
    assert!(!text::markdown(&r).contains("had served"), "fresh replicas: no caveat");
    r.phases[0].reconciliation = Some(Reconciliation { server_before: Some(991_234.0), ..Default::default() });
    let warm = text::markdown(&r);
    assert!(warm.contains("The replicas had served 991234 requests before this run"), "{warm}");
}

/// A results.json of schema 1 in the shape swarmctl wrote before verdicts became a type (string
/// verdicts, kills without their nodes; made from this fixture, whose serialization the change
/// kept to the letter): it still loads, and renders as it did.
#[test]
fn results_of_schema_1_from_before_still_load() {
    let text = include_str!("testdata/results-v1.json");
    assert!(!text.contains("\"node\""), "the file has none of the fields added since");
    let old: TestRun = serde_json::from_str(text).unwrap();
    let mut now = fixture();
    now.judge();
    assert_eq!(old, now);
    assert_eq!(old.phases[0].verdict, Verdict::Pass);
    assert_eq!(summary(&old), summary(&now));
    // And what is written now reads back whole.
    let again: TestRun = serde_json::from_str(&serde_json::to_string(&now).unwrap()).unwrap();
    assert_eq!(again, now);
}

/// docs/results.schema.json is the types' own schema, and it takes both documents as they are
/// written and refuses what is not one.
#[test]
fn the_checked_in_schema_is_the_types_own_and_validates_both_documents() {
    let checked_in: serde_json::Value = serde_json::from_str(include_str!("../../docs/results.schema.json")).unwrap();
    assert_eq!(
        checked_in,
        json_schema(),
        "docs/results.schema.json is stale: `swarmctl report schema > docs/results.schema.json`"
    );
    let schema = jsonschema::validator_for(&checked_in).unwrap();
    let mut r = fixture();
    r.judge();
    r.context = Some(RunContext { swarmctl: "0.1.0".into(), commit: "abc".into(), ..Default::default() });
    let test = serde_json::to_value(&r).unwrap();
    let errors: Vec<String> = schema.iter_errors(&test).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let load = serde_json::to_value(r.phases[0].load.as_ref().unwrap()).unwrap();
    assert!(schema.is_valid(&load));
    let mut bad = test.clone();
    bad["verdict"] = "maybe".into();
    assert!(!schema.is_valid(&bad), "a verdict is pass, fail, interrupted or error");
    let mut bad = load.clone();
    bad.as_object_mut().unwrap().remove("summary");
    assert!(!schema.is_valid(&bad), "a load's results have a summary");
    // And both read back through the one parser the report verbs use.
    assert!(matches!(Results::parse(&test.to_string()), Ok(Results::Test(_))));
    assert!(matches!(Results::parse(&load.to_string()), Ok(Results::Load(_))));
    let err = Results::parse("{\"schema_version\": 1}").unwrap_err();
    assert!(err.contains("neither `kind`"), "{err}");
}

/// A bare load is drawn as a run of one phase over its timeline, its p99 threshold as the SLO.
#[test]
fn a_load_is_reported_as_one_phase_over_its_timeline() {
    let mut load = fixture().phases[0].load.clone().unwrap();
    load.thresholds = vec![
        crate::load::ThresholdResult { expr: "p99<250ms".into(), actual: 9.5, pass: true },
        crate::load::ThresholdResult { expr: "success>=99.5%".into(), actual: 0.9999, pass: true },
        crate::load::ThresholdResult { expr: "tools/call:p95<50ms".into(), actual: 3.0, pass: true },
        crate::load::ThresholdResult { expr: "ping:p99<50ms".into(), actual: f64::NAN, pass: false },
    ];
    let echo = crate::load::MethodSummary { count: 10, ok: 10, ..Default::default() };
    load.by_method = BTreeMap::from([("tools/call:echo".to_string(), echo)]);
    let timeline = load_timeline(
        "{\"t\":1,\"sessions\":20,\"requests\":200,\"ok\":200,\"errors\":{},\"p50_ms\":1.5,\"p99_ms\":4.0}\n{\"t\":2,\"sess",
    );
    assert_eq!(timeline.len(), 1, "a line cut by a killed run is skipped");
    let run = Results::Load(Box::new(load)).into_test_run(&timeline);
    assert_eq!((run.kind.as_str(), run.phases.len(), run.slo.p99_ms, run.slo.success_ratio), ("load", 1, 250.0, 0.995));
    assert_eq!(
        run.phases[0].reasons,
        [
            "p99<250ms: held (measured 9.50 ms)",
            "success>=99.5%: held (measured 99.990 %)",
            "tools/call:p95<50ms: held (measured 3.00 ms)",
            "ping:p99<50ms: failed (measured nothing)"
        ]
    );
    // Nothing measured is `null` in JSON, and reads back.
    let json = serde_json::to_string(run.phases[0].load.as_ref().unwrap()).unwrap();
    assert!(json.contains("\"actual\":null"), "{json}");
    assert!(matches!(Results::parse(&json), Ok(Results::Load(l)) if l.thresholds[3].actual.is_nan()));
    let page = html(&run);
    assert!(page.contains("SLO: p99 ≤ 250 ms") && page.contains("Latency distribution, load"), "{page}");
    assert!(!page.contains("Server replicas"), "a bare load knows no replicas");
}

/// Two runs on different replica counts: that is the first thing the comparison says.
#[test]
fn comparison_names_a_different_replica_count_first() {
    let context = |replicas, command: &str| RunContext {
        swarmctl: "0.1.0".into(),
        commit: "f623872".into(),
        command: command.split(' ').map(String::from).collect(),
        stack: Some(StackContext {
            name: "swarmctl-ci".into(),
            hash: "aa".into(),
            server_image: "swarmctl/mcp-server:0.1.0".into(),
            server_image_id: "sha256:01".into(),
            replicas,
        }),
        ..Default::default()
    };
    let mut a = fixture();
    a.context = Some(context(3, "swarmctl validate --phase all"));
    let mut b = fixture();
    b.context = Some(context(6, "swarmctl validate --phase all --set server.replicas=6"));
    let c = compare(&a, &b, 0.10);
    let text = c.render();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("the runs differ in what they ran on (A → B):"));
    assert_eq!(lines.next(), Some("  server replicas: 3 → 6"));
    assert!(lines.next().unwrap().starts_with("  command: "), "{text}");
    assert_eq!(c.context.len(), 2, "nothing else differs: {:?}", c.context);
    assert!(compare(&a, &a, 0.10).context.is_empty());
    a.context = None;
    assert_eq!(compare(&a, &b, 0.10).context, ["one run records what it ran on, the other (older) does not"]);
}

/// What a report must survive: a timeline of one second or none, seconds without requests,
/// non-ASCII node names, a capped incremental stage, links and markup quoted from a server.
#[test]
fn odd_runs_still_draw_numbers_and_quoted_text_stays_text() {
    let coordinates_are_numbers = |page: &str| {
        for bad in ["NaN", "=\"inf", "=\"-inf", ",inf", " inf"] {
            assert!(!page.contains(bad), "`{bad}` in a coordinate");
        }
    };
    let mut r = fixture();
    r.timeline.truncate(1);
    r.timeline[0].requests = 0;
    r.timeline[0].p50_ms = 0.0;
    r.timeline[0].p99_ms = 0.0;
    r.resources.iter_mut().for_each(|s| s.node = "nœud-été-0123456789".into());
    r.resources.push(ResourceSample { at_ms: 1_000_500, slot: 2, node: "ノード".into(), ..Default::default() });
    r.error = Some("no session could open: [click](javascript:alert(1)) ![x](http://example.invalid/p.png)".into());
    let page = html(&r);
    coordinates_are_numbers(&page);
    assert!(!page.contains("href=") && !page.contains("<img") && !page.contains("src="), "no link, no fetch");
    assert!(page.contains("click"), "the words stay");
    r.timeline.clear();
    coordinates_are_numbers(&html(&r));

    // A stage capped at 19936 of 100000 sessions is shaded by its ramp like any other.
    let mut r = fixture();
    let mut stage_load = r.phases[0].load.clone().unwrap();
    stage_load.config.sessions = 19_936;
    stage_load.config.ramp = 1000.0;
    r.phases.push(Phase {
        name: "incremental".into(),
        stages: vec![Stage { sessions: 100_000, sessions_run: 19_936, verdict: Verdict::Pass, load: stage_load }],
        ..Default::default()
    });
    for p in r.timeline.iter_mut().skip(50) {
        p.phase = "incremental-19936".into();
    }
    let page = html(&r);
    assert!(page.contains(">incremental-19936<") && page.matches("fill=\"#e8f0fb\"").count() >= 1, "the stage's ramp");
}

/// A hang phase: its headline, its row in the report, and the stop zoomed with the resume and
/// the recovery marked.
#[test]
fn a_hung_replica_is_reported_with_its_stop_and_resume() {
    let t0 = 1_000_000;
    let mut r = fixture();
    r.phases.truncate(1);
    r.phases[0].name = "hang".into();
    r.phases[0].failover = None;
    r.phases[0].hang = Some(Hang {
        service: "swarmctl-ci_server".into(),
        slot: 2,
        task: "k1x7c0ffee00aa".into(),
        container: "0123456789abcdef".into(),
        stopped_ms: t0 + 11_000,
        resumed_ms: Some(t0 + 15_000),
        errors: BTreeMap::from([("timeout".into(), 10)]),
        first_error_ms: Some(t0 + 12_000),
        last_error_ms: Some(t0 + 14_900),
        recovery_s: Some(4.2),
        consecutive_ok: 20,
        p99_while_stopped_ms: 3_950.0,
        sessions_dropped: 0,
        sessions_reestablished: 0,
        success_ratio: 0.999,
        ..Default::default()
    });
    for p in &mut r.timeline {
        p.phase = "hang".into();
    }
    r.judge();
    assert!(
        summary(&r).contains("slot 2 stopped: p99 3950 ms while stopped, 10 errors, recovery 4.20 s"),
        "{}",
        summary(&r)
    );
    let md = markdown(&r);
    assert!(md.contains("| 2 | k1x7c0ffee00 | — | +4.00 s | +1.00 s | +3.90 s | 0 / 0 |"), "{md}");
    let page = html(&r);
    assert!(page.contains("aria-label=\"hang: failed requests each second around the stop"), "{page}");
    assert!(page.contains(">slot 2 stopped<") && page.contains(">resumed<") && page.contains(">recovered<"));
    // And it round-trips through the schema's document.
    let back: TestRun = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}
