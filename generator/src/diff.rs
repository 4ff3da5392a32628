//! Response validation: what differed, grouped, and what the noise rules left of it.
//!
//! [`crate::compare::Comparer::compare`] turns one pair of responses into [`Outcome`]s, each
//! naming a [`Field`]; a [`Skip`] (`--ignore`) decides which fields are not compared at all.
//! Each replayed request is compared two ways without a baseline (recorded → live) and three
//! ways with one (recorded, baseline, candidate; the baseline → candidate comparison is the one
//! that counts). [`DiffSummary`] keeps, per endpoint and field, how many responses differed
//! there (with examples), which responses differed where, and the full three-way view of the
//! example requests; [`DiffSummary::finish`] applies the noise rules (`crate::noise`) once the
//! run is over, and is the one definition of "responses with differences" per endpoint.
//!
//! What is compared: the status; the headers chosen with `--compare-header` (by default
//! `content-type`); the `grpc-status` trailer; the body — structurally when both bodies are JSON
//! (object keys in any order, arrays element by element unless a comparator pairs them, numbers
//! by value), else byte for byte.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tapedeck_analyzer::replay::edit::LiveMessage;

use crate::compare::{Comparer, Outcome};

/// A field of a response.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// The skips of a run: `--ignore` entries. (Token rule locations are compared by their rule's
/// comparator, see [`crate::compare`].)
#[derive(Debug, Clone, Default)]
pub struct Skips {
    ignores: Vec<Ignore>,
}

impl Skips {
    /// Skips from `--ignore` entries.
    pub fn new(ignores: Vec<Ignore>) -> Skips {
        Skips { ignores }
    }
}

impl Skip for Skips {
    fn skip(&self, endpoint: &str, field: &Field) -> bool {
        if self.ignores.is_empty() {
            return false;
        }
        let text = field.describe();
        self.ignores.iter().any(|i| i.covers(endpoint, &text))
    }
}

/// One request's comparisons.
#[derive(Debug, Clone)]
pub struct Compared<'a> {
    /// `METHOD /template`.
    pub endpoint: &'a str,
    /// The 1-based line of `inbound.jsonl`.
    pub line: u32,
    /// The copy.
    pub copy: u32,
    /// The iteration.
    pub iteration: u32,
    /// The comparison that counts: recorded → live, or baseline → candidate.
    pub primary: Vec<Outcome>,
    /// With a baseline: recorded → candidate.
    pub recorded_vs_candidate: Option<Vec<Outcome>>,
    /// With a baseline: recorded → baseline.
    pub recorded_vs_baseline: Option<Vec<Outcome>>,
}

/// One example of a difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The 1-based line of `inbound.jsonl`.
    pub line: u32,
    /// The copy.
    pub copy: u32,
    /// The iteration.
    pub iteration: u32,
    /// The recorded value.
    pub recorded: Option<String>,
    /// The baseline's value (with `--baseline` only; `null`: the baseline lacks the field).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub baseline: Option<Option<String>>,
    /// The live (candidate) value.
    pub live: Option<String>,
}

/// Differences of one endpoint and field, after the noise rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffGroup {
    /// `METHOD /template`.
    pub endpoint: String,
    /// The field, as [`Field::describe`] writes it.
    pub field: String,
    /// How many responses differed there (and were not silenced by a noise rule).
    pub count: u64,
    /// Of them, fields whose recorded value came from the responder's mocks (deterministic).
    pub deterministic: u64,
    /// What the values were compared with: `exact`, or a comparator (`number ±0.01 or ±0 %`).
    pub comparator: String,
    /// The first few.
    pub examples: Vec<Example>,
}

/// Examples kept per group.
pub const EXAMPLES: usize = 3;

/// Three-way views kept in the report.
pub const THREE_WAY: usize = 20;

