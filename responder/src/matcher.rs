//! Matching a live request against the recordings: candidates, the fields that differ, the
//! score, sessions and recorded-order sequences.
//!
//! A request reaches the recordings of its host (by alias), method and endpoint
//! (`template::endpoint`). Each candidate's request fields are compared with the live ones by
//! their [`Mode`]; a candidate with no differing field matches. Several matching recordings are
//! served in recorded order per session, then cycle. The score (for `--fallback closest` and
//! for the candidates a miss names) is the share of compared fields that agree:
//!
//! ```text
//! score = agreeing fields / compared fields      (1.0 when nothing is compared)
//! ```
//!
//! where compared fields are the recording's fields that are not wildcards, plus the live
//! request's extra query parameters and body fields; a candidate of another endpoint also
//! counts the endpoint as one differing field.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tapedeck_analyzer::replay::trace::ReplayTrace;
use tapedeck_analyzer::template::path_without_query;
use tapedeck_analyzer::tokens::{Class, classify_number, classify_text};
use tapedeck_proto::REDACTED_PREFIX;

use crate::fields::{Descriptors, Field, decode_grpc, extra_counts};
use crate::store::{Mode, Recording, Store, group, is_redacted};

/// How many candidates a decision names.
pub const NAMED_CANDIDATES: usize = 3;
/// How many recordings a miss scores at most to name the closest (large buckets are sampled
/// from their start).
pub const SCORED_ON_MISS: usize = 2000;
/// Sequence counters kept before the table is reset (bounded memory under many traces).
pub const MAX_SEQUENCES: usize = 1_000_000;

/// The live request's fields, grouped by key.
pub type LiveFields = HashMap<String, Vec<(String, bool)>>;

/// Whose sequence a call belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Session {
    /// The generator's traceparent: this copy, iteration and inbound line.
    Replay {
        /// The copy.
        copy: u32,
        /// The iteration.
        iteration: u32,
        /// The 1-based line of `inbound.jsonl`.
        line: u32,
    },
    /// Another trace id (`traceparent` or `x-request-id`).
    Trace(String),
    /// No trace: one global sequence.
    Global,
}

impl Session {
    /// The session of a request from its `traceparent`, `x-b3-traceid` and `x-request-id`
    /// (the generator's convention in any of them, then the first trace id there is).
    pub fn of(traceparent: Option<&str>, b3: Option<&str>, request_id: Option<&str>) -> Session {
        let traceparent_id = traceparent.and_then(|value| {
            let mut parts = value.trim().split('-');
            match (parts.next(), parts.next()) {
                (Some(_), Some(id)) if id.len() == 32 => Some(id.to_ascii_lowercase()),
                _ => None,
            }
        });
        let ids = [
            traceparent_id,
            b3.map(|v| v.trim().to_ascii_lowercase()),
            request_id.map(|v| v.trim().to_owned()),
        ];
        for id in ids.iter().flatten() {
            let hex: String = id.chars().filter(|c| *c != '-').collect();
            if let Some(trace) = ReplayTrace::from_trace_id(&hex) {
                return Session::Replay {
                    copy: trace.copy,
                    iteration: trace.iteration,
                    line: trace.line,
                };
            }
        }
        match ids.into_iter().flatten().find(|id| !id.is_empty()) {
            Some(id) => Session::Trace(id),
            None => Session::Global,
        }
    }
}

/// A field that differed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The field key.
    pub field: String,
    /// The recorded value (the first, cut), absent when the recording has none.
    pub recorded: Option<String>,
    /// The live value (the first, cut), absent when the request has none.
    pub live: Option<String>,
    /// How it was compared: `exact`, `class`, `redacted`, `endpoint`.
    pub compared: &'static str,
}

/// A field that was not compared, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wildcard {
    /// The field key.
    pub field: String,
    /// The rule or redaction that made it a wildcard, or the rule it was compared by class.
    pub reason: String,
}

