//! The statistical gate (`tapedeck_generator::verdict`) on seeded synthetic replays with known
//! behaviour (`verdict::sim`): A/A runs pass and keep the false-fail rate within α, planted
//! regressions fail, small runs are inconclusive with the effect they could have detected.

use clap::Parser;
use tapedeck_generator::verdict::{
    self, Arm, Config, GateArgs, GateReport, Metric, Sample, Verdict, Warmup, goal, sim, stats,
};

/// Few resamples keep the debug build fast; the properties asserted hold at this size.
fn config(resamples: u32, seed: u64) -> Config {
    Config {
        resamples,
        seed,
        ..Config::default()
    }
}

fn goals(specs: &[&str]) -> Vec<verdict::Goal> {
    specs.iter().map(|s| goal::parse(s).unwrap()).collect()
}

fn goal_report<'a>(report: &'a GateReport, text: &str) -> &'a verdict::GoalReport {
    report
        .goals
        .iter()
        .find(|g| g.goal.text == text)
        .unwrap_or_else(|| panic!("no goal {text} in {:#?}", report.lines()))
}

#[test]
fn identical_arms_pass_every_goal() {
    let samples = sim::samples(
        &sim::Scenario {
            n: 2000,
            endpoints: 2,
            identical: true,
            baseline_errors: 0.01,
            ..Default::default()
        },
        1,
    );
    let all = goals(&[
        "p50 +10% @ 95%",
        "p99 +10% @ 95%",
        "mean +10% @ 95%",
        "shift +5% @ 95%",
        "errors +1pp @ 95%",
        "rps -10% @ 95%",
    ]);
    let report = verdict::evaluate(&config(200, 1), &all, &samples);
    assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.lines());
    assert_eq!(report.exit_code, 0);
    for g in &report.goals {
        for row in std::iter::once(&g.overall).chain(&g.endpoints) {
            assert_eq!(row.verdict, Verdict::Pass, "{}", row.text);
            assert!(row.paired, "{}", row.text);
            assert_eq!(row.estimate, Some(0.0), "{}", row.text);
            assert!(row.text.ends_with(": pass"), "{}", row.text);
        }
    }
    let p99 = &goal_report(&report, "p99 +10% @ 95%").overall;
    assert_eq!(p99.interval, Some([0.0, 0.0]));
    assert_eq!(p99.test, "bootstrap-paired");
    assert_eq!(
        p99.n,
        2000 - samples.iter().filter(|s| s.baseline.unwrap().error).count() as u64
    );
    assert_eq!(
        goal_report(&report, "errors +1pp @ 95%").overall.test,
        "newcombe"
    );
    assert_eq!(
        goal_report(&report, "shift +5% @ 95%").overall.test,
        "wilcoxon-signed-rank"
    );
}

/// The run's false-fail rate over A/A simulations (no change at all) stays within α, with
/// zero tolerances (so the tests sit exactly on their null) and several endpoints (Holm).
#[test]
fn aa_false_fail_rate_is_at_most_alpha() {
    let alpha = 0.10;
    let strict = goals(&[
        "p50 +0% @ 90%",
        "p99 +0% @ 90%",
        "errors +0pp @ 90%",
        "shift +0% @ 90%",
    ]);
    let defaults = goal::defaults().unwrap();
    let runs = 120;
    let (mut strict_fails, mut default_fails, mut median_passes) = (0, 0, 0);
    for seed in 0..runs {
        let samples = sim::samples(
            &sim::Scenario {
                n: 750,
                endpoints: 3,
                baseline_errors: 0.02,
                candidate_errors: 0.02,
                ..Default::default()
            },
            1000 + seed,
        );
        let c = Config {
            min_samples: 50,
            ..config(150, seed)
        };
        let strict_report = verdict::evaluate(&c, &strict, &samples);
        assert_eq!(
            strict_report.tests,
            4 * 4,
            "4 goals × (overall + 3 endpoints)"
        );
        if strict_report.verdict == Verdict::Fail {
            strict_fails += 1;
        }
        let default_report = verdict::evaluate(&c, &defaults, &samples);
        if default_report.verdict == Verdict::Fail {
            default_fails += 1;
        }
        if goal_report(&default_report, "p50 +10% @ 95%")
            .overall
            .verdict
            == Verdict::Pass
        {
            median_passes += 1;
        }
    }
    let rate = f64::from(strict_fails) / runs as f64;
    assert!(
        rate <= alpha,
        "A/A false-fail rate {rate} ({strict_fails}/{runs}) above α = {alpha}"
    );
    let default_rate = f64::from(default_fails) / runs as f64;
    assert!(
        default_rate <= 0.05,
        "default goals: {default_fails}/{runs} A/A runs failed"
    );
    // And the gate does conclude on these runs: one that is always inconclusive would never
    // false-fail either. (p99 +10% on 250 samples per endpoint is rightly inconclusive.)
    assert!(
        median_passes * 10 >= runs * 9,
        "p50 passed overall in {median_passes}/{runs} A/A runs"
    );
    eprintln!(
        "A/A: {strict_fails}/{runs} runs failed the zero-tolerance goals, {default_fails} the defaults"
    );
}

