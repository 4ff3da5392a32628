//! A request flattened into the fields matching compares.
//!
//! The path segments, query parameters, headers and cookies come from the analyzer's
//! `tokens::extract` (one definition of a location in the whole project: the same header names
//! skipped, the same `Bearer` split, the same cookie pairs). The body is compared by its kind:
//! JSON leaf by leaf under the analyzer's path spelling (booleans, nulls and empty containers
//! included, so the structure counts), form bodies per field, gRPC per length-prefixed message
//! (bytewise here; with `--descriptors` the matcher decodes each into `grpc N $.field` fields,
//! [`decode_grpc`]), anything else bytewise.
//!
//! Path segments are compared only where they are ids (`template::is_id_segment`): word
//! segments are part of the endpoint, equal by construction.
//!
//! A field's key names its place: `path 2`, `query page`, `header x-api-key`,
//! `header authorization Bearer`, `cookie session`, `json $.order.id`, `form name`,
//! `grpc 1`, `body`, `body prefix`.

use std::borrow::Cow;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, Value};
use tapedeck_analyzer::rows::{Headers, MessageView, Row, Strings};
use tapedeck_analyzer::template::{is_id_segment, path_without_query};
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

/// The request message types of gRPC methods (`--descriptors`): a `DescriptorPool` built from
/// serialized `FileDescriptorSet`s.
#[derive(Debug, Clone)]
pub struct Descriptors(DescriptorPool);

impl Descriptors {
    /// Reads `--descriptors` files; `None` when there are none.
    pub fn load(paths: &[PathBuf]) -> crate::Result<Option<Descriptors>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut pool = DescriptorPool::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| crate::Error::Io {
                path: path.clone(),
                source,
            })?;
            pool.decode_file_descriptor_set(bytes.as_slice())
                .map_err(|e| crate::Error::Flag {
                    flag: "--descriptors",
                    message: format!(
                        "{}: not a serialized FileDescriptorSet: {e}",
                        path.display()
                    ),
                })?;
        }
        Ok(Some(Descriptors(pool)))
    }

    /// Wraps a pool already built.
    pub fn from_pool(pool: DescriptorPool) -> Descriptors {
        Descriptors(pool)
    }

    /// The request message type of the gRPC method at `path` (`/pkg.Service/Method`).
    pub fn input(&self, path: &str) -> Option<MessageDescriptor> {
        let (service, method) = path_without_query(path)
            .strip_prefix('/')?
            .split_once('/')?;
        self.0
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
            .map(|m| m.input())
    }
}

/// The bytes a `grpc N` field's value stands for (the inverse of how [`flatten`] spells them);
/// `None` for a compressed message.
fn message_bytes(value: &str) -> Option<Cow<'_, [u8]>> {
    if value.starts_with("compressed ") {
        return None;
    }
    if let Some(encoded) = value.strip_prefix("base64:")
        && let Ok(bytes) = STANDARD.decode(encoded)
        && std::str::from_utf8(&bytes).is_err()
    {
        return Some(Cow::Owned(bytes));
    }
    Some(Cow::Borrowed(value.as_bytes()))
}

/// Decodes the value of the field `grpc N` (`key`) as a message of type `input` into fields
/// named `grpc N $.field.path` (the analyzer's JSON path spelling, proto field names; fields at
/// their default value without presence are absent, so two encodings of one message give the
/// same fields; unknown fields are named by number, `$["#7"]`, valued by their encoding).
/// `Err` says why it stays bytewise.
pub fn decode_grpc(
    key: &str,
    value: &str,
    input: &MessageDescriptor,
) -> Result<Vec<Field>, String> {
    let bytes = message_bytes(value).ok_or_else(|| "compressed message".to_owned())?;
    let message = DynamicMessage::decode(input.clone(), bytes.as_ref())
        .map_err(|e| format!("not a {}: {e}", input.full_name()))?;
    let mut path = String::from("$");
    let mut out = Vec::new();
    walk_message(key, &message, &mut path, &mut out);
    if out.is_empty() {
        out.push(Field {
            key: format!("{key} $"),
            value: "{}".to_owned(),
            number: false,
        });
    }
    Ok(out)
}

