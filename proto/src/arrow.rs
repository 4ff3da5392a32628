//! The one mapping between captured exchanges and Arrow: the `exchanges` table.
//!
//! One row per [`Exchange`]. The layout (see [`schema`]) is what the collector writes to
//! Parquet and what SQL users see, so it changes only by adding columns at the end.
//!
//! Header values are bytes on the wire, but people query them as text: each header is a
//! `Struct<name: Utf8, value: Utf8, value_bytes: Binary>` where `value` is the value as text
//! (invalid UTF-8 replaced by U+FFFD) and `value_bytes` holds the exact bytes only when they are
//! not valid UTF-8 (null otherwise), so the mapping is lossless both ways without doubling the
//! size of ordinary headers.

use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder,
    Int32Builder, Int64Builder, ListBuilder, OffsetBufferBuilder, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, StructArray, TimestampNanosecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::wire::{ExchangeRef, HeaderRef, MessageRef};
use crate::{Direction, Exchange, Header, Message, Protocol};

/// Column names of the `exchanges` table, in schema order.
pub mod columns {
    #![allow(missing_docs, reason = "each constant is the column of the same name")]
    pub const ID: &str = "id";
    pub const TRACE_ID: &str = "trace_id";
    pub const START_TIME: &str = "start_time";
    pub const DURATION_NS: &str = "duration_ns";
    pub const RESPONSE_HEADERS_NS: &str = "response_headers_ns";
    pub const DIRECTION: &str = "direction";
    pub const WORKLOAD: &str = "workload";
    pub const NAMESPACE: &str = "namespace";
    pub const POD: &str = "pod";
    pub const PEER_ADDRESS: &str = "peer_address";
    pub const UPSTREAM_CLUSTER: &str = "upstream_cluster";
    pub const ROUTE_NAME: &str = "route_name";
    pub const PROTOCOL: &str = "protocol";
    pub const SCHEME: &str = "scheme";
    pub const AUTHORITY: &str = "authority";
    pub const METHOD: &str = "method";
    pub const PATH: &str = "path";
    pub const REQUEST_HEADERS: &str = "request_headers";
    pub const REQUEST_BODY: &str = "request_body";
    pub const REQUEST_BODY_SIZE: &str = "request_body_size";
    pub const REQUEST_BODY_TRUNCATED: &str = "request_body_truncated";
    pub const REQUEST_TRAILERS: &str = "request_trailers";
    pub const STATUS: &str = "status";
    pub const RESPONSE_HEADERS: &str = "response_headers";
    pub const RESPONSE_BODY: &str = "response_body";
    pub const RESPONSE_BODY_SIZE: &str = "response_body_size";
    pub const RESPONSE_BODY_TRUNCATED: &str = "response_body_truncated";
    pub const RESPONSE_TRAILERS: &str = "response_trailers";
    pub const RESPONSE_FLAGS: &str = "response_flags";
    pub const RESPONSE_CODE_DETAILS: &str = "response_code_details";
    pub const SAMPLE_RATE: &str = "sample_rate";
    pub const REDACTIONS: &str = "redactions";
    pub const FILTER_VERSION: &str = "filter_version";
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("value_bytes", DataType::Binary, true),
    ])
}

fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(header_fields()),
        false,
    )))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use columns::*;
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new(ID, DataType::FixedSizeBinary(16), false),
        utf8(TRACE_ID),
        Field::new(
            START_TIME,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(DURATION_NS, DataType::Int64, false),
        Field::new(RESPONSE_HEADERS_NS, DataType::Int64, false),
        utf8(DIRECTION),
        utf8(WORKLOAD),
        utf8(NAMESPACE),
        utf8(POD),
        utf8(PEER_ADDRESS),
        utf8(UPSTREAM_CLUSTER),
        utf8(ROUTE_NAME),
        utf8(PROTOCOL),
        utf8(SCHEME),
        utf8(AUTHORITY),
        utf8(METHOD),
        utf8(PATH),
        Field::new(REQUEST_HEADERS, headers_type(), false),
        Field::new(REQUEST_BODY, DataType::Binary, false),
        Field::new(REQUEST_BODY_SIZE, DataType::Int64, false),
        Field::new(REQUEST_BODY_TRUNCATED, DataType::Boolean, false),
        Field::new(REQUEST_TRAILERS, headers_type(), false),
        Field::new(STATUS, DataType::Int32, false),
        Field::new(RESPONSE_HEADERS, headers_type(), false),
        Field::new(RESPONSE_BODY, DataType::Binary, false),
        Field::new(RESPONSE_BODY_SIZE, DataType::Int64, false),
        Field::new(RESPONSE_BODY_TRUNCATED, DataType::Boolean, false),
        Field::new(RESPONSE_TRAILERS, headers_type(), false),
        utf8(RESPONSE_FLAGS),
        utf8(RESPONSE_CODE_DETAILS),
        Field::new(SAMPLE_RATE, DataType::Float64, false),
        Field::new(
            REDACTIONS,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        utf8(FILTER_VERSION),
    ]))
});

