//! The capture of one HTTP stream: headers and body chunks in, one [`Exchange`] out.
//!
//! This is plain Rust with no host calls, so it is tested on the host. The proxy-wasm glue in
//! `host.rs` only moves bytes into it.

use tapedeck_proto::prost;
use tapedeck_proto::prost::encoding::{
    WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};
pub use tapedeck_proto::traceparent_trace_id;
use tapedeck_proto::{Direction, Exchange, Protocol, REQUEST_ID_HEADER, TRACEPARENT_HEADER};

#[cfg(test)]
use tapedeck_proto::{Header, Message};

use crate::headers::HeaderMap;
use crate::redact::{BodyRedaction, Redactor};

/// The filter's version, written into every exchange and batch.
pub const FILTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Who captured: the workload identity of the proxy, resolved once per VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The workload name.
    pub workload: String,
    /// Its namespace.
    pub namespace: String,
    /// The pod (or node id).
    pub pod: String,
}

/// What the proxy knows of a stream at its end, read from properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamEnd {
    /// When the stream ended, ns since the epoch.
    pub end_unix_nanos: u64,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The other side's address.
    pub peer_address: String,
    /// The upstream cluster.
    pub upstream_cluster: String,
    /// The route name.
    pub route_name: String,
    /// `HTTP/1.1`, `HTTP/2`… as the proxy reports it.
    pub protocol: String,
    /// The response code when no response headers were seen (a local reply), else 0.
    pub response_code: u32,
    /// Envoy's response flags.
    pub response_flags: String,
    /// Envoy's response code details.
    pub response_code_details: String,
}

/// One side of the stream while it is under way.
#[derive(Debug, Default)]
struct Side {
    headers: HeaderMap,
    body: Vec<u8>,
    body_size: u64,
    trailers: HeaderMap,
}

impl Side {
    fn truncated(&self) -> bool {
        (self.body.len() as u64) < self.body_size
    }

    /// The encoded length of this side as a `Message`.
    fn encoded_len(&self) -> usize {
        headers_len(1, &self.headers)
            + bytes_len(2, self.body.len())
            + varint_field_len(3, self.body_size)
            + if self.truncated() { 2 } else { 0 }
            + headers_len(5, &self.trailers)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        encode_headers(1, &self.headers, out);
        encode_bytes(2, &self.body, out);
        encode_varint_field(3, self.body_size, out);
        if self.truncated() {
            encode_key(4, WireType::Varint, out);
            out.push(1);
        }
        encode_headers(5, &self.trailers, out);
    }
}

/// The capture of one stream, from request headers to the end.
#[derive(Debug)]
pub struct StreamCapture {
    max_body: usize,
    start_unix_nanos: u64,
    /// When the response headers arrived, ns since the epoch (0: not seen); made relative to
    /// the start when sealed, so the start may be learnt last.
    response_headers_unix_nanos: u64,
    method: String,
    scheme: String,
    authority: String,
    path: String,
    status: u32,
    trace_id: String,
    grpc: bool,
    request: Side,
    response: Side,
}

impl StreamCapture {
    /// Starts a capture from the request headers (pseudo-headers included, as the proxy gives
    /// them).
    pub fn start(start_unix_nanos: u64, max_body: usize, headers: Vec<(String, Vec<u8>)>) -> Self {
        Self::start_map(start_unix_nanos, max_body, HeaderMap::from_pairs(&headers))
    }

