//! `tapedeck`: one CLI over all of tapedeck. It parses arguments and composes the library
//! crates; each subcommand's work lives in its crate (or, for the demo, in `demo.rs`).

mod demo;
mod filter;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Record the real traffic of a service in an Envoy / Istio mesh, and replay it to test the
/// next build before it reaches production.
#[derive(Debug, Parser)]
#[command(name = "tapedeck", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter (tracing's `EnvFilter` syntax), for example `info` or `tapedeck_local=debug`.
    #[arg(long, env = "TAPEDECK_LOG", default_value = "warn", global = true)]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the capture loop on a bundled sample service: a real Envoy with filter.wasm in front
    /// of it, a few requests (one causing an outbound call), and what the filter captured.
    Demo(demo::DemoArgs),
    /// Work with the capture filter's configuration.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "error: --log {:?} is not a valid log filter: {error}",
                cli.log
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Filter(command) => filter::run(command),
        Command::Demo(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(demo::run(args))),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