/// The schema of the `exchanges` table.
///
/// | column | type | from |
/// | --- | --- | --- |
/// | `id` | FixedSizeBinary(16) | `id` (shorter ids are zero-padded) |
/// | `trace_id` | Utf8 | `trace_id` |
/// | `start_time` | Timestamp(ns, UTC) | `start_unix_nanos` |
/// | `duration_ns`, `response_headers_ns` | Int64 | `duration_nanos`, `response_headers_nanos` |
/// | `direction` | Utf8 | `inbound`, `outbound` or `unspecified` |
/// | `workload` … `route_name` | Utf8 | identity and routing |
/// | `protocol` | Utf8 | `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`, `gRPC` or empty |
/// | `scheme`, `authority`, `method`, `path` | Utf8 | the request line |
/// | `request_headers`, `request_trailers`, `response_headers`, `response_trailers` | `List<Struct<name, value, value_bytes>>` | ordered fields |
/// | `request_body`, `response_body` | Binary | the captured prefix |
/// | `request_body_size`, `response_body_size` | Int64 | true sizes |
/// | `request_body_truncated`, `response_body_truncated` | Boolean | prefix shorter than size |
/// | `status` | Int32 | 0 when no response |
/// | `response_flags`, `response_code_details` | Utf8 | Envoy's |
/// | `sample_rate` | Float64 | |
/// | `redactions` | `List<Utf8>` | places redacted |
/// | `filter_version` | Utf8 | |
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one header-list column (`List<Struct<name, value, value_bytes>>`) from typed child
/// builders, so that appending a field is three plain appends (a `StructBuilder` would look
/// each child up through `dyn Any` for every field).
struct HeadersBuilder {
    /// Where each row's fields start and end in the children.
    offsets: OffsetBufferBuilder<i32>,
    names: StringBuilder,
    values: StringBuilder,
    /// The raw value, for a value that is not UTF-8 (null otherwise).
    value_bytes: BinaryBuilder,
}

impl HeadersBuilder {
    /// Room for `rows` rows of one field each (the children grow as fields are appended).
    fn new(rows: usize) -> Self {
        Self {
            offsets: OffsetBufferBuilder::new(rows),
            names: StringBuilder::with_capacity(rows, 1024),
            values: StringBuilder::with_capacity(rows, 1024),
            value_bytes: BinaryBuilder::with_capacity(rows, 1024),
        }
    }

