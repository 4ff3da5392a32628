//! The write-ahead log: every accepted batch is on disk, fsynced, before it is acknowledged.
//!
//! # On disk
//!
//! `DATA/wal/` holds segment files named `<sequence>.wal`, the sequence in 20 decimal digits so
//! that names sort by age. A segment starts with a 16-byte header, [`SEGMENT_MAGIC`] and the
//! segment's own sequence (u64 LE), followed by a run of records:
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 (IEEE) of the sequence (u64 LE), then the payload][payload]
//! ```
//!
//! where the payload is one encoded `ExchangeBatch` as it was accepted. The sequence in every
//! checksum is what makes segment files reusable (below): a record left over from the file's
//! earlier life fails its checksum under the new sequence, so it reads as the end of the log,
//! never as data.
//!
//! Segments written before the header existed (no [`SEGMENT_MAGIC`] at the start) are read as
//! they were written: records from offset 0, each checksum over the payload alone.
//!
//! It also holds *flush intents*, `flush-<sequence>.intent` (see below): one record framed
//! like a headerless segment's whose payload is a JSON [`FlushIntent`]; and up to
//! [`MAX_SPARES`] *spare* segment files, `<sequence>.spare`, segments whose data is in Parquet,
//! kept to be written over instead of deleted.
//!
//! # Durability
//!
//! One thread owns the open segment. [`Wal::append`] queues a payload and waits; the thread
//! takes everything queued, writes it with one `write`, makes it durable with one `sync_data`,
//! and only then answers every waiting append (group commit: concurrent pushes share an fsync).
//! After a failed write the log refuses appends until the next [`Wal::rotate`], so that no
//! record is ever written behind a damaged one.
//!
//! [`Wal::rotate`] closes the open segment and starts the next one; [`Wal::remove_through`]
//! retires closed segments once everything in them is in Parquet (see `writer`).
//!
//! # Reused segment files
//!
//! An fdatasync of a file that grows must also commit the file system's journal (the new size
//! and blocks), and on ext4 that commit waits for every other file's data the journal orders
//! before it, here the flush's Parquet files. An fdatasync of data written over blocks the file
//! already has commits no metadata. So [`Wal::remove_through`] renames up to [`MAX_SPARES`]
//! retired segments to `<sequence>.spare` rather than deleting them, and [`Wal::rotate`] starts
//! the next segment in a spare when there is one: renamed to the new segment's name, its
//! header written over and fsynced (with the folder) before the first record is. What is
//! acknowledged is unchanged: a record is acknowledged once the fdatasync after its write
//! returned. Closing a segment cuts the file to its records and fsyncs it before the next
//! segment starts, so only the last segment can hold bytes from a file's earlier life; a
//! spare renamed but not yet given its header (a crash in between) still carries its former
//! sequence, and reads as an empty segment. A new segment's sequence is above every spare's,
//! so no record of a spare ever checks under it.
//!
//! # Flush intents: exactly once into Parquet
//!
//! Before a flush puts its first Parquet file, it records a [`FlushIntent`] with
//! [`Wal::write_intent`] (temporary name, fsync, rename, fsync of the folder): the closed
//! segments whose data the flush holds, and the exact store paths of the files it writes (one
//! per partition; a file holds every exchange of its partition in those segments). Only once all
//! of those files are in the store does the flush delete the segments, and then the intent
//! ([`Wal::remove_intent`]). A crash can therefore leave an intent behind, and
//! [`resolve_intents`] (run before [`Wal::open`], which refuses to start while one is left)
//! settles each one against the store:
//! - every listed file exists: the data is in Parquet. Its segments are deleted without being
//!   replayed, then the intent.
//! - some listed file is missing: the flush was cut short. The listed files that do exist are
//!   deleted, then the intent; the segments are replayed as usual and flushed again under new
//!   names.
//!
//! A crash before the intent is durable left no file behind, and the segments replay; a crash
//! during either resolution is settled the same way on the next start. So after a crash at any
//! moment of a flush, every exchange is in the store exactly once. [`read_dir_with_store`] is
//! the read-only view of the same rule, for readers that must not change anything.
//!
//! # Recovery
//!
//! [`Wal::open`] reads every segment in order and replays each batch. A damaged record ends the
//! last segment (a write torn by a crash, or the earlier contents of a reused file: nothing
//! there was acknowledged), which is truncated there; a damaged record in any earlier segment
//! is an error naming the file and offset, and nothing is deleted. Appends then go to a new
//! segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tapedeck_proto::ExchangeBatch;
use tapedeck_proto::prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::layout::{PartitionKey, parse_file_path};
use crate::metrics::Metrics;

