//! The snapshot loaded for serving: recordings indexed by host alias, method and endpoint, each
//! request field with the matching mode its token rules give it.
//!
//! The snapshot is read once, line by line, through `tapedeck_analyzer::snapshot::read_with`
//! (validated as `read` does, every problem named by file and line), and turned into compact
//! [`Recording`]s; the parsed lines are dropped.
//!
//! The response bodies are not kept in RAM: at load they are written one after another into an
//! unlinked temp file, which is memory-mapped; each [`Recording::body`] is a slice of that
//! mapping, so the kernel pages bodies in when they are served and can drop them again
//! (docs/responder.md, "Memory").

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::ops::Range;

use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use tapedeck_analyzer::replay::shift::plausible_range;
use tapedeck_analyzer::snapshot::{self, Entry, HeaderEntry, HeaderValue};
use tapedeck_analyzer::template::{endpoint, path_without_query};
use tapedeck_analyzer::tokens::{Flow, ReplayAction, Side, TokenKind, TokenRule};
use tapedeck_proto::{Header, REDACTED_PREFIX};

use crate::fields::{self, Field};

/// How one request field of a recording is compared with the live request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Byte for byte.
    Exact,
    /// Not compared; the reason names the rule (or the redaction) that made it so.
    Wildcard(String),
    /// By token class (a fresh JWT matches a JWT, a new timestamp a timestamp); the rule's name.
    Class(String),
    /// The recorded value holds a redaction marker: compared by keyed hash with
    /// `--redaction-key`, else not compared.
    Redacted,
}

/// The recorded values at one field key.
#[derive(Debug, Clone)]
pub struct FieldGroup {
    /// The field key (`query page`, `json $.order`).
    pub key: String,
    /// The values in order, with whether each is a JSON number.
    pub values: Vec<(String, bool)>,
    /// How they are compared.
    pub mode: Mode,
}

/// One recorded outbound call, ready to match and serve.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The 1-based line of `outbound.jsonl`.
    pub line: u64,
    /// The exchange id.
    pub id: String,
    /// Index of its host in [`Store::hosts`].
    pub host: usize,
    /// The request method.
    pub method: String,
    /// The request path with its query.
    pub path: String,
    /// `METHOD /template`.
    pub endpoint: String,
    /// The recorded trace id.
    pub trace_id: String,
    /// The 1-based line of the inbound request that caused the call.
    pub caused_by: Option<u32>,
    /// The request's fields, grouped by key, sorted by key.
    pub fields: Vec<FieldGroup>,
    /// The response status; 0: no response was recorded (served as a reset).
    pub status: u32,
    /// The response headers as recorded.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The response body as recorded (a prefix when `truncated`): a slice of the mapped body
    /// file ([`Store::is_mapped`]), not a heap copy.
    pub body: Bytes,
    /// The response trailers.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The recorded response body is a prefix of the real one.
    pub truncated: bool,
    /// The real response body size.
    pub size: u64,
    /// Nanoseconds to the response headers (0: unknown).
    pub headers_ns: u64,
    /// Nanoseconds to the response end.
    pub duration_ns: u64,
    /// The recorded protocol word.
    pub protocol: String,
    /// Rules (indices of [`Store::rules`]) that edit this recording's response: timestamp
    /// shifts and JWT re-signing.
    pub response_rules: Vec<usize>,
    /// The headers served when nothing is edited: the recorded ones without hop-by-hop
    /// headers, with `content-length` recomputed and `x-tapedeck-recording` (and
    /// `x-tapedeck-truncated`) added; built once at load.
    pub served_headers: HeaderList,
    /// The trailers served.
    pub served_trailers: Option<HeaderMap>,
}

impl Recording {
    /// The ids of the recording in responses and the explain log: `<snapshot id>/<line>`.
    pub fn name(&self, snapshot_id: &str) -> String {
        format!("{snapshot_id}/{}", self.line)
    }
}

/// A recorded host and the names that reach it.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// The recorded authority.
    pub authority: String,
    /// Every alias, in priority order.
    pub aliases: Vec<String>,
}

/// Buckets with at least this many recordings get an exact-path index.
pub const BY_PATH_MIN: usize = 8;

