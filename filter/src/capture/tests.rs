use super::*;
use crate::config::Config;

fn config(extra: &str) -> Config {
    let json = format!(r#"{{"version": 1, "collector": {{"cluster": "c"}}{extra}}}"#);
    Config::parse(json.as_bytes()).unwrap()
}

fn h(name: &str, value: &[u8]) -> (String, Vec<u8>) {
    (name.to_string(), value.to_vec())
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.to_string(),
        value: value.to_vec(),
    }
}

fn end(direction: Direction, protocol: &str) -> StreamEnd {
    StreamEnd {
        end_unix_nanos: 1_000_000_900,
        direction,
        peer_address: "127.0.0.1:5555".into(),
        upstream_cluster: "app".into(),
        route_name: "r".into(),
        protocol: protocol.into(),
        response_code: 0,
        response_flags: String::new(),
        response_code_details: "via_upstream".into(),
    }
}

fn identity() -> Identity {
    Identity {
        workload: "orders".into(),
        namespace: "shop".into(),
        pod: "orders-0".into(),
    }
}

#[test]
fn a_post_becomes_an_exchange_with_every_part() {
    let cfg = config("");
    let redactor = Redactor::new(&cfg);
    let mut capture = StreamCapture::start(
        1_000_000_000,
        8,
        vec![
            h(":method", b"POST"),
            h(":scheme", b"http"),
            h(":authority", b"orders.shop:8080"),
            h(":path", b"/orders?x=1"),
            h("content-type", b"text/plain"),
            h("x-request-id", b"req-1"),
            h("x-dup", b"a"),
            h("x-dup", b"b"),
        ],
    );
    assert_eq!(capture.request_room(), 8);
    capture.request_body(5, b"hello");
    assert_eq!(capture.request_room(), 3);
    // The host copies at most the room; anything more offered is still cut.
    capture.request_body(6, b" world");
    capture.request_body(0, b"");
    capture.response_headers(
        1_000_000_100,
        vec![
            h(":status", b"201"),
            h("content-type", b"application/octet-stream"),
        ],
    );
    capture.response_body(3, &[0xff, 0x00, 0x80]);
    capture.response_trailers(vec![h("x-checksum", b"abc")]);
    assert_eq!(capture.truncated_bodies(), 1);
    let exchange = capture.finish(
        end(Direction::Inbound, "HTTP/1.1"),
        &identity(),
        [9; 16],
        1.0,
        &redactor,
    );
    let expected = Exchange {
        id: vec![9; 16],
        trace_id: "req-1".into(),
        start_unix_nanos: 1_000_000_000,
        duration_nanos: 900,
        response_headers_nanos: 100,
        direction: Direction::Inbound as i32,
        workload: "orders".into(),
        namespace: "shop".into(),
        pod: "orders-0".into(),
        peer_address: "127.0.0.1:5555".into(),
        upstream_cluster: "app".into(),
        route_name: "r".into(),
        protocol: Protocol::Http11 as i32,
        scheme: "http".into(),
        authority: "orders.shop:8080".into(),
        method: "POST".into(),
        path: "/orders?x=1".into(),
        request: Some(Message {
            headers: vec![
                header("content-type", b"text/plain"),
                header("x-request-id", b"req-1"),
                header("x-dup", b"a"),
                header("x-dup", b"b"),
            ],
            body: b"hello wo".to_vec(),
            body_size: 11,
            body_truncated: true,
            trailers: vec![],
        }),
        status: 201,
        response: Some(Message {
            headers: vec![header("content-type", b"application/octet-stream")],
            body: vec![0xff, 0x00, 0x80],
            body_size: 3,
            body_truncated: false,
            trailers: vec![header("x-checksum", b"abc")],
        }),
        response_flags: String::new(),
        response_code_details: "via_upstream".into(),
        sample_rate: 1.0,
        redactions: vec![],
        filter_version: FILTER_VERSION.into(),
    };
    assert_eq!(exchange, expected);
}

