//! `tapedeck inventory`: what a service is called by and what it calls, over a time window,
//! read from a running collector or a data directory.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use tapedeck_analyzer::Cut;
use tapedeck_analyzer::inventory::{Inventory, sql};
use tapedeck_har::time;

use crate::source::{CutArgs, SourceArgs};

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// Pretty JSON, fields in a fixed order.
    Json,
    /// GitHub-flavoured markdown tables.
    Markdown,
}

#[derive(Debug, Args)]
pub(crate) struct InventoryArgs {
    #[command(flatten)]
    cut: CutArgs,

    /// How to write the report on stdout.
    #[arg(
        long,
        env = "TAPEDECK_FORMAT",
        value_enum,
        default_value_t = Format::Table
    )]
    format: Format,

    #[command(flatten)]
    source: SourceArgs,
}

/// The window of a cut, for messages.
fn describe_window(cut: &Cut) -> String {
    match (cut.from, cut.to) {
        (Some(from), Some(to)) => format!(
            "from {} to {}",
            time::format_exact(from),
            time::format_exact(to)
        ),
        (Some(from), None) => format!("since {}", time::format_exact(from)),
        (None, Some(to)) => format!("before {}", time::format_exact(to)),
        (None, None) => "at any time".to_owned(),
    }
}

/// Prints the inventory. Exits 2 on bad arguments (including a data directory that does not
/// exist) and 1 when the cut holds no exchange.
pub(crate) async fn run(args: InventoryArgs) -> Result<ExitCode> {
    let cut = match args.cut.cut() {
        Ok(cut) => cut,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    // Reading a store creates its folder; a mistyped --data would otherwise read as empty.
    let source = &args.source;
    if let Some(problem) = source.problem() {
        eprintln!("error: {problem}");
        return Ok(ExitCode::from(2));
    }
    let batches = source.query(&sql(&cut)).await?;
    let inventory = Inventory::from_batches(&cut.service, &batches)
        .with_context(|| format!("reading the exchanges from {}", args.source.describe()))?;
    if inventory.is_empty() {
        let predicate = cut
            .predicate
            .as_deref()
            .map(|p| format!(" matching {p:?}"))
            .unwrap_or_default();
        eprintln!(
            "no exchanges of service {:?} {}{predicate} in {}",
            cut.service,
            describe_window(&cut),
            args.source.describe()
        );
        return Ok(ExitCode::FAILURE);
    }
    let report = match args.format {
        Format::Table => inventory.to_table(),
        Format::Json => inventory.to_json(),
        Format::Markdown => inventory.to_markdown(),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A reader that stopped early (`| head`) is not an error.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("writing the report")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