    fn append(&mut self, headers: &[HeaderRef<'_>]) -> Result<(), ArrowError> {
        // The list's offsets are i32 (as `ListBuilder` would panic, this refuses instead).
        if i32::try_from(self.names.len() + headers.len()).is_err() {
            return Err(ArrowError::InvalidArgumentError(
                "over 2^31 header fields in one batch".into(),
            ));
        }
        for header in headers {
            self.names.append_value(header.name);
            match crate::wire::utf8(header.value) {
                Ok(text) => {
                    self.values.append_value(text);
                    self.value_bytes.append_null();
                }
                Err(_) => {
                    self.values
                        .append_value(String::from_utf8_lossy(header.value));
                    self.value_bytes.append_value(header.value);
                }
            }
        }
        self.offsets.push_length(headers.len());
        Ok(())
    }

    fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let fields = header_fields();
        let entries = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::new(self.names.finish()),
                Arc::new(self.values.finish()),
                Arc::new(self.value_bytes.finish()),
            ],
            None,
        )?;
        let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
        Ok(Arc::new(ListArray::try_new(
            item,
            self.offsets.finish(),
            Arc::new(entries),
            None,
        )?))
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Builds a record batch of the `exchanges` table one exchange at a time, from borrowed views:
/// the one place where an exchange's fields become columns. [`to_record_batch`] feeds it
/// [`Exchange`]s; the collector feeds it exchanges decoded in place from the received bytes
/// ([`ExchangeRef::parse`]).
#[derive(Debug)]
pub struct ExchangesBuilder {
    id: FixedSizeBinaryBuilder,
    start: TimestampNanosecondBuilder,
    duration: Int64Builder,
    response_headers_ns: Int64Builder,
    /// The Utf8 columns in the order of `texts` in [`ExchangesBuilder::append`].
    strings: Vec<StringBuilder>,
    request_headers: HeadersBuilder,
    request_body: BinaryBuilder,
    request_body_size: Int64Builder,
    request_truncated: BooleanBuilder,
    request_trailers: HeadersBuilder,
    status: Int32Builder,
    response_headers: HeadersBuilder,
    response_body: BinaryBuilder,
    response_body_size: Int64Builder,
    response_truncated: BooleanBuilder,
    response_trailers: HeadersBuilder,
    sample_rate: Float64Builder,
    redactions: ListBuilder<StringBuilder>,
    filter_version: StringBuilder,
}

impl std::fmt::Debug for HeadersBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadersBuilder")
            .field("rows", &(self.offsets.len() - 1))
            .field("fields", &self.names.len())
            .finish()
    }
}

