//! Serde types for HAR 1.2 (<http://www.softwareishard.com/blog/har-12-spec/>).
//!
//! The layout is the spec's: a [`Har`] document is `{"log": {...}}`, the log holds the
//! [`Entry`]s, and each entry one [`Request`], one [`Response`], its [`Cache`] and [`Timings`].
//! Fields serialize in the spec's order, so exports are stable and diff-friendly.
//!
//! Reading is lenient where real-world files are: unknown fields are ignored (browsers add many
//! `_`-prefixed extras), most required fields may be missing (they take the spec's "unknown"
//! value, `-1` for sizes and timings, empty otherwise), `null` counts as missing, and numbers
//! may be written as strings. A JSON type that cannot be read as the spec says (an object where
//! a string belongs) fails these types; the importer repairs such a field and reads again (see
//! [`crate::import`]), so only the two fields that make a file HAR at all, `log` and
//! `log.entries`, are required.
//!
//! The custom fields tapedeck writes so a round trip keeps what HAR has no field for all start
//! with `_tapedeck`; a few browser extras worth keeping (`_resourceType`, `_error`, …) are kept
//! too.

use serde::{Deserialize, Serialize};

/// A HAR document: `{"log": {...}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Har {
    /// The log, the only top-level field.
    pub log: Log,
}

/// `log`: the recording.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    /// The HAR format version, `1.2` (`1.1` files read as well).
    #[serde(default, deserialize_with = "lenient::string")]
    pub version: String,
    /// The application that wrote the file.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub creator: Creator,
    /// The browser that made the requests, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<Creator>,
    /// The pages the entries belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<Vec<Page>>,
    /// The exchanges, one entry each. Required.
    pub entries: Vec<Entry>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// What [`crate::parse`] repaired or could not read (never written).
    #[serde(skip)]
    pub diagnostics: Vec<crate::Diagnostic>,
}

/// `creator` and `browser`: a name and a version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Creator {
    /// The application's name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// The application's version.
    #[serde(default, deserialize_with = "lenient::string")]
    pub version: String,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `pages[]`: one page load that entries refer to by `pageref`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// When the page load started, ISO 8601.
    #[serde(default, deserialize_with = "lenient::string")]
    pub started_date_time: String,
    /// The page's id, referred to by [`Entry::pageref`].
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The page's title.
    #[serde(default, deserialize_with = "lenient::string")]
    pub title: String,
    /// Page load milestones.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub page_timings: PageTimings,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `pageTimings`: milliseconds from the page's start, `-1` (or absent) when not known.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageTimings {
    /// When the content was loaded (`DOMContentLoaded`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_content_load: Option<f64>,
    /// When the page was loaded (`load`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_load: Option<f64>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `entries[]`: one HTTP request and its response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The page this entry belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageref: Option<String>,
    /// When the request started, ISO 8601 with a UTC offset
    /// (`2026-11-27T13:05:01.123+01:00`). Kept as text; the importer checks it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub started_date_time: String,
    /// The whole exchange in milliseconds: the sum of the non-`-1` timings.
    #[serde(
        default = "minus_one_f64",
        deserialize_with = "lenient::f64_or_minus_one"
    )]
    pub time: f64,
    /// The request.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub request: Request,
    /// The response.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub response: Response,
    /// The cache state.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub cache: Cache,
    /// Where the time went.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub timings: Timings,
    /// The IP address of the server (no port).
    #[serde(
        default,
        rename = "serverIPAddress",
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_ip_address: Option<String>,
    /// The TCP/IP connection's id.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub connection: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Browser extra: the kind of resource (`document`, `xhr`, `image`…).
    #[serde(
        default,
        rename = "_resourceType",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_type: Option<String>,
    /// What tapedeck captured that HAR has no field for; present in tapedeck exports only.
    #[serde(default, rename = "_tapedeck", skip_serializing_if = "Option::is_none")]
    pub tapedeck: Option<TapedeckEntry>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            pageref: None,
            started_date_time: String::new(),
            time: -1.0,
            request: Request::default(),
            response: Response::default(),
            cache: Cache::default(),
            timings: Timings::default(),
            server_ip_address: None,
            connection: None,
            comment: None,
            resource_type: None,
            tapedeck: None,
        }
    }
}

