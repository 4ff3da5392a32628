//! `./x bench verdict`: the statistical gate's power table, beside a fixed-threshold gate
//! (k6-style `p99 < baseline × 1.1`) on the same simulated replays.
//!
//! Replays are `tapedeck_generator::verdict::sim` scenarios: paired log-normal latencies with a
//! planted tail regression (the candidate's p95 and p99 exactly 1 + r times the baseline's, p50
//! unchanged). For n = 100, 1 000 and 10 000 pairs and each gate:
//! - the A/A false-fail rate over 1 000 simulations with no change (and, for tapedeck, how many
//!   passed and how many were inconclusive);
//! - the smallest planted p99 regression that fails with 95 % power: bisection on r over 200
//!   simulations per probe, the same seeds at every probe (common random numbers), to 1 %.
//!
//! Options: `--aa N` (A/A simulations, 1000), `--power N` (simulations per probe, 200),
//! `--bootstrap N` (resamples of the gate, 1000; the CLI default is 2000), `--threads N` (2).
//! Prints a markdown table for BENCHMARKS.md.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use tapedeck_generator::verdict::{self, Config, Goal, Verdict, goal, sim};

#[derive(Debug, Clone, Copy)]
struct Options {
    aa: u64,
    power: u64,
    bootstrap: u32,
    threads: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        aa: 1000,
        power: 200,
        bootstrap: 1000,
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--aa" => o.aa = number,
            "--power" => o.power = number,
            "--bootstrap" => o.bootstrap = u32::try_from(number)?,
            "--threads" => o.threads = number.max(1),
            _ => bail!("unknown option {flag} (--aa, --power, --bootstrap, --threads)"),
        }
    }
    Ok(o)
}

/// A gate under test.
#[derive(Debug, Clone)]
enum Gate {
    /// tapedeck's statistical gate with one goal.
    Tapedeck(Goal),
    /// Fail when the candidate's p99 > the baseline's × (1 + tolerance).
    Fixed(f64),
}

impl Gate {
    fn name(&self) -> String {
        match self {
            Gate::Tapedeck(g) => format!("tapedeck `{g}`"),
            Gate::Fixed(t) => format!("fixed `p99 < baseline × {}`", 1.0 + t),
        }
    }

    fn verdict(&self, samples: &[verdict::Sample], config: &Config) -> Verdict {
        match self {
            Gate::Tapedeck(g) => {
                verdict::evaluate(config, std::slice::from_ref(g), samples).verdict
            }
            Gate::Fixed(t) => {
                if sim::fixed_threshold_fails(samples, 0.99, *t) {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                }
            }
        }
    }
}

/// Verdict counts (pass, fail, inconclusive) over `runs` simulations, spread over threads.
fn run(gate: &Gate, n: usize, regression: f64, runs: u64, seed: u64, o: &Options) -> [u64; 3] {
    let scenario = sim::Scenario {
        n,
        tail_regression: regression,
        ..Default::default()
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..o.threads)
            .map(|t| {
                let gate = gate.clone();
                scope.spawn(move || {
                    let mut c = [0u64; 3];
                    for i in (t..runs).step_by(o.threads as usize) {
                        let samples = sim::samples(&scenario, seed + i);
                        let config = Config {
                            resamples: o.bootstrap,
                            seed: i,
                            ..Config::default()
                        };
                        match gate.verdict(&samples, &config) {
                            Verdict::Pass => c[0] += 1,
                            Verdict::Fail => c[1] += 1,
                            Verdict::Inconclusive => c[2] += 1,
                        }
                    }
                    c
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or([0; 3]))
            .fold([0u64; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]])
    })
}

/// The smallest planted regression failing in ≥ 95 % of runs, to 1 % (None above +400 %).
fn smallest_detected(gate: &Gate, n: usize, o: &Options) -> Option<f64> {
    let fails = |r: f64| run(gate, n, r, o.power, 1_000_000, o)[1] as f64 / o.power as f64;
    let (mut lo, mut hi) = (0.0_f64, 4.0_f64);
    if fails(hi) < 0.95 {
        return None;
    }
    while hi - lo > 0.005 {
        let mid = 0.5 * (lo + hi);
        if fails(mid) >= 0.95 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

fn main() -> Result<()> {
    let o = options()?;
    let gates = [
        Gate::Tapedeck(goal::parse("p99 +0% @ 95%")?),
        Gate::Tapedeck(goal::parse("p99 +10% @ 95%")?),
        Gate::Fixed(0.10),
    ];
    // The cost of one verdict at n = 10 000 with the CLI's default resamples.
    let samples = sim::samples(
        &sim::Scenario {
            n: 10_000,
            ..Default::default()
        },
        7,
    );
    let started = Instant::now();
    let reps = 5;
    for seed in 0..reps {
        let config = Config {
            seed,
            ..Config::default()
        };
        verdict::evaluate(&config, &goal::defaults()?, &samples);
    }
    let per_verdict = started.elapsed() / reps as u32;
    println!(
        "evaluate(): default goals (p50, p99, errors) on 10 000 pairs, {} resamples: {:.1} ms",
        verdict::DEFAULT_RESAMPLES,
        per_verdict.as_secs_f64() * 1e3
    );
    println!();
    println!(
        "| gate | n | A/A false-fail ({} runs) | A/A pass / inconclusive | smallest p99 regression failed with 95 % power ({} runs per probe) |",
        o.aa, o.power
    );
    println!("| --- | --- | --- | --- | --- |");
    for n in [100usize, 1_000, 10_000] {
        for gate in &gates {
            let started = Instant::now();
            let [pass, fail, inconclusive] = run(gate, n, 0.0, o.aa, 0, &o);
            let detected = smallest_detected(gate, n, &o)
                .map(|r| format!("+{:.0} %", r * 100.0))
                .unwrap_or_else(|| "not within +400 %".to_owned());
            println!(
                "| {} | {n} | {:.1} % ({fail}) | {pass} / {inconclusive} | {detected} |",
                gate.name(),
                fail as f64 * 100.0 / o.aa as f64,
            );
            eprintln!(
                "  ({} at n={n}: {:.1}s)",
                gate.name(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
