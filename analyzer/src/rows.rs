//! Read access to exchanges wherever they are: a decoded [`Exchange`], or a row of an
//! `exchanges` record batch read in place.
//!
//! Snapshots of a store are built straight from the query's record batches: decoding a million
//! rows into `Exchange`s (tens of allocations each) took longer than everything else a snapshot
//! does, and doubled its memory. Discovery, the writer and the sort see exchanges only through
//! [`Row`].

use tapedeck_proto::arrow::{column, columns};
use tapedeck_proto::arrow_array::cast::AsArray as _;
use tapedeck_proto::arrow_array::{
    Array, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use tapedeck_proto::arrow_schema::ArrowError;
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

use crate::tokens::Side;

/// One exchange, read in place.
pub trait Row {
    /// The exchange id.
    fn id(&self) -> &[u8];
    /// The trace id.
    fn trace_id(&self) -> &str;
    /// Start, nanoseconds since the Unix epoch.
    fn start(&self) -> u64;
    /// Nanoseconds to the response's end.
    fn duration(&self) -> u64;
    /// Nanoseconds to the response's headers.
    fn response_headers_ns(&self) -> u64;
    /// Inbound, outbound or unspecified.
    fn direction(&self) -> Direction;
    /// The protocol word (`HTTP/1.1`, `gRPC`, or empty).
    fn protocol(&self) -> &str;
    /// `:scheme`.
    fn scheme(&self) -> &str;
    /// `:authority`.
    fn authority(&self) -> &str;
    /// The method.
    fn method(&self) -> &str;
    /// The path with its query.
    fn path(&self) -> &str;
    /// The response status (0: none).
    fn status(&self) -> u32;
    /// The request or the response.
    fn message(&self, side: Side) -> MessageView<'_>;
    /// Capture metadata: workload, namespace, pod, peer, cluster, route, flags, details,
    /// filter version, in that order.
    fn capture(&self) -> [&str; 9];
    /// The sampling rate.
    fn sample_rate(&self) -> f64;
    /// The places redacted.
    fn redactions(&self) -> Strings<'_>;
}

/// One side of an exchange, read in place.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    /// The headers, in order.
    pub headers: Headers<'a>,
    /// The captured body.
    pub body: &'a [u8],
    /// The true body size.
    pub body_size: u64,
    /// The captured body is a prefix.
    pub truncated: bool,
    /// The trailers, in order.
    pub trailers: Headers<'a>,
}

/// Headers, read in place.
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    /// Of a decoded message.
    Proto(&'a [Header]),
    /// Entries `range` of the struct arrays of a header list column.
    Arrow {
        /// Header names.
        names: &'a StringArray,
        /// Header values as text (lossy for non-UTF-8 values).
        values: &'a StringArray,
        /// The exact bytes of values that are not UTF-8 (null otherwise).
        bytes: &'a BinaryArray,
        /// This row's entries.
        range: (usize, usize),
    },
}

impl<'a> Headers<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Headers::Proto(headers) => headers.len(),
            Headers::Arrow { range, .. } => range.1 - range.0,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th header: its name and value bytes.
    pub fn get(&self, i: usize) -> (&'a str, &'a [u8]) {
        match *self {
            Headers::Proto(headers) => (headers[i].name.as_str(), headers[i].value.as_slice()),
            Headers::Arrow {
                names,
                values,
                bytes,
                range,
            } => {
                let at = range.0 + i;
                let value = if bytes.is_null(at) {
                    values.value(at).as_bytes()
                } else {
                    bytes.value(at)
                };
                (names.value(at), value)
            }
        }
    }

    /// Name and value bytes of each header, in order.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// A list of strings, read in place.
#[derive(Debug, Clone, Copy)]
pub enum Strings<'a> {
    /// Of a decoded exchange.
    Proto(&'a [String]),
    /// Entries `range` of a string array.
    Arrow(&'a StringArray, (usize, usize)),
}

impl<'a> Strings<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        match self {
            Strings::Proto(list) => list.len(),
            Strings::Arrow(_, range) => range.1 - range.0,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each string, in order.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        (0..self.len()).map(move |i| match self {
            Strings::Proto(list) => list[i].as_str(),
            Strings::Arrow(values, range) => values.value(range.0 + i),
        })
    }
}

