//! The verdict's diff side: baseline pairing, calibration that quiets typed noise, changed
//! fields reported under each comparator, over-broad noise rules refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tapedeck_generator::Error;
use tapedeck_generator::report::JSON_FILE;

use crate::reports::check_schema;
use crate::support::{
    Behaviour, Received, Reply, Server, args, item_server, item_snapshot, replay, write_snapshot,
};

const ITEMS: u64 = 20;

async fn paired(
    dir: &Path,
    candidate: Behaviour,
    calibrate: u32,
) -> (tapedeck_generator::Report, std::path::PathBuf) {
    let snapshot = item_snapshot(dir, ITEMS);
    let baseline = Server::start(item_server(1, Behaviour::Noisy)).await;
    let target = Server::start(item_server(2, candidate)).await;
    let mut a = args(&snapshot, &target.url);
    a.baseline = vec![baseline.url.clone()];
    a.calibrate = calibrate;
    a.concurrency = Some(4);
    let out = dir.join("out");
    a.report = Some(out.clone());
    let report = replay(a).await.expect("the replay runs");
    (report, out)
}

#[tokio::test]
async fn calibration_quiets_timestamps_uuids_reordered_arrays_and_float_jitter() {
    // Without calibration the noise is reported: the test can fail.
    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, _) = paired(dir.path(), Behaviour::Noisy, 0).await;
    assert!(!report.diffs.is_empty(), "noise without calibration");

    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, out) = paired(dir.path(), Behaviour::Noisy, 3).await;
    assert!(report.diffs.is_empty(), "{:#?}", report.diffs);
    assert_eq!(report.overall.diffs, 0);
    let calibration = report.noise.calibration.expect("calibrated");
    assert_eq!(calibration.pairs, 3 * ITEMS);
    // What calibration learned, each with evidence, written back as noise.json.
    // (The snapshot's token rules may already cover the timestamp and the UUID.)
    let learned: Vec<(String, String)> = report
        .noise
        .comparators
        .iter()
        .filter(|c| c.origin == "calibration" || c.origin.starts_with("token rule"))
        .map(|c| {
            (
                c.field.clone(),
                c.comparator.split(' ').next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (field, kind) in [
        ("$.updated_at", "timestamp"),
        ("$.request_id", "uuid"),
        ("$.items", "array"),
        ("$.price", "number"),
    ] {
        assert!(
            learned.contains(&(field.to_owned(), kind.to_owned())),
            "{field} {kind} in {learned:?}"
        );
    }
    let noise = check_schema(&out, "noise-v1.schema.json", "noise.json");
    let comparators = noise["comparators"].as_array().expect("comparators");
    assert!(
        comparators
            .iter()
            .all(|c| c["evidence"]["source"] == "calibration")
    );
    assert!(
        comparators.iter().any(|c| c["matched"].as_u64() > Some(0)),
        "matched counts: {comparators:#?}"
    );
    // The file reads back as --noise.
    let dir2 = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir2.path(), ITEMS);
    let baseline = Server::start(item_server(3, Behaviour::Noisy)).await;
    let target = Server::start(item_server(4, Behaviour::Noisy)).await;
    let mut a = args(&snapshot, &target.url);
    a.baseline = vec![baseline.url.clone()];
    a.noise = Some(out.join("noise.json"));
    let report = replay(a).await.expect("the replay runs");
    assert!(report.diffs.is_empty(), "{:#?}", report.diffs);
}

#[tokio::test]
async fn a_changed_field_is_reported_under_each_comparator() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, out) = paired(dir.path(), Behaviour::Broken, 3).await;
    let by_field = |field: &str| {
        report
            .diffs
            .iter()
            .find(|d| d.field == field)
            .unwrap_or_else(|| panic!("{field} in {:#?}", report.diffs))
    };
    for (field, comparator, live) in [
        ("$.updated_at", "timestamp", "\"never\""),
        ("$.request_id", "uuid", "\"not-a-uuid\""),
        ("$.price", "number", "13.5"),
        ("$.status", "exact", "\"degraded\""),
        ("$.items[*].qty", "exact", "99"),
    ] {
        let group = by_field(field);
        assert_eq!(group.count, ITEMS, "{field}");
        assert!(
            group.comparator.starts_with(comparator),
            "{field}: {group:?}"
        );
        let example = &group.examples[0];
        assert_eq!(example.live.as_deref(), Some(live), "{field}");
        assert!(example.baseline.is_some(), "{field}: the baseline's value");
        assert!(example.recorded.is_some(), "{field}: the recorded value");
    }
    // The array was paired by its key: only the changed element differs.
    assert!(report.diffs.iter().all(|d| d.field != "$.items[*].sku"));
    assert_eq!(report.overall.diffs, ITEMS);
    // The three-way view names, per field, what decided.
    let view = &report.three_way[0];
    let field = |name: &str| {
        view.fields
            .iter()
            .find(|f| f.field == name)
            .unwrap_or_else(|| panic!("{name} in {view:#?}"))
    };
    assert_eq!(field("$.price").outcome, "differs");
    assert!(
        field("$.price")
            .by
            .as_deref()
            .is_some_and(|b| b.contains("calibration"))
    );
    assert!(field("$.price").baseline.is_some());
    assert!(!field("$.price").deterministic);
    let value = check_schema(&out, "replay-report-v2.schema.json", JSON_FILE);
    assert_eq!(value["three_way"][0]["fields"][0]["outcome"], "differs");

    // diffs.json decides the same again: the run's differences, learned rules and comparators
    // read back, under the run's (empty) noise file, give the report's groups, three-way view,
    // rules and verdict (what `tapedeck ui` recomputes from).
    let rediff = tapedeck_generator::report::Rediff::read(&out).expect("diffs.json");
    let again = rediff.recompute(&tapedeck_generator::noise::NoiseFile::default());
    assert_eq!(again.diffs, report.diffs);
    assert_eq!(again.three_way, report.three_way);
    assert_eq!(again.rules, report.noise.rules);
    assert_eq!(again.overall_diffs, report.overall.diffs);
    assert_eq!(again.slo, report.slo);
    assert_eq!(again.verdict, report.verdict);
    // A rule by hand for $.status silences it, and only it.
    let mut file = tapedeck_generator::noise::NoiseFile::default();
    file.rules.push(tapedeck_generator::noise::NoiseRule {
        endpoint: by_field("$.status").endpoint.clone(),
        field: "$.status".to_owned(),
        evidence: None,
        suppressed: 0,
    });
    let silenced = rediff.recompute(&file);
    assert!(silenced.diffs.iter().all(|d| d.field != "$.status"));
    assert_eq!(silenced.diffs.len(), report.diffs.len() - 1);
    assert_eq!(silenced.rules[0].suppressed, ITEMS);
}