    /// Starts a capture from the request header map as the proxy serialized it; the map is
    /// kept as it is and encoded from at the end.
    pub fn start_map(start_unix_nanos: u64, max_body: usize, mut headers: HeaderMap) -> Self {
        let mut capture = StreamCapture {
            max_body,
            start_unix_nanos,
            response_headers_unix_nanos: 0,
            method: String::new(),
            scheme: String::new(),
            authority: String::new(),
            path: String::new(),
            status: 0,
            trace_id: String::new(),
            grpc: false,
            request: Side::default(),
            response: Side::default(),
        };
        let mut request_id = None;
        for (name, value) in headers.iter() {
            match name {
                b":method" => capture.method = lossy(value),
                b":scheme" => capture.scheme = lossy(value),
                b":authority" => capture.authority = lossy(value),
                b":path" => capture.path = lossy(value),
                _ if name.starts_with(b":") => {}
                _ => {
                    if name == TRACEPARENT_HEADER.as_bytes() && capture.trace_id.is_empty() {
                        capture.trace_id = traceparent_trace_id(value).unwrap_or_default();
                    } else if name == REQUEST_ID_HEADER.as_bytes() && request_id.is_none() {
                        request_id = Some(value);
                    } else if name == b"content-type" && value.starts_with(b"application/grpc") {
                        capture.grpc = true;
                    }
                }
            }
        }
        if capture.trace_id.is_empty() {
            capture.trace_id = request_id.map(lossy).unwrap_or_default();
        }
        headers.retain(|name| !name.starts_with(b":"));
        capture.request.headers = headers;
        capture
    }

    /// Sets when the stream started, ns since the epoch (learnt once the stream is kept, or at
    /// its end).
    pub fn started_at(&mut self, start_unix_nanos: u64) {
        self.start_unix_nanos = start_unix_nanos;
    }

    /// The request path (query included), as received.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request authority.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The trace id (may be empty).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The status of the response headers, 0 before (or without) them.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// How many more request body bytes are kept; the host copies no more than this.
    pub fn request_room(&self) -> usize {
        self.max_body.saturating_sub(self.request.body.len())
    }

    /// How many more response body bytes are kept.
    pub fn response_room(&self) -> usize {
        self.max_body.saturating_sub(self.response.body.len())
    }

    /// A request body chunk of `chunk_size` bytes crossed the proxy; `kept` is its first bytes
    /// (at most [`Self::request_room`]).
    pub fn request_body(&mut self, chunk_size: usize, kept: &[u8]) {
        push_chunk(&mut self.request, self.max_body, chunk_size, kept);
    }

    /// Like [`Self::request_body`], taking the bytes the host returned: the first chunk is
    /// kept without a copy.
    pub fn request_body_owned(&mut self, chunk_size: usize, kept: Vec<u8>) {
        push_chunk_owned(&mut self.request, self.max_body, chunk_size, kept);
    }

    /// A response body chunk crossed the proxy.
    pub fn response_body(&mut self, chunk_size: usize, kept: &[u8]) {
        push_chunk(&mut self.response, self.max_body, chunk_size, kept);
    }

    /// Like [`Self::response_body`], taking the bytes the host returned.
    pub fn response_body_owned(&mut self, chunk_size: usize, kept: Vec<u8>) {
        push_chunk_owned(&mut self.response, self.max_body, chunk_size, kept);
    }

    /// The request trailers arrived.
    pub fn request_trailers(&mut self, trailers: Vec<(String, Vec<u8>)>) {
        self.request.trailers = HeaderMap::from_pairs(&trailers);
    }

    /// The request trailers arrived, as the proxy serialized them.
    pub fn request_trailers_map(&mut self, trailers: HeaderMap) {
        self.request.trailers = trailers;
    }

    /// The response headers arrived at `at_unix_nanos`.
    pub fn response_headers(&mut self, at_unix_nanos: u64, headers: Vec<(String, Vec<u8>)>) {
        self.response_headers_map(at_unix_nanos, HeaderMap::from_pairs(&headers));
    }

