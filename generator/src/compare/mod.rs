//! Comparators that understand types: how two responses (recorded, baseline or candidate) are
//! compared field by field.
//!
//! Every field is compared exactly (JSON structurally: keys in any order, numbers by value)
//! unless a [`Comparator`] is set for its path, by the noise file (`--noise`), by learning
//! (the recording, `--calibrate`), or by a token rule of the snapshot at that inbound response
//! location. Comparators:
//! - [`Comparator::Number`] — numbers within an absolute or a relative tolerance;
//! - [`Comparator::Timestamp`] — timestamps (the analyzer's classifier decides what is one)
//!   each within a skew of its side's clock (the recorded request's time for the recording,
//!   the replay clock for live responses);
//! - [`Comparator::Uuid`], [`Comparator::Id`] — values of the same format (both UUIDs; ids of the
//!   same shape: runs of digits, of letters and the punctuation between them; an all-digit or
//!   all-letter run also matches a mixed one, as random ids sometimes come out all digits);
//! - [`Comparator::Jwt`] — JWTs with the same header `alg` and the same claims but the time
//!   claims (`exp`, `iat`, `nbf`), so that a re-signed token compares by what it says;
//! - [`Comparator::Array`] — arrays paired by a key field (given, or inferred when one field is
//!   unique in every element of both arrays), else order-insensitively.
//!
//! Values that came from the responder's mocks (a recorded response leaf equal to a leaf of a
//! recorded outbound response of the same inbound request) are deterministic: compared exactly
//! whatever the comparators, and never silenced by a noise rule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;

use serde_json::Value;
use tapedeck_analyzer::tokens::{
    Class, Location, Part, TokenKind, classify_number, classify_text, decode_jwt, push_key,
    timestamp_seconds,
};

use crate::diff::{Field, ResponseView, Skip};

/// How the values at one path are compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparator {
    /// Equal values only.
    Exact,
    /// Numbers within `absolute` or within `relative` × the larger magnitude.
    Number {
        /// Absolute tolerance.
        absolute: f64,
        /// Relative tolerance (a fraction).
        relative: f64,
    },
    /// Timestamps, each within `skew_s` of its side's clock.
    Timestamp {
        /// Seconds.
        skew_s: f64,
    },
    /// Both UUIDs.
    Uuid,
    /// Ids of the same shape.
    Id,
    /// JWTs equal but for their time claims and signature.
    Jwt,
    /// Arrays paired by `key` (or an inferred key), else order-insensitively.
    Array {
        /// The key field of the elements.
        key: Option<String>,
    },
}

/// The default skew of timestamps against their clock, seconds.
pub const DEFAULT_SKEW_S: f64 = 300.0;

/// The largest relative jitter learning turns into a number comparator (above it, a noise rule).
pub const LEARN_MAX_RELATIVE: f64 = 0.01;

impl Comparator {
    /// The short name used in the noise file: `exact`, `number`, `timestamp`, `uuid`, `id`,
    /// `jwt`, `array`.
    pub fn kind(&self) -> &'static str {
        match self {
            Comparator::Exact => "exact",
            Comparator::Number { .. } => "number",
            Comparator::Timestamp { .. } => "timestamp",
            Comparator::Uuid => "uuid",
            Comparator::Id => "id",
            Comparator::Jwt => "jwt",
            Comparator::Array { .. } => "array",
        }
    }

    /// A readable description: `number ±0.01 or ±0.1 %`.
    pub fn describe(&self) -> String {
        match self {
            Comparator::Exact => "exact".to_owned(),
            Comparator::Number { absolute, relative } => {
                format!("number ±{absolute} or ±{} %", relative * 100.0)
            }
            Comparator::Timestamp { skew_s } => format!("timestamp within {skew_s} s of its clock"),
            Comparator::Uuid => "uuid format".to_owned(),
            Comparator::Id => "id format".to_owned(),
            Comparator::Jwt => "jwt claims (time claims aside)".to_owned(),
            Comparator::Array { key: Some(key) } => format!("array paired by {key}"),
            Comparator::Array { key: None } => "array, order-insensitive".to_owned(),
        }
    }
}