/// The file name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// The file name prefix of flush intents.
pub const INTENT_PREFIX: &str = "flush-";
/// The file name suffix of flush intents.
pub const INTENT_SUFFIX: &str = ".intent";
/// The suffix of an intent being written (never read; deleted by [`resolve_intents`]).
const TEMP_SUFFIX: &str = ".tmp";
/// Bytes before each record's payload: length and checksum.
pub const RECORD_HEADER_BYTES: usize = 8;
/// Appends queued beyond this many bytes wait for the next group.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// The first bytes of a segment with a header: the format's name and version.
pub const SEGMENT_MAGIC: [u8; 8] = *b"tdwal\x002\n";
/// Bytes of a segment's header: [`SEGMENT_MAGIC`] and the sequence, u64 LE.
pub const SEGMENT_HEADER_BYTES: usize = 16;
/// The file name suffix of spare segment files.
pub const SPARE_SUFFIX: &str = ".spare";
/// Retired segment files kept to be written over: two let a flush retire the segment it wrote
/// while the next one is already open in the other.
pub const MAX_SPARES: usize = 2;

/// The file name of segment `sequence`.
pub fn segment_name(sequence: u64) -> String {
    format!("{sequence:020}{SEGMENT_SUFFIX}")
}

/// The sequence of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_sequence(name.strip_suffix(SEGMENT_SUFFIX)?)
}

/// A sequence as file names spell it: exactly 20 decimal digits.
fn parse_sequence(digits: &str) -> Option<u64> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of retired segment `sequence`, kept as a spare.
pub fn spare_name(sequence: u64) -> String {
    format!("{sequence:020}{SPARE_SUFFIX}")
}

/// The sequence of a spare's file name, if it is one.
pub fn parse_spare_name(name: &str) -> Option<u64> {
    parse_sequence(name.strip_suffix(SPARE_SUFFIX)?)
}

/// The header segment `sequence` starts with.
pub fn segment_header(sequence: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..].copy_from_slice(&sequence.to_le_bytes());
    header
}

/// The file name of the intent of the flush that closed segment `sequence`.
pub fn intent_name(sequence: u64) -> String {
    format!("{INTENT_PREFIX}{sequence:020}{INTENT_SUFFIX}")
}

/// The sequence of an intent file name, if it is one.
pub fn parse_intent_name(name: &str) -> Option<u64> {
    parse_sequence(
        name.strip_prefix(INTENT_PREFIX)?
            .strip_suffix(INTENT_SUFFIX)?,
    )
}

/// Encodes one record of segment `sequence` (header and payload), to follow
/// [`segment_header`]`(sequence)` and the segment's earlier records.
pub fn encode_segment_record(sequence: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&record_header(Some(sequence), payload));
    out.extend_from_slice(payload);
}

/// Encodes one record framed without a sequence (header and payload): a flush intent's, or a
/// record of a segment without a header (the format before [`SEGMENT_MAGIC`]).
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&record_header(None, payload));
    out.extend_from_slice(payload);
}

/// The header of `payload`'s record: its length and its checksum, little-endian.
fn record_header(sequence: Option<u64>, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    // `Wal::append` refuses payloads of 4 GiB or more.
    let len = payload.len() as u32;
    let mut header = [0; RECORD_HEADER_BYTES];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&record_checksum(sequence, payload).to_le_bytes());
    header
}

/// The CRC-32 of a record: over the segment's sequence (u64 LE) and then the payload, or over
/// the payload alone where there is no sequence (intents, headerless segments).
fn record_checksum(sequence: Option<u64>, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    if let Some(sequence) = sequence {
        crc.update(&sequence.to_le_bytes());
    }
    crc.update(payload);
    crc.finalize()
}

/// Writes all of `slices` with `writev` (no copy of the payloads into one buffer).
fn write_all_vectored(file: &mut File, mut slices: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => io::IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Segments read.
    pub segments: usize,
    /// Records (batches) replayed.
    pub records: usize,
    /// Exchanges in them.
    pub exchanges: usize,
    /// The highest segment sequence read; everything up to it is covered by the replayed data.
    pub last_segment: Option<u64>,
    /// Where the last segment was cut: the torn record's offset and the bytes dropped.
    pub truncated: Option<(PathBuf, u64, u64)>,
}

/// What a flush is about to write; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushIntent {
    /// The segment the flush closed; it names the intent file.
    pub segment: u64,
    /// The segments whose data the flush writes (each at most `segment`).
    pub segments: Vec<u64>,
    /// The store paths of the files the flush writes (`exchanges/service=…/….parquet`), one
    /// per partition.
    pub files: Vec<String>,
    /// The store path of the flush's pin ([`crate::manifest`]); absent in intents written
    /// before pins existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

