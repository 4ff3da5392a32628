//! HAR as real tools write it: one fixture per deviation from HAR 1.2 (tests/fixtures/deviations),
//! each imported through the streaming reader `tapedeck import har` uses, and through
//! `parse` + `to_exchanges`, which must agree.

use tapedeck_har::{Diagnostic, Event, ImportOptions, parse, stream, to_exchanges};
use tapedeck_proto::Exchange;

use crate::support::skipped;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/deviations/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Imports a fixture both ways; returns the exchanges and the diagnostics as text.
fn import(name: &str) -> (Vec<Exchange>, Vec<String>) {
    let bytes = fixture(name);
    let options = ImportOptions {
        id_seed: Some(7),
        ..ImportOptions::new("web")
    };
    let mut exchanges = Vec::new();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let summary = stream(bytes.as_slice(), &options, |event| match event {
        Event::Exchange(exchange) => exchanges.push(*exchange),
        Event::Diagnostic(diagnostic) => diagnostics.push(diagnostic),
    })
    .unwrap_or_else(|e| panic!("{name} was refused: {e}"));
    assert_eq!(summary.imported, exchanges.len());
    assert_eq!(summary.skipped, skipped(&diagnostics));
    assert_eq!(summary.diagnostics, diagnostics.len());
    let har = parse(&bytes).unwrap();
    let (whole, whole_diagnostics) = to_exchanges(&har, &options);
    assert_eq!(whole, exchanges, "{name}: stream and parse disagree");
    assert_eq!(
        whole_diagnostics, diagnostics,
        "{name}: stream and parse disagree"
    );
    (
        exchanges,
        diagnostics.iter().map(ToString::to_string).collect(),
    )
}

fn header<'e>(message: &'e tapedeck_proto::Message, name: &str) -> Vec<&'e [u8]> {
    message
        .headers
        .iter()
        .filter(|h| h.name == name)
        .map(|h| h.value.as_slice())
        .collect()
}

#[test]
fn an_object_in_post_data_params_imports_the_whole_file() {
    let (exchanges, diagnostics) = import("params-object-value.har");
    assert_eq!(exchanges.len(), 2);
    assert_eq!(
        diagnostics,
        [
            "log.entries[1].request.postData.params[1].value: invalid type: map, expected a string; kept as its JSON text"
        ]
    );
    let body = &exchanges[1].request.as_ref().unwrap().body;
    // serde_json orders keys as written or sorted, depending on its features in the build.
    let body = String::from_utf8_lossy(body);
    assert!(
        [
            "q=shoes&filter=%7B%22color%22%3A%22red%22%2C%22size%22%3A%5B42%2C43%5D%7D",
            "q=shoes&filter=%7B%22size%22%3A%5B42%2C43%5D%2C%22color%22%3A%22red%22%7D"
        ]
        .contains(&body.as_ref()),
        "{body}"
    );
}

