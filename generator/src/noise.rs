//! Noise as versioned, reviewable rules: the noise file (`--noise FILE`, written back as
//! `noise.json` in the report directory), learning from the recording and from calibration, the
//! test that decides whether a rule applies in a run, and the refusal of over-broad rules.
//!
//! The file (format version 1, unknown fields refused, JSON Schema
//! `docs/noise-v1.schema.json`, described in `docs/verdict.md`) holds:
//! - `thresholds`: `relative` (default 0.2) and `absolute` (default 0.0003, i.e. 0.03 %), the
//!   test below; `max_share` (default 0.5), the largest share of an endpoint's fields that noise
//!   rules may silence;
//! - `comparators`: per field (an endpoint, or every endpoint), how values compare
//!   ([`crate::compare::Comparator`]);
//! - `rules`: fields whose differences are noise, each anchored to one endpoint and one exact
//!   field (`status`, `header NAME`, `trailer NAME`, or a JSON path with `[*]` for array
//!   elements: no prefix or substring matching), with the evidence that made it and the count of
//!   what it silenced in the run that wrote it.
//!
//! **The test** (after Diffy's): a rule with evidence applies in a run when the rate at which
//! the field differed in its evidence, `a = differed ÷ compared`, explains the rate at which it
//! differs in this run, `c`: `a > 0` and `c − a ≤ absolute` or `c − a ≤ relative × c`. A rule
//! without evidence (written by hand) always applies. Deterministic fields (values from the
//! responder's mocks) are never silenced.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compare::{Comparator, Outcome, Set};
use crate::diff::FieldRate;
use crate::plan::Plan;
use crate::{Error, Result};

/// The noise file format version.
pub const NOISE_VERSION: u32 = 1;

/// The file written into the report directory.
pub const NOISE_FILE: &str = "noise.json";

/// The noise file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseFile {
    /// Always 1.
    pub version: u32,
    /// The thresholds.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Comparators by field.
    #[serde(default)]
    pub comparators: Vec<ComparatorRule>,
    /// Noise rules.
    #[serde(default)]
    pub rules: Vec<NoiseRule>,
}

impl Default for NoiseFile {
    fn default() -> Self {
        NoiseFile {
            version: NOISE_VERSION,
            thresholds: Thresholds::default(),
            comparators: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// The thresholds of the noise test and of over-broad rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Relative: `c − a ≤ relative × c` explains (default 0.2).
    #[serde(default = "default_relative")]
    pub relative: f64,
    /// Absolute: `c − a ≤ absolute` explains (default 0.0003, 0.03 %).
    #[serde(default = "default_absolute")]
    pub absolute: f64,
    /// The largest share of an endpoint's fields its noise rules may silence (default 0.5).
    #[serde(default = "default_max_share")]
    pub max_share: f64,
}

fn default_relative() -> f64 {
    0.2
}
fn default_absolute() -> f64 {
    0.0003
}
fn default_max_share() -> f64 {
    0.5
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            relative: default_relative(),
            absolute: default_absolute(),
            max_share: default_max_share(),
        }
    }
}

impl Thresholds {
    /// Whether a noise rate `a` explains a run's rate `c` (both fractions).
    pub fn explains(&self, c: f64, a: f64) -> bool {
        a > 0.0 && {
            let excess = c - a;
            excess <= self.absolute || excess <= self.relative * c
        }
    }
}

/// The kind of a comparator in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareKind {
    /// Equal values only.
    Exact,
    /// `absolute` and/or `relative` tolerance.
    Number,
    /// `skew_s` (default 300).
    Timestamp,
    /// Both UUIDs.
    Uuid,
    /// Ids of the same shape.
    Id,
    /// JWT claims but the time claims.
    Jwt,
    /// Arrays by `key` (or an inferred one), else order-insensitive.
    Array,
}