impl ExchangesBuilder {
    /// A builder with room for `n` exchanges.
    pub fn with_capacity(n: usize) -> Self {
        let int64 = || Int64Builder::with_capacity(n);
        Self {
            id: FixedSizeBinaryBuilder::with_capacity(n, 16),
            start: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            duration: int64(),
            response_headers_ns: int64(),
            strings: (0..15)
                .map(|_| StringBuilder::with_capacity(n, n * 16))
                .collect(),
            request_headers: HeadersBuilder::new(n),
            request_body: BinaryBuilder::with_capacity(n, 0),
            request_body_size: int64(),
            request_truncated: BooleanBuilder::with_capacity(n),
            request_trailers: HeadersBuilder::new(n),
            status: Int32Builder::with_capacity(n),
            response_headers: HeadersBuilder::new(n),
            response_body: BinaryBuilder::with_capacity(n, 0),
            response_body_size: int64(),
            response_truncated: BooleanBuilder::with_capacity(n),
            response_trailers: HeadersBuilder::new(n),
            sample_rate: Float64Builder::with_capacity(n),
            redactions: ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
                "item",
                DataType::Utf8,
                false,
            ))),
            filter_version: StringBuilder::with_capacity(n, n * 8),
        }
    }

    /// Exchanges appended so far.
    pub fn len(&self) -> usize {
        self.id.len()
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one exchange as one row.
    pub fn append(&mut self, e: &ExchangeRef<'_>) -> Result<(), ArrowError> {
        // Shorter ids are zero-padded, longer ones cut (the collector refuses both).
        let mut padded = [0u8; 16];
        for (slot, byte) in padded.iter_mut().zip(e.id) {
            *slot = *byte;
        }
        self.id.append_value(padded)?;
        self.start.append_value(to_i64(e.start_unix_nanos));
        self.duration.append_value(to_i64(e.duration_nanos));
        self.response_headers_ns
            .append_value(to_i64(e.response_headers_nanos));
        let texts: [&str; 15] = [
            e.trace_id,
            e.direction().as_word(),
            e.workload,
            e.namespace,
            e.pod,
            e.peer_address,
            e.upstream_cluster,
            e.route_name,
            e.protocol().as_word(),
            e.scheme,
            e.authority,
            e.method,
            e.path,
            e.response_flags,
            e.response_code_details,
        ];
        for (builder, text) in self.strings.iter_mut().zip(texts) {
            builder.append_value(text);
        }
        let empty = MessageRef::default();
        let request = e.request().unwrap_or(&empty);
        let response = e.response().unwrap_or(&empty);
        self.request_headers.append(&request.headers)?;
        self.request_body.append_value(request.body);
        self.request_body_size
            .append_value(to_i64(request.body_size));
        self.request_truncated.append_value(request.body_truncated);
        self.request_trailers.append(&request.trailers)?;
        self.status
            .append_value(i32::try_from(e.status).unwrap_or(i32::MAX));
        self.response_headers.append(&response.headers)?;
        self.response_body.append_value(response.body);
        self.response_body_size
            .append_value(to_i64(response.body_size));
        self.response_truncated
            .append_value(response.body_truncated);
        self.response_trailers.append(&response.trailers)?;
        self.sample_rate.append_value(e.sample_rate);
        for redaction in &e.redactions {
            self.redactions.values().append_value(redaction);
        }
        self.redactions.append(true);
        self.filter_version.append_value(e.filter_version);
        Ok(())
    }

    /// The record batch of the rows appended.
    pub fn finish(self) -> Result<RecordBatch, ArrowError> {
        let Self {
            mut id,
            mut start,
            mut duration,
            mut response_headers_ns,
            strings,
            request_headers,
            mut request_body,
            mut request_body_size,
            mut request_truncated,
            request_trailers,
            mut status,
            response_headers,
            mut response_body,
            mut response_body_size,
            mut response_truncated,
            response_trailers,
            mut sample_rate,
            mut redactions,
            mut filter_version,
        } = self;
        let mut s: Vec<ArrayRef> = strings
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        // Indexes into `texts` in `append`.
        let mut take = |i: usize| {
            std::mem::replace(
                &mut s[i],
                Arc::new(StringArray::from(Vec::<&str>::new())) as ArrayRef,
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            take(0),
            Arc::new(start.finish()),
            Arc::new(duration.finish()),
            Arc::new(response_headers_ns.finish()),
            take(1),
            take(2),
            take(3),
            take(4),
            take(5),
            take(6),
            take(7),
            take(8),
            take(9),
            take(10),
            take(11),
            take(12),
            request_headers.finish()?,
            Arc::new(request_body.finish()),
            Arc::new(request_body_size.finish()),
            Arc::new(request_truncated.finish()),
            request_trailers.finish()?,
            Arc::new(status.finish()),
            response_headers.finish()?,
            Arc::new(response_body.finish()),
            Arc::new(response_body_size.finish()),
            Arc::new(response_truncated.finish()),
            response_trailers.finish()?,
            take(13),
            take(14),
            Arc::new(sample_rate.finish()),
            Arc::new(redactions.finish()),
            Arc::new(filter_version.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// Builds one record batch of the `exchanges` table from exchanges.
/// Takes exchanges or references to them, so callers that group exchanges need not copy them.
pub fn to_record_batch<E: std::borrow::Borrow<Exchange>>(
    exchanges: &[E],
) -> Result<RecordBatch, ArrowError> {
    let mut builder = ExchangesBuilder::with_capacity(exchanges.len());
    let mut view = ExchangeRef::default();
    for exchange in exchanges {
        view.fill_from(exchange.borrow());
        builder.append(&view)?;
    }
    builder.finish()
}

/// The column `name` of a batch as the array type `T`; an error names a missing or mistyped
/// column.
pub fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| ArrowError::SchemaError(format!("exchanges: column {name} is missing")))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| {
            ArrowError::SchemaError(format!(
                "exchanges: column {name} has type other than the schema's"
            ))
        })
}

fn read_headers(list: &ListArray, row: usize) -> Result<Vec<Header>, ArrowError> {
    let entries = list.value(row);
    let entries = entries
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| {
            ArrowError::SchemaError("exchanges: header entries are not structs".into())
        })?;
    let field = |i: usize| entries.column(i).clone();
    let names = field(0);
    let values = field(1);
    let raw = field(2);
    let names = names
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ArrowError::SchemaError("header name".into()))?;
    let values = values
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| ArrowError::SchemaError("header value".into()))?;
    let raw = raw
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| ArrowError::SchemaError("header value_bytes".into()))?;
    Ok((0..entries.len())
        .map(|i| Header {
            name: names.value(i).to_string(),
            value: if raw.is_null(i) {
                values.value(i).as_bytes().to_vec()
            } else {
                raw.value(i).to_vec()
            },
        })
        .collect())
}