#[tokio::test]
async fn an_over_broad_noise_rule_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir.path(), 4);
    let server = Server::start(item_server(1, Behaviour::Noisy)).await;
    let refuse = |rules: serde_json::Value| {
        let path = dir.path().join("noise.json");
        std::fs::write(
            &path,
            serde_json::json!({ "version": 1, "rules": rules }).to_string(),
        )
        .expect("writing the noise file");
        let mut a = args(&snapshot, &server.url);
        a.noise = Some(path);
        a
    };
    let rule = |field: &str| serde_json::json!({ "endpoint": "GET /items/{id}", "field": field });
    for (rules, needle) in [
        (
            serde_json::json!([rule("$")]),
            "over-broad: the rule would silence the whole body",
        ),
        (serde_json::json!([rule("body")]), "over-broad"),
        (
            serde_json::json!([
                rule("$.id"),
                rule("$.status"),
                rule("$.price"),
                rule("$.updated_at"),
                rule("$.request_id")
            ]),
            "would silence more than 50 % of its 9 fields",
        ),
        (
            serde_json::json!([{ "endpoint": "*", "field": "$.id" }]),
            "not anchored",
        ),
        (serde_json::json!([rule("cookie theme")]), "JSON path"),
    ] {
        match replay(refuse(rules.clone())).await {
            Err(Error::Noise(message)) => {
                assert!(message.contains(needle), "{rules}: {message}")
            }
            other => panic!("{rules}: {:?}", other.map(|r| r.diffs)),
        }
    }
    // Four rules of nine fields are within the share; unknown fields are refused.
    let ok = refuse(serde_json::json!([
        rule("$.id"),
        rule("$.status"),
        rule("$.price"),
        rule("$.updated_at")
    ]));
    replay(ok).await.expect("four rules are fine");
    let path = dir.path().join("extra.json");
    std::fs::write(&path, r#"{"version":1,"rules":[],"ignore":["$.id"]}"#).expect("writing");
    let mut a = args(&snapshot, &server.url);
    a.noise = Some(path);
    assert!(matches!(replay(a).await, Err(Error::Noise(m)) if m.contains("unknown field")));

    // Learned: a body that is not JSON and differs every time would be silenced whole: the
    // rule is refused, and the difference stays reported.
    let exchanges = (0..4)
        .map(|i| crate::support::inbound(i, i * 5, "GET", "/blob", &[], "", 200, "x"))
        .collect();
    let snapshot = write_snapshot(dir.path(), "blob", exchanges);
    let random = || {
        let rng = Arc::new(crate::support::Rng::new(7));
        Arc::new(move |_: &Received| Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: format!("{:x}", rng.next()).into_bytes(),
            delay: Duration::ZERO,
            trailers: Vec::new(),
        }) as crate::support::Handler
    };
    let baseline = Server::start(random()).await;
    let target = Server::start(random()).await;
    let mut a = args(&snapshot, &target.url);
    a.baseline = vec![baseline.url.clone()];
    a.calibrate = 2;
    let report = replay(a).await.expect("the replay runs");
    assert_eq!(report.noise.refused.len(), 1, "{:#?}", report.noise);
    assert!(report.noise.refused[0].error.contains("whole body"));
    assert_eq!(report.diffs.len(), 1);
    assert_eq!(report.diffs[0].field, "body");
}

