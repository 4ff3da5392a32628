//! The exchanges of the responder's test snapshot and of its benchmark snapshots, built as
//! `tapedeck_proto::Exchange`s so that `tapedeck_analyzer::snapshot::build` runs discovery on
//! them like on captured traffic.
//!
//! The test snapshot (`orders` calling three dependencies) holds what the golden shop snapshot
//! lacks:
//!
//! | host | protocol | calls |
//! | --- | --- | --- |
//! | `payments.shop.svc:8080` | HTTP/1.1 | `POST /v1/charges` ×5 (order id propagated from the inbound request, fresh JWT and idempotency key each time, redacted `x-api-key`, `created` epoch seconds and `date` in the response); `GET /v1/charges?order=…&limit=10` ×5 |
//! | `inventory.shop.svc:8080` | HTTP/2 | `GET /v1/stock/sku_123456` ×3 in one trace with different answers (3, 2, 1 left); `GET /v1/stock/sku_999999` with status 0 (no response); `GET /v1/catalog` with a truncated body |
//! | `ledger.shop.svc:9090` | gRPC | `tapedeck.capture.v1.Capture/Push`: a unary call answered with a `PushAck` and `grpc-status: 0` trailers, and one answered trailers-only with `grpc-status: 7` |
//! | `auth.shop.svc:8080` | HTTP/1.1 | `POST /oauth/token` ×3, each answering a signed JWT |

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Header, Message, Protocol, PushAck};

/// The window start of the test snapshot: 2026-11-27T13:00:00Z, ns.
pub const WINDOW_FROM_NS: u64 = 1_795_784_400_000_000_000;
/// The redaction key the fixture's markers were made with (the filter's `hash_key`).
pub const REDACTION_KEY: &str = "fixture-redaction-key";
/// The `x-api-key` the service really sent (its marker is in the snapshot).
pub const API_KEY: &str = "pk_live_51HxFixtureKey";
/// The HMAC secret the recorded auth server signed its tokens with.
pub const AUTH_SECRET: &[u8] = b"fixture-auth-secret";
/// The recorded payments host.
pub const PAYMENTS: &str = "payments.shop.svc:8080";
/// The recorded inventory host (HTTP/2).
pub const INVENTORY: &str = "inventory.shop.svc:8080";
/// The recorded gRPC host.
pub const LEDGER: &str = "ledger.shop.svc:9090";
/// The recorded auth host.
pub const AUTH: &str = "auth.shop.svc:8080";
/// The orders whose payments were recorded.
pub const ORDERS: [&str; 5] = [
    "ord_010000",
    "ord_010001",
    "ord_010002",
    "ord_010003",
    "ord_010004",
];
/// The gRPC path of the recorded calls.
pub const GRPC_PATH: &str = "/tapedeck.capture.v1.Capture/Push";

fn header(name: &str, value: impl Into<Vec<u8>>) -> Header {
    Header {
        name: name.to_owned(),
        value: value.into(),
    }
}

/// The filter's redaction marker of `secret` under `key`.
pub fn marker(key: &str, secret: &str) -> String {
    tapedeck_proto::redaction_marker(key.as_bytes(), secret.as_bytes())
}

/// An HS256 JWT with these claims.
pub fn jwt(secret: &[u8], claims: &serde_json::Value) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing = format!("{head}.{body}");
    let signature = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signing.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signing}.{signature}")
}

/// A gRPC body: each message length-prefixed, uncompressed.
pub fn grpc_frame(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        out.push(0);
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
    }
    out
}

/// The `ExchangeBatch` request of the recorded gRPC calls (`sequence` tells them apart).
pub fn push_request(sequence: u64) -> ExchangeBatch {
    ExchangeBatch {
        exchanges: Vec::new(),
        filter_version: "fixture".to_owned(),
        sequence,
        dropped_since_last: 0,
        sent_unix_nanos: 0,
    }
}

/// The `accepted` count of the recorded successful push.
pub const PUSH_ACCEPTED: u64 = 42;

/// The HTTP date (IMF-fixdate) of a time in Unix seconds.
fn http_date(unix_s: u64) -> String {
    i64::try_from(unix_s)
        .ok()
        .and_then(tapedeck_har::time::format_http_date)
        .unwrap_or_default()
}

