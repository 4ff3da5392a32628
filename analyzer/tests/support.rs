//! Shared test helpers: golden files.

use std::path::PathBuf;

/// Where golden files live.
pub(crate) fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the checked-in golden file `tests/golden/<name>`. With
/// `TAPEDECK_BLESS=1` in the environment it (re)writes the file instead, so a reviewer sees the
/// change in the diff.
pub(crate) fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("TAPEDECK_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden files are in a folder"))
            .expect("creating the golden folder");
        std::fs::write(&path, actual).expect("writing the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with TAPEDECK_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map_or_else(
                || expected.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the output at line {line} (TAPEDECK_BLESS=1 rewrites it after review)\n--- expected line: {:?}\n--- actual line:   {:?}",
            path.display(),
            expected.lines().nth(line - 1),
            actual.lines().nth(line - 1),
        );
    }
}
