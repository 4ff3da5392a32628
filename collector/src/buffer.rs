//! Acknowledged exchanges that are not yet in Parquet, kept as Arrow batches per partition so
//! that queries see everything that was acknowledged.
//!
//! Exchanges enter the *open* set. A flush *seals* the open set: each partition's batches get
//! the [`FileName`] they will be written under and move to the sealed set; once the writer has
//! put that file, it removes the sealed entry. A query takes a [`Snapshot`] first and lists the
//! store second, and skips sealed entries whose file it found, so every exchange is seen exactly
//! once without a lock held across I/O:
//! - sealed entry removed before the snapshot → its file was put before, and the listing sees it;
//! - sealed entry in the snapshot and its file listed → the listed file wins;
//! - sealed entry in the snapshot, file not yet put → the buffered batches are used.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tapedeck_proto::Exchange;
use tapedeck_proto::arrow::{ExchangesBuilder, to_record_batch};
use tapedeck_proto::arrow_array::RecordBatch;
use tapedeck_proto::arrow_schema::ArrowError;
use tapedeck_proto::wire::ExchangeRef;

use crate::layout::{FileName, HOUR_NANOS, PartitionKey};

/// Batches of one partition, sealed for one file.
#[derive(Debug)]
pub struct Sealed {
    /// The partition.
    pub partition: PartitionKey,
    /// The file they will be written as.
    pub file: FileName,
    /// The data, in arrival order.
    pub batches: Vec<RecordBatch>,
    /// Rows in `batches`.
    pub rows: usize,
}

/// Exchanges converted to Arrow batches by partition, not yet in the buffer.
#[derive(Debug)]
pub struct Prepared(Vec<(PartitionKey, RecordBatch)>);

impl Prepared {
    /// The batches, one per partition, in partition order.
    pub fn batches(&self) -> &[(PartitionKey, RecordBatch)] {
        &self.0
    }
}

/// The rows of a received batch by partition, built while the batch is checked: each valid
/// exchange goes straight from the received bytes into its partition's Arrow builder
/// ([`Placement::place`] per exchange, in order), in the one pass that decodes and checks it.
/// Groups as [`crate::layout::group_by_partition`] does: partitions in key order
/// ([`Placement::finish`]), arrival order within.
#[derive(Debug, Default)]
pub struct Placement {
    /// The partitions seen, with their rows so far.
    partitions: Vec<(PartitionKey, ExchangesBuilder)>,
    /// The workload and hour bucket of the last exchange placed, and its slot: consecutive
    /// exchanges of one workload and hour skip building their key.
    last: Option<(String, u64, usize)>,
    /// Exchanges placed.
    rows: usize,
    /// Room each new partition's builder starts with.
    capacity: usize,
    /// The first exchange a builder refused (none does for a checked exchange).
    error: Option<ArrowError>,
}

impl Placement {
    /// A placement for a batch of `exchanges` exchanges. The first partition's builder has
    /// room for all of them; each later one for the exchanges not yet placed.
    pub fn with_capacity(exchanges: usize) -> Self {
        Self {
            capacity: exchanges,
            ..Self::default()
        }
    }

    /// Appends the next exchange (checked already) to its partition's rows.
    pub fn place(&mut self, exchange: &ExchangeRef<'_>) {
        let bucket = exchange.start_unix_nanos / HOUR_NANOS;
        let slot = match &self.last {
            Some((workload, hour, slot)) if *hour == bucket && workload == exchange.workload => {
                *slot
            }
            _ => {
                let key = PartitionKey::of_parts(exchange.workload, exchange.start_unix_nanos);
                let slot = match self.partitions.iter().position(|(k, _)| *k == key) {
                    Some(slot) => slot,
                    None => {
                        let rows = ExchangesBuilder::with_capacity(
                            self.capacity.saturating_sub(self.rows),
                        );
                        self.partitions.push((key, rows));
                        self.partitions.len() - 1
                    }
                };
                let mut workload = self.last.take().map(|(w, _, _)| w).unwrap_or_default();
                workload.clear();
                workload.push_str(exchange.workload);
                self.last = Some((workload, bucket, slot));
                slot
            }
        };
        self.rows += 1;
        if let Err(error) = self.partitions[slot].1.append(exchange)
            && self.error.is_none()
        {
            self.error = Some(error);
        }
    }

    /// The rows by partition, partitions in key order, for [`Buffer::insert_prepared`].
    pub fn finish(self) -> Result<Prepared, ArrowError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let mut partitions = self.partitions;
        partitions.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut converted = Vec::with_capacity(partitions.len());
        for (key, rows) in partitions {
            converted.push((key, rows.finish()?));
        }
        Ok(Prepared(converted))
    }
}

/// What a query reads from the buffer.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Open batches by partition.
    pub open: Vec<(PartitionKey, RecordBatch)>,
    /// Sealed batches whose files may or may not be in the store yet.
    pub sealed: Vec<Arc<Sealed>>,
}

/// When the open set is due for a flush before the interval is up: at `rows` rows, or at
/// `bytes` bytes (so that large exchanges flush well before the buffer's limit refuses pushes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushTrigger {
    /// Open rows that make a flush due.
    pub rows: usize,
    /// Open bytes that make a flush due.
    pub bytes: usize,
}

