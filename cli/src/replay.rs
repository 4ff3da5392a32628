//! `tapedeck replay`: sends a snapshot's recorded inbound requests to a build under test, with
//! live tokens, under a load model, and exits with the verdict of its goals.

use std::process::ExitCode;

use anyhow::Result;
use tapedeck_generator::ReplayArgs;

/// Runs the replay until done or Ctrl-C / SIGTERM (then stops sending and lets requests in flight
/// settle).
/// Exits 0 when every goal holds (or none was given), 1 when a goal fails, 2 when the replay
/// could not run (bad arguments, an unreadable snapshot, `--strict-redacted` with redacted
/// values that have no secret).
pub(crate) async fn run(args: ReplayArgs) -> Result<ExitCode> {
    if let Some(tapedeck_generator::shard::ReplayCommand::Merge(merge)) = &args.command {
        return Ok(match tapedeck_generator::shard::merge(merge) {
            Ok(summary) => {
                println!(
                    "merged {} shard(s): {} requests, p50 {:.2} ms, p99 {:.2} ms, {:.1} rps, {:.2} % errors, verdict {}",
                    summary.shards,
                    summary.requests,
                    summary.latency.p50,
                    summary.latency.p99,
                    summary.rps,
                    summary.error_rate * 100.0,
                    summary.verdict
                );
                ExitCode::from(summary.exit_code())
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        });
    }
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the replay.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    match tapedeck_generator::run(args, shutdown).await {
        Ok(report) => {
            print!("{}", report.summary());
            Ok(ExitCode::from(report.verdict().exit_code()))
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
