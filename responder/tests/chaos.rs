//! Chaos: every fault kind fires at its probability over many requests with a fixed seed, the
//! same seed gives the same faults twice, and rules files are checked.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tapedeck_proto::prost::Message as _;
use tapedeck_responder::fixture::{INVENTORY, LEDGER, PAYMENTS, grpc_frame, push_request};
use tapedeck_responder::metrics::FAULT_KINDS;
use tapedeck_responder::{Running, ServeArgs};

use crate::support::*;

async fn with_chaos(f: &Fixture, flag: &str, seed: u64) -> Running {
    let mut a: ServeArgs = args(&f.path);
    a.chaos = vec![flag.to_owned()];
    a.seed = Some(seed);
    start(a).await
}

fn faults(running: &Running, kind: &str) -> u64 {
    let i = FAULT_KINDS.iter().position(|k| *k == kind).unwrap();
    running.metrics().faults[i].load(Ordering::Relaxed)
}

/// Asserts `hits` of `n` is within four standard deviations of `p`.
fn assert_rate(kind: &str, hits: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 4.0 * sd,
        "{kind}: {hits} of {n}, expected about {mean:.0} (p = {p})"
    );
    assert!(hits > 0 && hits < n, "{kind}: {hits} of {n}");
}

fn catalog() -> Call {
    Call::get(INVENTORY, "/v1/catalog")
}

fn lookup() -> Call {
    Call::get(PAYMENTS, "/v1/charges?order=ord_010000&limit=10")
}