#[test]
fn non_string_values_are_kept_as_json_text() {
    let (exchanges, diagnostics) = import("non-string-values.har");
    assert_eq!(exchanges.len(), 1);
    let mut paths: Vec<&str> = diagnostics
        .iter()
        .map(|d| d.split(':').next().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "log.entries[0]._resourceType",
            "log.entries[0].request.cookies[0].value",
            "log.entries[0].request.headers[2].value",
            "log.entries[0].response.content.mimeType",
            "log.entries[0].serverIPAddress",
        ]
    );
    assert!(
        diagnostics
            .iter()
            .all(|d| d.ends_with("kept as its JSON text")),
        "{diagnostics:?}"
    );
    let exchange = &exchanges[0];
    let request = exchange.request.as_ref().unwrap();
    assert_eq!(header(request, "x-retry"), [b"3".as_slice()]);
    assert_eq!(header(request, "x-debug"), [b"true".as_slice()]);
    assert_eq!(header(request, "x-tags"), [br#"["a","b"]"#.as_slice()]);
    assert_eq!(header(request, "cookie"), [br#"sid={"v":1}"#.as_slice()]);
    assert_eq!(exchange.status, 200);
    assert_eq!(exchange.path, "/v1/items?page=2");
}

#[test]
fn missing_required_fields_are_filled_and_named() {
    let (exchanges, diagnostics) = import("missing-required.har");
    assert_eq!(
        diagnostics,
        [
            "log.entries[0].startedDateTime: missing; 1970-01-01T00:00:00Z is used",
            "log.entries[0].request.method: missing; read as GET",
            "log.entries[1].request.method: missing; read as POST",
        ]
    );
    let methods: Vec<&str> = exchanges.iter().map(|e| e.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST", "GET"]);
    assert!(
        exchanges
            .iter()
            .all(|e| e.status == 0 && e.duration_nanos == 0)
    );
    assert_eq!(exchanges[1].request.as_ref().unwrap().body, br#"{"qty":1}"#);
}

#[test]
fn minus_one_and_absent_sizes_mean_the_captured_length() {
    let (exchanges, diagnostics) = import("sizes.har");
    assert_eq!(diagnostics, Vec::<String>::new());
    let sizes: Vec<(u64, bool, u64, bool)> = exchanges
        .iter()
        .map(|e| {
            let (q, r) = (e.request.as_ref().unwrap(), e.response.as_ref().unwrap());
            (q.body_size, q.body_truncated, r.body_size, r.body_truncated)
        })
        .collect();
    assert_eq!(
        sizes,
        [
            (5, false, 5, false),
            (0, false, 7, false),
            (0, false, 100_000, true)
        ]
    );
}

#[test]
fn base64_without_encoding_is_decoded_when_size_and_type_say_so() {
    let (exchanges, diagnostics) = import("base64-unmarked.har");
    assert_eq!(
        diagnostics,
        [
            r#"log.entries[0].response.content.text: base64 of 70 bytes of "image/png" without `encoding`; decoded"#
        ]
    );
    let bodies: Vec<&[u8]> = exchanges
        .iter()
        .map(|e| e.response.as_ref().unwrap().body.as_slice())
        .collect();
    assert_eq!(
        bodies[0], bodies[1],
        "unmarked and marked base64 read alike"
    );
    assert!(bodies[0].starts_with(b"\x89PNG"));
    assert_eq!(
        bodies[2], b"abcd",
        "text that happens to be base64 stays text"
    );
}

#[test]
fn http2_pseudo_headers_become_the_request_line_not_headers() {
    let (exchanges, diagnostics) = import("http2-pseudo-headers.har");
    assert_eq!(
        diagnostics,
        [
            r#"log.entries[1].request.url: "/v1/relative" is not an absolute URL (expected scheme://host/path); read as https://api.example.com:8443/v1/relative from the headers"#
        ]
    );
    let lines: Vec<(&str, &str, &str)> = exchanges
        .iter()
        .map(|e| (e.scheme.as_str(), e.authority.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("https", "api.example.com", "/v1/me"),
            ("https", "api.example.com:8443", "/v1/relative")
        ]
    );
    for exchange in &exchanges {
        for message in [&exchange.request, &exchange.response] {
            let message = message.as_ref().unwrap();
            assert!(message.headers.iter().all(|h| !h.name.starts_with(':')));
        }
    }
}

#[test]
fn duplicate_headers_keep_their_order_and_the_first_host_wins() {
    let (exchanges, diagnostics) = import("duplicate-headers.har");
    assert_eq!(diagnostics, Vec::<String>::new());
    let exchange = &exchanges[0];
    assert_eq!(exchange.authority, "api.example.com");
    let request = exchange.request.as_ref().unwrap();
    assert_eq!(
        header(request, "accept"),
        [b"text/html".as_slice(), b"application/json".as_slice()]
    );
    assert_eq!(header(request, "x-forwarded-for").len(), 2);
    let response = exchange.response.as_ref().unwrap();
    assert_eq!(
        header(response, "set-cookie"),
        [b"a=1".as_slice(), b"b=2".as_slice()]
    );
    assert_eq!(
        header(response, "vary"),
        [b"Accept".as_slice(), b"Origin".as_slice()]
    );
}

#[test]
fn custom_fields_anywhere_and_comments_of_any_type_are_read_past() {
    let (exchanges, diagnostics) = import("custom-fields-and-comments.har");
    let mut paths: Vec<&str> = diagnostics
        .iter()
        .map(|d| d.split(':').next().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "log.entries[0].request.comment",
            "log.entries[0].request.postData.comment",
            "log.pages[0].comment",
        ]
    );
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert_eq!((exchange.method.as_str(), exchange.status), ("POST", 200));
    assert_eq!(exchange.request.as_ref().unwrap().body, br#"{"a": 1}"#);
}

#[test]
fn only_not_json_or_no_entries_refuses_a_file() {
    let options = ImportOptions::new("web");
    for (text, path) in [
        (&b"not json"[..], "document"),
        (br#"{"log": {"version": "1.2"}}"#, "log"),
        (br#"{"log": {"entries": null}}"#, "log.entries"),
        (br#"[{"log": {"entries": []}}]"#, "document"),
        (
            br#"{"log": {"entries": [{"request": {}}, {"#,
            "log.entries[1]",
        ),
    ] {
        let error = stream(text, &options, |_| {}).unwrap_err();
        assert!(
            error.to_string().starts_with(path),
            "{}: {error}",
            String::from_utf8_lossy(text)
        );
        assert!(parse(text).is_err());
    }
}
