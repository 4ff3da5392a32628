//! What the collector's Capture service receives: protobuf `ExchangeBatch` bytes from any
//! filter (or anyone who can reach the port). Decoding never panics, and a decoded batch
//! re-encodes to bytes that decode to the same batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tapedeck_proto::ExchangeBatch;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = ExchangeBatch::decode(data) {
        let again = ExchangeBatch::decode(batch.encode_to_vec().as_slice())
            .expect("a re-encoded batch decodes");
        assert_eq!(batch, again);
    }
});
