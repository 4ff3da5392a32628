//! Borrowed views of exchanges, and a decoder from the protobuf wire format straight into them.
//!
//! [`ExchangeRef`] holds an exchange's fields as slices: of a received buffer when it comes from
//! [`ExchangeRef::parse`], or of an [`Exchange`] when it comes from [`ExchangeRef::fill_from`].
//! Everything that reads an exchange field by field (the Arrow mapping in
//! [`crate::arrow::ExchangesBuilder`], the collector's validation and partitioning) reads this
//! view, so the two sources share one definition of each rule.
//!
//! The decoder accepts exactly what `prost` accepts for `tapedeck.capture.v1` and gives the same
//! values: fields in any order, unknown fields of every wire type skipped (groups included, with
//! prost's recursion limit), the last value of a scalar or string field wins, a repeated message
//! field appends an element per occurrence, a singular message field that occurs more than once
//! is merged (its repeated fields appended, its scalars overwritten), every string occurrence
//! must be UTF-8, and a wrong wire type for a known field, a truncated or overlong varint, a key
//! out of range, tag 0 or a length past the end is an error. Nothing is copied or allocated per
//! field: only the view's header and redaction lists grow, and they keep their capacity when the
//! view is reused.

use std::ops::Range;

use crate::{Direction, Exchange, Header, Message, Protocol};

/// One header or trailer field, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// The field name.
    pub name: &'a str,
    /// The raw value.
    pub value: &'a [u8],
}

/// One side of an exchange, borrowed (see [`Message`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageRef<'a> {
    /// Header fields in arrival order.
    pub headers: Vec<HeaderRef<'a>>,
    /// The captured body prefix.
    pub body: &'a [u8],
    /// The body's true size.
    pub body_size: u64,
    /// Whether `body` is shorter than `body_size`.
    pub body_truncated: bool,
    /// Trailer fields in arrival order.
    pub trailers: Vec<HeaderRef<'a>>,
}

impl<'a> MessageRef<'a> {
    fn clear(&mut self) {
        self.headers.clear();
        self.body = &[];
        self.body_size = 0;
        self.body_truncated = false;
        self.trailers.clear();
    }

    fn fill_from(&mut self, message: &'a Message) {
        self.clear();
        self.headers.extend(message.headers.iter().map(header_ref));
        self.body = &message.body;
        self.body_size = message.body_size;
        self.body_truncated = message.body_truncated;
        self.trailers
            .extend(message.trailers.iter().map(header_ref));
    }
}

fn header_ref(header: &Header) -> HeaderRef<'_> {
    HeaderRef {
        name: &header.name,
        value: &header.value,
    }
}

/// One exchange, borrowed (see [`Exchange`] for what each field means). Reuse one view for many
/// exchanges: [`ExchangeRef::parse`] and [`ExchangeRef::fill_from`] reset it first and keep the
/// capacity of its lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExchangeRef<'a> {
    /// 16 random bytes (not checked here).
    pub id: &'a [u8],
    /// The trace id.
    pub trace_id: &'a str,
    /// Start, ns since the epoch.
    pub start_unix_nanos: u64,
    /// Duration, ns.
    pub duration_nanos: u64,
    /// Time to the response headers, ns.
    pub response_headers_nanos: u64,
    /// [`Direction`] as sent (may be a value this version does not know).
    pub direction: i32,
    /// The workload.
    pub workload: &'a str,
    /// The namespace.
    pub namespace: &'a str,
    /// The pod.
    pub pod: &'a str,
    /// The other side's address.
    pub peer_address: &'a str,
    /// The Envoy cluster.
    pub upstream_cluster: &'a str,
    /// The Envoy route.
    pub route_name: &'a str,
    /// [`Protocol`] as sent (may be a value this version does not know).
    pub protocol: i32,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The authority.
    pub authority: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The request, when the exchange has the field (see [`ExchangeRef::request`]).
    pub request: MessageRef<'a>,
    /// Whether the request field was present.
    pub has_request: bool,
    /// The status.
    pub status: u32,
    /// The response, when the exchange has the field (see [`ExchangeRef::response`]).
    pub response: MessageRef<'a>,
    /// Whether the response field was present.
    pub has_response: bool,
    /// Envoy's response flags.
    pub response_flags: &'a str,
    /// Envoy's response code details.
    pub response_code_details: &'a str,
    /// The sampling rate.
    pub sample_rate: f64,
    /// Places redacted.
    pub redactions: Vec<&'a str>,
    /// The capturing filter's version.
    pub filter_version: &'a str,
}

