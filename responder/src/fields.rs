//! A request flattened into the fields matching compares.
//!
//! The path segments, query parameters, headers and cookies come from the analyzer's
//! `tokens::extract` (one definition of a location in the whole project: the same header names
//! skipped, the same `Bearer` split, the same cookie pairs). The body is compared by its kind:
//! JSON leaf by leaf under the analyzer's path spelling (booleans, nulls and empty containers
//! included, so the structure counts), form bodies per field, gRPC per length-prefixed message,
//! anything else bytewise.
//!
//! Path segments are compared only where they are ids (`template::is_id_segment`): word
//! segments are part of the endpoint, equal by construction.
//!
//! A field's key names its place: `path 2`, `query page`, `header x-api-key`,
//! `header authorization Bearer`, `cookie session`, `json $.order.id`, `form name`,
//! `grpc 1`, `body`, `body prefix`.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tapedeck_analyzer::rows::{Headers, MessageView, Row, Strings};
use tapedeck_analyzer::template::is_id_segment;
use tapedeck_analyzer::tokens::{Location, Part, Side, extract, push_key};
use tapedeck_proto::{Direction, Header};

/// One value of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where: see the module docs.
    pub key: String,
    /// The value as text (bytes that are not UTF-8 as `base64:` + base64).
    pub value: String,
    /// A JSON number.
    pub number: bool,
}

/// Whether a field of the live request that the recording lacks makes a difference. Headers
/// and cookies are the recording's choice (a client adding a header still matches); query
/// parameters, path segments and body fields are not.
pub fn extra_counts(key: &str) -> bool {
    !(key.starts_with("header ") || key.starts_with("cookie "))
}

/// The request's fields. `truncated` (a recorded body cut by the capture) compares the body
/// as a prefix only.
pub fn flatten(path: &str, headers: &[Header], body: &[u8], truncated: bool) -> Vec<Field> {
    let request = RequestLine { path, headers };
    let mut out = Vec::new();
    extract(&request, &mut |o| {
        if o.side != Side::Request {
            return;
        }
        let key = match o.part {
            // Word segments are the endpoint's, already equal; only id segments are compared.
            Part::Path if !is_id_segment(&o.value) => return,
            Part::Path => format!("path {}", o.key),
            Part::Query => format!("query {}", o.key),
            Part::Header => match o.scheme {
                Some(scheme) => format!("header {} {scheme}", o.key),
                None => format!("header {}", o.key),
            },
            Part::Cookie => format!("cookie {}", o.key),
            Part::Json => return,
        };
        out.push(Field {
            key,
            value: o.value.into_owned(),
            number: false,
        });
    });
    body_fields(headers, body, truncated, &mut out);
    out
}

/// A request's path and headers, borrowed, as the analyzer's `Row` (the body is compared
/// apart, so `extract` sees none).
struct RequestLine<'a> {
    path: &'a str,
    headers: &'a [Header],
}

impl Row for RequestLine<'_> {
    fn id(&self) -> &[u8] {
        &[]
    }
    fn trace_id(&self) -> &str {
        ""
    }
    fn start(&self) -> u64 {
        0
    }
    fn duration(&self) -> u64 {
        0
    }
    fn response_headers_ns(&self) -> u64 {
        0
    }
    fn direction(&self) -> Direction {
        Direction::Outbound
    }
    fn protocol(&self) -> &str {
        ""
    }
    fn scheme(&self) -> &str {
        ""
    }
    fn authority(&self) -> &str {
        ""
    }
    fn method(&self) -> &str {
        ""
    }
    fn path(&self) -> &str {
        self.path
    }
    fn status(&self) -> u32 {
        0
    }
    fn message(&self, side: Side) -> MessageView<'_> {
        MessageView {
            headers: Headers::Proto(match side {
                Side::Request => self.headers,
                Side::Response => &[],
            }),
            body: &[],
            body_size: 0,
            truncated: false,
            trailers: Headers::Proto(&[]),
        }
    }
    fn capture(&self) -> [&str; 9] {
        [""; 9]
    }
    fn sample_rate(&self) -> f64 {
        0.0
    }
    fn redactions(&self) -> Strings<'_> {
        Strings::Proto(&[])
    }
}

fn content_type(headers: &[Header]) -> Cow<'_, str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map_or(Cow::Borrowed(""), |h| String::from_utf8_lossy(&h.value))
}

/// Whether a request is gRPC, by its content type.
pub fn is_grpc(headers: &[Header]) -> bool {
    content_type(headers).starts_with("application/grpc")
}

fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("base64:{}", STANDARD.encode(bytes)),
    }
}

