//! Shards (`--shard K/N`) and their merge (`tapedeck replay merge`): shards replay disjoint
//! copies under their global numbers, and merged histograms give the percentiles of one run of
//! every request (never an average of the shards' percentiles).

use std::collections::BTreeSet;

use tapedeck_generator::shard::{self, MergeArgs, Percentiles, Shard, parse_shard};
use tapedeck_generator::stats::{self, Stats};
use tapedeck_generator::verdict::{self, Arm, Config, GateReport, Sample, Verdict, Warmup};

use crate::support::{Behaviour, Received, Server, args, item_server, item_snapshot, replay};

#[test]
fn shard_specs_parse_and_split_copies() {
    assert_eq!(parse_shard("1/4"), Ok(Shard { index: 1, count: 4 }));
    for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
        assert!(parse_shard(bad).is_err(), "{bad}");
    }
    // 10 copies over 4 shards: 3, 3, 2, 2, and every copy exactly once.
    let mut all = Vec::new();
    for k in 0..4 {
        let s = Shard { index: k, count: 4 };
        let n = s.copies(10);
        assert_eq!(n, [3, 3, 2, 2][k as usize]);
        all.extend((0..n).map(|local| s.global_copy(local)));
    }
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<u32>>());
    assert_eq!(Shard { index: 3, count: 4 }.copies(2), 0);
}

#[tokio::test]
async fn two_shards_replay_disjoint_copies_and_merge_into_one_report() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir.path(), 5);
    let mut server = Server::start(item_server(7, crate::support::Behaviour::Noisy)).await;
    let mut dirs = Vec::new();
    let mut copies_seen = Vec::new();
    for k in 0..2 {
        let mut a = args(&snapshot, &server.url);
        a.copies = 5;
        a.speed = 10.0;
        a.shard = Some(Shard { index: k, count: 2 });
        let out = dir.path().join(format!("shard-{k}"));
        a.report = Some(out.clone());
        let report = replay(a).await.expect("the shard runs");
        let got: Vec<Received> = server.drain();
        let copies: BTreeSet<u32> = got.iter().map(|r| r.trace().copy).collect();
        assert_eq!(report.overall.requests, got.len() as u64);
        // The shard's own histograms file: every request it sent, under "*".
        let histograms = shard::read_histograms(&out.join(shard::HISTOGRAMS_FILE)).unwrap();
        assert_eq!(histograms[0].0, shard::OVERALL);
        assert_eq!(histograms[0].1.len(), got.len() as u64);
        copies_seen.push(copies);
        dirs.push(out);
    }
    assert_eq!(copies_seen[0], BTreeSet::from([0, 2, 4]));
    assert_eq!(copies_seen[1], BTreeSet::from([1, 3]));

    let out = dir.path().join("merged");
    let summary_copy = dir.path().join("termination-log");
    let summary = shard::merge(&MergeArgs {
        dirs: dirs.clone(),
        out: out.clone(),
        summary: Some(summary_copy.clone()),
    })
    .expect("the merge runs");
    assert_eq!(summary.shards, 2);
    assert_eq!(summary.requests, 25);
    assert_eq!(summary.latency.count, 25);
    assert_eq!(summary.verdict, "pass");
    assert_eq!(summary.exit_code(), 0);
    let mut one = stats::histogram();
    for d in &dirs {
        one.add(&shard::read_histograms(&d.join(shard::HISTOGRAMS_FILE)).unwrap()[0].1)
            .unwrap();
    }
    assert_eq!(summary.latency, Percentiles::of(&one));
    let written: shard::Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join(shard::SUMMARY_FILE)).unwrap())
            .unwrap();
    assert_eq!(written, summary);
    assert_eq!(
        std::fs::read(&summary_copy).unwrap(),
        std::fs::read(out.join(shard::SUMMARY_FILE)).unwrap()
    );
    // A shard that could not run (no report) makes the merge fail.
    assert!(
        shard::merge(&MergeArgs {
            dirs: vec![dir.path().join("nope")],
            out,
            summary: None
        })
        .is_err()
    );
}

fn stats_of(values: &[(&str, u64)]) -> Stats {
    let mut stats = Stats::default();
    for (endpoint, us) in values {
        let m = stats.endpoints.entry((*endpoint).to_owned()).or_default();
        m.latency.record(*us).unwrap();
    }
    stats
}

