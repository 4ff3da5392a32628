//! The inventory: what a service is called by and what it calls, from the exchanges of a cut.
//!
//! An [`Inventory`] lists every inbound endpoint (method and path template, with the hosts it
//! was called on) and every outbound dependency (a host, then the endpoints called on it). Each
//! entry has its count, status mix, latency percentiles, protocols, request and response
//! content types, body-size mix and first and last seen.
//!
//! It is built from the record batches of [`sql`] ([`Inventory::from_batches`]) or from
//! exchanges ([`Inventory::from_exchanges`]). Both feed one [`InventoryBuilder`], so they give
//! the same inventory. Every list is sorted and every figure is exact (percentiles by nearest
//! rank), so the same exchanges give the same report in any order.
//!
//! It renders as a terminal table ([`Inventory::to_table`]), GitHub markdown
//! ([`Inventory::to_markdown`]) or JSON ([`Inventory::to_json`]).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap as _, Serializer};
use tapedeck_har::time;
use tapedeck_proto::arrow::columns;
use tapedeck_proto::arrow_array::cast::AsArray as _;
use tapedeck_proto::arrow_array::types::{Int32Type, Int64Type, TimestampNanosecondType};
use tapedeck_proto::arrow_array::{
    Array, ArrayRef, GenericStringArray, Int32Array, Int64Array, ListArray, RecordBatch,
    StringViewArray, StructArray, TimestampNanosecondArray,
};
use tapedeck_proto::arrow_schema::{DataType, TimeUnit};
use tapedeck_proto::{Direction, Exchange, Header};

use crate::cut::{Cut, TABLE};
use crate::template::path_template;

mod render;
#[cfg(test)]
mod tests;

/// The header whose value (without parameters, lowercased) is an exchange's content type.
pub const CONTENT_TYPE: &str = "content-type";

/// How status 0 (no response was sent, for example a reset stream) is shown.
pub const NO_RESPONSE: &str = "no response";

/// How an exchange without a known protocol is shown.
pub const UNKNOWN_PROTOCOL: &str = "unknown";

/// The body-size buckets, smallest first: a size falls in the first bucket whose bound it does
/// not exceed (bounds inclusive), and in [`LARGEST_SIZE_BUCKET`] when it exceeds them all.
pub const SIZE_BUCKETS: [(u64, &str); 5] = [
    (0, "0"),
    (1024, "≤1 KiB"),
    (10 * 1024, "≤10 KiB"),
    (100 * 1024, "≤100 KiB"),
    (1024 * 1024, "≤1 MiB"),
];

/// The bucket of body sizes above every bound of [`SIZE_BUCKETS`].
pub const LARGEST_SIZE_BUCKET: &str = ">1 MiB";

/// The columns [`sql`] selects, in order. The bodies are never read.
pub const COLUMNS: [&str; 12] = [
    columns::DIRECTION,
    columns::AUTHORITY,
    columns::METHOD,
    columns::PATH,
    columns::STATUS,
    columns::DURATION_NS,
    columns::PROTOCOL,
    columns::START_TIME,
    columns::REQUEST_BODY_SIZE,
    columns::RESPONSE_BODY_SIZE,
    columns::REQUEST_HEADERS,
    columns::RESPONSE_HEADERS,
];

/// The statement an inventory runs: the [`COLUMNS`] of the exchanges in the cut. Rows come in
/// any order; the inventory does not depend on it.
pub fn sql(cut: &Cut) -> String {
    format!(
        "SELECT {} FROM {TABLE} WHERE {}",
        COLUMNS.join(", "),
        cut.where_clause()
    )
}

