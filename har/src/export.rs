//! Exchanges → HAR: [`from_exchanges`] builds the document, [`to_json`] writes it.
//!
//! One entry per exchange, in the order given. The mapping is the reverse of
//! [`crate::import`]'s:
//! - `url` is `scheme://authority` plus the path; an exchange without a scheme is written as
//!   `http`, without an authority as `localhost`, and a path that does not start with `/` gets
//!   one, so the URL is always absolute.
//! - `httpVersion` is the protocol (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`; gRPC as
//!   `HTTP/2`; empty when unknown). Headers keep their order; a value that is not UTF-8 is
//!   written base64-encoded with `"_encoding": "base64"`. `cookies` and `queryString` are
//!   parsed from the `cookie` header and the query for viewers; import ignores them when the
//!   headers and URL carry the same.
//! - Bodies: UTF-8 text as text; anything else (control characters included) base64 with `encoding: "base64"` (`_encoding` on
//!   `postData`, which has no `encoding` in HAR). A truncated body keeps its captured prefix,
//!   the true size goes in `content.size` / `bodySize`, and `_tapedeckTruncated: true` marks
//!   it. Bodies are written as they crossed the proxy: one still in a `content-encoding`
//!   (gzip…) is marked `_tapedeckRaw: true`, since HAR bodies are normally decoded.
//! - Timings: `send` 0, `wait` up to the response headers, `receive` the rest, `time` the
//!   duration (milliseconds, fractional).
//! - Trailers go in `_tapedeckTrailers` on the request and response, and every exchange field
//!   HAR has no place for (id, trace id, exact start, direction, workload, namespace, pod,
//!   peer, cluster, route, protocol, response flags, sample rate, redactions, filter version)
//!   in the entry's `_tapedeck`, so that exchanges → HAR → exchanges gives back the same
//!   exchanges.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol, REDACTED_PREFIX};

use crate::model::{
    Cache, Content, Cookie, Creator, Entry, Har, Log, NameValue, PostData, Request, Response,
    TapedeckEntry, Timings,
};
use crate::time;

/// The HAR version written.
pub const HAR_VERSION: &str = "1.2";

/// A HAR 1.2 document with one entry per exchange. `creator` names the writing application
/// (`log.creator.name`); its version is this crate's.
pub fn from_exchanges(exchanges: &[Exchange], creator: &str) -> Har {
    Har {
        log: Log {
            version: HAR_VERSION.into(),
            creator: Creator {
                name: creator.into(),
                version: env!("CARGO_PKG_VERSION").into(),
                comment: None,
            },
            browser: None,
            pages: None,
            entries: exchanges.iter().map(to_entry).collect(),
            comment: None,
            diagnostics: Vec::new(),
        },
    }
}

/// Pretty JSON in the spec's field order, with a final newline.
pub fn to_json(har: &Har) -> String {
    let mut json = serde_json::to_string_pretty(har)
        .expect("HAR types serialize infallibly: plain structs, string keys");
    json.push('\n');
    json
}

/// One exchange as one HAR entry.
pub fn to_entry(exchange: &Exchange) -> Entry {
    let empty = Message::default();
    let request = exchange.request.as_ref().unwrap_or(&empty);
    let response = exchange.response.as_ref().unwrap_or(&empty);
    let protocol = exchange.protocol();
    let http_version = match protocol {
        Protocol::Unspecified => "",
        Protocol::Http10 => "HTTP/1.0",
        Protocol::Http11 => "HTTP/1.1",
        Protocol::Http2 | Protocol::Grpc => "HTTP/2",
        Protocol::Http3 => "HTTP/3",
    };
    let scheme = if exchange.scheme.is_empty() {
        "http"
    } else {
        &exchange.scheme
    };
    let authority = if exchange.authority.is_empty() {
        "localhost"
    } else {
        &exchange.authority
    };
    let slash = if exchange.path.starts_with('/') {
        ""
    } else {
        "/"
    };
    let url = format!("{scheme}://{authority}{slash}{}", exchange.path);

    let duration = exchange.duration_nanos;
    let to_headers = exchange.response_headers_nanos.min(duration);
    let direction = exchange.direction();
    let server_ip_address = match direction {
        Direction::Outbound if !exchange.peer_address.is_empty() => {
            Some(host_of(&exchange.peer_address).to_owned())
        }
        _ => None,
    };

    Entry {
        pageref: None,
        started_date_time: time::format(exchange.start_unix_nanos),
        time: nanos_to_ms(duration),
        request: Request {
            method: exchange.method.clone(),
            url,
            http_version: http_version.into(),
            cookies: request_cookies(&request.headers),
            headers: fields(&request.headers),
            query_string: query_pairs(&exchange.path),
            post_data: post_data(request),
            headers_size: -1,
            body_size: size(request.body_size),
            comment: None,
            tapedeck_trailers: fields(&request.trailers),
        },
        response: Response {
            status: i64::from(exchange.status),
            status_text: reason_phrase(exchange.status).into(),
            http_version: http_version.into(),
            cookies: response_cookies(&response.headers),
            headers: fields(&response.headers),
            content: content(response),
            redirect_url: header_text(&response.headers, "location").unwrap_or_default(),
            headers_size: -1,
            body_size: size(response.body_size),
            comment: None,
            error: None,
            transfer_size: None,
            tapedeck_trailers: fields(&response.trailers),
        },
        cache: Cache::default(),
        timings: Timings {
            send: 0.0,
            wait: nanos_to_ms(to_headers),
            receive: nanos_to_ms(duration - to_headers),
            ..Timings::default()
        },
        server_ip_address,
        connection: None,
        comment: None,
        resource_type: None,
        tapedeck: Some(TapedeckEntry {
            id: exchange.id.iter().map(|b| format!("{b:02x}")).collect(),
            trace_id: exchange.trace_id.clone(),
            start_unix_nanos: Some(exchange.start_unix_nanos),
            direction: direction.as_word().into(),
            workload: exchange.workload.clone(),
            namespace: exchange.namespace.clone(),
            pod: exchange.pod.clone(),
            peer_address: exchange.peer_address.clone(),
            upstream_cluster: exchange.upstream_cluster.clone(),
            route_name: exchange.route_name.clone(),
            protocol: protocol.as_word().into(),
            response_flags: exchange.response_flags.clone(),
            response_code_details: exchange.response_code_details.clone(),
            sample_rate: Some(exchange.sample_rate),
            redactions: exchange.redactions.clone(),
            filter_version: exchange.filter_version.clone(),
        }),
    }
}