/// `_tapedeck` on an entry: the exchange fields HAR has no place for.
///
/// An entry that carries this object was written by tapedeck, and the importer restores the
/// exchange from it exactly; absent strings mean empty there, not "use the import options".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TapedeckEntry {
    /// The exchange id, 32 lowercase hex digits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The trace id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// The start in ns since the epoch; `startedDateTime` has milliseconds only. Used when it
    /// agrees with `startedDateTime` to the millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix_nanos: Option<u64>,
    /// `inbound`, `outbound` or `unspecified`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub direction: String,
    /// The workload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// The workload's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The peer address (for inbound the caller, for outbound the upstream host).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    /// The Envoy upstream cluster.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upstream_cluster: String,
    /// The Envoy route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route_name: String,
    /// The protocol word (`HTTP/1.1`, `HTTP/2`, `gRPC`…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Envoy's response flags.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_flags: String,
    /// Envoy's response code details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_code_details: String,
    /// The sampling rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// The redactions the filter applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<String>,
    /// The version of the filter that captured the exchange.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_version: String,
}

/// `request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The method.
    #[serde(default, deserialize_with = "lenient::string")]
    pub method: String,
    /// The absolute URL, fragment excluded.
    #[serde(default, deserialize_with = "lenient::string")]
    pub url: String,
    /// `HTTP/1.1`, `HTTP/2`, `h2`…
    #[serde(default, deserialize_with = "lenient::string")]
    pub http_version: String,
    /// The cookies, parsed from the `Cookie` header.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub cookies: Vec<Cookie>,
    /// The header fields in order.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub headers: Vec<NameValue>,
    /// The query parameters, parsed from the URL.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub query_string: Vec<NameValue>,
    /// The request body, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    /// Bytes from the start of the request to the body, `-1` when not known.
    #[serde(default = "minus_one", deserialize_with = "lenient::i64_or_minus_one")]
    pub headers_size: i64,
    /// Bytes of the body, `-1` when not known.
    #[serde(default = "minus_one", deserialize_with = "lenient::i64_or_minus_one")]
    pub body_size: i64,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Trailer fields, which HAR has no field for (tapedeck exports only).
    #[serde(
        default,
        rename = "_tapedeckTrailers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tapedeck_trailers: Vec<NameValue>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            method: String::new(),
            url: String::new(),
            http_version: String::new(),
            cookies: Vec::new(),
            headers: Vec::new(),
            query_string: Vec::new(),
            post_data: None,
            headers_size: -1,
            body_size: -1,
            comment: None,
            tapedeck_trailers: Vec::new(),
        }
    }
}