/// Why record batches cannot be read into an inventory.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InventoryError {
    /// A column the inventory needs is not in the batch.
    #[error("batch {batch}: column {column} is missing")]
    MissingColumn {
        /// The batch, counted from 0.
        batch: usize,
        /// The column.
        column: &'static str,
    },
    /// A column has a type the inventory cannot read.
    #[error("batch {batch}: column {column} is {found}, expected {expected}")]
    ColumnType {
        /// The batch, counted from 0.
        batch: usize,
        /// The column (for header lists, with the struct field: `request_headers.name`).
        column: String,
        /// The type found.
        found: String,
        /// The type expected.
        expected: &'static str,
    },
    /// A column that is never null in the `exchanges` table holds a null.
    #[error("batch {batch}, row {row}: column {column} is null")]
    Null {
        /// The batch, counted from 0.
        batch: usize,
        /// The row in the batch, counted from 0.
        row: usize,
        /// The column.
        column: &'static str,
    },
}

/// Values and how often each was seen, in a fixed order (documented where it is used). JSON
/// writes it as an object, `{"200": 3, "500": 1}`, keeping that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<(String, u64)>);

impl Counts {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum of the counts.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, count)| count).sum()
    }

    /// The count of `value`, 0 when it was not seen.
    pub fn get(&self, value: &str) -> u64 {
        self.0
            .iter()
            .find(|(v, _)| v == value)
            .map_or(0, |(_, count)| *count)
    }

    /// Most frequent first, ties by value.
    fn by_frequency(map: BTreeMap<String, u64>) -> Self {
        let mut pairs: Vec<(String, u64)> = map.into_iter().collect();
        pairs.sort_by(|(a, m), (b, n)| n.cmp(m).then_with(|| a.cmp(b)));
        Self(pairs)
    }

    /// For people: `-` when empty; the value alone when it is the only one and covers all `of`
    /// exchanges; else `value (count)` joined by `, `.
    fn render(&self, of: u64) -> String {
        match self.0.as_slice() {
            [] => "-".to_owned(),
            [(value, count)] if *count == of => value.clone(),
            pairs => pairs
                .iter()
                .map(|(value, count)| format!("{value} ({count})"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (value, count) in &self.0 {
            map.serialize_entry(value, count)?;
        }
        map.end()
    }
}

/// Latency percentiles in milliseconds, by nearest rank over the exact durations (start of the
/// request to the end of the exchange).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// What was seen of one endpoint, one host or one group of exchanges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Exchanges (recorded ones: a sampled exchange counts once).
    pub count: u64,
    /// Exact status codes in ascending order, then [`NO_RESPONSE`] for status 0.
    pub status: Counts,
    /// Latency percentiles.
    pub latency_ms: Latency,
    /// Protocols (`HTTP/1.1`, `HTTP/2`, `gRPC` … or [`UNKNOWN_PROTOCOL`]), most frequent first.
    pub protocols: Counts,
    /// Request content types (the media type of `content-type`, lowercased, without
    /// parameters), most frequent first. Requests without one are not counted.
    pub request_content_types: Counts,
    /// Response content types, as the request ones.
    pub response_content_types: Counts,
    /// True request body sizes (not the captured prefix) by [`SIZE_BUCKETS`], smallest first,
    /// empty buckets left out.
    pub request_sizes: Counts,
    /// True response body sizes, as the request ones.
    pub response_sizes: Counts,
    /// Start of the earliest exchange, nanoseconds since the Unix epoch (RFC 3339 in JSON).
    #[serde(serialize_with = "exact_time")]
    pub first_seen: u64,
    /// Start of the latest exchange.
    #[serde(serialize_with = "exact_time")]
    pub last_seen: u64,
}

/// One endpoint: a method and a path template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    /// The request method.
    pub method: String,
    /// The path template ([`path_template`]: ids collapsed, query dropped).
    pub template: String,
    /// The hosts (`:authority`) it was called on, most frequent first. Only for inbound and
    /// unspecified endpoints (an outbound endpoint is listed under its host); left out of the
    /// JSON when empty.
    #[serde(skip_serializing_if = "Counts::is_empty")]
    pub hosts: Counts,
    /// What was seen of it.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One outbound dependency: a host (`:authority`) the service called, and its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependency {
    /// The `:authority` of the calls (empty when the calls had none).
    pub host: String,
    /// What was seen of all calls to the host.
    #[serde(flatten)]
    pub stats: Stats,
    /// The endpoints called on the host, by template, then method.
    pub endpoints: Vec<Endpoint>,
}

