//! A store that fails: data stays in the buffer and the log until it can be written.

use tapedeck_collector::{metrics, wal};

use crate::support::*;

#[tokio::test]
async fn data_stays_logged_until_the_store_takes_it() {
    let data = tempfile::tempdir().unwrap();
    // A file where the table folder should be: every put fails.
    let blocker = data.path().join("store/exchanges");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a folder").unwrap();
    let collector = Collector::start(tapedeck_collector::CollectorArgs {
        flush_rows: 1,
        ..args(data.path())
    })
    .await;
    let mut client = collector.client().await;
    let first = exchange(1, "orders", T13);
    within("push", client.push(batch(1, vec![first.clone()])))
        .await
        .unwrap();
    let retries = format!("{}_total", metrics::STORE_RETRIES);
    eventually("failed writes", || async {
        collector.metric(&retries).await >= f64::from(tapedeck_collector::writer::WRITE_ATTEMPTS)
    })
    .await;
    let wal_dir = collector.data.join("wal");
    let logged = wal::read_dir(&wal_dir).unwrap();
    assert_eq!(logged.len(), 1, "the log keeps what is not in Parquet");
    assert_eq!(collector.metric(metrics::BUFFER_ROWS).await, 0.0, "sealed");
    assert!(
        collector.metric(metrics::BUFFER_BYTES).await > 0.0,
        "still buffered"
    );

    // The store comes back; the next flush writes the old data and the new.
    std::fs::remove_file(&blocker).unwrap();
    let second = exchange(2, "orders", T13 + 1);
    within("push", client.push(batch(2, vec![second.clone()])))
        .await
        .unwrap();
    eventually("the flush", || async {
        wal::read_dir(&wal_dir).unwrap().is_empty()
    })
    .await;
    assert_eq!(collector.files().await.len(), 2);
    assert_eq!(stored(&collector.store.store).await, vec![first, second]);
    assert_eq!(collector.metric(metrics::BUFFER_BYTES).await, 0.0);
    drop(client);
    collector.stop().await.unwrap();
}