#[test]
fn planted_p99_regression_fails_at_2000() {
    let gs = goals(&["p99 +0% @ 95%", "p50 +10% @ 95%"]);
    for seed in 1..=3 {
        let samples = sim::samples(
            &sim::Scenario {
                n: 2000,
                tail_regression: 0.20,
                ..Default::default()
            },
            seed,
        );
        let report = verdict::evaluate(&config(300, seed), &gs, &samples);
        let p99 = &goal_report(&report, "p99 +0% @ 95%");
        assert_eq!(p99.verdict, Verdict::Fail, "{:#?}", report.lines());
        let row = &p99.overall;
        let estimate = row.estimate.unwrap();
        assert!((0.08..0.35).contains(&estimate), "{}", row.text);
        let [lo, hi] = row.interval.unwrap();
        assert!(lo > 0.0 && lo < estimate && estimate < hi, "{}", row.text);
        assert!(row.p_value.unwrap() < 0.05, "{}", row.text);
        assert!(row.text.starts_with("p99 +"), "{}", row.text);
        assert!(row.text.contains("> +0% @ 95% (n="), "{}", row.text);
        assert!(row.text.ends_with(": fail"), "{}", row.text);
        assert!(row.min_detectable.is_none());
        // The regression is in the tail only: the median holds.
        assert_eq!(
            goal_report(&report, "p50 +10% @ 95%").verdict,
            Verdict::Pass,
            "{:#?}",
            report.lines()
        );
        assert_eq!(report.verdict, Verdict::Fail);
        assert_eq!(report.exit_code, 1);
    }
}

#[test]
fn planted_p99_regression_is_inconclusive_at_30_with_the_detectable_effect() {
    let gs = goals(&["p99 +0% @ 95%", "p99 +10% @ 95%"]);
    let samples = sim::samples(
        &sim::Scenario {
            n: 30,
            tail_regression: 0.20,
            ..Default::default()
        },
        5,
    );
    let report = verdict::evaluate(&config(300, 5), &gs, &samples);
    assert_eq!(
        report.verdict,
        Verdict::Inconclusive,
        "{:#?}",
        report.lines()
    );
    assert_eq!(report.exit_code, 3);
    assert_eq!(report.tests, 0, "rows below --min-samples are not tested");
    for g in &report.goals {
        let row = &g.overall;
        assert_eq!(row.verdict, Verdict::Inconclusive);
        assert_eq!(row.n, 30);
        let mde = row.min_detectable.unwrap();
        assert!(mde > g.goal.tolerance + 0.2, "{}", row.text);
        assert!(row.reason.as_deref().unwrap().contains("--min-samples 100"));
        assert!(
            row.text.contains("smallest detectable regression +"),
            "{}",
            row.text
        );
    }
    // With enough samples to conclude, a run this small is still too noisy for the effect.
    let small = Config {
        min_samples: 30,
        ..config(300, 5)
    };
    let report = verdict::evaluate(&small, &gs[..1], &samples);
    let row = &report.goals[0].overall;
    assert_eq!(row.verdict, Verdict::Inconclusive, "{}", row.text);
    assert!(
        row.reason
            .as_deref()
            .unwrap()
            .contains("p99 needs 200 samples (2 beyond it)")
    );
}

