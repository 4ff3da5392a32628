//! The capture path under faults (docs/soak.md): the real Envoy with `filter.wasm`, paced client
//! load, and the real collector (`tapedeck collector`, a child process) killed with SIGKILL and
//! restarted, frozen, refusing (`RESOURCE_EXHAUSTED` from a full buffer and from its free-disk
//! floor) and stopped, one phase each, about a minute of load in all.
//!
//! Needs Envoy, `filter.wasm` and the debug `tapedeck` binary (`cargo build -p tapedeck`, or
//! `$TAPEDECK_BIN`); `./x test` builds all three.

use anyhow::Result;
use std::time::Duration;
use tapedeck_e2e::soak::{self, Fault, Plan, Report, mib};

/// A fault phase's client p99 may be at most this many times the no-fault phase's …
const LATENCY_FACTOR: f64 = 3.0;
/// … plus this much (a debug build on a shared 2-core machine: scheduling noise).
const LATENCY_SLACK: Duration = Duration::from_millis(25);
/// Envoy's resident memory may grow this much above its peak in the no-fault phase (the
/// outbox is bounded at 256 KiB per VM; one VM here).
const ENVOY_GROWTH: u64 = 16 * 1024 * 1024;
/// The collector's resident memory may exceed its idle size by its buffer bound times this …
const COLLECTOR_BUFFER_FACTOR: u64 = 2;
/// … plus this much (Parquet writing, the write-ahead log's group commit, allocator slack).
const COLLECTOR_SLACK: u64 = 96 * 1024 * 1024;

