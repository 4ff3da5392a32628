//! SQL tools other than tapedeck's own, against a real collector and a real S3-compatible
//! server: the PyPI ADBC Flight SQL driver (with pyarrow), and DuckDB with its `httpfs`
//! extension running `collector/duckdb/exchanges.sql` on the bucket.
//!
//! Both run in the Python of `$TAPEDECK_SQL_PYTHON`, else the workspace's `.venv-sql` that
//! `./x setup` installs with pinned versions (`setup_sql_clients`).

use std::path::PathBuf;
use std::time::Duration;

use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use tapedeck_collector::layout::{FileName, PartitionKey};
use tapedeck_collector::query::{QueryArgs, QueryEngine};
use tapedeck_collector::store::open_store_with;
use tapedeck_collector::writer;
use tapedeck_proto::arrow_array::{Array, Int64Array};

use crate::s3::{BUCKET, Moto};
use crate::support::*;

/// The Python with the SQL clients.
fn python() -> PathBuf {
    let path = std::env::var_os("TAPEDECK_SQL_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-sql/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the SQL clients' Python not found at {}: `./x setup` installs it (.venv-sql), or point \
         TAPEDECK_SQL_PYTHON at a Python with duckdb, duckdb-ext-httpfs, adbc-driver-flightsql \
         and pyarrow",
        path.display()
    );
    path
}

/// Runs a Python script with arguments; returns its last line of output, parsed as JSON.
async fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let output = within(
        "python",
        tokio::process::Command::new(python())
            .arg("-c")
            .arg(script)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

const ADBC: &str = r#"
import json, sys
import adbc_driver_flightsql.dbapi as flightsql
from adbc_driver_flightsql import DatabaseOptions
uri, token = sys.argv[1], sys.argv[2]
out = {}
try:
    bad = flightsql.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer wrong"})
    bad.cursor().execute("SELECT 1")
    out["wrong_token"] = "accepted"
except Exception as error:
    out["wrong_token"] = type(error).__name__
conn = flightsql.connect(uri, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer " + token})
objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
out["catalogs"] = [c["catalog_name"] for c in objects]
out["schemas"] = [s["db_schema_name"] for c in objects for s in c["catalog_db_schemas"]]
tables = [t for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
out["tables"] = [[t["table_name"], t["table_type"]] for t in tables]
out["columns"] = [col["column_name"] for t in tables for col in (t["table_columns"] or [])]
out["schema"] = conn.adbc_get_table_schema("exchanges").names
out["table_types"] = conn.adbc_get_table_types()
cur = conn.cursor()
cur.execute("SELECT count(*) AS n FROM exchanges WHERE service = $1 AND status >= $2", parameters=("orders", 200))
out["orders"] = cur.fetchone()[0]
cur.execute("SELECT count(*) AS n FROM exchanges WHERE service = $1 AND status >= $2", parameters=("pay", 500))
out["pay_5xx"] = cur.fetchone()[0]
cur.execute("SELECT path FROM exchanges WHERE service = $1 ORDER BY path", parameters=("pay",))
out["pay_paths"] = [row[0] for row in cur.fetchall()]
cur.close()
conn.close()
print(json.dumps(out))
"#;

/// The ADBC Flight SQL driver browses the catalog and runs parameterised queries, with the
/// collector's token; a wrong token is refused.
#[tokio::test]
async fn adbc_flight_sql_driver_browses_and_binds_parameters() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        flight_listen: Some("127.0.0.1:0".parse().unwrap()),
        token: Some("s3cret".into()),
        ..args(data.path())
    })
    .await;
    let flight = collector.flight.expect("Flight SQL listener");
    let mut client = collector.client().await;
    let mut request = tonic::Request::new(batch(
        1,
        vec![
            exchange(1, "orders", T13),
            exchange(2, "orders", T13 + 1),
            exchange(3, "pay", T13 + 2),
        ],
    ));
    request
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    within("push", client.push(request)).await.unwrap();

    let out = run_python(ADBC, &[&format!("grpc://{flight}"), "s3cret"]).await;
    assert_ne!(out["wrong_token"], "accepted", "{out}");
    assert_eq!(out["catalogs"], serde_json::json!(["datafusion"]), "{out}");
    assert_eq!(out["schemas"], serde_json::json!(["public"]), "{out}");
    assert_eq!(
        out["tables"],
        serde_json::json!([["exchanges", "TABLE"]]),
        "{out}"
    );
    let expected: Vec<String> = tapedeck_collector::query::table_schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    assert_eq!(out["schema"], serde_json::json!(expected), "{out}");
    assert_eq!(out["columns"], serde_json::json!(expected), "{out}");
    assert_eq!(out["orders"], 2, "{out}");
    assert_eq!(out["pay_5xx"], 0, "{out}");
    assert_eq!(
        out["pay_paths"],
        serde_json::json!(["/charges/3?currency=EUR"]),
        "{out}"
    );
    drop(client);
    collector.stop().await.unwrap();
}

