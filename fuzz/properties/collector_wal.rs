//! Property of the `collector_wal` fuzz target, shared with its stable smoke test
//! (`collector/tests/lib/fuzz_smoke.rs` includes this file).
//!
//! The fuzzed bytes describe a write-ahead log folder as a crash or a damaged disk may leave it:
//! segments of intact records (each a distinct `ExchangeBatch`) then cut short, with a byte
//! changed, zeroed or with bytes appended, or segments of arbitrary bytes; segments with a
//! header or without (the format before headers), with records of a reused file's former
//! life after their own, or still carrying a former header; spare files (retired segments);
//! and possibly a flush intent (a valid one whose files are all, some or none in the store, an
//! arbitrary one, or a temporary one). The collector's own start-up runs on it:
//! `wal::resolve_intents` against an in-memory store, then `Wal::open`. Checked against a model
//! of the documented format (a 16-byte header of magic and sequence, then records
//! `[u32 LE length][u32 LE CRC-32 of sequence and payload][payload]`, or, without the header,
//! records checksummed over the payload alone; a header naming another segment, or a damaged
//! record, ends the last segment; anywhere else it is an error; a checksummed record that is
//! not an `ExchangeBatch` is an error):
//! - nothing panics;
//! - a corrupt intent is an error and deletes nothing; a settled intent is gone afterwards, the
//!   segments of a complete flush are deleted unreplayed, the files of a partial one deleted;
//! - `Wal::open` fails exactly when the model says the log is damaged beyond a torn tail, and
//!   then changes no file; otherwise it replays exactly the intact records, in order, and cuts
//!   the last segment at its first damaged record;
//! - a second start on what the first left replays the same batches with no error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use tapedeck_collector::layout::{FileName, PartitionKey};
use tapedeck_collector::metrics::Metrics;
use tapedeck_collector::wal::{self, FlushIntent, Wal};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{Exchange, ExchangeBatch};

/// Reads the fuzzed bytes as a plan; past the end every byte is 0.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn u16(&mut self) -> usize {
        (usize::from(self.byte()) << 8) | usize::from(self.byte())
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

fn batch(sequence: u64, size: u8) -> ExchangeBatch {
    ExchangeBatch {
        exchanges: (0..=u64::from(size % 3))
            .map(|i| Exchange {
                id: vec![(sequence * 4 + i) as u8; 16],
                workload: "orders".into(),
                start_unix_nanos: 1_764_460_800_000_000_000,
                path: format!("/orders/{sequence}/{i}{}", "x".repeat(usize::from(size))),
                ..Default::default()
            })
            .collect(),
        sequence,
        ..Default::default()
    }
}

/// What the documented format says a segment's bytes hold.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// The batches of its records, up to its end or its first damaged record (at `torn`).
    Records {
        batches: Vec<ExchangeBatch>,
        torn: Option<u64>,
    },
    /// A record with a good checksum that is not an `ExchangeBatch`.
    NotABatch,
}

/// The model: the segment format of `collector/src/wal.rs`'s module docs, read independently,
/// for the segment named `sequence`.
fn parse(sequence: u64, bytes: &[u8]) -> Parsed {
    let mut batches = Vec::new();
    let mut at = 0usize;
    let mut seed: Vec<u8> = Vec::new();
    if bytes.len() >= 16 && bytes[..8] == *b"tdwal\x002\n" {
        if bytes[8..16] != sequence.to_le_bytes() {
            return Parsed::Records {
                batches,
                torn: Some(0),
            };
        }
        at = 16;
        seed = sequence.to_le_bytes().to_vec();
    }
    while at < bytes.len() {
        let torn = Some(at as u64);
        let Some(header) = bytes.get(at..at + 8) else {
            return Parsed::Records { batches, torn };
        };
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            return Parsed::Records { batches, torn };
        };
        if crc32fast::hash(&[&seed[..], payload].concat()) != crc {
            return Parsed::Records { batches, torn };
        }
        match ExchangeBatch::decode(payload) {
            Ok(batch) => batches.push(batch),
            Err(_) => return Parsed::NotABatch,
        }
        at += 8 + len;
    }
    Parsed::Records {
        batches,
        torn: None,
    }
}

/// Name, length and contents of every file of a folder.
fn listing(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("listing the log folder")
        .map(|entry| {
            let entry = entry.expect("a folder entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("reading a log file"),
            )
        })
        .collect()
}

fn store_paths(runtime: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt as _;
    let mut paths: Vec<String> = runtime
        .block_on(
            store
                .list(None)
                .map_ok(|meta| meta.location.to_string())
                .try_collect::<Vec<_>>(),
        )
        .expect("listing the in-memory store");
    paths.sort();
    paths
}

fn open(dir: &Path) -> tapedeck_collector::Result<Vec<ExchangeBatch>> {
    let mut replayed = Vec::new();
    let (log, _) = Wal::open(dir, Arc::new(Metrics::new()), |batch| {
        replayed.push(batch);
        Ok(())
    })?;
    log.close();
    Ok(replayed)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A temporary folder, in memory where the machine has one (the log fsyncs a lot).
fn temp_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("a temp dir")
}

