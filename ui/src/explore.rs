//! Explore: the list of exchanges (keyset paging by start time, newest first, and the rows that
//! arrived since), one exchange in detail, the exchanges of a trace as a tree, the filtered set
//! as HAR, and the filter's checks and completions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tapedeck_proto::{Direction, Exchange, Header, Message, REDACTED_PREFIX};

use crate::backend::{hex, rows};
use crate::sql::{Filter, now_nanos, quote, timestamp, where_clause};
use crate::{ApiError, Ui, ok};

/// Rows per page unless the page asks for another count.
const PAGE: u64 = 100;
/// The most rows one page or one export may ask for.
const MAX_PAGE: u64 = 1000;
/// The most exchanges one HAR export holds.
const MAX_HAR: u64 = 10_000;
/// The most exchanges of one trace shown.
const MAX_TRACE: u64 = 500;

/// The columns of a list row.
const LIST_COLUMNS: &str = "id, trace_id, start_time, duration_ns, direction, service, workload, \
    protocol, method, authority, path, status, request_body_size, response_body_size, \
    response_flags";

/// Functions the filter box completes besides the columns.
const FUNCTIONS: &[&str] = &[
    "header(request_headers, 'name')",
    "header(response_headers, 'name')",
    "body_text(request_body)",
    "body_text(response_body)",
    "json_get_str(body_text(response_body), 'key')",
    "json_get_int(body_text(response_body), 'key')",
    "json_contains(body_text(response_body), 'key')",
];

pub(crate) async fn info(State(ui): State<Arc<Ui>>) -> Response {
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "source": ui.backend.describe(),
        "snapshots": ui.snapshots.as_ref().map(|d| d.display().to_string()),
        "reports": ui.reports.len(),
        "noise": ui.noise.as_ref().map(|p| p.display().to_string()),
        "traffic": ui.backend.has_traffic(),
    }))
}

pub(crate) async fn columns() -> Response {
    let schema = tapedeck_collector::query::table_schema();
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    ok(json!({ "columns": columns, "functions": FUNCTIONS }))
}

/// The filter's conditions, or a 400 that says what is wrong.
fn conditions(filter: &Filter) -> Result<Vec<String>, ApiError> {
    filter
        .conditions(now_nanos())
        .map_err(|error| ApiError::bad_request(error.to_string()))
}

pub(crate) async fn validate(
    State(ui): State<Arc<Ui>>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let parts = conditions(&filter)?;
    let sql = format!("SELECT id FROM exchanges{} LIMIT 0", where_clause(&parts));
    ui.backend.check(&sql).await?;
    Ok(ok(json!({ "ok": true })))
}

/// `GET /api/exchanges`: the filter, then `before` + `skip` (the cursor of the next page) or
/// `after` (rows newer than the newest shown), and `limit`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<String>,
    skip: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

fn number(name: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{name} {v:?}: expected a number")))
        })
        .transpose()
}

pub(crate) async fn list(
    State(ui): State<Arc<Ui>>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let filter = Filter {
        q: params.q.clone(),
        from: params.from.clone(),
        to: params.to.clone(),
    };
    let now = now_nanos();
    let mut parts = filter
        .conditions(now)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    // The range and cursor alone (no predicate): what the newest-first window is cut from.
    let mut range = Filter {
        q: None,
        ..filter.clone()
    }
    .conditions(now)
    .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let limit = number("limit", params.limit.as_deref())?
        .unwrap_or(PAGE)
        .clamp(1, MAX_PAGE);
    let before = number("before", params.before.as_deref())?;
    let skip = number("skip", params.skip.as_deref())?.unwrap_or(0);
    let after = number("after", params.after.as_deref())?;
    if let Some(before) = before {
        let bound = format!("start_time <= {}", timestamp(before));
        parts.push(bound.clone());
        range.push(bound);
    }
    if let Some(after) = after {
        parts.push(format!("start_time > {}", timestamp(after)));
    }
    let offset = if before.is_some() { skip } else { 0 };
    let began = Instant::now();
    let (batches, sql) = if after.is_some() {
        // Rows newer than the newest shown: the range is already the newest files.
        let sql = list_sql(&parts, limit, offset);
        (ui.backend.query(&sql).await?, sql)
    } else {
        newest_first(&ui, &parts, &range, limit, offset).await?
    };
    let elapsed_ms = began.elapsed().as_secs_f64() * 1000.0;
    let rows = rows(&batches);
    // The cursor: the last row's start time, and how many rows at that very start time were
    // already shown (rows of equal start time are ordered by id, so skipping them is exact).
    let next = (rows.len() as u64 == limit && after.is_none())
        .then(|| rows.last())
        .flatten()
        .and_then(|last| last.get("start_time").and_then(Value::as_str))
        .map(|last| {
            let equal = rows
                .iter()
                .filter(|r| r.get("start_time").and_then(Value::as_str) == Some(last))
                .count() as u64;
            let carried = if before.map(|b| b.to_string()).as_deref() == Some(last) {
                skip
            } else {
                0
            };
            json!({ "before": last, "skip": (carried + equal).to_string() })
        });
    Ok(ok(json!({
        "rows": rows,
        "next": next,
        "elapsed_ms": elapsed_ms,
        "sql": sql,
    })))
}