fn check(report: &Report, plan: &Plan) {
    let table = report.table();
    eprintln!("{table}");
    let base = report.baseline().expect("a no-fault phase");
    let bound = base.p99.mul_f64(LATENCY_FACTOR) + LATENCY_SLACK;
    let mut total_dropped = 0;
    for phase in &report.phases {
        let name = phase.name;
        // No request fails, none slows beyond the bound.
        assert_eq!(phase.failed, 0, "{name}: requests failed\n{table}");
        assert!(phase.sent > 0, "{name}: no load\n{table}");
        assert!(
            phase.p99 <= bound,
            "{name}: client p99 {:?} above {bound:?} (no-fault p99 {:?} x {LATENCY_FACTOR} + {LATENCY_SLACK:?})\n{table}",
            phase.p99,
            base.p99
        );
        // Conservation at the filter, exact: every request was captured or dropped for a full
        // outbox, and every captured exchange was acknowledged or dropped for a failed push.
        assert_eq!(
            phase.captured + phase.queue_full,
            phase.sent,
            "{name}: captured + queue_full != requests\n{table}"
        );
        assert_eq!(
            phase.acked + phase.send_failed,
            phase.captured,
            "{name}: acked + send_failed != captured\n{table}"
        );
        total_dropped += phase.queue_full + phase.send_failed;
        // At the collector: nothing stored twice, nothing acknowledged lost, nothing stored that
        // was not pushed.
        assert_eq!(
            phase.stored_ids, phase.stored,
            "{name}: an exchange stored twice\n{table}"
        );
        assert!(
            phase.stored >= phase.acked,
            "{name}: {} acknowledged exchanges are not in the store\n{table}",
            phase.acked - phase.stored
        );
        assert!(
            phase.stored <= phase.acked + phase.send_failed,
            "{name}: more stored than pushed\n{table}"
        );
        if !matches!(Fault::from_name(name), Some(fault) if fault.may_lose_acks()) {
            // Only a kill or a push timeout can store what the filter counts as failed.
            assert_eq!(
                phase.stored, phase.acked,
                "{name}: stored != acknowledged\n{table}"
            );
        }
    }
    let by_name = |name: &str| {
        report
            .phases
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no phase {name}"))
    };
    // Each fault did happen, and was counted by its reason.
    assert!(
        by_name("none").queue_full + by_name("none").send_failed == 0,
        "{table}"
    );
    assert!(
        by_name("after").queue_full + by_name("after").send_failed == 0,
        "{table}"
    );
    assert!(
        by_name("kill").send_failed > 0,
        "the kills cost no push\n{table}"
    );
    assert!(by_name("down").send_failed > 0, "{table}");
    assert!(
        by_name("diskfloor")
            .rejected
            .get("disk_full")
            .copied()
            .unwrap_or(0)
            > 0,
        "the free-disk floor refused nothing\n{table}"
    );
    // Whether a 4 KiB buffer is ever found full depends on the flusher falling behind (it
    // flushes at a quarter of the bound): under load it refuses, on a quiet machine it may keep
    // up. The refusal itself is asserted deterministically in the collector's ingest tests, and
    // the filter's handling of RESOURCE_EXHAUSTED by the disk-floor phase above; here the phase
    // is held to conservation and to the client's bounds like every other.
    if !by_name("bufferfull").rejected.contains_key("buffer_full") {
        eprintln!("soak: the 4 KiB buffer was never found full in this run (the flusher kept up)");
    }
    assert_eq!(
        report.stored_rows,
        report.phases.iter().map(|p| p.stored).sum::<u64>(),
        "rows of no phase in the store"
    );
    // The collector heard of every drop, through the `dropped_since_last` of the batches it
    // stored, exactly once: a refused or failed batch's report rides on the filter's next batch,
    // and each phase ends with no report on its way. The one case where a report is counted
    // twice is a batch stored whose answer the filter never got while the collector lived on (a
    // push past the filter's timeout): it is counted on storing and carried forward as failed.
    // Then the phase is held to the tightest true bound: nothing lost, and each such batch
    // counted again at most what the phase's reports held.
    for phase in &report.phases {
        let name = phase.name;
        let happened = phase.dropped();
        if phase.unacked_batches() == 0 {
            assert_eq!(
                phase.reported, happened,
                "{name}: the collector was told of {} drops, {happened} happened\n{table}",
                phase.reported
            );
        } else {
            eprintln!(
                "soak {name}: {} batches stored but unacknowledged; drops reported {} for {happened}",
                phase.unacked_batches(),
                phase.reported
            );
            assert!(
                phase.reported >= happened
                    && phase.reported <= happened * (1 + phase.unacked_batches()),
                "{name}: the collector was told of {} drops, {happened} happened, {} batches stored unacknowledged\n{table}",
                phase.reported,
                phase.unacked_batches()
            );
        }
    }
    assert!(report.reported_dropped > 0, "{table}");
    if report.phases.iter().all(|p| p.unacked_batches() == 0) {
        assert_eq!(
            report.reported_dropped, total_dropped,
            "the collector was told of {} drops, {total_dropped} happened\n{table}",
            report.reported_dropped
        );
    }

    // Envoy's memory stays flat: queued captures are bounded.
    let envoy_base = by_name("none").envoy_peak_rss;
    let envoy_peak = report
        .phases
        .iter()
        .map(|p| p.envoy_peak_rss)
        .max()
        .unwrap_or(0);
    assert!(
        envoy_peak <= envoy_base + ENVOY_GROWTH,
        "Envoy grew from {:.1} MiB to {:.1} MiB\n{table}",
        mib(envoy_base),
        mib(envoy_peak)
    );
    // The collector stays within its buffer bound.
    let collector_peak = report
        .phases
        .iter()
        .map(|p| p.collector_peak_rss)
        .max()
        .unwrap_or(0);
    let collector_bound = report.collector_idle_rss
        + plan.buffer_max_bytes * COLLECTOR_BUFFER_FACTOR
        + COLLECTOR_SLACK;
    assert!(
        collector_peak <= collector_bound,
        "the collector peaked at {:.1} MiB, above {:.1} MiB (idle {:.1} MiB + {COLLECTOR_BUFFER_FACTOR} x buffer {:.1} MiB + slack)\n{table}",
        mib(collector_peak),
        mib(collector_bound),
        mib(report.collector_idle_rss),
        mib(plan.buffer_max_bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_survives_collector_faults_without_failing_a_request() -> Result<()> {
    let plan = Plan::ci(soak::find_tapedeck()?);
    let report = soak::run(&plan).await?;
    check(&report, &plan);
    Ok(())
}