/// `response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The status code; 0 when no response came.
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub status: i64,
    /// The reason phrase (empty in HTTP/2).
    #[serde(default, deserialize_with = "lenient::string")]
    pub status_text: String,
    /// `HTTP/1.1`, `HTTP/2`, `h2`…
    #[serde(default, deserialize_with = "lenient::string")]
    pub http_version: String,
    /// The cookies, parsed from `Set-Cookie` headers.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub cookies: Vec<Cookie>,
    /// The header fields in order.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub headers: Vec<NameValue>,
    /// The body.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub content: Content,
    /// The `Location` of a redirect, else empty.
    #[serde(default, rename = "redirectURL", deserialize_with = "lenient::string")]
    pub redirect_url: String,
    /// Bytes from the start of the response to the body, `-1` when not known.
    #[serde(default = "minus_one", deserialize_with = "lenient::i64_or_minus_one")]
    pub headers_size: i64,
    /// Bytes of the body as transferred (compressed), `-1` when not known.
    #[serde(default = "minus_one", deserialize_with = "lenient::i64_or_minus_one")]
    pub body_size: i64,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Browser extra: why no response came (`net::ERR_CONNECTION_REFUSED`).
    #[serde(
        default,
        rename = "_error",
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<String>,
    /// Browser extra: bytes on the wire, headers included.
    #[serde(
        default,
        rename = "_transferSize",
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub transfer_size: Option<i64>,
    /// Trailer fields, which HAR has no field for (tapedeck exports only).
    #[serde(
        default,
        rename = "_tapedeckTrailers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tapedeck_trailers: Vec<NameValue>,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 0,
            status_text: String::new(),
            http_version: String::new(),
            cookies: Vec::new(),
            headers: Vec::new(),
            content: Content::default(),
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
            comment: None,
            error: None,
            transfer_size: None,
            tapedeck_trailers: Vec::new(),
        }
    }
}

/// `cookies[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// The name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// The value.
    #[serde(default, deserialize_with = "lenient::string")]
    pub value: String,
    /// The `Path` attribute.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub path: Option<String>,
    /// The `Domain` attribute.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain: Option<String>,
    /// When the cookie expires, ISO 8601.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<String>,
    /// The `HttpOnly` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// The `Secure` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `headers[]` and `queryString[]`: one name/value pair.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NameValue {
    /// The name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// The value; base64 of the raw bytes when `_encoding` is `base64`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub value: String,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `base64` when the raw value is not UTF-8 and `value` holds it base64-encoded (tapedeck
    /// exports only).
    #[serde(default, rename = "_encoding", skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

impl NameValue {
    /// A pair without comment or encoding.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        NameValue {
            name: name.into(),
            value: value.into(),
            comment: None,
            encoding: None,
        }
    }
}

/// `postData`: the request body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    /// The body's media type.
    #[serde(default, deserialize_with = "lenient::string")]
    pub mime_type: String,
    /// Form parameters (for URL-encoded and multipart bodies), instead of `text`.
    #[serde(
        default,
        deserialize_with = "lenient::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub params: Vec<Param>,
    /// The body; base64 when `_encoding` is `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `base64` when `text` holds a binary body base64-encoded. HAR has `encoding` on
    /// `content` only; `encoding` is read here too.
    #[serde(
        default,
        rename = "_encoding",
        alias = "encoding",
        skip_serializing_if = "Option::is_none"
    )]
    pub encoding: Option<String>,
    /// True when `text` holds only the captured prefix of a longer body (`bodySize` says how
    /// long).
    #[serde(
        default,
        rename = "_tapedeckTruncated",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub tapedeck_truncated: bool,
    /// True when `text` is the body as it crossed the proxy, still in its `content-encoding`,
    /// rather than decoded as HAR bodies usually are.
    #[serde(
        default,
        rename = "_tapedeckRaw",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub tapedeck_raw: bool,
}

/// `params[]`: one posted parameter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Param {
    /// The name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// The value.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    /// The name of a posted file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The media type of a posted file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `content`: the response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// The body's length in bytes, decoded (`-1` when not known).
    #[serde(default = "minus_one", deserialize_with = "lenient::i64_or_minus_one")]
    pub size: i64,
    /// Bytes saved by compression.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub compression: Option<i64>,
    /// The body's media type.
    #[serde(default, deserialize_with = "lenient::string")]
    pub mime_type: String,
    /// The body, decoded from its `content-encoding`; base64 when `encoding` is `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `base64` when `text` holds a binary body base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when `text` holds only the captured prefix of a longer body (`size` says how long).
    #[serde(
        default,
        rename = "_tapedeckTruncated",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub tapedeck_truncated: bool,
    /// True when `text` is the body as it crossed the proxy, still in its `content-encoding`,
    /// rather than decoded as HAR bodies usually are.
    #[serde(
        default,
        rename = "_tapedeckRaw",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub tapedeck_raw: bool,
}