impl FlushIntent {
    /// The file's bytes: one record, framed like a segment record, of JSON.
    fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("an intent serializes");
        let mut out = Vec::with_capacity(json.len() + RECORD_HEADER_BYTES);
        encode_record(&json, &mut out);
        out
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: String| Error::WalCorrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!(
                "flush intent: {reason} (it cannot tell which data is in the store; \
                 see the write-ahead log docs before deleting it)"
            ),
        };
        let Some((header, payload)) = bytes.split_at_checked(RECORD_HEADER_BYTES) else {
            return Err(corrupt(format!("{} bytes, no record header", bytes.len())));
        };
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header else {
            unreachable!("the header is {RECORD_HEADER_BYTES} bytes");
        };
        let size = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
        let crc = u32::from_le_bytes([*c0, *c1, *c2, *c3]);
        if size != payload.len() {
            return Err(corrupt(format!(
                "record of {size} bytes in a payload of {}",
                payload.len()
            )));
        }
        let actual = record_checksum(None, payload);
        if actual != crc {
            return Err(corrupt(format!(
                "checksum mismatch: recorded {crc:08x}, computed {actual:08x}"
            )));
        }
        let intent: Self =
            serde_json::from_slice(payload).map_err(|error| corrupt(error.to_string()))?;
        let named = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_intent_name);
        if named != Some(intent.segment) {
            return Err(corrupt(format!(
                "names segment {} but is not called {}",
                intent.segment,
                intent_name(intent.segment)
            )));
        }
        if let Some(later) = intent.segments.iter().find(|s| **s > intent.segment) {
            return Err(corrupt(format!(
                "lists segment {later}, after its own segment {}",
                intent.segment
            )));
        }
        for file in &intent.files {
            if object_store::path::Path::parse(file)
                .ok()
                .as_ref()
                .and_then(parse_file_path)
                .is_none()
            {
                return Err(corrupt(format!("{file:?} is not a data file path")));
            }
        }
        Ok(intent)
    }

    /// The listed files as store paths, with their partitions.
    fn paths(&self) -> Vec<(object_store::path::Path, PartitionKey)> {
        self.files
            .iter()
            .filter_map(|file| {
                let path = object_store::path::Path::parse(file).ok()?;
                let (partition, _) = parse_file_path(&path)?;
                Some((path, partition))
            })
            .collect()
    }
}

/// What [`resolve_intents`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IntentRecovery {
    /// Intents whose files were all in the store: their segments were deleted unreplayed.
    pub completed: usize,
    /// Segments deleted for them.
    pub segments_removed: usize,
    /// Intents with a missing file: their segments replay.
    pub partial: usize,
    /// Files of those flushes that were in the store and were deleted.
    pub files_removed: usize,
}

enum Command {
    Append {
        payload: Bytes,
        ack: oneshot::Sender<Result<()>>,
    },
    Rotate {
        ack: oneshot::Sender<Result<u64>>,
    },
}

