//! gRPC through a tonic client: a unary call answered from the recording (message and
//! `grpc-status` trailer) and a trailers-only error.

use http::StatusCode;
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::tonic::Code;
use tapedeck_proto::tonic::transport::Endpoint;
use tapedeck_responder::fixture::{LEDGER, PUSH_ACCEPTED, push_request};

use crate::support::*;

#[tokio::test]
async fn tonic_unary_call_and_trailers_only_error() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    let channel = Endpoint::from_shared(format!("http://{}", running.addr()))
        .unwrap()
        .origin(format!("http://{LEDGER}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut client = CaptureClient::new(channel);
    let ack = client.push(push_request(1)).await.unwrap().into_inner();
    assert_eq!(ack.accepted, PUSH_ACCEPTED);
    let status = client.push(push_request(2)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "ledger is read-only");
    // A message no recording has: a miss, which a gRPC client sees as an error.
    assert!(client.push(push_request(3)).await.is_err());
    running.stop().await;
}

/// `capture.proto` compiled now into a serialized `FileDescriptorSet` (what `protoc
/// --descriptor_set_out` writes), in `dir`.
fn descriptor_set(dir: &std::path::Path) -> std::path::PathBuf {
    use prost::Message as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let set = protox::compile(["tapedeck/capture/v1/capture.proto"], [root]).unwrap();
    let path = dir.join("capture.binpb");
    std::fs::write(&path, set.encode_to_vec()).unwrap();
    path
}

/// One uncompressed length-prefixed gRPC message.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    body
}

/// An `ExchangeBatch` encoded by hand: `sequence` (3) first, an explicit default
/// `dropped_since_last = 0` (4), then `filter_version` (2): other bytes than prost writes.
fn reordered_batch(filter_version: &str, sequence: u8) -> Vec<u8> {
    let mut message = vec![0x18, sequence, 0x20, 0x00, 0x12, filter_version.len() as u8];
    message.extend_from_slice(filter_version.as_bytes());
    frame(&message)
}

fn push_call(body: Vec<u8>) -> Call {
    Call::post(LEDGER, "/tapedeck.capture.v1.Capture/Push", body)
        .h2()
        .header("content-type", "application/grpc")
        .header("te", "trailers")
}

#[tokio::test]
async fn descriptors_compare_grpc_messages_field_by_field() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("explain.jsonl");
    let mut a = args(&f.path);
    a.descriptors = vec![descriptor_set(dir.path())];
    a.explain = Some(log.clone());
    let running = start(a).await;
    let addr = running.addr();

    // The recorded `push_request(1)` with its fields in another order and a default value
    // spelled out: the same decoded message, served.
    let same = push_call(reordered_batch("fixture", 1))
        .send(addr)
        .await
        .unwrap();
    assert_eq!(same.status, StatusCode::OK, "{:?}", same.body);
    assert!(
        same.body.ends_with(&[0x08, PUSH_ACCEPTED as u8]),
        "{:?}",
        same.body
    );

    // One field changed: a miss naming that field.
    let changed = push_call(reordered_batch("fixturf", 1))
        .send(addr)
        .await
        .unwrap();
    assert_eq!(changed.status, StatusCode::NOT_FOUND);
    let body = changed.json();
    let differing: Vec<&str> = body["candidates"][0]["differing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(differing, ["grpc 1 $.filter_version"], "{body}");

    // Not an `ExchangeBatch`: compared bytewise, and the candidates say why.
    let garbage = push_call(frame(&[0xff, 0xff])).send(addr).await.unwrap();
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
    let body = garbage.json();
    let notes = body["candidates"][0]["notes"].to_string();
    assert!(
        notes.contains("live grpc 1: not a tapedeck.capture.v1.ExchangeBatch"),
        "{body}"
    );

    // The tonic client's own encoding still matches.
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin(format!("http://{LEDGER}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    let ack = CaptureClient::new(channel)
        .push(push_request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.accepted, PUSH_ACCEPTED);
    running.stop().await;

    // The explain log names the differing field of the miss.
    let text = std::fs::read_to_string(&log).unwrap();
    let miss = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["decision"] == "miss")
        .unwrap();
    assert_eq!(
        miss["candidates"][0]["differing"][0]["field"], "grpc 1 $.filter_version",
        "{miss}"
    );
}

#[tokio::test]
async fn without_descriptors_grpc_messages_are_compared_bytewise() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    let reply = push_call(reordered_batch("fixture", 1))
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let body = reply.json();
    assert_eq!(
        body["candidates"][0]["differing"][0]["field"], "grpc 1",
        "{body}"
    );
    running.stop().await;
}
