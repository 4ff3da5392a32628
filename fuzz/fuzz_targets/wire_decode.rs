//! The collector's in-place decoder of pushes (`tapedeck_proto::wire`) against prost on any
//! bytes: the same refusals, the same batch and the same Arrow rows. The property is in
//! `fuzz/properties/wire_decode.rs`, shared with the stable smoke test in `proto/tests/wire.rs`.
#![no_main]

#[path = "../properties/wire_decode.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    property::check(data);
});