/// A handle to the write-ahead log. Cheap to clone; the writer thread stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    spares: Arc<Spares>,
    commands: mpsc::UnboundedSender<Command>,
    current: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append { payload, .. } => write!(f, "Append({} bytes)", payload.len()),
            Command::Rotate { .. } => f.write_str("Rotate"),
        }
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing): replays every recorded batch through
    /// `replay`, in order, then starts a new segment for appends. Stops at the first error of
    /// `replay`.
    pub fn open(
        dir: &Path,
        metrics: Arc<Metrics>,
        mut replay: impl FnMut(ExchangeBatch) -> Result<()>,
    ) -> Result<(Self, Recovery)> {
        let wal_error = |source| Error::Wal {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(wal_error)?;
        if let Some((_, path)) = list_intents(dir)?.into_iter().next() {
            return Err(Error::Wal {
                path,
                source: io::Error::other(
                    "a flush intent is left: settle it against the store (wal::resolve_intents) \
                     before replaying the log",
                ),
            });
        }
        let segments = list_segments(dir)?;
        let mut recovery = Recovery::default();
        for (i, (sequence, path)) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let end = read_segment(path, *sequence, |batch| {
                recovery.records += 1;
                recovery.exchanges += batch.exchanges.len();
                replay(batch)
            })?;
            recovery.segments += 1;
            recovery.last_segment = Some(*sequence);
            if let SegmentEnd::Damaged {
                offset,
                len,
                reason,
            } = end
            {
                if !last {
                    return Err(Error::WalCorrupt {
                        path: path.clone(),
                        offset,
                        reason,
                    });
                }
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    dropped_bytes = len - offset,
                    reason,
                    "Truncated the torn tail of the write-ahead log."
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|source| Error::Wal {
                        path: path.clone(),
                        source,
                    })?;
                file.set_len(offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|source| Error::Wal {
                        path: path.clone(),
                        source,
                    })?;
                recovery.truncated = Some((path.clone(), offset, len - offset));
            }
        }
        let (spares, latest_spare) = Spares::load(dir)?;
        let spares = Arc::new(spares);
        // Never a sequence a spare had: its records would check under it again.
        let next = recovery
            .last_segment
            .max(latest_spare)
            .map_or(1, |last| last + 1);
        let segment = Segment::create(dir, next, &spares)?;
        if segment.reused {
            metrics.wal_segments_reused.inc();
        }
        let current = Arc::new(AtomicU64::new(next));
        let (commands, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            dir: dir.to_path_buf(),
            segment,
            spares: spares.clone(),
            failed: None,
            current: current.clone(),
            metrics,
        };
        let thread = std::thread::Builder::new()
            .name("tapedeck-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(wal_error)?;
        let wal = Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                spares,
                commands,
                current,
                thread: Mutex::new(Some(thread)),
            }),
        };
        Ok((wal, recovery))
    }

    /// The log's folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The sequence of the segment appends go to.
    pub fn current_segment(&self) -> u64 {
        self.inner.current.load(Ordering::Acquire)
    }

    /// Appends one record and returns once it is durable (written and fsynced, possibly in one
    /// group with concurrent appends). On error nothing of the record may be assumed durable.
    pub async fn append(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.submit(payload)?.await
    }

    /// Queues one record for the log's next group commit and returns at once; the future
    /// resolves as [`Wal::append`] does, once the record is durable. The caller can work
    /// meanwhile (the collector converts the batch to Arrow while the log syncs).
    pub fn submit(
        &self,
        payload: impl Into<Bytes>,
    ) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
        let payload: Bytes = payload.into();
        if u32::try_from(payload.len()).is_err() {
            return Err(Error::BatchTooLarge {
                sequence: 0,
                bytes: payload.len() as u64,
                limit: u64::from(u32::MAX),
            });
        }
        let (ack, done) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Append { payload, ack })
            .map_err(|_| Error::ShuttingDown)?;
        Ok(async move { done.await.map_err(|_| Error::ShuttingDown)? })
    }

    /// Closes the open segment (every append acknowledged before this call is in it or an
    /// earlier one) and starts the next; returns the sequence of the closed segment.
    pub async fn rotate(&self) -> Result<u64> {
        let (ack, done) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Rotate { ack })
            .map_err(|_| Error::ShuttingDown)?;
        done.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Retires the closed segments with a sequence up to `sequence` (never the open one): each
    /// is kept as a spare while there is room for one, else deleted. Returns how many were
    /// retired.
    pub async fn remove_through(&self, sequence: u64) -> Result<usize> {
        let dir = self.inner.dir.clone();
        let spares = self.inner.spares.clone();
        let sequence = sequence.min(self.current_segment().saturating_sub(1));
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for (found, path) in list_segments(&dir)? {
                if found <= sequence {
                    spares.retire(&dir, found, path)?;
                    removed += 1;
                }
            }
            if removed > 0 {
                sync_dir(&dir)?;
            }
            Ok(removed)
        })
        .await
        .map_err(|error| Error::Task {
            what: "removing write-ahead log segments",
            reason: error.to_string(),
        })?
    }

    /// The closed segments on disk with a sequence in `after + 1 ..= through`.
    pub async fn segments_between(&self, after: u64, through: u64) -> Result<Vec<u64>> {
        let dir = self.inner.dir.clone();
        let current = self.current_segment();
        blocking("listing write-ahead log segments", move || {
            Ok(list_segments(&dir)?
                .into_iter()
                .map(|(sequence, _)| sequence)
                .filter(|sequence| (after + 1..=through).contains(sequence) && *sequence < current)
                .collect())
        })
        .await
    }

    /// Makes a flush intent durable (written under a temporary name, fsynced, renamed, and the
    /// folder fsynced), replacing an earlier one of the same segment.
    pub async fn write_intent(&self, intent: FlushIntent) -> Result<()> {
        let dir = self.inner.dir.clone();
        blocking("writing a flush intent", move || {
            write_intent(&dir, &intent)
        })
        .await
    }

    /// Deletes the intent of the flush that closed `segment` (none is fine), durably.
    pub async fn remove_intent(&self, segment: u64) -> Result<()> {
        let dir = self.inner.dir.clone();
        blocking("removing a flush intent", move || {
            remove_if_present(&dir.join(intent_name(segment)))?;
            sync_dir(&dir)
        })
        .await
    }

    /// Stops the writer thread once every queued command is done, if this is the last handle.
    pub fn close(self) {
        if let Ok(inner) = Arc::try_unwrap(self.inner) {
            let Inner {
                commands, thread, ..
            } = inner;
            drop(commands);
            let thread = thread
                .into_inner()
                .unwrap_or_else(|poison| poison.into_inner());
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

/// Reads every batch of a log folder without changing anything: a torn tail of the last segment
/// is skipped (a collector may be writing it right now); a damaged record elsewhere is an error.
/// A missing folder has no batches. Flush intents are not looked at, so after a crash this may
/// include data already in the store; [`read_dir_with_store`] leaves that out.
pub fn read_dir(dir: &Path) -> Result<Vec<ExchangeBatch>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    read_segments(dir, |_, batch| Some(batch))
}

/// Reads every segment of a log folder in order, keeping what `keep` returns for each batch
/// (given the segment's sequence). A torn tail of the last segment is skipped; a damaged record
/// elsewhere is an error naming file and offset.
fn read_segments(
    dir: &Path,
    mut keep: impl FnMut(u64, ExchangeBatch) -> Option<ExchangeBatch>,
) -> Result<Vec<ExchangeBatch>> {
    let segments = list_segments(dir)?;
    let mut batches = Vec::new();
    for (i, (sequence, path)) in segments.iter().enumerate() {
        let end = read_segment(path, *sequence, |batch| {
            batches.extend(keep(*sequence, batch));
            Ok(())
        })?;
        if let SegmentEnd::Damaged { offset, reason, .. } = end
            && i + 1 != segments.len()
        {
            return Err(Error::WalCorrupt {
                path: path.clone(),
                offset,
                reason,
            });
        }
    }
    Ok(batches)
}

/// [`read_dir`] without what is already in the store: the exchanges of a segment listed by a
/// flush intent are skipped when that intent's file of their partition is in `store` (all of
/// them, after a complete flush; some, after one cut short). Changes nothing, and sees exactly
/// what a collector starting on this folder and store would end up with.
pub async fn read_dir_with_store(
    dir: &Path,
    store: &Arc<dyn ObjectStore>,
) -> Result<Vec<ExchangeBatch>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let intents = {
        let dir = dir.to_path_buf();
        blocking("reading flush intents", move || read_intents(&dir)).await?
    };
    // Per segment, the partitions whose data is in the store.
    let mut stored: BTreeMap<u64, BTreeSet<PartitionKey>> = BTreeMap::new();
    for (_, intent) in &intents {
        let mut partitions = BTreeSet::new();
        for (path, partition) in intent.paths() {
            if exists(store, &path).await? {
                partitions.insert(partition);
            }
        }
        for segment in &intent.segments {
            stored
                .entry(*segment)
                .or_default()
                .extend(partitions.iter().cloned());
        }
    }
    let dir = dir.to_path_buf();
    blocking("reading the write-ahead log", move || {
        read_segments(&dir, |sequence, mut batch| {
            if let Some(skip) = stored.get(&sequence) {
                batch
                    .exchanges
                    .retain(|exchange| !skip.contains(&PartitionKey::of(exchange)));
                if batch.exchanges.is_empty() {
                    return None;
                }
            }
            Some(batch)
        })
    })
    .await
}

