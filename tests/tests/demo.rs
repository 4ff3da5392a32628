//! The whole loop of `tapedeck demo` (the CLI's own `run_loop`, with a smaller population):
//! capture through the real Envoy and filter.wasm, SQL, a snapshot, the responder and two
//! replays, asserted stage by stage.

use std::sync::Mutex;

use anyhow::{Context as _, Result};
use serde_json::Value;
use tapedeck_cli::demo::{DemoArgs, Show, run_loop};

/// Keeps the demo's output for the failure message.
#[derive(Debug, Default)]
struct Kept(Mutex<String>);

impl Show for Kept {
    fn stage(&self, title: &str) {
        self.push(&format!("== {title}"));
    }
    fn line(&self, text: &str) {
        self.push(text);
    }
    fn live(&self, text: &str) {
        self.push(text);
    }
}

impl Kept {
    fn push(&self, text: &str) {
        if let Ok(mut kept) = self.0.lock() {
            kept.push_str(text);
            kept.push('\n');
        }
    }
    fn text(&self) -> String {
        self.0.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

fn rule_names(snapshot: &Value) -> Vec<String> {
    snapshot["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            format!(
                "{} {}",
                rule["replay"].as_str().unwrap_or("?"),
                rule["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loop_catches_the_planted_regression_and_nothing_else() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut args = DemoArgs::new(tmp.path().join("demo"));
    args.users = 12;
    args.orders_per_user = 3;
    args.ramp_up_secs = 2.0;
    args.think_ms = 600;
    // 12 copies (one after the other): 144 pairs on the smallest endpoints (`POST /login`,
    // `GET /orders`), so A/A can prove p90 within +50 % on a loaded 2-core machine; at 6 copies
    // (72 pairs) `POST /login` stayed inconclusive in 2 of 14 runs here (BENCHMARKS.md).
    args.copies = 12;
    args.calibrate = 1;
    args.min_samples = 20;
    let kept = Kept::default();
    let outcome = run_loop(&args, &kept).await;
    let output = kept.text();
    let outcome =
        outcome.with_context(|| format!("the demo loop failed; its output:\n{output}"))?;

    // Capture: every request of the population, inbound; a payment and a mail per order, outbound.
    let population = outcome.population;
    assert_eq!(population.failures, 0, "{output}");
    assert_eq!(
        population.orders,
        (args.users * args.orders_per_user) as u64,
        "{output}"
    );
    let captured = outcome.captured;
    assert_eq!(captured.inbound, population.requests, "{output}");
    assert_eq!(captured.outbound, 2 * population.orders, "{output}");
    assert_eq!((captured.other, captured.failed_pushes), (0, 0), "{output}");

    // The snapshot: the counts, and the token rules the sample system calls for.
    let snapshot = &outcome.snapshot;
    assert_eq!(
        snapshot["counts"]["inbound"], population.requests,
        "{snapshot}"
    );
    assert_eq!(
        snapshot["counts"]["outbound"],
        2 * population.orders,
        "{snapshot}"
    );
    let rules = rule_names(snapshot);
    let has = |needle: &str| rules.iter().any(|rule| rule.contains(needle));
    for rule in [
        "resign jwt inbound request header authorization Bearer",
        "substitute correlation inbound response json $.id (POST /orders)",
        "timestamp inbound response json $.created_at (POST /orders)",
        "shift timestamp outbound response json $.created (POST /v1/charges)",
        "ignore id outbound request json $.order_id (POST /v1/charges)",
        "ignore uuid outbound request json $.idempotency_key (POST /v1/charges)",
    ] {
        assert!(has(rule), "no rule {rule:?} in {rules:#?}");
    }

    // The responder answered every call from the recording.
    let mocked = outcome.mocked;
    assert!(mocked.requests > 0, "{output}");
    assert_eq!(mocked.misses, 0, "{output}");
    assert_eq!(mocked.matches, mocked.requests, "{output}");

    // v1 against itself passes: exit 0, and no goal row fails or stays inconclusive.
    assert_eq!(
        outcome.aa.exit_code, 0,
        "A/A:\n{}\n{output}",
        outcome.aa.summary
    );
    let unsettled: Vec<&str> = outcome
        .aa
        .summary
        .lines()
        .filter(|l| l.starts_with("gate ") && !l.ends_with(": pass"))
        .collect();
    assert!(
        unsettled.is_empty(),
        "A/A rows that did not pass: {unsettled:#?}\n{}",
        outcome.aa.summary
    );
    // v2 against v1 fails, for latency and never for errors.
    assert_eq!(
        outcome.ab.exit_code, 1,
        "A/B:\n{}\n{output}",
        outcome.ab.summary
    );
    let failing: Vec<&str> = outcome
        .ab
        .summary
        .lines()
        .filter(|l| l.ends_with(": fail"))
        .collect();
    assert!(
        failing.iter().any(|l| l.starts_with("gate p90 ")),
        "the overall p90 goal must fail: {}",
        outcome.ab.summary
    );
    for line in failing {
        assert!(
            line.contains(": p90 ") || line.starts_with("gate p90 "),
            "an unplanted failure (not latency): {line}\n{}",
            outcome.ab.summary
        );
    }
    let diffs = |report: &Value| -> Vec<String> {
        report["diffs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} {}",
                    d["endpoint"].as_str().unwrap_or("?"),
                    d["field"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    let (aa, ab) = (diffs(&outcome.aa.report), diffs(&outcome.ab.report));
    assert!(ab.contains(&"POST /orders $.status".to_string()), "{ab:?}");
    assert!(
        ab.contains(&"GET /orders/{id} $.status".to_string()),
        "{ab:?}"
    );
    assert!(!aa.iter().any(|d| d.ends_with("status")), "{aa:?}");
    // The noise learned by calibration: the processing time of POST /orders.
    let noise = outcome.ab.report["noise"]["rules"].to_string();
    assert!(noise.contains("$.processing_ms"), "{noise}");
    Ok(())
}