    /// The response headers arrived, as the proxy serialized them.
    pub fn response_headers_map(&mut self, at_unix_nanos: u64, mut headers: HeaderMap) {
        self.response_headers_unix_nanos = at_unix_nanos.max(1);
        if let Some(status) = headers.get(":status") {
            self.status = std::str::from_utf8(status)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        headers.retain(|name| !name.starts_with(b":"));
        self.response.headers = headers;
    }

    /// The response trailers arrived.
    pub fn response_trailers(&mut self, trailers: Vec<(String, Vec<u8>)>) {
        self.response.trailers = HeaderMap::from_pairs(&trailers);
    }

    /// The response trailers arrived, as the proxy serialized them.
    pub fn response_trailers_map(&mut self, trailers: HeaderMap) {
        self.response.trailers = trailers;
    }

    /// Whether a body was cut at the capture limit (for the truncation counter).
    pub fn truncated_bodies(&self) -> u64 {
        u64::from(self.request.truncated()) + u64::from(self.response.truncated())
    }

    /// Ends the capture: the exchange as it leaves the pod, redacted (decoded from
    /// [`Self::seal`]'s encoding, so tests see exactly what is sent).
    pub fn finish(
        self,
        end: StreamEnd,
        identity: &Identity,
        id: [u8; 16],
        sample_rate: f64,
        redactor: &Redactor,
    ) -> Exchange {
        let sealed = self.seal(end, identity, id, sample_rate, redactor);
        let mut bytes = Vec::with_capacity(sealed.encoded_len());
        sealed.encode(&mut bytes);
        debug_assert_eq!(bytes.len(), sealed.encoded_len());
        // What `encode` wrote is a valid `Exchange` by construction.
        prost::Message::decode(bytes.as_slice()).unwrap_or_default()
    }

    /// Ends the capture: redacts it and readies it to be encoded once, straight into the
    /// outbox's batch.
    pub fn seal<'a>(
        self,
        end: StreamEnd,
        identity: &'a Identity,
        id: [u8; 16],
        sample_rate: f64,
        redactor: &Redactor,
    ) -> SealedExchange<'a> {
        let mut redactions = Vec::new();
        let (path, params) = redactor.path(&self.path);
        for name in params {
            redactions.push(format!("request.query:{name}"));
        }
        let mut request = self.request;
        let mut response = self.response;
        redact_side(&mut request, "request", redactor, &mut redactions);
        redact_side(&mut response, "response", redactor, &mut redactions);
        let protocol = if self.grpc {
            Protocol::Grpc
        } else {
            protocol_of(&end.protocol)
        };
        let status = if self.status != 0 {
            self.status
        } else {
            end.response_code
        };
        let request_len = request.encoded_len();
        let response_len = response.encoded_len();
        let mut sealed = SealedExchange {
            id,
            trace_id: self.trace_id,
            start_unix_nanos: self.start_unix_nanos,
            duration_nanos: end
                .end_unix_nanos
                .saturating_sub(self.start_unix_nanos)
                .max(1),
            response_headers_nanos: if self.response_headers_unix_nanos == 0 {
                0
            } else {
                self.response_headers_unix_nanos
                    .saturating_sub(self.start_unix_nanos)
                    .max(1)
            },
            direction: end.direction as i32,
            identity,
            peer_address: end.peer_address,
            upstream_cluster: end.upstream_cluster,
            route_name: end.route_name,
            protocol: protocol as i32,
            scheme: self.scheme,
            authority: self.authority,
            method: self.method,
            path,
            request,
            request_len,
            status,
            response,
            response_len,
            response_flags: end.response_flags,
            response_code_details: end.response_code_details,
            sample_rate,
            redactions,
            len: 0,
        };
        sealed.len = sealed.compute_len();
        sealed
    }
}

/// A finished, redacted exchange that knows its encoded length, so it is encoded once,
/// straight into the batch it is pushed in (no intermediate `Exchange` and no second copy).
#[derive(Debug)]
pub struct SealedExchange<'a> {
    id: [u8; 16],
    trace_id: String,
    start_unix_nanos: u64,
    duration_nanos: u64,
    response_headers_nanos: u64,
    direction: i32,
    identity: &'a Identity,
    peer_address: String,
    upstream_cluster: String,
    route_name: String,
    protocol: i32,
    scheme: String,
    authority: String,
    method: String,
    path: String,
    request: Side,
    request_len: usize,
    status: u32,
    response: Side,
    response_len: usize,
    response_flags: String,
    response_code_details: String,
    sample_rate: f64,
    redactions: Vec<String>,
    len: usize,
}

