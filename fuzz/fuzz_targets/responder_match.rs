//! The responder's request matching: arbitrary requests (host, method, path, headers, body,
//! gRPC included) against the fixture snapshot, through matching and the served response. The property is in `fuzz/properties/responder_match.rs`, shared with the
//! stable smoke test in `responder/tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../properties/responder_match.rs"]
mod property;

libfuzzer_sys::fuzz_target!(|data: &[u8]| property::check(data));
