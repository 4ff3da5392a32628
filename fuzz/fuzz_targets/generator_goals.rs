//! The generator's goal specs: `--goal` (comparative goals) and `--slo`. The property is in `fuzz/properties/generator_goals.rs`, shared with the
//! stable smoke test in `generator/tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/generator_goals.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
