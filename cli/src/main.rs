//! `tapedeck`: one CLI over all of tapedeck. It parses arguments and composes the library
//! crates; each subcommand's work lives in its crate (or, for the demo, in `demo.rs`).

mod export;
mod filter;
mod import;
mod inventory;
mod mesh;
mod operator;
mod proxy;
mod replay;
mod respond;
mod snapshot;
mod snapshot_remote;
mod source;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tapedeck_cli::demo;

/// mimalloc instead of glibc malloc: the collector's ingest allocates per header and body, and
/// glibc's allocator took about 30 % of its CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

/// Record the real traffic of a service in an Envoy / Istio mesh, and replay it to test the
/// next build before it reaches production.
#[derive(Debug, Parser)]
#[command(name = "tapedeck", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter (tracing's `EnvFilter` syntax), for example `info` or `tapedeck_local=debug`;
    /// by default `info` for `tapedeck collector` and `warn` for the other commands.
    #[arg(long, env = "TAPEDECK_LOG", global = true)]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole loop on a bundled sample system, in about two minutes: live traffic captured
    /// through the real Envoy with filter.wasm, queried, cut into a snapshot, and replayed at
    /// 10x against a baseline and a candidate with a planted regression, dependencies mocked;
    /// the verdict and an HTML report at the end.
    Demo(demo::DemoArgs),
    /// Capture without a cluster: the real Envoy with filter.wasm in front of a local app
    /// (--inbound) and as its outbound HTTP proxy (--outbound, for HTTP_PROXY), into a collector
    /// on a local data directory (--data) or a running one (--collector).
    Proxy(proxy::ProxyCommandArgs),
    /// Work with the capture filter's configuration.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    /// Run the collector: receive pushes from the filters (gRPC), make them durable (write-ahead
    /// log), store them as Parquet (local disk or S3) and answer SQL (Arrow Flight SQL).
    Collector(ui::CollectorCommand),
    /// Run a read-only SQL query over the `exchanges` table, against a running collector
    /// (--collector) or a data directory (--data).
    Sql(tapedeck_collector::query::SqlArgs),
    /// Bring traffic recorded elsewhere into the store.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Cut, check and inspect snapshots: the recorded traffic of one service over a time window,
    /// with the dynamic values (tokens, timestamps, ids, correlations) found and written as
    /// editable rules.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// What a service is called by and what it calls: every endpoint and dependency with counts,
    /// status mix, latency percentiles, protocols and content types.
    Inventory(inventory::InventoryArgs),
    /// Write a snapshot in a format other tools read.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Serve a snapshot's recorded outbound calls as mocks on one port (every host by `Host` /
    /// `:authority`), explaining every match, with optional chaos; `respond explain LOG`
    /// summarises an explain log.
    Respond(tapedeck_responder::RespondArgs),
    /// Replay a snapshot's recorded inbound requests against a build under test, with live
    /// tokens (correlations, re-signed JWTs, shifted timestamps, secrets), at recorded pace, a
    /// fixed rate or a fixed concurrency; compare responses and report pass or fail.
    Replay(tapedeck_generator::ReplayArgs),
    /// Install capture in an Istio mesh: render the collector and the filter (WasmPlugin or
    /// EnvoyFilter) for `kubectl apply -f -`, or package filter.wasm as an OCI image.
    Mesh(tapedeck_mesh::MeshArgs),
    /// Run the Replay operator (kube-rs controller): for each `Replay` resource, a responder with
    /// the snapshot, mesh routing of the target's outbound hosts to it, the generator as a Job
    /// (sharded over pods), the merged verdict in status and an Event, then cleanup.
    Operator(tapedeck_operator::OperatorArgs),
    /// Explore captured traffic in a local web page (live list, SQL filter, exchange detail,
    /// trace tree, HAR export, service map) and cut and edit snapshots; served on --listen.
    Ui(tapedeck_ui::UiArgs),
}

fn block_on(
    task: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(task))
}

/// Runs the collector until SIGINT or SIGTERM, then flushes and exits.
async fn collector(args: ui::CollectorCommand) -> anyhow::Result<ExitCode> {
    let shutdown = async {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops the collector.");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("Shutting down: flushing what is buffered.");
    };
    ui::run_collector(args, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn sql(args: tapedeck_collector::query::SqlArgs) -> anyhow::Result<ExitCode> {
    match tapedeck_collector::query::run_sql(&args).await {
        Ok(output) => {
            if output.ends_with('\n') {
                print!("{output}");
            } else {
                println!("{output}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Commands that print a report die quietly when the reader goes away (`tapedeck sql … | head`),
/// as Unix tools do, instead of panicking on a broken pipe. Servers (the collector, the demo's
/// in-process collector) keep Rust's default of ignoring SIGPIPE: a peer closing a socket must
/// not kill them.
fn default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The batch commands (snapshots, inventories, queries, imports, exports) read and build
/// gigabytes once and exit. With transparent huge pages every first touch of fresh memory
/// zeroes 2 MiB, and that zeroing took most of `tapedeck snapshot create`'s system time and a
/// third of its wall time on the benchmark machine (BENCHMARKS.md); 4 KiB pages are faster for
/// this pattern. The collector keeps the system's setting.
fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integer arguments and only sets a flag
    // of this process; a failure (an old kernel) leaves the default, which is fine.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    tapedeck_cli::allocator::reuse_freed_pages();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Collector(_)
            | Command::Demo(_)
            | Command::Proxy(_)
            | Command::Respond(_)
            | Command::Replay(_)
            | Command::Ui(_)
            | Command::Operator(_)
    ) {
        default_sigpipe();
        no_huge_pages();
    }
    let default_log = if matches!(cli.command, Command::Collector(_)) {
        "info"
    } else {
        "warn"
    };
    let log = cli.log.as_deref().unwrap_or(default_log);
    let filter = match EnvFilter::try_new(log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("error: --log {log:?} is not a valid log filter: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Filter(command) => filter::run(command),
        Command::Demo(args) => block_on(demo::run(args)),
        Command::Proxy(args) => block_on(proxy::run(args)),
        Command::Collector(args) => block_on(collector(args)),
        Command::Sql(args) => block_on(sql(args)),
        Command::Import(command) => block_on(import::run(command)),
        Command::Snapshot(command) => block_on(snapshot::run(command)),
        Command::Inventory(args) => block_on(inventory::run(args)),
        Command::Export(command) => export::run(command),
        Command::Respond(args) => block_on(respond::run(args)),
        Command::Replay(args) => block_on(replay::run(args)),
        Command::Mesh(args) => block_on(mesh::run(args)),
        Command::Operator(args) => block_on(operator::run(args)),
        Command::Ui(args) => block_on(ui::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
