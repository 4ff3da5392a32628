//! Property of the `generator_secrets` fuzz target, shared with its stable smoke test
//! (`generator/tests/fuzz_smoke.rs` includes this file).
//!
//! Any text is a `--secrets` file (`secrets::parse`: `MARKER=VALUE` lines). Never a panic; an
//! accepted file maps only redaction markers, each to the rest of its line verbatim: every
//! entry is found as a line `MARKER=VALUE` (blanks around the marker allowed, a trailing `\r`
//! dropped).

use tapedeck_generator::secrets;

/// The property; panics when it does not hold.
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(map) = secrets::parse(&text) else {
        return;
    };
    for (marker, value) in &map {
        assert!(
            marker.starts_with("tapedeck-redacted:"),
            "{marker:?} is not a marker"
        );
        assert!(!marker.contains('='), "{marker:?} holds '='");
        let found = text.lines().any(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            line.split_once('=')
                .is_some_and(|(m, v)| m.trim() == marker && v == value)
        });
        assert!(found, "{marker:?} = {value:?} is not a line of the file");
    }
}
