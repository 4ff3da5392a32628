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
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::ops::RangeInclusive;

use crate::rows::Row;

use super::classify::{
    Class, JwtClaims, TimestampFormat, classify_number, classify_text, decode_jwt,
};
use super::values::{Occurrence, Part, extract};
use super::{
    Evidence, Flow, JwtInfo, Location, Position, ReplayAction, Side, TokenKind, TokenRule,
};
use crate::template::endpoint;

/// Exchanges per block: blocks are extracted in parallel and joined in order, while the workers
/// go on with the next blocks.
const BLOCK: usize = 2048;
/// A timestamp may lie this far outside the window and still count as one.
const PLAUSIBLE_MARGIN_S: i64 = 366 * 86_400;
/// Longest example kept in evidence.
const EXAMPLE_CHARS: usize = 64;

/// What discovery needs to know about the snapshot's exchanges.
#[derive(Debug)]
pub struct DiscoveryInput<'a, R> {
    /// The exchanges, sorted by start time (then id).
    pub exchanges: &'a [R],
    /// Each exchange's file.
    pub flows: &'a [Flow],
    /// Each exchange's 1-based line in its file.
    pub lines: &'a [u64],
    /// The window, nanoseconds since the Unix epoch.
    pub window: (u64, u64),
}

/// One classified value.
struct Found {
    /// The location's key (a hash of its parts).
    key: u64,
    /// The location itself, the first time this worker sends the key.
    location: Option<Box<Location>>,
    side: Side,
    kind: Kind,
    /// JWTs, UUIDs and values of 16 characters or more: one use is evidence enough.
    token_like: bool,
    hash: u64,
}

/// What a candidate value is, without the details (a JWT's claims are decoded again for the
/// rules that need them, so no value is copied on the way to the join).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jwt,
    Timestamp(TimestampFormat),
    Uuid,
    Id,
    Number,
}

impl Kind {
    fn of(class: &Class) -> Option<Kind> {
        Some(match class {
            Class::Jwt(_) => Kind::Jwt,
            Class::Timestamp(format) => Kind::Timestamp(*format),
            Class::Uuid => Kind::Uuid,
            Class::Id => Kind::Id,
            Class::Number => Kind::Number,
            Class::Other => return None,
        })
    }

    /// Whether the value can carry a correlation (see [`Class::correlatable`]).
    fn correlatable(self) -> bool {
        !matches!(self, Kind::Timestamp(_))
    }
}

#[derive(Default)]
struct LocationStats {
    exchanges: u64,
    last_exchange: Option<usize>,
    distinct: FxHashSet<u64>,
    jwt: u64,
    timestamp: BTreeMap<TimestampFormat, u64>,
    uuid: u64,
    id: u64,
    first: usize,
    /// The first exchange with a JWT here.
    first_jwt: Option<usize>,
}

struct Edge {
    /// The exchanges that used a value, in order, each once.
    users: Vec<u32>,
    distinct: FxHashSet<u64>,
    first_source: usize,
    first_use: usize,
    /// The value of the first use.
    first_hash: u64,
    token_like: bool,
}

/// Finds the token rules of a snapshot's exchanges. Deterministic: the same input gives the
/// same rules in the same order.
pub fn discover<R: Row + Sync>(input: &DiscoveryInput<'_, R>) -> Vec<TokenRule> {
    let plausible = plausible_range(input.window);
    let mut join = Join::default();
    let blocks = (0..input.exchanges.len())
        .step_by(BLOCK)
        .map(|start| start..(start + BLOCK).min(input.exchanges.len()));
    let joined: Result<(), std::convert::Infallible> = crate::parallel::map_ordered(
        blocks,
        crate::parallel::workers(),
        Worker::default,
        |worker, range: std::ops::Range<usize>| {
            let start = range.start;
            let values: Vec<Vec<Found>> = range
                .map(|i| values_of(&input.exchanges[i], input.flows[i], &plausible, worker))
                .collect();
            (start, values)
        },
        |(start, values)| {
            for (offset, values) in values.into_iter().enumerate() {
                join.add(start + offset, input, values);
            }
            Ok(())
        },
    );
    if let Err(never) = joined {
        match never {}
    }
    join.rules(input)
}

/// What one extraction worker remembers from block to block.
#[derive(Default)]
struct Worker {
    /// Location keys this worker has sent with their full [`Location`]: later values at the same
    /// place carry only the key, so no strings are built for them. The join sees a worker's
    /// first value of a key before any later one, because it takes blocks in order and a worker
    /// takes blocks in order.
    sent: FxHashSet<u64>,
    /// JWTs already decoded (a session sends the same token many times).
    jwts: FxHashMap<u64, Option<Kind>>,
}

