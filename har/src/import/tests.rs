//! Unit tests of the import helpers: URLs, trace ids, the JSON path of parse errors, bodies.

use super::*;

fn url(text: &str) -> UrlParts {
    parse_url(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn urls_split_into_scheme_authority_and_path_with_query() {
    assert_eq!(
        url("HTTPS://user:pw@api.example.com:8443/v1/orders?x=1&y=%20#frag"),
        UrlParts {
            scheme: "https".into(),
            authority: "api.example.com:8443".into(),
            path: "/v1/orders?x=1&y=%20".into(),
            port: Some(8443),
        }
    );
    assert_eq!(url("http://example.com").path, "/");
    assert_eq!(url("http://example.com?q=1").path, "/?q=1");
    assert_eq!(url("http://example.com").port, Some(80));
    assert_eq!(url("wss://example.com/socket").port, Some(443));
    assert_eq!(url("ftp://example.com/file").port, None);
    let v6 = url("http://[2001:db8::1]/a");
    assert_eq!(
        (v6.authority.as_str(), v6.port),
        ("[2001:db8::1]", Some(80))
    );
    let v6 = url("http://[2001:db8::1]:9000/a");
    assert_eq!(
        (v6.authority.as_str(), v6.port),
        ("[2001:db8::1]:9000", Some(9000))
    );
}

#[test]
fn urls_that_name_no_request_target_are_rejected() {
    for (text, reason) in [
        ("/relative/path", "not an absolute URL"),
        ("example.com/a", "not an absolute URL"),
        ("http:///a", "no host"),
        ("1http://example.com/", "no valid scheme"),
        ("http://example.com:99999/", "invalid port"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\u{7}", "control"),
    ] {
        let error = parse_url(text).unwrap_err();
        assert!(error.contains(reason), "{text}: {error}");
    }
}

#[test]
fn peer_addresses_are_written_as_envoy_writes_them() {
    assert_eq!(peer_address("10.0.0.7", Some(443)), "10.0.0.7:443");
    assert_eq!(peer_address("2001:db8::1", Some(80)), "[2001:db8::1]:80");
    assert_eq!(peer_address("[2001:db8::1]", Some(80)), "[2001:db8::1]:80");
    assert_eq!(peer_address("10.0.0.7", None), "10.0.0.7");
}

#[test]
fn trace_ids_follow_the_filter_rule() {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    };
    let parent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    assert_eq!(
        trace_id_of(&[
            header("x-request-id", "req-1"),
            header("traceparent", parent)
        ]),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // An invalid traceparent (all-zero trace) falls back to x-request-id.
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    assert_eq!(
        trace_id_of(&[header("traceparent", zero), header("x-request-id", "req-1")]),
        "req-1"
    );
    assert_eq!(trace_id_of(&[header("accept", "*/*")]), "");
}

#[test]
fn bodies_decode_base64_with_or_without_padding_and_line_breaks() {
    assert_eq!(decode_text("aGk=", Some("base64")).unwrap(), b"hi");
    assert_eq!(decode_text("aGk", Some("BASE64")).unwrap(), b"hi");
    assert_eq!(decode_text("aG\r\nk=", Some("base64")).unwrap(), b"hi");
    assert_eq!(decode_text("plain", None).unwrap(), b"plain");
    assert_eq!(decode_text("plain", Some("")).unwrap(), b"plain");
    assert!(
        decode_text("*not base64*", Some("base64"))
            .unwrap_err()
            .contains("invalid base64")
    );
    assert!(
        decode_text("x", Some("quoted-printable"))
            .unwrap_err()
            .contains("unsupported encoding \"quoted-printable\"")
    );
}

#[test]
fn form_params_and_query_strings_are_encoded() {
    let param = |name: &str, value: &str| crate::model::Param {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    assert_eq!(
        form_body(&[param("q", "a b&c"), param("lang", "é")]),
        "q=a+b%26c&lang=%C3%A9"
    );
    assert_eq!(
        join_query(&[NameValue::new("q", "a b"), NameValue::new("x", "%2F")]),
        "q=a%20b&x=%2F"
    );
}

#[test]
fn decoded_bodies_lose_their_content_encoding_headers() {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    };
    let mut headers = vec![
        header("content-type", "text/html"),
        header("content-encoding", "br"),
        header("content-length", "12"),
    ];
    drop_decoded_headers(&mut headers);
    assert_eq!(headers, vec![header("content-type", "text/html")]);
    let mut identity = vec![
        header("content-encoding", "identity"),
        header("content-length", "12"),
    ];
    drop_decoded_headers(&mut identity);
    assert_eq!(identity.len(), 2);
}

#[test]
fn json_paths_point_into_objects_and_arrays() {
    let text = br#"{"log": {"entries": [{"a": 1}, {"time": "abc"}]}}"#;
    let at = |needle: &str| {
        let start = text
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap();
        json_path_at(text, start + needle.len())
    };
    assert_eq!(at(r#""abc""#), "log.entries[1].time");
    assert_eq!(at(r#"{"a": 1"#), "log.entries[0].a");
    assert_eq!(at(r#""entries": ["#), "log.entries");
    assert_eq!(json_path_at(text, 0), "");
    // Escaped quotes inside strings do not end them.
    let escaped = br#"{"k\"ey": "va\"lue", "next": ["#;
    assert_eq!(json_path_at(escaped, escaped.len()), "next");
}

#[test]
fn line_and_column_become_a_byte_offset() {
    let text = b"ab\ncd\nef";
    assert_eq!(offset_of(text, 1, 1), 1);
    assert_eq!(offset_of(text, 2, 2), 5);
    assert_eq!(offset_of(text, 3, 0), 6);
    assert_eq!(offset_of(text, 9, 9), text.len());
}

#[test]
fn seeded_ids_repeat_and_differ_from_each_other() {
    let mut a = Ids::new(Some(7));
    let mut b = Ids::new(Some(7));
    let first = a.next_id();
    assert_eq!(first.len(), 16);
    assert_eq!(first, b.next_id());
    assert_ne!(first, a.next_id());
    assert_ne!(Ids::new(None).next_id(), Ids::new(None).next_id());
}

#[test]
fn hex_ids_read_back_only_when_well_formed() {
    assert_eq!(
        hex_id("000102030405060708090a0b0c0d0eff"),
        Some((0u8..15).chain([255]).collect())
    );
    assert_eq!(hex_id("0001"), None);
    assert_eq!(hex_id("zz0102030405060708090a0b0c0d0eff"), None);
    assert_eq!(hex_id("é0102030405060708090a0b0c0d0ef"), None);
}

#[test]
fn protocols_are_read_from_http_versions() {
    for (version, protocol) in [
        ("HTTP/1.0", Protocol::Http10),
        ("http/1.1", Protocol::Http11),
        ("HTTP/2.0", Protocol::Http2),
        ("h2", Protocol::Http2),
        ("HTTP/2", Protocol::Http2),
        ("h3", Protocol::Http3),
        ("h3-29", Protocol::Http3),
        ("HTTP/3", Protocol::Http3),
        ("", Protocol::Unspecified),
        ("SPDY/3", Protocol::Unspecified),
    ] {
        assert_eq!(protocol_of_version(version), protocol, "{version}");
    }
    for protocol in [
        Protocol::Http10,
        Protocol::Http11,
        Protocol::Http2,
        Protocol::Http3,
        Protocol::Grpc,
    ] {
        assert_eq!(protocol_of_word(protocol.as_word()), Some(protocol));
    }
}