impl CompareKind {
    /// Every kind, in the order of the file format's documentation (the operator's `Replay`
    /// schema lists them from here).
    pub const ALL: [CompareKind; 7] = [
        CompareKind::Exact,
        CompareKind::Number,
        CompareKind::Timestamp,
        CompareKind::Uuid,
        CompareKind::Id,
        CompareKind::Jwt,
        CompareKind::Array,
    ];

    /// The kind's name in the file (`exact`, `number`, …).
    pub fn name(self) -> &'static str {
        match self {
            CompareKind::Exact => "exact",
            CompareKind::Number => "number",
            CompareKind::Timestamp => "timestamp",
            CompareKind::Uuid => "uuid",
            CompareKind::Id => "id",
            CompareKind::Jwt => "jwt",
            CompareKind::Array => "array",
        }
    }
}

/// A comparator for a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparatorRule {
    /// Only this endpoint (`METHOD /template`); absent: every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The field (a JSON path for `number`, `timestamp`, `uuid`, `id`, `jwt`, `array`; a header
    /// for `timestamp`, `uuid`, `id`, `jwt`).
    pub field: String,
    /// How values compare.
    pub compare: CompareKind,
    /// `number`: absolute tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute: Option<f64>,
    /// `number`: relative tolerance (a fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
    /// `timestamp`: the largest skew from the side's clock, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_s: Option<f64>,
    /// `array`: the key field of the elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Learned comparators: what made them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Comparisons it accepted in the run that wrote the file (ignored on reading).
    #[serde(default)]
    pub matched: u64,
}

/// A noise rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseRule {
    /// The endpoint, `METHOD /template`.
    pub endpoint: String,
    /// The exact field: `status`, `header NAME`, `trailer NAME`, or a JSON path.
    pub field: String,
    /// What made it (absent: written by hand, always applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Differences it silenced in the run that wrote the file (ignored on reading).
    #[serde(default)]
    pub suppressed: u64,
}

/// Where a learned rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Recorded responses to identical requests.
    Recording,
    /// The baseline against itself (`--calibrate N`).
    Calibration,
}

impl Source {
    /// `recording` or `calibration`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Recording => "recording",
            Source::Calibration => "calibration",
        }
    }
}

/// What a learned rule or comparator was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Recording or calibration.
    pub source: Source,
    /// Response pairs of the endpoint compared.
    pub compared: u64,
    /// Of them, pairs that differed at the field.
    pub differed: u64,
    /// The first differing values (left, right).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<(Option<String>, Option<String>)>,
}

impl Evidence {
    /// `differed ÷ compared`.
    pub fn rate(&self) -> f64 {
        if self.compared == 0 {
            0.0
        } else {
            self.differed as f64 / self.compared as f64
        }
    }
}

/// A rule refused as over-broad (or not anchored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    /// The endpoint.
    pub endpoint: String,
    /// The field.
    pub field: String,
    /// `file`, `recording` or `calibration`.
    pub source: String,
    /// Why.
    pub error: String,
}

/// Reads and checks a noise file against the snapshot's endpoints and fields.
pub fn read(path: &Path, fields: &BTreeMap<String, usize>) -> Result<NoiseFile> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let bad = |why: String| Error::Noise(format!("{}: {why}", path.display()));
    let file: NoiseFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.version != NOISE_VERSION {
        return Err(bad(format!(
            "version {} (this tapedeck reads version {NOISE_VERSION})",
            file.version
        )));
    }
    let t = file.thresholds;
    if !(0.0..=1.0).contains(&t.relative)
        || !(0.0..=1.0).contains(&t.absolute)
        || !(0.0..=1.0).contains(&t.max_share)
    {
        return Err(bad(
            "thresholds must be fractions between 0 and 1".to_owned()
        ));
    }
    for (i, c) in file.comparators.iter().enumerate() {
        to_comparator(c).map_err(|why| bad(format!("comparators[{i}] ({}): {why}", c.field)))?;
    }
    let (_, refused) = anchored(&file.rules, "file", fields, &t);
    if let Some(r) = refused.first() {
        return Err(bad(format!("rule {} {}: {}", r.endpoint, r.field, r.error)));
    }
    Ok(file)
}

