//! HAR → exchanges: [`stream`] reads a file of any size entry by entry and converts each entry
//! as it is read; [`parse`] reads a document in memory and [`to_exchanges`] converts it.
//!
//! HAR as real tools write it imports. Only a file that is not JSON, or has no `log.entries`
//! array, is refused, with a [`HarError`] that names the JSON path, line and column. Inside an
//! entry, a field that does not read as the spec says is repaired (a non-string value where a
//! string belongs is kept as its JSON text; a map of headers becomes name/value pairs; an
//! unreadable number is "unknown") and a date without an offset is read as UTC; a missing
//! `startedDateTime` takes the previous entry's, a missing method is GET (POST with a body), a
//! relative URL takes its host from `:authority`/`Host`, an out-of-range status is 0, and text
//! that does not decode as its `encoding` says is kept as written. Each such field yields a
//! [`Diagnostic`] naming `log.entries[i].field` and the entry imports. An entry that still
//! cannot become an exchange (no URL and no host, a method with spaces, not an object) yields a
//! diagnostic with `skipped` set; the others convert.
//!
//! The mapping, per entry:
//! - `startedDateTime` (RFC 3339 with a UTC offset) → `start_unix_nanos`; `time` (ms) →
//!   `duration_nanos` (the sum of the known timings when `time` is `-1`); `blocked + dns +
//!   connect + send + wait` (the known ones, when `wait` is known) → `response_headers_nanos`.
//! - `request.url` → `scheme`, `authority` (user info dropped) and `path` (query included,
//!   fragment dropped). HTTP/2 pseudo-headers (`:authority`, `:scheme`, `:path`, `:method`)
//!   win over the URL and are not kept as headers; neither is `host`, which becomes the
//!   authority as it does in Envoy. When the URL has no query, `queryString` supplies one.
//! - Headers keep their order, with names lowercased as Envoy carries them. A `cookie` header
//!   is built from `request.cookies` (and `set-cookie` headers from `response.cookies`) only
//!   when the headers have none.
//! - `httpVersion` → `protocol` (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`/`HTTP/2.0`/`h2`,
//!   `HTTP/3`/`h3`), and gRPC when the request's `content-type` is `application/grpc*`.
//! - `postData.text` → request body (`postData.params` → a URL-encoded body when there is no
//!   text); `response.content.text` → response body, base64-decoded when `encoding` is
//!   `base64`. Sizes come from `request.bodySize` and `response.content.size`; `-1` means the
//!   captured length. A size above the captured length marks the body truncated.
//! - HAR bodies are decoded from their `content-encoding` (browsers store what they rendered),
//!   so `content-encoding` and `content-length` are dropped from a message whose body is
//!   decoded; bodies of tapedeck exports (and any marked `_tapedeckRaw`) are as they crossed
//!   the proxy and keep them.
//! - The trace id comes from the first valid `traceparent`, else the first `x-request-id`,
//!   as the filter reads it. For outbound exchanges the peer is `serverIPAddress` plus the
//!   URL's port (for inbound, the peer is the caller, which a HAR does not record).
//! - `id` is 16 random bytes ([`ImportOptions::id_seed`] makes them repeatable), the sample
//!   rate 1, `filter_version` [`IMPORT_FILTER_VERSION`], no redactions.
//!
//! An entry with a `_tapedeck` object was written by [`crate::export`]: its exchange fields
//! (id, direction, workload, protocol, trace id, the exact start…) are restored from it and the
//! import options do not apply to it.
//!
//! Imported HAR is not redacted: the filter redacts what it captures, but a HAR file comes from
//! elsewhere, and the collector stores what the file contains. Sanitize files (browsers offer
//! "export HAR (sanitized)") before importing secrets.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use tapedeck_proto::traceparent_trace_id;
use tapedeck_proto::{
    Direction, Exchange, Header, Message, Protocol, REQUEST_ID_HEADER, TRACEPARENT_HEADER,
};

use serde_json::Value;

use crate::model::{Cookie, Entry, Har, Log, NameValue, TapedeckEntry};
use crate::{read, time};

/// The `filter_version` of imported exchanges: they were read from a file, not captured.
pub const IMPORT_FILTER_VERSION: &str = "har-import";

