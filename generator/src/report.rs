//! The report of a run: one serializable [`Report`] (format version 1, documented in
//! `docs/replay-report.md` with the JSON Schema `docs/replay-report-v1.schema.json`), written to
//! `--report DIR` as `report.json`, `junit.xml` (a test case per goal and per endpoint) and
//! `report.html` (one self-contained page, charts drawn by inline script as SVG).

mod html;
mod junit;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Targets;
use crate::compare::Origin;
use crate::diff::{DiffGroup, DiffSummary, Finished, ThreeWay};
use crate::load::{Engine, Model};
use crate::noise::{NoiseFile, NoiseRule, Refused, RuleReport, Thresholds};
use crate::plan::Plan;
use crate::slo::{self, Checked, Goal, Verdict};
use crate::stats::Measured;
use crate::verdict::GateReport;
use crate::{Error, ReplayArgs, Result};

/// The report format version: 2 added the baseline, the gate, noise and the three-way view.
pub const REPORT_VERSION: u32 = 2;

/// File names in the report directory.
pub const JSON_FILE: &str = "report.json";
/// JUnit XML.
pub const JUNIT_FILE: &str = "junit.xml";
/// The HTML page.
pub const HTML_FILE: &str = "report.html";

/// How the run was set up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// `recorded`, `rate` or `concurrency`.
    pub model: String,
    /// `--speed`.
    pub speed: f64,
    /// The recorded pace actually used: `--speed` ÷ the capture sample rate.
    pub effective_speed: f64,
    /// The smallest capture sample rate of the recording (1: not sampled).
    pub sample_rate: f64,
    /// `--copies`.
    pub copies: u32,
    /// `--rate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// `--concurrency`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// `--iterations`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// `--duration`, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// `--ramp-up`, seconds.
    pub ramp_up_s: f64,
    /// The targets.
    pub targets: Vec<String>,
    /// Whether JWTs were re-signed (a `--jwt-key` was given).
    pub jwt_key: bool,
    /// The baselines (`--baseline`), as `targets`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<String>,
    /// `--calibrate`.
    #[serde(skip_serializing_if = "is_zero")]
    pub calibrate: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Settings {
    /// The settings of a run.
    pub fn of(args: &ReplayArgs, plan: &Plan, model: Model, targets: &Targets) -> Settings {
        let (name, effective) = match model {
            Model::Recorded { speed } => ("recorded", speed),
            Model::Rate(_) => ("rate", args.speed / plan.sample_rate),
            Model::Concurrency(_) => ("concurrency", args.speed / plan.sample_rate),
        };
        Settings {
            model: name.to_owned(),
            speed: args.speed,
            effective_speed: effective,
            sample_rate: plan.sample_rate,
            copies: args.copies,
            rate: args.rate,
            concurrency: args.concurrency.filter(|_| args.rate.is_none()),
            iterations: args.iterations,
            duration_s: args.duration.map(|d| d.as_secs_f64()),
            ramp_up_s: args.ramp_up.as_secs_f64(),
            targets: targets.describe(),
            jwt_key: args.jwt_key.is_some(),
            baselines: if args.baseline.is_empty() {
                Vec::new()
            } else {
                Targets::parse(&args.baseline)
                    .map(|t| t.describe())
                    .unwrap_or_default()
            },
            calibrate: args.calibrate,
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Waits for source responses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Waits {
    /// Requests that waited.
    pub count: u64,
    /// Median wait, ms.
    pub p50: f64,
    /// 99th percentile wait, ms.
    pub p99: f64,
    /// Longest wait, ms.
    pub max: f64,
}

/// A count at a place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    /// Where (a location, or a rule name).
    pub at: String,
    /// How many.
    pub count: u64,
}

/// The figures of one endpoint, or of the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// `METHOD /template` (`*` for the whole run).
    pub endpoint: String,
    /// Requests sent.
    pub requests: u64,
    /// Requests not sent because a source failed.
    pub failed_sources: u64,
    /// Errors (no response, transport error, timeout, 5xx).
    pub errors: u64,
    /// errors ÷ requests.
    pub error_rate: f64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Live latency, ms.
    pub latency: Latency,
    /// Recorded (production) latency of the same requests, ms.
    pub recorded_latency: Latency,
    /// live p99 ÷ recorded p99 (0 when nothing was recorded).
    pub p99_ratio: f64,
    /// Status mix: status (as text) → count; `"0"` is no response.
    pub status: std::collections::BTreeMap<String, u64>,
    /// Responses with at least one difference.
    pub diffs: u64,
    /// Waits for sources.
    pub waits: Waits,
    /// Redaction markers sent as recorded, by location.
    pub unresolved_redacted: Vec<Counted>,
    /// JWTs sent as recorded for want of `--jwt-key`, by rule.
    pub resign_without_key: Vec<Counted>,
    /// The first transport error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Figures {
    pub(crate) fn of(endpoint: &str, m: &Measured, seconds: f64, diffs: u64) -> Figures {
        let latency = Latency::of(&m.latency);
        let recorded_latency = Latency::of(&m.recorded);
        let counted = |map: &std::collections::BTreeMap<String, u64>| {
            map.iter()
                .map(|(at, count)| Counted {
                    at: at.clone(),
                    count: *count,
                })
                .collect()
        };
        Figures {
            endpoint: endpoint.to_owned(),
            requests: m.sent,
            failed_sources: m.failed_sources,
            errors: m.errors,
            error_rate: if m.sent == 0 {
                0.0
            } else {
                m.errors as f64 / m.sent as f64
            },
            rps: m.sent as f64 / seconds.max(1e-9),
            latency,
            recorded_latency,
            p99_ratio: if recorded_latency.p99 > 0.0 {
                latency.p99 / recorded_latency.p99
            } else {
                0.0
            },
            status: m
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            diffs,
            waits: Waits {
                count: m.waits.len(),
                p50: Latency::of(&m.waits).p50,
                p99: Latency::of(&m.waits).p99,
                max: Latency::of(&m.waits).max,
            },
            unresolved_redacted: counted(&m.unresolved),
            resign_without_key: counted(&m.resign_without_key),
            first_error: m.first_error.clone(),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub second: u64,
    /// Responses completed in it.
    pub requests: u64,
    /// Errors among them.
    pub errors: u64,
    /// Their median latency, ms.
    pub p50: f64,
    /// Their 99th percentile, ms.
    pub p99: f64,
}

/// The goals and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloResult {
    /// Pass or fail.
    pub verdict: Verdict,
    /// Each goal.
    pub goals: Vec<Checked>,
}

/// The report of a run (format version 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Always 1.
    pub version: u32,
    /// The snapshot replayed.
    pub snapshot: SnapshotInfo,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// Seconds from the first request due to the last response.
    pub duration_s: f64,
    /// The setup.
    pub settings: Settings,
    /// The whole run.
    pub overall: Figures,
    /// Per endpoint, by name.
    pub endpoints: Vec<Figures>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// Differences by endpoint and field (after the noise rules).
    pub diffs: Vec<DiffGroup>,
    /// Goals and verdict.
    pub slo: SloResult,
    /// The run's verdict: the worst of the goals' (`slo`) and the gate's.
    pub verdict: Verdict,
    /// With `--baseline`: the baseline arm's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Arm>,
    /// With `--baseline`: latency distributions of both arms per endpoint, with the gate's
    /// verdict of the endpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distributions: Vec<Distribution>,
    /// With `--baseline`: the statistical gate (`--goal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateReport>,
    /// Noise rules and comparators, and what they did.
    pub noise: NoiseReport,
    /// Example differing requests, field by field: recorded, baseline, candidate.
    pub three_way: Vec<ThreeWay>,
}

/// The baseline arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arm {
    /// The whole run (`diffs` is 0: differences are counted on the candidate).
    pub overall: Figures,
    /// Per endpoint, by name.
    pub endpoints: Vec<Figures>,
}