/// The recordings of one host, method and endpoint.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// Indices of [`Store::recordings`], in recorded order.
    pub recordings: Vec<u32>,
    /// The same by exact path (without query), when the bucket has [`BY_PATH_MIN`] recordings
    /// or more and none compares a path segment loosely (so a differing path can never match).
    pub by_path: Option<FxHashMap<String, Vec<u32>>>,
}

/// The loaded snapshot.
#[derive(Debug)]
pub struct Store {
    /// The snapshot id.
    pub id: String,
    /// The window start, ns since the epoch.
    pub window_from_ns: u64,
    /// The plausible timestamp range (the window ± 366 days, Unix seconds).
    pub plausible: RangeInclusive<i64>,
    /// The token rules.
    pub rules: Vec<TokenRule>,
    /// The recorded hosts.
    pub hosts: Vec<HostInfo>,
    /// The recordings, in `outbound.jsonl` order.
    pub recordings: Vec<Recording>,
    /// Lowercase alias → host index.
    aliases: FxHashMap<String, usize>,
    /// Per host: endpoint → bucket.
    buckets: Vec<FxHashMap<String, Bucket>>,
    /// Host → its buckets' endpoints.
    endpoints: Vec<Vec<String>>,
    /// The whole mapped body file (empty when no recording has a body).
    bodies: Bytes,
}

/// The response bodies being written to the temp file at load, and where each one is.
#[derive(Debug)]
struct BodyWriter {
    /// Where the temp file is made (for errors).
    dir: std::path::PathBuf,
    file: BufWriter<File>,
    len: usize,
    ranges: Vec<Range<usize>>,
}

impl BodyWriter {
    fn new(dir: &Path) -> crate::Result<BodyWriter> {
        let file = tempfile::tempfile_in(dir).map_err(|source| crate::Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(BodyWriter {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
            ranges: Vec::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> crate::Error {
        crate::Error::Io {
            path: self.dir.join("(response body temp file)"),
            source,
        }
    }

    /// Appends one recording's body.
    fn push(&mut self, body: &[u8]) -> crate::Result<()> {
        self.file.write_all(body).map_err(|e| self.io(e))?;
        self.ranges.push(self.len..self.len + body.len());
        self.len += body.len();
        Ok(())
    }

    /// Maps the file: the whole mapping and each body's range in it.
    fn finish(self) -> crate::Result<(Bytes, Vec<Range<usize>>)> {
        if self.len == 0 {
            return Ok((Bytes::new(), self.ranges));
        }
        let dir = self.dir;
        let io = |source| crate::Error::Io {
            path: dir.join("(response body temp file)"),
            source,
        };
        let file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        // SAFETY: the file was created unlinked by this process (`tempfile_in`), so no other
        // process can open it, and this process never writes it again: the mapping cannot
        // change under the slices handed out.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Ok((Bytes::from_owner(map), self.ranges))
    }
}

fn header_bytes(value: &HeaderValue) -> Vec<u8> {
    match value {
        HeaderValue::Text(text) => text.as_bytes().to_vec(),
        HeaderValue::Binary(bytes) => bytes.base64.clone(),
    }
}

fn owned_headers(headers: &[HeaderEntry]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|HeaderEntry(name, value)| (name.clone(), header_bytes(value)))
        .collect()
}

/// The names a host is reached by, best first: the recorded authority, the FQDN (and port) of
/// its Envoy cluster, then the short names (`payments`, `payments.shop`, …) with and without
/// the port.
fn aliases_of(authority: &str, cluster: &str) -> Vec<String> {
    let authority = authority.to_ascii_lowercase();
    let mut out = vec![authority.clone()];
    let mut names: Vec<(String, Option<String>)> = vec![split_port(&authority)];
    // Envoy: `outbound|8080||payments.shop.svc.cluster.local`.
    let parts: Vec<&str> = cluster.split('|').collect();
    if parts.len() == 4 && parts[0] == "outbound" && !parts[3].is_empty() {
        let fqdn = parts[3].to_ascii_lowercase();
        let port = (!parts[1].is_empty()).then(|| parts[1].to_owned());
        if let Some(port) = &port {
            out.push(format!("{fqdn}:{port}"));
        }
        out.push(fqdn.clone());
        names.push((fqdn, port));
    }
    for (host, port) in names {
        if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
            out.push(host);
            continue;
        }
        let labels: Vec<&str> = host.split('.').collect();
        for n in 1..=labels.len() {
            let short = labels[..n].join(".");
            if let Some(port) = &port {
                out.push(format!("{short}:{port}"));
            }
            out.push(short);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|a| seen.insert(a.clone()));
    out
}

/// `host:port` → (`host`, `port`).
pub fn split_port(authority: &str) -> (String, Option<String>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        if let Some((host, port)) = rest.split_once("]:") {
            return (format!("[{host}]"), Some(port.to_owned()));
        }
        return (authority.to_owned(), None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host.to_owned(), Some(port.to_owned()))
        }
        _ => (authority.to_owned(), None),
    }
}

/// A rule's effect on request fields of outbound calls: (field key, endpoint scope, mode).
fn request_modes(rules: &[TokenRule]) -> Vec<(String, Option<String>, Mode)> {
    let mut out = Vec::new();
    for rule in rules {
        let targets: Vec<&tapedeck_analyzer::tokens::Location> =
            if rule.kind == TokenKind::Correlation {
                rule.to.iter().collect()
            } else {
                vec![&rule.at]
            };
        for location in targets {
            if location.direction != Flow::Outbound || location.message != Side::Request {
                continue;
            }
            let Some(key) = fields::location_key(location) else {
                continue;
            };
            let mode = match (rule.kind, rule.replay) {
                (_, ReplayAction::Keep) => continue,
                (_, ReplayAction::Ignore) => {
                    Mode::Wildcard(format!("rule {:?}: ignore", rule.name))
                }
                (_, ReplayAction::Propagate) => {
                    Mode::Wildcard(format!("rule {:?}: propagate target", rule.name))
                }
                (_, ReplayAction::Resign | ReplayAction::Shift | ReplayAction::Substitute) => {
                    Mode::Class(rule.name.clone())
                }
            };
            out.push((key, location.endpoint.clone(), mode));
        }
    }
    out
}

fn strength(mode: &Mode) -> u8 {
    match mode {
        Mode::Wildcard(_) => 3,
        Mode::Class(_) => 2,
        Mode::Redacted => 1,
        Mode::Exact => 0,
    }
}

/// Whether a recorded value holds a redaction marker (whole, or as a JWT's signature).
pub fn is_redacted(value: &str) -> bool {
    value.starts_with(REDACTED_PREFIX)
        || value
            .rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(REDACTED_PREFIX))
}