/// How many exchanges, endpoints and dependencies an inventory covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Every exchange.
    pub exchanges: u64,
    /// Exchanges the service received.
    pub inbound: u64,
    /// Calls the service made.
    pub outbound: u64,
    /// Exchanges whose direction the proxy did not say.
    pub unspecified: u64,
    /// Inbound endpoints.
    pub inbound_endpoints: u64,
    /// Outbound hosts.
    pub dependencies: u64,
    /// Outbound endpoints over all hosts.
    pub outbound_endpoints: u64,
    /// Endpoints of exchanges without a direction.
    pub unspecified_endpoints: u64,
}

/// The visibility report of one service: every inbound endpoint and outbound dependency.
///
/// JSON layout (field order fixed): `service`, `first_seen`, `last_seen` (RFC 3339, exact, or
/// null when nothing was seen), `totals`, `inbound` ([`Endpoint`]s), `outbound`
/// ([`Dependency`]s, by host), `unspecified` ([`Endpoint`]s of exchanges without a direction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// The service.
    pub service: String,
    /// Start of the earliest exchange, nanoseconds since the Unix epoch.
    #[serde(serialize_with = "exact_time_opt")]
    pub first_seen: Option<u64>,
    /// Start of the latest exchange.
    #[serde(serialize_with = "exact_time_opt")]
    pub last_seen: Option<u64>,
    /// Counts over everything.
    pub totals: Totals,
    /// Endpoints the service was called on, by template, then method.
    pub inbound: Vec<Endpoint>,
    /// Hosts the service called, by host.
    pub outbound: Vec<Dependency>,
    /// Exchanges with an unspecified direction, by template, then method, kept apart so none
    /// is lost.
    pub unspecified: Vec<Endpoint>,
}

fn exact_time<S: Serializer>(nanos: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time::format_exact(*nanos))
}