/// One field of a request's three-way view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreeField {
    /// The field.
    pub field: String,
    /// The recorded value (`null`: absent).
    pub recorded: Option<String>,
    /// The baseline's value (with `--baseline` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Option<String>>,
    /// The candidate's value.
    pub candidate: Option<String>,
    /// `differs` (counted), `noise` (silenced by a noise rule), `equal` (a comparator accepts
    /// the values) or `arms-agree` (the recording differs, the baseline and candidate agree).
    pub outcome: String,
    /// The rule or comparator that decided: `noise rule 3 (calibration)`,
    /// `timestamp within 300 s of its clock (token rule …)`; absent for exact comparisons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The recorded value came from the responder's mocks.
    pub deterministic: bool,
}

/// A differing request, three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreeWay {
    /// `METHOD /template`.
    pub endpoint: String,
    /// The 1-based line of `inbound.jsonl`.
    pub line: u32,
    /// The copy.
    pub copy: u32,
    /// The iteration.
    pub iteration: u32,
    /// Its fields that differ anywhere.
    pub fields: Vec<ThreeField>,
}

/// A field present in JSON (`null` included) is `Some`; absent, `None` (with `default`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    endpoint: String,
    field: Field,
    /// Occurrences (responses that differed there, not accepted by a comparator).
    count: u64,
    /// Of them, deterministic ones.
    deterministic: u64,
    /// Comparisons a comparator accepted (values differed).
    matched: u64,
    /// The comparator set in force at the field, if any.
    by: Option<usize>,
    examples: Vec<Example>,
}

/// Raw per-field detail of a stored three-way view.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawField {
    field: Field,
    recorded: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    baseline: Option<Option<String>>,
    candidate: Option<String>,
    /// In the primary comparison: None (arms agree), Some(false) differs, Some(true) accepted.
    primary: Option<bool>,
    by: Option<usize>,
    deterministic: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawThreeWay {
    endpoint: String,
    line: u32,
    copy: u32,
    iteration: u32,
    fields: Vec<RawField>,
}

/// The statistics a noise rule is judged by: for one endpoint and field, how many of the
/// endpoint's compared responses differed there (deterministic fields aside).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRate {
    /// `METHOD /template`.
    pub endpoint: String,
    /// The field.
    pub field: String,
    /// Responses that differed there, deterministic fields aside.
    pub differed: u64,
    /// Responses of the endpoint compared.
    pub compared: u64,
}

/// Differences grouped by endpoint and field, before the noise rules. It serializes (the report
/// directory's `diffs.json`, [`crate::report::Rediff`]) so that a finished run's differences
/// can be decided again under other noise rules; a deserialized summary is for
/// [`DiffSummary::finish_with`] (its index of groups for [`DiffSummary::add`] is not kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiffSummary {
    paired: bool,
    #[serde(skip)]
    keys: HashMap<(String, Field), u32>,
    groups: Vec<Group>,
    /// Responses compared, per endpoint.
    compared: BTreeMap<String, u64>,
    /// Responses with a difference: their endpoint and (group id << 1 | deterministic).
    responses: Vec<(String, Vec<u32>)>,
    /// Comparisons accepted, per comparator set.
    matched: BTreeMap<usize, u64>,
    three_way: Vec<RawThreeWay>,
}

/// For an endpoint and a field, the index and a description of the noise rule that silences
/// it.
pub type Active<'a> = dyn Fn(&str, &str) -> Option<(usize, String)> + 'a;

/// What is left after the noise rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    /// The groups that still differ, by endpoint then field.
    pub groups: Vec<DiffGroup>,
    /// Responses with at least one difference left, per endpoint.
    pub responses: BTreeMap<String, u64>,
    /// Occurrences each active noise rule silenced (by rule index).
    pub suppressed: BTreeMap<usize, u64>,
    /// Comparisons each comparator set accepted (by set index).
    pub matched: BTreeMap<usize, u64>,
    /// Three-way views of example requests: those with a difference left first.
    pub three_way: Vec<ThreeWay>,
}

fn value_in<'a>(outcomes: &'a [Outcome], field: &Field) -> Option<&'a Outcome> {
    outcomes.iter().find(|o| &o.field == field)
}

impl DiffSummary {
    /// An empty summary; `paired`: the run has a baseline.
    pub fn new(paired: bool) -> DiffSummary {
        DiffSummary {
            paired,
            ..DiffSummary::default()
        }
    }

