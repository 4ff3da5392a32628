//! Serving: exact replay of every recorded pair, hosts and aliases on one port, resets,
//! truncated bodies, h2c, the admin port, clean shutdown and broken input.

use tapedeck_analyzer::replay::trace::ReplayTrace;
use tapedeck_analyzer::snapshot::{Entry, HeaderEntry, HeaderValue};
use tapedeck_analyzer::tokens::ReplayAction;
use tapedeck_responder::fixture::{self, API_KEY, INVENTORY, PAYMENTS, REDACTION_KEY};

use crate::support::*;

fn text(value: &HeaderValue) -> String {
    match value {
        HeaderValue::Text(t) => t.clone(),
        HeaderValue::Binary(b) => String::from_utf8_lossy(&b.base64).into_owned(),
    }
}

/// The recorded request of an entry, as the service under test would send it again (the real
/// API key instead of its marker; the generator's traceparent for calls with a cause).
fn recorded_call(f: &Fixture, entry: &Entry) -> Call {
    let mut call = Call::get(&entry.authority, &entry.path);
    call.method = entry.method.clone();
    call.h2 = entry.protocol == "HTTP/2" || entry.protocol == "gRPC";
    call.body = entry
        .request
        .body
        .as_ref()
        .map(|b| b.as_bytes().to_vec())
        .unwrap_or_default();
    for HeaderEntry(name, value) in &entry.request.headers {
        match name.as_str() {
            "traceparent" => {}
            "x-api-key" => call = call.header(name, API_KEY),
            _ => call = call.header(name, text(value)),
        }
    }
    if let Some(cause) = &entry.caused_by {
        let trace = ReplayTrace {
            copy: 0,
            iteration: 0,
            line: inbound_line(&f.snapshot, cause),
        };
        call = call.header("traceparent", trace.traceparent(7));
    }
    call
}

#[test]
fn discovery_finds_the_rules_the_fixture_needs() {
    let f = fixture();
    let rules: Vec<(String, ReplayAction)> = f
        .snapshot
        .manifest
        .tokens
        .iter()
        .map(|r| (r.name.clone(), r.replay))
        .collect();
    for (name, action) in [
        (
            "correlation inbound request path 2 (POST /orders/{id}/pay)",
            ReplayAction::Propagate,
        ),
        (
            "jwt outbound request header authorization Bearer",
            ReplayAction::Ignore,
        ),
        (
            "jwt outbound response json $.access_token (POST /oauth/token)",
            ReplayAction::Resign,
        ),
        (
            "timestamp outbound response json $.created (POST /v1/charges)",
            ReplayAction::Shift,
        ),
        (
            "timestamp outbound response header date",
            ReplayAction::Shift,
        ),
        (
            "uuid outbound request json $.idempotency_key (POST /v1/charges)",
            ReplayAction::Ignore,
        ),
    ] {
        assert!(
            rules.contains(&(name.to_owned(), action)),
            "{name}: {rules:#?}"
        );
    }
    assert_eq!(f.snapshot.manifest.hosts.len(), 4);
}