impl FlushTrigger {
    /// Whether `buffer` is due for a flush.
    pub fn due(&self, buffer: &Buffer) -> bool {
        let inner = buffer
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.open_rows >= self.rows || inner.open_bytes >= self.bytes
    }
}

#[derive(Debug, Default)]
struct Inner {
    open: BTreeMap<PartitionKey, Vec<RecordBatch>>,
    open_rows: usize,
    open_bytes: usize,
    sealed: Vec<Arc<Sealed>>,
    bytes: usize,
}

/// The buffer. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Buffer {
    inner: RwLock<Inner>,
}

impl Buffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds exchanges (already durable in the WAL), grouped by partition.
    pub fn insert(&self, exchanges: &[Exchange]) -> Result<(), ArrowError> {
        self.insert_prepared(Self::prepare(exchanges)?);
        Ok(())
    }

    /// Converts exchanges to Arrow, grouped by partition, for [`Buffer::insert_prepared`]: the
    /// work of an insert that needs no lock, so it can run while the log syncs the batch.
    pub fn prepare(exchanges: &[Exchange]) -> Result<Prepared, ArrowError> {
        let groups = crate::layout::group_by_partition(exchanges);
        let mut converted = Vec::with_capacity(groups.len());
        for (key, group) in groups {
            converted.push((key, to_record_batch(&group)?));
        }
        Ok(Prepared(converted))
    }

    /// Adds exchanges converted by [`Buffer::prepare`] (already durable in the WAL).
    pub fn insert_prepared(&self, Prepared(converted): Prepared) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, batch) in converted {
            let bytes = batch.get_array_memory_size();
            inner.open_rows += batch.num_rows();
            inner.open_bytes += bytes;
            inner.bytes += bytes;
            inner.open.entry(key).or_default().push(batch);
        }
    }

    /// Bytes held (open and sealed).
    pub fn bytes(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .bytes
    }

    /// Rows in the open set.
    pub fn open_rows(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .open_rows
    }

    /// Seals the open set: one entry per partition, named by `name` (called once per partition,
    /// in partition order). Returns the new sealed entries.
    pub fn seal(&self, mut name: impl FnMut(&PartitionKey) -> FileName) -> Vec<Arc<Sealed>> {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = std::mem::take(&mut inner.open);
        inner.open_rows = 0;
        inner.open_bytes = 0;
        let mut sealed = Vec::with_capacity(open.len());
        for (partition, batches) in open {
            let rows = batches.iter().map(RecordBatch::num_rows).sum();
            let file = name(&partition);
            let entry = Arc::new(Sealed {
                partition,
                file,
                batches,
                rows,
            });
            inner.sealed.push(entry.clone());
            sealed.push(entry);
        }
        sealed
    }

    /// Forgets a sealed entry once its file is in the store.
    pub fn remove_sealed(&self, file: &FileName) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(position) = inner.sealed.iter().position(|entry| entry.file == *file) {
            let entry = inner.sealed.remove(position);
            let bytes: usize = entry
                .batches
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum();
            inner.bytes = inner.bytes.saturating_sub(bytes);
        }
    }

    /// What a query reads. Take it before listing the store (see the module docs).
    pub fn snapshot(&self) -> Snapshot {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = inner
            .open
            .iter()
            .flat_map(|(key, batches)| {
                batches
                    .iter()
                    .map(move |batch| (key.clone(), batch.clone()))
            })
            .collect();
        Snapshot {
            open,
            sealed: inner.sealed.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(workload: &str, hour: u64) -> Exchange {
        Exchange {
            workload: workload.into(),
            start_unix_nanos: hour * 3_600_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn insert_seal_remove() {
        let buffer = Buffer::new();
        buffer
            .insert(&[
                exchange("a", 1),
                exchange("b", 1),
                exchange("a", 2),
                exchange("a", 1),
            ])
            .unwrap();
        assert_eq!(buffer.open_rows(), 4);
        assert!(buffer.bytes() > 0);
        let snapshot = buffer.snapshot();
        assert_eq!(snapshot.open.len(), 3);
        let mut sequence = 0;
        let sealed = buffer.seal(|_| {
            sequence += 1;
            FileName::flushed(1, sequence)
        });
        assert_eq!(
            sealed
                .iter()
                .map(|s| (s.partition.to_string(), s.rows))
                .collect::<Vec<_>>(),
            [
                ("service=a/date=1970-01-01/hour=01".to_string(), 2),
                ("service=a/date=1970-01-01/hour=02".to_string(), 1),
                ("service=b/date=1970-01-01/hour=01".to_string(), 1),
            ]
        );
        assert_eq!(buffer.open_rows(), 0);
        let snapshot = buffer.snapshot();
        assert!(snapshot.open.is_empty());
        assert_eq!(snapshot.sealed.len(), 3);
        for entry in &sealed {
            buffer.remove_sealed(&entry.file);
        }
        assert!(buffer.snapshot().sealed.is_empty());
        assert_eq!(buffer.bytes(), 0);
    }
}