fn exact_time_opt<S: Serializer>(nanos: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match nanos {
        Some(nanos) => exact_time(nanos, serializer),
        None => serializer.serialize_none(),
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `percent` %
/// of the values at or below it. `None` when there are no values.
pub fn percentile(sorted: &[u64], percent: u32) -> Option<u64> {
    let n = sorted.len() as u128;
    let rank = (u128::from(percent.min(100)) * n).div_ceil(100).max(1);
    let index = usize::try_from(rank - 1).ok()?;
    sorted.get(index).copied()
}

/// The label of the [`SIZE_BUCKETS`] bucket (or [`LARGEST_SIZE_BUCKET`]) a body size falls in.
pub fn size_bucket(size: u64) -> &'static str {
    SIZE_BUCKETS
        .iter()
        .find(|(bound, _)| size <= *bound)
        .map_or(LARGEST_SIZE_BUCKET, |(_, label)| label)
}

fn size_index(size: u64) -> usize {
    SIZE_BUCKETS
        .iter()
        .position(|(bound, _)| size <= *bound)
        .unwrap_or(SIZE_BUCKETS.len())
}

/// The media type of a `content-type` value: without parameters, trimmed, lowercased
/// (`Application/JSON; charset=utf-8` gives `application/json`). `None` when nothing is left.
pub fn media_type(value: &str) -> Option<String> {
    let media = value.split(';').next().unwrap_or_default().trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// The direction named by its word (as [`Direction::as_word`] writes it); any other word is
/// unspecified.
fn direction_of(word: &str) -> Direction {
    match word {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        _ => Direction::Unspecified,
    }
}

/// One exchange as the inventory sees it, from a batch row or an [`Exchange`].
#[derive(Debug)]
struct Row<'a> {
    direction: Direction,
    authority: &'a str,
    method: &'a str,
    path: &'a str,
    /// As the `status` column holds it (`Int32`).
    status: i64,
    duration: u64,
    /// The protocol word, empty when unknown.
    protocol: &'a str,
    start: u64,
    request_size: u64,
    response_size: u64,
    request_type: Option<String>,
    response_type: Option<String>,
}

/// The running tally of one entry.
#[derive(Debug, Default)]
struct Tally {
    count: u64,
    hosts: BTreeMap<String, u64>,
    status: BTreeMap<i64, u64>,
    durations: Vec<u64>,
    protocols: BTreeMap<String, u64>,
    request_types: BTreeMap<String, u64>,
    response_types: BTreeMap<String, u64>,
    request_sizes: [u64; SIZE_BUCKETS.len() + 1],
    response_sizes: [u64; SIZE_BUCKETS.len() + 1],
    first: Option<u64>,
    last: Option<u64>,
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

impl Tally {
    fn add(&mut self, row: &Row<'_>, with_host: bool) {
        self.count += 1;
        if with_host {
            bump(&mut self.hosts, row.authority);
        }
        *self.status.entry(row.status).or_default() += 1;
        self.durations.push(row.duration);
        let protocol = if row.protocol.is_empty() {
            UNKNOWN_PROTOCOL
        } else {
            row.protocol
        };
        bump(&mut self.protocols, protocol);
        if let Some(media) = &row.request_type {
            bump(&mut self.request_types, media);
        }
        if let Some(media) = &row.response_type {
            bump(&mut self.response_types, media);
        }
        self.request_sizes[size_index(row.request_size)] += 1;
        self.response_sizes[size_index(row.response_size)] += 1;
        self.first = Some(self.first.map_or(row.start, |t| t.min(row.start)));
        self.last = Some(self.last.map_or(row.start, |t| t.max(row.start)));
    }

    fn finish(mut self) -> (Counts, Stats) {
        self.durations.sort_unstable();
        let ms = |percent| {
            percentile(&self.durations, percent).map_or(0.0, |ns| ns as f64 / 1_000_000.0)
        };
        let latency_ms = Latency {
            p50: ms(50),
            p95: ms(95),
            p99: ms(99),
        };
        let mut status: Vec<(String, u64)> = self
            .status
            .iter()
            .filter(|(code, _)| **code != 0)
            .map(|(code, count)| (code.to_string(), *count))
            .collect();
        if let Some(count) = self.status.get(&0) {
            status.push((NO_RESPONSE.to_owned(), *count));
        }
        let sizes = |buckets: [u64; SIZE_BUCKETS.len() + 1]| {
            let labels = SIZE_BUCKETS
                .iter()
                .map(|(_, label)| *label)
                .chain([LARGEST_SIZE_BUCKET]);
            Counts(
                labels
                    .zip(buckets)
                    .filter(|(_, count)| *count > 0)
                    .map(|(label, count)| (label.to_owned(), count))
                    .collect(),
            )
        };
        let stats = Stats {
            count: self.count,
            status: Counts(status),
            latency_ms,
            protocols: Counts::by_frequency(self.protocols),
            request_content_types: Counts::by_frequency(self.request_types),
            response_content_types: Counts::by_frequency(self.response_types),
            request_sizes: sizes(self.request_sizes),
            response_sizes: sizes(self.response_sizes),
            first_seen: self.first.unwrap_or_default(),
            last_seen: self.last.unwrap_or_default(),
        };
        (Counts::by_frequency(self.hosts), stats)
    }
}

/// An endpoint's key: template first, so endpoints sort by template, then method.
type EndpointKey = (String, String);

fn endpoints(map: BTreeMap<EndpointKey, Tally>) -> Vec<Endpoint> {
    map.into_iter()
        .map(|((template, method), tally)| {
            let (hosts, stats) = tally.finish();
            Endpoint {
                method,
                template,
                hosts,
                stats,
            }
        })
        .collect()
}

/// Builds an [`Inventory`] one batch or exchange at a time, so a caller can feed a stream.
/// [`Inventory::from_batches`] and [`Inventory::from_exchanges`] are shorthands for it.
#[derive(Debug)]
pub struct InventoryBuilder {
    service: String,
    batches: usize,
    totals: Totals,
    first: Option<u64>,
    last: Option<u64>,
    inbound: BTreeMap<EndpointKey, Tally>,
    outbound: BTreeMap<String, (Tally, BTreeMap<EndpointKey, Tally>)>,
    unspecified: BTreeMap<EndpointKey, Tally>,
}

impl InventoryBuilder {
    /// An empty inventory of `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            batches: 0,
            totals: Totals::default(),
            first: None,
            last: None,
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
            unspecified: BTreeMap::new(),
        }
    }

    fn add(&mut self, row: &Row<'_>) {
        self.totals.exchanges += 1;
        self.first = Some(self.first.map_or(row.start, |t| t.min(row.start)));
        self.last = Some(self.last.map_or(row.start, |t| t.max(row.start)));
        let key = (path_template(row.path), row.method.to_owned());
        match row.direction {
            Direction::Inbound => {
                self.totals.inbound += 1;
                self.inbound.entry(key).or_default().add(row, true);
            }
            Direction::Outbound => {
                self.totals.outbound += 1;
                let (host, endpoints) = self.outbound.entry(row.authority.to_owned()).or_default();
                host.add(row, false);
                endpoints.entry(key).or_default().add(row, false);
            }
            Direction::Unspecified => {
                self.totals.unspecified += 1;
                self.unspecified.entry(key).or_default().add(row, true);
            }
        }
    }

    /// Adds one exchange.
    pub fn add_exchange(&mut self, exchange: &Exchange) {
        let request = exchange.request.as_ref();
        let response = exchange.response.as_ref();
        let clamp = |value: u64| value.min(i64::MAX as u64);
        self.add(&Row {
            direction: exchange.direction(),
            authority: &exchange.authority,
            method: &exchange.method,
            path: &exchange.path,
            // As the Arrow mapping stores it, so both paths agree.
            status: i64::from(i32::try_from(exchange.status).unwrap_or(i32::MAX)),
            duration: clamp(exchange.duration_nanos),
            protocol: exchange.protocol().as_word(),
            start: clamp(exchange.start_unix_nanos),
            request_size: clamp(request.map_or(0, |m| m.body_size)),
            response_size: clamp(response.map_or(0, |m| m.body_size)),
            request_type: request.and_then(|m| header_media_type(&m.headers)),
            response_type: response.and_then(|m| header_media_type(&m.headers)),
        });
    }

    /// Adds every row of a batch with the [`COLUMNS`] (found by name; other columns are
    /// ignored). Text columns may be `Utf8`, `LargeUtf8` or `Utf8View`. Nothing of the batch is
    /// added when it cannot be read.
    pub fn add_batch(&mut self, batch: &RecordBatch) -> Result<(), InventoryError> {
        let index = self.batches;
        self.batches += 1;
        let columns = BatchColumns::new(index, batch)?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            rows.push(columns.row(row)?);
        }
        for row in &rows {
            self.add(row);
        }
        Ok(())
    }

    /// The inventory of everything added.
    pub fn finish(self) -> Inventory {
        let mut totals = self.totals;
        let inbound = endpoints(self.inbound);
        let unspecified = endpoints(self.unspecified);
        let outbound: Vec<Dependency> = self
            .outbound
            .into_iter()
            .map(|(host, (tally, map))| Dependency {
                host,
                stats: tally.finish().1,
                endpoints: endpoints(map),
            })
            .collect();
        totals.inbound_endpoints = inbound.len() as u64;
        totals.dependencies = outbound.len() as u64;
        totals.outbound_endpoints = outbound.iter().map(|d| d.endpoints.len() as u64).sum();
        totals.unspecified_endpoints = unspecified.len() as u64;
        Inventory {
            service: self.service,
            first_seen: self.first,
            last_seen: self.last,
            totals,
            inbound,
            outbound,
            unspecified,
        }
    }
}