impl<'a> ExchangeRef<'a> {
    /// The request, as `Exchange::request` would hold it.
    pub fn request(&self) -> Option<&MessageRef<'a>> {
        self.has_request.then_some(&self.request)
    }

    /// The response, as `Exchange::response` would hold it.
    pub fn response(&self) -> Option<&MessageRef<'a>> {
        self.has_response.then_some(&self.response)
    }

    /// The direction, unknown values read as unspecified (as `Exchange::direction()`).
    pub fn direction(&self) -> Direction {
        Direction::try_from(self.direction).unwrap_or_default()
    }

    /// The protocol, unknown values read as unspecified (as `Exchange::protocol()`).
    pub fn protocol(&self) -> Protocol {
        Protocol::try_from(self.protocol).unwrap_or_default()
    }

    /// The exchange the view shows, owned (what `Exchange::decode` gives for the same bytes).
    pub fn to_exchange(&self) -> Exchange {
        let message = |m: &MessageRef<'_>| {
            let fields = |f: &[HeaderRef<'_>]| {
                f.iter()
                    .map(|h| Header {
                        name: h.name.to_string(),
                        value: h.value.to_vec(),
                    })
                    .collect()
            };
            Message {
                headers: fields(&m.headers),
                body: m.body.to_vec(),
                body_size: m.body_size,
                body_truncated: m.body_truncated,
                trailers: fields(&m.trailers),
            }
        };
        Exchange {
            id: self.id.to_vec(),
            trace_id: self.trace_id.to_string(),
            start_unix_nanos: self.start_unix_nanos,
            duration_nanos: self.duration_nanos,
            response_headers_nanos: self.response_headers_nanos,
            direction: self.direction,
            workload: self.workload.to_string(),
            namespace: self.namespace.to_string(),
            pod: self.pod.to_string(),
            peer_address: self.peer_address.to_string(),
            upstream_cluster: self.upstream_cluster.to_string(),
            route_name: self.route_name.to_string(),
            protocol: self.protocol,
            scheme: self.scheme.to_string(),
            authority: self.authority.to_string(),
            method: self.method.to_string(),
            path: self.path.to_string(),
            request: self.request().map(message),
            status: self.status,
            response: self.response().map(message),
            response_flags: self.response_flags.to_string(),
            response_code_details: self.response_code_details.to_string(),
            sample_rate: self.sample_rate,
            redactions: self.redactions.iter().map(|r| r.to_string()).collect(),
            filter_version: self.filter_version.to_string(),
        }
    }

    /// Resets every field to its protobuf default, keeping the lists' capacity.
    pub fn clear(&mut self) {
        let (mut request, mut response, mut redactions) = (
            std::mem::take(&mut self.request),
            std::mem::take(&mut self.response),
            std::mem::take(&mut self.redactions),
        );
        request.clear();
        response.clear();
        redactions.clear();
        *self = Self {
            request,
            response,
            redactions,
            ..Self::default()
        };
    }

    /// Points the view at `exchange`.
    pub fn fill_from(&mut self, exchange: &'a Exchange) {
        self.clear();
        let e = exchange;
        self.id = &e.id;
        self.trace_id = &e.trace_id;
        self.start_unix_nanos = e.start_unix_nanos;
        self.duration_nanos = e.duration_nanos;
        self.response_headers_nanos = e.response_headers_nanos;
        self.direction = e.direction;
        self.workload = &e.workload;
        self.namespace = &e.namespace;
        self.pod = &e.pod;
        self.peer_address = &e.peer_address;
        self.upstream_cluster = &e.upstream_cluster;
        self.route_name = &e.route_name;
        self.protocol = e.protocol;
        self.scheme = &e.scheme;
        self.authority = &e.authority;
        self.method = &e.method;
        self.path = &e.path;
        if let Some(request) = &e.request {
            self.request.fill_from(request);
            self.has_request = true;
        }
        self.status = e.status;
        if let Some(response) = &e.response {
            self.response.fill_from(response);
            self.has_response = true;
        }
        self.response_flags = &e.response_flags;
        self.response_code_details = &e.response_code_details;
        self.sample_rate = e.sample_rate;
        self.redactions
            .extend(e.redactions.iter().map(String::as_str));
        self.filter_version = &e.filter_version;
    }

    /// Decodes one encoded `Exchange` (the bytes of one `exchanges` element of a batch) into the
    /// view, as `Exchange::decode` would at that depth of an `ExchangeBatch`.
    pub fn parse(&mut self, bytes: &'a [u8]) -> Result<(), DecodeError> {
        self.clear();
        let mut r = Reader::new(bytes);
        while !r.done() {
            let (tag, wire) = r.key()?;
            match tag {
                1 => self.id = r.bytes(wire)?,
                2 => self.trace_id = r.string(wire)?,
                3 => self.start_unix_nanos = r.fixed64(wire)?,
                4 => self.duration_nanos = r.uint(wire)?,
                5 => self.response_headers_nanos = r.uint(wire)?,
                6 => self.direction = r.uint(wire)? as i32,
                7 => self.workload = r.string(wire)?,
                8 => self.namespace = r.string(wire)?,
                9 => self.pod = r.string(wire)?,
                10 => self.peer_address = r.string(wire)?,
                11 => self.upstream_cluster = r.string(wire)?,
                12 => self.route_name = r.string(wire)?,
                13 => self.protocol = r.uint(wire)? as i32,
                14 => self.scheme = r.string(wire)?,
                15 => self.authority = r.string(wire)?,
                16 => self.method = r.string(wire)?,
                17 => self.path = r.string(wire)?,
                18 => {
                    merge_message(&mut self.request, r.bytes(wire)?)?;
                    self.has_request = true;
                }
                19 => self.status = r.uint(wire)? as u32,
                20 => {
                    merge_message(&mut self.response, r.bytes(wire)?)?;
                    self.has_response = true;
                }
                21 => self.response_flags = r.string(wire)?,
                22 => self.response_code_details = r.string(wire)?,
                23 => self.sample_rate = f64::from_bits(r.fixed64(wire)?),
                24 => {
                    let redaction = r.string(wire)?;
                    self.redactions.push(redaction);
                }
                25 => self.filter_version = r.string(wire)?,
                _ => r.skip(wire, tag, EXCHANGE_DEPTH)?,
            }
        }
        Ok(())
    }
}