/// Whether a field is spelled as the report spells fields.
fn field_syntax(field: &str) -> std::result::Result<(), String> {
    let ok = field == "status"
        || field == "body"
        || field.starts_with('$')
        || field
            .strip_prefix("header ")
            .or_else(|| field.strip_prefix("trailer "))
            .is_some_and(|name| !name.is_empty() && !name.contains(' '));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field {field:?}: expected status, header NAME, trailer NAME, body or a JSON path ($.a.b)"
        ))
    }
}

/// Checks rules for anchoring and breadth: each names one known endpoint and one field that is
/// not the whole body, and an endpoint's rules silence at most `max_share` of its fields (rules
/// beyond are refused, in the order given). Returns the indexes kept and the refusals.
pub fn anchored(
    rules: &[NoiseRule],
    source: &str,
    fields: &BTreeMap<String, usize>,
    t: &Thresholds,
) -> (Vec<usize>, Vec<Refused>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    let mut per_endpoint: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let refuse = |error: String| Refused {
            endpoint: rule.endpoint.clone(),
            field: rule.field.clone(),
            source: source.to_owned(),
            error,
        };
        if let Err(why) = field_syntax(&rule.field) {
            refused.push(refuse(why));
            continue;
        }
        if rule.field == "body" || rule.field == "$" {
            refused.push(refuse(format!(
                "over-broad: the rule would silence the whole body of {}",
                rule.endpoint
            )));
            continue;
        }
        let Some(&total) = fields.get(&rule.endpoint) else {
            refused.push(refuse(format!(
                "not anchored: {:?} is not an endpoint of the snapshot (METHOD /template)",
                rule.endpoint
            )));
            continue;
        };
        let set = per_endpoint.entry(&rule.endpoint).or_default();
        set.insert(&rule.field);
        let limit = (t.max_share * total as f64).floor() as usize;
        if set.len() > limit {
            set.remove(rule.field.as_str());
            refused.push(refuse(format!(
                "over-broad: noise rules for {} would silence more than {:.0} % of its {total} fields (max_share)",
                rule.endpoint,
                t.max_share * 100.0
            )));
            continue;
        }
        kept.push(i);
    }
    (kept, refused)
}

/// The comparator of a file entry.
pub fn to_comparator(c: &ComparatorRule) -> std::result::Result<Comparator, String> {
    field_syntax(&c.field)?;
    let only = |allowed: &[&str]| {
        let given = [
            ("absolute", c.absolute.is_some()),
            ("relative", c.relative.is_some()),
            ("skew_s", c.skew_s.is_some()),
            ("key", c.key.is_some()),
        ];
        match given
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            Some((name, _)) => Err(format!("{name} does not apply to {:?}", c.compare)),
            None => Ok(()),
        }
    };
    let json_only = || {
        if c.field.starts_with('$') {
            Ok(())
        } else {
            Err(format!("{:?} compares JSON fields only", c.compare))
        }
    };
    let non_negative = |v: Option<f64>, name: &str| match v {
        Some(x) if !(x >= 0.0 && x.is_finite()) => Err(format!("{name} must be ≥ 0")),
        _ => Ok(()),
    };
    Ok(match c.compare {
        CompareKind::Exact => {
            only(&[])?;
            Comparator::Exact
        }
        CompareKind::Number => {
            only(&["absolute", "relative"])?;
            json_only()?;
            non_negative(c.absolute, "absolute")?;
            non_negative(c.relative, "relative")?;
            if c.absolute.is_none() && c.relative.is_none() {
                return Err("number needs absolute or relative".to_owned());
            }
            Comparator::Number {
                absolute: c.absolute.unwrap_or(0.0),
                relative: c.relative.unwrap_or(0.0),
            }
        }
        CompareKind::Timestamp => {
            only(&["skew_s"])?;
            non_negative(c.skew_s, "skew_s")?;
            Comparator::Timestamp {
                skew_s: c.skew_s.unwrap_or(crate::compare::DEFAULT_SKEW_S),
            }
        }
        CompareKind::Uuid => {
            only(&[])?;
            Comparator::Uuid
        }
        CompareKind::Id => {
            only(&[])?;
            Comparator::Id
        }
        CompareKind::Jwt => {
            only(&[])?;
            Comparator::Jwt
        }
        CompareKind::Array => {
            only(&["key"])?;
            json_only()?;
            Comparator::Array { key: c.key.clone() }
        }
    })
}

