//! Pushes: what is accepted ends up in Parquet exactly; what is refused says why and changes
//! nothing.

use tapedeck_collector::layout::parse_file_path;
use tapedeck_collector::metrics;
use tapedeck_collector::wal;
use tapedeck_proto::PushAck;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn pushed_exchanges_are_flushed_to_parquet_exactly() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let mut client = collector.client().await;
    let first = vec![
        exchange(1, "orders", T13 + 5),
        exchange(2, "payments", T13 + 6),
        exchange(3, "orders", T13 + HOUR + 7),
    ];
    let second = vec![exchange(4, "orders", T13 + 8), exchange(5, "", T13 + 9)];
    for (sequence, exchanges) in [(1, first.clone()), (2, second.clone())] {
        let ack = within("push", client.push(batch(sequence, exchanges.clone())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ack,
            PushAck {
                accepted: exchanges.len() as u64
            }
        );
    }
    // Acknowledged means logged.
    let logged = wal::read_dir(&collector.data.join("wal")).unwrap();
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].exchanges, first);
    assert!(collector.files().await.is_empty());
    assert_eq!(
        collector
            .metric(&format!("{}_total", metrics::EXCHANGES_RECEIVED))
            .await,
        5.0
    );
    assert_eq!(
        collector.metric(metrics::BUFFER_ROWS).await,
        5.0,
        "buffered until the flush"
    );
    drop(client);
    let store = collector.store.clone();
    let wal_dir = collector.data.join("wal");
    collector.stop().await.unwrap();

    let files = files(&store.store).await;
    let partitions: Vec<String> = files
        .iter()
        .map(|path| {
            let (partition, _) = parse_file_path(&path.as_str().into()).expect("a data file");
            partition.to_string()
        })
        .collect();
    assert_eq!(
        partitions,
        [
            "service=orders/date=2026-11-27/hour=13",
            "service=orders/date=2026-11-27/hour=14",
            "service=payments/date=2026-11-27/hour=13",
            "service=unknown/date=2026-11-27/hour=13",
        ]
    );
    assert_eq!(stored(&store.store).await, by_id([first, second].concat()));
    // Everything flushed: the log holds nothing any more.
    assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
    let segments = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(wal::SEGMENT_SUFFIX))
        .count();
    assert_eq!(segments, 1, "only the open segment");
}

#[tokio::test]
async fn a_full_buffer_flushes_before_the_interval() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        flush_rows: 3,
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    let exchanges: Vec<_> = (0..4)
        .map(|i| exchange(i, "orders", T13 + u64::from(i)))
        .collect();
    within("push", client.push(batch(1, exchanges[..2].to_vec())))
        .await
        .unwrap();
    within("push", client.push(batch(2, exchanges[2..].to_vec())))
        .await
        .unwrap();
    let wal_dir = collector.data.join("wal");
    eventually("the flush", || async {
        wal::read_dir(&wal_dir).unwrap().is_empty() && !collector.files().await.is_empty()
    })
    .await;
    assert_eq!(stored(&collector.store.store).await, exchanges);
    assert_eq!(
        collector
            .metric(&format!("{}_total", metrics::PARQUET_FILES_WRITTEN))
            .await,
        1.0
    );
    drop(client);
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_pushes_are_refused_with_the_problem_named() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        max_push_bytes: 16 * 1024,
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    let good = exchange(1, "orders", T13);

    let mut bad = exchange(2, "orders", T13);
    bad.id.truncate(4);
    let status = within("push", client.push(batch(7, vec![good.clone(), bad])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "batch 7, exchange 1: id must be 16 bytes, got 4"
    );

    let mut huge = exchange(3, "orders", T13);
    huge.response.as_mut().unwrap().body = vec![b'x'; 32 * 1024];
    huge.response.as_mut().unwrap().body_size = 32 * 1024;
    let status = within("push", client.push(batch(8, vec![huge])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large") && status.message().contains("16384"),
        "{status:?}"
    );

    let status = push_garbage(&collector).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("failed to decode Protobuf message"),
        "{status:?}"
    );

    // Nothing of the refused batches was stored; the collector goes on accepting.
    within("push", client.push(batch(9, vec![good.clone()])))
        .await
        .unwrap();
    let rejected =
        |reason: &str| format!("{}_total{{reason=\"{reason}\"}}", metrics::BATCHES_REJECTED);
    assert_eq!(collector.metric(&rejected("invalid")).await, 1.0);
    assert_eq!(collector.metric(&rejected("too_large")).await, 1.0);
    assert_eq!(collector.metric(&rejected("malformed")).await, 1.0);
    assert_eq!(wal::read_dir(&collector.data.join("wal")).unwrap().len(), 1);
    drop(client);
    let store = collector.store.clone();
    collector.stop().await.unwrap();
    assert_eq!(stored(&store.store).await, vec![good]);
}

