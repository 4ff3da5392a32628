//! The collector's ingest: an `ExchangeBatch` decoded and checked by `ingest::validate`, then
//! logged and buffered as an accepted push is. The property is in `fuzz/properties/collector_ingest.rs`,
//! shared with the stable smoke test in `collector/tests/lib/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/collector_ingest.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    property::check(data);
});
