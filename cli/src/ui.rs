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

/// `tapedeck collector`: the collector's flags, and `--ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct CollectorCommand {
    #[command(flatten)]
    pub(crate) collector: tapedeck_collector::CollectorArgs,

    /// Also serve the traffic viewer, read-only, under /ui/ on the HTTP port (--http-listen),
    /// behind --token (a browser asks for it: any user name, the token as password). Its
    /// queries go through this collector's Flight SQL port with the token, so --flight-listen
    /// is needed.
    #[arg(long = "ui", env = "TAPEDECK_COLLECTOR_UI")]
    pub(crate) ui: bool,
}

/// Runs the collector until `shutdown`; with `--ui`, the viewer is mounted on its HTTP port
/// (`tapedeck_collector::http::EXTRA_ROUTES`, composed here: the viewer's crate depends on the
/// collector's, not the other way round).
pub(crate) async fn run_collector(
    args: CollectorCommand,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let args_ui = args.ui;
    let args = args.collector;
    if !args_ui {
        tapedeck_collector::run(args, shutdown).await?;
        return Ok(());
    }
    let listeners = tapedeck_collector::Listeners::bind(&args).await?;
    let flight = listeners
        .flight
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--ui needs --flight-listen: the viewer's queries go through the collector's Flight SQL port"
            )
        })?;
    let ui = tapedeck_ui::Ui::read_only(tapedeck_ui::Backend::remote(
        format!("http://{}", loopback_if_unspecified(flight)),
        args.token.clone(),
    ));
    let routes = tapedeck_ui::mounted(std::sync::Arc::new(ui), args.token.clone());
    if tapedeck_collector::http::EXTRA_ROUTES.set(routes).is_err() {
        anyhow::bail!("the collector's HTTP port already has extra routes");
    }
    if let Ok(http) = listeners.http.local_addr() {
        eprintln!(
            "tapedeck collector: the viewer is at http://{}{}/ (read-only)",
            loopback_if_unspecified(http),
            tapedeck_ui::MOUNT_PREFIX
        );
    }
    let store = tapedeck_collector::store::open_store(&args.data, args.store.as_deref())?;
    tapedeck_collector::run_with(args, listeners, store, shutdown).await?;
    Ok(())
}

/// `0.0.0.0:P` → `127.0.0.1:P` (and `[::]` → `[::1]`): where this process reaches its own port.
fn loopback_if_unspecified(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}
