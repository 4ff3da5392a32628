//! Crashes: what was acknowledged survives, through the write-ahead log.

use tapedeck_collector::wal;

use crate::support::*;

#[tokio::test]
async fn acknowledged_exchanges_survive_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let mut client = collector.client().await;
    let exchanges: Vec<_> = (0..6)
        .map(|i| {
            exchange(
                i,
                if i < 3 { "orders" } else { "payments" },
                T13 + u64::from(i),
            )
        })
        .collect();
    within("push", client.push(batch(1, exchanges[..4].to_vec())))
        .await
        .unwrap();
    within("push", client.push(batch(2, exchanges[4..].to_vec())))
        .await
        .unwrap();
    drop(client);
    collector.crash().await;
    assert!(
        files(&open(data.path())).await.is_empty(),
        "nothing was flushed"
    );

    // Restart on the same folder: recovery puts the log back into the buffer.
    let collector = Collector::start(args(data.path())).await;
    eventually("readiness", || async {
        collector.get("/readyz").await.0 == 200
    })
    .await;
    let mut client = collector.client().await;
    let late = exchange(9, "orders", T13 + 99);
    within("push", client.push(batch(3, vec![late.clone()])))
        .await
        .unwrap();
    drop(client);
    let store = collector.store.clone();
    collector.stop().await.unwrap();
    assert_eq!(
        stored(&store.store).await,
        by_id([exchanges, vec![late]].concat())
    );
    assert!(wal::read_dir(&data.path().join("wal")).unwrap().is_empty());

    // A third start finds nothing to replay and stores nothing twice.
    let collector = Collector::start(args(data.path())).await;
    let store = collector.store.clone();
    collector.stop().await.unwrap();
    assert_eq!(stored(&store.store).await.len(), 7);
}

fn open(data: &std::path::Path) -> std::sync::Arc<dyn object_store::ObjectStore> {
    tapedeck_collector::store::open_store(data, None)
        .unwrap()
        .store
}
