//! The full path: the real Envoy with filter.wasm pushes to a real collector, and SQL returns
//! the requests that were sent — first from the collector's buffer over Flight SQL while it
//! runs, then from the Parquet files it flushed, read offline after it stopped.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use tapedeck_collector::flight::query_remote;
use tapedeck_collector::query::{QueryArgs, open_offline};
use tapedeck_collector::{CollectorArgs, Listeners};
use tapedeck_e2e::{Collector, RigBuilder};
use tapedeck_local::sample::full_body;
use tapedeck_proto::arrow_array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

async fn bind() -> Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|batch| {
            let values = batch
                .column(column)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("a Utf8 column");
            (0..values.len())
                .map(|i| {
                    if values.is_null(i) {
                        String::new()
                    } else {
                        values.value(i).to_string()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|batch| {
            let column = batch.column(column);
            if let Some(values) = column.as_any().downcast_ref::<Int64Array>() {
                values.values().to_vec()
            } else {
                let values = column
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .expect("an integer column");
                values.values().iter().map(|v| i64::from(*v)).collect()
            }
        })
        .collect()
}

#[tokio::test]
async fn requests_through_envoy_are_queryable_in_the_collector_and_in_parquet() -> Result<()> {
    let data = tempfile::tempdir()?;
    let args = CollectorArgs {
        data: data.path().to_path_buf(),
        flush_interval: 3600,
        ..CollectorArgs::default()
    };
    let listeners = Listeners {
        grpc: bind().await?,
        http: bind().await?,
        flight: Some(bind().await?),
    };
    let grpc = listeners.grpc.local_addr()?;
    let flight = format!(
        "http://{}",
        listeners.flight.as_ref().context("flight")?.local_addr()?
    );
    let store = tapedeck_collector::store::open_store(data.path(), None)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let collector = tokio::spawn(tapedeck_collector::run_with(
        args,
        listeners,
        store,
        async {
            let _ = stopped.await;
        },
    ));

    let rig = RigBuilder::new()
        .collector(Collector::At(grpc))
        .plugin(json!({"redaction": {"json_fields": ["card"]}}))
        .outbound()
        .start()
        .await?;
    let order = r#"{"sku":"book-1","card":"4111111111111111"}"#;
    let request = rig
        .request("POST", "/orders")
        .header("content-type", "application/json")
        .header("x-request-id", "store-order-1")
        .body(full_body(order))?;
    assert_eq!(rig.send(request).await?.status, 201);
    for i in 0..3 {
        let request = rig
            .request("GET", &format!("/hello?n={i}"))
            .header("x-request-id", format!("store-hello-{i}"))
            .body(full_body(""))?;
        assert_eq!(rig.send(request).await?.status, 200);
    }
    // One order (inbound + its outbound payment) and three hellos.
    const EXPECTED: usize = 5;
    const SQL: &str = "SELECT direction, method, path, CAST(status AS BIGINT) AS status, trace_id, body_text(request_body) AS body \
                       FROM exchanges ORDER BY trace_id, direction";

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let batches = loop {
        let (_, batches) = query_remote(&flight, None, SQL).await?;
        if batches.iter().map(RecordBatch::num_rows).sum::<usize>() >= EXPECTED {
            break batches;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the collector holds {} of {EXPECTED} exchanges after 20 s",
                batches.iter().map(RecordBatch::num_rows).sum::<usize>()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected_paths = ["/hello?n=0", "/hello?n=1", "/hello?n=2", "/orders", "/pay"];
    let expected_directions = ["inbound", "inbound", "inbound", "inbound", "outbound"];
    let expected_traces = [
        "store-hello-0",
        "store-hello-1",
        "store-hello-2",
        "store-order-1",
        "store-order-1",
    ];
    assert_eq!(strings(&batches, 2), expected_paths);
    assert_eq!(strings(&batches, 0), expected_directions);
    assert_eq!(strings(&batches, 4), expected_traces);
    assert_eq!(ints(&batches, 3), [200, 200, 200, 201, 201]);
    let bodies = strings(&batches, 5);
    assert!(
        bodies[3].starts_with(r#"{"sku":"book-1","card":"tapedeck-redacted:hmac-sha256:"#),
        "{}",
        bodies[3]
    );
    assert!(
        bodies.iter().all(|body| !body.contains("4111111111111111")),
        "a card number reached the store"
    );

    // Stop: the collector flushes to Parquet; then read the data directory offline.
    drop(rig);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), collector)
        .await
        .context("the collector did not stop")???;
    let parquet_files = walk(data.path().join("store"))?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert!(parquet_files >= 1, "no Parquet file after shutdown");
    let engine = open_offline(data.path(), None, &QueryArgs::default()).await?;
    let (_, offline) = engine.sql(SQL).await?;
    assert_eq!(strings(&offline, 2), expected_paths);
    assert_eq!(strings(&offline, 4), expected_traces);
    let (_, services) = engine.sql("SELECT DISTINCT service FROM exchanges").await?;
    assert_eq!(strings(&services, 0), [tapedeck_e2e::WORKLOAD]);
    Ok(())
}

fn walk(dir: std::path::PathBuf) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path)
            } else {
                out.push(path)
            }
        }
    }
    Ok(out)
}
