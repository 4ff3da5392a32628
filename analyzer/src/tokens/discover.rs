//! Discovery: every value of every exchange is classified and counted per location, in time
//! order; locations whose values are dynamic become rules, and values that flow from a response
//! into later requests (or from an inbound request into the calls it causes) become
//! correlations.
//!
//! The correlation join is a hash join in time order rather than SQL: a response's values
//! become sources only once that response has ended, a value seen in a request before any
//! response carried it is not minted by a response (constants, client-chosen values), and each
//! value keeps its first source. Extraction (JSON parsing, classification) runs on all cores;
//! the join is one pass.

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::RangeInclusive;

use tapedeck_proto::Exchange;

use super::classify::{Class, JwtClaims, TimestampFormat, classify_number, classify_text};
use super::values::{Occurrence, Part, extract};
use super::{
    Evidence, Flow, JwtInfo, Location, Position, ReplayAction, Side, TokenKind, TokenRule,
};
use crate::template::endpoint;

/// Exchanges per block: extracted in parallel, then joined in order.
const BLOCK: usize = 16_384;
/// A timestamp may lie this far outside the window and still count as one.
const PLAUSIBLE_MARGIN_S: i64 = 366 * 86_400;
/// Longest example kept in evidence.
const EXAMPLE_CHARS: usize = 64;

/// What discovery needs to know about the snapshot's exchanges.
#[derive(Debug)]
pub struct DiscoveryInput<'a> {
    /// The exchanges, sorted by start time (then id).
    pub exchanges: &'a [Exchange],
    /// Each exchange's file.
    pub flows: &'a [Flow],
    /// Each exchange's 1-based line in its file.
    pub lines: &'a [u64],
    /// The window, nanoseconds since the Unix epoch.
    pub window: (u64, u64),
}

/// One classified value.
struct Found {
    location: Location,
    class: Class,
    hash: u64,
    value: String,
}

#[derive(Default)]
struct LocationStats {
    exchanges: u64,
    last_exchange: Option<usize>,
    distinct: HashSet<u64>,
    jwt: u64,
    timestamp: BTreeMap<TimestampFormat, u64>,
    uuid: u64,
    id: u64,
    first: usize,
    example: String,
    claims: Option<Box<JwtClaims>>,
}

struct Edge {
    /// The exchanges that used a value, in order, each once.
    users: Vec<u32>,
    distinct: HashSet<u64>,
    first_source: usize,
    first_use: usize,
    example: String,
    token_like: bool,
}

/// Finds the token rules of a snapshot's exchanges. Deterministic: the same input gives the
/// same rules in the same order.
pub fn discover(input: &DiscoveryInput<'_>) -> Vec<TokenRule> {
    let from = i64::try_from(input.window.0 / 1_000_000_000).unwrap_or(i64::MAX);
    let to = i64::try_from(input.window.1 / 1_000_000_000).unwrap_or(i64::MAX);
    let plausible = from.saturating_sub(PLAUSIBLE_MARGIN_S)..=to.saturating_add(PLAUSIBLE_MARGIN_S);
    let mut join = Join::default();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    let mut start = 0;
    while start < input.exchanges.len() {
        let end = (start + BLOCK).min(input.exchanges.len());
        let found = extract_block(
            &input.exchanges[start..end],
            &input.flows[start..end],
            &plausible,
            threads,
        );
        for (offset, values) in found.into_iter().enumerate() {
            join.add(start + offset, input, values);
        }
        start = end;
    }
    join.rules(input)
}

