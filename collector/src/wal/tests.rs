use std::time::Duration;

use tapedeck_proto::Exchange;

use super::*;

fn batch(sequence: u64) -> ExchangeBatch {
    ExchangeBatch {
        exchanges: vec![Exchange {
            id: vec![sequence as u8; 16],
            path: format!("/orders/{sequence}"),
            ..Default::default()
        }],
        sequence,
        ..Default::default()
    }
}

fn open(dir: &Path) -> Result<(Wal, Vec<ExchangeBatch>, Recovery)> {
    let mut replayed = Vec::new();
    let (wal, recovery) = Wal::open(dir, Arc::new(Metrics::new()), |batch| {
        replayed.push(batch);
        Ok(())
    })?;
    Ok((wal, replayed, recovery))
}

fn sequences(batches: &[ExchangeBatch]) -> Vec<u64> {
    batches.iter().map(|batch| batch.sequence).collect()
}

async fn append(wal: &Wal, sequence: u64) {
    tokio::time::timeout(
        Duration::from_secs(10),
        wal.append(batch(sequence).encode_to_vec()),
    )
    .await
    .expect("append finishes")
    .expect("append succeeds");
}

fn segment(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(segment_name(sequence))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_acks_concurrent_appends_with_fewer_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (wal, _) = Wal::open(dir.path(), metrics.clone(), |_| Ok(())).unwrap();
    const APPENDS: u64 = 200;
    let tasks: Vec<_> = (1..=APPENDS)
        .map(|sequence| {
            let wal = wal.clone();
            tokio::spawn(async move { append(&wal, sequence).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let fsyncs = metrics.wal_fsyncs.get();
    assert!(
        (1..APPENDS).contains(&fsyncs),
        "{fsyncs} fsyncs for {APPENDS} appends"
    );
    let mut recorded = sequences(&read_dir(dir.path()).unwrap());
    recorded.sort();
    assert_eq!(recorded, (1..=APPENDS).collect::<Vec<_>>());
}

#[tokio::test]
async fn recovery_drops_a_torn_tail_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replayed, recovery) = open(dir.path()).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(recovery.last_segment, None);
    assert_eq!(wal.current_segment(), 1);
    for sequence in 1..=3 {
        append(&wal, sequence).await;
    }
    wal.close();
    let path = segment(dir.path(), 1);
    let full = fs::metadata(&path).unwrap().len();
    let third = (batch(3).encode_to_vec().len() + RECORD_HEADER_BYTES) as u64;
    let good = full - third;
    // A crash in the middle of writing the third record.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(good + 5)
        .unwrap();

    let (wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [1, 2]);
    assert_eq!(recovery.records, 2);
    assert_eq!(recovery.truncated, Some((path.clone(), good, 5)));
    assert_eq!(fs::metadata(&path).unwrap().len(), good);
    // New appends go to a new segment; the next recovery sees both.
    assert_eq!(wal.current_segment(), 2);
    append(&wal, 4).await;
    wal.close();
    let (_wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [1, 2, 4]);
    assert_eq!(recovery.truncated, None);
    assert_eq!(recovery.last_segment, Some(2));
}

#[tokio::test]
async fn a_damaged_record_before_the_last_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    append(&wal, 1).await;
    append(&wal, 2).await;
    assert_eq!(wal.rotate().await.unwrap(), 1);
    append(&wal, 3).await;
    wal.close();
    let path = segment(dir.path(), 1);
    let mut bytes = fs::read(&path).unwrap();
    let second = SEGMENT_HEADER_BYTES + batch(1).encode_to_vec().len() + RECORD_HEADER_BYTES;
    // Flip a payload byte of the second record.
    bytes[second + RECORD_HEADER_BYTES + 2] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let error = open(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, Error::WalCorrupt { path: p, offset, .. } if *p == path && *offset == second as u64),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}, offset {second}", path.display())),
        "{message}"
    );
    assert!(message.contains("checksum mismatch"), "{message}");
    // Nothing was deleted or cut, and no segment was started.
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert!(segment(dir.path(), 2).exists());
    assert!(!segment(dir.path(), 3).exists());
    let error = read_dir(dir.path()).unwrap_err().to_string();
    assert!(error.contains("checksum mismatch"), "{error}");
}

#[tokio::test]
async fn read_dir_reads_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    append(&wal, 1).await;
    wal.rotate().await.unwrap();
    append(&wal, 2).await;
    append(&wal, 3).await;
    wal.close();
    let path = segment(dir.path(), 2);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let before = snapshot(dir.path());

    let batches = read_dir(dir.path()).unwrap();
    assert_eq!(sequences(&batches), [1, 2]);
    assert_eq!(batches[0], batch(1));
    assert_eq!(snapshot(dir.path()), before);
    assert!(read_dir(&dir.path().join("missing")).unwrap().is_empty());
}

