//! Response validation: a live response compared with the recorded one.
//!
//! The interface is small on purpose, so that the verdict (noise rules, three-way comparison
//! against a baseline) can extend it: [`Comparer::compare`] turns one pair of responses into a
//! list of [`Difference`]s, each naming a [`Field`]; a [`Skip`] decides which fields are not
//! compared; [`DiffSummary`] groups differences by endpoint and field with examples.
//!
//! What is compared: the status; the headers chosen with `--compare-header` (by default
//! `content-type`); the body — structurally when both bodies are JSON (object keys in any order,
//! arrays element by element, numbers by value), else byte for byte. Fields at an inbound
//! response location of a token rule are skipped (their values change by design), and so are
//! those the user lists with `--ignore`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tapedeck_analyzer::replay::edit::LiveMessage;
use tapedeck_analyzer::tokens::{Location, Part};

/// A field of a response.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "in", rename_all = "lowercase")]
pub enum Field {
    /// The status code.
    Status,
    /// A header (lowercase name).
    Header {
        /// The name.
        name: String,
    },
    /// A trailer (lowercase name): `grpc-status`.
    Trailer {
        /// The name.
        name: String,
    },
    /// A leaf or subtree of a JSON body, by path (`$.items[*].sku`: array indexes written `[*]`
    /// so that a path names a field of every element, as token rules do).
    Json {
        /// The path.
        path: String,
    },
    /// A body that is not JSON (on either side), compared as bytes.
    Body,
}

impl Field {
    /// How the field is written in reports and in `--ignore`: `status`, `header content-type`,
    /// `$.items[*].sku`, `body`.
    pub fn describe(&self) -> String {
        match self {
            Field::Status => "status".to_owned(),
            Field::Header { name } => format!("header {name}"),
            Field::Trailer { name } => format!("trailer {name}"),
            Field::Json { path } => path.clone(),
            Field::Body => "body".to_owned(),
        }
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Where.
    pub field: Field,
    /// The recorded value (absent: the live response added it).
    pub recorded: Option<String>,
    /// The live value (absent: the live response lacks it).
    pub live: Option<String>,
}

/// A response as the diff sees it.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// The status.
    pub status: u16,
    /// Headers and body.
    pub message: &'a LiveMessage,
    /// Trailers (gRPC's `grpc-status`).
    pub trailers: &'a [(String, Vec<u8>)],
}

/// Which fields are not compared, for one endpoint.
pub trait Skip {
    /// Whether `field` of a response of `endpoint` is left out.
    fn skip(&self, endpoint: &str, field: &Field) -> bool;
}

/// An `--ignore` entry: `FIELD` for every endpoint, or `METHOD /template FIELD` for one
/// (`$.updated_at`, `header etag`, `GET /orders/{id} $.updated_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignore {
    /// The endpoint, when scoped.
    pub endpoint: Option<String>,
    /// The field as [`Field::describe`] writes it; a JSON path also covers what is under it.
    pub field: String,
}

impl Ignore {
    /// Parses an `--ignore` value.
    pub fn parse(text: &str) -> Ignore {
        let text = text.trim();
        let mut words = text.splitn(3, ' ');
        let first = words.next().unwrap_or("");
        if first.chars().all(|c| c.is_ascii_uppercase())
            && !first.is_empty()
            && let (Some(path), Some(field)) = (words.next(), words.next())
        {
            return Ignore {
                endpoint: Some(format!("{first} {path}")),
                field: field.trim().to_owned(),
            };
        }
        Ignore {
            endpoint: None,
            field: text.to_owned(),
        }
    }

    fn covers(&self, endpoint: &str, field: &str) -> bool {
        self.endpoint.as_deref().is_none_or(|e| e == endpoint) && covers(&self.field, field)
    }
}

/// Whether `rule` (a field spelling) covers `field`: equal, or a JSON path prefix at a
/// boundary (`$.a` covers `$.a.b` and `$.a[*]`, not `$.ab`).
fn covers(rule: &str, field: &str) -> bool {
    field == rule
        || (rule.starts_with('$')
            && field.starts_with(rule)
            && matches!(field.as_bytes().get(rule.len()), Some(b'.' | b'[')))
}

/// The skips of a run: token rule locations on inbound responses and `--ignore`.
#[derive(Debug, Clone, Default)]
pub struct Skips {
    /// (endpoint scope, field) of token rules.
    rules: Vec<(Option<String>, String)>,
    ignores: Vec<Ignore>,
}

impl Skips {
    /// Skips from token rule locations (inbound response ones) and `--ignore` entries.
    pub fn new(locations: &[Location], ignores: Vec<Ignore>) -> Skips {
        let rules = locations
            .iter()
            .filter_map(|l| {
                let field = match l.part {
                    Part::Json => l.path.clone()?,
                    Part::Header => format!("header {}", l.name.as_deref()?),
                    Part::Cookie => "header set-cookie".to_owned(),
                    Part::Query | Part::Path => return None,
                };
                Some((l.endpoint.clone(), field))
            })
            .collect();
        Skips { rules, ignores }
    }
}

impl Skip for Skips {
    fn skip(&self, endpoint: &str, field: &Field) -> bool {
        let text = field.describe();
        self.rules
            .iter()
            .any(|(e, f)| e.as_deref().is_none_or(|e| e == endpoint) && covers(f, &text))
            || self.ignores.iter().any(|i| i.covers(endpoint, &text))
    }
}

/// Compares responses.
#[derive(Debug, Clone)]
pub struct Comparer {
    /// Headers compared (lowercase).
    pub headers: Vec<String>,
}

impl Default for Comparer {
    fn default() -> Self {
        Comparer {
            headers: vec!["content-type".to_owned()],
        }
    }
}

