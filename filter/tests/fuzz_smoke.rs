//! The fuzz targets `filter_config` and `filter_redact` (fuzz/, run coverage-guided by
//! `./x fuzz`) as a stable test: their properties over the checked-in corpus plus a few
//! thousand seeded byte mutations of it, so CI exercises them without a nightly instrumented
//! build.

use std::path::Path;

use tapedeck_filter::config::Config;
use tapedeck_filter::redact::Redactor;

/// splitmix64: the same seed gives the same mutations.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        tapedeck_proto::splitmix64(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Each corpus input, then `rounds` mutations (byte flips, JSON-ish splices, truncations).
fn inputs(target: &str, rounds: usize, seed: u64) -> Vec<Vec<u8>> {
    const SPLICE: &[&[u8]] = &[
        b"\"", b"{", b"}", b"[", b"]", b"null", b"-1", b"1e999", b"\\u0000", b"\xff", b",", b":",
    ];
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    let mut g = Gen(seed);
    let mut out = seeds.clone();
    for _ in 0..rounds {
        let mut bytes = seeds[g.below(seeds.len())].clone();
        for _ in 0..=g.below(3) {
            let at = g.below(bytes.len() + 1);
            match g.below(3) {
                0 => bytes.truncate(at),
                1 => {
                    let splice = SPLICE[g.below(SPLICE.len())];
                    bytes.splice(at..at, splice.iter().copied());
                }
                _ => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b = g.next() as u8;
                    }
                }
            }
        }
        out.push(bytes);
    }
    out
}

#[test]
fn filter_config_fuzz_corpus_and_mutations() {
    let mut accepted = 0;
    for input in inputs("filter_config", 3000, 12) {
        if let Ok(config) = Config::parse(&input) {
            accepted += 1;
            let redactor = Redactor::new(&config);
            let _ = config.redacted_headers();
            let _ = redactor.json_body(br#"{"password": "x", "card": "4111111111111111"}"#);
        }
    }
    assert!(accepted >= 2, "the corpus configs parse");
}

#[test]
fn filter_redact_fuzz_corpus_and_mutations() {
    let redactor =
        Redactor::new(&Config::parse(br#"{"version": 1, "collector": {"cluster": "c"}}"#).unwrap());
    for input in inputs("filter_redact", 3000, 13) {
        let _ = redactor.json_body(&input);
        let _ = redactor.path(&String::from_utf8_lossy(&input));
        let _ = redactor.token(&input);
        let redacted = redactor.header_value("authorization", &input);
        // A JWT keeps its header and claims by design (the signature is what is redacted).
        if input.len() > 16 && !input.contains(&b'.') {
            assert!(
                !redacted.windows(input.len()).any(|w| w == input.as_slice()),
                "an authorization value survived redaction: {input:?}"
            );
        }
    }
}
