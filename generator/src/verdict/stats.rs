//! The numerical parts of the gate, each a plain function over slices: the normal
//! distribution, sample quantiles, the circular-block bootstrap standard error of paired or
//! unpaired log ratios with its automatic block length, the Wilcoxon signed-rank and Mann-Whitney U tests with the Hodges-Lehmann estimate
//! and its interval, Wilson and Newcombe intervals for proportions, and Holm's correction.

use super::rng::Rng;

/// Φ(x), the standard normal distribution function (from erfc, Numerical Recipes' `erfcc`:
/// relative error below 1.2e-7 everywhere).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Φ⁻¹(p) for p in (0, 1), by bisection on [`normal_cdf`] (to 1e-12; it is called a few times
/// per verdict, not per sample).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let (mut lo, mut hi) = (-40.0_f64, 40.0_f64);
    while hi - lo > 1e-12 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The q-quantile of sorted values, linearly interpolated between order statistics (Hyndman
/// and Fan's type 7, R's default). NaN when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
            let k = h.floor() as usize;
            let next = sorted[(k + 1).min(n - 1)];
            sorted[k] + (h - k as f64) * (next - sorted[k])
        }
    }
}

/// The mean (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample standard deviation (0 with fewer than 2 values).
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// What a bootstrap computes on each arm of each resample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// A quantile (type 7).
    Quantile(f64),
    /// The mean.
    Mean,
}

/// One arm's values, with the order that sorts them (computed once, walked per resample).
#[derive(Debug)]
struct Sorted<'a> {
    values: &'a [f64],
    order: Vec<u32>,
}

impl<'a> Sorted<'a> {
    fn new(values: &'a [f64]) -> Sorted<'a> {
        let mut order: Vec<u32> = (0..values.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]));
        Sorted { values, order }
    }

    /// The statistics of the multiset that takes value i `counts[i]` times (`total` in all),
    /// written into `out`: one walk over the sorted order gives every quantile.
    fn statistics(&self, counts: &[u32], total: u64, stats: &[Statistic], out: &mut [f64]) {
        let n = total as f64;
        // Positions (0-based, in the resampled sorted multiset) each quantile needs.
        let mut wanted: Vec<(u64, usize, bool)> = Vec::with_capacity(stats.len() * 2);
        for (s, stat) in stats.iter().enumerate() {
            match *stat {
                Statistic::Quantile(q) => {
                    let h = (n - 1.0) * q;
                    let k = h.floor() as u64;
                    wanted.push((k, s, false));
                    wanted.push(((k + 1).min(total - 1), s, true));
                }
                Statistic::Mean => out[s] = 0.0,
            }
        }
        wanted.sort_unstable_by_key(|w| (w.0, w.2));
        let mut low = vec![0.0; stats.len()];
        let mut next = 0;
        let mut cumulative = 0u64;
        let mut sum = 0.0;
        for &i in &self.order {
            let c = counts[i as usize];
            if c == 0 {
                continue;
            }
            let v = self.values[i as usize];
            sum += v * f64::from(c);
            cumulative += u64::from(c);
            while next < wanted.len() && wanted[next].0 < cumulative {
                let (_, s, upper) = wanted[next];
                if upper {
                    if let Statistic::Quantile(q) = stats[s] {
                        let h = (n - 1.0) * q;
                        out[s] = low[s] + (h - h.floor()) * (v - low[s]);
                    }
                } else {
                    low[s] = v;
                }
                next += 1;
            }
        }
        for (s, stat) in stats.iter().enumerate() {
            if *stat == Statistic::Mean {
                out[s] = sum / n;
            }
        }
    }
}

/// The statistic of all values (no resampling).
pub fn statistic(values: &[f64], stat: Statistic) -> f64 {
    match stat {
        Statistic::Mean => mean(values),
        Statistic::Quantile(q) => {
            let mut sorted = values.to_vec();
            sorted.sort_unstable_by(f64::total_cmp);
            quantile_sorted(&sorted, q)
        }
    }
}

