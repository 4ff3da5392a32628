//! The serde types of snapshot format v1, and the lossless mapping between an [`Exchange`] and a
//! line of `inbound.jsonl` / `outbound.jsonl`.
//!
//! Field order in the files is the order of the fields here. Empty and default fields are left
//! out, so a line shows what the exchange has. Every type rejects fields it does not know, so a
//! typo in a hand-edited snapshot is an error, not a silently ignored setting.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

use crate::rows::{Headers, MessageView, Row, Strings};
use crate::tokens::{Side, TokenRule};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// An instant, nanoseconds since the Unix epoch, written as exact RFC 3339 in UTC
/// (`2026-11-27T13:00:00.25Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&tapedeck_har::time::format_exact(self.0))
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        tapedeck_har::time::parse(&text)
            .map(Instant)
            .map_err(|reason| D::Error::custom(format!("time {text:?}: {reason}")))
    }
}

/// `snapshot.json`: what the snapshot is, where it came from, and its token rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// `<service>-<window start, compact UTC>-<12 hex digits of the content hash>`: the same
    /// cut of the same data gets the same id.
    pub id: String,
    /// The service the snapshot isolates.
    pub service: String,
    /// The time window; entry offsets count from `window.from`.
    pub window: Window,
    /// The query the exchanges came from.
    pub source: Source,
    /// How many exchanges of each kind the files hold.
    pub counts: Counts,
    /// The hosts the service called, with their calls, in `outbound.jsonl` order.
    #[serde(default)]
    pub hosts: Vec<HostCount>,
    /// The dynamic values found, and what replay does with each.
    #[serde(default)]
    pub tokens: Vec<TokenRule>,
}

/// A time window: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The start: the cut's `--from`, or the first exchange's start.
    pub from: Instant,
    /// The end: the cut's `--to`, or just after the last exchange's end.
    pub to: Instant,
}

/// Where the exchanges came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The exact statement run over the `exchanges` table (absolute times).
    pub sql: String,
    /// The user's `--where` predicate, as given.
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
}

/// Counts of what the files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Lines of `inbound.jsonl`.
    pub inbound: u64,
    /// Lines of `outbound.jsonl`.
    pub outbound: u64,
    /// Outbound calls linked to the inbound request that caused them (`caused_by`).
    pub linked: u64,
    /// Exchanges the query returned that are in neither file (no direction).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Exchanges the query returned twice (same id; the same traffic imported twice): the
    /// first by start time is kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duplicates: u64,
}

/// One host the service called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCount {
    /// The authority the calls went to (`payments.shop.svc:8080`).
    pub host: String,
    /// Calls to it.
    pub calls: u64,
    /// The line of `outbound.jsonl` where its calls begin (1-based).
    pub first_line: u64,
}

/// One exchange: a line of `inbound.jsonl` or `outbound.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The exchange id, 32 lowercase hex digits (hex of the bytes when not 16 long).
    pub id: String,
    /// The trace id (W3C `traceparent` or `x-request-id`), when the capture had one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// Nanoseconds from `window.from` to the request's start.
    pub offset_ns: u64,
    /// Nanoseconds from the request's start to the response's end: the recorded latency.
    pub duration_ns: u64,
    /// Nanoseconds from the request's start to the response's headers.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub response_headers_ns: u64,
    /// Outbound only: the id of the inbound exchange whose handling made this call (same trace,
    /// the latest inbound request that started before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<String>,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3` or `gRPC`; absent when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// The `:authority` (host and port) the request was sent to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// The request method.
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The request.
    #[serde(default, skip_serializing_if = "MessageEntry::is_empty")]
    pub request: MessageEntry,
    /// The response status; 0 when there was no response.
    pub status: u32,
    /// The response.
    #[serde(default, skip_serializing_if = "MessageEntry::is_empty")]
    pub response: MessageEntry,
    /// Where and how the exchange was captured.
    #[serde(default, skip_serializing_if = "Capture::is_empty")]
    pub capture: Capture,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageEntry {
    /// Headers in order, each `[name, value]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderEntry>,
    /// The body as captured (possibly a prefix, see `truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// The body's true size, when it differs from the captured body's length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The captured body is a prefix of the real one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// Trailers in order (gRPC's `grpc-status` is one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trailers: Vec<HeaderEntry>,
}

impl MessageEntry {
    fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.body.is_none()
            && self.size.is_none()
            && !self.truncated
            && self.trailers.is_empty()
    }
}

/// A header or trailer: `["name", "value"]`, or `["name", {"base64": "…"}]` when the value is
/// not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderEntry(pub String, pub HeaderValue);

