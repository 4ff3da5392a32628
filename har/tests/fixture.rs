//! The browser-like fixture imports to exactly these exchanges.

use tapedeck_har::{IMPORT_FILTER_VERSION, ImportOptions, parse, to_exchanges};
use tapedeck_proto::{Direction, Exchange, Message, Protocol};

use crate::support::{BROWSER_HAR, header, options};

const START: u64 = 1_795_781_101_123_000_000; // 2026-11-27T12:05:01.123Z
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0xff, 0xfe,
];
const GRPC_REQUEST: &[u8] = &[0, 0, 0, 0, 5, 0x08, 0xd5, 0x07, 0x10, 0x01];

fn grpc_response() -> Vec<u8> {
    let mut body = vec![0, 0, 0, 0, 4, 0x08, 0xd5, 0x07, 0x80, 0x80, 0, 0, 0, 15];
    body.extend_from_slice(b"grpc-status:0\r\n");
    body
}

fn message(headers: Vec<tapedeck_proto::Header>, body: &[u8]) -> Option<Message> {
    Some(Message {
        headers,
        body: body.to_vec(),
        body_size: body.len() as u64,
        body_truncated: false,
        trailers: vec![],
    })
}

/// What every imported exchange shares.
fn imported(start_unix_nanos: u64, duration_nanos: u64, response_headers_nanos: u64) -> Exchange {
    Exchange {
        start_unix_nanos,
        duration_nanos,
        response_headers_nanos,
        direction: Direction::Inbound as i32,
        workload: "storefront".into(),
        namespace: "shop".into(),
        scheme: "https".into(),
        sample_rate: 1.0,
        filter_version: IMPORT_FILTER_VERSION.into(),
        ..Default::default()
    }
}

fn expected() -> Vec<Exchange> {
    let html = "<!doctype html><title>Shoes</title><h1>Shoes — 42 results</h1>";
    vec![
        // HTTP/1.1 document: Host becomes the authority, the fragment goes, the traceparent
        // gives the trace id, content-encoding and content-length go with the decoded body.
        Exchange {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            protocol: Protocol::Http11 as i32,
            authority: "shop.example.com".into(),
            method: "GET".into(),
            path: "/products?category=shoes&sort=price%20asc".into(),
            request: message(
                vec![
                    header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"),
                    header("accept", "text/html,application/xhtml+xml"),
                    header("accept-encoding", "gzip, deflate, br"),
                    header("cookie", "session=abc123; theme=dark"),
                    header(
                        "traceparent",
                        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                    ),
                ],
                b"",
            ),
            status: 200,
            response: message(
                vec![
                    header("content-type", "text/html; charset=utf-8"),
                    header("set-cookie", "cart=7; Path=/; HttpOnly"),
                    header("cache-control", "no-store"),
                ],
                html.as_bytes(),
            ),
            ..imported(START, 76_000_000, 72_250_000)
        },
        // HTTP/2 JSON POST: pseudo-headers go to their fields, -1 sizes are the body lengths,
        // the trace id is the x-request-id.
        Exchange {
            trace_id: "7f3c9a52-1b7e-4c2a-9d55-0e6b1f0c2a11".into(),
            protocol: Protocol::Http2 as i32,
            authority: "api.example.com".into(),
            method: "POST".into(),
            path: "/v1/orders?dry_run=false".into(),
            request: message(
                vec![
                    header("content-type", "application/json"),
                    header("x-request-id", "7f3c9a52-1b7e-4c2a-9d55-0e6b1f0c2a11"),
                    header("accept", "application/json"),
                ],
                br#"{"sku":"SHOE-42","qty":2}"#,
            ),
            status: 201,
            response: message(
                vec![
                    header("content-type", "application/json"),
                    header("location", "/v1/orders/981"),
                ],
                br#"{"id":981,"status":"created"}"#,
            ),
            ..imported(START + 1_377_000_000, 27_000_000, 26_000_000)
        },
        // A base64 binary response; `time: -1` is the sum of the known timings.
        Exchange {
            protocol: Protocol::Http2 as i32,
            authority: "cdn.example.com".into(),
            method: "GET".into(),
            path: "/img/logo.png".into(),
            request: message(
                vec![
                    header("accept", "image/avif,image/webp,*/*"),
                    header("referer", "https://shop.example.com/"),
                ],
                b"",
            ),
            status: 200,
            response: message(
                vec![
                    header("content-type", "image/png"),
                    header("cache-control", "max-age=2592000"),
                ],
                PNG,
            ),
            ..imported(START + 1_877_000_000, 6_000_000, 5_000_000)
        },
        // Form params without text become a URL-encoded body.
        Exchange {
            protocol: Protocol::Http11 as i32,
            authority: "shop.example.com".into(),
            method: "POST".into(),
            path: "/login".into(),
            request: message(
                vec![header("content-type", "application/x-www-form-urlencoded")],
                b"user=ada+lovelace&remember=on",
            ),
            status: 302,
            response: message(
                vec![
                    header("location", "/account"),
                    header("content-length", "0"),
                ],
                b"",
            ),
            ..imported(START + 3_127_000_000, 12_500_000, 11_500_000)
        },
        // gRPC-web: the content type makes it gRPC; `encoding` on postData is read.
        Exchange {
            protocol: Protocol::Grpc as i32,
            authority: "api.example.com".into(),
            method: "POST".into(),
            path: "/orders.v1.Orders/Get".into(),
            request: message(
                vec![
                    header("content-type", "application/grpc-web+proto"),
                    header("x-grpc-web", "1"),
                ],
                GRPC_REQUEST,
            ),
            status: 200,
            response: message(
                vec![
                    header("content-type", "application/grpc-web+proto"),
                    header("grpc-status", "0"),
                ],
                &grpc_response(),
            ),
            ..imported(START + 3_877_000_000, 8_000_000, 7_000_000)
        },
        // Blocked by the client: no response, no protocol, no response-header time.
        Exchange {
            authority: "tracker.example.net".into(),
            method: "GET".into(),
            path: "/pixel.gif?u=1".into(),
            request: message(vec![], b""),
            status: 0,
            response: message(vec![], b""),
            ..imported(START + 4_377_000_000, 420_000, 0)
        },
    ]
}