/// Sample autocorrelations ρ̂(1) … ρ̂(max_lag) of a series (biased estimator: lag sums over n),
/// ρ̂(k) at index k − 1. All zero when the series is constant.
pub fn autocorrelations(series: &[f64], max_lag: usize) -> Vec<f64> {
    let n = series.len();
    let m = mean(series);
    let c0: f64 = series.iter().map(|v| (v - m) * (v - m)).sum();
    (1..=max_lag.min(n.saturating_sub(1)))
        .map(|k| {
            if c0 <= 0.0 || !c0.is_finite() {
                return 0.0;
            }
            let ck: f64 = series[k..]
                .iter()
                .zip(series)
                .map(|(a, b)| (a - m) * (b - m))
                .sum();
            ck / c0
        })
        .collect()
}

/// The circular-block bootstrap's block length for a time-ordered series: Politis and White's
/// (2004) automatic choice with Patton, Politis and White's (2009) correction, as R's
/// `np::b.star` computes it. The correlogram is cut at 2·m̂, where m̂ is the smallest lag after
/// which K = max(5, ⌈√log₁₀ n⌉) consecutive autocorrelations are all within
/// 2·√(log₁₀ n / n) of zero; with the flat-top kernel λ up to that lag,
/// G = Σ λ(k/M)·|k|·γ̂(k), g = Σ λ(k/M)·γ̂(k), D = 4/3·g², and
/// b = (2G² / D)^(1/3) · n^(1/3), rounded up, between 1 and min(3√n, n/3).
/// A series with no significant autocorrelation gets 1: the ordinary (iid) bootstrap.
pub fn block_length(series: &[f64]) -> usize {
    block_choice(series).length
}

/// A block length and the correction of the block bootstrap's variance that goes with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    /// Consecutive values resampled together ([`block_length`]).
    pub length: usize,
    /// Factor (≥ 1) on the bootstrap's standard error: blocks of b values see the
    /// autocovariances only through the weights 1 − |k|/b, so the bootstrap variance falls
    /// short of the long-run variance g by about G/b (G and g the flat-top estimates of
    /// [`block_length`]); the factor is √(g / (g − G/b)), at most 2. 1 with no
    /// autocorrelation.
    pub se_factor: f64,
}

/// [`block_length`] with the standard-error correction of its bias ([`Block`]).
pub fn block_choice(series: &[f64]) -> Block {
    let iid = Block {
        length: 1,
        se_factor: 1.0,
    };
    let n = series.len();
    if n < 8 {
        return iid;
    }
    let nf = n as f64;
    let b_max = (3.0 * nf.sqrt()).min(nf / 3.0).ceil().max(1.0) as usize;
    let k_n = (nf.log10().sqrt().ceil() as usize).max(5);
    let threshold = 2.0 * (nf.log10() / nf).sqrt();
    let max_lag = (2 * b_max + k_n).min(n - 1);
    let rho = autocorrelations(series, max_lag);
    // m̂: the first lag m with |ρ̂(m+1)| … |ρ̂(m+K)| all below the threshold.
    let mut m_hat = None;
    for m in 0..rho.len() {
        if m + k_n > rho.len() {
            break;
        }
        if rho[m..m + k_n].iter().all(|r| r.abs() < threshold) {
            m_hat = Some(m);
            break;
        }
    }
    let m_hat = m_hat.unwrap_or(rho.len().saturating_sub(k_n));
    let big_m = (2 * m_hat).min(max_lag);
    if big_m == 0 {
        return iid;
    }
    let flat_top = |t: f64| {
        let t = t.abs();
        if t <= 0.5 {
            1.0
        } else if t <= 1.0 {
            2.0 * (1.0 - t)
        } else {
            0.0
        }
    };
    // On the autocorrelation scale (γ̂(k)/γ̂(0)): the ratio G²/D does not depend on γ̂(0).
    let (mut g_big, mut g_small) = (0.0, 1.0);
    for k in 1..=big_m {
        let w = flat_top(k as f64 / big_m as f64) * rho[k - 1];
        g_big += 2.0 * k as f64 * w;
        g_small += 2.0 * w;
    }
    if g_small <= 0.0 || !g_big.is_finite() {
        return iid;
    }
    let d = 4.0 / 3.0 * g_small * g_small;
    let b = (2.0 * g_big * g_big / d).cbrt() * nf.cbrt();
    let length = (b.ceil().max(1.0) as usize).min(b_max);
    let short = (g_big / length as f64).max(0.0);
    let se_factor = (g_small / (g_small - short).max(g_small / 4.0))
        .sqrt()
        .clamp(1.0, 2.0);
    Block { length, se_factor }
}