/// The quantiles of [`Distribution`]s.
pub const QUANTILES: [f64; 10] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

/// Latency distributions of the two arms of one endpoint (or `*`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    /// `METHOD /template`, or `*`.
    pub endpoint: String,
    /// The quantiles ([`QUANTILES`]).
    pub quantiles: Vec<f64>,
    /// The baseline's latency at each, ms.
    pub baseline: Vec<f64>,
    /// The candidate's latency at each, ms.
    pub candidate: Vec<f64>,
    /// The gate's worst verdict over its goals for this endpoint (`*`: the gate's verdict).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// How the calibration went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// `--calibrate`: passes over the recording.
    pub passes: u32,
    /// Baseline pairs compared.
    pub pairs: u64,
}

/// A comparator in force, and what it accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparatorReport {
    /// The endpoint (absent: every endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The field.
    pub field: String,
    /// The comparator, described.
    pub comparator: String,
    /// `file`, `recording`, `calibration` or `token rule NAME`.
    pub origin: String,
    /// Differing values it accepted in this run.
    pub matched: u64,
}

/// The noise section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoiseReport {
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// With `--calibrate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Every rule (file first, then learned), whether it applied, and what it silenced.
    pub rules: Vec<RuleReport>,
    /// Every comparator set for a field, and what it accepted.
    pub comparators: Vec<ComparatorReport>,
    /// Learned rules refused as over-broad.
    pub refused: Vec<Refused>,
}

