//! The explain log: one JSON line per decision, and `tapedeck respond explain LOG`'s summary.
//!
//! The first line describes the run (`{"event": "start", …}`); every request then gets one
//! `{"event": "request", …}` line (see docs/responder.md for the fields). Lines are queued to a
//! writer task; when it falls behind, lines are dropped and counted
//! (`tapedeck_responder_explain_dropped_total`), never the requests slowed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::chaos::Fired;
use crate::matcher::{Candidate, Difference, Session, Wildcard};
use crate::metrics::{Metrics, inc};

/// Lines queued before new ones are dropped.
pub const QUEUE: usize = 65_536;

/// The request part of a line.
#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    /// The method.
    pub method: String,
    /// `Host` / `:authority`.
    pub authority: String,
    /// Path with query.
    pub path: String,
    /// `METHOD /template`.
    pub endpoint: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub version: String,
    /// gRPC by content type.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grpc: bool,
}

/// What was served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Served {
    /// The status sent (absent for a reset or a hang).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `grpc-status` sent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// The stream was reset (status 0 recorded, or a fault).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    /// The recorded body was truncated; its prefix was served.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Body bytes served.
    pub body_bytes: usize,
    /// Values substituted from the request.
    #[serde(skip_serializing_if = "is_zero")]
    pub substituted: usize,
    /// Timestamps shifted.
    #[serde(skip_serializing_if = "is_zero")]
    pub shifted: usize,
    /// JWTs re-signed.
    #[serde(skip_serializing_if = "is_zero")]
    pub resigned: usize,
    /// Recorded latency applied before the headers, ms.
    #[serde(skip_serializing_if = "is_zero_f")]
    pub latency_ms: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

/// One decision.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Always `request`.
    pub event: &'static str,
    /// The request's number (arrival order, from 0).
    pub seq: u64,
    /// Unix time in ms when the request arrived.
    pub unix_ms: u64,
    /// The request.
    pub request: RequestInfo,
    /// The session.
    pub session: Session,
    /// The recorded host reached, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `matched`, `miss` or `passthrough`.
    pub decision: &'static str,
    /// For `matched`: `exact` or `fallback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// For misses: `unknown_host`, `unknown_endpoint`, `no_match`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The recording served: `<snapshot id>/<line>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// Its score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Place in the session's sequence and its length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<[u64; 2]>,
    /// The inbound line the candidates were narrowed to (generator traceparent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<u32>,
    /// The served recording's fields that differed (fallback).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differing: Vec<Difference>,
    /// The served recording's fields not compared byte for byte, and the rule that said so.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wildcards: Vec<Wildcard>,
    /// What the served recording's comparison could not do as asked (a gRPC message compared
    /// bytewise although `--descriptors` were given, and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Other recordings that matched (the rest of the sequence), or the closest candidates on
    /// a miss.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Recordings of the same sequence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<String>,
    /// Faults injected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fired>,
    /// What was served.
    pub served: Served,
}

/// The explain log writer: a queue and a task writing to the file.
#[derive(Debug, Clone)]
pub struct Explain {
    tx: Option<mpsc::Sender<String>>,
    metrics: Arc<Metrics>,
}

impl Explain {
    /// No log.
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Explain { tx: None, metrics }
    }

    /// Opens (truncates) the log and starts its writer; the task ends when every sender is
    /// dropped, after flushing.
    pub fn open(
        path: &Path,
        start: &serde_json::Value,
        metrics: Arc<Metrics>,
    ) -> crate::Result<(Self, tokio::task::JoinHandle<()>)> {
        let io = |source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = BufWriter::new(file);
        writeln!(out, "{start}").map_err(io)?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let path: PathBuf = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            while let Some(line) = rx.blocking_recv() {
                // The empty line is `finish`'s request to flush and end.
                if line.is_empty() {
                    break;
                }
                let mut result = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"));
                if result.is_ok() && rx.is_empty() {
                    result = out.flush();
                }
                if let Err(error) = result {
                    tracing::error!(%error, path = %path.display(), "Cannot write the explain log.");
                    return;
                }
            }
            let _ = out.flush();
        });
        Ok((
            Explain {
                tx: Some(tx),
                metrics,
            },
            task,
        ))
    }

    /// Whether lines are written at all (so callers can skip building them).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a line.
    pub fn write(&self, line: &Line) {
        let Some(tx) = &self.tx else { return };
        match serde_json::to_string(line) {
            Ok(text) => {
                if tx.try_send(text).is_err() {
                    inc(&self.metrics.explain_dropped);
                }
            }
            Err(error) => tracing::error!(%error, "Cannot serialise an explain line."),
        }
    }

    /// Asks the writer to flush and end (lines queued after this are dropped and counted).
    pub async fn finish(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(String::new()).await;
        }
    }
}

