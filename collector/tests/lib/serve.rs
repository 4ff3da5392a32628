//! What `run_with` starts besides ingest: Flight SQL over the same buffer and store.

use tapedeck_collector::flight::query_remote;
use tapedeck_proto::arrow_array::{Array, Int64Array};

use crate::support::*;

#[tokio::test]
async fn flight_sql_sees_acknowledged_exchanges_before_and_after_the_flush() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        flight_listen: Some("127.0.0.1:0".parse().unwrap()),
        token: Some("s3cret".into()),
        flush_rows: 3,
        ..args(data.path())
    })
    .await;
    let flight = collector.flight.expect("Flight SQL listener").to_string();
    let mut client = collector.client().await;
    let authorized = |sequence, exchanges| {
        let mut request = tonic::Request::new(batch(sequence, exchanges));
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        request
    };
    let count = || async {
        let (_, batches) = within(
            "query",
            query_remote(&flight, Some("s3cret"), "SELECT count(*) FROM exchanges"),
        )
        .await
        .expect("query runs");
        let column = batches[0].column(0);
        let counts = column.as_any().downcast_ref::<Int64Array>().unwrap();
        counts.value(0)
    };
    within(
        "push",
        client.push(authorized(1, vec![exchange(1, "orders", T13)])),
    )
    .await
    .unwrap();
    assert_eq!(count().await, 1, "buffered");
    within(
        "push",
        client.push(authorized(
            2,
            vec![exchange(2, "orders", T13 + 1), exchange(3, "pay", T13 + 2)],
        )),
    )
    .await
    .unwrap();
    eventually("the flush", || async { collector.files().await.len() == 2 }).await;
    assert_eq!(count().await, 3, "in Parquet");
    let refused = within("query", query_remote(&flight, Some("wrong"), "SELECT 1")).await;
    assert!(refused.is_err());
    // Every query the engine ran is counted: two count(*) queries succeeded, and a bad one
    // fails and is counted as an error (the refused token never reached the engine).
    let invalid = within("query", query_remote(&flight, Some("s3cret"), "SELEC 1")).await;
    assert!(invalid.is_err());
    let ok = collector
        .metric("tapedeck_collector_queries_total{outcome=\"ok\"}")
        .await;
    let failed = collector
        .metric("tapedeck_collector_queries_total{outcome=\"error\"}")
        .await;
    assert!(ok >= 2.0, "ok queries counted: {ok}");
    assert!(failed >= 1.0, "failed queries counted: {failed}");
    drop(client);
    collector.stop().await.unwrap();
}