/// The media type of the first `content-type` header.
fn header_media_type(headers: &[Header]) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(CONTENT_TYPE))
        .and_then(|h| media_type(&String::from_utf8_lossy(&h.value)))
}

/// A text column of any of Arrow's string layouts.
#[derive(Debug, Clone, Copy)]
enum Text<'a> {
    Utf8(&'a GenericStringArray<i32>),
    Large(&'a GenericStringArray<i64>),
    View(&'a StringViewArray),
}

impl<'a> Text<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        match array.data_type() {
            DataType::Utf8 => array.as_string_opt::<i32>().map(Text::Utf8),
            DataType::LargeUtf8 => array.as_string_opt::<i64>().map(Text::Large),
            DataType::Utf8View => array.as_string_view_opt().map(Text::View),
            _ => None,
        }
    }

    fn get(self, row: usize) -> Option<&'a str> {
        match self {
            Text::Utf8(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
            Text::Large(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
            Text::View(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
        }
    }
}

/// A header list column: `List<Struct<name: Utf8, value: Utf8, …>>`.
#[derive(Debug, Clone, Copy)]
struct Headers<'a> {
    list: &'a ListArray,
    names: Text<'a>,
    values: Text<'a>,
}

impl Headers<'_> {
    /// The media type of the row's first `content-type` header.
    fn media_type(&self, row: usize) -> Option<String> {
        if row >= self.list.len() || self.list.is_null(row) {
            return None;
        }
        let offsets = self.list.value_offsets();
        let start = usize::try_from(*offsets.get(row)?).ok()?;
        let end = usize::try_from(*offsets.get(row + 1)?).ok()?;
        (start..end)
            .find(|&i| {
                self.names
                    .get(i)
                    .is_some_and(|name| name.eq_ignore_ascii_case(CONTENT_TYPE))
            })
            .and_then(|i| self.values.get(i))
            .and_then(media_type)
    }
}