    /// Adds one request's comparisons.
    pub fn add(&mut self, c: Compared<'_>) {
        *self.compared.entry(c.endpoint.to_owned()).or_insert(0) += 1;
        let mut ids = Vec::new();
        let mut example = false;
        for o in &c.primary {
            let key = (c.endpoint.to_owned(), o.field.clone());
            let next = self.groups.len() as u32;
            let id = *self.keys.entry(key).or_insert(next);
            if id == next {
                self.groups.push(Group {
                    endpoint: c.endpoint.to_owned(),
                    field: o.field.clone(),
                    count: 0,
                    deterministic: 0,
                    matched: 0,
                    by: o.by,
                    examples: Vec::new(),
                });
            }
            let group = &mut self.groups[id as usize];
            if o.equal {
                group.matched += 1;
                if let Some(by) = o.by {
                    *self.matched.entry(by).or_insert(0) += 1;
                }
                continue;
            }
            group.count += 1;
            group.deterministic += u64::from(o.deterministic);
            ids.push(id << 1 | u32::from(o.deterministic));
            if group.examples.len() < EXAMPLES {
                example = true;
                let (recorded, baseline) = sides(self.paired, &c, o);
                let group = &mut self.groups[id as usize];
                group.examples.push(Example {
                    line: c.line,
                    copy: c.copy,
                    iteration: c.iteration,
                    recorded,
                    baseline,
                    live: o.right.clone(),
                });
            }
        }
        if !ids.is_empty() {
            self.responses.push((c.endpoint.to_owned(), ids));
        }
        if example {
            let view = self.three_way_of(&c);
            self.three_way.push(view);
        }
    }
}

/// The recorded and baseline values of a primary outcome.
fn sides(paired: bool, c: &Compared<'_>, o: &Outcome) -> (Option<String>, Option<Option<String>>) {
    {
        if !paired {
            return (o.left.clone(), None);
        }
        // Baseline → candidate: the recorded value is the left of recorded → candidate, or of
        // recorded → baseline; absent from both, the recording agrees with the candidate.
        let recorded = c
            .recorded_vs_candidate
            .as_deref()
            .and_then(|rc| value_in(rc, &o.field))
            .map(|x| x.left.clone())
            .or_else(|| {
                c.recorded_vs_baseline
                    .as_deref()
                    .and_then(|rb| value_in(rb, &o.field))
                    .map(|x| x.left.clone())
            })
            .unwrap_or_else(|| o.right.clone());
        (recorded, Some(o.left.clone()))
    }
}

impl DiffSummary {
    fn three_way_of(&self, c: &Compared<'_>) -> RawThreeWay {
        let mut fields: Vec<RawField> = c
            .primary
            .iter()
            .map(|o| {
                let (recorded, baseline) = sides(self.paired, c, o);
                RawField {
                    field: o.field.clone(),
                    recorded,
                    baseline,
                    candidate: o.right.clone(),
                    primary: Some(o.equal),
                    by: o.by,
                    deterministic: o.deterministic,
                }
            })
            .collect();
        // Fields where the recording differs but both arms agree.
        if let Some(rc) = &c.recorded_vs_candidate {
            for o in rc {
                if value_in(&c.primary, &o.field).is_none() {
                    fields.push(RawField {
                        field: o.field.clone(),
                        recorded: o.left.clone(),
                        baseline: Some(o.right.clone()),
                        candidate: o.right.clone(),
                        primary: None,
                        by: o.by,
                        deterministic: o.deterministic,
                    });
                }
            }
        }
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        RawThreeWay {
            endpoint: c.endpoint.to_owned(),
            line: c.line,
            copy: c.copy,
            iteration: c.iteration,
            fields,
        }
    }

