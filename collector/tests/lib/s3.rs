//! The store on S3: a real S3-compatible server (`moto_server`) on loopback.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use tapedeck_collector::store::open_store_with;
use tapedeck_collector::writer;
use tokio::process::{Child, Command};

use crate::support::*;

pub(crate) const BUCKET: &str = "tapedeck";

/// `moto_server`: `$TAPEDECK_MOTO_SERVER`, else the workspace's `.venv/bin/moto_server`.
fn moto_server() -> PathBuf {
    let path = std::env::var_os("TAPEDECK_MOTO_SERVER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "moto_server not found at {}: install it with `.venv/bin/pip install 'moto[server]'` \
         (./x setup does) or point TAPEDECK_MOTO_SERVER at it",
        path.display()
    );
    path
}

/// A moto server on a free loopback port, killed when dropped.
pub(crate) struct Moto {
    pub(crate) endpoint: String,
    _child: Child,
}

impl Moto {
    pub(crate) async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // Up once it answers; it creates the bucket on a plain `PUT /<bucket>`.
        within("moto_server start", async {
            loop {
                if let Ok(Ok((status, body))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    try_http_request(addr, "PUT", &format!("/{BUCKET}")),
                )
                .await
                {
                    assert_eq!(status, 200, "creating bucket {BUCKET}: {body}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        Self {
            endpoint: format!("http://{addr}"),
            _child: child,
        }
    }

    pub(crate) fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
            ("aws_region", "us-east-1".into()),
        ]
    }
}

#[tokio::test]
async fn exchanges_flush_to_an_s3_bucket_under_its_prefix() {
    let moto = Moto::start().await;
    let data = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/team/tapedeck");
    let store = open_store_with(data.path(), Some(&url), moto.options()).unwrap();
    assert_eq!(store.url.as_str(), "s3://tapedeck/team/tapedeck/");
    let collector = Collector::start_with(
        tapedeck_collector::CollectorArgs {
            store: Some(url),
            ..args(data.path())
        },
        store.clone(),
    )
    .await;
    let mut client = collector.client().await;
    let exchanges = vec![
        exchange(1, "orders", T13),
        exchange(2, "payments", T13 + 1),
        exchange(3, "orders", T13 + HOUR),
    ];
    within("push", client.push(batch(1, exchanges.clone())))
        .await
        .unwrap();
    drop(client);
    collector.stop().await.unwrap();

    assert_eq!(stored(&store.store).await, by_id(exchanges.clone()));
    // The objects sit under the prefix, in the layout's folders.
    let bucket =
        open_store_with(data.path(), Some(&format!("s3://{BUCKET}")), moto.options()).unwrap();
    let (keys, markers): (Vec<String>, Vec<String>) = keys(&bucket.store)
        .await
        .into_iter()
        .partition(|key| !key.starts_with("team/tapedeck/_tapedeck/"));
    assert_eq!(keys.len(), 3, "{keys:?}");
    // Its flush's change marker (the listing cache), and no pin left.
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(markers[0].starts_with("team/tapedeck/_tapedeck/changes/"));
    for (key, partition) in keys.iter().zip([
        "service=orders/date=2026-11-27/hour=13",
        "service=orders/date=2026-11-27/hour=14",
        "service=payments/date=2026-11-27/hour=13",
    ]) {
        let prefix = format!("team/tapedeck/exchanges/{partition}/");
        assert!(
            key.starts_with(&prefix) && key.ends_with(".parquet"),
            "{key}"
        );
    }

    // Compaction and retention work against S3 too.
    let metrics = tapedeck_collector::metrics::Metrics::new();
    let names = writer::FileNamer::new(1, 1);
    writer::write_exchanges(&store.store, 2, &[exchange(4, "orders", T13 + 2)])
        .await
        .unwrap();
    let now = std::time::UNIX_EPOCH + Duration::from_nanos(T13 + 5 * HOUR / 2);
    let report = writer::compact(&store.store, &names, 2, now, &metrics)
        .await
        .unwrap();
    assert_eq!((report.partitions, report.files, report.rows), (1, 2, 2));
    assert_eq!(stored(&store.store).await.len(), 4);
    let deleted = writer::apply_retention(&store.store, Duration::from_secs(3600), now, &metrics)
        .await
        .unwrap();
    // Hour 13 of orders still holds the two files compaction replaced (deleted on the next
    // pass), besides the merged one; payments has one.
    assert_eq!(deleted, 4, "hours 13 of orders and payments");
    assert_eq!(
        stored(&store.store).await,
        vec![exchanges[2].clone()],
        "hour 14 ended less than an hour ago"
    );
}

async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}