/// A header value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// UTF-8 text.
    Text(String),
    /// Other bytes.
    Binary(Base64Bytes),
}

/// Bytes written as `{"base64": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base64Bytes {
    /// Standard base64 with padding.
    #[serde(with = "base64_text")]
    pub base64: Vec<u8>,
}

/// A body, readable where it can be: `{"json": …}` (a JSON body, verbatim), `{"text": "…"}`
/// (other UTF-8) or `{"base64": "…"}` (anything else).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// A JSON document, embedded as it was sent (same bytes, same key order, same numbers).
    Json(Box<RawValue>),
    /// UTF-8 text that is not such a JSON document.
    Text(String),
    /// Bytes that are not UTF-8.
    #[serde(with = "base64_text")]
    Base64(Vec<u8>),
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes() && self.kind() == other.kind()
    }
}

impl Body {
    /// The readable form of body bytes, as the writer chooses it: JSON verbatim when the bytes
    /// are one JSON object or array on one line with no surrounding space, other UTF-8 as text,
    /// the rest as base64; `None` for an empty body.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(match BodyRef::of(bytes)? {
            BodyRef::Json(raw) => Body::Json(raw.to_owned()),
            BodyRef::Text(text) => Body::Text(text.to_owned()),
            BodyRef::Base64(bytes) => Body::Base64(bytes.to_vec()),
        })
    }

    /// The body's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Json(raw) => raw.get().as_bytes(),
            Body::Text(text) => text.as_bytes(),
            Body::Base64(bytes) => bytes,
        }
    }

    /// `json`, `text` or `base64`.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Json(_) => "json",
            Body::Text(_) => "text",
            Body::Base64(_) => "base64",
        }
    }
}

/// A body as it is written, borrowed from the exchange: the one place that decides between
/// `json`, `text` and `base64`. JSON is embedded verbatim only when the bytes are one JSON
/// object or array with no line breaks and no surrounding space (a line of a JSONL file must
/// stay one line, and reading must give the same bytes back); other UTF-8 is text.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BodyRef<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    #[serde(serialize_with = "base64_text::serialize")]
    Base64(&'a [u8]),
}

impl<'a> BodyRef<'a> {
    /// The form body bytes are written in; `None` for an empty body.
    pub(crate) fn of(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_empty() {
            return None;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Some(BodyRef::Base64(bytes));
        };
        if matches!(bytes.first(), Some(b'{' | b'['))
            && !bytes.contains(&b'\n')
            && !bytes.contains(&b'\r')
            && let Ok(raw) = serde_json::from_str::<&RawValue>(text)
            && raw.get().len() == text.len()
        {
            return Some(BodyRef::Json(raw));
        }
        Some(BodyRef::Text(text))
    }
}

/// A line of `inbound.jsonl` / `outbound.jsonl` written straight from a [`Row`], without copying
/// it into an [`Entry`] first; [`Entry`] is the reading side. The write → read property test
/// (every exchange comes back equal) and the golden files hold the two together.
#[derive(Debug, Serialize)]
pub(crate) struct EntryRef<'a> {
    #[serde(serialize_with = "hex_text")]
    id: &'a [u8],
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_id: &'a str,
    offset_ns: u64,
    duration_ns: u64,
    #[serde(skip_serializing_if = "is_zero")]
    response_headers_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    caused_by: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    protocol: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scheme: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    authority: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "MessageRef::is_empty")]
    request: MessageRef<'a>,
    status: u32,
    #[serde(skip_serializing_if = "MessageRef::is_empty")]
    response: MessageRef<'a>,
    #[serde(skip_serializing_if = "CaptureRef::is_empty")]
    capture: CaptureRef<'a>,
}

#[derive(Debug, Default, Serialize)]
struct MessageRef<'a> {
    #[serde(skip_serializing_if = "HeadersRef::is_empty")]
    headers: HeadersRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<BodyRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "is_false")]
    truncated: bool,
    #[serde(skip_serializing_if = "HeadersRef::is_empty")]
    trailers: HeadersRef<'a>,
}

impl<'a> MessageRef<'a> {
    fn of(message: MessageView<'a>) -> Self {
        Self {
            headers: HeadersRef(message.headers),
            body: BodyRef::of(message.body),
            size: (message.body_size != message.body.len() as u64).then_some(message.body_size),
            truncated: message.truncated,
            trailers: HeadersRef(message.trailers),
        }
    }

    fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.body.is_none()
            && self.size.is_none()
            && !self.truncated
            && self.trailers.is_empty()
    }
}