impl Store {
    /// Reads a snapshot and indexes it; the response bodies go to an unlinked temp file in the
    /// system temp directory (`TMPDIR`), which is then mapped. Each outbound line's response
    /// body is moved there as soon as the line is parsed, so the bodies are never all in RAM.
    pub fn load(dir: &Path) -> crate::Result<Store> {
        let mut bodies = BodyWriter::new(&std::env::temp_dir())?;
        let mut failed = None;
        let snap = snapshot::read_with(dir, |_, entry| {
            let body = entry.response.body.take();
            if failed.is_none()
                && let Err(error) = bodies.push(body.as_ref().map_or(&[][..], |b| b.as_bytes()))
            {
                failed = Some(error);
            }
        })?;
        if let Some(error) = failed {
            return Err(error);
        }
        Store::index(snap, bodies)
    }

    /// Indexes a snapshot already read; the response bodies go to an unlinked temp file made in
    /// `body_dir`, which is then memory-mapped.
    pub fn from_snapshot(mut snap: snapshot::Snapshot, body_dir: &Path) -> crate::Result<Store> {
        let mut bodies = BodyWriter::new(body_dir)?;
        for entry in &mut snap.outbound {
            let body = entry.response.body.take();
            bodies.push(body.as_ref().map_or(&[][..], |b| b.as_bytes()))?;
        }
        Store::index(snap, bodies)
    }

