//! Moves buffered exchanges into Parquet files, and keeps the store tidy.
//!
//! # Flush
//!
//! [`Flusher::flush`] takes the ingest gate exclusively for two quick steps, rotating the
//! write-ahead log and sealing the buffer, so that the sealed data is exactly the data of the
//! closed segments. Without the gate it then, in order:
//! 1. records a flush intent in the log folder ([`crate::wal::FlushIntent`]: the closed segments
//!    and the exact path of every file the flush will write), durably;
//! 2. writes one Parquet file per partition ([`write_partition`]; pages compressed with
//!    `--flush-compression`, LZ4 unless set: compaction rewrites them with zstd), makes it durable
//!    ([`StoreHandle::sync`]: fsync of the file and its folders on a local store, where
//!    `object_store` itself does not), and forgets each sealed entry once its file is in the
//!    store;
//! 3. once every file of the flush is written, deletes the closed segments;
//! 4. deletes the intent.
//!
//! A crash at any point leaves the log folder and the store in a state that
//! [`crate::wal::resolve_intents`] settles on the next start (see [`crate::wal`]): a complete
//! flush is not replayed, a partial one has its files deleted and is replayed. Either way every
//! acknowledged exchange ends up in the store exactly once.
//!
//! A file that cannot be written is retried with backoff, now and on later flushes, under the
//! same name, so the intent always lists what is actually written; until then its data stays in
//! the buffer (queries see it) and in the log (a restart replays it). One call of
//! [`Flusher::flush`] writes the flushes it takes in order, and stops at the first that cannot
//! be finished: a later flush does not record its intent or put a file before an earlier one of
//! the same call is written. Calls may overlap ([`Flusher::run`] keeps up to
//! [`FLUSHES_IN_FLIGHT`]), each writing other flushes, so flushes may finish out of order; each
//! has its own segments and intent, which [`crate::wal::resolve_intents`] settles one by one.
//! Segments are only ever deleted up to the last flush whose files, and every earlier flush's,
//! are all in the store.
//! Files of a flush whose intent is recorded are pinned ([`PinnedFiles`]): compaction leaves
//! them alone, since merging one away would make its intent look cut short.
//!
//! # Compaction and retention
//!
//! [`compact`] merges the files of every partition whose hour is over and that has at least
//! `--compact-min-files` files into one new file, under the partition's lease, and commits the
//! swap in the partition's manifest; the old files are deleted `--gc-grace` later. A query sees
//! each row exactly once at every moment of it ([`crate::manifest`] has the protocol).
//! [`apply_retention`] expires the partitions whose hour ended more than `--retention` ago and
//! deletes their files.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use tapedeck_proto::Exchange;
use tapedeck_proto::arrow::{schema, to_record_batch};
use tapedeck_proto::arrow_array::RecordBatch;
use tokio::sync::{Notify, RwLock, watch};

use crate::buffer::{Buffer, Sealed};
use crate::error::{Error, Result};
use crate::layout::{FileName, PartitionKey, TABLE_DIR};
use crate::manifest::{self, Commit, Lease, PartitionListing, PartitionState, StateCache};
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use crate::wal::{FlushIntent, Wal};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// The zstd level of Parquet pages. Level 1, not 3: on 2 cores level 3 made Parquet writing
/// the limit of sustained ingest (about 65 000 against 89 000 exchanges/s, BENCHMARKS.md), and
/// on the benchmark's dataset it did not even make the files smaller (1.58 against 1.45 GB).
pub const ZSTD_LEVEL: i32 = 1;
/// Attempts to write one file within one flush before leaving it to the next flush.
pub const WRITE_ATTEMPTS: u32 = 3;
/// The wait before the first retry of a failed write; it doubles per attempt.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// Flushes the flush loop ([`Flusher::run`]) keeps in flight at once: while one writes (or
/// waits on the store), the next encodes, so one collector keeps both cores busy when its
/// buffer fills (BENCHMARKS.md, ingest, ninth pass).
pub const FLUSHES_IN_FLIGHT: usize = 2;
/// How often compaction and retention run.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

const HOUR_NANOS: i64 = 3_600 * 1_000_000_000;

/// A random writer id: 64 bits from the process's random hasher keys, the process id and the
/// clock, so that collectors sharing a bucket do not collide.
pub fn random_writer_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos))
}

/// Names the files of one writer: its id and a counter.
#[derive(Debug)]
pub struct FileNamer {
    writer: u64,
    next: AtomicU64,
}

impl FileNamer {
    /// A namer for `writer`, counting from `first`.
    pub fn new(writer: u64, first: u64) -> Self {
        Self {
            writer,
            next: AtomicU64::new(first),
        }
    }

    /// The writer id.
    pub fn writer(&self) -> u64 {
        self.writer
    }

    /// The next file name.
    pub fn next_name(&self) -> FileName {
        FileName::flushed(self.writer, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The next name of a compaction output.
    pub fn next_compacted_name(&self) -> FileName {
        FileName {
            compacted: true,
            ..self.next_name()
        }
    }
}

/// How a flush compresses the Parquet pages of the files it writes. Compaction always writes
/// zstd ([`ZSTD_LEVEL`]), so data at rest ends up as compact either way once its hour is
/// compacted (an hour with fewer than `--compact-min-files` files stays as flushed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FlushCompression {
    /// `LZ4_RAW`: much less CPU per page than zstd, larger fresh files.
    #[default]
    Lz4,
    /// zstd at [`ZSTD_LEVEL`], as compaction writes.
    Zstd,
}

impl FlushCompression {
    /// The Parquet codec.
    pub fn codec(self) -> Compression {
        match self {
            Self::Lz4 => Compression::LZ4_RAW,
            Self::Zstd => zstd(),
        }
    }
}

/// zstd at [`ZSTD_LEVEL`]: what compaction writes.
fn zstd() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("1 is a valid zstd level"))
}

