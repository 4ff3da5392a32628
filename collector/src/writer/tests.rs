use tapedeck_proto::arrow::from_record_batch;
use tapedeck_proto::{Direction, Header, Message, Protocol};

use super::*;
use crate::layout::parse_file_path;
use crate::store::open_store;

const HOUR: u64 = 3_600_000_000_000;
/// 2026-11-27T13:00:00Z.
const T13: u64 = 1_795_784_400_000_000_000;

fn exchange(workload: &str, start_unix_nanos: u64, i: u8) -> Exchange {
    Exchange {
        id: vec![i; 16],
        trace_id: format!("trace-{i}"),
        start_unix_nanos,
        duration_nanos: 1_000,
        response_headers_nanos: 400,
        direction: Direction::Inbound as i32,
        workload: workload.into(),
        protocol: Protocol::Http11 as i32,
        method: "GET".into(),
        path: format!("/items/{i}"),
        request: Some(Message {
            headers: vec![Header {
                name: "x-bin".into(),
                value: vec![0xff, i],
            }],
            body: vec![i; 3],
            body_size: 3,
            body_truncated: false,
            trailers: vec![],
        }),
        status: 200,
        response: Some(Message::default()),
        sample_rate: 1.0,
        ..Default::default()
    }
}

async fn read_partition(store: &Arc<dyn ObjectStore>, partition: &PartitionKey) -> Vec<Exchange> {
    let partitions = list_partitions(store).await.unwrap();
    let mut exchanges = Vec::new();
    for (_, meta) in partitions.get(partition).into_iter().flatten() {
        for batch in read_file(store, &meta.location).await.unwrap() {
            exchanges.extend(from_record_batch(&batch).unwrap());
        }
    }
    exchanges
}

fn key(workload: &str, start: u64) -> PartitionKey {
    PartitionKey::of(&exchange(workload, start, 0))
}

fn file_counts(
    partitions: &BTreeMap<PartitionKey, Vec<(FileName, ObjectMeta)>>,
) -> Vec<(String, usize)> {
    partitions
        .iter()
        .map(|(key, files)| (key.to_string(), files.len()))
        .collect()
}

#[tokio::test]
async fn write_exchanges_puts_one_zstd_file_per_partition() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let exchanges = [
        exchange("orders", T13, 1),
        exchange("pay", T13 + 5, 2),
        exchange("orders", T13 + HOUR, 3),
        exchange("orders", T13 + 10, 4),
    ];
    let paths = write_exchanges(&store, 0xab, &exchanges).await.unwrap();
    let names: Vec<String> = paths
        .iter()
        .map(|path| {
            let (partition, name) = parse_file_path(path).unwrap();
            assert_eq!(name.writer, 0xab);
            partition.to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "service=orders/date=2026-11-27/hour=13",
            "service=orders/date=2026-11-27/hour=14",
            "service=pay/date=2026-11-27/hour=13",
        ]
    );
    assert!(data.path().join("store").join(paths[0].as_ref()).is_file());
    let orders = read_partition(&store, &key("orders", T13)).await;
    assert_eq!(orders, [exchanges[0].clone(), exchanges[3].clone()]);

    let bytes = store.get(&paths[0]).await.unwrap().bytes().await.unwrap();
    let metadata = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
    let column = parquet::file::reader::FileReader::metadata(&metadata)
        .row_group(0)
        .column(0)
        .compression();
    assert!(matches!(column, Compression::ZSTD(_)), "{column:?}");
}

#[tokio::test]
async fn pages_are_data_pages_v2_with_plain_or_dictionary_values() {
    use parquet::basic::{Encoding, PageType};
    use parquet::file::reader::FileReader as _;
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let exchanges: Vec<Exchange> = (0..50u8)
        .map(|i| exchange("orders", T13 + u64::from(i), i))
        .collect();
    let reader = flushed_file(&store, &exchanges).await;
    let group = reader.get_row_group(0).unwrap();
    let (mut data_pages, mut v1_pages) = (0, 0);
    for index in 0..group.num_columns() {
        let column = group.metadata().column(index);
        for encoding in column.encodings() {
            assert!(
                matches!(
                    encoding,
                    Encoding::PLAIN | Encoding::RLE | Encoding::RLE_DICTIONARY
                ),
                "{}: {encoding:?}",
                column.column_path()
            );
        }
        for page in group.get_column_page_reader(index).unwrap() {
            match page.unwrap().page_type() {
                PageType::DATA_PAGE_V2 => data_pages += 1,
                PageType::DATA_PAGE => v1_pages += 1,
                _ => {}
            }
        }
    }
    assert_eq!(v1_pages, 0);
    assert!(data_pages >= group.num_columns(), "{data_pages} pages");
    assert_eq!(read_partition(&store, &key("orders", T13)).await, exchanges);
}

/// Writes `exchanges` (of `orders` at 13:00) as a flush does, and opens the file.
async fn flushed_file(
    store: &Arc<dyn ObjectStore>,
    exchanges: &[Exchange],
) -> parquet::file::reader::SerializedFileReader<Bytes> {
    let partition = key("orders", T13);
    let name = FileNamer::new(9, 1).next_name();
    let records = to_record_batch(exchanges).unwrap();
    write_partition(store, &partition, &name, &[records], FlushCompression::Lz4)
        .await
        .unwrap();
    let bytes = store
        .get(&partition.file(&name))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    parquet::file::reader::SerializedFileReader::new(bytes).unwrap()
}