fn body_fields(headers: &[Header], body: &[u8], truncated: bool, out: &mut Vec<Field>) {
    if body.is_empty() {
        return;
    }
    let push = |out: &mut Vec<Field>, key: String, value: String, number: bool| {
        out.push(Field { key, value, number })
    };
    if truncated {
        push(out, "body prefix".to_owned(), text(body), false);
        return;
    }
    let content_type = content_type(headers);
    if content_type.starts_with("application/grpc")
        && let Some(messages) = grpc_messages(body)
    {
        for (i, (compressed, message)) in messages.into_iter().enumerate() {
            let value = if compressed {
                format!("compressed {}", text(message))
            } else {
                text(message)
            };
            push(out, format!("grpc {}", i + 1), value, false);
        }
        return;
    }
    // JSON by its bytes (as the snapshot format decides), whatever the content type says:
    // `curl -d '{…}'` sends JSON labelled as a form.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'['))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
    {
        let mut path = String::from("$");
        walk_json(&value, &mut path, out);
        return;
    }
    if content_type.starts_with("application/x-www-form-urlencoded")
        && let Ok(form) = std::str::from_utf8(body)
    {
        for pair in form.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            push(out, format!("form {name}"), value.to_owned(), false);
        }
        return;
    }
    push(out, "body".to_owned(), text(body), false);
}

/// The length-prefixed messages of a gRPC body (compressed flag, payload), or `None` when the
/// framing does not add up.
pub fn grpc_messages(mut body: &[u8]) -> Option<Vec<(bool, &[u8])>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (head, rest) = body.split_at_checked(5)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let (message, rest) = rest.split_at_checked(len)?;
        out.push((head[0] == 1, message));
        body = rest;
    }
    Some(out)
}

fn walk_json(value: &serde_json::Value, path: &mut String, out: &mut Vec<Field>) {
    let (text, number) = match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let len = path.len();
                push_key(path, key);
                walk_json(child, path, out);
                path.truncate(len);
            }
            return;
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            let len = path.len();
            path.push_str("[*]");
            for child in items {
                walk_json(child, path, out);
            }
            path.truncate(len);
            return;
        }
        serde_json::Value::Object(_) => ("{}".to_owned(), false),
        serde_json::Value::Array(_) => ("[]".to_owned(), false),
        serde_json::Value::String(text) => (text.clone(), false),
        serde_json::Value::Number(number) => (number.to_string(), true),
        serde_json::Value::Bool(b) => (b.to_string(), false),
        serde_json::Value::Null => ("null".to_owned(), false),
    };
    out.push(Field {
        key: format!("json {path}"),
        value: text,
        number,
    });
}

/// The field key a token rule's location stands for, when it is a place in a request.
pub fn location_key(location: &Location) -> Option<String> {
    if location.message != Side::Request {
        return None;
    }
    Some(match location.part {
        Part::Header => match &location.scheme {
            Some(scheme) => format!("header {} {scheme}", location.name.as_deref()?),
            None => format!("header {}", location.name.as_deref()?),
        },
        Part::Cookie => format!("cookie {}", location.name.as_deref()?),
        Part::Query => format!("query {}", location.name.as_deref()?),
        Part::Path => format!("path {}", location.segment?),
        Part::Json => format!("json {}", location.path.as_deref()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn every_place_becomes_a_field() {
        let fields = flatten(
            "/v1/orders/ord_123456?page=2&q=a",
            &[
                header("content-type", "application/json"),
                header("authorization", "Bearer abc"),
                header("user-agent", "skipped"),
                header("cookie", "sid=s1"),
            ],
            br#"{"a":{"b":[1,true]},"c":null,"d":[],"odd key":"x"}"#,
            false,
        );
        let seen: Vec<String> = fields
            .iter()
            .map(|f| format!("{}={}", f.key, f.value))
            .collect();
        assert_eq!(
            seen,
            [
                "path 3=ord_123456",
                "query page=2",
                "query q=a",
                "header authorization Bearer=abc",
                "cookie sid=s1",
                "json $.a.b[*]=1",
                "json $.a.b[*]=true",
                "json $.c=null",
                "json $.d=[]",
                "json $[\"odd key\"]=x",
            ]
        );
    }

    #[test]
    fn grpc_bodies_split_into_messages() {
        let body = [0u8, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0, 0];
        let fields = flatten(
            "/svc/M",
            &[header("content-type", "application/grpc")],
            &body,
            false,
        );
        let keys: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
        assert!(keys.ends_with(&["grpc 1", "grpc 2"]), "{keys:?}");
        assert_eq!(grpc_messages(&[0, 0, 0, 0, 9, 1]), None);
    }

    #[test]
    fn form_and_plain_bodies() {
        let form = flatten(
            "/f",
            &[header("content-type", "application/x-www-form-urlencoded")],
            b"a=1&b=x%20y",
            false,
        );
        assert_eq!(form[form.len() - 2].key, "form a");
        assert_eq!(form[form.len() - 1].value, "x%20y");
        let labelled = flatten(
            "/f",
            &[header("content-type", "application/x-www-form-urlencoded")],
            br#"{"a":1}"#,
            false,
        );
        assert_eq!(labelled[labelled.len() - 1].key, "json $.a");
        let plain = flatten("/f", &[], &[0xff, 0x00], false);
        assert_eq!(plain[plain.len() - 1].value, "base64:/wA=");
        let cut = flatten("/f", &[], b"{\"a\":", true);
        assert_eq!(cut[cut.len() - 1].key, "body prefix");
    }
}