    /// Indexes a snapshot whose outbound response bodies are in `bodies` (one per line, in
    /// order) and no longer in the entries.
    fn index(snap: snapshot::Snapshot, body_writer: BodyWriter) -> crate::Result<Store> {
        let (bodies, ranges) = body_writer.finish()?;
        let manifest = snap.manifest;
        let inbound_lines: HashMap<String, u32> = snap
            .inbound
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i as u32 + 1))
            .collect();
        drop(snap.inbound);
        let modes = request_modes(&manifest.tokens);
        let mut hosts: Vec<HostInfo> = Vec::new();
        let mut host_index: HashMap<String, usize> = HashMap::new();
        let mut recordings = Vec::with_capacity(snap.outbound.len());
        for ((i, entry), range) in snap.outbound.into_iter().enumerate().zip(ranges) {
            let host = *host_index
                .entry(entry.authority.clone())
                .or_insert_with(|| {
                    hosts.push(HostInfo {
                        authority: entry.authority.clone(),
                        aliases: aliases_of(&entry.authority, &entry.capture.cluster),
                    });
                    hosts.len() - 1
                });
            recordings.push(recording(
                &manifest.id,
                i as u64 + 1,
                host,
                entry,
                &inbound_lines,
                &modes,
                &manifest.tokens,
                bodies.slice(range),
            ));
        }
        // Aliases: a better-ranked name wins; among equals, the first host.
        let mut aliases: HashMap<String, (usize, usize)> = HashMap::new();
        for (h, info) in hosts.iter().enumerate() {
            for (rank, alias) in info.aliases.iter().enumerate() {
                let rank = if rank == 0 { 0 } else { rank + 1 };
                match aliases.get(alias) {
                    Some((other, best)) if *best <= rank => {
                        if *other != h && *best == rank {
                            tracing::warn!(
                                alias,
                                "Host alias names two recorded hosts; the first wins."
                            );
                        }
                    }
                    _ => {
                        aliases.insert(alias.clone(), (h, rank));
                    }
                }
            }
        }
        let mut buckets: Vec<FxHashMap<String, Bucket>> = vec![FxHashMap::default(); hosts.len()];
        for (i, rec) in recordings.iter().enumerate() {
            buckets[rec.host]
                .entry(rec.endpoint.clone())
                .or_default()
                .recordings
                .push(i as u32);
        }
        let mut endpoints = vec![Vec::new(); hosts.len()];
        for (host, bucket) in buckets
            .iter_mut()
            .enumerate()
            .flat_map(|(h, map)| map.iter_mut().map(move |(e, b)| (h, (e, b))))
        {
            let (endpoint, bucket) = bucket;
            endpoints[host].push(endpoint.clone());
            let loose = bucket.recordings.iter().any(|r| {
                recordings[*r as usize]
                    .fields
                    .iter()
                    .any(|g| g.key.starts_with("path ") && g.mode != Mode::Exact)
            });
            // Small buckets are scanned: the index would cost more memory than it saves time.
            if !loose && bucket.recordings.len() >= BY_PATH_MIN {
                let mut by_path: FxHashMap<String, Vec<u32>> = FxHashMap::default();
                for r in &bucket.recordings {
                    by_path
                        .entry(path_without_query(&recordings[*r as usize].path).to_owned())
                        .or_default()
                        .push(*r);
                }
                bucket.by_path = Some(by_path);
            }
        }
        for list in &mut endpoints {
            list.sort();
        }
        Ok(Store {
            id: manifest.id,
            window_from_ns: manifest.window.from.0,
            plausible: plausible_range(manifest.window.from.0, manifest.window.to.0),
            rules: manifest.tokens,
            hosts,
            recordings,
            aliases: aliases.into_iter().map(|(k, (h, _))| (k, h)).collect(),
            buckets,
            endpoints,
            bodies,
        })
    }

    /// Whether `body` is a slice of the mapped body file (an empty body always is).
    pub fn is_mapped(&self, body: &Bytes) -> bool {
        let map = self.bodies.as_ptr() as usize..self.bodies.as_ptr() as usize + self.bodies.len();
        let at = body.as_ptr() as usize;
        body.is_empty() || (map.contains(&at) && at + body.len() <= map.end)
    }

    /// The size of the mapped body file: every recorded response body, once.
    pub fn mapped_bytes(&self) -> usize {
        self.bodies.len()
    }

    /// The host a live `Host` / `:authority` reaches: the exact alias, else without the port.
    pub fn host(&self, authority: &str) -> Option<usize> {
        let lower = authority.trim_end_matches('.').to_ascii_lowercase();
        if let Some(h) = self.aliases.get(&lower) {
            return Some(*h);
        }
        let (name, _) = split_port(&lower);
        self.aliases.get(name.trim_end_matches('.')).copied()
    }

    /// The bucket of a host and endpoint.
    pub fn bucket(&self, host: usize, endpoint: &str) -> Option<&Bucket> {
        self.buckets.get(host)?.get(endpoint)
    }

    /// The endpoints recorded for a host, sorted.
    pub fn endpoints(&self, host: usize) -> &[String] {
        self.endpoints.get(host).map_or(&[], Vec::as_slice)
    }
}

