//! Snapshot read + validate (`tapedeck_analyzer::snapshot::read`): the fuzzed bytes are split
//! into `snapshot.json`, `inbound.jsonl` and `outbound.jsonl` of a snapshot directory. Reading
//! never panics; it returns a snapshot or a validation error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut parts = data.splitn(3, |&b| b == 0);
    for name in ["snapshot.json", "inbound.jsonl", "outbound.jsonl"] {
        std::fs::write(dir.path().join(name), parts.next().unwrap_or_default())
            .expect("writing a snapshot file");
    }
    let _ = tapedeck_analyzer::snapshot::read(dir.path());
});
