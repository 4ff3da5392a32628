//! HAR import: any bytes through the streaming reader `tapedeck import har` uses, and through
//! `parse` + `to_exchanges`. Neither may panic; both must agree; when the file is accepted, every
//! entry is either an exchange or skipped with a diagnostic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_har::{Event, ImportOptions, parse, stream, to_exchanges};

fuzz_target!(|data: &[u8]| {
    let options = ImportOptions {
        id_seed: Some(1),
        ..ImportOptions::new("fuzz")
    };
    let mut exchanges = Vec::new();
    let mut diagnostics = Vec::new();
    let streamed = stream(data, &options, |event| match event {
        Event::Exchange(exchange) => exchanges.push(*exchange),
        Event::Diagnostic(diagnostic) => diagnostics.push(diagnostic),
    });
    match (streamed, parse(data)) {
        (Ok(summary), Ok(har)) => {
            assert_eq!(summary.entries, har.log.entries.len());
            assert_eq!(summary.imported + summary.skipped, summary.entries);
            let (whole, whole_diagnostics) = to_exchanges(&har, &options);
            assert_eq!(whole, exchanges);
            assert_eq!(whole_diagnostics, diagnostics);
        }
        (Err(_), Err(_)) => {}
        (streamed, parsed) => panic!(
            "stream and parse disagree: {:?} / {:?}",
            streamed.map(|s| s.entries),
            parsed.map(|h| h.log.entries.len())
        ),
    }
});