#[test]
fn browser_har_imports_to_exact_exchanges() {
    let har = parse(BROWSER_HAR).expect("the fixture parses");
    assert_eq!(har.log.creator.name, "WebInspector");
    assert_eq!(har.log.pages.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        har.log.entries[0].resource_type.as_deref(),
        Some("document")
    );
    assert_eq!(
        har.log.entries[5].response.error.as_deref(),
        Some("net::ERR_BLOCKED_BY_CLIENT")
    );

    let (mut exchanges, diagnostics) = to_exchanges(&har, &options());
    assert_eq!(diagnostics, vec![]);
    assert_eq!(exchanges.len(), 6);
    for exchange in &mut exchanges {
        assert_eq!(exchange.id.len(), 16);
        exchange.id.clear();
    }
    for (i, (got, want)) in exchanges.iter().zip(expected()).enumerate() {
        assert_eq!(got, &want, "entry {i}");
    }
}

#[test]
fn seeded_ids_are_repeatable_and_distinct() {
    let har = parse(BROWSER_HAR).unwrap();
    let ids = |seed| {
        let options = ImportOptions {
            id_seed: seed,
            ..options()
        };
        to_exchanges(&har, &options)
            .0
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let first = ids(Some(42));
    assert_eq!(first, ids(Some(42)));
    assert_ne!(first, ids(Some(43)));
    assert_ne!(ids(None), ids(None));
    let mut unique = first.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), first.len());
}

#[test]
fn outbound_imports_take_the_peer_from_the_server_address() {
    let har = parse(BROWSER_HAR).unwrap();
    let options = ImportOptions {
        direction: Direction::Outbound,
        namespace: None,
        ..ImportOptions::new("checkout")
    };
    let (exchanges, _) = to_exchanges(&har, &options);
    let peers: Vec<_> = exchanges.iter().map(|e| e.peer_address.as_str()).collect();
    assert_eq!(
        peers,
        [
            "203.0.113.10:443",
            "[2001:db8::5]:443",
            "198.51.100.20:443",
            "203.0.113.10:443",
            "[2001:db8::5]:443",
            "",
        ]
    );
    assert!(
        exchanges
            .iter()
            .all(|e| e.direction() == Direction::Outbound)
    );
    assert!(
        exchanges
            .iter()
            .all(|e| e.workload == "checkout" && e.namespace.is_empty())
    );
}

#[test]
fn the_fixture_survives_export_and_reimport() {
    let har = parse(BROWSER_HAR).unwrap();
    let (exchanges, _) = to_exchanges(&har, &options());
    assert_eq!(crate::support::through_har(&exchanges), exchanges);
}