/// The statement of one list page.
fn list_sql(conditions: &[String], limit: u64, offset: u64) -> String {
    format!(
        "SELECT {LIST_COLUMNS} FROM exchanges{} ORDER BY start_time DESC, id DESC LIMIT {limit} OFFSET {offset}",
        where_clause(conditions)
    )
}

/// The first window a newest-first page is looked for in, before the whole range.
const FIRST_WINDOW_NS: u64 = 3_600 * 1_000_000_000;
/// How much wider each next window is when a window held less than a page.
const WINDOW_GROWTH: u64 = 16;

/// A page of the newest rows (of `conditions`, `offset` rows skipped), looked for in the newest
/// hour of `range` first, then in windows 16 times wider, then in the whole range.
///
/// `ORDER BY start_time DESC LIMIT n` over the whole store is a top-k over every row's start
/// time: on 10 million exchanges it reads every file. The store is partitioned by hour and the
/// collector prunes files by `start_time`, so a window reads only its hours: when the window
/// `start_time >= t` holds `offset + limit` rows, they are exactly the page (every row outside
/// it started before `t`); otherwise the next, wider window is asked. The window starts at the
/// newest start time of the range (`max(start_time)`, one column read), so a store whose
/// traffic stopped days ago is as quick as a live one.
async fn newest_first(
    ui: &Ui,
    conditions: &[String],
    range: &[String],
    limit: u64,
    offset: u64,
) -> Result<(Vec<RecordBatch>, String), ApiError> {
    let bounds = ui
        .backend
        .query(&format!(
            "SELECT CAST(min(start_time) AS BIGINT) AS oldest, CAST(max(start_time) AS BIGINT) AS newest FROM exchanges{}",
            where_clause(range)
        ))
        .await?;
    let bound = |name: &str| {
        rows(&bounds).first().and_then(|row| match row.get(name) {
            Some(Value::String(text)) => text.parse::<u64>().ok(),
            Some(Value::Number(number)) => number.as_u64(),
            _ => None,
        })
    };
    let (Some(oldest), Some(newest)) = (bound("oldest"), bound("newest")) else {
        // Nothing in the range: the plain statement answers that at once.
        let sql = list_sql(conditions, limit, offset);
        return Ok((ui.backend.query(&sql).await?, sql));
    };
    let mut window = FIRST_WINDOW_NS;
    loop {
        let start = newest.saturating_sub(window);
        let whole = start <= oldest;
        let mut bounded = conditions.to_vec();
        if !whole {
            bounded.push(format!("start_time >= {}", timestamp(start)));
        }
        let sql = list_sql(&bounded, limit, offset);
        let batches = ui.backend.query(&sql).await?;
        let count: usize = batches.iter().map(|b| b.num_rows()).sum();
        if whole || count as u64 >= limit {
            return Ok((batches, sql));
        }
        window = window.saturating_mul(WINDOW_GROWTH);
    }
}

/// `GET /api/exchanges/{id}?t=NANOS`: one exchange, every column, with bodies rendered for
/// reading; `t`, its start time, lets the query open only the files of that hour.
#[derive(Debug, Deserialize)]
pub(crate) struct DetailParams {
    t: Option<String>,
}

fn check_hex(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
        || !id.len().is_multiple_of(2)
    {
        return Err(ApiError::bad_request(format!(
            "exchange id {id:?}: expected hex digits"
        )));
    }
    Ok(())
}