/// A HAR document that cannot be read at all: not JSON, or no `log.entries` array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarError {
    /// Not JSON, or JSON of the wrong shape: `path` is where (`log.entries[12]`, or
    /// `document` for the top level).
    #[error("{path}: {message} (line {line}, column {column})")]
    Json {
        /// The JSON path of the value that failed.
        path: String,
        /// What is wrong.
        message: String,
        /// The 1-based line.
        line: usize,
        /// The 1-based column.
        column: usize,
    },
    /// Well-formed JSON that is not HAR this crate reads.
    #[error("{path}: {message}")]
    Invalid {
        /// The JSON path of the value that failed.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("reading the HAR file: {message}")]
    Read {
        /// The I/O error.
        message: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = HarError> = std::result::Result<T, E>;

/// Something an import could not take as written: a field it repaired (the entry imports) or
/// an entry it could not import at all (`skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The entry's index in `log.entries`; `None` for the log itself (`log.version`…).
    pub entry: Option<usize>,
    /// The JSON path of the offending value, for example `log.entries[3].request.url`.
    pub path: String,
    /// What is wrong with it, and what the import did about it.
    pub message: String,
    /// True when the entry did not become an exchange; false when it imported with this field
    /// read as the message says.
    pub skipped: bool,
}

impl Diagnostic {
    fn entry(index: usize, below: &str, message: String, skipped: bool) -> Self {
        Diagnostic {
            entry: Some(index),
            path: format!("log.entries[{index}].{below}"),
            message,
            skipped,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if self.skipped {
            f.write_str(" (entry skipped)")?;
        }
        Ok(())
    }
}

/// How entries become exchanges.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// The workload the exchanges are recorded for.
    pub service: String,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Which way the exchanges crossed the workload's sidecar (default inbound: a HAR
    /// usually records calls made to the service).
    pub direction: Direction,
    /// Seeds the exchange ids, so that tests get the same ids every run; `None` seeds from
    /// the process's randomness.
    pub id_seed: Option<u64>,
}

impl ImportOptions {
    /// Options for `service`, inbound, with random ids.
    pub fn new(service: impl Into<String>) -> Self {
        ImportOptions {
            service: service.into(),
            ..Self::default()
        }
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            service: String::new(),
            namespace: None,
            direction: Direction::Inbound,
            id_seed: None,
        }
    }
}

/// Reads a whole HAR document from memory. A UTF-8 byte order mark is skipped. Fields that do
/// not read as the spec says are repaired and noted in [`Log::diagnostics`](crate::model::Log),
/// which [`to_exchanges`] reports; an entry that is not an object is kept as an empty entry
/// that [`to_exchanges`] skips. Only JSON that does not parse, or has no `log.entries` array,
/// is an error. For files of any size, [`stream`] reads entry by entry instead.
pub fn parse(bytes: &[u8]) -> Result<Har> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut entries = Vec::new();
    let mut diagnostics = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let (result, head) = read::read_document(&mut deserializer, &mut |index, value| {
        entries.push(read_entry(index, value, &mut diagnostics).unwrap_or_default());
    });
    result
        .and_then(|()| deserializer.end())
        .map_err(|error| json_error(bytes, &error))?;
    let mut log = read_log(head.log, &mut diagnostics);
    log.entries = entries;
    log.diagnostics = diagnostics;
    Ok(Har { log })
}

/// Reads one entry leniently; `None` (and a skipping diagnostic) when it cannot be read.
fn read_entry(index: usize, value: Value, diagnostics: &mut Vec<Diagnostic>) -> Option<Entry> {
    let kind = json_kind(&value);
    let mut repairs = Vec::new();
    let entry = read::lenient::<Entry>(value, &mut repairs);
    diagnostics.extend(
        repairs
            .into_iter()
            .map(|r| Diagnostic::entry(index, &r.path, r.message, entry.is_none())),
    );
    if entry.is_none() {
        diagnostics.push(Diagnostic {
            entry: Some(index),
            path: format!("log.entries[{index}]"),
            message: format!("{kind} that cannot be read as an entry"),
            skipped: true,
        });
    }
    entry
}

