//! The generator's `--secrets` file (`MARKER=VALUE` lines). The property is in `fuzz/properties/generator_secrets.rs`, shared with the
//! stable smoke test in `generator/tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/generator_secrets.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
