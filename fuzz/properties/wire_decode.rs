//! Property of the `wire_decode` fuzz target, shared with its stable smoke test
//! (`proto/tests/wire.rs` includes this file).
//!
//! Any bytes are decoded twice, as the collector's push path did and does: by prost
//! (`ExchangeBatch::decode`, then `arrow::to_record_batch` of the exchanges) and in place
//! (`wire::BatchRef::parse_all` into `arrow::ExchangesBuilder`, no `Exchange` built). Both must
//! refuse the same inputs, and for an accepted input give the same batch fields, the same
//! exchanges and the same Arrow rows.

use tapedeck_proto::ExchangeBatch;
use tapedeck_proto::arrow::{ExchangesBuilder, to_record_batch};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::wire::BatchRef;

/// The property; panics when it does not hold. Returns whether the bytes were a batch.
pub(crate) fn check(data: &[u8]) -> bool {
    let expected = ExchangeBatch::decode(data);
    let mut exchanges = Vec::new();
    let mut rows = ExchangesBuilder::with_capacity(0);
    let actual = BatchRef::parse_all(data, |_, view| {
        exchanges.push(view.to_exchange());
        rows.append(view)
            .expect("a decoded exchange appends as a row");
    });
    let (expected, actual) = match (expected, actual) {
        (Err(_), Err(error)) => {
            assert!(
                error
                    .to_string()
                    .starts_with("failed to decode Protobuf message"),
                "{error}"
            );
            return false;
        }
        (Ok(expected), Ok(actual)) => (expected, actual),
        (expected, actual) => panic!("prost: {expected:?}, in place: {actual:?}"),
    };
    let actual = ExchangeBatch {
        exchanges,
        filter_version: actual.filter_version.to_string(),
        sequence: actual.sequence,
        dropped_since_last: actual.dropped_since_last,
        sent_unix_nanos: actual.sent_unix_nanos,
    };
    // As text: a NaN sample rate is not equal to itself.
    assert_eq!(
        format!("{actual:?}"),
        format!("{expected:?}"),
        "the same batch"
    );
    let rows = rows.finish().expect("rows finish");
    let old = to_record_batch(&expected.exchanges).expect("prost's exchanges convert");
    assert_eq!(format!("{rows:?}"), format!("{old:?}"), "the same rows");
    true
}