/// The log's fields other than `entries`, leniently; the version is checked, not enforced.
fn read_log(fields: serde_json::Map<String, Value>, diagnostics: &mut Vec<Diagnostic>) -> Log {
    let mut fields = fields;
    fields.insert("entries".into(), Value::Array(Vec::new()));
    let mut repairs = Vec::new();
    let log = read::lenient::<Log>(Value::Object(fields), &mut repairs).unwrap_or_default();
    diagnostics.extend(repairs.into_iter().map(|r| Diagnostic {
        entry: None,
        path: format!("log.{}", r.path),
        message: r.message,
        skipped: false,
    }));
    let version = log.version.trim();
    if !(version.is_empty() || version.starts_with("1.")) {
        diagnostics.push(Diagnostic {
            entry: None,
            path: "log.version".into(),
            message: format!("unsupported HAR version {version:?} (expected 1.x); read as 1.2"),
            skipped: false,
        });
    }
    log
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts every entry it can, in entry order (notes about the log itself last). Each field it had to repair or guess yields a [`Diagnostic`]
/// (the entry imports), and each entry it cannot convert one with `skipped` set:
/// `exchanges.len()` plus the skipped entries is `har.log.entries.len()`.
pub fn to_exchanges(har: &Har, options: &ImportOptions) -> (Vec<Exchange>, Vec<Diagnostic>) {
    let mut state = Converter::new(options);
    let mut exchanges = Vec::with_capacity(har.log.entries.len());
    let mut diagnostics = Vec::new();
    let mut read_notes = har
        .log
        .diagnostics
        .iter()
        .filter(|d| d.entry.is_some())
        .peekable();
    for (index, entry) in har.log.entries.iter().enumerate() {
        let mut unreadable = false;
        while let Some(note) = read_notes.next_if(|d| d.entry <= Some(index)) {
            unreadable |= note.skipped;
            diagnostics.push(note.clone());
        }
        if unreadable {
            continue;
        }
        if let Some(exchange) = state.convert(index, entry, &mut diagnostics) {
            exchanges.push(exchange);
        }
    }
    diagnostics.extend(read_notes.cloned());
    // Notes about the log itself come last, as `stream` reports them.
    let log_notes = har.log.diagnostics.iter().filter(|d| d.entry.is_none());
    diagnostics.extend(log_notes.cloned());
    (exchanges, diagnostics)
}

/// What [`stream`] did with a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries in `log.entries`.
    pub entries: usize,
    /// Entries that became exchanges.
    pub imported: usize,
    /// Entries that did not.
    pub skipped: usize,
    /// Diagnostics reported (repairs and skips).
    pub diagnostics: usize,
}

/// One thing [`stream`] reports, in entry order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An entry converted.
    Exchange(Box<Exchange>),
    /// A field repaired or an entry skipped.
    Diagnostic(Diagnostic),
}

/// Reads a HAR document from `reader` entry by entry and converts each as it is read, so a file
/// of any size imports with the memory of one entry. `each` gets every exchange and diagnostic
/// in entry order; diagnostics about the log itself come last. Fails only when the file is not
/// JSON, has no `log.entries` array, or cannot be read; events already reported stand.
pub fn stream<R: std::io::Read>(
    reader: R,
    options: &ImportOptions,
    mut each: impl FnMut(Event),
) -> Result<Summary> {
    let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
    skip_bom(&mut reader).map_err(|error| HarError::Read {
        message: error.to_string(),
    })?;
    let mut state = Converter::new(options);
    let mut summary = Summary::default();
    let mut scratch = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let (result, head) = read::read_document(&mut deserializer, &mut |index, value| {
        summary.entries += 1;
        let exchange = read_entry(index, value, &mut scratch)
            .and_then(|entry| state.convert(index, &entry, &mut scratch));
        summary.skipped += usize::from(exchange.is_none());
        summary.diagnostics += scratch.len();
        for diagnostic in scratch.drain(..) {
            each(Event::Diagnostic(diagnostic));
        }
        if let Some(exchange) = exchange {
            summary.imported += 1;
            each(Event::Exchange(Box::new(exchange)));
        }
    });
    if let Err(error) = result.and_then(|()| deserializer.end()) {
        if error.is_io() {
            return Err(HarError::Read {
                message: error.to_string(),
            });
        }
        let (line, column) = (error.line(), error.column());
        let text = error.to_string();
        let suffix = format!(" at line {line} column {column}");
        return Err(HarError::Json {
            path: head
                .position
                .unwrap_or(read::Position::Document)
                .to_string(),
            message: text.strip_suffix(&suffix).unwrap_or(&text).to_owned(),
            line,
            column,
        });
    }
    let mut notes = Vec::new();
    read_log(head.log, &mut notes);
    summary.diagnostics += notes.len();
    notes.into_iter().map(Event::Diagnostic).for_each(each);
    Ok(summary)
}

fn skip_bom<R: std::io::BufRead>(reader: &mut R) -> std::io::Result<()> {
    let buffer = reader.fill_buf()?;
    if buffer.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(())
}

/// A failure inside one entry: the path below the entry, and the reason.
type EntryError = (String, String);

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, EntryError> {
    Err((path.into(), message.into()))
}

/// Entries to exchanges, carrying what one entry lends the next (ids, the last start time).
#[derive(Debug)]
struct Converter<'o> {
    options: &'o ImportOptions,
    ids: Ids,
    last_start: Option<u64>,
}

impl<'o> Converter<'o> {
    fn new(options: &'o ImportOptions) -> Self {
        Converter {
            options,
            ids: Ids::new(options.id_seed),
            last_start: None,
        }
    }