#[test]
fn row_groups_encoded_at_once_share_the_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(encoding_threads(), cores.min(8));
    assert_eq!(encoding_share(0), encoding_threads());
    assert_eq!(encoding_share(cores), 1);
    assert_eq!(encoding_share(cores * 3), 1);
    if cores >= 4 {
        assert_eq!(encoding_share(2), (cores / 2).min(8));
    }
}

/// The codec of every column chunk of the Parquet file at `path`.
async fn codecs(store: &Arc<dyn ObjectStore>, path: &Path) -> HashSet<String> {
    let bytes = store.get(path).await.unwrap().bytes().await.unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
    let metadata = parquet::file::reader::FileReader::metadata(&reader);
    let mut codecs = HashSet::new();
    for group in metadata.row_groups() {
        for column in group.columns() {
            let codec = match column.compression() {
                Compression::ZSTD(_) => "zstd".to_string(),
                other => other.to_string(),
            };
            codecs.insert(codec);
        }
    }
    codecs
}

#[tokio::test]
async fn flushed_files_of_both_codecs_are_queryable_and_compacted_into_zstd() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let names = FileNamer::new(9, 1);
    let partition = key("orders", T13);
    let mut expected = Vec::new();
    let flushes = [
        (FlushCompression::Lz4, "LZ4_RAW"),
        (FlushCompression::Zstd, "zstd"),
        (FlushCompression::Lz4, "LZ4_RAW"),
    ];
    for (i, (compression, codec)) in (0..3u8).zip(flushes) {
        let batch = vec![exchange("orders", T13 + u64::from(i), i)];
        let name = names.next_name();
        let records = to_record_batch(&batch).unwrap();
        write_partition(&store, &partition, &name, &[records], compression)
            .await
            .unwrap();
        assert_eq!(
            codecs(&store, &partition.file(&name)).await,
            HashSet::from([codec.to_string()])
        );
        expected.extend(batch);
    }
    // Read back by the Parquet reader and by the SQL engine.
    assert_eq!(read_partition(&store, &partition).await, expected);
    let count = |engine: crate::query::QueryEngine| async move {
        let (_, batches) = engine
            .sql("SELECT count(*) AS n FROM exchanges WHERE service = 'orders'")
            .await
            .unwrap();
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<tapedeck_proto::arrow_array::Int64Array>()
            .unwrap()
            .value(0)
    };
    let query = crate::query::QueryArgs::default();
    let engine = crate::query::open_offline(data.path(), None, &query)
        .await
        .unwrap();
    assert_eq!(count(engine).await, 3);

    let now = UNIX_EPOCH + Duration::from_nanos(T13 + HOUR + HOUR / 2);
    let report = compact(&store, &names, 3, now, &Metrics::new())
        .await
        .unwrap();
    assert_eq!(report.files, 3);
    let after = list_partitions(&store).await.unwrap();
    let files = &after[&partition];
    assert_eq!(files.len(), 1);
    assert!(files[0].0.compacted);
    assert_eq!(
        codecs(&store, &files[0].1.location).await,
        HashSet::from(["zstd".to_string()])
    );
    assert_eq!(read_partition(&store, &partition).await, expected);
    let engine = crate::query::open_offline(data.path(), None, &query)
        .await
        .unwrap();
    assert_eq!(count(engine).await, 3);
}

/// Min and max are kept for the columns a query can prune row groups by (times, status, the
/// request line, identity), and not for random ids, bodies and header fields, where they only
/// cost two comparisons per value written; queries on those columns still find their rows.
#[tokio::test]
async fn statistics_are_kept_only_for_columns_queries_prune_by() {
    use tapedeck_proto::arrow::columns;
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let batch: Vec<Exchange> = (0..5u8).map(|i| exchange("orders", T13, i)).collect();
    let reader = flushed_file(&store, &batch).await;
    let metadata = parquet::file::reader::FileReader::metadata(&reader);
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
    let (mut without, mut with) = (0, Vec::new());
    for column in metadata.row_group(0).columns() {
        let top = column.column_path().parts()[0].clone();
        if unpruned.contains(&top.as_str()) {
            assert!(column.statistics().is_none(), "{}", column.column_path());
            without += 1;
        } else if column.statistics().is_some() {
            with.push(top);
        }
    }
    // 4 plain columns and the 3 leaves (name, value, value_bytes) of 4 header lists.
    assert_eq!(without, 16);
    for kept in [
        columns::START_TIME,
        columns::STATUS,
        columns::WORKLOAD,
        columns::METHOD,
        columns::PATH,
        columns::DURATION_NS,
    ] {
        assert!(with.iter().any(|c| c == kept), "{kept}: {with:?}");
    }

    let query = crate::query::QueryArgs::default();
    let engine = crate::query::open_offline(data.path(), None, &query)
        .await
        .unwrap();
    let (_, batches) = engine
        .sql(
            "SELECT count(*) FROM exchanges WHERE trace_id = 'trace-3' \
             AND request_body = X'030303' AND id = X'03030303030303030303030303030303'",
        )
        .await
        .unwrap();
    let count = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<tapedeck_proto::arrow_array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(count, 1);
}