pub(crate) async fn detail(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    Query(params): Query<DetailParams>,
) -> Result<Response, ApiError> {
    check_hex(&id)?;
    let mut parts = vec![format!(
        "encode(id, 'hex') = {}",
        quote(&id.to_ascii_lowercase())
    )];
    if let Some(t) = number("t", params.t.as_deref())? {
        parts.push(format!("start_time = {}", timestamp(t)));
    }
    let sql = format!("SELECT * FROM exchanges{} LIMIT 1", where_clause(&parts));
    let batches = ui.backend.query(&sql).await?;
    let exchange = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(tapedeck_proto::arrow::from_record_batch)
        .transpose()
        .map_err(|error| ApiError::internal(format!("reading exchange {id}: {error}")))?
        .and_then(|mut found| found.pop())
        .ok_or_else(|| ApiError::not_found(format!("no exchange with id {id}")))?;
    let service = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| rows(std::slice::from_ref(b)).into_iter().next())
        .and_then(|row| row.get("service").cloned())
        .unwrap_or(Value::Null);
    let mut value = exchange_json(&exchange);
    value["service"] = service;
    Ok(ok(value))
}

/// An exchange as the detail pane shows it.
pub(crate) fn exchange_json(exchange: &Exchange) -> Value {
    let direction = Direction::try_from(exchange.direction).unwrap_or(Direction::Unspecified);
    let protocol = tapedeck_proto::Protocol::try_from(exchange.protocol)
        .unwrap_or(tapedeck_proto::Protocol::Unspecified);
    let empty = Message::default();
    json!({
        "id": hex(&exchange.id),
        "trace_id": exchange.trace_id,
        "start_time": exchange.start_unix_nanos.to_string(),
        "time": tapedeck_har::time::format_exact(exchange.start_unix_nanos),
        "duration_ns": exchange.duration_nanos,
        "response_headers_ns": exchange.response_headers_nanos,
        "direction": direction.as_word(),
        "workload": exchange.workload,
        "namespace": exchange.namespace,
        "pod": exchange.pod,
        "peer_address": exchange.peer_address,
        "upstream_cluster": exchange.upstream_cluster,
        "route_name": exchange.route_name,
        "protocol": protocol.as_word(),
        "scheme": exchange.scheme,
        "authority": exchange.authority,
        "method": exchange.method,
        "path": exchange.path,
        "status": exchange.status,
        "response_flags": exchange.response_flags,
        "response_code_details": exchange.response_code_details,
        "sample_rate": exchange.sample_rate,
        "redactions": exchange.redactions,
        "filter_version": exchange.filter_version,
        "request": message_json(exchange.request.as_ref().unwrap_or(&empty), "request", &exchange.redactions),
        "response": message_json(exchange.response.as_ref().unwrap_or(&empty), "response", &exchange.redactions),
    })
}

fn headers_json(headers: &[Header]) -> Vec<Value> {
    headers
        .iter()
        .map(|h| {
            let value = String::from_utf8_lossy(&h.value);
            json!({
                "name": h.name,
                "value": value,
                "redacted": value.starts_with(REDACTED_PREFIX),
            })
        })
        .collect()
}

fn message_json(message: &Message, which: &str, redactions: &[String]) -> Value {
    let content_type = message
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| String::from_utf8_lossy(&h.value).to_ascii_lowercase())
        .unwrap_or_default();
    let body_redactions: Vec<&String> = redactions
        .iter()
        .filter(|r| r.starts_with(&format!("{which}.body")))
        .collect();
    let mut body = render_body(&message.body, &content_type);
    body["content_type"] = Value::from(content_type);
    body["size"] = Value::from(message.body_size);
    body["captured"] = Value::from(message.body.len());
    body["truncated"] = Value::from(message.body_truncated);
    body["redactions"] = json!(body_redactions);
    json!({
        "headers": headers_json(&message.headers),
        "trailers": headers_json(&message.trailers),
        "body": body,
    })
}

/// A body for reading: `json` (parsed), `text`, `grpc` (length-prefixed messages, each with its
/// protobuf fields), `hex` (a hex dump), or `empty`.
pub(crate) fn render_body(body: &[u8], content_type: &str) -> Value {
    if body.is_empty() {
        return json!({ "kind": "empty" });
    }
    if content_type.starts_with("application/grpc")
        && let Some(frames) = grpc_frames(body)
    {
        return json!({ "kind": "grpc", "frames": frames });
    }
    let text = std::str::from_utf8(body).ok();
    if let Some(text) = text {
        let looks_json = content_type.contains("json")
            || matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
        if looks_json && let Ok(value) = serde_json::from_str::<Value>(text) {
            return json!({ "kind": "json", "json": value });
        }
        let printable = text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
        if printable {
            return json!({ "kind": "text", "text": text });
        }
    }
    json!({ "kind": "hex", "hex": hex_dump(body) })
}