/// Where a comparator came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The noise file, entry `index` of its `comparators`.
    File(usize),
    /// Learned (entry `index` of the learned comparators).
    Learned(usize),
    /// A token rule of the snapshot, by name.
    TokenRule(String),
}

/// A comparator set for a field.
#[derive(Debug, Clone)]
pub struct Set {
    /// Only this endpoint (None: every endpoint).
    pub endpoint: Option<String>,
    /// The field as [`Field::describe`] writes it.
    pub field: String,
    /// The comparator.
    pub comparator: Comparator,
    /// Where it came from.
    pub origin: Origin,
}

/// One field where two responses differ as values.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Where.
    pub field: Field,
    /// The left value (recorded or baseline); absent: the right one added it.
    pub left: Option<String>,
    /// The right value (live or candidate); absent: the right one lacks it.
    pub right: Option<String>,
    /// Equal under a comparator (the values differ, the comparator accepts them).
    pub equal: bool,
    /// The comparator set that decided (an index into [`Comparer::sets`]); None: exact.
    pub by: Option<usize>,
    /// The recorded value came from the responder's mocks: compared exactly, never noise.
    pub deterministic: bool,
    /// Learning only: the comparator that would have accepted this difference.
    pub hint: Option<Comparator>,
}

/// The clocks of the two sides, Unix seconds: the recorded request's time for a recorded
/// response, the replay clock for a live one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clocks {
    /// Left side.
    pub left: i64,
    /// Right side.
    pub right: i64,
}

/// Compares responses of a run.
#[derive(Debug, Clone)]
pub struct Comparer {
    /// Headers compared (lowercase).
    pub headers: Vec<String>,
    /// Comparators by field.
    pub sets: Vec<Set>,
    by_field: HashMap<String, Vec<usize>>,
    /// Unix seconds a timestamp may be in (the window's plausible range widened to now).
    pub plausible: RangeInclusive<i64>,
}

impl Default for Comparer {
    fn default() -> Self {
        Comparer::new(
            vec!["content-type".to_owned()],
            Vec::new(),
            0..=i64::MAX / 2,
        )
    }
}

/// The comparator a token rule's kind implies at a response location.
pub fn token_comparator(kind: TokenKind) -> Comparator {
    match kind {
        TokenKind::Jwt => Comparator::Jwt,
        TokenKind::Timestamp => Comparator::Timestamp {
            skew_s: DEFAULT_SKEW_S,
        },
        TokenKind::Uuid => Comparator::Uuid,
        TokenKind::Id | TokenKind::Correlation => Comparator::Id,
    }
}

/// The field a response location names (`$.token`, `header set-cookie`), for token rules.
pub fn location_field(location: &Location) -> Option<String> {
    Some(match location.part {
        Part::Json => location.path.clone()?,
        Part::Header => format!("header {}", location.name.as_deref()?),
        Part::Cookie => "header set-cookie".to_owned(),
        Part::Query | Part::Path => return None,
    })
}

struct Cx<'a> {
    endpoint: &'a str,
    clocks: Clocks,
    deterministic: Option<&'a HashSet<String>>,
    skip: &'a dyn Skip,
    learn: bool,
}

fn text(bytes: &[u8]) -> String {
    cut(String::from_utf8_lossy(bytes).into_owned())
}

fn cut(mut out: String) -> String {
    if out.len() > 200 {
        let at = (0..=200)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(at);
        out.push('…');
    }
    out
}

fn leaf(value: &Value) -> String {
    cut(value.to_string())
}

