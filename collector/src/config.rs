//! The collector's runtime knobs: CLI flags with `TAPEDECK_*` environment twins.
//!
//! [`CollectorArgs`] is flattened into `tapedeck collector` (and read by `tapedeck sql --data`
//! and `tapedeck import har --data` for the data directory and store).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The name of the write-ahead log folder inside `--data`.
pub const WAL_DIR: &str = "wal";
/// The name of the local Parquet store folder inside `--data` (when `--store` is not given).
pub const STORE_DIR: &str = "store";

const MIB: u64 = 1024 * 1024;

/// How to run the collector.
#[derive(Debug, Clone, clap::Args)]
pub struct CollectorArgs {
    /// Data directory: holds the write-ahead log (`wal/`) and, unless --store is given, the
    /// Parquet store (`store/`).
    #[arg(
        long,
        env = "TAPEDECK_DATA",
        value_name = "DIR",
        default_value = "./tapedeck-data"
    )]
    pub data: PathBuf,

    /// Address of the gRPC ingest endpoint (`tapedeck.capture.v1.Capture/Push`).
    #[arg(
        long,
        env = "TAPEDECK_GRPC_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9090"
    )]
    pub grpc_listen: SocketAddr,

    /// Address of the Arrow Flight SQL endpoint; off unless given.
    #[arg(long, env = "TAPEDECK_FLIGHT_LISTEN", value_name = "ADDR")]
    pub flight_listen: Option<SocketAddr>,

    /// Address of the HTTP endpoint serving /metrics (Prometheus), /healthz and /readyz.
    #[arg(
        long,
        env = "TAPEDECK_HTTP_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub http_listen: SocketAddr,

    /// Bearer token that pushes and Flight SQL queries must present
    /// (`authorization: Bearer <token>`); no authentication unless given.
    #[arg(
        long,
        env = "TAPEDECK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Where Parquet files go: `file:///absolute/path` or `s3://bucket/prefix` (S3 settings
    /// come from the usual AWS_* variables, AWS_ENDPOINT and AWS_ALLOW_HTTP included); DIR/store
    /// unless given.
    #[arg(long, env = "TAPEDECK_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Largest push accepted, in bytes (the encoded batch); larger ones are refused.
    #[arg(long, env = "TAPEDECK_MAX_PUSH_BYTES", value_name = "BYTES", default_value_t = 64 * MIB)]
    pub max_push_bytes: u64,

    /// Seconds between flushes of buffered exchanges to Parquet.
    #[arg(
        long,
        env = "TAPEDECK_FLUSH_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub flush_interval: u64,

    /// Buffered rows that trigger a flush before the interval is up (so does a quarter of
    /// --buffer-max-bytes).
    #[arg(
        long,
        env = "TAPEDECK_FLUSH_ROWS",
        value_name = "ROWS",
        default_value_t = 200_000
    )]
    pub flush_rows: usize,

    /// Codec of the Parquet pages a flush writes: `lz4` (LZ4_RAW: far less CPU per exchange,
    /// larger fresh files) or `zstd` (level 1). Compaction always rewrites closed hours with
    /// zstd, so data at rest is as compact either way.
    #[arg(
        long,
        env = "TAPEDECK_FLUSH_COMPRESSION",
        value_name = "CODEC",
        value_enum,
        default_value_t = crate::writer::FlushCompression::Lz4
    )]
    pub flush_compression: crate::writer::FlushCompression,

    /// Memory the buffer may hold, in bytes; above it pushes get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "TAPEDECK_BUFFER_MAX_BYTES",
        value_name = "BYTES",
        default_value_t = 512 * MIB
    )]
    pub buffer_max_bytes: u64,

    /// Free space the data directory's disk must keep, in bytes; below it pushes get
    /// RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "TAPEDECK_MIN_FREE_DISK",
        value_name = "BYTES",
        default_value_t = 512 * MIB
    )]
    pub min_free_disk: u64,

    /// How long exchanges are kept, counted from the end of their hour: `7d`, `36h`, `90m`;
    /// `0` keeps them forever.
    #[arg(
        long,
        env = "TAPEDECK_RETENTION",
        value_name = "DURATION",
        default_value = "7d"
    )]
    pub retention: Retention,

    /// A closed hour partition with at least this many files is merged into one file.
    #[arg(
        long,
        env = "TAPEDECK_COMPACT_MIN_FILES",
        value_name = "FILES",
        default_value_t = 8,
        value_parser = clap::value_parser!(u64).range(2..)
    )]
    pub compact_min_files: u64,

    /// Seconds between maintenance passes (retention, deletion of replaced files, compaction).
    #[arg(
        long,
        env = "TAPEDECK_COMPACT_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub compact_interval: u64,

    /// How long files that compaction replaced, or retention expired, stay readable before they
    /// are deleted: `5m`, `1h`. Must exceed the longest query of every reader of the store
    /// (this collector's own end at --query-timeout).
    #[arg(
        long,
        env = "TAPEDECK_GC_GRACE",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = humantime::parse_duration
    )]
    pub gc_grace: Duration,

    /// Query limits (Flight SQL and `tapedeck sql`).
    #[command(flatten)]
    pub query: crate::query::QueryArgs,
}