/// A push whose field 1 (the exchanges) holds bytes that are not an `Exchange`.
async fn push_garbage(collector: &Collector) -> tonic::Status {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Garbage {
        #[prost(bytes = "vec", tag = "1")]
        exchanges: Vec<u8>,
    }
    let mut grpc = tonic::client::Grpc::new(collector.channel().await);
    within("ready", grpc.ready()).await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/tapedeck.capture.v1.Capture/Push");
    let garbage = Garbage {
        exchanges: vec![0xff; 12],
    };
    within(
        "garbage push",
        grpc.unary::<_, PushAck, _>(
            tonic::Request::new(garbage),
            path,
            tonic_prost::ProstCodec::default(),
        ),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn pushes_need_the_token_when_one_is_set() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        token: Some("s3cret".into()),
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    let push = |token: Option<&str>| {
        let mut request = tonic::Request::new(batch(1, vec![exchange(1, "orders", T13)]));
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", token.parse().unwrap());
        }
        request
    };
    for token in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Basic s3cret"),
    ] {
        let status = within("push", client.push(push(token))).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert_eq!(status.message(), "missing or wrong bearer token");
    }
    within("push", client.push(push(Some("Bearer s3cret"))))
        .await
        .unwrap();
    let unauthenticated = format!(
        "{}_total{{reason=\"unauthenticated\"}}",
        metrics::BATCHES_REJECTED
    );
    assert_eq!(collector.metric(&unauthenticated).await, 4.0);
    assert_eq!(wal::read_dir(&collector.data.join("wal")).unwrap().len(), 1);
    drop(client);
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn limits_answer_resource_exhausted() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        buffer_max_bytes: 1,
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    within(
        "push",
        client.push(batch(1, vec![exchange(1, "orders", T13)])),
    )
    .await
    .unwrap();
    let status = within(
        "push",
        client.push(batch(2, vec![exchange(2, "orders", T13)])),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with("buffer holds ")
            && status
                .message()
                .ends_with("at or above its limit of 1 bytes"),
        "{status:?}"
    );
    let buffer_full = format!(
        "{}_total{{reason=\"buffer_full\"}}",
        metrics::BATCHES_REJECTED
    );
    assert_eq!(collector.metric(&buffer_full).await, 1.0);
    drop(client);
    collector.stop().await.unwrap();

    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        min_free_disk: u64::MAX,
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    let status = within(
        "push",
        client.push(batch(1, vec![exchange(1, "orders", T13)])),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().starts_with("data disk has "), "{status:?}");
    assert!(
        wal::read_dir(&collector.data.join("wal"))
            .unwrap()
            .is_empty()
    );
    drop(client);
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn http_serves_health_readiness_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    assert_eq!(collector.get("/healthz").await, (200, "ok\n".to_string()));
    eventually("readiness", || async {
        collector.get("/readyz").await.0 == 200
    })
    .await;
    let mut client = collector.client().await;
    let mut pushed = batch(3, vec![exchange(1, "orders", T13)]);
    pushed.dropped_since_last = 17;
    within("push", client.push(pushed)).await.unwrap();
    // Batch 4 never arrives; 5 through 5 + 64 do, so 4 falls out of the reorder window.
    for sequence in 5..=5 + tapedeck_collector::ingest::SEQUENCE_WINDOW {
        within("push", client.push(batch(sequence, vec![])))
            .await
            .unwrap();
    }
    let (status, text) = collector.get("/metrics").await;
    assert_eq!(status, 200);
    for (series, value) in [
        (format!("{}_total", metrics::BATCHES_RECEIVED), 66.0),
        (format!("{}_total", metrics::FILTER_DROPPED_EXCHANGES), 17.0),
        (format!("{}_total", metrics::BATCHES_LOST), 1.0),
        (metrics::BUFFER_ROWS.to_string(), 1.0),
    ] {
        assert_eq!(metric_value(&text, &series), value, "{series}\n{text}");
    }
    assert!(
        metric_value(&text, &format!("{}_count", metrics::WAL_FSYNC_SECONDS)) >= 1.0,
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(collector.get("/nope").await.0, 404);
    drop(client);
    collector.stop().await.unwrap();
}