/// One scored recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Index of [`Store::recordings`].
    #[serde(skip)]
    pub index: u32,
    /// `<snapshot id>/<line>`.
    pub recording: String,
    /// `METHOD /template`.
    pub endpoint: String,
    /// The score, 0–1.
    pub score: f64,
    /// The fields that differed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differing: Vec<Difference>,
    /// The fields not compared byte for byte, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wildcards: Vec<Wildcard>,
    /// Recorded value → live value at wildcard and class-compared fields that differ; the
    /// served response gets the live value where it had the recorded one.
    #[serde(skip)]
    pub substitutions: Vec<(String, String)>,
    /// What the comparison could not do as asked: a gRPC message compared bytewise although
    /// `--descriptors` were given (unknown method, a message that does not decode), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How a served recording was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Every compared field agreed.
    Exact,
    /// The closest near miss, allowed by `--fallback closest`.
    Fallback,
}

/// Why nothing was served from the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// The host is not a recorded host or alias.
    UnknownHost,
    /// The host has no recording of this method and endpoint.
    UnknownEndpoint,
    /// Recordings of the endpoint exist, but none agrees on every compared field.
    NoMatch,
}

/// What the matcher decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Serve a recording.
    Matched {
        /// How it was chosen.
        kind: MatchKind,
        /// The chosen candidate.
        chosen: Candidate,
        /// Its place in the session's sequence (0-based) and the sequence's length.
        sequence: (u64, usize),
        /// Recordings that matched too (sequence members), named.
        others: Vec<String>,
        /// The candidates were narrowed to the calls the replayed inbound request caused.
        caused_by: Option<u32>,
    },
    /// Nothing matched.
    Miss {
        /// Why.
        reason: MissReason,
        /// The closest candidates, best first.
        candidates: Vec<Candidate>,
    },
}

/// A live request, as matching sees it.
#[derive(Debug, Clone)]
pub struct LiveRequest<'a> {
    /// The `Host` / `:authority`.
    pub authority: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path with its query.
    pub path: &'a str,
    /// `METHOD /template`.
    pub endpoint: &'a str,
    /// The fields.
    pub fields: &'a LiveFields,
    /// The session.
    pub session: &'a Session,
}

/// The matcher: the store, the comparison settings and the sequence counters.
#[derive(Debug)]
pub struct Matcher {
    /// The loaded snapshot.
    pub store: Store,
    redaction_key: Option<Vec<u8>>,
    fallback_min_score: Option<f64>,
    sequences: Mutex<HashMap<(Session, u32, u32), u64>>,
    descriptors: Option<Descriptors>,
    /// Recordings whose gRPC messages stayed bytewise although descriptors were given, and why.
    grpc_notes: HashMap<u32, Vec<String>>,
}

fn cut(text: &str) -> String {
    const MAX: usize = 120;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Best first: the score, then the fewest substitutions (more wildcard values agree), then
/// recorded order.
fn ranking(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.substitutions.len().cmp(&b.substitutions.len()))
        .then(a.index.cmp(&b.index))
}

