//! Synthetic paired replays with known behaviour, for the gate's tests and its power bench
//! (`bench-verdict`): nothing in a real replay uses it.
//!
//! Request i costs `exp(ln 20 ms + 0.5·Z)` on both arms (what the request asks for), times an
//! arm's own noise `exp(0.15·Z')` (the machine); so each arm's latency is log-normal with
//! σ = √(0.5² + 0.15²), and the two arms of a pair are correlated as a real interleaved replay's
//! are. A planted tail regression r multiplies the candidate's latencies above the population's
//! p90 by 1 + r: a monotone map, so the candidate's p95 and p99 are exactly (1 + r) times the
//! baseline's and its p50 is unchanged. Errors are independent per arm with the given rates.
//!
//! A saturated service ([`Scenario::autocorrelation`] φ > 0) adds to each arm's log latency its
//! own queue, an AR(1) process in send order, `q_i = φ·q_{i−1} + √(1 − φ²)·0.5·Z`
//! (stationary σ = [`QUEUE_SIGMA`]): queues build and drain, so consecutive latencies of an
//! arm are correlated, independently in the two arms (two instances, two queues), and both
//! arms still have the same distribution.

use super::rng::Rng;
use super::{Arm, Sample};

/// Median latency, ms.
pub const MEDIAN_MS: f64 = 20.0;
/// σ of the per-request cost (log scale), shared by both arms.
pub const REQUEST_SIGMA: f64 = 0.5;
/// σ of an arm's own noise (log scale).
pub const ARM_SIGMA: f64 = 0.15;
/// σ of an arm's queue (log scale) when [`Scenario::autocorrelation`] is set.
pub const QUEUE_SIGMA: f64 = 0.5;
/// Where a planted tail regression starts: the population's p90 (z = 1.2816).
pub const TAIL_FROM_Z: f64 = 1.281_551_565_545;

/// A simulated replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// Requests (pairs).
    pub n: usize,
    /// Endpoints, requests spread round-robin.
    pub endpoints: usize,
    /// Planted tail regression of the candidate (0.2: p95 and p99 +20 %).
    pub tail_regression: f64,
    /// The baseline's error rate.
    pub baseline_errors: f64,
    /// The candidate's error rate.
    pub candidate_errors: f64,
    /// Send rate, requests per second (the offsets).
    pub rate: f64,
    /// The candidate is the baseline itself: the very same latencies and errors.
    pub identical: bool,
    /// φ of each arm's AR(1) queue in send order (0: no queue, independent requests).
    pub autocorrelation: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            n: 1000,
            endpoints: 1,
            tail_regression: 0.0,
            baseline_errors: 0.0,
            candidate_errors: 0.0,
            rate: 200.0,
            identical: false,
            autocorrelation: 0.0,
        }
    }
}

/// The population latency (ms) where a planted tail regression starts.
pub fn tail_threshold_ms() -> f64 {
    let sigma = (REQUEST_SIGMA * REQUEST_SIGMA + ARM_SIGMA * ARM_SIGMA).sqrt();
    MEDIAN_MS * (sigma * TAIL_FROM_Z).exp()
}

/// The scenario's samples, from a seed.
pub fn samples(scenario: &Scenario, seed: u64) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    let threshold = tail_threshold_ms();
    let endpoints: Vec<String> = (0..scenario.endpoints.max(1))
        .map(|e| format!("GET /e{e}"))
        .collect();
    let phi = scenario.autocorrelation;
    let queued = phi != 0.0;
    let innovation = QUEUE_SIGMA * (1.0 - phi * phi).max(0.0).sqrt();
    // Stationary from the first request.
    let (mut queue_b, mut queue_c) = if queued {
        (QUEUE_SIGMA * rng.normal(), QUEUE_SIGMA * rng.normal())
    } else {
        (0.0, 0.0)
    };
    (0..scenario.n)
        .map(|i| {
            if queued && i > 0 {
                queue_b = phi * queue_b + innovation * rng.normal();
                queue_c = phi * queue_c + innovation * rng.normal();
            }
            let cost = MEDIAN_MS.ln() + REQUEST_SIGMA * rng.normal();
            let base_ms = (cost + queue_b + ARM_SIGMA * rng.normal()).exp();
            let base_error = rng.unit() < scenario.baseline_errors;
            let (cand_ms, cand_error) = if scenario.identical {
                (base_ms, base_error)
            } else {
                let mut ms = (cost + queue_c + ARM_SIGMA * rng.normal()).exp();
                if ms > threshold {
                    ms *= 1.0 + scenario.tail_regression;
                }
                (ms, rng.unit() < scenario.candidate_errors)
            };
            let ns = |ms: f64| (ms * 1e6) as u64;
            Sample {
                endpoint: endpoints[i % endpoints.len()].clone(),
                index: i as u64,
                offset_ns: (i as f64 / scenario.rate * 1e9) as u64,
                baseline: Some(Arm {
                    latency_ns: ns(base_ms),
                    error: base_error,
                }),
                candidate: Some(Arm {
                    latency_ns: ns(cand_ms),
                    error: cand_error,
                }),
            }
        })
        .collect()
}

/// The k6-style fixed-threshold gate on the same samples: fail when the candidate's p99 is
/// above the baseline's times `1 + tolerance` (point estimates, no interval).
pub fn fixed_threshold_fails(samples: &[Sample], quantile: f64, tolerance: f64) -> bool {
    let arm = |pick: fn(&Sample) -> Option<Arm>| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter_map(pick)
            .filter(|a| !a.error)
            .map(|a| a.latency_ns as f64)
            .collect();
        v.sort_unstable_by(f64::total_cmp);
        super::stats::quantile_sorted(&v, quantile)
    };
    arm(|s| s.candidate) > arm(|s| s.baseline) * (1.0 + tolerance)
}
