//! Several collector processes on one `moto_server` bucket: they flush into the same
//! partitions and compact each other's files while queries run, one is killed with SIGKILL and
//! restarted, and every query sees each acknowledged exchange at most once; at the end, exactly
//! once.
//!
//! The collectors are this test binary run again (`current_exe`) with `CHILD_DATA` set: the same
//! test function then runs one collector until its stdin closes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use tapedeck_collector::buffer::Buffer;
use tapedeck_collector::manifest;
use tapedeck_collector::query::{QueryArgs, QueryEngine};
use tapedeck_collector::store::open_store_with;
use tapedeck_collector::{CollectorArgs, Listeners, run_with};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tokio::process::{Child, Command};

use crate::s3::{BUCKET, Moto};
use crate::support::*;

const CHILD_DATA: &str = "TAPEDECK_TEST_CHILD_DATA";
const CHILD_ENDPOINT: &str = "TAPEDECK_TEST_CHILD_ENDPOINT";
const TEST_NAME: &str =
    "multiwriter::collectors_sharing_a_bucket_store_every_acknowledged_exchange_once";
const COLLECTORS: usize = 3;
const ROUNDS: usize = 24;
const PER_PUSH: usize = 40;

fn store_url() -> String {
    format!("s3://{BUCKET}/shared")
}

fn s3_options(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_string()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
    ]
}

/// One collector process (this binary in child mode).
struct Process {
    child: Child,
    grpc: std::net::SocketAddr,
}

impl Process {
    async fn start(data: &Path, endpoint: &str) -> Self {
        let addrs = data.join("addrs");
        let _ = std::fs::remove_file(&addrs);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("child.log"))
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_DATA, data)
            .env(CHILD_ENDPOINT, endpoint)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the test binary runs as a collector");
        let mut grpc = None;
        eventually("a collector process announces its address", || {
            let found = std::fs::read_to_string(&addrs).ok();
            grpc = found.and_then(|text| text.trim().parse().ok());
            std::future::ready(grpc.is_some())
        })
        .await;
        Self {
            child,
            grpc: grpc.unwrap(),
        }
    }

    /// SIGKILL.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        within("killed collector exit", self.child.wait())
            .await
            .unwrap();
    }

    /// Closes stdin (a graceful stop with a final flush) and waits for a clean exit.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = within("collector process stop", self.child.wait())
            .await
            .unwrap();
        assert!(status.success(), "collector process exited with {status}");
    }
}

/// Child mode: one collector on the shared bucket, until stdin closes.
async fn run_child(data: PathBuf) {
    let endpoint = std::env::var(CHILD_ENDPOINT).unwrap();
    let args = CollectorArgs {
        data: data.clone(),
        store: Some(store_url()),
        flush_interval: 1,
        compact_interval: 1,
        compact_min_files: 2,
        gc_grace: Duration::from_secs(6),
        retention: tapedeck_collector::config::Retention(None),
        ..Default::default()
    };
    let store = open_store_with(&data, Some(&store_url()), s3_options(&endpoint)).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let temp = data.join("addrs.tmp");
    std::fs::write(&temp, grpc.local_addr().unwrap().to_string()).unwrap();
    std::fs::rename(&temp, data.join("addrs")).unwrap();
    let listeners = Listeners {
        grpc,
        http,
        flight: None,
    };
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        })
        .await;
    };
    run_with(args, listeners, store, stdin_closed)
        .await
        .unwrap();
}

/// An exchange pushed by collector `collector`, numbered `n`, in one of four closed partitions.
fn numbered(collector: usize, n: u32, hour_start: u64) -> tapedeck_proto::Exchange {
    let workload = if n.is_multiple_of(2) {
        "orders"
    } else {
        "payments"
    };
    let hour = u64::from(n % 4 / 2);
    let mut exchange = exchange(
        (n % 200) as u8,
        workload,
        hour_start + hour * HOUR + u64::from(n),
    );
    let mut id = vec![collector as u8];
    id.extend_from_slice(&n.to_be_bytes());
    id.resize(16, 0x5a);
    exchange.id = id;
    exchange.authority = format!("c{collector}");
    exchange
}

