//! Bounded memory: recorded response bodies are served from the memory-mapped body file, not
//! from heap copies, byte for byte (large, binary and empty bodies included).

use tapedeck_analyzer::snapshot::{self, Spec};
use tapedeck_proto::Exchange;
use tapedeck_responder::fixture::{WINDOW_FROM_NS, bench_exchanges};
use tapedeck_responder::store::Store;

use crate::support::*;

/// Bodies of the test snapshot: 3 MiB of every byte value (not UTF-8), 70 000 bytes of JSON,
/// empty, and the small JSON answer.
fn exchanges() -> (Vec<Exchange>, Vec<String>, Vec<Vec<u8>>) {
    let (mut exchanges, paths) = bench_exchanges(4, 11, 70_000);
    let mut binary: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|i: u32| (i * 7 % 251) as u8)
        .collect();
    binary[0] = 0xff;
    let bodies = vec![
        binary,
        exchanges[1].response.as_ref().unwrap().body.clone(),
        Vec::new(),
        format!(r#"{{"path":"{}","ok":true}}"#, paths[3]).into_bytes(),
    ];
    for (exchange, body) in exchanges.iter_mut().zip(&bodies) {
        let response = exchange.response.as_mut().unwrap();
        response.body = body.clone();
        if body.first() == Some(&0xff) {
            response.headers[0].value = b"application/octet-stream".to_vec();
        }
    }
    (exchanges, paths, bodies)
}

#[tokio::test]
async fn bodies_are_served_from_the_mapped_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big-bodies");
    let spec = Spec {
        service: "bench".to_owned(),
        sql: "-- responder memory test".to_owned(),
        predicate: None,
        from: Some(WINDOW_FROM_NS),
        to: None,
    };
    let (exchanges, paths, bodies) = exchanges();
    snapshot::build(&spec, exchanges)
        .write(&path, false)
        .unwrap();

    // The store: every body is a slice of the one mapping, which holds each body once.
    let body_dir = tempfile::tempdir().unwrap();
    let store = Store::from_snapshot(snapshot::read(&path).unwrap(), body_dir.path()).unwrap();
    assert_eq!(
        store.mapped_bytes(),
        bodies.iter().map(Vec::len).sum::<usize>()
    );
    assert_eq!(store.recordings.len(), 4);
    for rec in &store.recordings {
        assert!(
            store.is_mapped(&rec.body),
            "line {} is a heap copy",
            rec.line
        );
        let i = paths.iter().position(|p| *p == rec.path).unwrap();
        assert!(rec.body == bodies[i], "line {}: body differs", rec.line);
    }
    // A heap copy of a body is not taken for a mapped one.
    let copy = bytes::Bytes::copy_from_slice(&bodies[0]);
    assert!(!store.is_mapped(&copy));
    // The temp file is unlinked: nothing is left in its directory.
    assert_eq!(std::fs::read_dir(body_dir.path()).unwrap().count(), 0);
    drop(store);
    // The same through `load`, which moves each body out while the lines are read.
    let loaded = Store::load(&path).unwrap();
    assert_eq!(
        loaded.mapped_bytes(),
        bodies.iter().map(Vec::len).sum::<usize>()
    );
    for rec in &loaded.recordings {
        assert!(
            loaded.is_mapped(&rec.body),
            "line {} is a heap copy",
            rec.line
        );
        let i = paths.iter().position(|p| *p == rec.path).unwrap();
        assert!(rec.body == bodies[i], "line {}: body differs", rec.line);
    }
    drop(loaded);

    // Served over HTTP/1.1 and h2c: the recorded bytes, with their length.
    let running = start(args(&path)).await;
    for (p, body) in paths.iter().zip(&bodies) {
        for call in [
            Call::get("bench.svc:8080", p),
            Call::get("bench.svc:8080", p).h2(),
        ] {
            let reply = call.send(running.addr()).await.unwrap();
            assert_eq!(reply.status, 200, "{p}");
            assert_eq!(reply.body.len(), body.len(), "{p}");
            assert!(reply.body == *body, "{p}: served body differs");
            if !call.h2 {
                assert_eq!(
                    reply.header("content-length"),
                    Some(body.len().to_string().as_str())
                );
            }
        }
    }
    running.stop().await;
}
