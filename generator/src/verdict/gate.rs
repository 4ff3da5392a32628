//! [`evaluate`]: goals × (overall, endpoints) → verdicts with their statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::goal::{Goal, Metric};
use super::rng::Rng;
use super::stats::{self, Statistic};
use super::{Sample, Verdict, Warmup};

/// `--min-samples` default: fewest samples (pairs after warm-up) of a row for a pass or fail.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;
/// `--bootstrap` default: resamples per row.
pub const DEFAULT_RESAMPLES: u32 = 2000;
/// The power at which the minimum detectable effect of an inconclusive row is stated.
pub const DETECT_POWER: f64 = 0.8;
/// A quantile goal needs this many samples beyond its quantile (p99: 2 / 1 % = 200 samples,
/// p99.9: 2 000): with fewer, the bootstrap underestimates the spread of a tail quantile (A/A
/// simulations of `p99 +0%` false-fail 6.6 % at n = 100 and 6.4 % at 150 for α = 5 %; 4.1 % at
/// 200 and 3.1 % at 1 000).
pub const TAIL_SAMPLES: f64 = 2.0;
/// The time windows of the `rps` goal (block bootstrap over them).
pub const RPS_WINDOWS: usize = 20;
/// The endpoint name of the row over every endpoint.
pub const OVERALL: &str = "overall";
/// Pairs count as paired data when at least this share of a row's samples has both arms.
const PAIRED_SHARE: f64 = 0.9;

/// How [`evaluate`] runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `--min-samples`.
    pub min_samples: u64,
    /// `--warmup`.
    pub warmup: Warmup,
    /// `--bootstrap` resamples.
    pub resamples: u32,
    /// `--seed`.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_samples: DEFAULT_MIN_SAMPLES,
            warmup: Warmup::default(),
            resamples: DEFAULT_RESAMPLES,
            seed: 1,
        }
    }
}

/// A standardised effect size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectSize {
    /// `rank-biserial` (latency: share of pairs slower minus share faster, rank-weighted, in
    /// [−1, 1]), `cohen-h` (error rates: 2·asin√p_c − 2·asin√p_b) or `ratio` (throughput).
    pub measure: String,
    /// Its value.
    pub value: f64,
}

/// The rank test shown beside every latency goal: is there a shift at all?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankTest {
    /// `wilcoxon-signed-rank` (pairs) or `mann-whitney-u` (unpaired).
    pub test: String,
    /// Hodges-Lehmann shift of the log latencies, as a relative change (0.05 = +5 %).
    pub shift: f64,
    /// Its interval, each bound one-sided at the goal's confidence.
    pub interval: [f64; 2],
    /// Two-sided p-value of "no shift".
    pub p_value: f64,
    /// Rank-biserial correlation.
    pub rank_biserial: f64,
}

/// One goal on one row (an endpoint, or [`OVERALL`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `METHOD /template`, or [`OVERALL`].
    pub endpoint: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Samples used: pairs (paired), the smaller arm (unpaired), requests per arm (`errors`).
    pub n: u64,
    /// Baseline requests of the row (after warm-up).
    pub n_baseline: u64,
    /// Candidate requests of the row (after warm-up).
    pub n_candidate: u64,
    /// Whether the samples were analysed as pairs.
    pub paired: bool,
    /// The baseline's value of the metric: ms (latency; `shift`: median), a rate (`errors`), per
    /// second (`rps`).
    pub baseline: Option<f64>,
    /// The candidate's value, same unit.
    pub candidate: Option<f64>,
    /// The change, candidate against baseline: relative (0.234 = +23.4 %) or, for `errors`, a
    /// difference of rates (0.02 = +2pp).
    pub estimate: Option<f64>,
    /// The change's interval, same unit: each bound is one-sided at the goal's confidence (so
    /// the pair is a two-sided interval at 1 − 2α).
    pub interval: Option<[f64; 2]>,
    /// One-sided p-value of "the change is within tolerance" (small: a regression beyond it).
    pub p_value: Option<f64>,
    /// `p_value` after Holm's correction over every test of the run.
    pub p_adjusted: Option<f64>,
    /// One-sided p-value of "the change exceeds the tolerance" (small: within it).
    pub p_within: Option<f64>,
    /// Effect size.
    pub effect_size: Option<EffectSize>,
    /// The test: `bootstrap-paired`, `bootstrap-unpaired`, `wilcoxon-signed-rank`,
    /// `mann-whitney-u`, `newcombe`, `bootstrap-windows`.
    pub test: String,
    /// Bootstrap resamples, for bootstrap tests.
    pub resamples: Option<u32>,
    /// Block length of the latency bootstrap: consecutive samples (in send order) resampled
    /// together, from the autocorrelation of the baseline's log latencies
    /// (`stats::block_choice`); 1 is the ordinary bootstrap. Absent for other tests.
    #[serde(default)]
    pub block: Option<u64>,
    /// The rank test beside a latency goal.
    pub rank: Option<RankTest>,
    /// When inconclusive: the smallest change (same unit as `estimate`) this run would have
    /// failed with [`DETECT_POWER`] power.
    pub min_detectable: Option<f64>,
    /// Why inconclusive.
    pub reason: Option<String>,
    /// One line for people: `p99 +23.4% [+15.1%, +31.0%] > +10% @ 95% (n=2000, bootstrap 2000,
    /// p=0.001): fail`.
    pub text: String,
}

