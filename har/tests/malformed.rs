//! Bad input: documents that cannot be read fail with a path, line and column; entries that
//! cannot be converted yield diagnostics while the others import.

use tapedeck_har::{HarError, ImportOptions, parse, to_exchanges};

fn json_error(text: &str) -> (String, String, usize, usize) {
    match parse(text.as_bytes()) {
        Err(HarError::Json {
            path,
            message,
            line,
            column,
        }) => (path, message, line, column),
        other => panic!("{text}: expected a JSON error, got {other:?}"),
    }
}

#[test]
fn not_json_is_an_error_at_the_document() {
    let (path, message, line, column) = json_error("not json");
    assert_eq!((path.as_str(), line, column), ("document", 1, 2));
    assert_eq!(message, "expected ident");
    let error = parse(b"").unwrap_err();
    assert_eq!(
        error.to_string(),
        "document: EOF while parsing a value (line 1, column 0)"
    );
}

#[test]
fn a_missing_log_or_entries_is_named() {
    let (path, message, ..) = json_error(r#"{"version": "1.2"}"#);
    assert_eq!(
        (path.as_str(), message.as_str()),
        ("document", "missing field `log`")
    );
    let (path, message, ..) = json_error(r#"{"log": {"version": "1.2", "creator": {}}}"#);
    assert_eq!(
        (path.as_str(), message.as_str()),
        ("log", "missing field `entries`")
    );
}

#[test]
fn entries_that_are_not_an_array_are_named() {
    let text = "{\n  \"log\": {\n    \"version\": \"1.2\",\n    \"entries\": {\"a\": 1}\n  }\n}";
    let error = parse(text.as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "log.entries: invalid type: map, expected a sequence (line 4, column 15)"
    );
}

#[test]
fn a_wrongly_typed_field_is_named_with_its_line_and_column() {
    let text = r#"{"log": {"entries": [
  {"startedDateTime": "2026-11-27T12:00:00Z", "time": 1},
  {"startedDateTime": "2026-11-27T12:00:00Z", "time": "soon"}
]}}"#;
    let (path, message, line, column) = json_error(text);
    assert_eq!(path, "log.entries[1].time");
    assert_eq!(message, "expected a number, found \"soon\"");
    assert_eq!((line, column), (3, 60));

    let text =
        r#"{"log": {"entries": [{"request": {"headers": [{"name": "a", "value": {"x": 1}}]}}]}}"#;
    let (path, message, ..) = json_error(text);
    assert_eq!(path, "log.entries[0].request.headers[0].value");
    assert_eq!(message, "invalid type: map, expected a string");

    let text = r#"{"log": {"entries": [{"request": {"headers": "accept: */*"}}]}}"#;
    let (path, message, ..) = json_error(text);
    assert_eq!(path, "log.entries[0].request.headers");
    assert!(message.contains("expected an array"), "{message}");
}

#[test]
fn a_truncated_file_is_an_error() {
    let text = std::str::from_utf8(crate::support::BROWSER_HAR).unwrap();
    let (path, message, ..) = json_error(&text[..text.len() / 2]);
    assert!(message.starts_with("EOF while parsing"), "{message}");
    assert!(path.starts_with("log.entries["), "{path}");
}