    /// The entry as an exchange, its notes pushed to `diagnostics`; `None` (and a skipping
    /// diagnostic) when it cannot become one.
    fn convert(
        &mut self,
        index: usize,
        entry: &Entry,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<Exchange> {
        let mut notes = Vec::new();
        let result = entry_to_exchange(entry, self, &mut notes);
        diagnostics.extend(
            notes
                .into_iter()
                .map(|(path, message)| Diagnostic::entry(index, &path, message, false)),
        );
        match result {
            Ok(exchange) => {
                self.last_start = Some(exchange.start_unix_nanos);
                Some(exchange)
            }
            Err((path, message)) => {
                diagnostics.push(Diagnostic::entry(index, &path, message, true));
                None
            }
        }
    }
}

/// The start of an entry: `startedDateTime`, read as UTC when it has no offset; else the
/// previous entry's start (or the epoch), noted.
fn start_of(entry: &Entry, last: Option<u64>, notes: &mut Vec<EntryError>) -> u64 {
    let started = entry.started_date_time.trim();
    let fallback = match last {
        Some(_) => "the previous entry's start is used",
        None => "1970-01-01T00:00:00Z is used",
    };
    if started.is_empty() {
        notes.push(("startedDateTime".into(), format!("missing; {fallback}")));
        return last.unwrap_or(0);
    }
    match time::parse(started) {
        Ok(start) => start,
        Err(reason) => match time::parse(&format!("{started}Z")) {
            Ok(start) => {
                notes.push((
                    "startedDateTime".into(),
                    format!("{started:?} has no UTC offset; read as UTC"),
                ));
                start
            }
            Err(_) => {
                notes.push((
                    "startedDateTime".into(),
                    format!("{started:?} is not an RFC 3339 date-time: {reason}; {fallback}"),
                ));
                last.unwrap_or(0)
            }
        },
    }
}

fn entry_to_exchange(
    entry: &Entry,
    converter: &mut Converter<'_>,
    notes: &mut Vec<EntryError>,
) -> Result<Exchange, EntryError> {
    let options = converter.options;
    let recorded = entry.tapedeck.as_ref();
    let request = &entry.request;
    let response = &entry.response;

    let mut start_unix_nanos = start_of(entry, converter.last_start, notes);
    if let Some(exact) = recorded.and_then(|r| r.start_unix_nanos)
        && exact / 1_000_000 == start_unix_nanos / 1_000_000
    {
        start_unix_nanos = exact;
    }

    let mut method = request.method.trim().to_owned();
    let url = parse_url(&request.url);
    let (mut scheme, mut authority, mut path, port) = match &url {
        Ok(url) => (
            url.scheme.clone(),
            url.authority.clone(),
            url.path.clone(),
            url.port,
        ),
        Err(_) => (String::new(), String::new(), String::new(), None),
    };
    if !path.contains('?') && !request.query_string.is_empty() && url.is_ok() {
        path.push('?');
        path.push_str(&join_query(&request.query_string));
    }

    let mut host = None;
    let mut pseudo_authority = None;
    let mut pseudo_path = None;
    let mut request_headers = Vec::with_capacity(request.headers.len());
    for (i, field) in request.headers.iter().enumerate() {
        let name = field.name.trim().to_ascii_lowercase();
        let value = field_value(field, &format!("request.headers[{i}].value"), notes);
        match name.as_str() {
            ":authority" => pseudo_authority = Some(lossy(value)),
            ":scheme" => scheme = lossy(value).to_ascii_lowercase(),
            ":path" => pseudo_path = Some(lossy(value)),
            ":method" => method = lossy(value),
            "host" => {
                host.get_or_insert(lossy(value));
            }
            _ if name.starts_with(':') => {}
            _ => request_headers.push(Header { name, value }),
        }
    }
    if let Some(value) = pseudo_authority.or(host).filter(|a| !a.is_empty()) {
        authority = value;
    }
    if let Some(value) = pseudo_path.filter(|p| p.starts_with('/')) {
        path = value;
    }
    if let Err(reason) = &url {
        // A relative URL (or none) still names a request when the headers give the host.
        let relative = request.url.trim();
        if relative.starts_with('/') && !relative.contains(char::is_whitespace) {
            path = relative.split('#').next().unwrap_or_default().to_owned();
        }
        if authority.is_empty() || !path.starts_with('/') {
            let shown = if request.url.is_empty() {
                "missing".to_owned()
            } else {
                format!("{:?} {reason}", request.url)
            };
            return fail("request.url", shown);
        }
        if scheme.is_empty() {
            scheme = "http".into();
        }
        notes.push((
            "request.url".into(),
            format!(
                "{:?} {reason}; read as {scheme}://{authority}{path} from the headers",
                request.url
            ),
        ));
    }
    if method.is_empty() {
        let posted = request
            .post_data
            .as_ref()
            .is_some_and(|p| p.text.is_some() || !p.params.is_empty());
        method = if posted { "POST" } else { "GET" }.to_owned();
        notes.push((
            "request.method".into(),
            format!("missing; read as {method}"),
        ));
    }
    if method
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return fail(
            "request.method",
            format!("{method:?} is not an HTTP method"),
        );
    }
    if !request_headers.iter().any(|h| h.name == "cookie") && !request.cookies.is_empty() {
        request_headers.push(Header {
            name: "cookie".into(),
            value: cookie_header(&request.cookies).into_bytes(),
        });
    }