#[derive(Debug)]
struct HeadersRef<'a>(Headers<'a>);

impl Default for HeadersRef<'_> {
    fn default() -> Self {
        HeadersRef(Headers::Proto(&[]))
    }
}

impl HeadersRef<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for HeadersRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq as _, SerializeTuple as _};
        struct Pair<'h>(&'h str, &'h [u8]);
        impl Serialize for Pair<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut pair = serializer.serialize_tuple(2)?;
                pair.serialize_element(self.0)?;
                match std::str::from_utf8(self.1) {
                    Ok(text) => pair.serialize_element(text)?,
                    Err(_) => pair.serialize_element(&Base64Ref { base64: self.1 })?,
                }
                pair.end()
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0.iter() {
            seq.serialize_element(&Pair(name, value))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct Base64Ref<'a> {
    #[serde(serialize_with = "base64_text::serialize")]
    base64: &'a [u8],
}

#[derive(Debug, Serialize)]
struct CaptureRef<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    workload: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pod: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    peer: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cluster: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    route: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    flags: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    details: &'a str,
    #[serde(skip_serializing_if = "is_zero_f64")]
    sample_rate: f64,
    #[serde(skip_serializing_if = "StringsRef::is_empty")]
    redactions: StringsRef<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    filter_version: &'a str,
}

#[derive(Debug)]
struct StringsRef<'a>(Strings<'a>);

impl StringsRef<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for StringsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl CaptureRef<'_> {
    fn is_empty(&self) -> bool {
        self.workload.is_empty()
            && self.namespace.is_empty()
            && self.pod.is_empty()
            && self.peer.is_empty()
            && self.cluster.is_empty()
            && self.route.is_empty()
            && self.flags.is_empty()
            && self.details.is_empty()
            && is_zero_f64(&self.sample_rate)
            && self.redactions.is_empty()
            && self.filter_version.is_empty()
    }
}

impl<'a> EntryRef<'a> {
    /// The line of an exchange.
    pub(crate) fn new<R: Row>(
        exchange: &'a R,
        window_from: u64,
        caused_by: Option<&'a str>,
    ) -> Self {
        let [
            workload,
            namespace,
            pod,
            peer,
            cluster,
            route,
            flags,
            details,
            filter_version,
        ] = exchange.capture();
        Self {
            id: exchange.id(),
            trace_id: exchange.trace_id(),
            offset_ns: exchange.start().saturating_sub(window_from),
            duration_ns: exchange.duration(),
            response_headers_ns: exchange.response_headers_ns(),
            caused_by,
            protocol: exchange.protocol(),
            scheme: exchange.scheme(),
            authority: exchange.authority(),
            method: exchange.method(),
            path: exchange.path(),
            request: MessageRef::of(exchange.message(Side::Request)),
            status: exchange.status(),
            response: MessageRef::of(exchange.message(Side::Response)),
            capture: CaptureRef {
                workload,
                namespace,
                pod,
                peer,
                cluster,
                route,
                flags,
                details,
                sample_rate: exchange.sample_rate(),
                redactions: StringsRef(exchange.redactions()),
                filter_version,
            },
        }
    }
}

fn hex_text<S: Serializer>(bytes: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex(bytes))
}

/// Where and how an exchange was captured; empty fields are left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// The workload whose sidecar captured it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Its pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The other side's address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Envoy's upstream cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Envoy's route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route: String,
    /// Envoy's response flags (failed exchanges only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// Envoy's response code details (failed exchanges only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    /// The sampling rate the exchange was kept at.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub sample_rate: f64,
    /// The places the filter redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<String>,
    /// The capturing filter's version (`har-import` for imported traffic).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_version: String,
}

