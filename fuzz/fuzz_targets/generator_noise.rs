//! The generator's `--noise` file: read, checked against fixed endpoints, written back. The property is in `fuzz/properties/generator_noise.rs`, shared with the
//! stable smoke test in `generator/tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/generator_noise.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