/// One goal over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalReport {
    /// The goal.
    pub goal: Goal,
    /// Fail when a row fails; pass when the overall row passes and no endpoint row with enough
    /// samples is inconclusive; else inconclusive.
    pub verdict: Verdict,
    /// Over every endpoint.
    pub overall: Row,
    /// Per endpoint, by name.
    pub endpoints: Vec<Row>,
}

/// The gate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// The worst goal verdict (pass when there is no goal).
    pub verdict: Verdict,
    /// The exit code of the verdict: 0 pass, 1 fail, 3 inconclusive.
    pub exit_code: u8,
    /// How it was evaluated.
    pub config: Config,
    /// Samples evaluated (after warm-up).
    pub samples: u64,
    /// Samples left out as warm-up.
    pub trimmed: u64,
    /// Tests in Holm's family (rows with enough samples, over every goal).
    pub tests: u64,
    /// Per goal.
    pub goals: Vec<GoalReport>,
}

impl GateReport {
    /// Every row's line, goal by goal (overall first).
    pub fn lines(&self) -> Vec<String> {
        self.goals
            .iter()
            .flat_map(|g| std::iter::once(&g.overall).chain(&g.endpoints))
            .map(|r| r.text.clone())
            .collect()
    }
}

/// What one row's samples give, computed once for every goal.
#[derive(Debug)]
struct RowData<'a> {
    endpoint: String,
    samples: Vec<&'a Sample>,
    n_baseline: u64,
    n_candidate: u64,
    errors_baseline: u64,
    errors_candidate: u64,
    paired: bool,
    /// Latencies (ms) of successful responses: pairs when paired (same length).
    lat_b: Vec<f64>,
    lat_c: Vec<f64>,
    /// Block length of the latency bootstrap (1: independent resampling) and its SE factor.
    block: stats::Block,
    /// Bootstrap SE of the log ratio per statistic.
    se: Vec<(Statistic, f64)>,
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6).max(1e-6)
}