    let status = match u32::try_from(response.status) {
        Ok(status) if status <= 999 => status,
        _ => {
            notes.push((
                "response.status".into(),
                format!(
                    "{} is not an HTTP status; read as 0 (no response)",
                    response.status
                ),
            ));
            0
        }
    };
    let mut response_headers = Vec::with_capacity(response.headers.len());
    for (i, field) in response.headers.iter().enumerate() {
        let name = field.name.trim().to_ascii_lowercase();
        let value = field_value(field, &format!("response.headers[{i}].value"), notes);
        if !name.starts_with(':') {
            response_headers.push(Header { name, value });
        }
    }
    if !response_headers.iter().any(|h| h.name == "set-cookie") {
        for cookie in &response.cookies {
            response_headers.push(Header {
                name: "set-cookie".into(),
                value: set_cookie_header(cookie).into_bytes(),
            });
        }
    }

    // Bodies.
    let (request_body, request_raw) = match &request.post_data {
        Some(post) => {
            let body = match &post.text {
                Some(text) => body_text(
                    text,
                    post.encoding.as_deref(),
                    &post.mime_type,
                    request.body_size,
                    "request.postData.text",
                    notes,
                ),
                None if is_form(&post.mime_type) => form_body(&post.params).into_bytes(),
                None => Vec::new(),
            };
            (body, post.tapedeck_raw)
        }
        None => (Vec::new(), false),
    };
    let content = &response.content;
    let response_body = match &content.text {
        Some(text) => body_text(
            text,
            content.encoding.as_deref(),
            &content.mime_type,
            content.size,
            "response.content.text",
            notes,
        ),
        None => Vec::new(),
    };
    // Tapedeck exports always hold bodies as they crossed the proxy.
    if recorded.is_none() && !request_raw {
        drop_decoded_headers(&mut request_headers);
    }
    if recorded.is_none() && !content.tapedeck_raw {
        drop_decoded_headers(&mut response_headers);
    }

    let grpc = request_headers
        .iter()
        .find(|h| h.name == "content-type")
        .is_some_and(|h| h.value.starts_with(b"application/grpc"));
    let protocol = match recorded {
        Some(r) => protocol_of_word(&r.protocol).unwrap_or(Protocol::Unspecified),
        None if grpc => Protocol::Grpc,
        None => match protocol_of_version(&request.http_version) {
            Protocol::Unspecified => protocol_of_version(&response.http_version),
            protocol => protocol,
        },
    };

    // Timings.
    let timings = &entry.timings;
    let known = |ms: Option<f64>| ms.filter(|ms| *ms >= 0.0).unwrap_or(0.0);
    let to_headers = known(timings.blocked)
        + known(timings.dns)
        + known(timings.connect)
        + known(Some(timings.send))
        + known(Some(timings.wait));
    let duration_ms = if entry.time >= 0.0 {
        entry.time
    } else {
        to_headers + known(Some(timings.receive))
    };
    let duration_nanos = ms_to_nanos(duration_ms);
    let response_headers_nanos = if status == 0 || timings.wait < 0.0 {
        0
    } else {
        ms_to_nanos(to_headers).min(duration_nanos)
    };