#[test]
fn traceparent_wins_over_request_id_and_grpc_is_detected() {
    let redactor = Redactor::new(&config(""));
    let capture = StreamCapture::start(
        10,
        64,
        vec![
            h(":method", b"POST"),
            h(":path", b"/pkg.Svc/Call"),
            h("x-request-id", b"req-1"),
            h(
                "traceparent",
                b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            h("content-type", b"application/grpc+proto"),
        ],
    );
    let exchange = capture.finish(
        end(Direction::Outbound, "HTTP/2"),
        &identity(),
        [0; 16],
        0.5,
        &redactor,
    );
    assert_eq!(exchange.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(exchange.protocol(), Protocol::Grpc);
    assert_eq!(exchange.direction(), Direction::Outbound);
    assert_eq!(exchange.sample_rate, 0.5);
    // No response headers: the status comes from the proxy's response code.
    assert_eq!(exchange.status, 0);
    assert_eq!(exchange.response_headers_nanos, 0);
}

#[test]
fn a_local_reply_takes_the_proxys_response_code() {
    let redactor = Redactor::new(&config(""));
    let capture = StreamCapture::start(10, 64, vec![h(":method", b"GET"), h(":path", b"/")]);
    let mut stream_end = end(Direction::Inbound, "HTTP/1.1");
    stream_end.response_code = 503;
    stream_end.response_flags = "UF".into();
    let exchange = capture.finish(stream_end, &identity(), [0; 16], 1.0, &redactor);
    assert_eq!(
        (exchange.status, exchange.response_flags.as_str()),
        (503, "UF")
    );
}

#[test]
fn malformed_traceparents_are_ignored() {
    for bad in [
        &b"garbage"[..],
        b"00-0000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        &[0xff, 0xfe],
    ] {
        assert_eq!(traceparent_trace_id(bad), None, "{bad:?}");
    }
}

#[test]
fn secrets_are_redacted_everywhere_and_listed() {
    let cfg = config(
        r#", "redaction": {"hash_key": "k", "headers": ["x-api-key"], "json_fields": ["password"], "query_params": ["token"]}"#,
    );
    let redactor = Redactor::new(&cfg);
    let mut capture = StreamCapture::start(
        0,
        1024,
        vec![
            h(":method", b"POST"),
            h(":path", b"/login?token=qs-secret&next=/"),
            h("authorization", b"Bearer opaque-secret"),
            h("cookie", b"sid=cookie-secret"),
            h("X-Api-Key", b"api-secret"),
            h("content-type", b"application/json"),
        ],
    );
    let body = br#"{"user":"ann","password":"pw-secret"}"#;
    capture.request_body(body.len(), body);
    capture.response_headers(
        5,
        vec![
            h(":status", b"200"),
            h("set-cookie", b"sid=new-secret; HttpOnly"),
        ],
    );
    let exchange = capture.finish(
        end(Direction::Inbound, "HTTP/1.1"),
        &identity(),
        [0; 16],
        1.0,
        &redactor,
    );
    assert_eq!(
        exchange.redactions,
        [
            "request.query:token",
            "request.header:authorization",
            "request.header:cookie",
            "request.header:X-Api-Key",
            "request.body:$.password",
            "response.header:set-cookie",
        ]
    );
    let encoded = tapedeck_proto::prost::Message::encode_to_vec(&exchange);
    for secret in [
        "qs-secret",
        "opaque-secret",
        "cookie-secret",
        "api-secret",
        "pw-secret",
        "new-secret",
    ] {
        assert!(
            !encoded
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} leaked"
        );
    }
    assert!(
        exchange
            .path
            .starts_with("/login?token=tapedeck-redacted:hmac-sha256:")
    );
    assert!(exchange.path.ends_with("&next=/"));
}

#[test]
fn a_truncated_json_body_with_configured_fields_is_withheld() {
    let redactor = Redactor::new(&config(r#", "redaction": {"json_fields": ["password"]}"#));
    let mut capture = StreamCapture::start(
        0,
        10,
        vec![
            h(":method", b"POST"),
            h("content-type", b"application/json"),
        ],
    );
    let body = br#"{"password":"pw-secret"}"#;
    capture.request_body(body.len(), body);
    let exchange = capture.finish(
        end(Direction::Inbound, "HTTP/1.1"),
        &identity(),
        [0; 16],
        1.0,
        &redactor,
    );
    let request = exchange.request.unwrap();
    assert!(request.body.is_empty());
    assert_eq!(request.body_size, body.len() as u64);
    assert!(request.body_truncated);
    assert_eq!(exchange.redactions, ["request.body:withheld"]);
}

#[test]
fn matcher_applies_includes_and_excludes() {
    let cfg = config(
        r#", "match": {"include_paths": ["/api/"], "exclude_paths": ["/api/health"], "include_authorities": ["*.shop", "pay.example"], "exclude_authorities": ["admin.shop"]}"#,
    );
    let matcher = Matcher::new(&cfg.matching);
    assert!(matcher.matches("/api/orders", "orders.shop"));
    assert!(matcher.matches("/api/orders", "orders.shop:8080"));
    assert!(matcher.matches("/api/orders", "PAY.example"));
    assert!(!matcher.matches("/api/health", "orders.shop"));
    assert!(!matcher.matches("/other", "orders.shop"));
    assert!(!matcher.matches("/api/orders", "admin.shop"));
    assert!(!matcher.matches("/api/orders", "shop"));
    assert!(!matcher.matches("/api/orders", "evilshop"));
    assert!(Matcher::default().matches("/anything", "[::1]:80"));
}

#[test]
fn sampling_is_consistent_per_trace_and_near_the_rate() {
    let sampler = Sampler::new(0.25);
    let kept = (0..10_000)
        .filter(|i| sampler.keep(&format!("trace-{i}"), 0))
        .count();
    assert!(
        (2_200..2_800).contains(&kept),
        "kept {kept} of 10000 at rate 0.25"
    );
    for i in 0..100 {
        let trace = format!("trace-{i}");
        assert_eq!(sampler.keep(&trace, 0), sampler.keep(&trace, u64::MAX));
    }
    let mut rng = Rng::new(7);
    let kept = (0..10_000)
        .filter(|_| sampler.keep("", rng.next_u64()))
        .count();
    assert!(
        (2_200..2_800).contains(&kept),
        "kept {kept} of 10000 untraced at rate 0.25"
    );
    assert!((0..100).all(|i| Sampler::new(1.0).keep(&format!("{i}"), u64::MAX)));
    assert!((0..100).all(|i| !Sampler::new(0.0).keep(&format!("{i}"), 0)));
}

#[test]
fn ids_differ() {
    let mut rng = Rng::new(1);
    let a = rng.id();
    let b = rng.id();
    assert_ne!(a, b);
    assert_ne!(a, [0; 16]);
}

#[test]
fn the_direct_encoding_is_byte_for_byte_what_prost_encodes() {
    let redactor = Redactor::new(&config(
        r#", "redaction": {"hash_key": "k", "json_fields": ["password"]}"#,
    ));
    let mut capture = StreamCapture::start(
        1,
        1 << 20,
        vec![
            h(":method", b"POST"),
            h(":path", b"/x"),
            h("authorization", b"Bearer t"),
            h("content-type", b"application/json"),
            h("x-empty", b""),
            h("x-long", &[b'v'; 300]),
        ],
    );
    let body = br#"{"password":"secret","n":1}"#;
    capture.request_body_owned(body.len(), body.to_vec());
    capture.request_body_owned(2, b" \n".to_vec());
    capture.response_headers(7, vec![h(":status", b"200"), h("x-big", &[0xff; 20_000])]);
    capture.response_body(20_000, &[7; 20_000]);
    capture.response_trailers(vec![h("grpc-status", b"0")]);
    let identity = identity();
    let sealed = capture.seal(
        end(Direction::Outbound, "HTTP/2"),
        &identity,
        [3; 16],
        0.25,
        &redactor,
    );
    let mut direct = Vec::new();
    sealed.encode(&mut direct);
    assert_eq!(direct.len(), sealed.encoded_len());
    let decoded = <Exchange as tapedeck_proto::prost::Message>::decode(direct.as_slice()).unwrap();
    assert_eq!(
        tapedeck_proto::prost::Message::encode_to_vec(&decoded),
        direct
    );
    let request = decoded.request.unwrap();
    assert_eq!(request.body_size, body.len() as u64 + 2);
    assert_eq!(request.headers[2], header("x-empty", b""));
    assert_eq!(decoded.response.unwrap().body.len(), 20_000);
    assert_eq!(
        decoded.redactions,
        ["request.header:authorization", "request.body:$.password"]
    );
}

#[test]
fn the_first_body_chunk_is_kept_without_a_copy_and_later_ones_are_cut_at_the_limit() {
    let mut capture = StreamCapture::start(0, 4, vec![h(":method", b"POST")]);
    capture.request_body_owned(3, b"abc".to_vec());
    assert_eq!(capture.request_room(), 1);
    capture.request_body_owned(3, b"d".to_vec());
    capture.response_body_owned(6, b"uvwxyz".to_vec());
    assert_eq!(capture.truncated_bodies(), 2);
    let exchange = capture.finish(
        end(Direction::Inbound, "HTTP/1.1"),
        &identity(),
        [0; 16],
        1.0,
        &Redactor::new(&config("")),
    );
    let (request, response) = (exchange.request.unwrap(), exchange.response.unwrap());
    assert_eq!((request.body, request.body_size), (b"abcd".to_vec(), 6));
    assert_eq!((response.body, response.body_size), (b"uvwx".to_vec(), 6));
    assert!(request.body_truncated && response.body_truncated);
}

#[test]
fn the_time_to_response_headers_is_relative_to_a_start_learnt_last() {
    let redactor = Redactor::new(&config(""));
    let mut capture = StreamCapture::start(0, 64, vec![h(":method", b"GET"), h(":path", b"/")]);
    capture.response_headers(1_000_000_100, vec![h(":status", b"200")]);
    capture.started_at(1_000_000_000);
    let exchange = capture.finish(
        end(Direction::Inbound, "HTTP/1.1"),
        &identity(),
        [0; 16],
        1.0,
        &redactor,
    );
    assert_eq!(
        (
            exchange.start_unix_nanos,
            exchange.response_headers_nanos,
            exchange.duration_nanos
        ),
        (1_000_000_000, 100, 900)
    );
}

/// The decision taken from the serialized request headers alone is the one the capture, the
/// match rules and the sampler give, for every mix of trace headers, paths and authorities
/// (duplicates, invalid traceparents, invalid UTF-8 request ids), and draws `random` only when
/// the match rules let the stream in.
#[test]
fn deciding_from_the_serialized_headers_agrees_with_the_capture() {
    let ruled = Matcher::new(
        &config(
            r#", "match": {"include_paths": ["/api/"], "exclude_authorities": ["admin.shop"]}"#,
        )
        .matching,
    );
    let matchers = [Matcher::default(), ruled];
    let traceparents: [&[u8]; 3] = [
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"garbage",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    let request_ids: [&[u8]; 3] = [b"r-1", b"r-\xff\xfe", b"r-2"];
    let paths: [&[u8]; 3] = [b"/api/orders", b"/other", b"/api/x\xff"];
    let authorities: [&[u8]; 2] = [b"orders.shop", b"admin.shop:80"];
    let mut cases = 0;
    for rate in [0.0, 0.3, 0.7, 1.0] {
        let sampler = Sampler::new(rate);
        for matcher in &matchers {
            for mask in 0u32..64 {
                let mut headers = vec![h(":method", b"GET")];
                let pick = |bit: u32| mask & (1 << bit) != 0;
                headers.push(h(":path", paths[usize::from(pick(0))]));
                if pick(1) {
                    headers.push(h(":path", paths[2]));
                }
                headers.push(h(":authority", authorities[usize::from(pick(2))]));
                if pick(3) {
                    headers.push(h("traceparent", traceparents[1]));
                }
                if pick(4) {
                    headers.push(h("traceparent", traceparents[usize::from(pick(0)) * 2]));
                }
                for (i, id) in request_ids.iter().enumerate() {
                    if mask.wrapping_add(i as u32) % 3 != 0 {
                        headers.push(h("x-request-id", id));
                    }
                }
                for random in [0, u64::MAX / 2, u64::MAX] {
                    let map = HeaderMap::from_pairs(&headers);
                    let capture = StreamCapture::start_map(0, 16, map);
                    let expected = if !matcher.matches(capture.path(), capture.authority()) {
                        Decision::FilteredOut
                    } else if !sampler.keep(capture.trace_id(), random) {
                        Decision::SampledOut
                    } else {
                        Decision::Kept
                    };
                    let mut drawn = false;
                    let serialized = crate::headers::serialize(&headers);
                    let decided = decide(&serialized, matcher, &sampler, || {
                        drawn = true;
                        random
                    });
                    assert_eq!(decided, Some(expected), "{headers:?} at {rate}");
                    assert_eq!(drawn, expected != Decision::FilteredOut);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 4 * 2 * 64 * 3);
    assert_eq!(
        decide(&[1, 0, 0, 0], &matchers[0], &Sampler::new(0.5), || 0),
        None
    );
}