/// The columns of one batch, typed.
#[derive(Debug)]
struct BatchColumns<'a> {
    batch: usize,
    direction: Text<'a>,
    authority: Text<'a>,
    method: Text<'a>,
    path: Text<'a>,
    status: &'a Int32Array,
    duration: &'a Int64Array,
    protocol: Text<'a>,
    start: &'a TimestampNanosecondArray,
    request_size: &'a Int64Array,
    response_size: &'a Int64Array,
    request_headers: Headers<'a>,
    response_headers: Headers<'a>,
}

const HEADERS_TYPE: &str = "List<Struct<name: Utf8, value: Utf8, …>>";

impl<'a> BatchColumns<'a> {
    fn new(batch_index: usize, batch: &'a RecordBatch) -> Result<Self, InventoryError> {
        let column = |name: &'static str| -> Result<&'a ArrayRef, InventoryError> {
            batch
                .column_by_name(name)
                .ok_or(InventoryError::MissingColumn {
                    batch: batch_index,
                    column: name,
                })
        };
        let mistyped =
            |name: &str, found: &DataType, expected: &'static str| InventoryError::ColumnType {
                batch: batch_index,
                column: name.to_owned(),
                found: found.to_string(),
                expected,
            };
        let text = |name: &'static str| -> Result<Text<'a>, InventoryError> {
            let array = column(name)?;
            Text::of(array.as_ref()).ok_or_else(|| mistyped(name, array.data_type(), "Utf8"))
        };
        let int64 = |name: &'static str| -> Result<&'a Int64Array, InventoryError> {
            let array = column(name)?;
            array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| mistyped(name, array.data_type(), "Int64"))
        };
        let status = column(columns::STATUS)?;
        let status = status
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| mistyped(columns::STATUS, status.data_type(), "Int32"))?;
        let start = column(columns::START_TIME)?;
        let start = match start.data_type() {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                start.as_primitive_opt::<TimestampNanosecondType>()
            }
            _ => None,
        }
        .ok_or_else(|| mistyped(columns::START_TIME, start.data_type(), "Timestamp(ns)"))?;
        let headers = |name: &'static str| -> Result<Headers<'a>, InventoryError> {
            let array = column(name)?;
            let list = array
                .as_list_opt::<i32>()
                .ok_or_else(|| mistyped(name, array.data_type(), HEADERS_TYPE))?;
            let entries: &'a StructArray = list
                .values()
                .as_struct_opt()
                .ok_or_else(|| mistyped(name, array.data_type(), HEADERS_TYPE))?;
            let field = |field: &str| -> Result<Text<'a>, InventoryError> {
                let qualified = format!("{name}.{field}");
                let child = entries
                    .column_by_name(field)
                    .ok_or_else(|| mistyped(&qualified, &DataType::Null, "a Utf8 struct field"))?;
                Text::of(child.as_ref())
                    .ok_or_else(|| mistyped(&qualified, child.data_type(), "a Utf8 struct field"))
            };
            Ok(Headers {
                list,
                names: field("name")?,
                values: field("value")?,
            })
        };
        Ok(Self {
            batch: batch_index,
            direction: text(columns::DIRECTION)?,
            authority: text(columns::AUTHORITY)?,
            method: text(columns::METHOD)?,
            path: text(columns::PATH)?,
            status,
            duration: int64(columns::DURATION_NS)?,
            protocol: text(columns::PROTOCOL)?,
            start,
            request_size: int64(columns::REQUEST_BODY_SIZE)?,
            response_size: int64(columns::RESPONSE_BODY_SIZE)?,
            request_headers: headers(columns::REQUEST_HEADERS)?,
            response_headers: headers(columns::RESPONSE_HEADERS)?,
        })
    }

    fn null(&self, row: usize, column: &'static str) -> InventoryError {
        InventoryError::Null {
            batch: self.batch,
            row,
            column,
        }
    }

    fn text(
        &self,
        text: Text<'a>,
        row: usize,
        column: &'static str,
    ) -> Result<&'a str, InventoryError> {
        text.get(row).ok_or_else(|| self.null(row, column))
    }

    fn int<T>(
        &self,
        array: &tapedeck_proto::arrow_array::PrimitiveArray<T>,
        row: usize,
        column: &'static str,
    ) -> Result<T::Native, InventoryError>
    where
        T: tapedeck_proto::arrow_array::ArrowPrimitiveType,
    {
        if row < array.len() && array.is_valid(row) {
            Ok(array.value(row))
        } else {
            Err(self.null(row, column))
        }
    }

    fn row(&self, row: usize) -> Result<Row<'a>, InventoryError> {
        use columns::*;
        let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(Row {
            direction: direction_of(self.text(self.direction, row, DIRECTION)?),
            authority: self.text(self.authority, row, AUTHORITY)?,
            method: self.text(self.method, row, METHOD)?,
            path: self.text(self.path, row, PATH)?,
            status: i64::from(self.int(self.status, row, STATUS)?),
            duration: unsigned(self.int(self.duration, row, DURATION_NS)?),
            protocol: self.text(self.protocol, row, PROTOCOL)?,
            start: unsigned(self.int(self.start, row, START_TIME)?),
            request_size: unsigned(self.int(self.request_size, row, REQUEST_BODY_SIZE)?),
            response_size: unsigned(self.int(self.response_size, row, RESPONSE_BODY_SIZE)?),
            request_type: self.request_headers.media_type(row),
            response_type: self.response_headers.media_type(row),
        })
    }
}

impl Inventory {
    /// The inventory of `service` from record batches with the [`COLUMNS`] (the result of
    /// [`sql`]). Errors name the batch and the missing, mistyped or null column.
    pub fn from_batches(service: &str, batches: &[RecordBatch]) -> Result<Self, InventoryError> {
        let mut builder = InventoryBuilder::new(service);
        for batch in batches {
            builder.add_batch(batch)?;
        }
        Ok(builder.finish())
    }

    /// The inventory of `service` from exchanges; the same as [`Inventory::from_batches`] on
    /// their record batch.
    pub fn from_exchanges<E: Borrow<Exchange>>(service: &str, exchanges: &[E]) -> Self {
        let mut builder = InventoryBuilder::new(service);
        for exchange in exchanges {
            builder.add_exchange(exchange.borrow());
        }
        builder.finish()
    }

    /// Whether no exchange was seen.
    pub fn is_empty(&self) -> bool {
        self.totals.exchanges == 0
    }
}