/// What the run knows about noise before it starts: the file, what was learned.
#[derive(Debug, Clone)]
pub struct NoiseSetup {
    /// The noise file (or the default, empty one).
    pub file: NoiseFile,
    /// Learned comparators (`Origin::Learned(i)`).
    pub learned_comparators: Vec<crate::noise::ComparatorRule>,
    /// Every rule and its source (`file`, `recording`, `calibration`).
    pub rules: Vec<(NoiseRule, String)>,
    /// Learned rules refused.
    pub refused: Vec<Refused>,
    /// The calibration.
    pub calibration: Option<Calibration>,
}

/// The snapshot replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotInfo {
    /// Its id.
    pub id: String,
    /// Lines of `inbound.jsonl`.
    pub requests: u64,
}

impl Report {
    /// The report of a finished run, and the noise file it writes (rules and comparators with
    /// what they did in this run).
    pub fn build(
        engine: &Engine,
        settings: Settings,
        goals: &[Goal],
        started_unix_ns: i64,
        elapsed: Duration,
        noise: &NoiseSetup,
        gate: Option<GateReport>,
    ) -> (Report, NoiseFile) {
        let stats = engine.stats.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = elapsed.as_secs_f64();
        let comparer = &engine.comparer;

        // Noise rules: which apply, given this run's rates; then what is left.
        let thresholds = noise.file.thresholds;
        let origin = |o: &Origin| match o {
            Origin::File(_) => "file".to_owned(),
            Origin::Learned(i) => noise
                .learned_comparators
                .get(*i)
                .and_then(|c| c.evidence.as_ref())
                .map_or("learned", |e| e.source.as_str())
                .to_owned(),
            Origin::TokenRule(name) => format!("token rule {name}"),
        };
        let describe_set = |i: usize| {
            let set = &comparer.sets[i];
            format!("{} ({})", set.comparator.describe(), origin(&set.origin))
        };
        let (rule_reports, finished) = apply_noise(
            &stats.diffs,
            &noise.rules,
            &thresholds,
            &|by| comparer.sets[by].comparator.describe(),
            &describe_set,
        );
        let comparators: Vec<ComparatorReport> = comparer
            .sets
            .iter()
            .enumerate()
            .map(|(i, set)| ComparatorReport {
                endpoint: set.endpoint.clone(),
                field: set.field.clone(),
                comparator: set.comparator.describe(),
                origin: origin(&set.origin),
                matched: finished.matched.get(&i).copied().unwrap_or(0),
            })
            .collect();
        let mut file = noise.file.clone();
        file.comparators
            .extend(noise.learned_comparators.iter().cloned());
        let file_count = noise.file.comparators.len();
        for (i, set) in comparer.sets.iter().enumerate() {
            let index = match set.origin {
                Origin::File(j) => Some(j),
                Origin::Learned(j) => Some(file_count + j),
                Origin::TokenRule(_) => None,
            };
            if let Some(c) = index.and_then(|j| file.comparators.get_mut(j)) {
                c.matched = finished.matched.get(&i).copied().unwrap_or(0);
            }
        }
        file.rules = noise
            .rules
            .iter()
            .zip(&rule_reports)
            .map(|((rule, _), report)| NoiseRule {
                suppressed: report.suppressed,
                ..rule.clone()
            })
            .collect();

        let diffs_of = |e: &str| finished.responses.get(e).copied().unwrap_or(0);
        let overall = Figures::of(
            "*",
            &stats.overall(),
            seconds,
            finished.responses.values().sum(),
        );
        let endpoints: Vec<Figures> = stats
            .endpoints
            .iter()
            .map(|(e, m)| Figures::of(e, m, seconds, diffs_of(e)))
            .collect();
        let timeline = stats
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| Second {
                second: i as u64,
                requests: b.requests,
                errors: b.errors,
                p50: Latency::of(&b.latency).p50,
                p99: Latency::of(&b.latency).p99,
            })
            .collect();
        let value = |metric: &str| metric_value(&overall, metric);
        let checked = slo::check(goals, &value);
        let slo_verdict = slo::verdict(&checked);
        let paired = engine.baseline.is_some();
        let baseline = paired.then(|| Arm {
            overall: Figures::of("*", &stats.baseline_overall(), seconds, 0),
            endpoints: stats
                .baseline
                .iter()
                .map(|(e, m)| Figures::of(e, m, seconds, 0))
                .collect(),
        });
        let mut distributions = Vec::new();
        if paired {
            let quantiles = |h: &Histogram<u64>| -> Vec<f64> {
                QUANTILES
                    .iter()
                    .map(|&q| {
                        if h.is_empty() {
                            0.0
                        } else if q >= 1.0 {
                            h.max() as f64 / 1000.0
                        } else if q <= 0.0 {
                            h.min() as f64 / 1000.0
                        } else {
                            h.value_at_quantile(q) as f64 / 1000.0
                        }
                    })
                    .collect()
            };
            let gate_verdict = |endpoint: &str| {
                gate.as_ref().and_then(|g| {
                    if endpoint == "*" {
                        return Some(g.verdict);
                    }
                    g.goals
                        .iter()
                        .flat_map(|goal| goal.endpoints.iter())
                        .filter(|row| row.endpoint == endpoint)
                        .map(|row| row.verdict)
                        .max()
                })
            };
            let empty = Measured::default();
            distributions.push(Distribution {
                endpoint: "*".to_owned(),
                quantiles: QUANTILES.to_vec(),
                baseline: quantiles(&stats.baseline_overall().latency),
                candidate: quantiles(&stats.overall().latency),
                verdict: gate_verdict("*"),
            });
            for (e, m) in &stats.endpoints {
                let b = stats.baseline.get(e).unwrap_or(&empty);
                distributions.push(Distribution {
                    endpoint: e.clone(),
                    quantiles: QUANTILES.to_vec(),
                    baseline: quantiles(&b.latency),
                    candidate: quantiles(&m.latency),
                    verdict: gate_verdict(e),
                });
            }
        }
        let verdict = match &gate {
            Some(g) => slo_verdict.worst(g.verdict),
            None => slo_verdict,
        };
        let report = Report {
            version: REPORT_VERSION,
            snapshot: SnapshotInfo {
                id: engine.plan.snapshot_id.clone(),
                requests: engine.plan.lines.len() as u64,
            },
            started: tapedeck_proto_time(started_unix_ns),
            duration_s: seconds,
            settings,
            overall,
            endpoints,
            timeline,
            diffs: finished.groups,
            slo: SloResult {
                verdict: slo_verdict,
                goals: checked,
            },
            verdict,
            baseline,
            distributions,
            gate,
            noise: NoiseReport {
                thresholds,
                calibration: noise.calibration,
                rules: rule_reports,
                comparators,
                refused: noise.refused.clone(),
            },
            three_way: finished.three_way,
        };
        (report, file)
    }

    /// The verdict (its [`Verdict::exit_code`] is the process's): the worst of the goals' and
    /// the gate's.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // A Report holds only strings, numbers, maps with string keys and lists.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// JUnit XML: a test suite of goals and one of endpoints.
    pub fn to_junit(&self) -> String {
        junit::render(self)
    }

    /// The self-contained HTML page.
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// Writes `report.json`, `junit.xml` and `report.html` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in [
            (JSON_FILE, self.to_json()),
            (JUNIT_FILE, self.to_junit()),
            (HTML_FILE, self.to_html()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        Ok(())
    }

    /// A short summary for the terminal.
    pub fn summary(&self) -> String {
        let o = &self.overall;
        let mut out = format!(
            "replayed {} requests in {:.1}s ({:.1} rps): {} errors ({:.2} %), p50 {:.2} ms, p99 {:.2} ms (recorded p99 {:.2} ms), {} with diffs, {} not sent (failed source)\n",
            o.requests,
            self.duration_s,
            o.rps,
            o.errors,
            o.error_rate * 100.0,
            o.latency.p50,
            o.latency.p99,
            o.recorded_latency.p99,
            o.diffs,
            o.failed_sources,
        );
        let unresolved: u64 = o.unresolved_redacted.iter().map(|c| c.count).sum();
        if unresolved > 0 {
            out.push_str(&format!(
                "{unresolved} redacted values sent as recorded (no --secrets for them)\n"
            ));
        }
        let unsigned: u64 = o.resign_without_key.iter().map(|c| c.count).sum();
        if unsigned > 0 {
            out.push_str(&format!(
                "{unsigned} JWTs sent as recorded (no --jwt-key)\n"
            ));
        }
        for g in &self.slo.goals {
            out.push_str(&format!(
                "goal {}: {} (measured {})\n",
                g.goal,
                if g.pass { "pass" } else { "FAIL" },
                g.measured
            ));
        }
        if let Some(gate) = &self.gate {
            for line in gate.lines() {
                out.push_str(&format!("gate {line}\n"));
            }
        }
        let silenced: u64 = self.noise.rules.iter().map(|r| r.suppressed).sum();
        if silenced > 0 || !self.noise.refused.is_empty() {
            out.push_str(&format!(
                "noise: {} rules applied ({silenced} differences silenced), {} refused as over-broad\n",
                self.noise.rules.iter().filter(|r| r.applied).count(),
                self.noise.refused.len()
            ));
        }
        out.push_str(match self.verdict {
            Verdict::Pass => "verdict: pass\n",
            Verdict::Fail => "verdict: FAIL\n",
            Verdict::Inconclusive => "verdict: INCONCLUSIVE\n",
        });
        out
    }
}