/// `00000000  de ad be ef …  |....|`, 16 bytes a line.
pub(crate) fn hex_dump(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// gRPC's length-prefixed messages: each with its compression flag, bytes, and its protobuf
/// fields when it decodes as protobuf wire format.
fn grpc_frames(body: &[u8]) -> Option<Vec<Value>> {
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 5 {
            return None;
        }
        let compressed = rest[0] == 1;
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let message = rest.get(5..5 + length)?;
        let fields = (!compressed).then(|| protobuf_fields(message)).flatten();
        frames.push(json!({
            "compressed": compressed,
            "length": length,
            "fields": fields,
            "hex": hex_dump(message),
        }));
        rest = &rest[5 + length..];
    }
    Some(frames)
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The top-level fields of a protobuf message (no schema: numbers, wire types and values;
/// length-delimited values as text when they are UTF-8, else hex).
fn protobuf_fields(mut bytes: &[u8]) -> Option<Vec<Value>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (key, used) = varint(bytes)?;
        bytes = &bytes[used..];
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let (wire, value) = match key & 7 {
            0 => {
                let (v, used) = varint(bytes)?;
                bytes = &bytes[used..];
                ("varint", json!(v.to_string()))
            }
            1 => {
                let v = bytes.get(..8)?;
                bytes = &bytes[8..];
                ("fixed64", json!(hex(v)))
            }
            2 => {
                let (len, used) = varint(bytes)?;
                let len = usize::try_from(len).ok()?;
                let v = bytes.get(used..used + len)?;
                bytes = &bytes[used + len..];
                match std::str::from_utf8(v) {
                    Ok(text) if text.chars().all(|c| !c.is_control()) => ("bytes", json!(text)),
                    _ => ("bytes", json!(hex(v))),
                }
            }
            5 => {
                let v = bytes.get(..4)?;
                bytes = &bytes[4..];
                ("fixed32", json!(hex(v)))
            }
            _ => return None,
        };
        fields.push(json!({ "field": number, "wire": wire, "value": value }));
    }
    Some(fields)
}

/// `GET /api/traces/{trace}`: the exchanges of a trace as a tree: each inbound request with the
/// outbound calls it caused under it, and under each call the inbound request it became at the
/// service it reached, when that service is captured too.
pub(crate) async fn trace(
    State(ui): State<Arc<Ui>>,
    Path(trace): Path<String>,
) -> Result<Response, ApiError> {
    if trace.is_empty() || trace.len() > 128 {
        return Err(ApiError::bad_request(
            "trace id: expected 1 to 128 characters",
        ));
    }
    let sql = format!(
        "SELECT id, start_time, duration_ns, direction, workload, authority, method, path, status \
         FROM exchanges WHERE trace_id = {} ORDER BY start_time, id LIMIT {MAX_TRACE}",
        quote(&trace)
    );
    let rows = rows(&ui.backend.query(&sql).await?);
    Ok(ok(json!({ "trace_id": trace, "roots": trace_tree(rows) })))
}

fn int_of(row: &Map<String, Value>, key: &str) -> u128 {
    match row.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().map_or(0, u128::from),
        _ => 0,
    }
}

fn str_of<'a>(row: &'a Map<String, Value>, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The host an authority names, without port: `payments.shop.svc:8080` → `payments.shop.svc`.
pub(crate) fn host_of(authority: &str) -> &str {
    authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host)
}

/// Whether a call to `authority` reaches the workload `workload` (its host's first label is the
/// workload's name: `payments`, `payments.shop`, `payments.shop.svc.cluster.local`).
pub(crate) fn reaches(authority: &str, workload: &str) -> bool {
    let host = host_of(authority);
    !workload.is_empty() && (host == workload || host.split('.').next() == Some(workload))
}

