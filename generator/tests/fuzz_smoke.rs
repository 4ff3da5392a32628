//! The generator's fuzz targets (`fuzz/fuzz_targets/generator_*.rs`, run coverage-guided by
//! `./x fuzz`) as stable tests: each target's own property (the same file, included below)
//! over its checked-in corpus plus seeded mutations, so CI exercises them without a nightly
//! build. Crashes the campaign found are regression cases here.

#[path = "../../fuzz/properties/generator_goals.rs"]
mod goals;
#[path = "../../fuzz/properties/generator_noise.rs"]
mod noise;
#[path = "../../fuzz/properties/generator_secrets.rs"]
mod secrets;
#[path = "../../fuzz/properties/smoke.rs"]
mod smoke;

const JSON_SPLICE: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"-1",
    b"1e999",
    b"0.5",
    b",",
    b":",
    b"\"$\"",
    b"\"body\"",
    b"\"*\"",
];

#[test]
fn generator_noise_fuzz_corpus_and_mutations() {
    for input in smoke::inputs("generator_noise", 1500, 31, JSON_SPLICE) {
        noise::check(&input);
    }
}

#[test]
fn generator_goals_fuzz_corpus_and_mutations() {
    const SPLICE: &[&[u8]] = &[
        b"+",
        b"-",
        b"%",
        b"pp",
        b"@",
        b".",
        b"9",
        b"99.99999",
        b"1e9",
        b",",
        b"\n",
        b"#",
        b"<=",
        b"ms",
    ];
    for input in smoke::inputs("generator_goals", 4000, 32, SPLICE) {
        goals::check(&input);
    }
}

#[test]
fn generator_secrets_fuzz_corpus_and_mutations() {
    const SPLICE: &[&[u8]] = &[b"=", b"\n", b"\r", b"#", b" ", b"tapedeck-redacted:"];
    for input in smoke::inputs("generator_secrets", 3000, 33, SPLICE) {
        secrets::check(&input);
    }
}

/// Goals the fuzzing campaign found whose normalised text (what reports print) was another goal
/// or no goal at all: `p99.99999` printed as `p100`, which is refused (smoke layer); a tolerance
/// of `977777777779%` printed with float noise in its 4th decimal (libFuzzer, 20 s in).
#[test]
fn goals_found_by_fuzzing_parse_back_from_their_text() {
    for spec in [
        "p99.99999+10%@95%",
        "p99.99995 +10%",
        "p50 +10.00001% @ 95.00001%",
        "rps 12.345678%",
        "errors +0.000001pp @ 0.999",
        "p52 977777777779%",
        "p99 +100000.00004%",
    ] {
        goals::check(spec.as_bytes());
    }
    let goal = tapedeck_generator::verdict::goal::parse("p99.99999 +10%");
    assert!(
        goal.is_err(),
        "p99.99999 is p100 at the precision goals keep: {goal:?}"
    );
}
