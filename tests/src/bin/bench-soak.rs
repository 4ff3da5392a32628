//! The soak benchmark: the CI soak (`tests/tests/soak.rs`, docs/soak.md) at a higher rate and for
//! minutes, with the release `tapedeck` collector and `filter.wasm` in the real Envoy; prints the
//! fault table and Envoy's and the collector's memory over time for BENCHMARKS.md.
//!
//! Run with `./x bench soak [--minutes N] [--rate R]`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use tapedeck_e2e::soak::{self, Plan, mib};

#[derive(Debug, Parser)]
struct Args {
    /// The `tapedeck` binary the collector runs as (a release build).
    #[arg(long, env = "TAPEDECK_BIN")]
    tapedeck: PathBuf,
    /// Minutes of load in all, shared evenly by the phases.
    #[arg(long, env = "TAPEDECK_SOAK_MINUTES", default_value_t = 5.0)]
    minutes: f64,
    /// Requests per second.
    #[arg(long, env = "TAPEDECK_SOAK_RATE", default_value_t = 500)]
    rate: u32,
    /// Client connections.
    #[arg(long, env = "TAPEDECK_SOAK_CONNECTIONS", default_value_t = 8)]
    connections: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut plan = Plan::ci(args.tapedeck);
    plan.phase = Duration::from_secs_f64(args.minutes * 60.0 / plan.phases.len() as f64);
    plan.rate = args.rate;
    plan.connections = args.connections;
    plan.sample_every = Duration::from_millis(500);
    println!(
        "soak: {} phases of {:.0} s, {} requests/s over {} connections, body {} B, push timeout {:?}, outbox {} exchanges / {} KiB, collector buffer {} MiB",
        plan.phases.len(),
        plan.phase.as_secs_f64(),
        plan.rate,
        plan.connections,
        plan.body_bytes,
        plan.push_timeout,
        plan.queue_max_exchanges,
        plan.queue_max_bytes / 1024,
        plan.buffer_max_bytes / (1024 * 1024)
    );
    let report = soak::run(&plan).await?;
    println!("{}", report.table());
    // Conservation at the collector, per phase (docs/soak.md): drops reported = drops happened,
    // unless a batch was stored and its answer lost on a live collector.
    for phase in &report.phases {
        println!(
            "conservation {}: dropped {} (queue_full {} + send_failed {}), reported to the collector {}, batches stored unacknowledged {}{}",
            phase.name,
            phase.dropped(),
            phase.queue_full,
            phase.send_failed,
            phase.reported,
            phase.unacked_batches(),
            if phase.reported == phase.dropped() {
                ", exact"
            } else {
                ", NOT exact"
            }
        );
    }
    println!(
        "requests {}, stored rows {}, drops the collector was told of {}, collector idle RSS {:.1} MiB",
        report.total_requests,
        report.stored_rows,
        report.reported_dropped,
        mib(report.collector_idle_rss)
    );
    // Memory over time, one line per phase: first, last and peak sample.
    for (index, phase) in report.phases.iter().enumerate() {
        let series = |samples: &[(f64, u64, usize)]| {
            let mine: Vec<_> = samples.iter().filter(|s| s.2 == index).collect();
            match (mine.first(), mine.last()) {
                (Some(first), Some(last)) => format!(
                    "{:.1} -> {:.1} MiB (t {:.0}-{:.0} s)",
                    mib(first.1),
                    mib(last.1),
                    first.0,
                    last.0
                ),
                _ => "-".to_string(),
            }
        };
        println!(
            "memory {}: Envoy {}, collector {}",
            phase.name,
            series(&report.envoy_rss),
            series(&report.collector_rss)
        );
    }
    Ok(())
}