/// The value of an `--slo` metric over the whole run (also of a merged run: `replay merge`).
pub(crate) fn metric_value(overall: &Figures, metric: &str) -> f64 {
    let l = &overall.latency;
    match metric {
        "p50" => l.p50,
        "p90" => l.p90,
        "p95" => l.p95,
        "p99" => l.p99,
        "max" => l.max,
        "mean" => l.mean,
        "errors" => overall.error_rate,
        "diffs" => diff_share(overall.diffs, overall.requests),
        "failed-sources" => overall.failed_sources as f64,
        "unresolved" => overall
            .unresolved_redacted
            .iter()
            .map(|c| c.count)
            .sum::<u64>() as f64,
        "rps" => overall.rps,
        _ => f64::NAN,
    }
}

/// The `diffs` metric: responses with a difference ÷ requests.
fn diff_share(diffs: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        diffs as f64 / requests as f64
    }
}

/// Decides which noise rules apply given the run's rates ([`crate::noise::decide`]) and what
/// they leave of the differences ([`DiffSummary::finish_with`]), with each rule's suppressed
/// count. The one definition, for a run ([`Report::build`]) and for its differences read back
/// from the report directory ([`Rediff::recompute`]).
pub fn apply_noise(
    diffs: &DiffSummary,
    rules: &[(NoiseRule, String)],
    thresholds: &Thresholds,
    describe_comparator: &dyn Fn(usize) -> String,
    describe_set: &dyn Fn(usize) -> String,
) -> (Vec<RuleReport>, Finished) {
    let (mut rule_reports, active) =
        crate::noise::decide(rules, &diffs.rates(), diffs.compared(), thresholds);
    let mut by_endpoint: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for ((endpoint, field), i) in &active {
        by_endpoint
            .entry(endpoint.as_str())
            .or_default()
            .insert(field.as_str(), *i);
    }
    let describe_rule = |i: usize| format!("noise rule {i} ({})", rules[i].1);
    let active_of = |endpoint: &str, field: &str| {
        by_endpoint
            .get(endpoint)
            .and_then(|m| m.get(field))
            .map(|&i| (i, describe_rule(i)))
    };
    let finished = diffs.finish_with(&active_of, describe_comparator, describe_set);
    for (i, r) in rule_reports.iter_mut().enumerate() {
        r.suppressed = finished.suppressed.get(&i).copied().unwrap_or(0);
    }
    (rule_reports, finished)
}

