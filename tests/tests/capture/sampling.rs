//! Sampling and the include/exclude rules: what is skipped is counted, not sent, and the sampling
//! choice for a trace is the same every time.

use anyhow::Result;
use bytes::Bytes;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tapedeck_e2e::{Rig, RigBuilder, assert_identity};
use tapedeck_local::process::stat_by_suffix;
use tapedeck_local::sample::full_body;
use tapedeck_local::sink;
use tapedeck_proto::Direction;

const CAPTURED: &str = "tapedeck.exchanges_captured";
const SAMPLED_OUT: &str = "tapedeck.exchanges_sampled_out";
const FILTERED_OUT: &str = "tapedeck.exchanges_filtered_out";

async fn get_with_request_id(rig: &Rig, id: &str) -> Result<()> {
    let request = rig
        .request("GET", "/hello")
        .header("x-request-id", id)
        .body(full_body(Bytes::new()))?;
    let reply = rig.send(request).await?;
    anyhow::ensure!(
        reply.status == 200,
        "GET /hello ({id}) answered {}",
        reply.status
    );
    Ok(())
}

#[tokio::test]
async fn rate_zero_sends_nothing_and_counts_every_request() -> Result<()> {
    let mut rig = RigBuilder::new()
        .plugin(json!({"sampling": {"rate": 0.0}}))
        .start()
        .await?;
    const REQUESTS: u64 = 20;
    for i in 0..REQUESTS {
        get_with_request_id(&rig, &format!("zero-{i}")).await?;
    }
    assert_eq!(rig.wait_for_stat(SAMPLED_OUT, REQUESTS).await?, REQUESTS);
    assert_eq!(rig.stat(CAPTURED).await?, 0);
    // Several flush intervals (50 ms) pass: still nothing.
    let collected = sink::collect_for(&mut rig.received, Duration::from_millis(500)).await;
    assert!(
        collected.is_empty(),
        "{} exchanges were sent at rate 0",
        collected.len()
    );
    assert_eq!(rig.stat(SAMPLED_OUT).await?, REQUESTS);
    Ok(())
}

#[tokio::test]
async fn a_disabled_filter_proxies_and_captures_nothing() -> Result<()> {
    let mut rig = RigBuilder::new()
        .plugin(json!({"capture": {"enabled": false}}))
        .start()
        .await?;
    for i in 0..5 {
        // Answers 200 or fails.
        get_with_request_id(&rig, &format!("off-{i}")).await?;
    }
    let collected = sink::collect_for(&mut rig.received, Duration::from_millis(500)).await;
    assert!(
        collected.is_empty(),
        "{} exchanges were sent while disabled",
        collected.len()
    );
    // Disabled means idle: not even sampling is counted.
    assert_eq!(rig.stat(CAPTURED).await?, 0);
    assert_eq!(rig.stat(SAMPLED_OUT).await?, 0);
    Ok(())
}

#[tokio::test]
async fn rate_half_samples_some_and_the_same_traces_every_time() -> Result<()> {
    let mut rig = RigBuilder::new()
        .plugin(json!({"sampling": {"rate": 0.5}}))
        .start()
        .await?;
    const REQUESTS: u64 = 40;
    let ids: Vec<String> = (0..REQUESTS)
        .map(|i| format!("half-{i:03}-{}", i * 7919))
        .collect();

    let mut rounds: Vec<BTreeSet<String>> = Vec::new();
    let mut captured_before = 0;
    for round in 1..=2u64 {
        for id in &ids {
            get_with_request_id(&rig, id).await?;
        }
        // Every request is either captured or sampled out.
        let count = |stats: &_, name| stat_by_suffix(stats, name).unwrap_or(0);
        let stats = rig
            .envoy
            .wait_for_stats(tapedeck_e2e::WAIT, |stats| {
                count(stats, CAPTURED) + count(stats, SAMPLED_OUT) >= round * REQUESTS
            })
            .await?;
        let captured = stat_by_suffix(&stats, CAPTURED)?;
        assert_eq!(
            captured + stat_by_suffix(&stats, SAMPLED_OUT)?,
            round * REQUESTS,
            "round {round}"
        );
        let this_round = (captured - captured_before) as usize;
        captured_before = captured;
        let collected =
            sink::collect_exchanges(&mut rig.received, this_round, tapedeck_e2e::WAIT).await?;
        let traces: BTreeSet<String> = collected
            .exchanges()
            .inspect(|exchange| assert_identity_at_half(exchange))
            .map(|exchange| exchange.trace_id.clone())
            .collect();
        assert_eq!(traces.len(), this_round, "round {round}: each trace once");
        assert!(
            traces.iter().all(|trace| ids.contains(trace)),
            "round {round}: {traces:?}"
        );
        assert!(
            !traces.is_empty() && traces.len() < REQUESTS as usize,
            "round {round}: {} of {REQUESTS} sampled at rate 0.5",
            traces.len()
        );
        rounds.push(traces);
    }
    assert_eq!(
        rounds[0], rounds[1],
        "the same trace ids are sampled in both rounds"
    );
    Ok(())
}

fn assert_identity_at_half(exchange: &tapedeck_proto::Exchange) {
    let mut full_rate = exchange.clone();
    assert_eq!(exchange.sample_rate, 0.5);
    full_rate.sample_rate = 1.0;
    assert_identity(&full_rate, Direction::Inbound);
}

#[tokio::test]
async fn include_and_exclude_rules_pick_what_is_captured() -> Result<()> {
    let mut rig = RigBuilder::new()
        .plugin(json!({"match": {
            "include_paths": ["/hello", "/echo"],
            "exclude_paths": ["/echo/private"],
            "exclude_authorities": ["*.internal"],
        }}))
        .start()
        .await?;
    let empty = || full_body(Bytes::new());
    let requests = [
        rig.request("GET", "/hello?q=1").body(empty())?,
        rig.request("GET", "/binary").body(empty())?,
        rig.request("POST", "/echo").body(full_body("x"))?,
        rig.request("POST", "/echo/private").body(full_body("y"))?,
        rig.request("GET", "/hello")
            .header("host", "metrics.internal")
            .body(empty())?,
        rig.request("GET", "/hello")
            .header("host", "shop.example")
            .body(empty())?,
    ];
    for request in requests {
        rig.send(request).await?;
    }
    assert_eq!(rig.wait_for_stat(FILTERED_OUT, 3).await?, 3);
    let collected = sink::collect_exchanges(&mut rig.received, 3, tapedeck_e2e::WAIT).await?;
    let mut seen: Vec<String> = collected
        .exchanges()
        .map(|e| format!("{} {} {}", e.method, e.authority, e.path))
        .collect();
    seen.sort();
    let mut expected = vec![
        format!("GET {} /hello?q=1", rig.authority()),
        format!("POST {} /echo", rig.authority()),
        "GET shop.example /hello".to_string(),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let more = sink::collect_for(&mut rig.received, Duration::from_millis(300)).await;
    assert!(
        more.is_empty(),
        "more was sent: {:?}",
        more.exchanges().map(|e| &e.path).collect::<Vec<_>>()
    );
    assert_eq!(rig.stat(CAPTURED).await?, 3);
    assert_eq!(rig.stat(FILTERED_OUT).await?, 3);
    Ok(())
}
