//! The responder's fuzz targets (`fuzz/fuzz_targets/responder_*.rs`, run coverage-guided by
//! `./x fuzz`) as stable tests: each target's own property (the same file, included below)
//! over its checked-in corpus plus seeded mutations, so CI exercises them without a nightly
//! build. Crashes the campaign found are regression cases here.

#[path = "../../fuzz/properties/responder_chaos.rs"]
mod chaos;
#[path = "../../fuzz/properties/responder_match.rs"]
mod matching;
#[path = "../../fuzz/properties/smoke.rs"]
mod smoke;

#[test]
fn responder_chaos_fuzz_corpus_and_mutations() {
    const SPLICE: &[&[u8]] = &[
        b"\n",
        b"  ",
        b"- ",
        b": ",
        b"{",
        b"}",
        b"[",
        b"]",
        b"1e308",
        b"-1",
        b"0.5",
        b"kind: ",
        b"fixed_ms: ",
        b"probability: 1",
    ];
    for input in smoke::inputs("responder_chaos", 2000, 41, SPLICE) {
        chaos::check(&input);
    }
}

#[test]
fn responder_match_fuzz_corpus_and_mutations() {
    const SPLICE: &[&[u8]] = &[
        b"\x00",
        b"/",
        b"?",
        b"&",
        b"=",
        b"\n",
        b": ",
        b"{",
        b"}",
        b"\"",
        b"%",
        b"\x00\x00\x00\x00",
    ];
    for input in smoke::inputs("responder_match", 2000, 42, SPLICE) {
        matching::check(&input);
    }
}

/// Rules files whose latencies did not fit a `Duration`: accepted at start, then every request
/// they fired for panicked while planning its faults. Refused at start now.
#[test]
fn chaos_latencies_beyond_a_duration_are_refused_at_start() {
    for (text, accepted) in [
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, fixed_ms: 1e300}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, uniform_ms: [0, 1e300]}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, normal_ms: {mean: 1, stddev: 1e300}}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, recorded_factor: 1e30}\n",
            false,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, fixed_ms: 86400000}\n",
            true,
        ),
        (
            "version: 1\nrules:\n  - probability: 1\n    fault: {kind: latency, recorded_factor: 1000}\n",
            true,
        ),
    ] {
        let parsed = tapedeck_responder::chaos::parse_rules(text);
        assert_eq!(parsed.is_ok(), accepted, "{text}: {parsed:?}");
        chaos::check(text.as_bytes());
    }
}