/// Reads exchanges back from a record batch of the `exchanges` table (columns found by name, so
/// a batch with extra columns, such as hive partition columns, reads too).
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Exchange>, ArrowError> {
    use columns::*;
    let text = |name: &str| column::<StringArray>(batch, name);
    let int64 = |name: &str| column::<Int64Array>(batch, name);
    let boolean = |name: &str| column::<BooleanArray>(batch, name);
    let binary = |name: &str| column::<BinaryArray>(batch, name);
    let list = |name: &str| column::<ListArray>(batch, name);
    let id = column::<FixedSizeBinaryArray>(batch, ID)?;
    let start = column::<TimestampNanosecondArray>(batch, START_TIME)?;
    let status = column::<Int32Array>(batch, STATUS)?;
    let sample_rate = column::<Float64Array>(batch, SAMPLE_RATE)?;
    let (trace_id, direction, workload, namespace, pod) = (
        text(TRACE_ID)?,
        text(DIRECTION)?,
        text(WORKLOAD)?,
        text(NAMESPACE)?,
        text(POD)?,
    );
    let (peer, cluster, route, protocol) = (
        text(PEER_ADDRESS)?,
        text(UPSTREAM_CLUSTER)?,
        text(ROUTE_NAME)?,
        text(PROTOCOL)?,
    );
    let (scheme, authority, method, path) =
        (text(SCHEME)?, text(AUTHORITY)?, text(METHOD)?, text(PATH)?);
    let (flags, details, version) = (
        text(RESPONSE_FLAGS)?,
        text(RESPONSE_CODE_DETAILS)?,
        text(FILTER_VERSION)?,
    );
    let (duration, response_headers_ns) = (int64(DURATION_NS)?, int64(RESPONSE_HEADERS_NS)?);
    let (req_headers, req_trailers, resp_headers, resp_trailers) = (
        list(REQUEST_HEADERS)?,
        list(REQUEST_TRAILERS)?,
        list(RESPONSE_HEADERS)?,
        list(RESPONSE_TRAILERS)?,
    );
    let (req_body, resp_body) = (binary(REQUEST_BODY)?, binary(RESPONSE_BODY)?);
    let (req_size, resp_size) = (int64(REQUEST_BODY_SIZE)?, int64(RESPONSE_BODY_SIZE)?);
    let (req_trunc, resp_trunc) = (
        boolean(REQUEST_BODY_TRUNCATED)?,
        boolean(RESPONSE_BODY_TRUNCATED)?,
    );
    let redactions = list(REDACTIONS)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let redaction_values = redactions.value(row);
        let redaction_values = redaction_values
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                ArrowError::SchemaError("exchanges: redactions are not strings".into())
            })?;
        out.push(Exchange {
            id: id.value(row).to_vec(),
            trace_id: trace_id.value(row).to_string(),
            start_unix_nanos: u64::try_from(start.value(row)).unwrap_or(0),
            duration_nanos: u64::try_from(duration.value(row)).unwrap_or(0),
            response_headers_nanos: u64::try_from(response_headers_ns.value(row)).unwrap_or(0),
            direction: direction_of(direction.value(row)) as i32,
            workload: workload.value(row).to_string(),
            namespace: namespace.value(row).to_string(),
            pod: pod.value(row).to_string(),
            peer_address: peer.value(row).to_string(),
            upstream_cluster: cluster.value(row).to_string(),
            route_name: route.value(row).to_string(),
            protocol: protocol_of(protocol.value(row)) as i32,
            scheme: scheme.value(row).to_string(),
            authority: authority.value(row).to_string(),
            method: method.value(row).to_string(),
            path: path.value(row).to_string(),
            request: Some(Message {
                headers: read_headers(req_headers, row)?,
                body: req_body.value(row).to_vec(),
                body_size: u64::try_from(req_size.value(row)).unwrap_or(0),
                body_truncated: req_trunc.value(row),
                trailers: read_headers(req_trailers, row)?,
            }),
            status: u32::try_from(status.value(row)).unwrap_or(0),
            response: Some(Message {
                headers: read_headers(resp_headers, row)?,
                body: resp_body.value(row).to_vec(),
                body_size: u64::try_from(resp_size.value(row)).unwrap_or(0),
                body_truncated: resp_trunc.value(row),
                trailers: read_headers(resp_trailers, row)?,
            }),
            response_flags: flags.value(row).to_string(),
            response_code_details: details.value(row).to_string(),
            sample_rate: sample_rate.value(row),
            redactions: (0..redaction_values.len())
                .map(|i| redaction_values.value(i).to_string())
                .collect(),
            filter_version: version.value(row).to_string(),
        });
    }
    Ok(out)
}

