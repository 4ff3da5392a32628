//! One call through the app, seen twice: the inbound exchange that reached the app and the
//! outbound exchange the app made to its dependency, joined by the trace id.

use anyhow::Result;
use serde_json::{Value, json};
use tapedeck_e2e::{
    DEPENDENCY_AUTHORITY, RigBuilder, assert_headers_in_order, assert_identity, find, message,
};
use tapedeck_local::sample::full_body;
use tapedeck_proto::{Direction, Protocol};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn an_order_is_captured_inbound_and_its_payment_outbound() -> Result<()> {
    let mut rig = RigBuilder::new().outbound().start().await?;
    let order = json!({"sku": "book-1", "qty": 1});
    let request = rig
        .request("POST", "/orders")
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "order-req-1")
        .body(full_body(order.to_string()))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let payment = json!({"order": order, "amount_cents": 1250});
    let paid = json!({"paid": true, "order": payment});
    assert_eq!(
        reply.json()?,
        json!({"order": "created", "payment_status": 201, "payment": paid})
    );

    let exchanges = rig.exchanges(2).await?;
    assert_eq!(exchanges.len(), 2);

    let inbound = find(&exchanges, "POST", "/orders");
    assert_identity(inbound, Direction::Inbound);
    assert_eq!(inbound.protocol(), Protocol::Http11);
    assert_eq!(inbound.authority, rig.authority());
    assert_eq!(inbound.trace_id, TRACE_ID);
    assert_eq!(inbound.status, 201);
    assert_eq!(json_body(&message(&inbound.request).body), order);
    assert_eq!(json_body(&message(&inbound.response).body), reply.json()?);

    let outbound = find(&exchanges, "POST", "/pay");
    assert_identity(outbound, Direction::Outbound);
    assert_eq!(outbound.protocol(), Protocol::Http11);
    assert_eq!(outbound.authority, DEPENDENCY_AUTHORITY);
    assert_eq!(outbound.trace_id, TRACE_ID);
    assert_eq!(outbound.status, 201);
    let dependency = rig.dependency.expect("the rig has a dependency");
    assert_eq!(
        outbound.peer_address,
        dependency.to_string(),
        "outbound peer is the dependency's address"
    );
    let request = message(&outbound.request);
    assert_headers_in_order(
        &request.headers,
        &[
            ("content-type", "application/json"),
            ("x-request-id", "order-req-1"),
            ("traceparent", TRACEPARENT),
        ],
    );
    assert_eq!(json_body(&request.body), payment);
    assert_eq!(request.body_size, request.body.len() as u64);
    assert_eq!(json_body(&message(&outbound.response).body), paid);

    // The payment happened within the order.
    assert!(outbound.start_unix_nanos >= inbound.start_unix_nanos);
    assert!(outbound.duration_nanos <= inbound.duration_nanos);
    assert_ne!(inbound.id, outbound.id);
    Ok(())
}

#[tokio::test]
async fn a_call_with_no_route_is_captured_with_envoys_flags_and_details() -> Result<()> {
    let mut rig = RigBuilder::new().outbound().start().await?;
    let outbound = rig
        .envoy
        .outbound_addr()
        .expect("the rig has an outbound listener");
    // The outbound listener routes by authority; nothing matches this one, so Envoy answers
    // 404 itself.
    let request = http::Request::builder()
        .method("GET")
        .uri(format!("http://{outbound}/nowhere"))
        .header("host", "unknown.shop.svc")
        .body(full_body(""))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 404);

    let exchanges = rig.exchanges(1).await?;
    let failed = find(&exchanges, "GET", "/nowhere");
    assert_eq!(failed.direction(), Direction::Outbound);
    assert_eq!(failed.workload, tapedeck_e2e::WORKLOAD);
    // No upstream was chosen, so there is no peer and no cluster.
    assert_eq!(failed.peer_address, "");
    assert_eq!(failed.authority, "unknown.shop.svc");
    assert_eq!(failed.status, 404);
    assert_eq!(failed.response_flags, "NR");
    assert_eq!(failed.response_code_details, "route_not_found");
    assert_eq!(failed.upstream_cluster, "");
    Ok(())
}
