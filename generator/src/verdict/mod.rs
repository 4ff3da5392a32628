//! The statistical gate of a replay against a baseline: is the candidate build slower, more
//! error-prone or slower to serve than the baseline, beyond a tolerance, with a stated confidence?
//!
//! Goals are comparative (`p99 +10% @ 95%`: the candidate's p99 may not exceed the baseline's by
//! more than 10 %, with 95 % confidence; grammar in [`goal`]). [`evaluate`] takes the goals and
//! one [`Sample`] per request (the baseline's and the candidate's latency and error, paired when
//! both arms were sent) and returns a [`GateReport`]: per goal, per endpoint and overall, a
//! [`Verdict`] (pass, fail or inconclusive) with its statistics: n, estimate, interval, p-value
//! (raw and Holm-adjusted), effect size, the test used and, when inconclusive, the smallest
//! regression the run could have detected.
//!
//! The decision rule (`docs/verdict.md`, "Statistics"): with α = 1 − confidence, a goal fails on
//! a row when the one-sided test of "the regression is within tolerance" is rejected after Holm's
//! correction over every test of the run (so the run's A/A false-fail rate is at most the largest
//! α); it passes when the one-sided test of "the regression exceeds the tolerance" is rejected at
//! α (an intersection-union test needs no correction); otherwise, or with fewer than
//! `--min-samples` samples, it is inconclusive.
//!
//! Latency quantiles and means are compared by a circular-block bootstrap over the pairs in send
//! order ([`stats::block_choice`]: the block length from the baseline's autocorrelation, 1 for
//! independent requests), so that a saturated service's latencies, correlated in time, do not
//! give intervals too narrow.
//!
//! The parts: [`goal`] (the grammar), [`stats`] (quantiles, normal distribution, block
//! bootstrap, Wilcoxon, Mann-Whitney, Hodges-Lehmann, Wilson/Newcombe, Holm), [`rng`] (the
//! seeded generator of the bootstrap), [`sim`] (synthetic replays for the tests and the power
//! bench), and the gate itself (`gate.rs`).

mod gate;
pub mod goal;
pub mod rng;
pub mod sim;
pub mod stats;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gate::{
    Config, DEFAULT_MIN_SAMPLES, DEFAULT_RESAMPLES, DETECT_POWER, EffectSize, GateReport,
    GoalReport, OVERALL, RPS_WINDOWS, RankTest, Row, TAIL_SAMPLES, evaluate,
};
pub use goal::{Goal, Metric};

/// What can be wrong in the gate's arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `--goal` does not parse.
    #[error("--goal {spec:?}: {why}")]
    Goal {
        /// The goal as written.
        spec: String,
        /// What is wrong, and what is expected.
        why: String,
    },
    /// A `--warmup` does not parse.
    #[error("--warmup {0}")]
    Warmup(String),
    /// Another gate argument is out of range.
    #[error("{0}")]
    Args(String),
}

/// The module's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The statistical gate's flags (flattened into `tapedeck replay`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// A comparative goal against the baseline: `METRIC [+|-]TOLERANCE [@ CONFIDENCE%]`.
    /// Latency metrics `p50`, `p90`, `p95`, `p99`, `p99.9` (any `pNN`), `mean` and `shift` (the
    /// typical per-request slowdown, Hodges-Lehmann) take a relative tolerance (`p99 +10%`: the
    /// candidate's p99 at most 10 % above the baseline's); `errors` takes percentage points
    /// (`errors +2pp`); `rps` a relative drop (`rps -10%`). Confidence defaults to 95 %.
    /// Repeatable; in the environment, separated by commas. With --baseline and no --goal:
    /// `p50 +10% @ 95%`, `p99 +10% @ 95%`, `errors +1pp @ 95%`.
    #[arg(long = "goal", env = "TAPEDECK_GOAL", value_delimiter = ',')]
    pub goal: Vec<String>,

    /// Fewest samples (request pairs after warm-up, per endpoint) for a pass or fail; below it a
    /// goal is inconclusive. A quantile goal also needs 2 samples beyond its quantile (p99: 200).
    #[arg(long, env = "TAPEDECK_MIN_SAMPLES", default_value_t = DEFAULT_MIN_SAMPLES)]
    pub min_samples: u64,

    /// Warm-up left out of the gate, from both arms alike: the first N requests (`200`) or the
    /// requests sent in the first DURATION of the run (`10s`, `500ms`).
    #[arg(long, env = "TAPEDECK_WARMUP", default_value = "0", value_parser = Warmup::parse)]
    pub warmup: Warmup,

    /// Bootstrap resamples per endpoint (the intervals of quantile, mean and throughput goals;
    /// latencies are resampled in blocks of consecutive requests when they are autocorrelated).
    #[arg(long, env = "TAPEDECK_BOOTSTRAP", default_value_t = DEFAULT_RESAMPLES)]
    pub bootstrap: u32,

    /// Seed of the bootstrap's random generator (the same seed and samples give the same
    /// verdict).
    #[arg(long, env = "TAPEDECK_SEED", default_value_t = 1)]
    pub seed: u64,
}