/// A file whose row groups were encoded column by column on several threads is byte for byte
/// the file `ArrowWriter` writes on one thread from the same batches, row groups cut across
/// batch boundaries included; it reads back as written through Parquet and through SQL.
#[tokio::test]
async fn parallel_encoding_writes_what_arrow_writer_writes() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let partition = key("orders", T13);
    let mut expected = Vec::new();
    let mut batches = Vec::new();
    for rows in [7u64, 300, 1, 450, 42] {
        let batch: Vec<Exchange> = (0..rows)
            .map(|_| {
                let i = expected.len() as u64;
                let mut exchange = exchange("orders", T13 + i, (i % 251) as u8);
                exchange.status = 200 + (i % 7) as u32;
                expected.push(exchange.clone());
                exchange
            })
            .collect();
        batches.push(to_record_batch(&batch).unwrap());
    }
    const ROWS_PER_GROUP: usize = 256;
    let properties = || writer_properties(FlushCompression::Lz4.codec());
    let mut serial = parquet::arrow::ArrowWriter::try_new(
        Vec::new(),
        schema(),
        Some(
            properties()
                .into_builder()
                .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
                .build(),
        ),
    )
    .unwrap();
    for batch in &batches {
        serial.write(batch).unwrap();
    }
    let serial = serial.into_inner().unwrap();
    let names = FileNamer::new(3, 1);
    let mut last = None;
    for threads in [1, 2, 3, 8] {
        let name = names.next_name();
        let path = partition.file(&name);
        let mut file =
            FileWriter::with_layout(&store, path.clone(), properties(), ROWS_PER_GROUP, threads)
                .unwrap();
        for batch in &batches {
            file.write(batch).await.unwrap();
        }
        let size = file.finish().await.unwrap();
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(size, bytes.len());
        assert!(
            bytes[..] == serial[..],
            "{threads} threads: {} bytes against ArrowWriter's {}",
            bytes.len(),
            serial.len()
        );
        let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
        let metadata = parquet::file::reader::FileReader::metadata(&reader);
        let groups: Vec<i64> = metadata.row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, [256, 256, 256, 32]);
        let mut read = Vec::new();
        for batch in read_file(&store, &path).await.unwrap() {
            read.extend(from_record_batch(&batch).unwrap());
        }
        assert_eq!(read, expected);
        if let Some(previous) = last.replace(path.clone()) {
            // One copy of the rows in the partition, for the SQL below.
            store.delete(&previous).await.unwrap();
        }
    }
    let engine = crate::query::open_offline(data.path(), None, &crate::query::QueryArgs::default())
        .await
        .unwrap();
    let (_, rows) = engine
        .sql("SELECT count(*) AS n, sum(status) AS s, min(path) AS p FROM exchanges WHERE service = 'orders'")
        .await
        .unwrap();
    let row = &rows[0];
    let int = |column: usize| {
        row.column(column)
            .as_any()
            .downcast_ref::<tapedeck_proto::arrow_array::Int64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!(int(0), expected.len() as i64);
    assert_eq!(
        int(1),
        expected.iter().map(|e| i64::from(e.status)).sum::<i64>()
    );
    let min_path = rows[0]
        .column(2)
        .as_any()
        .downcast_ref::<tapedeck_proto::arrow_array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    assert_eq!(Some(&min_path), expected.iter().map(|e| &e.path).min());
}

#[test]
fn flushes_default_to_lz4_and_zstd_is_compactions_codec() {
    assert_eq!(FlushCompression::default(), FlushCompression::Lz4);
    assert_eq!(FlushCompression::Lz4.codec(), Compression::LZ4_RAW);
    assert_eq!(FlushCompression::Zstd.codec(), zstd());
}

#[tokio::test]
async fn compaction_merges_closed_hours_with_enough_files() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let names = FileNamer::new(7, 1);
    let metrics = Metrics::new();
    let mut expected_old = Vec::new();
    for i in 0..4u8 {
        // Three files in the closed hour 13, and one in the current hour 14 per round.
        if i < 3 {
            let batch = vec![exchange("orders", T13 + u64::from(i), i)];
            write_exchanges_named(&store, &names, &batch).await;
            expected_old.extend(batch);
        }
        write_exchanges_named(&store, &names, &[exchange("orders", T13 + HOUR, 10 + i)]).await;
        write_exchanges_named(&store, &names, &[exchange("pay", T13, 20 + i)]).await;
    }
    let now = UNIX_EPOCH + Duration::from_nanos(T13 + HOUR + HOUR / 2);
    let before = list_partitions(&store).await.unwrap();
    assert_eq!(
        file_counts(&before),
        [
            ("service=orders/date=2026-11-27/hour=13".to_string(), 3),
            ("service=orders/date=2026-11-27/hour=14".to_string(), 4),
            ("service=pay/date=2026-11-27/hour=13".to_string(), 4),
        ]
    );

    // Four files needed: only pay/13 qualifies (orders/14 is the current hour).
    let report = compact(&store, &names, 4, now, &metrics).await.unwrap();
    assert_eq!(
        report,
        CompactionReport {
            partitions: 1,
            files: 4,
            rows: 4,
            ..Default::default()
        }
    );
    // Three files needed: orders/13 too.
    let pay = read_partition(&store, &key("pay", T13)).await;
    let report = compact(&store, &names, 3, now, &metrics).await.unwrap();
    assert_eq!(report.partitions, 1);
    let after = list_partitions(&store).await.unwrap();
    assert_eq!(
        file_counts(&after),
        [
            ("service=orders/date=2026-11-27/hour=13".to_string(), 1),
            ("service=orders/date=2026-11-27/hour=14".to_string(), 4),
            ("service=pay/date=2026-11-27/hour=13".to_string(), 1),
        ]
    );
    assert_eq!(
        read_partition(&store, &key("orders", T13)).await,
        expected_old
    );
    assert_eq!(pay.len(), 4);
    assert_eq!(read_partition(&store, &key("pay", T13)).await, pay);
    assert_eq!(metrics.compactions.get(), 2);
    assert_eq!(metrics.compacted_files.get(), 7);
}

