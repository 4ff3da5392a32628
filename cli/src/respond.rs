//! `tapedeck respond`: the responder (crate `tapedeck-responder`) until SIGINT or SIGTERM.

use std::process::ExitCode;

/// Serves until SIGINT or SIGTERM, then finishes requests in flight and flushes the explain
/// log; or summarises an explain log.
pub(crate) async fn run(args: tapedeck_responder::RespondArgs) -> anyhow::Result<ExitCode> {
    let shutdown = async {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the responder.");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    tapedeck_responder::run(args, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
