//! The load models: recorded pace (speed, copies), the open model's rate and the closed model's
//! concurrency, each checked by what the server saw.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Received, Reply, Server, args, inbound, replay, write_snapshot};

/// `n` GET requests, `gap_ms` apart.
fn spaced(dir: &std::path::Path, n: u64, gap_ms: u64) -> std::path::PathBuf {
    let exchanges = (0..n)
        .map(|i| {
            inbound(
                i,
                i * gap_ms,
                "GET",
                &format!("/items/{i}"),
                &[],
                "",
                200,
                "{}",
            )
        })
        .collect();
    write_snapshot(dir, &format!("spaced-{n}-{gap_ms}"), exchanges)
}

#[tokio::test]
async fn recorded_pace_follows_offsets_divided_by_speed_for_every_copy() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = spaced(dir.path(), 10, 100);
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let mut a = args(&snapshot, &server.url);
    a.speed = 2.0;
    a.copies = 2;
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    assert_eq!(got.len(), 20);
    assert_eq!(report.settings.model, "recorded");
    assert_eq!(report.settings.effective_speed, 2.0);
    let mut by_copy: BTreeMap<u32, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        by_copy.entry(r.trace().copy).or_default().push(r);
    }
    assert_eq!(by_copy.len(), 2);
    for (copy, requests) in by_copy {
        assert_eq!(requests.len(), 10, "copy {copy}");
        let lines: Vec<u32> = requests.iter().map(|r| r.trace().line).collect();
        assert_eq!(
            lines,
            (1..=10).collect::<Vec<_>>(),
            "copy {copy} in recorded order"
        );
        // 900 ms of recording at speed 2: 450 ms from first to last, 50 ms apart.
        let span = requests[9].at - requests[0].at;
        assert!(
            (Duration::from_millis(360)..=Duration::from_millis(650)).contains(&span),
            "copy {copy}: span {span:?}"
        );
    }
}

#[tokio::test]
async fn the_open_model_sends_at_the_rate_for_the_duration() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = spaced(dir.path(), 5, 1);
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let mut a = args(&snapshot, &server.url);
    a.rate = Some(200.0);
    a.duration = Some(Duration::from_secs(1));
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    // Due times k / 200 s for k = 0..199 fall inside the second: exactly 200.
    assert_eq!(got.len(), 200);
    assert_eq!(report.overall.requests, 200);
    assert!(
        (150.0..=205.0).contains(&report.overall.rps),
        "achieved {} rps",
        report.overall.rps
    );
    // Spread evenly: the 101st request about 500 ms after the first (wide bounds: CI machines
    // are loaded; a wrong rate is off by far more).
    let half = got[100].at - got[0].at;
    assert!(
        (Duration::from_millis(400)..=Duration::from_millis(650)).contains(&half),
        "{half:?}"
    );
    // Requests go in the order iteration, line: 40 iterations of the 5 lines.
    assert_eq!(got[7].trace().line, 3);
    assert_eq!(got[7].trace().iteration, 1);
}

#[tokio::test]
async fn the_closed_model_keeps_exactly_its_concurrency() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = spaced(dir.path(), 6, 1);
    let mut server = Server::start(Arc::new(|_: &Received| Reply {
        delay: Duration::from_millis(20),
        ..Reply::json(200, "{}")
    }))
    .await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(4);
    a.iterations = Some(5);
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    assert_eq!(got.len(), 30);
    assert_eq!(report.overall.requests, 30);
    let most = got.iter().map(|r| r.in_flight).max().unwrap_or(0);
    assert_eq!(most, 4, "at most and at some point exactly 4 in flight");
    // Latency includes the server's 20 ms.
    assert!(
        report.overall.latency.p50 >= 20.0,
        "{:?}",
        report.overall.latency
    );
}

#[tokio::test]
async fn a_sampled_recording_is_replayed_at_production_pace() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Kept at a sample rate of 0.5: production sent twice as many requests in the same time.
    let exchanges = (0..5)
        .map(|i| {
            let mut e = inbound(
                i,
                i * 100,
                "GET",
                &format!("/items/{i}"),
                &[],
                "",
                200,
                "{}",
            );
            e.sample_rate = 0.5;
            e
        })
        .collect();
    let snapshot = write_snapshot(dir.path(), "sampled", exchanges);
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let report = replay(args(&snapshot, &server.url))
        .await
        .expect("the replay runs");
    assert_eq!(report.settings.sample_rate, 0.5);
    assert_eq!(report.settings.effective_speed, 2.0);
    let got = server.drain();
    assert_eq!(got.len(), 5);
    // 400 ms of recording at twice the pace.
    let span = got[4].at - got[0].at;
    assert!(
        (Duration::from_millis(150)..=Duration::from_millis(330)).contains(&span),
        "{span:?}"
    );
}