struct Builder {
    out: Vec<Exchange>,
    next_id: u8,
}

impl Builder {
    #[allow(clippy::too_many_arguments)] // A whole exchange, spelled out once per call site.
    fn push(
        &mut self,
        direction: Direction,
        trace: &str,
        at_ms: u64,
        protocol: Protocol,
        authority: &str,
        method: &str,
        path: &str,
        request: Message,
        status: u32,
        response: Message,
    ) {
        self.next_id += 1;
        let mut id = vec![0xab; 16];
        id[15] = self.next_id;
        let cluster = match direction {
            Direction::Outbound => {
                let (host, port) = authority.split_once(':').unwrap_or((authority, "80"));
                format!("outbound|{port}||{host}.cluster.local")
            }
            _ => "inbound|8080||".to_owned(),
        };
        let mut exchange = Exchange {
            id,
            trace_id: trace.to_owned(),
            start_unix_nanos: WINDOW_FROM_NS + at_ms * 1_000_000,
            duration_nanos: 4_000_000,
            response_headers_nanos: 3_000_000,
            workload: "orders".to_owned(),
            namespace: "shop".to_owned(),
            upstream_cluster: cluster,
            scheme: "http".to_owned(),
            authority: authority.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            request: Some(request),
            status,
            response: Some(response),
            sample_rate: 1.0,
            filter_version: "fixture".to_owned(),
            ..Default::default()
        };
        exchange.set_direction(direction);
        exchange.set_protocol(protocol);
        self.out.push(exchange);
    }
}

fn trace_of(i: u64) -> String {
    format!("{:032x}", 0x5eed_0000_u64 + i)
}

fn traceparent(trace: &str) -> Header {
    header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
}

fn json(headers: Vec<Header>, body: &serde_json::Value) -> Message {
    Message {
        headers,
        body: body.to_string().into_bytes(),
        ..Default::default()
    }
}

/// The request body of the recorded charge for order `i`.
pub fn charge_body(order: &str, amount: u64, idempotency_key: &str) -> serde_json::Value {
    serde_json::json!({"order": order, "amount": amount, "currency": "EUR", "idempotency_key": idempotency_key})
}

/// The amount charged for order `i`.
pub fn amount(i: usize) -> u64 {
    1000 + 100 * i as u64
}

/// Writes the test snapshot into `dir`: [`exchanges`] cut through the analyzer
/// (`snapshot::build`, so discovery runs on them as on captured traffic).
pub fn write_snapshot(
    dir: &std::path::Path,
) -> Result<tapedeck_analyzer::snapshot::Manifest, tapedeck_analyzer::snapshot::WriteError> {
    let spec = tapedeck_analyzer::snapshot::Spec {
        service: "orders".to_owned(),
        sql: "SELECT * FROM exchanges WHERE service = 'orders' -- responder fixture".to_owned(),
        predicate: None,
        from: Some(WINDOW_FROM_NS),
        to: None,
    };
    tapedeck_analyzer::snapshot::build(&spec, exchanges()).write(dir, false)
}

