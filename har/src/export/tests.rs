//! Unit tests of the export helpers and of one entry's shape.

use super::*;

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: value.to_vec(),
    }
}

#[test]
fn peer_hosts_lose_their_ports() {
    assert_eq!(host_of("10.0.0.7:8080"), "10.0.0.7");
    assert_eq!(host_of("[2001:db8::1]:443"), "2001:db8::1");
    assert_eq!(host_of("10.0.0.7"), "10.0.0.7");
    assert_eq!(host_of("2001:db8::1"), "2001:db8::1");
    assert_eq!(host_of("unix:/run/sock"), "unix:/run/sock");
}

#[test]
fn query_pairs_are_decoded_for_viewers() {
    assert_eq!(
        query_pairs("/search?q=a+b%20c&empty=&flag&bad=%zz&utf=%C3%A9"),
        vec![
            NameValue::new("q", "a b c"),
            NameValue::new("empty", ""),
            NameValue::new("flag", ""),
            NameValue::new("bad", "%zz"),
            NameValue::new("utf", "é"),
        ]
    );
    assert!(query_pairs("/no-query").is_empty());
}

#[test]
fn cookies_come_from_headers_but_not_from_redacted_ones() {
    let request = [
        header("cookie", b"session=abc; theme=dark"),
        header("cookie", b"tapedeck-redacted:hmac-sha256:00ff"),
    ];
    let cookies = request_cookies(&request);
    assert_eq!(
        cookies
            .iter()
            .map(|c| (&*c.name, &*c.value))
            .collect::<Vec<_>>(),
        [("session", "abc"), ("theme", "dark")]
    );
    let response = [header(
        "set-cookie",
        b"id=42; Path=/; Domain=example.com; HttpOnly; Secure; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
    )];
    assert_eq!(
        response_cookies(&response),
        vec![Cookie {
            name: "id".into(),
            value: "42".into(),
            path: Some("/".into()),
            domain: Some("example.com".into()),
            http_only: Some(true),
            secure: Some(true),
            ..Cookie::default()
        }]
    );
}

#[test]
fn binary_values_and_bodies_are_base64_and_truncation_is_marked() {
    let exchange = Exchange {
        method: "PUT".into(),
        path: "upload".into(),
        protocol: Protocol::Grpc as i32,
        request: Some(Message {
            headers: vec![
                header("content-type", b"application/grpc"),
                header("x-bin", &[0xff, 0x00]),
            ],
            body: vec![0x00, 0x00, 0x00, 0x00, 0x05, b'h'],
            body_size: 10,
            body_truncated: true,
            trailers: vec![],
        }),
        status: 200,
        response: Some(Message {
            headers: vec![header("content-encoding", b"gzip")],
            body: vec![0x1f, 0x8b],
            body_size: 2,
            body_truncated: false,
            trailers: vec![header("grpc-status", b"0")],
        }),
        duration_nanos: 3_000_000,
        response_headers_nanos: 5_000_000,
        ..Default::default()
    };
    let entry = to_entry(&exchange);
    assert_eq!(entry.request.url, "http://localhost/upload");
    assert_eq!(entry.request.http_version, "HTTP/2");
    assert_eq!(entry.request.headers[1].value, "/wA=");
    assert_eq!(entry.request.headers[1].encoding.as_deref(), Some("base64"));
    let post = entry.request.post_data.as_ref().unwrap();
    assert_eq!(post.mime_type, "application/grpc");
    assert_eq!(post.text.as_deref(), Some("AAAAAAVo"));
    assert_eq!(post.encoding.as_deref(), Some("base64"));
    assert!(post.tapedeck_truncated);
    assert_eq!(entry.request.body_size, 10);
    let content = &entry.response.content;
    assert_eq!(content.text.as_deref(), Some("H4s="));
    assert!(content.tapedeck_raw && !content.tapedeck_truncated);
    assert_eq!(entry.response.status_text, "OK");
    assert_eq!(
        entry.response.tapedeck_trailers,
        vec![NameValue::new("grpc-status", "0")]
    );
    // Response headers later than the end are clamped to it.
    assert_eq!((entry.timings.wait, entry.timings.receive), (3.0, 0.0));
    assert_eq!(entry.time, 3.0);
    let recorded = entry.tapedeck.unwrap();
    assert_eq!(recorded.protocol, "gRPC");
    assert_eq!(recorded.direction, "unspecified");
}

#[test]
fn only_outbound_peers_are_the_server() {
    let mut exchange = Exchange {
        peer_address: "10.1.2.3:8080".into(),
        direction: Direction::Outbound as i32,
        ..Default::default()
    };
    assert_eq!(
        to_entry(&exchange).server_ip_address.as_deref(),
        Some("10.1.2.3")
    );
    exchange.direction = Direction::Inbound as i32;
    assert_eq!(to_entry(&exchange).server_ip_address, None);
}

#[test]
fn bodiless_requests_have_no_post_data_and_empty_responses_no_text() {
    let entry = to_entry(&Exchange {
        method: "GET".into(),
        path: "/".into(),
        ..Default::default()
    });
    assert!(entry.request.post_data.is_none());
    assert_eq!(entry.request.body_size, 0);
    assert_eq!(entry.response.content.text, None);
    assert_eq!(entry.response.content.size, 0);
}