fn writer_properties(compression: Compression) -> WriterProperties {
    use tapedeck_proto::arrow::columns;
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        // Data pages v2: a page's values are compressed straight from the encoder's buffer,
        // where v1 first copies them behind the levels into a buffer of their own, compresses
        // into a third one and copies that again to shrink it; two fewer copies of every body
        // byte per flush (BENCHMARKS.md, ingest, ninth pass). Values keep v1's encodings
        // (plain, or dictionary where enabled): v2's own defaults (DELTA_*) cost CPU per value.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    // Ids and bodies are (nearly) all distinct: a dictionary only costs hashing there, and zstd
    // compresses them anyway.
    for column in [columns::ID, columns::REQUEST_BODY, columns::RESPONSE_BODY] {
        builder = builder.set_column_dictionary_enabled(column.into(), false);
    }
    for path in UNPRUNED.iter() {
        builder = builder.set_column_statistics_enabled(path.clone(), EnabledStatistics::None);
    }
    builder.build()
}

/// The leaf columns no query prunes by (random ids, bodies, header fields): their min and max
/// only cost comparisons for every value written, so none are kept.
static UNPRUNED: std::sync::LazyLock<Vec<parquet::schema::types::ColumnPath>> =
    std::sync::LazyLock::new(|| {
        use tapedeck_proto::arrow::columns;
        let unpruned = [
            columns::ID,
            columns::TRACE_ID,
            columns::REQUEST_BODY,
            columns::RESPONSE_BODY,
            columns::REQUEST_HEADERS,
            columns::REQUEST_TRAILERS,
            columns::RESPONSE_HEADERS,
            columns::RESPONSE_TRAILERS,
        ];
        let descriptor = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema())
            .expect("the exchanges schema converts to Parquet");
        descriptor
            .columns()
            .iter()
            .map(|column| column.path().clone())
            .filter(|path| unpruned.contains(&path.parts()[0].as_str()))
            .collect()
    });

/// Writes record batches of the `exchanges` table as one Parquet file of a partition, its pages
/// compressed with `compression`. The file appears whole or not at all (one put, or one
/// completed multipart upload). Returns its size in bytes.
pub async fn write_partition(
    store: &Arc<dyn ObjectStore>,
    partition: &PartitionKey,
    name: &FileName,
    batches: &[RecordBatch],
    compression: FlushCompression,
) -> Result<usize> {
    let mut file = FileWriter::create(store, partition.file(name), compression.codec())?;
    let written = async {
        for batch in batches {
            file.write(batch).await?;
        }
        file.finish().await
    }
    .await;
    file.abort_if_failed(written).await
}

/// One Parquet file being written: row groups of [`ROW_GROUP_ROWS`] rows, each encoded off the
/// async runtime with its columns spread over up to [`encoding_threads`] threads, its share
/// of the cores while other row groups are encoded ([`encoding_share`]) (the same column
/// writers `ArrowWriter` uses, appended in schema order, so the file is byte for byte what
/// `ArrowWriter` writes), and streamed to the store as each row group is done.
struct FileWriter {
    path: Path,
    upload: Option<BufWriter>,
    /// The Parquet file writer and the factory of its column writers; `None` once finished.
    parquet: Option<Encoder>,
    /// What the file writer produced that the upload has not taken yet.
    output: SharedBuffer,
    /// Leaf columns per field of the schema, in schema order.
    leaves: Arc<[usize]>,
    /// Rows not yet encoded (slices of the batches written), fewer than `row_group_rows`.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    row_group_rows: usize,
    threads: usize,
    /// Bytes handed to the upload.
    written: usize,
    /// Whether `finish` began (the upload can no longer be aborted; `BufWriter` panics if
    /// asked to).
    finishing: bool,
}

type Encoder = (
    parquet::file::writer::SerializedFileWriter<SharedBuffer>,
    parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
);

/// A `Write` whose bytes are taken out by the owner between row groups, as a list of chunks:
/// each large write (a Parquet page) is copied once into a buffer of its own size, small ones
/// (page headers, the footer) are gathered into one, and the chunks go to the upload as they
/// are ([`BufWriter::put`]), with no growing buffer that reallocates and copies everything it
/// holds, and no second copy into the upload's own buffer.
#[derive(Debug, Clone, Default)]
struct SharedBuffer(Arc<std::sync::Mutex<Chunks>>);

/// The chunks of a [`SharedBuffer`]: those complete, and small writes being gathered.
#[derive(Debug, Default)]
struct Chunks {
    done: Vec<Bytes>,
    small: Vec<u8>,
}

/// Writes at least this long get a chunk of their own; shorter ones are gathered.
const OWN_CHUNK_BYTES: usize = 16 * 1024;

impl SharedBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Chunks> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Everything written since the last call, in order.
    fn take(&self) -> Vec<Bytes> {
        let mut chunks = self.lock();
        chunks.seal_small();
        std::mem::take(&mut chunks.done)
    }
}

impl Chunks {
    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.done.push(Bytes::from(small));
        }
    }
}

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut chunks = self.lock();
        if bytes.len() >= OWN_CHUNK_BYTES {
            chunks.seal_small();
            chunks.done.push(Bytes::copy_from_slice(bytes));
        } else {
            if chunks.small.len() + bytes.len() > OWN_CHUNK_BYTES {
                chunks.seal_small();
            }
            if chunks.small.capacity() == 0 {
                chunks.small.reserve_exact(OWN_CHUNK_BYTES);
            }
            chunks.small.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Threads that encode the columns of one row group encoded alone: the machine's cores, at
/// most 8. A row group encoded while others are (two flushes in flight, other collectors of the
/// process, a compaction) gets its share of them ([`encoding_share`]).
pub fn encoding_threads() -> usize {
    encoding_share(1)
}

/// The threads of one of `encoding` row groups encoded at once: the machine's cores shared
/// among them, at least 1 and at most 8. Three collectors in one process, each with two
/// flushes of two threads on 2 cores, ingested less than with one thread per flush
/// (BENCHMARKS.md, ingest, ninth pass).
pub fn encoding_share(encoding: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| (cores.get() / encoding.max(1)).clamp(1, 8))
}

/// Row groups being encoded in this process now (see [`encoding_share`]).
static ENCODING: AtomicUsize = AtomicUsize::new(0);

/// One row group counted in [`ENCODING`] while it lives.
struct EncodingSlot;