impl SealedExchange<'_> {
    fn compute_len(&self) -> usize {
        bytes_len(1, self.id.len())
            + bytes_len(2, self.trace_id.len())
            + if self.start_unix_nanos != 0 { 9 } else { 0 }
            + varint_field_len(4, self.duration_nanos)
            + varint_field_len(5, self.response_headers_nanos)
            + varint_field_len(6, self.direction as u64)
            + bytes_len(7, self.identity.workload.len())
            + bytes_len(8, self.identity.namespace.len())
            + bytes_len(9, self.identity.pod.len())
            + bytes_len(10, self.peer_address.len())
            + bytes_len(11, self.upstream_cluster.len())
            + bytes_len(12, self.route_name.len())
            + varint_field_len(13, self.protocol as u64)
            + bytes_len(14, self.scheme.len())
            + bytes_len(15, self.authority.len())
            + bytes_len(16, self.method.len())
            + bytes_len(17, self.path.len())
            + message_len(18, self.request_len)
            + varint_field_len(19, u64::from(self.status))
            + message_len(20, self.response_len)
            + bytes_len(21, self.response_flags.len())
            + bytes_len(22, self.response_code_details.len())
            + if self.sample_rate != 0.0 { 10 } else { 0 }
            + self
                .redactions
                .iter()
                .map(|r| message_len(24, r.len()))
                .sum::<usize>()
            + bytes_len(25, FILTER_VERSION.len())
    }

    /// The length of the encoded `Exchange`.
    pub fn encoded_len(&self) -> usize {
        self.len
    }

    /// Appends the encoded `Exchange` (exactly [`Self::encoded_len`] bytes), fields in number
    /// order and defaults left out, as prost encodes it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        encode_bytes(1, &self.id, out);
        encode_bytes(2, self.trace_id.as_bytes(), out);
        if self.start_unix_nanos != 0 {
            encode_key(3, WireType::SixtyFourBit, out);
            out.extend_from_slice(&self.start_unix_nanos.to_le_bytes());
        }
        encode_varint_field(4, self.duration_nanos, out);
        encode_varint_field(5, self.response_headers_nanos, out);
        encode_varint_field(6, self.direction as u64, out);
        encode_bytes(7, self.identity.workload.as_bytes(), out);
        encode_bytes(8, self.identity.namespace.as_bytes(), out);
        encode_bytes(9, self.identity.pod.as_bytes(), out);
        encode_bytes(10, self.peer_address.as_bytes(), out);
        encode_bytes(11, self.upstream_cluster.as_bytes(), out);
        encode_bytes(12, self.route_name.as_bytes(), out);
        encode_varint_field(13, self.protocol as u64, out);
        encode_bytes(14, self.scheme.as_bytes(), out);
        encode_bytes(15, self.authority.as_bytes(), out);
        encode_bytes(16, self.method.as_bytes(), out);
        encode_bytes(17, self.path.as_bytes(), out);
        encode_key(18, WireType::LengthDelimited, out);
        encode_varint(self.request_len as u64, out);
        self.request.encode(out);
        encode_varint_field(19, u64::from(self.status), out);
        encode_key(20, WireType::LengthDelimited, out);
        encode_varint(self.response_len as u64, out);
        self.response.encode(out);
        encode_bytes(21, self.response_flags.as_bytes(), out);
        encode_bytes(22, self.response_code_details.as_bytes(), out);
        if self.sample_rate != 0.0 {
            encode_key(23, WireType::SixtyFourBit, out);
            out.extend_from_slice(&self.sample_rate.to_le_bytes());
        }
        for redaction in &self.redactions {
            encode_key(24, WireType::LengthDelimited, out);
            encode_varint(redaction.len() as u64, out);
            out.extend_from_slice(redaction.as_bytes());
        }
        encode_bytes(25, FILTER_VERSION.as_bytes(), out);
    }
}

/// A length-delimited field that is always written (a message or a repeated element).
fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// A `string`/`bytes` field, left out when empty.
fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 { 0 } else { message_len(tag, len) }
}

fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn encode_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    if !bytes.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
}

fn encode_varint_field(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// A header name as the `string` field needs it (valid UTF-8; header names are ASCII).
fn header_name(headers: &HeaderMap, i: usize) -> std::borrow::Cow<'_, [u8]> {
    match headers.name_str(i) {
        std::borrow::Cow::Borrowed(name) => std::borrow::Cow::Borrowed(name.as_bytes()),
        std::borrow::Cow::Owned(name) => std::borrow::Cow::Owned(name.into_bytes()),
    }
}

