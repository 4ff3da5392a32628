//! Sessions: several recordings of one request served in recorded order per session, then
//! cycling; the generator's traceparent narrowing candidates to the calls its request caused.

use tapedeck_analyzer::replay::trace::ReplayTrace;
use tapedeck_responder::fixture::{INVENTORY, PAYMENTS};

use crate::support::*;

async fn left(running: &tapedeck_responder::Running, traceparent: Option<&str>) -> u64 {
    let mut call = Call::get(INVENTORY, "/v1/stock/sku_123456").h2();
    if let Some(tp) = traceparent {
        call = call.header("traceparent", tp);
    }
    let reply = call.send(running.addr()).await.unwrap();
    assert_eq!(reply.status, 200);
    reply.json()["left"].as_u64().unwrap()
}

#[tokio::test]
async fn sequences_hold_per_session_then_cycle() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    let a = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let b = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..4 {
        seen_a.push(left(&running, Some(a)).await);
    }
    for _ in 0..3 {
        seen_b.push(left(&running, Some(b)).await);
    }
    assert_eq!(seen_a, [3, 2, 1, 3]);
    assert_eq!(seen_b, [3, 2, 1]);
    // The generator's convention: per copy and inbound request.
    let line = inbound_line(
        &f.snapshot,
        &f.snapshot
            .inbound
            .iter()
            .find(|e| e.path == "/orders/stock-watch")
            .unwrap()
            .id,
    );
    let copy = |copy| ReplayTrace {
        copy,
        iteration: 0,
        line,
    };
    assert_eq!(left(&running, Some(&copy(0).traceparent(1))).await, 3);
    assert_eq!(left(&running, Some(&copy(1).traceparent(2))).await, 3);
    assert_eq!(left(&running, Some(&copy(0).traceparent(3))).await, 2);
    assert_eq!(left(&running, Some(&copy(0).traceparent(4))).await, 1);
    assert_eq!(left(&running, Some(&copy(1).traceparent(5))).await, 2);
    // No trace at all: one global sequence.
    assert_eq!(left(&running, None).await, 3);
    assert_eq!(left(&running, None).await, 2);
    running.stop().await;
}

#[tokio::test]
async fn the_replayed_request_narrows_candidates_to_its_calls() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    // ord_010003's inbound request: its lookup is served, with the live order id.
    let inbound = f
        .snapshot
        .inbound
        .iter()
        .find(|e| e.path == "/orders/ord_010003/pay")
        .unwrap();
    let trace = ReplayTrace {
        copy: 4,
        iteration: 2,
        line: inbound_line(&f.snapshot, &inbound.id),
    };
    let reply = Call::get(PAYMENTS, "/v1/charges?order=ord_555555&limit=10")
        .header("traceparent", trace.traceparent(9))
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["data"][0]["charge"], "ch_11118453", "{body}");
    assert_eq!(body["data"][0]["order"], "ord_555555", "{body}");
    // Without the convention, the recording whose value agrees is preferred.
    let reply = Call::get(PAYMENTS, "/v1/charges?order=ord_010001&limit=10")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.json()["data"][0]["charge"], "ch_11118451");
    running.stop().await;
}
