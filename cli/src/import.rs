//! `tapedeck import har`: traffic recorded elsewhere (a browser, another proxy) into the store,
//! as requests the service received or as calls it made.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use tapedeck_har::{ImportOptions, parse, to_exchanges};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::tonic::metadata::MetadataValue;
use tapedeck_proto::{Direction, ExchangeBatch};

/// Exchanges per push when importing through a collector.
const PUSH_BATCH: usize = 500;

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
    /// Import the entries that convert even when others do not (each problem is still shown);
    /// without it any problem stops the import before anything is written.
    #[arg(long)]
    partial: bool,
}

pub(crate) async fn run(command: ImportCommand) -> Result<ExitCode> {
    let ImportCommand::Har(args) = command;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let har = parse(&bytes)
        .with_context(|| format!("{} is not a usable HAR file", args.file.display()))?;
    let mut options = ImportOptions::new(args.service.clone());
    options.namespace = args.namespace.clone();
    options.direction = match args.direction {
        DirectionArg::Inbound => Direction::Inbound,
        DirectionArg::Outbound => Direction::Outbound,
    };
    let (exchanges, diagnostics) = to_exchanges(&har, &options);
    for diagnostic in &diagnostics {
        eprintln!("{}: {diagnostic}", args.file.display());
    }
    if !diagnostics.is_empty() && !args.partial {
        bail!(
            "{} of {} entries cannot be imported (see above); fix them or pass --partial to import the other {}",
            diagnostics.len(),
            har.log.entries.len(),
            exchanges.len()
        );
    }
    if exchanges.is_empty() {
        bail!("{} holds no entries to import", args.file.display());
    }
    if let Some(collector) = &args.collector {
        push(collector, args.token.as_deref(), &exchanges).await?;
        eprintln!(
            "imported {} exchanges into the collector at {collector}",
            exchanges.len()
        );
    } else if let Some(data) = &args.data {
        let store = tapedeck_collector::store::open_store(data, args.store.as_deref())?;
        let files = tapedeck_collector::writer::write_exchanges(
            &store.store,
            tapedeck_collector::writer::random_writer_id(),
            &exchanges,
        )
        .await?;
        eprintln!(
            "imported {} exchanges into {} ({} files)",
            exchanges.len(),
            data.display(),
            files.len()
        );
    }
    Ok(if diagnostics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn push(
    collector: &str,
    token: Option<&str>,
    exchanges: &[tapedeck_proto::Exchange],
) -> Result<()> {
    let mut client = CaptureClient::connect(collector.to_string())
        .await
        .with_context(|| format!("connecting to the collector at {collector}"))?
        .max_encoding_message_size(usize::MAX);
    let bearer = token
        .map(|token| MetadataValue::try_from(format!("Bearer {token}")))
        .transpose()
        .context("the token cannot be sent as a header")?;
    for (sequence, chunk) in exchanges.chunks(PUSH_BATCH).enumerate() {
        let batch = ExchangeBatch {
            exchanges: chunk.to_vec(),
            filter_version: tapedeck_har::IMPORT_FILTER_VERSION.into(),
            sequence: sequence as u64 + 1,
            ..Default::default()
        };
        let mut request = tapedeck_proto::tonic::Request::new(batch);
        if let Some(bearer) = &bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        let ack = client.push(request).await.with_context(|| {
            format!("pushing batch {} ({} exchanges)", sequence + 1, chunk.len())
        })?;
        let accepted = ack.into_inner().accepted;
        if accepted != chunk.len() as u64 {
            bail!(
                "the collector accepted {accepted} of {} exchanges in batch {}",
                chunk.len(),
                sequence + 1
            );
        }
    }
    Ok(())
}
