use tapedeck_proto::{Exchange, Header, Message};

use super::*;

fn valid() -> Exchange {
    Exchange {
        id: vec![1; 16],
        direction: Direction::Outbound as i32,
        protocol: Protocol::Grpc as i32,
        status: 200,
        sample_rate: 0.25,
        request: Some(Message {
            body: vec![1, 2],
            body_size: 10,
            body_truncated: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn problem(exchange: Exchange) -> String {
    let batch = ExchangeBatch {
        exchanges: vec![valid(), exchange],
        sequence: 12,
        ..Default::default()
    };
    validate(&batch).unwrap_err().to_string()
}

#[test]
fn valid_batches_pass() {
    let batch = ExchangeBatch {
        exchanges: vec![
            valid(),
            Exchange {
                sample_rate: 1.0,
                ..valid()
            },
        ],
        ..Default::default()
    };
    validate(&batch).unwrap();
    validate(&ExchangeBatch::default()).unwrap();
}

#[test]
fn each_problem_is_named_with_batch_and_exchange() {
    let cases: Vec<(Exchange, &str)> = vec![
        (
            Exchange {
                id: vec![0; 4],
                ..valid()
            },
            "batch 12, exchange 1: id must be 16 bytes, got 4",
        ),
        (
            Exchange {
                direction: 7,
                ..valid()
            },
            "batch 12, exchange 1: direction 7 is not a known value",
        ),
        (
            Exchange {
                protocol: -1,
                ..valid()
            },
            "batch 12, exchange 1: protocol -1 is not a known value",
        ),
        (
            Exchange {
                status: 1000,
                ..valid()
            },
            "batch 12, exchange 1: status 1000 is above 999",
        ),
        (
            Exchange {
                sample_rate: 1.5,
                ..valid()
            },
            "batch 12, exchange 1: sample_rate must be within [0, 1], got 1.5",
        ),
        (
            Exchange {
                sample_rate: f64::NAN,
                ..valid()
            },
            "batch 12, exchange 1: sample_rate must be within [0, 1], got NaN",
        ),
        (
            Exchange {
                start_unix_nanos: u64::MAX,
                ..valid()
            },
            "batch 12, exchange 1: start_unix_nanos 18446744073709551615 is after the year 2262",
        ),
        (
            Exchange {
                response: Some(Message {
                    body: vec![0; 5],
                    body_size: 4,
                    ..Default::default()
                }),
                ..valid()
            },
            "batch 12, exchange 1: response body holds 5 bytes, more than its body_size 4",
        ),
        (
            Exchange {
                request: Some(Message {
                    trailers: vec![
                        Header {
                            name: "grpc-status".into(),
                            value: b"0".to_vec(),
                        },
                        Header::default(),
                    ],
                    ..Default::default()
                }),
                ..valid()
            },
            "batch 12, exchange 1: request trailer 1 has an empty name",
        ),
    ];
    for (exchange, expected) in cases {
        assert_eq!(problem(exchange), expected);
    }
}

#[test]
fn sequence_gaps_count_once_out_of_the_window() {
    let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:1000".parse().unwrap();
    let mut tracker = SequenceTracker::default();
    // A filter first seen mid-stream has lost nothing we know of.
    assert_eq!(tracker.observe(a, 5), 0);
    assert_eq!(tracker.observe(b, 1), 0);
    // 6 and 7 reordered: not lost.
    assert_eq!(tracker.observe(a, 7), 0);
    assert_eq!(tracker.observe(a, 6), 0);
    // 8 never comes: lost once it falls out of the window.
    assert_eq!(tracker.observe(a, 9), 0);
    let mut lost = 0;
    for sequence in 10..=9 + SEQUENCE_WINDOW {
        lost += tracker.observe(a, sequence);
    }
    assert_eq!(lost, 1);
    // A big jump counts everything beyond the window at once, the rest later.
    let highest = 9 + SEQUENCE_WINDOW;
    assert_eq!(
        tracker.observe(a, highest + 1000),
        1000 - SEQUENCE_WINDOW - 1
    );
    assert_eq!(
        tracker.observe(a, highest + 1000 + SEQUENCE_WINDOW),
        SEQUENCE_WINDOW
    );
    // Duplicates and the other filter are unaffected.
    assert_eq!(tracker.observe(a, 3), 0);
    assert_eq!(tracker.observe(b, 2), 0);
}

#[cfg(unix)]
#[test]
fn free_disk_is_known_for_existing_folders() {
    let dir = tempfile::tempdir().unwrap();
    assert!(free_disk_bytes(dir.path()).is_some_and(|free| free > 0));
    assert_eq!(free_disk_bytes(&dir.path().join("missing")), None);
}

#[path = "../../../proto/tests/support/generate.rs"]
mod generate;

/// The push path against what it replaced: prost's decode, `validate` over the decoded batch
/// and `Buffer::prepare` of its exchanges. Random batches (valid and not) and mutations of their
/// encodings (fields reordered, repeated, unknown fields, truncations, byte changes): the same
/// refusals, the same first invalid exchange, and the same record batches per partition.
#[test]
fn received_batches_become_the_rows_prost_and_the_old_conversion_gave() {
    let mut g = generate::Gen(160);
    let (mut stored, mut invalid, mut malformed, mut single) = (0, 0, 0, 0);
    for _ in 0..1500 {
        let bytes = generate::case(&mut g, 6);
        let old = ExchangeBatch::decode(bytes.as_slice());
        let new = Received::decode(Bytes::from(bytes.clone()));
        match (old, new) {
            (Err(_), Err(error)) => {
                assert!(error.to_string().starts_with(DECODE_FAILURE), "{error}");
                malformed += 1;
            }
            (Ok(batch), Ok(mut received)) => {
                assert_eq!(received.sequence(), batch.sequence);
                assert_eq!(received.dropped_since_last(), batch.dropped_since_last);
                assert_eq!(received.exchanges(), batch.exchanges.len());
                match (validate(&batch), received.invalid.take()) {
                    (Ok(()), None) => {
                        let expected = Buffer::prepare(&batch.exchanges).unwrap();
                        let actual = received.prepare().unwrap();
                        assert_eq!(actual.batches(), expected.batches(), "{bytes:02x?}");
                        // One partition (a sidecar's push within an hour): the same memory as
                        // well, so the buffer's limit counts the same. Several: each new
                        // partition reserves room for the rest of the batch, so no less.
                        let one = actual.batches().len() == 1;
                        single += usize::from(one);
                        for ((_, a), (_, e)) in actual.batches().iter().zip(expected.batches()) {
                            let (a, e) = (a.get_array_memory_size(), e.get_array_memory_size());
                            assert!(if one { a == e } else { a >= e }, "{a} against {e}");
                        }
                        stored += 1;
                    }
                    (Err(Error::InvalidExchange { index, reason, .. }), Some(first)) => {
                        assert_eq!(first, (index, reason));
                        invalid += 1;
                    }
                    (old, new) => panic!("validate says {old:?}, the push path {new:?}"),
                }
            }
            (old, new) => panic!("prost says {old:?}, the push path {new:?}: {bytes:02x?}"),
        }
    }
    assert!(
        stored >= 200 && invalid >= 200 && malformed >= 100 && single >= 50,
        "{stored} stored ({single} of one partition), {invalid} invalid, {malformed} malformed"
    );
}

#[test]
fn a_batch_with_several_partitions_keeps_arrival_order_within_each() {
    let exchange = |workload: &str, hour: u64, i: u8| Exchange {
        id: vec![i; 16],
        workload: workload.into(),
        start_unix_nanos: 1_764_000_000_000_000_000 + hour * 3_600_000_000_000,
        sample_rate: 1.0,
        ..valid()
    };
    let batch = ExchangeBatch {
        exchanges: vec![
            exchange("b", 0, 1),
            exchange("a", 1, 2),
            exchange("a b", 0, 3),
            exchange("a_b", 0, 4),
            exchange("b", 0, 5),
            exchange("a", 0, 6),
            exchange("a", 1, 7),
        ],
        ..Default::default()
    };
    let mut received = Received::decode(Bytes::from(batch.encode_to_vec())).unwrap();
    let prepared = received.prepare().unwrap();
    let ids: Vec<(String, Vec<u8>)> = prepared
        .batches()
        .iter()
        .map(|(key, rows)| {
            let ids = tapedeck_proto::arrow::from_record_batch(rows)
                .unwrap()
                .iter()
                .map(|e| e.id[0])
                .collect();
            (key.to_string(), ids)
        })
        .collect();
    let hour = |h: u8| format!("date=2025-11-24/hour={h:02}");
    assert_eq!(
        ids,
        [
            (format!("service=a/{}", hour(16)), vec![6]),
            (format!("service=a/{}", hour(17)), vec![2, 7]),
            (format!("service=a_b/{}", hour(16)), vec![3, 4]),
            (format!("service=b/{}", hour(16)), vec![1, 5]),
        ]
    );
    assert_eq!(
        prepared.batches().len(),
        Buffer::prepare(&batch.exchanges).unwrap().batches().len()
    );
}

/// A request body of these DATA frames.
fn body_of(
    chunks: Vec<Bytes>,
) -> impl tonic::codegen::Body<Data = Bytes, Error = std::convert::Infallible> + Send + 'static {
    http_body_util::StreamBody::new(futures::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| Ok(http_body::Frame::data(chunk))),
    ))
}

fn prefixed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend((message.len() as u32).to_be_bytes());
    out.extend(message);
    out
}

