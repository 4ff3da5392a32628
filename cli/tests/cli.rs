//! The `tapedeck` binary as users run it: the collector as a process, killed with SIGKILL in
//! the middle of ingest, and `tapedeck sql` / `tapedeck import har` on its data directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Message};
use tokio::process::{Child, Command};

const TAPEDECK: &str = env!("CARGO_BIN_EXE_tapedeck");

/// A loopback port that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

struct Collector {
    child: Child,
    grpc: SocketAddr,
}

async fn start_collector(data: &Path, extra: &[&str]) -> Result<Collector> {
    let grpc = free_port()?;
    let http = free_port()?;
    let child = Command::new(TAPEDECK)
        .args(["--log", "warn", "collector", "--data"])
        .arg(data)
        .args([
            "--grpc-listen",
            &grpc.to_string(),
            "--http-listen",
            &http.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting tapedeck collector")?;
    // Ready once /readyz answers 200 (after write-ahead log recovery).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(http).await {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await?;
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.1 200") {
                return Ok(Collector { child, grpc });
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the collector was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exchange(pusher: usize, n: usize) -> Exchange {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(pusher as u64).to_le_bytes());
    id[8..].copy_from_slice(&(n as u64).to_le_bytes());
    Exchange {
        id: id.to_vec(),
        start_unix_nanos: 1_795_787_110_000_000_000 + n as u64,
        duration_nanos: 1_000,
        direction: Direction::Inbound as i32,
        workload: "orders".into(),
        method: "GET".into(),
        path: format!("/p{pusher}/{n}"),
        status: 200,
        request: Some(Message::default()),
        response: Some(Message {
            body: vec![b'x'; 256],
            body_size: 256,
            ..Default::default()
        }),
        sample_rate: 1.0,
        ..Default::default()
    }
}

/// Runs `tapedeck sql` on a data directory and returns its CSV output lines (header dropped).
async fn sql_lines(data: &Path, query: &str) -> Result<Vec<String>> {
    let output = Command::new(TAPEDECK)
        .args(["sql", "--format", "csv", "--query-max-rows", "0", "--data"])
        .arg(data)
        .arg(query)
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "tapedeck sql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect())
}

#[tokio::test]
async fn every_acknowledged_exchange_survives_kill_9_exactly_once() -> Result<()> {
    let data = tempfile::tempdir()?;
    // Flush often, so that the kill lands among flushes as well as appends.
    let collector = start_collector(
        data.path(),
        &["--flush-interval", "1", "--flush-rows", "2000"],
    )
    .await?;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let endpoint = format!("http://{}", collector.grpc);
    let mut pushers = Vec::new();
    for pusher in 0..4 {
        let (acked, endpoint) = (acked.clone(), endpoint.clone());
        pushers.push(tokio::spawn(async move {
            let Ok(mut client) = CaptureClient::connect(endpoint).await else {
                return;
            };
            for batch in 0..1_000 {
                let exchanges: Vec<_> = (0..50).map(|i| exchange(pusher, batch * 50 + i)).collect();
                let paths: Vec<String> = exchanges.iter().map(|e| e.path.clone()).collect();
                let push = client.push(ExchangeBatch {
                    exchanges,
                    sequence: batch as u64 + 1,
                    ..Default::default()
                });
                match tokio::time::timeout(Duration::from_secs(5), push).await {
                    Ok(Ok(_ack)) => acked.lock().expect("not poisoned").extend(paths),
                    // The collector died: what was not acknowledged may or may not be stored.
                    _ => return,
                }
            }
        }));
    }
    // Let ingest and a few flushes happen, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().expect("not poisoned").len() < 20_000 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "ingest too slow: {} acked after 10 s",
            acked.lock().expect("not poisoned").len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = collector.child;
    child.start_kill().context("sending SIGKILL")?;
    let status = child.wait().await?;
    ensure!(
        !status.success(),
        "the collector should have died of SIGKILL, got {status}"
    );
    for pusher in pushers {
        let _ = tokio::time::timeout(Duration::from_secs(10), pusher).await;
    }
    let acked = acked.lock().expect("not poisoned").clone();

    // Restart: recovery replays the log; a clean stop (SIGTERM) flushes everything.
    let mut collector = start_collector(data.path(), &[]).await?;
    let pid = collector.child.id().context("collector pid")?;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    ensure!(killed.success(), "kill -TERM failed");
    let status = tokio::time::timeout(Duration::from_secs(30), collector.child.wait())
        .await
        .context("no exit after SIGTERM")??;
    ensure!(
        status.success(),
        "the collector exited with {status} after SIGTERM"
    );

    let stored = sql_lines(data.path(), "SELECT path FROM exchanges").await?;
    let unique: HashSet<String> = stored.iter().cloned().collect();
    ensure!(
        unique.len() == stored.len(),
        "{} exchanges are stored more than once",
        stored.len() - unique.len()
    );
    let missing: Vec<_> = acked.difference(&unique).take(5).collect();
    if !missing.is_empty() {
        bail!(
            "{} acknowledged exchanges are lost, for example {missing:?}",
            acked.difference(&unique).count()
        );
    }
    assert!(acked.len() >= 20_000);
    Ok(())
}

#[tokio::test]
async fn a_har_file_imports_into_a_data_directory_and_queries_back() -> Result<()> {
    let data = tempfile::tempdir()?;
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../har/tests/fixtures/browser.har");
    let output = Command::new(TAPEDECK)
        .args(["import", "har"])
        .arg(&har)
        .args([
            "--service",
            "web",
            "--direction",
            "outbound",
            "--partial",
            "--data",
        ])
        .arg(data.path())
        .output()
        .await?;
    // Exit 0 when every entry imported; 2 when some were skipped (and named) under --partial.
    let code = output.status.code();
    ensure!(
        code == Some(0) || code == Some(2),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = sql_lines(
        data.path(),
        "SELECT service, direction, count(*) FROM exchanges GROUP BY 1, 2",
    )
    .await?;
    ensure!(lines.len() == 1, "{lines:?}");
    ensure!(lines[0].starts_with("web,outbound,"), "{lines:?}");

    // A file that is not HAR is refused with the problem named, and nothing is written.
    let bad = data.path().join("bad.har");
    std::fs::write(&bad, br#"{"log": {"entries": 3}}"#)?;
    let output = Command::new(TAPEDECK)
        .args(["import", "har"])
        .arg(&bad)
        .args(["--service", "web", "--data"])
        .arg(data.path())
        .output()
        .await?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("log.entries"),
        "the error should name log.entries: {stderr}"
    );
    Ok(())
}
