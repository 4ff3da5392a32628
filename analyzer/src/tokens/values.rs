//! Where values can sit in an exchange, and the walk that finds them: headers (with their auth
//! scheme split off), cookies, query parameters, path segments and JSON body leaves.

use std::borrow::Cow;

use crate::rows::{MessageView, Row};
use serde::{Deserialize, Serialize};

use super::Side;
use crate::template::{path_without_query, query_of};

/// The part of a message a value is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// A header (cookies excepted).
    Header,
    /// A request cookie (`Cookie`) or a cookie set by a response (`Set-Cookie`).
    Cookie,
    /// A query parameter (raw, not percent-decoded).
    Query,
    /// A path segment.
    Path,
    /// A leaf of a JSON body.
    Json,
}

impl Part {
    /// The word used in the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Header => "header",
            Part::Cookie => "cookie",
            Part::Query => "query",
            Part::Path => "path",
            Part::Json => "json",
        }
    }
}

/// One value found in an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence<'a> {
    /// Request or response.
    pub side: Side,
    /// Where in the message.
    pub part: Part,
    /// Header, cookie or query name; JSON path; path segment number.
    pub key: Cow<'a, str>,
    /// The auth scheme split off a header value (`Bearer`).
    pub scheme: Option<&'a str>,
    /// The value (a JSON number as written).
    pub value: Cow<'a, str>,
    /// The value is a JSON number.
    pub number: bool,
}

/// Headers that the mesh, the transport or the content negotiation set: never dynamic values
/// of the application. Tracing headers are here too; replay sets its own.
const SKIPPED_HEADERS: &[&str] = &[
    ":authority",
    ":method",
    ":path",
    ":scheme",
    ":status",
    "accept",
    "accept-encoding",
    "accept-language",
    "b3",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "grpc-accept-encoding",
    "grpc-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-timeout",
    "grpc-trace-bin",
    "host",
    "keep-alive",
    "server",
    "te",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "x-ot-span-context",
    "x-request-id",
];

/// Header name prefixes skipped the same way.
const SKIPPED_PREFIXES: &[&str] = &["x-b3-", "x-envoy-", "x-forwarded-", "x-datadog-"];

