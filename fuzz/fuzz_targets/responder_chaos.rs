//! The responder's chaos rules file: parsed, compiled against the fixture snapshot and
//! planned for requests. The property is in `fuzz/properties/responder_chaos.rs`, shared with the
//! stable smoke test in `responder/tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/responder_chaos.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