impl Default for Content {
    fn default() -> Self {
        Content {
            size: -1,
            compression: None,
            mime_type: String::new(),
            text: None,
            encoding: None,
            comment: None,
            tapedeck_truncated: false,
            tapedeck_raw: false,
        }
    }
}

/// `cache`: what the browser cache held before and after the request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    /// The cache entry before the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_request: Option<CacheEntry>,
    /// The cache entry after the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_request: Option<CacheEntry>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `beforeRequest` / `afterRequest`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// When the entry expires.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<String>,
    /// When the entry was last used.
    #[serde(default, deserialize_with = "lenient::string")]
    pub last_access: String,
    /// The entity tag.
    #[serde(default, deserialize_with = "lenient::string")]
    pub e_tag: String,
    /// How often the entry was used.
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub hit_count: i64,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `timings`: milliseconds per phase, `-1` when a phase does not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Waiting in a queue.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub blocked: Option<f64>,
    /// DNS resolution.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub dns: Option<f64>,
    /// Connecting, TLS included.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<f64>,
    /// Sending the request.
    #[serde(
        default = "minus_one_f64",
        deserialize_with = "lenient::f64_or_minus_one"
    )]
    pub send: f64,
    /// Waiting for the first response byte.
    #[serde(
        default = "minus_one_f64",
        deserialize_with = "lenient::f64_or_minus_one"
    )]
    pub wait: f64,
    /// Receiving the response.
    #[serde(
        default = "minus_one_f64",
        deserialize_with = "lenient::f64_or_minus_one"
    )]
    pub receive: f64,
    /// The TLS handshake (also counted in `connect`).
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub ssl: Option<f64>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            blocked: None,
            dns: None,
            connect: None,
            send: -1.0,
            wait: -1.0,
            receive: -1.0,
            ssl: None,
            comment: None,
        }
    }
}

fn minus_one() -> i64 {
    -1
}

fn minus_one_f64() -> f64 {
    -1.0
}

/// Deserializers that take what real-world HAR writers emit: `null` for missing, numbers as
/// strings, strings as numbers.
mod lenient {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// A JSON number, a numeric string, or null (`None`).
    fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = Option<f64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v as f64))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v as f64))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                let v = v.trim();
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(Some)
                    .ok_or_else(|| E::custom(format!("expected a number, found {v:?}")))
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                number(d)
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }

    fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
        match number(deserializer)? {
            None => Ok(None),
            Some(n) if n.fract() == 0.0 && n >= i64::MIN as f64 && n <= i64::MAX as f64 => {
                Ok(Some(n as i64))
            }
            Some(n) => Err(D::Error::custom(format!("expected an integer, found {n}"))),
        }
    }

    pub(super) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        number(d)
    }

    pub(super) fn f64_or_minus_one<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(number(d)?.unwrap_or(-1.0))
    }

    pub(super) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        integer(d)
    }

    pub(super) fn i64_or_minus_one<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(integer(d)?.unwrap_or(-1))
    }

    pub(super) fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(integer(d)?.unwrap_or(0))
    }

    /// A string, a number or a boolean (as text), or null (`None`).
    pub(super) fn opt_string<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<String>, D::Error> {
        struct StringVisitor;
        impl<'de> Visitor<'de> for StringVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_bool<E: Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                opt_string(d)
            }
        }
        deserializer.deserialize_any(StringVisitor)
    }

    /// An object, or null (the default).
    pub(super) fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(opt_string(d)?.unwrap_or_default())
    }

    /// An array, or null (empty). Anything else is an error.
    pub(super) fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        struct VecVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for VecVisitor<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<T>()? {
                    items.push(item);
                }
                Ok(items)
            }
            fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(VecVisitor(PhantomData))
    }
}