fn header_len(headers: &HeaderMap, i: usize) -> usize {
    bytes_len(1, header_name(headers, i).len()) + bytes_len(2, headers.value(i).len())
}

fn headers_len(tag: u32, headers: &HeaderMap) -> usize {
    (0..headers.len())
        .map(|i| message_len(tag, header_len(headers, i)))
        .sum()
}

fn encode_headers(tag: u32, headers: &HeaderMap, out: &mut Vec<u8>) {
    for i in 0..headers.len() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(header_len(headers, i) as u64, out);
        encode_bytes(1, &header_name(headers, i), out);
        encode_bytes(2, headers.value(i), out);
    }
}

fn push_chunk(side: &mut Side, max_body: usize, chunk_size: usize, kept: &[u8]) {
    let room = max_body.saturating_sub(side.body.len());
    side.body
        .extend_from_slice(kept.get(..room.min(kept.len())).unwrap_or_default());
    side.body_size = side.body_size.saturating_add(chunk_size as u64);
}

fn push_chunk_owned(side: &mut Side, max_body: usize, chunk_size: usize, mut kept: Vec<u8>) {
    if side.body.is_empty() {
        kept.truncate(max_body);
        side.body = kept;
        side.body_size = side.body_size.saturating_add(chunk_size as u64);
    } else {
        push_chunk(side, max_body, chunk_size, &kept);
    }
}

fn redact_side(side: &mut Side, which: &str, redactor: &Redactor, redactions: &mut Vec<String>) {
    for place in [&mut side.headers, &mut side.trailers] {
        for i in 0..place.len() {
            if redactor.is_secret_header(&place.name_str(i)) {
                let name = place.name_str(i).into_owned();
                let value = redactor.header_value(&name, place.value(i));
                let entry = format!("{which}.header:{name}");
                place.replace(i, value);
                if !redactions.contains(&entry) {
                    redactions.push(entry);
                }
            }
        }
    }
    if redactor.redacts_json() && !side.body.is_empty() && is_json(&side.headers, &side.body) {
        match redactor.json_body(&side.body) {
            BodyRedaction::Unchanged => {}
            BodyRedaction::Redacted(body, paths) => {
                side.body = body;
                redactions.extend(paths.into_iter().map(|path| format!("{which}.body:{path}")));
            }
            BodyRedaction::Withheld => {
                side.body.clear();
                redactions.push(format!("{which}.body:withheld"));
            }
        }
    }
}

/// A body is treated as JSON when its content type says so, or when it has none and starts
/// like a JSON object or array.
fn is_json(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers.get("content-type") {
        Some(value) => {
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            value.contains("json")
        }
        None => matches!(
            body.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        ),
    }
}

fn protocol_of(reported: &str) -> Protocol {
    match reported {
        "HTTP/1.0" => Protocol::Http10,
        "HTTP/1.1" => Protocol::Http11,
        "HTTP/2" => Protocol::Http2,
        "HTTP/3" => Protocol::Http3,
        _ => Protocol::Unspecified,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What becomes of a stream, decided at its request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The match rules leave it out.
    FilteredOut,
    /// Sampling leaves it out.
    SampledOut,
    /// Captured.
    Kept,
}

/// Decides a stream from its request headers as the proxy serialized them, the way
/// [`StreamCapture::start_map`] followed by [`Matcher::matches`] and [`Sampler::keep`] would,
/// but without building the capture: a stream left out costs a scan of the buffer and no
/// allocation. `random` is drawn only when the match rules let the stream in (as before).
/// `None` when the map is malformed.
pub fn decide(
    serialized: &[u8],
    matcher: &Matcher,
    sampler: &Sampler,
    random: impl FnOnce() -> u64,
) -> Option<Decision> {
    let mut path: &[u8] = b"";
    let mut authority: &[u8] = b"";
    let mut trace_id = String::new();
    let mut request_id = None;
    crate::headers::for_each_pair(serialized, |name, value| match name {
        b":path" => path = value,
        b":authority" => authority = value,
        _ if name.starts_with(b":") => {}
        _ => {
            if name == TRACEPARENT_HEADER.as_bytes() && trace_id.is_empty() {
                trace_id = traceparent_trace_id(value).unwrap_or_default();
            } else if name == REQUEST_ID_HEADER.as_bytes() && request_id.is_none() {
                request_id = Some(value);
            }
        }
    })?;
    if !matcher.is_empty() && !matcher.matches(&lossy(path), &lossy(authority)) {
        return Some(Decision::FilteredOut);
    }
    let random = random();
    let kept = if trace_id.is_empty() {
        let request_id = request_id.unwrap_or_default();
        match std::str::from_utf8(request_id) {
            Ok(text) => sampler.keep(text, random),
            Err(_) => sampler.keep(&lossy(request_id), random),
        }
    } else {
        sampler.keep(&trace_id, random)
    };
    Some(if kept {
        Decision::Kept
    } else {
        Decision::SampledOut
    })
}

/// Which exchanges are considered at all.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    include_paths: Vec<String>,
    exclude_paths: Vec<String>,
    include_authorities: Vec<String>,
    exclude_authorities: Vec<String>,
}

