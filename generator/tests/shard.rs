//! Shards (`--shard K/N`) and their merge (`tapedeck replay merge`): shards replay disjoint
//! copies under their global numbers, and merged histograms give the percentiles of one run of
//! every request (never an average of the shards' percentiles).

use std::collections::BTreeSet;

use tapedeck_generator::shard::{self, MergeArgs, Percentiles, Shard, parse_shard};
use tapedeck_generator::stats::{self, Stats};

use crate::support::{Received, Server, args, item_server, item_snapshot, replay};

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
    assert_eq!(summary.verdict, "inconclusive", "the worst shard verdict");
    assert_eq!(summary.exit_code(), 3);
    assert_eq!(summary.top_diffs[0].count, 4);
    // The merged histograms file reads back as the one run's.
    let merged =
        shard::read_histograms(&dir.path().join("merged").join(shard::HISTOGRAMS_FILE)).unwrap();
    assert_eq!(merged[0].1.len(), 1001);
    assert_eq!(Percentiles::of(&merged[0].1), summary.latency);
}
