//! Shared test helpers: the fixture, header builders, a deterministic generator.

use tapedeck_har::{ImportOptions, parse, to_exchanges};
use tapedeck_proto::{Direction, Exchange, Header};

/// The browser-like HAR in `tests/fixtures/browser.har`.
pub(crate) const BROWSER_HAR: &[u8] = include_bytes!("fixtures/browser.har");

pub(crate) fn header(name: &str, value: impl AsRef<[u8]>) -> Header {
    Header {
        name: name.into(),
        value: value.as_ref().to_vec(),
    }
}

pub(crate) fn options() -> ImportOptions {
    ImportOptions {
        service: "storefront".into(),
        namespace: Some("shop".into()),
        direction: Direction::Inbound,
        id_seed: Some(42),
    }
}

/// Exchanges → HAR JSON text → exchanges, asserting the trip has no diagnostics.
pub(crate) fn through_har(exchanges: &[Exchange]) -> Vec<Exchange> {
    let json = tapedeck_har::to_json(&tapedeck_har::from_exchanges(exchanges, "tapedeck-test"));
    let har = parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let (back, diagnostics) = to_exchanges(&har, &ImportOptions::new("ignored"));
    assert_eq!(diagnostics, vec![], "{json}");
    back
}

/// How many entries the diagnostics say were skipped.
pub(crate) fn skipped(diagnostics: &[tapedeck_har::Diagnostic]) -> usize {
    let mut entries: Vec<_> = diagnostics
        .iter()
        .filter(|d| d.skipped)
        .map(|d| d.entry)
        .collect();
    entries.dedup();
    entries.len()
}

/// A small deterministic generator (splitmix64): the same seed gives the same values.
#[derive(Debug)]
pub(crate) struct Gen(u64);

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        Gen(seed)
    }

    pub(crate) fn u64(&mut self) -> u64 {
        tapedeck_proto::splitmix64(&mut self.0)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn bytes(&mut self, max: u64) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.u64() as u8).collect()
    }

    /// Text from a varied alphabet: ASCII, punctuation, quotes, escapes, accents, CJK, emoji.
    pub(crate) fn text(&mut self, max: u64) -> String {
        const ALPHABET: &[&str] = &[
            "a", "Z", "0", "-", "_", " ", "\"", "\\", "/", "{", "}", ":", ",", "é", "中", "🎞",
            "\t", "\n", "=", ";",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| self.pick(ALPHABET)).collect()
    }

    /// Text that can stand in a URL path or query (no whitespace, `#` or controls).
    pub(crate) fn url_text(&mut self, max: u64) -> String {
        const ALPHABET: &[&str] = &[
            "a", "b", "Z", "9", "-", "_", ".", "~", "%20", "%2F", "+", "é", "中", "!", "$", "'",
            "(", ")", "*", ",", ";", ":", "@",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| self.pick(ALPHABET)).collect()
    }
}
