//! Crashes: what was acknowledged survives, through the write-ahead log, and is stored once.

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

/// A store whose puts after the first `puts` never finish (the process dies during them).
#[derive(Debug)]
struct StallingStore {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    puts: std::sync::atomic::AtomicUsize,
    stalled: std::sync::atomic::AtomicBool,
}

impl StallingStore {
    async fn put_or_stall(&self) {
        use std::sync::atomic::Ordering;
        let left = self.puts.load(Ordering::SeqCst);
        if left == 0 {
            self.stalled.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.puts.store(left - 1, Ordering::SeqCst);
    }
}

impl std::fmt::Display for StallingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StallingStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for StallingStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.put_or_stall().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.put_or_stall().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Exchanges `from..to` over three partitions.
fn spread(from: u8, to: u8) -> Vec<tapedeck_proto::Exchange> {
    (from..to)
        .map(|i| match i % 3 {
            0 => exchange(i, "orders", T13 + u64::from(i)),
            1 => exchange(i, "payments", T13 + u64::from(i)),
            _ => exchange(i, "orders", T13 + HOUR + u64::from(i)),
        })
        .collect()
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_flush_stores_nothing_twice() {
    let data = tempfile::tempdir().unwrap();
    let local = tapedeck_collector::store::open_store(data.path(), None).unwrap();
    let stalling = std::sync::Arc::new(StallingStore {
        inner: local.store.clone(),
        // The flush's pin, then its first file; the second file never completes.
        puts: 2.into(),
        stalled: false.into(),
    });
    let store = tapedeck_collector::store::StoreHandle {
        store: stalling.clone(),
        url: local.url.clone(),
        changes: local.changes.clone(),
    };
    let collector = Collector::start_with(
        tapedeck_collector::CollectorArgs {
            flush_rows: 6,
            ..args(data.path())
        },
        store,
    )
    .await;
    let mut client = collector.client().await;
    let exchanges = spread(0, 6);
    within("push", client.push(batch(1, exchanges.clone())))
        .await
        .unwrap();
    eventually("the flush stalls on its second file", || async {
        stalling.stalled.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    drop(client);
    collector.crash().await;
    assert_eq!(
        files(&local.store).await.len(),
        1,
        "one file of three was put"
    );
    let wal_dir = data.path().join("wal");
    let logged: Vec<_> = wal::read_dir_with_store(&wal_dir, &local.store)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|batch| batch.exchanges)
        .collect();
    assert_eq!(
        by_id([logged, stored(&local.store).await].concat()),
        by_id(exchanges.clone()),
        "a read-only reader sees every exchange once"
    );

    let collector = Collector::start(args(data.path())).await;
    let mut client = collector.client().await;
    let late = spread(6, 8);
    within("push", client.push(batch(2, late.clone())))
        .await
        .unwrap();
    drop(client);
    collector.stop().await.unwrap();
    assert_eq!(
        stored(&local.store).await,
        by_id([exchanges, late].concat())
    );
    assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_after_the_files_are_put_replays_nothing() {
    // The state a crash between the last put and the segment deletes leaves, built by hand.
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let mut client = collector.client().await;
    let exchanges = spread(0, 5);
    within("push", client.push(batch(1, exchanges.clone())))
        .await
        .unwrap();
    drop(client);
    collector.crash().await;
    let wal_dir = data.path().join("wal");
    let store = open(data.path());
    let paths = tapedeck_collector::writer::write_exchanges(&store, 7, &exchanges)
        .await
        .unwrap();
    wal::write_intent(
        &wal_dir,
        &wal::FlushIntent {
            segment: 1,
            segments: vec![1],
            files: paths.iter().map(ToString::to_string).collect(),
            pin: None,
        },
    )
    .unwrap();
    assert_eq!(wal::read_dir(&wal_dir).unwrap().len(), 1);
    assert!(
        wal::read_dir_with_store(&wal_dir, &store)
            .await
            .unwrap()
            .is_empty()
    );

    let collector = Collector::start(args(data.path())).await;
    collector.stop().await.unwrap();
    assert_eq!(stored(&store).await, by_id(exchanges));
    assert!(wal::read_dir(&wal_dir).unwrap().is_empty());
    assert!(!wal_dir.join(wal::intent_name(1)).exists());
}
