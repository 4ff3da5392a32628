//! Where `tapedeck snapshot create` and `tapedeck inventory` read exchanges from: a running
//! collector (Flight SQL) or the data directory of a stopped one.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use tapedeck_analyzer::Cut;
use tapedeck_analyzer::cut::CutError;
use tapedeck_collector::query::QueryArgs;
use tapedeck_proto::arrow_array::RecordBatch;

/// Which exchanges: one service, a window and a predicate (`tapedeck snapshot create`,
/// `tapedeck inventory`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CutArgs {
    /// The service: the workload whose sidecar captured the exchanges.
    #[arg(long, env = "TAPEDECK_SERVICE", value_name = "NAME")]
    pub(crate) service: String,

    /// Start of the window, inclusive: an RFC 3339 time (2026-11-27T13:00:00Z), a duration ago
    /// (30m, 2h, 7d) or `now`. By default, the earliest stored exchange.
    #[arg(long, env = "TAPEDECK_FROM", value_name = "TIME")]
    pub(crate) from: Option<String>,

    /// End of the window, exclusive, in the same forms as --from. By default, no end.
    #[arg(long, env = "TAPEDECK_TO", value_name = "TIME")]
    pub(crate) to: Option<String>,

    /// A SQL predicate over the `exchanges` columns, ANDed to the window, for example
    /// "status < 500 AND path NOT LIKE '/healthz%'" or "authority LIKE 'payments%'".
    #[arg(long = "where", env = "TAPEDECK_WHERE", value_name = "SQL")]
    pub(crate) predicate: Option<String>,
}

impl CutArgs {
    /// The cut, with relative times resolved against now; the error names the flag.
    pub(crate) fn cut(&self) -> Result<Cut, CutError> {
        Cut::new(
            &self.service,
            self.from.as_deref(),
            self.to.as_deref(),
            self.predicate.as_deref(),
            now_nanos(),
        )
    }
}

/// The store to read.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SourceArgs {
    /// Flight SQL address of a running collector (`http://host:port`); its query limits apply
    /// (raise its --query-max-rows for large cuts). Without it, --data and --store are read
    /// directly.
    #[arg(long, env = "TAPEDECK_COLLECTOR", value_name = "URL")]
    pub(crate) collector: Option<String>,

    /// Bearer token for --collector (the collector's --token).
    #[arg(
        long,
        env = "TAPEDECK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        requires = "collector"
    )]
    pub(crate) token: Option<String>,

    /// Data directory of a stopped collector: its write-ahead log (`wal/`) and, unless --store is
    /// given, its Parquet store (`store/`).
    #[arg(
        long,
        env = "TAPEDECK_DATA",
        value_name = "DIR",
        default_value = "./tapedeck-data",
        conflicts_with = "collector"
    )]
    pub(crate) data: PathBuf,

    /// Where the Parquet files are, when not in DIR/store: `file:///absolute/path` or
    /// `s3://bucket/prefix`.
    #[arg(
        long,
        env = "TAPEDECK_STORE",
        value_name = "URL",
        conflicts_with = "collector"
    )]
    pub(crate) store: Option<String>,

    /// Seconds the query may take when it runs here (with --collector, the collector's limit
    /// applies).
    #[arg(
        long,
        env = "TAPEDECK_QUERY_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 3600,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) query_timeout: u64,
}

impl SourceArgs {
    /// Where the rows come from, for messages.
    pub(crate) fn describe(&self) -> String {
        match (&self.collector, &self.store) {
            (Some(collector), _) => format!("the collector at {collector}"),
            (None, Some(store)) => store.clone(),
            (None, None) => self.data.display().to_string(),
        }
    }

    /// A problem with the arguments that is better reported before querying: reading offline
    /// creates `DIR/store`, so a mistyped --data would otherwise make an empty store and report
    /// "no exchanges".
    pub(crate) fn problem(&self) -> Option<String> {
        (self.collector.is_none() && self.store.is_none() && !self.data.is_dir()).then(|| {
            format!(
                "the data directory {} does not exist (pass --data DIR or --collector URL)",
                self.data.display()
            )
        })
    }

    /// Runs one read-only statement and hands each record batch to `each` as it arrives, so a
    /// caller that converts and drops batches never holds the whole result twice. Offline the
    /// batches stream from the engine; through a collector they arrive together.
    pub(crate) async fn query_each(
        &self,
        sql: &str,
        mut each: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        if self.collector.is_some() {
            for batch in self.query(sql).await? {
                each(batch)?;
            }
            return Ok(());
        }
        let engine = self.offline_engine().await?;
        let mut stream = engine
            .sql_stream(sql)
            .await
            .with_context(|| format!("querying {}", self.describe()))?;
        while let Some(batch) = stream.next().await {
            each(batch.with_context(|| format!("querying {}", self.describe()))?)?;
        }
        Ok(())
    }

    async fn offline_engine(&self) -> Result<tapedeck_collector::query::QueryEngine> {
        let limits = QueryArgs {
            timeout: self.query_timeout,
            memory: u64::MAX / 2,
            max_rows: 0,
            concurrency: 1,
        };
        tapedeck_collector::query::open_offline(&self.data, self.store.as_deref(), &limits)
            .await
            .with_context(|| format!("opening {}", self.describe()))
    }

    /// Runs one read-only statement and returns every row. Offline, there is no row limit (a
    /// snapshot wants all of its rows) and no memory limit beyond the machine's: the statements
    /// the analyzer sends neither sort nor join.
    pub(crate) async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        match &self.collector {
            Some(address) => {
                let (_, batches) =
                    tapedeck_collector::flight::query_remote(address, self.token.as_deref(), sql)
                        .await
                        .with_context(|| format!("querying the collector at {address}"))?;
                Ok(batches)
            }
            None => {
                let engine = self.offline_engine().await?;
                let (_, batches) = engine
                    .sql(sql)
                    .await
                    .with_context(|| format!("querying {}", self.describe()))?;
                Ok(batches)
            }
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (resolves relative `--from` / `--to`).
pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