#[test]
fn two_point_error_rate_rise_fails() {
    let samples = sim::samples(
        &sim::Scenario {
            n: 10_000,
            endpoints: 2,
            baseline_errors: 0.01,
            candidate_errors: 0.03,
            ..Default::default()
        },
        9,
    );
    let report = verdict::evaluate(&config(100, 9), &goal::defaults().unwrap(), &samples);
    let errors = goal_report(&report, "errors +1pp @ 95%");
    assert_eq!(errors.verdict, Verdict::Fail, "{:#?}", report.lines());
    let row = &errors.overall;
    let estimate = row.estimate.unwrap();
    assert!((0.015..0.025).contains(&estimate), "{}", row.text);
    assert!(row.interval.unwrap()[0] > 0.01, "{}", row.text);
    assert_eq!(row.effect_size.as_ref().unwrap().measure, "cohen-h");
    assert!(
        row.text
            .starts_with(&format!("errors {:+.2}pp [", estimate * 100.0)),
        "{}",
        row.text
    );
    assert!(
        row.text.contains("pp] > +1pp @ 95% (n=10000, newcombe"),
        "{}",
        row.text
    );
    assert_eq!(report.verdict, Verdict::Fail);
    // The same rates on both arms pass.
    let same = sim::samples(
        &sim::Scenario {
            n: 10_000,
            endpoints: 2,
            baseline_errors: 0.03,
            candidate_errors: 0.03,
            ..Default::default()
        },
        9,
    );
    let report = verdict::evaluate(&config(100, 9), &goals(&["errors +1pp @ 95%"]), &same);
    assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.lines());
}

#[test]
fn holm_adjusts_across_endpoints() {
    assert_eq!(
        stats::holm(&[0.01, 0.04, 0.03, 0.005])
            .iter()
            .map(|p| (p * 1e6).round() / 1e6)
            .collect::<Vec<_>>(),
        vec![0.03, 0.06, 0.06, 0.02]
    );
    // Eight endpoints, one with a small real regression: its raw p-value is below α, and the
    // decision is taken on the adjusted one.
    let mut samples = sim::samples(
        &sim::Scenario {
            n: 8 * 400,
            endpoints: 8,
            ..Default::default()
        },
        21,
    );
    for s in samples.iter_mut().filter(|s| s.endpoint == "GET /e3") {
        let c = s.candidate.as_mut().unwrap();
        c.latency_ns = (c.latency_ns as f64 * 1.04) as u64;
    }
    let report = verdict::evaluate(&config(200, 21), &goals(&["p50 +0% @ 95%"]), &samples);
    let g = &report.goals[0];
    assert_eq!(report.tests, 9);
    let rows: Vec<_> = std::iter::once(&g.overall).chain(&g.endpoints).collect();
    let raw: Vec<f64> = rows.iter().map(|r| r.p_value.unwrap()).collect();
    let adjusted = stats::holm(&raw);
    for (row, a) in rows.iter().zip(&adjusted) {
        assert!((row.p_adjusted.unwrap() - a).abs() < 1e-12);
        assert!(row.p_adjusted.unwrap() >= row.p_value.unwrap());
        assert_eq!(row.verdict == Verdict::Fail, *a < 0.05, "{}", row.text);
    }
    let e3 = g
        .endpoints
        .iter()
        .find(|r| r.endpoint == "GET /e3")
        .unwrap();
    assert!(e3.p_value.unwrap() < 0.05, "{}", e3.text);
    assert!(e3.text.starts_with("GET /e3: p50 +"), "{}", e3.text);
    assert!(e3.text.contains(", holm "), "{}", e3.text);
    if e3.verdict == Verdict::Inconclusive {
        assert!(
            e3.reason.as_deref().unwrap().contains("Holm"),
            "{}",
            e3.text
        );
    }
}