impl EncodingSlot {
    /// Counts one more row group; returns it and how many are being encoded with it.
    fn enter() -> (Self, usize) {
        (Self, ENCODING.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl Drop for EncodingSlot {
    fn drop(&mut self) {
        ENCODING.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FileWriter {
    fn create(store: &Arc<dyn ObjectStore>, path: Path, compression: Compression) -> Result<Self> {
        Self::with_layout(
            store,
            path,
            writer_properties(compression),
            ROW_GROUP_ROWS,
            encoding_threads(),
        )
    }

    /// A writer with `properties`, `row_group_rows` rows per row group (the properties' own
    /// limit is set to it) and `threads` encoding threads.
    fn with_layout(
        store: &Arc<dyn ObjectStore>,
        path: Path,
        properties: WriterProperties,
        row_group_rows: usize,
        threads: usize,
    ) -> Result<Self> {
        let properties = properties
            .into_builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let output = SharedBuffer::default();
        let parquet_error = |source| Error::Parquet {
            path: path.to_string(),
            source,
        };
        // `ArrowWriter` builds the Parquet schema and the file's Arrow schema metadata; its
        // parts then encode row groups column by column.
        let (file, factory) =
            parquet::arrow::ArrowWriter::try_new(output.clone(), schema(), Some(properties))
                .and_then(parquet::arrow::ArrowWriter::into_serialized_writer)
                .map_err(parquet_error)?;
        let mut leaves: Vec<usize> = Vec::with_capacity(schema().fields().len());
        let mut last: Option<String> = None;
        for column in file.schema_descr().columns() {
            let field = column.path().parts()[0].clone();
            if last.as_ref() == Some(&field) {
                *leaves.last_mut().expect("a field was seen") += 1;
            } else {
                leaves.push(1);
                last = Some(field);
            }
        }
        Ok(Self {
            upload: Some(BufWriter::new(store.clone(), path.clone())),
            path,
            parquet: Some((file, factory)),
            output,
            leaves: leaves.into(),
            pending: Vec::new(),
            pending_rows: 0,
            row_group_rows: row_group_rows.max(1),
            threads: threads.max(1),
            written: 0,
            finishing: false,
        })
    }

    fn error(&self, source: ParquetError) -> Error {
        Error::Parquet {
            path: self.path.to_string(),
            source,
        }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.row_group_rows - self.pending_rows).min(batch.num_rows() - offset);
            self.pending.push(batch.slice(offset, take));
            self.pending_rows += take;
            offset += take;
            if self.pending_rows == self.row_group_rows {
                self.encode_row_group().await?;
            }
        }
        Ok(())
    }

    /// Encodes the pending rows as one row group (off the async runtime, columns in
    /// parallel) and hands the bytes to the upload.
    async fn encode_row_group(&mut self) -> Result<()> {
        let batches = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let (mut file, factory) = self.parquet.take().expect("not finished");
        let (slot, encoding) = EncodingSlot::enter();
        let (leaves, threads) = (
            self.leaves.clone(),
            self.threads.min(encoding_share(encoding)),
        );
        let encoded = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let index = file.flushed_row_groups().len();
            let chunks = encode_columns(&factory, index, &leaves, &batches, threads)?;
            let mut row_group = file.next_row_group()?;
            for chunk in chunks {
                chunk.append_to_row_group(&mut row_group)?;
            }
            row_group.close()?;
            Ok::<_, ParquetError>((file, factory))
        })
        .await
        .map_err(|error| ParquetError::External(Box::new(error)))
        .and_then(|encoded| encoded);
        self.parquet = Some(encoded.map_err(|source| self.error(source))?);
        self.upload_output().await
    }

    /// Hands what the file writer produced to the upload.
    async fn upload_output(&mut self) -> Result<()> {
        for chunk in self.output.take() {
            let length = chunk.len();
            let upload = self.upload.as_mut().expect("not aborted");
            let sent = upload.put(chunk).await;
            sent.map_err(|error| self.error(ParquetError::External(Box::new(error))))?;
            self.written += length;
        }
        Ok(())
    }

    /// Writes the last row group and the footer and completes the upload; returns the file's
    /// size.
    async fn finish(&mut self) -> Result<usize> {
        use tokio::io::AsyncWriteExt as _;
        if self.pending_rows > 0 {
            self.encode_row_group().await?;
        }
        let (mut file, _) = self.parquet.take().expect("not finished");
        file.finish().map_err(|source| self.error(source))?;
        self.upload_output().await?;
        self.finishing = true;
        let upload = self.upload.as_mut().expect("not aborted");
        let done = upload.shutdown().await;
        done.map_err(|error| self.error(ParquetError::External(Box::new(error))))?;
        Ok(self.written)
    }

    /// Passes `result` on, dropping an unfinished multipart upload first if it is an error
    /// (nothing was made visible).
    async fn abort_if_failed<T>(mut self, result: Result<T>) -> Result<T> {
        if result.is_err()
            && !self.finishing
            && let Some(mut upload) = self.upload.take()
        {
            let _ = upload.abort().await;
        }
        result
    }
}

/// Encodes the columns of one row group (`batches`, in order) with the column writers of row
/// group `index`, on up to `threads` threads (the calling one included), larger fields first;
/// returns the column chunks in schema order.
fn encode_columns(
    factory: &parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    index: usize,
    leaves: &[usize],
    batches: &[RecordBatch],
    threads: usize,
) -> Result<Vec<parquet::arrow::arrow_writer::ArrowColumnChunk>, ParquetError> {
    use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, compute_leaves};
    let schema = schema();
    let mut writers = factory.create_column_writers(index)?.into_iter();
    // One job per field: its leaf column writers.
    let mut jobs: Vec<(usize, Vec<ArrowColumnWriter>)> = leaves
        .iter()
        .enumerate()
        .map(|(field, &count)| (field, writers.by_ref().take(count).collect()))
        .collect();
    // Popped from the end: the largest fields go first, so the threads finish together.
    let size = |field: usize| -> usize {
        batches
            .iter()
            .map(|batch| batch.column(field).get_array_memory_size())
            .sum()
    };
    jobs.sort_by_cached_key(|(field, _)| size(*field));
    let fields = jobs.len();
    let jobs = std::sync::Mutex::new(jobs);
    let done: std::sync::Mutex<Vec<Option<Vec<ArrowColumnChunk>>>> =
        std::sync::Mutex::new((0..fields).map(|_| None).collect());
    let work = || -> Result<(), ParquetError> {
        loop {
            let job = jobs
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .pop();
            let Some((field, mut writers)) = job else {
                return Ok(());
            };
            let definition = schema.field(field);
            for batch in batches {
                let columns = compute_leaves(definition, batch.column(field))?;
                for (leaf, writer) in columns.iter().zip(writers.iter_mut()) {
                    writer.write(leaf)?;
                }
            }
            let chunks = writers
                .into_iter()
                .map(ArrowColumnWriter::close)
                .collect::<Result<Vec<_>, _>>()?;
            done.lock().unwrap_or_else(|poison| poison.into_inner())[field] = Some(chunks);
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(fields))
            .map(|_| scope.spawn(work))
            .collect();
        let mut result = work();
        for helper in helpers {
            let joined = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            result = result.and(joined);
        }
        result
    })?;
    let done = done
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner());
    Ok(done.into_iter().flatten().flatten().collect())
}