/// Adds one circular-block resample of `0..n` to `counts` (zeroed first): blocks of `block`
/// consecutive indices (wrapping around at n) from uniform starts, until n are drawn (the last
/// block cut short). With `block` 1 it is the ordinary bootstrap, draw for draw.
fn block_resample(counts: &mut [u32], block: usize, rng: &mut Rng) {
    let n = counts.len();
    counts.iter_mut().for_each(|c| *c = 0);
    let block = block.clamp(1, n.max(1));
    let mut drawn = 0;
    while drawn < n {
        let start = rng.below(n);
        let len = block.min(n - drawn);
        for j in 0..len {
            let i = start + j;
            counts[if i >= n { i - n } else { i }] += 1;
        }
        drawn += len;
    }
}

/// Bootstrap standard errors of `ln(stat(candidate) / stat(baseline))` for each statistic.
///
/// The values are in time order (intended send order) and resampled in circular blocks of
/// `block` consecutive samples ([`block_length`]; 1 is the ordinary bootstrap), so that latencies
/// correlated in time (queues that build and drain) are not treated as independent, which would
/// make the interval far too narrow. Paired (`candidate.len() == baseline.len()` and `paired`):
/// each resample draws blocks of pair indices, so both arms of a pair move together (the
/// variance of a paired ratio is what the pairing removes). Unpaired: each arm is resampled on
/// its own, in blocks of its own series. Values must be positive. `resamples` ≥ 2.
pub fn bootstrap_log_ratio_se(
    baseline: &[f64],
    candidate: &[f64],
    paired: bool,
    block: usize,
    stats: &[Statistic],
    resamples: u32,
    rng: &mut Rng,
) -> Vec<f64> {
    let paired = paired && baseline.len() == candidate.len();
    let b = Sorted::new(baseline);
    let c = Sorted::new(candidate);
    let mut counts_b = vec![0u32; baseline.len()];
    let mut counts_c = vec![0u32; candidate.len()];
    let mut out_b = vec![0.0; stats.len()];
    let mut out_c = vec![0.0; stats.len()];
    let mut replicates: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples as usize); stats.len()];
    for _ in 0..resamples {
        block_resample(&mut counts_b, block, rng);
        let counts_c: &[u32] = if paired {
            &counts_b
        } else {
            block_resample(&mut counts_c, block, rng);
            &counts_c
        };
        b.statistics(&counts_b, baseline.len() as u64, stats, &mut out_b);
        c.statistics(counts_c, candidate.len() as u64, stats, &mut out_c);
        for s in 0..stats.len() {
            replicates[s].push((out_c[s] / out_b[s]).ln());
        }
    }
    replicates
        .iter()
        .map(|r| {
            let finite: Vec<f64> = r.iter().copied().filter(|v| v.is_finite()).collect();
            std_dev(&finite)
        })
        .collect()
}

/// A rank test of a location shift, with the Hodges-Lehmann estimate and its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Hodges-Lehmann: the median of the Walsh averages (paired) or of the pairwise
    /// differences (unpaired).
    pub estimate: f64,
    /// Lower bound, one-sided at the requested level.
    pub lower: f64,
    /// Upper bound, one-sided at the requested level.
    pub upper: f64,
    /// One-sided p-value of H0 "shift ≤ θ0" (small: the shift is above θ0).
    pub p_greater: f64,
    /// One-sided p-value of H0 "shift ≥ θ0" (small: the shift is below θ0).
    pub p_less: f64,
    /// Rank-biserial correlation at θ0, in [−1, 1].
    pub rank_biserial: f64,
    /// Values that took part (non-zero differences for the signed-rank test).
    pub n: u64,
}

/// Average ranks (1-based) of values, and the tie correction Σ(t³ − t).
fn ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (ranks, ties)
}

