//! Property of the `collector_sql` fuzz target, shared with its stable smoke test
//! (`collector/tests/lib/fuzz_smoke.rs` includes this file).
//!
//! Any text is one statement for the collector's `QueryEngine` (what Flight SQL and
//! `tapedeck sql` run), over a tiny store: two Parquet files in an in-memory object store plus
//! a buffer with two more exchanges, under small limits (2 s, 64 MiB, 1 000 rows). Checked:
//! - nothing panics, inside DataFusion's tasks included (a panic there would come back as an
//!   internal error naming it);
//! - every statement ends, with rows or an error, within the time limit plus a grace period;
//! - read-only: the store's objects and the buffer's rows are the same after the statement; a
//!   statement that starts with a writing keyword (INSERT, COPY, CREATE, DROP …) is refused; a
//!   result never holds the contents of a local file outside the store (a canary file whose
//!   path the seeds name);
//! - a result never holds more rows than `max_rows`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::memory::InMemory;
use tapedeck_collector::buffer::Buffer;
use tapedeck_collector::query::{OutputFormat, QueryArgs, QueryEngine, QueryError, format_batches};
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

/// What the canary file holds; no result may show it.
pub(crate) const CANARY: &str = "tapedeck-canary-5f1e9a";
/// Where the seeds say the canary is: `/tmp/tapedeck-fuzz-canary/secret.{csv,json,parquet}`.
const CANARY_DIR: &str = "/tmp/tapedeck-fuzz-canary";
/// Rows in the tiny store.
const ROWS: usize = 4;
/// Statements the engine must refuse, whatever follows them.
const WRITES: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "COPY",
    "SET",
    "RESET",
    "GRANT",
    "REVOKE",
    "ATTACH",
    "DETACH",
    "INSTALL",
    "LOAD",
    "PRAGMA",
    "DEALLOCATE",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    engine: QueryEngine,
    store: Arc<dyn ObjectStore>,
    buffer: Arc<Buffer>,
    objects: Vec<(String, u64)>,
    args: QueryArgs,
}

fn exchange(n: u8, workload: &str) -> Exchange {
    let message = |body: &str| Message {
        headers: vec![
            Header {
                name: "content-type".into(),
                value: b"application/json".to_vec(),
            },
            Header {
                name: "authorization".into(),
                value: b"[redacted:0000]".to_vec(),
            },
        ],
        body: body.as_bytes().to_vec(),
        body_size: body.len() as u64,
        ..Default::default()
    };
    Exchange {
        id: vec![n; 16],
        trace_id: format!("{n:032x}"),
        start_unix_nanos: 1_764_547_200_000_000_000 + u64::from(n) * 3_600_000_000_000,
        duration_nanos: 1_000_000 * u64::from(n),
        direction: Direction::Inbound as i32,
        protocol: Protocol::Http11 as i32,
        workload: workload.into(),
        method: if n.is_multiple_of(2) { "GET" } else { "POST" }.into(),
        path: format!("/orders/{n}"),
        status: 200 + u32::from(n) * 100,
        sample_rate: 1.0,
        request: Some(message(&format!(r#"{{"item": {n}, "qty": [1, 2]}}"#))),
        response: Some(message(&format!(r#"{{"id": "o-{n}", "total": {n}.5}}"#))),
        redactions: vec!["request.header:authorization".into()],
        ..Default::default()
    }
}

fn objects(runtime: &tokio::runtime::Runtime, store: &Arc<dyn ObjectStore>) -> Vec<(String, u64)> {
    use futures::TryStreamExt as _;
    let mut listed: Vec<(String, u64)> = runtime
        .block_on(
            store
                .list(None)
                .map_ok(|meta| (meta.location.to_string(), meta.size))
                .try_collect::<Vec<_>>(),
        )
        .expect("listing the in-memory store");
    listed.sort();
    listed
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let canary = std::path::Path::new(CANARY_DIR);
        std::fs::create_dir_all(canary).expect("creating the canary folder");
        for (name, text) in [
            ("secret.csv", format!("secret\n{CANARY}\n")),
            ("secret.json", format!("{{\"secret\": \"{CANARY}\"}}\n")),
            ("secret.parquet", CANARY.to_string()),
        ] {
            std::fs::write(canary.join(name), text).expect("writing a canary file");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        runtime
            .block_on(tapedeck_collector::writer::write_exchanges(
                &store,
                1,
                &[exchange(1, "orders"), exchange(2, "payments")],
            ))
            .expect("writing the tiny store");
        let buffer = Arc::new(Buffer::new());
        buffer
            .insert(&[exchange(3, "orders"), exchange(4, "orders")])
            .expect("buffering");
        let args = QueryArgs {
            timeout: 2,
            memory: 64 * 1024 * 1024,
            max_rows: 1_000,
            concurrency: 1,
        };
        let engine = QueryEngine::new(store.clone(), buffer.clone(), &args).expect("an engine");
        let objects = objects(&runtime, &store);
        Fixture {
            runtime,
            engine,
            store,
            buffer,
            objects,
            args,
        }
    })
}

/// Whether `text` starts (after blanks) with `keyword` as a whole word, in any case.
fn starts_with_word(text: &str, keyword: &str) -> bool {
    let text = text.trim_start();
    text.len() >= keyword.len()
        && text.as_bytes()[..keyword.len()].eq_ignore_ascii_case(keyword.as_bytes())
        && !text
            .as_bytes()
            .get(keyword.len())
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// The property for one statement; panics when it does not hold. Returns whether the
/// statement ran (rather than being refused or failing).
pub(crate) fn check_sql(sql: &str) -> bool {
    let fixture = fixture();
    let began = Instant::now();
    let result = fixture.runtime.block_on(fixture.engine.sql(sql));
    let elapsed = began.elapsed();
    let limit = fixture.args.timeout() + Duration::from_secs(5);
    assert!(elapsed <= limit, "{sql:?} ran {elapsed:?}, past the limit");
    assert_eq!(
        objects(&fixture.runtime, &fixture.store),
        fixture.objects,
        "{sql:?} changed the store"
    );
    assert_eq!(
        fixture.buffer.open_rows(),
        ROWS - 2,
        "{sql:?} changed the buffer"
    );
    match result {
        Err(QueryError::Internal { message }) => {
            assert!(
                !message.contains("panic"),
                "{sql:?} panicked inside the engine: {message}"
            );
            false
        }
        Err(_) => false,
        Ok((schema, batches)) => {
            if let Some(keyword) = WRITES.iter().find(|k| starts_with_word(sql, k)) {
                panic!("{sql:?} starts with {keyword} and was not refused");
            }
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert!(
                rows as u64 <= fixture.args.max_rows,
                "{sql:?} returned {rows} rows"
            );
            let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
            let debug = format!("{batches:?}");
            assert!(!debug.contains(CANARY), "{sql:?} read a local file");
            if let Ok(text) = format_batches(&schema, &batches, OutputFormat::Csv) {
                assert!(
                    !text.contains(CANARY) && !text.contains(&hex),
                    "{sql:?} read a local file"
                );
            }
            true
        }
    }
}

/// The error the engine gives for `sql`, if any (what the smoke test checks by name).
#[allow(dead_code, reason = "used by the smoke test, not by the fuzz target")]
pub(crate) fn engine_error(sql: &str) -> Option<QueryError> {
    let fixture = fixture();
    fixture.runtime.block_on(fixture.engine.sql(sql)).err()
}

/// The property for fuzzed bytes (as text, invalid UTF-8 replaced); whether it ran.
pub(crate) fn check(data: &[u8]) -> bool {
    check_sql(&String::from_utf8_lossy(data))
}