#[tokio::test]
async fn baseline_pairing_sends_each_request_to_both_arms() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = item_snapshot(dir.path(), ITEMS);
    let mut baseline = Server::start(item_server(1, Behaviour::Noisy)).await;
    let mut target = Server::start(item_server(2, Behaviour::Noisy)).await;
    let mut a = args(&snapshot, &target.url);
    a.baseline = vec![baseline.url.clone()];
    a.iterations = Some(2);
    let out = dir.path().join("out");
    a.report = Some(out.clone());
    let report = replay(a).await.expect("the replay runs");
    let (b, c) = (baseline.drain(), target.drain());
    assert_eq!(b.len() as u64, 2 * ITEMS);
    assert_eq!(c.len() as u64, 2 * ITEMS);
    // The same requests (line, copy, iteration) on both arms, the first arm drawn per request
    // from the send order (`load::first_arm_is_candidate`).
    let key = |r: &Received| {
        let t = r.trace();
        (t.line, t.copy, t.iteration, r.path.clone())
    };
    let mut first_candidate = 0;
    for r in &c {
        let twin = b
            .iter()
            .find(|x| key(x) == key(r))
            .unwrap_or_else(|| panic!("{:?} on the baseline", key(r)));
        if r.at < twin.at {
            first_candidate += 1;
        }
    }
    let drawn = (0..2 * ITEMS)
        .filter(|&order| tapedeck_generator::load::first_arm_is_candidate(order))
        .count();
    assert_eq!(
        first_candidate, drawn,
        "the pairs that start with the candidate are the ones the draw chose"
    );
    assert!(
        first_candidate > 0 && first_candidate < 2 * ITEMS as usize,
        "both arms go first sometimes"
    );
    // Each arm measured; the gate ran on the pairs; the pair counts once in the load model.
    let baseline_figures = report.baseline.as_ref().expect("the baseline arm");
    assert_eq!(baseline_figures.overall.requests, 2 * ITEMS);
    assert_eq!(report.overall.requests, 2 * ITEMS);
    let gate = report.gate.as_ref().expect("the gate");
    assert_eq!(gate.samples, 2 * ITEMS);
    assert_eq!(report.distributions[0].endpoint, "*");
    assert_eq!(report.distributions.len(), 2);
    let value = check_schema(&out, "replay-report-v2.schema.json", JSON_FILE);
    assert_eq!(value["version"], 2);
    assert!(
        value["gate"]["goals"]
            .as_array()
            .is_some_and(|g| !g.is_empty())
    );
}