#[tokio::test]
async fn status_faults_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "status=503@0.3", 5).await;
    let n = 300;
    let mut hits = 0;
    for _ in 0..n {
        let reply = catalog().send(running.addr()).await.unwrap();
        if reply.status == 503 {
            assert_eq!(reply.header("x-tapedeck-fault"), Some("status"));
            hits += 1;
        } else {
            assert_eq!(reply.status, 200);
        }
    }
    assert_rate("status", hits, n, 0.3);
    assert_eq!(faults(&running, "status"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn resets_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "reset@0.25", 6).await;
    let n = 200;
    let mut hits = 0;
    for i in 0..n {
        // Half over HTTP/2 (RST_STREAM), half over HTTP/1.1 (connection closed).
        let call = if i % 2 == 0 { lookup() } else { lookup().h2() };
        if call.send(running.addr()).await.is_err() {
            hits += 1;
        }
    }
    assert_rate("reset", hits, n, 0.25);
    assert_eq!(faults(&running, "reset"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn truncated_bodies_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "truncate=0.5@0.3", 7).await;
    let n = 200;
    let mut hits = 0;
    for _ in 0..n {
        match lookup().send(running.addr()).await {
            Ok(reply) => assert_eq!(reply.json()["data"][0]["order"], "ord_010000"),
            Err(error) => {
                assert!(error.starts_with("body"), "{error}");
                hits += 1;
            }
        }
    }
    assert_rate("truncate", hits, n, 0.3);
    assert_eq!(faults(&running, "truncate"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn grpc_status_faults_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "grpc=14@0.3", 8).await;
    let n = 200;
    let mut hits = 0;
    let body = grpc_frame(&[push_request(1).encode_to_vec()]);
    for _ in 0..n {
        let reply = Call::post(LEDGER, "/tapedeck.capture.v1.Capture/Push", body.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .h2()
            .send(running.addr())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        if reply.header("grpc-status") == Some("14") {
            assert!(
                reply.body.is_empty() && reply.trailers.is_none(),
                "trailers-only"
            );
            hits += 1;
        } else {
            let trailers = reply.trailers.expect("recorded trailers");
            assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        }
    }
    assert_rate("grpc_status", hits, n, 0.3);
    assert_eq!(faults(&running, "grpc_status"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn latency_faults_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "latency=60ms@0.4", 9).await;
    let n = 50;
    let mut hits = 0;
    for _ in 0..n {
        let begun = Instant::now();
        let reply = catalog().send(running.addr()).await.unwrap();
        if reply.header("x-tapedeck-fault") == Some("latency") {
            assert!(begun.elapsed() >= Duration::from_millis(60));
            hits += 1;
        }
    }
    assert_rate("latency", hits, n, 0.4);
    assert_eq!(faults(&running, "latency"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn slow_bodies_fire_at_their_probability() {
    let f = fixture();
    let running = with_chaos(&f, "slow=300ms@0.4", 10).await;
    let n = 40;
    let calls = (0..n).map(|_| {
        let addr = running.addr();
        async move {
            let begun = Instant::now();
            let reply = lookup().send(addr).await.unwrap();
            assert_eq!(reply.json()["data"][0]["order"], "ord_010000");
            (
                begun.elapsed(),
                reply.header("x-tapedeck-fault") == Some("slow_body"),
            )
        }
    });
    let results = futures::future::join_all(calls).await;
    let hits = results.iter().filter(|(_, slow)| *slow).count();
    for (elapsed, slow) in &results {
        if *slow {
            assert!(*elapsed >= Duration::from_millis(250), "{elapsed:?}");
        }
    }
    assert_rate("slow_body", hits, n, 0.4);
    assert_eq!(faults(&running, "slow_body"), hits as u64);
    running.stop().await;
}

#[tokio::test]
async fn hangs_fire_at_their_probability_and_end_at_shutdown() {
    let f = fixture();
    let running = with_chaos(&f, "hang@0.4", 11).await;
    let n = 40;
    let calls = (0..n).map(|_| {
        let addr = running.addr();
        async move {
            catalog()
                .send_within(addr, Duration::from_secs(2))
                .await
                .err()
                .is_some_and(|e| e == "timed out")
        }
    });
    let hits = futures::future::join_all(calls)
        .await
        .into_iter()
        .filter(|hung| *hung)
        .count();
    assert_rate("hang", hits, n, 0.4);
    assert_eq!(faults(&running, "hang"), hits as u64);
    let stopped = tokio::time::timeout(CALL_TIMEOUT, running.stop()).await;
    assert!(stopped.is_ok(), "hanging requests held shutdown");
}

/// What a client saw, in a word.
fn outcome(result: Result<Reply, String>) -> String {
    match result {
        Ok(reply) => format!(
            "{} {}",
            reply.status.as_u16(),
            reply.header("x-tapedeck-fault").unwrap_or("-")
        ),
        Err(error) if error.starts_with("body") => "cut".to_owned(),
        Err(_) => "reset".to_owned(),
    }
}

const RULES: &str = "\
version: 1
rules:
  - name: payments lookups fail
    host: payments
    endpoint: GET /v1/charges
    probability: 0.2
    fault: {kind: status, status: 500}
  - name: any reset
    probability: 0.1
    fault: {kind: reset}
  - name: inventory truncated
    host: inventory.shop.svc.cluster.local
    method: GET
    probability: 0.2
    fault: {kind: truncate, fraction: 0.3}
  - name: some latency
    probability: 0.3
    fault: {kind: latency, normal_ms: {mean: 2, stddev: 1}}
";

async fn run_rules(f: &Fixture, rules: &std::path::Path, seed: u64) -> Vec<String> {
    let mut a = args(&f.path);
    a.chaos_rules = Some(rules.to_path_buf());
    a.seed = Some(seed);
    let running = start(a).await;
    let mut out = Vec::new();
    for i in 0..120 {
        let call = match i % 3 {
            0 => lookup(),
            1 => Call::get(INVENTORY, "/v1/stock/sku_123456").h2(),
            _ => catalog(),
        };
        out.push(outcome(call.send(running.addr()).await));
    }
    running.stop().await;
    out
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("chaos.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let first = run_rules(&f, &rules, 11).await;
    let second = run_rules(&f, &rules, 11).await;
    let other = run_rules(&f, &rules, 12).await;
    assert_eq!(first, second);
    assert_ne!(first, other);
    for kind in ["500 status", "reset", "cut", "200 -"] {
        assert!(
            first.iter().any(|o| o == kind),
            "{kind} never happened: {first:?}"
        );
    }
    // Scoping: payments lookups fail only on payments; inventory bodies are cut only there.
    for (i, o) in first.iter().enumerate() {
        if o == "500 status" {
            assert_eq!(i % 3, 0, "{i}: {o}");
        }
        if o == "cut" {
            assert_ne!(i % 3, 0, "{i}: {o}");
        }
    }
}

#[tokio::test]
async fn rules_files_are_checked_with_their_line() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "version: 1\nrules:\n  - probability: 0.1\n    fault: {kind: reset}\n    colour: red\n",
            "line 5:",
        ),
        (
            "version: 1\nrules:\n  - probability: 0.1\n    fault: {kind: explode}\n",
            "unknown variant `explode`",
        ),
        ("version: 3\n", "unknown chaos rules version 3"),
        (
            "version: 1\nrules:\n  - host: mail.google.com\n    probability: 0.1\n    fault: {kind: reset}\n",
            "host \"mail.google.com\" is not a recorded host",
        ),
    ] {
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, text).unwrap();
        let mut a = args(&f.path);
        a.chaos_rules = Some(path.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = tapedeck_responder::serve(a, listener, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(&path.display().to_string()), "{error}");
        assert!(error.contains(expected), "{expected} in {error}");
    }
}