/// The file of a report directory that keeps the run's differences before the noise rules
/// ([`Rediff`]), so that its verdict can be decided again under other rules (`tapedeck ui`).
pub const DIFFS_FILE: &str = "diffs.json";

/// The format version of [`DIFFS_FILE`].
pub const DIFFS_VERSION: u32 = 1;

/// What deciding a finished run's differences again needs: the differences before the noise
/// rules, the run's rules, how its comparators were described, and what its verdict was made
/// of besides the differences (the `--slo` goals and the other metrics' values, the gate's
/// verdict, which noise does not change). Written into the report directory as [`DIFFS_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rediff {
    /// [`DIFFS_VERSION`].
    pub version: u32,
    /// The run's noise rules (the `--noise` file's, then the learned ones) and their sources
    /// (`file`, `recording`, `calibration`).
    pub rules: Vec<(NoiseRule, String)>,
    /// The run's thresholds.
    pub thresholds: Thresholds,
    /// The fields of each endpoint ([`crate::noise::endpoint_fields`]): what `--noise` files
    /// are checked against ([`crate::noise::read`]).
    pub fields: BTreeMap<String, usize>,
    /// Per comparator set, the comparator as `Comparator::describe` wrote it.
    pub comparators: Vec<String>,
    /// Per comparator set, the comparator and its origin, as the three-way view names it.
    pub sets: Vec<String>,
    /// The `--slo` goals.
    pub goals: Vec<Goal>,
    /// The value of each goal's metric in the run (`diffs` is recomputed).
    pub values: BTreeMap<String, f64>,
    /// Requests sent (the denominator of `diffs`).
    pub requests: u64,
    /// The gate's verdict (with `--baseline`).
    pub gate: Option<Verdict>,
    /// The differences, before the noise rules.
    pub summary: DiffSummary,
}