    let trace_id = match recorded {
        Some(r) => r.trace_id.clone(),
        None => trace_id_of(&request_headers),
    };
    let id = recorded
        .and_then(|r| hex_id(&r.id))
        .unwrap_or_else(|| converter.ids.next_id());
    let exchange = Exchange {
        id,
        trace_id,
        start_unix_nanos,
        duration_nanos,
        response_headers_nanos,
        protocol: protocol as i32,
        scheme,
        authority,
        method,
        path,
        request: Some(message(
            request_headers,
            request_body,
            request.body_size,
            trailers(
                &request.tapedeck_trailers,
                "request._tapedeckTrailers",
                notes,
            ),
        )),
        status,
        response: Some(message(
            response_headers,
            response_body,
            content.size,
            trailers(
                &response.tapedeck_trailers,
                "response._tapedeckTrailers",
                notes,
            ),
        )),
        ..Default::default()
    };
    Ok(match recorded {
        Some(r) => restore(exchange, r),
        None => Exchange {
            direction: options.direction as i32,
            workload: options.service.clone(),
            namespace: options.namespace.clone().unwrap_or_default(),
            peer_address: match (options.direction, &entry.server_ip_address) {
                (Direction::Outbound, Some(ip)) if !ip.trim().is_empty() => {
                    peer_address(ip.trim(), port)
                }
                _ => String::new(),
            },
            sample_rate: 1.0,
            filter_version: IMPORT_FILTER_VERSION.into(),
            ..exchange
        },
    })
}

/// Fills in the fields a tapedeck export recorded in `_tapedeck`.
fn restore(exchange: Exchange, recorded: &TapedeckEntry) -> Exchange {
    let direction = match recorded.direction.as_str() {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        _ => Direction::Unspecified,
    };
    Exchange {
        direction: direction as i32,
        workload: recorded.workload.clone(),
        namespace: recorded.namespace.clone(),
        pod: recorded.pod.clone(),
        peer_address: recorded.peer_address.clone(),
        upstream_cluster: recorded.upstream_cluster.clone(),
        route_name: recorded.route_name.clone(),
        response_flags: recorded.response_flags.clone(),
        response_code_details: recorded.response_code_details.clone(),
        sample_rate: recorded.sample_rate.unwrap_or(1.0),
        redactions: recorded.redactions.clone(),
        filter_version: recorded.filter_version.clone(),
        ..exchange
    }
}

fn message(headers: Vec<Header>, body: Vec<u8>, size: i64, trailers: Vec<Header>) -> Message {
    let captured = body.len() as u64;
    let body_size = u64::try_from(size).map_or(captured, |size| size.max(captured));
    Message {
        headers,
        body,
        body_size,
        body_truncated: body_size > captured,
        trailers,
    }
}

fn trailers(fields: &[NameValue], path: &str, notes: &mut Vec<EntryError>) -> Vec<Header> {
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| Header {
            name: field.name.trim().to_ascii_lowercase(),
            value: field_value(field, &format!("{path}[{i}].value"), notes),
        })
        .collect()
}

/// The raw bytes of a header value: base64-decoded when `_encoding` is `base64`; the text as
/// written (noted) when it does not decode.
fn field_value(field: &NameValue, path: &str, notes: &mut Vec<EntryError>) -> Vec<u8> {
    decode_text(&field.value, field.encoding.as_deref()).unwrap_or_else(|reason| {
        notes.push((path.to_owned(), format!("{reason}; kept as written")));
        field.value.as_bytes().to_vec()
    })
}

/// A body written as text: decoded per `encoding`, kept as written (noted) when it does not
/// decode. Text without `encoding` that is base64 of exactly `size` bytes of a binary media
/// type (writers that forget `encoding` on binary bodies) is decoded, noted.
fn body_text(
    text: &str,
    encoding: Option<&str>,
    mime_type: &str,
    size: i64,
    path: &str,
    notes: &mut Vec<EntryError>,
) -> Vec<u8> {
    if encoding.is_none_or(|e| e.trim().is_empty())
        && let Some(decoded) = unmarked_base64(text, mime_type, size)
    {
        notes.push((
            path.to_owned(),
            format!(
                "base64 of {} bytes of {mime_type:?} without `encoding`; decoded",
                decoded.len()
            ),
        ));
        return decoded;
    }
    decode_text(text, encoding).unwrap_or_else(|reason| {
        notes.push((path.to_owned(), format!("{reason}; kept as written")));
        text.as_bytes().to_vec()
    })
}

/// `text` decoded, when it is base64 that the size or the media type says it must be.
fn unmarked_base64(text: &str, mime_type: &str, size: i64) -> Option<Vec<u8>> {
    let len = text.len();
    if len < 4 || !len.is_multiple_of(4) || usize::try_from(size).is_ok_and(|size| size == len) {
        return None;
    }
    let decoded = STANDARD.decode(text.as_bytes()).ok()?;
    let sized = usize::try_from(size).is_ok_and(|size| size == decoded.len());
    let binary = is_binary(mime_type);
    (sized && (binary || std::str::from_utf8(&decoded).is_err())).then_some(decoded)
}