    /// Per endpoint and field, how often responses differed (for the noise rules' test).
    pub fn rates(&self) -> Vec<FieldRate> {
        self.groups
            .iter()
            .map(|g| FieldRate {
                endpoint: g.endpoint.clone(),
                field: g.field.describe(),
                differed: g.count - g.deterministic,
                compared: self.compared.get(&g.endpoint).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Responses compared, per endpoint.
    pub fn compared(&self) -> &BTreeMap<String, u64> {
        &self.compared
    }

    /// Applies the active noise rules — `active` gives, for an endpoint and a field, the index
    /// and a description of the rule that silences it — and returns what is left.
    /// Deterministic occurrences are never silenced.
    pub fn finish(
        &self,
        active: &Active<'_>,
        comparer: &Comparer,
        describe_set: &dyn Fn(usize) -> String,
    ) -> Finished {
        self.finish_with(
            active,
            &|by| comparer.sets[by].comparator.describe(),
            describe_set,
        )
    }

    /// [`DiffSummary::finish`] with the comparator sets described by `describe_comparator`
    /// (what `Comparator::describe` gave for set `i`) instead of the run's [`Comparer`]: for a
    /// summary read back from a report directory.
    pub fn finish_with(
        &self,
        active: &Active<'_>,
        describe_comparator: &dyn Fn(usize) -> String,
        describe_set: &dyn Fn(usize) -> String,
    ) -> Finished {
        let rule_of: Vec<Option<(usize, String)>> = self
            .groups
            .iter()
            .map(|g| active(&g.endpoint, &g.field.describe()))
            .collect();
        let mut finished = Finished {
            matched: self.matched.clone(),
            ..Finished::default()
        };
        let mut left = vec![0u64; self.groups.len()];
        for (endpoint, ids) in &self.responses {
            let mut any = false;
            for id in ids {
                let (group, deterministic) = ((id >> 1) as usize, id & 1 == 1);
                match &rule_of[group] {
                    Some((rule, _)) if !deterministic => {
                        *finished.suppressed.entry(*rule).or_insert(0) += 1;
                    }
                    _ => {
                        left[group] += 1;
                        any = true;
                    }
                }
            }
            if any {
                *finished.responses.entry(endpoint.clone()).or_insert(0) += 1;
            }
        }
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by(|&a, &b| {
            (&self.groups[a].endpoint, &self.groups[a].field)
                .cmp(&(&self.groups[b].endpoint, &self.groups[b].field))
        });
        for i in order {
            let g = &self.groups[i];
            if left[i] == 0 {
                continue;
            }
            finished.groups.push(DiffGroup {
                endpoint: g.endpoint.clone(),
                field: g.field.describe(),
                count: left[i],
                deterministic: g.deterministic,
                comparator: match g.by {
                    Some(by) => describe_comparator(by),
                    None => "exact".to_owned(),
                },
                examples: g.examples.clone(),
            });
        }
        let mut views: Vec<(bool, ThreeWay)> = self
            .three_way
            .iter()
            .map(|raw| {
                let mut differs = false;
                let fields = raw
                    .fields
                    .iter()
                    .map(|f| {
                        let field = f.field.describe();
                        let rule = if f.deterministic {
                            None
                        } else {
                            active(&raw.endpoint, &field)
                        };
                        let (outcome, by) = match (f.primary, rule) {
                            (None, _) => ("arms-agree", f.by.map(describe_set)),
                            (Some(true), _) => ("equal", f.by.map(describe_set)),
                            (Some(false), Some((_, rule))) => ("noise", Some(rule)),
                            (Some(false), None) => {
                                differs = true;
                                ("differs", f.by.map(describe_set))
                            }
                        };
                        ThreeField {
                            field,
                            recorded: f.recorded.clone(),
                            baseline: f.baseline.clone(),
                            candidate: f.candidate.clone(),
                            outcome: outcome.to_owned(),
                            by,
                            deterministic: f.deterministic,
                        }
                    })
                    .collect();
                (
                    differs,
                    ThreeWay {
                        endpoint: raw.endpoint.clone(),
                        line: raw.line,
                        copy: raw.copy,
                        iteration: raw.iteration,
                        fields,
                    },
                )
            })
            .collect();
        views.sort_by_key(|(differs, _)| !*differs);
        finished.three_way = views.into_iter().take(THREE_WAY).map(|(_, v)| v).collect();
        finished
    }
}