/// The exchanges of the test snapshot.
pub fn exchanges() -> Vec<Exchange> {
    let mut b = Builder {
        out: Vec::new(),
        next_id: 0,
    };
    let window_s = WINDOW_FROM_NS / 1_000_000_000;
    // Five orders paid: inbound POST /orders/{id}/pay, each causing a charge and a lookup.
    for (i, order) in ORDERS.iter().enumerate() {
        let trace = trace_of(i as u64);
        let at = 1000 * i as u64;
        b.push(
            Direction::Inbound,
            &trace,
            at,
            Protocol::Http11,
            "orders.shop.svc:8080",
            "POST",
            &format!("/orders/{order}/pay"),
            Message {
                headers: vec![
                    traceparent(&trace),
                    header("content-type", "application/json"),
                ],
                body: br#"{"method":"card"}"#.to_vec(),
                ..Default::default()
            },
            200,
            json(
                vec![header("content-type", "application/json")],
                &serde_json::json!({"order": order, "paid": true}),
            ),
        );
        let token = jwt(
            AUTH_SECRET,
            &serde_json::json!({"iss": "auth.shop", "sub": "orders", "iat": window_s + i as u64, "exp": window_s + 3600 + i as u64}),
        );
        let idempotency = format!("1b35b9b4-5df3-417e-a98d-6962c7c11b{:02x}", i);
        let created = window_s + 1 + i as u64;
        b.push(
            Direction::Outbound,
            &trace,
            at + 10,
            Protocol::Http11,
            PAYMENTS,
            "POST",
            "/v1/charges",
            json(
                vec![
                    header("content-type", "application/json"),
                    header("x-api-key", marker(REDACTION_KEY, API_KEY)),
                    header("authorization", format!("Bearer {token}")),
                    traceparent(&trace),
                ],
                &charge_body(order, amount(i), &idempotency),
            ),
            200,
            json(
                vec![
                    header("content-type", "application/json"),
                    header("date", http_date(created)),
                ],
                &serde_json::json!({"charge": format!("ch_1111845{i}"), "order": order, "status": "succeeded", "created": created}),
            ),
        );
        b.push(
            Direction::Outbound,
            &trace,
            at + 20,
            Protocol::Http11,
            PAYMENTS,
            "GET",
            &format!("/v1/charges?order={order}&limit=10"),
            Message {
                headers: vec![traceparent(&trace)],
                ..Default::default()
            },
            200,
            json(
                vec![header("content-type", "application/json")],
                &serde_json::json!({"data": [{"charge": format!("ch_1111845{i}"), "order": order}]}),
            ),
        );
    }
    // One inbound request checks stock three times (the stock goes down), and more calls.
    let trace = trace_of(10);
    b.push(
        Direction::Inbound,
        &trace,
        6000,
        Protocol::Http11,
        "orders.shop.svc:8080",
        "GET",
        "/orders/stock-watch",
        Message {
            headers: vec![traceparent(&trace)],
            ..Default::default()
        },
        200,
        json(vec![], &serde_json::json!({"ok": true})),
    );
    for (n, left) in [3, 2, 1].into_iter().enumerate() {
        b.push(
            Direction::Outbound,
            &trace,
            6010 + 10 * n as u64,
            Protocol::Http2,
            INVENTORY,
            "GET",
            "/v1/stock/sku_123456",
            Message {
                headers: vec![traceparent(&trace)],
                ..Default::default()
            },
            200,
            json(
                vec![header("content-type", "application/json")],
                &serde_json::json!({"sku": "sku_123456", "left": left}),
            ),
        );
    }
    b.push(
        Direction::Outbound,
        &trace,
        6100,
        Protocol::Http2,
        INVENTORY,
        "GET",
        "/v1/stock/sku_999999",
        Message::default(),
        0,
        Message::default(),
    );
    b.push(
        Direction::Outbound,
        &trace,
        6200,
        Protocol::Http2,
        INVENTORY,
        "GET",
        "/v1/catalog",
        Message::default(),
        200,
        Message {
            headers: vec![header("content-type", "application/json")],
            body: br#"{"items":[{"sku":"sku_123456","name":"kettle"},{"sku":"#.to_vec(),
            body_size: 4096,
            body_truncated: true,
            ..Default::default()
        },
    );
    // gRPC: a successful unary push and a trailers-only refusal.
    for (sequence, ok) in [(1u64, true), (2, false)] {
        let grpc_headers = vec![
            header("content-type", "application/grpc"),
            header("te", "trailers"),
        ];
        let response = if ok {
            Message {
                headers: vec![header("content-type", "application/grpc")],
                body: grpc_frame(&[PushAck {
                    accepted: PUSH_ACCEPTED,
                }
                .encode_to_vec()]),
                trailers: vec![header("grpc-status", "0")],
                ..Default::default()
            }
        } else {
            Message {
                headers: vec![
                    header("content-type", "application/grpc"),
                    header("grpc-status", "7"),
                    header("grpc-message", "ledger is read-only"),
                ],
                ..Default::default()
            }
        };
        b.push(
            Direction::Outbound,
            "",
            7000 + sequence * 10,
            Protocol::Grpc,
            LEDGER,
            "POST",
            GRPC_PATH,
            Message {
                headers: grpc_headers,
                body: grpc_frame(&[push_request(sequence).encode_to_vec()]),
                ..Default::default()
            },
            200,
            response,
        );
    }
    // Tokens from the auth server, each signed.
    for i in 0..3u64 {
        let token = jwt(
            AUTH_SECRET,
            &serde_json::json!({"iss": "auth.shop", "sub": "orders", "iat": window_s + 8 + i, "exp": window_s + 3608 + i}),
        );
        b.push(
            Direction::Outbound,
            "",
            8000 + 10 * i,
            Protocol::Http11,
            AUTH,
            "POST",
            "/oauth/token",
            Message {
                headers: vec![header("content-type", "application/x-www-form-urlencoded")],
                body: b"grant_type=client_credentials&client_id=orders".to_vec(),
                ..Default::default()
            },
            200,
            json(
                vec![header("content-type", "application/json")],
                &serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
            ),
        );
    }
    b.out
}