/// Headers kept compactly (a `HeaderMap` reserves room for growth; these never grow).
pub type HeaderList = Box<[(HeaderName, http::HeaderValue)]>;

/// A header list as a map, for serving.
pub fn to_map(list: &[(HeaderName, http::HeaderValue)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(list.len() + 1);
    for (name, value) in list {
        map.append(name.clone(), value.clone());
    }
    map
}

/// A map as a header list, every value kept (duplicates included), in order.
pub fn to_list(map: HeaderMap) -> HeaderList {
    // A map's iterator names a header once, then gives its further values without the name.
    let mut list = Vec::with_capacity(map.len());
    let mut last: Option<HeaderName> = None;
    for (name, value) in map {
        if let Some(name) = name {
            last = Some(name);
        }
        if let Some(name) = &last {
            list.push((name.clone(), value));
        }
    }
    list.into_boxed_slice()
}

/// The response header naming the recording served.
pub const RECORDING_HEADER: &str = "x-tapedeck-recording";
/// The response header flagging a truncated recorded body (`<served bytes>/<recorded size>`).
pub const TRUNCATED_HEADER: &str = "x-tapedeck-truncated";

/// Hop-by-hop headers, never served from a recording (and `content-length`, recomputed).
const DROPPED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers as an `http` map: pseudo-headers and names or values `http` refuses are left out,
/// and with `serving`, hop-by-hop headers and `content-length` too.
pub fn header_map(headers: &[(String, Vec<u8>)], serving: bool) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        if name.starts_with(':')
            || serving && DROPPED_HEADERS.iter().any(|d| d.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// The headers a recording's response is served with, for these headers and body.
pub fn served_headers(
    snapshot_id: &str,
    rec_line: u64,
    status: u32,
    headers: &[(String, Vec<u8>)],
    body_len: usize,
    has_trailers: bool,
    truncated_size: Option<u64>,
) -> HeaderMap {
    let mut map = header_map(headers, true);
    if let Ok(value) = http::HeaderValue::from_str(&format!("{snapshot_id}/{rec_line}")) {
        map.insert(RECORDING_HEADER, value);
    }
    if let Some(size) = truncated_size
        && let Ok(value) = http::HeaderValue::from_str(&format!("{body_len}/{size}"))
    {
        map.insert(TRUNCATED_HEADER, value);
    }
    if !has_trailers && status != 204 && status != 304 {
        map.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body_len),
        );
    }
    map
}

