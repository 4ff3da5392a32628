//! `tapedeck import har`: traffic recorded elsewhere (a browser, another proxy) into the store,
//! as requests the service received or as calls it made.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use tapedeck_har::{Event, ImportOptions, stream};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::tonic::metadata::MetadataValue;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch};

/// Exchanges per push when importing through a collector.
const PUSH_BATCH: usize = 500;
/// Exchanges per write when importing into a data directory (bounds the import's memory).
const WRITE_BATCH: usize = 20_000;

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCommand {
    /// Import a HAR 1.2 file (from a browser's dev tools, a proxy, or `tapedeck export har`).
    Har(HarArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DirectionArg {
    /// Requests the service received (the generator will replay them).
    Inbound,
    /// Calls the service made to its dependencies (the responder will serve them).
    Outbound,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["collector", "data"])))]
pub(crate) struct HarArgs {
    /// The HAR file.
    file: PathBuf,
    /// The service the traffic belongs to (stored as the exchanges' workload).
    #[arg(long, env = "TAPEDECK_SERVICE")]
    service: String,
    /// The service's namespace.
    #[arg(long, env = "TAPEDECK_NAMESPACE")]
    namespace: Option<String>,
    /// Whether the entries are requests the service received or calls it made.
    #[arg(long, value_enum, default_value_t = DirectionArg::Inbound, env = "TAPEDECK_DIRECTION")]
    direction: DirectionArg,
    /// Push through a running collector's gRPC port, for example `http://127.0.0.1:9090`.
    #[arg(long, env = "TAPEDECK_COLLECTOR")]
    collector: Option<String>,
    /// The collector's bearer token, when it wants one.
    #[arg(long, env = "TAPEDECK_TOKEN", requires = "collector")]
    token: Option<String>,
    /// Write Parquet files straight into a data directory (no collector needs to run).
    #[arg(long, env = "TAPEDECK_DATA")]
    data: Option<PathBuf>,
    /// With --data: the object store URL, as the collector's --store.
    #[arg(long, env = "TAPEDECK_STORE", requires = "data")]
    store: Option<String>,
    /// Import the entries that convert even when others cannot (each is still named); without
    /// it an entry that cannot become an exchange stops the import before anything is written.
    /// Fields read leniently (named too) never stop it.
    #[arg(long, env = "TAPEDECK_PARTIAL")]
    partial: bool,
}

pub(crate) async fn run(command: ImportCommand) -> Result<ExitCode> {
    let ImportCommand::Har(args) = command;
    let mut options = ImportOptions::new(args.service.clone());
    options.namespace = args.namespace.clone();
    options.direction = match args.direction {
        DirectionArg::Inbound => Direction::Inbound,
        DirectionArg::Outbound => Direction::Outbound,
    };
    // The file is read twice, entry by entry, so memory stays one entry whatever its size:
    // first to show every diagnostic and refuse a file that is not HAR before anything is
    // written, then to import.
    let file = args.file.clone();
    let first_options = options.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let reader = open(&file)?;
        stream(reader, &first_options, |event| {
            if let Event::Diagnostic(diagnostic) = event {
                eprintln!("{}: {diagnostic}", file.display());
            }
        })
        .with_context(|| format!("{} is not a usable HAR file", file.display()))
    })
    .await??;
    if summary.skipped > 0 && !args.partial {
        bail!(
            "{} of {} entries cannot be imported (see above); fix them or pass --partial to import the other {}",
            summary.skipped,
            summary.entries,
            summary.imported
        );
    }
    if summary.imported == 0 {
        bail!("{} holds no entries to import", args.file.display());
    }
    if summary.diagnostics > summary.skipped {
        eprintln!(
            "{}: {} fields were read leniently (see above); their entries import",
            args.file.display(),
            summary.diagnostics - summary.skipped
        );
    }

    let batch_size = if args.collector.is_some() {
        PUSH_BATCH
    } else {
        WRITE_BATCH
    };
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<Exchange>>(2);
    let file = args.file.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut batch = Vec::with_capacity(batch_size);
        stream(open(&file)?, &options, |event| {
            if let Event::Exchange(exchange) = event {
                batch.push(*exchange);
                if batch.len() == batch_size {
                    // A closed channel means the import failed; its error is reported there.
                    let _ = sender.blocking_send(std::mem::take(&mut batch));
                }
            }
        })?;
        if !batch.is_empty() {
            let _ = sender.blocking_send(batch);
        }
        Ok(())
    });
    let mut imported = 0;
    if let Some(collector) = &args.collector {
        let mut client = connect(collector).await?;
        let bearer = args
            .token
            .as_deref()
            .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
            .transpose()
            .context("the token cannot be sent as a header")?;
        let mut sequence = 0;
        while let Some(batch) = batches.recv().await {
            sequence += 1;
            imported += batch.len();
            push(&mut client, bearer.as_ref(), sequence, batch).await?;
        }
        reader.await??;
        eprintln!("imported {imported} exchanges into the collector at {collector}");
    } else if let Some(data) = &args.data {
        let store = tapedeck_collector::store::open_store(data, args.store.as_deref())?;
        let writer = tapedeck_collector::writer::random_writer_id();
        let mut files = 0;
        while let Some(batch) = batches.recv().await {
            imported += batch.len();
            files += tapedeck_collector::writer::write_exchanges(&store.store, writer, &batch)
                .await?
                .len();
        }
        reader.await??;
        eprintln!(
            "imported {imported} exchanges into {} ({files} files)",
            data.display()
        );
    }
    Ok(if summary.skipped == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn open(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))
}

async fn connect(
    collector: &str,
) -> Result<CaptureClient<tapedeck_proto::tonic::transport::Channel>> {
    Ok(CaptureClient::connect(collector.to_string())
        .await
        .with_context(|| format!("connecting to the collector at {collector}"))?
        .max_encoding_message_size(usize::MAX))
}

async fn push(
    client: &mut CaptureClient<tapedeck_proto::tonic::transport::Channel>,
    bearer: Option<&MetadataValue<tapedeck_proto::tonic::metadata::Ascii>>,
    sequence: u64,
    exchanges: Vec<Exchange>,
) -> Result<()> {
    let count = exchanges.len();
    let batch = ExchangeBatch {
        exchanges,
        filter_version: tapedeck_har::IMPORT_FILTER_VERSION.into(),
        sequence,
        ..Default::default()
    };
    let mut request = tapedeck_proto::tonic::Request::new(batch);
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
    }
    let ack = client
        .push(request)
        .await
        .with_context(|| format!("pushing batch {sequence} ({count} exchanges)"))?;
    let accepted = ack.into_inner().accepted;
    if accepted != count as u64 {
        bail!("the collector accepted {accepted} of {count} exchanges in batch {sequence}");
    }
    Ok(())
}