fn direction_of(word: &str) -> Direction {
    match word {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        _ => Direction::Unspecified,
    }
}

fn protocol_of(word: &str) -> Protocol {
    Protocol::from_word(word).unwrap_or(Protocol::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &[u8]) -> Header {
        Header {
            name: name.into(),
            value: value.to_vec(),
        }
    }

    fn sample(i: u8) -> Exchange {
        Exchange {
            id: vec![i; 16],
            trace_id: format!("trace-{i}"),
            start_unix_nanos: 1_764_000_000_000_000_000 + u64::from(i),
            duration_nanos: 1_000 * u64::from(i) + 1,
            response_headers_nanos: 500,
            direction: if i.is_multiple_of(2) {
                Direction::Inbound
            } else {
                Direction::Outbound
            } as i32,
            workload: "orders".into(),
            namespace: "shop".into(),
            pod: "orders-0".into(),
            peer_address: "10.0.0.1:5000".into(),
            upstream_cluster: "outbound|80||pay".into(),
            route_name: "default".into(),
            protocol: [
                Protocol::Http11,
                Protocol::Http2,
                Protocol::Grpc,
                Protocol::Unspecified,
            ][usize::from(i % 4)] as i32,
            scheme: "http".into(),
            authority: "orders.shop".into(),
            method: "POST".into(),
            path: format!("/orders/{i}?x=1"),
            request: Some(Message {
                headers: vec![
                    h("content-type", b"application/json"),
                    h("x-bin", &[0xff, i]),
                    h("x-dup", b"1"),
                    h("x-dup", b"2"),
                ],
                body: vec![i, 0xfe, b'{'],
                body_size: 4096,
                body_truncated: true,
                trailers: vec![],
            }),
            status: 200 + u32::from(i),
            response: Some(Message {
                headers: vec![],
                body: vec![],
                body_size: 0,
                body_truncated: false,
                trailers: vec![h("grpc-status", b"0")],
            }),
            response_flags: if i == 1 { "UF".into() } else { String::new() },
            response_code_details: "via_upstream".into(),
            sample_rate: 0.5,
            redactions: (0..i % 3).map(|k| format!("request.header:h{k}")).collect(),
            filter_version: "0.1.0".into(),
        }
    }

    #[test]
    fn exchanges_round_trip_through_arrow() {
        let exchanges: Vec<Exchange> = (0..7).map(sample).collect();
        let batch = to_record_batch(&exchanges).unwrap();
        assert_eq!(batch.num_rows(), 7);
        assert_eq!(batch.schema(), schema());
        assert_eq!(from_record_batch(&batch).unwrap(), exchanges);
    }

    #[test]
    fn header_values_are_text_with_exact_bytes_only_when_needed() {
        let batch = to_record_batch(&[sample(3)]).unwrap();
        let headers = batch
            .column_by_name(columns::REQUEST_HEADERS)
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        let entries = headers.value(0);
        let entries = entries.as_any().downcast_ref::<StructArray>().unwrap();
        let values = entries
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let raw = entries
            .column(2)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .unwrap();
        assert_eq!(values.value(0), "application/json");
        assert!(raw.is_null(0));
        assert_eq!(values.value(1), "\u{fffd}\u{3}");
        assert_eq!(raw.value(1), &[0xff, 3]);
    }

    #[test]
    fn an_empty_batch_has_the_schema_and_no_rows() {
        let batch = to_record_batch::<Exchange>(&[]).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), schema().fields().len());
    }

    #[test]
    fn a_batch_missing_a_column_is_an_error_naming_it() {
        let batch = to_record_batch(&[sample(0)]).unwrap();
        let projected = batch.project(&[0, 1]).unwrap();
        let error = from_record_batch(&projected).unwrap_err().to_string();
        assert!(error.contains("column start_time is missing"), "{error}");
    }
}