#[allow(clippy::too_many_arguments)] // The recording's context, passed once at load.
fn recording(
    snapshot_id: &str,
    line: u64,
    host: usize,
    entry: Entry,
    inbound_lines: &HashMap<String, u32>,
    modes: &[(String, Option<String>, Mode)],
    rules: &[TokenRule],
    response_body: Bytes,
) -> Recording {
    let endpoint = endpoint(&entry.method, &entry.path);
    let request_headers: Vec<Header> = owned_headers(&entry.request.headers)
        .into_iter()
        .map(|(name, value)| Header { name, value })
        .collect();
    let body = entry
        .request
        .body
        .as_ref()
        .map(|b| b.as_bytes())
        .unwrap_or_default();
    let flat = fields::flatten(&entry.path, &request_headers, body, entry.request.truncated);
    let fields = group(flat, &endpoint, modes);
    let response_rules = rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| {
            rule.at.direction == Flow::Outbound
                && rule.at.message == Side::Response
                && matches!(rule.replay, ReplayAction::Shift | ReplayAction::Resign)
                && rule.at.endpoint.as_deref().is_none_or(|e| e == endpoint)
        })
        .map(|(i, _)| i)
        .collect();
    // `entry.response.body` was moved to the body file; `response_body` is its mapped slice.
    let headers = owned_headers(&entry.response.headers);
    let trailers = owned_headers(&entry.response.trailers);
    let size = entry.response.size.unwrap_or(response_body.len() as u64);
    let served_headers = served_headers(
        snapshot_id,
        line,
        entry.status,
        &headers,
        response_body.len(),
        !trailers.is_empty(),
        entry.response.truncated.then_some(size),
    );
    let served_headers = to_list(served_headers);
    let served_trailers = (!trailers.is_empty()).then(|| header_map(&trailers, true));
    Recording {
        line,
        served_headers,
        served_trailers,
        caused_by: entry
            .caused_by
            .as_ref()
            .and_then(|id| inbound_lines.get(id).copied()),
        host,
        endpoint,
        trace_id: entry.trace_id,
        fields,
        status: entry.status,
        headers,
        size,
        body: response_body,
        trailers,
        truncated: entry.response.truncated,
        headers_ns: entry.response_headers_ns,
        duration_ns: entry.duration_ns,
        protocol: entry.protocol,
        response_rules,
        id: entry.id,
        method: entry.method,
        path: entry.path,
    }
}

/// Groups fields by key (values in order), sorted by key, each with its mode.
pub fn group(
    flat: Vec<Field>,
    endpoint: &str,
    modes: &[(String, Option<String>, Mode)],
) -> Vec<FieldGroup> {
    let mut groups: Vec<FieldGroup> = Vec::new();
    for field in flat {
        match groups.iter_mut().find(|g| g.key == field.key) {
            Some(g) => g.values.push((field.value, field.number)),
            None => groups.push(FieldGroup {
                key: field.key,
                values: vec![(field.value, field.number)],
                mode: Mode::Exact,
            }),
        }
    }
    for g in &mut groups {
        let mut mode = if g.values.iter().any(|(v, _)| is_redacted(v)) {
            Mode::Redacted
        } else {
            Mode::Exact
        };
        for (key, scope, rule_mode) in modes {
            if *key == g.key
                && scope.as_deref().is_none_or(|e| e == endpoint)
                && strength(rule_mode) > strength(&mode)
            {
                mode = rule_mode.clone();
            }
        }
        g.mode = mode;
    }
    groups.sort_by(|a, b| a.key.cmp(&b.key));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_reach_one_host() {
        let aliases = aliases_of(
            "payments.shop.svc:8080",
            "outbound|8080||payments.shop.svc.cluster.local",
        );
        for name in [
            "payments.shop.svc:8080",
            "payments.shop.svc.cluster.local:8080",
            "payments.shop.svc.cluster.local",
            "payments",
            "payments:8080",
            "payments.shop",
        ] {
            assert!(aliases.contains(&name.to_owned()), "{name}: {aliases:?}");
        }
        assert_eq!(aliases[0], "payments.shop.svc:8080");
        assert_eq!(aliases_of("127.0.0.1:9", ""), ["127.0.0.1:9", "127.0.0.1"]);
        assert_eq!(
            split_port("[::1]:80"),
            ("[::1]".to_owned(), Some("80".to_owned()))
        );
    }

    #[test]
    fn served_headers_keep_duplicates_and_drop_hop_by_hop() {
        let headers = vec![
            ("set-cookie".to_owned(), b"a=1".to_vec()),
            ("connection".to_owned(), b"close".to_vec()),
            ("set-cookie".to_owned(), b"b=2".to_vec()),
            ("content-length".to_owned(), b"999".to_vec()),
        ];
        let list = to_list(served_headers("snap", 7, 200, &headers, 3, false, None));
        let seen: Vec<String> = list
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                "set-cookie: a=1",
                "set-cookie: b=2",
                "x-tapedeck-recording: snap/7",
                "content-length: 3"
            ]
        );
        assert_eq!(to_map(&list).get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn redaction_markers_are_seen() {
        assert!(is_redacted("tapedeck-redacted:hmac-sha256:00"));
        assert!(is_redacted("eyJh.eyJi.tapedeck-redacted:hmac-sha256:00"));
        assert!(!is_redacted("plain"));
    }
}
