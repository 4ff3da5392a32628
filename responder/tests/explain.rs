//! The explain log names every decision, and its summary counts misses by endpoint and field.

use tapedeck_responder::explain::summarise_file;
use tapedeck_responder::fixture::{INVENTORY, PAYMENTS};

use crate::support::*;

#[tokio::test]
async fn the_explain_log_names_every_decision() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("explain.jsonl");
    let mut a = args(&f.path);
    a.explain = Some(log.clone());
    let running = start(a).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let calls = [
        Call::get(INVENTORY, "/v1/stock/sku_123456")
            .h2()
            .header("traceparent", tp),
        Call::get(INVENTORY, "/v1/stock/sku_123456")
            .h2()
            .header("traceparent", tp),
        Call::get(PAYMENTS, "/v1/charges?order=ord_999999&limit=10"),
        Call::get(PAYMENTS, "/v1/charges?order=ord_010000&limit=99"),
        Call::get("nowhere.svc", "/x"),
        Call::get(INVENTORY, "/v1/catalog"),
    ];
    for call in &calls {
        let _ = call.send(running.addr()).await.unwrap();
    }
    running.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), calls.len() + 1, "{text}");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["snapshot"], f.snapshot.manifest.id.as_str());
    assert_eq!(lines[0]["seed"], 1);
    let requests = &lines[1..];
    for (i, line) in requests.iter().enumerate() {
        assert_eq!(line["event"], "request");
        assert_eq!(line["seq"], i as u64, "{line}");
    }
    // A sequence: the second of three recordings, the others named.
    assert_eq!(requests[1]["decision"], "matched");
    assert_eq!(requests[1]["kind"], "exact");
    assert_eq!(requests[1]["sequence"], serde_json::json!([1, 3]));
    assert_eq!(requests[1]["others"].as_array().unwrap().len(), 2);
    assert_eq!(
        requests[1]["session"]["trace"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    // A wildcard, with the rule that made it one, and the value substituted.
    let wild = &requests[2];
    assert_eq!(wild["decision"], "matched", "{wild:#}");
    assert_eq!(wild["wildcards"][0]["field"], "query order");
    assert!(
        wild["wildcards"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("propagate target"),
        "{wild:#}"
    );
    assert_eq!(wild["served"]["substituted"], 1, "{wild:#}");
    assert_eq!(wild["served"]["status"], 200);
    // A miss: candidates with their differing fields.
    let miss = &requests[3];
    assert_eq!(miss["decision"], "miss");
    assert_eq!(miss["reason"], "no_match");
    assert_eq!(
        miss["candidates"][0]["differing"][0]["field"],
        "query limit"
    );
    assert_eq!(miss["served"]["status"], 404);
    assert_eq!(requests[4]["reason"], "unknown_host");
    assert_eq!(requests[5]["served"]["truncated"], true);
    assert!(
        requests[5]["recording"]
            .as_str()
            .unwrap()
            .starts_with(&f.snapshot.manifest.id)
    );

    let summary = summarise_file(&log).unwrap();
    assert!(summary.starts_with("6 requests\n"), "{summary}");
    assert!(summary.contains("matched (exact)"), "{summary}");
    assert!(summary.contains("miss (no_match)"), "{summary}");
    assert!(
        summary.contains(&format!("{PAYMENTS} GET /v1/charges")),
        "{summary}"
    );
    assert!(summary.contains("query limit"), "{summary}");
}

#[tokio::test]
async fn faults_are_in_the_explain_log() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("explain.jsonl");
    let mut a = args(&f.path);
    a.explain = Some(log.clone());
    a.chaos = vec!["status=418@1".to_owned()];
    let running = start(a).await;
    let reply = Call::get(INVENTORY, "/v1/catalog")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 418);
    running.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(line["faults"][0]["rule"], "--chaos status=418@1");
    assert_eq!(line["faults"][0]["fault"]["kind"], "status");
    assert_eq!(line["served"]["status"], 418);
    assert_eq!(line["decision"], "matched");
    let summary = summarise_file(&log).unwrap();
    assert!(
        summary.contains("faults injected:\n         1  status"),
        "{summary}"
    );
}