const NO_MESSAGE: MessageView<'static> = MessageView {
    headers: Headers::Proto(&[]),
    body: &[],
    body_size: 0,
    truncated: false,
    trailers: Headers::Proto(&[]),
};

impl Row for Exchange {
    fn id(&self) -> &[u8] {
        &self.id
    }
    fn trace_id(&self) -> &str {
        &self.trace_id
    }
    fn start(&self) -> u64 {
        self.start_unix_nanos
    }
    fn duration(&self) -> u64 {
        self.duration_nanos
    }
    fn response_headers_ns(&self) -> u64 {
        self.response_headers_nanos
    }
    fn direction(&self) -> Direction {
        Exchange::direction(self)
    }
    fn protocol(&self) -> &str {
        Exchange::protocol(self).as_word()
    }
    fn scheme(&self) -> &str {
        &self.scheme
    }
    fn authority(&self) -> &str {
        &self.authority
    }
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn status(&self) -> u32 {
        self.status
    }
    fn message(&self, side: Side) -> MessageView<'_> {
        let message: Option<&Message> = match side {
            Side::Request => self.request.as_ref(),
            Side::Response => self.response.as_ref(),
        };
        message.map_or(NO_MESSAGE, |m| MessageView {
            headers: Headers::Proto(&m.headers),
            body: &m.body,
            body_size: m.body_size,
            truncated: m.body_truncated,
            trailers: Headers::Proto(&m.trailers),
        })
    }
    fn capture(&self) -> [&str; 9] {
        [
            &self.workload,
            &self.namespace,
            &self.pod,
            &self.peer_address,
            &self.upstream_cluster,
            &self.route_name,
            &self.response_flags,
            &self.response_code_details,
            &self.filter_version,
        ]
    }
    fn sample_rate(&self) -> f64 {
        self.sample_rate
    }
    fn redactions(&self) -> Strings<'_> {
        Strings::Proto(&self.redactions)
    }
}

