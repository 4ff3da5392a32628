//! `tapedeck export`: a snapshot in formats other tools read.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum ExportCommand {
    /// Write a snapshot as HAR 1.2 (browsers' dev tools, proxies and API tools read it; tapedeck
    /// fields HAR lacks go in `_tapedeck` custom fields, so `tapedeck import har` gets them back).
    Har(HarArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HarArgs {
    /// The snapshot directory.
    snapshot: PathBuf,
    /// The HAR file to write; `-` writes to standard output.
    #[arg(long, short, env = "TAPEDECK_OUT", value_name = "FILE")]
    out: PathBuf,
}

pub(crate) fn run(command: ExportCommand) -> Result<ExitCode> {
    let ExportCommand::Har(args) = command;
    let snapshot = tapedeck_analyzer::snapshot::read(&args.snapshot)?;
    let mut exchanges = snapshot
        .exchanges()
        .map_err(|problem| anyhow::anyhow!("{}/{problem}", args.snapshot.display()))?;
    exchanges.sort_by(|a, b| (a.start_unix_nanos, &a.id).cmp(&(b.start_unix_nanos, &b.id)));
    let har =
        tapedeck_har::from_exchanges(&exchanges, concat!("tapedeck ", env!("CARGO_PKG_VERSION")));
    let text = tapedeck_har::to_json(&har);
    if args.out.as_os_str() == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to standard output")?;
    } else {
        std::fs::write(&args.out, text)
            .with_context(|| format!("writing {}", args.out.display()))?;
        eprintln!(
            "wrote {} entries ({} inbound, {} outbound) to {}",
            exchanges.len(),
            snapshot.inbound.len(),
            snapshot.outbound.len(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