fn write_shard(dir: &std::path::Path, stats: &Stats, requests: u64, verdict: &str) {
    std::fs::create_dir_all(dir).unwrap();
    shard::write_histograms(stats, dir).unwrap();
    let report = serde_json::json!({
        "duration_s": 10.0,
        "overall": {"requests": requests, "errors": 1},
        "slo": {"verdict": verdict},
        "diffs": [{"endpoint": "GET /items/{id}", "field": "$.price", "count": 2}],
    });
    std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
}

#[test]
fn merged_percentiles_are_one_runs_not_an_average() {
    // Shard A: fast requests; shard B: fewer, with a slow tail. One run holds both.
    let a: Vec<(&str, u64)> = (1..=900).map(|i| ("GET /items/{id}", 1_000 + i)).collect();
    let b: Vec<(&str, u64)> = (1..=100)
        .map(|i| {
            (
                "GET /items/{id}",
                if i > 80 { 250_000 + i } else { 2_000 + i },
            )
        })
        .chain([("POST /orders", 5_000)])
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_shard(&dir.path().join("a"), &stats_of(&a), 900, "pass");
    write_shard(&dir.path().join("b"), &stats_of(&b), 101, "inconclusive");
    let all: Vec<(&str, u64)> = a.iter().chain(&b).copied().collect();
    let one_run = stats_of(&all);
    let summary = shard::merge(&MergeArgs {
        dirs: vec![dir.path().join("a"), dir.path().join("b")],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    assert_eq!(summary.latency, Percentiles::of(&one_run.overall().latency));
    assert_eq!(
        summary.endpoints["GET /items/{id}"],
        Percentiles::of(&one_run.endpoints["GET /items/{id}"].latency)
    );
    assert_eq!(summary.endpoints["POST /orders"].count, 1);
    // The slow tail is 20 of 1001 requests: the one-run p99 is in it; averaging the shards'
    // p99s would not be.
    assert!(summary.latency.p99 > 250.0, "{:?}", summary.latency);
    let pa = Percentiles::of(&stats_of(&a).overall().latency).p99;
    let pb = Percentiles::of(&stats_of(&b).overall().latency).p99;
    assert!(((pa + pb) / 2.0 - summary.latency.p99).abs() > 1.0);
    assert_eq!((summary.requests, summary.errors), (1001, 2));
    assert_eq!(summary.rps, 100.1);
    // No goals and no baseline: a shard's own verdict decides nothing (only one that could
    // not run, "error", would).
    assert_eq!(summary.verdict, "pass");
    assert!(summary.slo.is_empty());
    assert_eq!(summary.top_diffs[0].count, 4);
    // The merged histograms file reads back as the one run's.
    let merged =
        shard::read_histograms(&dir.path().join("merged").join(shard::HISTOGRAMS_FILE)).unwrap();
    assert_eq!(merged[0].1.len(), 1001);
    assert_eq!(Percentiles::of(&merged[0].1), summary.latency);
}

/// A shard report as a run writes it, with `--slo` goals checked on the shard alone.
fn write_shard_with_goals(
    dir: &std::path::Path,
    stats: &Stats,
    (requests, errors, diffs): (u64, u64, u64),
    goals: &[(&str, &str, &str, f64, bool)],
) {
    std::fs::create_dir_all(dir).unwrap();
    shard::write_histograms(stats, dir).unwrap();
    let checked: Vec<serde_json::Value> = goals
        .iter()
        .map(|(goal, metric, op, threshold, pass)| {
            serde_json::json!({"goal": goal, "metric": metric, "op": op, "threshold": threshold,
                "actual": 0.0, "measured": "", "pass": pass})
        })
        .collect();
    let verdict = if goals.iter().all(|g| g.4) {
        "pass"
    } else {
        "fail"
    };
    let report = serde_json::json!({
        "duration_s": 10.0,
        "overall": {"requests": requests, "errors": errors, "diffs": diffs, "failed_sources": 0,
            "unresolved_redacted": [{"at": "header authorization", "count": 1}]},
        "slo": {"verdict": verdict, "goals": checked},
        "verdict": verdict,
        "diffs": [],
    });
    std::fs::write(dir.join("report.json"), report.to_string()).unwrap();
}

#[test]
fn slo_goals_are_checked_once_over_the_merged_run_not_as_the_worst_shard() {
    // Shard A: 100 requests at 50 ms, 40 errors, 30 with a difference. Shard B: 300 requests
    // at 1 ms, no error, no difference. Alone, A fails errors<20% (40 %) and diffs<10% (30 %);
    // the one run of all 400 has 10 % errors and 7.5 % differences: both hold. p50<5ms holds
    // over the run (B is 3/4 of it) although A alone fails it; p99<20ms fails (the top 4 of
    // 400 requests are A's 50 ms); rps>=40 holds over the run (400 in 10 s) and in no shard.
    let a: Vec<(&str, u64)> = (0..100).map(|_| ("GET /a", 50_000)).collect();
    let b: Vec<(&str, u64)> = (0..300).map(|_| ("GET /b", 1_000)).collect();
    let goals_a = [
        ("errors<20%", "errors", "<", 0.2, false),
        ("diffs<10%", "diffs", "<", 0.1, false),
        ("p99<20ms", "p99", "<", 20.0, false),
        ("p50<5ms", "p50", "<", 5.0, false),
        ("unresolved<3", "unresolved", "<", 3.0, true),
        ("rps>=40", "rps", ">=", 40.0, false),
    ];
    let goals_b = goals_a.map(|(g, m, o, t, _)| (g, m, o, t, m != "rps" || t <= 30.0));
    let dir = tempfile::tempdir().unwrap();
    write_shard_with_goals(
        &dir.path().join("a"),
        &stats_of(&a),
        (100, 40, 30),
        &goals_a,
    );
    write_shard_with_goals(&dir.path().join("b"), &stats_of(&b), (300, 0, 0), &goals_b);
    let summary = shard::merge(&MergeArgs {
        dirs: vec![dir.path().join("a"), dir.path().join("b")],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    // The one run's values, from its own histogram and counts.
    let all: Vec<(&str, u64)> = a.iter().chain(&b).copied().collect();
    let one_run = Percentiles::of(&stats_of(&all).overall().latency);
    let got: Vec<(&str, f64, bool)> = summary
        .slo
        .iter()
        .map(|c| (c.goal.as_str(), c.actual, c.pass))
        .collect();
    assert_eq!(
        got,
        vec![
            ("errors<20%", 0.1, true),
            ("diffs<10%", 0.075, true),
            ("p99<20ms", one_run.p99, false),
            ("p50<5ms", one_run.p50, true),
            ("unresolved<3", 2.0, true),
            ("rps>=40", 40.0, true),
        ]
    );
    assert!(one_run.p99 > 49.0 && one_run.p50 < 1.1, "{one_run:?}");
    assert_eq!(summary.verdict, "fail", "p99<20ms fails over the run");
    assert_eq!(summary.exit_code(), 1);

    // Without the failing goal the run passes, although shard A alone fails four goals.
    let keep = |g: &&(&str, &str, &str, f64, bool)| g.0 != "p99<20ms";
    let goals_a: Vec<_> = goals_a.iter().filter(keep).copied().collect();
    let goals_b: Vec<_> = goals_b.iter().filter(keep).copied().collect();
    write_shard_with_goals(
        &dir.path().join("a"),
        &stats_of(&a),
        (100, 40, 30),
        &goals_a,
    );
    write_shard_with_goals(&dir.path().join("b"), &stats_of(&b), (300, 0, 0), &goals_b);
    let summary = shard::merge(&MergeArgs {
        dirs: vec![dir.path().join("a"), dir.path().join("b")],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    assert_eq!(summary.verdict, "pass");

    // Shards with other goals were not one run.
    write_shard_with_goals(
        &dir.path().join("b"),
        &stats_of(&b),
        (300, 0, 0),
        &goals_b[..2],
    );
    let refused = shard::merge(&MergeArgs {
        dirs: vec![dir.path().join("a"), dir.path().join("b")],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap_err();
    assert!(
        refused.to_string().contains("--slo goals differ"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_merged_runs_slo_verdict_is_the_unsharded_runs() {
    // The same snapshot and copies, once unsharded and once as two shards merged: every goal
    // gets the same verdict, and the run-level counts the same values.
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir.path(), 5);
    let server = Server::start(item_server(7, Behaviour::Noisy)).await;
    let goals = "errors<1%,p99<10s,failed-sources<1,unresolved<1,rps>1000000";
    let run = |shard: Option<Shard>, out: std::path::PathBuf| {
        let mut a = args(&snapshot, &server.url);
        a.copies = 4;
        a.speed = 10.0;
        a.slo = Some(goals.to_owned());
        a.shard = shard;
        a.report = Some(out);
        replay(a)
    };
    let whole = run(None, dir.path().join("whole")).await.expect("the run");
    let mut dirs = Vec::new();
    for k in 0..2 {
        let out = dir.path().join(format!("shard-{k}"));
        run(Some(Shard { index: k, count: 2 }), out.clone())
            .await
            .expect("the shard runs");
        dirs.push(out);
    }
    let summary = shard::merge(&MergeArgs {
        dirs,
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    assert_eq!(summary.requests, whole.overall.requests);
    let verdicts = |checked: &[tapedeck_generator::slo::Checked]| -> Vec<(String, bool)> {
        checked.iter().map(|c| (c.goal.clone(), c.pass)).collect()
    };
    assert_eq!(verdicts(&summary.slo), verdicts(&whole.slo.goals));
    assert_eq!(
        verdicts(&summary.slo),
        [
            ("errors<1%", true),
            ("p99<10s", true),
            ("failed-sources<1", true),
            ("unresolved<1", true),
            ("rps>1000000", false)
        ]
        .map(|(g, p)| (g.to_owned(), p))
    );
    for metric in ["errors", "failed-sources", "unresolved"] {
        let of = |checked: &[tapedeck_generator::slo::Checked]| {
            checked
                .iter()
                .find(|c| c.metric == metric)
                .map(|c| c.actual)
        };
        assert_eq!(of(&summary.slo), of(&whole.slo.goals), "{metric}");
    }
    assert_eq!(summary.verdict, whole.verdict.as_str());
    assert_eq!(summary.verdict, "fail");
}

/// The gate settings of the baseline tests: errors within 15pp, decided from 40 pairs.
fn with_gate(a: &mut tapedeck_generator::ReplayArgs) {
    a.gate.goal = vec!["errors +15pp @ 95%".to_owned()];
    a.gate.min_samples = 40;
}

#[tokio::test]
async fn shards_with_a_baseline_merge_into_one_gate_over_every_pair() {
    // 5 items × 10 copies = 50 pairs: 25 per shard, too few alone for --min-samples 40.
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir.path(), 5);
    let baseline = Server::start(item_server(1, Behaviour::Noisy)).await;
    let target = Server::start(item_server(2, Behaviour::Noisy)).await;
    let mut dirs = Vec::new();
    for k in 0..2 {
        let mut a = args(&snapshot, &target.url);
        a.baseline = vec![baseline.url.clone()];
        a.copies = 10;
        a.speed = 10.0;
        with_gate(&mut a);
        a.shard = Some(Shard { index: k, count: 2 });
        let out = dir.path().join(format!("shard-{k}"));
        a.report = Some(out.clone());
        let report = replay(a).await.expect("the shard runs");
        let gate = report.gate.as_ref().expect("the shard's gate");
        assert_eq!(gate.samples, 25);
        let row = &gate.goals[0].overall;
        assert_eq!(row.verdict, Verdict::Inconclusive, "{row:#?}");
        assert!(
            row.reason
                .as_deref()
                .unwrap_or_default()
                .contains("min-samples"),
            "{row:#?}"
        );
        assert_eq!(report.verdict(), Verdict::Inconclusive);
        // The shard's samples file: its header and every pair.
        let (header, samples) = shard::read_gate(&out.join(shard::GATE_FILE)).unwrap();
        assert_eq!(header.goals[0].text, "errors +15pp @ 95%");
        assert_eq!(header.config.min_samples, 40);
        assert_eq!(samples.len(), 25);
        assert!(
            samples
                .iter()
                .all(|s| s.baseline.is_some() && s.candidate.is_some())
        );
        dirs.push(out);
    }

    let out = dir.path().join("merged");
    let summary = shard::merge(&MergeArgs {
        dirs: dirs.clone(),
        out: out.clone(),
        summary: None,
    })
    .expect("the merge runs");
    // One gate over the 50 pairs decides, where the worst shard verdict was inconclusive.
    let gate = summary.gate.as_ref().expect("the merged gate");
    assert_eq!(gate.samples, 50);
    assert_eq!(gate.goals[0].n, 50);
    assert_eq!(gate.verdict, Verdict::Pass, "{gate:#?}");
    assert_eq!(summary.verdict, "pass");
    assert_eq!(summary.exit_code(), 0);
    let full: GateReport =
        serde_json::from_str(&std::fs::read_to_string(out.join(shard::MERGED_GATE_FILE)).unwrap())
            .unwrap();
    assert_eq!(full.samples, 50);
    assert_eq!(full.verdict, gate.verdict);
    let written: shard::Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join(shard::SUMMARY_FILE)).unwrap())
            .unwrap();
    assert_eq!(written, summary);

    // One unsharded run over the same pairs decides the same.
    let mut a = args(&snapshot, &target.url);
    a.baseline = vec![baseline.url.clone()];
    a.copies = 10;
    a.speed = 10.0;
    with_gate(&mut a);
    let one = replay(a).await.expect("the run");
    let one = one.gate.as_ref().expect("the run's gate");
    assert_eq!(one.samples, gate.samples);
    assert_eq!(one.goals[0].overall.n, gate.goals[0].n);
    assert_eq!(one.verdict, gate.verdict);
}

fn samples(offsets: impl Iterator<Item = u64>, endpoint: &str) -> Vec<Sample> {
    offsets
        .enumerate()
        .map(|(i, offset_ns)| {
            let arm = |latency_ns| {
                Some(Arm {
                    latency_ns,
                    error: false,
                })
            };
            Sample {
                endpoint: endpoint.to_owned(),
                index: i as u64,
                offset_ns,
                baseline: arm(1_000_000 + offset_ns % 7),
                candidate: arm(1_000_000 + offset_ns % 5),
            }
        })
        .collect()
}

#[test]
fn merged_gate_orders_pairs_by_send_time_and_trims_warmup_once() {
    let endpoint = "GET /items/{id}";
    let a = samples((0..30).map(|i| 2 * i), endpoint);
    let b = samples((0..30).map(|i| 2 * i + 1), endpoint);
    let merged = shard::merge_samples(vec![a.clone(), b.clone()]);
    assert_eq!(merged.len(), 60);
    for (i, s) in merged.iter().enumerate() {
        assert_eq!((s.index, s.offset_ns), (i as u64, i as u64));
    }

    let config = Config {
        min_samples: 10,
        warmup: Warmup::Requests(10),
        ..Config::default()
    };
    let goals = vec![verdict::goal::parse("errors +20pp @ 95%").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let latencies: Vec<(&str, u64)> = (0..30).map(|_| (endpoint, 1_000)).collect();
    write_shard(&da, &stats_of(&latencies), 30, "pass");
    write_shard(&db, &stats_of(&latencies), 30, "pass");
    shard::write_gate(&config, &goals, &a, &da).unwrap();
    shard::write_gate(&config, &goals, &b, &db).unwrap();
    let summary = shard::merge(&MergeArgs {
        dirs: vec![da.clone(), db.clone()],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    let gate = summary.gate.expect("the merged gate");
    // --warmup 10 trims the run's first 10 requests, not 10 per shard.
    assert_eq!((gate.trimmed, gate.samples), (10, 50));
    assert_eq!(
        gate.verdict,
        verdict::evaluate(&config, &goals, &merged).verdict
    );
    assert_eq!(summary.verdict, gate.verdict.as_str());
    // An --slo goal that fails over the merged run fails it whatever the gate says: 2 errors
    // in 60 requests (all in shard a) break errors<3%, which shard b alone holds.
    let goal = [("errors<3%", "errors", "<", 0.03, true)];
    write_shard_with_goals(&da, &stats_of(&latencies), (30, 2, 0), &goal);
    write_shard_with_goals(&db, &stats_of(&latencies), (30, 0, 0), &goal);
    let failed = shard::merge(&MergeArgs {
        dirs: vec![da.clone(), db.clone()],
        out: dir.path().join("merged"),
        summary: None,
    })
    .unwrap();
    assert_eq!(failed.gate.as_ref().map(|g| g.verdict), Some(gate.verdict));
    assert_eq!((failed.verdict.as_str(), failed.exit_code()), ("fail", 1));

    // One run has one gate: other goals on a shard, or a shard without a baseline, refuse.
    let other = vec![verdict::goal::parse("errors +1pp @ 95%").unwrap()];
    shard::write_gate(&config, &other, &b, &db).unwrap();
    let merge = |dirs: Vec<std::path::PathBuf>| {
        shard::merge(&MergeArgs {
            dirs,
            out: dir.path().join("merged"),
            summary: None,
        })
    };
    let error = merge(vec![da.clone(), db.clone()]).unwrap_err().to_string();
    assert!(error.contains("differ"), "{error}");
    std::fs::remove_file(db.join(shard::GATE_FILE)).unwrap();
    let error = merge(vec![da.clone(), db.clone()]).unwrap_err().to_string();
    assert!(error.contains("--baseline"), "{error}");
    // Without any baseline: no gate, the worst shard verdict as before.
    std::fs::remove_file(da.join(shard::GATE_FILE)).unwrap();
    assert_eq!(merge(vec![da, db]).unwrap().gate, None);
}
