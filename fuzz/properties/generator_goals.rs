//! Property of the `generator_goals` fuzz target, shared with its stable smoke test
//! (`generator/tests/fuzz_smoke.rs` includes this file).
//!
//! Any text is a `--goal` (comparative goal, `verdict::goal::parse`) and a `--slo` spec
//! (`slo::parse`), as the user writes them on the command line. Never a panic; an accepted
//! goal's numbers are finite, its confidence within the documented 50 %–99.99 %; a goal's
//! normalised text parses to the same goal (the report prints that text, and users copy it
//! back); each accepted SLO goal's text parses to the same goal.

use tapedeck_generator::{slo, verdict::goal};

/// The property; panics when it does not hold.
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A spec naming a file reads the file; fuzzed text must not read the fuzz corpus.
    if std::path::Path::new(text.as_ref()).exists() {
        return;
    }
    if let Ok(parsed) = goal::parse(&text) {
        assert!(
            parsed.tolerance.is_finite(),
            "{text:?}: tolerance {}",
            parsed.tolerance
        );
        assert!(
            (0.5..=0.9999).contains(&parsed.confidence),
            "{text:?}: confidence {}",
            parsed.confidence
        );
        if let goal::Metric::Quantile(q) = parsed.metric {
            assert!(q > 0.0 && q < 1.0, "{text:?}: quantile {q}");
        }
        let again = goal::parse(&parsed.text).unwrap_or_else(|e| {
            panic!("{text:?} normalised to {:?}, which fails: {e}", parsed.text)
        });
        assert_eq!(
            again, parsed,
            "{text:?}: its normalised text is another goal"
        );
    }
    if let Ok(goals) = slo::parse(&text) {
        for parsed in goals {
            assert!(!parsed.threshold.is_nan(), "{text:?}: threshold NaN");
            if std::path::Path::new(&parsed.text).exists() {
                continue;
            }
            let again = slo::parse(&parsed.text)
                .unwrap_or_else(|e| panic!("{text:?}: goal {:?} fails alone: {e}", parsed.text));
            assert_eq!(
                again,
                vec![parsed],
                "{text:?}: a goal's text is another goal"
            );
        }
    }
}