/// Largest number of JWTs a worker keeps decoded.
const JWT_CACHE: usize = 65_536;

fn values_of<R: Row>(
    exchange: &R,
    flow: Flow,
    plausible: &RangeInclusive<i64>,
    worker: &mut Worker,
) -> Vec<Found> {
    let endpoint = endpoint(exchange.method(), exchange.path());
    let mut out = Vec::new();
    extract(exchange, &mut |o: Occurrence<'_>| {
        let hash = value_hash(&o.value);
        let kind = if o.number {
            Kind::of(&classify_number(&o.value, plausible))
        } else if o.value.starts_with("ey") {
            if let Some(kind) = worker.jwts.get(&hash) {
                *kind
            } else {
                let kind = Kind::of(&classify_text(&o.value, plausible));
                if worker.jwts.len() >= JWT_CACHE {
                    worker.jwts.clear();
                }
                worker.jwts.insert(hash, kind);
                kind
            }
        } else {
            Kind::of(&classify_text(&o.value, plausible))
        };
        let Some(kind) = kind else { return };
        let key = location_key(flow, &o, &endpoint);
        let location = worker
            .sent
            .insert(key)
            .then(|| Box::new(location_of(flow, &o, &endpoint)));
        out.push(Found {
            key,
            location,
            side: o.side,
            kind,
            hash,
            token_like: matches!(kind, Kind::Jwt | Kind::Uuid) || o.value.len() >= 16,
        });
    });
    out
}

/// The [`Location`] of an occurrence in an exchange of `flow` whose endpoint is `endpoint`
/// (`template::endpoint` of its request line): `endpoint` is kept on `query`, `path` and `json`
/// locations only.
pub fn location_of(flow: Flow, o: &Occurrence<'_>, endpoint: &str) -> Location {
    let scoped = matches!(o.part, Part::Query | Part::Path | Part::Json);
    let (name, path, segment) = match o.part {
        Part::Header | Part::Cookie | Part::Query => (Some(o.key.to_string()), None, None),
        Part::Json => (None, Some(o.key.to_string()), None),
        Part::Path => (None, None, o.key.parse().ok()),
    };
    Location {
        direction: flow,
        message: o.side,
        part: o.part,
        name,
        scheme: o.scheme.map(str::to_owned),
        path,
        segment,
        endpoint: scoped.then(|| endpoint.to_owned()),
    }
}

/// The key of an occurrence's location: a hash of everything a [`Location`] holds.
fn location_key(flow: Flow, o: &Occurrence<'_>, endpoint: &str) -> u64 {
    let mut hasher = FxHasher::default();
    (flow, o.side, o.part, &*o.key, o.scheme).hash(&mut hasher);
    if matches!(o.part, Part::Query | Part::Path | Part::Json) {
        endpoint.hash(&mut hasher);
    }
    hasher.finish()
}

/// The text of the first candidate value at location `key` of exchange `index` (with value hash
/// `hash`, when given; a JWT, when `want_jwt`), found again for a rule's evidence.
fn find_value<R: Row>(
    input: &DiscoveryInput<'_, R>,
    plausible: &RangeInclusive<i64>,
    index: usize,
    key: u64,
    hash: Option<u64>,
    want_jwt: bool,
) -> Option<String> {
    let exchange = &input.exchanges[index];
    let endpoint = endpoint(exchange.method(), exchange.path());
    let mut found = None;
    extract(exchange, &mut |o: Occurrence<'_>| {
        if found.is_some()
            || location_key(input.flows[index], &o, &endpoint) != key
            || hash.is_some_and(|h| h != value_hash(&o.value))
        {
            return;
        }
        let class = if o.number {
            classify_number(&o.value, plausible)
        } else {
            classify_text(&o.value, plausible)
        };
        if class != Class::Other && (!want_jwt || matches!(class, Class::Jwt(_))) {
            found = Some(o.value.into_owned());
        }
    });
    found
}

/// The Unix seconds a timestamp may fall in to count as one: the window widened by
/// [`PLAUSIBLE_MARGIN_S`] on each side. Replay shifts only values in this range.
pub(crate) fn plausible_range(window: (u64, u64)) -> RangeInclusive<i64> {
    let from = i64::try_from(window.0 / 1_000_000_000).unwrap_or(i64::MAX);
    let to = i64::try_from(window.1 / 1_000_000_000).unwrap_or(i64::MAX);
    from.saturating_sub(PLAUSIBLE_MARGIN_S)..=to.saturating_add(PLAUSIBLE_MARGIN_S)
}