/// A run's differences decided again ([`Rediff::recompute`]): the parts of [`Report`] that the
/// noise rules change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recomputed {
    /// Every rule, whether it applied and what it silenced (`noise.rules`).
    pub rules: Vec<RuleReport>,
    /// The groups of differences left (`diffs`).
    pub diffs: Vec<DiffGroup>,
    /// The three-way view of the example requests (`three_way`).
    pub three_way: Vec<ThreeWay>,
    /// Responses with a difference left, per endpoint (`endpoints[].diffs`).
    pub responses: BTreeMap<String, u64>,
    /// Responses with a difference left (`overall.diffs`).
    pub overall_diffs: u64,
    /// The goals (`slo`).
    pub slo: SloResult,
    /// The run's verdict: the worst of the goals' and the gate's (`verdict`).
    pub verdict: Verdict,
}

impl Rediff {
    /// What `report`'s run needs kept: `diffs` before the noise rules, the run's `noise`,
    /// `goals` and the endpoints' `fields`.
    pub fn of(
        report: &Report,
        diffs: &DiffSummary,
        noise: &NoiseSetup,
        goals: &[Goal],
        fields: &BTreeMap<String, usize>,
    ) -> Rediff {
        Rediff {
            version: DIFFS_VERSION,
            rules: noise.rules.clone(),
            thresholds: noise.file.thresholds,
            fields: fields.clone(),
            comparators: report
                .noise
                .comparators
                .iter()
                .map(|c| c.comparator.clone())
                .collect(),
            sets: report
                .noise
                .comparators
                .iter()
                .map(|c| format!("{} ({})", c.comparator, c.origin))
                .collect(),
            goals: goals.to_vec(),
            values: goals
                .iter()
                .map(|g| (g.metric.clone(), metric_value(&report.overall, &g.metric)))
                .collect(),
            requests: report.overall.requests,
            gate: report.gate.as_ref().map(|g| g.verdict),
            summary: diffs.clone(),
        }
    }