/// Settles the flush intents a crash left in `dir` against `store` (see the module docs); run
/// it before [`Wal::open`]. Deletes leftover temporary intent files too.
pub async fn resolve_intents(dir: &Path, store: &Arc<dyn ObjectStore>) -> Result<IntentRecovery> {
    let mut report = IntentRecovery::default();
    if !dir.exists() {
        return Ok(report);
    }
    let intents = {
        let dir = dir.to_path_buf();
        blocking("reading flush intents", move || {
            remove_temporary_intents(&dir)?;
            read_intents(&dir)
        })
        .await?
    };
    for (path, intent) in intents {
        let pin = intent.pin.as_deref().map(object_store::path::Path::from);
        if let Some(pin) = &pin
            && !crate::manifest::pin_exists(store, pin).await?
        {
            // The pin is put before the first file and deleted after the segments: without it
            // either no file was put (the segments replay) or the segments are gone (nothing
            // to replay). Either way no file is deleted: other writers may have compacted them.
            let dir = dir.to_path_buf();
            blocking("removing a flush intent", move || {
                remove_if_present(&path)?;
                sync_dir(&dir)
            })
            .await?;
            report.completed += 1;
            continue;
        }
        let mut present = Vec::new();
        let mut missing = 0;
        for (file, _) in intent.paths() {
            if exists(store, &file).await? {
                present.push(file);
            } else {
                missing += 1;
            }
        }
        if missing == 0 {
            let segments_dir = dir.to_path_buf();
            let segments = intent.segments.clone();
            report.segments_removed +=
                blocking("removing flushed write-ahead log segments", move || {
                    let mut removed = 0;
                    for segment in segments {
                        removed += usize::from(remove_if_present(
                            &segments_dir.join(segment_name(segment)),
                        )?);
                    }
                    sync_dir(&segments_dir)?;
                    Ok(removed)
                })
                .await?;
            if let Some(pin) = &pin {
                crate::manifest::remove_pin(store, pin).await?;
            }
            let dir = dir.to_path_buf();
            blocking("removing a flush intent", move || {
                remove_if_present(&path)?;
                sync_dir(&dir)
            })
            .await?;
            report.completed += 1;
            tracing::info!(
                segment = intent.segment,
                files = intent.files.len(),
                "A flush finished before the crash; its log segments are not replayed."
            );
        } else {
            for file in &present {
                match store.delete(file).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if let Some(pin) = &pin {
                crate::manifest::remove_pin(store, pin).await?;
            }
            let dir = dir.to_path_buf();
            blocking("removing a flush intent", move || {
                remove_if_present(&path)?;
                sync_dir(&dir)
            })
            .await?;
            report.partial += 1;
            report.files_removed += present.len();
            tracing::warn!(
                segment = intent.segment,
                written = present.len(),
                missing,
                "A flush was cut short by the crash; deleted the files it wrote, its log segments replay."
            );
        }
    }
    Ok(report)
}

async fn exists(store: &Arc<dyn ObjectStore>, path: &object_store::path::Path) -> Result<bool> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::Task {
            what,
            reason: error.to_string(),
        })?
}