/// Writes exchanges (for example imported from HAR) straight to Parquet: one file per
/// partition, named by `writer` and a counter that starts at the current time in ns (so names
/// sort by age and repeated imports do not collide). Returns the paths written.
pub async fn write_exchanges(
    store: &Arc<dyn ObjectStore>,
    writer: u64,
    exchanges: &[Exchange],
) -> Result<Vec<Path>> {
    let groups = crate::layout::group_by_partition(exchanges);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(0));
    let names = FileNamer::new(writer, start);
    let mut paths = Vec::with_capacity(groups.len());
    for (partition, group) in groups {
        let batch = to_record_batch(&group)?;
        let name = names.next_name();
        // Imports are not on the ingest path: as compact as compaction's output.
        write_partition(store, &partition, &name, &[batch], FlushCompression::Zstd).await?;
        paths.push(partition.file(&name));
    }
    Ok(paths)
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Files written.
    pub files: usize,
    /// Rows in them.
    pub rows: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Write-ahead log segments deleted.
    pub segments_removed: usize,
}

/// Data files that a flush in progress has written or is about to write, which compaction must
/// leave alone until the flush's intent is deleted (see the module docs).
#[derive(Debug, Default)]
pub struct PinnedFiles {
    paths: std::sync::Mutex<HashSet<Path>>,
}

impl PinnedFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Path>> {
        self.paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `path` is pinned.
    pub fn contains(&self, path: &Path) -> bool {
        self.lock().contains(path)
    }

    fn pin(&self, paths: &[Path]) {
        self.lock().extend(paths.iter().cloned());
    }

    fn unpin(&self, paths: &[Path]) {
        let mut pinned = self.lock();
        for path in paths {
            pinned.remove(path);
        }
    }
}

/// A flush whose files are not all written yet, or whose segments and intent are not yet
/// deleted. A call of [`Flusher::flush`] that claims it writes from a copy of it.
#[derive(Debug, Clone)]
struct PendingFlush {
    /// The segment this flush closed.
    segment: u64,
    /// The segment the previous flush closed: this flush holds the data of the segments after
    /// it, up to `segment`.
    after: u64,
    /// Every file of the flush.
    paths: Vec<Path>,
    /// The files not written yet.
    files: Vec<Arc<Sealed>>,
    /// Whether its intent is durable (it is before any file is put).
    intent_written: bool,
    /// Whether a call of [`Flusher::flush`] is writing it now.
    claimed: bool,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Flushes in order, oldest first.
    pending: Vec<PendingFlush>,
    /// The segment the last seal closed (0: none yet in this process).
    sealed_through: u64,
    /// Files were written whose change marker is not published yet.
    unpublished: bool,
}

/// The points of a flush where tests simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushStep {
    /// The intent is durable; no file is put yet.
    IntentWritten,
    /// One more file is put.
    FilePut,
    /// Every file of a flush is put; its segments are not deleted yet.
    FilesWritten,
    /// The segments are deleted; the intent is not yet.
    SegmentsRemoved,
}

/// Where a test wants the flush to stop as if the process died: the `n`th time (from 1) the
/// step is reached, `reached` is told and the flush never goes on.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct CrashPoint {
    pub(crate) step: FlushStep,
    pub(crate) n: usize,
    pub(crate) reached: tokio::sync::oneshot::Sender<()>,
}

/// Flushes the buffer into the store; see the module docs.
#[derive(Debug)]
pub struct Flusher {
    store: StoreHandle,
    buffer: Arc<Buffer>,
    wal: Wal,
    gate: Arc<RwLock<()>>,
    metrics: Arc<Metrics>,
    names: Arc<FileNamer>,
    pinned: Arc<PinnedFiles>,
    compression: FlushCompression,
    /// Only the flush loop and the final flush touch it.
    state: tokio::sync::Mutex<FlushState>,
    #[cfg(test)]
    crash: std::sync::Mutex<Option<CrashPoint>>,
}

impl Flusher {
    /// A flusher. `gate` is the lock ingest holds (shared) across its log append and buffer
    /// insert. Settle the log's flush intents ([`crate::wal::resolve_intents`]) before opening
    /// the log it writes to.
    pub fn new(
        store: StoreHandle,
        buffer: Arc<Buffer>,
        wal: Wal,
        gate: Arc<RwLock<()>>,
        metrics: Arc<Metrics>,
        names: Arc<FileNamer>,
    ) -> Self {
        Self {
            store,
            buffer,
            wal,
            gate,
            metrics,
            names,
            pinned: Arc::default(),
            compression: FlushCompression::default(),
            state: tokio::sync::Mutex::new(FlushState::default()),
            #[cfg(test)]
            crash: std::sync::Mutex::new(None),
        }
    }

    /// Compresses the pages of the files it writes with `compression` (default
    /// [`FlushCompression::Lz4`]).
    pub fn with_compression(mut self, compression: FlushCompression) -> Self {
        self.compression = compression;
        self
    }

    /// The files compaction must leave alone (see [`compact_except`]).
    pub fn pinned(&self) -> Arc<PinnedFiles> {
        self.pinned.clone()
    }

    /// Makes the flush stop for good at `crash` (tests only).
    #[cfg(test)]
    pub(crate) fn crash_at(&self, crash: CrashPoint) {
        *self.crash.lock().unwrap() = Some(crash);
    }