/// Names, sizes, contents and modification times of a folder's files.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path()).unwrap(),
                metadata.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn remove_through_deletes_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    append(&wal, 1).await;
    assert_eq!(wal.rotate().await.unwrap(), 1);
    append(&wal, 2).await;
    assert_eq!(wal.rotate().await.unwrap(), 2);
    append(&wal, 3).await;
    assert_eq!(wal.remove_through(1).await.unwrap(), 1);
    assert_eq!(sequences(&read_dir(dir.path()).unwrap()), [2, 3]);
    // The open segment is never removed.
    assert_eq!(wal.remove_through(u64::MAX).await.unwrap(), 1);
    assert_eq!(sequences(&read_dir(dir.path()).unwrap()), [3]);
    assert!(segment(dir.path(), 3).exists());
    // Both retired files are kept as spares.
    assert_eq!(
        names(dir.path(), SPARE_SUFFIX),
        [spare_name(1), spare_name(2)]
    );
}

/// The names of a folder's files that end in `suffix`, sorted.
fn names(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// The bytes of batch `sequence`'s record.
fn record_bytes(sequence: u64) -> u64 {
    (batch(sequence).encode_to_vec().len() + RECORD_HEADER_BYTES) as u64
}

#[tokio::test]
async fn a_reused_file_replays_only_its_own_records_and_is_cut_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (wal, _) = Wal::open(dir.path(), metrics.clone(), |_| Ok(())).unwrap();
    for sequence in 1..=6 {
        append(&wal, sequence).await;
    }
    assert_eq!(wal.rotate().await.unwrap(), 1);
    append(&wal, 7).await;
    // Segment 1's data is in Parquet: its file becomes a spare, and the next segment starts in
    // it, written over from the start.
    assert_eq!(wal.remove_through(1).await.unwrap(), 1);
    assert!(!segment(dir.path(), 1).exists());
    let spare_size = len(&dir.path().join(spare_name(1)));
    assert_eq!(wal.rotate().await.unwrap(), 2);
    assert_eq!(metrics.wal_segments_reused.get(), 1);
    assert!(!dir.path().join(spare_name(1)).exists());
    let third = segment(dir.path(), 3);
    assert_eq!(
        len(&third),
        spare_size,
        "the file was reused, not recreated"
    );
    append(&wal, 8).await;
    // Records 2..=6 of the file's former life are still in it, past record 8; they are not
    // segment 3's records.
    let own = SEGMENT_HEADER_BYTES as u64 + record_bytes(8);
    assert!(len(&third) > own + record_bytes(6));
    assert_eq!(sequences(&read_dir(dir.path()).unwrap()), [7, 8]);
    wal.close();

    // A crash now: recovery replays 7 and 8 and cuts the rest of the reused file.
    let (wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [7, 8]);
    assert_eq!(
        recovery.truncated,
        Some((third.clone(), own, spare_size - own))
    );
    assert_eq!(len(&third), own);
    append(&wal, 9).await;
    wal.close();
    let (_wal, replayed, _) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [7, 8, 9]);
}

#[tokio::test]
async fn closing_a_reused_segment_leaves_only_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    for sequence in 1..=6 {
        append(&wal, sequence).await;
    }
    wal.rotate().await.unwrap();
    wal.remove_through(1).await.unwrap();
    wal.rotate().await.unwrap();
    append(&wal, 7).await;
    // Segment 3, in segment 1's file, is closed: it must hold nothing else, or the segment
    // before the last would read as damaged.
    assert_eq!(wal.rotate().await.unwrap(), 3);
    assert_eq!(
        len(&segment(dir.path(), 3)),
        SEGMENT_HEADER_BYTES as u64 + record_bytes(7)
    );
    append(&wal, 8).await;
    wal.close();
    let (_wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [7, 8]);
    assert_eq!(recovery.truncated, None);
}

#[tokio::test]
async fn a_spare_renamed_before_its_header_was_written_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    for sequence in 1..=3 {
        append(&wal, sequence).await;
    }
    wal.rotate().await.unwrap();
    append(&wal, 4).await;
    wal.remove_through(1).await.unwrap();
    wal.close();
    // A crash between the rename that made the spare segment 3 and its header's fsync: the
    // file still starts with segment 1's header, and its records check under sequence 1.
    let third = segment(dir.path(), 3);
    fs::rename(dir.path().join(spare_name(1)), &third).unwrap();
    let size = len(&third);
    // Read-only: nothing of it, and no error.
    assert_eq!(sequences(&read_dir(dir.path()).unwrap()), [4]);
    let (_wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [4]);
    assert_eq!(recovery.truncated, Some((third.clone(), 0, size)));
}

#[tokio::test]
async fn segments_without_a_header_are_read_as_before() {
    let dir = tempfile::tempdir().unwrap();
    // Written by a collector from before segment headers: two records and a torn third.
    let mut bytes = Vec::new();
    for sequence in 1..=3 {
        encode_record(&batch(sequence).encode_to_vec(), &mut bytes);
    }
    let good = bytes.len() as u64 - record_bytes(3);
    bytes.truncate(good as usize + 3);
    fs::write(segment(dir.path(), 1), &bytes).unwrap();
    let (wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [1, 2]);
    assert_eq!(recovery.truncated, Some((segment(dir.path(), 1), good, 3)));
    append(&wal, 4).await;
    wal.close();
    let (_wal, replayed, recovery) = open(dir.path()).unwrap();
    assert_eq!(sequences(&replayed), [1, 2, 4]);
    assert_eq!(recovery.truncated, None);
    // The new segment has a header, and its record is checked with the sequence.
    let second = fs::read(segment(dir.path(), 2)).unwrap();
    let mut expected = segment_header(2).to_vec();
    encode_segment_record(2, &batch(4).encode_to_vec(), &mut expected);
    assert_eq!(second, expected);
    let mut headerless = Vec::new();
    encode_record(&batch(4).encode_to_vec(), &mut headerless);
    assert_ne!(second[SEGMENT_HEADER_BYTES..], headerless[..]);
}