fn header<'a>(
    message: &'a tapedeck_analyzer::replay::edit::LiveMessage,
    name: &str,
) -> Option<&'a [u8]> {
    message
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// Parses a body as JSON when it looks like an object or an array.
pub fn parse_json(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The shape of an id: each run of ASCII digits written `9`, of letters `a`, of both `x`;
/// other characters kept (`ord_000123` → `a_9`).
fn shape(text: &str) -> String {
    let mut out = String::new();
    let mut run: Option<char> = None;
    let flush = |out: &mut String, run: &mut Option<char>| {
        if let Some(c) = run.take() {
            out.push(c);
        }
    };
    for c in text.chars() {
        let class = if c.is_ascii_digit() {
            Some('9')
        } else if c.is_ascii_alphabetic() {
            Some('a')
        } else {
            None
        };
        match (class, run) {
            (Some(k), None) => run = Some(k),
            (Some(k), Some(r)) if k != r && r != 'x' => run = Some('x'),
            (Some(_), Some(_)) => {}
            (None, _) => {
                flush(&mut out, &mut run);
                out.push(c);
            }
        }
    }
    flush(&mut out, &mut run);
    out
}

/// Whether two ids are of one format: the same [`shape`], where a run of digits only (`9`) or
/// of letters only (`a`) also matches a mixed run (`x`), since a random alphanumeric id (hex,
/// base32) sometimes comes out all digits: `ord_3f9a…` and `ord_3019…` are the same format.
fn same_shape(left: &str, right: &str) -> bool {
    let (l, r) = (shape(left), shape(right));
    l.len() == r.len()
        && l.chars().zip(r.chars()).all(|pair| {
            matches!(pair, (a, b) if a == b) || matches!(pair, ('x', '9' | 'a') | ('9' | 'a', 'x'))
        })
}

/// The claims of a JWT without its time claims, with its header's `alg`.
fn jwt_claims(token: &str) -> Option<(String, serde_json::Map<String, Value>)> {
    use base64::Engine as _;
    let info = decode_jwt(token)?;
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let Value::Object(mut map) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    for time in ["exp", "iat", "nbf"] {
        map.remove(time);
    }
    Some((info.alg, map))
}

/// A leaf as text and whether it is a JSON number.
fn leaf_text(value: &Value) -> Option<(std::borrow::Cow<'_, str>, bool)> {
    match value {
        Value::String(s) => Some((std::borrow::Cow::Borrowed(s.as_str()), false)),
        Value::Number(n) => Some((std::borrow::Cow::Owned(n.to_string()), true)),
        _ => None,
    }
}

impl Comparer {
    /// A comparer of `headers` with comparators `sets` (the first set for a field and endpoint
    /// wins; an endpoint-scoped set before a global one); `plausible` bounds timestamps.
    pub fn new(headers: Vec<String>, sets: Vec<Set>, plausible: RangeInclusive<i64>) -> Comparer {
        let mut by_field: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, set) in sets.iter().enumerate() {
            by_field.entry(set.field.clone()).or_default().push(i);
        }
        Comparer {
            headers,
            sets,
            by_field,
            plausible,
        }
    }

    /// The comparator set for a field of an endpoint.
    pub fn lookup(&self, endpoint: &str, field: &str) -> Option<usize> {
        let candidates = self.by_field.get(field)?;
        candidates
            .iter()
            .find(|&&i| self.sets[i].endpoint.as_deref() == Some(endpoint))
            .or_else(|| {
                candidates
                    .iter()
                    .find(|&&i| self.sets[i].endpoint.is_none())
            })
            .copied()
    }

    /// Whether two text values are equal under `comparator` (`clocks` for timestamps).
    pub fn accepts(
        &self,
        comparator: &Comparator,
        left: &str,
        left_number: bool,
        right: &str,
        right_number: bool,
        clocks: Clocks,
    ) -> bool {
        let classify = |text: &str, number: bool| {
            if number {
                classify_number(text, &self.plausible)
            } else {
                classify_text(text, &self.plausible)
            }
        };
        match comparator {
            Comparator::Exact | Comparator::Array { .. } => false,
            Comparator::Number { absolute, relative } => {
                match (left.parse::<f64>(), right.parse::<f64>()) {
                    (Ok(l), Ok(r)) => {
                        let d = (l - r).abs();
                        d <= *absolute || d <= relative * l.abs().max(r.abs())
                    }
                    _ => false,
                }
            }
            Comparator::Timestamp { skew_s } => {
                let near = |text: &str, number: bool, clock: i64| match classify(text, number) {
                    Class::Timestamp(format) => timestamp_seconds(text, format)
                        .is_some_and(|s| ((s - clock) as f64).abs() <= *skew_s),
                    _ => false,
                };
                near(left, left_number, clocks.left) && near(right, right_number, clocks.right)
            }
            Comparator::Uuid => {
                classify(left, left_number) == Class::Uuid
                    && classify(right, right_number) == Class::Uuid
            }
            Comparator::Id => {
                if left_number && right_number {
                    return left.parse::<i64>().is_ok() && right.parse::<i64>().is_ok();
                }
                let id = |text: &str, number: bool| {
                    matches!(
                        classify(text, number),
                        Class::Id | Class::Uuid | Class::Number
                    )
                };
                id(left, left_number) && id(right, right_number) && same_shape(left, right)
            }
            Comparator::Jwt => {
                let strip = |t: &str| t.rsplit(' ').next().unwrap_or(t).to_owned();
                match (jwt_claims(&strip(left)), jwt_claims(&strip(right))) {
                    (Some(l), Some(r)) => l == r,
                    _ => false,
                }
            }
        }
    }

    /// Learning: the comparator that would accept two differing leaves, if any.
    fn hint(
        &self,
        left: &str,
        left_number: bool,
        right: &str,
        right_number: bool,
        clocks: Clocks,
    ) -> Option<Comparator> {
        let candidates = [
            Comparator::Uuid,
            Comparator::Timestamp {
                skew_s: DEFAULT_SKEW_S,
            },
            Comparator::Jwt,
        ];
        for c in candidates {
            if self.accepts(&c, left, left_number, right, right_number, clocks) {
                return Some(c);
            }
        }
        if left_number
            && right_number
            && let (Ok(l), Ok(r)) = (left.parse::<f64>(), right.parse::<f64>())
        {
            let relative = (l - r).abs() / l.abs().max(r.abs()).max(f64::MIN_POSITIVE);
            if relative <= LEARN_MAX_RELATIVE && (l.fract() != 0.0 || r.fract() != 0.0) {
                return Some(Comparator::Number {
                    absolute: 0.0,
                    relative,
                });
            }
        }
        if self.accepts(
            &Comparator::Id,
            left,
            left_number,
            right,
            right_number,
            clocks,
        ) {
            return Some(Comparator::Id);
        }
        None
    }

    /// Compares two responses of `endpoint`: the fields where their values differ, each with
    /// whether a comparator accepts it. `deterministic` holds the JSON paths whose recorded
    /// values came from the responder's mocks; `learn` adds [`Outcome::hint`]s.
    #[allow(clippy::too_many_arguments)] // Two responses and how to read them.
    pub fn compare(
        &self,
        endpoint: &str,
        left: ResponseView<'_>,
        right: ResponseView<'_>,
        clocks: Clocks,
        deterministic: Option<&HashSet<String>>,
        skip: &dyn Skip,
        learn: bool,
    ) -> Vec<Outcome> {
        let cx = Cx {
            endpoint,
            clocks,
            deterministic,
            skip,
            learn,
        };
        let mut out = Vec::new();
        if left.status != right.status {
            self.push_plain(
                &cx,
                &mut out,
                Field::Status,
                Some(left.status.to_string()),
                Some(right.status.to_string()),
            );
        }
        for name in &self.headers {
            let (l, r) = (header(left.message, name), header(right.message, name));
            if l == r {
                continue;
            }
            let field = Field::Header { name: name.clone() };
            if cx.skip.skip(endpoint, &field) {
                continue;
            }
            let described = field.describe();
            let by = self.lookup(endpoint, &described);
            let (lt, rt) = (
                l.map(|v| String::from_utf8_lossy(v)),
                r.map(|v| String::from_utf8_lossy(v)),
            );
            let equal = match (by, &lt, &rt) {
                (Some(i), Some(l), Some(r)) => {
                    self.accepts(&self.sets[i].comparator, l, false, r, false, clocks)
                }
                _ => false,
            };
            let hint = match (learn && !equal, &lt, &rt) {
                (true, Some(l), Some(r)) => self.hint(l, false, r, false, clocks),
                _ => None,
            };
            out.push(Outcome {
                field,
                left: l.map(text),
                right: r.map(text),
                equal,
                by,
                deterministic: false,
                hint,
            });
        }
        // gRPC: the status is a trailer (or a header of a trailers-only response).
        fn grpc<'a>(view: &ResponseView<'a>) -> Option<&'a [u8]> {
            view.trailers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
                .map(|(_, v)| v.as_slice())
                .or_else(|| header(view.message, "grpc-status"))
        }
        if let Some(l) = grpc(&left) {
            let r = grpc(&right);
            if Some(l) != r {
                self.push_plain(
                    &cx,
                    &mut out,
                    Field::Trailer {
                        name: "grpc-status".to_owned(),
                    },
                    Some(text(l)),
                    r.map(text),
                );
            }
        }
        let (lb, rb) = (&left.message.body, &right.message.body);
        if lb == rb {
            return out;
        }
        match (parse_json(lb), parse_json(rb)) {
            (Some(l), Some(r)) => self.json(&cx, &mut String::from("$"), &l, &r, &mut out),
            _ => self.push_plain(&cx, &mut out, Field::Body, Some(text(lb)), Some(text(rb))),
        }
        out
    }

    fn push_plain(
        &self,
        cx: &Cx<'_>,
        out: &mut Vec<Outcome>,
        field: Field,
        left: Option<String>,
        right: Option<String>,
    ) {
        if cx.skip.skip(cx.endpoint, &field) {
            return;
        }
        out.push(Outcome {
            field,
            left,
            right,
            equal: false,
            by: None,
            deterministic: false,
            hint: None,
        });
    }

    fn deterministic(&self, cx: &Cx<'_>, path: &str) -> bool {
        cx.deterministic.is_some_and(|d| d.contains(path))
    }

    fn json(&self, cx: &Cx<'_>, path: &mut String, l: &Value, r: &Value, out: &mut Vec<Outcome>) {
        match (l, r) {
            (Value::Object(lo), Value::Object(ro)) => {
                let len = path.len();
                for (key, lv) in lo {
                    push_key(path, key);
                    match ro.get(key) {
                        Some(rv) => self.json(cx, path, lv, rv, out),
                        None => {
                            self.push_leaf(cx, out, path, Some(leaf(lv)), None, false, None, None)
                        }
                    }
                    path.truncate(len);
                }
                for (key, rv) in ro {
                    if !lo.contains_key(key) {
                        push_key(path, key);
                        self.push_leaf(cx, out, path, None, Some(leaf(rv)), false, None, None);
                        path.truncate(len);
                    }
                }
            }
            (Value::Array(la), Value::Array(ra)) => {
                let deterministic = self.deterministic(cx, path);
                let set = if deterministic {
                    None
                } else {
                    self.lookup(cx.endpoint, path)
                };
                let by_key = set.and_then(|i| match &self.sets[i].comparator {
                    Comparator::Array { key } => Some(key.clone()),
                    _ => None,
                });
                if let Some(key) = by_key {
                    self.unordered(cx, path, la, ra, key.as_deref(), set, out);
                    return;
                }
                let mut by_index = Vec::new();
                self.indexed(cx, path, la, ra, &mut by_index);
                let differs =
                    |o: &Vec<Outcome>| o.iter().filter(|o| !o.equal && o.hint.is_none()).count();
                if cx.learn && !deterministic && la.len() == ra.len() && differs(&by_index) > 0 {
                    let mut unordered = Vec::new();
                    let key = infer_key(la, ra);
                    self.unordered(cx, path, la, ra, key.as_deref(), None, &mut unordered);
                    if differs(&unordered) < differs(&by_index) {
                        out.push(Outcome {
                            field: Field::Json { path: path.clone() },
                            left: Some(format!("{} elements", la.len())),
                            right: Some(format!("{} elements, in another order", ra.len())),
                            equal: false,
                            by: None,
                            deterministic: false,
                            hint: Some(Comparator::Array { key }),
                        });
                        out.extend(unordered);
                        return;
                    }
                }
                out.extend(by_index);
            }
            (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
            (a, b) if a == b => {}
            (a, b) => {
                let deterministic = self.deterministic(cx, path);
                let set = if deterministic {
                    None
                } else {
                    self.lookup(cx.endpoint, path)
                };
                let (lt, rt) = (leaf_text(a), leaf_text(b));
                let equal = match (set, &lt, &rt) {
                    (Some(i), Some((l, ln)), Some((r, rn))) => {
                        self.accepts(&self.sets[i].comparator, l, *ln, r, *rn, cx.clocks)
                    }
                    _ => false,
                };
                let hint = match (cx.learn && !equal && !deterministic, &lt, &rt) {
                    (true, Some((l, ln)), Some((r, rn))) => self.hint(l, *ln, r, *rn, cx.clocks),
                    _ => None,
                };
                self.push_leaf(
                    cx,
                    out,
                    path,
                    Some(leaf(a)),
                    Some(leaf(b)),
                    equal,
                    set,
                    hint,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // One outcome, spelled out.
    fn push_leaf(
        &self,
        cx: &Cx<'_>,
        out: &mut Vec<Outcome>,
        path: &str,
        left: Option<String>,
        right: Option<String>,
        equal: bool,
        by: Option<usize>,
        hint: Option<Comparator>,
    ) {
        let field = Field::Json {
            path: path.to_owned(),
        };
        if cx.skip.skip(cx.endpoint, &field) {
            return;
        }
        out.push(Outcome {
            field,
            left,
            right,
            equal,
            by,
            deterministic: self.deterministic(cx, path),
            hint,
        });
    }

    fn indexed(&self, cx: &Cx<'_>, path: &str, la: &[Value], ra: &[Value], out: &mut Vec<Outcome>) {
        let mut child = format!("{path}[*]");
        for i in 0..la.len().max(ra.len()) {
            match (la.get(i), ra.get(i)) {
                (Some(lv), Some(rv)) => self.json(cx, &mut child, lv, rv, out),
                (lv, rv) => self.push_leaf(
                    cx,
                    out,
                    &child,
                    lv.map(leaf),
                    rv.map(leaf),
                    false,
                    None,
                    None,
                ),
            }
        }
    }

    /// Pairs elements by `key` (or, with none, by an inferred key, else by equal values) and
    /// compares the pairs; unpaired elements are differences at `path[*]`.
    #[allow(clippy::too_many_arguments)] // Two arrays and how to pair them.
    fn unordered(
        &self,
        cx: &Cx<'_>,
        path: &str,
        la: &[Value],
        ra: &[Value],
        key: Option<&str>,
        set: Option<usize>,
        out: &mut Vec<Outcome>,
    ) {
        let inferred;
        let key = match key {
            Some(k) => Some(k),
            None => {
                inferred = infer_key(la, ra);
                inferred.as_deref()
            }
        };
        let mut child = format!("{path}[*]");
        let mut used = vec![false; ra.len()];
        let mut unpaired_left = Vec::new();
        for lv in la {
            let found = match key {
                Some(k) => {
                    let want = lv.get(k);
                    (0..ra.len()).find(|&j| !used[j] && want.is_some() && ra[j].get(k) == want)
                }
                None => (0..ra.len()).find(|&j| !used[j] && ra[j] == *lv),
            };
            match found {
                Some(j) => {
                    used[j] = true;
                    self.json(cx, &mut child, lv, &ra[j], out);
                }
                None => unpaired_left.push(lv),
            }
        }
        let unpaired_right: Vec<&Value> = ra
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(v, _)| v)
            .collect();
        // Without a key, leftovers pair in order (a changed element, not one gone and one new).
        let n = unpaired_left.len().max(unpaired_right.len());
        for i in 0..n {
            match (unpaired_left.get(i), unpaired_right.get(i)) {
                (Some(lv), Some(rv)) if key.is_none() => self.json(cx, &mut child, lv, rv, out),
                (lv, rv) => {
                    if let Some(lv) = lv {
                        self.push_leaf(cx, out, &child, Some(leaf(lv)), None, false, set, None);
                    }
                    if let Some(rv) = rv {
                        self.push_leaf(cx, out, &child, None, Some(leaf(rv)), false, set, None);
                    }
                }
            }
        }
    }
}

/// A field present in every element (objects) of both arrays, with scalar values unique within
/// each array: the first such field by name, fields with string values before numbers.
pub fn infer_key(la: &[Value], ra: &[Value]) -> Option<String> {
    let first = la.first().or(ra.first())?.as_object()?;
    let unique = |arr: &[Value], key: &str| {
        let mut seen = HashSet::new();
        arr.iter().all(|v| {
            v.get(key)
                .filter(|k| matches!(k, Value::String(_) | Value::Number(_)))
                .is_some_and(|k| seen.insert(k.to_string()))
        })
    };
    let keys: BTreeMap<(bool, &String), ()> = first
        .iter()
        .map(|(k, v)| ((!v.is_string(), k), ()))
        .collect();
    keys.into_keys()
        .map(|(_, k)| k)
        .find(|k| unique(la, k) && unique(ra, k))
        .cloned()
}

/// The JSON paths of a recorded response body whose leaf values came from mocks: values of the
/// recorded outbound responses of the same inbound request (`mocks`, texts of their leaves).
/// Short plain values (fewer than 4 characters, booleans, null) are left out: they match by
/// chance.
pub fn deterministic_paths(body: &[u8], mocks: &HashSet<String>) -> HashSet<String> {
    let mut out = HashSet::new();
    if mocks.is_empty() {
        return out;
    }
    fn walk(value: &Value, path: &mut String, mocks: &HashSet<String>, out: &mut HashSet<String>) {
        match value {
            Value::Object(map) => {
                let len = path.len();
                for (k, v) in map {
                    push_key(path, k);
                    walk(v, path, mocks, out);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let len = path.len();
                path.push_str("[*]");
                for v in items {
                    walk(v, path, mocks, out);
                }
                path.truncate(len);
            }
            other => {
                if let Some((text, _)) = leaf_text(other)
                    && text.len() >= 4
                    && mocks.contains(text.as_ref())
                {
                    out.insert(path.clone());
                }
            }
        }
    }
    if let Some(value) = parse_json(body) {
        walk(&value, &mut String::from("$"), mocks, &mut out);
    }
    out
}

/// The leaf texts of a JSON body (strings and numbers), for [`deterministic_paths`].
pub fn leaf_texts(body: &[u8], into: &mut HashSet<String>) {
    fn walk(value: &Value, into: &mut HashSet<String>) {
        match value {
            Value::Object(map) => map.values().for_each(|v| walk(v, into)),
            Value::Array(items) => items.iter().for_each(|v| walk(v, into)),
            other => {
                if let Some((text, _)) = leaf_text(other) {
                    into.insert(text.into_owned());
                }
            }
        }
    }
    if let Some(value) = parse_json(body) {
        walk(&value, into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_keep_punctuation_and_runs() {
        assert_eq!(shape("ord_000123"), "a_9");
        assert_eq!(shape("ord_99"), shape("ord_123456"));
        assert_ne!(shape("ord_99"), shape("cus-99"));
    }

    #[test]
    fn a_random_id_that_came_out_all_digits_is_still_the_same_format() {
        // The demo's order ids are `ord_` and 16 hex digits; about one in 1 900 is all digits.
        assert!(same_shape("ord_3f9a00c2b71e4d58", "ord_3019284756102938"));
        assert!(same_shape("ord_3019284756102938", "ord_3f9a00c2b71e4d58"));
        assert!(same_shape("ord_3f9a00c2b71e4d58", "ord_abcdefabcdefabcd"));
        assert!(!same_shape("ord_3f9a00c2b71e4d58", "ord-3f9a00c2b71e4d58"));
        assert!(!same_shape("ord_123", "ord_abc"));
        assert!(!same_shape("ord_3f9a", "ord_3f9a_2"));
        let clocks = Clocks {
            left: 1_764_000_000,
            right: 1_764_000_000,
        };
        let accepts = |left: &str, right: &str| {
            Comparer::default().accepts(&Comparator::Id, left, false, right, false, clocks)
        };
        assert!(accepts("ord_3f9a00c2b71e4d58", "ord_3019284756102938"));
        assert!(accepts("ord_3019284756102938", "ord_77e1a0f3c2b9d4e6"));
        assert!(!accepts("ord_3f9a00c2b71e4d58", "cus-3019284756102938"));
    }

    #[test]
    fn keys_are_inferred_when_unique_everywhere() {
        let l: Vec<Value> =
            serde_json::from_str(r#"[{"n":1,"sku":"a"},{"n":1,"sku":"b"}]"#).unwrap_or_default();
        let r: Vec<Value> =
            serde_json::from_str(r#"[{"n":2,"sku":"b"},{"n":1,"sku":"a"}]"#).unwrap_or_default();
        assert_eq!(infer_key(&l, &r).as_deref(), Some("sku"));
    }
}