const DUCKDB: &str = r#"
import json, os, sys, sysconfig
import duckdb
script, endpoint, root = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
# httpfs from PyPI `duckdb-ext-httpfs` (extensions.duckdb.org is not reachable here).
extensions = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
con.execute(f"SET extension_directory = '{extensions}'")
con.execute("LOAD httpfs")
con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1',
    ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)""")
con.execute(f"SET VARIABLE root = '{root}'")
con.execute(open(script).read())
out = {}
out["ids"] = sorted(bytes(row[0]).hex() for row in con.execute("SELECT id FROM exchanges").fetchall())
out["by_service"] = con.execute("SELECT service, date, hour, count(*) FROM exchanges GROUP BY ALL ORDER BY ALL").fetchall()
out["content_type"] = con.execute("SELECT DISTINCT list_filter(request_headers, h -> lower(h.name) = 'content-type')[1].value FROM exchanges").fetchall()
out["amount"] = con.execute("SELECT max(CAST(decode(request_body) ->> '$.amount' AS INTEGER)) FROM exchanges").fetchone()[0]
print(json.dumps(out, default=lambda v: v.decode() if isinstance(v, bytes) else str(v)))
"#;

/// `collector/duckdb/exchanges.sql` on a bucket of `moto_server`, with DuckDB's `httpfs`:
/// flushed files of three writers (one with LZ4 pages, as `--flush-compression lz4` writes), a
/// committed compaction whose inputs are still there, and an uncommitted compaction output;
/// DuckDB sees every row exactly once, as the collector does, and the README's header and body
/// SQL works.
#[tokio::test]
async fn duckdb_recipe_reads_the_bucket_exactly_once() {
    let moto = Moto::start().await;
    let data = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/recipe");
    let store = open_store_with(data.path(), Some(&url), moto.options()).unwrap();
    let shared = &store.store;
    // Two writers in hour 13 of orders, one in hour 14, one in pay.
    writer::write_exchanges(
        shared,
        1,
        &[exchange(1, "orders", T13), exchange(2, "pay", T13)],
    )
    .await
    .unwrap();
    writer::write_exchanges(shared, 2, &[exchange(3, "orders", T13 + 1)])
        .await
        .unwrap();
    // Hour 14 is never compacted here: DuckDB reads it as a flush wrote it, LZ4_RAW pages.
    let fresh = exchange(4, "orders", T13 + HOUR);
    writer::write_partition(
        shared,
        &PartitionKey::of(&fresh),
        &writer::FileNamer::new(3, 1).next_name(),
        &[tapedeck_proto::arrow::to_record_batch(&[fresh]).unwrap()],
        writer::FlushCompression::Lz4,
    )
    .await
    .unwrap();
    // Compaction of hour 13 of orders: committed, its two inputs deleted only on a later pass.
    let metrics = tapedeck_collector::metrics::Metrics::new();
    let names = writer::FileNamer::new(9, 1);
    let now = std::time::UNIX_EPOCH + Duration::from_nanos(T13 + 3 * HOUR);
    let report = writer::compact(shared, &names, 2, now, &metrics)
        .await
        .unwrap();
    assert_eq!((report.partitions, report.files), (1, 2));
    // An output no manifest commits (a compactor that died): a copy of the committed one.
    let hour13 = PartitionKey::of(&exchange(1, "orders", T13));
    let committed = files(shared)
        .await
        .into_iter()
        .find(|path| path.ends_with(".compacted.parquet"))
        .expect("the compacted file");
    let bytes = shared
        .get(&Path::from(committed.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let stray = hour13.file(&FileName {
        writer: 77,
        sequence: 1,
        compacted: true,
    });
    shared.put(&stray, bytes.into()).await.unwrap();

    // What the collector's engine sees.
    let engine = QueryEngine::new(
        shared.clone(),
        std::sync::Arc::new(tapedeck_collector::buffer::Buffer::new()),
        &QueryArgs::default(),
    )
    .unwrap();
    let (_, batches) = engine.sql("SELECT count(*) FROM exchanges").await.unwrap();
    let ours = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(ours, 4);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("duckdb/exchanges.sql");
    let endpoint = moto.endpoint.trim_start_matches("http://").to_string();
    let out = run_python(DUCKDB, &[script.to_str().unwrap(), &endpoint, &url]).await;
    let expected: Vec<String> = (1..=4u8)
        .map(|i| {
            [[i; 8], [0xa5; 8]]
                .concat()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    assert_eq!(out["ids"], serde_json::json!(expected), "{out}");
    assert_eq!(
        out["by_service"],
        serde_json::json!([
            ["orders", "2026-11-27", "13", 2],
            ["orders", "2026-11-27", "14", 1],
            ["pay", "2026-11-27", "13", 1],
        ]),
        "{out}"
    );
    assert_eq!(
        out["content_type"],
        serde_json::json!([["application/json"]]),
        "{out}"
    );
    assert_eq!(out["amount"], 4, "{out}");
}