/// Media types whose bodies are bytes rather than text.
fn is_binary(mime_type: &str) -> bool {
    let mime = mime_type.trim().to_ascii_lowercase();
    let mime = mime.split(';').next().unwrap_or_default().trim();
    ["image/", "audio/", "video/", "font/"]
        .iter()
        .any(|prefix| mime.starts_with(prefix) && !mime.starts_with("image/svg"))
        || matches!(
            mime,
            "application/octet-stream"
                | "application/pdf"
                | "application/zip"
                | "application/gzip"
                | "application/wasm"
                | "application/protobuf"
                | "application/x-protobuf"
                | "application/vnd.google.protobuf"
                | "application/font-woff"
                | "application/font-woff2"
        )
        || mime.starts_with("application/grpc")
}

/// The bytes of a body or value written as text with an optional `encoding`.
fn decode_text(text: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding.map(str::trim) {
        None | Some("") => Ok(text.as_bytes().to_vec()),
        Some(encoding) if encoding.eq_ignore_ascii_case("base64") => {
            let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            STANDARD
                .decode(&compact)
                .or_else(|_| STANDARD_NO_PAD.decode(&compact))
                .map_err(|error| format!("invalid base64: {error}"))
        }
        Some(other) => Err(format!("unsupported encoding {other:?} (expected base64)")),
    }
}

/// Removes `content-encoding` (other than identity) and `content-length` from a message whose
/// HAR body is decoded, so the exchange describes the body it holds.
fn drop_decoded_headers(headers: &mut Vec<Header>) {
    let encoded = headers.iter().any(|h| {
        h.name == "content-encoding" && !h.value.trim_ascii().eq_ignore_ascii_case(b"identity")
    });
    if encoded {
        headers.retain(|h| h.name != "content-encoding" && h.name != "content-length");
    }
}

/// The trace id as the filter reads it: the first valid `traceparent`, else the first
/// `x-request-id`, else empty.
fn trace_id_of(headers: &[Header]) -> String {
    headers
        .iter()
        .filter(|h| h.name == TRACEPARENT_HEADER)
        .find_map(|h| traceparent_trace_id(&h.value))
        .or_else(|| {
            headers
                .iter()
                .find(|h| h.name == REQUEST_ID_HEADER)
                .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        })
        .unwrap_or_default()
}

pub(crate) fn protocol_of_word(word: &str) -> Option<Protocol> {
    Protocol::from_word(word).filter(|p| *p != Protocol::Unspecified)
}

fn protocol_of_version(version: &str) -> Protocol {
    match version.trim().to_ascii_lowercase().as_str() {
        "http/1.0" => Protocol::Http10,
        "http/1.1" => Protocol::Http11,
        "http/2" | "http/2.0" | "h2" | "h2c" => Protocol::Http2,
        "http/3" | "http/3.0" | "h3" => Protocol::Http3,
        v if v.starts_with("h3-") => Protocol::Http3,
        _ => Protocol::Unspecified,
    }
}

fn ms_to_nanos(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        // Saturates at u64::MAX for absurd values.
        (ms * 1_000_000.0).round() as u64
    } else {
        0
    }
}

fn lossy(value: Vec<u8>) -> String {
    String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex_id(text: &str) -> Option<Vec<u8>> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..16)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The parts of an absolute URL that an exchange keeps.
#[derive(Debug, PartialEq)]
struct UrlParts {
    scheme: String,
    authority: String,
    /// The path and query (never the fragment), starting with `/`.
    path: String,
    /// The explicit port, else the scheme's default, else none.
    port: Option<u16>,
}

fn parse_url(url: &str) -> Result<UrlParts, String> {
    let url = url.trim();
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("contains whitespace or control characters".into());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not an absolute URL (expected scheme://host/path)".into());
    };
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme {
        return Err("has no valid scheme".into());
    }
    let scheme = scheme.to_ascii_lowercase();
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(end);
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    let explicit_port = match authority.rsplit_once(':') {
        // An IPv6 literal without a port: the colon is inside the brackets.
        Some((_, after)) if after.contains(']') => None,
        Some((_, port)) => match port.parse::<u16>() {
            Ok(port) => Some(port),
            Err(_) if port.is_empty() => None,
            Err(_) => return Err(format!("has an invalid port {port:?}")),
        },
        None => None,
    };
    let port = explicit_port.or(match scheme.as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    });
    let remainder = remainder
        .split_once('#')
        .map_or(remainder, |(path, _)| path);
    let path = if remainder.starts_with('/') {
        remainder.to_owned()
    } else {
        format!("/{remainder}")
    };
    Ok(UrlParts {
        scheme,
        authority: authority.to_owned(),
        path,
        port,
    })
}

/// `ip:port`, with brackets around IPv6 addresses, as Envoy writes addresses.
fn peer_address(ip: &str, port: Option<u16>) -> String {
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    match (ip.contains(':'), port) {
        (true, Some(port)) => format!("[{ip}]:{port}"),
        (true, None) => format!("[{ip}]"),
        (false, Some(port)) => format!("{ip}:{port}"),
        (false, None) => ip.to_owned(),
    }
}