    /// Writes [`DIFFS_FILE`] into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(DIFFS_FILE);
        let text = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        std::fs::write(&path, text).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads [`DIFFS_FILE`] from `dir`.
    pub fn read(dir: &Path) -> Result<Rediff> {
        let path = dir.join(DIFFS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let bad = |why: String| Error::Read {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
        };
        let rediff: Rediff = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if rediff.version != DIFFS_VERSION {
            return Err(bad(format!(
                "version {} (this tapedeck reads version {DIFFS_VERSION})",
                rediff.version
            )));
        }
        Ok(rediff)
    }

    /// The rules the run learned (from the recording or calibration).
    pub fn learned(&self) -> impl Iterator<Item = &(NoiseRule, String)> {
        self.rules.iter().filter(|(_, source)| source != "file")
    }

    /// Decides the differences again as a replay with `--noise FILE` would on the same
    /// responses: `file`'s rules and thresholds, then the rules the run learned (the comparators
    /// stay the run's: a comparator needs the values themselves).
    pub fn recompute(&self, file: &NoiseFile) -> Recomputed {
        let mut rules: Vec<(NoiseRule, String)> = file
            .rules
            .iter()
            .map(|r| (r.clone(), "file".to_owned()))
            .collect();
        rules.extend(self.learned().cloned());
        let (rule_reports, finished) = apply_noise(
            &self.summary,
            &rules,
            &file.thresholds,
            &|i| self.comparators.get(i).cloned().unwrap_or_default(),
            &|i| self.sets.get(i).cloned().unwrap_or_default(),
        );
        let overall_diffs: u64 = finished.responses.values().sum();
        let share = diff_share(overall_diffs, self.requests);
        let value = |metric: &str| {
            if metric == "diffs" {
                share
            } else {
                self.values.get(metric).copied().unwrap_or(f64::NAN)
            }
        };
        let checked = slo::check(&self.goals, &value);
        let slo_verdict = slo::verdict(&checked);
        let verdict = match self.gate {
            Some(gate) => slo_verdict.worst(gate),
            None => slo_verdict,
        };
        Recomputed {
            rules: rule_reports,
            diffs: finished.groups,
            three_way: finished.three_way,
            responses: finished.responses,
            overall_diffs,
            slo: SloResult {
                verdict: slo_verdict,
                goals: checked,
            },
            verdict,
        }
    }
}

fn tapedeck_proto_time(unix_ns: i64) -> String {
    tapedeck_har::time::format(u64::try_from(unix_ns).unwrap_or(0))
}