fn same_class(a: &Class, b: &Class) -> bool {
    match (a, b) {
        (Class::Timestamp(x), Class::Timestamp(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

impl Matcher {
    /// A matcher over `store`. `fallback_min_score`: `Some` when `--fallback closest`.
    pub fn new(store: Store, redaction_key: Option<&str>, fallback_min_score: Option<f64>) -> Self {
        Matcher {
            store,
            redaction_key: redaction_key.map(|k| k.as_bytes().to_vec()),
            fallback_min_score,
            sequences: Mutex::new(HashMap::new()),
            descriptors: None,
            grpc_notes: HashMap::new(),
        }
    }

    /// Compares gRPC request messages field by field where `descriptors` describe the method:
    /// the recordings' `grpc N` fields are decoded once here, live ones per request.
    pub fn with_descriptors(mut self, descriptors: Option<Descriptors>) -> Self {
        let Some(descriptors) = descriptors else {
            return self;
        };
        for (index, rec) in self.store.recordings.iter_mut().enumerate() {
            if !rec.fields.iter().any(|g| is_grpc_key(&g.key)) {
                continue;
            }
            let input = descriptors.input(&rec.path);
            let mut decoded = Vec::new();
            let mut notes = Vec::new();
            rec.fields.retain(|g| {
                if !is_grpc_key(&g.key) {
                    return true;
                }
                let Some((value, _)) = g.values.first() else {
                    return true;
                };
                match decode(input.as_ref(), &rec.path, &g.key, value) {
                    Ok(fields) => {
                        decoded.extend(fields);
                        false
                    }
                    Err(note) => {
                        notes.push(format!("recorded {note}"));
                        true
                    }
                }
            });
            if !decoded.is_empty() {
                rec.fields.extend(group(decoded, &rec.endpoint, &[]));
                rec.fields.sort_by(|a, b| a.key.cmp(&b.key));
            }
            if !notes.is_empty() {
                tracing::debug!(recording = rec.line, notes = ?notes, "grpc message compared bytewise");
                self.grpc_notes.insert(index as u32, notes);
            }
        }
        self.descriptors = Some(descriptors);
        self
    }

    /// The live fields with `grpc N` messages decoded, and notes on those that stayed bytewise;
    /// `None` when there is nothing to decode.
    fn decoded_live(&self, live: &LiveRequest<'_>) -> Option<(LiveFields, Vec<String>)> {
        let descriptors = self.descriptors.as_ref()?;
        if !live.fields.keys().any(|k| is_grpc_key(k)) {
            return None;
        }
        let input = descriptors.input(live.path);
        let mut fields = LiveFields::new();
        let mut notes = Vec::new();
        for (key, values) in live.fields {
            if is_grpc_key(key)
                && let [(value, _)] = values.as_slice()
            {
                match decode(input.as_ref(), live.path, key, value) {
                    Ok(decoded) => {
                        for field in decoded {
                            fields
                                .entry(field.key)
                                .or_default()
                                .push((field.value, field.number));
                        }
                        continue;
                    }
                    Err(note) => notes.push(format!("live {note}")),
                }
            }
            fields.insert(key.clone(), values.clone());
        }
        if !notes.is_empty() {
            tracing::debug!(path = live.path, notes = ?notes, "grpc message compared bytewise");
        }
        Some((fields, notes))
    }

    fn class(&self, value: &str, number: bool) -> Class {
        if number {
            classify_number(value, &self.store.plausible)
        } else {
            classify_text(value, &self.store.plausible)
        }
    }

    /// Compares a recorded value holding a marker with a live value: `Some(agree)` with a key,
    /// `None` (not comparable) without one.
    fn redacted_agrees(&self, recorded: &str, live: &str) -> Option<bool> {
        let key = self.redaction_key.as_deref()?;
        if recorded.starts_with(REDACTED_PREFIX) {
            return Some(tapedeck_proto::redaction_marker(key, live.as_bytes()) == recorded);
        }
        // A JWT whose signature alone was redacted: header and claims as recorded.
        let (rec_head, rec_sig) = recorded.rsplit_once('.')?;
        let Some((live_head, live_sig)) = live.rsplit_once('.') else {
            return Some(false);
        };
        Some(
            rec_head == live_head
                && tapedeck_proto::redaction_marker(key, live_sig.as_bytes()) == rec_sig,
        )
    }

    /// Scores one recording against the live request.
    pub fn compare(&self, index: u32, live: &LiveRequest<'_>) -> Candidate {
        let rec = &self.store.recordings[index as usize];
        let mut compared = 0u32;
        let mut agreed = 0u32;
        let mut differing = Vec::new();
        let mut wildcards = Vec::new();
        let mut substitutions = Vec::new();
        let empty = Vec::new();
        for group in &rec.fields {
            let live_values = live.fields.get(&group.key).unwrap_or(&empty);
            let pairs = || group.values.iter().zip(live_values.iter());
            let same_len = group.values.len() == live_values.len();
            let (agree, how) = match &group.mode {
                Mode::Wildcard(reason) => {
                    wildcards.push(Wildcard {
                        field: group.key.clone(),
                        reason: reason.clone(),
                    });
                    for ((r, _), (l, _)) in pairs() {
                        if r != l {
                            substitutions.push((r.clone(), l.clone()));
                        }
                    }
                    continue;
                }
                Mode::Exact => (same_len && pairs().all(|((r, _), (l, _))| r == l), "exact"),
                Mode::Class(rule) => {
                    wildcards.push(Wildcard {
                        field: group.key.clone(),
                        reason: format!("rule {rule:?}: compared by token class"),
                    });
                    let agree = same_len
                        && pairs().all(|((r, rn), (l, ln))| {
                            r == l || same_class(&self.class(r, *rn), &self.class(l, *ln))
                        });
                    if agree {
                        for ((r, _), (l, _)) in pairs() {
                            if r != l {
                                substitutions.push((r.clone(), l.clone()));
                            }
                        }
                    }
                    (agree, "class")
                }
                Mode::Redacted => {
                    let mut unchecked = false;
                    let agree = same_len
                        && pairs().all(|((r, _), (l, _))| {
                            if !is_redacted(r) {
                                return r == l;
                            }
                            match self.redacted_agrees(r, l) {
                                Some(agree) => agree,
                                None => {
                                    unchecked = true;
                                    true
                                }
                            }
                        });
                    if unchecked {
                        wildcards.push(Wildcard {
                            field: group.key.clone(),
                            reason: "recorded value is redacted (no --redaction-key)".to_owned(),
                        });
                        if agree {
                            continue;
                        }
                    }
                    (agree, "redacted")
                }
            };
            compared += 1;
            if agree {
                agreed += 1;
            } else {
                differing.push(Difference {
                    field: group.key.clone(),
                    recorded: group.values.first().map(|(v, _)| cut(v)),
                    live: live_values.first().map(|(v, _)| cut(v)),
                    compared: how,
                });
            }
        }
        let mut extra: Vec<&String> = live
            .fields
            .keys()
            .filter(|key| {
                extra_counts(key) && rec.fields.binary_search_by(|g| g.key.cmp(key)).is_err()
            })
            .collect();
        extra.sort();
        for key in extra {
            compared += 1;
            differing.push(Difference {
                field: key.clone(),
                recorded: None,
                live: live.fields[key].first().map(|(v, _)| cut(v)),
                compared: "exact",
            });
        }
        if rec.endpoint != live.endpoint {
            compared += 1;
            differing.insert(
                0,
                Difference {
                    field: "endpoint".to_owned(),
                    recorded: Some(rec.endpoint.clone()),
                    live: Some(live.endpoint.to_owned()),
                    compared: "endpoint",
                },
            );
        }
        let score = if compared == 0 {
            1.0
        } else {
            f64::from(agreed) / f64::from(compared)
        };
        Candidate {
            index,
            recording: rec.name(&self.store.id),
            endpoint: rec.endpoint.clone(),
            score,
            differing,
            wildcards,
            substitutions,
            notes: self.grpc_notes.get(&index).cloned().unwrap_or_default(),
        }
    }

    fn scored(&self, pool: impl Iterator<Item = u32>, live: &LiveRequest<'_>) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = pool
            .take(SCORED_ON_MISS)
            .map(|i| self.compare(i, live))
            .collect();
        out.sort_by(ranking);
        out
    }

    /// Decides what a live request gets.
    pub fn decide(&self, live: &LiveRequest<'_>) -> Decision {
        let Some((fields, notes)) = self.decoded_live(live) else {
            return self.decide_fields(live);
        };
        let decoded = LiveRequest {
            fields: &fields,
            ..live.clone()
        };
        let mut decision = self.decide_fields(&decoded);
        if !notes.is_empty() {
            let add = |c: &mut Candidate| c.notes.extend(notes.iter().cloned());
            match &mut decision {
                Decision::Matched { chosen, .. } => add(chosen),
                Decision::Miss { candidates, .. } => candidates.iter_mut().for_each(add),
            }
        }
        decision
    }

    fn decide_fields(&self, live: &LiveRequest<'_>) -> Decision {
        let Some(host) = self.store.host(live.authority) else {
            return Decision::Miss {
                reason: MissReason::UnknownHost,
                candidates: Vec::new(),
            };
        };
        let Some(bucket) = self.store.bucket(host, live.endpoint) else {
            // Name the closest recordings of the host's other endpoints.
            let store = &self.store;
            let pool = store.endpoints(host).iter().flat_map(|endpoint| {
                store
                    .bucket(host, endpoint)
                    .map(|b| b.recordings.iter().take(20).copied())
                    .into_iter()
                    .flatten()
            });
            let mut candidates = self.scored(pool, live);
            candidates.truncate(NAMED_CANDIDATES);
            return Decision::Miss {
                reason: MissReason::UnknownEndpoint,
                candidates,
            };
        };
        let pool: &[u32] = match &bucket.by_path {
            Some(by_path) => by_path
                .get(path_without_query(live.path))
                .map_or(&[], Vec::as_slice),
            None => &bucket.recordings,
        };
        let (mut exact, candidates): (Vec<Candidate>, Vec<Candidate>) = pool
            .iter()
            .map(|i| self.compare(*i, live))
            .partition(|c| c.differing.is_empty());
        if !exact.is_empty() {
            let mut caused_by = None;
            if let Session::Replay { line, .. } = live.session {
                let recs = &self.store.recordings;
                if exact
                    .iter()
                    .any(|c| recs[c.index as usize].caused_by == Some(*line))
                {
                    exact.retain(|c| recs[c.index as usize].caused_by == Some(*line));
                    caused_by = Some(*line);
                }
            }
            // Among equals, the recordings that needed the fewest substitutions (the live
            // values agree with more of their wildcard fields) come first.
            if let Some(fewest) = exact.iter().map(|c| c.substitutions.len()).min() {
                exact.retain(|c| c.substitutions.len() == fewest);
            }
            let n = if exact.len() > 1 {
                self.next_in_sequence(live.session, exact[0].index, exact.len() as u32)
            } else {
                0
            };
            let len = exact.len();
            let pick = (n % len as u64) as usize;
            let others = exact
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != pick)
                .map(|(_, c)| c.recording.clone())
                .collect();
            let chosen = exact.swap_remove(pick);
            return Decision::Matched {
                kind: MatchKind::Exact,
                chosen,
                sequence: (n, len),
                others,
                caused_by,
            };
        }
        // No exact match: score the whole bucket when the path index narrowed it to nothing.
        let mut candidates = if candidates.is_empty() {
            self.scored(bucket.recordings.iter().copied(), live)
        } else {
            let mut c = candidates;
            c.sort_by(ranking);
            c
        };
        if let Some(min) = self.fallback_min_score
            && let Some(best) = candidates.first()
            && best.score >= min
        {
            let chosen = candidates.remove(0);
            return Decision::Matched {
                kind: MatchKind::Fallback,
                chosen,
                sequence: (0, 1),
                others: Vec::new(),
                caused_by: None,
            };
        }
        candidates.truncate(NAMED_CANDIDATES);
        Decision::Miss {
            reason: MissReason::NoMatch,
            candidates,
        }
    }

    /// The next place (0-based, not yet wrapped) in the sequence of `session` over the set of
    /// recordings starting at `first`.
    fn next_in_sequence(&self, session: &Session, first: u32, len: u32) -> u64 {
        let mut map = match self.sequences.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() >= MAX_SEQUENCES {
            tracing::warn!(
                sequences = map.len(),
                "Too many session sequences; starting all of them again."
            );
            map.clear();
        }
        let counter = map.entry((session.clone(), first, len)).or_insert(0);
        let n = *counter;
        *counter += 1;
        n
    }

    /// The recording behind a candidate.
    pub fn recording(&self, candidate: &Candidate) -> &Recording {
        &self.store.recordings[candidate.index as usize]
    }
}

/// A `grpc N` field (one whole length-prefixed message, not yet decoded).
fn is_grpc_key(key: &str) -> bool {
    key.strip_prefix("grpc ")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Decodes one `grpc N` field, or says why it stays bytewise.
fn decode(
    input: Option<&prost_reflect::MessageDescriptor>,
    path: &str,
    key: &str,
    value: &str,
) -> Result<Vec<Field>, String> {
    let Some(input) = input else {
        return Err(format!(
            "{key}: method {} not in --descriptors: compared bytewise",
            path_without_query(path)
        ));
    };
    decode_grpc(key, value, input).map_err(|why| format!("{key}: {why}: compared bytewise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_come_from_traces() {
        let replay = ReplayTrace {
            copy: 2,
            iteration: 1,
            line: 7,
        };
        assert_eq!(
            Session::of(None, Some(&replay.trace_id_hex()), None),
            Session::Replay {
                copy: 2,
                iteration: 1,
                line: 7
            }
        );
        assert_eq!(
            Session::of(Some(&replay.traceparent(5)), None, None),
            Session::Replay {
                copy: 2,
                iteration: 1,
                line: 7
            }
        );
        assert_eq!(
            Session::of(
                Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
                None,
                Some("x")
            ),
            Session::Trace("4bf92f3577b34da6a3ce929d0e0e4736".to_owned())
        );
        assert_eq!(
            Session::of(None, None, Some("r-1")),
            Session::Trace("r-1".to_owned())
        );
        assert_eq!(Session::of(None, None, None), Session::Global);
    }

    #[test]
    fn long_values_are_cut() {
        let long = "é".repeat(100);
        assert!(cut(&long).ends_with('…'));
        assert_eq!(cut("short"), "short");
    }
}
