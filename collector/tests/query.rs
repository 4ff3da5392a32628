//! The collector's query half: SQL over Parquet files plus the buffer, and Flight SQL.
//!
//! A separate test binary from `tests/lib.rs` (the storage side) on purpose, so the two halves
//! can grow in parallel without touching the same file.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::SqlInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::arrow::ArrowWriter;
use tapedeck_collector::buffer::Buffer;
use tapedeck_collector::cache::{CHANGES_DIR, ListingCache};
use tapedeck_collector::flight::{self, query_remote};
use tapedeck_collector::layout::{FileName, PartitionKey, days_from_civil};
use tapedeck_collector::query::{
    OutputFormat, QueryArgs, QueryEngine, QueryError, SqlArgs, format_batches, open_offline,
    run_sql,
};
use tapedeck_proto::arrow::{from_record_batch, schema, to_record_batch};
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};
use tokio::net::TcpListener;

const HOUR: u64 = 3_600_000_000_000;

/// 2026-11-27T00:00:00Z in ns.
fn day() -> u64 {
    days_from_civil(2026, 11, 27) as u64 * 24 * HOUR
}

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: value.to_vec(),
    }
}

/// An exchange of `service` at `hour` of 2026-11-27 (plus `i` seconds), with every field set.
fn exchange(service: &str, hour: u64, i: u32) -> Exchange {
    let start = day() + hour * HOUR + u64::from(i) * 1_000_000_000;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&start.to_be_bytes());
    id[8..12].copy_from_slice(&i.to_be_bytes());
    id[12] = service.len() as u8;
    Exchange {
        id: id.to_vec(),
        trace_id: format!("{:032x}", u128::from(i) + 1),
        start_unix_nanos: start,
        duration_nanos: 1_000_000 + u64::from(i),
        response_headers_nanos: 500_000,
        direction: if i.is_multiple_of(2) {
            Direction::Inbound
        } else {
            Direction::Outbound
        } as i32,
        workload: service.into(),
        namespace: "shop".into(),
        pod: format!("{service}-0"),
        peer_address: "10.0.0.7:41000".into(),
        upstream_cluster: "inbound|8080||".into(),
        route_name: "default".into(),
        protocol: [Protocol::Http11, Protocol::Http2, Protocol::Grpc][i as usize % 3] as i32,
        scheme: "http".into(),
        authority: format!("{service}.shop"),
        method: if i.is_multiple_of(3) { "GET" } else { "POST" }.into(),
        path: format!("/{service}/{i}?page=1"),
        request: Some(Message {
            headers: vec![
                header("content-type", b"application/json"),
                header("x-request-id", format!("req-{i}").as_bytes()),
                header("x-dup", b"first"),
                header("x-dup", b"second"),
                header("x-bin", &[0xff, 0x00, b'a']),
            ],
            body: format!(r#"{{"order":"o-{i}","qty":{i}}}"#).into_bytes(),
            body_size: 20 + u64::from(i),
            body_truncated: false,
            trailers: vec![],
        }),
        status: if i % 5 == 4 { 503 } else { 200 },
        response: Some(Message {
            headers: vec![header("Content-Type", b"application/json; charset=utf-8")],
            body: if i % 4 == 3 {
                vec![b'{', 0xff, 0xfe, b'}']
            } else {
                format!(r#"{{"id":"r-{i}","ok":true}}"#).into_bytes()
            },
            body_size: 4096,
            body_truncated: i % 4 == 3,
            trailers: vec![header("grpc-status", b"0")],
        }),
        response_flags: if i % 5 == 4 {
            "UF".into()
        } else {
            String::new()
        },
        response_code_details: if i % 5 == 4 {
            "upstream_reset".into()
        } else {
            String::new()
        },
        sample_rate: 0.5,
        redactions: (0..i % 3).map(|k| format!("request.header:h{k}")).collect(),
        filter_version: "0.1.0".into(),
    }
}

fn exchanges(service: &str, hour: u64, ids: Range<u32>) -> Vec<Exchange> {
    ids.map(|i| exchange(service, hour, i)).collect()
}

/// An in-memory store that records which files were read and which prefixes were listed (the
/// change markers' folder apart), and counts every GET.
#[derive(Debug, Default)]
struct CountingStore {
    inner: InMemory,
    reads: Mutex<BTreeSet<String>>,
    lists: Mutex<Vec<String>>,
    /// Every GET, by path, in order.
    gets: Mutex<Vec<String>>,
    /// LISTs of the change markers' folder.
    marker_lists: Mutex<usize>,
}

impl CountingStore {
    fn take(&self) -> (BTreeSet<String>, Vec<String>) {
        (
            std::mem::take(&mut self.reads.lock().unwrap()),
            std::mem::take(&mut self.lists.lock().unwrap()),
        )
    }

    /// The GETs (by path) and the LISTs (partition listings, then marker listings) since the
    /// last call.
    fn take_requests(&self) -> (Vec<String>, Vec<String>, usize) {
        let (_, lists) = self.take();
        (
            std::mem::take(&mut self.gets.lock().unwrap()),
            lists,
            std::mem::take(&mut self.marker_lists.lock().unwrap()),
        )
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore")
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.reads.lock().unwrap().insert(location.to_string());
        self.gets.lock().unwrap().push(location.to_string());
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.map(ToString::to_string).unwrap_or_default();
        if prefix == CHANGES_DIR {
            *self.marker_lists.lock().unwrap() += 1;
        } else {
            self.lists.lock().unwrap().push(prefix.clone());
        }
        let path = (!prefix.is_empty()).then(|| Path::from(prefix.as_str()));
        self.inner.list(path.as_ref())
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.lists.lock().unwrap().push(format!(
            "{}/ (folders)",
            prefix.map(ToString::to_string).unwrap_or_default()
        ));
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

/// Writes exchanges of one partition as a Parquet file, as the collector's writer does.
async fn put_file(store: &dyn ObjectStore, exchanges: &[Exchange], sequence: u64) -> Path {
    let key = PartitionKey::of(&exchanges[0]);
    assert!(
        exchanges.iter().all(|e| PartitionKey::of(e) == key),
        "one partition per file"
    );
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema(), None).unwrap();
    writer.write(&to_record_batch(exchanges).unwrap()).unwrap();
    writer.close().unwrap();
    let path = key.file(&FileName::flushed(0xabc, sequence));
    store.put(&path, PutPayload::from(bytes)).await.unwrap();
    path
}

fn args() -> QueryArgs {
    QueryArgs::default()
}

fn engine(store: Arc<dyn ObjectStore>, buffer: Arc<Buffer>, args: &QueryArgs) -> QueryEngine {
    QueryEngine::new(store, buffer, args).unwrap()
}

async fn table(engine: &QueryEngine, sql: &str) -> String {
    let (schema, batches) = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    format_batches(&schema, &batches, OutputFormat::Table).unwrap()
}

async fn count(engine: &QueryEngine, sql: &str) -> i64 {
    let (_, batches) = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = concat_batches(&batches[0].schema(), &batches).unwrap();
    batch.column(0).as_primitive::<Int64Type>().value(0)
}

async fn error(engine: &QueryEngine, sql: &str) -> QueryError {
    match engine.sql(sql).await {
        Ok((_, batches)) => panic!("{sql}: expected an error, got {} batches", batches.len()),
        Err(error) => error,
    }
}

/// Exchanges from the query result, without the partition columns, ordered by start time.
fn exchanges_of(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<Exchange> {
    let batch = concat_batches(schema, batches).unwrap();
    let columns: Vec<usize> = (0..tapedeck_proto::arrow::schema().fields().len()).collect();
    let mut out = from_record_batch(&batch.project(&columns).unwrap()).unwrap();
    out.sort_by_key(|e| (e.start_unix_nanos, e.workload.clone()));
    out
}

#[tokio::test]
async fn every_column_round_trips_from_files_and_buffer() {
    let store = Arc::new(InMemory::new());
    let stored = exchanges("orders", 10, 0..7);
    put_file(store.as_ref(), &stored, 1).await;
    let buffer = Arc::new(Buffer::new());
    let buffered = exchanges("payments", 11, 0..5);
    buffer.insert(&buffered).unwrap();
    let engine = engine(store, buffer, &args());

    let (schema, batches) = engine
        .sql("SELECT * FROM exchanges ORDER BY start_time")
        .await
        .unwrap();
    let mut expected: Vec<Exchange> = stored.into_iter().chain(buffered).collect();
    expected.sort_by_key(|e| (e.start_unix_nanos, e.workload.clone()));
    assert_eq!(exchanges_of(&schema, &batches), expected);

    let names: Vec<&str> = schema
        .fields()
        .iter()
        .rev()
        .take(3)
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["hour", "date", "service"]);
    assert_eq!(
        table(
            &engine,
            "SELECT service, date, hour, count(*) AS n FROM exchanges GROUP BY 1, 2, 3 ORDER BY 1"
        )
        .await,
        "\
+----------+------------+------+---+
| service  | date       | hour | n |
+----------+------------+------+---+
| orders   | 2026-11-27 | 10   | 7 |
| payments | 2026-11-27 | 11   | 5 |
+----------+------------+------+---+
"
    );
}

#[tokio::test]
async fn sealed_entries_count_once_whether_or_not_their_file_is_written() {
    let store = Arc::new(InMemory::new());
    let buffer = Arc::new(Buffer::new());
    // Sealed, and already written: the file wins, the sealed copy is skipped.
    let written = exchanges("orders", 10, 0..4);
    buffer.insert(&written).unwrap();
    // Sealed, not yet written: the buffered copy is used.
    let pending = exchanges("orders", 11, 0..3);
    buffer.insert(&pending).unwrap();
    let mut sequence = 0;
    let sealed = buffer.seal(|_| {
        sequence += 1;
        FileName::flushed(0xabc, sequence)
    });
    assert_eq!(sealed.len(), 2);
    assert_eq!(
        put_file(store.as_ref(), &written, 1).await,
        sealed[0].partition.file(&sealed[0].file)
    );
    // Open (after the seal): always read from the buffer.
    buffer.insert(&exchanges("orders", 11, 10..12)).unwrap();
    // Flushed long ago: only in a file.
    put_file(store.as_ref(), &exchanges("orders", 9, 0..5), 7).await;
    let engine = engine(store, buffer, &args());

    assert_eq!(
        count(&engine, "SELECT count(*) FROM exchanges").await,
        4 + 3 + 2 + 5
    );
    assert_eq!(
        count(&engine, "SELECT count(DISTINCT id) FROM exchanges").await,
        4 + 3 + 2 + 5,
        "no exchange is read twice"
    );
}

#[tokio::test]
async fn status_counts_run_dense_and_percentiles_run_grouped_with_the_same_answers() {
    let store = Arc::new(InMemory::new());
    let mut all = Vec::new();
    for (sequence, (service, hour, count)) in
        [("orders", 10, 40), ("orders", 11, 47), ("payments", 10, 30)]
            .into_iter()
            .enumerate()
    {
        let stored = exchanges(service, hour, 0..count);
        put_file(store.as_ref(), &stored, sequence as u64 + 1).await;
        all.extend(stored);
    }
    let buffer = Arc::new(Buffer::new());
    let buffered = exchanges("payments", 12, 0..9);
    buffer.insert(&buffered).unwrap();
    all.extend(buffered);
    let engine = engine(store, buffer, &args());

    let status = "SELECT status, count(*) AS n, count(response_flags) AS f FROM exchanges \
        GROUP BY status ORDER BY status";
    let plan = table(&engine, &format!("EXPLAIN {status}")).await;
    assert!(plan.contains("DenseCountExec"), "{plan}");
    let mut expected = String::from("status,n,f\n");
    for code in [200, 503] {
        let n = all.iter().filter(|e| e.status == code).count();
        expected.push_str(&format!("{code},{n},{n}\n"));
    }
    let (schema, batches) = engine.sql(status).await.unwrap();
    assert_eq!(
        format_batches(&schema, &batches, OutputFormat::Csv).unwrap(),
        expected
    );

    // Groups of at most 50 values: the digest keeps every value, so the answer is exact
    // interpolation between neighbours, whichever accumulator ran.
    let cutoff = day() + 11 * HOUR;
    let (schema, batches) = engine
        .sql(&format!(
            "SELECT workload, approx_percentile_cont(duration_ns, 0.5) AS p50 FROM exchanges \
             WHERE start_time < to_timestamp_nanos({cutoff}) \
             GROUP BY workload ORDER BY workload"
        ))
        .await
        .unwrap();
    let printed = format_batches(&schema, &batches, OutputFormat::Csv).unwrap();
    assert!(printed.starts_with("workload,p50\n"), "{printed}");
    let lines: Vec<&str> = printed.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    for line in lines {
        let (service, p50) = line.split_once(',').unwrap();
        let mut durations: Vec<f64> = all
            .iter()
            .filter(|e| e.workload == service && e.start_unix_nanos < cutoff)
            .map(|e| e.duration_nanos as f64)
            .collect();
        durations.sort_by(f64::total_cmp);
        assert!(durations.len() <= 50 && !durations.is_empty(), "{service}");
        let middle = durations.len() / 2;
        let p50: f64 = p50.parse().unwrap();
        assert!(
            durations[middle.saturating_sub(1)] <= p50 && p50 <= durations[middle],
            "{service}: {p50} not between the middle values of {durations:?}"
        );
    }
}

#[tokio::test]
async fn newest_first_lets_a_top_k_by_start_time_skip_older_files() {
    let store = Arc::new(InMemory::new());
    for hour in 0..8 {
        put_file(store.as_ref(), &exchanges("orders", hour, 0..20), hour + 1).await;
    }
    let engine = engine(store, Arc::new(Buffer::new()), &args());
    let newest = "SELECT start_time FROM exchanges ORDER BY start_time DESC LIMIT 3";
    let (schema, batches) = engine.sql(newest).await.unwrap();
    let printed = format_batches(&schema, &batches, OutputFormat::Csv).unwrap();
    assert_eq!(printed.lines().count(), 4, "{printed}");
    assert!(printed.contains("T07:00:19"), "{printed}");
    // The files are read newest hour first, so once a partition's first file has filled the
    // top 3, the older files' row groups are ruled out by the top-k's dynamic filter (applied to
    // their statistics when they are opened) and not read: at most one file per partition.
    let plan = table(&engine, &format!("EXPLAIN ANALYZE {newest}")).await;
    let read: usize = plan
        .split("row_groups_pruned_statistics=8 total → ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row group pruning figure in {plan}"));
    assert!(read <= 2, "{read} of 8 files' row groups read: {plan}");
}

#[tokio::test]
async fn filters_on_service_and_time_open_only_the_files_they_need() {
    let store = Arc::new(CountingStore::default());
    let mut files = Vec::new();
    for (service, hour, sequence) in [
        ("orders", 10, 1),
        ("orders", 11, 2),
        ("orders", 12, 3),
        ("payments", 11, 4),
    ] {
        files.push(
            put_file(store.as_ref(), &exchanges(service, hour, 0..10), sequence)
                .await
                .to_string(),
        );
    }
    // Another day, to show that dates are pruned too.
    files.push(
        put_file(store.as_ref(), &exchanges("orders", 24 + 11, 0..10), 5)
            .await
            .to_string(),
    );
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("orders", 11, 100..103)).unwrap();
    buffer.insert(&exchanges("payments", 12, 100..102)).unwrap();
    // A fresh engine per query, so that no Parquet footer is cached: every file the scan plans
    // to read is opened (read) at least once, and no other.
    let run = async |sql: &str| {
        let engine = engine(store.clone(), buffer.clone(), &args());
        store.take();
        let n = count(&engine, sql).await;
        let (reads, lists) = store.take();
        (n, reads, lists)
    };
    let opened = |indexes: &[usize]| {
        indexes
            .iter()
            .map(|i| files[*i].clone())
            .collect::<BTreeSet<_>>()
    };

    // Everything: one listing, every file is opened.
    let (n, reads, lists) = run("SELECT count(*) FROM exchanges").await;
    assert_eq!((n, reads), (50 + 5, opened(&[0, 1, 2, 3, 4])));
    assert_eq!(lists, ["exchanges"]);

    // One service: one listing of its folder.
    let (n, reads, lists) = run("SELECT count(*) FROM exchanges WHERE service = 'payments'").await;
    assert_eq!((n, reads), (10 + 2, opened(&[3])));
    assert_eq!(lists, ["exchanges/service=payments"]);
    let (n, reads, _) = run("SELECT count(*) FROM exchanges WHERE service LIKE 'pay%'").await;
    assert_eq!((n, reads), (10 + 2, opened(&[3])));

    // One service, one hour: one file, and only that hour's folder is listed.
    let (n, reads, lists) = run("SELECT count(*) FROM exchanges WHERE service = 'orders' \
        AND start_time >= TIMESTAMP '2026-11-27T11:00:00Z' AND start_time < TIMESTAMP '2026-11-27T12:00:00Z'")
    .await;
    assert_eq!((n, reads), (10 + 3, opened(&[1])));
    assert_eq!(lists, ["exchanges/service=orders/date=2026-11-27/hour=11"]);

    // BETWEEN on time only, across services: the 11:00 hour of both services (whose row
    // groups then turn out to have no matching rows).
    let (n, reads, lists) = run("SELECT count(*) FROM exchanges WHERE start_time \
        BETWEEN TIMESTAMP '2026-11-27T11:30:00Z' AND TIMESTAMP '2026-11-27T11:59:59Z'")
    .await;
    assert_eq!((n, reads), (0, opened(&[1, 3])));
    assert_eq!(
        lists,
        [
            "exchanges/ (folders)",
            "exchanges/service=orders/date=2026-11-27/hour=11",
            "exchanges/service=payments/date=2026-11-27/hour=11",
        ]
    );

    // IN on services with a lower time bound only: dates are listed, then hours pruned.
    let (n, reads, lists) = run(
        "SELECT count(*) FROM exchanges WHERE service IN ('payments', 'nobody') \
        AND start_time >= TIMESTAMP '2026-11-27T12:00:00Z'",
    )
    .await;
    assert_eq!((n, reads), (2, opened(&[])));
    assert_eq!(
        lists[..2],
        [
            "exchanges/service=nobody/ (folders)",
            "exchanges/service=payments/ (folders)"
        ]
    );
    assert_eq!(
        lists.len(),
        2 + 12,
        "hours 12 to 23 of the one date: {lists:?}"
    );

    // Filters on the partition columns themselves.
    let (n, reads, _) = run("SELECT count(*) FROM exchanges WHERE date = '2026-11-28'").await;
    assert_eq!((n, reads), (10, opened(&[4])));
    let (n, reads, _) =
        run("SELECT count(*) FROM exchanges WHERE hour >= '12' AND service LIKE 'ord%'").await;
    assert_eq!((n, reads), (10, opened(&[2])));

    // A filter the pruning does not understand still gives the right answer.
    let (n, reads, _) = run("SELECT count(*) FROM exchanges \
        WHERE date_trunc('hour', start_time) = TIMESTAMP '2026-11-27T12:00:00Z'")
    .await;
    assert_eq!((n, reads.len()), (10 + 2, 5));
}