fn extract_block(
    exchanges: &[Exchange],
    flows: &[Flow],
    plausible: &RangeInclusive<i64>,
    threads: usize,
) -> Vec<Vec<Found>> {
    let per_thread = exchanges.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = exchanges
            .chunks(per_thread)
            .zip(flows.chunks(per_thread))
            .map(|(exchanges, flows)| {
                scope.spawn(move || {
                    exchanges
                        .iter()
                        .zip(flows)
                        .map(|(exchange, flow)| values_of(exchange, *flow, plausible))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn values_of(exchange: &Exchange, flow: Flow, plausible: &RangeInclusive<i64>) -> Vec<Found> {
    let endpoint = endpoint(&exchange.method, &exchange.path);
    let mut out = Vec::new();
    extract(exchange, &mut |o: Occurrence<'_>| {
        let class = if o.number {
            classify_number(&o.value, plausible)
        } else {
            classify_text(&o.value, plausible)
        };
        if class == Class::Other {
            return;
        }
        let scoped = matches!(o.part, Part::Query | Part::Path | Part::Json);
        let (name, path, segment) = match o.part {
            Part::Header | Part::Cookie | Part::Query => (Some(o.key.into_owned()), None, None),
            Part::Json => (None, Some(o.key.into_owned()), None),
            Part::Path => (None, None, o.key.parse().ok()),
        };
        let location = Location {
            direction: flow,
            message: o.side,
            part: o.part,
            name,
            scheme: o.scheme.map(str::to_owned),
            path,
            segment,
            endpoint: scoped.then(|| endpoint.clone()),
        };
        out.push(Found {
            location,
            class,
            hash: value_hash(&o.value),
            value: o.value.into_owned(),
        });
    });
    out
}

fn value_hash(value: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A location id and the value hash, of a value that can carry a correlation.
type Candidate = (u32, u64, bool);

#[derive(Default)]
struct Join {
    ids: HashMap<Location, u32>,
    locations: Vec<Location>,
    stats: Vec<LocationStats>,
    /// Per flow: value → (source location, exchange) of responses that have ended.
    sources: [HashMap<u64, (u32, usize)>; 2],
    /// Per flow: values seen in a request before any response carried them.
    seen_in_requests: [HashSet<u64>; 2],
    /// Responses still in flight: (end, exchange) and their candidates.
    pending: BinaryHeap<Reverse<(u64, usize)>>,
    pending_values: HashMap<usize, Vec<Candidate>>,
    /// Inbound requests' candidates by trace id.
    traces: HashMap<String, Vec<(u32, u64, usize)>>,
    /// (source location, target location, action) → edge.
    edges: HashMap<(u32, u32, ReplayAction), Edge>,
    /// Example values of candidates, by hash (first seen).
    examples: HashMap<u64, String>,
}

fn flow_index(flow: Flow) -> usize {
    match flow {
        Flow::Inbound => 0,
        Flow::Outbound => 1,
    }
}

impl Join {
    fn intern(&mut self, location: Location) -> u32 {
        match self.ids.entry(location) {
            MapEntry::Occupied(entry) => *entry.get(),
            MapEntry::Vacant(entry) => {
                let id = self.locations.len() as u32;
                self.locations.push(entry.key().clone());
                self.stats.push(LocationStats::default());
                entry.insert(id);
                id
            }
        }
    }

    fn add(&mut self, index: usize, input: &DiscoveryInput<'_>, values: Vec<Found>) {
        let exchange = &input.exchanges[index];
        let flow = input.flows[index];
        let start = exchange.start_unix_nanos;
        self.release(start, input);
        let mut requests: Vec<Candidate> = Vec::new();
        let mut responses: Vec<Candidate> = Vec::new();
        for found in values {
            let side = found.location.message;
            let correlatable = found.class.correlatable();
            let token_like =
                matches!(found.class, Class::Jwt(_) | Class::Uuid) || found.value.len() >= 16;
            let id = self.intern(found.location);
            let stats = &mut self.stats[id as usize];
            if stats.last_exchange != Some(index) {
                if stats.last_exchange.is_none() {
                    stats.first = index;
                    stats.example = found.value.chars().take(EXAMPLE_CHARS).collect();
                }
                stats.exchanges += 1;
                stats.last_exchange = Some(index);
            }
            stats.distinct.insert(found.hash);
            match found.class {
                Class::Jwt(claims) => {
                    stats.jwt += 1;
                    if stats.claims.is_none() {
                        stats.claims = Some(claims);
                    }
                }
                Class::Timestamp(format) => *stats.timestamp.entry(format).or_default() += 1,
                Class::Uuid => stats.uuid += 1,
                Class::Id => stats.id += 1,
                Class::Number | Class::Other => {}
            }
            if correlatable {
                self.examples
                    .entry(found.hash)
                    .or_insert_with(|| found.value.chars().take(EXAMPLE_CHARS).collect());
                match side {
                    Side::Request => requests.push((id, found.hash, token_like)),
                    Side::Response => responses.push((id, found.hash, token_like)),
                }
            }
        }
        let f = flow_index(flow);
        for &(target, hash, token_like) in &requests {
            if let Some(&(source, source_index)) = self.sources[f].get(&hash) {
                self.edge(
                    source,
                    target,
                    ReplayAction::Substitute,
                    hash,
                    source_index,
                    index,
                    token_like,
                );
            } else {
                self.seen_in_requests[f].insert(hash);
            }
        }
        if !exchange.trace_id.is_empty() {
            match flow {
                Flow::Inbound => {
                    let entry = self.traces.entry(exchange.trace_id.clone()).or_default();
                    entry.extend(requests.iter().map(|&(id, hash, _)| (id, hash, index)));
                }
                Flow::Outbound => {
                    if let Some(inbound) = self.traces.get(&exchange.trace_id) {
                        let matches: Vec<(u32, u32, u64, usize, bool)> = requests
                            .iter()
                            .filter_map(|&(target, hash, token_like)| {
                                inbound.iter().find(|(_, h, _)| *h == hash).map(
                                    |&(source, _, source_index)| {
                                        (source, target, hash, source_index, token_like)
                                    },
                                )
                            })
                            .collect();
                        for (source, target, hash, source_index, token_like) in matches {
                            self.edge(
                                source,
                                target,
                                ReplayAction::Propagate,
                                hash,
                                source_index,
                                index,
                                token_like,
                            );
                        }
                    }
                }
            }
        }
        if !responses.is_empty() {
            let end = start.saturating_add(exchange.duration_nanos);
            self.pending.push(Reverse((end, index)));
            self.pending_values.insert(index, responses);
        }
    }

    /// Responses that ended by `now` become sources of their values.
    fn release(&mut self, now: u64, input: &DiscoveryInput<'_>) {
        while let Some(Reverse((end, index))) = self.pending.peek().copied() {
            if end > now {
                break;
            }
            self.pending.pop();
            let f = flow_index(input.flows[index]);
            for (location, hash, _) in self.pending_values.remove(&index).unwrap_or_default() {
                if !self.seen_in_requests[f].contains(&hash) {
                    self.sources[f].entry(hash).or_insert((location, index));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // One call site per kind of flow; a struct would only rename them.
    fn edge(
        &mut self,
        source: u32,
        target: u32,
        action: ReplayAction,
        hash: u64,
        source_index: usize,
        index: usize,
        token_like: bool,
    ) {
        let example = self.examples.get(&hash).cloned().unwrap_or_default();
        let edge = self
            .edges
            .entry((source, target, action))
            .or_insert_with(|| Edge {
                users: Vec::new(),
                distinct: HashSet::new(),
                first_source: source_index,
                first_use: index,
                example,
                token_like,
            });
        let user = index as u32;
        if edge.users.last() != Some(&user) {
            edge.users.push(user);
        }
        edge.distinct.insert(hash);
        edge.token_like |= token_like;
    }

    fn position(input: &DiscoveryInput<'_>, index: usize) -> Position {
        Position {
            file: format!("{}.jsonl", input.flows[index].as_str()),
            line: input.lines[index],
        }
    }

    fn rules(self, input: &DiscoveryInput<'_>) -> Vec<TokenRule> {
        // Correlations: an edge counts when its values differ from use to use, or when one
        // value is a token (a single login's JWT), so constants never become correlations.
        let mut grouped: BTreeMap<(Location, ReplayAction), Vec<(Location, &Edge)>> =
            BTreeMap::new();
        for ((source, target, action), edge) in &self.edges {
            let source_distinct = self.stats[*source as usize].distinct.len();
            if edge.distinct.len() >= 2 || (edge.token_like && source_distinct >= 1) {
                grouped
                    .entry((self.locations[*source as usize].clone(), *action))
                    .or_default()
                    .push((self.locations[*target as usize].clone(), edge));
            }
        }
        let mut correlated: HashSet<Location> = HashSet::new();
        let mut rules = Vec::new();
        for ((at, action), mut targets) in grouped {
            targets.sort_by(|a, b| a.0.cmp(&b.0));
            let mut users: Vec<u32> = targets
                .iter()
                .flat_map(|(_, e)| e.users.iter().copied())
                .collect();
            users.sort_unstable();
            users.dedup();
            let uses = users.len() as u64;
            let distinct: HashSet<u64> = targets
                .iter()
                .flat_map(|(_, e)| e.distinct.iter().copied())
                .collect();
            let first = targets
                .iter()
                .map(|(_, e)| e.first_source)
                .min()
                .unwrap_or(0);
            let (first_use, example) = targets
                .iter()
                .map(|(_, e)| (e.first_use, e.example.clone()))
                .min()
                .unwrap_or_default();
            correlated.insert(at.clone());
            correlated.extend(targets.iter().map(|(l, _)| l.clone()));
            rules.push(TokenRule {
                name: format!("correlation {}", at.describe()),
                kind: TokenKind::Correlation,
                to: targets.into_iter().map(|(l, _)| l).collect(),
                at,
                jwt: None,
                format: None,
                replay: action,
                evidence: Some(Evidence {
                    exchanges: uses,
                    distinct: distinct.len() as u64,
                    first: Self::position(input, first),
                    first_use: Some(Self::position(input, first_use)),
                    example: Some(example),
                }),
            });
        }
        let mut kinds = Vec::new();
        for (id, location) in self.locations.iter().enumerate() {
            let stats = &self.stats[id];
            let occurrences =
                stats.jwt + stats.uuid + stats.id + stats.timestamp.values().sum::<u64>();
            let total = stats.exchanges.max(occurrences);
            let distinct = stats.distinct.len() as u64;
            let mostly = |count: u64| count * 10 >= total * 9;
            let kind = if stats.jwt * 2 > total
                && (distinct >= 2
                    || stats
                        .claims
                        .as_ref()
                        .is_some_and(|c| !c.time_claims.is_empty()))
            {
                Some(TokenKind::Jwt)
            } else if distinct >= 2 && mostly(stats.timestamp.values().sum()) {
                Some(TokenKind::Timestamp)
            } else if distinct >= 2 && mostly(stats.uuid) {
                Some(TokenKind::Uuid)
            } else if distinct >= 3 && distinct * 2 >= total && mostly(stats.id) {
                Some(TokenKind::Id)
            } else {
                None
            };
            let Some(kind) = kind else { continue };
            // A correlation says more about an id than "it varies"; a JWT's rule stays (it says
            // how to re-sign the tokens no live response replaces).
            if matches!(kind, TokenKind::Id | TokenKind::Uuid) && correlated.contains(location) {
                continue;
            }
            let format = (kind == TokenKind::Timestamp).then(|| {
                stats
                    .timestamp
                    .iter()
                    .max_by_key(|(format, count)| (**count, Reverse(**format)))
                    .map(|(format, _)| *format)
            });
            let jwt = (kind == TokenKind::Jwt)
                .then(|| stats.claims.as_deref().map(jwt_info))
                .flatten();
            kinds.push(TokenRule {
                name: format!("{} {}", kind_word(kind), location.describe()),
                kind,
                at: location.clone(),
                to: Vec::new(),
                jwt,
                format: format.flatten(),
                replay: action_for(kind, location),
                evidence: Some(Evidence {
                    exchanges: stats.exchanges,
                    distinct,
                    first: Self::position(input, stats.first),
                    first_use: None,
                    example: (kind != TokenKind::Jwt).then(|| stats.example.clone()),
                }),
            });
        }
        kinds.sort_by(|a, b| (a.kind, &a.at).cmp(&(b.kind, &b.at)));
        rules.extend(kinds);
        // Names are unique (validation insists): a clash gets a number.
        let mut seen: HashMap<String, u32> = HashMap::new();
        for rule in &mut rules {
            let count = seen.entry(rule.name.clone()).or_insert(0);
            *count += 1;
            if *count > 1 {
                rule.name = format!("{} #{count}", rule.name);
            }
        }
        rules
    }
}

fn kind_word(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Correlation => "correlation",
        TokenKind::Jwt => "jwt",
        TokenKind::Timestamp => "timestamp",
        TokenKind::Uuid => "uuid",
        TokenKind::Id => "id",
    }
}

fn jwt_info(claims: &JwtClaims) -> JwtInfo {
    JwtInfo {
        alg: claims.alg.clone(),
        issuer: claims.issuer.clone(),
        time_claims: claims.time_claims.clone(),
        lifetime_s: claims.lifetime_s,
        signature_redacted: claims.signature_redacted,
    }
}

/// What replay does with a kind of value where it is: values replay sends (inbound requests,
/// mock responses) are re-signed or re-dated; values the build under test produces (inbound
/// responses, outbound requests) are left out of matching and diffs.
pub(crate) fn action_for(kind: TokenKind, location: &Location) -> ReplayAction {
    let sent_by_replay = matches!(
        (location.direction, location.message),
        (Flow::Inbound, Side::Request) | (Flow::Outbound, Side::Response)
    );
    match kind {
        TokenKind::Jwt if sent_by_replay => ReplayAction::Resign,
        TokenKind::Timestamp if sent_by_replay => ReplayAction::Shift,
        TokenKind::Correlation => ReplayAction::Substitute,
        _ => ReplayAction::Ignore,
    }
}