/// The columns of one `exchanges` record batch, typed once.
#[derive(Debug)]
pub struct BatchView<'a> {
    rows: usize,
    id: &'a FixedSizeBinaryArray,
    start: &'a TimestampNanosecondArray,
    status: &'a Int32Array,
    sample_rate: &'a Float64Array,
    text: [&'a StringArray; 16],
    int: [&'a Int64Array; 4],
    truncated: [&'a BooleanArray; 2],
    body: [&'a BinaryArray; 2],
    headers: [HeaderColumn<'a>; 4],
    redactions: (&'a ListArray, &'a StringArray),
}

/// A header list column and its entries' struct fields.
#[derive(Debug)]
struct HeaderColumn<'a> {
    list: &'a ListArray,
    names: &'a StringArray,
    values: &'a StringArray,
    bytes: &'a BinaryArray,
}

/// Positions in [`BatchView::text`].
mod text {
    pub(super) const TRACE_ID: usize = 0;
    pub(super) const DIRECTION: usize = 1;
    pub(super) const PROTOCOL: usize = 2;
    pub(super) const SCHEME: usize = 3;
    pub(super) const AUTHORITY: usize = 4;
    pub(super) const METHOD: usize = 5;
    pub(super) const PATH: usize = 6;
    /// Workload, namespace, pod, peer, cluster, route, flags, details, filter version.
    pub(super) const CAPTURE: usize = 7;
}

const TEXT_COLUMNS: [&str; 16] = [
    columns::TRACE_ID,
    columns::DIRECTION,
    columns::PROTOCOL,
    columns::SCHEME,
    columns::AUTHORITY,
    columns::METHOD,
    columns::PATH,
    columns::WORKLOAD,
    columns::NAMESPACE,
    columns::POD,
    columns::PEER_ADDRESS,
    columns::UPSTREAM_CLUSTER,
    columns::ROUTE_NAME,
    columns::RESPONSE_FLAGS,
    columns::RESPONSE_CODE_DETAILS,
    columns::FILTER_VERSION,
];

fn header_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<HeaderColumn<'a>, ArrowError> {
    let list = column::<ListArray>(batch, name)?;
    let entries = list.values().as_struct_opt().ok_or_else(|| {
        ArrowError::SchemaError(format!("exchanges: {name} entries are not structs"))
    })?;
    let field = |i: usize, what: &str| {
        entries.columns().get(i).ok_or_else(|| {
            ArrowError::SchemaError(format!("exchanges: {name} entries have no {what}"))
        })
    };
    let wrong = |what: &str| {
        ArrowError::SchemaError(format!("exchanges: {name} {what} has the wrong type"))
    };
    Ok(HeaderColumn {
        list,
        names: field(0, "name")?
            .as_string_opt()
            .ok_or_else(|| wrong("name"))?,
        values: field(1, "value")?
            .as_string_opt()
            .ok_or_else(|| wrong("value"))?,
        bytes: field(2, "value_bytes")?
            .as_binary_opt()
            .ok_or_else(|| wrong("value_bytes"))?,
    })
}

impl<'a> BatchView<'a> {
    /// Types the columns of a batch of the `exchanges` table (found by name; extra columns are
    /// fine); an error names a missing or mistyped column.
    pub fn new(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let mut text = [column::<StringArray>(batch, columns::TRACE_ID)?; 16];
        for (slot, name) in text.iter_mut().zip(TEXT_COLUMNS) {
            *slot = column::<StringArray>(batch, name)?;
        }
        let redactions = column::<ListArray>(batch, columns::REDACTIONS)?;
        let redaction_values = redactions.values().as_string_opt().ok_or_else(|| {
            ArrowError::SchemaError("exchanges: redactions are not strings".into())
        })?;
        Ok(Self {
            rows: batch.num_rows(),
            id: column(batch, columns::ID)?,
            start: column(batch, columns::START_TIME)?,
            status: column(batch, columns::STATUS)?,
            sample_rate: column(batch, columns::SAMPLE_RATE)?,
            text,
            int: [
                column(batch, columns::DURATION_NS)?,
                column(batch, columns::RESPONSE_HEADERS_NS)?,
                column(batch, columns::REQUEST_BODY_SIZE)?,
                column(batch, columns::RESPONSE_BODY_SIZE)?,
            ],
            truncated: [
                column(batch, columns::REQUEST_BODY_TRUNCATED)?,
                column(batch, columns::RESPONSE_BODY_TRUNCATED)?,
            ],
            body: [
                column(batch, columns::REQUEST_BODY)?,
                column(batch, columns::RESPONSE_BODY)?,
            ],
            headers: [
                header_column(batch, columns::REQUEST_HEADERS)?,
                header_column(batch, columns::REQUEST_TRAILERS)?,
                header_column(batch, columns::RESPONSE_HEADERS)?,
                header_column(batch, columns::RESPONSE_TRAILERS)?,
            ],
            redactions: (redactions, redaction_values),
        })
    }

    /// The rows of the batch.
    pub fn rows(&'a self) -> impl Iterator<Item = ArrowRow<'a>> {
        (0..self.rows).map(move |row| ArrowRow { view: self, row })
    }
}

/// One row of a [`BatchView`].
#[derive(Debug, Clone, Copy)]
pub struct ArrowRow<'a> {
    view: &'a BatchView<'a>,
    row: usize,
}

fn offsets(list: &ListArray, row: usize) -> (usize, usize) {
    let offsets = list.value_offsets();
    (offsets[row] as usize, offsets[row + 1] as usize)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl ArrowRow<'_> {
    fn text(&self, i: usize) -> &str {
        self.view.text[i].value(self.row)
    }

    fn headers(&self, i: usize) -> Headers<'_> {
        let column = &self.view.headers[i];
        Headers::Arrow {
            names: column.names,
            values: column.values,
            bytes: column.bytes,
            range: offsets(column.list, self.row),
        }
    }
}

impl Row for ArrowRow<'_> {
    fn id(&self) -> &[u8] {
        self.view.id.value(self.row)
    }
    fn trace_id(&self) -> &str {
        self.text(text::TRACE_ID)
    }
    fn start(&self) -> u64 {
        unsigned(self.view.start.value(self.row))
    }
    fn duration(&self) -> u64 {
        unsigned(self.view.int[0].value(self.row))
    }
    fn response_headers_ns(&self) -> u64 {
        unsigned(self.view.int[1].value(self.row))
    }
    fn direction(&self) -> Direction {
        match self.text(text::DIRECTION) {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            _ => Direction::Unspecified,
        }
    }
    fn protocol(&self) -> &str {
        let word = self.text(text::PROTOCOL);
        // Only the words the format knows; anything else reads as unknown, as decoding does.
        match Protocol::from_word(word) {
            Some(protocol) if protocol != Protocol::Unspecified => word,
            _ => "",
        }
    }
    fn scheme(&self) -> &str {
        self.text(text::SCHEME)
    }
    fn authority(&self) -> &str {
        self.text(text::AUTHORITY)
    }
    fn method(&self) -> &str {
        self.text(text::METHOD)
    }
    fn path(&self) -> &str {
        self.text(text::PATH)
    }
    fn status(&self) -> u32 {
        u32::try_from(self.view.status.value(self.row)).unwrap_or(0)
    }
    fn message(&self, side: Side) -> MessageView<'_> {
        let i = match side {
            Side::Request => 0,
            Side::Response => 1,
        };
        MessageView {
            headers: self.headers(i * 2),
            body: self.view.body[i].value(self.row),
            body_size: unsigned(self.view.int[2 + i].value(self.row)),
            truncated: self.view.truncated[i].value(self.row),
            trailers: self.headers(i * 2 + 1),
        }
    }
    fn capture(&self) -> [&str; 9] {
        std::array::from_fn(|i| self.text(text::CAPTURE + i))
    }
    fn sample_rate(&self) -> f64 {
        self.view.sample_rate.value(self.row)
    }
    fn redactions(&self) -> Strings<'_> {
        Strings::Arrow(
            self.view.redactions.1,
            offsets(self.view.redactions.0, self.row),
        )
    }
}