async fn write_exchanges_named(
    store: &Arc<dyn ObjectStore>,
    names: &FileNamer,
    exchanges: &[Exchange],
) {
    let batch = to_record_batch(exchanges).unwrap();
    write_partition(
        store,
        &PartitionKey::of(&exchanges[0]),
        &names.next_name(),
        &[batch],
        FlushCompression::Lz4,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn retention_deletes_only_partitions_past_it() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let names = FileNamer::new(7, 1);
    let metrics = Metrics::new();
    let now_nanos = T13 + 30 * 60 * 1_000_000_000;
    for (i, hours_ago) in [50u64, 37, 36, 10, 0].into_iter().enumerate() {
        write_exchanges_named(
            &store,
            &names,
            &[exchange("orders", T13 - hours_ago * HOUR, i as u8)],
        )
        .await;
    }
    let now = UNIX_EPOCH + Duration::from_nanos(now_nanos);
    // Hour 13-37 ended 36 h before 13:00, more than 36 h before 13:30; hour 13-36 ended
    // 35.5 h before now.
    let deleted = apply_retention(&store, Duration::from_secs(36 * 3600), now, &metrics)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(metrics.retention_deleted_files.get(), 2);
    let left: Vec<String> = list_partitions(&store)
        .await
        .unwrap()
        .keys()
        .map(|key| format!("{} {}", key.date, key.hour))
        .collect();
    assert_eq!(left, ["2026-11-26 01", "2026-11-27 03", "2026-11-27 13"]);
    // Emptied partition folders are removed too.
    let day = data
        .path()
        .join("store/exchanges/service=orders/date=2026-11-25");
    assert!(!day.exists(), "{}", day.display());
}

mod crashes {
    //! A crash at every point of a flush, then a restart: every acknowledged exchange is in the
    //! store exactly once.

    use std::path::Path as FsPath;
    use std::sync::atomic::AtomicBool;

    use futures::stream::BoxStream;
    use object_store::{
        CopyOptions, GetResult, ListResult, MultipartUpload, PutMultipartOptions, PutOptions,
        PutPayload, PutResult,
    };
    use tapedeck_proto::ExchangeBatch;
    use tapedeck_proto::prost::Message as _;

    use super::*;
    use crate::wal::{self, IntentRecovery};

    const WAIT: Duration = Duration::from_secs(20);

    /// One collector process: its log, buffer and flusher.
    struct Run {
        flusher: Arc<Flusher>,
        wal: Wal,
        buffer: Arc<Buffer>,
        /// What settling the last run's intents did.
        intents: IntentRecovery,
    }

    impl Run {
        /// Starts the way `run_with` does: settle intents, replay the log.
        async fn start(data: &FsPath, store: &StoreHandle, writer: u64) -> Self {
            let dir = data.join("wal");
            let intents = wal::resolve_intents(&dir, &store.store).await.unwrap();
            let buffer = Arc::new(Buffer::new());
            let (wal, _) = Wal::open(&dir, Arc::new(Metrics::new()), |batch| {
                buffer.insert(&batch.exchanges).unwrap();
                Ok(())
            })
            .unwrap();
            let flusher = Arc::new(Flusher::new(
                store.clone(),
                buffer.clone(),
                wal.clone(),
                Arc::new(RwLock::new(())),
                Arc::new(Metrics::new()),
                Arc::new(FileNamer::new(writer, 1)),
            ));
            Self {
                flusher,
                wal,
                buffer,
                intents,
            }
        }

        /// What ingest does before acknowledging.
        async fn ingest(&self, exchanges: &[Exchange]) {
            let batch = ExchangeBatch {
                exchanges: exchanges.to_vec(),
                ..Default::default()
            };
            self.wal.append(batch.encode_to_vec()).await.unwrap();
            self.buffer.insert(exchanges).unwrap();
        }

        async fn flush(&self) -> Result<FlushReport> {
            tokio::time::timeout(WAIT, self.flusher.flush())
                .await
                .expect("flush finishes")
        }

        /// Flushes until `step` has been reached `n` times, then kills the flush there.
        async fn crash_during_flush(self, step: FlushStep, n: usize) {
            let (reached, crashed) = tokio::sync::oneshot::channel();
            self.flusher.crash_at(CrashPoint { step, n, reached });
            let flusher = self.flusher.clone();
            let task = tokio::spawn(async move { flusher.flush().await });
            tokio::time::timeout(WAIT, crashed)
                .await
                .expect("the crash point is reached")
                .unwrap();
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            self.stop();
        }

        fn stop(self) {
            drop(self.flusher);
            self.wal.close();
        }
    }

    fn ids(exchanges: impl IntoIterator<Item = Exchange>) -> Vec<u8> {
        let mut ids: Vec<u8> = exchanges.into_iter().map(|e| e.id[0]).collect();
        ids.sort();
        ids
    }

    /// Ids of every exchange in every Parquet file of the store, duplicates kept.
    async fn stored_ids(store: &Arc<dyn ObjectStore>) -> Vec<u8> {
        let mut exchanges = Vec::new();
        for (_, meta) in list_partitions(store).await.unwrap().values().flatten() {
            for batch in read_file(store, &meta.location).await.unwrap() {
                exchanges.extend(from_record_batch(&batch).unwrap());
            }
        }
        ids(exchanges)
    }

    fn logged_ids(batches: Vec<ExchangeBatch>) -> Vec<u8> {
        ids(batches.into_iter().flat_map(|batch| batch.exchanges))
    }

    /// Intent files of a log folder (temporary ones included).
    fn intent_files(dir: &FsPath) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".intent"))
            .collect();
        names.sort();
        names
    }

    /// Exchanges `from..=to` spread over three partitions (two in one file's hour).
    fn exchanges(from: u8, to: u8) -> Vec<Exchange> {
        (from..=to)
            .map(|i| match i % 3 {
                0 => exchange("orders", T13 + u64::from(i), i),
                1 => exchange("pay", T13 + u64::from(i), i),
                _ => exchange("orders", T13 + HOUR + u64::from(i), i),
            })
            .collect()
    }

    /// A flush, then a crash at `step` (its `n`th time) during the next one, then a restart
    /// that ingests more and flushes. Returns what settling the intents did on restart.
    async fn crash_and_restart(step: FlushStep, n: usize) -> IntentRecovery {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), None).unwrap();
        let wal_dir = data.path().join("wal");

        let run = Run::start(data.path(), &store, 1).await;
        run.ingest(&exchanges(1, 3)).await;
        assert_eq!(run.flush().await.unwrap().files, 3);
        run.ingest(&exchanges(4, 6)).await;
        run.ingest(&exchanges(7, 9)).await;
        run.crash_during_flush(step, n).await;

        // What is in Parquet and what a read-only reader takes from the log never overlap,
        // and together they are everything acknowledged.
        let in_store = stored_ids(&store.store).await;
        let before = std::fs::read_dir(&wal_dir).unwrap().count();
        let logged = logged_ids(
            wal::read_dir_with_store(&wal_dir, &store.store)
                .await
                .unwrap(),
        );
        assert_eq!(std::fs::read_dir(&wal_dir).unwrap().count(), before);
        assert!(
            logged.iter().all(|id| !in_store.contains(id)),
            "{step:?} {n}: {logged:?} are in the store {in_store:?} too"
        );
        assert_eq!(ids_merged(&in_store, &logged), (1..=9).collect::<Vec<_>>());
        match step {
            FlushStep::IntentWritten | FlushStep::FilePut => {
                assert_eq!(intent_files(&wal_dir).len(), 1);
            }
            FlushStep::FilesWritten => {
                // The state of the defect: all in Parquet, and still in the log.
                assert_eq!(in_store, (1..=9).collect::<Vec<_>>());
                assert!(logged.is_empty(), "{logged:?}");
                assert_eq!(
                    logged_ids(wal::read_dir(&wal_dir).unwrap()),
                    (4..=9).collect::<Vec<_>>()
                );
            }
            FlushStep::SegmentsRemoved => {
                assert_eq!(intent_files(&wal_dir).len(), 1);
                assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
            }
        }

        let run = Run::start(data.path(), &store, 2).await;
        let intents = run.intents.clone();
        assert!(intent_files(&wal_dir).is_empty());
        run.ingest(&exchanges(10, 11)).await;
        run.flush().await.unwrap();
        run.stop();
        assert_eq!(stored_ids(&store.store).await, (1..=11).collect::<Vec<_>>());
        assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
        assert!(intent_files(&wal_dir).is_empty());
        intents
    }

    fn ids_merged(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut all = [a, b].concat();
        all.sort();
        all
    }

    #[tokio::test]
    async fn crash_after_the_intent_before_any_put() {
        let intents = crash_and_restart(FlushStep::IntentWritten, 1).await;
        assert_eq!((intents.completed, intents.partial), (0, 1));
        assert_eq!(intents.files_removed, 0);
    }

    #[tokio::test]
    async fn crash_after_some_puts() {
        for n in [1, 2] {
            let intents = crash_and_restart(FlushStep::FilePut, n).await;
            assert_eq!((intents.completed, intents.partial), (0, 1));
            assert_eq!(intents.files_removed, n);
        }
    }

    #[tokio::test]
    async fn crash_after_all_puts_before_the_segments_are_deleted() {
        let intents = crash_and_restart(FlushStep::FilesWritten, 1).await;
        assert_eq!((intents.completed, intents.partial), (1, 0));
        assert_eq!(intents.segments_removed, 1);
    }

    #[tokio::test]
    async fn crash_after_the_segments_are_deleted_before_the_intent() {
        let intents = crash_and_restart(FlushStep::SegmentsRemoved, 1).await;
        assert_eq!((intents.completed, intents.partial), (1, 0));
        assert_eq!(intents.segments_removed, 0);
    }

    #[tokio::test]
    async fn crashes_in_a_row_and_in_recovery_flushes() {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), None).unwrap();
        let run = Run::start(data.path(), &store, 1).await;
        run.ingest(&exchanges(1, 6)).await;
        run.crash_during_flush(FlushStep::FilePut, 1).await;
        // The replayed data crashes again, half written, then all written.
        let run = Run::start(data.path(), &store, 2).await;
        run.ingest(&exchanges(7, 8)).await;
        run.crash_during_flush(FlushStep::FilePut, 2).await;
        let run = Run::start(data.path(), &store, 3).await;
        assert_eq!(run.intents.files_removed, 2);
        run.crash_during_flush(FlushStep::FilesWritten, 1).await;
        let run = Run::start(data.path(), &store, 4).await;
        assert_eq!(run.intents.completed, 1);
        run.ingest(&exchanges(9, 9)).await;
        run.flush().await.unwrap();
        run.stop();
        assert_eq!(stored_ids(&store.store).await, (1..=9).collect::<Vec<_>>());
    }

    /// A local store whose puts fail, while `failing` is set, for paths containing `pattern`;
    /// while `held` is true, such puts wait (each counted in `waiting`) until it turns false.
    #[derive(Debug)]
    struct FailingStore {
        inner: Arc<dyn ObjectStore>,
        pattern: &'static str,
        failing: AtomicBool,
        held: watch::Sender<bool>,
        waiting: watch::Sender<usize>,
    }

    impl std::fmt::Display for FailingStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FailingStore({})", self.inner)
        }
    }

    impl FailingStore {
        /// Waits while puts of `pattern` are held.
        async fn wait_if_held(&self, location: &Path) {
            if !location.as_ref().contains(self.pattern) || !*self.held.borrow() {
                return;
            }
            self.waiting.send_modify(|waiting| *waiting += 1);
            let _ = self.held.subscribe().wait_for(|held| !*held).await;
        }

        /// Waits until `n` puts are held.
        async fn until_waiting(&self, n: usize) {
            let mut waiting = self.waiting.subscribe();
            tokio::time::timeout(WAIT, waiting.wait_for(|waiting| *waiting >= n))
                .await
                .expect("the put is held")
                .unwrap();
        }

        fn check(&self, location: &Path) -> object_store::Result<()> {
            if self.failing.load(Ordering::SeqCst) && location.as_ref().contains(self.pattern) {
                return Err(object_store::Error::Generic {
                    store: "failing",
                    source: "the store is down".into(),
                });
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FailingStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.wait_if_held(location).await;
            self.check(location)?;
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.wait_if_held(location).await;
            self.check(location)?;
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A store where `pay` files cannot be written, and the handle of its switch.
    fn failing_store(data: &FsPath) -> (StoreHandle, Arc<FailingStore>) {
        pay_store(data, true, false)
    }

    /// A store whose puts of `pay` files fail while `failing`, wait while `held`.
    fn pay_store(data: &FsPath, failing: bool, held: bool) -> (StoreHandle, Arc<FailingStore>) {
        let local = open_store(data, None).unwrap();
        let failing = Arc::new(FailingStore {
            inner: local.store,
            pattern: "service=pay",
            failing: AtomicBool::new(failing),
            held: watch::Sender::new(held),
            waiting: watch::Sender::new(0),
        });
        let handle = StoreHandle {
            store: failing.clone(),
            url: local.url,
            changes: local.changes,
        };
        (handle, failing)
    }

    /// Two flushes fail on the same file: the first flush's intent keeps listing it under the
    /// same name, the second flush waits its turn, nothing is deleted early, compaction leaves
    /// the written files of the first flush alone.
    async fn two_failed_flushes(data: &FsPath) -> (Run, StoreHandle, Arc<FailingStore>) {
        let (store, failing) = failing_store(data);
        let wal_dir = data.join("wal");
        let run = Run::start(data, &store, 1).await;
        run.ingest(&exchanges(1, 3)).await;
        run.flush().await.unwrap_err();
        assert_eq!(stored_ids(&store.store).await, [2, 3]);
        let first = intent_files(&wal_dir);
        assert_eq!(first.len(), 1);
        run.ingest(&exchanges(4, 6)).await;
        run.flush().await.unwrap_err();
        // No file of the second flush before the first is done, and no second intent either.
        assert_eq!(stored_ids(&store.store).await, [2, 3]);
        assert_eq!(intent_files(&wal_dir), first);
        assert_eq!(
            logged_ids(wal::read_dir(&wal_dir).unwrap()),
            (1..=6).collect::<Vec<_>>()
        );
        assert_eq!(
            logged_ids(
                wal::read_dir_with_store(&wal_dir, &store.store)
                    .await
                    .unwrap()
            ),
            [1, 4, 5, 6]
        );

        // A second file in the closed hour of a written but pinned file: nothing to merge.
        write_exchanges_named(
            &store.store,
            &FileNamer::new(9, 1),
            &[exchange("orders", T13, 50)],
        )
        .await;
        let now = UNIX_EPOCH + Duration::from_nanos(T13 + 3 * HOUR);
        let metrics = Metrics::new();
        let names = FileNamer::new(9, 2);
        let pinned = run.flusher.pinned();
        let report = compact_except(
            &store.store,
            Some(&store),
            &names,
            2,
            now,
            &metrics,
            &pinned,
        )
        .await
        .unwrap();
        assert_eq!(report.partitions, 0);
        (run, store, failing)
    }

    #[tokio::test]
    async fn a_retried_flush_keeps_its_intent_until_its_last_file_is_in() {
        let data = tempfile::tempdir().unwrap();
        let (run, store, failing) = two_failed_flushes(data.path()).await;
        failing.failing.store(false, Ordering::SeqCst);
        run.ingest(&exchanges(7, 7)).await;
        let report = run.flush().await.unwrap();
        assert_eq!(report.files, 1 + 3 + 1);
        assert!(run.flusher.pinned().lock().is_empty());
        run.stop();
        let wal_dir = data.path().join("wal");
        assert!(intent_files(&wal_dir).is_empty());
        assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
        assert_eq!(stored_ids(&store.store).await, [1, 2, 3, 4, 5, 6, 7, 50]);
    }

    #[tokio::test]
    async fn a_crash_while_a_flush_is_retried_stores_everything_once() {
        let data = tempfile::tempdir().unwrap();
        let (run, store, failing) = two_failed_flushes(data.path()).await;
        run.stop();
        failing.failing.store(false, Ordering::SeqCst);
        let run = Run::start(data.path(), &store, 2).await;
        assert_eq!((run.intents.partial, run.intents.files_removed), (1, 2));
        run.flush().await.unwrap();
        run.stop();
        assert_eq!(stored_ids(&store.store).await, [1, 2, 3, 4, 5, 6, 50]);
    }

    /// A first flush waits on the store (its one file, of `pay`) while a second flush of
    /// `orders` rows starts: the second writes its files meanwhile, and the log keeps both
    /// flushes' segments until the first is written too. Returns the run, the first flush's
    /// task and the store's switch.
    async fn overlapping_flushes(
        data: &FsPath,
    ) -> (
        Run,
        tokio::task::JoinHandle<Result<FlushReport>>,
        Arc<FailingStore>,
    ) {
        let (store, held) = pay_store(data, false, true);
        let wal_dir = data.join("wal");
        let run = Run::start(data, &store, 1).await;
        run.ingest(&exchanges(1, 1)).await;
        let flusher = run.flusher.clone();
        let first = tokio::spawn(async move { flusher.flush().await });
        held.until_waiting(1).await;
        run.ingest(&exchanges(2, 3)).await;
        let second = run.flush().await.unwrap();
        assert_eq!((second.files, second.rows), (2, 2));
        assert_eq!(second.segments_removed, 0);
        assert_eq!(stored_ids(&store.store).await, [2, 3]);
        assert_eq!(intent_files(&wal_dir).len(), 2);
        assert_eq!(
            logged_ids(wal::read_dir(&wal_dir).unwrap()),
            [1, 2, 3],
            "the second flush's segments wait for the first flush"
        );
        assert!(!first.is_finished());
        (run, first, held)
    }

    #[tokio::test]
    async fn a_flush_writes_while_an_earlier_one_waits_and_the_log_goes_in_order() {
        let data = tempfile::tempdir().unwrap();
        let wal_dir = data.path().join("wal");
        let (run, first, held) = overlapping_flushes(data.path()).await;
        held.held.send_replace(false);
        let first = tokio::time::timeout(WAIT, first)
            .await
            .expect("the first flush finishes")
            .unwrap()
            .unwrap();
        assert_eq!((first.files, first.rows), (1, 1));
        assert_eq!(first.segments_removed, 2, "both flushes' segments");
        assert!(intent_files(&wal_dir).is_empty());
        assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
        assert!(run.flusher.pinned().lock().is_empty());
        let store = run.flusher.store.store.clone();
        run.stop();
        assert_eq!(stored_ids(&store).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_crash_while_an_earlier_flush_waits_stores_everything_once() {
        let data = tempfile::tempdir().unwrap();
        let (run, first, held) = overlapping_flushes(data.path()).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        let store = run.flusher.store.clone();
        run.stop();
        held.held.send_replace(false);
        let run = Run::start(data.path(), &store, 2).await;
        // The second flush is complete, the first has no file in the store.
        assert_eq!((run.intents.completed, run.intents.partial), (1, 1));
        assert_eq!(run.intents.files_removed, 0);
        run.flush().await.unwrap();
        run.stop();
        assert_eq!(stored_ids(&store.store).await, [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_flush_loop_keeps_two_flushes_in_flight_and_waits_for_them_when_stopped() {
        let data = tempfile::tempdir().unwrap();
        let (store, held) = pay_store(data.path(), false, true);
        let run = Run::start(data.path(), &store, 1).await;
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let trigger = crate::buffer::FlushTrigger {
            rows: 1,
            bytes: usize::MAX,
        };
        let looping = tokio::spawn(run.flusher.clone().run(
            Duration::from_secs(3_600),
            trigger,
            wake.clone(),
            stopped,
        ));
        let in_flight = || run.flusher.metrics.flushes_in_flight.get();
        // Two flushes of one `pay` exchange each, both waiting on the store.
        for (i, waiting) in [(1, 1), (4, 2)] {
            run.ingest(&exchanges(i, i)).await;
            wake.notify_one();
            held.until_waiting(waiting).await;
        }
        assert_eq!(in_flight(), 2);
        // A third flush comes due: it waits for a slot.
        run.ingest(&exchanges(2, 3)).await;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(in_flight(), 2);
        assert_eq!(stored_ids(&store.store).await, Vec::<u8>::new());
        // Stopped, the loop waits for the flushes in flight.
        stop.send_replace(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!looping.is_finished());
        held.held.send_replace(false);
        tokio::time::timeout(WAIT, looping)
            .await
            .expect("the loop ends once its flushes are done")
            .unwrap();
        assert_eq!(in_flight(), 0);
        assert_eq!(stored_ids(&store.store).await, [1, 4]);
        // What came due while both slots were taken is the final flush's.
        assert_eq!(run.flush().await.unwrap().rows, 2);
        assert_eq!(stored_ids(&store.store).await, [1, 2, 3, 4]);
        let wal_dir = data.path().join("wal");
        assert!(intent_files(&wal_dir).is_empty());
        run.stop();
        assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_damaged_intent_stops_recovery_and_nothing_is_deleted() {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), None).unwrap();
        let wal_dir = data.path().join("wal");
        let run = Run::start(data.path(), &store, 1).await;
        run.ingest(&exchanges(1, 3)).await;
        run.crash_during_flush(FlushStep::FilesWritten, 1).await;
        let name = intent_files(&wal_dir).remove(0);
        let path = wal_dir.join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        // A temporary intent (a crash while writing one) is no obstacle.
        std::fs::write(wal_dir.join(format!("{name}.tmp")), b"{").unwrap();

        let error = wal::resolve_intents(&wal_dir, &store.store)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("checksum mismatch"), "{error}");
        assert!(error.contains(&name), "{error}");
        assert_eq!(stored_ids(&store.store).await, [1, 2, 3]);
        assert_eq!(logged_ids(wal::read_dir(&wal_dir).unwrap()), [1, 2, 3]);
        // The log does not open around it either.
        let error = Wal::open(&wal_dir, Arc::new(Metrics::new()), |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("flush intent is left"), "{error}");
    }
}

/// What the file writer writes comes out of the shared buffer in order and whole, whatever the
/// sizes of the writes: small ones gathered, large ones (pages) one chunk each, and nothing left
/// behind between takes.
#[test]
fn the_shared_buffer_hands_out_every_byte_in_order() {
    use std::io::Write as _;
    let mut state = 7;
    let mut rng = || tapedeck_proto::splitmix64(&mut state);
    let mut buffer = SharedBuffer::default();
    let mut written = Vec::new();
    let mut taken = Vec::new();
    for round in 0..200u64 {
        let seed = rng();
        let len = match seed % 4 {
            0 => (seed >> 8) as usize % 64,
            1 => (seed >> 8) as usize % OWN_CHUNK_BYTES,
            2 => OWN_CHUNK_BYTES + (seed >> 8) as usize % (4 * OWN_CHUNK_BYTES),
            _ => OWN_CHUNK_BYTES - 1 + (seed >> 8) as usize % 3,
        };
        let bytes: Vec<u8> = (0..len).map(|i| (round as usize * 31 + i) as u8).collect();
        buffer.write_all(&bytes).unwrap();
        written.extend_from_slice(&bytes);
        if seed % 9 == 0 {
            let chunks = buffer.take();
            assert!(chunks.iter().all(|chunk| !chunk.is_empty()));
            taken.extend(chunks.iter().flat_map(|chunk| chunk.iter().copied()));
        }
    }
    taken.extend(buffer.take().iter().flat_map(|chunk| chunk.iter().copied()));
    assert_eq!(taken.len(), written.len());
    assert!(
        taken == written,
        "the bytes came out changed or out of order"
    );
    assert!(buffer.take().is_empty());
}

/// A file larger than the upload's buffer (10 MiB) goes to the store as a multipart upload of
/// the writer's chunks, and reads back whole and in order.
#[tokio::test]
async fn a_file_larger_than_the_upload_buffer_is_written_whole() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(data.path(), None).unwrap().store;
    let partition = key("orders", T13);
    let mut state = 11;
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let mut exchange = exchange("orders", T13 + i, i as u8);
        // Bodies that do not compress: 64 KiB each, 12.5 MiB in all.
        let body: Vec<u8> = (0..8 * 1024)
            .flat_map(|_| tapedeck_proto::splitmix64(&mut state).to_le_bytes())
            .collect();
        let response = exchange.response.get_or_insert_with(Default::default);
        response.body_size = body.len() as u64;
        response.body = body;
        expected.push(exchange);
    }
    let name = FileNamer::new(5, 1).next_name();
    let size = write_partition(
        &store,
        &partition,
        &name,
        &[to_record_batch(&expected).unwrap()],
        FlushCompression::Lz4,
    )
    .await
    .unwrap();
    assert!(size > 10 * 1024 * 1024, "{size} bytes: not past the buffer");
    let meta = store.head(&partition.file(&name)).await.unwrap();
    assert_eq!(meta.size, size as u64);
    assert_eq!(read_partition(&store, &partition).await, expected);
}