/// (authority, rows, distinct ids) of the store as a query sees it.
async fn counts(engine: &QueryEngine) -> BTreeMap<String, (i64, i64)> {
    let (_, batches) = engine
        .sql(
            "SELECT authority, count(*), count(DISTINCT encode(arrow_cast(id, 'Binary'), 'hex')) \
             FROM exchanges GROUP BY authority",
        )
        .await
        .expect("the count query runs");
    let mut counts = BTreeMap::new();
    for batch in batches {
        let names = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let names = names.as_string::<i32>();
        let names: Vec<String> = (0..names.len())
            .map(|i| names.value(i).to_string())
            .collect();
        let rows = batch.column(1).as_primitive::<Int64Type>();
        let distinct = batch.column(2).as_primitive::<Int64Type>();
        for (i, name) in names.into_iter().enumerate() {
            counts.insert(name, (rows.value(i), distinct.value(i)));
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collectors_sharing_a_bucket_store_every_acknowledged_exchange_once() {
    if let Some(data) = std::env::var_os(CHILD_DATA) {
        return run_child(PathBuf::from(data)).await;
    }
    let moto = Moto::start().await;
    let reader = open_store_with(
        Path::new("/nonexistent"),
        Some(&store_url()),
        s3_options(&moto.endpoint),
    )
    .unwrap();
    // The bucket refuses a second conditional create: the manifest's compare-and-swap holds.
    let probe = object_store::path::Path::from("probe");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    reader
        .store
        .put_opts(&probe, PutPayload::from_static(b"1"), create())
        .await
        .unwrap();
    let second = reader
        .store
        .put_opts(&probe, PutPayload::from_static(b"2"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "moto_server must honour If-None-Match: {second:?}"
    );

    let dirs: Vec<tempfile::TempDir> = (0..COLLECTORS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut processes = Vec::new();
    for dir in &dirs {
        processes.push(Some(Process::start(dir.path(), &moto.endpoint).await));
    }
    // Two closed hours, well within the (disabled) retention.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour_start = (now / HOUR - 3) * HOUR;

    // Queries over the store alone (no buffer) while everything runs.
    let engine = Arc::new(
        QueryEngine::new(
            reader.store.clone(),
            Arc::new(Buffer::new()),
            &QueryArgs::default(),
        )
        .unwrap(),
    );
    let (stop_queries, mut stopped) = tokio::sync::watch::channel(false);
    let queries = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut last: BTreeMap<String, i64> = BTreeMap::new();
            let mut runs = 0;
            let mut pace = tokio::time::interval(Duration::from_millis(150));
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return runs,
                    _ = pace.tick() => {}
                }
                for (authority, (rows, distinct)) in counts(&engine).await {
                    assert_eq!(rows, distinct, "{authority}: a query saw rows twice");
                    // Collectors 1 and 2 are never killed: their stored rows only grow.
                    if authority != "c0" {
                        let before = last.insert(authority.clone(), rows).unwrap_or(0);
                        assert!(
                            rows >= before,
                            "{authority}: a query missed rows ({before} then {rows})"
                        );
                    }
                }
                runs += 1;
            }
        }
    });

    let mut acked: Vec<BTreeSet<Vec<u8>>> = vec![BTreeSet::new(); COLLECTORS];
    let mut next = 0u32;
    for round in 0..ROUNDS {
        if round == ROUNDS / 3 {
            processes[0].take().unwrap().kill().await;
            processes[0] = Some(Process::start(dirs[0].path(), &moto.endpoint).await);
        }
        for (i, process) in processes.iter().enumerate() {
            let process = process.as_ref().unwrap();
            let mut client = within(
                "connecting",
                CaptureClient::connect(format!("http://{}", process.grpc)),
            )
            .await
            .unwrap();
            let exchanges: Vec<_> = (0..PER_PUSH)
                .map(|_| {
                    next += 1;
                    numbered(i, next, hour_start)
                })
                .collect();
            let ids: Vec<Vec<u8>> = exchanges.iter().map(|e| e.id.clone()).collect();
            if within("push", client.push(batch(next.into(), exchanges)))
                .await
                .is_ok()
            {
                acked[i].extend(ids);
            }
        }
        // Let flushes and compactions interleave with the pushes.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for process in processes.into_iter().flatten() {
        process.stop().await;
    }
    let _ = stop_queries.send(true);
    let runs = within("queries", queries).await.unwrap();
    assert!(runs >= 10, "only {runs} queries ran");

    // Exactly what was acknowledged, once.
    let final_counts = counts(&engine).await;
    for (i, ids) in acked.iter().enumerate() {
        let n = ids.len() as i64;
        assert!(n > 0);
        assert_eq!(
            final_counts.get(&format!("c{i}")),
            Some(&(n, n)),
            "collector {i}"
        );
    }
    let (_, batches) = engine
        .sql("SELECT encode(arrow_cast(id, 'Binary'), 'hex') FROM exchanges")
        .await
        .unwrap();
    let mut stored = BTreeSet::new();
    for batch in batches {
        let column = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let hex = column.as_string::<i32>();
        stored.extend((0..hex.len()).map(|i| hex.value(i).to_string()));
    }
    let all: BTreeSet<String> = acked
        .into_iter()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    assert_eq!(stored, all);

    // Compaction did run, and merged files of different writers.
    let listings = manifest::list_table(&reader.store).await.unwrap();
    let mut mixed = 0;
    for (key, listing) in &listings {
        let Some(version) = listing.latest() else {
            continue;
        };
        let Some(state) = manifest::load(&reader.store, key, version).await.unwrap() else {
            continue;
        };
        for commit in state.outputs.values() {
            let writers: BTreeSet<&str> = commit
                .inputs
                .iter()
                .filter_map(|input| input.split('-').next())
                .collect();
            mixed += usize::from(writers.len() > 1);
        }
    }
    assert!(
        mixed > 0,
        "no compaction merged files of several writers: {listings:?}"
    );
}