#[test]
fn goal_grammar_and_errors() {
    let g = goal::parse("p99 +10% @ 95%").unwrap();
    assert_eq!(
        (g.metric, g.tolerance, g.confidence, g.text.as_str()),
        (Metric::Quantile(0.99), 0.10, 0.95, "p99 +10% @ 95%")
    );
    let g = goal::parse("P99.9+5%@0.99").unwrap();
    assert_eq!(g.text, "p99.9 +5% @ 99%");
    assert!((g.tolerance - 0.05).abs() < 1e-12);
    let g = goal::parse("errors +2pp").unwrap();
    assert_eq!((g.metric, g.confidence), (Metric::Errors, 0.95));
    assert!((g.tolerance - 0.02).abs() < 1e-12);
    assert_eq!(goal::parse("rps -10% @ 95%").unwrap().tolerance, -0.10);
    assert_eq!(goal::parse("rps 10%").unwrap().tolerance, -0.10);
    assert_eq!(goal::parse("p50 10%").unwrap().tolerance, 0.10);
    assert_eq!(goal::parse("mean -5%").unwrap().tolerance, -0.05);
    assert_eq!(goal::parse("shift +5%").unwrap().metric, Metric::Shift);
    let err = |spec: &str| goal::parse(spec).unwrap_err().to_string();
    assert_eq!(
        err("latency +10%"),
        "--goal \"latency +10%\": unknown metric \"latency\" (p50, p90, p95, p99, p99.9 or any pNN, mean, shift, errors, rps)"
    );
    assert!(err("p99 +10ms").contains("absolute limits are --slo goals"));
    assert!(err("errors +2%").contains("percentage points"));
    assert!(err("p99 +10").contains("in percent"));
    assert!(err("p99").contains("missing tolerance, e.g. `p99 +10% @ 95%`"));
    assert!(err("p99 +10% @ 120%").contains("out of range"));
    assert!(err("p99 +10% @ high").contains("is not a confidence"));
    assert!(err("p99 +x%").contains("is not a tolerance"));
    assert!(err("p100 +1%").contains("unknown metric"));
    assert!(err("+10%").contains("expected METRIC"));

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        gate: GateArgs,
    }
    let cli = Cli::try_parse_from(["t"]).unwrap();
    assert_eq!(cli.gate.min_samples, verdict::DEFAULT_MIN_SAMPLES);
    assert_eq!(cli.gate.warmup, Warmup::Requests(0));
    assert_eq!(
        cli.gate
            .goals()
            .unwrap()
            .iter()
            .map(|g| g.text.clone())
            .collect::<Vec<_>>(),
        goal::DEFAULTS
    );
    let cli = Cli::try_parse_from([
        "t",
        "--goal",
        "p99 +10% @ 95%, errors +2pp",
        "--goal",
        "rps -5%",
        "--warmup",
        "10s",
        "--min-samples",
        "50",
    ])
    .unwrap();
    assert_eq!(cli.gate.goals().unwrap().len(), 3);
    assert_eq!(
        cli.gate.warmup,
        Warmup::Duration(std::time::Duration::from_secs(10))
    );
    assert_eq!(cli.gate.config().unwrap().min_samples, 50);
    let cli = Cli::try_parse_from(["t", "--goal", "p99 +10 ms"]).unwrap();
    assert!(cli.gate.goals().is_err());
    assert!(Cli::try_parse_from(["t", "--warmup", "ten"]).is_err());
    assert_eq!(Warmup::parse("200"), Ok(Warmup::Requests(200)));
}

#[test]
fn warmup_is_trimmed_from_both_arms() {
    let mut samples = sim::samples(
        &sim::Scenario {
            n: 1500,
            rate: 100.0,
            ..Default::default()
        },
        3,
    );
    // A cold candidate: its first 300 requests (3 s) take 5 times as long.
    for s in samples.iter_mut().take(300) {
        let c = s.candidate.as_mut().unwrap();
        c.latency_ns *= 5;
    }
    let gs = goals(&["p50 +10% @ 95%"]);
    let cold = verdict::evaluate(&config(200, 3), &gs, &samples);
    assert_eq!(cold.verdict, Verdict::Fail, "{:#?}", cold.lines());
    for warmup in [Warmup::Requests(300), Warmup::parse("3s").unwrap()] {
        let c = Config {
            warmup,
            ..config(200, 3)
        };
        let warm = verdict::evaluate(&c, &gs, &samples);
        assert_eq!(warm.trimmed, 300, "{warmup:?}");
        assert_eq!(warm.samples, 1200);
        assert_eq!(warm.verdict, Verdict::Pass, "{:#?}", warm.lines());
        assert_eq!(warm.goals[0].overall.n_baseline, 1200);
        assert_eq!(warm.goals[0].overall.n_candidate, 1200);
    }
}

