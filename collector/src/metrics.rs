//! The collector's Prometheus metrics: every name is a constant here, and [`Metrics`] holds the
//! handles the other modules update.
//!
//! The exposition is OpenMetrics text (`prometheus-client`): counters get a `_total` suffix
//! there, so `tapedeck_collector_batches_received` is scraped as
//! `tapedeck_collector_batches_received_total`.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Batches pushed and accepted.
pub const BATCHES_RECEIVED: &str = "tapedeck_collector_batches_received";
/// Batches refused, by `reason` (`unauthenticated`, `invalid`, `malformed`, `too_large`,
/// `buffer_full`, `disk_full`, `wal`, `shutting_down`, `internal`).
pub const BATCHES_REJECTED: &str = "tapedeck_collector_batches_rejected";
/// Exchanges accepted.
pub const EXCHANGES_RECEIVED: &str = "tapedeck_collector_exchanges_received";
/// Encoded bytes of accepted batches.
pub const BYTES_RECEIVED: &str = "tapedeck_collector_received_bytes";
/// Exchanges the filters reported dropped (`dropped_since_last` of each batch).
pub const FILTER_DROPPED_EXCHANGES: &str = "tapedeck_collector_filter_dropped_exchanges";
/// Batches that never arrived, from gaps in the filters' batch sequence numbers.
pub const BATCHES_LOST: &str = "tapedeck_collector_batches_lost";
/// Filter VMs that started while this collector ran, by `workload` and `namespace`: a new VM id
/// in the push metadata whose start is not before the collector's. A proxy restart, or a
/// `FAIL_RELOAD` reload after a VM crashed, steps it.
pub const FILTER_VM_STARTS: &str = "tapedeck_collector_filter_vm_starts";
/// When a filter of the `workload` (in `namespace`) last pushed, Unix seconds: every VM pushes at
/// least every `queue.heartbeat_interval_ms` (10 s unless set), so a gauge that stops advancing
/// is a workload whose filter VMs stopped (a VM that died under `FAIL_OPEN`).
pub const FILTER_LAST_PUSH_SECONDS: &str = "tapedeck_collector_filter_last_push_timestamp_seconds";
/// fsyncs of the write-ahead log.
pub const WAL_FSYNCS: &str = "tapedeck_collector_wal_fsyncs";
/// Time one write-ahead log write + fsync took.
pub const WAL_FSYNC_SECONDS: &str = "tapedeck_collector_wal_fsync_seconds";
/// Records written per fsync (group commit size).
pub const WAL_GROUP_SIZE: &str = "tapedeck_collector_wal_group_size";
/// Bytes appended to the write-ahead log.
pub const WAL_BYTES: &str = "tapedeck_collector_wal_bytes";
/// Write-ahead log segments started in a spare file (written over, not grown).
pub const WAL_SEGMENTS_REUSED: &str = "tapedeck_collector_wal_segments_reused";
/// Bytes held by the buffer (not yet in Parquet).
pub const BUFFER_BYTES: &str = "tapedeck_collector_buffer_bytes";
/// Rows in the buffer's open set.
pub const BUFFER_ROWS: &str = "tapedeck_collector_buffer_rows";
/// Parquet files written (flushes and compactions).
pub const PARQUET_FILES_WRITTEN: &str = "tapedeck_collector_parquet_files_written";
/// Bytes of Parquet files written.
pub const PARQUET_BYTES_WRITTEN: &str = "tapedeck_collector_parquet_written_bytes";
/// Rows flushed from the buffer to Parquet.
pub const ROWS_FLUSHED: &str = "tapedeck_collector_rows_flushed";
/// Time one flush took (seal, write every file, drop the log).
pub const FLUSH_SECONDS: &str = "tapedeck_collector_flush_seconds";
/// Flushes running now (the flush loop keeps up to `writer::FLUSHES_IN_FLIGHT`).
pub const FLUSHES_IN_FLIGHT: &str = "tapedeck_collector_flushes_in_flight";
/// Store writes that failed and will be retried.
pub const STORE_RETRIES: &str = "tapedeck_collector_store_retries";
/// Partitions compacted.
pub const COMPACTIONS: &str = "tapedeck_collector_compactions";
/// Files removed by compaction (replaced by the merged file).
pub const COMPACTED_FILES: &str = "tapedeck_collector_compacted_files";
/// Files deleted because they were older than `--retention`.
pub const RETENTION_DELETED_FILES: &str = "tapedeck_collector_retention_deleted_files";
/// Queries run, by `outcome` (`ok`, `error`).
pub const QUERIES: &str = "tapedeck_collector_queries";
/// Time one query took.
pub const QUERY_SECONDS: &str = "tapedeck_collector_query_seconds";

type Labels = [(&'static str, &'static str); 1];
/// `workload` and `namespace` of a filter.
type WorkloadLabels = Vec<(String, String)>;

