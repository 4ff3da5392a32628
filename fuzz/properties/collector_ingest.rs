//! Property of the `collector_ingest` fuzz target, shared with its stable smoke test
//! (`collector/tests/lib/fuzz_smoke.rs` includes this file).
//!
//! Any bytes are decoded as the `ExchangeBatch` the `Capture` service receives and checked by
//! the service's own `ingest::validate`. A batch it accepts is appended to the write-ahead log
//! and inserted into the buffer before the push is acknowledged, and replayed from the log into
//! the buffer on every start; so for an accepted batch:
//! - its log payload (the re-encoded batch) decodes and validates again (replay cannot refuse
//!   it);
//! - `Buffer::insert` succeeds (an acknowledged batch that cannot be buffered would stop the
//!   collector from starting, since replay stops at the first error), one row per exchange;
//! - what the buffer holds reads back as the exchanges that were acknowledged: id, time,
//!   service, method, path, status, headers, bodies and redactions, in order per partition.

use tapedeck_collector::buffer::Buffer;
use tapedeck_collector::ingest::validate;
use tapedeck_collector::layout::PartitionKey;
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{Exchange, ExchangeBatch};

/// What a query shows of an exchange, lossless for an accepted exchange.
fn visible(exchange: &Exchange) -> impl PartialEq + std::fmt::Debug {
    let message = |m: &Option<tapedeck_proto::Message>| {
        let m = m.clone().unwrap_or_default();
        let fields = |f: &[tapedeck_proto::Header]| {
            f.iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect::<Vec<_>>()
        };
        (
            fields(&m.headers),
            m.body,
            m.body_truncated,
            fields(&m.trailers),
        )
    };
    (
        exchange.id.clone(),
        exchange.start_unix_nanos,
        (
            exchange.direction,
            exchange.protocol,
            exchange.workload.clone(),
        ),
        (
            exchange.method.clone(),
            exchange.path.clone(),
            exchange.status,
        ),
        message(&exchange.request),
        message(&exchange.response),
        exchange.redactions.clone(),
    )
}

/// The property; panics when it does not hold. Returns whether the batch was accepted.
pub(crate) fn check(data: &[u8]) -> bool {
    let Ok(batch) = ExchangeBatch::decode(data) else {
        return false;
    };
    if validate(&batch).is_err() {
        return false;
    }
    let payload = batch.encode_to_vec();
    let replayed = ExchangeBatch::decode(payload.as_slice()).expect("a log payload decodes");
    assert_eq!(
        replayed, batch,
        "the log payload replays as the accepted batch"
    );
    validate(&replayed).expect("a replayed batch validates again");

    let buffer = Buffer::new();
    buffer
        .insert(&replayed.exchanges)
        .expect("an accepted batch fits the buffer's Arrow schema");
    assert_eq!(buffer.open_rows(), batch.exchanges.len());

    let mut stored = Vec::new();
    for (key, record_batch) in buffer.snapshot().open {
        let exchanges = tapedeck_proto::arrow::from_record_batch(&record_batch)
            .expect("buffered rows read back");
        for exchange in exchanges {
            assert_eq!(
                PartitionKey::of(&exchange),
                key,
                "a row is in its partition"
            );
            stored.push(exchange);
        }
    }
    // The buffer groups by partition, keeping arrival order within each.
    let mut acknowledged: Vec<&Exchange> = batch.exchanges.iter().collect();
    acknowledged.sort_by_key(|e| PartitionKey::of(e));
    assert_eq!(stored.len(), acknowledged.len());
    for (stored, acknowledged) in stored.iter().zip(acknowledged) {
        assert_eq!(
            visible(stored),
            visible(acknowledged),
            "stored = acknowledged"
        );
    }
    true
}