impl CollectorArgs {
    /// The write-ahead log folder, `DATA/wal`.
    pub fn wal_dir(&self) -> PathBuf {
        wal_dir(&self.data)
    }

    /// What makes a flush due before the interval: `--flush-rows` rows, or a quarter of
    /// `--buffer-max-bytes` buffered.
    pub fn flush_trigger(&self) -> crate::buffer::FlushTrigger {
        crate::buffer::FlushTrigger {
            rows: self.flush_rows,
            bytes: usize::try_from(self.buffer_max_bytes / 4).unwrap_or(usize::MAX),
        }
    }

    /// How maintenance runs.
    pub fn maintenance(&self) -> crate::writer::Maintenance {
        crate::writer::Maintenance {
            min_files: usize::try_from(self.compact_min_files).unwrap_or(usize::MAX),
            retention: self.retention.0,
            grace: self.gc_grace,
            lease: crate::writer::DEFAULT_LEASE,
        }
    }

    /// The flush interval.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval.max(1))
    }
}

impl Default for CollectorArgs {
    /// The defaults of every flag (what `tapedeck collector` runs with when given none).
    fn default() -> Self {
        Self {
            data: PathBuf::from("./tapedeck-data"),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            flight_listen: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: None,
            store: None,
            max_push_bytes: 64 * MIB,
            flush_interval: 10,
            flush_rows: 200_000,
            flush_compression: crate::writer::FlushCompression::Lz4,
            buffer_max_bytes: 512 * MIB,
            min_free_disk: 512 * MIB,
            retention: Retention(Some(Duration::from_secs(7 * 24 * 3600))),
            compact_min_files: 8,
            compact_interval: 60,
            gc_grace: Duration::from_secs(300),
            query: Default::default(),
        }
    }
}

/// The write-ahead log folder of a data directory.
pub fn wal_dir(data: &Path) -> PathBuf {
    data.join(WAL_DIR)
}

/// How long data is kept; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(None));
        }
        match humantime::parse_duration(text) {
            Ok(duration) if duration.is_zero() => Ok(Self(None)),
            Ok(duration) => Ok(Self(Some(duration))),
            Err(error) => Err(format!(
                "retention {text:?}: {error} (expected for example 7d, 36h or 0)"
            )),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("0"),
            Some(duration) => write!(f, "{}", humantime::format_duration(duration)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: CollectorArgs,
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let parsed = Cli::try_parse_from(["collector"]).unwrap().args;
        let defaults = CollectorArgs::default();
        assert_eq!(parsed.data, defaults.data);
        assert_eq!(parsed.grpc_listen, defaults.grpc_listen);
        assert_eq!(parsed.http_listen, defaults.http_listen);
        assert_eq!(parsed.flight_listen, None);
        assert_eq!(parsed.max_push_bytes, 64 * MIB);
        assert_eq!(parsed.flush_interval, 10);
        assert_eq!(parsed.flush_rows, 200_000);
        assert_eq!(parsed.flush_compression, defaults.flush_compression);
        assert_eq!(parsed.buffer_max_bytes, 512 * MIB);
        assert_eq!(parsed.min_free_disk, 512 * MIB);
        assert_eq!(parsed.retention, defaults.retention);
        assert_eq!(parsed.compact_min_files, 8);
        assert_eq!(parsed.compact_interval, defaults.compact_interval);
        assert_eq!(parsed.gc_grace, defaults.gc_grace);
        assert_eq!(parsed.wal_dir(), PathBuf::from("./tapedeck-data/wal"));
    }

    #[test]
    fn retention_reads_humane_durations() {
        let hours = |h: u64| Retention(Some(Duration::from_secs(h * 3600)));
        assert_eq!("7d".parse::<Retention>().unwrap(), hours(168));
        assert_eq!("36h".parse::<Retention>().unwrap(), hours(36));
        assert_eq!("0".parse::<Retention>().unwrap(), Retention(None));
        assert_eq!("0s".parse::<Retention>().unwrap(), Retention(None));
        let error = "seven days".parse::<Retention>().unwrap_err();
        assert!(error.starts_with("retention \"seven days\""), "{error}");
        assert_eq!(hours(36).to_string(), "1day 12h");
    }

    #[test]
    fn compaction_needs_at_least_two_files() {
        let error = Cli::try_parse_from(["collector", "--compact-min-files", "1"]).unwrap_err();
        assert!(error.to_string().contains("compact-min-files"), "{error}");
    }
}