/// Summarises an explain log: decisions by kind, misses by endpoint and by the fields that
/// differed in their closest candidate, faults by kind.
pub fn summarise_file(path: &Path) -> crate::Result<String> {
    let file = std::fs::File::open(path).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| crate::Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) => lines.push(value),
            Err(error) => {
                return Err(crate::Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {}: {error}", i + 1),
                    ),
                });
            }
        }
    }
    Ok(summarise(&lines))
}

/// The summary of parsed explain lines.
pub fn summarise(lines: &[serde_json::Value]) -> String {
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
    let mut misses: BTreeMap<(String, String), (u64, BTreeMap<String, u64>)> = BTreeMap::new();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut requests = 0;
    for line in lines.iter().filter(|l| text(l, "event") == "request") {
        requests += 1;
        let decision = text(line, "decision");
        let label = match line.get("kind").and_then(serde_json::Value::as_str) {
            Some(kind) => format!("{decision} ({kind})"),
            None => match line.get("reason").and_then(serde_json::Value::as_str) {
                Some(reason) => format!("{decision} ({reason})"),
                None => decision.clone(),
            },
        };
        *decisions.entry(label).or_default() += 1;
        if decision == "miss" || decision == "passthrough" {
            let request = line.get("request").cloned().unwrap_or_default();
            // By the recorded host when the request reached one (aliases together).
            let host = match line.get("host").and_then(serde_json::Value::as_str) {
                Some(host) => host.to_owned(),
                None => text(&request, "authority"),
            };
            let key = (host, text(&request, "endpoint"));
            let entry = misses.entry(key).or_default();
            entry.0 += 1;
            let best = line
                .get("candidates")
                .and_then(serde_json::Value::as_array)
                .and_then(|c| c.first());
            match best
                .and_then(|b| b.get("differing"))
                .and_then(serde_json::Value::as_array)
            {
                Some(differing) => {
                    for d in differing {
                        *entry.1.entry(text(d, "field")).or_default() += 1;
                    }
                }
                None => *entry.1.entry("(no candidate)".to_owned()).or_default() += 1,
            }
        }
        for fault in line
            .get("faults")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = fault
                .get("fault")
                .map(|f| text(f, "kind"))
                .unwrap_or_default();
            *faults.entry(kind).or_default() += 1;
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{requests} requests");
    let _ = writeln!(out, "\ndecisions:");
    for (label, n) in &decisions {
        let _ = writeln!(out, "  {n:>8}  {label}");
    }
    if !misses.is_empty() {
        let _ = writeln!(
            out,
            "\nmisses by host and endpoint (fields that differed in the closest candidate):"
        );
        let mut rows: Vec<_> = misses.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        for ((authority, endpoint), (n, fields)) in rows {
            let _ = writeln!(out, "  {n:>8}  {authority} {endpoint}");
            let mut fields: Vec<_> = fields.into_iter().collect();
            fields.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (field, count) in fields {
                let _ = writeln!(out, "  {count:>18}  {field}");
            }
        }
    }
    if !faults.is_empty() {
        let _ = writeln!(out, "\nfaults injected:");
        for (kind, n) in &faults {
            let _ = writeln!(out, "  {n:>8}  {kind}");
        }
    }
    out
}