#[test]
fn unpaired_samples_use_unpaired_tests() {
    // Half the requests went to one arm only: not paired, so the bootstrap resamples each arm
    // on its own and the rank test is Mann-Whitney's.
    let mut samples = sim::samples(
        &sim::Scenario {
            n: 1200,
            ..Default::default()
        },
        4,
    );
    for (i, s) in samples.iter_mut().enumerate() {
        if i % 2 == 0 {
            s.baseline = None;
        } else {
            s.candidate = None;
        }
    }
    let report = verdict::evaluate(
        &config(200, 4),
        &goals(&["p50 +10% @ 95%", "shift +10% @ 95%"]),
        &samples,
    );
    let p50 = &goal_report(&report, "p50 +10% @ 95%").overall;
    assert!(!p50.paired);
    assert_eq!(p50.test, "bootstrap-unpaired");
    assert_eq!(p50.rank.as_ref().unwrap().test, "mann-whitney-u");
    assert!(p50.text.contains("unpaired bootstrap 200"), "{}", p50.text);
    assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.lines());
    // A 30 % slower candidate fails the shift goal through Mann-Whitney U.
    for s in samples.iter_mut() {
        if let Some(c) = s.candidate.as_mut() {
            c.latency_ns = (c.latency_ns as f64 * 1.3) as u64;
        }
    }
    let report = verdict::evaluate(&config(200, 4), &goals(&["shift +10% @ 95%"]), &samples);
    let row = &report.goals[0].overall;
    assert_eq!(row.test, "mann-whitney-u");
    assert_eq!(row.verdict, Verdict::Fail, "{}", row.text);
    assert!((0.2..0.4).contains(&row.estimate.unwrap()), "{}", row.text);
}

#[test]
fn throughput_drop_fails() {
    // A third of the candidate's responses fail: its successful throughput drops by a third.
    let samples = sim::samples(
        &sim::Scenario {
            n: 3000,
            candidate_errors: 0.33,
            ..Default::default()
        },
        6,
    );
    let report = verdict::evaluate(&config(300, 6), &goals(&["rps -10% @ 95%"]), &samples);
    let row = &report.goals[0].overall;
    assert_eq!(row.verdict, Verdict::Fail, "{}", row.text);
    assert_eq!(row.test, "bootstrap-windows");
    assert!(
        (-0.4..-0.25).contains(&row.estimate.unwrap()),
        "{}",
        row.text
    );
    assert!(row.text.contains("< -10% @ 95%"), "{}", row.text);
    assert!(row.candidate.unwrap() < row.baseline.unwrap());
}

