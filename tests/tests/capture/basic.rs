//! What one exchange looks like once captured: HTTP/1.1 and HTTP/2, small and large bodies in
//! both directions, gRPC with its trailers, and bodies that are not UTF-8.

use anyhow::Result;
use bytes::Bytes;
use serde_json::json;
use tapedeck_e2e::{Rig, assert_headers_in_order, assert_identity, header_text, message};
use tapedeck_local::sample::{BINARY_BODY, chunked_body, fnv1a64, full_body, pattern};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Protocol, PushAck};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TWO_MIB: usize = 2 * 1024 * 1024;
/// The filter's default `capture.max_body_bytes`.
const MAX_BODY: usize = 65536;
const HELLO: &str = "hello from the tapedeck sample\n";

fn assert_no_pseudo_headers(exchange: &Exchange) {
    for side in [message(&exchange.request), message(&exchange.response)] {
        assert!(
            side.headers
                .iter()
                .all(|header| !header.name.starts_with(':')),
            "pseudo-headers are stored in their own fields, not among {:?}",
            side.headers.iter().map(|h| &h.name).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn get_is_captured_exactly() -> Result<()> {
    let mut rig = Rig::start().await?;
    let request = rig
        .request("GET", "/hello?lang=en&x=1")
        .header("traceparent", TRACEPARENT)
        .header("x-tapedeck-first", "1")
        .header("accept", "text/plain")
        .header("x-tapedeck-last", "z")
        .body(full_body(Bytes::new()))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, HELLO);

    let exchanges = rig.exchanges(1).await?;
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert_identity(exchange, Direction::Inbound);
    assert_no_pseudo_headers(exchange);
    assert_eq!(exchange.protocol(), Protocol::Http11);
    assert_eq!(exchange.method, "GET");
    assert_eq!(exchange.path, "/hello?lang=en&x=1");
    assert_eq!(exchange.authority, rig.authority());
    assert_eq!(exchange.trace_id, TRACE_ID);
    assert_eq!(exchange.status, 200);
    assert_eq!(exchange.response_flags, "");
    // Flags and details are read for failed exchanges only.
    assert_eq!(exchange.response_code_details, "");
    assert!(exchange.redactions.is_empty(), "{:?}", exchange.redactions);

    let request = message(&exchange.request);
    assert_headers_in_order(
        &request.headers,
        &[
            ("traceparent", TRACEPARENT),
            ("x-tapedeck-first", "1"),
            ("accept", "text/plain"),
            ("x-tapedeck-last", "z"),
        ],
    );
    assert!(request.body.is_empty());
    assert_eq!(request.body_size, 0);
    assert!(!request.body_truncated);
    assert!(request.trailers.is_empty());

    let response = message(&exchange.response);
    assert_eq!(
        header_text(&response.headers, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.body, HELLO.as_bytes());
    assert_eq!(response.body_size, HELLO.len() as u64);
    assert!(!response.body_truncated);
    assert!(response.trailers.is_empty());
    Ok(())
}

#[tokio::test]
async fn json_post_is_captured_exactly() -> Result<()> {
    let mut rig = Rig::start().await?;
    let body = r#"{"item":"book","qty":2,"tags":["a","b"]}"#;
    let request = rig
        .request("POST", "/echo")
        .header("content-type", "application/json")
        .header("x-request-id", "req-json-1")
        .body(full_body(body))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);

    let exchanges = rig.exchanges(1).await?;
    let exchange = &exchanges[0];
    assert_identity(exchange, Direction::Inbound);
    assert_eq!(exchange.protocol(), Protocol::Http11);
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.path, "/echo");
    assert_eq!(exchange.authority, rig.authority());
    assert_eq!(exchange.trace_id, "req-json-1");
    assert_eq!(exchange.status, 200);

    let request = message(&exchange.request);
    assert_headers_in_order(
        &request.headers,
        &[
            ("content-type", "application/json"),
            ("x-request-id", "req-json-1"),
        ],
    );
    assert_eq!(
        header_text(&request.headers, "content-length"),
        Some(body.len().to_string())
    );
    assert_eq!(request.body, body.as_bytes());
    assert_eq!(request.body_size, body.len() as u64);
    assert!(!request.body_truncated);

    let response = message(&exchange.response);
    assert_eq!(
        header_text(&response.headers, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(response.body, body.as_bytes());
    assert_eq!(response.body_size, body.len() as u64);
    assert!(!response.body_truncated);
    Ok(())
}

#[tokio::test]
async fn chunked_upload_of_2_mib_passes_whole_and_is_captured_truncated() -> Result<()> {
    let mut rig = Rig::start().await?;
    let data = Bytes::from(pattern(TWO_MIB));
    let request = rig
        .request("POST", "/upload")
        .header("content-type", "application/octet-stream")
        .body(chunked_body(data.clone(), 64 * 1024))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()?,
        json!({"bytes": TWO_MIB, "fnv1a64": format!("{:016x}", fnv1a64(&data))})
    );

    let exchanges = rig.exchanges(1).await?;
    let exchange = &exchanges[0];
    assert_identity(exchange, Direction::Inbound);
    assert_eq!(exchange.path, "/upload");
    assert_eq!(exchange.status, 200);
    let request = message(&exchange.request);
    assert!(
        header_text(&request.headers, "content-length").is_none(),
        "a chunked upload has no length"
    );
    assert_eq!(request.body.len(), MAX_BODY);
    assert!(
        request.body == data[..MAX_BODY],
        "the captured body is not the first {MAX_BODY} bytes sent"
    );
    assert_eq!(request.body_size, TWO_MIB as u64);
    assert!(request.body_truncated);
    let response = message(&exchange.response);
    assert_eq!(response.body, reply.body);
    assert_eq!(response.body_size, reply.body.len() as u64);
    assert!(!response.body_truncated);
    assert!(rig.stat("tapedeck.bodies_truncated").await? >= 1);
    Ok(())
}

#[tokio::test]
async fn download_of_2_mib_arrives_whole_and_is_captured_truncated() -> Result<()> {
    let mut rig = Rig::start().await?;
    let path = format!("/download?bytes={TWO_MIB}");
    let reply = rig.get(&path).await?;
    assert_eq!(reply.status, 200);
    let expected = pattern(TWO_MIB);
    assert_eq!(reply.body.len(), TWO_MIB);
    assert!(
        reply.body == expected,
        "the downloaded bytes differ from what the app sent"
    );

    let exchanges = rig.exchanges(1).await?;
    let exchange = &exchanges[0];
    assert_identity(exchange, Direction::Inbound);
    assert_eq!(exchange.method, "GET");
    assert_eq!(exchange.path, path);
    assert_eq!(exchange.status, 200);
    let request = message(&exchange.request);
    assert_eq!(request.body_size, 0);
    let response = message(&exchange.response);
    assert_eq!(
        header_text(&response.headers, "content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(response.body.len(), MAX_BODY);
    assert!(
        response.body == expected[..MAX_BODY],
        "the captured body is not the first {MAX_BODY} bytes"
    );
    assert_eq!(response.body_size, TWO_MIB as u64);
    assert!(response.body_truncated);
    Ok(())
}

#[tokio::test]
async fn http2_is_captured_as_http2() -> Result<()> {
    let mut rig = Rig::start().await?;
    let request = rig
        .request("GET", "/hello")
        .header("x-tapedeck-h2", "yes")
        .body(full_body(Bytes::new()))?;
    let reply = rig.send_h2(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, HELLO);
    let body = r#"{"over":"h2"}"#;
    let request = rig
        .request("POST", "/echo?v=2")
        .header("content-type", "application/json")
        .body(full_body(body))?;
    let reply = rig.send_h2(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);

    let exchanges = rig.exchanges(2).await?;
    let get = tapedeck_e2e::find(&exchanges, "GET", "/hello");
    let post = tapedeck_e2e::find(&exchanges, "POST", "/echo?v=2");
    for exchange in [get, post] {
        assert_identity(exchange, Direction::Inbound);
        assert_no_pseudo_headers(exchange);
        assert_eq!(exchange.protocol(), Protocol::Http2);
        assert_eq!(exchange.authority, rig.authority());
        assert_eq!(exchange.status, 200);
    }
    assert_headers_in_order(&message(&get.request).headers, &[("x-tapedeck-h2", "yes")]);
    assert_eq!(message(&get.response).body, HELLO.as_bytes());
    assert_eq!(message(&post.request).body, body.as_bytes());
    assert_eq!(message(&post.request).body_size, body.len() as u64);
    assert_eq!(message(&post.response).body, body.as_bytes());
    Ok(())
}

/// A gRPC message as it travels: no compression flag, a 4-byte big-endian length, the message.
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[tokio::test]
async fn unary_grpc_is_captured_with_its_trailers() -> Result<()> {
    let mut rig = Rig::start().await?;
    let mut client = CaptureClient::connect(rig.url("")).await?;
    let batch = ExchangeBatch {
        exchanges: vec![
            Exchange {
                path: "/a".into(),
                ..Default::default()
            },
            Exchange {
                path: "/b".into(),
                ..Default::default()
            },
        ],
        filter_version: "grpc-e2e".into(),
        sequence: 7,
        ..Default::default()
    };
    let ack = client.push(batch.clone()).await?.into_inner();
    assert_eq!(ack, PushAck { accepted: 2 });

    let exchanges = rig.exchanges(1).await?;
    let exchange = &exchanges[0];
    assert_identity(exchange, Direction::Inbound);
    assert_eq!(exchange.protocol(), Protocol::Grpc);
    assert_eq!(exchange.method, "POST");
    assert_eq!(
        exchange.path,
        format!("/{}/Push", tapedeck_proto::CAPTURE_SERVICE)
    );
    assert_eq!(exchange.authority, rig.authority());
    assert_eq!(exchange.status, 200);

    let request = message(&exchange.request);
    assert_eq!(
        header_text(&request.headers, "content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(
        header_text(&request.headers, "te").as_deref(),
        Some("trailers")
    );
    let sent = grpc_frame(&batch.encode_to_vec());
    assert_eq!(request.body, sent);
    assert_eq!(request.body_size, sent.len() as u64);
    assert!(!request.body_truncated);

    let response = message(&exchange.response);
    assert_eq!(
        header_text(&response.headers, "content-type").as_deref(),
        Some("application/grpc")
    );
    let answered = grpc_frame(&ack.encode_to_vec());
    assert_eq!(response.body, answered);
    assert_eq!(response.body_size, answered.len() as u64);
    assert_eq!(
        header_text(&response.trailers, "grpc-status").as_deref(),
        Some("0"),
        "{:?}",
        response.trailers
    );
    Ok(())
}

#[tokio::test]
async fn non_utf8_bodies_are_captured_byte_exact() -> Result<()> {
    let mut rig = Rig::start().await?;
    let body: Vec<u8> = (0..=255u8)
        .rev()
        .chain(BINARY_BODY.iter().copied())
        .collect();
    assert!(std::str::from_utf8(&body).is_err());
    let request = rig
        .request("POST", "/echo")
        .header("content-type", "application/octet-stream")
        .body(full_body(body.clone()))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, body);
    let reply = rig.get("/binary").await?;
    assert_eq!(reply.body, BINARY_BODY);

    let exchanges = rig.exchanges(2).await?;
    let echo = tapedeck_e2e::find(&exchanges, "POST", "/echo");
    assert_identity(echo, Direction::Inbound);
    assert_eq!(message(&echo.request).body, body);
    assert_eq!(message(&echo.request).body_size, body.len() as u64);
    assert_eq!(message(&echo.response).body, body);
    assert_eq!(message(&echo.response).body_size, body.len() as u64);
    let binary = tapedeck_e2e::find(&exchanges, "GET", "/binary");
    assert_identity(binary, Direction::Inbound);
    assert_eq!(message(&binary.response).body, BINARY_BODY);
    assert!(!message(&binary.response).body_truncated);
    Ok(())
}
