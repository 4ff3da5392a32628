//! Comparative goals: `METRIC [+|-]TOLERANCE [@ CONFIDENCE]`.
//!
//! | metric | tolerance | means |
//! | --- | --- | --- |
//! | `p50`, `p90`, `p95`, `p99`, `p99.9` (any `pNN`) | `+10%` | the candidate's quantile at most 10 % above the baseline's |
//! | `mean` | `+10%` | the candidate's mean latency at most 10 % above the baseline's |
//! | `shift` | `+5%` | the typical per-request slowdown (Hodges-Lehmann of the paired log ratios) at most 5 % |
//! | `errors` | `+2pp` | the candidate's error rate at most 2 percentage points above the baseline's |
//! | `rps` | `-10%` | the candidate's throughput at most 10 % below the baseline's |
//!
//! A latency tolerance without sign is a rise (`p99 10%` = `p99 +10%`), an `rps` tolerance
//! without sign a drop (`rps 10%` = `rps -10%`); an explicit opposite sign asks for an
//! improvement (`p99 -5%`: the candidate's p99 at least 5 % below). CONFIDENCE is `95%`, `99%`,
//! `0.95` … (default 95 %, between 50 % and 99.99 %). Spaces are optional: `p99+10%@95%`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// The confidence of a goal that gives none.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

/// The goals used with `--baseline` when no `--goal` is given.
pub const DEFAULTS: &[&str] = &["p50 +10% @ 95%", "p99 +10% @ 95%", "errors +1pp @ 95%"];

/// What a goal compares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Metric {
    /// A latency quantile (0.99 for `p99`).
    Quantile(f64),
    /// The mean latency.
    Mean,
    /// The location shift of the latencies: Hodges-Lehmann with the Wilcoxon signed-rank test
    /// (pairs) or Mann-Whitney U (unpaired).
    Shift,
    /// The error rate.
    Errors,
    /// Throughput: successful responses per second.
    Rps,
}

impl Metric {
    /// Whether a higher candidate value is the regression (latency, errors); `rps` is the other
    /// way round.
    pub fn higher_is_worse(self) -> bool {
        !matches!(self, Metric::Rps)
    }

    /// Whether the metric is a latency (left out for requests with an error).
    pub fn is_latency(self) -> bool {
        matches!(self, Metric::Quantile(_) | Metric::Mean | Metric::Shift)
    }

    fn from_name(name: &str) -> Option<Metric> {
        match name {
            "mean" => Some(Metric::Mean),
            "shift" => Some(Metric::Shift),
            "errors" => Some(Metric::Errors),
            "rps" => Some(Metric::Rps),
            _ => {
                let digits = name.strip_prefix('p')?;
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return None;
                }
                // Kept to the 4 decimals the normalised text shows, so the text parses back
                // to the same quantile (`p99.99999` would print as `p100`).
                let percent = round4(digits.parse().ok()?);
                (percent > 0.0 && percent < 100.0).then_some(Metric::Quantile(percent / 100.0))
            }
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Quantile(q) => write!(f, "p{}", trim(q * 100.0)),
            Metric::Mean => f.write_str("mean"),
            Metric::Shift => f.write_str("shift"),
            Metric::Errors => f.write_str("errors"),
            Metric::Rps => f.write_str("rps"),
        }
    }
}