impl Capture {
    fn is_empty(&self) -> bool {
        *self == Capture::default()
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_f64(value: &f64) -> bool {
    *value == 0.0 && value.is_sign_positive()
}

fn is_false(value: &bool) -> bool {
    !*value
}

// Hand-written readers for the three shapes users edit most, so that a mistake gets an error
// that says what the shape should be (serde's derived ones say "expected value" or "did not
// match any variant").

const HEADER_SHAPE: &str = "a header: [\"name\", \"value\"] or [\"name\", {\"base64\": \"…\"}]";
const VALUE_SHAPE: &str =
    "a header value: a string, or {\"base64\": \"…\"} for bytes that are not UTF-8";
const BODY_SHAPE: &str =
    "a body: exactly one of {\"json\": …}, {\"text\": \"…\"} or {\"base64\": \"…\"}";

impl<'de> Deserialize<'de> for HeaderEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HeaderEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(HEADER_SHAPE)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let name: String = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let value: HeaderValue = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom(format!(
                        "header {name:?} has more than 2 items; expected {HEADER_SHAPE}"
                    )));
                }
                Ok(HeaderEntry(name, value))
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(VALUE_SHAPE)
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(HeaderValue::Text(text.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(HeaderValue::Text(text))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut bytes = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "base64" || bytes.is_some() {
                        return Err(A::Error::custom(format!(
                            "unexpected key {key:?} in {VALUE_SHAPE}"
                        )));
                    }
                    bytes = Some(decode_base64::<A::Error>(&map.next_value::<String>()?)?);
                }
                bytes
                    .map(|base64| HeaderValue::Binary(Base64Bytes { base64 }))
                    .ok_or_else(|| {
                        A::Error::custom(format!("empty object; expected {VALUE_SHAPE}"))
                    })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Body;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(BODY_SHAPE)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(format!(
                        "empty object; expected {BODY_SHAPE}"
                    )));
                };
                let body = match kind.as_str() {
                    "json" => Body::Json(map.next_value::<Box<RawValue>>()?),
                    "text" => Body::Text(map.next_value()?),
                    "base64" => {
                        Body::Base64(decode_base64::<A::Error>(&map.next_value::<String>()?)?)
                    }
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown body kind {other:?}; expected {BODY_SHAPE}"
                        )));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "a body has one kind, this one has {kind:?} and {extra:?}; expected {BODY_SHAPE}"
                    )));
                }
                Ok(body)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn decode_base64<E: serde::de::Error>(text: &str) -> Result<Vec<u8>, E> {
    BASE64
        .decode(text.as_bytes())
        .map_err(|error| E::custom(format!("invalid base64: {error}")))
}

mod base64_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::decode_base64(&text)
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// The bytes of lowercase or uppercase hex, or `None`.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

fn entries_to_headers(entries: &[HeaderEntry]) -> Vec<Header> {
    entries
        .iter()
        .map(|HeaderEntry(name, value)| Header {
            name: name.clone(),
            value: match value {
                HeaderValue::Text(text) => text.as_bytes().to_vec(),
                HeaderValue::Binary(bytes) => bytes.base64.clone(),
            },
        })
        .collect()
}

impl MessageEntry {
    /// The message an entry stands for.
    pub fn to_message(&self) -> Message {
        let body = self
            .body
            .as_ref()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default();
        Message {
            headers: entries_to_headers(&self.headers),
            body_size: self.size.unwrap_or(body.len() as u64),
            body,
            body_truncated: self.truncated,
            trailers: entries_to_headers(&self.trailers),
        }
    }

    /// The value of the first header named `name` (ASCII case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|HeaderEntry(n, v)| match v {
            HeaderValue::Text(text) if n.eq_ignore_ascii_case(name) => Some(text.as_str()),
            _ => None,
        })
    }
}

impl Entry {
    /// The exchange a line stands for. Absent messages come back as empty ones; an id that is
    /// not hex is an error.
    pub fn to_exchange(&self, direction: Direction, window_from: u64) -> Result<Exchange, String> {
        let id = unhex(&self.id).ok_or_else(|| format!("id {:?} is not hex", self.id))?;
        let protocol = Protocol::from_word(&self.protocol).ok_or_else(|| {
            format!(
                "protocol {:?} is not one of HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3, gRPC",
                self.protocol
            )
        })?;
        let start = window_from
            .checked_add(self.offset_ns)
            .ok_or_else(|| format!("offset_ns {} is past the year 2554", self.offset_ns))?;
        let mut exchange = Exchange {
            id,
            trace_id: self.trace_id.clone(),
            start_unix_nanos: start,
            duration_nanos: self.duration_ns,
            response_headers_nanos: self.response_headers_ns,
            workload: self.capture.workload.clone(),
            namespace: self.capture.namespace.clone(),
            pod: self.capture.pod.clone(),
            peer_address: self.capture.peer.clone(),
            upstream_cluster: self.capture.cluster.clone(),
            route_name: self.capture.route.clone(),
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            request: Some(self.request.to_message()),
            status: self.status,
            response: Some(self.response.to_message()),
            response_flags: self.capture.flags.clone(),
            response_code_details: self.capture.details.clone(),
            sample_rate: self.capture.sample_rate,
            redactions: self.capture.redactions.clone(),
            filter_version: self.capture.filter_version.clone(),
            ..Default::default()
        };
        exchange.set_direction(direction);
        exchange.set_protocol(protocol);
        Ok(exchange)
    }
}
