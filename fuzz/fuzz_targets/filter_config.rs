//! The filter's plugin configuration (the `configuration` of the WasmPlugin / EnvoyFilter):
//! any bytes parse to a config or an error, never a panic; an accepted config builds a redactor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_filter::config::Config;
use tapedeck_filter::redact::Redactor;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::parse(data) {
        let redactor = Redactor::new(&config);
        let _ = config.redacted_headers();
        let _ = redactor.json_body(br#"{"password": "x", "card": "4111111111111111"}"#);
    }
});