fn walk_message(prefix: &str, message: &DynamicMessage, path: &mut String, out: &mut Vec<Field>) {
    for (field, value) in message.fields() {
        let len = path.len();
        push_key(path, field.name());
        walk_value(prefix, value, path, out);
        path.truncate(len);
    }
    for unknown in message.unknown_fields() {
        let len = path.len();
        push_key(path, &format!("#{}", unknown.number()));
        let mut encoded = Vec::new();
        unknown.encode(&mut encoded);
        out.push(Field {
            key: format!("{prefix} {path}"),
            value: format!("base64:{}", STANDARD.encode(&encoded)),
            number: false,
        });
        path.truncate(len);
    }
}

fn walk_value(prefix: &str, value: &Value, path: &mut String, out: &mut Vec<Field>) {
    let (text, number) = match value {
        Value::Message(message) => {
            let before = out.len();
            walk_message(prefix, message, path, out);
            if out.len() > before {
                return;
            }
            ("{}".to_owned(), false)
        }
        Value::List(items) => {
            let len = path.len();
            path.push_str("[*]");
            for item in items {
                walk_value(prefix, item, path, out);
            }
            path.truncate(len);
            return;
        }
        Value::Map(map) => {
            let mut entries: Vec<(String, &Value)> = map
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                        MapKey::String(s) => s.clone(),
                    };
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, child) in entries {
                let len = path.len();
                push_key(path, &key);
                walk_value(prefix, child, path, out);
                path.truncate(len);
            }
            return;
        }
        Value::Bool(b) => (b.to_string(), false),
        Value::I32(n) => (n.to_string(), true),
        Value::I64(n) => (n.to_string(), true),
        Value::U32(n) => (n.to_string(), true),
        Value::U64(n) => (n.to_string(), true),
        Value::F32(n) => (n.to_string(), true),
        Value::F64(n) => (n.to_string(), true),
        Value::String(s) => (s.clone(), false),
        Value::Bytes(b) => (text(b), false),
        Value::EnumNumber(n) => (n.to_string(), true),
    };
    out.push(Field {
        key: format!("{prefix} {path}"),
        value: text,
        number,
    });
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
    fn grpc_messages_decode_field_by_field() {
        use prost::Message as _;
        use tapedeck_proto::capture::v1::{Exchange, ExchangeBatch};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
        let set = protox::compile(["tapedeck/capture/v1/capture.proto"], [root]).unwrap();
        let pool = DescriptorPool::decode(set.encode_to_vec().as_slice()).unwrap();
        let descriptors = Descriptors::from_pool(pool);
        let input = descriptors
            .input("/tapedeck.capture.v1.Capture/Push?x=1")
            .unwrap();
        assert!(
            descriptors
                .input("/tapedeck.capture.v1.Capture/Nope")
                .is_none()
        );
        let batch = ExchangeBatch {
            exchanges: vec![
                Exchange {
                    method: "GET".into(),
                    ..Default::default()
                },
                Exchange {
                    method: "PUT".into(),
                    ..Default::default()
                },
            ],
            sequence: 7,
            ..Default::default()
        };
        let mut bytes = batch.encode_to_vec();
        // An unknown field 99 (varint 5).
        bytes.extend_from_slice(&[0x98, 0x06, 0x05]);
        let value = text(&bytes);
        let fields = decode_grpc("grpc 1", &value, &input).unwrap();
        let seen: Vec<String> = fields
            .iter()
            .map(|f| format!("{}={}", f.key, f.value))
            .collect();
        assert_eq!(
            seen,
            [
                "grpc 1 $.exchanges[*].method=GET",
                "grpc 1 $.exchanges[*].method=PUT",
                "grpc 1 $.sequence=7",
                "grpc 1 $[\"#99\"]=base64:mAYF",
            ]
        );
        assert!(fields[2].number);
        let empty = decode_grpc("grpc 2", "", &input).unwrap();
        assert_eq!(empty[0].key, "grpc 2 $");
        assert!(decode_grpc("grpc 1", "compressed x", &input).is_err());
        assert!(decode_grpc("grpc 1", &text(&[0xff, 0xff]), &input).is_err());
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