impl Matcher {
    /// Builds the matcher of a configuration.
    pub fn new(config: &crate::config::Match) -> Self {
        let lower = |names: &[String]| names.iter().map(|name| name.to_ascii_lowercase()).collect();
        Self {
            include_paths: config.include_paths.clone(),
            exclude_paths: config.exclude_paths.clone(),
            include_authorities: lower(&config.include_authorities),
            exclude_authorities: lower(&config.exclude_authorities),
        }
    }

    /// Whether there are no rules (every exchange matches).
    pub fn is_empty(&self) -> bool {
        self.include_paths.is_empty()
            && self.exclude_paths.is_empty()
            && self.include_authorities.is_empty()
            && self.exclude_authorities.is_empty()
    }

    /// Whether an exchange with this path and authority is captured.
    pub fn matches(&self, path: &str, authority: &str) -> bool {
        let host = strip_port(authority).to_ascii_lowercase();
        let path_in = |prefixes: &[String]| {
            prefixes
                .iter()
                .any(|prefix| path.starts_with(prefix.as_str()))
        };
        let host_in = |patterns: &[String]| {
            patterns
                .iter()
                .any(|pattern| authority_matches(pattern, &host))
        };
        (self.include_paths.is_empty() || path_in(&self.include_paths))
            && (self.include_authorities.is_empty() || host_in(&self.include_authorities))
            && !path_in(&self.exclude_paths)
            && !host_in(&self.exclude_authorities)
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`.
        return authority
            .split_once(']')
            .map_or(authority, |(host, _)| host.trim_start_matches('['));
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                authority
            }
        })
}

fn authority_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern == host,
    }
}

/// Decides which exchanges are kept at a sampling rate.
#[derive(Debug, Clone)]
pub struct Sampler {
    rate: f64,
    threshold: u64,
}

impl Sampler {
    /// A sampler that keeps `rate` (0 to 1) of exchanges.
    pub fn new(rate: f64) -> Self {
        let rate = rate.clamp(0.0, 1.0);
        // `as` saturates, and rate 1 is handled before the threshold is used.
        let threshold = (rate * u64::MAX as f64) as u64;
        Self { rate, threshold }
    }

    /// The rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether to keep an exchange. With a trace id the choice is a hash of it, the same on
    /// every proxy of the trace; without one, `random` decides.
    pub fn keep(&self, trace_id: &str, random: u64) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        if self.rate <= 0.0 {
            return false;
        }
        let draw = if trace_id.is_empty() {
            random
        } else {
            mix64(fnv1a64(trace_id.as_bytes()))
        };
        draw < self.threshold
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64's finalizer: spreads the bits of `x` evenly.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small, fast generator for exchange ids and sampling draws (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// 16 random bytes: an exchange id.
    pub fn id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        let (a, b) = id.split_at_mut(8);
        a.copy_from_slice(&self.next_u64().to_le_bytes());
        b.copy_from_slice(&self.next_u64().to_le_bytes());
        id
    }
}

#[cfg(test)]
mod tests;
