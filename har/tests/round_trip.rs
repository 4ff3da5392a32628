//! Exchanges → HAR → exchanges gives back the same exchanges.

use tapedeck_har::{from_exchanges, parse, to_json};
use tapedeck_proto::{Direction, Exchange, Message, Protocol};

use crate::support::{header, through_har};

/// An outbound gRPC call with binary, truncated and non-UTF-8 data everywhere HAR is text.
fn grpc_call() -> Exchange {
    Exchange {
        id: (0..16).collect(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        start_unix_nanos: 1_795_781_101_123_456_789,
        duration_nanos: 2_345_678,
        response_headers_nanos: 1_234_567,
        direction: Direction::Outbound as i32,
        workload: "orders".into(),
        namespace: "shop".into(),
        pod: "orders-7d9f-abcde".into(),
        peer_address: "10.0.3.7:50051".into(),
        upstream_cluster: "outbound|50051||payments.shop.svc.cluster.local".into(),
        route_name: "default".into(),
        protocol: Protocol::Grpc as i32,
        scheme: "http".into(),
        authority: "payments.shop.svc.cluster.local:50051".into(),
        method: "POST".into(),
        path: "/payments.v1.Payments/Charge".into(),
        request: Some(Message {
            headers: vec![
                header("content-type", "application/grpc"),
                header("te", "trailers"),
                header("x-bin-bin", [0xff, 0xfe, 0x00]),
                header(
                    "authorization",
                    "tapedeck-redacted:hmac-sha256:0123456789abcdef",
                ),
                header("x-dup", "1"),
                header("x-dup", "2"),
            ],
            body: vec![0, 0, 0, 0, 3, 0xc3, 0x28, 0xa0],
            body_size: 4096,
            body_truncated: true,
            trailers: vec![],
        }),
        status: 200,
        response: Some(Message {
            headers: vec![header("content-type", "application/grpc")],
            body: vec![0, 0, 0, 0, 0],
            body_size: 5,
            body_truncated: false,
            trailers: vec![
                header("grpc-status", "14"),
                header("grpc-message", "unavailable: \u{1F39E}"),
            ],
        }),
        response_flags: "UF".into(),
        response_code_details: "upstream_reset_before_response_started".into(),
        sample_rate: 0.25,
        redactions: vec!["request.header:authorization".into()],
        filter_version: "0.1.0".into(),
    }
}

/// An inbound HTTP/1.1 JSON request with a gzip response kept compressed.
fn json_post() -> Exchange {
    Exchange {
        id: vec![0xab; 16],
        trace_id: "req-9".into(),
        start_unix_nanos: 1_000_000_000_000_000_001,
        duration_nanos: 9_000_000,
        response_headers_nanos: 0,
        direction: Direction::Inbound as i32,
        workload: "orders".into(),
        peer_address: "[2001:db8::9]:41234".into(),
        protocol: Protocol::Http11 as i32,
        scheme: "https".into(),
        authority: "orders.example.com".into(),
        method: "POST".into(),
        path: "/v1/orders?dry_run=false&note=%C3%A9t%C3%A9+2".into(),
        request: Some(Message {
            headers: vec![
                header("content-type", "application/json"),
                header("x-request-id", "req-9"),
                header("cookie", "session=abc; theme=dark"),
            ],
            body: r#"{"sku":"SHOE-42","note":"été","qty":2}"#.as_bytes().to_vec(),
            body_size: 40,
            body_truncated: false,
            trailers: vec![],
        }),
        status: 503,
        response: Some(Message {
            headers: vec![
                header("content-encoding", "gzip"),
                header("content-length", "3"),
                header("set-cookie", "a=1; Path=/"),
                header("set-cookie", "b=2"),
            ],
            body: vec![0x1f, 0x8b, 0x08],
            body_size: 3,
            body_truncated: false,
            trailers: vec![],
        }),
        sample_rate: 1.0,
        filter_version: "0.1.0".into(),
        ..Default::default()
    }
}

/// A local reply with nothing known: unspecified direction and protocol, no bodies.
fn local_reply() -> Exchange {
    Exchange {
        id: vec![1; 16],
        start_unix_nanos: 0,
        protocol: Protocol::Unspecified as i32,
        scheme: "http".into(),
        authority: "a".into(),
        method: "GET".into(),
        path: "/".into(),
        request: Some(Message::default()),
        status: 0,
        response: Some(Message {
            body_size: 17,
            body_truncated: true,
            ..Message::default()
        }),
        response_flags: "NR".into(),
        sample_rate: 1.0,
        ..Default::default()
    }
}

#[test]
fn exchanges_survive_har_exactly() {
    let exchanges = vec![grpc_call(), json_post(), local_reply()];
    assert_eq!(through_har(&exchanges), exchanges);
}

#[test]
fn the_export_reads_like_a_browser_har() {
    let json = to_json(&from_exchanges(
        &[json_post(), grpc_call()],
        "tapedeck 0.1.0",
    ));
    let har = parse(json.as_bytes()).unwrap();
    let entry = &har.log.entries[0];
    assert_eq!(har.log.version, "1.2");
    assert_eq!(har.log.creator.name, "tapedeck 0.1.0");
    assert_eq!(entry.started_date_time, "2001-09-09T01:46:40.000Z");
    assert_eq!(
        entry.request.url,
        "https://orders.example.com/v1/orders?dry_run=false&note=%C3%A9t%C3%A9+2"
    );
    assert_eq!(entry.request.http_version, "HTTP/1.1");
    let query: Vec<_> = entry
        .request
        .query_string
        .iter()
        .map(|q| (q.name.as_str(), q.value.as_str()))
        .collect();
    assert_eq!(query, [("dry_run", "false"), ("note", "été 2")]);
    assert_eq!(entry.request.cookies.len(), 2);
    let post = entry.request.post_data.as_ref().unwrap();
    assert_eq!(
        post.text.as_deref(),
        Some(r#"{"sku":"SHOE-42","note":"été","qty":2}"#)
    );
    assert_eq!(post.encoding, None);
    assert_eq!(entry.response.status_text, "Service Unavailable");
    assert_eq!(entry.response.cookies.len(), 2);
    assert!(entry.response.content.tapedeck_raw);
    assert_eq!(entry.response.content.encoding.as_deref(), Some("base64"));
    // Inbound: the peer is the caller, not the server.
    assert_eq!(entry.server_ip_address, None);
    let grpc = &har.log.entries[1];
    assert_eq!(grpc.server_ip_address.as_deref(), Some("10.0.3.7"));
    assert_eq!(grpc.request.http_version, "HTTP/2");
    assert_eq!((grpc.timings.send, grpc.timings.wait), (0.0, 1.234567));
    assert_eq!(grpc.time, 2.345678);
    let post = grpc.request.post_data.as_ref().unwrap();
    assert!(post.tapedeck_truncated);
    assert_eq!(grpc.request.body_size, 4096);
    // Stable output: the same exchanges give the same text.
    assert_eq!(
        json,
        to_json(&from_exchanges(
            &[json_post(), grpc_call()],
            "tapedeck 0.1.0"
        ))
    );
    assert!(json.ends_with("}\n"));
    assert!(json.contains(r#""_tapedeck": {"#));
}

#[test]
fn a_har_edited_by_hand_keeps_the_edit_over_the_recorded_start() {
    let mut har = from_exchanges(&[grpc_call()], "t");
    har.log.entries[0].started_date_time = "2026-11-27T12:05:02.000Z".into();
    let (exchanges, _) = tapedeck_har::to_exchanges(&har, &tapedeck_har::ImportOptions::new("x"));
    assert_eq!(exchanges[0].start_unix_nanos, 1_795_781_102_000_000_000);
}