#[tokio::test]
async fn no_more_spares_are_kept_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    for sequence in 1..=4 {
        append(&wal, sequence).await;
        wal.rotate().await.unwrap();
    }
    assert_eq!(wal.remove_through(4).await.unwrap(), 4);
    assert_eq!(names(dir.path(), SPARE_SUFFIX).len(), MAX_SPARES);
    assert_eq!(names(dir.path(), SEGMENT_SUFFIX), [segment_name(5)]);
    wal.close();
    // Spares left by another run beyond the limit are deleted at start, the latest kept.
    for sequence in [20, 21, 22] {
        fs::write(dir.path().join(spare_name(sequence)), b"old").unwrap();
    }
    let (_wal, replayed, _) = open(dir.path()).unwrap();
    assert!(replayed.is_empty());
    // The next segment started in the latest spare, numbered above every spare (23, not 6),
    // and one spare of the limit is left.
    assert_eq!(names(dir.path(), SPARE_SUFFIX), [spare_name(21)]);
    assert_eq!(
        names(dir.path(), SEGMENT_SUFFIX),
        [segment_name(5), segment_name(23)]
    );
    assert_eq!(len(&segment(dir.path(), 23)), SEGMENT_HEADER_BYTES as u64);
}

#[test]
fn segment_names_sort_by_sequence() {
    assert_eq!(segment_name(42), "00000000000000000042.wal");
    assert_eq!(parse_segment_name("00000000000000000042.wal"), Some(42));
    assert_eq!(parse_segment_name("42.wal"), None);
    assert_eq!(parse_segment_name("00000000000000000042.wal.tmp"), None);
    assert_eq!(spare_name(42), "00000000000000000042.spare");
    assert_eq!(parse_spare_name(&spare_name(42)), Some(42));
    assert_eq!(parse_segment_name(&spare_name(42)), None);
    assert_eq!(parse_spare_name(&segment_name(42)), None);
}

#[test]
fn intent_names_sort_by_sequence_and_intents_round_trip() {
    assert_eq!(intent_name(42), "flush-00000000000000000042.intent");
    assert_eq!(parse_intent_name(&intent_name(42)), Some(42));
    assert_eq!(parse_intent_name("flush-42.intent"), None);
    assert_eq!(
        parse_intent_name("flush-00000000000000000042.intent.tmp"),
        None
    );
    assert_eq!(parse_segment_name(&intent_name(42)), None);

    let dir = tempfile::tempdir().unwrap();
    let intent = FlushIntent {
        segment: 3,
        segments: vec![2, 3],
        files: vec![
            "exchanges/service=a/date=2026-11-27/hour=13/00000000000000ab-00000000000000000007.parquet"
                .into(),
        ],
        pin: Some("_tapedeck/pins/00000000000000ab-00000000000000000003.json".into()),
    };
    write_intent(dir.path(), &intent).unwrap();
    assert_eq!(
        read_intents(dir.path()).unwrap(),
        [(dir.path().join(intent_name(3)), intent.clone())]
    );
    // An intent naming another segment than its file, or foreign paths, is refused.
    for bad in [
        FlushIntent {
            segment: 4,
            ..intent.clone()
        },
        FlushIntent {
            segments: vec![4],
            ..intent.clone()
        },
        FlushIntent {
            files: vec!["exchanges/x.parquet".into()],
            ..intent.clone()
        },
    ] {
        let error =
            FlushIntent::decode(&dir.path().join(intent_name(3)), &bad.encode()).unwrap_err();
        assert!(matches!(error, Error::WalCorrupt { .. }), "{error}");
    }
}

#[tokio::test]
async fn a_new_segment_never_takes_the_sequence_of_a_spare() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path()).unwrap();
    append(&wal, 1).await;
    wal.rotate().await.unwrap();
    wal.remove_through(1).await.unwrap();
    wal.close();
    // No segment left at all (removed by hand), only the spare of segment 1, which holds
    // records checked under sequence 1.
    for name in names(dir.path(), SEGMENT_SUFFIX) {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    assert_eq!(names(dir.path(), SPARE_SUFFIX), [spare_name(1)]);
    let (wal, replayed, _) = open(dir.path()).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(wal.current_segment(), 2);
    wal.close();
    // Had the new segment been 1 again, the spare's record would replay now.
    let (_wal, replayed, _) = open(dir.path()).unwrap();
    assert!(replayed.is_empty(), "{:?}", sequences(&replayed));
}