/// prost's recursion budget (100) at each message of an `ExchangeBatch`, as its unknown-field
/// skipping sees it: one less per level of embedding.
const BATCH_DEPTH: u32 = 100;
const EXCHANGE_DEPTH: u32 = BATCH_DEPTH - 1;
const MESSAGE_DEPTH: u32 = EXCHANGE_DEPTH - 1;
const HEADER_DEPTH: u32 = MESSAGE_DEPTH - 1;

/// Merges one occurrence of an embedded `Message` into `message`, as prost merges a singular
/// message field that occurs again: repeated fields append, the others are overwritten.
fn merge_message<'a>(message: &mut MessageRef<'a>, bytes: &'a [u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => {
                let header = parse_header(r.bytes(wire)?)?;
                message.headers.push(header);
            }
            2 => message.body = r.bytes(wire)?,
            3 => message.body_size = r.uint(wire)?,
            4 => message.body_truncated = r.uint(wire)? != 0,
            5 => {
                let trailer = parse_header(r.bytes(wire)?)?;
                message.trailers.push(trailer);
            }
            _ => r.skip(wire, tag, MESSAGE_DEPTH)?,
        }
    }
    Ok(())
}

fn parse_header(bytes: &[u8]) -> Result<HeaderRef<'_>, DecodeError> {
    let mut header = HeaderRef {
        name: "",
        value: &[],
    };
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => header.name = r.string(wire)?,
            2 => header.value = r.bytes(wire)?,
            _ => r.skip(wire, tag, HEADER_DEPTH)?,
        }
    }
    Ok(header)
}

/// The top level of an encoded `ExchangeBatch`: its scalar fields, and where each exchange's
/// bytes are (parse them with [`ExchangeRef::parse`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRef<'a> {
    /// The byte range of each `exchanges` element in the buffer, in order.
    pub exchanges: Vec<Range<usize>>,
    /// The sending filter's version.
    pub filter_version: &'a str,
    /// The per-VM batch sequence number.
    pub sequence: u64,
    /// Exchanges dropped since the last batch.
    pub dropped_since_last: u64,
    /// When the batch was sent.
    pub sent_unix_nanos: u64,
}