#[tokio::test]
async fn a_push_in_one_frame_is_read_without_a_copy() {
    let message: Vec<u8> = (0..=255).collect();
    let frame = Bytes::from(prefixed(&message));
    let read = read_message(body_of(vec![frame.clone()]), 1024)
        .await
        .unwrap();
    assert_eq!(read, message);
    // The message is a view of the frame's own bytes.
    assert_eq!(read.as_ptr(), frame[GRPC_PREFIX..].as_ptr());
}

#[tokio::test]
async fn a_push_in_many_frames_is_joined_in_order() {
    let message: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let whole = prefixed(&message);
    for size in [1, 2, 4, 5, 6, 333, whole.len() - 1] {
        let chunks = whole.chunks(size).map(Bytes::copy_from_slice).collect();
        let read = read_message(body_of(chunks), 1000).await.unwrap();
        assert_eq!(read, message, "frames of {size}");
    }
    // One byte over the limit is refused from the prefix alone.
    let status = read_message(body_of(vec![Bytes::from(whole[..5].to_vec())]), 999)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert_eq!(
        status.message(),
        "Error, decoded message length too large: found 1000 bytes, the limit is: 999 bytes"
    );
}

/// A frame that counts how many frames are alive.
struct Counted {
    bytes: Vec<u8>,
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn frames_are_not_kept_while_a_push_in_many_is_read() {
    use futures::StreamExt as _;
    use std::sync::atomic::Ordering;
    let message: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    let whole = prefixed(&message);
    let alive = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let frames: Vec<Vec<u8>> = whole.chunks(10).map(<[u8]>::to_vec).collect();
    let (alive_in, most_in) = (alive.clone(), most.clone());
    // Each frame is made when the reader asks for it; the most frames alive at once is kept.
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames).map(move |bytes| {
        most_in.fetch_max(alive_in.load(Ordering::SeqCst), Ordering::SeqCst);
        alive_in.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_owner(Counted {
            bytes,
            alive: alive_in.clone(),
        })))
    }));
    let read = read_message(body, 1000).await.unwrap();
    assert_eq!(read, message);
    // At most the first frame waits for the second; later ones are copied and let go.
    assert!(
        most.load(Ordering::SeqCst) <= 1,
        "{} frames alive",
        most.load(Ordering::SeqCst)
    );
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}
