//! Goals (`--slo "p99<250ms,errors<1%,rps>=500"` or a file of them) and the pass/fail verdict.
//!
//! A goal is `METRIC OP VALUE[UNIT]`. Metrics: `p50`, `p90`, `p95`, `p99`, `max`, `mean`
//! (latency over the whole run; units `us`, `ms` (default), `s`), `errors` (error rate; `%`, or a
//! fraction without unit), `diffs` (share of responses with a difference; `%` or a fraction),
//! `failed-sources` and `unresolved` (counts), `rps` (achieved requests per second). Operators
//! `<`, `<=`, `>`, `>=`. Goals are separated by commas or new lines; in a file, `#` starts a
//! comment line.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Gt => actual > threshold,
            Op::Ge => actual >= threshold,
        }
    }
}

/// One goal, its value normalised: latencies in milliseconds, rates as fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// As written.
    pub text: String,
    /// The metric.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The threshold in the metric's unit (ms, fraction, count, per second).
    pub threshold: f64,
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const LATENCY: &[&str] = &["p50", "p90", "p95", "p99", "max", "mean"];
const RATES: &[&str] = &["errors", "diffs"];
const COUNTS: &[&str] = &["failed-sources", "unresolved", "rps"];

/// Parses goals: the text itself, or the contents of the file it names.
pub fn parse(spec: &str) -> Result<Vec<Goal>> {
    let path = std::path::Path::new(spec);
    let text = if path.is_file() {
        std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: spec.to_owned(),
            source,
        })?
    } else {
        spec.to_owned()
    };
    let mut goals = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for part in line.split(',') {
            let part = part.trim();
            if !part.is_empty() {
                goals.push(parse_goal(part)?);
            }
        }
    }
    Ok(goals)
}

fn parse_goal(text: &str) -> Result<Goal> {
    let bad = |why: String| Error::Slo(format!("goal {text:?}: {why}"));
    let at = text
        .find(['<', '>'])
        .ok_or_else(|| bad("expected METRIC<VALUE, <=, > or >=".to_owned()))?;
    let metric = text[..at].trim().to_ascii_lowercase();
    let rest = &text[at..];
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Gt, &rest[1..])
    };
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| bad(format!("{number:?} is not a number")))?;
    let unit = unit.trim();
    let threshold = if LATENCY.contains(&metric.as_str()) {
        match unit {
            "" | "ms" => number,
            "us" | "µs" => number / 1000.0,
            "s" => number * 1000.0,
            other => return Err(bad(format!("unknown latency unit {other:?} (us, ms, s)"))),
        }
    } else if RATES.contains(&metric.as_str()) {
        match unit {
            "%" => number / 100.0,
            "" => number,
            other => return Err(bad(format!("unknown unit {other:?} (% or a fraction)"))),
        }
    } else if COUNTS.contains(&metric.as_str()) {
        match unit {
            "" | "/s" => number,
            other => return Err(bad(format!("unknown unit {other:?}"))),
        }
    } else {
        return Err(bad(format!(
            "unknown metric {metric:?} (p50, p90, p95, p99, max, mean, errors, diffs, failed-sources, unresolved, rps)"
        )));
    };
    Ok(Goal {
        text: text.to_owned(),
        metric,
        op,
        threshold,
    })
}

/// A goal checked against a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    /// The goal as written.
    pub goal: String,
    /// The metric.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The threshold (ms, fraction, count or per second).
    pub threshold: f64,
    /// What the run measured, in the same unit.
    pub actual: f64,
    /// What the run measured, written with its unit for people (`1254.40 ms`, `12.50 %`).
    pub measured: String,
    /// Whether the goal holds.
    pub pass: bool,
}

/// A measured value with its metric's unit, as people read it: `1254.40 ms`, `12.50 %`,
/// `480.3/s`, `3`.
fn with_unit(metric: &str, actual: f64) -> String {
    if LATENCY.contains(&metric) {
        format!("{actual:.2} ms")
    } else if RATES.contains(&metric) {
        format!("{:.2} %", actual * 100.0)
    } else if metric == "rps" {
        format!("{actual:.1}/s")
    } else {
        format!("{actual}")
    }
}

/// Checks goals; `value(metric)` gives the run's value in the goal's unit.
pub fn check(goals: &[Goal], value: &dyn Fn(&str) -> f64) -> Vec<Checked> {
    goals
        .iter()
        .map(|g| {
            let actual = value(&g.metric);
            Checked {
                goal: g.text.clone(),
                metric: g.metric.clone(),
                op: g.op,
                threshold: g.threshold,
                actual,
                measured: with_unit(&g.metric, actual),
                pass: g.op.holds(actual, g.threshold),
            }
        })
        .collect()
}

/// The verdict of a run: one definition, the gate's (pass, fail, inconclusive); goals give pass
/// or fail.
pub use crate::verdict::Verdict;

/// The verdict of checked goals.
pub fn verdict(checked: &[Checked]) -> Verdict {
    if checked.iter().all(|c| c.pass) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}
