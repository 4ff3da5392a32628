//! The filter's redaction of what crosses the proxy: request paths, header values and bodies
//! (JSON or not) with the default config. Never a panic; redacted output never contains a
//! secret header's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_filter::config::Config;
use tapedeck_filter::redact::Redactor;

fuzz_target!(|data: &[u8]| {
    static REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    let redactor = REDACTOR.get_or_init(|| {
        Redactor::new(
            &Config::parse(br#"{"version": 1, "collector": {"cluster": "c"}}"#)
                .expect("the minimal config is valid"),
        )
    });
    let _ = redactor.json_body(data);
    let text = String::from_utf8_lossy(data);
    let _ = redactor.path(&text);
    let _ = redactor.token(data);
    let redacted = redactor.header_value("authorization", data);
    if data.len() > 16 {
        assert!(
            !redacted.windows(data.len()).any(|w| w == data),
            "an authorization value survived redaction"
        );
    }
});