impl GateArgs {
    /// The goals: those given, or the default set when none was.
    pub fn goals(&self) -> Result<Vec<Goal>> {
        if self.goal.is_empty() {
            return goal::defaults();
        }
        self.goal
            .iter()
            .map(|g| g.trim())
            .filter(|g| !g.is_empty())
            .map(goal::parse)
            .collect()
    }

    /// The evaluation settings.
    pub fn config(&self) -> Result<Config> {
        if self.bootstrap < 100 {
            return Err(Error::Args(format!(
                "--bootstrap {}: at least 100 resamples",
                self.bootstrap
            )));
        }
        Ok(Config {
            min_samples: self.min_samples,
            warmup: self.warmup,
            resamples: self.bootstrap,
            seed: self.seed,
        })
    }
}

/// The warm-up left out of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Warmup {
    /// The first N requests, by [`Sample::index`].
    Requests(u64),
    /// The requests whose [`Sample::offset_ns`] is before this.
    Duration(Duration),
}

impl Default for Warmup {
    fn default() -> Self {
        Warmup::Requests(0)
    }
}

impl Warmup {
    /// Parses `N` (requests) or a duration (`500ms`, `10s`, `2m`).
    pub fn parse(text: &str) -> std::result::Result<Warmup, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u64>() {
            return Ok(Warmup::Requests(n));
        }
        crate::parse_duration(text)
            .map(Warmup::Duration)
            .map_err(|e| format!("{e}; or a number of requests"))
    }

    /// Whether the sample falls in the warm-up.
    pub fn trims(&self, sample: &Sample) -> bool {
        match *self {
            Warmup::Requests(n) => sample.index < n,
            Warmup::Duration(d) => u128::from(sample.offset_ns) < d.as_nanos(),
        }
    }
}

/// One arm's result for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    /// Latency, nanoseconds (from the intended send time, as the report's latencies).
    pub latency_ns: u64,
    /// Whether it counts as an error (no response, a 5xx, a gRPC error where the recording had
    /// none): latency goals leave it out, the `errors` goal counts it.
    pub error: bool,
}

/// One request sent to the baseline, the candidate or both (a pair).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The endpoint, `METHOD /template`.
    pub endpoint: String,
    /// The request's position in the run's send order (0, 1, …): the `--warmup N` order.
    pub index: u64,
    /// The intended send time, nanoseconds since the run started: the `--warmup DURATION`
    /// clock, and the time windows of the `rps` goal (completion = offset + latency).
    pub offset_ns: u64,
    /// The baseline's result, when it was sent there.
    pub baseline: Option<Arm>,
    /// The candidate's result, when it was sent there.
    pub candidate: Option<Arm>,
}

/// A verdict of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Within tolerance, with the goal's confidence.
    Pass,
    /// Inconclusive: too few samples, or an interval that straddles the tolerance.
    Inconclusive,
    /// A regression beyond the tolerance, with the goal's confidence (Holm-adjusted).
    Fail,
}

impl Verdict {
    /// The process exit code: 0 pass, 1 fail, 3 inconclusive (2 is a replay that could not run).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Inconclusive => 3,
        }
    }

    /// The worse of two: fail over inconclusive over pass.
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// `pass`, `fail` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}