impl From<Metric> for String {
    fn from(m: Metric) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Metric {
    type Error = String;
    fn try_from(name: String) -> std::result::Result<Metric, String> {
        Metric::from_name(&name).ok_or_else(|| format!("unknown metric {name:?}"))
    }
}

/// The largest tolerance, in percent (or percentage points).
pub const MAX_TOLERANCE_PERCENT: f64 = 100_000.0;

/// `x` rounded to 4 decimals: what [`trim`] shows of a percentage.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A number without trailing zeros: 99, 99.9, 2.5.
fn trim(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One comparative goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// Normalised: `p99 +10% @ 95%`.
    pub text: String,
    /// What is compared.
    pub metric: Metric,
    /// The tolerated change, candidate against baseline: a relative change for latency and
    /// `rps` (0.10 = +10 %, −0.10 = −10 %), a difference of rates for `errors` (0.02 = +2pp).
    pub tolerance: f64,
    /// The confidence (0.95); α = 1 − confidence.
    pub confidence: f64,
}

impl Goal {
    /// α = 1 − confidence.
    pub fn alpha(&self) -> f64 {
        1.0 - self.confidence
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The default goals ([`DEFAULTS`]).
pub fn defaults() -> Result<Vec<Goal>> {
    DEFAULTS.iter().map(|g| parse(g)).collect()
}

/// Parses one goal.
pub fn parse(spec: &str) -> Result<Goal> {
    let bad = |why: &str| Error::Goal {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let text = spec.trim().to_ascii_lowercase();
    let (left, confidence) = match text.split_once('@') {
        Some((left, right)) => (left, Some(right.trim())),
        None => (text.as_str(), None),
    };
    let left = left.trim();
    let name_end = left
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(left.len());
    let (name, tolerance) = left.split_at(name_end);
    if name.is_empty() {
        return Err(bad(
            "expected METRIC [+|-]TOLERANCE [@ CONFIDENCE%], e.g. `p99 +10% @ 95%`",
        ));
    }
    let metric = Metric::from_name(name).ok_or_else(|| {
        bad(&format!(
            "unknown metric {name:?} (p50, p90, p95, p99, p99.9 or any pNN, mean, shift, errors, rps)"
        ))
    })?;
    let tolerance = tolerance.trim();
    if tolerance.is_empty() {
        return Err(bad(match metric {
            Metric::Errors => "missing tolerance, e.g. `errors +2pp @ 95%`",
            Metric::Rps => "missing tolerance, e.g. `rps -10% @ 95%`",
            _ => "missing tolerance, e.g. `p99 +10% @ 95%`",
        }));
    }
    let (sign, magnitude) = match tolerance.as_bytes()[0] {
        b'+' => (Some(1.0), tolerance[1..].trim_start()),
        b'-' => (Some(-1.0), tolerance[1..].trim_start()),
        _ => (None, tolerance),
    };
    let number_end = magnitude
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(magnitude.len());
    let (number, unit) = magnitude.split_at(number_end);
    let number: f64 = number
        .parse()
        .ok()
        .map(round4)
        // Past this, 4 decimals are below the precision of an f64 and the text would not
        // parse back to the same tolerance.
        .filter(|n: &f64| *n <= MAX_TOLERANCE_PERCENT)
        .ok_or_else(|| {
            bad(&format!(
                "{tolerance:?} is not a tolerance (+10%, +2pp, -10%)"
            ))
        })?;
    let unit = unit.trim();
    let expected_unit = if metric == Metric::Errors { "pp" } else { "%" };
    if unit != expected_unit {
        return Err(bad(&match (metric, unit) {
            (Metric::Errors, "%") => {
                "error tolerances are in percentage points: `errors +2pp` (2 points above the baseline's rate)".to_owned()
            }
            (Metric::Errors, _) => format!("unknown unit {unit:?}: error tolerances are in percentage points (`+2pp`)"),
            (_, "") => "the tolerance is relative to the baseline: write it in percent (`+10%`)".to_owned(),
            (_, "ms" | "s" | "us" | "µs") => {
                "the tolerance is relative to the baseline (`+10%`); absolute limits are --slo goals (`p99<250ms`)".to_owned()
            }
            _ => format!("unknown unit {unit:?}: the tolerance is a percentage (`+10%`)"),
        }));
    }
    let default_sign = if metric.higher_is_worse() { 1.0 } else { -1.0 };
    let tolerance = sign.unwrap_or(default_sign) * number / 100.0;
    if metric != Metric::Errors && tolerance <= -1.0 {
        return Err(bad("a relative tolerance must be above -100%"));
    }
    if metric == Metric::Errors && tolerance.abs() >= 1.0 {
        return Err(bad("an error-rate tolerance must be within ±100pp"));
    }
    let confidence = match confidence {
        None => DEFAULT_CONFIDENCE,
        Some(c) => {
            let (number, percent) = match c.strip_suffix('%') {
                Some(n) => (n.trim(), true),
                None => (c, false),
            };
            let value: f64 = number
                .parse()
                .map_err(|_| bad(&format!("{c:?} is not a confidence (`@ 95%` or `@ 0.95`)")))?;
            let value = if percent || value > 1.0 {
                round4(value) / 100.0
            } else {
                round4(value * 100.0) / 100.0
            };
            if !(0.5..=0.9999).contains(&value) {
                return Err(bad(&format!(
                    "confidence {c:?} is out of range (50% to 99.99%)"
                )));
            }
            value
        }
    };
    let unit_text = if metric == Metric::Errors { "pp" } else { "%" };
    let text = format!(
        "{metric} {}{}{unit_text} @ {}%",
        if tolerance < 0.0 { "-" } else { "+" },
        trim(tolerance.abs() * 100.0),
        trim(confidence * 100.0),
    );
    Ok(Goal {
        text,
        metric,
        tolerance,
        confidence,
    })
}
