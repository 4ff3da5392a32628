//! Property of the `generator_noise` fuzz target, shared with its stable smoke test
//! (`generator/tests/fuzz_smoke.rs` includes this file).
//!
//! Any bytes are a `--noise` file, read by `tapedeck_generator::noise::read` against a fixed
//! snapshot's endpoints. Never a panic; an accepted file's comparators all build; and since
//! every run writes its noise file back (`DIR/noise.json`) to be passed to the next with
//! `--noise`, an accepted file written by `noise::write` reads back equal.

use std::collections::BTreeMap;

use tapedeck_generator::noise;

/// The property; panics when it does not hold.
pub(crate) fn check(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("noise.json");
    std::fs::write(&path, data).expect("writing the noise file");
    let fields: BTreeMap<String, usize> = [
        ("GET /orders/{id}".to_owned(), 9),
        ("POST /orders".to_owned(), 6),
        ("GET /items/{id}".to_owned(), 9),
    ]
    .into_iter()
    .collect();
    let Ok(file) = noise::read(&path, &fields) else {
        return;
    };
    for comparator in &file.comparators {
        noise::to_comparator(comparator).expect("an accepted comparator builds");
    }
    assert_eq!(noise::file_sets(&file).len(), file.comparators.len());
    let written = dir.path().join("written.json");
    noise::write(&file, &written).expect("writing an accepted noise file");
    let again = noise::read(&written, &fields).expect("a written noise file reads back");
    assert_eq!(
        again, file,
        "a noise file changed on its way through write and read"
    );
}
