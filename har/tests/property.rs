//! Property-style round trip: generated exchanges survive HAR exactly and export valid HAR.

use tapedeck_har::{from_exchanges, to_json};
use tapedeck_proto::{Exchange, Header, Message};

use crate::schema::validate_against_har_schema;
use crate::support::{Gen, through_har};

const CASES: u64 = 400;

/// Header names as Envoy carries them: lowercase, no pseudo-headers, no `host`. Some of them
/// change what import does (cookies, content types, content encodings, trace ids).
const NAMES: &[&str] = &[
    "accept",
    "content-type",
    "content-encoding",
    "content-length",
    "cookie",
    "set-cookie",
    "traceparent",
    "x-request-id",
    "x-bin",
    "grpc-status",
    "authorization",
];

fn value(g: &mut Gen, name: &str) -> Vec<u8> {
    match (name, g.below(5)) {
        ("content-type", 0) => b"application/grpc+proto".to_vec(),
        ("content-encoding", 0) => b"gzip".to_vec(),
        ("content-encoding", 1) => b"identity".to_vec(),
        ("cookie", 0) => b"a=1; b=2".to_vec(),
        ("set-cookie", 0) => b"a=1; Path=/; HttpOnly".to_vec(),
        ("traceparent", 0) => b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        (_, 1) => g.bytes(12),
        (_, 2) => Vec::new(),
        _ => g.text(16).into_bytes(),
    }
}

fn headers(g: &mut Gen, max: u64) -> Vec<Header> {
    (0..g.below(max + 1))
        .map(|_| {
            let name = g.pick(NAMES);
            Header {
                name: name.into(),
                value: value(g, name),
            }
        })
        .collect()
}

fn message(g: &mut Gen) -> Message {
    let body = match g.below(4) {
        0 => Vec::new(),
        1 => g.bytes(64),
        _ => g.text(64).into_bytes(),
    };
    let captured = body.len() as u64;
    let body_size = if g.chance(25) {
        captured + 1 + g.below(1 << 20)
    } else {
        captured
    };
    Message {
        headers: headers(g, 6),
        body,
        body_size,
        body_truncated: body_size > captured,
        trailers: headers(g, 2),
    }
}

pub(crate) fn exchange(g: &mut Gen) -> Exchange {
    let duration_nanos = g.below(10_000_000_000_000);
    let status = if g.chance(10) {
        0
    } else {
        100 + g.below(500) as u32
    };
    let response_headers_nanos = if status == 0 {
        0
    } else {
        g.below(duration_nanos + 1)
    };
    let authority = match g.below(3) {
        0 => format!(
            "svc-{}.ns.svc.cluster.local:{}",
            g.below(100),
            g.below(65536)
        ),
        1 => format!("[2001:db8::{:x}]:8443", g.below(0xffff)),
        _ => "Example.COM".to_owned(),
    };
    let mut path = String::new();
    for _ in 0..=g.below(3) {
        path.push('/');
        path.push_str(&g.url_text(8));
    }
    if g.chance(50) {
        path.push('?');
        path.push_str(&g.url_text(6));
        path.push('=');
        path.push_str(&g.url_text(6));
        if g.chance(50) {
            path.push_str("&x=1&&y");
        }
    }
    Exchange {
        id: (0..16).map(|_| g.u64() as u8).collect(),
        trace_id: match g.below(3) {
            0 => String::new(),
            1 => format!("{:016x}{:016x}", g.u64(), g.u64()),
            _ => g.text(20),
        },
        start_unix_nanos: g.below(10_000_000_000_000_000_000),
        duration_nanos,
        response_headers_nanos,
        direction: g.below(3) as i32,
        workload: g.text(12),
        namespace: g.text(8),
        pod: g.text(20),
        peer_address: match g.below(3) {
            0 => String::new(),
            1 => format!(
                "10.{}.{}.{}:{}",
                g.below(256),
                g.below(256),
                g.below(256),
                g.below(65536)
            ),
            _ => "[2001:db8::1]:443".into(),
        },
        upstream_cluster: g.text(16),
        route_name: g.text(8),
        protocol: g.below(6) as i32,
        scheme: g.pick(&["http", "https"]).to_string(),
        authority,
        method: g
            .pick(&[
                "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND",
            ])
            .to_string(),
        path,
        request: Some(message(g)),
        status,
        response: Some(message(g)),
        response_flags: g.pick(&["", "UF", "NR,DC", "UT"]).to_string(),
        response_code_details: g.text(10),
        // Decimal fractions that JSON numbers carry exactly.
        sample_rate: *g.pick(&[&1.0, &0.5, &0.25, &0.1, &0.01, &0.001]),
        redactions: (0..g.below(3))
            .map(|_| format!("request.header:{}", g.text(6)))
            .collect(),
        filter_version: g.pick(&["", "0.1.0", "1.2.3-rc.1"]).to_string(),
    }
}

#[test]
fn generated_exchanges_survive_har_exactly() {
    let mut g = Gen::new(0x7a9e_dec5);
    let exchanges: Vec<Exchange> = (0..CASES).map(|_| exchange(&mut g)).collect();
    let back = through_har(&exchanges);
    assert_eq!(back.len(), exchanges.len());
    for (i, (got, want)) in back.iter().zip(&exchanges).enumerate() {
        assert_eq!(got, want, "case {i}");
    }
}

#[test]
fn generated_exports_are_valid_har() {
    let mut g = Gen::new(0x5eed);
    let exchanges: Vec<Exchange> = (0..CASES / 4).map(|_| exchange(&mut g)).collect();
    let json = to_json(&from_exchanges(&exchanges, "tapedeck-test"));
    let document: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(validate_against_har_schema(&document), Vec::<String>::new());
}