fn is_form(mime_type: &str) -> bool {
    let mime = mime_type.trim();
    mime.is_empty()
        || mime
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
}

/// `params` as an `application/x-www-form-urlencoded` body.
fn form_body(params: &[crate::model::Param]) -> String {
    params
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                form_encode(&p.name),
                form_encode(p.value.as_deref().unwrap_or_default())
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `queryString` as a query, for URLs that lack one. Values may already be percent-encoded,
/// so `%` is kept; what cannot stand in a query is encoded.
fn join_query(pairs: &[NameValue]) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if byte.is_ascii_graphic() && !matches!(byte, b'&' | b'#' | b'+' | b'=') {
                out.push(byte as char);
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|p| format!("{}={}", encode(&p.name), encode(&p.value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn cookie_header(cookies: &[Cookie]) -> String {
    cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ")
}

fn set_cookie_header(cookie: &Cookie) -> String {
    let mut value = format!("{}={}", cookie.name, cookie.value);
    if let Some(path) = &cookie.path {
        value.push_str(&format!("; Path={path}"));
    }
    if let Some(domain) = &cookie.domain {
        value.push_str(&format!("; Domain={domain}"));
    }
    if cookie.http_only == Some(true) {
        value.push_str("; HttpOnly");
    }
    if cookie.secure == Some(true) {
        value.push_str("; Secure");
    }
    value
}

/// The source of exchange ids: splitmix64, seeded or from the process's randomness.
#[derive(Debug)]
struct Ids(u64);

impl Ids {
    fn new(seed: Option<u64>) -> Self {
        Ids(seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(now);
            hasher.finish()
        }))
    }

    fn next_u64(&mut self) -> u64 {
        tapedeck_proto::splitmix64(&mut self.0)
    }

    fn next_id(&mut self) -> Vec<u8> {
        let mut id = Vec::with_capacity(16);
        id.extend_from_slice(&self.next_u64().to_be_bytes());
        id.extend_from_slice(&self.next_u64().to_be_bytes());
        id
    }
}

/// A serde_json error, with the JSON path of where it happened.
fn json_error(bytes: &[u8], error: &serde_json::Error) -> HarError {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    let path = json_path_at(bytes, offset_of(bytes, line, column));
    HarError::Json {
        path: if path.is_empty() {
            "document".into()
        } else {
            path
        },
        message,
        line,
        column,
    }
}

/// The byte offset just past a 1-based line and column as serde_json reports them.
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            Some(newline) => start += newline + 1,
            None => return bytes.len(),
        }
    }
    (start + column).min(bytes.len())
}

/// The JSON path (`log.entries[3].request.url`) of the innermost value open at `offset`,
/// found by scanning the text up to there. Keys are shown as written (escapes not decoded).
fn json_path_at(bytes: &[u8], offset: usize) -> String {
    enum Frame {
        Object {
            key: Option<String>,
            expect_key: bool,
        },
        Array {
            index: usize,
            started: bool,
        },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut key: Option<Vec<u8>> = None;
    let start_value = |stack: &mut Vec<Frame>| {
        if let Some(Frame::Array { started, .. }) = stack.last_mut() {
            *started = true;
        }
    };
    for &byte in bytes.iter().take(offset) {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                if let (Some(done), Some(Frame::Object { key: slot, .. })) =
                    (key.take(), stack.last_mut())
                {
                    *slot = Some(String::from_utf8_lossy(&done).into_owned());
                }
                continue;
            }
            if let Some(key) = key.as_mut() {
                key.push(byte);
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                match stack.last_mut() {
                    Some(Frame::Object { expect_key, .. }) if *expect_key => {
                        *expect_key = false;
                        key = Some(Vec::new());
                    }
                    _ => start_value(&mut stack),
                }
            }
            b'{' => {
                start_value(&mut stack);
                stack.push(Frame::Object {
                    key: None,
                    expect_key: true,
                });
            }
            b'[' => {
                start_value(&mut stack);
                stack.push(Frame::Array {
                    index: 0,
                    started: false,
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index, started }) => {
                    *index += 1;
                    *started = false;
                }
                Some(Frame::Object { key, expect_key }) => {
                    *key = None;
                    *expect_key = true;
                }
                None => {}
            },
            b':' | b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => start_value(&mut stack),
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Array {
                index,
                started: true,
            } => path.push_str(&format!("[{index}]")),
            _ => {}
        }
    }
    path
}

#[cfg(test)]
mod tests;