/// The property; panics when it does not hold. Returns whether the log replayed (rather than
/// being refused at an intent or a damaged record).
pub(crate) fn check(data: &[u8]) -> bool {
    let runtime = runtime();
    let temp = temp_dir();
    let dir = temp.path().join("wal");
    std::fs::create_dir(&dir).expect("creating the log folder");
    let mut input = Cursor(data);

    // Segments, in order; what each holds.
    let mut segments: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut sequence = 0u64;
    let mut next_batch = 1u64;
    for _ in 0..=input.byte() % 3 {
        sequence += 1 + u64::from(input.byte() % 3);
        let kind = input.byte();
        let mut bytes = Vec::new();
        if kind.is_multiple_of(5) {
            let n = usize::from(input.byte()) * 2;
            bytes = input.bytes(n);
        } else {
            // Without a header (the earlier format), with one, with one and records of an
            // earlier segment after its own (a reused file), or with an earlier segment's
            // header (a reused file renamed before its header was written).
            let layout = input.byte() % 4;
            let framed_as = if layout == 3 {
                sequence.saturating_sub(1 + u64::from(input.byte() % 4))
            } else {
                sequence
            };
            if layout != 0 {
                bytes.extend_from_slice(&wal::segment_header(framed_as));
            }
            let encode = |sequence: u64, payload: &[u8], bytes: &mut Vec<u8>| {
                if layout == 0 {
                    wal::encode_record(payload, bytes);
                } else {
                    wal::encode_segment_record(sequence, payload, bytes);
                }
            };
            for _ in 0..=kind % 4 {
                let size = input.byte();
                encode(
                    framed_as,
                    &batch(next_batch, size).encode_to_vec(),
                    &mut bytes,
                );
                next_batch += 1;
            }
            if layout == 2 {
                for _ in 0..=input.byte() % 3 {
                    let size = input.byte();
                    let former = sequence.saturating_sub(1 + u64::from(input.byte() % 4));
                    encode(former, &batch(next_batch, size).encode_to_vec(), &mut bytes);
                    next_batch += 1;
                }
            }
            match input.byte() % 6 {
                0 | 1 => {}
                2 => {
                    let at = input.u16() % (bytes.len() + 1);
                    bytes.truncate(at);
                }
                3 => {
                    let at = input.u16() % bytes.len().max(1);
                    let xor = input.byte().max(1);
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte ^= xor;
                    }
                }
                4 => {
                    let n = usize::from(input.byte() % 32);
                    bytes.extend(input.bytes(n));
                }
                _ => {
                    let at = input.u16() % (bytes.len() + 1);
                    let n = usize::from(input.byte());
                    let end = (at + n).min(bytes.len());
                    bytes[at..end].fill(0);
                }
            }
        }
        std::fs::write(dir.join(wal::segment_name(sequence)), &bytes).expect("writing a segment");
        segments.push((sequence, bytes));
    }
    // Spare files, perhaps more than are kept: segments retired to be written over, each with
    // the header and records of a sequence before every segment's, perhaps cut short.
    for _ in 0..input.byte() % 4 {
        let former = u64::from(input.byte()) % segments[0].0;
        let mut bytes = wal::segment_header(former).to_vec();
        for _ in 0..=input.byte() % 3 {
            let size = input.byte();
            wal::encode_segment_record(
                former,
                &batch(next_batch, size).encode_to_vec(),
                &mut bytes,
            );
            next_batch += 1;
        }
        let at = input.u16() % (bytes.len() + 1);
        bytes.truncate(at.max(1));
        std::fs::write(dir.join(wal::spare_name(former)), &bytes).expect("writing a spare");
    }

    // A flush intent, perhaps.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut valid_intent: Option<(FlushIntent, bool)> = None;
    let mut arbitrary_intent: Option<Vec<u8>> = None;
    match input.byte() % 5 {
        0 | 1 => {}
        2 => {
            let (last, _) = segments[segments.len() - 1];
            let listed = input.byte();
            let covered: Vec<u64> = segments
                .iter()
                .enumerate()
                .filter(|(i, _)| listed & (1 << i) != 0)
                .map(|(_, (s, _))| *s)
                .collect();
            let present = input.byte();
            let files: Vec<String> = (0..=u64::from(present % 3))
                .map(|i| {
                    let key = PartitionKey {
                        service: format!("s{i}"),
                        date: "2025-12-01".into(),
                        hour: "00".into(),
                    };
                    key.file(&FileName::flushed(7, last)).to_string()
                })
                .collect();
            let mut all_present = true;
            for (i, file) in files.iter().enumerate() {
                if present & (0x10 << i) != 0 {
                    runtime
                        .block_on(store.put(&StorePath::from(file.as_str()), vec![1u8].into()))
                        .expect("putting a data file");
                } else {
                    all_present = false;
                }
            }
            let intent = FlushIntent {
                segment: last,
                segments: covered,
                files,
                pin: None,
            };
            wal::write_intent(&dir, &intent).expect("writing an intent");
            valid_intent = Some((intent, all_present));
        }
        3 => {
            // Arbitrary bytes, or an arbitrary payload framed as a record (so that the JSON and
            // its checks are reached).
            let framed = input.byte().is_multiple_of(2);
            let n = usize::from(input.byte());
            let name = wal::intent_name(segments[input.byte() as usize % segments.len()].0);
            let payload = input.bytes(n);
            let mut bytes = Vec::new();
            if framed {
                wal::encode_record(&payload, &mut bytes);
            } else {
                bytes = payload;
            }
            std::fs::write(dir.join(name), &bytes).expect("writing an intent");
            arbitrary_intent = Some(bytes);
        }
        _ => {
            let n = usize::from(input.byte());
            let name = format!("{}.tmp", wal::intent_name(u64::from(input.byte())));
            std::fs::write(dir.join(name), input.bytes(n)).expect("writing an intent");
        }
    }

    // Start-up, step 1: settle intents.
    let before = listing(&dir);
    let store_before = store_paths(runtime, &store);
    let resolved = runtime.block_on(wal::resolve_intents(&dir, &store));
    let after_intents = listing(&dir);
    let is_intent = |name: &String| name.starts_with("flush-") && name.ends_with(".intent");
    if resolved.is_err() {
        let unchanged = |files: &BTreeMap<String, Vec<u8>>| {
            files
                .iter()
                .filter(|(name, _)| !name.ends_with(".tmp"))
                .map(|(n, b)| (n.clone(), b.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            unchanged(&after_intents),
            unchanged(&before),
            "a corrupt intent deleted files"
        );
        assert_eq!(
            store_paths(runtime, &store),
            store_before,
            "a corrupt intent changed the store"
        );
        assert!(
            valid_intent.is_none(),
            "a valid intent was refused: {resolved:?}"
        );
        return false;
    }
    assert!(
        !after_intents
            .keys()
            .any(|name| is_intent(name) || name.ends_with(".tmp")),
        "an intent is left after it was settled: {:?}",
        after_intents.keys()
    );
    let mut removed_segments = Vec::new();
    if let Some(bytes) = &arbitrary_intent {
        // Accepted: it must be a record of a JSON intent; whatever it deleted, it listed.
        let listed: FlushIntent = bytes
            .get(wal::RECORD_HEADER_BYTES..)
            .and_then(|json| serde_json::from_slice(json).ok())
            .expect("an accepted intent is a JSON intent");
        removed_segments = segments
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| !after_intents.contains_key(&wal::segment_name(*s)))
            .collect();
        assert!(
            removed_segments.iter().all(|s| listed.segments.contains(s)),
            "an intent deleted segments it does not list"
        );
    }
    if let Some((intent, all_present)) = &valid_intent {
        if *all_present {
            removed_segments = intent.segments.clone();
            assert_eq!(
                store_paths(runtime, &store),
                store_before,
                "a complete flush lost files"
            );
        } else {
            assert!(
                store_paths(runtime, &store).is_empty(),
                "the files of a flush cut short were left in the store"
            );
        }
    }
    for (sequence, _) in &segments {
        assert_eq!(
            after_intents.contains_key(&wal::segment_name(*sequence)),
            !removed_segments.contains(sequence),
            "segment {sequence} deleted or kept against its intent"
        );
    }

    // Start-up, step 2: replay.
    let kept: Vec<&(u64, Vec<u8>)> = segments
        .iter()
        .filter(|(s, _)| !removed_segments.contains(s))
        .collect();
    let mut expected = Vec::new();
    let mut damaged = false;
    let mut torn_tail = None;
    for (i, (sequence, bytes)) in kept.iter().enumerate() {
        match parse(*sequence, bytes) {
            Parsed::NotABatch => damaged = true,
            Parsed::Records { batches, torn } => {
                expected.extend(batches);
                if let Some(offset) = torn {
                    if i + 1 == kept.len() {
                        torn_tail = Some((*sequence, offset));
                    } else {
                        damaged = true;
                    }
                }
            }
        }
        if damaged {
            break;
        }
    }
    let replayed = open(&dir);
    match replayed {
        Err(error) => {
            assert!(
                damaged,
                "recovery refused a log with only a torn tail: {error}"
            );
            assert_eq!(
                listing(&dir),
                after_intents,
                "a refused recovery changed files"
            );
            false
        }
        Ok(replayed) => {
            assert!(!damaged, "recovery accepted a log damaged before its tail");
            assert_eq!(
                replayed, expected,
                "recovery replayed other than the intact records"
            );
            if let Some((sequence, offset)) = torn_tail {
                let len = std::fs::metadata(dir.join(wal::segment_name(sequence)))
                    .expect("the torn segment is kept")
                    .len();
                assert_eq!(
                    len, offset,
                    "the torn tail was not cut at its first damaged record"
                );
            }
            let again = open(&dir).expect("a second start after recovery");
            assert_eq!(again, replayed, "a second start replayed other batches");
            true
        }
    }
}