fn example(text: &str) -> String {
    text.chars().take(EXAMPLE_CHARS).collect()
}

fn value_hash(value: &str) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Which recorded response is the source of a value a later request uses: the rules of
/// discovery's correlation join, shared with replay (one definition).
///
/// Feed the exchanges of one file in start order: for each, [`advance`](Self::advance) to its
/// start, then its request's values through [`request_value`](Self::request_value), then its
/// response's values through [`response`](Self::response). The rules:
/// - a response's values become sources once that response has ended (`advance` past its end);
/// - a value first seen in a request, before any ended response carried it, is never a source
///   (a constant, or a value the client chose);
/// - the first source wins: a value keeps the first response that carried it.
#[derive(Debug, Clone)]
pub struct SourceJoin<V, S> {
    /// Value → source, of responses that have ended.
    sources: FxHashMap<V, S>,
    /// Values seen in a request before any ended response carried them.
    seen_in_requests: FxHashSet<V>,
    /// Responses still in flight: (end, arrival order), and their values by arrival order.
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    pending_values: FxHashMap<u64, Vec<(V, S)>>,
    arrivals: u64,
}

impl<V, S> Default for SourceJoin<V, S> {
    fn default() -> Self {
        Self {
            sources: FxHashMap::default(),
            seen_in_requests: FxHashSet::default(),
            pending: BinaryHeap::new(),
            pending_values: FxHashMap::default(),
            arrivals: 0,
        }
    }
}

impl<V: Hash + Eq, S> SourceJoin<V, S> {
    /// An empty join.
    pub fn new() -> Self {
        Self::default()
    }

    /// Responses that ended at or before `now` (nanoseconds, the clock of the exchanges' starts)
    /// become the sources of their values, in the order of their ends (then of arrival).
    pub fn advance(&mut self, now: u64) {
        while let Some(Reverse((end, arrival))) = self.pending.peek().copied() {
            if end > now {
                break;
            }
            self.pending.pop();
            for (value, source) in self.pending_values.remove(&arrival).unwrap_or_default() {
                if !self.seen_in_requests.contains(&value) {
                    self.sources.entry(value).or_insert(source);
                }
            }
        }
    }

    /// A value a request uses: its source, if an ended response is one. A value with no source
    /// is remembered as seen in a request, so no later response becomes its source.
    pub fn request_value(&mut self, value: V) -> Option<&S> {
        if self.sources.contains_key(&value) {
            return self.sources.get(&value);
        }
        self.seen_in_requests.insert(value);
        None
    }

    /// The values of a response that ends at `end`, each with what identifies its source.
    pub fn response(&mut self, end: u64, values: Vec<(V, S)>) {
        if values.is_empty() {
            return;
        }
        let arrival = self.arrivals;
        self.arrivals += 1;
        self.pending.push(Reverse((end, arrival)));
        self.pending_values.insert(arrival, values);
    }
}

/// A value a request uses whose source is a recorded response, by [`SourceJoin`]'s rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedUse {
    /// The index (in the slice given) of the exchange whose request uses the value.
    pub index: usize,
    /// Where the request carries it.
    pub at: Location,
    /// The value as recorded (a JSON number as written).
    pub value: String,
    /// The index of the exchange whose response is the value's source.
    pub source: usize,
    /// Where that response carries it.
    pub source_at: Location,
}

/// Every use of a correlatable value (a JWT, UUID, id or integer, as discovery classifies them)
/// in the requests of `exchanges` (one file, sorted by start) whose source is an earlier
/// response of the same exchanges, decided by [`SourceJoin`] exactly as discovery decides it.
/// `window` is the snapshot's window (nanoseconds since the epoch), which the classifier needs.
pub fn correlation_sources<R: Row>(
    exchanges: &[R],
    flow: Flow,
    window: (u64, u64),
) -> Vec<SourcedUse> {
    let plausible = plausible_range(window);
    let mut join: SourceJoin<String, (usize, Location)> = SourceJoin::new();
    let mut out = Vec::new();
    for (index, exchange) in exchanges.iter().enumerate() {
        let start = exchange.start();
        join.advance(start);
        let endpoint = endpoint(exchange.method(), exchange.path());
        let mut requests = Vec::new();
        let mut responses = Vec::new();
        extract(exchange, &mut |o: Occurrence<'_>| {
            let class = if o.number {
                classify_number(&o.value, &plausible)
            } else {
                classify_text(&o.value, &plausible)
            };
            if !class.correlatable() {
                return;
            }
            let location = location_of(flow, &o, &endpoint);
            match o.side {
                Side::Request => requests.push((o.value.into_owned(), location)),
                Side::Response => responses.push((o.value.into_owned(), (index, location))),
            }
        });
        for (value, at) in requests {
            if let Some((source, source_at)) = join.request_value(value.clone()) {
                out.push(SourcedUse {
                    index,
                    at,
                    value,
                    source: *source,
                    source_at: source_at.clone(),
                });
            }
        }
        join.response(start.saturating_add(exchange.duration()), responses);
    }
    out
}

