//! The collector's read-only SQL surface: any statement through `QueryEngine` under its limits. The property is in `fuzz/properties/collector_sql.rs`,
//! shared with the stable smoke test in `collector/tests/lib/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/collector_sql.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    property::check(data);
});