impl<'a> BatchRef<'a> {
    /// Reads the top level of an encoded `ExchangeBatch`. The exchanges' own bytes are checked
    /// only by [`ExchangeRef::parse`]: a buffer is a batch prost accepts exactly when this and
    /// the parse of every exchange succeed (see [`BatchRef::parse_all`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut batch = Self::default();
        let mut r = Reader::new(bytes);
        while !r.done() {
            let (tag, wire) = r.key()?;
            match tag {
                1 => {
                    let exchange = r.bytes(wire)?;
                    let end = r.pos;
                    batch.exchanges.push(end - exchange.len()..end);
                }
                2 => batch.filter_version = r.string(wire)?,
                3 => batch.sequence = r.uint(wire)?,
                4 => batch.dropped_since_last = r.uint(wire)?,
                5 => batch.sent_unix_nanos = r.fixed64(wire)?,
                _ => r.skip(wire, tag, BATCH_DEPTH)?,
            }
        }
        Ok(batch)
    }

    /// Reads a whole encoded `ExchangeBatch`, calling `each` with every exchange in order (the
    /// view is reused: copy what must outlive the call). Fails exactly where
    /// `ExchangeBatch::decode` fails; `each` is not called after a decode error.
    pub fn parse_all(
        bytes: &'a [u8],
        each: impl FnMut(usize, &ExchangeRef<'a>),
    ) -> Result<Self, DecodeError> {
        let batch = Self::parse(bytes)?;
        batch.for_each(bytes, each)?;
        Ok(batch)
    }

    /// The second half of [`BatchRef::parse_all`], for a caller that needs the batch's top
    /// level (how many exchanges it holds) before the exchanges: parses each exchange of this
    /// batch, read by [`BatchRef::parse`] from `bytes`, and calls `each` with it in order.
    pub fn for_each(
        &self,
        bytes: &'a [u8],
        mut each: impl FnMut(usize, &ExchangeRef<'a>),
    ) -> Result<(), DecodeError> {
        let mut view = ExchangeRef::default();
        for (index, range) in self.exchanges.iter().enumerate() {
            let exchange = bytes
                .get(range.clone())
                .ok_or_else(|| error("an exchange's range is out of the batch"))?;
            view.parse(exchange)?;
            each(index, &view);
        }
        Ok(())
    }
}

/// Bytes that are not an `ExchangeBatch` prost would accept. Its text starts as prost's does
/// (`failed to decode Protobuf message`), which the collector's gRPC layer recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    reason: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to decode Protobuf message: {}", self.reason)
    }
}

impl std::error::Error for DecodeError {}

fn error(reason: &'static str) -> DecodeError {
    DecodeError { reason }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// `std::str::from_utf8` with a fast path for ASCII, which nearly every name, path, address
/// and header is: `is_ascii` checks a word at a time where `from_utf8` goes byte by byte
/// through a string shorter than two words.
#[inline]
pub fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// prost's `decode_varint`: at most 10 bytes, the tenth 0 or 1; overlong forms accepted.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Tags, lengths and small numbers: one byte.
        if let Some(&byte) = self.buf.get(self.pos)
            && byte < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(byte));
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for count in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(error("invalid varint"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (count * 7);
            if byte < 0x80 {
                if count == 9 && byte >= 0x02 {
                    return Err(error("invalid varint"));
                }
                return Ok(value);
            }
        }
        Err(error("invalid varint"))
    }

    /// prost's `decode_key`: the tag (at least 1) and the wire type (0 to 5).
    #[inline]
    fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let key = self.varint()?;
        let Ok(key) = u32::try_from(key) else {
            return Err(error("invalid key value"));
        };
        let wire = (key & 7) as u8;
        if wire > FIXED32 {
            return Err(error("invalid wire type value"));
        }
        let tag = key >> 3;
        if tag == 0 {
            return Err(error("invalid tag value: 0"));
        }
        Ok((tag, wire))
    }

    fn expect(wire: u8, expected: u8) -> Result<(), DecodeError> {
        if wire == expected {
            Ok(())
        } else {
            Err(error("invalid wire type"))
        }
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        if len > remaining as u64 {
            return Err(error("buffer underflow"));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    #[inline]
    fn uint(&mut self, wire: u8) -> Result<u64, DecodeError> {
        Self::expect(wire, VARINT)?;
        self.varint()
    }

    fn fixed64(&mut self, wire: u8) -> Result<u64, DecodeError> {
        Self::expect(wire, FIXED64)?;
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    #[inline]
    fn bytes(&mut self, wire: u8) -> Result<&'a [u8], DecodeError> {
        Self::expect(wire, LEN)?;
        let len = self.varint()?;
        self.take(len)
    }

    #[inline]
    fn string(&mut self, wire: u8) -> Result<&'a str, DecodeError> {
        utf8(self.bytes(wire)?)
            .map_err(|_| error("invalid string value: data is not UTF-8 encoded"))
    }

    /// prost's `skip_field` with its recursion budget `depth`.
    fn skip(&mut self, wire: u8, tag: u32, depth: u32) -> Result<(), DecodeError> {
        if depth == 0 {
            return Err(error("recursion limit reached"));
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.take(8)?;
            }
            FIXED32 => {
                self.take(4)?;
            }
            LEN => {
                let len = self.varint()?;
                self.take(len)?;
            }
            START_GROUP => loop {
                let (inner_tag, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner_tag != tag {
                        return Err(error("unexpected end group tag"));
                    }
                    break;
                }
                self.skip(inner_wire, inner_tag, depth - 1)?;
            },
            _ => return Err(error("unexpected end group tag")),
        }
        Ok(())
    }
}
