//! The collector's write-ahead log recovery: torn and corrupted segments and flush intents
//! through `wal::resolve_intents` and `Wal::open`. The property is in `fuzz/properties/collector_wal.rs`,
//! shared with the stable smoke test in `collector/tests/lib/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/collector_wal.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    property::check(data);
});