/// Rows of one trace (sorted by start time) → a forest. An outbound call's parent is the latest
/// inbound request of its workload that started before it and had not ended; an inbound
/// request's parent is the latest outbound call to its workload that contains it in time.
fn trace_tree(rows: Vec<Map<String, Value>>) -> Vec<Value> {
    let n = rows.len();
    let spans: Vec<(u128, u128)> = rows
        .iter()
        .map(|r| {
            let start = int_of(r, "start_time");
            (start, start + int_of(r, "duration_ns"))
        })
        .collect();
    let contains = |outer: usize, inner: usize| {
        spans[outer].0 <= spans[inner].0 && spans[inner].1 <= spans[outer].1.max(spans[outer].0)
    };
    let parent: Vec<Option<usize>> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let direction = str_of(row, "direction");
            let workload = str_of(row, "workload");
            (0..n).rev().find(|&j| {
                j != i
                    && spans[j].0 <= spans[i].0
                    && if direction == "outbound" {
                        str_of(&rows[j], "direction") == "inbound"
                            && str_of(&rows[j], "workload") == workload
                            && contains(j, i)
                    } else {
                        str_of(&rows[j], "direction") == "outbound"
                            && reaches(str_of(&rows[j], "authority"), workload)
                            && contains(j, i)
                    }
            })
        })
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children.entry(*p).or_default().push(i),
            None => roots.push(i),
        }
    }
    fn build(
        i: usize,
        rows: &[Map<String, Value>],
        children: &HashMap<usize, Vec<usize>>,
    ) -> Value {
        let mut node = Value::Object(rows[i].clone());
        node["children"] = Value::Array(
            children
                .get(&i)
                .map(|c| c.iter().map(|&k| build(k, rows, children)).collect())
                .unwrap_or_default(),
        );
        node
    }
    roots.iter().map(|&i| build(i, &rows, &children)).collect()
}

/// `GET /api/har?q=…&from=…&to=…`: the filtered exchanges (oldest first, at most 10 000) as a
/// HAR 1.2 file, written by `tapedeck-har` as `tapedeck export har` writes it.
pub(crate) async fn har(
    State(ui): State<Arc<Ui>>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let parts = conditions(&filter)?;
    let sql = format!(
        "SELECT * FROM exchanges{} ORDER BY start_time, id LIMIT {MAX_HAR}",
        where_clause(&parts)
    );
    let batches = ui.backend.query(&sql).await?;
    let mut exchanges = Vec::new();
    for batch in &batches {
        exchanges.extend(
            tapedeck_proto::arrow::from_record_batch(batch)
                .map_err(|error| ApiError::internal(format!("reading exchanges: {error}")))?,
        );
    }
    let har =
        tapedeck_har::from_exchanges(&exchanges, concat!("tapedeck ", env!("CARGO_PKG_VERSION")));
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tapedeck.har\"",
            ),
        ],
        tapedeck_har::to_json(&har),
    )
        .into_response())
}

/// `GET /api/services`: the services (partitions) in the store, for the snapshot form.
pub(crate) async fn services(State(ui): State<Arc<Ui>>) -> Result<Response, ApiError> {
    let rows = rows(
        &ui.backend
            .query("SELECT DISTINCT service FROM exchanges ORDER BY service")
            .await?,
    );
    let services: Vec<&str> = rows.iter().map(|r| str_of(r, "service")).collect();
    Ok(ok(json!({ "services": services })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        start: u64,
        duration: u64,
        direction: &str,
        workload: &str,
        authority: &str,
    ) -> Map<String, Value> {
        let Value::Object(map) = json!({
            "id": format!("{start}"),
            "start_time": start.to_string(),
            "duration_ns": duration,
            "direction": direction,
            "workload": workload,
            "authority": authority,
        }) else {
            unreachable!("an object")
        };
        map
    }

    #[test]
    fn a_trace_nests_calls_under_the_request_that_caused_them() {
        let roots = trace_tree(vec![
            row(100, 100, "inbound", "orders", "orders:8080"),
            row(120, 50, "outbound", "orders", "payments.shop.svc:8080"),
            row(125, 40, "inbound", "payments", "payments.shop.svc:8080"),
            row(130, 10, "outbound", "payments", "bank.example.com"),
        ]);
        assert_eq!(roots.len(), 1);
        let call = &roots[0]["children"][0];
        assert_eq!(call["authority"], "payments.shop.svc:8080");
        let inbound = &call["children"][0];
        assert_eq!(inbound["workload"], "payments");
        assert_eq!(inbound["children"][0]["authority"], "bank.example.com");
    }

    #[test]
    fn bodies_render_by_content_type() {
        assert_eq!(
            render_body(b"{\"a\":1}", "application/json")["kind"],
            "json"
        );
        assert_eq!(render_body(b"hello", "text/plain")["kind"], "text");
        let binary = render_body(&[0, 1, 2, 0xff], "application/octet-stream");
        assert_eq!(binary["kind"], "hex");
        assert!(
            binary["hex"]
                .as_str()
                .is_some_and(|h| h.starts_with("00000000  00 01 02 ff"))
        );
        // One gRPC message: field 1 = "hi".
        let grpc = render_body(&[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i'], "application/grpc");
        assert_eq!(grpc["kind"], "grpc");
        assert_eq!(grpc["frames"][0]["fields"][0]["value"], "hi");
    }
}