/// A batch's drop report counts only when the batch is stored: a filter gives a refused batch's
/// report to its next batch, so counting it on arrival would count it twice. Pushes name their
/// filter VM in the metadata: a VM id new since the collector started counts as a VM start of its
/// workload, and every push sets the workload's last-push time.
#[tokio::test]
async fn drop_reports_count_when_stored_and_vm_starts_are_counted_by_workload() {
    use tapedeck_proto::{PUSH_NAMESPACE, PUSH_VM_ID, PUSH_VM_STARTED, PUSH_WORKLOAD};
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let mut client = collector.client().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let push = |sequence: u64, dropped: u64, vm: &str, started: u64| {
        let mut pushed = batch(sequence, vec![exchange(sequence as u8, "orders", T13)]);
        pushed.dropped_since_last = dropped;
        let mut request = tonic::Request::new(pushed);
        let metadata = request.metadata_mut();
        metadata.insert(PUSH_VM_ID, vm.parse().unwrap());
        metadata.insert(PUSH_VM_STARTED, started.to_string().parse().unwrap());
        metadata.insert(PUSH_WORKLOAD, "shop".parse().unwrap());
        metadata.insert(PUSH_NAMESPACE, "default".parse().unwrap());
        request
    };
    // Stored: its report counts. A VM that started before the collector is not a start.
    within(
        "push",
        client.push(push(1, 5, "aaaa", now - 3_600_000_000_000)),
    )
    .await
    .unwrap();
    // Refused (an exchange without a valid id): its report does not count.
    let mut refused = push(2, 7, "aaaa", now - 3_600_000_000_000);
    refused.get_mut().exchanges[0].id = vec![1, 2, 3];
    let status = within("push", client.push(refused)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // A VM that started after the collector (a reload): one start, however often it pushes.
    // (Its start is taken now: the pushes above were answered, so the collector's ingest, and
    // its start time, already existed.)
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for sequence in 3..=4 {
        within("push", client.push(push(sequence, 0, "bbbb", now + 1)))
            .await
            .unwrap();
    }
    let dropped = format!("{}_total", metrics::FILTER_DROPPED_EXCHANGES);
    assert_eq!(collector.metric(&dropped).await, 5.0);
    let starts = format!(
        "{}_total{{workload=\"shop\",namespace=\"default\"}}",
        metrics::FILTER_VM_STARTS
    );
    assert_eq!(collector.metric(&starts).await, 1.0);
    let last_push = format!(
        "{}{{workload=\"shop\",namespace=\"default\"}}",
        metrics::FILTER_LAST_PUSH_SECONDS
    );
    let seconds = collector.metric(&last_push).await;
    assert!(
        (seconds - now as f64 / 1e9).abs() < 60.0,
        "last push {seconds}, now {}",
        now as f64 / 1e9
    );
    drop(client);
    collector.stop().await.unwrap();
}

/// What a hand-framed push was answered with: the gRPC status (from the trailers, or from the
/// headers of a trailers-only answer) and the acknowledgement, if any.
struct RawAnswer {
    code: Code,
    message: String,
    ack: Option<PushAck>,
}

/// Pushes `chunks` as the request body of `Capture/Push`, each chunk its own DATA frame, with
/// `headers` added, over a fresh HTTP/2 connection.
async fn raw_push(
    collector: &Collector,
    chunks: Vec<Vec<u8>>,
    headers: &[(&str, &str)],
) -> RawAnswer {
    use http_body_util::BodyExt as _;
    use prost::Message as _;
    let stream = tokio::net::TcpStream::connect(collector.grpc)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let frames = chunks.into_iter().map(|chunk| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(chunk)))
    });
    let mut request = http::Request::post(format!(
        "http://{}/tapedeck.capture.v1.Capture/Push",
        collector.grpc
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
        .unwrap();
    let response = within("raw push", sender.send_request(request))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let collected = within("raw push body", body.collect()).await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    // tonic's own reading of `grpc-status` and the percent-encoded `grpc-message`.
    let status = tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .expect("a grpc-status");
    let (code, message) = (status.code(), status.message().to_string());
    let ack = (data.len() > 5).then(|| {
        assert_eq!(data[0], 0, "an uncompressed answer");
        let length = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        assert_eq!(data.len(), 5 + length, "one message");
        PushAck::decode(&data[5..]).unwrap()
    });
    assert_eq!(parts.headers["content-type"], "application/grpc");
    RawAnswer { code, message, ack }
}

/// The gRPC message prefix and `message`.
fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend((message.len() as u32).to_be_bytes());
    out.extend(message);
    out
}

