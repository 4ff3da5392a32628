//! `tapedeck operator`: runs the Replay controller (`tapedeck-operator`) until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anyhow::Result;
use tapedeck_operator::OperatorArgs;

/// Runs the operator; exits 0 after a signal, 2 when it could not start.
pub(crate) async fn run(args: OperatorArgs) -> Result<ExitCode> {
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the operator.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    match tapedeck_operator::run(args, shutdown).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(2))
        }
    }
}