impl<'a> RowData<'a> {
    fn new(
        endpoint: &str,
        mut samples: Vec<&'a Sample>,
        statistics: &[Statistic],
        config: &Config,
    ) -> RowData<'a> {
        // Send order: the block bootstrap resamples runs of consecutive requests.
        samples.sort_by_key(|s| (s.offset_ns, s.index));
        let n_baseline = samples.iter().filter(|s| s.baseline.is_some()).count() as u64;
        let n_candidate = samples.iter().filter(|s| s.candidate.is_some()).count() as u64;
        let errors = |arm: fn(&Sample) -> Option<super::Arm>| {
            samples
                .iter()
                .filter(|s| arm(s).is_some_and(|a| a.error))
                .count() as u64
        };
        let errors_baseline = errors(|s| s.baseline);
        let errors_candidate = errors(|s| s.candidate);
        let both = samples
            .iter()
            .filter(|s| s.baseline.is_some() && s.candidate.is_some())
            .count();
        let paired = both > 0 && both as f64 >= PAIRED_SHARE * samples.len() as f64;
        let (mut lat_b, mut lat_c) = (Vec::new(), Vec::new());
        for s in &samples {
            match (s.baseline, s.candidate) {
                (Some(b), Some(c)) if paired => {
                    if !b.error && !c.error {
                        lat_b.push(ms(b.latency_ns));
                        lat_c.push(ms(c.latency_ns));
                    }
                }
                _ if paired => {}
                (b, c) => {
                    if let Some(b) = b.filter(|b| !b.error) {
                        lat_b.push(ms(b.latency_ns));
                    }
                    if let Some(c) = c.filter(|c| !c.error) {
                        lat_c.push(ms(c.latency_ns));
                    }
                }
            }
        }
        let block = if statistics.is_empty() {
            stats::Block {
                length: 1,
                se_factor: 1.0,
            }
        } else {
            latency_block(&lat_b)
        };
        let se = if !statistics.is_empty() && lat_b.len() >= 2 && lat_c.len() >= 2 {
            let mut rng = Rng::new(config.seed ^ fnv1a(endpoint));
            let se = stats::bootstrap_log_ratio_se(
                &lat_b,
                &lat_c,
                paired,
                block.length,
                statistics,
                config.resamples,
                &mut rng,
            );
            statistics
                .iter()
                .copied()
                .zip(se.into_iter().map(|se| se * block.se_factor))
                .collect()
        } else {
            Vec::new()
        };
        RowData {
            endpoint: endpoint.to_owned(),
            samples,
            n_baseline,
            n_candidate,
            errors_baseline,
            errors_candidate,
            paired,
            lat_b,
            lat_c,
            block,
            se,
        }
    }

    fn latency_n(&self) -> u64 {
        if self.paired {
            self.lat_b.len() as u64
        } else {
            self.lat_b.len().min(self.lat_c.len()) as u64
        }
    }

    /// The rank test of a shift θ0 (log scale) at `confidence`.
    fn rank(&self, theta0: f64, confidence: f64) -> Option<stats::Shift> {
        let lb: Vec<f64> = self.lat_b.iter().map(|v| v.ln()).collect();
        let lc: Vec<f64> = self.lat_c.iter().map(|v| v.ln()).collect();
        if self.paired {
            let d: Vec<f64> = lc.iter().zip(&lb).map(|(c, b)| c - b).collect();
            stats::wilcoxon(&d, theta0, confidence)
        } else {
            stats::mann_whitney(&lb, &lc, theta0, confidence)
        }
    }

    fn rank_test_name(&self) -> &'static str {
        if self.paired {
            "wilcoxon-signed-rank"
        } else {
            "mann-whitney-u"
        }
    }
}

/// The latency bootstrap's block length: [`stats::block_length`] of the baseline's log
/// latencies in send order. The baseline is the reference: how its latencies hang together over
/// time (queues that build and drain under the replayed load) says how much a run of
/// consecutive requests tells. The candidate's own drifts and steps (a cold start, a leak) are
/// not taken for noise: they are what the gate judges (`--warmup` leaves a cold start out).
fn latency_block(lat_b: &[f64]) -> stats::Block {
    let log: Vec<f64> = lat_b.iter().map(|x| x.ln()).collect();
    stats::block_choice(&log)
}

/// A row before Holm's correction and the decision.
#[derive(Debug)]
struct Pending {
    row: Row,
    /// Enough samples to decide.
    eligible: bool,
    /// Standard error of the estimate on the test's scale (log for relative metrics).
    se: Option<f64>,
}

