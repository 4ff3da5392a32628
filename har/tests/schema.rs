//! Exports validate against `tests/har-1.2.schema.json`, a JSON Schema written from the HAR 1.2
//! spec.
//!
//! The validator is a small one written here for the keywords the schema uses (`$ref` to
//! `#/definitions/…`, `type`, `required`, `properties`, `patternProperties` with `^prefix`
//! patterns, `additionalProperties`, `items`, `minimum`, `format: date-time`), rather than the
//! `jsonschema` crate, whose dependency tree (regex engines, URL and HTTP resolving) is far
//! larger than this crate's.

use serde_json::{Map, Value};
use tapedeck_har::{from_exchanges, parse, to_exchanges, to_json};

use crate::support::{BROWSER_HAR, options};

const SCHEMA: &str = include_str!("har-1.2.schema.json");

/// Every way `document` breaks the HAR 1.2 schema, as sorted `path: problem` lines (sorted
/// because object key order depends on serde_json's `preserve_order` feature).
pub(crate) fn validate_against_har_schema(document: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    let mut errors = Vec::new();
    Validator { root: &schema }.check(&schema, document, "", &mut errors);
    errors.sort();
    errors
}

fn sorted<const N: usize>(lines: [&str; N]) -> Vec<String> {
    let mut lines: Vec<String> = lines.map(str::to_owned).into();
    lines.sort();
    lines
}

struct Validator<'a> {
    root: &'a Value,
}

impl Validator<'_> {
    fn check(&self, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(schema) = schema.as_object() else {
            panic!("{path}: schema is not an object");
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
            let target = self
                .root
                .pointer(&format!("/definitions/{name}"))
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            return self.check(target, value, path, errors);
        }
        for keyword in schema.keys() {
            assert!(
                [
                    "$schema",
                    "$id",
                    "title",
                    "description",
                    "definitions",
                    "type",
                    "required",
                    "properties",
                    "patternProperties",
                    "additionalProperties",
                    "items",
                    "minimum",
                    "format",
                ]
                .contains(&keyword.as_str()),
                "{path}: keyword {keyword} is not supported by this validator"
            );
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => panic!("{path}: bad type keyword"),
            };
            if !allowed.iter().any(|t| has_type(value, t)) {
                errors.push(format!(
                    "{path}: expected {}, found {value}",
                    allowed.join(" or ")
                ));
                return;
            }
        }
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64)
            && let Some(number) = value.as_f64()
            && number < minimum
        {
            errors.push(format!(
                "{path}: {value} is less than the minimum {minimum}"
            ));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(text) = value.as_str()
            && !is_date_time(text)
        {
            errors.push(format!("{path}: {text:?} is not an ISO 8601 date-time"));
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{path}[{i}]"), errors);
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, path, errors);
        }
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(required) {
                errors.push(format!("{}: missing required field", join(required)));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let patterns = schema.get("patternProperties").and_then(Value::as_object);
        for (key, field) in object {
            if let Some(property) = properties.and_then(|p| p.get(key)) {
                self.check(property, field, &join(key), errors);
                continue;
            }
            let pattern = patterns.and_then(|patterns| {
                patterns.iter().find(|(pattern, _)| {
                    let prefix = pattern
                        .strip_prefix('^')
                        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
                    key.starts_with(prefix)
                })
            });
            match (pattern, schema.get("additionalProperties")) {
                (Some((_, pattern_schema)), _) => {
                    self.check(pattern_schema, field, &join(key), errors)
                }
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{}: field not in HAR 1.2", join(key)))
                }
                (None, Some(additional @ Value::Object(_))) => {
                    self.check(additional, field, &join(key), errors)
                }
                (None, _) => {}
            }
        }
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unsupported type {other}"),
    }
}

/// `YYYY-MM-DDThh:mm:ss(.s+)?(Z|±hh:mm)`, the profile the spec shows.
fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let shape = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && bytes.get(10) == Some(&b'T')
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest.as_bytes() {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[test]
fn the_validator_catches_what_the_schema_forbids() {
    let document = serde_json::json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "x"},
            "entries": [{
                "startedDateTime": "yesterday",
                "time": -1,
                "request": {"method": "GET", "url": "http://a/", "httpVersion": "HTTP/1.1",
                            "cookies": [], "headers": [{"name": "a", "value": 1}],
                            "queryString": [], "headersSize": -1, "bodySize": 0.5},
                "response": {},
                "cache": {"beforeRequest": null},
                "timings": {"send": 0, "wait": -1, "receive": 0},
                "sameSite": "Lax",
                "_custom": [1]
            }]
        }
    });
    assert_eq!(
        validate_against_har_schema(&document),
        sorted([
            "log.creator.version: missing required field",
            "log.entries[0].startedDateTime: \"yesterday\" is not an ISO 8601 date-time",
            "log.entries[0].time: -1 is less than the minimum 0",
            "log.entries[0].request.headers[0].value: expected string, found 1",
            "log.entries[0].request.bodySize: expected integer, found 0.5",
            "log.entries[0].response.status: missing required field",
            "log.entries[0].response.statusText: missing required field",
            "log.entries[0].response.httpVersion: missing required field",
            "log.entries[0].response.cookies: missing required field",
            "log.entries[0].response.headers: missing required field",
            "log.entries[0].response.content: missing required field",
            "log.entries[0].response.redirectURL: missing required field",
            "log.entries[0].response.headersSize: missing required field",
            "log.entries[0].response.bodySize: missing required field",
            "log.entries[0].timings.wait: -1 is less than the minimum 0",
            "log.entries[0].sameSite: field not in HAR 1.2",
        ])
    );
    assert!(is_date_time("2009-07-24T19:20:30.45+01:00"));
    assert!(is_date_time("2026-11-27T12:05:01Z"));
    assert!(!is_date_time("2026-11-27T12:05:01"));
}

#[test]
fn exports_of_the_browser_fixture_are_valid_har() {
    let (exchanges, _) = to_exchanges(&parse(BROWSER_HAR).unwrap(), &options());
    let json = to_json(&from_exchanges(&exchanges, "tapedeck-test"));
    let document: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(validate_against_har_schema(&document), Vec::<String>::new());
}

#[test]
fn the_browser_fixture_breaks_the_spec_where_real_browser_files_do() {
    // The importer is lenient about these; the schema is not.
    let document: Value = serde_json::from_slice(BROWSER_HAR).unwrap();
    assert_eq!(
        validate_against_har_schema(&document),
        sorted([
            "log.entries[0].request.cookies[0].expires: expected string, found null",
            "log.entries[0].request.cookies[0].sameSite: field not in HAR 1.2",
            "log.entries[2].time: -1 is less than the minimum 0",
            "log.entries[4].request.postData.encoding: field not in HAR 1.2",
        ])
    );
}