/// A query repeated with nothing changed lists only the change markers and reads no Parquet
/// footer again; row-group statistics (from the cached footers) keep it away from a file of the
/// right hour whose rows are all too early; a writer's change is seen at its marker; answers
/// are the same before and after a compaction, and the same as an engine without a cache.
#[tokio::test]
async fn a_repeated_query_rereads_no_footer_and_commits_invalidate_the_listing() {
    let store = Arc::new(CountingStore::default());
    let shared: Arc<dyn ObjectStore> = store.clone();
    let a = put_file(store.as_ref(), &exchanges("orders", 1, 0..50), 1).await;
    let b = put_file(store.as_ref(), &exchanges("orders", 1, 50..100), 2).await;
    // What the writer of those files does after its flush.
    let writer = ListingCache::default();
    writer.publish(&shared, 0xabc).await.unwrap();
    let cache = Arc::new(ListingCache::default());
    let cached = QueryEngine::with_listing_cache(
        shared.clone(),
        Arc::new(Buffer::new()),
        &args(),
        cache.clone(),
    )
    .unwrap();
    // A new engine: nothing cached yet.
    let uncached = async |sql: &str| {
        let fresh = engine(store.clone(), Arc::new(Buffer::new()), &args());
        table(&fresh, sql).await
    };
    let by_status = "SELECT status, count(*) AS n FROM exchanges GROUP BY status ORDER BY status";
    let counted = "SELECT count(*) FROM exchanges";

    // Cold: one listing, both footers read.
    store.take_requests();
    assert_eq!(count(&cached, counted).await, 100);
    let (gets, lists, markers) = store.take_requests();
    assert_eq!(lists, ["exchanges"]);
    assert_eq!(markers, 1);
    let files: BTreeSet<String> = gets.iter().cloned().collect();
    assert_eq!(files, BTreeSet::from([a.to_string(), b.to_string()]));

    // Warm: no partition listing, and no GET at all for a count (footers are cached; a count
    // reads no column).
    assert_eq!(count(&cached, counted).await, 100);
    let (gets, lists, markers) = store.take_requests();
    assert_eq!(
        (gets.len(), lists.len(), markers),
        (0, 0, 1),
        "{gets:?} {lists:?}"
    );

    // A column: only its pages are read, no footer; the same number of GETs every time.
    let before = table(&cached, by_status).await;
    let (first, _, _) = store.take_requests();
    assert_eq!(table(&cached, by_status).await, before);
    let (second, lists, _) = store.take_requests();
    assert_eq!((first.len(), lists.len()), (second.len(), 0));
    assert_eq!(before, uncached(by_status).await);

    // Statistics: rows from 01:00:50 on are all in `b`; `a` (01:00:00 to 01:00:49, same
    // partition) is pruned by its cached footer's row-group statistics: not one GET.
    let late =
        "SELECT count(*) FROM exchanges WHERE start_time >= TIMESTAMP '2026-11-27T01:00:50Z'";
    store.take_requests();
    assert_eq!(count(&cached, late).await, 50);
    let (gets, _, _) = store.take_requests();
    assert!(!gets.contains(&a.to_string()), "{gets:?}");
    assert!(gets.contains(&b.to_string()), "{gets:?}");

    // Another writer flushes a file: seen once its marker changes, with only its footer read.
    let c = put_file(store.as_ref(), &exchanges("orders", 1, 100..120), 3).await;
    assert_eq!(count(&cached, counted).await, 100, "before the marker");
    ListingCache::default()
        .publish(&shared, 0xdef)
        .await
        .unwrap();
    store.take_requests();
    assert_eq!(count(&cached, counted).await, 120);
    let (gets, lists, _) = store.take_requests();
    assert_eq!(gets, [c.to_string()]);
    assert_eq!(lists, ["exchanges"]);
    let before = table(&cached, by_status).await;
    assert_eq!(before, uncached(by_status).await);

    // A compaction commits, and its writer publishes: same answers, from the merged file.
    let names = tapedeck_collector::writer::FileNamer::new(0x123, 1);
    let metrics = tapedeck_collector::metrics::Metrics::new();
    let report = tapedeck_collector::writer::compact(
        &shared,
        &names,
        2,
        std::time::SystemTime::now(),
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!((report.partitions, report.files), (1, 3));
    ListingCache::default()
        .publish(&shared, 0x123)
        .await
        .unwrap();
    store.take_requests();
    assert_eq!(table(&cached, by_status).await, before);
    let (gets, lists, _) = store.take_requests();
    assert_eq!(lists, ["exchanges"]);
    assert!(
        gets.iter()
            .all(|path| path.ends_with(".compacted.parquet") || path.contains("_state-")),
        "{gets:?}"
    );
    assert_eq!(before, uncached(by_status).await);
    assert_eq!(count(&cached, counted).await, 120);
}

#[tokio::test]
async fn header_body_text_and_json_functions() {
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("orders", 10, 0..4)).unwrap();
    let engine = engine(Arc::new(InMemory::new()), buffer, &args());
    let sql = "SELECT header(request_headers, 'Content-Type') AS request_type, \
                      header(response_headers, 'content-type') AS response_type, \
                      header(request_headers, 'X-DUP') AS dup, \
                      header(request_headers, 'x-missing') AS missing, \
                      header(request_headers, 'x-bin') AS bin, \
                      body_text(response_body) AS body, \
                      json_get_str(body_text(response_body), 'id') AS id, \
                      json_get_int(body_text(request_body), 'qty') AS qty, \
                      body_text(request_body)->>'order' AS order_ \
               FROM exchanges ORDER BY start_time";
    assert_eq!(
        table(&engine, sql).await,
        "\
+------------------+---------------------------------+-------+---------+-----+------------------------+-----+-----+--------+
| request_type     | response_type                   | dup   | missing | bin | body                   | id  | qty | order_ |
+------------------+---------------------------------+-------+---------+-----+------------------------+-----+-----+--------+
| application/json | application/json; charset=utf-8 | first |         | \u{fffd}\0a | {\"id\":\"r-0\",\"ok\":true} | r-0 | 0   | o-0    |
| application/json | application/json; charset=utf-8 | first |         | \u{fffd}\0a | {\"id\":\"r-1\",\"ok\":true} | r-1 | 1   | o-1    |
| application/json | application/json; charset=utf-8 | first |         | \u{fffd}\0a | {\"id\":\"r-2\",\"ok\":true} | r-2 | 2   | o-2    |
| application/json | application/json; charset=utf-8 | first |         | \u{fffd}\0a | {\u{fffd}\u{fffd}}                   |     | 3   | o-3    |
+------------------+---------------------------------+-------+---------+-----+------------------------+-----+-----+--------+
"
    );
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM exchanges WHERE header(request_headers, 'x-missing') IS NULL"
        )
        .await,
        4
    );
    let wrong = error(&engine, "SELECT header(status, 'x') FROM exchanges")
        .await
        .to_string();
    assert!(
        wrong.contains("header(headers, name) takes a header column"),
        "{wrong}"
    );
}

#[tokio::test]
async fn only_queries_are_allowed() {
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args());
    for (sql, what) in [
        ("CREATE TABLE t (a INT)", "CREATE TABLE"),
        ("CREATE TABLE t AS SELECT * FROM exchanges", "CREATE TABLE"),
        (
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc/'",
            "CREATE EXTERNAL TABLE",
        ),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("INSERT INTO exchanges SELECT * FROM exchanges", "INSERT"),
        ("COPY exchanges TO '/tmp/out.parquet'", "COPY"),
        ("COPY (SELECT 1) TO '/tmp/out.csv' STORED AS CSV", "COPY"),
        ("DROP TABLE exchanges", "DROP TABLE"),
        ("DELETE FROM exchanges", "DELETE"),
        ("UPDATE exchanges SET status = 1", "UPDATE"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        ("EXPLAIN COPY exchanges TO '/tmp/x.parquet'", "COPY"),
        ("EXPLAIN CREATE TABLE t (a INT)", "CREATE TABLE"),
        ("SELECT 1; DROP TABLE exchanges", "DROP TABLE"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("BEGIN", "BEGIN"),
    ] {
        let error = error(&engine, sql).await;
        assert_eq!(
            error.to_string(),
            format!("read-only: {what} is not allowed"),
            "{sql}"
        );
        assert!(matches!(error, QueryError::ReadOnly { .. }));
    }
    // No way to name a file: no URL tables, no file-reading table functions.
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
    ] {
        let error = error(&engine, sql).await;
        assert!(
            matches!(error, QueryError::InvalidSql { .. }),
            "{sql}: {error}"
        );
    }
    // Reading is fine, EXPLAIN and DESCRIBE and information_schema included.
    for sql in [
        "EXPLAIN SELECT count(*) FROM exchanges",
        "DESCRIBE exchanges",
        "SHOW TABLES",
        "SHOW COLUMNS FROM exchanges",
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'exchanges'",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "VALUES (1), (2)",
    ] {
        engine
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn invalid_sql_names_the_problem() {
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args());
    let syntax = error(&engine, "SELECT * FORM exchanges").await.to_string();
    assert!(
        syntax.starts_with("invalid SQL: ") && syntax.contains("Line: 1, Column: 10"),
        "{syntax}"
    );
    let column = error(&engine, "SELECT nope FROM exchanges")
        .await
        .to_string();
    assert!(
        column.starts_with("invalid SQL: ") && column.contains("nope"),
        "{column}"
    );
    let table = error(&engine, "SELECT * FROM requests").await.to_string();
    assert!(
        table.contains("requests") && table.contains("not found"),
        "{table}"
    );
    let function = error(&engine, "SELECT no_such_fn(1)").await.to_string();
    assert!(function.contains("no_such_fn"), "{function}");
    assert_eq!(
        error(&engine, "").await.to_string(),
        "expected one SQL statement, got 0"
    );
    assert_eq!(
        error(&engine, "SELECT 1; SELECT 2").await.to_string(),
        "expected one SQL statement, got 2"
    );
}

#[tokio::test]
async fn a_slow_query_stops_at_the_time_limit() {
    let args = QueryArgs {
        timeout: 1,
        ..QueryArgs::default()
    };
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args);
    let started = Instant::now();
    let sql = "SELECT count(*) FROM range(1000000000000) WHERE value % 7 = 8";
    let error = error(&engine, sql).await;
    assert_eq!(
        error.to_string(),
        "query exceeded the 1 s limit (--query-timeout)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hungry_query_stops_at_the_memory_limit() {
    let args = QueryArgs {
        memory: 1024 * 1024,
        ..QueryArgs::default()
    };
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args);
    for sql in [
        "SELECT value % 1000000 AS k, count(*) FROM range(3000000) GROUP BY k ORDER BY k LIMIT 1",
        "SELECT value FROM range(3000000) ORDER BY value DESC LIMIT 100000 OFFSET 1",
    ] {
        let error = error(&engine, sql).await;
        let message = error.to_string();
        assert!(
            matches!(error, QueryError::MemoryLimit { .. }),
            "{sql}: {message}"
        );
        assert!(
            message.starts_with("query exceeded the memory limit of 1048576 bytes"),
            "{message}"
        );
    }
    // Small queries still run under the same limit.
    assert_eq!(
        count(&engine, "SELECT count(*) FROM range(1000)").await,
        1000
    );
}

/// A function whose output size is an argument (`repeat`, `lpad`, `rpad`) is refused before it
/// builds more than the memory limit: the pool does not see a scalar function's output and the
/// timeout cannot stop a running kernel (the `collector_sql` fuzz target found
/// `repeat('x', 2147483647)` building 2 GiB in 31 s under a 64 MiB, 2 s limit).
#[tokio::test]
async fn functions_sized_by_an_argument_stay_under_the_memory_limit() {
    let args = QueryArgs {
        memory: 1024 * 1024,
        timeout: 2,
        ..QueryArgs::default()
    };
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args);
    for sql in [
        "SELECT length(repeat('x', 2147483647))",
        "SELECT length(lpad('x', 2147483647))",
        "SELECT length(rpad('x', 2147483647, 'yz'))",
        "SELECT sum(length(repeat('ab', value))) FROM range(100000)",
    ] {
        let started = std::time::Instant::now();
        let message = error(&engine, sql).await.to_string();
        assert!(
            message.contains("more than the query memory limit of 1048576 bytes"),
            "{sql}: {message}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{sql}");
    }
    // Within the limit they run as before.
    assert_eq!(
        count(&engine, "SELECT CAST(length(repeat('ab', 1000)) AS BIGINT)").await,
        2000
    );
    assert_eq!(
        count(&engine, "SELECT CAST(length(lpad('x', 5)) AS BIGINT)").await,
        5
    );
}

