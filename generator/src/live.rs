//! Tokens at replay time: per-session correlation maps, waits for sources, and the request
//! actually sent, built from the recorded one in the order substitute → resign → shift →
//! secrets → regenerated transport and tracing headers.
//!
//! A session is one copy of the recorded stream in one iteration: it has its own map from
//! recorded value to live value, its own sources, and its own cache of re-signed tokens, so
//! copies never see each other's logins.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tapedeck_analyzer::replay::edit::{LiveMessage, ValueType, applies, rewrite_at, values_at};
use tapedeck_analyzer::replay::jwt::{JwtKey, resign};
use tapedeck_analyzer::replay::shift::shift_if_timestamp;
use tapedeck_analyzer::replay::trace::ReplayTrace;
use tapedeck_analyzer::tokens::Location;
use tokio::sync::Notify;

use crate::plan::{Plan, Planned};

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// Headers never replayed: hop-by-hop and transport headers (recomputed by the client),
/// tracing and mesh headers (regenerated), and HTTP/2 pseudo-headers.
const DROPPED_HEADERS: &[&str] = &[
    "b3",
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "x-ot-span-context",
    "x-request-id",
];

/// Header name prefixes dropped the same way (mesh and tracing).
const DROPPED_PREFIXES: &[&str] = &[":", "x-b3-", "x-envoy-", "x-forwarded-", "x-datadog-"];

/// Whether a recorded request header is left out of the live request.
pub fn dropped_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    DROPPED_HEADERS.contains(&lower.as_str())
        || DROPPED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// What every request of a run shares.
#[derive(Debug)]
pub struct Context {
    /// The signing key, when given.
    pub jwt_key: Option<JwtKey>,
    /// `--jwt-claim` overrides.
    pub jwt_claims: Vec<(String, serde_json::Value)>,
    /// `--secrets`.
    pub secrets: HashMap<String, String>,
    /// The plausible timestamp range.
    pub plausible: RangeInclusive<i64>,
    /// The run's offset (replay start − window start), nanoseconds.
    pub offset_ns: i64,
    /// Nanoseconds one iteration adds to the offset.
    pub iteration_ns: i64,
    span_ids: AtomicU64,
}

impl Context {
    /// A context.
    pub fn new(
        plan: &Plan,
        jwt_key: Option<JwtKey>,
        jwt_claims: Vec<(String, serde_json::Value)>,
        secrets: HashMap<String, String>,
        offset_ns: i64,
        iteration_ns: i64,
    ) -> Self {
        Self {
            jwt_key,
            jwt_claims,
            secrets,
            plausible: plan.plausible(),
            offset_ns,
            iteration_ns,
            span_ids: AtomicU64::new(offset_ns as u64 ^ 0x5eed_7a9e_d00d_f00d),
        }
    }

    /// The offset of one iteration.
    pub fn offset_of(&self, iteration: u32) -> i64 {
        self.offset_ns
            .saturating_add(self.iteration_ns.saturating_mul(i64::from(iteration)))
    }

