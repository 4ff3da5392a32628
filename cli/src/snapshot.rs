//! `tapedeck snapshot`: cut a snapshot from the store, and check one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use tapedeck_analyzer::rows::{self, BatchView};
use tapedeck_analyzer::snapshot::{self, Spec};
use tapedeck_analyzer::tokens::TokenKind;

use crate::source::{CutArgs, SourceArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Cut a snapshot: the exchanges of one service in a time window (and a predicate), written
    /// as snapshot.json + inbound.jsonl + outbound.jsonl, with the dynamic values found and
    /// written as token rules.
    Create(Box<CreateArgs>),
    /// Check a snapshot directory (after editing it by hand, say): every problem is printed with
    /// its file and line; exits 1 when there is one.
    Validate(ValidateArgs),
    /// Send a snapshot directory to the collector, which keeps it under its id (printed) for
    /// `pull` and for Replays with `spec.snapshot.id`.
    Push(crate::snapshot_remote::PushArgs),
    /// Fetch a snapshot by id from the collector into a directory (checked before it is
    /// renamed into place).
    Pull(crate::snapshot_remote::PullArgs),
    /// List the snapshots the collector keeps: id, service, window, counts, outbound hosts.
    List(crate::snapshot_remote::ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    cut: CutArgs,
    /// The snapshot directory to write.
    #[arg(long, short, env = "TAPEDECK_OUT", value_name = "DIR")]
    out: PathBuf,
    /// Replace --out when it exists and is not empty.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The snapshot directory.
    dir: PathBuf,
}

pub(crate) async fn run(command: SnapshotCommand) -> Result<ExitCode> {
    match command {
        SnapshotCommand::Create(args) => create(*args).await,
        SnapshotCommand::Validate(args) => Ok(validate(&args)),
        SnapshotCommand::Push(args) => crate::snapshot_remote::push(args).await,
        SnapshotCommand::Pull(args) => crate::snapshot_remote::pull(args).await,
        SnapshotCommand::List(args) => crate::snapshot_remote::list(args).await,
    }
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    let cut = match args.cut.cut() {
        Ok(cut) => cut,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(problem) = args.source.problem() {
        eprintln!("error: {problem}");
        return Ok(ExitCode::from(2));
    }
    let sql = cut.snapshot_sql();
    let began = Instant::now();
    eprintln!(
        "querying {} for service {}…",
        args.source.describe(),
        cut.service
    );
    // The rows are read in place from the query's record batches (no decoding into
    // exchanges: for a million rows that took longer than the rest of the snapshot).
    let mut batches = Vec::new();
    args.source
        .query_each(&sql, |batch| {
            batches.push(batch);
            Ok(())
        })
        .await?;
    let views = batches
        .iter()
        .map(BatchView::new)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the query's rows as exchanges")?;
    let exchanges = rows::rows_of(&views);
    let queried = began.elapsed();
    if exchanges.is_empty() {
        bail!(
            "no exchanges of service {:?} in {} match ({}); check --service, --from/--to and --where (tapedeck inventory lists what is there)",
            cut.service,
            args.source.describe(),
            cut.where_clause()
        );
    }
    eprintln!(
        "read {} exchanges in {:.1} s; finding tokens and writing {}…",
        exchanges.len(),
        queried.as_secs_f64(),
        args.out.display()
    );
    let spec = Spec {
        service: cut.service.clone(),
        sql,
        predicate: cut.predicate.clone(),
        from: cut.from,
        to: cut.to,
    };
    let built = snapshot::build(&spec, exchanges);
    let manifest = built.write(&args.out, args.force)?;
    let count = |kind: TokenKind| manifest.tokens.iter().filter(|r| r.kind == kind).count();
    println!("snapshot {} written to {}", manifest.id, args.out.display());
    println!(
        "  window    {} .. {}",
        tapedeck_har::time::format_exact(manifest.window.from.0),
        tapedeck_har::time::format_exact(manifest.window.to.0)
    );
    println!("  inbound   {} requests", manifest.counts.inbound);
    println!(
        "  outbound  {} calls to {} host(s) ({} linked to the inbound request that caused them)",
        manifest.counts.outbound,
        manifest.hosts.len(),
        manifest.counts.linked
    );
    if manifest.counts.skipped > 0 {
        println!(
            "  skipped   {} exchanges with no direction",
            manifest.counts.skipped
        );
    }
    println!(
        "  tokens    {} rules: {} correlation, {} jwt, {} timestamp, {} uuid, {} id",
        manifest.tokens.len(),
        count(TokenKind::Correlation),
        count(TokenKind::Jwt),
        count(TokenKind::Timestamp),
        count(TokenKind::Uuid),
        count(TokenKind::Id)
    );
    for rule in &manifest.tokens {
        println!(
            "            {:<10} {}",
            format!("{:?}", rule.replay).to_lowercase(),
            rule.name
        );
    }
    eprintln!("done in {:.1} s", began.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let (snapshot, problems) = snapshot::validate(&args.dir);
    for problem in &problems {
        println!("{}/{problem}", args.dir.display());
    }
    match snapshot {
        Some(snapshot) if problems.is_empty() => {
            println!(
                "{}: valid snapshot {} ({} inbound, {} outbound, {} token rules)",
                args.dir.display(),
                snapshot.manifest.id,
                snapshot.inbound.len(),
                snapshot.outbound.len(),
                snapshot.manifest.tokens.len()
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "{}: {} problem{}",
                args.dir.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}