/// The k-th smallest (1-based) of a set given by its counting function `count_le(θ)` (how many
/// members are ≤ θ), found by bisection in [lo, hi].
fn kth_by_count(k: u64, mut lo: f64, mut hi: f64, count_le: impl Fn(f64) -> u64) -> f64 {
    if count_le(lo) >= k {
        return lo;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if count_le(mid) >= k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The median and the one-sided bounds of a set of `total` members given by `count_le`,
/// bounds at the order statistics `k` and `total − k + 1`.
fn median_and_bounds(
    total: u64,
    k: u64,
    lo: f64,
    hi: f64,
    count_le: impl Fn(f64) -> u64,
) -> (f64, f64, f64) {
    let median = if total % 2 == 1 {
        kth_by_count(total.div_ceil(2), lo, hi, &count_le)
    } else {
        0.5 * (kth_by_count(total / 2, lo, hi, &count_le)
            + kth_by_count(total / 2 + 1, lo, hi, &count_le))
    };
    let k = k.clamp(1, total);
    let lower = kth_by_count(k, lo, hi, &count_le);
    let upper = kth_by_count(total - k + 1, lo, hi, &count_le);
    (median, lower, upper)
}

/// Wilcoxon's signed-rank test of the paired differences `d` against the shift `theta0`
/// (normal approximation with tie and continuity corrections, zero differences dropped), and
/// the Hodges-Lehmann estimate with its interval (Walsh averages; each bound one-sided at
/// `confidence`). `None` with fewer than 2 differences.
pub fn wilcoxon(d: &[f64], theta0: f64, confidence: f64) -> Option<Shift> {
    if d.len() < 2 {
        return None;
    }
    let shifted: Vec<f64> = d.iter().map(|v| v - theta0).filter(|v| *v != 0.0).collect();
    let nz = shifted.len() as f64;
    let (p_greater, p_less, rank_biserial) = if shifted.is_empty() {
        (0.5, 0.5, 0.0)
    } else {
        let abs: Vec<f64> = shifted.iter().map(|v| v.abs()).collect();
        let (r, ties) = ranks(&abs);
        let w_plus: f64 = shifted
            .iter()
            .zip(&r)
            .filter(|(v, _)| **v > 0.0)
            .map(|(_, r)| r)
            .sum();
        let total = nz * (nz + 1.0) / 2.0;
        let mean = total / 2.0;
        let var = nz * (nz + 1.0) * (2.0 * nz + 1.0) / 24.0 - ties / 48.0;
        let sd = var.max(1e-300).sqrt();
        (
            1.0 - normal_cdf((w_plus - mean - 0.5) / sd),
            normal_cdf((w_plus - mean + 0.5) / sd),
            (2.0 * w_plus - total) / total,
        )
    };
    let mut sorted = d.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let n = sorted.len();
    let total = (n * (n + 1) / 2) as u64;
    let count_le = |theta: f64| -> u64 {
        // #{i ≤ j : d_i + d_j ≤ 2θ}, two pointers over the sorted differences.
        let mut count = 0u64;
        let mut j = n; // exclusive bound: d[..j] are the candidates for the partner
        for i in 0..n {
            while j > 0 && sorted[i] + sorted[j - 1] > 2.0 * theta {
                j -= 1;
            }
            if j > i {
                count += (j - i) as u64;
            } else {
                break;
            }
        }
        count
    };
    let nf = n as f64;
    let z = normal_quantile(confidence);
    let k = (total as f64 / 2.0 - z * (nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0).sqrt())
        .floor()
        .max(1.0) as u64;
    let (estimate, lower, upper) = median_and_bounds(total, k, sorted[0], sorted[n - 1], count_le);
    Some(Shift {
        estimate,
        lower,
        upper,
        p_greater,
        p_less,
        rank_biserial,
        n: nz as u64,
    })
}

/// Mann-Whitney's U test of `candidate − theta0` against `baseline` (normal approximation with
/// tie and continuity corrections), and the two-sample Hodges-Lehmann shift (the median of all
/// differences candidate − baseline) with its interval (each bound one-sided at `confidence`).
/// `None` when an arm is empty.
pub fn mann_whitney(
    baseline: &[f64],
    candidate: &[f64],
    theta0: f64,
    confidence: f64,
) -> Option<Shift> {
    if baseline.is_empty() || candidate.is_empty() {
        return None;
    }
    let (m, n) = (baseline.len() as f64, candidate.len() as f64);
    let mut combined: Vec<f64> = baseline.to_vec();
    combined.extend(candidate.iter().map(|v| v - theta0));
    let (r, ties) = ranks(&combined);
    let rank_sum: f64 = r[baseline.len()..].iter().sum();
    let u = rank_sum - n * (n + 1.0) / 2.0;
    let total_n = m + n;
    let mean = m * n / 2.0;
    let var = m * n / 12.0 * ((total_n + 1.0) - ties / (total_n * (total_n - 1.0)).max(1.0));
    let sd = var.max(1e-300).sqrt();
    let p_greater = 1.0 - normal_cdf((u - mean - 0.5) / sd);
    let p_less = normal_cdf((u - mean + 0.5) / sd);
    let mut x = baseline.to_vec();
    let mut y = candidate.to_vec();
    x.sort_unstable_by(f64::total_cmp);
    y.sort_unstable_by(f64::total_cmp);
    let count_le = |theta: f64| -> u64 {
        // #{(i, j) : y_j − x_i ≤ θ} = Σ_j #{i : x_i ≥ y_j − θ}; y_j − θ rises with j.
        let mut count = 0u64;
        let mut i = 0;
        for &yj in &y {
            while i < x.len() && x[i] < yj - theta {
                i += 1;
            }
            count += (x.len() - i) as u64;
        }
        count
    };
    let total = (x.len() * y.len()) as u64;
    let z = normal_quantile(confidence);
    let k = (m * n / 2.0 - z * (m * n * (total_n + 1.0) / 12.0).sqrt())
        .floor()
        .max(1.0) as u64;
    let lo = y[0] - x[x.len() - 1];
    let hi = y[y.len() - 1] - x[0];
    let (estimate, lower, upper) = median_and_bounds(total, k, lo, hi, count_le);
    Some(Shift {
        estimate,
        lower,
        upper,
        p_greater,
        p_less,
        rank_biserial: 2.0 * u / (m * n) - 1.0,
        n: (m + n) as u64,
    })
}

/// Wilson's score interval of a proportion `k / n` at normal quantile `z`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let center = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Newcombe's hybrid score interval (his method 10) of the difference of two independent
/// proportions `k1/n1 − k2/n2`, at normal quantile `z` (each bound one-sided at Φ(z)).
pub fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> (f64, f64) {
    let p1 = k1 as f64 / n1.max(1) as f64;
    let p2 = k2 as f64 / n2.max(1) as f64;
    let (l1, u1) = wilson(k1, n1, z);
    let (l2, u2) = wilson(k2, n2, z);
    let d = p1 - p2;
    (
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    )
}

/// The one-sided p-value of H0 "p1 − p2 ≤ delta" from Newcombe's interval, by inverting it:
/// the z at which a bound meets `delta`, as a normal tail (small: the difference is above
/// delta). H0 "p1 − p2 ≥ delta" has 1 − this.
pub fn newcombe_p_greater(k1: u64, n1: u64, k2: u64, n2: u64, delta: f64) -> f64 {
    let p1 = k1 as f64 / n1.max(1) as f64;
    let p2 = k2 as f64 / n2.max(1) as f64;
    let d = p1 - p2;
    // The bound on delta's side of d moves away from d as z grows: find where it meets delta.
    let above = d > delta;
    let bound = |z: f64| {
        let (lo, hi) = newcombe(k1, n1, k2, n2, z);
        if above { lo } else { hi }
    };
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    let reaches = |z: f64| {
        if above {
            bound(z) <= delta
        } else {
            bound(z) >= delta
        }
    };
    if !reaches(hi) {
        return if above { 0.0 } else { 1.0 };
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let z = 0.5 * (lo + hi);
    if above {
        1.0 - normal_cdf(z)
    } else {
        normal_cdf(z)
    }
}

/// Holm's step-down adjustment: adjusted p-values in the input order (reject at level α where
/// the adjusted p < α; the family-wise error rate is then at most α).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_unstable_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}