    /// A fresh pseudo-random 64-bit number (SplitMix64 over a counter).
    fn random(&self) -> u64 {
        let mut z = self
            .span_ids
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// One copy of the recorded stream in one iteration.
#[derive(Debug)]
pub struct Session {
    /// The copy (0-based).
    pub copy: u32,
    /// The iteration (0-based).
    pub iteration: u32,
    /// Recorded value → live value.
    map: Mutex<HashMap<String, String>>,
    /// Each line's state: pending, done (its captures are in the map) or failed.
    status: Vec<AtomicU8>,
    changed: Notify,
    /// Re-signed tokens: recorded → signed (per copy and iteration, as the session is).
    signed: Mutex<HashMap<String, String>>,
}

impl Session {
    fn new(copy: u32, iteration: u32, lines: usize) -> Self {
        Self {
            copy,
            iteration,
            map: Mutex::new(HashMap::new()),
            status: (0..lines).map(|_| AtomicU8::new(PENDING)).collect(),
            changed: Notify::new(),
            signed: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until every line in `sources` is done or failed; returns whether any failed.
    pub async fn wait_for(&self, sources: &[usize]) -> bool {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut pending = false;
            let mut failed = false;
            for &s in sources {
                match self.status[s].load(Ordering::Acquire) {
                    PENDING => pending = true,
                    FAILED => failed = true,
                    _ => {}
                }
            }
            if !pending {
                return failed;
            }
            notified.await;
        }
    }

    /// Whether every line in `sources` is already settled.
    pub fn ready(&self, sources: &[usize]) -> bool {
        sources
            .iter()
            .all(|&s| self.status[s].load(Ordering::Acquire) != PENDING)
    }

    /// Marks a line failed (its response did not come, or lacked a value later lines need).
    pub fn fail(&self, index: usize) {
        self.status[index].store(FAILED, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Takes the live values at a line's capture locations from its live response, pairs them
    /// with the recorded ones (in order) and marks the line done; failed when a value is missing.
    pub fn capture(
        &self,
        line: &Planned,
        recorded: &[Vec<String>],
        live_path: &str,
        live: &LiveMessage,
    ) -> bool {
        let mut complete = true;
        {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            for (at, recorded) in line.captures.iter().zip(recorded) {
                let at = unscoped(at);
                let values = values_at(&at, &line.method, live_path, live);
                if values.len() < recorded.len() {
                    complete = false;
                }
                for (recorded, (value, _)) in recorded.iter().zip(values) {
                    map.insert(recorded.clone(), value);
                }
            }
        }
        let index = (line.line - 1) as usize;
        self.status[index].store(if complete { DONE } else { FAILED }, Ordering::Release);
        self.changed.notify_waiters();
        complete
    }
}

/// All sessions of a run, made on first use.
#[derive(Debug, Default)]
pub struct Sessions {
    lines: usize,
    sessions: Mutex<HashMap<(u32, u32), Arc<Session>>>,
}

impl Sessions {
    /// Sessions for a plan of `lines` lines.
    pub fn new(lines: usize) -> Self {
        Self {
            lines,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The session of a copy and iteration.
    pub fn get(&self, copy: u32, iteration: u32) -> Arc<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .entry((copy, iteration))
            .or_insert_with(|| Arc::new(Session::new(copy, iteration, self.lines)))
            .clone()
    }

    /// Forgets the sessions of an iteration that has ended (all its requests settled).
    pub fn drop_iteration(&self, iteration: u32) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|(_, i), _| *i != iteration);
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct LiveRequest {
    /// The method.
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Headers (recorded ones with tokens replaced, tracing regenerated) and body.
    pub message: LiveMessage,
    /// The trace the request carries.
    pub trace: ReplayTrace,
    /// Tokens a `resign` rule covers that were sent as recorded because no `--jwt-key` was
    /// given, by rule name.
    pub resign_without_key: Vec<String>,
    /// Markers sent as recorded (no secret for them), by location.
    pub unresolved: Vec<String>,
    /// Values substituted.
    pub substituted: usize,
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSource {
    /// The 1-based line of the source whose live value is missing.
    pub source_line: u32,
}

/// A location with its endpoint scope removed: applicability is decided once from the recorded
/// request line, so that a live id that does not look like one cannot unscope a rule.
fn unscoped(location: &Location) -> Location {
    Location {
        endpoint: None,
        ..location.clone()
    }
}

/// Builds the live request of a line for a session. Call after [`Session::wait_for`] of the
/// line's sources returned.
pub fn build(
    plan: &Plan,
    line: &Planned,
    session: &Session,
    context: &Context,
) -> Result<LiveRequest, FailedSource> {
    let mut path = line.path.clone();
    let mut message = line.request.clone();
    let method = line.method.as_str();
    let mut substituted: HashSet<String> = HashSet::new();
    let mut count = 0;

    // 1. Substitute: values whose source is an earlier line, from this session's live map.
    if !line.uses.is_empty() {
        let map = session.map.lock().unwrap_or_else(|e| e.into_inner());
        for u in &line.uses {
            if !map.contains_key(&u.value) {
                return Err(FailedSource {
                    source_line: plan.lines[u.source].line,
                });
            }
        }
        let mut done: Vec<&Location> = Vec::new();
        for u in &line.uses {
            if done.contains(&&u.at) {
                continue;
            }
            done.push(&u.at);
            let at = unscoped(&u.at);
            count += rewrite_at(&at, method, &mut path, &mut message, &mut |value, _| {
                let wanted = line.uses.iter().any(|w| w.at == u.at && w.value == value);
                let live = wanted.then(|| map.get(value).cloned()).flatten()?;
                substituted.insert(live.clone());
                Some(live)
            });
        }
    }

    // 2. Resign: JWTs not substituted, with the key, cached per session (copy, iteration).
    let offset_ns = context.offset_of(session.iteration);
    let mut resign_without_key = Vec::new();
    for rule in &plan.resign {
        if !applies(&rule.at, method, &line.path) {
            continue;
        }
        let at = unscoped(&rule.at);
        rewrite_at(&at, method, &mut path, &mut message, &mut |value, _| {
            if substituted.contains(value) {
                return None;
            }
            let Some(key) = &context.jwt_key else {
                resign_without_key.push(rule.name.clone());
                return None;
            };
            let mut signed = session.signed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(token) = signed.get(value) {
                return Some(token.clone());
            }
            let token = resign(
                value,
                key,
                offset_ns.div_euclid(1_000_000_000),
                &context.jwt_claims,
            )
            .ok()?;
            signed.insert(value.to_owned(), token.clone());
            Some(token)
        });
    }

    // 3. Shift: timestamps not substituted, where the classifier says they are in range.
    for rule in &plan.shift {
        if !applies(&rule.at, method, &line.path) {
            continue;
        }
        let at = unscoped(&rule.at);
        rewrite_at(&at, method, &mut path, &mut message, &mut |value, kind| {
            if substituted.contains(value) {
                return None;
            }
            shift_if_timestamp(
                value,
                kind == ValueType::Number,
                &context.plausible,
                offset_ns,
            )
        });
    }

    // 4. Redaction markers: from --secrets, else sent as recorded and counted.
    let mut unresolved = Vec::new();
    for marker in &line.markers {
        match context.secrets.get(&marker.marker) {
            Some(secret) => {
                let at = unscoped(&marker.at);
                rewrite_at(&at, method, &mut path, &mut message, &mut |value, _| {
                    (value == marker.marker).then(|| secret.clone())
                });
            }
            None => unresolved.push(marker.at.describe()),
        }
    }

    // 5. Transport and tracing: dropped when planned, regenerated here.
    let trace = ReplayTrace {
        copy: session.copy,
        iteration: session.iteration,
        line: line.line,
    };
    message.headers.push((
        "traceparent".to_owned(),
        trace.traceparent(context.random()).into_bytes(),
    ));
    let (a, b) = (context.random(), context.random());
    let request_id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    );
    message
        .headers
        .push(("x-request-id".to_owned(), request_id.into_bytes()));

    Ok(LiveRequest {
        method: line.method.clone(),
        path,
        message,
        trace,
        resign_without_key,
        unresolved,
        substituted: count,
    })
}