/// The collector's metric handles. Share it behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// [`BATCHES_RECEIVED`].
    pub batches_received: Counter,
    batches_rejected: Family<Labels, Counter>,
    /// [`EXCHANGES_RECEIVED`].
    pub exchanges_received: Counter,
    /// [`BYTES_RECEIVED`].
    pub bytes_received: Counter,
    /// [`FILTER_DROPPED_EXCHANGES`].
    pub filter_dropped_exchanges: Counter,
    /// [`BATCHES_LOST`].
    pub batches_lost: Counter,
    filter_vm_starts: Family<WorkloadLabels, Counter>,
    filter_last_push: Family<WorkloadLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// [`WAL_FSYNCS`].
    pub wal_fsyncs: Counter,
    /// [`WAL_FSYNC_SECONDS`].
    pub wal_fsync_seconds: Histogram,
    /// [`WAL_GROUP_SIZE`].
    pub wal_group_size: Histogram,
    /// [`WAL_BYTES`].
    pub wal_bytes: Counter,
    /// [`WAL_SEGMENTS_REUSED`].
    pub wal_segments_reused: Counter,
    /// [`BUFFER_BYTES`].
    pub buffer_bytes: Gauge,
    /// [`BUFFER_ROWS`].
    pub buffer_rows: Gauge,
    /// [`PARQUET_FILES_WRITTEN`].
    pub parquet_files_written: Counter,
    /// [`PARQUET_BYTES_WRITTEN`].
    pub parquet_bytes_written: Counter,
    /// [`ROWS_FLUSHED`].
    pub rows_flushed: Counter,
    /// [`FLUSH_SECONDS`].
    pub flush_seconds: Histogram,
    /// [`FLUSHES_IN_FLIGHT`].
    pub flushes_in_flight: Gauge,
    /// [`STORE_RETRIES`].
    pub store_retries: Counter,
    /// [`COMPACTIONS`].
    pub compactions: Counter,
    /// [`COMPACTED_FILES`].
    pub compacted_files: Counter,
    /// [`RETENTION_DELETED_FILES`].
    pub retention_deleted_files: Counter,
    queries: Family<[(&'static str, &'static str); 1], Counter>,
    query_seconds: Histogram,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 100 µs to about 52 s.
    exponential_buckets(0.000_1, 2.0, 20)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let batches_received = counter(BATCHES_RECEIVED, "Batches pushed and accepted.");
        let exchanges_received = counter(EXCHANGES_RECEIVED, "Exchanges accepted.");
        let bytes_received = counter(BYTES_RECEIVED, "Encoded bytes of accepted batches.");
        let filter_dropped_exchanges = counter(
            FILTER_DROPPED_EXCHANGES,
            "Exchanges the filters reported dropped before sending.",
        );
        let batches_lost = counter(
            BATCHES_LOST,
            "Batches missing from the filters' sequence numbers.",
        );
        let wal_fsyncs = counter(WAL_FSYNCS, "fsyncs of the write-ahead log.");
        let wal_bytes = counter(WAL_BYTES, "Bytes appended to the write-ahead log.");
        let wal_segments_reused = counter(
            WAL_SEGMENTS_REUSED,
            "Write-ahead log segments started in a spare file (written over, not grown).",
        );
        let parquet_files_written = counter(PARQUET_FILES_WRITTEN, "Parquet files written.");
        let parquet_bytes_written =
            counter(PARQUET_BYTES_WRITTEN, "Bytes of Parquet files written.");
        let rows_flushed = counter(ROWS_FLUSHED, "Rows flushed from the buffer to Parquet.");
        let store_retries = counter(STORE_RETRIES, "Store writes that failed and are retried.");
        let compactions = counter(COMPACTIONS, "Partitions compacted.");
        let compacted_files = counter(COMPACTED_FILES, "Files replaced by compaction.");
        let retention_deleted_files = counter(
            RETENTION_DELETED_FILES,
            "Files deleted because they were older than the retention.",
        );
        let batches_rejected = Family::<Labels, Counter>::default();
        registry.register(
            BATCHES_REJECTED,
            "Batches refused, by reason.",
            batches_rejected.clone(),
        );
        let queries = Family::<Labels, Counter>::default();
        registry.register(QUERIES, "Queries run, by outcome.", queries.clone());
        let filter_vm_starts = Family::<WorkloadLabels, Counter>::default();
        registry.register(
            FILTER_VM_STARTS,
            "Filter VMs that started while the collector ran, by workload.",
            filter_vm_starts.clone(),
        );
        let filter_last_push = Family::default();
        registry.register(
            FILTER_LAST_PUSH_SECONDS,
            "When a filter of the workload last pushed, Unix seconds.",
            filter_last_push.clone(),
        );
        let mut histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let histogram = Histogram::new(buckets);
            registry.register(name, help, histogram.clone());
            histogram
        };
        let wal_fsync_seconds = histogram(
            WAL_FSYNC_SECONDS,
            "Time of one write-ahead log write and fsync.",
            seconds_buckets().collect(),
        );
        let wal_group_size = histogram(
            WAL_GROUP_SIZE,
            "Records written per write-ahead log fsync.",
            exponential_buckets(1.0, 2.0, 14).collect(),
        );
        let flush_seconds = histogram(
            FLUSH_SECONDS,
            "Time of one flush of the buffer to Parquet.",
            seconds_buckets().collect(),
        );
        let query_seconds = histogram(
            QUERY_SECONDS,
            "Time of one query.",
            seconds_buckets().collect(),
        );
        let buffer_bytes = Gauge::default();
        registry.register(
            BUFFER_BYTES,
            "Bytes held by the buffer.",
            buffer_bytes.clone(),
        );
        let buffer_rows = Gauge::default();
        registry.register(
            BUFFER_ROWS,
            "Rows in the buffer's open set.",
            buffer_rows.clone(),
        );
        let flushes_in_flight = Gauge::default();
        registry.register(
            FLUSHES_IN_FLIGHT,
            "Flushes of the buffer to Parquet running now.",
            flushes_in_flight.clone(),
        );
        Self {
            registry,
            batches_received,
            batches_rejected,
            exchanges_received,
            bytes_received,
            filter_dropped_exchanges,
            batches_lost,
            filter_vm_starts,
            filter_last_push,
            wal_fsyncs,
            wal_fsync_seconds,
            wal_group_size,
            wal_bytes,
            wal_segments_reused,
            buffer_bytes,
            buffer_rows,
            parquet_files_written,
            parquet_bytes_written,
            rows_flushed,
            flush_seconds,
            flushes_in_flight,
            store_retries,
            compactions,
            compacted_files,
            retention_deleted_files,
            queries,
            query_seconds,
        }
    }

    /// Counts a refused push under `reason` (see [`crate::Error::reason`]).
    pub fn batch_rejected(&self, reason: &'static str) {
        self.batches_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// How many pushes were refused for `reason`.
    pub fn batches_rejected(&self, reason: &'static str) -> u64 {
        self.batches_rejected
            .get(&[("reason", reason)])
            .map_or(0, |counter| counter.get())
    }

    /// Counts a filter VM start of `workload` in `namespace` ([`FILTER_VM_STARTS`]).
    pub fn filter_vm_started(&self, workload: &str, namespace: &str) {
        self.filter_vm_starts
            .get_or_create(&workload_labels(workload, namespace))
            .inc();
    }

    /// Filter VM starts of `workload` in `namespace` seen so far.
    pub fn filter_vm_starts(&self, workload: &str, namespace: &str) -> u64 {
        self.filter_vm_starts
            .get(&workload_labels(workload, namespace))
            .map_or(0, |counter| counter.get())
    }

    /// Records a push from a filter of `workload` in `namespace` at `unix_seconds`
    /// ([`FILTER_LAST_PUSH_SECONDS`]).
    pub fn filter_pushed(&self, workload: &str, namespace: &str, unix_seconds: f64) {
        self.filter_last_push
            .get_or_create(&workload_labels(workload, namespace))
            .set(unix_seconds);
    }

    /// Records one finished query (Flight SQL or `tapedeck sql`).
    pub fn query_finished(&self, duration: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.queries.get_or_create(&[("outcome", outcome)]).inc();
        self.query_seconds.observe(duration.as_secs_f64());
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn workload_labels(workload: &str, namespace: &str) -> WorkloadLabels {
    vec![
        ("workload".to_string(), workload.to_string()),
        ("namespace".to_string(), namespace.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let metrics = Metrics::new();
        metrics.batch_rejected("invalid");
        metrics.query_finished(Duration::from_millis(3), true);
        metrics.wal_fsyncs.inc();
        let text = metrics.encode();
        for name in [
            BATCHES_RECEIVED,
            EXCHANGES_RECEIVED,
            BYTES_RECEIVED,
            FILTER_DROPPED_EXCHANGES,
            BATCHES_LOST,
            WAL_FSYNCS,
            WAL_BYTES,
            PARQUET_FILES_WRITTEN,
            PARQUET_BYTES_WRITTEN,
            ROWS_FLUSHED,
            STORE_RETRIES,
            COMPACTIONS,
            COMPACTED_FILES,
            RETENTION_DELETED_FILES,
        ] {
            assert!(text.contains(&format!("{name}_total ")), "{name}: {text}");
        }
        for name in [
            WAL_FSYNC_SECONDS,
            WAL_GROUP_SIZE,
            FLUSH_SECONDS,
            QUERY_SECONDS,
        ] {
            assert!(text.contains(&format!("{name}_count ")), "{name}: {text}");
        }
        assert!(text.contains(&format!("{BUFFER_BYTES} 0")), "{text}");
        assert!(text.contains(&format!("{BUFFER_ROWS} 0")), "{text}");
        assert!(text.contains(&format!("{FLUSHES_IN_FLIGHT} 0")), "{text}");
        assert!(text.contains(&format!("{BATCHES_REJECTED}_total{{reason=\"invalid\"}} 1")));
        assert!(text.contains(&format!("{QUERIES}_total{{outcome=\"ok\"}} 1")));
        assert_eq!(metrics.batches_rejected("invalid"), 1);
        assert_eq!(metrics.batches_rejected("buffer_full"), 0);
    }
}