fn nanos_to_ms(nanos: u64) -> f64 {
    nanos as f64 / 1_000_000.0
}

fn size(body_size: u64) -> i64 {
    i64::try_from(body_size).unwrap_or(i64::MAX)
}

fn fields(headers: &[Header]) -> Vec<NameValue> {
    headers
        .iter()
        .map(|h| {
            let (value, encoding) = text_or_base64(&h.value);
            NameValue {
                encoding,
                ..NameValue::new(h.name.clone(), value)
            }
        })
        .collect()
}

/// Text as is; anything else base64 with the `base64` encoding marker. Text is UTF-8 without
/// control characters other than tab, line feed, form feed and carriage return (a protobuf
/// body is often valid UTF-8, and not text).
fn text_or_base64(bytes: &[u8]) -> (String, Option<String>) {
    let binary = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\x0c' | '\r');
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(binary) => (text.to_owned(), None),
        _ => (STANDARD.encode(bytes), Some("base64".into())),
    }
}

fn header_text(headers: &[Header], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
        .map(str::to_owned)
}

/// Whether the body is still in a `content-encoding` other than identity.
fn is_raw(message: &Message) -> bool {
    message.headers.iter().any(|h| {
        h.name == "content-encoding" && !h.value.trim_ascii().eq_ignore_ascii_case(b"identity")
    })
}

fn post_data(request: &Message) -> Option<PostData> {
    if request.body.is_empty() && request.body_size == 0 {
        return None;
    }
    let (text, encoding) = text_or_base64(&request.body);
    Some(PostData {
        mime_type: header_text(&request.headers, "content-type").unwrap_or_default(),
        params: Vec::new(),
        text: Some(text),
        comment: None,
        encoding,
        tapedeck_truncated: request.body_truncated,
        tapedeck_raw: is_raw(request),
    })
}

fn content(response: &Message) -> Content {
    let (text, encoding) = if response.body.is_empty() {
        (None, None)
    } else {
        let (text, encoding) = text_or_base64(&response.body);
        (Some(text), encoding)
    };
    Content {
        size: size(response.body_size),
        compression: None,
        mime_type: header_text(&response.headers, "content-type").unwrap_or_default(),
        text,
        encoding,
        comment: None,
        tapedeck_truncated: response.body_truncated,
        tapedeck_raw: is_raw(response),
    }
}

/// The host of an Envoy address (`10.0.0.1:8080`, `[::1]:8080`), for `serverIPAddress`.
fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => address,
    }
}

/// The query of a path as name/value pairs, percent-decoded (`+` as space) for viewers.
fn query_pairs(path: &str) -> Vec<NameValue> {
    let Some((_, query)) = path.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            NameValue::new(percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cookies of the `cookie` headers (redacted values are left out: they are no cookie list).
fn request_cookies(headers: &[Header]) -> Vec<Cookie> {
    headers
        .iter()
        .filter(|h| h.name == "cookie")
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .filter(|value| !value.starts_with(REDACTED_PREFIX))
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            Some(Cookie {
                name: name.trim().into(),
                value: value.trim().into(),
                ..Cookie::default()
            })
        })
        .collect()
}

/// Cookies of the `set-cookie` headers, with `Path`, `Domain`, `HttpOnly` and `Secure`.
/// `Expires` is left out: HAR wants ISO 8601, the header has an HTTP date.
fn response_cookies(headers: &[Header]) -> Vec<Cookie> {
    headers
        .iter()
        .filter(|h| h.name == "set-cookie")
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .filter(|value| !value.starts_with(REDACTED_PREFIX))
        .filter_map(|value| {
            let mut parts = value.split(';');
            let (name, value) = parts.next()?.trim().split_once('=')?;
            let mut cookie = Cookie {
                name: name.trim().into(),
                value: value.trim().into(),
                ..Cookie::default()
            };
            for attribute in parts {
                let (key, val) = attribute
                    .trim()
                    .split_once('=')
                    .unwrap_or((attribute.trim(), ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" => cookie.path = Some(val.into()),
                    "domain" => cookie.domain = Some(val.into()),
                    "httponly" => cookie.http_only = Some(true),
                    "secure" => cookie.secure = Some(true),
                    _ => {}
                }
            }
            Some(cookie)
        })
        .collect()
}

/// The standard reason phrase of a status (HTTP/2 sends none, HAR wants one).
fn reason_phrase(status: u32) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
