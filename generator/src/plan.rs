//! The replay plan: what each recorded inbound request needs at replay time, worked out once
//! from the snapshot before the first request is sent.
//!
//! For each line of `inbound.jsonl`: the request as recorded, which earlier lines are the
//! sources of values it carries (decided by `tapedeck_analyzer::tokens::correlation_sources`,
//! the discovery join's own rules), which of its response's values later lines need, which
//! rules re-sign or re-date its values, and which redaction markers it carries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;

use tapedeck_analyzer::replay::edit::{LiveMessage, values_at};
use tapedeck_analyzer::snapshot::{Entry, HeaderEntry, HeaderValue, MessageEntry, Snapshot};
use tapedeck_analyzer::template::endpoint;
use tapedeck_analyzer::tokens::{
    Flow, Location, Occurrence, ReplayAction, Side, TokenKind, correlation_sources, extract,
};
use tapedeck_proto::{Direction, REDACTED_PREFIX};

use crate::{Error, Result};

/// The protocol a recorded request is replayed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (also HTTP/1.0 recordings and unknown ones).
    Http1,
    /// HTTP/2 (prior knowledge on `http://`, ALPN on `https://`).
    Http2,
    /// gRPC: HTTP/2 with the recorded length-prefixed framing, trailers read.
    Grpc,
}

/// A value at a location of the request whose recorded source is an earlier line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// Where the request carries it.
    pub at: Location,
    /// The recorded value.
    pub value: String,
    /// The 0-based index of the source line.
    pub source: usize,
}

/// One redaction marker a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Where it is.
    pub at: Location,
    /// The marker (`tapedeck-redacted:…`).
    pub marker: String,
}

/// What replay does for one recorded inbound request.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The 1-based line of `inbound.jsonl`.
    pub line: u32,
    /// Nanoseconds from the window start to the recorded request's start.
    pub offset_ns: u64,
    /// The recorded latency.
    pub recorded_ns: u64,
    /// `METHOD /template`.
    pub endpoint: String,
    /// The recorded authority (matched against `--target HOST=URL`).
    pub authority: String,
    /// The protocol to send with.
    pub protocol: Protocol,
    /// The request method.
    pub method: String,
    /// The path with its query, as recorded.
    pub path: String,
    /// The recorded request (headers as recorded but transport and tracing ones, body bytes).
    pub request: LiveMessage,
    /// The recorded status.
    pub status: u16,
    /// The recorded response.
    pub response: LiveMessage,
    /// The recorded response's trailers (gRPC status).
    pub response_trailers: Vec<(String, Vec<u8>)>,
    /// Values whose source is an earlier line, substituted from the live responses.
    pub uses: Vec<Use>,
    /// The distinct source lines, ascending.
    pub sources: Vec<usize>,
    /// Locations of this line's response whose live values later lines use.
    pub captures: Vec<Location>,
    /// Markers in the request, except those a substitution replaces.
    pub markers: Vec<Marker>,
}

/// A rule applied to requests at replay time.
#[derive(Debug, Clone)]
pub struct RequestRule {
    /// The rule's name.
    pub name: String,
    /// Where (an inbound request location).
    pub at: Location,
}

/// The whole plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The snapshot id.
    pub snapshot_id: String,
    /// The window start and end, nanoseconds since the epoch.
    pub window: (u64, u64),
    /// Every inbound line, in file order.
    pub lines: Vec<Planned>,
    /// `jwt` rules with `resign` at inbound requests.
    pub resign: Vec<RequestRule>,
    /// `timestamp` rules with `shift` at inbound requests.
    pub shift: Vec<RequestRule>,
    /// Locations of inbound responses covered by a token rule (left out of diffs).
    pub response_rule_locations: Vec<Location>,
    /// The smallest capture sample rate of the inbound lines (1 when not sampled).
    pub sample_rate: f64,
    /// The recording's length: from the window start to the last request's start.
    pub span_ns: u64,
}

impl Plan {
    /// The range of Unix seconds a value must lie in to be shifted as a timestamp.
    pub fn plausible(&self) -> RangeInclusive<i64> {
        tapedeck_analyzer::replay::shift::plausible_range(self.window.0, self.window.1)
    }
}

fn headers(entries: &[HeaderEntry]) -> Vec<(String, Vec<u8>)> {
    entries
        .iter()
        .map(|HeaderEntry(name, value)| {
            let bytes = match value {
                HeaderValue::Text(text) => text.as_bytes().to_vec(),
                HeaderValue::Binary(bytes) => bytes.base64.clone(),
            };
            (name.clone(), bytes)
        })
        .collect()
}

