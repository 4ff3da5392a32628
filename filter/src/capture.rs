//! The capture of one HTTP stream: headers and body chunks in, one [`Exchange`] out.
//!
//! This is plain Rust with no host calls, so it is tested on the host. The proxy-wasm glue in
//! `host.rs` only moves bytes into it.

pub use tapedeck_proto::traceparent_trace_id;
use tapedeck_proto::{
    Direction, Exchange, Header, Message, Protocol, REQUEST_ID_HEADER, TRACEPARENT_HEADER,
};

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
    headers: Vec<Header>,
    body: Vec<u8>,
    body_size: u64,
    trailers: Vec<Header>,
}

impl Side {
    fn into_message(self) -> Message {
        let truncated = (self.body.len() as u64) < self.body_size;
        Message {
            headers: self.headers,
            body: self.body,
            body_size: self.body_size,
            body_truncated: truncated,
            trailers: self.trailers,
        }
    }
}

/// The capture of one stream, from request headers to the end.
#[derive(Debug)]
pub struct StreamCapture {
    max_body: usize,
    start_unix_nanos: u64,
    response_headers_nanos: u64,
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
        let mut capture = StreamCapture {
            max_body,
            start_unix_nanos,
            response_headers_nanos: 0,
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
        for (name, value) in headers {
            match name.as_str() {
                ":method" => capture.method = lossy(value),
                ":scheme" => capture.scheme = lossy(value),
                ":authority" => capture.authority = lossy(value),
                ":path" => capture.path = lossy(value),
                _ if name.starts_with(':') => {}
                _ => {
                    if name == TRACEPARENT_HEADER && capture.trace_id.is_empty() {
                        capture.trace_id = traceparent_trace_id(&value).unwrap_or_default();
                    } else if name == REQUEST_ID_HEADER && request_id.is_none() {
                        request_id = Some(lossy(value.clone()));
                    } else if name == "content-type" && value.starts_with(b"application/grpc") {
                        capture.grpc = true;
                    }
                    capture.request.headers.push(Header { name, value });
                }
            }
        }
        if capture.trace_id.is_empty() {
            capture.trace_id = request_id.unwrap_or_default();
        }
        capture
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

    /// A response body chunk crossed the proxy.
    pub fn response_body(&mut self, chunk_size: usize, kept: &[u8]) {
        push_chunk(&mut self.response, self.max_body, chunk_size, kept);
    }

    /// The request trailers arrived.
    pub fn request_trailers(&mut self, trailers: Vec<(String, Vec<u8>)>) {
        self.request.trailers = to_headers(trailers);
    }

    /// The response headers arrived at `at_unix_nanos`.
    pub fn response_headers(&mut self, at_unix_nanos: u64, headers: Vec<(String, Vec<u8>)>) {
        self.response_headers_nanos = at_unix_nanos.saturating_sub(self.start_unix_nanos).max(1);
        for (name, value) in headers {
            if name == ":status" {
                self.status = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if !name.starts_with(':') {
                self.response.headers.push(Header { name, value });
            }
        }
    }

    /// The response trailers arrived.
    pub fn response_trailers(&mut self, trailers: Vec<(String, Vec<u8>)>) {
        self.response.trailers = to_headers(trailers);
    }

    /// Whether a body was cut at the capture limit (for the truncation counter).
    pub fn truncated_bodies(&self) -> u64 {
        u64::from((self.request.body.len() as u64) < self.request.body_size)
            + u64::from((self.response.body.len() as u64) < self.response.body_size)
    }

    /// Ends the capture: the exchange as it leaves the pod, redacted.
    pub fn finish(
        self,
        end: StreamEnd,
        identity: &Identity,
        id: [u8; 16],
        sample_rate: f64,
        redactor: &Redactor,
    ) -> Exchange {
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
        Exchange {
            id: id.to_vec(),
            trace_id: self.trace_id,
            start_unix_nanos: self.start_unix_nanos,
            duration_nanos: end
                .end_unix_nanos
                .saturating_sub(self.start_unix_nanos)
                .max(1),
            response_headers_nanos: self.response_headers_nanos,
            direction: end.direction as i32,
            workload: identity.workload.clone(),
            namespace: identity.namespace.clone(),
            pod: identity.pod.clone(),
            peer_address: end.peer_address,
            upstream_cluster: end.upstream_cluster,
            route_name: end.route_name,
            protocol: protocol as i32,
            scheme: self.scheme,
            authority: self.authority,
            method: self.method,
            path,
            request: Some(request.into_message()),
            status,
            response: Some(response.into_message()),
            response_flags: end.response_flags,
            response_code_details: end.response_code_details,
            sample_rate,
            redactions,
            filter_version: FILTER_VERSION.to_string(),
        }
    }
}

fn push_chunk(side: &mut Side, max_body: usize, chunk_size: usize, kept: &[u8]) {
    let room = max_body.saturating_sub(side.body.len());
    side.body
        .extend_from_slice(kept.get(..room.min(kept.len())).unwrap_or_default());
    side.body_size = side.body_size.saturating_add(chunk_size as u64);
}

fn redact_side(side: &mut Side, which: &str, redactor: &Redactor, redactions: &mut Vec<String>) {
    for place in [&mut side.headers, &mut side.trailers] {
        for header in place.iter_mut() {
            if redactor.is_secret_header(&header.name) {
                header.value = redactor.header_value(&header.name, &header.value);
                let entry = format!("{which}.header:{}", header.name);
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
fn is_json(headers: &[Header], body: &[u8]) -> bool {
    match headers.iter().find(|h| h.name == "content-type") {
        Some(h) => {
            let value = String::from_utf8_lossy(&h.value).to_ascii_lowercase();
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

fn to_headers(pairs: Vec<(String, Vec<u8>)>) -> Vec<Header> {
    pairs
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect()
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
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
