//! Inventory tests: a realistic hour of one service's traffic through the Arrow mapping and back,
//! and the three renderings as golden files.

use tapedeck_analyzer::inventory::{Counts, Inventory, NO_RESPONSE};
use tapedeck_proto::arrow::to_record_batch;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

use crate::support::assert_golden;

/// 2026-11-27T12:00:00Z.
const T0: u64 = 1_795_780_800_000_000_000;
const MS: u64 = 1_000_000;
const US: u64 = 1_000;

/// An exchange of the `orders` service, built step by step.
#[derive(Debug, Clone)]
struct Call(Exchange);

impl Call {
    fn new(direction: Direction, authority: &str, method: &str, path: &str) -> Self {
        Self(Exchange {
            id: path.bytes().chain(method.bytes()).take(16).collect(),
            direction: direction as i32,
            workload: "orders".into(),
            namespace: "shop".into(),
            protocol: Protocol::Http11 as i32,
            scheme: "http".into(),
            authority: authority.into(),
            method: method.into(),
            path: path.into(),
            status: 200,
            request: Some(Message::default()),
            response: Some(Message::default()),
            sample_rate: 1.0,
            ..Default::default()
        })
    }

    fn inbound(method: &str, path: &str) -> Self {
        Self::new(
            Direction::Inbound,
            "orders.shop.svc.cluster.local:8080",
            method,
            path,
        )
    }

    fn outbound(authority: &str, method: &str, path: &str) -> Self {
        Self::new(Direction::Outbound, authority, method, path)
    }

    /// Starts `seconds` after T0 and takes `micros`.
    fn at(mut self, seconds: u64, micros: u64) -> Self {
        self.0.start_unix_nanos = T0 + seconds * 1_000 * MS;
        self.0.duration_nanos = micros * US;
        self
    }

    fn status(mut self, status: u32) -> Self {
        self.0.status = status;
        self
    }

    fn protocol(mut self, protocol: Protocol) -> Self {
        self.0.protocol = protocol as i32;
        self
    }

    fn request(mut self, content_type: &str, size: u64) -> Self {
        self.0.request = Some(message(content_type, size));
        self
    }

    fn response(mut self, content_type: &str, size: u64) -> Self {
        self.0.response = Some(message(content_type, size));
        self
    }
}

/// A message with a `content-type` (none when empty) and a body of `size` bytes, of which at
/// most 64 are captured.
fn message(content_type: &str, size: u64) -> Message {
    let captured = size.min(64) as usize;
    let mut headers = vec![Header {
        name: "x-request-id".into(),
        value: b"3f1c".to_vec(),
    }];
    if !content_type.is_empty() {
        headers.push(Header {
            name: "content-type".into(),
            value: content_type.as_bytes().to_vec(),
        });
    }
    Message {
        headers,
        body: vec![b'x'; captured],
        body_size: size,
        body_truncated: (captured as u64) < size,
        trailers: vec![],
    }
}

/// Inbound reads and writes of orders, calls to payments (gRPC) and to the catalog, and one
/// exchange a listener without a traffic direction captured.
fn traffic() -> Vec<Exchange> {
    const JSON: &str = "application/json; charset=utf-8";
    let mut calls = vec![
        Call::inbound("GET", "/orders/123")
            .at(0, 8_400)
            .response(JSON, 512),
        Call::inbound("GET", "/orders/456?expand=items")
            .at(60, 12_250)
            .response(JSON, 2_300),
        Call::inbound("GET", "/orders/ord_7f3a9c21")
            .at(120, 9_100)
            .response(JSON, 780),
        Call::inbound("GET", "/orders/999")
            .at(180, 1_200)
            .status(404)
            .response("application/problem+json", 96),
        Call::inbound("POST", "/orders")
            .at(30, 48_000)
            .status(201)
            .request("application/json", 1_800)
            .response(JSON, 640),
        Call::inbound("POST", "/orders")
            .at(90, 51_500)
            .status(201)
            .protocol(Protocol::Http2)
            .request("Application/JSON", 950)
            .response(JSON, 640),
        Call::inbound("POST", "/orders")
            .at(150, 2_950_000)
            .status(500)
            .request("application/json", 1_400_000)
            .response("text/plain", 21),
        Call::inbound("DELETE", "/orders/456")
            .at(200, 3_000)
            .status(0),
        Call::inbound("GET", "/healthz").at(10, 150),
        Call::inbound("GET", "/healthz").at(70, 90),
    ];
    // The calls the POSTs made: payments over gRPC, the catalog over HTTP/1.1.
    for (i, (seconds, micros, status)) in
        [(30, 31_000, 200), (90, 33_500, 200), (150, 2_900_000, 503)]
            .into_iter()
            .enumerate()
    {
        calls.push(
            Call::outbound(
                "payments.shop.svc.cluster.local:9000",
                "POST",
                "/payments.v1.Payments/Charge",
            )
            .at(seconds, micros)
            .status(status)
            .protocol(Protocol::Grpc)
            .request("application/grpc", 180 + i as u64)
            .response("application/grpc", if status == 200 { 96 } else { 0 }),
        );
    }
    for (seconds, sku, micros) in [
        (30, "sku-0042", 4_100),
        (30, "sku-0043", 3_900),
        (90, "sku-0042", 5_600),
    ] {
        calls.push(
            Call::outbound("catalog:8080", "GET", &format!("/items/{sku}/price"))
                .at(seconds, micros)
                .response("application/json", 64),
        );
    }
    calls.push(
        Call::outbound("catalog:8080", "GET", "/items/sku-9999/price")
            .at(150, 700)
            .status(404),
    );
    calls.push(
        Call::new(Direction::Unspecified, "orders:8080", "GET", "/metrics")
            .at(45, 2_000)
            .response("text/plain; version=0.0.4", 12_000),
    );
    calls.into_iter().map(|call| call.0).collect()
}

