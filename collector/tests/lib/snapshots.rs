//! Snapshots by id (`/v1/snapshots` on the HTTP port): the client `tapedeck snapshot
//! push|pull|list` and the operator use (`tapedeck_mesh::snapshots::Client`) against a real
//! collector: stored, listed, pulled back byte for byte, validated on upload, the id checked,
//! the token required, and never half visible.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt as _, PutPayload};
use tapedeck_analyzer::snapshot::archive::{FILES, tar};
use tapedeck_collector::snapshots::PREFIX;
use tapedeck_mesh::snapshots::{Client, SnapshotError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Collector, args, within};

const GOLDEN_ID: &str = "orders-20261127T130000Z-0bb47efda65d";

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/golden/shop")
}

/// A copy of the golden snapshot in `dir`, with `edit(file name, text)` applied to each file.
fn copy(dir: &Path, edit: impl Fn(&str, String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for name in FILES {
        let text = std::fs::read_to_string(golden().join(name)).unwrap();
        std::fs::write(dir.join(name), edit(name, text)).unwrap();
    }
    dir.to_path_buf()
}

fn archive(dir: &Path) -> Vec<u8> {
    let files: Vec<(&str, Vec<u8>)> = FILES
        .iter()
        .map(|name| (*name, std::fs::read(dir.join(name)).unwrap()))
        .collect();
    tar(&files)
}

/// PUTs `body` on the HTTP port and returns the status and body.
async fn put(addr: SocketAddr, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    within(&format!("PUT {path}"), async {
        let mut stream = TcpStream::connect(addr).await?;
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        anyhow::Ok((status, body.to_owned()))
    })
    .await
    .unwrap()
}

fn status_of(error: &SnapshotError) -> Option<u16> {
    match error {
        SnapshotError::Status { status, .. } => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn a_pushed_snapshot_is_listed_and_pulled_back_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let client = Client::new(&format!("http://{}", collector.http), None).unwrap();
    assert!(client.list().await.unwrap().is_empty());

    let pushed = client.push(&golden()).await.unwrap();
    assert_eq!((pushed.id.as_str(), pushed.created), (GOLDEN_ID, true));
    // The same files again: accepted, nothing new.
    assert!(!client.push(&golden()).await.unwrap().created);

    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!((m.id.as_str(), m.service.as_str()), (GOLDEN_ID, "orders"));
    let hosts: Vec<&str> = m.hosts.iter().map(|h| h.host.as_str()).collect();
    assert!(hosts.contains(&"payments.shop.svc:8080"), "{hosts:?}");
    assert!(m.tokens.is_empty(), "the listing leaves token rules out");
    assert_eq!(m.counts, client.manifest(GOLDEN_ID).await.unwrap().counts);

    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("pulled");
    let manifest = client.pull(GOLDEN_ID, &out, false).await.unwrap();
    assert_eq!(manifest.id, GOLDEN_ID);
    assert!(
        !manifest.tokens.is_empty(),
        "the pulled snapshot.json is whole"
    );
    for name in FILES {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(golden().join(name)).unwrap(),
            "{name}"
        );
    }
    // --out not empty: refused unless replaced.
    let refused = client.pull(GOLDEN_ID, &out, false).await.unwrap_err();
    assert!(refused.to_string().contains("--force"), "{refused}");
    client.pull(GOLDEN_ID, &out, true).await.unwrap();
    // Nothing left next to it.
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert_eq!(left.len(), 1);

    let missing = client
        .pull(
            "orders-20261127T130000Z-000000000000",
            &scratch.path().join("x"),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&missing), Some(404), "{missing}");
    assert!(missing.to_string().contains("no snapshot"), "{missing}");
    assert!(!scratch.path().join("x").exists());
    let (status, body) = collector
        .get(&format!("/v1/snapshots/{GOLDEN_ID}/secrets.txt"))
        .await;
    assert_eq!(status, 404, "{body}");
    // The files are in the collector's store, under snapshots/<id>/.
    let stored = crate::support::files(&collector.store.store).await;
    assert!(stored.is_empty(), "no exchanges were written: {stored:?}");
    let current = collector
        .store
        .store
        .get(&StorePath::from(format!(
            "{PREFIX}/{GOLDEN_ID}/current.json"
        )))
        .await;
    assert!(current.is_ok());
    collector.stop().await.unwrap();

    // A restarted collector on the same store still has it.
    let collector = Collector::start(args(data.path())).await;
    let client = Client::new(&format!("http://{}", collector.http), None).unwrap();
    assert_eq!(client.list().await.unwrap().len(), 1);
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_are_validated_and_ids_checked() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let dirs = tempfile::tempdir().unwrap();
    let path = format!("/v1/snapshots/{GOLDEN_ID}");

    // Not a snapshot: every problem is named with its file and line.
    let broken = copy(&dirs.path().join("broken"), |name, text| {
        if name == "inbound.jsonl" {
            text.replacen('{', "{not json", 1)
        } else {
            text
        }
    });
    let (status, body) = put(collector.http, &path, None, &archive(&broken)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("inbound.jsonl:1"), "{body}");

    // The path's id is not snapshot.json's.
    let other = "/v1/snapshots/orders-20261127T130000Z-000000000000";
    let (status, body) = put(collector.http, other, None, &archive(&golden())).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("is snapshot orders-20261127T130000Z-0bb47efda65d"),
        "{body}"
    );

    // An id not of the analyzer's form.
    let odd = copy(&dirs.path().join("odd"), |name, text| {
        if name == "snapshot.json" {
            text.replace(GOLDEN_ID, "orders-latest")
        } else {
            text
        }
    });
    let (status, body) = put(
        collector.http,
        "/v1/snapshots/orders-latest",
        None,
        &archive(&odd),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("orders-20261127T130000Z-<12 hex digits>"),
        "{body}"
    );

    // Not an archive, and an archive short of a file.
    let (status, body) = put(collector.http, &path, None, b"hello").await;
    assert_eq!(status, 422, "{body}");
    let partial = tar(&[(
        "snapshot.json",
        std::fs::read(golden().join("snapshot.json")).unwrap(),
    )]);
    let (status, body) = put(collector.http, &path, None, &partial).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("lacks inbound.jsonl, outbound.jsonl"),
        "{body}"
    );

    // Nothing of the refused uploads is visible, and the scratch folder is empty again.
    let client = Client::new(&format!("http://{}", collector.http), None).unwrap();
    assert!(client.list().await.unwrap().is_empty());
    let scratch = data.path().join(tapedeck_collector::snapshots::SCRATCH_DIR);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Other files under a stored id: 409, the stored snapshot unchanged.
    client.push(&golden()).await.unwrap();
    let changed = copy(&dirs.path().join("changed"), |name, text| {
        if name == "outbound.jsonl" {
            text.replacen("\"duration_ns\":", "\"duration_ns\":1", 1)
        } else {
            text
        }
    });
    let conflict = client.push(&changed).await.unwrap_err();
    assert_eq!(status_of(&conflict), Some(409), "{conflict}");
    assert!(
        conflict
            .to_string()
            .contains("already stored with other files"),
        "{conflict}"
    );
    let out = dirs.path().join("pulled");
    client.pull(GOLDEN_ID, &out, false).await.unwrap();
    assert_eq!(
        std::fs::read(out.join("outbound.jsonl")).unwrap(),
        std::fs::read(golden().join("outbound.jsonl")).unwrap()
    );
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_uploads_of_one_id_store_one_and_half_uploads_stay_hidden() {
    let data = tempfile::tempdir().unwrap();
    let collector = Collector::start(args(data.path())).await;
    let client = Client::new(&format!("http://{}", collector.http), None).unwrap();

    // An upload that died before its current.json: files under its own prefix, not visible.
    let id = "orders-20261127T130000Z-111111111111";
    for name in FILES {
        collector
            .store
            .store
            .put(
                &StorePath::from(format!("{PREFIX}/{id}/uploads/dead/{name}")),
                PutPayload::from_static(b"half"),
            )
            .await
            .unwrap();
    }
    assert!(client.list().await.unwrap().is_empty());
    let hidden = client.manifest(id).await.unwrap_err();
    assert_eq!(status_of(&hidden), Some(404), "{hidden}");

    // Two different uploads of one id at once: one is stored, the other is refused.
    let dirs = tempfile::tempdir().unwrap();
    let changed = copy(&dirs.path().join("changed"), |name, text| {
        if name == "outbound.jsonl" {
            text.replacen("\"duration_ns\":", "\"duration_ns\":1", 1)
        } else {
            text
        }
    });
    let golden = golden();
    let (a, b) = tokio::join!(client.push(&golden), client.push(&changed));
    let statuses = [&a, &b].map(|r| match r {
        Ok(p) if p.created => 201,
        Ok(_) => 200,
        Err(e) => status_of(e).unwrap_or(0),
    });
    let mut sorted = statuses;
    sorted.sort_unstable();
    assert_eq!(sorted, [201, 409], "{a:?} {b:?}");
    let winner = if statuses[0] == 201 {
        &golden
    } else {
        &changed
    };
    let out = dirs.path().join("pulled");
    client.pull(GOLDEN_ID, &out, false).await.unwrap();
    for name in FILES {
        assert_eq!(
            std::fs::read(out.join(name)).unwrap(),
            std::fs::read(winner.join(name)).unwrap()
        );
    }
    collector.stop().await.unwrap();
}

#[tokio::test]
async fn the_token_guards_every_snapshot_route() {
    let data = tempfile::tempdir().unwrap();
    let mut a = args(data.path());
    a.token = Some("s3cret-token".to_owned());
    let collector = Collector::start(a).await;
    let url = format!("http://{}", collector.http);
    let anonymous = Client::new(&url, None).unwrap();
    let wrong = Client::new(&url, Some("nope".to_owned())).unwrap();
    let right = Client::new(&url, Some("s3cret-token".to_owned())).unwrap();
    for client in [&anonymous, &wrong] {
        let refused = client.push(&golden()).await.unwrap_err();
        assert_eq!(status_of(&refused), Some(401), "{refused}");
        assert_eq!(status_of(&client.list().await.unwrap_err()), Some(401));
    }
    right.push(&golden()).await.unwrap();
    assert_eq!(
        status_of(&anonymous.manifest(GOLDEN_ID).await.unwrap_err()),
        Some(401)
    );
    assert_eq!(right.manifest(GOLDEN_ID).await.unwrap().id, GOLDEN_ID);
    // /metrics and /healthz stay open.
    assert_eq!(collector.get("/healthz").await.0, 200);
    collector.stop().await.unwrap();
}