/// Makes a flush intent durable in the log folder `dir` ([`Wal::write_intent`] without a log
/// handle).
pub fn write_intent(dir: &Path, intent: &FlushIntent) -> Result<()> {
    let path = dir.join(intent_name(intent.segment));
    let temp = dir.join(format!("{}{TEMP_SUFFIX}", intent_name(intent.segment)));
    let wal_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Wal { path, source }
    };
    let mut file = File::create(&temp).map_err(wal_error(&temp))?;
    file.write_all(&intent.encode())
        .and_then(|()| file.sync_all())
        .map_err(wal_error(&temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(wal_error(&path))?;
    sync_dir(dir)
}

/// Deletes a file; returns whether it was there.
fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Wal {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Intent files of a folder, by segment.
fn list_intents(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_named(dir, parse_intent_name)
}

/// The files of a folder whose names `parse` reads a sequence from, by sequence.
fn list_named(dir: &Path, parse: fn(&str) -> Option<u64>) -> Result<Vec<(u64, PathBuf)>> {
    let wal_error = |source| Error::Wal {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(wal_error)? {
        let entry = entry.map_err(wal_error)?;
        if let Some(sequence) = entry.file_name().to_str().and_then(parse) {
            found.push((sequence, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The intents of a folder, by segment.
fn read_intents(dir: &Path) -> Result<Vec<(PathBuf, FlushIntent)>> {
    list_intents(dir)?
        .into_iter()
        .map(|(_, path)| {
            let bytes = fs::read(&path).map_err(|source| Error::Wal {
                path: path.clone(),
                source,
            })?;
            let intent = FlushIntent::decode(&path, &bytes)?;
            Ok((path, intent))
        })
        .collect()
}

/// Deletes intents whose writing a crash cut short (their flush had not put anything yet).
fn remove_temporary_intents(dir: &Path) -> Result<()> {
    let temporary = list_named(dir, |name| {
        parse_intent_name(name.strip_suffix(TEMP_SUFFIX)?)
    })?;
    remove_all(dir, temporary.into_iter().map(|(_, path)| path))
}

/// Deletes `paths` of folder `dir`, then fsyncs the folder if any was there.
fn remove_all(dir: &Path, paths: impl IntoIterator<Item = PathBuf>) -> Result<()> {
    let mut removed = false;
    for path in paths {
        removed |= remove_if_present(&path)?;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Segment files of a folder, by sequence.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    list_named(dir, parse_segment_name)
}

enum SegmentEnd {
    /// Every byte is a good record.
    Clean,
    /// A damaged record starts at `offset` of a file of `len` bytes.
    Damaged {
        offset: u64,
        len: u64,
        reason: String,
    },
}

/// Reads segment `sequence`'s records in order until its end or the first damaged record.
fn read_segment(
    path: &Path,
    sequence: u64,
    mut on_batch: impl FnMut(ExchangeBatch) -> Result<()>,
) -> Result<SegmentEnd> {
    let wal_error = |source| Error::Wal {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(wal_error)?;
    let len = file.metadata().map_err(wal_error)?.len();
    let mut reader = BufReader::with_capacity(1024 * 1024, file);
    // A segment with a header checksums its records with its sequence; one without (written
    // before headers existed) has records from offset 0, checksummed alone.
    let mut offset = 0u64;
    let mut checked_sequence = None;
    if len >= SEGMENT_HEADER_BYTES as u64 {
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        reader.read_exact(&mut header).map_err(wal_error)?;
        if header[..8] == SEGMENT_MAGIC {
            let named = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
            if named != sequence {
                return Ok(SegmentEnd::Damaged {
                    offset: 0,
                    len,
                    reason: format!(
                        "the header names segment {named}: a reused file whose new header was \
                         never written"
                    ),
                });
            }
            offset = SEGMENT_HEADER_BYTES as u64;
            checked_sequence = Some(sequence);
        } else {
            reader
                .seek_relative(-(SEGMENT_HEADER_BYTES as i64))
                .map_err(wal_error)?;
        }
    }
    let mut payload = Vec::new();
    loop {
        if offset == len {
            return Ok(SegmentEnd::Clean);
        }
        let damaged = |reason: String| {
            Ok(SegmentEnd::Damaged {
                offset,
                len,
                reason,
            })
        };
        let remaining = len - offset;
        if remaining < RECORD_HEADER_BYTES as u64 {
            return damaged(format!(
                "record header cut short: {remaining} of {RECORD_HEADER_BYTES} bytes"
            ));
        }
        let mut header = [0u8; RECORD_HEADER_BYTES];
        reader.read_exact(&mut header).map_err(wal_error)?;
        let [l0, l1, l2, l3, c0, c1, c2, c3] = header;
        let size = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let available = remaining - RECORD_HEADER_BYTES as u64;
        if u64::from(size) > available {
            return damaged(format!(
                "record of {size} bytes runs past the end of the file ({available} bytes left)"
            ));
        }
        payload.resize(size as usize, 0);
        reader.read_exact(&mut payload).map_err(wal_error)?;
        let actual = record_checksum(checked_sequence, &payload);
        if actual != crc {
            return damaged(format!(
                "checksum mismatch: recorded {crc:08x}, computed {actual:08x}"
            ));
        }
        let batch =
            ExchangeBatch::decode(payload.as_slice()).map_err(|error| Error::WalCorrupt {
                path: path.to_path_buf(),
                offset,
                reason: format!("record is not an ExchangeBatch: {error}"),
            })?;
        on_batch(batch)?;
        offset += RECORD_HEADER_BYTES as u64 + u64::from(size);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| Error::Wal {
            path: dir.to_path_buf(),
            source,
        })
}

/// The open segment.
struct Segment {
    path: PathBuf,
    sequence: u64,
    file: File,
    /// Bytes of the header and the good records.
    len: u64,
    /// Bytes of the file: more than `len` in a reused file until it is written past its end.
    size: u64,
    /// Whether the file was a spare.
    reused: bool,
}

impl Segment {
    /// Starts segment `sequence` in a spare if there is one, else in a new file; its header is
    /// durable, and the folder too, when this returns.
    fn create(dir: &Path, sequence: u64, spares: &Spares) -> Result<Self> {
        let path = dir.join(segment_name(sequence));
        let wal_error = |source| Error::Wal {
            path: path.clone(),
            source,
        };
        let mut reused = None;
        if let Some(spare) = spares.take() {
            match fs::rename(&spare, &path) {
                Ok(()) => reused = Some(OpenOptions::new().write(true).open(&path)),
                Err(error) => tracing::warn!(
                    %error,
                    spare = %spare.display(),
                    "Could not reuse a spare write-ahead log file; starting a new one."
                ),
            }
        }
        let was_reused = reused.is_some();
        let mut file = match reused {
            Some(opened) => opened,
            None => OpenOptions::new().create_new(true).write(true).open(&path),
        }
        .map_err(wal_error)?;
        sync_dir(dir)?;
        let size = file.metadata().map_err(wal_error)?.len();
        file.write_all(&segment_header(sequence))
            .and_then(|()| file.sync_data())
            .map_err(wal_error)?;
        let len = SEGMENT_HEADER_BYTES as u64;
        Ok(Self {
            path,
            sequence,
            file,
            len,
            size: size.max(len),
            reused: was_reused,
        })
    }
}

/// Retired segment files kept to be written over (see the module docs), shared by the writer
/// thread, which takes them, and [`Wal::remove_through`], which gives them.
#[derive(Debug, Default)]
struct Spares(Mutex<Vec<PathBuf>>);

impl Spares {
    /// The spares in `dir`: the [`MAX_SPARES`] latest are kept, any others deleted. Also
    /// returns the highest sequence a spare had.
    fn load(dir: &Path) -> Result<(Self, Option<u64>)> {
        let mut found = list_named(dir, parse_spare_name)?;
        let latest = found.last().map(|(sequence, _)| *sequence);
        let extra = found.len().saturating_sub(MAX_SPARES);
        remove_all(dir, found.drain(..extra).map(|(_, path)| path))?;
        let spares = Self(Mutex::new(
            found.into_iter().map(|(_, path)| path).collect(),
        ));
        Ok((spares, latest))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn take(&self) -> Option<PathBuf> {
        self.lock().pop()
    }

    /// Retires segment file `path` (sequence `sequence`): kept as a spare while there is room,
    /// else deleted. The caller fsyncs the folder.
    fn retire(&self, dir: &Path, sequence: u64, path: PathBuf) -> Result<()> {
        let mut spares = self.lock();
        if spares.len() < MAX_SPARES {
            let spare = dir.join(spare_name(sequence));
            fs::rename(&path, &spare).map_err(|source| Error::Wal { path, source })?;
            spares.push(spare);
            Ok(())
        } else {
            fs::remove_file(&path).map_err(|source| Error::Wal { path, source })
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    segment: Segment,
    spares: Arc<Spares>,
    /// Why appends are refused, after a failed write.
    failed: Option<String>,
    current: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut group: Vec<(Bytes, oneshot::Sender<Result<()>>)> = Vec::new();
        while let Some(first) = commands.blocking_recv() {
            let mut next = Some(first);
            let mut group_bytes = 0;
            while let Some(command) = next.take() {
                match command {
                    Command::Append { payload, ack } => {
                        group_bytes += payload.len();
                        group.push((payload, ack));
                    }
                    Command::Rotate { ack } => {
                        self.commit(&mut group);
                        let _ = ack.send(self.rotate());
                    }
                }
                if group_bytes < MAX_GROUP_BYTES {
                    next = commands.try_recv().ok();
                }
            }
            self.commit(&mut group);
        }
    }

    /// Writes and fsyncs a group of appends, then answers them.
    fn commit(&mut self, group: &mut Vec<(Bytes, oneshot::Sender<Result<()>>)>) {
        if group.is_empty() {
            return;
        }
        if let Some(reason) = &self.failed {
            for (_, ack) in group.drain(..) {
                let _ = ack.send(Err(Error::WalFailed {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        let started = Instant::now();
        // Each payload is written from where it was received: headers and payloads go to
        // the kernel as one `writev` list, not copied into one buffer first.
        let headers: Vec<[u8; RECORD_HEADER_BYTES]> = group
            .iter()
            .map(|(payload, _)| record_header(Some(self.segment.sequence), payload))
            .collect();
        let mut slices: Vec<io::IoSlice<'_>> = group
            .iter()
            .zip(&headers)
            .flat_map(|((payload, _), header)| {
                [io::IoSlice::new(header), io::IoSlice::new(payload)]
            })
            .collect();
        let bytes = group
            .iter()
            .map(|(payload, _)| payload.len() + RECORD_HEADER_BYTES)
            .sum::<usize>() as u64;
        let written = write_all_vectored(&mut self.segment.file, &mut slices)
            .and_then(|()| self.segment.file.sync_data());
        drop(slices);
        match written {
            Ok(()) => {
                self.segment.len += bytes;
                self.segment.size = self.segment.size.max(self.segment.len);
                self.metrics.wal_fsyncs.inc();
                self.metrics
                    .wal_fsync_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.wal_group_size.observe(group.len() as f64);
                self.metrics.wal_bytes.inc_by(bytes);
                for (_, ack) in group.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    path = %self.segment.path.display(),
                    "Write-ahead log write failed; refusing appends until the next rotation."
                );
                // Best effort: cut the partial write so that the segment stays readable.
                let _ = self.segment.file.set_len(self.segment.len);
                self.failed = Some(error.to_string());
                for (_, ack) in group.drain(..) {
                    let _ = ack.send(Err(Error::Wal {
                        path: self.segment.path.clone(),
                        source: io::Error::new(error.kind(), error.to_string()),
                    }));
                }
            }
        }
    }

    fn rotate(&mut self) -> Result<u64> {
        let closed = self.segment.sequence;
        // A closed segment holds its records and nothing else: the rest of a reused file (or
        // of a failed write) is cut, durably, before the next segment starts.
        if self.failed.is_some() || self.segment.size > self.segment.len {
            self.segment
                .file
                .set_len(self.segment.len)
                .and_then(|()| self.segment.file.sync_all())
                .map_err(|source| Error::Wal {
                    path: self.segment.path.clone(),
                    source,
                })?;
            self.segment.size = self.segment.len;
        }
        self.segment = Segment::create(&self.dir, closed + 1, &self.spares)?;
        if self.segment.reused {
            self.metrics.wal_segments_reused.inc();
        }
        self.current.store(closed + 1, Ordering::Release);
        if self.failed.take().is_some() {
            tracing::info!(
                segment = closed + 1,
                "Write-ahead log accepts appends again."
            );
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests;
