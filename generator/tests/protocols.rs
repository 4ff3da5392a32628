//! Protocols: h2c for recorded HTTP/2, gRPC framing and trailers, TLS with ALPN.

use std::process::Command;
use std::sync::Arc;

use crate::support::{Received, Reply, Server, args, inbound, replay, write_snapshot};

#[tokio::test]
async fn h2c_is_used_for_recorded_http2() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut exchange = inbound(0, 0, "GET", "/h2", &[("x-a", "1")], "", 200, "{}");
    exchange.set_protocol(tapedeck_proto::Protocol::Http2);
    let snapshot = write_snapshot(dir.path(), "h2", vec![exchange]);
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let report = replay(args(&snapshot, &server.url))
        .await
        .expect("the replay runs");
    assert_eq!(report.overall.errors, 0);
    let got = server.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].version, http::Version::HTTP_2);
}

/// A gRPC call as recorded: HTTP/2, a length-prefixed message, `grpc-status` in the trailers.
fn grpc_snapshot(dir: &std::path::Path) -> std::path::PathBuf {
    let message = b"\x0a\x05hello";
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let mut exchange = inbound(
        0,
        0,
        "POST",
        "/greet.v1.Greeter/Hello",
        &[("content-type", "application/grpc")],
        "",
        200,
        "",
    );
    exchange.set_protocol(tapedeck_proto::Protocol::Grpc);
    let request = exchange.request.as_mut().expect("a request");
    request.body = framed.clone();
    request.body_size = framed.len() as u64;
    let response = exchange.response.as_mut().expect("a response");
    response.headers = vec![tapedeck_proto::Header {
        name: "content-type".into(),
        value: b"application/grpc".to_vec(),
    }];
    response.body = framed.clone();
    response.body_size = framed.len() as u64;
    response.trailers = vec![tapedeck_proto::Header {
        name: "grpc-status".into(),
        value: b"0".to_vec(),
    }];
    write_snapshot(dir, "grpc", vec![exchange])
}

#[tokio::test]
async fn grpc_is_sent_over_http2_with_its_framing_and_its_status_checked() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = grpc_snapshot(dir.path());
    let framed = b"\x00\x00\x00\x00\x07\x0a\x05hello".to_vec();
    for (status, errors, diffs) in [("0", 0, 0), ("13", 1, 1)] {
        let mut server = Server::start(Arc::new(move |r: &Received| Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/grpc".into())],
            body: r.body.clone(),
            delay: std::time::Duration::ZERO,
            trailers: vec![("grpc-status".into(), status.into())],
        }))
        .await;
        let report = replay(args(&snapshot, &server.url))
            .await
            .expect("the replay runs");
        let got = server.drain();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].version, http::Version::HTTP_2);
        assert_eq!(got[0].body, framed, "the recorded framing, byte for byte");
        assert_eq!(got[0].header("te"), Some("trailers"));
        assert_eq!(got[0].header("content-type"), Some("application/grpc"));
        assert_eq!(report.overall.errors, errors, "grpc-status {status}");
        assert_eq!(report.overall.diffs, diffs, "grpc-status {status}");
        if diffs > 0 {
            assert_eq!(report.diffs[0].field, "trailer grpc-status");
            assert_eq!(report.diffs[0].examples[0].live.as_deref(), Some("13"));
        }
    }
}

#[tokio::test]
async fn https_negotiates_h2_by_alpn_with_the_given_ca() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl (Debian's openssl package)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let snapshot = write_snapshot(
        dir.path(),
        "tls",
        vec![inbound(
            0,
            0,
            "GET",
            "/secure",
            &[],
            "",
            200,
            r#"{"ok":true}"#,
        )],
    );
    let mut server = Server::start_tls(
        Arc::new(|_: &Received| Reply::json(200, r#"{"ok":true}"#)),
        &cert,
        &key,
    )
    .await;
    assert!(server.url.starts_with("https://"));
    // Trusted: the request goes over h2 (the server prefers it), no diff.
    let mut a = args(&snapshot, &server.url);
    a.ca_cert = Some(cert.clone());
    let report = replay(a).await.expect("the replay runs");
    assert_eq!(report.overall.errors, 0, "{:?}", report.overall.first_error);
    assert_eq!(report.overall.diffs, 0);
    let got = server.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].version, http::Version::HTTP_2);
    // Not trusted: a transport error, nothing received.
    let report = replay(args(&snapshot, &server.url))
        .await
        .expect("the replay runs");
    assert_eq!(report.overall.errors, 1);
    assert!(report.overall.first_error.is_some());
    assert!(server.drain().is_empty());
}
