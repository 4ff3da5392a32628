//! Bad input: documents that cannot be read fail with a path, line and column; entries that
//! cannot be converted yield diagnostics while the others import.

use tapedeck_har::{Diagnostic, HarError, ImportOptions, parse, to_exchanges};

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
        "log.entries: invalid type: map, expected a sequence (line 4, column 16)"
    );
}

#[test]
fn a_wrongly_typed_field_is_repaired_and_named() {
    let text = r#"{"log": {"entries": [
  {"startedDateTime": "2026-11-27T12:00:00Z", "time": 1, "request": {"method": "GET", "url": "http://a/"}},
  {"startedDateTime": "2026-11-27T12:00:00Z", "time": "soon", "request": {"method": "GET", "url": "http://a/",
   "headers": [{"name": "a", "value": {"x": 1}}]}}
]}}"#;
    let har = parse(text.as_bytes()).expect("one odd field never refuses the file");
    let (exchanges, diagnostics) = to_exchanges(&har, &ImportOptions::new("a"));
    assert_eq!(exchanges.len(), 2);
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"log.entries[1].request.headers[0].value: invalid type: map, expected a string; kept as its JSON text"#,
            r#"log.entries[1].time: expected a number, found "soon"; ignored"#,
        ]
    );
    assert!(diagnostics.iter().all(|d| d.entry == Some(1) && !d.skipped));
    let request = exchanges[1].request.as_ref().unwrap();
    assert_eq!(request.headers[0].value, br#"{"x":1}"#);

    // Headers written as a string: the entry imports without them.
    let text = r#"{"log": {"entries": [{"startedDateTime": "2026-11-27T12:00:00Z",
      "request": {"method": "GET", "url": "http://a/", "headers": "accept: */*"}}]}}"#;
    let (exchanges, diagnostics) =
        to_exchanges(&parse(text.as_bytes()).unwrap(), &ImportOptions::new("a"));
    assert_eq!(exchanges.len(), 1);
    assert_eq!(diagnostics[0].path, "log.entries[0].request.headers");
    assert!(
        diagnostics[0].message.contains("expected an array"),
        "{diagnostics:?}"
    );
}

#[test]
fn a_truncated_file_is_an_error() {
    let text = std::str::from_utf8(crate::support::BROWSER_HAR).unwrap();
    let (path, message, ..) = json_error(&text[..text.len() / 2]);
    assert!(message.starts_with("EOF while parsing"), "{message}");
    assert!(path.starts_with("log.entries["), "{path}");
}

#[test]
fn an_unknown_major_version_is_named_not_refused() {
    let har = parse(br#"{"log": {"version": "2.0", "entries": []}}"#).unwrap();
    let (_, diagnostics) = to_exchanges(&har, &ImportOptions::new("a"));
    assert_eq!(
        diagnostics,
        vec![Diagnostic {
            entry: None,
            path: "log.version".into(),
            message: "unsupported HAR version \"2.0\" (expected 1.x); read as 1.2".into(),
            skipped: false,
        }]
    );
    let har = parse(br#"{"log": {"version": "1.1", "entries": []}}"#).unwrap();
    assert_eq!(to_exchanges(&har, &ImportOptions::new("a")).1, vec![]);
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
fn odd_entries_import_with_diagnostics_and_only_unusable_ones_are_skipped() {
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
      "not an entry",
      {"startedDateTime": "2026-11-27T12:00:00Z", "request": {"method": "GET", "url": "/rel",
       "headers": [{"name": "Host", "value": "h:81"}]}},
      {"startedDateTime": "2026-11-27T12:00:01Z", "request": {"method": "GET", "url": "http://a/also-ok"}}
    ]}}"#;
    let har = parse(text.as_bytes()).unwrap();
    let (exchanges, diagnostics) = to_exchanges(&har, &ImportOptions::new("a"));
    assert_eq!(
        exchanges
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        [
            "/ok", "/", "/", "/", "/", "/", "/", "/", "/", "/rel", "/also-ok"
        ]
    );
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            r#"log.entries[1].request.url: "/relative" is not an absolute URL (expected scheme://host/path) (entry skipped)"#,
            r#"log.entries[2].startedDateTime: "27/11/2026 12:00" is not an RFC 3339 date-time: expected 4 digits for the year; the previous entry's start is used"#,
            r#"log.entries[3].startedDateTime: "2026-11-27T12:00:00" has no UTC offset; read as UTC"#,
            "log.entries[4].startedDateTime: missing; the previous entry's start is used",
            "log.entries[5].request.method: missing; read as GET",
            "log.entries[6].response.content.text: invalid base64: Invalid symbol 37, offset 0.; kept as written",
            r#"log.entries[7].request.postData.text: unsupported encoding "uuencode" (expected base64); kept as written"#,
            "log.entries[8].request.headers[0].value: invalid base64: Invalid symbol 64, offset 0.; kept as written",
            "log.entries[9].response.status: 1000 is not an HTTP status; read as 0 (no response)",
            "log.entries[10].request.url: missing (entry skipped)",
            r#"log.entries[11].request.method: "G ET" is not an HTTP method (entry skipped)"#,
            "log.entries[12]: a string that cannot be read as an entry (entry skipped)",
            r#"log.entries[13].request.url: "/rel" is not an absolute URL (expected scheme://host/path); read as http://h:81/rel from the headers"#,
        ]
    );
    assert_eq!(crate::support::skipped(&diagnostics), 4);
    assert_eq!(exchanges.len() + 4, har.log.entries.len());
    // The entry without a date took its predecessor's; the one without an offset is UTC.
    assert_eq!(exchanges[3].start_unix_nanos, exchanges[2].start_unix_nanos);
    assert_eq!(exchanges[2].start_unix_nanos, exchanges[0].start_unix_nanos);
    assert_eq!(exchanges[5].response.as_ref().unwrap().body, b"%%%");
    assert_eq!(exchanges[8].status, 0);
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
                let skipped = crate::support::skipped(&diagnostics);
                assert_eq!(exchanges.len() + skipped, har.log.entries.len());
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
    assert!(parsed > 0, "some mutations should still parse");
}