#[tokio::test]
async fn results_are_capped_at_max_rows() {
    let args = QueryArgs {
        max_rows: 10,
        ..QueryArgs::default()
    };
    let engine = engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args);
    assert_eq!(
        engine
            .sql("SELECT * FROM range(10)")
            .await
            .unwrap()
            .1
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        10
    );
    let error = error(&engine, "SELECT * FROM range(11)").await;
    assert!(
        matches!(error, QueryError::TooManyRows { limit: 10 }),
        "{error}"
    );
}

#[tokio::test]
async fn offline_reads_the_store_and_the_unflushed_log() {
    let data = tempfile::tempdir().unwrap();
    let store = tapedeck_collector::store::open_store(data.path(), None)
        .unwrap()
        .store;
    put_file(store.as_ref(), &exchanges("orders", 10, 0..6), 1).await;
    write_wal(
        data.path(),
        &[
            exchanges("orders", 11, 0..2),
            exchanges("payments", 11, 0..3),
        ],
    );
    let engine = open_offline(data.path(), None, &args()).await.unwrap();
    assert_eq!(
        table(
            &engine,
            "SELECT service, hour, count(*) AS n FROM exchanges GROUP BY 1, 2 ORDER BY 1, 2"
        )
        .await,
        "\
+----------+------+---+
| service  | hour | n |
+----------+------+---+
| orders   | 10   | 6 |
| orders   | 11   | 2 |
| payments | 11   | 3 |
+----------+------+---+
"
    );
}