/// A letters-only path segment (`kqzxv`): never an id, so each path is its own endpoint.
fn word(state: &mut u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            *state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (b'a' + ((*state >> 33) % 26) as u8) as char
        })
        .collect()
}

/// `n` recorded GETs to `bench.svc:8080` on random letter paths (`/api/kqzxv/mwpld/ab`), each
/// answered with a small JSON body (`{"path":…,"ok":true}`, or padded with letters to
/// `body_bytes` when that is larger); returns the exchanges and the paths.
pub fn bench_exchanges(n: usize, seed: u64, body_bytes: usize) -> (Vec<Exchange>, Vec<String>) {
    let mut state = seed | 1;
    let mut paths = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while paths.len() < n {
        let path = format!(
            "/api/{}/{}/{}",
            word(&mut state, 6),
            word(&mut state, 6),
            word(&mut state, 2)
        );
        if !seen.insert(path.clone()) {
            continue;
        }
        let i = paths.len() as u64;
        let mut id = vec![0u8; 16];
        id[8..].copy_from_slice(&(i + 1).to_be_bytes());
        let mut exchange = Exchange {
            id,
            start_unix_nanos: WINDOW_FROM_NS + i * 1_000_000,
            duration_nanos: 1_000_000,
            scheme: "http".to_owned(),
            authority: "bench.svc:8080".to_owned(),
            method: "GET".to_owned(),
            path: path.clone(),
            request: Some(Message::default()),
            status: 200,
            response: Some(Message {
                headers: vec![header("content-type", "application/json")],
                body: bench_body(&path, body_bytes, &mut state),
                ..Default::default()
            }),
            ..Default::default()
        };
        exchange.set_direction(Direction::Outbound);
        exchange.set_protocol(Protocol::Http11);
        out.push(exchange);
        paths.push(path);
    }
    (out, paths)
}

/// The bench's answer for `path`: `{"path":…,"ok":true}`, padded with a `"pad"` of random
/// letters to `body_bytes` when that is larger.
fn bench_body(path: &str, body_bytes: usize, state: &mut u64) -> Vec<u8> {
    let small = format!(r#"{{"path":"{path}","ok":true}}"#);
    let padded = format!(r#"{{"path":"{path}","ok":true,"pad":""}}"#);
    if body_bytes <= padded.len() {
        return small.into_bytes();
    }
    let pad = word(state, body_bytes - padded.len());
    format!(r#"{{"path":"{path}","ok":true,"pad":"{pad}"}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_bodies_have_the_asked_size() {
        let (small, paths) = bench_exchanges(2, 1, 0);
        let (big, _) = bench_exchanges(2, 1, 65_536);
        for (exchange, path) in small.iter().zip(&paths) {
            let body = &exchange.response.as_ref().unwrap().body;
            assert_eq!(body, format!(r#"{{"path":"{path}","ok":true}}"#).as_bytes());
        }
        for exchange in &big {
            let body = &exchange.response.as_ref().unwrap().body;
            assert_eq!(body.len(), 65_536);
            serde_json::from_slice::<serde_json::Value>(body).unwrap();
        }
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(1_795_784_400), "Fri, 27 Nov 2026 13:00:00 GMT");
    }
}