    /// A point where a test may simulate a crash.
    async fn checkpoint(&self, step: FlushStep) {
        #[cfg(test)]
        {
            let reached = {
                let mut crash = self.crash.lock().unwrap();
                match crash.as_mut() {
                    Some(point) if point.step == step && point.n > 1 => {
                        point.n -= 1;
                        None
                    }
                    Some(point) if point.step == step => crash.take(),
                    _ => None,
                }
            };
            if let Some(point) = reached {
                let _ = point.reached.send(());
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(test))]
        let _ = step;
    }

    /// Seals what is buffered and writes it, with earlier unwritten files first. On error, what
    /// could not be written stays pending for the next flush. Calls may overlap: each writes the
    /// pending flushes no other call is writing (see the module docs).
    pub async fn flush(&self) -> Result<FlushReport> {
        let started = Instant::now();
        let claimed = {
            let mut state = self.state.lock().await;
            if self.buffer.open_rows() > 0 {
                let (segment, files) = {
                    let _exclusive = self.gate.write().await;
                    let segment = self.wal.rotate().await?;
                    (segment, self.buffer.seal(|_| self.names.next_name()))
                };
                let after = std::mem::replace(&mut state.sealed_through, segment);
                state.pending.push(PendingFlush {
                    segment,
                    after,
                    paths: files
                        .iter()
                        .map(|sealed| sealed.partition.file(&sealed.file))
                        .collect(),
                    files,
                    intent_written: false,
                    claimed: false,
                });
            }
            if state.pending.is_empty() {
                return Ok(FlushReport::default());
            }
            state
                .pending
                .iter_mut()
                .filter(|flush| !flush.claimed && !flush.files.is_empty())
                .map(|flush| {
                    flush.claimed = true;
                    flush.clone()
                })
                .collect::<Vec<_>>()
        };
        let mut report = FlushReport::default();
        let mut result = Ok(());
        for flush in &claimed {
            result = self.write_claimed(flush, &mut report).await;
            if result.is_err() {
                break;
            }
        }
        let mut state = self.state.lock().await;
        for flush in &mut state.pending {
            if claimed.iter().any(|taken| taken.segment == flush.segment) {
                flush.claimed = false;
            }
        }
        if report.files > 0 || state.unpublished {
            // Other processes' cached listings: see `crate::cache`.
            state.unpublished = true;
            match self
                .store
                .changes
                .publish(&self.store.store, self.names.writer())
                .await
            {
                Ok(()) => state.unpublished = false,
                Err(error) => {
                    tracing::warn!(%error, "Could not publish the flush's change marker; retried with the next flush.");
                }
            }
        }
        if let Err(error) = self.finish_written(&mut state.pending, &mut report).await
            && result.is_ok()
        {
            result = Err(error);
        }
        drop(state);
        self.observe_buffer();
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        result.map(|()| report)
    }

    /// Writes one flush this call claimed: its intent, then its files, each forgotten by the
    /// pending flush (and the buffer) once it is in the store.
    async fn write_claimed(&self, flush: &PendingFlush, report: &mut FlushReport) -> Result<()> {
        if !flush.intent_written {
            let segments = self
                .wal
                .segments_between(flush.after, flush.segment)
                .await?;
            // Pinned before any put, so compaction never sees the files unpinned.
            self.pinned.pin(&flush.paths);
            let files: Vec<String> = flush.paths.iter().map(ToString::to_string).collect();
            let pin = manifest::pin_path(self.names.writer(), flush.segment);
            self.wal
                .write_intent(FlushIntent {
                    segment: flush.segment,
                    segments,
                    files: files.clone(),
                    pin: Some(pin.to_string()),
                })
                .await?;
            // Other writers' compactions leave the files alone while this pin exists.
            manifest::put_pin(&self.store.store, &pin, &files).await?;
            self.store.sync(&pin).await?;
            self.with_pending(flush.segment, |pending| pending.intent_written = true)
                .await;
            self.checkpoint(FlushStep::IntentWritten).await;
        }
        for sealed in &flush.files {
            let bytes = self.write_with_retry(sealed).await?;
            // Durable before the log segments that hold the same data can go.
            self.store
                .sync(&sealed.partition.file(&sealed.file))
                .await?;
            // This process's queries list again before the rows leave the buffer.
            self.store.changes.changed();
            self.buffer.remove_sealed(&sealed.file);
            report.files += 1;
            report.rows += sealed.rows;
            report.bytes += bytes;
            self.metrics.rows_flushed.inc_by(sealed.rows as u64);
            self.with_pending(flush.segment, |pending| {
                pending.files.retain(|file| file.file != sealed.file);
            })
            .await;
            self.checkpoint(FlushStep::FilePut).await;
        }
        Ok(())
    }

    /// Changes the pending flush that closed `segment` (a claimed one: it is there).
    async fn with_pending(&self, segment: u64, change: impl FnOnce(&mut PendingFlush)) {
        let mut state = self.state.lock().await;
        if let Some(pending) = state
            .pending
            .iter_mut()
            .find(|pending| pending.segment == segment)
        {
            change(pending);
        }
    }

    /// Deletes the segments, then the intents, of the oldest flushes whose files are all
    /// written and that no call is writing. What fails stays pending and is retried by the next
    /// flush.
    async fn finish_written(
        &self,
        pending: &mut Vec<PendingFlush>,
        report: &mut FlushReport,
    ) -> Result<()> {
        let written = pending
            .iter()
            .take_while(|flush| flush.files.is_empty() && !flush.claimed)
            .count();
        let Some(last) = written.checked_sub(1).map(|last| &pending[last]) else {
            return Ok(());
        };
        self.checkpoint(FlushStep::FilesWritten).await;
        report.segments_removed += self.wal.remove_through(last.segment).await?;
        self.checkpoint(FlushStep::SegmentsRemoved).await;
        for _ in 0..written {
            let flush = &pending[0];
            // The pin goes after the segments (nothing can replay these files any more) and
            // before the intent (see `crate::wal::resolve_intents`).
            let pin = manifest::pin_path(self.names.writer(), flush.segment);
            manifest::remove_pin(&self.store.store, &pin).await?;
            self.wal.remove_intent(flush.segment).await?;
            self.pinned.unpin(&flush.paths);
            pending.remove(0);
        }
        Ok(())
    }