fn message(entry: &MessageEntry) -> LiveMessage {
    LiveMessage {
        headers: headers(&entry.headers),
        body: entry
            .body
            .as_ref()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

fn protocol(entry: &Entry) -> Protocol {
    match entry.protocol.as_str() {
        "gRPC" => Protocol::Grpc,
        "HTTP/2" | "HTTP/3" => Protocol::Http2,
        _ => Protocol::Http1,
    }
}

/// Works out the plan of a snapshot.
pub fn plan(snapshot: &Snapshot) -> Result<Plan> {
    let manifest = &snapshot.manifest;
    let window = (manifest.window.from.0, manifest.window.to.0);
    let exchanges = snapshot
        .inbound
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .to_exchange(Direction::Inbound, window.0)
                .map_err(|message| Error::Snapshot(format!("inbound.jsonl:{}: {message}", i + 1)))
        })
        .collect::<Result<Vec<_>>>()?;

    // Substitute rules: (source location) → the locations its values are used at.
    let mut substitute: Vec<(&Location, &[Location])> = Vec::new();
    let mut resign = Vec::new();
    let mut shift = Vec::new();
    let mut response_rule_locations = Vec::new();
    for rule in &manifest.tokens {
        for location in std::iter::once(&rule.at).chain(&rule.to) {
            if location.direction == Flow::Inbound && location.message == Side::Response {
                response_rule_locations.push(location.clone());
            }
        }
        let inbound_request =
            rule.at.direction == Flow::Inbound && rule.at.message == Side::Request;
        match (rule.kind, rule.replay) {
            (TokenKind::Correlation, ReplayAction::Substitute)
                if rule.at.direction == Flow::Inbound =>
            {
                substitute.push((&rule.at, &rule.to));
            }
            (TokenKind::Jwt, ReplayAction::Resign) if inbound_request => resign.push(RequestRule {
                name: rule.name.clone(),
                at: rule.at.clone(),
            }),
            (TokenKind::Timestamp, ReplayAction::Shift) if inbound_request => {
                shift.push(RequestRule {
                    name: rule.name.clone(),
                    at: rule.at.clone(),
                })
            }
            _ => {}
        }
    }

    let mut uses: Vec<Vec<Use>> = vec![Vec::new(); exchanges.len()];
    let mut captures: Vec<BTreeSet<Location>> = vec![BTreeSet::new(); exchanges.len()];
    for sourced in correlation_sources(&exchanges, Flow::Inbound, window) {
        let ruled = substitute
            .iter()
            .any(|(at, to)| **at == sourced.source_at && to.contains(&sourced.at));
        if !ruled {
            continue;
        }
        captures[sourced.source].insert(sourced.source_at.clone());
        uses[sourced.index].push(Use {
            at: sourced.at,
            value: sourced.value,
            source: sourced.source,
        });
    }

    let mut lines = Vec::with_capacity(exchanges.len());
    let mut sample_rate: f64 = 1.0;
    for (i, (entry, exchange)) in snapshot.inbound.iter().zip(&exchanges).enumerate() {
        if entry.capture.sample_rate > 0.0 {
            sample_rate = sample_rate.min(entry.capture.sample_rate);
        }
        let endpoint = endpoint(&entry.method, &entry.path);
        let line_uses = std::mem::take(&mut uses[i]);
        let substituted: BTreeSet<&str> = line_uses.iter().map(|u| u.value.as_str()).collect();
        let mut markers = Vec::new();
        extract(exchange, &mut |o: Occurrence<'_>| {
            if o.side == Side::Request
                && o.value.starts_with(REDACTED_PREFIX)
                && !substituted.contains(&*o.value)
            {
                markers.push(Marker {
                    at: tapedeck_analyzer::tokens::location_of(Flow::Inbound, &o, &endpoint),
                    marker: o.value.into_owned(),
                });
            }
        });
        let mut sources: Vec<usize> = line_uses.iter().map(|u| u.source).collect();
        sources.sort_unstable();
        sources.dedup();
        lines.push(Planned {
            line: (i + 1) as u32,
            offset_ns: entry.offset_ns,
            recorded_ns: entry.duration_ns,
            endpoint,
            authority: entry.authority.clone(),
            protocol: protocol(entry),
            method: entry.method.clone(),
            path: entry.path.clone(),
            request: {
                // Transport and tracing headers are never replayed: dropped once, here.
                let mut request = message(&entry.request);
                request
                    .headers
                    .retain(|(name, _)| !crate::live::dropped_header(name));
                request
            },
            status: u16::try_from(entry.status).unwrap_or(0),
            response: message(&entry.response),
            response_trailers: headers(&entry.response.trailers),
            uses: line_uses,
            sources,
            captures: std::mem::take(&mut captures[i]).into_iter().collect(),
            markers,
        });
    }
    let span_ns = snapshot
        .inbound
        .last()
        .map(|e| e.offset_ns)
        .unwrap_or(0)
        .max(1);
    Ok(Plan {
        snapshot_id: manifest.id.clone(),
        window,
        lines,
        resign,
        shift,
        response_rule_locations,
        sample_rate,
        span_ns,
    })
}

/// The recorded values at each capture location of a line's response, for pairing with the live
/// ones.
pub fn recorded_captures(line: &Planned) -> Vec<Vec<String>> {
    line.captures
        .iter()
        .map(|at| {
            values_at(at, &line.method, &line.path, &line.response)
                .into_iter()
                .map(|(v, _)| v)
                .collect()
        })
        .collect()
}

/// Markers the plan cannot resolve: not replaced by a substitution and not in `secrets`, by
/// endpoint and location.
pub fn unresolved_markers(
    plan: &Plan,
    secrets: &HashMap<String, String>,
) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in &plan.lines {
        for marker in &line.markers {
            if !secrets.contains_key(&marker.marker) {
                *out.entry((line.endpoint.clone(), marker.at.describe()))
                    .or_insert(0) += 1;
            }
        }
    }
    out
}
