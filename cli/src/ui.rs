//! `tapedeck ui`: the traffic viewer (crate `tapedeck-ui`) until SIGINT or SIGTERM.

use std::process::ExitCode;

/// Serves the page until SIGINT or SIGTERM.
pub(crate) async fn run(args: tapedeck_ui::UiArgs) -> anyhow::Result<ExitCode> {
    let shutdown = async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the ui.");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    tapedeck_ui::run(args, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