#[tokio::test]
async fn every_recorded_pair_replays_exactly() {
    let f = fixture();
    let mut args = args(&f.path);
    args.redaction_key = Some(REDACTION_KEY.to_owned());
    let running = start(args).await;
    for (i, entry) in f.snapshot.outbound.iter().enumerate() {
        let line = i as u64 + 1;
        let reply = recorded_call(&f, entry).send(running.addr()).await;
        if entry.status == 0 {
            assert!(
                reply.is_err(),
                "line {line}: status 0 must reset, got {reply:?}"
            );
            continue;
        }
        let reply = reply.unwrap_or_else(|e| panic!("line {line}: {e}"));
        assert_eq!(reply.status.as_u16() as u32, entry.status, "line {line}");
        assert_eq!(
            reply.header("x-tapedeck-recording"),
            Some(recording_name(&f.snapshot, line).as_str()),
            "line {line}: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = entry
            .response
            .body
            .as_ref()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(reply.body.as_ref(), body.as_slice(), "line {line}");
        for HeaderEntry(name, value) in &entry.response.headers {
            assert_eq!(
                reply.header(name),
                Some(text(value).as_str()),
                "line {line}: {name}"
            );
        }
        if entry.response.trailers.is_empty() {
            assert!(reply.trailers.is_none(), "line {line}");
        } else {
            let trailers = reply.trailers.as_ref().expect("trailers");
            for HeaderEntry(name, value) in &entry.response.trailers {
                assert_eq!(
                    trailers.get(name.as_str()).and_then(|v| v.to_str().ok()),
                    Some(text(value).as_str()),
                    "line {line}: trailer {name}"
                );
            }
        }
        assert_eq!(
            reply.header("content-length").map(str::to_owned),
            entry
                .response
                .trailers
                .is_empty()
                .then(|| body.len().to_string()),
            "line {line}: content-length is recomputed"
        );
        assert_eq!(
            reply.header("x-tapedeck-truncated").is_some(),
            entry.response.truncated,
            "line {line}"
        );
    }
    assert_eq!(
        running
            .metrics()
            .resets
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    running.stop().await;
}

#[tokio::test]
async fn many_hosts_and_aliases_on_one_port() {
    let f = fixture();
    let mut args = args(&f.path);
    args.redaction_key = Some(REDACTION_KEY.to_owned());
    let running = start(args).await;
    let charge = f
        .snapshot
        .outbound
        .iter()
        .find(|e| e.method == "POST" && e.authority == PAYMENTS)
        .unwrap();
    for host in [
        PAYMENTS,
        "payments",
        "payments.shop",
        "payments:8080",
        "payments.shop.svc.cluster.local",
        "payments.shop.svc.cluster.local:8080",
        "PAYMENTS.shop.svc",
    ] {
        let mut call = recorded_call(&f, charge);
        call.host = host.to_owned();
        let reply = call.send(running.addr()).await.unwrap();
        assert_eq!(reply.status, 200, "{host}: {:?}", reply.body);
        assert!(reply.header("x-tapedeck-recording").is_some(), "{host}");
    }
    for host in ["inventory", "inventory.shop.svc.cluster.local:8080"] {
        let reply = Call::get(host, "/v1/catalog")
            .h2()
            .send(running.addr())
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{host}");
    }
    let reply = Call::get("unknown.shop.svc", "/v1/charges")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["reason"], "unknown_host");
    running.stop().await;
}

#[tokio::test]
async fn resets_truncated_bodies_and_h2c() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    // Status 0: the HTTP/2 stream is reset; over HTTP/1.1 the connection closes.
    for call in [
        Call::get(INVENTORY, "/v1/stock/sku_999999").h2(),
        Call::get(INVENTORY, "/v1/stock/sku_999999"),
    ] {
        let error = call.send(running.addr()).await.unwrap_err();
        assert!(!error.is_empty());
    }
    // A truncated recording: its prefix, flagged.
    let reply = Call::get(INVENTORY, "/v1/catalog")
        .h2()
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with(br#"{"items":[{"sku":"sku_123456""#));
    assert_eq!(
        reply.header("x-tapedeck-truncated"),
        Some(format!("{}/4096", reply.body.len()).as_str())
    );
    // An HTTP/1.1 request offering `Upgrade: h2c` is answered over HTTP/1.1.
    let reply = Call::get(INVENTORY, "/v1/catalog")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    running.stop().await;
}

#[tokio::test]
async fn admin_port_and_clean_shutdown() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    assert_eq!(admin_get(&running, "/healthz").await.status, 200);
    assert_eq!(admin_get(&running, "/readyz").await.status, 200);
    Call::get(INVENTORY, "/v1/catalog")
        .h2()
        .send(running.addr())
        .await
        .unwrap();
    Call::get(INVENTORY, "/nope")
        .send(running.addr())
        .await
        .unwrap();
    let metrics = admin_get(&running, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for line in [
        "tapedeck_responder_requests_total 2",
        "tapedeck_responder_matches_total{kind=\"exact\"} 1",
        "tapedeck_responder_misses_total{reason=\"unknown_endpoint\"} 1",
        "tapedeck_responder_truncated_served_total 1",
        "tapedeck_responder_recordings 20",
        "tapedeck_responder_response_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    let addr = running.addr();
    let stopped = tokio::time::timeout(CALL_TIMEOUT, running.stop()).await;
    assert!(stopped.is_ok(), "shutdown did not finish");
    assert!(
        Call::get(INVENTORY, "/v1/catalog")
            .send(addr)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn broken_snapshots_and_flags_are_named() {
    let f = fixture();
    let outbound = f.path.join("outbound.jsonl");
    let text = std::fs::read_to_string(&outbound).unwrap();
    let broken = text.replacen("\"method\":", "\"colour\":\"red\",\"method\":", 1);
    std::fs::write(&outbound, broken).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = tapedeck_responder::serve(args(&f.path), listener, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("outbound.jsonl:1:"), "{error}");
    assert!(error.contains("unknown field `colour`"), "{error}");

    let f = fixture();
    let mut bad = args(&f.path);
    bad.chaos = vec!["boom@0.1".to_owned()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = tapedeck_responder::serve(bad, listener, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown fault \"boom\""), "{error}");
    let _ = fixture::ORDERS;
}

#[tokio::test]
async fn run_serves_until_shutdown_and_flushes_the_log() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("explain.jsonl");
    let mut serve = args(&f.path);
    serve.admin_listen = Some(String::new());
    serve.explain = Some(log.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tapedeck_responder::run(
        tapedeck_responder::RespondArgs {
            command: None,
            serve,
        },
        async move {
            let _ = stopped.await;
        },
    ));
    stop.send(()).unwrap();
    let result = tokio::time::timeout(CALL_TIMEOUT, task)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("{\"event\":\"start\""), "{text}");

    let summary = tapedeck_responder::run(
        tapedeck_responder::RespondArgs {
            command: Some(tapedeck_responder::RespondCommand::Explain(
                tapedeck_responder::ExplainArgs { file: log.clone() },
            )),
            serve: args(&f.path),
        },
        std::future::pending(),
    )
    .await;
    assert!(summary.is_ok(), "{summary:?}");
    let missing = tapedeck_responder::run(
        tapedeck_responder::RespondArgs {
            command: Some(tapedeck_responder::RespondCommand::Explain(
                tapedeck_responder::ExplainArgs {
                    file: dir.path().join("none.jsonl"),
                },
            )),
            serve: args(&f.path),
        },
        std::future::pending(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(missing.contains("none.jsonl"), "{missing}");
}

#[tokio::test]
async fn recorded_latency_is_replayed_scaled() {
    let f = fixture();
    let mut slow = args(&f.path);
    // Recorded: headers after 3 ms, the end after 4 ms; × 25 gives 75 ms and 100 ms.
    slow.latency = tapedeck_responder::LatencyMode::Scaled(25.0);
    let running = start(slow).await;
    let begun = std::time::Instant::now();
    let reply = Call::get(INVENTORY, "/v1/catalog")
        .h2()
        .send(running.addr())
        .await
        .unwrap();
    let elapsed = begun.elapsed();
    assert_eq!(reply.status, 200);
    assert!(
        elapsed >= std::time::Duration::from_millis(100),
        "{elapsed:?}"
    );
    running.stop().await;
}