#[tokio::test]
async fn the_sql_command_reads_a_data_directory_or_asks_a_collector() {
    let data = tempfile::tempdir().unwrap();
    write_wal(data.path(), &[exchanges("orders", 11, 0..2)]);
    let mut command = SqlArgs {
        query: "SELECT service, count(*) AS n FROM exchanges GROUP BY 1".into(),
        collector: None,
        token: None,
        data: data.path().to_path_buf(),
        store: None,
        format: OutputFormat::Csv,
        limits: QueryArgs::default(),
    };
    assert_eq!(run_sql(&command).await.unwrap(), "service,n\norders,2\n");

    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("payments", 11, 0..3)).unwrap();
    let server = Server::start(
        engine(Arc::new(InMemory::new()), buffer, &args()),
        Some("t"),
    )
    .await;
    command.collector = Some(server.address.clone());
    command.token = Some("t".into());
    command.format = OutputFormat::Json;
    assert_eq!(
        run_sql(&command).await.unwrap(),
        "{\"service\":\"payments\",\"n\":3}\n"
    );
    command.token = None;
    let error = run_sql(&command).await.unwrap_err().to_string();
    assert_eq!(
        error, "collector answered Unauthenticated: missing or wrong bearer token",
        "{error}"
    );
    server.stop().await;
}

