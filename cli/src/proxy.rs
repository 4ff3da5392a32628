//! `tapedeck proxy`: the real Envoy with filter.wasm as a local sidecar and HTTP proxy
//! (`tapedeck_local::proxy`), capturing into a collector started here on `--data DIR`, or into a
//! running one (`--collector ADDR`), until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tapedeck_collector::{CollectorArgs, Listeners};
use tapedeck_local::proxy::ProxyArgs;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub(crate) struct ProxyCommandArgs {
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Start a collector in this process that stores into DIR (query it with
    /// `tapedeck sql --data DIR` once the proxy stopped, or over Flight SQL while it runs).
    #[arg(
        long,
        env = "TAPEDECK_PROXY_DATA",
        conflicts_with = "collector",
        required_unless_present = "collector"
    )]
    data: Option<PathBuf>,
}

async fn signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the proxy.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the proxy until SIGINT or SIGTERM; then lets captures reach the collector, stops Envoy,
/// and (with `--data`) flushes the collector.
pub(crate) async fn run(args: ProxyCommandArgs) -> Result<ExitCode> {
    let Some(data) = args.data else {
        let collector = args.proxy.collector.clone().unwrap_or_default();
        tapedeck_local::proxy::run(args.proxy, &collector, signal()).await?;
        return Ok(ExitCode::SUCCESS);
    };
    let bind = || async {
        TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port for the collector")
    };
    let listeners = Listeners {
        grpc: bind().await?,
        http: bind().await?,
        flight: Some(bind().await?),
    };
    let grpc = listeners.grpc.local_addr()?;
    let flight = listeners
        .flight
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?
        .context("no Flight SQL listener")?;
    let store = tapedeck_collector::store::open_store(&data, None)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let collector = tokio::spawn(tapedeck_collector::run_with(
        CollectorArgs {
            data: data.clone(),
            ..CollectorArgs::default()
        },
        listeners,
        store,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    ));
    eprintln!(
        "collector: data {}; while this runs: tapedeck sql --collector http://{flight} \"SELECT …\"",
        data.display()
    );
    let proxied = tapedeck_local::proxy::run(args.proxy, &grpc.to_string(), signal()).await;
    let _ = stop.send(true);
    collector
        .await
        .context("the collector task panicked")?
        .context("the collector failed")?;
    proxied?;
    eprintln!(
        "flushed; query it with: tapedeck sql --data {} \"SELECT direction, count(*) FROM exchanges GROUP BY 1\"",
        data.display()
    );
    Ok(ExitCode::SUCCESS)
}