fn skipped(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SKIPPED_HEADERS.binary_search(&lower.as_str()).is_ok()
        || SKIPPED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Calls `found` with every value of an exchange's request and response.
pub fn extract<R: Row>(exchange: &R, found: &mut dyn FnMut(Occurrence<'_>)) {
    let path = path_without_query(exchange.path());
    for (i, segment) in path.split('/').enumerate().skip(1) {
        if !segment.is_empty() {
            found(Occurrence {
                side: Side::Request,
                part: Part::Path,
                key: Cow::Owned(i.to_string()),
                scheme: None,
                value: Cow::Borrowed(segment),
                number: false,
            });
        }
    }
    if let Some(query) = query_of(exchange.path()) {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !name.is_empty() && !value.is_empty() {
                found(Occurrence {
                    side: Side::Request,
                    part: Part::Query,
                    key: Cow::Borrowed(name),
                    scheme: None,
                    value: Cow::Borrowed(value),
                    number: false,
                });
            }
        }
    }
    message(exchange.message(Side::Request), Side::Request, found);
    message(exchange.message(Side::Response), Side::Response, found);
}

fn message(message: MessageView<'_>, side: Side, found: &mut dyn FnMut(Occurrence<'_>)) {
    for (name, value) in message.headers.iter() {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        if name.eq_ignore_ascii_case("cookie") && side == Side::Request {
            for pair in value.split(';') {
                cookie_pair(pair, side, found);
            }
        } else if name.eq_ignore_ascii_case("set-cookie") && side == Side::Response {
            cookie_pair(value.split(';').next().unwrap_or(""), side, found);
        } else if !skipped(name) {
            let (scheme, token) = split_scheme(name, value);
            found(Occurrence {
                side,
                part: Part::Header,
                key: lower(name),
                scheme,
                value: Cow::Borrowed(token),
                number: false,
            });
        }
    }
    if message.truncated {
        return;
    }
    let body = message.body;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{' | b'['))
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
    {
        let mut path = String::from("$");
        walk_json(&value, &mut path, side, found);
    }
}

fn lower(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// `Bearer abc` is scheme `Bearer` and token `abc` in credential headers.
pub(crate) fn split_scheme<'a>(name: &str, value: &'a str) -> (Option<&'a str>, &'a str) {
    if (name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization"))
        && let Some((scheme, token)) = value.split_once(' ')
        && !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return (Some(scheme), token.trim());
    }
    (None, value)
}

fn cookie_pair(pair: &str, side: Side, found: &mut dyn FnMut(Occurrence<'_>)) {
    if let Some((name, value)) = pair.trim().split_once('=')
        && !name.is_empty()
    {
        found(Occurrence {
            side,
            part: Part::Cookie,
            key: Cow::Borrowed(name),
            scheme: None,
            value: Cow::Borrowed(value.trim_matches('"')),
            number: false,
        });
    }
}

/// Visits the leaves of a JSON value; arrays collapse to `[*]`.
fn walk_json(
    value: &serde_json::Value,
    path: &mut String,
    side: Side,
    found: &mut dyn FnMut(Occurrence<'_>),
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                push_key(path, key);
                walk_json(child, path, side, found);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) => {
            let len = path.len();
            path.push_str("[*]");
            for child in items {
                walk_json(child, path, side, found);
            }
            path.truncate(len);
        }
        serde_json::Value::String(text) => found(Occurrence {
            side,
            part: Part::Json,
            key: Cow::Owned(path.clone()),
            scheme: None,
            value: Cow::Borrowed(text),
            number: false,
        }),
        serde_json::Value::Number(number) => found(Occurrence {
            side,
            part: Part::Json,
            key: Cow::Owned(path.clone()),
            scheme: None,
            value: Cow::Owned(number.to_string()),
            number: true,
        }),
        serde_json::Value::Bool(_) | serde_json::Value::Null => {}
    }
}

/// Appends one key to a JSON path as locations spell it: `.key` for plain keys, `["odd key"]`
/// otherwise (the responder compares JSON bodies leaf by leaf under these paths).
pub fn push_key(path: &mut String, key: &str) {
    let plain = key.bytes().enumerate().all(|(i, b)| {
        b == b'_' || b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b == b'-'))
    });
    if plain && !key.is_empty() {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_proto::{Exchange, Header, Message};

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn every_place_is_walked() {
        let exchange = Exchange {
            path: "/orders/ord_1a2b3c?since=1795780800&x=".into(),
            request: Some(Message {
                headers: vec![
                    header("authorization", "Bearer abc.def.ghi"),
                    header("cookie", "session=s1; theme=dark"),
                    header("x-request-id", "skipped"),
                    header("X-Api-Key", "k1"),
                ],
                body: br#"{"items":[{"sku":"a1"},{"sku":"b2"}],"n":1042,"ok":true,"odd key":"v"}"#
                    .to_vec(),
                ..Default::default()
            }),
            response: Some(Message {
                headers: vec![header("set-cookie", "session=s2; Path=/; HttpOnly")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut seen = Vec::new();
        extract(&exchange, &mut |o| {
            seen.push(format!(
                "{:?} {} {} {}{}",
                o.side,
                o.part.as_str(),
                o.key,
                o.scheme.map(|s| format!("[{s}] ")).unwrap_or_default(),
                o.value
            ))
        });
        assert_eq!(
            seen,
            [
                "Request path 1 orders",
                "Request path 2 ord_1a2b3c",
                "Request query since 1795780800",
                "Request header authorization [Bearer] abc.def.ghi",
                "Request cookie session s1",
                "Request cookie theme dark",
                "Request header x-api-key k1",
                "Request json $.items[*].sku a1",
                "Request json $.items[*].sku b2",
                "Request json $.n 1042",
                "Request json $[\"odd key\"] v",
                "Response cookie session s2",
            ]
        );
    }
}