/// Writes one log segment holding `batches`, in the write-ahead log's record format.
fn write_wal(data: &FsPath, batches: &[Vec<Exchange>]) {
    use tapedeck_proto::prost::Message as _;
    let dir = tapedeck_collector::config::wal_dir(data);
    std::fs::create_dir_all(&dir).unwrap();
    let mut segment = Vec::new();
    for (i, exchanges) in batches.iter().enumerate() {
        let batch = tapedeck_proto::ExchangeBatch {
            exchanges: exchanges.clone(),
            filter_version: "0.1.0".into(),
            sequence: i as u64 + 1,
            ..Default::default()
        };
        tapedeck_collector::wal::encode_record(&batch.encode_to_vec(), &mut segment);
    }
    std::fs::write(dir.join(tapedeck_collector::wal::segment_name(1)), segment).unwrap();
}

#[tokio::test]
async fn results_print_as_table_csv_and_json() {
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("orders", 10, 3..5)).unwrap();
    let engine = engine(Arc::new(InMemory::new()), buffer, &args());
    let sql = "SELECT start_time, status, response_body AS body, redactions, response_trailers AS trailers \
               FROM exchanges ORDER BY start_time";
    let (schema, batches) = engine.sql(sql).await.unwrap();
    assert_eq!(
        format_batches(&schema, &batches, OutputFormat::Table).unwrap(),
        "\
+----------------------+--------+----------------------------------------------+---------------------+------------------------------------------------+
| start_time           | status | body                                         | redactions          | trailers                                       |
+----------------------+--------+----------------------------------------------+---------------------+------------------------------------------------+
| 2026-11-27T10:00:03Z | 200    | 7bfffe7d                                     | []                  | [{name: grpc-status, value: 0, value_bytes: }] |
| 2026-11-27T10:00:04Z | 503    | 7b226964223a22722d34222c226f6b223a747275657d | [request.header:h0] | [{name: grpc-status, value: 0, value_bytes: }] |
+----------------------+--------+----------------------------------------------+---------------------+------------------------------------------------+
"
    );
    assert_eq!(
        format_batches(&schema, &batches, OutputFormat::Csv).unwrap(),
        "\
start_time,status,body,redactions,trailers
2026-11-27T10:00:03Z,200,7bfffe7d,[],\"[{name: grpc-status, value: 0, value_bytes: }]\"
2026-11-27T10:00:04Z,503,7b226964223a22722d34222c226f6b223a747275657d,[request.header:h0],\"[{name: grpc-status, value: 0, value_bytes: }]\"
"
    );
    assert_eq!(
        format_batches(&schema, &batches, OutputFormat::Json).unwrap(),
        r#"{"start_time":"2026-11-27T10:00:03Z","status":200,"body":"7bfffe7d","redactions":[],"trailers":[{"name":"grpc-status","value":"0","value_bytes":null}]}
{"start_time":"2026-11-27T10:00:04Z","status":503,"body":"7b226964223a22722d34222c226f6b223a747275657d","redactions":["request.header:h0"],"trailers":[{"name":"grpc-status","value":"0","value_bytes":null}]}
"#
    );
    let empty = engine
        .sql("SELECT status FROM exchanges WHERE status = 1")
        .await
        .unwrap();
    assert_eq!(
        format_batches(&empty.0, &empty.1, OutputFormat::Table).unwrap(),
        "+--------+\n| status |\n+--------+\n+--------+\n"
    );
    assert_eq!(
        format_batches(&empty.0, &empty.1, OutputFormat::Csv).unwrap(),
        "status\n"
    );
    assert_eq!(
        format_batches(&empty.0, &empty.1, OutputFormat::Json).unwrap(),
        ""
    );
}