/// A location id, the value hash and whether the value is token-like, of a value that can carry
/// a correlation.
type Candidate = (u32, u64, bool);

/// A correlation's target: the location, its id, and the edge to it.
type Target<'a> = (Location, u32, &'a Edge);

/// One use of a captured value: its hash, the exchange it came from, the exchange that used
/// it, and whether it is token-like.
#[derive(Debug, Clone, Copy)]
struct Use {
    hash: u64,
    source_index: usize,
    index: usize,
    token_like: bool,
}

#[derive(Default)]
struct Join {
    ids: FxHashMap<u64, u32>,
    locations: Vec<Location>,
    /// Each location's key.
    keys: Vec<u64>,
    stats: Vec<LocationStats>,
    /// Per flow: which response is the source of a value (source location, exchange).
    sources: [SourceJoin<u64, (u32, usize)>; 2],
    /// Inbound requests' candidates by trace id.
    traces: FxHashMap<String, Vec<(u32, u64, usize)>>,
    /// (source location, target location, action) → edge.
    edges: FxHashMap<(u32, u32, ReplayAction), Edge>,
}

fn flow_index(flow: Flow) -> usize {
    match flow {
        Flow::Inbound => 0,
        Flow::Outbound => 1,
    }
}

impl Join {
    fn intern(&mut self, key: u64, location: Option<Box<Location>>) -> u32 {
        match self.ids.entry(key) {
            MapEntry::Occupied(entry) => *entry.get(),
            MapEntry::Vacant(entry) => {
                let id = self.locations.len() as u32;
                // A worker sends a key's location with its first value, so it is here.
                let location = location.map_or_else(Location::unknown, |l| *l);
                self.locations.push(location);
                self.keys.push(key);
                self.stats.push(LocationStats::default());
                entry.insert(id);
                id
            }
        }
    }

    fn add<R: Row>(&mut self, index: usize, input: &DiscoveryInput<'_, R>, values: Vec<Found>) {
        let exchange = &input.exchanges[index];
        let flow = input.flows[index];
        let start = exchange.start();
        for join in &mut self.sources {
            join.advance(start);
        }
        let mut requests: Vec<Candidate> = Vec::new();
        let mut responses: Vec<Candidate> = Vec::new();
        for found in values {
            let side = found.side;
            let token_like = found.token_like;
            let id = self.intern(found.key, found.location);
            let stats = &mut self.stats[id as usize];
            if stats.last_exchange != Some(index) {
                if stats.last_exchange.is_none() {
                    stats.first = index;
                }
                stats.exchanges += 1;
                stats.last_exchange = Some(index);
            }
            stats.distinct.insert(found.hash);
            match found.kind {
                Kind::Jwt => {
                    stats.jwt += 1;
                    stats.first_jwt.get_or_insert(index);
                }
                Kind::Timestamp(format) => *stats.timestamp.entry(format).or_default() += 1,
                Kind::Uuid => stats.uuid += 1,
                Kind::Id => stats.id += 1,
                Kind::Number => {}
            }
            if found.kind.correlatable() {
                match side {
                    Side::Request => requests.push((id, found.hash, token_like)),
                    Side::Response => responses.push((id, found.hash, token_like)),
                }
            }
        }
        let f = flow_index(flow);
        for &(target, hash, token_like) in &requests {
            if let Some(&(source, source_index)) = self.sources[f].request_value(hash) {
                let used = Use {
                    hash,
                    source_index,
                    index,
                    token_like,
                };
                self.edge(source, target, ReplayAction::Substitute, used);
            }
        }
        if !exchange.trace_id().is_empty() {
            match flow {
                Flow::Inbound => {
                    let entry = self
                        .traces
                        .entry(exchange.trace_id().to_owned())
                        .or_default();
                    entry.extend(requests.iter().map(|&(id, hash, _)| (id, hash, index)));
                }
                Flow::Outbound => {
                    let matches: Vec<(u32, u32, Use)> = match self.traces.get(exchange.trace_id()) {
                        Some(inbound) => requests
                            .iter()
                            .filter_map(|&(target, hash, token_like)| {
                                inbound.iter().find(|(_, h, _)| *h == hash).map(
                                    |&(source, _, source_index)| {
                                        let used = Use {
                                            hash,
                                            source_index,
                                            index,
                                            token_like,
                                        };
                                        (source, target, used)
                                    },
                                )
                            })
                            .collect(),
                        None => Vec::new(),
                    };
                    for (source, target, used) in matches {
                        self.edge(source, target, ReplayAction::Propagate, used);
                    }
                }
            }
        }
        if !responses.is_empty() {
            let end = start.saturating_add(exchange.duration());
            self.sources[f].response(
                end,
                responses
                    .into_iter()
                    .map(|(location, hash, _)| (hash, (location, index)))
                    .collect(),
            );
        }
    }