fn statistics_of(goals: &[Goal]) -> Vec<Statistic> {
    let mut out: Vec<Statistic> = Vec::new();
    for g in goals {
        let s = match g.metric {
            Metric::Quantile(q) => Statistic::Quantile(q),
            Metric::Mean => Statistic::Mean,
            _ => continue,
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn empty_row(endpoint: &str, data: &RowData<'_>, test: &str) -> Row {
    Row {
        endpoint: endpoint.to_owned(),
        verdict: Verdict::Inconclusive,
        n: 0,
        n_baseline: data.n_baseline,
        n_candidate: data.n_candidate,
        paired: data.paired,
        baseline: None,
        candidate: None,
        estimate: None,
        interval: None,
        p_value: None,
        p_adjusted: None,
        p_within: None,
        effect_size: None,
        test: test.to_owned(),
        resamples: None,
        block: None,
        rank: None,
        min_detectable: None,
        reason: None,
        text: String::new(),
    }
}

/// p-values of "beyond tolerance" and "within" from a normal estimate on the test's scale.
fn normal_p(estimate: f64, tolerance: f64, se: f64, higher_is_worse: bool) -> (f64, f64) {
    let excess = if higher_is_worse {
        estimate - tolerance
    } else {
        tolerance - estimate
    };
    if se > 0.0 && se.is_finite() {
        let p = 1.0 - stats::normal_cdf(excess / se);
        (p, 1.0 - p)
    } else if excess > 0.0 {
        (0.0, 1.0)
    } else if excess < 0.0 {
        (1.0, 0.0)
    } else {
        (0.5, 0.5)
    }
}

fn pending(goal: &Goal, data: &RowData<'_>, config: &Config) -> Pending {
    let z = stats::normal_quantile(goal.confidence);
    match goal.metric {
        Metric::Quantile(_) | Metric::Mean => latency_bootstrap(goal, data, config, z),
        Metric::Shift => latency_shift(goal, data, config, z),
        Metric::Errors => errors(goal, data, config, z),
        Metric::Rps => throughput(goal, data, config, z),
    }
}

fn rank_field(data: &RowData<'_>, confidence: f64) -> Option<RankTest> {
    let s = data.rank(0.0, confidence)?;
    Some(RankTest {
        test: data.rank_test_name().to_owned(),
        shift: s.estimate.exp() - 1.0,
        interval: [s.lower.exp() - 1.0, s.upper.exp() - 1.0],
        p_value: (2.0 * s.p_greater.min(s.p_less)).min(1.0),
        rank_biserial: s.rank_biserial,
    })
}

fn latency_bootstrap(goal: &Goal, data: &RowData<'_>, config: &Config, z: f64) -> Pending {
    let test = if data.paired {
        "bootstrap-paired"
    } else {
        "bootstrap-unpaired"
    };
    let mut row = empty_row(&data.endpoint, data, test);
    row.n = data.latency_n();
    let statistic = match goal.metric {
        Metric::Quantile(q) => Statistic::Quantile(q),
        _ => Statistic::Mean,
    };
    let se = data
        .se
        .iter()
        .find(|(s, _)| *s == statistic)
        .map(|(_, se)| *se);
    let Some(se) = se else {
        row.reason = Some(format!("{} latency samples: too few to compare", row.n));
        return Pending {
            row,
            eligible: false,
            se: None,
        };
    };
    let b = stats::statistic(&data.lat_b, statistic);
    let c = stats::statistic(&data.lat_c, statistic);
    let theta = (c / b).ln();
    let theta_tol = goal.tolerance.ln_1p();
    let (p, p_within) = normal_p(theta, theta_tol, se, true);
    row.baseline = Some(b);
    row.candidate = Some(c);
    row.estimate = Some(theta.exp() - 1.0);
    row.interval = Some([(theta - z * se).exp() - 1.0, (theta + z * se).exp() - 1.0]);
    row.p_value = Some(p);
    row.p_within = Some(p_within);
    row.resamples = Some(config.resamples);
    row.block = Some(data.block.length as u64);
    row.rank = rank_field(data, goal.confidence);
    row.effect_size = row.rank.as_ref().map(|r| EffectSize {
        measure: "rank-biserial".to_owned(),
        value: r.rank_biserial,
    });
    let mut eligible = row.n >= config.min_samples;
    if !eligible {
        row.reason = Some(format!(
            "n={} < --min-samples {}",
            row.n, config.min_samples
        ));
    } else if let Metric::Quantile(q) = goal.metric {
        let tail = q.min(1.0 - q);
        let needed = (TAIL_SAMPLES / tail).ceil() as u64;
        if row.n < needed {
            eligible = false;
            row.reason = Some(format!(
                "{} needs {needed} samples ({TAIL_SAMPLES} beyond it): n={}",
                goal.metric, row.n
            ));
        }
    }
    Pending {
        row,
        eligible,
        se: Some(se),
    }
}

fn latency_shift(goal: &Goal, data: &RowData<'_>, config: &Config, z: f64) -> Pending {
    let mut row = empty_row(&data.endpoint, data, data.rank_test_name());
    row.n = data.latency_n();
    let theta_tol = goal.tolerance.ln_1p();
    let Some(s) = data.rank(theta_tol, goal.confidence) else {
        row.reason = Some(format!("{} latency samples: too few to compare", row.n));
        return Pending {
            row,
            eligible: false,
            se: None,
        };
    };
    let median = |v: &[f64]| stats::statistic(v, Statistic::Quantile(0.5));
    row.baseline = Some(median(&data.lat_b));
    row.candidate = Some(median(&data.lat_c));
    row.estimate = Some(s.estimate.exp() - 1.0);
    row.interval = Some([s.lower.exp() - 1.0, s.upper.exp() - 1.0]);
    row.p_value = Some(s.p_greater);
    row.p_within = Some(s.p_less);
    row.rank = rank_field(data, goal.confidence);
    row.effect_size = row.rank.as_ref().map(|r| EffectSize {
        measure: "rank-biserial".to_owned(),
        value: r.rank_biserial,
    });
    let eligible = row.n >= config.min_samples;
    if !eligible {
        row.reason = Some(format!(
            "n={} < --min-samples {}",
            row.n, config.min_samples
        ));
    }
    let se = if z > 0.0 {
        (s.upper - s.lower) / (2.0 * z)
    } else {
        0.0
    };
    Pending {
        row,
        eligible,
        se: Some(se),
    }
}

fn errors(goal: &Goal, data: &RowData<'_>, config: &Config, z: f64) -> Pending {
    let mut row = empty_row(&data.endpoint, data, "newcombe");
    row.n = data.n_baseline.min(data.n_candidate);
    if row.n == 0 {
        row.reason = Some("an arm has no requests".to_owned());
        return Pending {
            row,
            eligible: false,
            se: None,
        };
    }
    let (kb, nb, kc, nc) = (
        data.errors_baseline,
        data.n_baseline,
        data.errors_candidate,
        data.n_candidate,
    );
    let pb = kb as f64 / nb as f64;
    let pc = kc as f64 / nc as f64;
    let (lo, hi) = stats::newcombe(kc, nc, kb, nb, z);
    let p = stats::newcombe_p_greater(kc, nc, kb, nb, goal.tolerance);
    row.baseline = Some(pb);
    row.candidate = Some(pc);
    row.estimate = Some(pc - pb);
    row.interval = Some([lo, hi]);
    row.p_value = Some(p);
    row.p_within = Some(1.0 - p);
    row.effect_size = Some(EffectSize {
        measure: "cohen-h".to_owned(),
        value: 2.0 * pc.sqrt().asin() - 2.0 * pb.sqrt().asin(),
    });
    let eligible = row.n >= config.min_samples;
    if !eligible {
        row.reason = Some(format!(
            "n={} < --min-samples {}",
            row.n, config.min_samples
        ));
    }
    Pending {
        row,
        eligible,
        se: Some(if z > 0.0 { (hi - lo) / (2.0 * z) } else { 0.0 }),
    }
}

fn throughput(goal: &Goal, data: &RowData<'_>, config: &Config, z: f64) -> Pending {
    let mut row = empty_row(&data.endpoint, data, "bootstrap-windows");
    row.n = data.samples.len() as u64;
    let start = data.samples.iter().map(|s| s.offset_ns).min().unwrap_or(0);
    let end = data.samples.iter().map(|s| s.offset_ns).max().unwrap_or(0);
    if end <= start || data.n_baseline == 0 || data.n_candidate == 0 {
        row.reason = Some("no send window to measure throughput in".to_owned());
        return Pending {
            row,
            eligible: false,
            se: None,
        };
    }
    let span = (end - start) as f64;
    let mut cb = vec![0.0; RPS_WINDOWS];
    let mut cc = vec![0.0; RPS_WINDOWS];
    for s in &data.samples {
        for (arm, counts) in [(s.baseline, &mut cb), (s.candidate, &mut cc)] {
            let Some(arm) = arm.filter(|a| !a.error) else {
                continue;
            };
            let done = s.offset_ns.saturating_add(arm.latency_ns);
            if done > end {
                continue;
            }
            let w = (((done - start) as f64 / span) * RPS_WINDOWS as f64) as usize;
            counts[w.min(RPS_WINDOWS - 1)] += 1.0;
        }
    }
    let (sb, sc): (f64, f64) = (cb.iter().sum(), cc.iter().sum());
    let seconds = span / 1e9;
    row.baseline = Some(sb / seconds);
    row.candidate = Some(sc / seconds);
    if sb == 0.0 || sc == 0.0 {
        row.reason = Some("an arm completed nothing in the send window".to_owned());
        return Pending {
            row,
            eligible: false,
            se: None,
        };
    }
    let mut rng = Rng::new(config.seed ^ fnv1a(&data.endpoint) ^ 0x0072_7073);
    let se = stats::bootstrap_log_ratio_se(
        &cb,
        &cc,
        true,
        1,
        &[Statistic::Mean],
        config.resamples,
        &mut rng,
    )[0];
    let theta = (sc / sb).ln();
    let theta_tol = goal.tolerance.ln_1p();
    let (p, p_within) = normal_p(theta, theta_tol, se, false);
    row.estimate = Some(theta.exp() - 1.0);
    row.interval = Some([(theta - z * se).exp() - 1.0, (theta + z * se).exp() - 1.0]);
    row.p_value = Some(p);
    row.p_within = Some(p_within);
    row.resamples = Some(config.resamples);
    row.effect_size = Some(EffectSize {
        measure: "ratio".to_owned(),
        value: sc / sb,
    });
    let eligible = row.n >= config.min_samples;
    if !eligible {
        row.reason = Some(format!(
            "n={} < --min-samples {}",
            row.n, config.min_samples
        ));
    }
    Pending {
        row,
        eligible,
        se: Some(se),
    }
}

fn percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn points(x: f64) -> String {
    format!("{:+.2}pp", x * 100.0)
}

fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p<0.001".to_owned()
    } else {
        format!("p={p:.3}")
    }
}

fn describe(goal: &Goal, row: &Row) -> String {
    let unit = |x: f64| {
        if goal.metric == Metric::Errors {
            points(x)
        } else {
            percent(x)
        }
    };
    let prefix = if row.endpoint == OVERALL {
        String::new()
    } else {
        format!("{}: ", row.endpoint)
    };
    let worse_sign = if goal.metric.higher_is_worse() {
        ">"
    } else {
        "<"
    };
    let within_sign = if goal.metric.higher_is_worse() {
        "<="
    } else {
        ">="
    };
    let sign = match row.verdict {
        Verdict::Fail => worse_sign,
        Verdict::Pass => within_sign,
        Verdict::Inconclusive => "~",
    };
    let tolerance = goal
        .text
        .split_once(' ')
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_default();
    let mut text = format!("{prefix}{}", goal.metric);
    match (row.estimate, row.interval) {
        (Some(e), Some([lo, hi])) => {
            text += &format!(
                " {} [{}, {}] {sign} {tolerance}",
                unit(e),
                unit(lo),
                unit(hi)
            );
        }
        _ => text += &format!(" (no estimate) {sign} {tolerance}"),
    }
    let block = match row.block {
        Some(b) if b > 1 => format!(", block {b}"),
        _ => String::new(),
    };
    let test = match row.test.as_str() {
        "bootstrap-paired" => format!("bootstrap {}{block}", row.resamples.unwrap_or(0)),
        "bootstrap-unpaired" => {
            format!("unpaired bootstrap {}{block}", row.resamples.unwrap_or(0))
        }
        "bootstrap-windows" => format!("window bootstrap {}", row.resamples.unwrap_or(0)),
        "wilcoxon-signed-rank" => "wilcoxon".to_owned(),
        "mann-whitney-u" => "mann-whitney".to_owned(),
        other => other.to_owned(),
    };
    text += &format!(" (n={}, {test}", row.n);
    if let Some(p) = row.p_value {
        text += &format!(", {}", p_text(p));
        if let Some(adjusted) = row.p_adjusted
            && (adjusted - p).abs() > 1e-12
        {
            let holm = if adjusted < 0.001 {
                "<0.001".to_owned()
            } else {
                format!("{adjusted:.3}")
            };
            text += &format!(", holm {holm}");
        }
    }
    text += &format!("): {}", row.verdict.as_str());
    if row.verdict == Verdict::Inconclusive {
        if let Some(reason) = &row.reason {
            text += &format!("; {reason}");
        }
        if let Some(mde) = row.min_detectable {
            let what = if goal.metric.higher_is_worse() {
                "regression"
            } else {
                "drop"
            };
            text += &format!("; smallest detectable {what} {}", unit(mde));
        }
    }
    text
}

/// Evaluates the goals on the samples: warm-up trimmed, rows per endpoint and overall, Holm's
/// correction over every test of the run, verdicts with their statistics.
pub fn evaluate(config: &Config, goals: &[Goal], samples: &[Sample]) -> GateReport {
    let kept: Vec<&Sample> = samples.iter().filter(|s| !config.warmup.trims(s)).collect();
    let trimmed = (samples.len() - kept.len()) as u64;
    let statistics = statistics_of(goals);
    let mut by_endpoint: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in &kept {
        by_endpoint.entry(s.endpoint.as_str()).or_default().push(s);
    }
    let mut rows = vec![RowData::new(OVERALL, kept.clone(), &statistics, config)];
    // One endpoint: its row is the overall row (same samples, same test), not a second test.
    let single = (by_endpoint.len() == 1)
        .then(|| by_endpoint.keys().next().map(|e| (*e).to_owned()))
        .flatten();
    if single.is_none() {
        for (endpoint, samples) in by_endpoint {
            rows.push(RowData::new(endpoint, samples, &statistics, config));
        }
    }
    // goal × row, then Holm over the eligible ones.
    let mut pendings: Vec<Vec<Pending>> = goals
        .iter()
        .map(|g| rows.iter().map(|r| pending(g, r, config)).collect())
        .collect();
    let family: Vec<(usize, usize)> = pendings
        .iter()
        .enumerate()
        .flat_map(|(g, rows)| {
            rows.iter()
                .enumerate()
                .filter(|(_, p)| p.eligible && p.row.p_value.is_some())
                .map(move |(r, _)| (g, r))
        })
        .collect();
    let raw: Vec<f64> = family
        .iter()
        .map(|&(g, r)| pendings[g][r].row.p_value.unwrap_or(1.0))
        .collect();
    let adjusted = stats::holm(&raw);
    for (&(g, r), p) in family.iter().zip(adjusted) {
        pendings[g][r].row.p_adjusted = Some(p);
    }
    let m = family.len().max(1) as f64;
    let mut reports = Vec::with_capacity(goals.len());
    for (goal, rows) in goals.iter().zip(pendings) {
        let alpha = goal.alpha();
        let z_detect =
            stats::normal_quantile(1.0 - alpha / m) + stats::normal_quantile(DETECT_POWER);
        let mut decided: Vec<(Row, bool)> = Vec::with_capacity(rows.len());
        for Pending {
            mut row,
            eligible,
            se,
        } in rows
        {
            row.verdict = if !eligible {
                Verdict::Inconclusive
            } else if row.p_adjusted.is_some_and(|p| p < alpha) {
                Verdict::Fail
            } else if row.p_within.is_some_and(|p| p < alpha) {
                Verdict::Pass
            } else {
                Verdict::Inconclusive
            };
            if row.verdict == Verdict::Inconclusive {
                if row.reason.is_none() {
                    row.reason = Some(match (row.p_value, row.p_adjusted) {
                        (Some(p), Some(a)) if p < alpha => format!(
                            "beyond tolerance before Holm's correction over {} tests ({}), not after ({})",
                            family.len(),
                            p_text(p),
                            p_text(a)
                        ),
                        _ => "the interval straddles the tolerance".to_owned(),
                    });
                }
                if let Some(se) = se {
                    row.min_detectable = Some(match goal.metric {
                        Metric::Errors => goal.tolerance + z_detect * se,
                        Metric::Rps => (goal.tolerance.ln_1p() - z_detect * se).exp() - 1.0,
                        _ => (goal.tolerance.ln_1p() + z_detect * se).exp() - 1.0,
                    });
                }
            }
            row.text = describe(goal, &row);
            decided.push((row, eligible));
        }
        let mut iter = decided.into_iter();
        let Some((overall, _)) = iter.next() else {
            continue;
        };
        let mut endpoints: Vec<(Row, bool)> = iter.collect();
        if let Some(endpoint) = &single {
            let mut row = overall.clone();
            row.endpoint.clone_from(endpoint);
            row.text = describe(goal, &row);
            endpoints.push((row, false));
        }
        let verdict = if overall.verdict == Verdict::Fail
            || endpoints.iter().any(|(r, _)| r.verdict == Verdict::Fail)
        {
            Verdict::Fail
        } else if overall.verdict == Verdict::Pass
            && endpoints
                .iter()
                .all(|(r, eligible)| !eligible || r.verdict == Verdict::Pass)
        {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        };
        reports.push(GoalReport {
            goal: goal.clone(),
            verdict,
            overall,
            endpoints: endpoints.into_iter().map(|(r, _)| r).collect(),
        });
    }
    let verdict = reports
        .iter()
        .map(|g| g.verdict)
        .fold(Verdict::Pass, Verdict::worst);
    GateReport {
        verdict,
        exit_code: verdict.exit_code(),
        config: config.clone(),
        samples: kept.len() as u64,
        trimmed,
        tests: family.len() as u64,
        goals: reports,
    }
}
