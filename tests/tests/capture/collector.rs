//! A collector that is down, hanging or refusing never fails or slows a request: the filter
//! drops what it cannot send and counts every drop.

use anyhow::{Result, ensure};
use serde_json::json;
use std::time::Duration;
use tapedeck_e2e::{Collector, Rig, RigBuilder, WAIT};
use tapedeck_local::SinkMode;
use tapedeck_local::process::stat_by_suffix;
use tapedeck_local::sample::full_body;
use tapedeck_local::sink;

const SEND_FAILED: &str = "tapedeck.exchanges_dropped.send_failed";
const QUEUE_FULL: &str = "tapedeck.exchanges_dropped.queue_full";
const CAPTURED: &str = "tapedeck.exchanges_captured";
const BATCH_FAILURES: &str = "tapedeck.batch_send_failures";
const SENT: &str = "tapedeck.exchanges_sent";

/// Sends `count` echo requests, each with its own body, and checks every answer; returns the
/// slowest.
async fn echo_requests(rig: &Rig, count: usize) -> Result<Duration> {
    let mut slowest = Duration::ZERO;
    for i in 0..count {
        let body = format!("{{\"request\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 10));
        let request = rig
            .request("POST", "/echo")
            .header("content-type", "application/json")
            .body(full_body(body.clone()))?;
        let reply = rig.send(request).await?;
        ensure!(reply.status == 200, "request {i} answered {}", reply.status);
        ensure!(
            reply.body == body,
            "request {i} got a wrong body back: {:?}",
            reply.body
        );
        slowest = slowest.max(reply.elapsed);
    }
    Ok(slowest)
}

fn count(stats: &std::collections::HashMap<String, u64>, name: &str) -> u64 {
    stat_by_suffix(stats, name).unwrap_or(0)
}

#[tokio::test]
async fn collector_down_loses_captures_not_requests() -> Result<()> {
    const REQUESTS: usize = 20;
    let rig = RigBuilder::new()
        .collector(Collector::Down)
        .plugin(json!({"collector": {"timeout_ms": 1000}}))
        .start()
        .await?;
    echo_requests(&rig, REQUESTS).await?;
    let dropped = rig.wait_for_stat(SEND_FAILED, REQUESTS as u64).await?;
    assert_eq!(dropped, REQUESTS as u64);
    assert_eq!(rig.stat(CAPTURED).await?, REQUESTS as u64);
    assert_eq!(rig.stat(SENT).await?, 0);
    assert!(rig.stat(BATCH_FAILURES).await? >= 1);
    Ok(())
}

#[tokio::test]
async fn collector_hanging_slows_no_request_and_drops_are_counted() -> Result<()> {
    const REQUESTS: usize = 20;
    const PUSH_TIMEOUT: Duration = Duration::from_millis(2000);
    let mut rig = RigBuilder::new()
        .collector(Collector::Sink(SinkMode::Hang))
        .plugin(json!({
            "collector": {"timeout_ms": PUSH_TIMEOUT.as_millis() as u64},
            "queue": {"max_exchanges": 4, "max_in_flight": 1},
        }))
        .start()
        .await?;
    let slowest = echo_requests(&rig, REQUESTS).await?;
    // A request that waited for the collector would take the whole push timeout.
    assert!(
        slowest < PUSH_TIMEOUT / 4,
        "the slowest request took {slowest:?} while the collector hung"
    );

    let stats = rig
        .envoy
        .wait_for_stats(WAIT, |stats| {
            count(stats, SEND_FAILED) + count(stats, QUEUE_FULL) >= REQUESTS as u64
        })
        .await?;
    assert_eq!(
        count(&stats, SEND_FAILED) + count(&stats, QUEUE_FULL),
        REQUESTS as u64,
        "{stats:?}"
    );
    assert!(
        count(&stats, SEND_FAILED) >= 1,
        "a hung push times out and its exchanges count as send_failed"
    );
    assert!(
        count(&stats, QUEUE_FULL) >= 1,
        "with one push in flight and 4 queued, the rest is dropped"
    );
    // `captured` counts what was queued; what found the queue full was never captured.
    assert_eq!(
        count(&stats, CAPTURED) + count(&stats, QUEUE_FULL),
        REQUESTS as u64
    );
    assert_eq!(count(&stats, SENT), 0);
    assert!(count(&stats, BATCH_FAILURES) >= 1);
    let received = sink::collect_for(&mut rig.received, Duration::from_millis(100)).await;
    assert!(received.is_empty());
    Ok(())
}

#[tokio::test]
async fn collector_refusing_loses_captures_not_requests() -> Result<()> {
    const REQUESTS: usize = 10;
    let rig = RigBuilder::new()
        .collector(Collector::Sink(SinkMode::Refuse))
        .start()
        .await?;
    echo_requests(&rig, REQUESTS).await?;
    let dropped = rig.wait_for_stat(SEND_FAILED, REQUESTS as u64).await?;
    assert_eq!(dropped, REQUESTS as u64);
    assert_eq!(rig.stat(SENT).await?, 0);
    assert!(rig.stat(BATCH_FAILURES).await? >= 1);
    Ok(())
}

#[tokio::test]
async fn a_collector_that_accepts_gets_everything_and_nothing_is_dropped() -> Result<()> {
    const REQUESTS: usize = 10;
    let mut rig = Rig::start().await?;
    echo_requests(&rig, REQUESTS).await?;
    let collected = sink::collect_exchanges(&mut rig.received, REQUESTS, WAIT).await?;
    assert_eq!(collected.len(), REQUESTS);
    assert!(
        collected
            .received
            .iter()
            .all(|r| !r.batch.filter_version.is_empty())
    );
    let sequences: Vec<u64> = collected
        .received
        .iter()
        .map(|r| r.batch.sequence)
        .collect();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(
        sequences, expected,
        "one VM numbers its batches from 1 without gaps"
    );
    assert!(
        collected
            .received
            .iter()
            .all(|r| r.batch.dropped_since_last == 0)
    );
    assert_eq!(
        rig.wait_for_stat(SENT, REQUESTS as u64).await?,
        REQUESTS as u64
    );
    assert_eq!(rig.stat(SEND_FAILED).await?, 0);
    assert_eq!(rig.stat(QUEUE_FULL).await?, 0);
    Ok(())
}