    fn edge(&mut self, source: u32, target: u32, action: ReplayAction, used: Use) {
        let edge = self
            .edges
            .entry((source, target, action))
            .or_insert_with(|| Edge {
                users: Vec::new(),
                distinct: FxHashSet::default(),
                first_source: used.source_index,
                first_use: used.index,
                first_hash: used.hash,
                token_like: used.token_like,
            });
        let user = used.index as u32;
        if edge.users.last() != Some(&user) {
            edge.users.push(user);
        }
        edge.distinct.insert(used.hash);
        edge.token_like |= used.token_like;
    }

    fn position<R>(input: &DiscoveryInput<'_, R>, index: usize) -> Position {
        Position {
            file: format!("{}.jsonl", input.flows[index].as_str()),
            line: input.lines[index],
        }
    }

    fn rules<R: Row>(self, input: &DiscoveryInput<'_, R>) -> Vec<TokenRule> {
        let plausible = plausible_range(input.window);
        // Correlations: an edge counts when its values differ from use to use, or when one
        // value is a token (a single login's JWT), so constants never become correlations.
        let mut grouped: BTreeMap<(Location, ReplayAction), Vec<Target<'_>>> = BTreeMap::new();
        for ((source, target, action), edge) in &self.edges {
            let source_distinct = self.stats[*source as usize].distinct.len();
            if edge.distinct.len() >= 2 || (edge.token_like && source_distinct >= 1) {
                grouped
                    .entry((self.locations[*source as usize].clone(), *action))
                    .or_default()
                    .push((self.locations[*target as usize].clone(), *target, edge));
            }
        }
        let mut correlated: HashSet<Location> = HashSet::new();
        let mut rules = Vec::new();
        let mut edge_examples: Vec<(usize, String)> = Vec::new();
        for ((at, action), mut targets) in grouped {
            targets.sort_by(|a, b| a.0.cmp(&b.0));
            let targets: Vec<(Location, &Edge)> = targets
                .into_iter()
                .map(|(location, id, edge)| {
                    edge_examples.push((
                        edge.first_use,
                        find_value(
                            input,
                            &plausible,
                            edge.first_use,
                            self.keys[id as usize],
                            Some(edge.first_hash),
                            false,
                        )
                        .map(|v| example(&v))
                        .unwrap_or_default(),
                    ));
                    (location, edge)
                })
                .collect();
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
            let (first_use, example) = edge_examples.drain(..).min().unwrap_or_default();
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
            let key = self.keys[id];
            // The first JWT here, decoded again (the join keeps no values).
            let claims = stats
                .first_jwt
                .filter(|_| stats.jwt * 2 > stats.exchanges.max(1))
                .and_then(|at| find_value(input, &plausible, at, key, None, true))
                .and_then(|token| decode_jwt(&token));
            let mostly = |count: u64| count * 10 >= total * 9;
            let kind = if stats.jwt * 2 > total
                && (distinct >= 2 || claims.as_ref().is_some_and(|c| !c.time_claims.is_empty()))
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
                .then(|| claims.as_ref().map(jwt_info))
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
                    example: (kind != TokenKind::Jwt)
                        .then(|| find_value(input, &plausible, stats.first, key, None, false))
                        .flatten()
                        .map(|v| example(&v)),
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