/// A hand-framed push that is refused: its DATA frames, extra headers, and the code and words
/// of the answer.
type Refusal<'a> = (Vec<Vec<u8>>, &'a [(&'a str, &'a str)], Code, &'a str);

#[tokio::test]
async fn pushes_are_read_in_any_framing_and_refused_as_tonic_refuses() {
    use prost::Message as _;
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        max_push_bytes: 64 * 1024,
        ..args(data.path())
    })
    .await;
    let mut expected = Vec::new();
    // The same kind of batch in one DATA frame, in frames of 7 bytes, with the prefix split
    // over three frames, and in two halves.
    let splits: [&dyn Fn(Vec<u8>) -> Vec<Vec<u8>>; 4] = [
        &|whole| vec![whole],
        &|whole| whole.chunks(7).map(<[u8]>::to_vec).collect(),
        &|whole| {
            vec![
                whole[..2].to_vec(),
                whole[2..4].to_vec(),
                whole[4..].to_vec(),
            ]
        },
        &|whole| {
            let half = whole.len() / 2;
            vec![whole[..half].to_vec(), Vec::new(), whole[half..].to_vec()]
        },
    ];
    for (n, split) in splits.iter().enumerate() {
        let exchanges: Vec<_> = (0..3)
            .map(|i| exchange((n * 10 + i) as u8 + 1, "orders", T13))
            .collect();
        expected.extend(exchanges.clone());
        let message = batch(n as u64 + 1, exchanges).encode_to_vec();
        let answer = raw_push(&collector, split(framed(0, &message)), &[]).await;
        assert_eq!(
            (answer.code, answer.message.as_str()),
            (Code::Ok, ""),
            "split {n}"
        );
        assert_eq!(answer.ack, Some(PushAck { accepted: 3 }), "split {n}");
    }

    let one = batch(20, vec![exchange(99, "orders", T13)]).encode_to_vec();
    let refusals: Vec<Refusal<'_>> = vec![
        (
            vec![framed(1, &one)],
            &[],
            Code::Internal,
            "compressed-flag but no grpc-encoding",
        ),
        (
            vec![framed(2, &one)],
            &[],
            Code::Internal,
            "invalid compression flag: 2",
        ),
        (
            vec![framed(0, &one)],
            &[("grpc-encoding", "gzip")],
            Code::Unimplemented,
            "`gzip`",
        ),
        (
            [framed(0, &one), framed(0, &one)].to_vec(),
            &[],
            Code::Internal,
            "more than one message",
        ),
        (
            vec![framed(0, &one)[..one.len() / 2].to_vec()],
            &[],
            Code::Internal,
            "Unexpected EOF",
        ),
        (vec![vec![0, 0]], &[], Code::Internal, "Unexpected EOF"),
        (Vec::new(), &[], Code::Internal, "Missing request message"),
        (
            vec![framed(0, &vec![0; 64 * 1024 + 1])[..5].to_vec()],
            &[],
            Code::OutOfRange,
            "the limit is: 65536 bytes",
        ),
        (
            vec![framed(0, &[0xff; 12])],
            &[],
            Code::InvalidArgument,
            "failed to decode Protobuf message",
        ),
    ];
    for (chunks, headers, code, words) in refusals {
        let answer = raw_push(&collector, chunks, headers).await;
        assert_eq!(answer.code, code, "{words}: {}", answer.message);
        assert!(
            answer.message.contains(words),
            "{words}: {}",
            answer.message
        );
        assert_eq!(answer.ack, None);
    }
    // An identity encoding is no compression.
    let answer = raw_push(
        &collector,
        vec![framed(0, &one)],
        &[("grpc-encoding", "identity")],
    )
    .await;
    assert_eq!(
        answer.ack,
        Some(PushAck { accepted: 1 }),
        "{}",
        answer.message
    );
    expected.push(exchange(99, "orders", T13));

    let store = collector.store.clone();
    collector.stop().await.unwrap();
    assert_eq!(stored(&store.store).await, by_id(expected));
}