/// The file entry of a comparator.
pub fn from_comparator(
    endpoint: Option<String>,
    field: String,
    comparator: &Comparator,
    evidence: Option<Evidence>,
) -> ComparatorRule {
    let mut rule = ComparatorRule {
        endpoint,
        field,
        compare: CompareKind::Exact,
        absolute: None,
        relative: None,
        skew_s: None,
        key: None,
        evidence,
        matched: 0,
    };
    rule.compare = match comparator {
        Comparator::Exact => CompareKind::Exact,
        Comparator::Number { absolute, relative } => {
            rule.absolute = Some(*absolute);
            rule.relative = Some(*relative);
            CompareKind::Number
        }
        Comparator::Timestamp { skew_s } => {
            rule.skew_s = Some(*skew_s);
            CompareKind::Timestamp
        }
        Comparator::Uuid => CompareKind::Uuid,
        Comparator::Id => CompareKind::Id,
        Comparator::Jwt => CompareKind::Jwt,
        Comparator::Array { key } => {
            rule.key.clone_from(key);
            CompareKind::Array
        }
    };
    rule
}

/// The comparator sets of file entries, in order (origin `File(i)`).
pub fn file_sets(file: &NoiseFile) -> Vec<Set> {
    file.comparators
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            Some(Set {
                endpoint: c.endpoint.clone(),
                field: c.field.clone(),
                comparator: to_comparator(c).ok()?,
                origin: crate::compare::Origin::File(i),
            })
        })
        .collect()
}

/// The fields of each endpoint's recorded responses: the status, the compared headers present,
/// and the JSON leaves (array elements as `[*]`), or `body` for a body that is not JSON.
pub fn endpoint_fields(plan: &Plan, headers: &[String]) -> BTreeMap<String, usize> {
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    fn walk(value: &Value, path: &mut String, into: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                let len = path.len();
                for (k, v) in map {
                    tapedeck_analyzer::tokens::push_key(path, k);
                    walk(v, path, into);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let len = path.len();
                path.push_str("[*]");
                if items.is_empty() {
                    into.insert(path.clone());
                }
                for v in items {
                    walk(v, path, into);
                }
                path.truncate(len);
            }
            _ => {
                into.insert(path.clone());
            }
        }
    }
    for line in &plan.lines {
        let set = fields.entry(line.endpoint.clone()).or_default();
        set.insert("status".to_owned());
        for name in headers {
            if line
                .response
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                set.insert(format!("header {name}"));
            }
        }
        match crate::compare::parse_json(&line.response.body) {
            Some(value) => walk(&value, &mut String::from("$"), set),
            None if !line.response.body.is_empty() => {
                set.insert("body".to_owned());
            }
            None => {}
        }
    }
    fields.into_iter().map(|(e, s)| (e, s.len())).collect()
}

#[derive(Debug, Clone, Default)]
struct Seen {
    differed: u64,
    /// The comparator every hinted difference agrees on (None once they disagree).
    hint: Option<Comparator>,
    /// Differences with no hint, or with hints that disagree.
    unhinted: u64,
    examples: Vec<(Option<String>, Option<String>)>,
}

