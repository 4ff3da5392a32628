//! The service map of the filtered traffic: services and external hosts as nodes, calls as
//! edges with their rate, error share and p99 latency. One aggregate query; the page draws it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::backend::rows;
use crate::explore::{host_of, reaches};
use crate::sql::{Filter, now_nanos, where_clause};
use crate::{ApiError, Ui, ok};

/// The caller of inbound requests no captured service made.
pub(crate) const CLIENTS: &str = "(clients)";

#[derive(Debug, Default)]
struct Edge {
    calls: u64,
    errors: u64,
    p99_ns: f64,
    first: u128,
    last: u128,
}

pub(crate) async fn map(
    State(ui): State<Arc<Ui>>,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let now = now_nanos();
    let parts = filter
        .conditions(now)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let (from, to) = filter
        .range(now)
        .map_err(|error| ApiError::bad_request(error.to_string()))?;
    let sql = format!(
        "SELECT direction, workload, authority, count(*) AS calls, \
         sum(CASE WHEN status >= 500 OR status = 0 THEN 1 ELSE 0 END) AS errors, \
         approx_percentile_cont(duration_ns, 0.99) AS p99_ns, \
         min(start_time) AS first, max(start_time) AS last \
         FROM exchanges{} GROUP BY direction, workload, authority",
        where_clause(&parts)
    );
    let rows = rows(&ui.backend.query(&sql).await?);
    let text = |row: &serde_json::Map<String, Value>, key: &str| {
        row.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let number = |row: &serde_json::Map<String, Value>, key: &str| -> f64 {
        match row.get(key) {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            Some(Value::String(s)) => s.parse().unwrap_or(0.0),
            _ => 0.0,
        }
    };
    let workloads: BTreeSet<String> = rows.iter().map(|r| text(r, "workload")).collect();
    // Outbound calls name their destination; an inbound request is drawn from (clients) only
    // when no captured service's outbound calls already reach that workload.
    let mut edges: BTreeMap<(String, String), Edge> = BTreeMap::new();
    let mut reached: BTreeSet<String> = BTreeSet::new();
    for row in rows.iter().filter(|r| text(r, "direction") == "outbound") {
        let authority = text(row, "authority");
        let target = workloads
            .iter()
            .find(|w| reaches(&authority, w))
            .cloned()
            .unwrap_or_else(|| host_of(&authority).to_owned());
        reached.insert(target.clone());
        add(
            edges.entry((text(row, "workload"), target)).or_default(),
            row,
            &number,
        );
    }
    for row in rows.iter().filter(|r| text(r, "direction") != "outbound") {
        let workload = text(row, "workload");
        if !reached.contains(&workload) {
            add(
                edges.entry((CLIENTS.to_owned(), workload)).or_default(),
                row,
                &number,
            );
        }
    }
    let mut nodes: BTreeMap<String, &str> = BTreeMap::new();
    for (source, target) in edges.keys() {
        for name in [source, target] {
            let kind = if name == CLIENTS {
                "clients"
            } else if workloads.contains(name) {
                "service"
            } else {
                "host"
            };
            nodes.insert(name.clone(), kind);
        }
    }
    let edges: Vec<Value> = edges
        .into_iter()
        .map(|((source, target), edge)| {
            // The rate over the filter's range when it has both ends, else over the span of
            // the calls themselves (at least a second).
            let span_ns = match (from, to) {
                (Some(from), Some(to)) if to > from => u128::from(to - from),
                _ => edge.last.saturating_sub(edge.first).max(1_000_000_000),
            };
            json!({
                "source": source,
                "target": target,
                "calls": edge.calls,
                "rate_per_s": edge.calls as f64 / (span_ns as f64 / 1e9),
                "error_share": if edge.calls == 0 { 0.0 } else { edge.errors as f64 / edge.calls as f64 },
                "p99_ms": edge.p99_ns / 1e6,
            })
        })
        .collect();
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|(name, kind)| json!({ "id": name, "kind": kind }))
        .collect();
    Ok(ok(json!({ "nodes": nodes, "edges": edges })))
}

fn add(
    edge: &mut Edge,
    row: &serde_json::Map<String, Value>,
    number: &dyn Fn(&serde_json::Map<String, Value>, &str) -> f64,
) {
    let calls = number(row, "calls") as u64;
    let first = number(row, "first") as u128;
    let last = number(row, "last") as u128;
    // Several groups can fold into one edge (one workload calling several authorities of one
    // host); the p99 kept is the largest, an upper bound of the merged one.
    edge.p99_ns = edge.p99_ns.max(number(row, "p99_ns"));
    edge.first = if edge.calls == 0 {
        first
    } else {
        edge.first.min(first)
    };
    edge.last = edge.last.max(last);
    edge.calls += calls;
    edge.errors += number(row, "errors") as u64;
}