    async fn write_with_retry(&self, sealed: &Sealed) -> Result<usize> {
        let mut backoff = RETRY_BACKOFF;
        let mut attempt = 1;
        loop {
            match write_partition(
                &self.store.store,
                &sealed.partition,
                &sealed.file,
                &sealed.batches,
                self.compression,
            )
            .await
            {
                Ok(bytes) => {
                    self.metrics.parquet_files_written.inc();
                    self.metrics.parquet_bytes_written.inc_by(bytes as u64);
                    return Ok(bytes);
                }
                Err(error) if attempt < WRITE_ATTEMPTS => {
                    self.metrics.store_retries.inc();
                    tracing::warn!(
                        %error,
                        file = %sealed.partition.file(&sealed.file),
                        attempt,
                        "Parquet write failed; retrying."
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(error) => {
                    self.metrics.store_retries.inc();
                    return Err(error);
                }
            }
        }
    }

    /// Updates the buffer gauges.
    pub fn observe_buffer(&self) {
        observe_buffer(&self.metrics, &self.buffer);
    }

    /// Flushes every `interval`, or sooner when `wake` is notified and `trigger` says a flush is
    /// due, until `stop` turns true, with up to [`FLUSHES_IN_FLIGHT`] flushes at once: a flush
    /// that comes due while another is still writing starts beside it. Once stopped, it waits
    /// for the flushes in flight. (The final flush is the caller's, once ingest has stopped.)
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        trigger: crate::buffer::FlushTrigger,
        wake: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        use futures::StreamExt as _;
        let mut next = tokio::time::Instant::now() + interval;
        let mut in_flight = futures::stream::FuturesUnordered::new();
        // The interval passed while every slot was taken: flush when one frees.
        let mut owed = false;
        loop {
            let start = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + interval;
                    owed = true;
                    true
                }
                () = wake.notified() => trigger.due(&self.buffer),
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {
                    owed || trigger.due(&self.buffer)
                }
            };
            if start && in_flight.len() < FLUSHES_IN_FLIGHT {
                owed = false;
                next = tokio::time::Instant::now() + interval;
                self.metrics.flushes_in_flight.inc();
                in_flight.push(self.clone().flush_and_log());
            }
        }
        while in_flight.next().await.is_some() {}
    }

    async fn flush_and_log(self: Arc<Self>) {
        match self.flush().await {
            Ok(report) if report.files > 0 => tracing::info!(
                files = report.files,
                rows = report.rows,
                bytes = report.bytes,
                segments_removed = report.segments_removed,
                "Flushed."
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "Flush failed; it is retried."),
        }
        self.metrics.flushes_in_flight.dec();
    }
}

/// Updates the buffer gauges of `metrics` from `buffer`.
pub fn observe_buffer(metrics: &Metrics, buffer: &Buffer) {
    metrics
        .buffer_bytes
        .set(i64::try_from(buffer.bytes()).unwrap_or(i64::MAX));
    metrics
        .buffer_rows
        .set(i64::try_from(buffer.open_rows()).unwrap_or(i64::MAX));
}

/// The visible data files of the table, by partition, oldest file first: what a query reads
/// (the partition manifests applied, see [`crate::manifest`]).
pub async fn list_partitions(
    store: &Arc<dyn ObjectStore>,
) -> Result<BTreeMap<PartitionKey, Vec<(FileName, ObjectMeta)>>> {
    manifest::resolve_visible(
        store,
        &StateCache::default(),
        &crate::cache::ListingCache::default(),
        &[Path::from(TABLE_DIR)],
    )
    .await
}

/// Reads one Parquet file of the table back into record batches.
pub async fn read_file(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Vec<RecordBatch>> {
    let parquet_error = |source| Error::Parquet {
        path: path.to_string(),
        source,
    };
    ParquetRecordBatchStreamBuilder::new(StoreReader::new(store.clone(), path.clone()))
        .await
        .map_err(parquet_error)?
        .build()
        .map_err(parquet_error)?
        .try_collect()
        .await
        .map_err(parquet_error)
}

/// Reads a Parquet file from an object store: byte ranges for the pages, a suffix read for the
/// footer (the shape `parquet/examples/object_store.rs` recommends now that
/// `ParquetObjectReader` is deprecated).
#[derive(Debug, Clone)]
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl StoreReader {
    /// A reader of `path` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

fn external(error: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(error))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut StoreReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let result = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(external)?;
            result.bytes().await.map_err(external)
        }
        .boxed()
    }
}

fn nanos_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
    })
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Partitions merged.
    pub partitions: usize,
    /// Files replaced.
    pub files: usize,
    /// Rows rewritten.
    pub rows: usize,
    /// Files deleted: replaced inputs past `--gc-grace`, expired partitions, outputs of
    /// compactions that never committed.
    pub deleted: usize,
    /// Partitions retention expired in this pass.
    pub expired: usize,
    /// Partitions left alone because another writer holds them.
    pub busy: usize,
}

impl CompactionReport {
    /// The counts of what changed what readers see.
    fn changes(&self) -> [usize; 4] {
        [self.partitions, self.deleted, self.expired, self.files]
    }
}

/// How maintenance runs (see [`crate::manifest`]).
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// A closed partition with at least this many visible files is merged.
    pub min_files: usize,
    /// Partitions whose hour ended longer ago than this expire (`None`: never).
    pub retention: Option<Duration>,
    /// How long replaced and expired files stay readable before they are deleted.
    pub grace: Duration,
    /// How long a partition lease lasts.
    pub lease: Duration,
}

impl Maintenance {
    /// Compaction only, deleting replaced files on the next pass.
    pub fn compaction(min_files: usize) -> Self {
        Self {
            min_files,
            retention: None,
            grace: Duration::ZERO,
            lease: DEFAULT_LEASE,
        }
    }
}

/// How long a partition lease lasts unless configured: longer than any one compaction.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(600);

/// Merges the files of each partition whose hour ended before `now` and that has at least
/// `min_files` visible files into one file named by `names`; the merged files are deleted on a
/// later pass. A partition that fails is logged and left as it was; the others go on.
pub async fn compact(
    store: &Arc<dyn ObjectStore>,
    names: &FileNamer,
    min_files: usize,
    now: SystemTime,
    metrics: &Metrics,
) -> Result<CompactionReport> {
    compact_except(
        store,
        None,
        names,
        min_files,
        now,
        metrics,
        &PinnedFiles::default(),
    )
    .await
}