struct Server {
    address: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<tapedeck_collector::Result<()>>,
}

impl Server {
    async fn start(engine: QueryEngine, token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(flight::serve(
            listener,
            Arc::new(engine),
            token.map(str::to_string),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn flight_sql_round_trip_with_a_token() {
    let store = Arc::new(InMemory::new());
    put_file(store.as_ref(), &exchanges("orders", 10, 0..6), 1).await;
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("orders", 11, 0..4)).unwrap();
    let server = Server::start(engine(store, buffer, &args()), Some("s3cret")).await;

    let (schema, batches) = query_remote(
        &server.address,
        Some("s3cret"),
        "SELECT * FROM exchanges ORDER BY start_time",
    )
    .await
    .unwrap();
    let mut expected = exchanges("orders", 10, 0..6);
    expected.extend(exchanges("orders", 11, 0..4));
    assert_eq!(exchanges_of(&schema, &batches), expected);

    // An empty result still has its schema.
    let (schema, batches) = query_remote(
        &server.address,
        Some("s3cret"),
        "SELECT status FROM exchanges WHERE false",
    )
    .await
    .unwrap();
    assert_eq!(schema.field(0).name(), "status");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

    for token in [None, Some("wrong"), Some("")] {
        let error = query_remote(&server.address, token, "SELECT 1")
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Some(tonic::Code::Unauthenticated),
            "{token:?}: {error}"
        );
    }
    let error = query_remote(&server.address, Some("s3cret"), "DROP TABLE exchanges")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::PermissionDenied));
    assert!(
        error
            .to_string()
            .contains("read-only: DROP TABLE is not allowed"),
        "{error}"
    );
    let error = query_remote(&server.address, Some("s3cret"), "SELEC 1")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::InvalidArgument), "{error}");

    // A generic Flight SQL client: basic-auth handshake, prepared statement, sql info.
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new_from_inner(FlightServiceClient::new(channel));
    client.handshake("anyone", "s3cret").await.unwrap();
    assert_eq!(client.token().map(String::as_str), Some("s3cret"));
    let mut prepared = client
        .prepare("SELECT count(*) AS n FROM exchanges".into(), None)
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        10
    );
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<RecordBatch> = client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(batches[0].num_rows(), 1);
    let error = client.begin_transaction().await.unwrap_err().to_string();
    assert!(error.contains("not supported"), "{error}");
    let mut anonymous = FlightSqlServiceClient::new(
        tonic::transport::Endpoint::from_shared(server.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    assert!(anonymous.handshake("anyone", "wrong").await.is_err());

    server.stop().await;
}

/// Every batch a `FlightInfo`'s endpoints return.
async fn fetch(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let column = batch.column_by_name(column).unwrap();
    let column = column.as_string::<i32>();
    (0..column.len())
        .map(|i| column.value(i).to_string())
        .collect()
}

#[tokio::test]
async fn flight_sql_catalog_calls_and_bound_parameters() {
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, CommandGetXdbcTypeInfo};
    use datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer;

    let store = Arc::new(InMemory::new());
    put_file(store.as_ref(), &exchanges("orders", 10, 0..6), 1).await;
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("payments", 11, 0..4)).unwrap();
    let server = Server::start(engine(store, buffer, &args()), Some("s3cret")).await;
    let channel = tonic::transport::Endpoint::from_shared(server.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new_from_inner(FlightServiceClient::new(channel));

    // The same auth as queries.
    let error = client.get_catalogs().await.unwrap_err().to_string();
    assert!(error.contains("missing or wrong bearer token"), "{error}");
    client.set_token("s3cret".into());

    let info = client.get_catalogs().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(strings(&batches[0], "catalog_name"), ["datafusion"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("datafusion".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(strings(&batches[0], "db_schema_name"), ["public"]);

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("exch%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(strings(&batches[0], "table_name"), ["exchanges"]);
    assert_eq!(strings(&batches[0], "table_type"), ["TABLE"]);
    let encoded = batches[0].column_by_name("table_schema").unwrap();
    let schema = try_schema_from_ipc_buffer(encoded.as_binary::<i32>().value(0)).unwrap();
    assert_eq!(&schema, tapedeck_collector::query::table_schema().as_ref());
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("nothing%".into()),
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    let rows: usize = fetch(&mut client, info)
        .await
        .iter()
        .map(RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 0);

    let info = client.get_table_types().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(strings(&batches[0], "table_type"), ["TABLE"]);

    let info = client
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    let names = strings(&batches[0], "type_name");
    for name in ["BIGINT", "VARCHAR", "VARBINARY", "TIMESTAMP"] {
        assert!(names.iter().any(|n| n == name), "{names:?}");
    }

    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(batches[0].num_rows(), 2);

    // A prepared statement with parameters: the schema says what to bind, the bound values
    // are used, and binding again replaces them.
    let mut prepared = client
        .prepare(
            "SELECT count(*) AS n FROM exchanges WHERE service = $1 AND status >= $2".into(),
            None,
        )
        .await
        .unwrap();
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 2);
    assert_eq!(parameters.field(0).name(), "$1");
    let bind = |service: &str, status: i64| {
        let fields = parameters.fields();
        let status_column: ArrayRef = datafusion::arrow::compute::cast(
            &(Arc::new(Int64Array::from(vec![status])) as ArrayRef),
            fields[1].data_type(),
        )
        .unwrap();
        let service_column: ArrayRef = datafusion::arrow::compute::cast(
            &(Arc::new(StringArray::from(vec![service])) as ArrayRef),
            fields[0].data_type(),
        )
        .unwrap();
        RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![service_column, status_column],
        )
        .unwrap()
    };
    for (service, expected) in [("orders", 6), ("payments", 4), ("nobody", 0)] {
        prepared.set_parameters(bind(service, 0)).unwrap();
        let info = prepared.execute().await.unwrap();
        let batches = fetch(&mut client, info).await;
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().value(0),
            expected,
            "{service}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn flight_sql_without_a_token_is_open() {
    let server = Server::start(
        engine(Arc::new(InMemory::new()), Arc::new(Buffer::new()), &args()),
        None,
    )
    .await;
    let (_, batches) = query_remote(&server.address, None, "SELECT 41 + 1 AS answer")
        .await
        .unwrap();
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        42
    );
    let (_, batches) = query_remote(
        &server.address,
        Some("anything"),
        "SELECT count(*) FROM exchanges",
    )
    .await
    .unwrap();
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    let error = query_remote("127.0.0.1:1", None, "SELECT 1")
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("connecting to http://127.0.0.1:1"),
        "{error}"
    );
    server.stop().await;
}

/// SQL behaviour as case files: each `tests/sql/<name>.sql` holds statements separated by
/// lines that end in `;`; `<name>.out` holds each statement and its result (or error). Run with
/// `TAPEDECK_BLESS=1` to rewrite the `.out` files, then review the diff.
#[tokio::test]
async fn sql_case_files() {
    let store = Arc::new(InMemory::new());
    put_file(store.as_ref(), &exchanges("orders", 10, 0..6), 1).await;
    put_file(store.as_ref(), &exchanges("payments", 10, 0..3), 2).await;
    let buffer = Arc::new(Buffer::new());
    buffer.insert(&exchanges("orders", 11, 6..9)).unwrap();
    let engine = engine(store, buffer, &args());
    let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let bless = std::env::var_os("TAPEDECK_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no case files in {}", dir.display());
    let mut failures = Vec::new();
    for case in cases {
        let text = std::fs::read_to_string(&case).unwrap();
        let mut out = String::new();
        for statement in split_statements(&text) {
            out.push_str(&statement);
            out.push('\n');
            match engine.sql(&statement).await {
                Ok((schema, batches)) => {
                    out.push_str(&format_batches(&schema, &batches, OutputFormat::Table).unwrap())
                }
                Err(error) => out.push_str(&format!("error: {error}\n")),
            }
            out.push('\n');
        }
        let expected_path = case.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &out).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != out {
            failures.push(format!("{}:\n{out}", expected_path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "case files differ (TAPEDECK_BLESS=1 rewrites them):\n{}",
        failures.join("\n")
    );
}

/// Statements of a case file: text up to each line ending in `;` (the `;` dropped), with
/// `--` comment lines kept so the output shows them.
fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() && current.trim().is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        match line.trim_end().strip_suffix(';') {
            Some(last) => {
                current.push_str(last);
                statements.push(std::mem::take(&mut current));
            }
            None => current.push_str(line),
        }
    }
    if !current.trim().is_empty() {
        statements.push(current);
    }
    statements
}