fn inventory() -> Inventory {
    let exchanges = traffic();
    let batch = to_record_batch(&exchanges).expect("the traffic converts to Arrow");
    // Two batches, as a query returns them.
    let batches = [batch.slice(0, 7), batch.slice(7, batch.num_rows() - 7)];
    Inventory::from_batches("orders", &batches).expect("the batches read")
}

#[test]
fn record_batches_and_exchanges_give_the_same_inventory() {
    let mut exchanges = traffic();
    let from_batches = inventory();
    assert_eq!(
        from_batches,
        Inventory::from_exchanges("orders", &exchanges)
    );
    exchanges.reverse();
    assert_eq!(
        from_batches,
        Inventory::from_exchanges("orders", &exchanges)
    );
}

#[test]
fn endpoints_collapse_ids_and_keep_every_exchange() {
    let inventory = inventory();
    let totals = inventory.totals;
    assert_eq!(
        (
            totals.exchanges,
            totals.inbound,
            totals.outbound,
            totals.unspecified
        ),
        (18, 10, 7, 1)
    );
    let inbound: Vec<String> = inventory
        .inbound
        .iter()
        .map(|e| format!("{} {} {}", e.method, e.template, e.stats.count))
        .collect();
    assert_eq!(
        inbound,
        [
            "GET /healthz 2",
            "POST /orders 3",
            "DELETE /orders/{id} 1",
            "GET /orders/{id} 4",
        ]
    );
    let hosts: Vec<(&str, u64)> = inventory
        .outbound
        .iter()
        .map(|d| (d.host.as_str(), d.stats.count))
        .collect();
    assert_eq!(
        hosts,
        [
            ("catalog:8080", 4),
            ("payments.shop.svc.cluster.local:9000", 3)
        ]
    );
    let catalog = &inventory.outbound[0];
    assert_eq!(catalog.endpoints.len(), 1);
    assert_eq!(catalog.endpoints[0].template, "/items/{id}/price");

    let post = &inventory.inbound[1];
    assert_eq!(
        post.stats.status,
        Counts(vec![("201".into(), 2), ("500".into(), 1)])
    );
    assert_eq!(post.stats.request_content_types.get("application/json"), 3);
    assert_eq!(post.stats.request_sizes.get("≤1 MiB"), 0);
    assert_eq!(post.stats.request_sizes.get(">1 MiB"), 1);
    assert_eq!(post.stats.latency_ms.p50, 51.5);
    assert_eq!(post.stats.latency_ms.p99, 2_950.0);
    let delete = &inventory.inbound[2];
    assert_eq!(delete.stats.status.get(NO_RESPONSE), 1);
    assert_eq!(inventory.unspecified[0].template, "/metrics");
}

#[test]
fn renderings_match_the_golden_files() {
    let inventory = inventory();
    assert_golden("inventory/orders.txt", &inventory.to_table());
    assert_golden("inventory/orders.md", &inventory.to_markdown());
    assert_golden("inventory/orders.json", &inventory.to_json());
    let json: serde_json::Value =
        serde_json::from_str(&inventory.to_json()).expect("the JSON parses");
    assert_eq!(json["first_seen"], "2026-11-27T12:00:00Z");
    assert_eq!(json["outbound"][1]["endpoints"][0]["protocols"]["gRPC"], 3);
}