/// [`compact`], leaving out the files of this process's flushes in progress.
pub async fn compact_except(
    store: &Arc<dyn ObjectStore>,
    durable: Option<&StoreHandle>,
    names: &FileNamer,
    min_files: usize,
    now: SystemTime,
    metrics: &Metrics,
    pinned: &PinnedFiles,
) -> Result<CompactionReport> {
    maintain(
        store,
        durable,
        names,
        &Maintenance::compaction(min_files),
        now,
        metrics,
        pinned,
    )
    .await
}

/// Expires the partitions whose hour ended more than `retention` before `now` and deletes their
/// files at once (no grace). Returns how many files were deleted.
pub async fn apply_retention(
    store: &Arc<dyn ObjectStore>,
    retention: Duration,
    now: SystemTime,
    metrics: &Metrics,
) -> Result<usize> {
    let config = Maintenance {
        min_files: usize::MAX,
        retention: Some(retention),
        grace: Duration::ZERO,
        lease: DEFAULT_LEASE,
    };
    let names = FileNamer::new(random_writer_id(), 1);
    let report = maintain(
        store,
        None,
        &names,
        &config,
        now,
        metrics,
        &PinnedFiles::default(),
    )
    .await?;
    Ok(report.deleted)
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

/// One maintenance pass over every partition: retention, deletion of what every reader is done
/// with, compaction; each partition only under its lease, every change as a new manifest
/// version (see [`crate::manifest`]).
pub async fn maintain(
    store: &Arc<dyn ObjectStore>,
    durable: Option<&StoreHandle>,
    names: &FileNamer,
    config: &Maintenance,
    now: SystemTime,
    metrics: &Metrics,
    pinned: &PinnedFiles,
) -> Result<CompactionReport> {
    let mut report = CompactionReport::default();
    for (partition, listing) in manifest::list_table(store).await? {
        let pass = PartitionPass {
            store,
            durable,
            names,
            config,
            now,
            metrics,
            pinned,
            partition: &partition,
        };
        let before = report.changes();
        if let Err(error) = pass.run(listing, &mut report).await {
            tracing::warn!(%error, %partition, "Maintenance of a partition failed; it is retried.");
        }
        // A commit, an expiry or a delete: readers' cached listings go (see `crate::cache`).
        if report.changes() != before
            && let Some(handle) = durable
        {
            handle.changes.publish(store, names.writer()).await?;
        }
    }
    if durable.is_some()
        && let Err(error) = crate::cache::remove_stale_markers(store, now).await
    {
        tracing::warn!(%error, "Could not remove stale change markers.");
    }
    Ok(report)
}

struct PartitionPass<'a> {
    store: &'a Arc<dyn ObjectStore>,
    durable: Option<&'a StoreHandle>,
    names: &'a FileNamer,
    config: &'a Maintenance,
    now: SystemTime,
    metrics: &'a Metrics,
    pinned: &'a PinnedFiles,
    partition: &'a PartitionKey,
}

