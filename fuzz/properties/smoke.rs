//! The stable smoke layer of the fuzz targets whose property lives in `fuzz/properties/`: the
//! checked-in corpus of a target plus seeded byte mutations of it, to run the target's property
//! over in a plain `#[test]` (CI runs no instrumented build). Included by the smoke tests with
//! `#[path]`; the crate including it must be one folder below the repository root.

use std::path::Path;

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

/// The checked-in corpus of `target`, in file name order.
pub(crate) fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("reading a corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    seeds
}

/// Each corpus input, then `rounds` mutations of them (truncations, splices of `splice`
/// tokens and of other inputs' bytes, byte changes), the same for the same `seed`.
pub(crate) fn inputs(target: &str, rounds: usize, seed: u64, splice: &[&[u8]]) -> Vec<Vec<u8>> {
    let seeds = corpus(target);
    let mut g = Gen(seed);
    let mut out = seeds.clone();
    for _ in 0..rounds {
        let mut bytes = seeds[g.below(seeds.len())].clone();
        for _ in 0..=g.below(3) {
            let at = g.below(bytes.len() + 1);
            match g.below(5) {
                0 => bytes.truncate(at),
                1 if !splice.is_empty() => {
                    let token = splice[g.below(splice.len())];
                    bytes.splice(at..at, token.iter().copied());
                }
                2 => {
                    let other = &seeds[g.below(seeds.len())];
                    let from = g.below(other.len() + 1);
                    let to = (from + g.below(64)).min(other.len());
                    bytes.splice(at..at, other[from..to].iter().copied());
                }
                3 => {
                    let end = (at + 1 + g.below(8)).min(bytes.len());
                    bytes.drain(at..end);
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