/// The exchange a row stands for (decoded; for tests and small jobs).
pub fn to_exchange(row: &impl Row) -> Exchange {
    let message = |side| {
        let m: MessageView<'_> = row.message(side);
        let headers = |h: Headers<'_>| {
            h.iter()
                .map(|(name, value)| Header {
                    name: name.to_owned(),
                    value: value.to_vec(),
                })
                .collect()
        };
        Message {
            headers: headers(m.headers),
            body: m.body.to_vec(),
            body_size: m.body_size,
            body_truncated: m.truncated,
            trailers: headers(m.trailers),
        }
    };
    let capture = row.capture();
    let mut exchange = Exchange {
        id: row.id().to_vec(),
        trace_id: row.trace_id().to_owned(),
        start_unix_nanos: row.start(),
        duration_nanos: row.duration(),
        response_headers_nanos: row.response_headers_ns(),
        workload: capture[0].to_owned(),
        namespace: capture[1].to_owned(),
        pod: capture[2].to_owned(),
        peer_address: capture[3].to_owned(),
        upstream_cluster: capture[4].to_owned(),
        route_name: capture[5].to_owned(),
        scheme: row.scheme().to_owned(),
        authority: row.authority().to_owned(),
        method: row.method().to_owned(),
        path: row.path().to_owned(),
        request: Some(message(Side::Request)),
        status: row.status(),
        response: Some(message(Side::Response)),
        response_flags: capture[6].to_owned(),
        response_code_details: capture[7].to_owned(),
        sample_rate: row.sample_rate(),
        redactions: row.redactions().iter().map(str::to_owned).collect(),
        filter_version: capture[8].to_owned(),
        ..Default::default()
    };
    exchange.set_direction(row.direction());
    exchange.set_protocol(Protocol::from_word(row.protocol()).unwrap_or(Protocol::Unspecified));
    exchange
}

/// Rows of every batch, in batch order.
pub fn rows_of<'a>(views: &'a [BatchView<'a>]) -> Vec<ArrowRow<'a>> {
    views.iter().flat_map(BatchView::rows).collect()
}