#[test]
fn statistics_match_known_values() {
    assert!((stats::normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
    assert!((stats::normal_cdf(-1.644_854) - 0.05).abs() < 1e-6);
    assert!((stats::normal_quantile(0.95) - 1.644_854).abs() < 1e-5);
    assert_eq!(stats::quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    assert_eq!(
        stats::quantile_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.99),
        4.96
    );
    // Newcombe (1998), table II example (a): 56/70 − 48/80, method 10: 0.0524 to 0.3339.
    let (lo, hi) = stats::newcombe(56, 70, 48, 80, 1.959_964);
    assert!(
        (lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4,
        "{lo} {hi}"
    );
    // Inverting the interval gives the p-value at which its bound meets the margin.
    let p = stats::newcombe_p_greater(56, 70, 48, 80, lo);
    assert!((p - 0.025).abs() < 1e-4, "{p}");
    // Hodges-Lehmann of Walsh averages: {1, 2, 9} → averages 1, 1.5, 2, 5, 5.5, 9 → 3.5.
    let s = stats::wilcoxon(&[1.0, 2.0, 9.0], 0.0, 0.95).unwrap();
    assert_eq!(s.estimate, 3.5);
    assert_eq!(s.rank_biserial, 1.0);
    // Two-sample: differences of {1, 2} and {4, 6} → 2, 3, 4, 5 → 3.5.
    let s = stats::mann_whitney(&[1.0, 2.0], &[4.0, 6.0], 0.0, 0.95).unwrap();
    assert_eq!(s.estimate, 3.5);
    assert_eq!(s.rank_biserial, 1.0);
    // Wilcoxon on a clear positive shift: small p for "greater", large for "less".
    let d: Vec<f64> = (0..50).map(|i| 1.0 + (i % 7) as f64 * 0.1 - 0.3).collect();
    let s = stats::wilcoxon(&d, 0.0, 0.95).unwrap();
    assert!(s.p_greater < 1e-6 && s.p_less > 0.99);
    assert!(s.lower <= s.estimate && s.estimate <= s.upper);
}

#[test]
fn report_round_trips_through_json() {
    let samples = vec![
        Sample {
            endpoint: "GET /a".to_owned(),
            index: 0,
            offset_ns: 0,
            baseline: Some(Arm {
                latency_ns: 1_000_000,
                error: false,
            }),
            candidate: Some(Arm {
                latency_ns: 1_100_000,
                error: true,
            }),
        };
        3
    ];
    let report = verdict::evaluate(&Config::default(), &goal::defaults().unwrap(), &samples);
    assert_eq!(report.verdict, Verdict::Inconclusive);
    let json = serde_json::to_string(&report).unwrap();
    let back: GateReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["goals"][0]["goal"]["metric"], "p50");
    assert_eq!(value["verdict"], "inconclusive");
    assert_eq!(value["exit_code"], 3);
}

/// A saturated service: each arm's latencies follow its own AR(1) queue in send order
/// (φ = 0.9), the same distribution on both arms (A/A). Resampling pairs independently would
/// take 2 000 correlated requests for 2 000 independent ones and make the interval far too
/// narrow; the circular-block bootstrap keeps the false-fail rate within α. Measured on these
/// seeds: 10/100 runs fail with blocks (α = 10 %: at the bound, not below it), 27/100 with
/// independent pairs.
#[test]
fn aa_false_fail_rate_holds_under_autocorrelation() {
    let alpha = 0.10;
    let gs = goals(&["p50 +0% @ 90%", "p90 +0% @ 90%"]);
    let runs = 100u32;
    let resamples = 150;
    let (mut block_fails, mut iid_fails) = (0u32, 0u32);
    let mut blocks = Vec::new();
    for seed in 0..u64::from(runs) {
        let samples = sim::samples(
            &sim::Scenario {
                n: 2000,
                autocorrelation: 0.9,
                ..Default::default()
            },
            5000 + seed,
        );
        let report = verdict::evaluate(&config(resamples, seed), &gs, &samples);
        assert_eq!(report.tests, 2);
        if report.verdict == Verdict::Fail {
            block_fails += 1;
        }
        let row = &report.goals[1].overall;
        assert!(row.text.contains(", block "), "{}", row.text);
        blocks.push(row.block.unwrap());
        // The same test with pairs resampled independently (block 1), Holm over the two.
        let lat = |pick: fn(&Sample) -> Option<Arm>| -> Vec<f64> {
            samples
                .iter()
                .map(|s| pick(s).unwrap().latency_ns as f64 / 1e6)
                .collect()
        };
        let (b, c) = (lat(|s| s.baseline), lat(|s| s.candidate));
        let stats_of = [
            stats::Statistic::Quantile(0.5),
            stats::Statistic::Quantile(0.9),
        ];
        let mut rng = verdict::rng::Rng::new(seed);
        let se = stats::bootstrap_log_ratio_se(&b, &c, true, 1, &stats_of, resamples, &mut rng);
        let p_min = stats_of
            .iter()
            .zip(&se)
            .map(|(s, se)| {
                let theta = (stats::statistic(&c, *s) / stats::statistic(&b, *s)).ln();
                1.0 - stats::normal_cdf(theta / se)
            })
            .fold(1.0, f64::min);
        if p_min * 2.0 < alpha {
            iid_fails += 1;
        }
    }
    blocks.sort_unstable();
    eprintln!(
        "A/A, AR(1) φ = 0.9: {block_fails}/{runs} runs failed with the block bootstrap (blocks {}..{}, median {}), {iid_fails}/{runs} with independent pairs",
        blocks[0],
        blocks[blocks.len() - 1],
        blocks[blocks.len() / 2]
    );
    let rate = f64::from(block_fails) / f64::from(runs);
    assert!(
        rate <= alpha,
        "block bootstrap: A/A false-fail rate {rate} ({block_fails}/{runs}) above α = {alpha}"
    );
    let iid_rate = f64::from(iid_fails) / f64::from(runs);
    assert!(
        iid_rate > 2.0 * alpha,
        "independent pairs: A/A false-fail rate {iid_rate} ({iid_fails}/{runs}): expected above 2α"
    );
}

#[test]
fn block_length_follows_the_autocorrelation() {
    let mut rng = verdict::rng::Rng::new(7);
    let iid: Vec<f64> = (0..2000).map(|_| rng.normal()).collect();
    assert_eq!(stats::block_length(&iid), 1);
    let ar = |phi: f64, rng: &mut verdict::rng::Rng| {
        let mut x = 0.0;
        (0..2000)
            .map(|_| {
                x = phi * x + rng.normal();
                x
            })
            .collect::<Vec<f64>>()
    };
    let weak = stats::block_length(&ar(0.3, &mut rng));
    let strong = stats::block_length(&ar(0.9, &mut rng));
    assert!((2..20).contains(&weak), "φ = 0.3: block {weak}");
    assert!(
        strong > 2 * weak && strong <= 135,
        "φ = 0.9: block {strong}"
    );
    assert_eq!(stats::block_length(&[3.0; 500]), 1);
}