#[test]
fn an_unknown_major_version_is_refused() {
    let error = parse(br#"{"log": {"version": "2.0", "entries": []}}"#).unwrap_err();
    assert_eq!(
        error,
        HarError::Invalid {
            path: "log.version".into(),
            message: "unsupported HAR version \"2.0\" (expected 1.x)".into(),
        }
    );
    assert!(parse(br#"{"log": {"version": "1.1", "entries": []}}"#).is_ok());
}

#[test]
fn real_world_sloppiness_is_accepted() {
    // A byte order mark, nulls, numbers as strings, missing required fields, unknown fields.
    let text = "\u{feff}{\"log\": {\"creator\": null, \"entries\": [{
        \"startedDateTime\": \"2026-11-27T12:00:00+00:00\",
        \"time\": \"12.5\",
        \"request\": {\"method\": \"GET\", \"url\": \"http://orders:8080/v1?id=7\",
                    \"headers\": null, \"bodySize\": null, \"x-extra\": [1, 2]},
        \"response\": {\"status\": \"200\", \"headers\": [{\"name\": \"X-N\", \"value\": 5}],
                     \"content\": {\"size\": 2, \"text\": \"ok\"}},
        \"timings\": {\"wait\": null},
        \"serverIPAddress\": null,
        \"connection\": 17,
        \"_anything\": {\"nested\": true}
    }], \"unknown\": 1}, \"top\": 2}";
    let har = parse(text.as_bytes()).expect("lenient parse");
    let (exchanges, diagnostics) = to_exchanges(&har, &ImportOptions::new("orders"));
    assert_eq!(diagnostics, vec![]);
    let exchange = &exchanges[0];
    assert_eq!(
        (
            exchange.scheme.as_str(),
            exchange.authority.as_str(),
            exchange.path.as_str()
        ),
        ("http", "orders:8080", "/v1?id=7")
    );
    assert_eq!(exchange.duration_nanos, 12_500_000);
    assert_eq!(exchange.response_headers_nanos, 0);
    assert_eq!(exchange.status, 200);
    let response = exchange.response.as_ref().unwrap();
    assert_eq!(response.headers[0].value, b"5");
    assert_eq!(response.body, b"ok");
    assert_eq!(har.log.entries[0].connection.as_deref(), Some("17"));
}

#[test]
fn bad_entries_become_diagnostics_and_the_rest_imports() {
    let text = r#"{"log": {"version": "1.2", "entries": [
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "http://a/ok"}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "/relative"}},
      {"startedDateTime": "27/11/2026 12:00", "request": {"method": "GET", "url": "http://a/"}},
      {"startedDateTime": "2026-11-27T12:00:00", "request": {"method": "GET", "url": "http://a/"}},
      {"request": {"method": "GET", "url": "http://a/"}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"url": "http://a/"}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "http://a/"},
       "response": {"status": 200, "content": {"text": "%%%", "encoding": "base64"}}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "POST", "url": "http://a/",
       "postData": {"mimeType": "text/plain", "text": "x", "encoding": "uuencode"}}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "http://a/",
       "headers": [{"name": "x-bin", "value": "@@", "_encoding": "base64"}]}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "http://a/"},
       "response": {"status": 1000}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": ""}},
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "G ET", "url": "http://a/"}},
      {"startedDateTime": "2026-11-27T12:00:01Z", "request": {"method": "GET", "url": "http://a/also-ok"}}
    ]}}"#;
    let har = parse(text.as_bytes()).unwrap();
    let (exchanges, diagnostics) = to_exchanges(&har, &ImportOptions::new("a"));
    assert_eq!(
        exchanges
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        ["/ok", "/also-ok"]
    );
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"log.entries[1].request.url: "/relative" is not an absolute URL (expected scheme://host/path)"#,
            r#"log.entries[2].startedDateTime: "27/11/2026 12:00" is not an RFC 3339 date-time: expected 4 digits for the year"#,
            r#"log.entries[3].startedDateTime: "2026-11-27T12:00:00" is not an RFC 3339 date-time: no UTC offset (expected 'Z' or '+HH:MM' at the end)"#,
            "log.entries[4].startedDateTime: missing",
            "log.entries[5].request.method: missing",
            "log.entries[6].response.content.text: invalid base64: Invalid symbol 37, offset 0.",
            r#"log.entries[7].request.postData.text: unsupported encoding "uuencode" (expected base64)"#,
            "log.entries[8].request.headers[0].value: invalid base64: Invalid symbol 64, offset 0.",
            "log.entries[9].response.status: 1000 is not an HTTP status",
            "log.entries[10].request.url: missing",
            r#"log.entries[11].request.method: "G ET" is not an HTTP method"#,
        ]
    );
    assert_eq!(
        diagnostics.iter().map(|d| d.entry).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
}

#[test]
fn mutated_and_truncated_files_never_panic() {
    let original = crate::support::BROWSER_HAR;
    let mut g = crate::support::Gen::new(11);
    let mut parsed = 0;
    for round in 0..2000 {
        let mut bytes = original.to_vec();
        if round % 4 == 0 {
            bytes.truncate(g.below(original.len() as u64) as usize);
        }
        for _ in 0..=g.below(4) {
            let at = g.below(bytes.len().max(1) as u64) as usize;
            if let Some(byte) = bytes.get_mut(at) {
                *byte = *g.pick(&[&b'"', &b'{', &b']', &b'-', &b'0', &b'\\', &0xff, &b'x']);
            }
        }
        match parse(&bytes) {
            Ok(har) => {
                parsed += 1;
                let (exchanges, diagnostics) = to_exchanges(&har, &ImportOptions::new("fuzz"));
                assert_eq!(exchanges.len() + diagnostics.len(), har.log.entries.len());
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
    assert!(parsed > 0, "some mutations should still parse");
}
