//! gRPC through a tonic client: a unary call answered from the recording (message and
//! `grpc-status` trailer) and a trailers-only error.

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