impl PartitionPass<'_> {
    async fn run(&self, first: PartitionListing, report: &mut CompactionReport) -> Result<()> {
        let Some(start) = self.partition.start_unix_nanos() else {
            return Ok(());
        };
        let now_ms = millis(self.now);
        let now_ns = nanos_since_epoch(self.now);
        let grace_ms = u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX);
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let closed = start.saturating_add(HOUR_NANOS) <= now_ns;
        let past_retention = self.config.retention.is_some_and(|retention| {
            let cutoff =
                now_ns.saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
            start.saturating_add(HOUR_NANOS) <= cutoff
        });
        let version = first.latest().unwrap_or(0);
        let state = match first.latest() {
            Some(version) => match manifest::load(self.store, self.partition, version).await? {
                Some(state) => state,
                // A newer version replaced it meanwhile: next pass.
                None => return Ok(()),
            },
            None => PartitionState::default(),
        };
        let due = |at: u64| at.saturating_add(grace_ms) <= now_ms;
        // Anything to do? Decided on the first listing, so idle partitions cost no write.
        let listed: HashSet<String> = first.files.iter().map(|(n, _)| n.to_string()).collect();
        let expire = past_retention && state.expired_at_ms.is_none();
        let purge = state.expired_at_ms.is_some_and(due);
        let mark = state
            .outputs
            .values()
            .any(|commit| commit.gc_at_ms.is_none() && due(commit.at_ms));
        let sweep = state
            .outputs
            .values()
            .any(|commit| commit.gc_at_ms.is_some() && !commit.inputs.is_empty());
        let orphans = first.files.iter().any(|(name, meta)| {
            name.compacted
                && !state.outputs.contains_key(&name.to_string())
                && millis(meta.last_modified.into()).saturating_add(lease_ms) <= now_ms
        });
        let candidates = if closed && state.expired_at_ms.is_none() && !past_retention {
            let visible = manifest::visible_names(first.files.iter().map(|(n, _)| n), Some(&state));
            first
                .files
                .iter()
                .filter(|(name, meta)| {
                    visible.contains(name) && !self.pinned.contains(&meta.location)
                })
                .count()
        } else {
            0
        };
        let compact = candidates >= self.config.min_files.max(2);
        if !(expire || purge || mark || sweep || orphans || compact || first.states.len() > 3) {
            return Ok(());
        }
        if !state.lease_free_for(self.names.writer(), now_ms) {
            report.busy += 1;
            return Ok(());
        }

        // 1. The lease, with the marks that make deletions safe.
        let mut next = state.clone();
        next.lease = Some(Lease {
            writer: manifest::writer_hex(self.names.writer()),
            until_ms: now_ms.saturating_add(lease_ms),
        });
        if expire {
            next.expired_at_ms = Some(now_ms);
            report.expired += 1;
            tracing::info!(partition = %self.partition, "Expired a partition past retention.");
        }
        for commit in next.outputs.values_mut() {
            if commit.gc_at_ms.is_none() && due(commit.at_ms) {
                commit.gc_at_ms = Some(now_ms);
            }
        }
        let mut version = version + 1;
        if !manifest::create(self.store, self.partition, version, &next).await? {
            report.busy += 1;
            return Ok(());
        }
        // 2. Everything committed up to the lease is in this listing.
        let listing = manifest::list(self.store, &self.partition.dir())
            .await?
            .remove(self.partition)
            .unwrap_or_default();
        let listed: HashSet<String> = listed
            .into_iter()
            .chain(listing.files.iter().map(|(n, _)| n.to_string()))
            .collect();

        // 3. Deletions of what every reader is done with.
        if let Some(expired) = next.expired_at_ms {
            if due(expired) {
                for (_, meta) in &listing.files {
                    delete(self.store, &meta.location).await?;
                    self.metrics.retention_deleted_files.inc();
                    report.deleted += 1;
                }
                for (_, meta) in &listing.states {
                    delete(self.store, &meta.location).await?;
                }
                tracing::info!(partition = %self.partition, files = listing.files.len(), "Deleted a partition past retention.");
                return Ok(());
            }
            next.lease = None;
            manifest::create(self.store, self.partition, version + 1, &next).await?;
            return Ok(());
        }
        let mut commits: Vec<(String, Commit)> = next
            .outputs
            .iter()
            .map(|(o, c)| (o.clone(), c.clone()))
            .collect();
        commits.sort_by_key(|(_, commit)| commit.at_ms);
        for (output, commit) in &commits {
            let Some(marked) = commit.gc_at_ms else {
                continue;
            };
            for input in &commit.inputs {
                if listed.contains(input) {
                    delete(
                        self.store,
                        &self.partition.dir().clone().join(input.as_str()),
                    )
                    .await?;
                    report.deleted += 1;
                }
            }
            // A grace after the deletes no listing can still show them: forget them, and the
            // entries of outputs they were.
            if due(marked)
                && !commit
                    .inputs
                    .iter()
                    .any(|input| listing_has(&listing, input))
            {
                for input in &commit.inputs {
                    next.outputs.remove(input);
                }
                if let Some(entry) = next.outputs.get_mut(output) {
                    entry.inputs.clear();
                }
            }
        }
        for (name, meta) in &listing.files {
            let text = name.to_string();
            if name.compacted
                && !next.outputs.contains_key(&text)
                && millis(meta.last_modified.into()).saturating_add(lease_ms) <= now_ms
            {
                // Its compaction never committed, and no longer can (its lease ran out).
                delete(self.store, &meta.location).await?;
                report.deleted += 1;
            }
        }
        for (old, meta) in &listing.states {
            if *old + 1 < version {
                delete(self.store, &meta.location).await?;
            }
        }

        // 4. Compaction.
        let mut committed = false;
        if closed {
            let remote_pins = manifest::pinned_files(self.store).await?;
            let visible =
                manifest::visible_names(listing.files.iter().map(|(n, _)| n), Some(&next));
            let files: Vec<(FileName, ObjectMeta)> = listing
                .files
                .iter()
                .filter(|(name, meta)| {
                    visible.contains(name)
                        && !self.pinned.contains(&meta.location)
                        && !remote_pins.contains(&meta.location)
                })
                .cloned()
                .collect();
            if files.len() >= self.config.min_files.max(2) {
                let output = self.names.next_compacted_name();
                let rows = merge(self.store, self.durable, self.partition, &files, &output).await?;
                let mut commit = next.clone();
                commit.lease = None;
                commit.outputs.insert(
                    output.to_string(),
                    Commit {
                        inputs: files.iter().map(|(name, _)| name.to_string()).collect(),
                        at_ms: now_ms,
                        gc_at_ms: None,
                    },
                );
                version += 1;
                if manifest::create(self.store, self.partition, version, &commit).await? {
                    committed = true;
                    self.metrics.compactions.inc();
                    self.metrics.compacted_files.inc_by(files.len() as u64);
                    report.partitions += 1;
                    report.files += files.len();
                    report.rows += rows;
                    tracing::info!(partition = %self.partition, files = files.len(), rows, output = %output, "Compacted.");
                } else {
                    // Another writer took the partition: this output never becomes visible.
                    delete(self.store, &self.partition.file(&output)).await?;
                    tracing::warn!(partition = %self.partition, "Lost the partition lease during compaction; the merge is dropped.");
                    return Ok(());
                }
            }
        }
        if !committed {
            next.lease = None;
            manifest::create(self.store, self.partition, version + 1, &next).await?;
        }
        Ok(())
    }
}

fn listing_has(listing: &PartitionListing, name: &str) -> bool {
    let Some(name) = FileName::parse(name) else {
        return false;
    };
    listing.files.iter().any(|(listed, _)| *listed == name)
}

async fn delete(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Writes the rows of `files` into `output` (invisible until committed); returns the rows.
async fn merge(
    store: &Arc<dyn ObjectStore>,
    durable: Option<&StoreHandle>,
    partition: &PartitionKey,
    files: &[(FileName, ObjectMeta)],
    output: &FileName,
) -> Result<usize> {
    let merged_path = partition.file(output);
    // zstd whatever the flush wrote: the merged file is what stays at rest.
    let mut merged = FileWriter::create(store, merged_path.clone(), zstd())?;
    let written = async {
        let mut rows = 0;
        for (_, meta) in files {
            let parquet_error = |source| Error::Parquet {
                path: meta.location.to_string(),
                source,
            };
            let reader = StoreReader::new(store.clone(), meta.location.clone());
            let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(parquet_error)?
                .with_batch_size(8 * 1024)
                .build()
                .map_err(parquet_error)?;
            while let Some(batch) = batches.try_next().await.map_err(parquet_error)? {
                rows += batch.num_rows();
                merged.write(&batch).await?;
            }
        }
        merged.finish().await?;
        Ok(rows)
    }
    .await;
    let rows = merged.abort_if_failed(written).await?;
    // On disk for good before the commit that makes it replace the others.
    if let Some(handle) = durable {
        handle.sync(&merged_path).await?;
    }
    Ok(rows)
}

/// Runs [`maintain`] (leaving `pinned` files alone) every `interval` until `stop` turns true.
pub async fn run_maintenance(
    handle: StoreHandle,
    names: Arc<FileNamer>,
    config: Maintenance,
    interval: Duration,
    metrics: Arc<Metrics>,
    pinned: Arc<PinnedFiles>,
    mut stop: watch::Receiver<bool>,
) {
    let store = handle.store.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = maintain(
            &store,
            Some(&handle),
            &names,
            &config,
            SystemTime::now(),
            &metrics,
            &pinned,
        )
        .await
        {
            tracing::warn!(%error, "Maintenance failed; it is retried.");
        }
    }
}

#[cfg(test)]
mod tests;