/// Learns comparators and noise rules from pairs of responses that should be equal: recorded
/// responses to identical requests, or the baseline against itself.
#[derive(Debug, Clone)]
pub struct Learner {
    source: Source,
    compared: BTreeMap<String, u64>,
    fields: BTreeMap<(String, String), Seen>,
}

/// What a learner learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Learned {
    /// Comparators (with evidence).
    pub comparators: Vec<ComparatorRule>,
    /// Noise rules (with evidence), over-broad ones left out.
    pub rules: Vec<NoiseRule>,
    /// Rules refused as over-broad.
    pub refused: Vec<Refused>,
}

fn merge(a: &Comparator, b: &Comparator) -> Option<Comparator> {
    match (a, b) {
        (Comparator::Number { relative: x, .. }, Comparator::Number { relative: y, .. }) => {
            Some(Comparator::Number {
                absolute: 0.0,
                relative: x.max(*y),
            })
        }
        (Comparator::Array { key: x }, Comparator::Array { key: y }) => Some(Comparator::Array {
            key: if x == y { x.clone() } else { None },
        }),
        (a, b) if a == b => Some(a.clone()),
        _ => None,
    }
}

impl Learner {
    /// A learner of `source`.
    pub fn new(source: Source) -> Learner {
        Learner {
            source,
            compared: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds one pair of responses of `endpoint` (compared with hints).
    pub fn add(&mut self, endpoint: &str, outcomes: &[Outcome]) {
        *self.compared.entry(endpoint.to_owned()).or_insert(0) += 1;
        for o in outcomes {
            if o.equal || o.deterministic {
                continue;
            }
            let seen = self
                .fields
                .entry((endpoint.to_owned(), o.field.describe()))
                .or_default();
            seen.differed += 1;
            if seen.examples.len() < 2 {
                seen.examples.push((o.left.clone(), o.right.clone()));
            }
            match &o.hint {
                Some(h) if seen.unhinted == 0 => {
                    let merged = match &seen.hint {
                        None => Some(h.clone()),
                        Some(s) => merge(s, h),
                    };
                    match merged {
                        Some(m) => seen.hint = Some(m),
                        None => {
                            seen.hint = None;
                            seen.unhinted += 1;
                        }
                    }
                }
                _ => {
                    seen.hint = None;
                    seen.unhinted += 1;
                }
            }
        }
    }

    /// Pairs compared, in all.
    pub fn pairs(&self) -> u64 {
        self.compared.values().sum()
    }

    /// Comparators where every difference had the same hint (a number's tolerance doubled for
    /// margin), noise rules elsewhere; rules checked by [`anchored`].
    pub fn finish(self, t: &Thresholds, fields: &BTreeMap<String, usize>) -> Learned {
        let mut learned = Learned::default();
        let mut rules = Vec::new();
        for ((endpoint, field), seen) in self.fields {
            let evidence = Evidence {
                source: self.source,
                compared: self.compared.get(&endpoint).copied().unwrap_or(0),
                differed: seen.differed,
                examples: seen.examples,
            };
            match seen.hint.filter(|_| seen.unhinted == 0) {
                Some(hint) => {
                    let hint = match hint {
                        Comparator::Number { relative, .. } => Comparator::Number {
                            absolute: 0.0,
                            relative: relative * 2.0,
                        },
                        other => other,
                    };
                    learned.comparators.push(from_comparator(
                        Some(endpoint),
                        field,
                        &hint,
                        Some(evidence),
                    ));
                }
                None => rules.push(NoiseRule {
                    endpoint,
                    field,
                    evidence: Some(evidence),
                    suppressed: 0,
                }),
            }
        }
        // The most frequent first, so that over-broad refusals drop the rarest.
        rules.sort_by(|a, b| {
            let rate = |r: &NoiseRule| r.evidence.as_ref().map_or(0.0, Evidence::rate);
            a.endpoint
                .cmp(&b.endpoint)
                .then(rate(b).total_cmp(&rate(a)))
        });
        let (kept, refused) = anchored(&rules, self.source.as_str(), fields, t);
        learned.rules = kept.into_iter().map(|i| rules[i].clone()).collect();
        learned.refused = refused;
        learned
    }
}

/// One rule's fate in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    /// The endpoint.
    pub endpoint: String,
    /// The field.
    pub field: String,
    /// `file`, `recording` or `calibration`.
    pub source: String,
    /// The evidence, when learned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// The share of this run's compared responses of the endpoint that differed at the field.
    pub rate: f64,
    /// Whether it applied.
    pub applied: bool,
    /// Why (or why not).
    pub why: String,
    /// Differences it silenced.
    pub suppressed: u64,
}

/// Decides which rules apply given this run's rates: the first applicable rule for each
/// endpoint and field. Returns per rule its report (suppressed counts still 0) and the active
/// map.
pub fn decide(
    rules: &[(NoiseRule, String)],
    rates: &[FieldRate],
    compared: &BTreeMap<String, u64>,
    t: &Thresholds,
) -> (Vec<RuleReport>, BTreeMap<(String, String), usize>) {
    let by_field: BTreeMap<(&str, &str), &FieldRate> = rates
        .iter()
        .map(|r| ((r.endpoint.as_str(), r.field.as_str()), r))
        .collect();
    let mut active = BTreeMap::new();
    let reports = rules
        .iter()
        .enumerate()
        .map(|(i, (rule, source))| {
            let n = compared.get(&rule.endpoint).copied().unwrap_or(0);
            let differed = by_field
                .get(&(rule.endpoint.as_str(), rule.field.as_str()))
                .map_or(0, |r| r.differed);
            let c = if n == 0 {
                0.0
            } else {
                differed as f64 / n as f64
            };
            let (applied, why) = match &rule.evidence {
                None => (true, "written by hand: always applies".to_owned()),
                Some(e) if t.explains(c, e.rate()) => (
                    true,
                    format!(
                        "differs in {:.2} % here, {:.2} % in its {} evidence: explained",
                        c * 100.0,
                        e.rate() * 100.0,
                        e.source.as_str()
                    ),
                ),
                Some(e) => (
                    false,
                    format!(
                        "differs in {:.2} % here, more than its {} evidence ({:.2} %) explains",
                        c * 100.0,
                        e.source.as_str(),
                        e.rate() * 100.0
                    ),
                ),
            };
            if applied {
                active
                    .entry((rule.endpoint.clone(), rule.field.clone()))
                    .or_insert(i);
            }
            RuleReport {
                endpoint: rule.endpoint.clone(),
                field: rule.field.clone(),
                source: source.clone(),
                evidence: rule.evidence.clone(),
                rate: c,
                applied,
                why,
                suppressed: 0,
            }
        })
        .collect();
    (reports, active)
}

/// Writes a noise file (pretty JSON).
pub fn write(file: &NoiseFile, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(file).unwrap_or_else(|_| "{}".to_owned());
    std::fs::write(path, text + "\n").map_err(|source| Error::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_follows_the_thresholds() {
        let t = Thresholds::default();
        assert!(t.explains(1.0, 1.0));
        assert!(t.explains(0.5, 0.45));
        assert!(!t.explains(0.5, 0.3));
        assert!(t.explains(0.0005, 0.0003));
        assert!(!t.explains(0.5, 0.0));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"{"version":1,"rules":[],"colour":"red"}"#;
        assert!(serde_json::from_str::<NoiseFile>(text).is_err());
        let text = r#"{"version":1,"rules":[{"endpoint":"GET /a","field":"$.x","why":1}]}"#;
        assert!(serde_json::from_str::<NoiseFile>(text).is_err());
    }
}