fn header<'a>(message: &'a LiveMessage, name: &str) -> Option<&'a [u8]> {
    message
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

fn text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn parse_json(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

impl Comparer {
    /// The differences between a recorded and a live response of `endpoint`.
    pub fn compare(
        &self,
        endpoint: &str,
        recorded: ResponseView<'_>,
        live: ResponseView<'_>,
        skip: &dyn Skip,
    ) -> Vec<Difference> {
        let mut out = Vec::new();
        let mut push = |field: Field, recorded: Option<String>, live: Option<String>| {
            if !skip.skip(endpoint, &field) {
                out.push(Difference {
                    field,
                    recorded,
                    live,
                });
            }
        };
        if recorded.status != live.status {
            push(
                Field::Status,
                Some(recorded.status.to_string()),
                Some(live.status.to_string()),
            );
        }
        for name in &self.headers {
            let (r, l) = (header(recorded.message, name), header(live.message, name));
            if r != l {
                push(
                    Field::Header { name: name.clone() },
                    r.map(text),
                    l.map(text),
                );
            }
        }
        // gRPC: the status is a trailer (or a header of a trailers-only response).
        fn grpc<'a>(view: &ResponseView<'a>) -> Option<&'a [u8]> {
            view.trailers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
                .map(|(_, v)| v.as_slice())
                .or_else(|| header(view.message, "grpc-status"))
        }
        if let Some(r) = grpc(&recorded) {
            let l = grpc(&live);
            if Some(r) != l {
                push(
                    Field::Trailer {
                        name: "grpc-status".to_owned(),
                    },
                    Some(text(r)),
                    l.map(text),
                );
            }
        }
        let (rb, lb) = (&recorded.message.body, &live.message.body);
        if rb == lb {
            return out;
        }
        match (parse_json(rb), parse_json(lb)) {
            (Some(r), Some(l)) => json(&mut String::from("$"), &r, &l, &mut push),
            _ => push(Field::Body, Some(text(rb)), Some(text(lb))),
        }
        out
    }
}

fn leaf(value: &Value) -> String {
    let mut out = value.to_string();
    if out.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn key_path(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

fn json(
    path: &mut String,
    recorded: &Value,
    live: &Value,
    push: &mut dyn FnMut(Field, Option<String>, Option<String>),
) {
    match (recorded, live) {
        (Value::Object(r), Value::Object(l)) => {
            for (key, rv) in r {
                let child = key_path(path, key);
                match l.get(key) {
                    Some(lv) => json(&mut child.clone(), rv, lv, push),
                    None => push(Field::Json { path: child }, Some(leaf(rv)), None),
                }
            }
            for (key, lv) in l {
                if !r.contains_key(key) {
                    push(
                        Field::Json {
                            path: key_path(path, key),
                        },
                        None,
                        Some(leaf(lv)),
                    );
                }
            }
        }
        (Value::Array(r), Value::Array(l)) => {
            let child = format!("{path}[*]");
            for i in 0..r.len().max(l.len()) {
                match (r.get(i), l.get(i)) {
                    (Some(rv), Some(lv)) => json(&mut child.clone(), rv, lv, push),
                    (rv, lv) => push(
                        Field::Json {
                            path: child.clone(),
                        },
                        rv.map(leaf),
                        lv.map(leaf),
                    ),
                }
            }
        }
        (Value::Number(r), Value::Number(l)) if r.as_f64() == l.as_f64() => {}
        (r, l) if r == l => {}
        (r, l) => push(
            Field::Json { path: path.clone() },
            Some(leaf(r)),
            Some(leaf(l)),
        ),
    }
}

/// One example of a difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// The 1-based line of `inbound.jsonl`.
    pub line: u32,
    /// The copy.
    pub copy: u32,
    /// The iteration.
    pub iteration: u32,
    /// The recorded value.
    pub recorded: Option<String>,
    /// The live value.
    pub live: Option<String>,
}

/// Differences of one endpoint and field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffGroup {
    /// `METHOD /template`.
    pub endpoint: String,
    /// The field, as [`Field::describe`] writes it.
    pub field: String,
    /// How many responses differed there.
    pub count: u64,
    /// The first few.
    pub examples: Vec<Example>,
}

/// Examples kept per group.
pub const EXAMPLES: usize = 3;

/// Differences grouped by endpoint and field.
#[derive(Debug, Clone, Default)]
pub struct DiffSummary {
    groups: BTreeMap<(String, Field), (u64, Vec<Example>)>,
    /// Responses with at least one difference, per endpoint.
    pub responses: BTreeMap<String, u64>,
}

impl DiffSummary {
    /// Adds the differences of one response.
    pub fn add(
        &mut self,
        endpoint: &str,
        line: u32,
        copy: u32,
        iteration: u32,
        diffs: Vec<Difference>,
    ) {
        if diffs.is_empty() {
            return;
        }
        *self.responses.entry(endpoint.to_owned()).or_insert(0) += 1;
        for d in diffs {
            let group = self
                .groups
                .entry((endpoint.to_owned(), d.field))
                .or_insert((0, Vec::new()));
            group.0 += 1;
            if group.1.len() < EXAMPLES {
                group.1.push(Example {
                    line,
                    copy,
                    iteration,
                    recorded: d.recorded,
                    live: d.live,
                });
            }
        }
    }

    /// The groups, by endpoint then field.
    pub fn groups(&self) -> Vec<DiffGroup> {
        self.groups
            .iter()
            .map(|((endpoint, field), (count, examples))| DiffGroup {
                endpoint: endpoint.clone(),
                field: field.describe(),
                count: *count,
                examples: examples.clone(),
            })
            .collect()
    }
}
